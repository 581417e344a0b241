// The key-value semantics of one node over its Store: memcached's storage commands,
// counters, expiry, flush_all and the meta-command extras, independent of any wire
// format. Front-ends (memcached text, HTTP) parse, call this, and format the result.
//
// Every operation decides synchronously (reads are synchronous, see storage/store.ts),
// so read-modify-write operations are atomic without locks. An operation that wrote
// returns a promise that resolves once the write is durable; a read of a key whose
// write is not yet durable also waits for it, so no reply ever shows a value that a
// crash could still take back.
import type { Clock } from '../clock.js';
import { assert } from '../util/assert.js';
import {
  casUnique,
  compareHlc,
  HybridClock,
  nextVersion,
  type Hlc,
  type StoredRecord,
} from '../storage/record.js';
import type { Store } from '../storage/store.js';
import { baseClock, compareClocks, mergeRecords, sameVersions, versionsOf } from '../replication/versions.js';

export type Maybe<T> = T | Promise<T>;

export type StoreMode = 'set' | 'add' | 'replace' | 'append' | 'prepend' | 'cas';
export type StoreStatus = 'STORED' | 'NOT_STORED' | 'EXISTS' | 'NOT_FOUND' | 'TOO_LARGE';

export interface StoreResult {
  status: StoreStatus;
  /** The stored record, when status is STORED. */
  record?: StoredRecord;
}

export type DeltaResult =
  | { status: 'OK'; value: bigint; record: StoredRecord; created: boolean }
  | { status: 'NOT_FOUND' }
  | { status: 'NON_NUMERIC' }
  | { status: 'EXISTS' };

/** A live item as the front-ends see it. */
export interface Item {
  readonly key: string;
  readonly record: StoredRecord;
}

/** Counters named as memcached's `stats` names them. */
export interface KvCounters {
  cmd_get: number;
  cmd_set: number;
  cmd_flush: number;
  cmd_touch: number;
  get_hits: number;
  get_misses: number;
  get_expired: number;
  get_flushed: number;
  delete_hits: number;
  delete_misses: number;
  incr_hits: number;
  incr_misses: number;
  decr_hits: number;
  decr_misses: number;
  cas_hits: number;
  cas_misses: number;
  cas_badval: number;
  touch_hits: number;
  touch_misses: number;
  store_too_large: number;
  total_items: number;
  expired_swept: number;
  tombstones_purged: number;
  siblings_collapsed: number;
}

export interface LocalKvOptions {
  nodeId: string;
  store: Store;
  clock: Clock;
  /** Largest item, counted as memcached counts it (see itemSize). */
  maxItemSize: number;
  /** Tombstones younger than this are kept by the sweep. */
  tombstoneGraceMs: number;
  /** Concurrent versions one key keeps (replication; `--max-siblings`). */
  maxSiblings?: number;
}

/**
 * What a cluster adds to a local write: `replicate` is called after every record this
 * node writes for a client (not for records merged from replicas); its promise settles
 * when the write reached its quorum, and the client's reply waits for it. `changed` is
 * told of every record put or removed (anti-entropy keeps its trees with it), and
 * `tombstonePurgeBefore` bounds what the sweep may purge (only tombstones anti-entropy
 * has covered since they were written).
 */
export interface KvHooks {
  replicate?(key: string, record: StoredRecord, durable: Promise<void> | void): Promise<void> | void;
  changed?(key: string, record: StoredRecord | undefined): void;
  tombstonePurgeBefore?(): number;
}

/** memcached's exptime rule: values above 30 days are absolute Unix seconds. */
export const REALTIME_MAXDELTA_S = 60 * 60 * 24 * 30;

/**
 * How many bytes memcached charges an item (1.6.18 with cas on): item header 48 +
 * cas 8 + key + 1 + value + "\r\n" 2, plus 4 for non-zero client flags. Using the
 * same rule makes the largest storable value identical in both servers.
 */
export function itemSize(keyBytes: number, valueBytes: number, flags: number): number {
  return 48 + 8 + keyBytes + 1 + valueBytes + 2 + (flags !== 0 ? 4 : 0);
}

/** memcached exptime (seconds, relative up to 30 days, else absolute) -> absolute ms; 0 = never. -1 = already expired. */
export function expiryFromExptime(exptime: number, nowMs: number): number {
  if (exptime === 0) return 0;
  if (exptime < 0) return -1;
  if (exptime > REALTIME_MAXDELTA_S) {
    const ms = exptime * 1000;
    return ms <= nowMs ? -1 : ms;
  }
  return nowMs + exptime * 1000;
}

