// Versions across replicas (server/replication/versions.ts): the vector-clock partial order
// against its definition, the merge's algebra, LWW as a total order, and `resolve` as a
// property over random version sets (order-independent, idempotent, never returns a
// dominated version, bounded siblings) and over random replica histories (replicas that
// exchange their records converge). Clocks and timestamps come from tiny domains, so
// concurrency, timestamp ties and equal clocks are frequent.
import { encodeRecord, HybridClock, nextVersion, type Hlc, type StoredRecord, type VectorClock } from '../../server/storage/record.js';
import { AssertionError } from '../../server/util/assert.js';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  canonicalClock,
  compareClocks,
  descends,
  dominates,
  lww,
  mergeClocks,
  needsRepair,
  resolve,
  writerOf,
  type Resolution,
} from '../../server/replication/versions.js';

const NODES = ['a', 'b', 'c', 'd'] as const;
const RUNS = 400;

// Entries may repeat an id (last wins) or hold 0, which must count as missing.
const clockArb: fc.Arbitrary<VectorClock> = fc
  .array(fc.tuple(fc.constantFrom(...NODES), fc.nat({ max: 3 })), { maxLength: 5 })
  .map((entries) => Object.fromEntries(entries));

const hlcArb: fc.Arbitrary<Hlc> = fc.record({ wallMs: fc.nat({ max: 3 }), logical: fc.nat({ max: 1 }) });

function rec(value: string | null, clock: VectorClock, ts: Hlc, flags = 0): StoredRecord {
  return {
    value: Buffer.from(value ?? '', 'latin1'),
    flags,
    expiresAtMs: 0,
    version: { clock, ts },
    tombstone: value === null,
    fetched: false,
    accessedMs: ts.wallMs,
  };
}

const recordArb: fc.Arbitrary<StoredRecord> = fc
  .record({
    value: fc.constantFrom(null, '', 'x', 'y', 'xy'),
    clock: clockArb,
    ts: hlcArb,
    flags: fc.nat({ max: 1 }),
  })
  .map((f) => rec(f.value, f.clock, f.ts, f.flags));

// Duplicates (the same object, or a copy) are part of the input space.
const recordsArb: fc.Arbitrary<StoredRecord[]> = fc
  .array(recordArb, { minLength: 1, maxLength: 8 })
  .chain((rs) => fc.array(fc.constantFrom(...rs), { maxLength: 2 }).map((dups) => [...rs, ...dups.map((d) => ({ ...d }))]));

const optsArb = fc.record({ siblings: fc.boolean(), maxSiblings: fc.integer({ min: 1, max: 4 }) });

/** The definition: a <= b when every counter of a is <= b's (missing = 0). */
function leq(a: VectorClock, b: VectorClock): boolean {
  return Object.keys(a).every((id) => a[id]! <= (Object.hasOwn(b, id) ? b[id]! : 0));
}

/** A record's persisted bytes: what replicas and anti-entropy compare. */
function bytes(r: StoredRecord): string {
  return Buffer.from(encodeRecord(r)).toString('hex');
}

function view(res: Resolution): { winner: string; siblings: string[]; collapsed: number } {
  return { winner: bytes(res.winner), siblings: res.siblings.map(bytes), collapsed: res.collapsed };
}

/** Reference for the survivors: one record per maximal clock class, by brute force. */
function maximalClasses(rs: readonly StoredRecord[]): StoredRecord[][] {
  const maximal = rs.filter((r) => !rs.some((o) => leq(r.version.clock, o.version.clock) && !leq(o.version.clock, r.version.clock)));
  const classes: StoredRecord[][] = [];
  for (const r of maximal) {
    const cls = classes.find((c) => leq(c[0]!.version.clock, r.version.clock) && leq(r.version.clock, c[0]!.version.clock));
    if (cls) cls.push(r);
    else classes.push([r]);
  }
  return classes;
}

const newestOf = (rs: readonly StoredRecord[]) => rs.reduce((x, y) => (lww(y, x) > 0 ? y : x));

