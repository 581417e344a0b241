// Durable hints for hinted handoff (Dynamo §4.6, the sloppy quorum). When a node of a
// key's preference list is down, the coordinator writes to the next healthy node past the
// list, and that node keeps the record here as a hint naming the intended node (the
// *target*) until the target answers again, takes the record in a replay batch and
// acknowledges it. Only an acknowledgement deletes a hint; age (`hintWindowMs`) and room
// (`maxHintBytes`) bound what is kept, and anti-entropy repairs what hints miss.
//
// On disk: the sublevel 'hints' of the node's LevelDB (root keys '!hints!' + ..., apart
// from 'd' data and 'm' meta), holding two key spaces:
//   'h' target 0x00 key                 -> encodeRecord(record)   the hint
//   't' u64be(ts.wallMs) target 0x00 key -> (empty)                age index, for expiry
// Node ids and keys never contain NUL, so 0x00 ends the target: hints sort by (target,
// key) and the replay of one target is one range scan in key order ('n1' and 'n10' stay
// apart). The age index lets expire() find the oldest hints in O(limit) without scanning
// everything. Both entries of a hint change in one LevelDB batch, so they never disagree;
// open() checks that they count the same.
//
// Age is the record's own HLC wall time, not the moment the hint was stored: a hint must
// never carry a version older than the hint window, because tombstones are purged after a
// grace period longer than that window, and a late replay of an older value would
// resurrect a purged delete.
//
// Writes (add, acknowledge, expire) run one at a time, in call order, through a bounded
// queue: each decides on what the previous one left on disk (the stored version of a hint),
// and LevelDB applies them in that order (it may apply two concurrent batches in either).
// Reads (batch, drain) need no queue: a LevelDB iterator reads a consistent snapshot, and
// acknowledge() re-checks the stored version anyway.
//
// Invariants: per target and in total, entries >= 0, bytes >= 0, and entries === 0 exactly
// when bytes === 0 (every hint costs at least 3 bytes); the in-memory counts equal what is
// on disk (rebuilt by open(), then changed only after a batch is durable); a hint is
// deleted only by acknowledge() with its exact stored timestamp, or by expire().
import type { Level } from 'level';
import type { Clock } from '../clock.js';
import { keyIsValid } from '../protocol/memcached/parser.js';
import { compareHlc, decodeRecord, encodeRecord, LOGICAL_MAX, type Hlc, type StoredRecord } from '../storage/record.js';
import { assert } from '../util/assert.js';

/** Name of the sublevel (of the node's LevelDB) that holds the hints. */
export const HINTS_SUBLEVEL = 'hints';
/** Upper bound of `maxEntries` for batch, drain and expire, and of one acknowledge's entries. */
export const HINT_ENTRIES_MAX = 10_000;
/** Default bound of writes waiting behind the one in flight. */
export const MAX_QUEUED_WRITES_DEFAULT = 1024;
/** Longest target (node id) in bytes; node ids are 1..64 characters (client/cli.ts). */
export const TARGET_MAX_BYTES = 255;

const HINT = 0x68; // 'h'
const AGE = 0x74; // 't'
const SEP = 0x00;
const U32 = 0x1_0000_0000;

/** A hint write: LevelDB batch operations on the hints sublevel. */
export type HintWrite = { type: 'put'; key: Buffer; value: Uint8Array } | { type: 'del'; key: Buffer };

/** Range of a scan over the hints sublevel. */
export interface HintRange {
  gt?: Buffer;
  gte?: Buffer;
  lt?: Buffer;
  limit?: number;
}

/**
 * What HintStore uses of its key space: exactly what an abstract-level sublevel with
 * buffer keys and view values provides (see hintSublevel). A structural type, so a fake
 * (fault injection, a simulator's disk) can stand in for LevelDB.
 */
export interface HintSpace {
  open(): Promise<void>;
  close(): Promise<void>;
  get(key: Buffer): Promise<Uint8Array | undefined>;
  getMany(keys: Buffer[]): Promise<Array<Uint8Array | undefined>>;
  batch(ops: HintWrite[]): Promise<void>;
  iterator(range: HintRange): AsyncIterable<[Buffer, Uint8Array]>;
  keys(range: HintRange): AsyncIterable<Buffer>;
}

