// The lease master's decisions, as a pure state machine (etcd raft's shape): events go in
// with the time they happen at (`now`), and what to do comes out as effects that a thin
// shell carries out in order: persist, then send, then reply. No sockets, timers, disk or
// Date.now() in here, so tests (and the simulator) drive it with plain values.
//
// The lease table partitions the ring into pieces `(start, end]`, each held by one owner
// with a generation. Invariants (asserted):
// - at most one owner per piece at any instant: a piece changes hands only when its old
//   owner is down (its lease has run out), has acknowledged a recall, or its lease on
//   that piece has expired after the master stopped renewing it;
// - generations come from one counter that only grows (and is persisted before any grant
//   is visible), so every hand-over gives the piece a strictly higher generation;
// - the pieces cover the whole ring whenever a member is up.
//
// Moving a piece from a live owner A to B is a recall: A is asked to give the piece up
// and acknowledges; only then is B granted it. Until then A keeps it, but the master no
// longer renews it, so if A never answers, its lease lapses and B gets it anyway.
import { Ring, successorIndex, type Member, type RingRange } from '../../ring/index.js';
import { assert } from '../util/assert.js';
import type { MasterGauges } from '../metrics.js';

export interface NodeAddrs {
  /** host:port of the node's memcached text listener. */
  readonly memcached: string;
  readonly http: string;
  readonly rpc: string;
}

export interface MemberInfo {
  readonly id: string;
  readonly zone?: string;
  readonly addrs: NodeAddrs;
}

/**
 * up: in the ring, holds leases. down: stopped renewing (its lease ran out).
 * joining: registered with `join`, renewing, but not yet in the ring: it is copying the
 * data of the ranges it will hold from their replicas; `joined` makes it up.
 * leaving: still in the ring (it keeps its leases and copies) while it hands its data to
 * the nodes that take its ranges; `left` takes it out of the ring.
 * left: out of the ring for good; it keeps renewing only until its pieces are recalled.
 */
export type MemberStatus = 'up' | 'down' | 'joining' | 'leaving' | 'left';

/** Statuses whose members are in the ring the leases follow (and reads use). */
export const IN_RING: ReadonlySet<MemberStatus> = new Set(['up', 'leaving']);
/** Statuses whose members are in the ring as it will be once every move completes (writes also go there). */
export const IN_NEXT_RING: ReadonlySet<MemberStatus> = new Set(['up', 'joining']);
/** Statuses of members that renew. */
const LIVE: ReadonlySet<MemberStatus> = new Set(['up', 'joining', 'leaving', 'left']);

export interface MemberState extends MemberInfo {
  status: MemberStatus;
  /** When the master last heard a renewal (or registration) from it. */
  renewedAtMs: number;
  /** Has it ever been up (in the ring with its data)? A joiner that went down before it joined has not. */
  everUp?: boolean;
}

export interface Piece {
  /** Exclusive; equal to `end` only for a single piece covering the whole ring. */
  readonly start: bigint;
  /** Inclusive: the ring token ending the piece. */
  readonly end: bigint;
  owner: string;
  generation: number;
  /** Until when the owner's lease on this piece runs, on the master's clock. */
  expiresAtMs: number;
  /** The member the piece is being recalled for, and since when. */
  recallTo?: string;
  recallSinceMs?: number;
  recallSentMs?: number;
  /** Names this recall: only an acknowledgement of this very recall hands the piece over. */
  recallId?: string;
}

/** A lease as nodes and clients see it: tokens as 16-digit hex (msgpack has no u64 in JS numbers). */
export interface WireLease {
  readonly start: string;
  readonly end: string;
  readonly owner: string;
  readonly generation: number;
}

export interface WireMember {
  readonly id: string;
  readonly zone?: string;
  readonly addrs: NodeAddrs;
  readonly status: MemberStatus;
}

/**
 * A moving node's data transfer, as it reports it to the master every few hundred ms
 * (and `GET /cluster`, `ringkv status` and `ringkv cluster add/remove` show it).
 */