describe('compareClocks and mergeClocks', () => {
  it('agrees with the definition of the partial order', () => {
    fc.assert(
      fc.property(clockArb, clockArb, (a, b) => {
        const expected = leq(a, b) ? (leq(b, a) ? 'equal' : 'before') : leq(b, a) ? 'after' : 'concurrent';
        expect(compareClocks(a, b)).toBe(expected);
      }),
      { numRuns: RUNS },
    );
  });

  it('is reflexive, antisymmetric and transitive', () => {
    const dual = { equal: 'equal', before: 'after', after: 'before', concurrent: 'concurrent' } as const;
    fc.assert(
      fc.property(clockArb, clockArb, clockArb, (a, x, y) => {
        expect(compareClocks(a, a)).toBe('equal');
        expect(compareClocks(a, { ...a, z: 0 })).toBe('equal');
        expect(compareClocks(x, a)).toBe(dual[compareClocks(a, x)]);
        // A chain a <= b <= c built by merging, so transitivity is exercised every run.
        const b = mergeClocks(a, x);
        const c = mergeClocks(b, y);
        expect(['before', 'equal']).toContain(compareClocks(a, b));
        expect(['before', 'equal']).toContain(compareClocks(b, c));
        expect(['before', 'equal']).toContain(compareClocks(a, c));
        if (compareClocks(a, b) === 'before' || compareClocks(b, c) === 'before') expect(compareClocks(a, c)).toBe('before');
      }),
      { numRuns: RUNS },
    );
  });

  it('merges to the least upper bound: commutative, associative, idempotent, canonical', () => {
    fc.assert(
      fc.property(clockArb, clockArb, clockArb, (a, b, c) => {
        const ab = mergeClocks(a, b);
        expect(['after', 'equal']).toContain(compareClocks(ab, a));
        expect(['after', 'equal']).toContain(compareClocks(ab, b));
        expect(compareClocks(ab, a) === 'equal').toBe(compareClocks(b, a) !== 'after' && compareClocks(b, a) !== 'concurrent');
        // Least: any common upper bound of a and b is above the merge.
        const upper = mergeClocks(mergeClocks(a, b), c);
        expect(leq(ab, upper)).toBe(true);
        // Byte-identical, not just equal: replicas hash encoded records.
        expect(JSON.stringify(ab)).toBe(JSON.stringify(mergeClocks(b, a)));
        expect(JSON.stringify(mergeClocks(ab, c))).toBe(JSON.stringify(mergeClocks(a, mergeClocks(b, c))));
        expect(JSON.stringify(mergeClocks(a, a))).toBe(JSON.stringify(canonicalClock(a)));
        expect(compareClocks(mergeClocks(a, a), a)).toBe('equal');
        expect(Object.values(ab).every((n) => n > 0)).toBe(true);
      }),
      { numRuns: RUNS },
    );
  });

  it('dominates is strict, descends is not', () => {
    const a = { a: 1 };
    const b = { a: 1, b: 1 };
    const ts = { wallMs: 0, logical: 0 };
    expect(dominates({ clock: b, ts }, { clock: a, ts })).toBe(true);
    expect(dominates({ clock: a, ts }, { clock: a, ts })).toBe(false);
    expect(descends({ clock: a, ts }, { clock: { a: 1, b: 0 }, ts })).toBe(true);
    expect(descends({ clock: a, ts }, { clock: b, ts })).toBe(false);
  });

  it('treats node ids that are Object.prototype names as plain ids', () => {
    expect(compareClocks({}, { constructor: 1 })).toBe('before');
    expect(compareClocks({ toString: 1 }, {})).toBe('after');
    const m = mergeClocks({ ['__proto__']: 2 } as VectorClock, Object.fromEntries([['__proto__', 1]]));
    expect(Object.getPrototypeOf(m)).toBe(Object.prototype);
  });

  it('asserts on a counter that is not a non-negative integer', () => {
    expect(() => compareClocks({ a: -1 }, {})).toThrow(AssertionError);
    expect(() => mergeClocks({ a: 1.5 }, {})).toThrow(AssertionError);
  });
});

