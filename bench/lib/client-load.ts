// A load generator that drives ringkv through its TypeScript client (RingClient: the
// master's lease table, then each request straight to the key's owner over msgpack RPC),
// so a benchmark measures what an application using the client gets, client CPU included.
//
// Closed mode: `concurrency` requests in flight, each worker sending its next request when
// the previous one settles (like loadgen's conns x depth). Throughput = replies settled in
// the measured window / window; latency = settle - send.
//
// Open mode: request i of the run is due at t0 + i / rate (t0 = start of the warm-up); a
// timer ticks every `tickMs` and starts every request due by then, each with its own
// intended time however late the tick is (bench/lib/openloop.ts's schedule). Latency =
// settle - INTENDED time, so time waiting in the generator counts (no coordinated omission).
// Every request intended inside the window is accounted wherever it settles (after the
// window too, during the drain): ok with its latency, error, dropped by the generator (when
// `inflightMax` requests are already in flight), or unfinished (no answer by the end of the
// drain). Goodput = ok / window.
//
// Both: every key (or this process's shard of them: key k where k mod preloadShards =
// preloadShard) is set once first (preload), then an unrecorded warm-up, then the window.
// Every error is counted by phase (preload, warm-up, window, drain) and by RingkvError
// code, with a few samples; none is dropped from the report. The window ends at
// `durationS` (or after `maxRequests` replies, closed mode); the drain then waits at most
// the client's timeoutMs + drainSlackMs for requests in flight (the client's own deadline
// ends each one before that). The process measures itself too: its CPU (cores) and event-
// loop utilization over the window, and (open mode) how late its ticks ran.
//
// Callers run it in its own process (`runClientLoadInChild`, CLI bench/client-load.ts).
import { Command, Option } from 'commander';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { RingClient } from '../../client/ring-client.js';
import { assert } from '../../server/util/assert.js';
import { intArg, numberArg } from './cli.js';
import { Histogram, type HistogramSnapshot } from './histogram.js';
import { makeKeyChooser, makeRng, type KeyDist } from './keys.js';
import { loadLimits, runJsonChild, type ChildOptions } from './loadgen.js';
import { openLoopLimits, type LatencySummaryMs } from './openloop.js';
import { repoRoot } from './servers.js';
import { workloadArgs, type Workload } from './workload-args.js';
import { addWorkloadMixOptions } from './workload-cli.js';

export type ClientLoadMode = 'closed' | 'open';

export interface ClientLoadSettings extends Workload {
  /** The lease master's RPC address, host:port. */
  master: string;
  mode: ClientLoadMode;
  /** Closed mode: requests in flight. */
  concurrency: number;
  /** Open mode: requests per second this process offers. */
  rate: number;
  /** Open mode: scheduler period, ms. */
  tickMs: number;
  /** Open mode: requests in flight at most; a due request beyond it is dropped (counted). */
  inflightMax: number;
  /** Closed mode: the window ends after this many replies if that comes first. */
  maxRequests: number;
  preload: boolean;
  /** This process preloads the keys k with k mod preloadShards = preloadShard. */
  preloadShard: number;
  preloadShards: number;
  /** RingClient's timeoutMs: the deadline of each request, retries included. */
  timeoutMs: number;
  /** RingClient's poolSize: RPC connections per node. */
  poolSize: number;
}

export const defaultClientLoadSettings: Omit<ClientLoadSettings, 'master'> = {
  mode: 'closed',
  concurrency: 16,
  rate: 1000,
  tickMs: 1,
  inflightMax: 10_000,
  getRatio: 0.9,
  keys: 10_000,
  valueSize: 100,
  dist: 'uniform',
  zipfS: 0.99,
  warmupS: 1,
  durationS: 5,
  maxRequests: 50_000_000,
  preload: true,
  preloadShard: 0,
  preloadShards: 1,
  seed: 1,
  timeoutMs: 5000,
  poolSize: 2,
};

