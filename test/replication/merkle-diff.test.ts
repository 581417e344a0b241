// Comparing two replicas' trees: diffTrees against the keys that really differ, the size
// of the top-down walk, the walk against a remote tree through the wire form, and the
// wire form's refusal of malformed peer messages.
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { AssertionError, hash64, initHash, positionMax } from '../../ring/index.js';
import { MerkleTree, diffTrees, versionDigest } from '../../server/replication/merkle.js';
import {
  MerkleWireError,
  answerNodes,
  diffFromRemote,
  hashesFromWire,
  hashesToWire,
  serializeLevel,
  type RemoteNodesFetcher,
} from '../../server/replication/merkle-wire.js';

beforeAll(async () => {
  await initHash();
});

interface Range {
  start: bigint;
  end: bigint;
}

function sizeOf(r: Range): bigint {
  return r.end > r.start ? r.end - r.start : r.end - r.start + (1n << 64n);
}

/** A key's position folded into the range, the same on both replicas. */
function positionOf(r: Range, key: string): bigint {
  return BigInt.asUintN(64, r.start + 1n + (hash64(key) % sizeOf(r)));
}

const u64 = fc.oneof(fc.constantFrom(0n, 1n, positionMax - 1n, positionMax), fc.bigInt({ min: 0n, max: positionMax }));
const range: fc.Arbitrary<Range> = fc.oneof(
  fc.tuple(u64, u64).map(([start, end]) => ({ start, end })),
  u64.map((p) => ({ start: p, end: p })),
);

const digest = fc
  .tuple(fc.nat(3), fc.nat(3), fc.nat(1000), fc.boolean())
  .map(([a, b, wallMs, tombstone]) => versionDigest({ clock: { a, b }, ts: { wallMs, logical: 0 } }, tombstone));

/** What happens to a base key on replica b: kept, given another version, or missing. */
const fate = fc.constantFrom('same', 'same', 'same', 'changed', 'missing-on-b', 'missing-on-a');

/** Two replicas of one range: mostly the same keys, some versions differing or missing on one side. */
const replicas = fc
  .tuple(
    range,
    fc.integer({ min: 1, max: 12 }),
    fc.uniqueArray(fc.tuple(fc.string({ minLength: 1, maxLength: 10 }), digest, digest, fate), { selector: (e) => e[0], maxLength: 150 }),
  )
  .map(([r, depth, rows]) => {
    const a = new Map<string, string>();
    const b = new Map<string, string>();
    for (const [key, da, db, f] of rows) {
      if (f !== 'missing-on-a') a.set(key, da);
      if (f === 'same') b.set(key, da);
      if (f === 'changed' || f === 'missing-on-a') b.set(key, db);
    }
    return { r, depth, a, b };
  });

function treeOf(r: Range, depth: number, entries: ReadonlyMap<string, string>, reverse = false): MerkleTree {
  const t = new MerkleTree({ ...r, depth });
  const keys = [...entries.keys()];
  if (reverse) keys.reverse();
  for (const key of keys) t.put(key, positionOf(r, key), entries.get(key)!);
  return t;
}

/** Keys whose (key, version digest) is not on both replicas. */
function differingKeys(a: ReadonlyMap<string, string>, b: ReadonlyMap<string, string>): string[] {
  const keys = new Set([...a.keys(), ...b.keys()]);
  return [...keys].filter((k) => a.get(k) !== b.get(k));
}

/** Ancestors (depth < D) of the leaves: the inner nodes a top-down walk must find differing. */
function ancestorCount(leaves: readonly number[], depth: number): number {
  const seen = new Set<string>();
  for (const leaf of leaves) for (let d = 0; d < depth; d++) seen.add(`${d}:${leaf >> (depth - d)}`);
  return seen.size;
}