/**
 * The hints' own key space in the node's LevelDB (opened as LevelStore opens it: buffer
 * keys, view values): the sublevel 'hints', whose root keys start '!hints!', apart from
 * LevelStore's 'd' and 'm' prefixes.
 */
export function hintSublevel(db: Level<Buffer, Uint8Array>): HintSpace {
  return db.sublevel<Buffer, Uint8Array>(HINTS_SUBLEVEL, { keyEncoding: 'buffer', valueEncoding: 'view' });
}

export interface HintStoreOptions {
  /**
   * The node's LevelDB (the store then uses its sublevel 'hints', see hintSublevel), or a
   * HintSpace made by the caller. The LevelDB's owner opens and closes it.
   */
  db: Level<Buffer, Uint8Array> | HintSpace;
  /** Decides the age of hints (add, expire); never Date.now() directly. */
  clock: Clock;
  /** `--max-hint-mb` in bytes: the total bytes of all hints (see hintBytes); past it, add answers 'dropped-full'. */
  maxHintBytes: number;
  /** `--hint-window-ms`: a hint whose record is older than this is refused ('dropped-old') or expired. */
  hintWindowMs: number;
  /** Writes (add, acknowledge, expire) waiting behind the one in flight; past it they fail with HintStoreBusyError. */
  maxQueuedWrites?: number;
}

/** One hint as replay and drain hand it out. */
export interface HintEntry {
  readonly key: string;
  readonly record: StoredRecord;
}

/** What the target acknowledged: the key and the timestamp of the version it received. */
export interface HintAck {
  readonly key: string;
  readonly ts: Hlc;
}

/**
 * 'stored': the store now holds this version or a newer one for (target, key), durably.
 * 'dropped-full': it would not fit in maxHintBytes. 'dropped-old': the record is older
 * than hintWindowMs. Nothing was written for either drop; anti-entropy repairs those keys.
 */
export type AddResult = 'stored' | 'dropped-full' | 'dropped-old';

export interface HintPending {
  entries: number;
  /** Sum of hintBytes over the target's hints. */
  bytes: number;
}

export interface HintStats {
  /** Hints held now, and their bytes (hintBytes summed). */
  entries: number;
  bytes: number;
  limitBytes: number;
  /** Since open: adds written to disk (new hints and replacements by a newer version). */
  stored: number;
  /** Adds that found the same or a newer version already held (answered 'stored', nothing written). */
  superseded: number;
  /** droppedFull + droppedOld. */
  dropped: number;
  droppedFull: number;
  droppedOld: number;
  /** Hints deleted by acknowledge (replayed to the target, or handed on at decommission). */
  replayed: number;
  /** Hints deleted by expire. */
  expired: number;
}

export type HintStoreErrorCode = 'NOT_OPEN' | 'CLOSED' | 'ALREADY_OPEN' | 'BAD_TARGET' | 'BAD_KEY' | 'BAD_RECORD' | 'BAD_LIMIT' | 'BUSY';

/** Every error HintStore throws on purpose; branch on the class or on `code`. */
export abstract class HintStoreError extends Error {
  abstract readonly code: HintStoreErrorCode;
}

/** Used before open(), after close(), or opened twice: a caller's bug. */
export class HintStoreStateError extends HintStoreError {
  override readonly name = 'HintStoreStateError';
  constructor(readonly code: 'NOT_OPEN' | 'CLOSED' | 'ALREADY_OPEN', message: string) {
    super(message);
  }
}

/** An argument outside the contract (target, key, record, limit): a caller's bug. */
export class HintArgumentError extends HintStoreError {
  override readonly name = 'HintArgumentError';
  constructor(readonly code: 'BAD_TARGET' | 'BAD_KEY' | 'BAD_RECORD' | 'BAD_LIMIT', message: string) {
    super(message);
  }
}