describe('lww', () => {
  it('is a total order on record contents', () => {
    fc.assert(
      fc.property(recordArb, recordArb, recordArb, (a, b, c) => {
        expect(lww(a, b) + lww(b, a)).toBe(0);
        expect(lww(a, a)).toBe(0);
        expect(lww(a, b) === 0).toBe(canonicalBytes(a) === canonicalBytes(b));
        if (lww(a, b) >= 0 && lww(b, c) >= 0) expect(lww(a, c)).toBeGreaterThanOrEqual(0);
        if (lww(a, b) > 0 && lww(b, c) >= 0) expect(lww(a, c)).toBeGreaterThan(0);
      }),
      { numRuns: RUNS },
    );
  });

  it('orders by timestamp first, then by writer', () => {
    fc.assert(
      fc.property(recordArb, recordArb, (a, b) => {
        const byTs = a.version.ts.wallMs - b.version.ts.wallMs || a.version.ts.logical - b.version.ts.logical;
        if (byTs !== 0) expect(lww(a, b)).toBe(Math.sign(byTs));
        else if (writerOf(a.version) !== writerOf(b.version)) expect(lww(a, b)).toBe(writerOf(a.version) > writerOf(b.version) ? 1 : -1);
      }),
      { numRuns: RUNS },
    );
  });

  it('writerOf is the greatest id with a positive counter', () => {
    const ts = { wallMs: 0, logical: 0 };
    expect(writerOf({ clock: { a: 3, c: 1, d: 0 }, ts })).toBe('c');
    expect(writerOf({ clock: {}, ts })).toBe('');
  });
});

/** A record with its clock in canonical form: the same version, possibly other bytes. */
function canonicalBytes(r: StoredRecord): string {
  return bytes({ ...r, version: { ...r.version, clock: canonicalClock(r.version.clock) } });
}

describe('resolve, as properties', () => {
  it('does not depend on the order of its input', () => {
    fc.assert(
      fc.property(
        recordsArb.chain((rs) => fc.tuple(fc.constant(rs), fc.shuffledSubarray(rs, { minLength: rs.length }))),
        optsArb,
        ([rs, shuffled], opts) => {
          expect(view(resolve(shuffled, opts))).toEqual(view(resolve(rs, opts)));
        },
      ),
      { numRuns: RUNS },
    );
  });

  it('is idempotent: resolving a resolution returns it unchanged', () => {
    fc.assert(
      fc.property(recordsArb, optsArb, (rs, opts) => {
        const first = resolve(rs, opts);
        const again = resolve([first.winner, ...first.siblings], opts);
        expect(view(again)).toEqual({ ...view(first), collapsed: 0 });
      }),
      { numRuns: RUNS },
    );
  });

  it('never returns a dominated version, and returns siblings that are pairwise concurrent', () => {
    fc.assert(
      fc.property(recordsArb, optsArb, (rs, opts) => {
        const { winner, siblings } = resolve(rs, opts);
        expect(bytes(siblings[0]!)).toBe(bytes(winner));
        for (const s of siblings) {
          for (const r of rs) expect(dominates(r.version, s.version)).toBe(false);
          for (const t of siblings) if (s !== t) expect(compareClocks(s.version.clock, t.version.clock)).toBe('concurrent');
        }
        for (let i = 1; i < siblings.length; i++) expect(lww(siblings[i - 1]!, siblings[i]!)).toBeGreaterThan(0);
      }),
      { numRuns: RUNS },
    );
  });

  it('with siblings: false, the winner descends every input and is the LWW-newest survivor', () => {
    fc.assert(
      fc.property(recordsArb, fc.integer({ min: 1, max: 4 }), (rs, maxSiblings) => {
        const { winner, siblings, collapsed } = resolve(rs, { siblings: false, maxSiblings });
        expect(siblings).toEqual([winner]);
        expect(collapsed).toBe(0);
        for (const r of rs) expect(descends(winner.version, r.version)).toBe(true);
        const newest = newestOf(maximalClasses(rs).map(newestOf));
        expect(winner.version.ts).toEqual(newest.version.ts);
        expect(winner.value.equals(newest.value)).toBe(true);
        expect(winner.tombstone).toBe(newest.tombstone);
        // No survivor has a later timestamp (a dominated record may: causality wins).
        for (const cls of maximalClasses(rs)) {
          for (const r of cls) expect(lww(winner, r)).toBeGreaterThanOrEqual(0);
        }
        // The same winner as siblings with a bound of one.
        expect(bytes(resolve(rs, { siblings: true, maxSiblings: 1 }).winner)).toBe(bytes(winner));
      }),
      { numRuns: RUNS },
    );
  });

  it('with siblings: true, keeps at most maxSiblings and counts every other concurrent version as collapsed', () => {
    fc.assert(
      fc.property(recordsArb, fc.integer({ min: 1, max: 4 }), (rs, maxSiblings) => {
        const { winner, siblings, collapsed } = resolve(rs, { siblings: true, maxSiblings });
        const classes = maximalClasses(rs);
        expect(siblings.length).toBeGreaterThanOrEqual(1);
        expect(siblings.length).toBeLessThanOrEqual(maxSiblings);
        expect(siblings.length + collapsed).toBe(classes.length);
        // Every sibling is one of the survivors (the winner possibly with a grown clock).
        const survivors = classes.map(newestOf);
        for (const s of siblings.slice(1)) expect(survivors.map(canonicalBytes)).toContain(bytes(s));
        expect(winner.version.ts).toEqual(newestOf(survivors).version.ts);
        // Collapsed versions are not lost: the winner's clock has seen them.
        for (const r of survivors) {
          if (!siblings.some((s) => descends(r.version, s.version))) expect(descends(winner.version, r.version)).toBe(true);
        }
        if (classes.length <= maxSiblings) {
          expect(collapsed).toBe(0);
          expect(siblings.map(bytes).sort()).toEqual(survivors.map(canonicalBytes).sort());
        }
      }),
      { numRuns: RUNS },
    );
  });
});

