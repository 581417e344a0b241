// The owner library: a node's side of its leases. It registers with the master, renews
// every lease it holds in one message every renewMs, gives pieces up when recalled, and
// answers `holds(pos)`: the generation of a valid lease covering pos, or undefined.
//
// Safety: a lease is valid until (the time the renewal was SENT) + leaseMs - driftMs on
// this node's clock. The master counts from when it RECEIVED the renewal, later, and the
// drift margin covers the two clocks running at different speeds; so this node stops
// before the master can think the lease has run out and grant it to someone else.
import { successorIndex } from '../../ring/index.js';
import { hexToken, type LeaseGrant, type MemberInfo, type WireLease } from '../master/core.js';
import type { Clock } from '../clock.js';
import { assert } from '../util/assert.js';

/** How the owner reaches the master: an RPC call (injected, so tests need no sockets). */
export type MasterCall = <T>(type: string, body: unknown, timeoutMs: number) => Promise<T>;

export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const realTimers: Timers = {
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    t.unref();
    return t;
  },
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

export interface OwnerOptions {
  /** Who we are; may be given later (`start(info)`), once the listeners know their ports. */
  info?: MemberInfo;
  call: MasterCall;
  clock: Clock;
  timers: Timers;
  /** Override the master's timings (undefined: use what every grant says). */
  renewMs?: number;
  driftMs?: number;
  /** Deadline of one register/renew call. */
  callTimeoutMs: number;
  /** Told after every grant (to refresh routing, or for logs). */
  onGrant?: (grant: LeaseGrant) => void;
  onError?: (e: unknown) => void;
}

interface Held {
  start: bigint;
  end: bigint;
  generation: number;
}

export class Owner {
  private held: Held[] = [];
  /** The ends of `held`, for the binary search of every request. */
  private heldEnds: bigint[] = [];
  private validUntilMs = 0;
  private registered = false;
  private timer: unknown;
  private renewing: Promise<void> | undefined;
  private closed = false;
  /** Set when a renewal was asked for while one was in flight. */
  private again = false;
  private info: MemberInfo | undefined;
  /** Recalls received so far: a renewal asked before the latest one may list what it took. */
  private revokes = 0;
  /** The master's renewal period, from the last grant (until the first: a short retry). */
  private renewMs = 500;

  constructor(private readonly opts: OwnerOptions) {
    assert((opts.driftMs ?? 0) >= 0 && (opts.renewMs ?? 1) > 0, 'owner timings must be positive');
    this.info = opts.info;
  }

  async start(info?: MemberInfo): Promise<void> {
    if (info) this.info = info;
    assert(this.info !== undefined, 'owner needs its member info to register');
    await this.renewNow();
    this.schedule();
  }

  /** The generation of a valid lease covering `pos`, or undefined. */
  holds(pos: bigint): number | undefined {
    if (this.opts.clock.now() >= this.validUntilMs) return undefined;
    const h = this.find(pos);
    return h?.generation;
  }

  /** Every piece held and still valid (for status pages and tests). */
  leases(): Array<{ start: string; end: string; generation: number; validForMs: number }> {
    const left = this.validUntilMs - this.opts.clock.now();
    if (left <= 0) return [];
    return this.held.map((h) => ({ start: hex(h.start), end: hex(h.end), generation: h.generation, validForMs: left }));
  }

  /** The master takes pieces back: stop serving them now, and say which were given up. */
  revoke(leases: readonly WireLease[]): { ends: string[] } {
    const ends = new Set(leases.map((l) => l.end));
    // By range, not by end: what we hold may be a larger piece than the master's current
    // split of it (a renewal from before the split). Giving up more than asked is safe.
    const gone = leases.map((l) => ({ start: hexToken(l.start), end: hexToken(l.end), generation: l.generation }));
    const exact = new Set(gone.map((g) => `${g.start}/${g.end}`));
    let partly = false;
    this.setHeld(this.held.filter((h) => {
      if (!gone.some((g) => overlaps(h, g))) return true;
      if (!exact.has(`${h.start}/${h.end}`)) partly = true;
      return false;
    }));
    this.revokes++;
    // A piece only partly recalled was dropped whole: get the rest back now, not at the
    // next scheduled renewal (until then its keys would be refused as not-owner).
    if (partly) this.renewSoon();
    return { ends: [...ends] };
  }