/** maxQueuedWrites writes are already waiting; nothing was done. An operating condition: retry later or drop the hint. */
export class HintStoreBusyError extends HintStoreError {
  override readonly name = 'HintStoreBusyError';
  readonly code = 'BUSY';
  constructor(readonly maxQueuedWrites: number) {
    super(`hint store busy: ${maxQueuedWrites} writes already queued`);
  }
}

/**
 * Bytes a hint is charged (the unit of maxHintBytes, pending and batch limits): target and
 * key bytes plus the encoded record, i.e. what its LevelDB entry holds, give or take the
 * framing and the age-index entry.
 */
export function hintBytes(target: string, key: string, encodedRecordBytes: number): number {
  return target.length + key.length + encodedRecordBytes;
}

export class HintStore {
  private readonly space: HintSpace;
  private readonly clock: Clock;
  private readonly maxHintBytes: number;
  private readonly hintWindowMs: number;
  private readonly maxQueuedWrites: number;
  private state: 'new' | 'opening' | 'open' | 'closing' | 'closed' = 'new';
  private readonly perTarget = new Map<string, HintPending>();
  private entries = 0;
  private bytes = 0;
  private readonly counters = { stored: 0, superseded: 0, droppedFull: 0, droppedOld: 0, replayed: 0, expired: 0 };
  /** The last queued write; never rejects, so the next one always runs. */
  private tail: Promise<void> = Promise.resolve();
  private queued = 0;

  constructor(opts: HintStoreOptions) {
    const maxQueuedWrites = opts.maxQueuedWrites ?? MAX_QUEUED_WRITES_DEFAULT;
    assert(Number.isSafeInteger(opts.maxHintBytes) && opts.maxHintBytes >= 0, `maxHintBytes must be a non-negative integer, got ${opts.maxHintBytes}`);
    assert(Number.isSafeInteger(opts.hintWindowMs) && opts.hintWindowMs >= 0, `hintWindowMs must be a non-negative integer, got ${opts.hintWindowMs}`);
    assert(Number.isSafeInteger(maxQueuedWrites) && maxQueuedWrites >= 1, `maxQueuedWrites must be a positive integer, got ${maxQueuedWrites}`);
    this.space = 'sublevel' in opts.db ? hintSublevel(opts.db) : opts.db;
    this.clock = opts.clock;
    this.maxHintBytes = opts.maxHintBytes;
    this.hintWindowMs = opts.hintWindowMs;
    this.maxQueuedWrites = maxQueuedWrites;
  }

  /** Opens the sublevel and counts every target's hints and bytes from disk (O(hints held)). */
  async open(): Promise<void> {
    if (this.state !== 'new') throw new HintStoreStateError(this.state === 'closed' ? 'CLOSED' : 'ALREADY_OPEN', `open() on a hint store that is ${this.state}`);
    this.state = 'opening';
    try {
      await this.space.open();
      for await (const [k, v] of this.space.iterator({ gte: Buffer.from([HINT]), lt: Buffer.from([HINT + 1]) })) {
        const { target, key } = parseHintKey(k);
        decodeRecord(v); // throws CorruptRecordError: a hint we cannot replay must not be counted as one
        this.account(target, 1, hintBytes(target, key, v.length));
      }
      let ages = 0;
      for await (const k of this.space.keys({ gte: Buffer.from([AGE]), lt: Buffer.from([AGE + 1]) })) {
        parseAgeKey(k);
        ages++;
      }
      assert(ages === this.entries, `hint store: ${this.entries} hints but ${ages} age-index entries`);
      this.state = 'open';
    } catch (e) {
      this.state = 'closed';
      await this.space.close().catch(() => {});
      throw e;
    }
  }