function fetcherOf(remote: MerkleTree, log?: number[]): RemoteNodesFetcher {
  // Through the wire form both ways, as a real peer's answer would come.
  return async (depth, indexes) => {
    log?.push(indexes.length);
    return hashesFromWire(answerNodes(remote, depth, indexes), indexes.length);
  };
}

describe('diffTrees', () => {
  it('reports exactly the leaves holding a differing key, with a walk of O(differing leaves × depth)', () => {
    fc.assert(
      fc.property(replicas, ({ r, depth, a, b }) => {
        const ta = treeOf(r, depth, a);
        const tb = treeOf(r, depth, b, true);
        const { leaves, nodesCompared } = diffTrees(ta, tb);
        const differing = differingKeys(a, b);

        // Empty iff the replicas hold the same (key, version) pairs.
        expect(leaves.length === 0).toBe(differing.length === 0);
        expect(ta.root() === tb.root()).toBe(differing.length === 0);
        // Every differing key lies in a reported leaf; every reported leaf holds one.
        const expected = [...new Set(differing.map((k) => ta.leafOf(positionOf(r, k))))].sort((x, y) => x - y);
        expect(leaves).toEqual(expected);
        // The walk descends only into differing subtrees.
        expect(nodesCompared).toBeLessThanOrEqual(2 * depth * Math.max(1, leaves.length) + 1);
        expect(nodesCompared).toBe(1 + 2 * ancestorCount(leaves, depth));
        expect(diffTrees(tb, ta)).toEqual({ leaves, nodesCompared });
      }),
      { numRuns: 150 },
    );
  });

  it('stays small on a big range with few differences', () => {
    const r = { start: 0n, end: 0n };
    const depth = 10;
    const keys = Array.from({ length: 20_000 }, (_, i) => `key:${i}`);
    const entries = keys.map((key) => ({ key, pos: positionOf(r, key), digest: versionDigest({ clock: { a: 1 }, ts: { wallMs: 5, logical: 0 } }, false) }));
    const a = MerkleTree.build({ ...r, depth }, entries);
    const b = MerkleTree.build({ ...r, depth }, entries);
    const touched = ['key:7', 'key:1234', 'key:19999'];
    for (const key of touched) b.put(key, positionOf(r, key), versionDigest({ clock: { a: 2 }, ts: { wallMs: 6, logical: 0 } }, false));
    b.remove('key:500');
    const { leaves, nodesCompared } = diffTrees(a, b);
    const expected = [...new Set([...touched, 'key:500'].map((k) => a.leafOf(positionOf(r, k))))].sort((x, y) => x - y);
    expect(leaves).toEqual(expected);
    expect(nodesCompared).toBeLessThanOrEqual(1 + 2 * depth * leaves.length);
    expect(nodesCompared).toBeLessThan(100); // of 2047 nodes
  });

  it('refuses trees of different shapes', () => {
    const t = new MerkleTree({ start: 0n, end: 0n, depth: 4 });
    expect(() => diffTrees(t, new MerkleTree({ start: 0n, end: 0n, depth: 5 }))).toThrow(AssertionError);
    expect(() => diffTrees(t, new MerkleTree({ start: 1n, end: 1n, depth: 4 }))).toThrow(AssertionError);
    expect(() => diffTrees(t, new MerkleTree({ start: 0n, end: 5n, depth: 4 }))).toThrow(AssertionError);
  });
});

