// Versions of one key across replicas: the vector-clock partial order, last-writer-wins
// (LWW) as a total order, and `resolve`, which turns the records that replicas hold into
// what a reader sees and what read repair writes back. Pure: no I/O, no clocks.
//
// Invariants:
// * Causality beats timestamps: a version whose clock is dominated is dropped, whatever
//   its timestamp says (HLCs of different nodes can disagree; clocks cannot lie).
// * `lww` is a total order on record contents (0 only for records equal in every
//   persisted field), so resolution never depends on the order of its input.
// * Every record `resolve` returns carries a canonical clock (keys sorted, no zero
//   counters), so two replicas resolving the same versions encode byte-identical records
//   (anti-entropy hashes those bytes).
// * Tombstones are versions like any other: a delete can win, lose, or be a sibling.
// * Input records are never mutated; a changed clock means a fresh object.
import { assert } from '../util/assert.js';
import { compareHlc, type StoredRecord, type VectorClock, type Version } from '../storage/record.js';

/** How clock `a` stands to clock `b` in the vector-clock partial order. */
export type ClockOrder = 'equal' | 'before' | 'after' | 'concurrent';

export interface ResolveOptions {
  /** Return concurrent versions as siblings (TS client option) instead of collapsing them LWW. */
  readonly siblings: boolean;
  /** Most siblings returned (`--max-siblings`, default 16); at least 1. Ignored when `siblings` is false. */
  readonly maxSiblings: number;
}

export interface Resolution {
  /**
   * The version a single-valued reader sees and read repair writes: the LWW-newest
   * surviving version, carrying the merged clock of every version collapsed into it.
   */
  readonly winner: StoredRecord;
  /**
   * Every version left standing, newest first by LWW: `siblings[0]` is `winner`, the
   * others are pairwise concurrent with it and with each other. Exactly `[winner]` when
   * there was no conflict or `siblings` was false.
   */
  readonly siblings: StoredRecord[];
  /**
   * Concurrent versions folded into the winner because of the `maxSiblings` bound (the
   * "siblings collapsed" counter). 0 when `siblings` is false: there LWW resolution is
   * the ordinary path, not a collapse. Versions with equal clocks are one version and
   * are never counted.
   */
  readonly collapsed: number;
}

/** Counter of `id` in `clock`; a missing entry counts 0 (own properties only: a node id may be 'constructor'). */
function counter(clock: VectorClock, id: string): number {
  return Object.hasOwn(clock, id) ? clock[id]! : 0;
}

function assertClock(clock: VectorClock): void {
  for (const id of Object.keys(clock)) {
    const n = clock[id];
    assert(Number.isSafeInteger(n) && n! >= 0, `vector clock counter of ${JSON.stringify(id)} must be a non-negative integer`);
  }
}

/** Vector-clock partial order: `before` when every counter of `a` is <= `b`'s and one is smaller. */
export function compareClocks(a: VectorClock, b: VectorClock): ClockOrder {
  assertClock(a);
  assertClock(b);
  let aAhead = false;
  let bAhead = false;
  for (const id of Object.keys(a)) {
    const x = a[id]!;
    const y = counter(b, id);
    if (x > y) aAhead = true;
    else if (x < y) bAhead = true;
  }
  for (const id of Object.keys(b)) {
    if (!Object.hasOwn(a, id) && b[id]! > 0) bAhead = true;
  }
  if (aAhead) return bAhead ? 'concurrent' : 'after';
  return bAhead ? 'before' : 'equal';
}

/**
 * The canonical form of a clock: ids in ascending UTF-16 order, zero counters dropped.
 * Equal clocks have identical canonical forms (and msgpack encodings).
 */
export function canonicalClock(clock: VectorClock): VectorClock {
  return mergeClocks(clock, {});
}

/** Pointwise maximum, in canonical form (see `canonicalClock`). */
export function mergeClocks(a: VectorClock, b: VectorClock): VectorClock {
  assertClock(a);
  assertClock(b);
  const ids = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
  const entries: [string, number][] = [];
  for (const id of ids) {
    const n = Math.max(counter(a, id), counter(b, id));
    if (n > 0) entries.push([id, n]);
  }
  // fromEntries defines own properties, so even an id like '__proto__' stays a plain entry.
  return Object.fromEntries(entries);
}

/** `a` is strictly after `b`: it has seen everything `b` has, and more. */
export function dominates(a: Version, b: Version): boolean {
  return compareClocks(a.clock, b.clock) === 'after';
}