  /**
   * Keeps `record` for `target` under `key`; resolves once it is durable. A hint already
   * held for (target, key) is replaced only by a greater HLC timestamp: the record with the
   * newest timestamp is the one worth replaying (concurrent siblings collapse to it here;
   * anti-entropy restores them), and an equal one is the same version sent again.
   */
  async add(target: string, key: string, record: StoredRecord): Promise<AddResult> {
    this.checkOpen();
    checkTarget(target);
    checkKey(key);
    checkRecord(record);
    const ts = record.version.ts;
    if (this.isOld(ts.wallMs, this.clock.now())) {
      this.counters.droppedOld++;
      return 'dropped-old';
    }
    const value = encodeRecord(record);
    const bytes = hintBytes(target, key, value.length);
    return this.serial(async () => {
      const k = hintKey(target, key);
      const heldBytes = await this.space.get(k);
      const held = heldBytes === undefined ? undefined : decodeRecord(heldBytes);
      if (held && compareHlc(held.version.ts, ts) >= 0) {
        this.counters.superseded++;
        return 'stored';
      }
      const heldCharge = heldBytes === undefined ? 0 : hintBytes(target, key, heldBytes.length);
      if (this.bytes - heldCharge + bytes > this.maxHintBytes) {
        this.counters.droppedFull++;
        return 'dropped-full';
      }
      const ops: Array<{ type: 'put'; key: Buffer; value: Uint8Array } | { type: 'del'; key: Buffer }> = [];
      if (held) ops.push({ type: 'del', key: ageKey(held.version.ts.wallMs, target, key) });
      ops.push({ type: 'put', key: k, value }, { type: 'put', key: ageKey(ts.wallMs, target, key), value: new Uint8Array(0) });
      await this.space.batch(ops);
      this.account(target, held ? 0 : 1, bytes - heldCharge);
      this.counters.stored++;
      return 'stored';
    });
  }

  /** Some hint held for `key` (for any target), or undefined: what /debug/local shows. */
  async find(key: string): Promise<{ target: string; record: StoredRecord } | undefined> {
    this.checkOpen();
    for (const target of this.targets()) {
      const bytes = await this.space.get(hintKey(target, key));
      if (bytes !== undefined) return { target, record: decodeRecord(bytes) };
    }
    return undefined;
  }

  /** Targets with at least one hint, in sorted order. */
  targets(): string[] {
    this.checkOpen();
    return [...this.perTarget.keys()].sort();
  }

  pending(target: string): HintPending {
    this.checkOpen();
    checkTarget(target);
    const p = this.perTarget.get(target);
    return { entries: p?.entries ?? 0, bytes: p?.bytes ?? 0 };
  }

  /**
   * The next hints of `target` after `afterKey` (exclusive; undefined: from the start), in
   * key byte order, at most `maxEntries` of them and at most `maxBytes` (hintBytes summed) —
   * except that a single hint larger than maxBytes is returned alone, so replay never
   * stalls. Empty when there are no more. Hints added after the call may or may not appear.
   */
  async batch(target: string, afterKey: string | undefined, maxEntries: number, maxBytes: number): Promise<HintEntry[]> {
    this.checkOpen();
    checkTarget(target);
    if (afterKey !== undefined) checkKey(afterKey);
    checkLimit('maxEntries', maxEntries, 1, HINT_ENTRIES_MAX);
    checkLimit('maxBytes', maxBytes, 1, Number.MAX_SAFE_INTEGER);
    const gt = afterKey === undefined ? targetBound(target, SEP) : hintKey(target, afterKey);
    const out: HintEntry[] = [];
    let bytes = 0;
    for await (const [k, v] of this.space.iterator({ gt, lt: targetBound(target, SEP + 1), limit: maxEntries })) {
      const hint = parseHintKey(k);
      assert(hint.target === target, `batch of ${target} read a hint of ${hint.target}`);
      const charge = hintBytes(target, hint.key, v.length);
      if (out.length > 0 && bytes + charge > maxBytes) break;
      out.push({ key: hint.key, record: decodeRecord(v) });
      bytes += charge;
    }
    assert(out.length <= maxEntries, 'batch exceeded maxEntries');
    assert(out.length <= 1 || bytes <= maxBytes, 'batch exceeded maxBytes');
    return out;
  }

