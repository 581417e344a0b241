// The consistent-hashing ring: virtual-node tokens, the ranges they own, owners,
// preference lists, and the diff between two rings (which ranges move where).
//
// Positions and tokens live on the circle [0, 2^64). A token owns the range
// (previous token, token]; the first token's range wraps around from the last token.
// Token i of member n is hash64(`${n}#${i}`) (DESIGN.md), so any process that knows the
// member list computes the same ring without asking anyone.
//
// Invariants of a built Ring (checked by `assert` at build time):
// - member ids are distinct and non-empty; either every member has a zone or none has;
// - tokens are strictly increasing, so every range is non-empty and a binary search
//   finds the owner of a position in O(log tokens);
// - every member owns at least one token, so a walk around the ring meets every member.
// A Ring is an immutable value: it depends only on the set of members and their tokens,
// never on the order in which members were given.
import { assert } from './assert.js';
import { hash64 } from './hash.js';

/** Number of positions on the circle: positions are integers in [0, positionCount). */
export const positionCount = 1n << 64n;
/** The largest position; its clockwise successor is 0. */
export const positionMax = positionCount - 1n;
/** Virtual-node tokens per member when `RingOptions.vnodes` is not given (DESIGN.md). */
export const vnodesDefault = 64;
/** Upper bound on `RingOptions.vnodes`: building and walking stay bounded. */
export const vnodesMax = 4096;
/** Upper bound on the number of members of one ring. */
export const membersMax = 65_536;

/** A physical node as the ring sees it. */
export interface Member {
  /** Unique, non-empty; it names the node everywhere (leases, hints, replies). */
  readonly id: string;
  /** Failure domain; when members carry zones, preference lists spread across them. */
  readonly zone?: string;
}

export interface RingOptions {
  /** Virtual-node tokens per member: default `vnodesDefault`, 1..`vnodesMax`. */
  vnodes?: number;
}

/** The positions (start, end] owned by one token: start exclusive, end (the token) inclusive. */
export interface RingRange {
  /** Exclusive; greater than `end` for the range that wraps past positionMax to 0. */
  start: bigint;
  /** Inclusive: the owning token. `start === end` only in a one-token ring (the whole circle). */
  end: bigint;
  owner: string;
}

/** A piece (start, end] of the key space whose owner changes from `from` to `to`. */
export interface RangeMove {
  start: bigint;
  end: bigint;
  from: string;
  to: string;
}

/** A piece (start, end] of the key space whose preference list changes. */
export interface PreferenceMove {
  start: bigint;
  end: bigint;
  before: string[];
  after: string[];
}

export class Ring {
  /** Members sorted by id (code-unit order), so a Ring is a canonical value. */
  readonly #members: readonly Member[];
  /** Strictly increasing tokens. */
  readonly #tokens: BigUint64Array;
  /** #owners[i] is the index in #members of the member holding #tokens[i]. */
  readonly #owners: Uint32Array;
  /** Zone index of each member, or undefined when members carry no zones. */
  readonly #zoneOf: Uint32Array | undefined;
  /** Number of distinct zones (0 when members carry no zones). */
  readonly zoneCount: number;

  private constructor(
    members: readonly Member[],
    tokens: BigUint64Array,
    owners: Uint32Array,
    zoneOf: Uint32Array | undefined,
    zoneCount: number,
  ) {
    this.#members = members;
    this.#tokens = tokens;
    this.#owners = owners;
    this.#zoneOf = zoneOf;
    this.zoneCount = zoneCount;
  }

  /**
   * The ring of `members`, each with `opts.vnodes` tokens hash64(`${id}#${i}`).
   * Requires `initHash()` to have resolved.
   */
  static build(members: readonly Member[], opts: RingOptions = {}): Ring {
    const vnodes = opts.vnodes ?? vnodesDefault;
    assert(
      Number.isInteger(vnodes) && vnodes >= 1 && vnodes <= vnodesMax,
      `vnodes must be an integer in 1..${vnodesMax}, got ${vnodes}`,
    );
    const tokensOf = new Map<string, bigint[]>();
    for (const member of members) {
      const tokens: bigint[] = [];
      for (let i = 0; i < vnodes; i++) tokens.push(hash64(`${member.id}#${i}`));
      // A duplicate id is caught by fromTokens, which compares the member list itself.
      tokensOf.set(member.id, tokens);
    }
    return Ring.fromTokens(members, tokensOf);
  }

