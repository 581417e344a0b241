// Ring construction, lookup and preference lists, against the brute-force models in
// reference.ts. These properties are exact (no statistics), so they run on fresh random
// seeds every time.
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  AssertionError,
  Ring,
  hash64,
  initHash,
  positionCount,
  positionMax,
  vnodesMax,
  type Member,
} from '../../ring/index.js';
import {
  contains,
  hashedTokens,
  memberIds,
  membersArb,
  ownerByScan,
  position,
  preferenceByScan,
  probePositions,
  sizeOf,
  type TokenPair,
} from './reference.js';

beforeAll(async () => {
  await initHash();
});

const ids = (...names: string[]): Member[] => names.map((id) => ({ id }));

describe('Ring.build', () => {
  it('rejects bad member lists and options', () => {
    expect(() => Ring.build(ids('a', 'b', 'a'))).toThrow(/duplicate member id "a"/);
    expect(() => Ring.build(ids('a', ''))).toThrow(AssertionError);
    expect(() => Ring.build([])).toThrow(/at least one member/);
    expect(() => Ring.build([{ id: 'a', zone: 'z1' }, { id: 'b' }])).toThrow(/zone/);
    expect(() => Ring.build([{ id: 'a', zone: '' }])).toThrow(/zone/);
    for (const vnodes of [0, -1, 1.5, Number.NaN, vnodesMax + 1]) {
      expect(() => Ring.build(ids('a'), { vnodes })).toThrow(/vnodes/);
    }
  });

  it('places token i of member n at hash64(`n#i`) and sorts members by id', () => {
    const ring = Ring.build(ids('b', 'a'), { vnodes: 2 });
    const expected = ['a#0', 'a#1', 'b#0', 'b#1'].map((s) => hash64(s)).sort((x, y) => (x < y ? -1 : 1));
    expect([...ring.tokens()]).toEqual(expected);
    expect(ring.ownerOf(hash64('a#1'))).toBe('a');
    expect(ring.ownerOf(hash64('b#0'))).toBe('b');
    expect(ring.members().map((m) => m.id)).toEqual(['a', 'b']);
    expect(ring.size).toBe(2);
    expect(ring.tokenCount).toBe(4);
    expect(Ring.build(ids('a')).tokenCount).toBe(64);
  });

  it('does not depend on the order of members', () => {
    fc.assert(
      fc.property(membersArb(1, 8, 3), fc.integer({ min: 1, max: 8 }), fc.nat(), (members, vnodes, seed) => {
        const shuffled = [...members].sort((x, y) => (hash64(`${seed}${x.id}`) < hash64(`${seed}${y.id}`) ? -1 : 1));
        const a = Ring.build(members, { vnodes });
        const b = Ring.build(shuffled, { vnodes });
        expect(b.ranges()).toEqual(a.ranges());
        expect(b.members()).toEqual(a.members());
        expect(b.preferenceList(0n, 3)).toEqual(a.preferenceList(0n, 3));
      }),
      { numRuns: 30 },
    );
  });

  it('does not let callers mutate it', () => {
    const ring = Ring.build(ids('a', 'b'), { vnodes: 4 });
    const before = ring.ranges();
    ring.tokens().fill(0n);
    expect(() => (ring.members() as Member[]).push({ id: 'c' })).toThrow(TypeError);
    expect(ring.ranges()).toEqual(before);
  });
});

