// bench:membership — what a live join and a decommission cost the clients, second by second.
//
// A master (--lease-ms 10000) and 3 memory nodes n1..n3 (N=3/R=2/W=2), every key preloaded,
// then 3 loadgen processes (one per original node, 90 % get / 10 % set, 100 B values)
// measure the same window, each cutting it into 1-second buckets (ops, p99). Meanwhile:
//
//   t ≈ join-at     start n4 with --master: it registers as joining, copies its future
//                   ranges, becomes up; its pieces are then handed over to it
//   t ≈ leave-at    (or steady-s after the ring settled on 4 nodes, whichever is later)
//                   POST /cluster/members/n4/leave on the master: n4 hands its data on,
//                   becomes left, and exits 0 by itself
//
// The master's GET /cluster is polled every 100 ms to timestamp the steps (the first view
// showing them) and to record n4's transfer progress. Every time is wall-clock ms, the
// clock of the generators' buckets. Output: a timeline (JSON), a two-panel SVG plot
// (ops/s summed over the generators, p99 of the worst generator, per second, with the
// events as markers) and a markdown summary (bench/results/<date>-<commit>-membership*).
//
//   node dist/bench/bench-membership.js [--quick] [--duration-s S] [--join-at-s S] [--leave-at-s S]
import os from 'node:os';
import { benchCommand, intArg, numberArg, parseBenchOptions, runBench, type BenchOptions } from './lib/cli.js';
import { clusterNodeArgs, startBenchCluster } from './lib/cluster.js';
import { cpuSample, cpuShare, type CpuSample } from './lib/cpu-share.js';
import { defaultLoadSettings, runLoadInChild, type LoadReport, type LoadSettings } from './lib/loadgen.js';
import { getClusterView, requestLeave, settledOn, type ClusterView, type MemberTransfer } from './lib/master-http.js';
import { cliBuilt, commandLine, commitInfo, fixed, machineInfo, machineText, markdownTable, resultsBase, publishResults, resultsTitle } from './lib/report.js';
import { startRingkv, type RunningServer } from './lib/servers.js';
import { linePlot } from './lib/svg-plot.js';

const leaseMs = 10_000;
const preloadAttempts = 3;
const originalIds = ['n1', 'n2', 'n3'] as const;
const joinerId = 'n4';
/** Bounds of every wait below (each loop ends by one of these). */
const limits = {
  settleMsMax: 30_000,
  joinMsMax: 90_000,
  leaveMsMax: 90_000,
  exitMsMax: 20_000,
  pollMs: 100,
  httpTimeoutMs: 2_000,
  probeMsMax: 15_000,
  probeTimeoutMs: 2_000,
  stopGraceMs: 5_000,
  /** Spawning a generator and building its request blobs, before its warm-up. */
  spawnMarginMs: 1_000,
  /** Views kept from polling (100 ms apart: far more than any run needs). */
  viewsMax: 20_000,
} as const;

interface Options extends BenchOptions {
  joinAtS?: number;
  leaveAtS?: number;
  steadyS?: number;
  keys: number;
  conns: number;
  streamMbPerS?: number;
}

const opts = parseBenchOptions<Options>(
  benchCommand('bench-membership', 'ops/s and p99 per second across a live join and a decommission of a 4th node under load; writes bench/results/', {
    quick: 'short run: 20 s window, join at 4 s, leave at 11 s (or 3 s after the join settled)',
    durationS: { help: 'measured window, seconds (default 40, quick 20)', min: 5, max: 600 },
    warmupS: { help: 'unrecorded load before the window, seconds (default 2, quick 1)', min: 0, max: 60 },
  })
    .option('--join-at-s <s>', 'start n4 this far into the window (default 10, quick 4)', numberArg(0, 600))
    .option('--leave-at-s <s>', 'decommission n4 this far into the window, or later (default 25, quick 11)', numberArg(0, 600))
    .option('--steady-s <s>', 'at least this long between the ring settling on 4 nodes and the decommission (default 10, quick 3)', numberArg(0, 600))
    .option('--keys <n>', 'key space, every key preloaded', intArg(1, 5_000_000), 20_000)
    .option('--conns <n>', 'connections of each of the 3 generators', intArg(1, 1000), 16)
    .option('--stream-mb-per-s <n>', "every node's transfer rate limit, MiB/s (default: the node's, 64)", intArg(1, 100_000)),
);
const settings = {
  nodes: originalIds.length,
  replication: { n: 3, r: 2, w: 2 },
  leaseMs,
  storage: 'memory' as const,
  generators: originalIds.length,
  connsPerGenerator: opts.conns,
  depth: 1,
  getRatio: 0.9,
  valueSize: 100,
  keys: opts.keys,
  dist: 'uniform' as const,
  warmupS: opts.warmupS ?? (opts.quick ? 1 : 2),
  durationS: opts.durationS ?? (opts.quick ? 20 : 40),
  joinAtS: opts.joinAtS ?? (opts.quick ? 4 : 10),
  leaveAtS: opts.leaveAtS ?? (opts.quick ? 11 : 25),
  steadyS: opts.steadyS ?? (opts.quick ? 3 : 10),
  streamMbPerS: opts.streamMbPerS ?? null,
  pollMs: limits.pollMs,
};