  /**
   * The ring of `members` with explicit tokens (tokensOf.get(id) for each member).
   * `build` is the normal way in; this one exists for tests that need tokens at the
   * edges of the circle (0, positionMax) or colliding tokens, and for tools that pin
   * tokens. Two members claiming the same token: the smaller id keeps it (the other
   * member keeps its other tokens), so every process resolves the collision alike.
   */
  static fromTokens(members: readonly Member[], tokensOf: ReadonlyMap<string, readonly bigint[]>): Ring {
    assert(members.length >= 1, 'a ring needs at least one member');
    assert(members.length <= membersMax, `a ring holds at most ${membersMax} members, got ${members.length}`);
    const sorted = members.map(copyMember).sort((a, b) => compareIds(a.id, b.id));
    for (let m = 0; m < sorted.length; m++) {
      assert(m === 0 || sorted[m - 1]!.id !== sorted[m]!.id, `duplicate member id ${JSON.stringify(sorted[m]!.id)}`);
    }
    const { zoneOf, zoneCount } = indexZones(sorted);

    const entries: { token: bigint; owner: number }[] = [];
    for (let m = 0; m < sorted.length; m++) {
      const tokens = tokensOf.get(sorted[m]!.id);
      assert(tokens !== undefined && tokens.length >= 1, `member ${sorted[m]!.id} has no tokens`);
      assert(tokens.length <= vnodesMax, `member ${sorted[m]!.id} has more than ${vnodesMax} tokens`);
      for (const token of tokens) {
        assert(isPosition(token), `token ${String(token)} of ${sorted[m]!.id} is outside [0, 2^64)`);
        entries.push({ token, owner: m });
      }
    }
    assert(tokensOf.size === sorted.length, 'tokensOf names a member that is not in the ring');
    // Members are sorted by id, so on equal tokens the smaller owner index is the smaller id.
    entries.sort((x, y) => (x.token < y.token ? -1 : x.token > y.token ? 1 : x.owner - y.owner));

    const tokens: bigint[] = [];
    const owners: number[] = [];
    for (const entry of entries) {
      if (tokens.length > 0 && tokens[tokens.length - 1] === entry.token) continue;
      tokens.push(entry.token);
      owners.push(entry.owner);
    }
    const held = new Uint8Array(sorted.length);
    for (const owner of owners) held[owner] = 1;
    for (let m = 0; m < sorted.length; m++) {
      assert(held[m] === 1, `member ${sorted[m]!.id} lost every token to collisions`);
    }
    return new Ring(Object.freeze(sorted), BigUint64Array.from(tokens), Uint32Array.from(owners), zoneOf, zoneCount);
  }

  /** Number of members. */
  get size(): number {
    return this.#members.length;
  }

  /** Number of distinct tokens (members × vnodes, less any collisions). */
  get tokenCount(): number {
    return this.#tokens.length;
  }

  /** The members, sorted by id. */
  members(): readonly Member[] {
    return this.#members;
  }

  /** A copy of the sorted tokens. */
  tokens(): BigUint64Array {
    return this.#tokens.slice();
  }

  /** The position of a key: hash64 of its bytes. */
  position(key: Uint8Array | string): bigint {
    return hash64(key);
  }

  /** The member owning `pos`: the holder of the first token >= pos, wrapping to the first token. */
  ownerOf(pos: bigint): string {
    return this.#members[this.#owners[this.#successor(pos)]!]!.id;
  }

  /** The range (start, end] that contains `pos`. */
  rangeOf(pos: bigint): RingRange {
    return this.#range(this.#successor(pos));
  }

