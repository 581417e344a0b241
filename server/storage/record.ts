// A stored record and its version. The shape is the cluster's from the start: a vector
// clock (node id -> counter) and a hybrid logical clock timestamp. On a single node only
// the node's own vector-clock entry moves; replication (later) compares whole clocks.
//
// Invariants: `ts` of successive versions written by one node strictly increases (the
// HLC guarantees it), so `casUnique(ts)` differs for every modification; a tombstone has
// an empty value and stands for "deleted at this version".
import { Decoder, Encoder } from '@msgpack/msgpack';
import { assert } from '../util/assert.js';

/** Hybrid logical clock timestamp: wall milliseconds and a logical counter (< 2^16). */
export interface Hlc {
  readonly wallMs: number;
  readonly logical: number;
}

export type VectorClock = Readonly<Record<string, number>>;

export interface Version {
  readonly clock: VectorClock;
  readonly ts: Hlc;
}

export interface StoredRecord {
  /** Value bytes (empty for a tombstone). */
  readonly value: Buffer;
  /** memcached client flags, unsigned 32-bit. */
  readonly flags: number;
  /** Absolute expiry in Unix ms; 0 = never. */
  readonly expiresAtMs: number;
  readonly version: Version;
  readonly tombstone: boolean;
  /** Not persisted: whether a get has fetched it (mg h), and when it was last touched (mg l). */
  fetched: boolean;
  accessedMs: number;
  /**
   * Concurrent versions kept beside this one (replication: writes no replica saw in order).
   * This record is the last-writer-wins newest of the set and what a plain read returns;
   * each sibling is pairwise concurrent with it and the others, and has no siblings itself.
   * Absent or empty: no conflict.
   */
  readonly siblings?: readonly StoredRecord[];
}

export const LOGICAL_MAX = 0xffff;

export function compareHlc(a: Hlc, b: Hlc): number {
  return a.wallMs !== b.wallMs ? a.wallMs - b.wallMs : a.logical - b.logical;
}

/**
 * The memcached cas unique of a version: 64-bit, wallMs * 2^16 + logical. Unique per
 * modification on a node, and it grows with time, so a restarted node never reissues one.
 */
export function casUnique(ts: Hlc): bigint {
  return (BigInt(ts.wallMs) << 16n) | BigInt(ts.logical);
}

/** Decimal text of the cas unique, computed without BigInt while it fits a double exactly. */
export function casText(ts: Hlc): string {
  const n = ts.wallMs * 65536 + ts.logical;
  return Number.isSafeInteger(n) ? String(n) : casUnique(ts).toString();
}

/** The next version of a record written by `nodeId`, after `prev` (if any). */
export function nextVersion(prev: Version | undefined, nodeId: string, ts: Hlc): Version {
  const counter = (prev?.clock[nodeId] ?? 0) + 1;
  return { clock: sortedClock({ ...prev?.clock, [nodeId]: counter }), ts };
}

/** The clock with its ids in ascending order, so every replica encodes one version alike. */
export function sortedClock(clock: VectorClock): VectorClock {
  const ids = Object.keys(clock);
  let sorted = true;
  for (let i = 1; i < ids.length && sorted; i++) sorted = ids[i - 1]! < ids[i]!;
  if (sorted) return clock;
  return Object.fromEntries(ids.sort().map((id) => [id, clock[id]!]));
}

/**
 * A hybrid logical clock (Kulkarni et al.): timestamps never go backwards, even when the
 * wall clock does, and two calls never return the same timestamp.
 */
export class HybridClock {
  private last: Hlc = { wallMs: 0, logical: 0 };

  constructor(private readonly wallMs: () => number) {}

  /** A timestamp strictly greater than every one returned or observed before. */
  tick(): Hlc {
    const physical = this.wallMs();
    let next: Hlc;
    if (physical > this.last.wallMs) next = { wallMs: physical, logical: 0 };
    else if (this.last.logical < LOGICAL_MAX) next = { wallMs: this.last.wallMs, logical: this.last.logical + 1 };
    else next = { wallMs: this.last.wallMs + 1, logical: 0 };
    assert(compareHlc(next, this.last) > 0, 'hlc must move forward');
    this.last = next;
    return next;
  }