const U64_MAX = (1n << 64n) - 1n;

/**
 * memcached's safe_strtoull over a stored value: leading white space and '+' accepted,
 * parsing stops at white space, anything else (or a '-' with a negative result) fails.
 */
export function parseStoredU64(value: Buffer): bigint | undefined {
  if (value.length === 0) return undefined;
  let i = 0;
  const isSpace = (c: number) => c === 0x20 || (c >= 0x09 && c <= 0x0d);
  while (i < value.length && isSpace(value[i]!)) i++;
  let neg = false;
  if (i < value.length && (value[i] === 0x2b || value[i] === 0x2d)) {
    neg = value[i] === 0x2d;
    i++;
  }
  const start = i;
  while (i < value.length && value[i]! >= 0x30 && value[i]! <= 0x39) i++;
  if (i < value.length && !isSpace(value[i]!)) return undefined;
  // strtoull converted nothing: memcached's safe_strtoull refuses (str == endptr).
  if (i === start) return undefined;
  let n = BigInt(value.toString('latin1', start, i));
  if (n > U64_MAX) return undefined;
  if (neg) {
    // strtoull negates modulo 2^64; memcached refuses a result that looks negative.
    n = (U64_MAX + 1n - n) & U64_MAX;
    if (n >= 1n << 63n) return undefined;
  }
  return n;
}

interface FlushMarker {
  /** Records last written at or before this timestamp are gone... */
  ts: Hlc;
  /** ...from this moment on. */
  effectiveAtMs: number;
  /** When flush_all was given (a timestamp the clock issued). */
  issued: Hlc;
}

/** What the meta commands track per item beyond the record: memcached's win/stale bits. */
interface MetaState {
  winTokenSent: boolean;
  stale: boolean;
}

const META_STATE_MAX = 100_000;

export class LocalKv {
  readonly counters: KvCounters = {
    cmd_get: 0, cmd_set: 0, cmd_flush: 0, cmd_touch: 0, get_hits: 0, get_misses: 0,
    get_expired: 0, get_flushed: 0, delete_hits: 0, delete_misses: 0, incr_hits: 0,
    incr_misses: 0, decr_hits: 0, decr_misses: 0, cas_hits: 0, cas_misses: 0,
    cas_badval: 0, touch_hits: 0, touch_misses: 0, store_too_large: 0, total_items: 0,
    expired_swept: 0, tombstones_purged: 0, siblings_collapsed: 0,
  };
  /** Set by a cluster (see KvHooks). */
  hooks: KvHooks = {};
  readonly hlc: HybridClock;
  private flush: FlushMarker | undefined;
  /** Bounded: the oldest entries go first (Map keeps insertion order). */
  private readonly meta = new Map<string, MetaState>();
  private sweepCursor: string | undefined;
  /** Where the sweep goes on in a store's own order (Store.sweepScan). */
  private sweepSlot = 0;

  constructor(private readonly opts: LocalKvOptions) {
    assert(opts.maxItemSize > 0, 'maxItemSize must be positive');
    this.hlc = new HybridClock(() => opts.clock.now());
  }

  get store(): Store {
    return this.opts.store;
  }

  async open(): Promise<void> {
    await this.opts.store.open();
    const highest = this.opts.store.highestTimestamp();
    if (highest) this.hlc.observe(highest);
    // The clock's high-water mark survives the sweep removing the newest records.
    const mark = await this.opts.store.getMeta('hlc');
    if (mark) this.hlc.observe(JSON.parse(Buffer.from(mark).toString('utf8')) as Hlc);
    const marker = await this.opts.store.getMeta('flush');
    if (marker) {
      const m = JSON.parse(Buffer.from(marker).toString('utf8')) as FlushMarker;
      this.flush = m;
      // Only a timestamp the clock issued; a delayed flush's `ts` lies in the future.
      this.hlc.observe(m.issued);
    }
  }

  now(): number {
    return this.opts.clock.now();
  }

  // ---- reads -------------------------------------------------------------------------

  /** The live record under key (not a tombstone, not expired, not flushed), without counting. */
  peek(key: string): StoredRecord | undefined {
    const r = this.opts.store.get(key);
    if (r === undefined || r.tombstone) return undefined;
    const now = this.now();
    if (r.expiresAtMs !== 0 && r.expiresAtMs <= now) return undefined;
    if (this.isFlushed(r, now)) return undefined;
    return r;
  }