/** Limits of the generator (named so a run can never grow without bound). */
export const clientLoadLimits = {
  concurrencyMax: 4096,
  rateMax: 1_000_000,
  inflightMaxMax: 100_000,
  keysMax: loadLimits.keysMax,
  /** Below RingClient's default 1 MiB item size, key and overhead included. */
  valueSizeMax: 512 * 1024,
  durationSMax: loadLimits.durationSMax,
  tickMsMax: openLoopLimits.tickMsMax,
  timeoutMsMax: 60_000,
  poolSizeMax: 64,
  preloadShardsMax: 256,
  /** Requests in flight while preloading. */
  preloadConcurrency: 32,
  /** Preload must finish within this, or the run fails. */
  preloadMsMax: loadLimits.preloadMsMax,
  /** The drain waits at most timeoutMs + this for requests in flight. */
  drainSlackMs: 1000,
  /** Requests one tick starts at most (a late tick catches up over the next ones). */
  scheduleTickMax: openLoopLimits.scheduleTickMax,
  errorSamplesMax: 5,
  /** Distinct error codes counted by name; the rest go to "OTHER". */
  errorCodesMax: 16,
} as const;

/** Throws (AssertionError) when a setting is out of range: the message names it. */
export function validateClientLoadSettings(s: ClientLoadSettings): void {
  const L = clientLoadLimits;
  const int = (x: number, lo: number, hi: number) => Number.isSafeInteger(x) && x >= lo && x <= hi;
  assert(typeof s.master === 'string' && /^[^\s:]+:\d{1,5}$/.test(s.master), `master ${JSON.stringify(s.master)}: want host:port`);
  assert(s.mode === 'closed' || s.mode === 'open', `mode ${String(s.mode)}`);
  assert(int(s.concurrency, 1, L.concurrencyMax), `concurrency ${s.concurrency} not in [1, ${L.concurrencyMax}]`);
  assert(Number.isFinite(s.rate) && s.rate > 0 && s.rate <= L.rateMax, `rate ${s.rate} not in (0, ${L.rateMax}]`);
  assert(Number.isFinite(s.tickMs) && s.tickMs >= 1 && s.tickMs <= L.tickMsMax, `tick ${s.tickMs} ms not in [1, ${L.tickMsMax}]`);
  assert(int(s.inflightMax, 1, L.inflightMaxMax), `inflight max ${s.inflightMax} not in [1, ${L.inflightMaxMax}]`);
  assert(s.getRatio >= 0 && s.getRatio <= 1, `get ratio ${s.getRatio} not in [0, 1]`);
  assert(int(s.keys, 1, L.keysMax), `keys ${s.keys} not in [1, ${L.keysMax}]`);
  assert(int(s.valueSize, 0, L.valueSizeMax), `value size ${s.valueSize} not in [0, ${L.valueSizeMax}]`);
  assert(s.dist === 'uniform' || s.dist === 'zipf', `dist ${String(s.dist)}`);
  assert(s.zipfS > 0 && s.zipfS < 10, `zipf exponent ${s.zipfS}`);
  assert(Number.isFinite(s.warmupS) && s.warmupS >= 0 && s.warmupS <= L.durationSMax, `warm-up ${s.warmupS} s not in [0, ${L.durationSMax}]`);
  assert(Number.isFinite(s.durationS) && s.durationS > 0 && s.durationS <= L.durationSMax, `duration ${s.durationS} s not in (0, ${L.durationSMax}]`);
  assert(int(s.maxRequests, 1, Number.MAX_SAFE_INTEGER), `max requests ${s.maxRequests}`);
  assert(int(s.preloadShards, 1, L.preloadShardsMax), `preload shards ${s.preloadShards} not in [1, ${L.preloadShardsMax}]`);
  assert(int(s.preloadShard, 0, s.preloadShards - 1), `preload shard ${s.preloadShard} not in [0, ${s.preloadShards - 1}]`);
  assert(int(s.seed, 0, 2 ** 31 - 1), `seed ${s.seed}`);
  assert(int(s.timeoutMs, 1, L.timeoutMsMax), `timeout ${s.timeoutMs} ms not in [1, ${L.timeoutMsMax}]`);
  assert(int(s.poolSize, 1, L.poolSizeMax), `pool size ${s.poolSize} not in [1, ${L.poolSizeMax}]`);
  if (s.mode === 'open') {
    // Every request of the run must fit the schedule's index space exactly (i / rate in doubles).
    assert(s.rate * (s.warmupS + s.durationS) < 2 ** 40, `rate x run length too large`);
  }
}

