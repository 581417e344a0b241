// Checking lease safety from the outside, across master failovers: the lease tables that
// the masters showed (GET /cluster, polled during a run) and the change log (RPC `changes`
// from LSN 0), read per ring position. What must hold:
// - one LSN, one table: two views with the same LSN show the same owners and generations
//   (two masters never wrote different histories under one LSN);
// - per position, ordered by LSN, the generation never goes down, and one generation has
//   one owner (every hand-over raises the generation);
// - no two owners with overlapping unexpired leases: when a position passes from A to B
//   without a recall (a lapse: A died), B is first seen only once A's lease, as the
//   masters showed it, has run out. A view sent at `sentAt` saying `expiresInMs` means the
//   master's expiry is at least sentAt + expiresInMs, and B's grant came before the reply
//   that first showed it was received, so `firstB.receivedAt < sentAt + expiresInMs` is a
//   certain overlap, whatever the latencies. A hand-over while A's piece showed `movingTo`
//   is a recall (A gave it up on request); it is not judged on expiry, nor is one the
//   caller says may be a recall (the poll can miss a recall acknowledged in milliseconds).
import type { TableChange, WireLease } from '../../server/master/core.js';

export interface LeaseObs {
  readonly start: string;
  readonly end: string;
  readonly owner: string;
  readonly generation: number;
  readonly expiresInMs?: number;
  readonly movingTo?: string;
}

/** One GET /cluster reply: who answered, when the request left and its reply arrived (test clock). */
export interface ViewObs {
  readonly source: string;
  readonly sentAt: number;
  readonly receivedAt: number;
  readonly lsn: number;
  readonly leases: readonly LeaseObs[];
}

export interface Handover {
  readonly position: string;
  readonly from: string;
  readonly to: string;
  readonly fromGeneration: number;
  readonly toGeneration: number;
  readonly recall: boolean;
}

const tok = (h: string): bigint => BigInt(`0x${h}`);
const hex = (t: bigint): string => t.toString(16).padStart(16, '0');

/** Does the piece (start, end] cover `pos`? (start === end: the whole ring.) */
export function covers(start: bigint, end: bigint, pos: bigint): boolean {
  if (start === end) return true;
  return start < end ? pos > start && pos <= end : pos > start || pos <= end;
}

/** Owner and generation per piece, sorted: what "the same table" means. */
export function tableKey(leases: readonly { start: string; end: string; owner: string; generation: number }[]): string {
  return leases
    .map((l) => `${l.start}-${l.end}:${l.owner}@${l.generation}`)
    .sort()
    .join(' ');
}

interface Point {
  readonly lsn: number;
  readonly source: string;
  readonly sentAt: number;
  readonly receivedAt: number;
  readonly owner: string;
  readonly generation: number;
  /** Lower bound of the master's expiry of this lease (test clock), when the view said. */
  readonly expiresAt?: number;
  readonly movingTo?: string;
}

export class LeaseHistory {
  readonly views: ViewObs[] = [];
  /** Every piece end ever seen: one probe position per distinct piece. */
  private readonly ends = new Set<string>();

  add(v: ViewObs): void {
    this.views.push(v);
    for (const l of v.leases) this.ends.add(l.end);
  }

  private positions(): bigint[] {
    return [...this.ends].map(tok).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  }

  /** Per probe position, what each view showed there, ordered by LSN (then by arrival). */
  private series(): Map<bigint, Point[]> {
    const positions = this.positions();
    const out = new Map<bigint, Point[]>(positions.map((p) => [p, []]));
    for (const v of this.views) {
      for (const l of v.leases) {
        const s = tok(l.start);
        const e = tok(l.end);
        for (const p of positions) {
          if (!covers(s, e, p)) continue;
          out.get(p)!.push({
            lsn: v.lsn,
            source: v.source,
            sentAt: v.sentAt,
            receivedAt: v.receivedAt,
            owner: l.owner,
            generation: l.generation,
            ...(typeof l.expiresInMs === 'number' ? { expiresAt: v.sentAt + l.expiresInMs } : {}),
            ...(l.movingTo !== undefined ? { movingTo: l.movingTo } : {}),
          });
        }
      }
    }
    for (const pts of out.values()) pts.sort((a, b) => a.lsn - b.lsn || a.receivedAt - b.receivedAt);
    return out;
  }

  /** Every change of owner seen at a position (by generation), for the test to look at. */
  handovers(): Handover[] {
    const out: Handover[] = [];
    for (const [pos, pts] of this.series()) {
      for (let i = 1; i < pts.length; i++) {
        const a = pts[i - 1]!;
        const b = pts[i]!;
        if (b.generation === a.generation || b.owner === a.owner) continue;
        const recall = pts.some((p) => p.generation === a.generation && p.movingTo !== undefined);
        out.push({ position: hex(pos), from: a.owner, to: b.owner, fromGeneration: a.generation, toGeneration: b.generation, recall });
      }
    }
    return out;
  }

