// MerkleTree as a value: its algebra (order independence, remove as inverse, replace),
// the mapping of positions to leaves on plain, wrapping and whole-ring ranges, and the
// version digest. The expected leaf of a position is recomputed here from the
// definition (offset within the range scaled to 2^depth), not taken from the tree.
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { AssertionError, hash64, initHash, positionMax } from '../../ring/index.js';
import {
  MerkleTree,
  depthMax,
  entryHash,
  versionDigest,
  type MerkleEntry,
} from '../../server/replication/merkle.js';
import { LOGICAL_MAX, type Version } from '../../server/storage/record.js';

beforeAll(async () => {
  await initHash();
});

const two64 = 1n << 64n;

interface Range {
  start: bigint;
  end: bigint;
}

function sizeOf(r: Range): bigint {
  return r.end > r.start ? r.end - r.start : r.end - r.start + two64;
}

/** Whether pos lies in (start, end]; start === end is the whole ring. */
function inRange(r: Range, pos: bigint): boolean {
  return BigInt.asUintN(64, pos - r.start - 1n) < sizeOf(r);
}

/** A position in the range, from any u64 (so keys spread over the range as hashes do). */
function positionIn(r: Range, u: bigint): bigint {
  return BigInt.asUintN(64, r.start + 1n + (u % sizeOf(r)));
}

/** The leaf of pos by the definition: floor(offset · 2^depth / size). */
function expectedLeaf(r: Range, depth: number, pos: bigint): number {
  return Number((BigInt.asUintN(64, pos - r.start - 1n) * (1n << BigInt(depth))) / sizeOf(r));
}

const u64 = fc.oneof(
  fc.constantFrom(0n, 1n, 2n, positionMax - 1n, positionMax, 1n << 63n),
  fc.bigInt({ min: 0n, max: positionMax }),
);

/** Plain, wrapping, whole-ring and tiny (fewer positions than leaves) ranges. */
const range: fc.Arbitrary<Range> = fc.oneof(
  fc.tuple(u64, u64).map(([start, end]) => ({ start, end })),
  u64.map((p) => ({ start: p, end: p })),
  fc.tuple(u64, fc.integer({ min: 1, max: 3000 })).map(([start, n]) => ({ start, end: BigInt.asUintN(64, start + BigInt(n)) })),
);

const nodeId = fc.constantFrom('a', 'b', 'n1', 'n10', '2', '10');
const version: fc.Arbitrary<Version> = fc.record({
  clock: fc.dictionary(nodeId, fc.nat(4), { maxKeys: 4 }),
  ts: fc.record({ wallMs: fc.nat(2_000_000), logical: fc.nat(LOGICAL_MAX) }),
});
const digest = fc.tuple(version, fc.boolean()).map(([v, t]) => versionDigest(v, t));

function entryFor(r: Range, key: string, d: string): MerkleEntry {
  return { key, pos: positionIn(r, hash64(key)), digest: d };
}

/** A range, a depth and entries with distinct keys placed in the range. */
const treeInput = fc
  .tuple(range, fc.integer({ min: 1, max: 12 }), fc.uniqueArray(fc.tuple(fc.string({ minLength: 1, maxLength: 8 }), digest), { selector: (e) => e[0], maxLength: 60 }))
  .map(([r, depth, raw]) => ({ r, depth, entries: raw.map(([k, d]) => entryFor(r, k, d)) }));

function allLevels(t: MerkleTree): bigint[][] {
  const levels: bigint[][] = [];
  for (let d = 0; d <= t.depth; d++) levels.push(t.level(d));
  return levels;
}

function incremental(r: Range, depth: number, entries: readonly MerkleEntry[]): MerkleTree {
  const t = new MerkleTree({ ...r, depth });
  for (const e of entries) t.put(e.key, e.pos, e.digest);
  return t;
}