  /** A get of one key, counted as memcached counts it (one cmd_get per key). */
  get(key: string): Maybe<StoredRecord | undefined> {
    this.counters.cmd_get++;
    const r = this.lookupCounted(key);
    if (r) this.accessed(r);
    return this.afterDurable(key, r);
  }

  /**
   * A get of every live concurrent version (siblings), newest first, counted as one get:
   * a delete that is the newest version does not hide a live version concurrent with it.
   */
  getVersions(key: string): Maybe<StoredRecord[]> {
    this.counters.cmd_get++;
    const r = this.opts.store.get(key);
    const now = this.now();
    const live = r ? versionsOf(r).filter((v) => !v.tombstone && (v.expiresAtMs === 0 || v.expiresAtMs > now) && !this.isFlushed(v, now)) : [];
    if (live.length > 0) this.counters.get_hits++;
    else this.counters.get_misses++;
    return this.afterDurable(key, live);
  }

  /** mg: a counted get that leaves the fetched bit alone (the caller reports h first). */
  metaLookup(key: string): StoredRecord | undefined {
    this.counters.cmd_get++;
    return this.lookupCounted(key);
  }

  /** gat/gats: a get that also replaces the expiry of a hit. */
  getAndTouch(key: string, expiresAtMs: number): Maybe<StoredRecord | undefined> {
    this.counters.cmd_get++;
    this.counters.cmd_touch++;
    const r = this.lookupCounted(key);
    if (!r) {
      this.counters.touch_misses++;
      return undefined;
    }
    this.counters.touch_hits++;
    this.accessed(r);
    // The reply shows the item as it was fetched; gat -1 returns it once, then it is gone.
    return this.write(key, this.retouched(r, expiresAtMs), r);
  }

  // ---- writes ------------------------------------------------------------------------

  /**
   * set/add/replace/append/prepend/cas. `casIn` is the client's cas unique for 'cas'.
   * append/prepend keep the item's own flags and expiry, as memcached does.
   */
  storeItem(mode: StoreMode, key: string, value: Buffer, flags: number, expiresAtMs: number, casIn?: bigint): Maybe<StoreResult> {
    this.counters.cmd_set++;
    const raw = this.opts.store.get(key);
    const cur = this.peek(key);
    // memcached sizes the new item before it looks for the old one (add of a huge value
    // answers "too large", not NOT_STORED); append/prepend are sized once combined.
    if (mode !== 'append' && mode !== 'prepend' && itemSize(key.length, value.length, flags) > this.opts.maxItemSize) {
      this.counters.store_too_large++;
      if (mode === 'set' && cur) return this.write(key, this.tombstoneFor(key), { status: 'TOO_LARGE' } as StoreResult);
      return { status: 'TOO_LARGE' };
    }
    let next: Buffer = value;
    let nextFlags = flags;
    let nextExpiry = expiresAtMs;
    switch (mode) {
      case 'set':
        break;
      case 'add':
        if (cur) {
          // memcached bumps the existing item in the LRU on a failed add.
          cur.accessedMs = this.now();
          return { status: 'NOT_STORED' };
        }
        break;
      case 'replace':
        if (!cur) return { status: 'NOT_STORED' };
        break;
      case 'append':
      case 'prepend':
        if (!cur) return { status: 'NOT_STORED' };
        next = mode === 'append' ? Buffer.concat([cur.value, value]) : Buffer.concat([value, cur.value]);
        nextFlags = cur.flags;
        nextExpiry = cur.expiresAtMs;
        break;
      case 'cas':
        assert(casIn !== undefined, 'cas needs a cas unique');
        if (!cur) {
          this.counters.cas_misses++;
          return { status: 'NOT_FOUND' };
        }
        if (casUnique(cur.version.ts) !== casIn) {
          this.counters.cas_badval++;
          return { status: 'EXISTS' };
        }
        this.counters.cas_hits++;
        break;
      default: {
        const never: never = mode;
        throw new Error(`unknown store mode ${String(never)}`);
      }
    }
    if (itemSize(key.length, next.length, nextFlags) > this.opts.maxItemSize) {
      this.counters.store_too_large++;
      // As memcached: a failed set must not leave the old value to be served instead.
      if (mode === 'set' && cur) return this.write(key, this.tombstoneFor(key), { status: 'TOO_LARGE' } as StoreResult);
      return { status: 'TOO_LARGE' };
    }
    const record = this.makeRecord(raw, next, nextFlags, nextExpiry);
    return this.write(key, record, { status: 'STORED', record } as StoreResult);
  }

