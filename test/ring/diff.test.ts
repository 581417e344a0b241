// diff and diffPreference: exact properties, on fresh random seeds. Each move list is
// checked against ownerOf / preferenceList of both rings at the edges of the circle, at
// every token of either ring and its neighbours, and at random positions.
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { Ring, diff, diffPreference, initHash, type Member } from '../../ring/index.js';
import { contains, memberIds, position, probePositions, sizeOf } from './reference.js';

beforeAll(async () => {
  await initHash();
});

/** Two rings over overlapping member sets, vnodes possibly different, zones on both or neither. */
const ringPair = fc
  .tuple(
    memberIds(1, 8),
    fc.array(fc.tuple(fc.boolean(), fc.boolean(), fc.nat(2)), { minLength: 8, maxLength: 8 }),
    fc.integer({ min: 1, max: 12 }),
    fc.integer({ min: 1, max: 12 }),
    fc.boolean(),
  )
  .map(([names, flags, vnodesA, vnodesB, zoned]) => {
    const member = (id: string, i: number): Member => (zoned ? { id, zone: `z${flags[i]![2]}` } : { id });
    let inA = names.map(member).filter((_, i) => flags[i]![0]);
    let inB = names.map(member).filter((_, i) => flags[i]![1]);
    if (inA.length === 0) inA = [member(names[0]!, 0)];
    if (inB.length === 0) inB = [member(names[names.length - 1]!, names.length - 1)];
    return { a: Ring.build(inA, { vnodes: vnodesA }), b: Ring.build(inB, { vnodes: vnodesB }) };
  });

/** Moves are maximal: two moves that touch never carry the same change (else they would be one). */
function expectMerged<T extends { start: bigint; end: bigint }>(moves: readonly T[], key: (m: T) => string): void {
  for (let i = 0; i < moves.length && moves.length > 1; i++) {
    const next = moves[(i + 1) % moves.length]!;
    if (moves[i]!.end === next.start) expect(key(moves[i]!)).not.toBe(key(next));
  }
}

describe('diff', () => {
  it('is empty between a ring and itself', () => {
    fc.assert(
      fc.property(ringPair, ({ a, b }) => {
        expect(diff(a, a)).toEqual([]);
        expect(diff(b, b)).toEqual([]);
        expect(diffPreference(a, a, 3)).toEqual([]);
      }),
      { numRuns: 30 },
    );
  });

  it('agrees with ownerOf of both rings everywhere', () => {
    fc.assert(
      fc.property(ringPair, fc.array(position, { maxLength: 20 }), ({ a, b }, random) => {
        const moves = diff(a, b);
        for (const move of moves) expect(move.from).not.toBe(move.to);
        expectMerged(moves, (m) => `${m.from}\u0000${m.to}`);
        for (const pos of probePositions([a, b], random)) {
          const holding = moves.filter((m) => contains(m, pos));
          if (a.ownerOf(pos) === b.ownerOf(pos)) {
            expect(holding).toEqual([]);
          } else {
            expect(holding).toHaveLength(1);
            expect(holding[0]!.from).toBe(a.ownerOf(pos));
            expect(holding[0]!.to).toBe(b.ownerOf(pos));
          }
        }
      }),
      { numRuns: 50 },
    );
  });

  it('removing a member moves only its ranges, exactly its share', () => {
    fc.assert(
      fc.property(memberIds(2, 12), fc.nat(), fc.integer({ min: 1, max: 64 }), (names, pick, vnodes) => {
        const gone = names[pick % names.length]!;
        const before = Ring.build(names.map((id) => ({ id })), { vnodes });
        const after = Ring.build(names.filter((id) => id !== gone).map((id) => ({ id })), { vnodes });
        const moves = diff(before, after);
        for (const move of moves) expect(move.from).toBe(gone);
        const moved = Number(moves.reduce((sum, move) => sum + sizeOf(move), 0n)) / 2 ** 64;
        expect(moved).toBeCloseTo(before.shares().get(gone)!, 12);
      }),
      { numRuns: 40 },
    );
  });

  it('adding a member moves ranges only to it', () => {
    fc.assert(
      fc.property(memberIds(2, 12), fc.integer({ min: 1, max: 64 }), (names, vnodes) => {
        const joiner = names[names.length - 1]!;
        const before = Ring.build(names.slice(0, -1).map((id) => ({ id })), { vnodes });
        const after = Ring.build(names.map((id) => ({ id })), { vnodes });
        const moves = diff(before, after);
        expect(moves.length).toBeGreaterThan(0);
        for (const move of moves) expect(move.to).toBe(joiner);
      }),
      { numRuns: 40 },
    );
  });

  it('a move may wrap past 2^64-1 when the pieces on both sides carry the same change', () => {
    const a = Ring.fromTokens([{ id: 'x' }, { id: 'y' }], new Map([['x', [100n]], ['y', [200n]]]));
    const b = Ring.fromTokens([{ id: 'x' }, { id: 'z' }], new Map([['x', [100n]], ['z', [200n]]]));
    expect(diff(a, b)).toEqual([{ start: 100n, end: 200n, from: 'y', to: 'z' }]);
    const c = Ring.fromTokens([{ id: 'x' }, { id: 'y' }], new Map([['x', [100n, 300n]], ['y', [200n]]]));
    const d = Ring.fromTokens([{ id: 'w' }, { id: 'y' }], new Map([['w', [100n, 300n]], ['y', [200n]]]));
    // (200, 300] and (300, 2^64) ∪ [0, 100] both go from x to w: one move, which wraps.
    expect(diff(c, d)).toEqual([{ start: 200n, end: 100n, from: 'x', to: 'w' }]);
    // Different changes on the two sides of the wrap stay apart.
    const e = Ring.fromTokens([{ id: 'v' }, { id: 'w' }, { id: 'y' }], new Map([['v', [100n]], ['w', [300n]], ['y', [200n]]]));
    expect(diff(c, e)).toEqual([
      { start: 300n, end: 100n, from: 'x', to: 'v' },
      { start: 200n, end: 300n, from: 'x', to: 'w' },
    ]);
  });
});

describe('diffPreference', () => {
  it('agrees with preferenceList of both rings everywhere', () => {
    fc.assert(
      fc.property(ringPair, fc.integer({ min: 1, max: 4 }), fc.array(position, { maxLength: 20 }), ({ a, b }, n, random) => {
        const moves = diffPreference(a, b, n);
        for (const move of moves) expect(move.before).not.toEqual(move.after);
        expectMerged(moves, (m) => JSON.stringify([m.before, m.after]));
        for (const pos of probePositions([a, b], random)) {
          const holding = moves.filter((m) => contains(m, pos));
          const before = a.preferenceList(pos, n);
          const after = b.preferenceList(pos, n);
          if (JSON.stringify(before) === JSON.stringify(after)) {
            expect(holding).toEqual([]);
          } else {
            expect(holding).toHaveLength(1);
            expect(holding[0]!.before).toEqual(before);
            expect(holding[0]!.after).toEqual(after);
          }
        }
      }),
      { numRuns: 40 },
    );
  });

  it('with N = 1 is diff', () => {
    fc.assert(
      fc.property(ringPair, ({ a, b }) => {
        const owners = diffPreference(a, b, 1).map((m) => ({ start: m.start, end: m.end, from: m.before[0], to: m.after[0] }));
        expect(owners).toEqual(diff(a, b));
      }),
      { numRuns: 30 },
    );
  });
});