// ---- processes: every one started is tracked and stopped by PID ----------------------------

const running = new Set<RunningServer>();
const loadAbort = new AbortController();

function track(server: RunningServer): RunningServer {
  running.add(server);
  return server;
}

async function stopAll(): Promise<void> {
  loadAbort.abort(); // kills any generator still running
  const servers = [...running];
  running.clear();
  const nodes = servers.filter((s) => s.name !== 'ringkv-master');
  await Promise.allSettled(nodes.map((s) => s.stop(limits.stopGraceMs)));
  await Promise.allSettled(servers.filter((s) => s.name === 'ringkv-master').map((s) => s.stop(limits.stopGraceMs)));
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
/** Sleeps until `atMs`, or until `signal` aborts (checked every 200 ms). */
async function sleepUntil(atMs: number, signal?: AbortSignal): Promise<void> {
  for (let ms = atMs - Date.now(); ms > 0 && !signal?.aborted; ms = atMs - Date.now()) await sleep(Math.min(ms, 200));
}

const extraNodeArgs = settings.streamMbPerS !== null ? ['--stream-mb-per-s', String(settings.streamMbPerS)] : [];

// ---- watching the master -------------------------------------------------------------------

interface StatusChange {
  atMs: number;
  id: string;
  status: string;
}

interface TransferSample extends MemberTransfer {
  /** When the bench saw it (the master's `atMs`, when present, is when n4 reported it). */
  seenAtMs: number;
  id: string;
}

/**
 * Polls GET /cluster every `pollMs` until stopped (or `untilMs`), and resolves waiters on
 * the first view that satisfies them, with that view's arrival time.
 */
class ClusterWatch {
  readonly statusLog: StatusChange[] = [];
  readonly transfers: TransferSample[] = [];
  readonly pollErrors: string[] = [];
  views = 0;
  last: { atMs: number; view: ClusterView } | undefined;
  private stopped = false;
  private readonly statusOf = new Map<string, string>();
  private waiters: Array<{ test: (v: ClusterView) => boolean; resolve: (atMs: number) => void; cancel: () => void }> = [];
  private loop: Promise<void> | undefined;

  constructor(
    private readonly master: RunningServer,
    private readonly untilMs: number,
  ) {}

  start(): void {
    this.loop = this.run();
  }

  /** Stops polling; waiters still waiting are rejected. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const w of [...this.waiters]) w.cancel();
    await this.loop;
  }

  private async run(): Promise<void> {
    while (!this.stopped && Date.now() < this.untilMs && this.views < limits.viewsMax) {
      try {
        const view = await getClusterView(this.master.host, this.master.httpPort!, limits.httpTimeoutMs);
        this.observe(view, Date.now());
      } catch (e) {
        if (this.pollErrors.length < 20) this.pollErrors.push(`${new Date().toISOString()} ${(e as Error).message}`);
      }
      await sleep(limits.pollMs);
    }
  }

  private observe(view: ClusterView, atMs: number): void {
    this.views++;
    this.last = { atMs, view };
    for (const m of view.members) {
      if (this.statusOf.get(m.id) !== m.status) {
        this.statusOf.set(m.id, m.status);
        this.statusLog.push({ atMs, id: m.id, status: m.status });
      }
      if (m.transfer) this.transfers.push({ ...m.transfer, seenAtMs: atMs, id: m.id });
    }
    const ready = this.waiters.filter((w) => w.test(view));
    this.waiters = this.waiters.filter((w) => !ready.includes(w));
    for (const w of ready) w.resolve(atMs);
  }

  /** The arrival time of the first view from now on that passes `test`; rejects after `timeoutMs`. */
  until(what: string, test: (v: ClusterView) => boolean, timeoutMs: number, signal?: AbortSignal): Promise<number> {
    return new Promise((resolve, reject) => {
      const finish = (fn: () => void) => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        this.waiters = this.waiters.filter((w) => w !== waiter);
        fn();
      };
      const waiter = {
        test,
        resolve: (atMs: number) => finish(() => resolve(atMs)),
        cancel: () => finish(() => reject(new Error(`${what}: no longer watched`))),
      };
      const timer = setTimeout(() => finish(() => reject(new Error(`${what}: not seen within ${timeoutMs} ms; last view: ${JSON.stringify(this.last?.view.members ?? []).slice(0, 800)}`))), timeoutMs);
      const onAbort = () => finish(() => reject(new Error(`${what}: stopped waiting (the load stopped)`)));
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(waiter);
    });
  }
}