  /**
   * Deletes the acknowledged hints of `target` whose stored timestamp still equals the
   * acknowledged one; a newer hint written since the batch was read survives (it still has
   * to be replayed). Keys not held are ignored (acknowledged twice, or expired meanwhile).
   * Resolves with the number deleted, once the deletion is durable.
   */
  async acknowledge(target: string, entries: readonly HintAck[]): Promise<number> {
    this.checkOpen();
    checkTarget(target);
    checkLimit('entries.length', entries.length, 0, HINT_ENTRIES_MAX);
    for (const e of entries) {
      checkKey(e.key);
      checkHlc(e.ts);
    }
    if (entries.length === 0) return 0;
    return this.serial(async () => {
      const keys = [...new Set(entries.map((e) => e.key))];
      const values = await this.space.getMany(keys.map((key) => hintKey(target, key)));
      const held = new Map<string, { ts: Hlc; bytes: number }>();
      keys.forEach((key, i) => {
        const v = values[i];
        if (v !== undefined) held.set(key, { ts: decodeRecord(v).version.ts, bytes: hintBytes(target, key, v.length) });
      });
      const ops: Array<{ type: 'del'; key: Buffer }> = [];
      let bytes = 0;
      for (const e of entries) {
        const h = held.get(e.key);
        if (!h || compareHlc(h.ts, e.ts) !== 0) continue;
        held.delete(e.key); // a key listed twice is deleted once
        ops.push({ type: 'del', key: hintKey(target, e.key) }, { type: 'del', key: ageKey(h.ts.wallMs, target, e.key) });
        bytes += h.bytes;
      }
      if (ops.length === 0) return 0;
      await this.space.batch(ops);
      const deleted = ops.length / 2;
      this.account(target, -deleted, -bytes);
      this.counters.replayed += deleted;
      return deleted;
    });
  }

  /**
   * Deletes up to `maxEntries` hints whose record is older than hintWindowMs, oldest first
   * (bounded work per call). Resolves with the number deleted; fewer than maxEntries means
   * none older is left.
   */
  async expire(maxEntries: number): Promise<number> {
    this.checkOpen();
    checkLimit('maxEntries', maxEntries, 1, HINT_ENTRIES_MAX);
    return this.serial(async () => {
      // Older than the window: now - wallMs > hintWindowMs, i.e. wallMs < cutoff (isOld's rule).
      const cutoff = this.clock.now() - this.hintWindowMs;
      if (cutoff <= 0) return 0;
      const found: Array<{ wallMs: number; target: string; key: string }> = [];
      for await (const k of this.space.keys({ gte: Buffer.from([AGE]), lt: ageBound(cutoff), limit: maxEntries })) found.push(parseAgeKey(k));
      if (found.length === 0) return 0;
      const values = await this.space.getMany(found.map((f) => hintKey(f.target, f.key)));
      const ops: Array<{ type: 'del'; key: Buffer }> = [];
      const freed = new Map<string, HintPending>();
      found.forEach((f, i) => {
        const v = values[i];
        assert(v !== undefined, `age index names a hint that is not held: ${f.target}/${f.key}`);
        assert(decodeRecord(v).version.ts.wallMs === f.wallMs, `age index of ${f.target}/${f.key} disagrees with its hint`);
        assert(this.isOld(f.wallMs, cutoff + this.hintWindowMs), 'expire picked a hint inside the window');
        ops.push({ type: 'del', key: hintKey(f.target, f.key) }, { type: 'del', key: ageKey(f.wallMs, f.target, f.key) });
        const p = freed.get(f.target) ?? { entries: 0, bytes: 0 };
        p.entries++;
        p.bytes += hintBytes(f.target, f.key, v.length);
        freed.set(f.target, p);
      });
      await this.space.batch(ops);
      for (const [target, p] of freed) this.account(target, -p.entries, -p.bytes);
      this.counters.expired += found.length;
      return found.length;
    });
  }