export interface WireTransfer {
  /** in: a joiner copying its future ranges in; out: a leaver handing its data on. */
  readonly direction: 'in' | 'out';
  /** Records and bytes moved so far. */
  readonly keys: number;
  readonly bytes: number;
  /** Fraction of the key space scanned, 0..1. */
  readonly fraction: number;
  readonly rateBytesPerS: number;
  /** Seconds left at that rate, when known. */
  readonly etaS?: number;
  readonly done: boolean;
  /** Where the move as a whole is (the least advanced of its ranges). */
  readonly state?: RangeMoveState;
  /** Failed or stalled calls retried, over the whole move (a restarted node counts from 0). */
  readonly retries?: number;
  /** Every moving range (absent in reports of nodes older than the field). */
  readonly ranges?: readonly WireRangeMove[];
}

/**
 * The life of one moving range: queued (waiting for a stream slot), streaming (ordered
 * pages from its source), catching-up (compared with its other replicas, differences
 * pulled), flipping (the data is in place; waiting for the master to change the ring
 * and the leases), done; failed (the move stopped with an error; it starts again).
 */
export type RangeMoveState = 'queued' | 'streaming' | 'catching-up' | 'flipping' | 'done' | 'failed';
export const RANGE_MOVE_STATES: readonly RangeMoveState[] = ['queued', 'streaming', 'catching-up', 'flipping', 'done', 'failed'];

/**
 * Why a moving range is not moving right now: throttle (held to --stream-mb-per-s),
 * concurrency (no stream slot free yet), source-down / source-busy (its source does not
 * answer, or answers busy: retried, from another replica when one exists), receiver-down /
 * receiver-busy (the same for the node receiving a leave's records), lease-pending (the
 * master has not flipped the ring yet).
 */
export type RangeMoveWait = 'throttle' | 'concurrency' | 'source-down' | 'source-busy' | 'receiver-down' | 'receiver-busy' | 'lease-pending';
export const RANGE_MOVE_WAITS: readonly RangeMoveWait[] = ['throttle', 'concurrency', 'source-down', 'source-busy', 'receiver-down', 'receiver-busy', 'lease-pending'];

/** One moving range (start, end] (ring positions as 16 hex digits), as its receiver or sender reports it. */
export interface WireRangeMove {
  readonly start: string;
  readonly end: string;
  /** The node streaming it now (a join: one current replica; a leave: the leaver). */
  readonly source: string;
  readonly target: string;
  readonly state: RangeMoveState;
  /** Records and bytes of this range moved so far (re-sent ones included). */
  readonly keys: number;
  readonly bytes: number;
  readonly rateBytesPerS: number;
  /** Failed or stalled calls of this range retried (a switch to another source is one). */
  readonly retries: number;
  readonly waiting?: RangeMoveWait;
  /** The last failure, while it matters (retrying, or failed). */
  readonly error?: string;
}

export interface TableChange {
  readonly lsn: number;
  readonly upsert: WireLease[];
  /** `end` of pieces that no longer exist. */
  readonly remove: string[];
  readonly members: WireMember[];
}

export interface FullTable {
  readonly lsn: number;
  readonly leases: WireLease[];
  readonly members: WireMember[];
}

/** The cluster's replication settings, sent with every table reply (the shell adds them). */
export interface WireReplication {
  readonly n: number;
  readonly r: number;
  readonly w: number;
  readonly vnodes: number;
}

export type ChangesReply = ({ readonly lsn: number; readonly changes: TableChange[] } | { readonly lsn: number; readonly full: FullTable }) & {
  readonly replication?: WireReplication;
};

/** What a node holds after a register or renew: exactly these pieces, for leaseMs from when it asked. */
export interface LeaseGrant {
  readonly leases: WireLease[];
  readonly leaseMs: number;
  /** The cluster's timings, so every node renews and allows for drift alike. */
  readonly renewMs: number;
  readonly driftMs: number;
  readonly lsn: number;
}

export type Effect =
  | { readonly type: 'persist' }
  | { readonly type: 'recall'; readonly nodeId: string; readonly rpc: string; readonly leases: WireRecall[] };

/** A piece being recalled, as sent to its owner and acknowledged back. */
export interface WireRecall extends WireLease {
  readonly recallId: string;
}

export interface MasterSettings {
  /** How long a lease lasts from a renewal. */
  leaseMs: number;
  /** How often owners renew (told to them in every grant); well below leaseMs. */
  renewMs: number;
  /** Owners stop using a lease this long before it expires: the bound on clock drift. */
  driftMs: number;
  /** Virtual nodes per member. */
  vnodes: number;
  /** Change-log entries kept; older LSNs get the whole table. */
  maxLogEntries: number;
  /** How often an unanswered recall is sent again. */
  recallResendMs: number;
}