describe('resolve, by example', () => {
  const t = (wallMs: number, logical = 0): Hlc => ({ wallMs, logical });
  const one = { siblings: false, maxSiblings: 16 };
  const many = { siblings: true, maxSiblings: 16 };

  it('two nodes write concurrently after a common version', () => {
    const base = rec('v0', { a: 1 }, t(1));
    const fromA = rec('va', nextVersion(base.version, 'a', t(5)).clock, t(5));
    const fromB = rec('vb', nextVersion(base.version, 'b', t(6)).clock, t(6));
    expect(compareClocks(fromA.version.clock, fromB.version.clock)).toBe('concurrent');

    const lwwRes = resolve([base, fromA, fromB], one);
    expect(lwwRes.winner.value.toString()).toBe('vb');
    expect(lwwRes.winner.version).toEqual({ clock: { a: 2, b: 1 }, ts: t(6) });
    expect(lwwRes.collapsed).toBe(0);

    const sibRes = resolve([fromA, base, fromB], many);
    expect(sibRes.siblings.map((s) => s.value.toString())).toEqual(['vb', 'va']);
    expect(sibRes.winner.version.clock).toEqual({ a: 1, b: 1 });
    // A write made after reading the siblings (clocks merged) supersedes both.
    const next = nextVersion({ clock: mergeClocks(fromA.version.clock, fromB.version.clock), ts: t(6) }, 'a', t(7));
    expect(resolve([fromA, fromB, rec('v2', next.clock, next.ts)], many).siblings.map((s) => s.value.toString())).toEqual(['v2']);
  });

  it('causality beats timestamps: a dominated version with a later ts loses', () => {
    const old = rec('skewed', { a: 1 }, t(100));
    const newer = rec('newer', { a: 1, b: 1 }, t(5));
    for (const opts of [one, many]) {
      const res = resolve([old, newer], opts);
      expect(res.winner.value.toString()).toBe('newer');
      expect(res.siblings).toHaveLength(1);
    }
  });

  it('tombstones are versions like any other', () => {
    const value = rec('v', { a: 1 }, t(1));
    const del = rec(null, { a: 1, b: 1 }, t(2));
    expect(resolve([value, del], one).winner.tombstone).toBe(true);
    // Re-created after the delete: the value dominates the tombstone.
    const again = rec('v2', { a: 2, b: 1 }, t(3));
    expect(resolve([del, again], one).winner.value.toString()).toBe('v2');
    // Concurrent delete and write: the later wins either way round...
    const concurrentDel = rec(null, { c: 1 }, t(4));
    expect(resolve([again, concurrentDel], one).winner.tombstone).toBe(true);
    const laterWrite = rec('v3', { d: 1 }, t(5));
    expect(resolve([concurrentDel, laterWrite], one).winner.tombstone).toBe(false);
    // ...a tombstone can be a sibling...
    const sib = resolve([again, concurrentDel], many).siblings;
    expect(sib.map((s) => s.tombstone)).toEqual([true, false]);
    // ...and on a timestamp and writer tie the delete wins.
    const tieValue = rec('tie', { a: 1, d: 1 }, t(9));
    const tieDel = rec(null, { b: 1, d: 1 }, t(9));
    expect(resolve([tieValue, tieDel], one).winner.tombstone).toBe(true);
    expect(resolve([tieDel, tieValue], one).winner.tombstone).toBe(true);
  });

  it('equal versions in different objects are one version', () => {
    const a1 = rec('same', { a: 1, b: 2 }, t(3));
    const a2 = rec('same', { b: 2, a: 1, c: 0 }, t(3));
    a2.fetched = true;
    for (const input of [[a1, a2], [a2, a1], [a1, a1]]) {
      const res = resolve(input, many);
      expect(res.siblings).toHaveLength(1);
      expect(res.collapsed).toBe(0);
      expect(JSON.stringify(res.winner.version.clock)).toBe('{"a":1,"b":2}');
    }
    // An equal clock reused for another write (a node that lost its state): keep the LWW-newer.
    const reused = rec('other', { a: 1, b: 2 }, t(4));
    const res = resolve([reused, a1], many);
    expect(res.siblings.map((s) => s.value.toString())).toEqual(['other']);
    expect(res.collapsed).toBe(0);
  });

  it('collapses the oldest siblings past the bound, and any sibling the grown winner then dominates', () => {
    const s0 = rec('s0', { a: 2 }, t(3));
    const s1 = rec('s1', { a: 1, b: 1 }, t(2));
    const s2 = rec('s2', { b: 2 }, t(1));
    const s3 = rec('s3', { c: 1 }, t(0));
    expect(resolve([s0, s1, s2, s3], { siblings: true, maxSiblings: 4 }).siblings).toHaveLength(4);
    // Bound 3: s3 folds into s0; nothing else changes.
    const three = resolve([s3, s2, s1, s0], { siblings: true, maxSiblings: 3 });
    expect(three.siblings.map((s) => s.value.toString())).toEqual(['s0', 's1', 's2']);
    expect(three.winner.version.clock).toEqual({ a: 2, c: 1 });
    expect(three.collapsed).toBe(1);
    // Bound 2: s2 and s3 fold into s0, whose clock {a:2,b:2,c:1} then dominates s1 too.
    const two = resolve([s3, s2, s1, s0], { siblings: true, maxSiblings: 2 });
    expect(two.siblings.map((s) => s.value.toString())).toEqual(['s0']);
    expect(two.winner.version.clock).toEqual({ a: 2, b: 2, c: 1 });
    expect(two.collapsed).toBe(3);
  });

  it('asserts on misuse', () => {
    expect(() => resolve([], one)).toThrow(AssertionError);
    expect(() => resolve([rec('x', { a: 1 }, t(1))], { siblings: true, maxSiblings: 0 })).toThrow(AssertionError);
  });

  it('never mutates its input', () => {
    const rs = [rec('x', { b: 1, a: 0 }, t(1)), rec('y', { c: 1 }, t(2))];
    const before = rs.map((r) => JSON.stringify(r));
    resolve(rs, one);
    resolve(rs, { siblings: true, maxSiblings: 1 });
    expect(rs.map((r) => JSON.stringify(r))).toEqual(before);
  });
});