/** `a` is after or equal to `b` (Riak's `descends`): `a` has seen everything `b` has. */
export function descends(a: Version, b: Version): boolean {
  const order = compareClocks(a.clock, b.clock);
  return order === 'after' || order === 'equal';
}

/**
 * The node id that breaks LWW ties on timestamp: the greatest id (UTF-16 order) with a
 * positive counter, '' for an empty clock. A clock does not say which node wrote last
 * (after a merge, no single node did), so this is a deterministic stand-in for "node
 * id", chosen because it can only grow when clocks are merged (see `lww`).
 */
export function writerOf(version: Version): string {
  let writer = '';
  for (const id of Object.keys(version.clock)) {
    if (version.clock[id]! > 0 && id > writer) writer = id;
  }
  return writer;
}

function clockSum(clock: VectorClock): number {
  let sum = 0;
  for (const id of Object.keys(clock)) sum += clock[id]!;
  return sum;
}

function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Total order on canonical clocks: entry by entry, id then counter; a prefix sorts first. */
function compareClockEntries(a: VectorClock, b: VectorClock): number {
  const x = Object.entries(canonicalClock(a));
  const y = Object.entries(canonicalClock(b));
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    const c = compareStrings(x[i]![0], y[i]![0]) || x[i]![1] - y[i]![1];
    if (c !== 0) return c;
  }
  return x.length - y.length;
}

/**
 * Last-writer-wins order, a comparator: negative when `a` is older, positive when newer,
 * 0 only when the two are equal in every persisted field (value, flags, expiry, clock,
 * timestamp, tombstone). Keys in order:
 *   1. the HLC timestamp (compareHlc);
 *   2. `writerOf`, the greatest node id of the clock;
 *   3. the sum of the clock's counters;
 *   4. a tombstone beats a value (Cassandra's rule for a timestamp tie);
 *   5. value bytes, flags, expiry, then the canonical clock, just to make it total.
 * Keys 2 and 3 only grow when clocks are merged, and collapsing a concurrent version
 * strictly grows 3, so a winner that absorbs versions stays LWW-newer than every
 * sibling left beside it: resolving a resolution changes nothing.
 */
export function lww(a: StoredRecord, b: StoredRecord): number {
  const c =
    compareHlc(a.version.ts, b.version.ts) ||
    compareStrings(writerOf(a.version), writerOf(b.version)) ||
    clockSum(a.version.clock) - clockSum(b.version.clock) ||
    Number(a.tombstone) - Number(b.tombstone) ||
    Buffer.compare(a.value, b.value) ||
    a.flags - b.flags ||
    a.expiresAtMs - b.expiresAtMs ||
    compareClockEntries(a.version.clock, b.version.clock);
  return Math.sign(c);
}

/** `record` with `clock` (canonical) in place of its own; the timestamp stays. */
function withClock(record: StoredRecord, clock: VectorClock): StoredRecord {
  return { ...record, version: { clock: canonicalClock(clock), ts: record.version.ts } };
}

/**
 * The versions that survive causality, newest first by LWW: a record goes when another
 * strictly dominates it, or when an LWW-newer record has an equal clock (one version,
 * keep one). O(n^2) clock comparisons; n is at most R replicas times their siblings.
 */
function frontier(records: readonly StoredRecord[]): StoredRecord[] {
  const newestFirst = [...records].sort((a, b) => lww(b, a));
  return newestFirst.filter((r, i) =>
    newestFirst.every((o, j) => {
      const order = compareClocks(o.version.clock, r.version.clock);
      return order !== 'after' && !(order === 'equal' && j < i);
    }),
  );
}

/**
 * Resolves the versions replicas hold for one key (at least one record).
 *
 * Dominated and duplicate versions go. One survivor is the winner. Several concurrent
 * survivors: with `siblings: false` the winner is the LWW-newest carrying the merged
 * clock of all of them, so it dominates every one and replicas converge on it; with
 * `siblings: true` they are all returned newest first, at most `maxSiblings`: past the
 * bound the oldest collapse into the winner (its clock absorbs theirs), and any kept
 * sibling that the grown clock now dominates collapses too (returning it would hand
 * the client a version the winner already supersedes). The result depends only on the
 * set of record contents, never on their order.
 */