  /**
   * Every violation found (empty when the history is safe), at most `max` lines.
   * `recall(from, to)`: hand-overs the caller knows may be recalls (a live owner asked to
   * give its range up, acknowledging within milliseconds, too fast for a poll to see
   * `movingTo`); they are not judged on expiry.
   */
  problems(opts: { max?: number; recall?: (from: string, to: string) => boolean } = {}): string[] {
    const max = opts.max ?? 20;
    const out: string[] = [];
    const say = (s: string) => {
      if (out.length < max) out.push(s);
    };
    // One LSN, one table.
    const byLsn = new Map<number, { source: string; key: string }>();
    for (const v of this.views) {
      const key = tableKey(v.leases);
      const seen = byLsn.get(v.lsn);
      if (!seen) byLsn.set(v.lsn, { source: v.source, key });
      else if (seen.key !== key) say(`lsn ${v.lsn}: ${seen.source} and ${v.source} showed different tables`);
    }
    for (const [pos, pts] of this.series()) {
      const at = hex(pos);
      const ownerOf = new Map<number, Point>();
      for (let i = 0; i < pts.length; i++) {
        const p = pts[i]!;
        const prev = pts[i - 1];
        if (prev && p.generation < prev.generation) {
          say(`position ${at}: generation went down from ${prev.generation} (lsn ${prev.lsn}, ${prev.source}) to ${p.generation} (lsn ${p.lsn}, ${p.source})`);
        }
        const first = ownerOf.get(p.generation);
        if (!first) ownerOf.set(p.generation, p);
        else if (first.owner !== p.owner) {
          say(`position ${at}: generation ${p.generation} held by ${first.owner} (lsn ${first.lsn}, ${first.source}) and by ${p.owner} (lsn ${p.lsn}, ${p.source})`);
        }
      }
      // Hand-overs: the old owner's lease must have run out before the new owner shows up.
      const gens = [...new Set(pts.map((p) => p.generation))].sort((a, b) => a - b);
      for (let i = 1; i < gens.length; i++) {
        const olds = pts.filter((p) => p.generation === gens[i - 1]);
        const news = pts.filter((p) => p.generation === gens[i]);
        const from = olds[0]!.owner;
        const to = news[0]!.owner;
        if (from === to) continue;
        if (olds.some((p) => p.movingTo !== undefined) || opts.recall?.(from, to)) continue; // a recall: given up on request
        const expiry = Math.max(...olds.map((p) => p.expiresAt ?? Number.NEGATIVE_INFINITY));
        const firstNew = Math.min(...news.map((p) => p.receivedAt));
        if (firstNew < expiry) {
          say(
            `position ${at}: ${to} (generation ${gens[i]}) shown at +${firstNew - this.t0()} ms while ${from}'s lease (generation ${gens[i - 1]}) ran until at least +${expiry - this.t0()} ms (${Math.round(expiry - firstNew)} ms of overlap)`,
          );
        }
      }
    }
    return out;
  }

  private t0(): number {
    return this.views.length > 0 ? Math.min(...this.views.map((v) => v.sentAt)) : 0;
  }
}

export interface ReplayResult {
  /** The change log went back to LSN 0 (not a full table: the log was truncated). */
  readonly complete: boolean;
  readonly changes: number;
  readonly problems: string[];
  /** The table after the last change (when complete). */
  readonly table: WireLease[];
}

/**
 * Replays a `changes` reply from LSN 0: LSNs strictly increase, and per position (every
 * piece end in the log) the generation never goes down and one generation has one owner.
 */
export function replayChangeLog(reply: { lsn: number; changes?: TableChange[]; full?: unknown }, max = 20): ReplayResult {
  if (!Array.isArray(reply.changes)) return { complete: false, changes: 0, problems: [], table: [] };
  const problems: string[] = [];
  const say = (s: string) => {
    if (problems.length < max) problems.push(s);
  };
  const positions = [...new Set(reply.changes.flatMap((c) => c.upsert.map((l) => l.end)))].map(tok);
  const pieces = new Map<string, WireLease>();
  const last = new Map<bigint, { generation: number; lsn: number }>();
  const ownerOf = new Map<string, string>();
  let lsn = 0;
  for (const c of reply.changes) {
    if (c.lsn <= lsn) say(`change log: lsn ${c.lsn} after ${lsn}`);
    lsn = c.lsn;
    for (const end of c.remove) pieces.delete(end);
    for (const l of c.upsert) pieces.set(l.end, l);
    for (const l of pieces.values()) {
      const s = tok(l.start);
      const e = tok(l.end);
      for (const p of positions) {
        if (!covers(s, e, p)) continue;
        const prev = last.get(p);
        if (prev && l.generation < prev.generation) say(`change log, position ${hex(p)}: generation ${prev.generation} (lsn ${prev.lsn}) then ${l.generation} (lsn ${c.lsn})`);
        last.set(p, { generation: l.generation, lsn: c.lsn });
        const k = `${hex(p)}@${l.generation}`;
        const o = ownerOf.get(k);
        if (o === undefined) ownerOf.set(k, l.owner);
        else if (o !== l.owner) say(`change log, position ${hex(p)}: generation ${l.generation} held by ${o} and by ${l.owner} (lsn ${c.lsn})`);
      }
    }
  }
  return { complete: true, changes: reply.changes.length, problems, table: [...pieces.values()] };
}