  /**
   * A storage command whose value was refused before it was read (too large): memcached
   * answers SERVER_ERROR and, for set, removes the old value so that no stale value is
   * served in place of the one the client meant to write.
   */
  rejectTooLarge(mode: StoreMode, key: string): Maybe<void> {
    this.counters.store_too_large++;
    if (mode !== 'set') return undefined;
    if (!this.peek(key)) return undefined;
    return this.write(key, this.tombstoneFor(key), undefined);
  }

  delete(key: string, casIn?: bigint): Maybe<'DELETED' | 'NOT_FOUND' | 'EXISTS'> {
    const cur = this.peek(key);
    if (!cur) {
      this.counters.delete_misses++;
      return 'NOT_FOUND';
    }
    if (casIn !== undefined && casUnique(cur.version.ts) !== casIn) return 'EXISTS';
    this.counters.delete_hits++;
    return this.write(key, this.tombstoneFor(key), 'DELETED' as const);
  }

  touch(key: string, expiresAtMs: number): Maybe<'TOUCHED' | 'NOT_FOUND'> {
    this.counters.cmd_touch++;
    const cur = this.peek(key);
    if (!cur) {
      this.counters.touch_misses++;
      return 'NOT_FOUND';
    }
    this.counters.touch_hits++;
    cur.accessedMs = this.now();
    return this.write(key, this.retouched(cur, expiresAtMs), 'TOUCHED' as const);
  }

  /**
   * incr/decr (and ma). incr wraps modulo 2^64, decr stops at 0. A shorter result is
   * padded with spaces to the old length, as memcached 1.6.18 rewrites in place.
   * With `create`, a miss stores `create.initial` (returned un-incremented, as ma N does).
   */
  delta(
    key: string,
    incr: boolean,
    amount: bigint,
    opts: { casIn?: bigint; create?: { initial: bigint; expiresAtMs: number }; expiresAtMs?: number } = {},
  ): Maybe<DeltaResult> {
    const cur = this.peek(key);
    if (!cur) {
      if (incr) this.counters.incr_misses++;
      else this.counters.decr_misses++;
      if (!opts.create) return { status: 'NOT_FOUND' };
      const value = opts.create.initial;
      const record = this.makeRecord(this.opts.store.get(key), Buffer.from(value.toString(), 'latin1'), 0, opts.create.expiresAtMs);
      return this.write(key, record, { status: 'OK', value, record, created: true } as DeltaResult);
    }
    if (opts.casIn !== undefined && casUnique(cur.version.ts) !== opts.casIn) return { status: 'EXISTS' };
    const n = parseStoredU64(cur.value);
    if (n === undefined) return { status: 'NON_NUMERIC' };
    if (incr) this.counters.incr_hits++;
    else this.counters.decr_hits++;
    const value = incr ? (n + amount) & U64_MAX : n > amount ? n - amount : 0n;
    let text = value.toString();
    if (text.length < cur.value.length) text = text.padEnd(cur.value.length, ' ');
    const record = this.makeRecord(cur, Buffer.from(text, 'latin1'), cur.flags, opts.expiresAtMs ?? cur.expiresAtMs);
    return this.write(key, record, { status: 'OK', value, record, created: false } as DeltaResult);
  }

  /** flush_all [delay]: items last written before now (+delay) vanish (at now + delay). */
  flushAll(delaySeconds: number): Maybe<void> {
    this.counters.cmd_flush++;
    const now = this.now();
    const issued = this.hlc.tick();
    const marker: FlushMarker =
      delaySeconds > 0
        ? { ts: { wallMs: now + delaySeconds * 1000, logical: 0xffff }, effectiveAtMs: now + delaySeconds * 1000, issued }
        : { ts: issued, effectiveAtMs: now, issued };
    this.flush = marker;
    this.meta.clear();
    return this.opts.store.putMeta('flush', Buffer.from(JSON.stringify(marker), 'utf8'));
  }