const statusIs = (id: string, status: string) => (v: ClusterView) => v.members.some((m) => m.id === id && m.status === status);

// ---- the run ------------------------------------------------------------------------------

interface BenchEvent {
  name: string;
  atMs: number;
  /** Seconds since the window opened. */
  tS?: number;
  /** Drawn as a marker in the plot. */
  marker?: string;
  detail?: string;
}

/** One second of the window, over every generator. */
interface Second {
  index: number;
  /** Start, seconds since the window opened. */
  tS: number;
  opsPerS: number;
  /** Worst generator's p99 and p50 (null: no reply that second). */
  p99Ms: number | null;
  p50Ms: number | null;
  errors: number;
  /** Cores used that second by this benchmark's processes and by every other process (Linux only). */
  cpuOurs: number | null;
  cpuOthers: number | null;
  phase: Phase;
}

type Phase = 'before' | 'join' | 'four-nodes' | 'leave' | 'after';

interface PhaseSummary {
  phase: Phase;
  what: string;
  fromS: number;
  toS: number;
  seconds: number;
  medianOpsPerS?: number;
  minOpsPerS?: number;
  minRatio?: number;
  medianP99Ms?: number;
  maxP99Ms?: number;
  errors: number;
  /** Mean cores used by other processes over the phase's seconds. */
  meanCpuOthers?: number;
}