describe('diffFromRemote', () => {
  it('finds the same leaves as diffTrees, one level per round, in bounded fetches', async () => {
    await fc.assert(
      fc.asyncProperty(replicas, fc.integer({ min: 1, max: 40 }), async ({ r, depth, a, b }, maxNodesPerFetch) => {
        const ta = treeOf(r, depth, a);
        const tb = treeOf(r, depth, b);
        const sizes: number[] = [];
        const remote = await diffFromRemote(ta, fetcherOf(tb, sizes), { maxNodesPerFetch });
        const local = diffTrees(ta, tb);
        expect(remote.leaves).toEqual(local.leaves);
        expect(remote.nodesCompared).toBe(local.nodesCompared);
        expect(remote.fetches).toBe(sizes.length);
        expect(sizes.every((n) => n >= 1 && n <= maxNodesPerFetch)).toBe(true);
        expect(sizes.reduce((x, y) => x + y, 0)).toBe(local.nodesCompared);
        expect(remote.fetches).toBeLessThanOrEqual(Math.ceil(local.nodesCompared / maxNodesPerFetch) + depth + 1);
      }),
      { numRuns: 80 },
    );
  });

  it('rejects a peer that answers with the wrong number of hashes or non-hashes', async () => {
    const t = new MerkleTree({ start: 0n, end: 0n, depth: 3 });
    t.put('k', 1n, 'v');
    await expect(diffFromRemote(t, async () => [])).rejects.toThrow(MerkleWireError);
    await expect(diffFromRemote(t, async () => [1n, 2n])).rejects.toThrow(MerkleWireError);
    await expect(diffFromRemote(t, async () => [-1n])).rejects.toThrow(MerkleWireError);
    await expect(diffFromRemote(t, async () => [1n << 64n])).rejects.toThrow(MerkleWireError);
    await expect(diffFromRemote(t, async () => [5] as unknown as bigint[])).rejects.toThrow(MerkleWireError);
    await expect(diffFromRemote(t, async () => [t.root()])).resolves.toEqual({ leaves: [], nodesCompared: 1, fetches: 1 });
    await expect(diffFromRemote(t, async () => [0n], { maxNodesPerFetch: 0 })).rejects.toThrow(AssertionError);
  });
});

describe('merkle wire form', () => {
  it('round-trips hashes as 16 lowercase hex digits', () => {
    fc.assert(
      fc.property(fc.array(u64, { maxLength: 20 }), (hashes) => {
        const wire = hashesToWire(hashes);
        for (const s of wire) expect(s).toMatch(/^[0-9a-f]{16}$/);
        expect(hashesFromWire(wire, hashes.length)).toEqual(hashes);
      }),
    );
    expect(hashesToWire([0n, positionMax, 255n])).toEqual(['0000000000000000', 'ffffffffffffffff', '00000000000000ff']);
  });

  it('serializes a level that parses back to it', () => {
    const t = new MerkleTree({ start: 10n, end: 5n, depth: 4 });
    for (let i = 0; i < 50; i++) t.put(`k${i}`, positionOf({ start: 10n, end: 5n }, `k${i}`), 'v');
    for (let d = 0; d <= 4; d++) expect(hashesFromWire(serializeLevel(t, d), 2 ** d)).toEqual(t.level(d));
  });

  it('refuses malformed hashes and requests from a peer', () => {
    const bad: unknown[] = [
      'ffffffffffffffff',
      ['FFFFFFFFFFFFFFFF'],
      ['fffffffffffffff'],
      ['0fffffffffffffffff'],
      ['0x00000000000000'],
      ['000000000000000g'],
      [12],
      [null],
    ];
    for (const wire of bad) expect(() => hashesFromWire(wire, 1)).toThrow(MerkleWireError);
    expect(() => hashesFromWire(['0000000000000000'], 2)).toThrow(MerkleWireError);

    const t = new MerkleTree({ start: 0n, end: 0n, depth: 3 });
    for (const [depth, indexes] of [
      [-1, [0]],
      [4, [0]],
      [1.5, [0]],
      ['1', [0]],
      [1, [2]],
      [1, [-1]],
      [1, [0.5]],
      [1, ['0']],
      [1, [0, 1, 0]],
      [1, 'nope'],
    ] as [unknown, unknown][]) {
      expect(() => answerNodes(t, depth, indexes)).toThrow(MerkleWireError);
    }
    expect(answerNodes(t, 1, [1, 0])).toEqual(hashesToWire([t.level(1)[1]!, t.level(1)[0]!]));
  });
});