/** The durable part of the master's state: enough to go on after a restart. */
export interface MasterSnapshot {
  /** everUp absent: true (snapshots written before joins existed). */
  readonly members: Array<{ id: string; zone?: string; addrs: NodeAddrs; status: MemberStatus; everUp?: boolean }>;
  readonly pieces: Array<{ start: string; end: string; owner: string; generation: number; recallTo?: string }>;
  readonly nextGeneration: number;
  readonly lsn: number;
}

export class MasterError extends Error {
  constructor(
    readonly code: 'UNKNOWN_NODE' | 'ZONE_MISMATCH' | 'BAD_MEMBER',
    message: string,
  ) {
    super(message);
    this.name = 'MasterError';
  }
}

export const tokenHex = (t: bigint): string => t.toString(16).padStart(16, '0');
export const hexToken = (h: string): bigint => BigInt(`0x${h}`);

function wire(p: Piece): WireLease {
  return { start: tokenHex(p.start), end: tokenHex(p.end), owner: p.owner, generation: p.generation };
}

function wireMember(m: MemberState): WireMember {
  return m.zone === undefined
    ? { id: m.id, addrs: m.addrs, status: m.status }
    : { id: m.id, zone: m.zone, addrs: m.addrs, status: m.status };
}


export class MasterCore {
  private readonly members = new Map<string, MemberState>();
  /** Sorted by end. */
  private pieces: Piece[] = [];
  private nextGeneration = 1;
  private lsn = 0;
  private log: TableChange[] = [];
  /** With the time, names recalls uniquely, also across master restarts. */
  private recallCounter = 0;
  /** When this master (process) started: with the counter, names recalls uniquely across restarts. */
  private readonly bootMs: number;

  constructor(
    private readonly settings: MasterSettings,
    snapshot: MasterSnapshot | undefined,
    now: number,
    /** The change log saved with the snapshot (entries up to its LSN), so a new leader answers `changes` from where the last left off. */
    log: readonly TableChange[] = [],
  ) {
    this.bootMs = now;
    assert(settings.leaseMs > 0 && settings.vnodes > 0 && settings.maxLogEntries > 0, 'master settings must be positive');
    assert(settings.renewMs > 0 && settings.driftMs >= 0 && settings.renewMs + settings.driftMs < settings.leaseMs, 'renewMs + driftMs must be below leaseMs');
    if (!snapshot) return;
    // After a restart nobody knows when each lease was last renewed: assume just now, so
    // no piece is handed over before any lease granted before the crash has run out.
    for (const m of snapshot.members) this.members.set(m.id, { ...m, renewedAtMs: now });
    this.pieces = snapshot.pieces.map((p) => ({
      start: hexToken(p.start),
      end: hexToken(p.end),
      owner: p.owner,
      generation: p.generation,
      expiresAtMs: now + settings.leaseMs,
      ...(p.recallTo ? { recallTo: p.recallTo, recallSinceMs: now, recallId: `${now}.${this.recallCounter++}` } : {}),
    }));
    this.nextGeneration = snapshot.nextGeneration;
    this.lsn = snapshot.lsn;
    // Only an unbroken run of entries ending at the snapshot's LSN is a log: `changesSince`
    // must never skip a change (a gap answers with the whole table instead).
    const kept = log.filter((c) => c.lsn <= this.lsn).sort((a, b) => a.lsn - b.lsn);
    let from = kept.length;
    while (from > 0 && kept[from - 1]!.lsn === (from === kept.length ? this.lsn : kept[from]!.lsn - 1)) from--;
    this.log = kept.slice(from).slice(-settings.maxLogEntries);
    for (const p of this.pieces) assert(p.generation < this.nextGeneration, 'persisted generation beyond the counter');
  }

  // ---- events ------------------------------------------------------------------------