// ---- the open-loop schedule (pure, so it can be tested) -----------------------------------

/**
 * The open-loop schedule: request i is due at t0 + i x interval. Given `scheduled` requests
 * already started, returns the index one past the last request due at `now`, at most
 * `perTickMax` beyond `scheduled` (a very late tick catches up over the next ones), never
 * below `scheduled`.
 */
export function dueBy(now: number, t0: number, interval: number, scheduled: number, perTickMax: number): number {
  if (now < t0) return scheduled;
  const due = Math.floor((now - t0) / interval) + 1;
  return Math.max(scheduled, Math.min(due, scheduled + perTickMax));
}

/** The instant request `i` is due. */
export function intendedAt(i: number, t0: number, interval: number): number {
  return t0 + i * interval;
}

/** The keys one preload shard sets: k = shard, shard + shards, ... below `keys`. */
export function shardKeys(keys: number, shard: number, shards: number): number {
  return shard >= keys ? 0 : Math.floor((keys - 1 - shard) / shards) + 1;
}

// ---- the report --------------------------------------------------------------------------

export interface ClientLoadReport {
  settings: ClientLoadSettings;
  preload: { keys: number; seconds: number; errors: number };
  /** Wall-clock bounds of the measured window, ms since the epoch. */
  windowStartMs: number;
  windowEndMs: number;
  measuredS: number;
  /** Successful replies counted (closed: settled in the window; open: intended in it). */
  ok: number;
  /** ok / measuredS: the goodput. */
  opsPerS: number;
  gets: number;
  sets: number;
  hits: number;
  misses: number;
  /** Failed requests counted like `ok` (closed: settled in the window; open: intended in it). */
  errors: number;
  /** The same errors by RingkvError code (BAD_VALUE: a get returned a value of the wrong size). */
  errorsByCode: Record<string, number>;
  /** Failures outside the counted requests: warm-up, and (closed mode) the drain after the window. */
  warmupErrors: number;
  drainErrors: number;
  /** Requests (open: intended in the window) with no answer by the end of the bounded drain. */
  unfinished: number;
  errorSamples: string[];
  /** Latency of the ok requests (closed: from send; open: from the intended time). */
  latencyMs: LatencySummaryMs;
  histogramNs: HistogramSnapshot;
  /** Open mode only. */
  open?: {
    rate: number;
    /** Requests intended in the window, and how many of them were started. */
    offered: number;
    offeredPerS: number;
    sent: number;
    /** Not started: `inflightMax` requests were in flight already. */
    droppedByGenerator: number;
    /** How late the ticks ran: per tick, now - intended time of the first request it started. */
    tickLagMs: LatencySummaryMs;
    inflightMaxSeen: number;
    inflightAtEnd: number;
  };
  /** RingClient's counters over the window: retries, busy answers, NOT_OWNER, failed table pulls. */
  client: { requests: number; retries: number; busy: number; notOwner: number; refreshFailures: number };
  /** This process over the window: CPU (cores) and event-loop utilization (0..1). */
  generator: { cpuCores: number; eventLoopUtilization: number };
  stoppedBy: 'duration' | 'max-requests';
}

export function latencySummary(h: Histogram): LatencySummaryMs {
  const ms = (ns: number) => ns / 1e6;
  return { count: h.count, p50: ms(h.quantile(0.5)), p99: ms(h.quantile(0.99)), p999: ms(h.quantile(0.999)), max: ms(h.max), mean: ms(h.mean()) };
}

