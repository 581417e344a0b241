// Helpers shared by the lease master's tests: settings and member infos, decoding the
// wire table back into bigint pieces, lookups written from DESIGN.md's definitions
// ((start, end], wrapping), applying a change log the way a lookup library would, and
// a small model of a node's own view of its leases (what the owner library holds).
import fc from 'fast-check';
import { expect } from 'vitest';
import { hash64, positionMax, Ring, type Member } from '../../ring/index.js';
import {
  MasterCore,
  MasterError,
  hexToken,
  type Effect,
  type MasterSnapshot,
  type FullTable,
  type LeaseGrant,
  type MasterSettings,
  type MemberInfo,
  type TableChange,
  type WireLease,
  type WireMember,
  type WireRecall,
} from '../../server/master/core.js';

export const settings: MasterSettings = { leaseMs: 1000, renewMs: 250, driftMs: 0, vnodes: 16, maxLogEntries: 100, recallResendMs: 200 };

export const ids = ['n0', 'n1', 'n2', 'n3', 'n4'] as const;

/** Distinct, recognisable addresses per node (the port encodes the node's index). */
export function info(id: string, zone?: string): MemberInfo {
  const k = Math.max(0, ids.indexOf(id as (typeof ids)[number])) + 1;
  const addrs = { memcached: `127.0.0.1:${k}1`, http: `127.0.0.1:${k}2`, rpc: `127.0.0.1:${k}3` };
  return zone === undefined ? { id, addrs } : { id, zone, addrs };
}

/** Fixed pseudo-random positions (hash64 is deterministic), plus the edges of the circle. */
export function probePositions(n: number): bigint[] {
  const out: bigint[] = [0n, 1n, positionMax];
  for (let i = 0; out.length < n; i++) out.push(hash64(`probe#${i}`));
  return out;
}

export interface DecodedPiece {
  start: bigint;
  end: bigint;
  owner: string;
  generation: number;
}

export function decode(leases: readonly WireLease[]): DecodedPiece[] {
  return leases
    .map((l) => ({ start: hexToken(l.start), end: hexToken(l.end), owner: l.owner, generation: l.generation }))
    .sort((a, b) => (a.end < b.end ? -1 : a.end > b.end ? 1 : 0));
}

/** pos in the arc (start, end]; start >= end wraps past 2^64 - 1 (start === end: the whole ring). */
export function arcContains(start: bigint, end: bigint, pos: bigint): boolean {
  if (start < end) return pos > start && pos <= end;
  return pos > start || pos <= end;
}

/** The piece of `pieces` containing `pos`, by a linear scan (no shared code with core.ts). */
export function pieceAt(pieces: readonly DecodedPiece[], pos: bigint): DecodedPiece | undefined {
  const hits = pieces.filter((p) => arcContains(p.start, p.end, pos));
  if (hits.length > 1) throw new Error(`position ${pos} lies in ${hits.length} pieces`);
  return hits[0];
}

/** Undefined when the pieces tile the ring (each start is the previous end, wrapping), else why not. */
export function tilingProblem(pieces: readonly DecodedPiece[]): string | undefined {
  if (pieces.length === 0) return 'no pieces';
  for (let i = 0; i < pieces.length; i++) {
    const prev = pieces[(i + pieces.length - 1) % pieces.length]!;
    const p = pieces[i]!;
    if (i > 0 && !(prev.end < p.end)) return `ends not strictly increasing at ${i}`;
    if (p.start !== prev.end) return `piece ${i} starts at ${p.start.toString(16)}, previous ends at ${prev.end.toString(16)}`;
  }
  if (pieces.length === 1 && pieces[0]!.start !== pieces[0]!.end) return 'a single piece must cover the whole ring';
  return undefined;
}

/** A canonical form of a table, for deep equality independent of member order. */
export function canonical(t: FullTable): { lsn: number; leases: WireLease[]; members: WireMember[] } {
  return {
    lsn: t.lsn,
    leases: [...t.leases].sort((a, b) => (a.end < b.end ? -1 : a.end > b.end ? 1 : 0)),
    members: [...t.members].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)),
  };
}