  /** Every range, in token order; they partition the circle. */
  ranges(): RingRange[] {
    const ranges: RingRange[] = [];
    for (let i = 0; i < this.#tokens.length; i++) ranges.push(this.#range(i));
    return ranges;
  }

  /** Fraction of the key space each member owns, by member id; the fractions sum to 1. */
  shares(): Map<string, number> {
    const owned = new Array<bigint>(this.#members.length).fill(0n);
    for (let i = 0; i < this.#tokens.length; i++) {
      const range = this.#range(i);
      owned[this.#owners[i]!]! += rangeSize(range.start, range.end);
    }
    assert(owned.reduce((a, b) => a + b, 0n) === positionCount, 'ranges do not cover the circle exactly once');
    const shares = new Map<string, number>();
    for (let m = 0; m < this.#members.length; m++) {
      shares.set(this.#members[m]!.id, Number(owned[m]!) / Number(positionCount));
    }
    return shares;
  }

  /**
   * The first min(n, size) distinct members met walking clockwise from `pos` (starting
   * with the holder of the first token >= pos, i.e. ownerOf(pos)).
   *
   * Zone-aware when members carry zones: first the first member of each zone not yet
   * used, in walk order, until n members or every zone is used; then the remaining
   * slots go to the next distinct members in walk order. So N replicas span
   * min(N, zones) zones, and the list still starts with the owner.
   */
  preferenceList(pos: bigint, n: number): string[] {
    assert(Number.isInteger(n) && n >= 1, `preference list length must be a positive integer, got ${n}`);
    const want = Math.min(n, this.#members.length);
    const zonesWant = Math.min(n, this.zoneCount);
    const walk = this.#walk(this.#successor(pos), want, zonesWant);
    const picked = this.#zoneOf === undefined ? walk.slice(0, want) : pickAcrossZones(walk, this.#zoneOf, want, zonesWant);

    const ids = picked.map((m) => this.#members[m]!.id);
    assert(ids.length === want, `preference list has ${ids.length} members, expected ${want}`);
    assert(new Set(ids).size === ids.length, 'preference list repeats a member');
    return ids;
  }

  /**
   * Distinct member indexes in clockwise order from token index `start`, stopping once
   * there are `want` of them covering `zonesWant` zones. At most one lap: every member
   * holds a token, so one lap meets them all.
   */
  #walk(start: number, want: number, zonesWant: number): number[] {
    const seen = new Uint8Array(this.#members.length);
    const zoneSeen = new Uint8Array(this.zoneCount);
    const walk: number[] = [];
    let zones = 0;
    let i = start;
    for (let step = 0; step < this.#tokens.length; step++) {
      const m = this.#owners[i]!;
      if (seen[m] === 0) {
        seen[m] = 1;
        walk.push(m);
        if (this.#zoneOf !== undefined && zoneSeen[this.#zoneOf[m]!] === 0) {
          zoneSeen[this.#zoneOf[m]!] = 1;
          zones++;
        }
        if (walk.length >= want && zones >= zonesWant) break;
      }
      i = i + 1 === this.#tokens.length ? 0 : i + 1;
    }
    assert(walk.length >= want && zones >= zonesWant, 'a lap of the ring did not meet every member');
    return walk;
  }

  /** Index of the first token >= pos, or 0 when pos is past the last token (wrap). */
  #successor(pos: bigint): number {
    assert(isPosition(pos), `position ${String(pos)} is outside [0, 2^64)`);
    return successorIndex(this.#tokens, pos);
  }

  #range(i: number): RingRange {
    const previous = i === 0 ? this.#tokens.length - 1 : i - 1;
    return { start: this.#tokens[previous]!, end: this.#tokens[i]!, owner: this.#members[this.#owners[i]!]!.id };
  }
}

/**
 * The pieces of the key space whose owner differs between `a` and `b`. The circle is cut
 * at the union of both rings' tokens (within a piece both owners are constant); adjacent
 * moving pieces with the same (from, to) are merged, across the wrap too, so a merged
 * move may wrap (start > end) like a ring's first range. In order of `end`.
 */
/**
 * In `sorted` (ascending ring positions: tokens, or the ends of ranges), the index of the
 * first element >= pos, or 0 when pos is past the last (the ring wraps). O(log n). The
 * element found ends the range (previous, element] that contains pos.
 */
export function successorIndex(sorted: ArrayLike<bigint>, pos: bigint): number {
  // Invariant: sorted[<lo] < pos and sorted[>=hi] >= pos.
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid]! < pos) lo = mid + 1;
    else hi = mid;
  }
  return lo === sorted.length ? 0 : lo;
}

export function diff(a: Ring, b: Ring): RangeMove[] {
  const moves: RangeMove[] = [];
  forEachPiece(a, b, (start, end) => {
    const from = a.ownerOf(end);
    const to = b.ownerOf(end);
    if (from === to) return;
    const last = moves[moves.length - 1];
    if (last !== undefined && last.end === start && last.from === from && last.to === to) last.end = end;
    else moves.push({ start, end, from, to });
  });
  mergeWrap(moves, (x, y) => x.from === y.from && x.to === y.to);
  return moves;
}

/**
 * The pieces of the key space whose preference list of length `n` differs between `a`
 * and `b`, with the lists before and after. Lists compare in order: the first element
 * is the owner, and the order is also the order of fallback coordinators, so a change
 * of order matters too; a caller that only cares about the replica set can compare sets.
 * Adjacent pieces with equal lists are merged (as in `diff`).
 */
export function diffPreference(a: Ring, b: Ring, n: number): PreferenceMove[] {
  const moves: PreferenceMove[] = [];
  forEachPiece(a, b, (start, end) => {
    const before = a.preferenceList(end, n);
    const after = b.preferenceList(end, n);
    if (sameList(before, after)) return;
    const last = moves[moves.length - 1];
    if (last !== undefined && last.end === start && sameList(last.before, before) && sameList(last.after, after)) {
      last.end = end;
    } else {
      moves.push({ start, end, before, after });
    }
  });
  mergeWrap(moves, (x, y) => sameList(x.before, y.before) && sameList(x.after, y.after));
  return moves;
}

/** Calls `visit(start, end)` for each piece (start, end] between consecutive tokens of a ∪ b. */
function forEachPiece(a: Ring, b: Ring, visit: (start: bigint, end: bigint) => void): void {
  const all = new BigUint64Array(a.tokenCount + b.tokenCount);
  all.set(a.tokens(), 0);
  all.set(b.tokens(), a.tokenCount);
  all.sort();
  const cuts: bigint[] = [];
  for (const token of all) if (cuts.length === 0 || cuts[cuts.length - 1] !== token) cuts.push(token);
  for (let i = 0; i < cuts.length; i++) {
    visit(cuts[i === 0 ? cuts.length - 1 : i - 1]!, cuts[i]!);
  }
}

/** Merges the last piece into the first when they meet across the wrap and `same` says so. */
function mergeWrap<T extends { start: bigint; end: bigint }>(moves: T[], same: (x: T, y: T) => boolean): void {
  if (moves.length < 2) return;
  const first = moves[0]!;
  const last = moves[moves.length - 1]!;
  if (last.end === first.start && same(first, last)) {
    first.start = last.start;
    moves.pop();
  }
}

/**
 * The zone-aware choice from `walk` (distinct members in walk order): the first member
 * of each new zone until `zonesWant` zones, then the rest in walk order until `want`.
 */
function pickAcrossZones(walk: readonly number[], zoneOf: Uint32Array, want: number, zonesWant: number): number[] {
  const picked: number[] = [];
  const taken = new Set<number>();
  const zonesUsed = new Set<number>();
  for (const m of walk) {
    if (zonesUsed.size >= zonesWant) break;
    if (zonesUsed.has(zoneOf[m]!)) continue;
    zonesUsed.add(zoneOf[m]!);
    taken.add(m);
    picked.push(m);
  }
  for (const m of walk) {
    if (picked.length >= want) break;
    if (!taken.has(m)) picked.push(m);
  }
  return picked;
}

/** Zone indexes per member (sorted zone names, so the index is canonical too). */
function indexZones(members: readonly Member[]): { zoneOf: Uint32Array | undefined; zoneCount: number } {
  const zoned = members.filter((m) => m.zone !== undefined).length;
  // A mix is almost surely a node started without its --zone; guessing would put
  // replicas in one failure domain without anyone noticing.
  assert(zoned === 0 || zoned === members.length, 'either every member has a zone or none has');
  if (zoned === 0) return { zoneOf: undefined, zoneCount: 0 };
  const names = [...new Set(members.map((m) => m.zone!))].sort(compareIds);
  const index = new Map(names.map((name, i) => [name, i]));
  return { zoneOf: Uint32Array.from(members, (m) => index.get(m.zone!)!), zoneCount: names.length };
}

function copyMember(member: Member): Member {
  assert(typeof member.id === 'string' && member.id.length > 0, 'member id must be a non-empty string');
  assert(
    member.zone === undefined || (typeof member.zone === 'string' && member.zone.length > 0),
    `zone of ${member.id} must be a non-empty string when given`,
  );
  return Object.freeze(member.zone === undefined ? { id: member.id } : { id: member.id, zone: member.zone });
}

/** Code-unit order: unlike localeCompare it is the same on every machine. */
function compareIds(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function isPosition(pos: bigint): boolean {
  return typeof pos === 'bigint' && pos >= 0n && pos <= positionMax;
}

/** Size of (start, end] on the circle; start === end is the whole circle (one-token ring). */
function rangeSize(start: bigint, end: bigint): bigint {
  return end > start ? end - start : end - start + positionCount;
}

function sameList(x: readonly string[], y: readonly string[]): boolean {
  return x.length === y.length && x.every((id, i) => id === y[i]);
}