  /**
   * A node announces itself (at start, or again after the master forgot it). With `join`,
   * a node new to a cluster that already has members in the ring starts as joining: it
   * copies its future ranges first and calls `joined`. A known node keeps a live status
   * (a restart during its join or leave goes on with it); a down one is up again (it has
   * its data; hints and anti-entropy bring it up to date). A node that left must not come
   * back under the same id with its old data: refused.
   */
  register(info: MemberInfo, now: number, opts: { join?: boolean } = {}): { grant: LeaseGrant; effects: Effect[] } {
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(info.id)) throw new MasterError('BAD_MEMBER', `bad node id ${JSON.stringify(info.id)}`);
    const others = [...this.members.values()].filter((m) => m.id !== info.id);
    if (others.length > 0 && others.some((m) => (m.zone === undefined) !== (info.zone === undefined))) {
      throw new MasterError('ZONE_MISMATCH', 'either every node has a zone or none has');
    }
    const prev = this.members.get(info.id);
    if (prev?.status === 'left') throw new MasterError('BAD_MEMBER', `node ${info.id} has left the cluster: join under a new id with an empty data directory`);
    let status: MemberStatus;
    const neverUp = prev ? prev.everUp === false : true;
    if (prev && prev.status !== 'down') status = prev.status;
    // New, or down before it ever joined (it has not got its data): it joins (again).
    else if (neverUp && opts.join && others.some((m) => IN_RING.has(m.status))) status = 'joining';
    else status = 'up';
    const member: MemberState = { ...info, status, renewedAtMs: now, everUp: status !== 'joining' && (status === 'up' || !neverUp) };
    this.members.set(info.id, member);
    const changedMember = !prev || prev.status !== status || JSON.stringify(wireMember(prev)) !== JSON.stringify(wireMember(member));
    let effects: Effect[] = [];
    try {
      if (changedMember) effects = this.replan(now, [member]);
    } catch (e) {
      // Never leave the member half-registered: a later register would see no change.
      if (prev) this.members.set(info.id, prev);
      else this.members.delete(info.id);
      throw e;
    }
    return { grant: this.renewPieces(member, now), effects };
  }

  /** A node renews every lease it holds, in one message. */
  renew(nodeId: string, now: number): { grant: LeaseGrant; effects: Effect[] } {
    const m = this.members.get(nodeId);
    if (!m || !LIVE.has(m.status)) throw new MasterError('UNKNOWN_NODE', `node ${nodeId} is not a live member: register again`);
    m.renewedAtMs = now;
    return { grant: this.renewPieces(m, now), effects: [] };
  }

  /** A joining node has copied the data of its future ranges: into the ring it goes. */
  joined(nodeId: string, now: number): Effect[] {
    const m = this.members.get(nodeId);
    if (!m || !LIVE.has(m.status)) throw new MasterError('UNKNOWN_NODE', `node ${nodeId} is not a live member: register again`);
    if (m.status !== 'joining') return [];
    m.status = 'up';
    m.everUp = true;
    m.renewedAtMs = now;
    return this.replan(now, [m]);
  }

  /**
   * Decommission: the node stays in the ring while it hands its data to the nodes that
   * take its ranges, then calls `left`. Refused when fewer than `keep` members would stay
   * in the ring (never fewer than N copies), or when the node is not up.
   */
  leave(nodeId: string, now: number, keep: number): Effect[] {
    const m = this.members.get(nodeId);
    if (!m) throw new MasterError('UNKNOWN_NODE', `no member ${nodeId}`);
    if (m.status === 'leaving' || m.status === 'left') return [];
    if (m.status !== 'up') throw new MasterError('BAD_MEMBER', `node ${nodeId} is ${m.status}: only an up node can leave`);
    const staying = [...this.members.values()].filter((o) => o.id !== nodeId && o.status === 'up').length;
    if (staying < keep) throw new MasterError('BAD_MEMBER', `${nodeId} cannot leave: ${staying} members would stay, fewer than ${keep}`);
    const before = this.rows();
    m.status = 'leaving';
    return this.commit(before, [m]);
  }

  /** A leaving node has handed its data on: out of the ring; its pieces are recalled. */
  left(nodeId: string, now: number): Effect[] {
    const m = this.members.get(nodeId);
    if (!m) throw new MasterError('UNKNOWN_NODE', `no member ${nodeId}`);
    if (m.status === 'left') return [];
    if (m.status !== 'leaving') throw new MasterError('BAD_MEMBER', `node ${nodeId} is ${m.status}, not leaving`);
    m.status = 'left';
    return this.replan(now, [m]);
  }

  /**
   * The old owner has stopped serving these pieces: hand them over. Matched by end AND
   * recall id, so a late acknowledgement of a recall that was cancelled (and the piece
   * renewed since) cannot hand over a piece its owner holds again.
   */
  recalled(nodeId: string, acked: ReadonlyArray<{ readonly end: string; readonly recallId: string }>, now: number): Effect[] {
    void now;
    const wanted = new Map(acked.map((a) => [a.end, a.recallId]));
    const granted: Piece[] = [];
    for (const p of this.pieces) {
      if (p.owner === nodeId && p.recallTo !== undefined && p.recallId !== undefined && wanted.get(tokenHex(p.end)) === p.recallId && this.inRing(p.recallTo)) granted.push(p);
    }
    if (granted.length === 0) return [];
    const before = this.rows();
    this.handOver(granted);
    return this.commit(before, []);
  }

  /** Time passes: members that stopped renewing go down; unanswered recalls lapse or are re-sent. */
  tick(now: number): Effect[] {
    const down: MemberState[] = [];
    for (const m of this.members.values()) {
      // A node that left may stop renewing: it is gone, not down.
      if (LIVE.has(m.status) && m.status !== 'left' && m.renewedAtMs + this.settings.leaseMs <= now) {
        m.status = 'down';
        down.push(m);
      }
    }
    if (down.length > 0) return this.replan(now, down);
    const lapsed = this.pieces.filter((p) => p.recallTo !== undefined && p.expiresAtMs <= now && this.inRing(p.recallTo));
    const effects: Effect[] = [];
    if (lapsed.length > 0) {
      const before = this.rows();
      this.handOver(lapsed);
      effects.push(...this.commit(before, []));
    }
    effects.push(...this.recallEffects(now));
    return effects;
  }

  // ---- queries -----------------------------------------------------------------------

  changesSince(lsn: number): ChangesReply {
    if (lsn === this.lsn) return { lsn: this.lsn, changes: [] };
    const oldest = this.log[0];
    if (lsn > this.lsn || !oldest || lsn < oldest.lsn - 1) return { lsn: this.lsn, full: this.table() };
    return { lsn: this.lsn, changes: this.log.filter((c) => c.lsn > lsn) };
  }

  /** The change-log entries after `lsn` (what a save must add to the saved log), oldest first. */
  logAfter(lsn: number): TableChange[] {
    return this.log.filter((c) => c.lsn > lsn);
  }

  /** The oldest LSN the change log still holds (older saved entries may go). */
  oldestLogLsn(): number {
    return this.log[0]?.lsn ?? this.lsn + 1;
  }

  table(): FullTable {
    return { lsn: this.lsn, leases: this.pieces.map(wire), members: [...this.members.values()].map(wireMember) };
  }

  snapshot(): MasterSnapshot {
    return {
      members: [...this.members.values()].map((m) => ({
        id: m.id,
        ...(m.zone !== undefined ? { zone: m.zone } : {}),
        addrs: m.addrs,
        status: m.status,
        ...(m.everUp === false ? { everUp: false } : {}),
      })),
      pieces: this.pieces.map((p) => ({ ...wire(p), ...(p.recallTo ? { recallTo: p.recallTo } : {}) })),
      nextGeneration: this.nextGeneration,
      lsn: this.lsn,
    };
  }

  /** For GET /cluster and `ringkv status`: members with health, and every piece with its state. */
  view(now: number) {
    return {
      lsn: this.lsn,
      leaseMs: this.settings.leaseMs,
      members: [...this.members.values()].map((m) => ({
        ...wireMember(m),
        lastRenewalAgoMs: now - m.renewedAtMs,
        pieces: this.pieces.filter((p) => p.owner === m.id).length,
      })),
      leases: this.pieces.map((p) => ({
        ...wire(p),
        expiresInMs: p.expiresAtMs - now,
        ...(p.recallTo ? { movingTo: p.recallTo, movingForMs: now - (p.recallSinceMs ?? now) } : {}),
      })),
    };
  }

  /** Counts for /metrics, without copying the table: members by status, leases by state, versions. */
  gauges(now: number): MasterGauges {
    const members: Record<MemberStatus, number> = { up: 0, down: 0, joining: 0, leaving: 0, left: 0 };
    for (const m of this.members.values()) members[m.status]++;
    const leases = { held: 0, recalling: 0, unheld: 0 };
    for (const p of this.pieces) {
      if (p.recallTo !== undefined) leases.recalling++;
      else if (p.expiresAtMs > now) leases.held++;
      else leases.unheld++;
    }
    return { members, ranges: this.pieces.length, leases, lsn: this.lsn, changeLogEntries: this.log.length, generations: this.nextGeneration - 1 };
  }

  /** Each member's status, for logging its changes. */
  statuses(): Map<string, MemberStatus> {
    const out = new Map<string, MemberStatus>();
    for (const m of this.members.values()) out.set(m.id, m.status);
    return out;
  }

  /** Whether `id` is a member of the ring the leases follow: only such a member is ever handed a piece. */
  private inRing(id: string): boolean {
    const m = this.members.get(id);
    return m !== undefined && IN_RING.has(m.status);
  }

  member(id: string): MemberState | undefined {
    return this.members.get(id);
  }

  // ---- internals ---------------------------------------------------------------------

  private renewPieces(m: MemberState, now: number): LeaseGrant {
    const held: WireLease[] = [];
    for (const p of this.pieces) {
      // A piece being recalled is not renewed: its lease runs out if the recall is never answered.
      if (p.owner === m.id && p.recallTo === undefined) {
        p.expiresAtMs = now + this.settings.leaseMs;
        held.push(wire(p));
      }
    }
    return { leases: held, leaseMs: this.settings.leaseMs, renewMs: this.settings.renewMs, driftMs: this.settings.driftMs, lsn: this.lsn };
  }

  /** Recompute the target ring from the live members and move pieces toward it. */
  private replan(now: number, changedMembers: MemberState[]): Effect[] {
    const before = this.rows();
    const up: Member[] = [...this.members.values()]
      .filter((m) => IN_RING.has(m.status))
      .map((m) => (m.zone === undefined ? { id: m.id } : { id: m.id, zone: m.zone }));
    if (up.length === 0) {
      // Nobody can hold a lease; pieces stay with their (down) owners until someone is up.
      return this.commit(before, changedMembers);
    }
    const target = Ring.build(up, { vnodes: this.settings.vnodes }).ranges();
    if (this.pieces.length === 0) {
      this.pieces = target.map((r) => this.grant(r, now));
      return this.commit(before, changedMembers);
    }
    const oldEnds = this.pieces.map((p) => p.end);
    const targetEnds = target.map((r) => r.end);
    const boundaries = [...new Set([...oldEnds, ...targetEnds])].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    const next: Piece[] = [];
    /** One new generation per (target range) for pieces granted outright in this replan. */
    const grantGeneration = new Map<bigint, number>();
    for (let i = 0; i < boundaries.length; i++) {
      const end = boundaries[i]!;
      const start = boundaries[(i + boundaries.length - 1) % boundaries.length]!;
      const cur = this.pieces[successorIndex(oldEnds, end)]!;
      const tgt: RingRange = target[successorIndex(targetEnds, end)]!;
      const owner = this.members.get(cur.owner);
      if (cur.owner === tgt.owner) {
        next.push({ start, end, owner: cur.owner, generation: cur.generation, expiresAtMs: cur.expiresAtMs });
      } else if ((!owner || owner.status === 'down') && cur.expiresAtMs <= now) {
        // The old owner's lease has run out (that is what "down" means): grant at once.
        let g = grantGeneration.get(tgt.end);
        if (g === undefined) {
          g = this.nextGeneration++;
          grantGeneration.set(tgt.end, g);
        }
        // Not held until the new owner renews (it learns of the grant in the renewal reply).
        next.push({ start, end, owner: tgt.owner, generation: g, expiresAtMs: 0 });
      } else {
        // A live owner is recalled. So is a down one whose lease may still run (right after
        // a master restart every lease is assumed fresh): no recall reaches it, and the
        // piece moves when the lease lapses (tick).
        const same = cur.recallTo === tgt.owner && cur.recallId !== undefined;
        next.push({
          start,
          end,
          owner: cur.owner,
          generation: cur.generation,
          expiresAtMs: cur.expiresAtMs,
          recallTo: tgt.owner,
          recallSinceMs: same ? cur.recallSinceMs ?? now : now,
          recallId: same ? cur.recallId! : `${this.bootMs}.${this.recallCounter++}`,
          ...(same && cur.recallSentMs !== undefined ? { recallSentMs: cur.recallSentMs } : {}),
        });
      }
    }
    this.pieces = this.merge(next);
    return [...this.commit(before, changedMembers), ...this.recallEffects(now)];
  }

  private grant(r: RingRange, now: number): Piece {
    void now;
    return { start: r.start, end: r.end, owner: r.owner, generation: this.nextGeneration++, expiresAtMs: 0 };
  }

  /** Give recalled pieces to their new owners, one new generation per new owner. */
  private handOver(pieces: Piece[]): void {
    const generationFor = new Map<string, number>();
    for (const p of pieces) {
      const to = p.recallTo!;
      let g = generationFor.get(to);
      if (g === undefined) {
        g = this.nextGeneration++;
        generationFor.set(to, g);
      }
      assert(g > p.generation, 'a hand-over must raise the generation');
      p.owner = to;
      p.generation = g;
      // The new owner holds it from its next renewal; until then nobody serves it.
      p.expiresAtMs = 0;
      delete p.recallTo;
      delete p.recallSinceMs;
      delete p.recallSentMs;
      delete p.recallId;
    }
    this.pieces = this.merge(this.pieces);
  }

  /** Adjacent pieces with the same owner, generation and recall state become one. */
  private merge(pieces: Piece[]): Piece[] {
    if (pieces.length <= 1) return pieces;
    const out: Piece[] = [];
    for (const p of pieces) {
      const last = out[out.length - 1];
      if (last && last.owner === p.owner && last.generation === p.generation && last.recallTo === p.recallTo && last.recallId === p.recallId && last.end === p.start) {
        out[out.length - 1] = { ...last, end: p.end, expiresAtMs: Math.max(last.expiresAtMs, p.expiresAtMs) };
      } else {
        out.push(p);
      }
    }
    // The first and last piece meet across 2^64 - 1 -> 0.
    if (out.length > 1) {
      const first = out[0]!;
      const last = out[out.length - 1]!;
      if (last.owner === first.owner && last.generation === first.generation && last.recallTo === first.recallTo && last.recallId === first.recallId && last.end === first.start) {
        out[0] = { ...first, start: last.start, expiresAtMs: Math.max(first.expiresAtMs, last.expiresAtMs) };
        out.pop();
      }
    }
    return out;
  }

  private rows(): Map<string, string> {
    const m = new Map<string, string>();
    for (const p of this.pieces) m.set(tokenHex(p.end), `${tokenHex(p.start)}|${p.owner}|${p.generation}`);
    return m;
  }

  /** Record what changed in the log (new LSN) and ask the shell to persist it. */
  private commit(before: Map<string, string>, changedMembers: MemberState[]): Effect[] {
    const after = this.rows();
    const upsert: WireLease[] = [];
    const remove: string[] = [];
    for (const p of this.pieces) {
      const k = tokenHex(p.end);
      if (before.get(k) !== after.get(k)) upsert.push(wire(p));
    }
    for (const k of before.keys()) if (!after.has(k)) remove.push(k);
    if (upsert.length === 0 && remove.length === 0 && changedMembers.length === 0) return [];
    const change: TableChange = { lsn: ++this.lsn, upsert, remove, members: changedMembers.map(wireMember) };
    this.log.push(change);
    if (this.log.length > this.settings.maxLogEntries) this.log.splice(0, this.log.length - this.settings.maxLogEntries);
    this.checkInvariants();
    return [{ type: 'persist' }];
  }

  /** Recall messages for pieces not asked for within recallResendMs. */
  private recallEffects(now: number): Effect[] {
    const byOwner = new Map<string, Piece[]>();
    for (const p of this.pieces) {
      if (p.recallTo === undefined) continue;
      if (p.recallSentMs !== undefined && now - p.recallSentMs < this.settings.recallResendMs) continue;
      p.recallSentMs = now;
      const list = byOwner.get(p.owner) ?? [];
      list.push(p);
      byOwner.set(p.owner, list);
    }
    const effects: Effect[] = [];
    for (const [nodeId, pieces] of byOwner) {
      const m = this.members.get(nodeId);
      if (m && LIVE.has(m.status)) effects.push({ type: 'recall', nodeId, rpc: m.addrs.rpc, leases: pieces.map((p) => ({ ...wire(p), recallId: p.recallId! })) });
    }
    return effects;
  }

  private checkInvariants(): void {
    const n = this.pieces.length;
    for (let i = 0; i < n; i++) {
      const p = this.pieces[i]!;
      assert(p.generation < this.nextGeneration, 'generation beyond the counter');
      if (i > 0) assert(this.pieces[i - 1]!.end < p.end, 'pieces sorted by end');
      const prev = this.pieces[(i + n - 1) % n]!;
      assert(p.start === prev.end, 'pieces tile the ring');
    }
  }
}