  /** Never issue a timestamp at or below one already seen (a stored record, a peer's). */
  observe(ts: Hlc): void {
    if (compareHlc(ts, this.last) > 0) this.last = ts;
  }

  peek(): Hlc {
    return this.last;
  }
}

// msgpack with explicit limits: the decoder's defaults accept 4 GiB strings and arrays.
const encoder = new Encoder({ ignoreUndefined: true });
const decoder = new Decoder({
  maxStrLength: 1024,
  maxBinLength: 512 * 1024 * 1024,
  maxArrayLength: 32,
  maxMapLength: 4096,
  maxExtLength: 0,
});

/** Record format version, first element of the encoded array. */
const FORMAT = 1;

/** Most concurrent versions one record may carry beside itself (`--max-siblings` is at most this + 1). */
export const SIBLINGS_MAX = 31;

function versionFields(r: StoredRecord): unknown[] {
  return [r.value, r.flags, r.expiresAtMs, r.version.clock, r.version.ts.wallMs, r.version.ts.logical, r.tombstone ? 1 : 0];
}

/**
 * [format, value, flags, expiresAtMs, clock, wallMs, logical, tombstone] and, only when
 * there are siblings, a ninth element: an array of [value, ..., tombstone] per sibling.
 * A record without siblings encodes exactly as before siblings existed.
 */
export function encodeRecord(r: StoredRecord): Uint8Array {
  const fields = [FORMAT, ...versionFields(r)];
  if (r.siblings && r.siblings.length > 0) fields.push(r.siblings.map(versionFields));
  return encoder.encode(fields);
}

export class CorruptRecordError extends Error {
  override name = 'CorruptRecordError';
}

function isPlainClock(c: unknown): c is Record<string, number> {
  if (c === null || typeof c !== 'object' || Array.isArray(c)) return false;
  for (const v of Object.values(c)) if (!Number.isSafeInteger(v) || (v as number) < 0) return false;
  return true;
}

/** Decodes a stored record; anything that is not exactly a record of this format throws CorruptRecordError. */
export function decodeRecord(bytes: Uint8Array): StoredRecord {
  let a: unknown;
  try {
    a = decoder.decode(bytes);
  } catch (e) {
    throw new CorruptRecordError(`undecodable record: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (!Array.isArray(a) || a[0] !== FORMAT || (a.length !== 8 && a.length !== 9)) throw new CorruptRecordError('unknown record format');
  const record = decodeVersionFields(a.slice(1, 8));
  if (a.length === 8) return record;
  const sibs = a[8] as unknown;
  if (!Array.isArray(sibs) || sibs.length === 0 || sibs.length > SIBLINGS_MAX || !sibs.every((x) => Array.isArray(x) && x.length === 7)) {
    throw new CorruptRecordError('bad siblings');
  }
  return { ...record, siblings: sibs.map((x) => decodeVersionFields(x as unknown[])) };
}

function decodeVersionFields(a: unknown[]): StoredRecord {
  const [value, flags, expiresAtMs, clock, wallMs, logical, tombstone] = a;
  if (
    !(value instanceof Uint8Array) ||
    !Number.isInteger(flags) || (flags as number) < 0 || (flags as number) > 0xffffffff ||
    !Number.isSafeInteger(expiresAtMs) || (expiresAtMs as number) < -1 ||
    !isPlainClock(clock) ||
    !Number.isSafeInteger(wallMs) || (wallMs as number) < 0 ||
    !Number.isInteger(logical) || (logical as number) < 0 || (logical as number) > LOGICAL_MAX ||
    (tombstone !== 0 && tombstone !== 1)
  ) {
    throw new CorruptRecordError('bad record fields');
  }
  return {
    value: Buffer.from(value.buffer, value.byteOffset, value.byteLength),
    flags: flags as number,
    expiresAtMs: expiresAtMs as number,
    version: { clock, ts: { wallMs: wallMs as number, logical: logical as number } },
    tombstone: tombstone === 1,
    fetched: false,
    accessedMs: wallMs as number,
  };
}
