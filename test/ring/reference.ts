// Brute-force reference models of the ring for the property tests: linear scans over
// the raw (token, member) pairs, written from DESIGN.md's definitions and sharing no code
// with ring/, so that agreement says the binary search, the deduplication of colliding
// tokens and the zone-aware walk are right.
import fc from 'fast-check';
import { hash64, positionMax, type Member, type Ring } from '../../ring/index.js';

export interface TokenPair {
  token: bigint;
  id: string;
}

/** Token i of member n is hash64(`${n}#${i}`) (DESIGN.md), computed here independently. */
export function hashedTokens(members: readonly Member[], vnodes: number): TokenPair[] {
  const pairs: TokenPair[] = [];
  for (const m of members) for (let i = 0; i < vnodes; i++) pairs.push({ token: hash64(`${m.id}#${i}`), id: m.id });
  return pairs;
}

const sortedCache = new WeakMap<readonly TokenPair[], TokenPair[]>();

/** Pairs in clockwise order; on equal tokens the smaller id first (it wins the token). */
function clockwise(pairs: readonly TokenPair[]): TokenPair[] {
  let sorted = sortedCache.get(pairs);
  if (sorted === undefined) {
    sorted = [...pairs].sort((x, y) =>
      x.token < y.token ? -1 : x.token > y.token ? 1 : x.id < y.id ? -1 : x.id > y.id ? 1 : 0,
    );
    sortedCache.set(pairs, sorted);
  }
  return sorted;
}

/** Index in clockwise(pairs) of the pair owning pos: the first token >= pos, else the first of all. */
function firstAtOrAfter(sorted: readonly TokenPair[], pos: bigint): number {
  for (let i = 0; i < sorted.length; i++) if (sorted[i]!.token >= pos) return i;
  return 0;
}

export function ownerByScan(pairs: readonly TokenPair[], pos: bigint): string {
  const sorted = clockwise(pairs);
  return sorted[firstAtOrAfter(sorted, pos)]!.id;
}

/** The preference list as DESIGN.md and ring.ts's doc comment define it, by a plain walk. */
export function preferenceByScan(pairs: readonly TokenPair[], zoneOf: ReadonlyMap<string, string | undefined>, pos: bigint, n: number): string[] {
  const sorted = clockwise(pairs);
  const start = firstAtOrAfter(sorted, pos);
  const walk: string[] = [];
  for (let step = 0; step < sorted.length; step++) {
    const id = sorted[(start + step) % sorted.length]!.id;
    if (!walk.includes(id)) walk.push(id);
  }
  const zoned = [...zoneOf.values()].some((z) => z !== undefined);
  if (!zoned) return walk.slice(0, n);
  const picked: string[] = [];
  const zones = new Set<string>();
  for (const id of walk) {
    if (picked.length < n && !zones.has(zoneOf.get(id)!)) {
      zones.add(zoneOf.get(id)!);
      picked.push(id);
    }
  }
  for (const id of walk) if (picked.length < n && !picked.includes(id)) picked.push(id);
  return picked;
}

/** Whether pos lies in (start, end] on the circle; start === end is the whole circle. */
export function contains(range: { start: bigint; end: bigint }, pos: bigint): boolean {
  if (range.start < range.end) return range.start < pos && pos <= range.end;
  return pos > range.start || pos <= range.end;
}

export function sizeOf(range: { start: bigint; end: bigint }): bigint {
  return range.end > range.start ? range.end - range.start : range.end - range.start + (1n << 64n);
}

/**
 * Positions worth checking on `rings`: the edges of the circle, every token and its
 * neighbours (where off-by-one errors live), and `random` ones.
 */
export function probePositions(rings: readonly Ring[], random: readonly bigint[]): bigint[] {
  const positions = new Set<bigint>([0n, 1n, positionMax - 1n, positionMax, ...random]);
  for (const ring of rings) {
    for (const token of ring.tokens()) {
      positions.add(token);
      if (token > 0n) positions.add(token - 1n);
      if (token < positionMax) positions.add(token + 1n);
    }
  }
  return [...positions];
}

/** Member ids: short printable strings, sometimes non-ASCII or containing '#'. */
export const memberId = fc.oneof(
  fc.string({ minLength: 1, maxLength: 12 }),
  fc
    .array(fc.integer({ min: 0x20, max: 0x2fff }), { minLength: 1, maxLength: 6 })
    .map((codePoints) => String.fromCodePoint(...codePoints)),
  fc.constantFrom('a', 'a#1', 'node-1', 'node-10', 'é'),
);

export const memberIds = (min: number, max: number) => fc.uniqueArray(memberId, { minLength: min, maxLength: max });

export const position = fc.bigInt({ min: 0n, max: positionMax });

/** Members with no zones, or every member with one of up to `zonesMax` zones. */
export const membersArb = (min: number, max: number, zonesMax: number) =>
  fc
    .tuple(memberIds(min, max), fc.boolean(), fc.array(fc.nat(zonesMax - 1), { minLength: max, maxLength: max }))
    .map(([ids, zoned, zones]): Member[] => ids.map((id, i) => (zoned ? { id, zone: `z${zones[i]}` } : { id })));
