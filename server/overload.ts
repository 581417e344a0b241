// Admission control: a node in overload refuses new requests early, before doing their
// work, instead of letting every request wait longer (and every client time out).
//
// Two signals, either of which refuses a request:
//   * in flight: client requests admitted and not answered yet (all front ends together).
//     They wait on LevelDB, on replicas or on an owner; past --max-inflight the node is
//     queueing work it cannot finish soon, and the queue is memory too.
//   * event-loop lag: how late the loop is running. A node whose requests are all
//     synchronous (the memory store, cache hits) never has many in flight; when it is
//     short of CPU the requests queue in socket buffers and in the loop instead, and the
//     loop's lateness is their waiting time. A timer is due every TICK_MS; `admit` asks
//     how far the clock is past the next due instant, so the signal rises during one long
//     turn of the loop, not only after it (a turn that reads 50 sockets' worth of
//     requests refuses the tail of them, which bounds the turn).
//     As in CoDel, only a standing queue counts: requests are refused only after every
//     timer tick for STANDING_MS has been late by more than maxLagMs. One long pause (a
//     GC, the machine stealing the CPU for a moment) is absorbed; a node that stays behind
//     starts refusing within STANDING_MS and stops at the first tick on time.
//
// Refusing costs a parse and a short reply, far less than a request's work, so refusing
// the excess keeps the admitted requests' latency bounded and the goodput near capacity.
// Requests that only read state the operator needs in an overload (stats, version) are
// never refused.
import { performance } from 'node:perf_hooks';

export interface AdmissionOptions {
  /** Client requests in flight before new ones are refused; 0 = no bound. */
  maxInflight: number;
  /** Event-loop lag (ms) past which new requests are refused; 0 = off. */
  maxLagMs: number;
}

export interface AdmissionCounters {
  /** Requests refused because too many were in flight. */
  rejected_inflight: number;
  /** Requests refused because the event loop was running late. */
  rejected_lag: number;
}

const TICK_MS = 5;
/** How long every tick must have been late before lag refuses anything. */
const STANDING_MS = 100;

export class Admission {
  /** Client requests admitted and not answered yet. */
  inflight = 0;
  readonly counters: AdmissionCounters = { rejected_inflight: 0, rejected_lag: 0 };
  private nextDue = 0;
  /** When the current run of late ticks began (0: the last tick was on time). */
  private lateSince = 0;
  /** Every tick for STANDING_MS has been late: the loop has a standing queue. */
  private standing = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(readonly opts: AdmissionOptions) {
    if (opts.maxLagMs > 0) this.start();
  }

  private start(): void {
    this.nextDue = performance.now() + TICK_MS;
    const tick = (): void => {
      const now = performance.now();
      const lag = now - this.nextDue;
      if (lag <= this.opts.maxLagMs) {
        this.lateSince = 0;
        this.standing = false;
      } else {
        if (this.lateSince === 0) this.lateSince = now;
        this.standing = now - this.lateSince >= STANDING_MS;
      }
      this.nextDue = now + TICK_MS;
    };
    this.timer = setInterval(tick, TICK_MS);
    this.timer.unref();
  }

  /** How late the loop runs now (ms): 0 while timers fire on time. */
  lagMs(): number {
    if (this.timer === undefined) return 0;
    return Math.max(0, performance.now() - this.nextDue);
  }

  /**
   * Take one request in, or refuse it. An admitted request must be matched by exactly one
   * `done()` when its reply is ready.
   */
  admit(): boolean {
    const o = this.opts;
    if (o.maxInflight > 0 && this.inflight >= o.maxInflight) {
      this.counters.rejected_inflight++;
      return false;
    }
    if (this.shedding()) {
      this.counters.rejected_lag++;
      return false;
    }
    this.inflight++;
    return true;
  }

  /**
   * The loop has a standing queue and this turn is already late: every client request
   * until the next tick is to be refused (counted by `shed`). Free when not overloaded.
   */
  shedding(): boolean {
    return this.standing && this.timer !== undefined && performance.now() - this.nextDue > this.opts.maxLagMs;
  }

  /** One request refused because `shedding()` said so, without going through `admit`. */
  shed(): void {
    this.counters.rejected_lag++;
  }

  done(): void {
    this.inflight--;
  }

  /** Requests refused so far, for any reason. */
  get rejected(): number {
    return this.counters.rejected_inflight + this.counters.rejected_lag;
  }

  /** Stop the lag timer; from then on lag is not measured and never refuses. */
  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.standing = false;
  }
}

/** The RPC error code of a request refused in overload (the TS client's `Busy`). */
export const OVERLOADED = 'OVERLOADED';

/** What memcached clients see when a node refuses a request in overload. */
export const MC_BUSY = 'SERVER_ERROR busy\r\n';