describe('ownerOf, rangeOf, ranges', () => {
  it('a one-token ring owns the whole circle', () => {
    const ring = Ring.build(ids('solo'), { vnodes: 1 });
    const t = hash64('solo#0');
    expect(ring.ranges()).toEqual([{ start: t, end: t, owner: 'solo' }]);
    expect(ring.shares()).toEqual(new Map([['solo', 1]]));
    for (const pos of [0n, t, t + 1n, positionMax]) expect(ring.rangeOf(pos)).toEqual({ start: t, end: t, owner: 'solo' });
  });

  it('wraps at the edges of the circle: tokens at 0 and 2^64-1', () => {
    const tokensOf = new Map([
      ['a', [0n]],
      ['b', [positionMax]],
      ['c', [1n << 63n]],
    ]);
    const ring = Ring.fromTokens(ids('a', 'b', 'c'), tokensOf);
    expect(ring.ownerOf(0n)).toBe('a');
    expect(ring.ownerOf(1n)).toBe('c');
    expect(ring.ownerOf(1n << 63n)).toBe('c');
    expect(ring.ownerOf((1n << 63n) + 1n)).toBe('b');
    expect(ring.ownerOf(positionMax)).toBe('b');
    expect(ring.rangeOf(0n)).toEqual({ start: positionMax, end: 0n, owner: 'a' });
    expect(ring.shares().get('a')).toBe(1 / 2 ** 64);

    const wrap = Ring.fromTokens(ids('a', 'b'), new Map([['a', [10n]], ['b', [20n]]]));
    expect([0n, 10n, 21n, positionMax].map((p) => wrap.ownerOf(p))).toEqual(['a', 'a', 'a', 'a']);
    expect([11n, 20n].map((p) => wrap.ownerOf(p))).toEqual(['b', 'b']);
    expect(wrap.rangeOf(positionMax)).toEqual({ start: 20n, end: 10n, owner: 'a' });
  });

  it('rejects positions outside [0, 2^64)', () => {
    const ring = Ring.build(ids('a', 'b'), { vnodes: 4 });
    for (const pos of [-1n, positionCount]) {
      expect(() => ring.ownerOf(pos)).toThrow(/outside/);
      expect(() => ring.preferenceList(pos, 2)).toThrow(/outside/);
    }
  });

  it('breaks token collisions by the smaller id, whatever the member order', () => {
    const tokensOf = new Map([
      ['b', [5n, 200n]],
      ['a', [5n, 100n]],
    ]);
    for (const members of [ids('a', 'b'), ids('b', 'a')]) {
      const ring = Ring.fromTokens(members, tokensOf);
      expect(ring.tokenCount).toBe(3);
      expect(ring.ownerOf(5n)).toBe('a');
      expect(ring.ownerOf(150n)).toBe('b');
    }
    // b would hold no token at all: its placement would be undefined.
    expect(() => Ring.fromTokens(ids('a', 'b'), new Map([['a', [5n]], ['b', [5n]]]))).toThrow(/lost every token/);
    expect(() => Ring.fromTokens(ids('a'), new Map([['a', [5n]], ['x', [6n]]]))).toThrow(/not in the ring/);
    expect(() => Ring.fromTokens(ids('a'), new Map([['a', [positionCount]]]))).toThrow(/outside/);
  });

  // Built rings (hashed tokens) and explicit-token rings whose tokens crowd the edges
  // of the circle and collide between members.
  const edgeToken = fc.oneof(
    position,
    fc.constantFrom(0n, 1n, positionMax - 1n, positionMax, 1n << 63n),
  );
  const ringCase = fc.oneof(
    fc.tuple(memberIds(1, 8), fc.integer({ min: 1, max: 16 })).map(([names, vnodes]) => {
      const members = names.map((id) => ({ id }));
      return { ring: Ring.build(members, { vnodes }), pairs: hashedTokens(members, vnodes) };
    }),
    fc
      .uniqueArray(fc.tuple(fc.constantFrom('a', 'b', 'c', 'd'), edgeToken), {
        minLength: 1,
        maxLength: 12,
        selector: ([id, token]) => `${id}:${token}`,
      })
      // fromTokens rejects a member whose every token is won by a smaller id (tested above).
      .filter((raw) => raw.every(([id]) => raw.some(([own, t]) => own === id && !raw.some(([o, u]) => u === t && o < id))))
      .map((raw) => {
        const pairs: TokenPair[] = raw.map(([id, token]) => ({ id, token }));
        const tokensOf = new Map<string, bigint[]>();
        for (const { id, token } of pairs) tokensOf.set(id, [...(tokensOf.get(id) ?? []), token]);
        return { ring: Ring.fromTokens([...tokensOf.keys()].map((id) => ({ id })), tokensOf), pairs };
      }),
  );

  it('agrees with a linear scan, at the edges, at every token and its neighbours', () => {
    fc.assert(
      fc.property(
        ringCase,
        fc.array(position, { maxLength: 20 }),
        ({ ring, pairs }, random) => {
          const ranges = ring.ranges();
          for (const pos of probePositions([ring], random)) {
            const owner = ownerByScan(pairs, pos);
            expect(ring.ownerOf(pos)).toBe(owner);
            const holding = ranges.filter((r) => contains(r, pos));
            expect(holding).toHaveLength(1); // the ranges partition the circle
            expect(holding[0]!.owner).toBe(owner);
            expect(ring.rangeOf(pos)).toEqual(holding[0]);
          }
        },
      ),
      { numRuns: 50 },
    );
  });

  it('ranges are in token order, chain end to start, and shares sum to 1', () => {
    fc.assert(
      fc.property(memberIds(1, 12), fc.integer({ min: 1, max: 64 }), (names, vnodes) => {
        const ring = Ring.build(names.map((id) => ({ id })), { vnodes });
        const ranges = ring.ranges();
        expect(ranges).toHaveLength(ring.tokenCount);
        const owned = new Map<string, bigint>();
        for (let i = 0; i < ranges.length; i++) {
          const previous = ranges[(i + ranges.length - 1) % ranges.length]!;
          expect(ranges[i]!.start).toBe(previous.end);
          if (i > 0) expect(ranges[i]!.end > previous.end).toBe(true);
          owned.set(ranges[i]!.owner, (owned.get(ranges[i]!.owner) ?? 0n) + sizeOf(ranges[i]!));
        }
        const shares = ring.shares();
        expect([...shares.keys()].sort()).toEqual([...names].sort());
        let sum = 0;
        for (const [id, share] of shares) {
          expect(share).toBeCloseTo(Number(owned.get(id)!) / 2 ** 64, 12);
          sum += share;
        }
        expect(Math.abs(sum - 1)).toBeLessThan(1e-9);
      }),
      { numRuns: 40 },
    );
  });
});