/** Apply a change log to a copy of an older full table as a lookup library would. */
export function applyChanges(old: FullTable, changes: readonly TableChange[]): FullTable {
  const leases = new Map(old.leases.map((l) => [l.end, l]));
  const members = new Map(old.members.map((m) => [m.id, m]));
  let lsn = old.lsn;
  for (const c of changes) {
    if (c.lsn !== lsn + 1) throw new Error(`change ${c.lsn} does not follow ${lsn}`);
    for (const end of c.remove) leases.delete(end);
    for (const l of c.upsert) leases.set(l.end, l);
    for (const m of c.members) members.set(m.id, m);
    lsn = c.lsn;
  }
  return { lsn, leases: [...leases.values()], members: [...members.values()] };
}

export function clone<T>(v: T): T {
  return JSON.parse(JSON.stringify(v)) as T;
}

export function recalls(effects: readonly Effect[]): Array<Extract<Effect, { type: 'recall' }>> {
  return effects.filter((e): e is Extract<Effect, { type: 'recall' }> => e.type === 'recall');
}

export function hasPersist(effects: readonly Effect[]): boolean {
  return effects.some((e) => e.type === 'persist');
}

/** Answer every recall at once (and the recalls those answers cause), as cooperative owners would. */
export function acknowledgeAll(core: MasterCore, effects: readonly Effect[], now: number): void {
  const queue = [...recalls(effects)];
  for (let i = 0; i < 1000 && queue.length > 0; i++) {
    const r = queue.shift()!;
    queue.push(...recalls(core.recalled(r.nodeId, r.leases, now)));
  }
  if (queue.length > 0) throw new Error('recalls did not settle');
}

export function catchMaster(f: () => unknown): MasterError | undefined {
  try {
    f();
  } catch (e) {
    if (e instanceof MasterError) return e;
    throw e;
  }
  return undefined;
}

// ---- a node's own view of its leases -------------------------------------------------

/** A linear interval (lo, hi] of positions, lo in [-1, 2^64 - 1). */
export interface Interval {
  lo: bigint;
  hi: bigint;
  generation: number;
}

/** The arc (start, end] as at most two linear intervals. */
export function arcIntervals(start: bigint, end: bigint, generation: number): Interval[] {
  const out: Interval[] = [];
  if (start < end) out.push({ lo: start, hi: end, generation });
  else {
    if (start < positionMax) out.push({ lo: start, hi: positionMax, generation });
    out.push({ lo: -1n, hi: end, generation });
  }
  return out;
}

/** `held` minus every position of `remove`. */
export function subtract(held: readonly Interval[], remove: readonly Interval[]): Interval[] {
  let cur = [...held];
  for (const r of remove) {
    const next: Interval[] = [];
    for (const h of cur) {
      if (r.hi <= h.lo || r.lo >= h.hi) {
        next.push(h);
        continue;
      }
      if (h.lo < r.lo) next.push({ lo: h.lo, hi: r.lo, generation: h.generation });
      if (r.hi < h.hi) next.push({ lo: r.hi, hi: h.hi, generation: h.generation });
    }
    cur = next;
  }
  return cur;
}

/**
 * What a node itself believes it holds, as the owner library does: exactly the pieces of
 * its latest grant, valid until (when it asked) + leaseMs - driftMs (driftMs = 0 here);
 * a recall makes it stop serving exactly the recalled positions at once. (The owner library
 * drops every held piece a recall overlaps, which is more; a master that is safe against
 * the least a node may do is safe against the library.)
 */
export class NodeView {
  held: Interval[] = [];
  validUntilMs = 0;
  /** False once the node went silent (crashed or cut off): it never renews nor answers. */
  alive = true;
  /** False after the master answered UNKNOWN_NODE: the next renewal is a register. */
  registered = false;

  constructor(readonly id: string) {}

  grant(g: LeaseGrant, askedAtMs: number): void {
    this.held = g.leases.flatMap((l) => arcIntervals(hexToken(l.start), hexToken(l.end), l.generation));
    this.validUntilMs = askedAtMs + g.leaseMs - g.driftMs;
    this.registered = true;
  }

  revoke(leases: readonly WireLease[]): string[] {
    this.held = subtract(
      this.held,
      leases.flatMap((l) => arcIntervals(hexToken(l.start), hexToken(l.end), 0)),
    );
    return leases.map((l) => l.end);
  }

  valid(now: number): readonly Interval[] {
    return now < this.validUntilMs ? this.held : [];
  }
}