describe('replicas that exchange records converge', () => {
  type Event =
    | { t: 'write'; node: number; value: string | null }
    | { t: 'sync'; from: number; to: number }
    | { t: 'time'; node: number; ms: number };
  const REPLICAS = 3;
  const node = fc.nat({ max: REPLICAS - 1 });
  const eventArb: fc.Arbitrary<Event> = fc.oneof(
    fc.record({ t: fc.constant('write' as const), node, value: fc.constantFrom(null, 'x', 'y', 'z') }),
    fc.record({ t: fc.constant('sync' as const), from: node, to: node }),
    // Skewed wall clocks: one node may run far ahead of the others, or stall.
    fc.record({ t: fc.constant('time' as const), node, ms: fc.constantFrom(0, 1, 50) }),
  );

  it('to one record that has seen every write', () => {
    fc.assert(
      fc.property(fc.array(eventArb, { maxLength: 40 }), (events) => {
        const ids = ['a', 'b', 'c'];
        const wall = [0, 0, 0];
        const hlc = wall.map((_, i) => new HybridClock(() => wall[i]!));
        const held: (StoredRecord | undefined)[] = [undefined, undefined, undefined];
        const written: StoredRecord[] = [];
        const receive = (to: number, r: StoredRecord | undefined) => {
          if (r === undefined) return;
          hlc[to]!.observe(r.version.ts);
          held[to] = resolve(held[to] ? [held[to]!, r] : [r], { siblings: false, maxSiblings: 16 }).winner;
        };
        for (const e of events) {
          if (e.t === 'time') wall[e.node]! += e.ms;
          else if (e.t === 'sync') receive(e.to, held[e.from]);
          else {
            const ts = hlc[e.node]!.tick();
            const r = rec(e.value, nextVersion(held[e.node]?.version, ids[e.node]!, ts).clock, ts);
            written.push(r);
            held[e.node] = r;
          }
        }
        // Anti-entropy: everyone into replica 0, then replica 0 into everyone.
        for (let i = 1; i < REPLICAS; i++) receive(0, held[i]);
        for (let i = 1; i < REPLICAS; i++) receive(i, held[0]);
        // Compared in canonical form: a record nobody resolved keeps nextVersion's key order.
        expect(new Set(held.map((r) => (r ? canonicalBytes(r) : 'none'))).size).toBe(1);
        for (const w of written) expect(descends(held[0]!.version, w.version)).toBe(true);
        for (let i = 0; i < REPLICAS; i++) expect(needsRepair(held[i]?.version, held[0]?.version ?? { clock: {}, ts: { wallMs: 0, logical: 0 } })).toBe(written.length === 0);
      }),
      { numRuns: 300 },
    );
  });
});