  /**
   * A replica's record arriving (replica write, read repair, hint replay, anti-entropy):
   * merged with what this node holds by version (a dominated version goes, concurrent ones
   * stay as siblings). Returns whether the stored record changed; durable when resolved.
   */
  merge(key: string, incoming: StoredRecord): Maybe<boolean> {
    this.hlc.observe(incoming.version.ts);
    const cur = this.opts.store.get(key);
    let next = incoming;
    const single = cur !== undefined && !cur.siblings?.length && !incoming.siblings?.length;
    // The common cases, one version on each side, decided by the clocks alone.
    const order = single ? compareClocks(incoming.version.clock, cur.version.clock) : undefined;
    if (order === 'before' || (order === 'equal' && sameVersions(incoming, cur!))) return this.afterDurable(key, false);
    if (order === 'after') {
      // Newer: replaces (below).
    } else if (cur) {
      const m = mergeRecords([cur, incoming], this.opts.maxSiblings ?? 16);
      this.counters.siblings_collapsed += m.collapsed;
      if (sameVersions(m.record, cur)) return this.afterDurable(key, false);
      next = m.record;
    } else if (incoming.siblings?.length) {
      next = mergeRecords([incoming], this.opts.maxSiblings ?? 16).record;
    }
    next = { ...next, fetched: false, accessedMs: this.now() };
    if (next.value.length > 0 || next.tombstone) this.meta.delete(key);
    const p = this.opts.store.put(key, next);
    this.hooks.changed?.(key, next);
    return p ? p.then(() => true) : true;
  }

  /** The record as stored, tombstones and siblings included (replication, /debug/local). */
  raw(key: string): StoredRecord | undefined {
    return this.opts.store.get(key);
  }

  // ---- meta-command state (h, l, W/X/Z flags) ----------------------------------------

  metaState(key: string): MetaState | undefined {
    return this.meta.get(key);
  }

  /** Marks an item stale (md I / ms I): it is served with X until re-set; the next fetch wins. */
  markStale(key: string): void {
    const s = this.ensureMeta(key);
    s.stale = true;
    s.winTokenSent = false;
  }

  /** The win-token protocol of mg N/R: returns true when this caller wins the right to recache. */
  claimWin(key: string): boolean {
    const s = this.ensureMeta(key);
    if (s.winTokenSent) return false;
    s.winTokenSent = true;
    return true;
  }

  /** Creates the empty placeholder item of mg N (vivify on miss). */
  vivify(key: string, expiresAtMs: number): Maybe<StoredRecord> {
    const record = this.makeRecord(this.opts.store.get(key), Buffer.alloc(0), 0, expiresAtMs);
    const s = this.ensureMeta(key);
    s.winTokenSent = true;
    return this.write(key, record, record);
  }

  /** Sets the expiry of a live record without changing its version (mg T, ma T). */
  setExpiry(key: string, expiresAtMs: number): Maybe<StoredRecord | undefined> {
    const cur = this.peek(key);
    if (!cur) return undefined;
    const r = this.retouched(cur, expiresAtMs);
    return this.write(key, r, r);
  }

  /** Marks a fetch for `h`/`l` without counting a get (mg without u). */
  noteFetch(r: StoredRecord): void {
    this.accessed(r);
  }

  // ---- background --------------------------------------------------------------------

  /**
   * One bounded step of the background sweep: removes expired and flushed records and
   * tombstones older than the grace period. Returns true when it reached the end of the
   * key space (the next step starts over).
   */
  async sweepStep(limit: number): Promise<boolean> {
    const now = this.now();
    const doomed: string[] = [];
    const purgeable = (r: StoredRecord) => now - r.version.ts.wallMs > this.opts.tombstoneGraceMs && r.version.ts.wallMs < (this.hooks.tombstonePurgeBefore?.() ?? Infinity);
    const visit = (key: string, r: StoredRecord): void => {
      if (r.tombstone) {
        if (purgeable(r)) doomed.push(key);
      } else if ((r.expiresAtMs !== 0 && r.expiresAtMs <= now) || this.isFlushed(r, now)) {
        doomed.push(key);
      }
    };
    // A store with an order of its own (memory) is swept in it: key order would cost it a
    // pass over every record per page.
    const store = this.opts.store;
    let finished: boolean;
    if (store.sweepScan) {
      const next = await store.sweepScan(this.sweepSlot, limit, visit);
      this.sweepSlot = next ?? 0;
      finished = next === undefined;
    } else {
      const last = await store.scan(this.sweepCursor, limit, visit);
      this.sweepCursor = last;
      finished = last === undefined;
    }
    const writes: Promise<void>[] = [];
    // Removing records may remove the newest versions the clock has issued: keep its mark.
    if (doomed.length > 0) await this.opts.store.putMeta('hlc', Buffer.from(JSON.stringify(this.hlc.peek()), 'utf8'));
    for (const key of doomed) {
      // Re-check: the record may have been rewritten since the scan saw it.
      const r = this.opts.store.get(key);
      if (!r) continue;
      const purgeTombstone = r.tombstone && purgeable(r);
      const expired = !r.tombstone && ((r.expiresAtMs !== 0 && r.expiresAtMs <= now) || this.isFlushed(r, now));
      if (!purgeTombstone && !expired) continue;
      if (purgeTombstone) this.counters.tombstones_purged++;
      else this.counters.expired_swept++;
      this.meta.delete(key);
      const p = this.opts.store.remove(key);
      this.hooks.changed?.(key, undefined);
      if (p) writes.push(p);
    }
    await Promise.all(writes);
    return finished;
  }