/** Undefined when no two different nodes hold a valid lease on one position at `now`, else a description. */
export function doubleHolding(nodes: Iterable<NodeView>, now: number): string | undefined {
  const all: Array<Interval & { id: string }> = [];
  for (const n of nodes) for (const i of n.valid(now)) all.push({ ...i, id: n.id });
  all.sort((a, b) => (a.lo < b.lo ? -1 : a.lo > b.lo ? 1 : 0));
  // For each node, its interval reaching furthest so far (all of them start at or before the current one).
  const reach = new Map<string, Interval>();
  for (const cur of all) {
    for (const [id, r] of reach) {
      if (id !== cur.id && r.hi > cur.lo) {
        return `${id} (generation ${r.generation}) and ${cur.id} (generation ${cur.generation}) both hold (${cur.lo.toString(16)}, ${(r.hi < cur.hi ? r.hi : cur.hi).toString(16)}] at ${now}`;
      }
    }
    const r = reach.get(cur.id);
    if (!r || r.hi < cur.hi) reach.set(cur.id, cur);
  }
  return undefined;
}

/** The piece containing `pos` in pieces sorted by end (the first end >= pos, wrapping), by binary search. */
export function pieceAtSorted(pieces: readonly DecodedPiece[], pos: bigint): DecodedPiece | undefined {
  let lo = 0;
  let hi = pieces.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (pieces[mid]!.end < pos) lo = mid + 1;
    else hi = mid;
  }
  return pieces[lo === pieces.length ? 0 : lo];
}

/**
 * Undefined when every valid lease a node holds is, per the table, its own with that
 * generation (the fencing the design relies on); `pieces` must tile the ring.
 */
export function fencingProblem(nodes: Iterable<NodeView>, pieces: readonly DecodedPiece[], now: number): string | undefined {
  const linear = pieces
    .flatMap((p) => arcIntervals(p.start, p.end, p.generation).map((i) => ({ ...i, owner: p.owner })))
    .sort((a, b) => (a.lo < b.lo ? -1 : a.lo > b.lo ? 1 : 0));
  for (const n of nodes) {
    for (const h of n.valid(now)) {
      // The first table interval ending past h.lo, then every one starting before h.hi.
      let lo = 0;
      let hi = linear.length;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (linear[mid]!.hi <= h.lo) lo = mid + 1;
        else hi = mid;
      }
      for (let i = lo; i < linear.length && linear[i]!.lo < h.hi; i++) {
        const t = linear[i]!;
        if (t.owner !== n.id || t.generation !== h.generation) {
          return `${n.id} holds (${h.lo.toString(16)}, ${h.hi.toString(16)}] at generation ${h.generation}, the table says ${t.owner} at generation ${t.generation} on (${t.lo.toString(16)}, ${t.hi.toString(16)}] at ${now}`;
        }
      }
    }
  }
  return undefined;
}

// ---- the ring a table should converge to ---------------------------------------------

/** The ring of `members` as ring/ builds it, with the master's vnodes. */
export function ringOf(members: readonly string[], s: MasterSettings = settings): Ring {
  return Ring.build(
    members.map((id): Member => ({ id })),
    { vnodes: s.vnodes },
  );
}

export const pieces = (core: MasterCore): DecodedPiece[] => decode(core.table().leases);
export const maxGeneration = (ps: readonly DecodedPiece[]): number => Math.max(...ps.map((p) => p.generation));

/** The pieces tile the ring, and every probe position (and every piece end) is owned in the table as `ring` says. */
export function expectOwnership(core: MasterCore, ring: Ring, positions: readonly bigint[] = probePositions(256)): void {
  const ps = pieces(core);
  expect(tilingProblem(ps)).toBeUndefined();
  for (const pos of [...positions, ...ps.map((p) => p.end)]) {
    expect(pieceAt(ps, pos)?.owner, `owner of ${pos.toString(16)}`).toBe(ring.ownerOf(pos));
  }
}

// ---- the worlds of the safety properties ---------------------------------------------

/** A bit mask of the nodes (bit i: ids[i]) that renew at a tick, each with its percent chance in `renewPct`. */
export function renewMask(renewPct: readonly number[]): fc.Arbitrary<number> {
  return fc
    .tuple(...renewPct.map((pct) => fc.integer({ min: 0, max: 99 }).map((x) => x < pct)))
    .map((bits) => bits.reduce((mask, b, i) => mask | (b ? 1 << i : 0), 0));
}

/** Whether the node `id` (one of `ids`) is picked by a tick's renew mask. */
export const renewsAt = (mask: number, id: string): boolean => ((mask >> ids.indexOf(id as (typeof ids)[number])) & 1) === 1;

/**
 * What the safety properties share: the MasterCore, the nodes' own views, recalls and their
 * answers in flight (delivered, answered, lost), the last persisted snapshot, and the
 * per-position owner and generation last seen.
 */