function median(xs: number[]): number | undefined {
  if (xs.length === 0) return undefined;
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

function maxOf(xs: Array<number | null>): number | null {
  const f = xs.filter((x): x is number => x !== null && Number.isFinite(x));
  return f.length ? Math.max(...f) : null;
}

async function main(): Promise<number> {
  const command = commandLine();
  const startedAt = new Date();
  if (!cliBuilt('bench-membership')) return 1;
  if (settings.joinAtS >= settings.durationS) throw new Error(`--join-at-s ${settings.joinAtS} must be inside the ${settings.durationS} s window`);
  const log = (text: string) => console.error(`bench-membership: ${text}`);
  const notes: string[] = [];
  const events: BenchEvent[] = [];
  const event = (name: string, atMs: number, marker?: string, detail?: string) => {
    events.push({ name, atMs, ...(marker ? { marker } : {}), ...(detail ? { detail } : {}) });
    log(`${name}${detail ? ` (${detail})` : ''}`);
  };

  // Cluster of 3, settled and serving, every key preloaded.
  const { n, r, w } = settings.replication;
  const { master, nodes } = await startBenchCluster({
    replication: settings.replication,
    leaseMs,
    ids: originalIds,
    extraNodeArgs,
    limits,
    track,
    what: 'the 3 nodes',
  });
  const base: Omit<LoadSettings, 'port'> = {
    ...defaultLoadSettings,
    conns: settings.connsPerGenerator,
    depth: settings.depth,
    getRatio: settings.getRatio,
    keys: settings.keys,
    valueSize: settings.valueSize,
    dist: settings.dist,
  };
  log(`3 nodes settled; preloading ${settings.keys} keys`);
  // A node may still refuse a few writes just after the cluster settled: preload again (bounded).
  let pre = await runLoadInChild({ ...base, port: nodes[0]!.port, warmupS: 0, durationS: 0.2, preload: true }, { signal: loadAbort.signal });
  for (let attempt = 2; attempt <= preloadAttempts && pre.preload.errors > 0; attempt++) {
    log(`preload: ${pre.preload.errors} errors (${pre.errorSamples[0] ?? ''}); again`);
    await sleep(500);
    pre = await runLoadInChild({ ...base, port: nodes[0]!.port, warmupS: 0, durationS: 0.2, preload: true }, { signal: loadAbort.signal });
  }
  if (pre.preload.errors > 0) notes.push(`preload: ${pre.preload.errors} errors after ${preloadAttempts} attempts (${pre.errorSamples.join('; ')})`);
  // How busy the machine is without us loading it: others' work skews every figure.
  const idleA = cpuSample();
  await sleep(1000);
  const idleB = cpuSample();
  const idleShare = idleA && idleB ? cpuShare(idleA, idleB) : undefined;
  const loadAvg = os.loadavg();

  // The measured window: every generator opens it at t0, on the wall clock.
  const t0 = Date.now() + limits.spawnMarginMs + settings.warmupS * 1000;
  const windowEndMs = t0 + settings.durationS * 1000;
  const watch = new ClusterWatch(master, windowEndMs + limits.joinMsMax + limits.leaveMsMax);
  watch.start();
  try {
    return await measureAndReport();
  } finally {
    await watch.stop();
  }

  // The window, the scenario beside it, and the outputs (a function, so the watch is always stopped).
  async function measureAndReport(): Promise<number> {
    log(
      `window of ${settings.durationS} s opens in ${t0 - Date.now()} ms: ${settings.generators} generators x ${settings.connsPerGenerator} conns, ` +
        `${settings.getRatio * 100} % get, ${settings.valueSize} B, ${settings.keys} keys; n4 joins at ${settings.joinAtS} s, leaves at >= ${settings.leaveAtS} s`,
    );
    const loadFailed = new AbortController();
    const loads = Promise.allSettled(
      nodes.map((node, i) =>
        runLoadInChild(
          { ...base, port: node.port, warmupS: settings.warmupS, durationS: settings.durationS, preload: false, seed: i + 1, timeline: true, startAtMs: t0 },
          { signal: loadAbort.signal },
        ).catch((e: unknown) => {
          loadFailed.abort(); // stop the scenario's waits
          throw e;
        }),
      ),
    );

    // CPU use of the benchmark's processes and of everyone else, at each second of the window.
    const cpu = new Map<number, CpuSample>();
    const cpuLoop = (async () => {
      for (let k = 0; k <= Math.ceil(settings.durationS) && !loadFailed.signal.aborted; k++) {
        await sleepUntil(t0 + k * 1000, loadFailed.signal);
        const sample = cpuSample();
        if (sample) cpu.set(k, sample);
      }
    })();

    // The scenario: join, wait until up (and settled), leave, wait until left.
    let joiner: RunningServer | undefined;
    let exitCode: number | null | undefined;
    const scenario = (async () => {
      await sleepUntil(t0 + settings.joinAtS * 1000, loadFailed.signal);
      if (loadFailed.signal.aborted) throw new Error('the load stopped (failed or interrupted) before the join');
      event('join started', Date.now(), 'join started', `spawning ${joinerId}`);
      const joining = watch.until(`${joinerId} joining`, statusIs(joinerId, 'joining'), limits.joinMsMax, loadFailed.signal);
      const up = watch.until(`${joinerId} up`, statusIs(joinerId, 'up'), limits.joinMsMax, loadFailed.signal);
      joining.catch(() => {});
      up.catch(() => {});
      joiner = track(await startRingkv({ storage: 'memory', args: clusterNodeArgs(master, joinerId, extraNodeArgs) }));
      joiner.proc.once('exit', (code) => {
        exitCode = code;
        event(`${joinerId} process exited`, Date.now(), undefined, `code ${code}`);
      });
      event(`${joinerId} process ready`, Date.now());
      // Registered as joining may be over before the first poll after the spawn: not required.
      void joining.then((at) => event(`${joinerId} joining`, at)).catch(() => {});
      const upAt = await up;
      event(`${joinerId} up`, upAt, `${joinerId} up`);
      const all = [...originalIds, joinerId];
      try {
        const at = await watch.until('ring settled on 4 nodes', (v) => settledOn(all, v), limits.settleMsMax, loadFailed.signal);
        event('ring settled on 4 nodes', at);
      } catch (e) {
        notes.push(`join: ${(e as Error).message}`);
      }
      const settledAt = events.find((e) => e.name === 'ring settled on 4 nodes')?.atMs ?? upAt;
      await sleepUntil(Math.max(t0 + settings.leaveAtS * 1000, settledAt + settings.steadyS * 1000), loadFailed.signal);
      if (loadFailed.signal.aborted) throw new Error('the load stopped (failed or interrupted) before the decommission');
      const leaving = watch.until(`${joinerId} leaving`, statusIs(joinerId, 'leaving'), limits.leaveMsMax, loadFailed.signal);
      const left = watch.until(`${joinerId} left`, statusIs(joinerId, 'left'), limits.leaveMsMax, loadFailed.signal);
      leaving.catch(() => {});
      left.catch(() => {});
      const askedAt = Date.now();
      const reply = await requestLeave(master.host, master.httpPort!, joinerId, limits.httpTimeoutMs);
      event('leave requested', askedAt, 'leave requested', `POST /cluster/members/${joinerId}/leave: ${reply.status} ${reply.body} after ${Date.now() - askedAt} ms`);
      void leaving.then((at) => event(`${joinerId} leaving`, at)).catch(() => {});
      const leftAt = await left;
      event(`${joinerId} left`, leftAt, `${joinerId} left`);
      try {
        const at = await watch.until('ring settled on 3 nodes', (v) => settledOn(originalIds, v), limits.settleMsMax, loadFailed.signal);
        event('ring settled on 3 nodes', at);
      } catch (e) {
        notes.push(`leave: ${(e as Error).message}`);
      }
      // The node exits 0 by itself once its leases are recalled: bounded wait.
      const exitBy = Date.now() + limits.exitMsMax;
      while (exitCode === undefined && Date.now() < exitBy) await sleep(limits.pollMs);
      if (exitCode === undefined) notes.push(`${joinerId} had not exited ${limits.exitMsMax} ms after it left (stopped by the bench)`);
      else if (exitCode !== 0) notes.push(`${joinerId} exited with code ${exitCode}`);
    })();

    try {
      await scenario;
    } catch (e) {
      loadAbort.abort(); // no point measuring further
      await loads;
      throw e;
    }
    const results = await loads;
    await cpuLoop;
    const failed = results.flatMap((x, i) => (x.status === 'rejected' ? [`generator ${i + 1}: ${(x.reason as Error).message}`] : []));
    if (failed.length) throw new Error(failed.join('; '));
    const reports = results.map((x) => (x as PromiseFulfilledResult<LoadReport>).value);
    events.sort((a, b) => a.atMs - b.atMs);
    for (const e of events) e.tS = (e.atMs - t0) / 1000;
    for (const e of events) if (e.atMs > windowEndMs) notes.push(`"${e.name}" came ${fixed((e.atMs - windowEndMs) / 1000, 1)} s after the window closed`);
    const lates = reports.map((rep) => rep.lateStartMs ?? 0);
    if (Math.max(...lates) > 250) notes.push(`a generator opened its window ${Math.max(...lates)} ms late`);

    // Seconds of the window, over the generators (a second every generator covered at least half of).
    const seconds: Second[] = [];
    const count = Math.max(...reports.map((rep) => rep.timeline?.samples.length ?? 0));
    const originS = (reports.reduce((a, rep) => a + (rep.timeline?.originMs ?? t0), 0) / reports.length - t0) / 1000;
    for (let i = 0; i < count; i++) {
      const samples = reports.map((rep) => rep.timeline?.samples[i]);
      if (samples.some((s) => !s || s.spanS < 0.5)) continue;
      const ss = samples.map((s) => s!);
      const cpuA = cpu.get(i);
      const cpuB = cpu.get(i + 1);
      const share = cpuA && cpuB ? cpuShare(cpuA, cpuB) : undefined;
      seconds.push({
        index: i,
        tS: originS + i,
        opsPerS: ss.reduce((a, s) => a + s.ops / s.spanS, 0),
        p99Ms: maxOf(ss.map((s) => s.p99Ms)),
        p50Ms: maxOf(ss.map((s) => s.p50Ms)),
        errors: ss.reduce((a, s) => a + s.errors, 0),
        cpuOurs: share?.ours ?? null,
        cpuOthers: share?.others ?? null,
        phase: 'before',
      });
    }

    // Phases on the window's clock: a second touching the join or the leave belongs to it.
    const at = (name: string) => events.find((e) => e.name === name)?.tS;
    const joinFrom = at('join started') ?? Infinity;
    const joinTo = at('ring settled on 4 nodes') ?? at(`${joinerId} up`) ?? settings.durationS;
    const leaveFrom = at('leave requested') ?? Infinity;
    const leaveTo = at('ring settled on 3 nodes') ?? at(`${joinerId} left`) ?? settings.durationS;
    const overlaps = (s: Second, from: number, to: number) => s.tS < to && s.tS + 1 > from;
    for (const s of seconds) {
      const mid = s.tS + 0.5;
      if (overlaps(s, joinFrom, joinTo)) s.phase = 'join';
      else if (overlaps(s, leaveFrom, leaveTo)) s.phase = 'leave';
      else if (mid < joinFrom) s.phase = 'before';
      else if (mid < leaveFrom) s.phase = 'four-nodes';
      else s.phase = 'after';
    }
    const baseline = median(seconds.filter((s) => s.phase === 'before').map((s) => s.opsPerS));
    const phaseWhat: Record<Phase, string> = {
      before: '3 nodes, before the join (baseline)',
      join: 'join: n4 started → up → ring settled on 4 nodes',
      'four-nodes': '4 nodes, steady',
      leave: 'leave: requested → n4 left → ring settled on 3 nodes',
      after: '3 nodes, after the leave',
    };
    const phases: PhaseSummary[] = (Object.keys(phaseWhat) as Phase[]).map((phase) => {
      const ss = seconds.filter((s) => s.phase === phase);
      const ops = ss.map((s) => s.opsPerS);
      const p99 = ss.map((s) => s.p99Ms).filter((x): x is number => x !== null);
      const min = ops.length ? Math.min(...ops) : undefined;
      const others = ss.map((s) => s.cpuOthers).filter((x): x is number => x !== null);
      return {
        phase,
        what: phaseWhat[phase],
        fromS: ss[0]?.tS ?? NaN,
        toS: ss.length ? ss[ss.length - 1]!.tS + 1 : NaN,
        seconds: ss.length,
        medianOpsPerS: median(ops),
        minOpsPerS: min,
        minRatio: min !== undefined && baseline ? min / baseline : undefined,
        medianP99Ms: median(p99),
        maxP99Ms: p99.length ? Math.max(...p99) : undefined,
        errors: ss.reduce((a, s) => a + s.errors, 0),
        meanCpuOthers: others.length ? others.reduce((x, y) => x + y, 0) / others.length : undefined,
      };
    });
    const durationS = (from: string, to: string) => {
      const a = events.find((e) => e.name === from)?.atMs;
      const b = events.find((e) => e.name === to)?.atMs;
      return a !== undefined && b !== undefined ? (b - a) / 1000 : undefined;
    };
    const durations = {
      joinToUpS: durationS('join started', `${joinerId} up`),
      joinToSettledS: durationS('join started', 'ring settled on 4 nodes'),
      leaveToLeftS: durationS('leave requested', `${joinerId} left`),
      leaveToSettledS: durationS('leave requested', 'ring settled on 3 nodes'),
      leaveToExitS: durationS('leave requested', `${joinerId} process exited`),
    };
    const lastTransfer = (direction: 'in' | 'out') => {
      const ts = watch.transfers.filter((t) => t.id === joinerId && t.direction === direction);
      return ts.length ? { ...ts[ts.length - 1]!, samples: ts.length, maxRateBytesPerS: Math.max(...ts.map((t) => t.rateBytesPerS)) } : undefined;
    };
    const transferIn = lastTransfer('in');
    const transferOut = lastTransfer('out');
    const totalErrors = reports.reduce((a, rep) => a + rep.errors, 0);
    if (totalErrors > 0) notes.push(`${totalErrors} errors in the window (${reports.flatMap((rep) => rep.errorSamples).slice(0, 3).join(' | ')})`);
    const misses = reports.reduce((a, rep) => a + rep.misses, 0);
    if (misses > 0) notes.push(`${misses} gets missed (every key was preloaded)`);
    const tails = [...new Set([...running, ...(joiner ? [joiner] : [])])]
      .map((s) => [s.name, s.stderr().trim().slice(-400)] as const)
      .filter(([, t]) => t.length > 0)
      .map(([name, t]) => `${name}: ${t}`);

    // ---- outputs ----------------------------------------------------------------------------
    const othersAll = seconds.map((x) => x.cpuOthers).filter((x): x is number => x !== null);
    const othersMean = othersAll.length ? othersAll.reduce((x, y) => x + y, 0) / othersAll.length : undefined;
    const othersMax = othersAll.length ? Math.max(...othersAll) : undefined;
    const machine = machineInfo();
    const commit = commitInfo();
    const finishedAt = new Date();
    const date = startedAt.toISOString().slice(0, 10);
    const fileBase = resultsBase(startedAt, commit, 'membership', opts.quick);
    const svgRel = `bench/results/${fileBase}.svg`;
    const f0 = (x: number | undefined) => fixed(x, 0);
    const f1 = (x: number | undefined) => fixed(x, 1);
    const f2 = (x: number | undefined) => fixed(x, 2);
    const pct = (x: number | undefined) => (x === undefined ? '–' : `${fixed(x * 100, 0)} %`);
    const ph = (p: Phase) => phases.find((x) => x.phase === p)!;
    const mb = (bytes: number | undefined) => fixed(bytes === undefined ? undefined : bytes / 1024 / 1024, 2);
    const method =
      `Master --lease-ms ${leaseMs}, nodes n1..n3 --storage memory joined one by one (N=${n}/R=${r}/W=${w}), measured once the master shows every piece leased and none moving ` +
      `and every node answers a set; every key preloaded through n1 by one generator. Then ${settings.generators} loadgen processes, one per original node, ` +
      `open the same ${settings.durationS} s window at the same wall-clock instant (after ${settings.warmupS} s of unrecorded load) and count each second's replies ` +
      `and their latencies (a reply belongs to the second it arrived in). Per second: ops/s summed over the generators, p99 of the worst generator. ` +
      `Event times are the first master view (GET /cluster, polled every ${limits.pollMs} ms) showing the step, except "join started" (spawning n4) and "leave requested" (sending the POST). ` +
      `A second touching [join started, ring settled on 4 nodes] is in the join, one touching [leave requested, ring settled on 3 nodes] in the leave. ` +
      `The load never goes to n4: its cost shows as the work it asks of n1..n3 (copying out, handing over, replicating to it) on this machine's shared CPUs.`;
    const summaryLines = [
      `Baseline (3 nodes, before the join): ${f0(baseline)} ops/s (median of ${ph('before').seconds} s), p99 ${f2(ph('before').medianP99Ms)} ms (median).`,
      `Join: n4 up ${f1(durations.joinToUpS)} s after it was started, ring settled on 4 nodes after ${f1(durations.joinToSettledS)} s` +
        (transferIn ? `; n4 copied ${transferIn.keys} records, ${mb(transferIn.bytes)} MiB (last rate ${mb(transferIn.rateBytesPerS)} MiB/s)` : '') +
        `. During it: min ${f0(ph('join').minOpsPerS)} ops/s = ${pct(ph('join').minRatio)} of baseline, max p99 ${f2(ph('join').maxP99Ms)} ms, ${ph('join').errors} errors.`,
      `4 nodes: ${f0(ph('four-nodes').medianOpsPerS)} ops/s (median of ${ph('four-nodes').seconds} s), p99 ${f2(ph('four-nodes').medianP99Ms)} ms.`,
      `Leave: n4 left ${f1(durations.leaveToLeftS)} s after the request, ring settled on 3 nodes after ${f1(durations.leaveToSettledS)} s, process exited (code ${exitCode ?? '–'}) after ${f1(durations.leaveToExitS)} s` +
        (transferOut ? `; n4 handed on ${transferOut.keys} records, ${mb(transferOut.bytes)} MiB` : '') +
        `. During it: min ${f0(ph('leave').minOpsPerS)} ops/s = ${pct(ph('leave').minRatio)} of baseline, max p99 ${f2(ph('leave').maxP99Ms)} ms, ${ph('leave').errors} errors.`,
      `After (3 nodes): ${f0(ph('after').medianOpsPerS)} ops/s (median of ${ph('after').seconds} s), p99 ${f2(ph('after').medianP99Ms)} ms.`,
      `Other processes on this machine (not this benchmark's): ${f2(idleShare?.others)} of ${machine.cpus} cores just before the window, ` +
        `${f2(othersMean)} on average during it (max ${f2(othersMax)} in one second); 1-minute load average ${f2(loadAvg[0])} before the window.` +
        (othersMean !== undefined && othersMean > 0.25 ? ' The machine was shared: read every dip against the "others CPU" column.' : ''),
    ];
    const phaseTable = markdownTable(
      ['phase', 'from s', 'to s', 'seconds', 'median ops/s', 'min ops/s', 'min / baseline', 'median p99 ms', 'max p99 ms', 'errors', 'others CPU'],
      phases.map((p) => [
        p.what, f1(p.fromS), f1(p.toS), String(p.seconds), f0(p.medianOpsPerS), f0(p.minOpsPerS), pct(p.minRatio),
        f2(p.medianP99Ms), f2(p.maxP99Ms), String(p.errors), f2(p.meanCpuOthers),
      ]),
      [0],
    );
    const eventTable = markdownTable(
      ['t s', 'event', 'detail'],
      events.map((e) => [f2(e.tS), e.name, (e.detail ?? '').replace(/\|/g, '/')]),
      [1, 2],
    );
    const secondTable = markdownTable(
      ['t s', 'ops/s', 'p50 ms', 'p99 ms', 'errors', 'bench CPU', 'others CPU', 'phase'],
      seconds.map((s) => [
        f1(s.tS), f0(s.opsPerS), f2(s.p50Ms ?? undefined), f2(s.p99Ms ?? undefined), String(s.errors),
        f2(s.cpuOurs ?? undefined), f2(s.cpuOthers ?? undefined), s.phase,
      ]),
      [7],
    );
    const md = [
      resultsTitle('bench:membership', startedAt, commit, opts.quick),
      '',
      `Command: \`${command}\`  `,
      `Machine: ${machineText(machine)}  `,
      `Load: ${settings.generators} loadgen processes (one per node n1..n3, never n4), ${settings.connsPerGenerator} connections each, depth ${settings.depth}, ` +
        `${fixed(settings.getRatio * 100, 0)} % get / ${fixed((1 - settings.getRatio) * 100, 0)} % set, ${settings.valueSize} B values, ${settings.keys} keys (${settings.dist}, preloaded), ` +
        `${settings.warmupS} s warm-up + ${settings.durationS} s window. n4 started at ${settings.joinAtS} s; decommissioned at ${settings.leaveAtS} s or ${settings.steadyS} s after the ring settled on 4 nodes, whichever later` +
        `${settings.streamMbPerS !== null ? `; --stream-mb-per-s ${settings.streamMbPerS}` : ' (transfer rate: the node default)'}.  `,
      `Method: ${method}  `,
      `CPU columns: cores used in that second by this benchmark's processes (master, nodes, generators) and by every other process on the machine, from /proc.  `,
      `Plot: \`${svgRel}\`  `,
      `Run time: ${fixed((finishedAt.getTime() - startedAt.getTime()) / 1000, 0)} s.`,
      '',
      '## Summary',
      '',
      ...summaryLines.map((l) => `* ${l}`),
      ...(notes.length ? ['', 'Notes:', '', ...notes.map((x) => `* ${x.replace(/\s+/g, ' ')}`)] : []),
      '',
      phaseTable,
      '',
      '## Events',
      '',
      eventTable,
      '',
      '## Per second',
      '',
      secondTable,
      '',
    ].join('\n');

    const title = `ringkv bench:membership — ${commit.short}${commit.dirty ? '+' : ''} — ${date}${opts.quick ? ' (quick)' : ''}`;
    const mid = (s: Second): number => s.tS + 0.5;
    const svg = linePlot({
      title,
      xLabel: `seconds since the window opened (3 nodes under load; n4 joins, then leaves)`,
      xMin: 0,
      xMax: settings.durationS,
      panels: [
        { yLabel: `ops/s (sum of ${settings.generators} generators)`, series: [{ name: 'ops/s', points: seconds.map((s) => [mid(s), s.opsPerS]) }] },
        {
          yLabel: 'p99 ms (worst generator)',
          series: [{ name: 'p99', points: seconds.filter((s) => s.p99Ms !== null).map((s) => [mid(s), s.p99Ms!]) }],
        },
      ],
      markers: events.filter((e) => e.marker && e.tS !== undefined).map((e) => ({ x: e.tS!, label: `${e.marker} (${f1(e.tS)} s)` })),
    });

    publishResults('bench-membership', {
      write: opts.write,
      base: fileBase,
      md,
      svg,
      header: { benchmark: 'bench:membership', startedAt, finishedAt, command, commit, machine, quick: opts.quick },
      body: () => ({
        settings,
        method,
        windowStartMs: t0,
        windowEndMs,
        baselineOpsPerS: baseline,
        cpuBeforeWindow: { cores: machine.cpus, idleShare: idleShare ?? null, loadAvg },
        durations,
        phases,
        events,
        seconds,
        transfers: watch.transfers,
        statusLog: watch.statusLog,
        pollErrors: watch.pollErrors,
        views: watch.views,
        notes,
        stderr: tails,
        preload: pre.preload,
        generators: reports.map((report, i) => ({ node: originalIds[i], port: nodes[i]!.port, report })),
      }),
    });
    return 0;
  }
}

await runBench('bench-membership', main, {
  stopAll,
  stopping: () => `generators and ${running.size} server(s)`,
  errorDetail: () => {
    const tails = [...running].map((s) => `${s.name}: ${s.stderr().trim().slice(-300)}`).filter((t) => !t.endsWith(': ')).join(' | ');
    return tails ? `\nstderr: ${tails}` : '';
  },
});