  // ---- internals ---------------------------------------------------------------------

  private isFlushed(r: StoredRecord, now: number): boolean {
    const f = this.flush;
    return f !== undefined && now >= f.effectiveAtMs && compareHlc(r.version.ts, f.ts) <= 0;
  }

  /** peek, counting hits, misses, expired and flushed reads as memcached does. */
  private lookupCounted(key: string): StoredRecord | undefined {
    const r = this.opts.store.get(key);
    if (r === undefined || r.tombstone) {
      this.counters.get_misses++;
      return undefined;
    }
    const now = this.now();
    if (r.expiresAtMs !== 0 && r.expiresAtMs <= now) {
      this.counters.get_misses++;
      this.counters.get_expired++;
      return undefined;
    }
    if (this.isFlushed(r, now)) {
      this.counters.get_misses++;
      this.counters.get_flushed++;
      return undefined;
    }
    this.counters.get_hits++;
    return r;
  }

  /**
   * A new expiry for a live record: a new version (its clock moves, so replicas take it
   * over the old one) that keeps the timestamp, so the cas unique stays as memcached keeps
   * it on touch.
   */
  private retouched(cur: StoredRecord, expiresAtMs: number): StoredRecord {
    const { siblings: _dropped, ...rest } = cur;
    return { ...rest, expiresAtMs, version: nextVersion({ clock: baseClock(cur), ts: cur.version.ts }, this.opts.nodeId, cur.version.ts) };
  }

  private makeRecord(prev: StoredRecord | undefined, value: Buffer, flags: number, expiresAtMs: number): StoredRecord {
    const ts = this.hlc.tick();
    return {
      value,
      flags,
      expiresAtMs,
      version: nextVersion(prev ? { clock: baseClock(prev), ts: prev.version.ts } : undefined, this.opts.nodeId, ts),
      tombstone: false,
      fetched: false,
      accessedMs: ts.wallMs,
    };
  }

  private tombstoneFor(key: string): StoredRecord {
    const prev = this.opts.store.get(key);
    const ts = this.hlc.tick();
    const base = prev ? { clock: baseClock(prev), ts: prev.version.ts } : undefined;
    return { value: Buffer.alloc(0), flags: 0, expiresAtMs: 0, version: nextVersion(base, this.opts.nodeId, ts), tombstone: true, fetched: false, accessedMs: ts.wallMs };
  }

  /** Apply a write; the result is delivered once the write is durable. */
  private write<T>(key: string, record: StoredRecord, result: T): Maybe<T> {
    if (!record.tombstone) this.counters.total_items++;
    if (record.value.length > 0 || record.tombstone) this.meta.delete(key);
    const p = this.opts.store.put(key, record);
    const h = this.hooks;
    if (h.changed) h.changed(key, record);
    const q = h.replicate ? h.replicate(key, record, p) : p;
    return q ? q.then(() => result) : result;
  }

  private afterDurable<T>(key: string, result: T): Maybe<T> {
    const p = this.opts.store.pending(key);
    return p ? p.then(() => result) : result;
  }

  private accessed(r: StoredRecord): void {
    r.fetched = true;
    r.accessedMs = this.now();
  }

  private ensureMeta(key: string): MetaState {
    let s = this.meta.get(key);
    if (!s) {
      if (this.meta.size >= META_STATE_MAX) {
        const oldest = this.meta.keys().next().value as string;
        this.meta.delete(oldest);
      }
      s = { winTokenSent: false, stale: false };
      this.meta.set(key, s);
    }
    return s;
  }
}