describe('MerkleTree algebra', () => {
  it('gives the same tree for the same entries in any order, incrementally or in bulk', () => {
    fc.assert(
      fc.property(
        treeInput.chain((input) =>
          fc.tuple(fc.constant(input), fc.shuffledSubarray(input.entries, { minLength: input.entries.length, maxLength: input.entries.length })),
        ),
        ([{ r, depth, entries }, shuffled]) => {
          const a = incremental(r, depth, entries);
          const b = incremental(r, depth, shuffled);
          const bulk = MerkleTree.build({ ...r, depth }, shuffled);
          expect(b.root()).toBe(a.root());
          expect(allLevels(b)).toEqual(allLevels(a));
          expect(allLevels(bulk)).toEqual(allLevels(a));
          expect(a.entryCount).toBe(entries.length);
          // Each leaf is the sum mod 2^64 of its entries' hashes.
          const sums = new Array<bigint>(a.leafCount).fill(0n);
          for (const e of entries) {
            const leaf = a.leafOf(e.pos);
            sums[leaf] = BigInt.asUintN(64, sums[leaf]! + entryHash(e.key, e.digest));
          }
          expect(a.level(depth)).toEqual(sums);
        },
      ),
      { numRuns: 60 },
    );
  });

  it('returns to the empty tree when everything added is removed, in any order', () => {
    fc.assert(
      fc.property(
        treeInput.chain((input) =>
          fc.tuple(fc.constant(input), fc.shuffledSubarray(input.entries, { minLength: input.entries.length, maxLength: input.entries.length })),
        ),
        ([{ r, depth, entries }, removalOrder]) => {
          const empty = new MerkleTree({ ...r, depth });
          const t = incremental(r, depth, entries);
          if (entries.length > 0) expect(t.root()).not.toBe(empty.root());
          for (const e of removalOrder) expect(t.remove(e.key)).toBe(true);
          expect(t.remove('never-added')).toBe(false);
          expect(t.entryCount).toBe(0);
          expect(t.root()).toBe(empty.root());
          expect(allLevels(t)).toEqual(allLevels(empty));
          expect(t.level(depth).every((h) => h === 0n)).toBe(true);
        },
      ),
      { numRuns: 60 },
    );
  });

  it('after any puts, replaces and removes equals the tree built from the final versions', () => {
    const op = fc.record({ remove: fc.boolean(), key: fc.constantFrom('k0', 'k1', 'k2', 'k3', 'k4', 'k5'), digest });
    fc.assert(
      fc.property(range, fc.integer({ min: 1, max: 8 }), fc.array(op, { maxLength: 40 }), (r, depth, ops) => {
        const t = new MerkleTree({ ...r, depth });
        const model = new Map<string, string>();
        for (const o of ops) {
          if (o.remove) {
            expect(t.remove(o.key)).toBe(model.delete(o.key));
          } else {
            const e = entryFor(r, o.key, o.digest);
            t.put(e.key, e.pos, e.digest);
            model.set(o.key, o.digest);
          }
        }
        const final = MerkleTree.build({ ...r, depth }, [...model].map(([k, d]) => entryFor(r, k, d)));
        expect(allLevels(t)).toEqual(allLevels(final));
        expect(t.entryCount).toBe(model.size);
        for (const k of ['k0', 'k1', 'k2', 'k3', 'k4', 'k5']) expect(t.has(k)).toBe(model.has(k));
      }),
      { numRuns: 100 },
    );
  });

  it('put then replace equals putting the final version; a changed version changes the root', () => {
    fc.assert(
      fc.property(treeInput, digest, digest, ({ r, depth, entries }, first, last) => {
        fc.pre(first !== last);
        const e = entryFor(r, 'the-key', first);
        const replaced = incremental(r, depth, entries);
        replaced.put(e.key, e.pos, first);
        const rootFirst = replaced.root();
        replaced.put(e.key, e.pos, last);
        const direct = incremental(r, depth, entries);
        direct.put(e.key, e.pos, last);
        expect(allLevels(replaced)).toEqual(allLevels(direct));
        expect(replaced.root()).not.toBe(rootFirst);
      }),
      { numRuns: 60 },
    );
  });

  it('refuses bad shapes and a key moved to another leaf', () => {
    for (const depth of [0, depthMax + 1, 1.5, Number.NaN]) {
      expect(() => new MerkleTree({ start: 0n, end: 0n, depth })).toThrow(AssertionError);
    }
    expect(() => new MerkleTree({ start: -1n, end: 0n })).toThrow(AssertionError);
    expect(() => new MerkleTree({ start: 0n, end: two64 })).toThrow(AssertionError);
    const t = new MerkleTree({ start: 0n, end: 0n, depth: 4 });
    expect(t.depth).toBe(4);
    expect(new MerkleTree({ start: 0n, end: 0n }).leafCount).toBe(1024);
    t.put('k', 1n, 'v1');
    expect(() => t.put('k', positionMax, 'v2')).toThrow(AssertionError);
    expect(() => t.level(5)).toThrow(AssertionError);
    expect(() => t.nodes(2, [4])).toThrow(AssertionError);
    expect(() => t.leafRange(16)).toThrow(AssertionError);
  });
});