export function resolve(records: readonly StoredRecord[], opts: ResolveOptions): Resolution {
  assert(records.length > 0, 'resolve needs at least one record');
  assert(Number.isSafeInteger(opts.maxSiblings) && opts.maxSiblings >= 1, 'maxSiblings must be an integer >= 1');
  const survivors = frontier(records);
  assert(survivors.length >= 1, 'some version always survives');
  const newest = survivors[0]!;

  if (survivors.length === 1) {
    const winner = withClock(newest, newest.version.clock);
    return { winner, siblings: [winner], collapsed: 0 };
  }
  if (!opts.siblings) {
    const winner = withClock(newest, survivors.map((r) => r.version.clock).reduce(mergeClocks));
    return { winner, siblings: [winner], collapsed: 0 };
  }
  if (survivors.length <= opts.maxSiblings) {
    const siblings = survivors.map((r) => withClock(r, r.version.clock));
    return { winner: siblings[0]!, siblings, collapsed: 0 };
  }

  let clock = newest.version.clock;
  for (const r of survivors.slice(opts.maxSiblings)) clock = mergeClocks(clock, r.version.clock);
  // A dominated sibling does not grow the clock, so one pass reaches the fixpoint.
  const kept = survivors.slice(1, opts.maxSiblings).filter((r) => compareClocks(r.version.clock, clock) === 'concurrent');
  const winner = withClock(newest, clock);
  const siblings = [winner, ...kept.map((r) => withClock(r, r.version.clock))];
  assert(siblings.length <= opts.maxSiblings, 'siblings stay within maxSiblings');
  assert(siblings.every((s, i) => i === 0 || lww(winner, s) > 0), 'the collapsed winner stays LWW-newest');
  return { winner, siblings, collapsed: survivors.length - siblings.length };
}

/**
 * Read repair: does a replica that answered with `replica` (undefined: it has nothing)
 * need `winner` written to it? Yes unless its clock is after the winner's, or equal with
 * the same timestamp (an equal clock with another timestamp is a different write under
 * a reused clock, and the replica holds the one resolution did not pick).
 */
export function needsRepair(replica: Version | undefined, winner: Version): boolean {
  if (replica === undefined) return true;
  const order = compareClocks(replica.clock, winner.clock);
  if (order === 'after') return false;
  if (order === 'equal') return compareHlc(replica.ts, winner.ts) !== 0;
  return true;
}

// ---- records that carry siblings ----------------------------------------------------
//
// A stored record is a set of versions: the LWW-newest one, and its concurrent siblings
// (StoredRecord.siblings). These helpers move between that form and resolve()'s lists.

/** Every version a stored record holds: itself (without its siblings), then its siblings. */
export function versionsOf(r: StoredRecord): StoredRecord[] {
  if (!r.siblings || r.siblings.length === 0) return [r];
  const { siblings, ...self } = r;
  return [self as StoredRecord, ...siblings];
}

/**
 * What a replica stores after seeing `records` (each possibly with siblings): the
 * surviving versions as one record, newest first, at most `maxSiblings` in all; the
 * rest collapse LWW (counted in `collapsed`).
 */
export function mergeRecords(records: readonly StoredRecord[], maxSiblings: number): { record: StoredRecord; collapsed: number } {
  const all = records.flatMap(versionsOf);
  const res = resolve(all, { siblings: true, maxSiblings });
  const [first, ...rest] = res.siblings;
  const record: StoredRecord = rest.length === 0 ? { ...first!, fetched: false, accessedMs: first!.version.ts.wallMs } : { ...first!, siblings: rest };
  return { record, collapsed: res.collapsed };
}

/** The clock a new write over `r` starts from: every version it holds, merged, so the write supersedes them all. */
export function baseClock(r: StoredRecord): VectorClock {
  if (!r.siblings || r.siblings.length === 0) return r.version.clock;
  return r.siblings.reduce((c, s) => mergeClocks(c, s.version.clock), r.version.clock);
}

/**
 * A text digest of every version a record holds (clock, timestamp, tombstone of each, in
 * canonical order): equal on two replicas exactly when they hold the same versions.
 * Anti-entropy compares these; the value is not included (one version, one value).
 */
export function recordDigest(r: StoredRecord): string {
  const parts = versionsOf(r).map((v) => {
    const clock = Object.entries(canonicalClock(v.version.clock));
    return JSON.stringify([v.version.ts.wallMs, v.version.ts.logical, v.tombstone ? 1 : 0, clock]);
  });
  if (parts.length > 1) parts.sort();
  return parts.length === 1 ? parts[0]! : parts.join('|');
}

/** Do two records hold the same versions? */
export function sameVersions(a: StoredRecord, b: StoredRecord): boolean {
  // The common case, one version each, without building digests.
  if (!a.siblings?.length && !b.siblings?.length) {
    return a.tombstone === b.tombstone && compareHlc(a.version.ts, b.version.ts) === 0 && compareClocks(a.version.clock, b.version.clock) === 'equal';
  }
  return recordDigest(a) === recordDigest(b);
}