/** One histogram of several (e.g. every generator process's), from their snapshots. */
export function mergeSnapshots(snaps: readonly HistogramSnapshot[]): Histogram {
  const counts = new Map<number, number>();
  let count = 0;
  let min = Number.POSITIVE_INFINITY;
  let max = 0;
  let sum = 0;
  let clamped = 0;
  for (const s of snaps) {
    for (const [i, c] of s.buckets) counts.set(i, (counts.get(i) ?? 0) + c);
    if (s.count > 0) min = Math.min(min, s.min);
    count += s.count;
    max = Math.max(max, s.max);
    sum += s.sum;
    clamped += s.clamped;
  }
  const buckets = [...counts.entries()].sort((a, b) => a[0] - b[0]);
  return Histogram.fromSnapshot({ buckets, count, min: count ? min : 0, max, sum, clamped });
}

// ---- the run -----------------------------------------------------------------------------

type Phase = 'preload' | 'warmup' | 'measure' | 'drain' | 'done';

const KIND_GET = 0;
const KIND_SET = 1;

function codeOf(e: unknown): string {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.length > 0 && code.length <= 40 ? code : 'OTHER';
}

function textOf(e: unknown): string {
  return `${codeOf(e)}: ${e instanceof Error ? e.message : String(e)}`.slice(0, 200);
}

class ClientLoadRun {
  private readonly rng: () => number;
  private readonly chooseKey: () => number;
  private readonly value: Buffer;
  private client!: RingClient;
  private phase: Phase = 'preload';
  private preloadErrors = 0;
  private preloadKeys = 0;
  private preloadMs = 0;
  private mStart = 0;
  private mEnd = 0;
  private windowStartMs = 0;
  private windowEndMs = 0;
  private ok = 0;
  private gets = 0;
  private sets = 0;
  private hits = 0;
  private misses = 0;
  private errors = 0;
  private readonly errorsByCode: Record<string, number> = {};
  private warmupErrors = 0;
  private drainErrors = 0;
  private readonly errorSamples: string[] = [];
  private readonly hist = new Histogram();
  private stoppedBy: ClientLoadReport['stoppedBy'] = 'duration';
  private counters0 = { requests: 0, retries: 0, busy: 0, notOwner: 0, refreshFailures: 0 };
  private countersDelta = { requests: 0, retries: 0, busy: 0, notOwner: 0, refreshFailures: 0 };
  private cpu0: NodeJS.CpuUsage = process.cpuUsage();
  private elu0 = performance.eventLoopUtilization();
  private cpuCores = 0;
  private elu = 0;
  // Open mode.
  private readonly intervalMs: number;
  private t0 = 0;
  private scheduled = 0;
  private inflight = 0;
  private inflightMaxSeen = 0;
  private inflightAtEnd = 0;
  private offered = 0;
  private sent = 0;
  private dropped = 0;
  private unfinished = 0;
  private readonly tickLag = new Histogram();
  private ticker: NodeJS.Timeout | undefined;
  private readonly timers: NodeJS.Timeout[] = [];
  private onIdle: (() => void) | undefined;

  constructor(private readonly s: ClientLoadSettings) {
    this.rng = makeRng(s.seed);
    this.chooseKey = makeKeyChooser(s.keys, s.dist, s.zipfS, this.rng);
    this.value = Buffer.alloc(s.valueSize, 'v');
    this.intervalMs = 1000 / s.rate;
  }

  async run(): Promise<ClientLoadReport> {
    this.client = await RingClient.connect({ master: this.s.master, timeoutMs: this.s.timeoutMs, poolSize: this.s.poolSize });
    try {
      if (this.s.preload) await this.preload();
      this.phase = 'warmup';
      const workers = this.s.mode === 'closed' ? Array.from({ length: this.s.concurrency }, () => this.worker()) : [];
      if (this.s.mode === 'open') {
        this.t0 = performance.now();
        this.ticker = setInterval(() => this.tick(), this.s.tickMs);
      }
      await new Promise<void>((resolve) => {
        this.timers.push(
          setTimeout(() => {
            this.openWindow();
            this.timers.push(setTimeout(() => this.stop('duration', resolve), this.s.durationS * 1000));
          }, this.s.warmupS * 1000),
        );
        this.onStop = resolve;
      });
      await this.drain(workers);
    } finally {
      if (this.ticker) clearInterval(this.ticker);
      for (const t of this.timers) clearTimeout(t);
      await this.client.close();
    }
    return this.report();
  }