describe('preferenceList', () => {
  it('holds min(N, members) distinct members, starts with the owner, spans min(N, zones) zones', () => {
    fc.assert(
      fc.property(
        membersArb(1, 12, 4),
        fc.integer({ min: 1, max: 16 }),
        fc.integer({ min: 1, max: 7 }),
        fc.array(position, { maxLength: 10 }),
        (members, vnodes, n, random) => {
          const ring = Ring.build(members, { vnodes });
          const pairs = hashedTokens(members, vnodes);
          const zoneOf = new Map(members.map((m) => [m.id, m.zone]));
          const zoneCount = new Set(members.map((m) => m.zone)).size;
          const zoned = members[0]!.zone !== undefined;
          for (const pos of probePositions([ring], random)) {
            const list = ring.preferenceList(pos, n);
            expect(list).toHaveLength(Math.min(n, members.length));
            expect(new Set(list).size).toBe(list.length);
            expect(list[0]).toBe(ring.ownerOf(pos));
            if (zoned) expect(new Set(list.map((id) => zoneOf.get(id))).size).toBe(Math.min(n, zoneCount));
            expect(list).toEqual(preferenceByScan(pairs, zoneOf, pos, n));
          }
        },
      ),
      { numRuns: 40 },
    );
  });

  it('rejects a non-positive or fractional N', () => {
    const ring = Ring.build(ids('a', 'b'), { vnodes: 4 });
    for (const n of [0, -1, 2.5]) expect(() => ring.preferenceList(0n, n)).toThrow(/positive integer/);
  });
});