describe('needsRepair', () => {
  const v = (clock: VectorClock, wallMs = 1) => ({ clock, ts: { wallMs, logical: 0 } });
  const winner = v({ a: 2, b: 1 }, 5);

  it('repairs a replica that is missing, behind or concurrent', () => {
    expect(needsRepair(undefined, winner)).toBe(true);
    expect(needsRepair(v({ a: 1, b: 1 }), winner)).toBe(true);
    expect(needsRepair(v({}), winner)).toBe(true);
    expect(needsRepair(v({ c: 1 }, 9), winner)).toBe(true);
  });

  it('leaves alone a replica that is equal or ahead', () => {
    expect(needsRepair(v({ b: 1, a: 2, c: 0 }, 5), winner)).toBe(false);
    expect(needsRepair(v({ a: 3, b: 1 }, 1), winner)).toBe(false);
  });

  it('repairs an equal clock carrying another write', () => {
    expect(needsRepair(v({ a: 2, b: 1 }, 4), winner)).toBe(true);
  });

  it('agrees with resolve: after read repair no replica needs repair', () => {
    fc.assert(
      fc.property(recordsArb, (rs) => {
        const { winner } = resolve(rs, { siblings: false, maxSiblings: 16 });
        const repaired = rs.map((r) => (needsRepair(r.version, winner.version) ? resolve([r, winner], { siblings: false, maxSiblings: 16 }).winner : r));
        for (const r of repaired) expect(needsRepair(r.version, winner.version)).toBe(false);
      }),
      { numRuns: RUNS },
    );
  });
});