  /** Called by stop() (the window's end or maxRequests) to let run() go on to the drain. */
  private onStop: (() => void) | undefined;

  private async preload(): Promise<void> {
    const t = performance.now();
    const { keys, preloadShard: shard, preloadShards: shards } = this.s;
    this.preloadKeys = shardKeys(keys, shard, shards);
    let next = shard;
    const worker = async () => {
      // Bounded: `next` grows by `shards` each pass up to `keys`.
      while (next < keys) {
        const k = next;
        next += shards;
        try {
          await this.client.set(`key:${k}`, this.value);
        } catch (e) {
          this.preloadErrors++;
          this.sample(`preload: ${textOf(e)}`);
        }
      }
    };
    let timer: NodeJS.Timeout | undefined;
    const overran = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`preload of ${this.preloadKeys} keys did not finish in ${clientLoadLimits.preloadMsMax} ms`)),
        clientLoadLimits.preloadMsMax,
      );
    });
    try {
      await Promise.race([Promise.all(Array.from({ length: clientLoadLimits.preloadConcurrency }, worker)), overran]);
    } finally {
      clearTimeout(timer);
    }
    this.preloadMs = performance.now() - t;
  }

  private openWindow(): void {
    this.mStart = performance.now();
    this.windowStartMs = Date.now();
    this.cpu0 = process.cpuUsage();
    this.elu0 = performance.eventLoopUtilization();
    this.counters0 = this.countersNow();
    this.phase = 'measure';
  }

  private stop(reason: ClientLoadReport['stoppedBy'], resolve?: () => void): void {
    if (this.phase !== 'measure') return;
    const now = performance.now();
    if (this.s.mode === 'open') this.schedule(now); // everything due before the window's end
    this.mEnd = now;
    this.windowEndMs = Date.now();
    const cpu = process.cpuUsage(this.cpu0);
    const seconds = Math.max(1e-9, (this.mEnd - this.mStart) / 1000);
    this.cpuCores = (cpu.user + cpu.system) / 1e6 / seconds;
    this.elu = performance.eventLoopUtilization(this.elu0).utilization;
    const c = this.countersNow();
    this.countersDelta = {
      requests: c.requests - this.counters0.requests,
      retries: c.retries - this.counters0.retries,
      busy: c.busy - this.counters0.busy,
      notOwner: c.notOwner - this.counters0.notOwner,
      refreshFailures: c.refreshFailures - this.counters0.refreshFailures,
    };
    this.inflightAtEnd = this.inflight;
    this.stoppedBy = reason;
    this.phase = 'drain';
    if (this.ticker) clearInterval(this.ticker);
    this.ticker = undefined;
    (resolve ?? this.onStop)?.();
  }

  private countersNow() {
    const c = this.client.counters;
    return { requests: c.requests, retries: c.retries, busy: c.busy, notOwner: c.notOwner, refreshFailures: c.refreshFailures };
  }

  /** Waits (bounded) for the requests still in flight. */
  private async drain(workers: Array<Promise<void>>): Promise<void> {
    const limitMs = this.s.timeoutMs + clientLoadLimits.drainSlackMs;
    let timer: NodeJS.Timeout | undefined;
    const bound = new Promise<void>((resolve) => (timer = setTimeout(resolve, limitMs)));
    const idle =
      this.s.mode === 'closed'
        ? Promise.all(workers).then(() => {})
        : new Promise<void>((resolve) => {
            this.onIdle = resolve;
            if (this.inflight === 0) resolve();
          });
    await Promise.race([idle, bound]);
    clearTimeout(timer);
    this.onIdle = undefined;
    // Open mode: requests intended in the window still unanswered are counted, never dropped.
    this.unfinished = this.s.mode === 'open' ? this.openInWindowInflight : this.inflight;
    // Whatever settles from now on (closing the client rejects what is left) is not counted again.
    this.phase = 'done';
  }

  // ---- closed loop ----

  private async worker(): Promise<void> {
    // Bounded: the window's end (a timer) or maxRequests moves the phase to drain.
    while (this.phase === 'warmup' || this.phase === 'measure') {
      const get = this.rng() < this.s.getRatio;
      const key = `key:${this.chooseKey()}`;
      const start = performance.now();
      let error: unknown;
      let hit = false;
      this.inflight++;
      try {
        if (get) {
          const item = await this.client.get(key);
          if (item !== undefined) {
            if (item.value.length !== this.s.valueSize) error = Object.assign(new Error(`value of ${item.value.length} bytes, expected ${this.s.valueSize}`), { code: 'BAD_VALUE' });
            hit = true;
          }
        } else {
          await this.client.set(key, this.value);
        }
      } catch (e) {
        error = e;
      }
      this.inflight--;
      const end = performance.now();
      // Read again: the phase moved on while the request was in flight (TypeScript keeps the loop's narrowing).
      const phase = this.phase as Phase;
      if (phase === 'measure') {
        this.count(get ? KIND_GET : KIND_SET, hit, error, end - start);
        if (this.ok + this.errors >= this.s.maxRequests) this.stop('max-requests');
      } else if (error !== undefined && phase !== 'done') {
        this.otherError(error, phase === 'warmup' ? 'warmup' : 'drain');
      }
    }
  }

  // ---- open loop ----

  /** Requests intended in the window and still in flight. */
  private openInWindowInflight = 0;

  private tick(): void {
    if (this.phase !== 'warmup' && this.phase !== 'measure') return;
    this.schedule(performance.now());
  }

  /** Starts every request due by `now` (at most scheduleTickMax). */
  private schedule(now: number): void {
    const due = dueBy(now, this.t0, this.intervalMs, this.scheduled, clientLoadLimits.scheduleTickMax);
    if (due <= this.scheduled) return;
    const measuring = this.phase === 'measure';
    if (measuring) this.tickLag.record((now - intendedAt(this.scheduled, this.t0, this.intervalMs)) * 1e6);
    for (let i = this.scheduled; i < due; i++) {
      const intended = intendedAt(i, this.t0, this.intervalMs);
      const inWindow = measuring && intended >= this.mStart;
      const get = this.rng() < this.s.getRatio;
      const key = this.chooseKey();
      if (inWindow) this.offered++;
      if (this.inflight >= this.s.inflightMax) {
        if (inWindow) this.dropped++;
        continue;
      }
      if (inWindow) {
        this.sent++;
        this.openInWindowInflight++;
      }
      this.launch(get, `key:${key}`, intended, inWindow);
    }
    this.scheduled = due;
    if (this.inflight > this.inflightMaxSeen) this.inflightMaxSeen = this.inflight;
  }

  private launch(get: boolean, key: string, intended: number, inWindow: boolean): void {
    this.inflight++;
    const settle = (hit: boolean, error: unknown) => {
      this.inflight--;
      if (this.phase === 'done') return; // counted as unfinished already
      const latency = performance.now() - intended;
      if (inWindow) {
        this.openInWindowInflight--;
        this.count(get ? KIND_GET : KIND_SET, hit, error, latency);
      } else if (error !== undefined) {
        // Not in the window: intended during the warm-up (nothing is started after the window).
        this.otherError(error, 'warmup');
      }
      if (this.inflight === 0) this.onIdle?.();
    };
    if (get) {
      this.client.get(key).then(
        (item) => {
          if (item !== undefined && item.value.length !== this.s.valueSize) {
            settle(true, Object.assign(new Error(`value of ${item.value.length} bytes, expected ${this.s.valueSize}`), { code: 'BAD_VALUE' }));
          } else {
            settle(item !== undefined, undefined);
          }
        },
        (e: unknown) => settle(false, e),
      );
    } else {
      this.client.set(key, this.value).then(
        () => settle(false, undefined),
        (e: unknown) => settle(false, e),
      );
    }
  }

  // ---- accounting ----

  /** A counted request (closed: settled in the window; open: intended in it). */
  private count(kind: number, hit: boolean, error: unknown, latencyMs: number): void {
    if (error !== undefined) {
      this.errors++;
      const code = codeOf(error);
      const known = code in this.errorsByCode || Object.keys(this.errorsByCode).length < clientLoadLimits.errorCodesMax;
      const k = known ? code : 'OTHER';
      this.errorsByCode[k] = (this.errorsByCode[k] ?? 0) + 1;
      this.sample(`window: ${textOf(error)}`);
      return;
    }
    this.ok++;
    if (kind === KIND_GET) {
      this.gets++;
      if (hit) this.hits++;
      else this.misses++;
    } else {
      this.sets++;
    }
    this.hist.record(latencyMs * 1e6);
  }

  /** An error outside the counted requests: of a warm-up request, or (closed mode) settled after the window. */
  private otherError(error: unknown, where: 'warmup' | 'drain'): void {
    if (where === 'warmup') this.warmupErrors++;
    else this.drainErrors++;
    this.sample(`${where}: ${textOf(error)}`);
  }

  private sample(text: string): void {
    if (this.errorSamples.length < clientLoadLimits.errorSamplesMax) this.errorSamples.push(text);
  }

  private report(): ClientLoadReport {
    const measuredS = Math.max(1e-9, (this.mEnd - this.mStart) / 1000);
    return {
      settings: this.s,
      preload: { keys: this.s.preload ? this.preloadKeys : 0, seconds: this.preloadMs / 1000, errors: this.preloadErrors },
      windowStartMs: this.windowStartMs,
      windowEndMs: this.windowEndMs,
      measuredS,
      ok: this.ok,
      opsPerS: this.ok / measuredS,
      gets: this.gets,
      sets: this.sets,
      hits: this.hits,
      misses: this.misses,
      errors: this.errors,
      errorsByCode: this.errorsByCode,
      warmupErrors: this.warmupErrors,
      drainErrors: this.drainErrors,
      unfinished: this.unfinished,
      errorSamples: this.errorSamples,
      latencyMs: latencySummary(this.hist),
      histogramNs: this.hist.snapshot(),
      ...(this.s.mode === 'open'
        ? {
            open: {
              rate: this.s.rate,
              offered: this.offered,
              offeredPerS: this.offered / measuredS,
              sent: this.sent,
              droppedByGenerator: this.dropped,
              tickLagMs: latencySummary(this.tickLag),
              inflightMaxSeen: this.inflightMaxSeen,
              inflightAtEnd: this.inflightAtEnd,
            },
          }
        : {}),
      client: this.countersDelta,
      generator: { cpuCores: this.cpuCores, eventLoopUtilization: this.elu },
      stoppedBy: this.stoppedBy,
    };
  }
}