  /**
   * Every hint of `target` (or of every target, in sorted order), in batches of at most
   * `maxEntries` / `maxBytes` as batch() bounds them, for a decommissioning node to hand on.
   * It deletes nothing: hand each batch to its new holder, then acknowledge() it here.
   * Acknowledging between batches is safe (pages continue after the last key yielded).
   * Hints added meanwhile may or may not be yielded, so stop accepting hints first.
   */
  async *drain(maxEntries: number, maxBytes: number, target?: string): AsyncGenerator<{ target: string; entries: HintEntry[] }> {
    this.checkOpen();
    if (target !== undefined) checkTarget(target);
    checkLimit('maxEntries', maxEntries, 1, HINT_ENTRIES_MAX);
    checkLimit('maxBytes', maxBytes, 1, Number.MAX_SAFE_INTEGER);
    for (const t of target === undefined ? this.targets() : [target]) {
      let after: string | undefined;
      for (;;) {
        const entries = await this.batch(t, after, maxEntries, maxBytes);
        if (entries.length === 0) break;
        const last = entries[entries.length - 1]!.key;
        assert(after === undefined || last > after, 'drain must move forward');
        after = last;
        yield { target: t, entries };
      }
    }
  }

  stats(): HintStats {
    const c = this.counters;
    return {
      entries: this.entries,
      bytes: this.bytes,
      limitBytes: this.maxHintBytes,
      stored: c.stored,
      superseded: c.superseded,
      dropped: c.droppedFull + c.droppedOld,
      droppedFull: c.droppedFull,
      droppedOld: c.droppedOld,
      replayed: c.replayed,
      expired: c.expired,
    };
  }

  /** Waits for queued writes, then closes the sublevel (not the node's LevelDB). Idempotent. */
  async close(): Promise<void> {
    if (this.state === 'closed' || this.state === 'closing') return;
    this.state = 'closing';
    await this.tail;
    this.state = 'closed';
    await this.space.close();
  }

  private isOld(wallMs: number, now: number): boolean {
    return now - wallMs > this.hintWindowMs;
  }

  private checkOpen(): void {
    if (this.state === 'open') return;
    if (this.state === 'new' || this.state === 'opening') throw new HintStoreStateError('NOT_OPEN', 'hint store used before open() completed');
    throw new HintStoreStateError('CLOSED', 'hint store used after close()');
  }

  /** Runs writes one at a time in call order; at most maxQueuedWrites wait. */
  private serial<T>(op: () => Promise<T>): Promise<T> {
    if (this.queued >= this.maxQueuedWrites) return Promise.reject(new HintStoreBusyError(this.maxQueuedWrites));
    this.queued++;
    const result = this.tail.then(op);
    this.tail = result.then(
      () => {},
      () => {},
    );
    return result.finally(() => {
      this.queued--;
      assert(this.queued >= 0, 'hint write queue count went negative');
    });
  }

  private account(target: string, entries: number, bytes: number): void {
    const p = this.perTarget.get(target) ?? { entries: 0, bytes: 0 };
    p.entries += entries;
    p.bytes += bytes;
    this.entries += entries;
    this.bytes += bytes;
    assert(p.entries >= 0 && p.bytes >= 0, `hints of ${target} went negative: ${p.entries} entries, ${p.bytes} bytes`);
    assert((p.entries === 0) === (p.bytes === 0), `hints of ${target}: ${p.entries} entries but ${p.bytes} bytes`);
    assert(this.entries >= 0 && this.bytes >= 0, `hint totals went negative: ${this.entries} entries, ${this.bytes} bytes`);
    if (p.entries === 0) this.perTarget.delete(target);
    else this.perTarget.set(target, p);
  }
}

function checkTarget(target: string): void {
  // Printable ASCII without space: a superset of the CLI's node-id rule, and never NUL,
  // which ends the target in every key.
  if (typeof target !== 'string' || !/^[\x21-\x7e]+$/.test(target) || target.length > TARGET_MAX_BYTES) {
    throw new HintArgumentError('BAD_TARGET', `target must be 1..${TARGET_MAX_BYTES} printable ASCII characters without space, got ${JSON.stringify(target)}`);
  }
}