describe('MerkleTree leaves', () => {
  /** Positions worth checking: the range's edges, leaf edges, random offsets. */
  function probes(r: Range, t: MerkleTree, random: readonly bigint[]): bigint[] {
    const out = [positionIn(r, 0n), r.end, positionIn(r, sizeOf(r) / 2n)];
    for (const u of random) out.push(positionIn(r, u));
    for (const i of [0, 1, t.leafCount - 1, t.leafCount >> 1]) {
      const lr = t.leafRange(i);
      if (lr.size > 0n) out.push(BigInt.asUintN(64, lr.start + 1n), lr.end);
    }
    return out;
  }

  it('maps every position of the range to a leaf whose range contains it', () => {
    fc.assert(
      fc.property(range, fc.integer({ min: 1, max: depthMax }), fc.array(u64, { maxLength: 30 }), (r, depth, random) => {
        const t = new MerkleTree({ ...r, depth });
        for (const pos of probes(r, t, random)) {
          expect(t.contains(pos)).toBe(true);
          const leaf = t.leafOf(pos);
          expect(leaf).toBe(expectedLeaf(r, depth, pos));
          expect(leaf >= 0 && leaf < 2 ** depth).toBe(true);
          const lr = t.leafRange(leaf);
          expect(lr.size > 0n).toBe(true);
          expect(BigInt.asUintN(64, pos - lr.start - 1n) < lr.size).toBe(true);
        }
      }),
      { numRuns: 200 },
    );
  });

  it('tiles the range with the leaf ranges, in order, each leaf holding exactly its positions', () => {
    fc.assert(
      fc.property(range, fc.integer({ min: 1, max: 9 }), (r, depth) => {
        const t = new MerkleTree({ ...r, depth });
        let at = r.start;
        let total = 0n;
        for (let i = 0; i < t.leafCount; i++) {
          const lr = t.leafRange(i);
          expect(lr.start).toBe(at);
          expect(BigInt.asUintN(64, lr.end - lr.start)).toBe(BigInt.asUintN(64, lr.size));
          if (lr.size > 0n) {
            expect(t.leafOf(BigInt.asUintN(64, lr.start + 1n))).toBe(i);
            expect(t.leafOf(lr.end)).toBe(i);
          }
          at = lr.end;
          total += lr.size;
        }
        expect(at).toBe(r.end);
        expect(total).toBe(sizeOf(r));
      }),
      { numRuns: 150 },
    );
  });

  it('refuses positions outside the range; a whole-ring tree takes every position', () => {
    fc.assert(
      fc.property(range, fc.integer({ min: 1, max: depthMax }), fc.array(u64, { maxLength: 30 }), (r, depth, random) => {
        const t = new MerkleTree({ ...r, depth });
        const size = sizeOf(r);
        if (size === two64) {
          for (const pos of [0n, positionMax, r.start, ...random]) {
            expect(t.contains(pos)).toBe(true);
            expect(t.leafOf(pos)).toBe(expectedLeaf(r, depth, pos));
          }
          return;
        }
        const outside = [r.start, BigInt.asUintN(64, r.end + 1n), ...random.map((u) => BigInt.asUintN(64, r.end + 1n + (u % (two64 - size))))];
        for (const pos of outside) {
          expect(inRange(r, pos)).toBe(false);
          expect(t.contains(pos)).toBe(false);
          expect(() => t.leafOf(pos)).toThrow(AssertionError);
          expect(() => t.put('k', pos, 'v')).toThrow(AssertionError);
        }
        expect(t.entryCount).toBe(0);
      }),
      { numRuns: 200 },
    );
  });

  it('on the whole ring from 2^64-1, the leaf is the top depth bits of the position', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: depthMax }), fc.array(u64, { maxLength: 30 }), (depth, positions) => {
        const t = new MerkleTree({ start: positionMax, end: positionMax, depth });
        for (const pos of positions) expect(t.leafOf(pos)).toBe(Number(pos >> BigInt(64 - depth)));
        expect(t.leafRange(0)).toEqual({ start: positionMax, end: (1n << BigInt(64 - depth)) - 1n, size: 1n << BigInt(64 - depth) });
      }),
      { numRuns: 50 },
    );
  });

  it('wrapping range: positions on both sides of 2^64-1 land in order', () => {
    const t = new MerkleTree({ start: positionMax - 100n, end: 99n, depth: 2 });
    // 200 positions, 50 per leaf: positionMax-99 .. positionMax, then 0 .. 99.
    expect(t.leafOf(positionMax - 99n)).toBe(0);
    expect(t.leafOf(positionMax - 50n)).toBe(0);
    expect(t.leafOf(positionMax - 49n)).toBe(1);
    expect(t.leafOf(positionMax)).toBe(1);
    expect(t.leafOf(0n)).toBe(2);
    expect(t.leafOf(49n)).toBe(2);
    expect(t.leafOf(50n)).toBe(3);
    expect(t.leafOf(99n)).toBe(3);
    expect(t.leafRange(1)).toEqual({ start: positionMax - 50n, end: positionMax, size: 50n });
    expect(t.leafRange(2)).toEqual({ start: positionMax, end: 49n, size: 50n });
    expect(() => t.leafOf(100n)).toThrow(AssertionError);
    expect(() => t.leafOf(positionMax - 100n)).toThrow(AssertionError);
  });
});