/** Runs the load in this process (the CLI does this; benchmarks use `runClientLoadInChild`). */
export async function runClientLoad(settings: ClientLoadSettings): Promise<ClientLoadReport> {
  validateClientLoadSettings(settings);
  return new ClientLoadRun(settings).run();
}

// ---- CLI and child process ------------------------------------------------------------------

export const clientLoadCliPath = path.join(repoRoot, 'dist', 'bench', 'client-load.js');

/** The generator's command line (bench/client-load.ts parses with it; tests too). */
export function clientLoadCommand(): Command {
  const d = defaultClientLoadSettings;
  const L = clientLoadLimits;
  const cmd = new Command('client-load')
    .description('ringkv load generator through the TypeScript client (RingClient): closed loop (--concurrency) or open loop (--rate)')
    .requiredOption('--master <host:port>', "the lease master's RPC address")
    .addOption(new Option('--mode <mode>', 'closed: --concurrency in flight; open: --rate ops/s at fixed times').choices(['closed', 'open']).default(d.mode))
    .option('--concurrency <n>', 'requests in flight (closed mode)', intArg(1, L.concurrencyMax), d.concurrency)
    .option('--rate <ops>', 'offered load, requests per second (open mode)', numberArg(0.001, L.rateMax), d.rate)
    .option('--tick-ms <ms>', 'scheduler period, ms (open mode)', numberArg(1, L.tickMsMax), d.tickMs)
    .option('--inflight-max <n>', 'requests in flight at most; due ones beyond are dropped and counted (open mode)', intArg(1, L.inflightMaxMax), d.inflightMax);
  return addWorkloadMixOptions(cmd, d, L)
    .option('--max-requests <n>', 'end the window after this many replies (closed mode)', intArg(1, Number.MAX_SAFE_INTEGER), d.maxRequests)
    .option('--no-preload', 'skip setting every key (of this shard) before the run')
    .option('--preload-shard <i>', 'preload only keys k with k mod --preload-shards = i', intArg(0, L.preloadShardsMax - 1), d.preloadShard)
    .option('--preload-shards <n>', 'how many processes share the preload', intArg(1, L.preloadShardsMax), d.preloadShards)
    .option('--seed <n>', 'seed of the key/operation sequence', intArg(0, 2 ** 31 - 1), d.seed)
    .option('--timeout-ms <ms>', "RingClient's per-request deadline, retries included", intArg(1, L.timeoutMsMax), d.timeoutMs)
    .option('--pool-size <n>', "RingClient's RPC connections per node", intArg(1, L.poolSizeMax), d.poolSize)
    .option('--json', 'print the report as one line of JSON', false);
}