function checkKey(key: string): void {
  // Keys are byte strings held as latin1 (docs/DESIGN.md): one character per byte.
  if (typeof key !== 'string' || !keyIsValid(key) || !/^[\x00-\xff]*$/.test(key)) {
    throw new HintArgumentError('BAD_KEY', `not a valid key: ${JSON.stringify(key)}`);
  }
}

function checkHlc(ts: Hlc): void {
  if (
    ts === null || typeof ts !== 'object' ||
    !Number.isSafeInteger(ts.wallMs) || ts.wallMs < 0 ||
    !Number.isInteger(ts.logical) || ts.logical < 0 || ts.logical > LOGICAL_MAX
  ) {
    throw new HintArgumentError('BAD_RECORD', `not an HLC timestamp: ${JSON.stringify(ts)}`);
  }
}

function checkRecord(r: StoredRecord): void {
  if (r === null || typeof r !== 'object' || !(r.value instanceof Uint8Array) || r.version === null || typeof r.version !== 'object') {
    throw new HintArgumentError('BAD_RECORD', 'not a stored record');
  }
  checkHlc(r.version.ts);
}

function checkLimit(name: string, n: number, min: number, max: number): void {
  if (!Number.isSafeInteger(n) || n < min || n > max) throw new HintArgumentError('BAD_LIMIT', `${name} must be an integer in ${min}..${max}, got ${n}`);
}

/** 'h' target 0x00 key. */
function hintKey(target: string, key: string): Buffer {
  const b = Buffer.allocUnsafe(2 + target.length + key.length);
  let at = 0;
  b[at++] = HINT;
  at += b.write(target, at, 'latin1');
  b[at++] = SEP;
  at += b.write(key, at, 'latin1');
  assert(at === b.length, 'hint key not filled'); // allocUnsafe: a byte left unwritten would be garbage
  return b;
}

/** 'h' target <byte>: with 0x00 it precedes every hint of target, with 0x01 it follows them all. */
function targetBound(target: string, byte: number): Buffer {
  const b = Buffer.allocUnsafe(2 + target.length);
  b[0] = HINT;
  b.write(target, 1, 'latin1');
  b[1 + target.length] = byte;
  return b;
}

function parseHintKey(k: Buffer): { target: string; key: string } {
  const sep = k.indexOf(SEP, 1);
  assert(k[0] === HINT && sep > 1 && sep < k.length - 1, `malformed hint key ${k.toString('hex')}`);
  return { target: k.toString('latin1', 1, sep), key: k.toString('latin1', sep + 1) };
}

function writeU64(b: Buffer, n: number, offset: number): void {
  assert(Number.isSafeInteger(n) && n >= 0, `not a u64 time: ${n}`);
  b.writeUInt32BE(Math.floor(n / U32), offset);
  b.writeUInt32BE(n % U32, offset + 4);
}

/** 't' u64be(wallMs) target 0x00 key: sorted oldest first. */
function ageKey(wallMs: number, target: string, key: string): Buffer {
  const b = Buffer.allocUnsafe(10 + target.length + key.length);
  let at = 0;
  b[at++] = AGE;
  writeU64(b, wallMs, at);
  at += 8;
  at += b.write(target, at, 'latin1');
  b[at++] = SEP;
  at += b.write(key, at, 'latin1');
  assert(at === b.length, 'hint age key not filled'); // allocUnsafe: a byte left unwritten would be garbage
  return b;
}

/** 't' u64be(wallMs): precedes every age entry at wallMs, follows every earlier one. */
function ageBound(wallMs: number): Buffer {
  const b = Buffer.allocUnsafe(9);
  b[0] = AGE;
  writeU64(b, wallMs, 1);
  return b;
}

function parseAgeKey(k: Buffer): { wallMs: number; target: string; key: string } {
  const sep = k.indexOf(SEP, 9);
  assert(k[0] === AGE && k.length >= 12 && sep > 9 && sep < k.length - 1, `malformed hint age key ${k.toString('hex')}`);
  return { wallMs: k.readUInt32BE(1) * U32 + k.readUInt32BE(5), target: k.toString('latin1', 9, sep), key: k.toString('latin1', sep + 1) };
}