export class LeaseWorld {
  now = 0;
  core = new MasterCore(settings, undefined, 0);
  readonly nodes = new Map<string, NodeView>();
  recallsInFlight: Array<Extract<Effect, { type: 'recall' }>> = [];
  answersInFlight: Array<{ nodeId: string; acked: WireRecall[] }> = [];
  /** What the shell last wrote to disk (JSON), as it would: after every persist effect. */
  persisted: string | undefined;
  /** Per probe position, the owner and generation last seen in the table. */
  readonly seen: Array<{ owner: string; generation: number } | undefined> = [];
  readonly trace: string[] = [];

  /** @param traceLines how many of the last events a failure shows */
  constructor(private readonly traceLines: number) {}

  fail(what: string): never {
    throw new Error(`${what}\n  after:\n    ${this.trace.slice(-this.traceLines).join('\n    ')}`);
  }

  run(effects: readonly Effect[]): void {
    if (effects.some((e) => e.type === 'persist')) this.persisted = JSON.stringify(this.core.snapshot());
    this.recallsInFlight.push(...recalls(effects));
  }

  live(): NodeView[] {
    return [...this.nodes.values()].filter((n) => n.alive).sort((a, b) => (a.id < b.id ? -1 : 1));
  }

  /** Recall `i` reaches its node, which gives up the recalled positions and answers now or later. */
  deliver(i: number, answerNow: boolean): void {
    const [r] = this.recallsInFlight.splice(i, 1);
    const node = r && this.nodes.get(r.nodeId);
    if (!r || !node || !node.alive) return; // a silent node never answers
    // As the shell does: the answer names ends; the shell passes on the recall's own leases.
    const given = new Set(node.revoke(r.leases));
    const acked = r.leases.filter((l) => given.has(l.end));
    if (answerNow) this.run(this.core.recalled(r.nodeId, acked, this.now));
    else this.answersInFlight.push({ nodeId: r.nodeId, acked });
  }

  /** The answer picked by `k` reaches the master. */
  answer(k: number): void {
    if (this.answersInFlight.length === 0) return;
    const [a] = this.answersInFlight.splice(k % this.answersInFlight.length, 1);
    this.run(this.core.recalled(a!.nodeId, a!.acked, this.now));
  }

  /** The recall or answer picked by `k` is lost. */
  lose(k: number): void {
    const n = this.recallsInFlight.length + this.answersInFlight.length;
    if (n === 0) return;
    const i = k % n;
    if (i < this.recallsInFlight.length) this.recallsInFlight.splice(i, 1);
    else this.answersInFlight.splice(i - this.recallsInFlight.length, 1);
  }

  /** The master restarts from its last persisted snapshot; what was in flight died with its connections. Returns the snapshot. */
  restart(): MasterSnapshot | undefined {
    const snapshot = this.persisted === undefined ? undefined : (JSON.parse(this.persisted) as MasterSnapshot);
    this.core = new MasterCore(settings, snapshot, this.now);
    this.recallsInFlight = [];
    this.answersInFlight = [];
    return snapshot;
  }

  /**
   * Per probe position: the generation never goes down and goes up whenever the owner changes;
   * `handedTo` is called on each change of owner, with the position and the owners.
   */
  checkGenerations(pieces: readonly DecodedPiece[], positions: readonly bigint[], handedTo?: (pos: bigint, from: string, to: string) => void): void {
    if (pieces.length === 0) return;
    positions.forEach((pos, i) => {
      const p = pieceAtSorted(pieces, pos)!;
      const was = this.seen[i];
      if (was && p.generation < was.generation) this.fail(`generation went down at ${pos.toString(16)}: ${was.generation} -> ${p.generation}`);
      if (was && p.owner !== was.owner) {
        if (p.generation <= was.generation) {
          this.fail(`owner ${was.owner} -> ${p.owner} at ${pos.toString(16)} without a higher generation (${was.generation} -> ${p.generation})`);
        }
        handedTo?.(pos, was.owner, p.owner);
      }
      this.seen[i] = { owner: p.owner, generation: p.generation };
    });
  }

  /** Durable state never changes without a persist effect: what a restart would come back to is what the master runs on now. */
  checkPersisted(snapshot = this.core.snapshot()): void {
    if (this.persisted !== undefined || this.core.table().lsn > 0) {
      if (JSON.stringify(snapshot) !== this.persisted) this.fail('durable state changed without a persist effect');
    }
  }
}