describe('versionDigest', () => {
  /** The clock without zero counters, sorted: what two equal versions share. */
  function normal(v: Version, tombstone: boolean): string {
    const clock = Object.entries(v.clock).filter(([, n]) => n !== 0).sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0));
    return JSON.stringify({ clock, ts: v.ts, tombstone });
  }

  it('is equal exactly when the versions are (zero counters aside), whatever the clock order', () => {
    fc.assert(
      fc.property(version, fc.boolean(), version, fc.boolean(), (v, t, w, u) => {
        const reversed: Version = { clock: Object.fromEntries(Object.entries(v.clock).reverse()), ts: { ...v.ts } };
        expect(versionDigest(reversed, t)).toBe(versionDigest(v, t));
        const withZero: Version = { clock: { ...v.clock, zz: 0 }, ts: v.ts };
        expect(versionDigest(withZero, t)).toBe(versionDigest(v, t));
        expect(versionDigest(v, t) === versionDigest(w, u)).toBe(normal(v, t) === normal(w, u));
        expect(versionDigest(v, true)).not.toBe(versionDigest(v, false));
      }),
      { numRuns: 300 },
    );
  });

  it('refuses malformed versions', () => {
    const ts = { wallMs: 1, logical: 0 };
    expect(() => versionDigest({ clock: { a: -1 }, ts }, false)).toThrow(AssertionError);
    expect(() => versionDigest({ clock: { a: 1.5 }, ts }, false)).toThrow(AssertionError);
    expect(() => versionDigest({ clock: {}, ts: { wallMs: -1, logical: 0 } }, false)).toThrow(AssertionError);
    expect(() => versionDigest({ clock: {}, ts: { wallMs: 1, logical: LOGICAL_MAX + 1 } }, false)).toThrow(AssertionError);
  });

  it('entry hashes cannot shift bytes between key and digest', () => {
    expect(entryHash('ab', 'c')).not.toBe(entryHash('a', 'bc'));
    expect(entryHash('', 'abc')).not.toBe(entryHash('abc', ''));
  });
});