/** The settings a parsed clientLoadCommand() gives. */
export function clientLoadSettingsOf(o: Record<string, unknown>): ClientLoadSettings {
  return {
    master: o.master as string,
    mode: o.mode as ClientLoadMode,
    concurrency: o.concurrency as number,
    rate: o.rate as number,
    tickMs: o.tickMs as number,
    inflightMax: o.inflightMax as number,
    getRatio: o.getRatio as number,
    keys: o.keys as number,
    valueSize: o.valueSize as number,
    dist: o.dist as KeyDist,
    zipfS: o.zipfS as number,
    warmupS: o.warmupS as number,
    durationS: o.durationS as number,
    maxRequests: o.maxRequests as number,
    preload: o.preload as boolean,
    preloadShard: o.preloadShard as number,
    preloadShards: o.preloadShards as number,
    seed: o.seed as number,
    timeoutMs: o.timeoutMs as number,
    poolSize: o.poolSize as number,
  };
}

/** The CLI arguments that reproduce `settings`. */
export function clientLoadArgs(s: ClientLoadSettings): string[] {
  return [
    '--master', s.master,
    '--mode', s.mode,
    '--concurrency', String(s.concurrency),
    '--rate', String(s.rate),
    '--tick-ms', String(s.tickMs),
    '--inflight-max', String(s.inflightMax),
    ...workloadArgs(s),
    '--max-requests', String(s.maxRequests),
    '--preload-shard', String(s.preloadShard),
    '--preload-shards', String(s.preloadShards),
    '--timeout-ms', String(s.timeoutMs),
    '--pool-size', String(s.poolSize),
    ...(s.preload ? [] : ['--no-preload']),
  ];
}

/** Wall-clock budget of one child run: past it the child is killed by PID. */
export function clientLoadBudgetMs(s: ClientLoadSettings): number {
  // connect (one table pull, bounded by timeoutMs) + preload + warm-up + window + drain + slack
  return s.timeoutMs + clientLoadLimits.preloadMsMax + (s.warmupS + s.durationS) * 1000 + s.timeoutMs + clientLoadLimits.drainSlackMs + 15_000;
}

/**
 * Runs the generator as a separate Node process (its own event loop and heap) and returns its
 * report. The child is killed by PID (SIGKILL) if it overruns its budget or `options.signal` aborts.
 */
export function runClientLoadInChild(settings: ClientLoadSettings, options: ChildOptions = {}): Promise<ClientLoadReport> {
  validateClientLoadSettings(settings);
  return runJsonChild<ClientLoadReport>('client-load', clientLoadCliPath, [...clientLoadArgs(settings), '--json'], clientLoadBudgetMs(settings), options);
}