  /** Renew at once (e.g. the lease table shows a piece granted to us that we do not hold yet). */
  renewSoon(): void {
    if (this.closed || !this.info) return;
    if (this.renewing) {
      this.again = true;
      return;
    }
    void this.renewNow().catch(() => {});
  }

  close(): void {
    this.closed = true;
    if (this.timer !== undefined) this.opts.timers.clearTimeout(this.timer);
    this.setHeld([]);
    this.validUntilMs = 0;
  }

  private schedule(): void {
    if (this.closed) return;
    this.timer = this.opts.timers.setTimeout(() => {
      this.renewNow()
        .catch(() => {})
        .finally(() => this.schedule());
    }, this.opts.renewMs ?? this.renewMs);
  }

  private renewNow(): Promise<void> {
    if (this.renewing) return this.renewing;
    this.renewing = this.renewOnce().finally(() => {
      this.renewing = undefined;
      if (this.again && !this.closed) {
        this.again = false;
        void this.renewNow().catch(() => {});
      }
    });
    return this.renewing;
  }

  private async renewOnce(): Promise<void> {
    const sentAtMs = this.opts.clock.now();
    const revokesAtSend = this.revokes;
    let grant: LeaseGrant;
    try {
      const info = this.info!;
      grant = this.registered
        ? await this.opts.call<LeaseGrant>('renew', { id: info.id }, this.opts.callTimeoutMs)
        : await this.opts.call<LeaseGrant>('register', info, this.opts.callTimeoutMs);
    } catch (e) {
      // The master forgot us (it restarted without our registration, or declared us down).
      if ((e as { code?: unknown }).code === 'UNKNOWN_NODE') this.registered = false;
      this.opts.onError?.(e);
      throw e;
    }
    if (this.closed) return;
    this.registered = true;
    let fresh = grant.leases
      .map((l) => ({ start: hexToken(l.start), end: hexToken(l.end), generation: l.generation }))
      .sort((a, b) => (a.end < b.end ? -1 : a.end > b.end ? 1 : 0));
    if (this.revokes !== revokesAtSend) {
      // A recall overtook this reply (it came on another connection): the reply may still
      // list what we gave up. Keep only pieces we still hold, exactly; anything new waits
      // for a renewal asked after the recall, which we ask for at once.
      const still = new Set(this.held.map((h) => `${h.start}/${h.end}/${h.generation}`));
      fresh = fresh.filter((h) => still.has(`${h.start}/${h.end}/${h.generation}`));
      this.again = true;
    }
    this.setHeld(fresh);
    this.renewMs = grant.renewMs;
    this.validUntilMs = sentAtMs + grant.leaseMs - (this.opts.driftMs ?? grant.driftMs);
    this.opts.onGrant?.(grant);
  }

  private find(pos: bigint): Held | undefined {
    const held = this.held;
    if (held.length === 0) return undefined;
    // Held pieces are a subset of the ring, sorted by end: the candidate is the first end >= pos,
    // and else the first piece, which may wrap past 2^64-1 (it has the smallest end).
    const h = held[successorIndex(this.heldEnds, pos)]!;
    if (contains(h, pos)) return h;
    return contains(held[0]!, pos) ? held[0] : undefined;
  }

  private setHeld(pieces: Held[]): void {
    this.held = pieces;
    this.heldEnds = pieces.map((p) => p.end);
  }

}

function contains(h: Held, pos: bigint): boolean {
  if (h.start < h.end) return pos > h.start && pos <= h.end;
  // Wraps (or covers the whole ring when start === end).
  return pos > h.start || pos <= h.end;
}

/** Whether two arcs (start, end] of the ring share a position (start === end is the whole ring). */
export function overlaps(a: Held, b: Held): boolean {
  if (a.start === a.end || b.start === b.end) return true;
  return contains(a, b.end) || contains(b, a.end);
}

function hex(t: bigint): string {
  return t.toString(16).padStart(16, '0');
}
