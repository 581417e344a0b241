// bench:cluster — what replication costs, measured side by side in one run on this machine,
// through the memcached protocol and through the TypeScript client (issue 6's cluster case).
//
// memcached path (our memcached-protocol generator, bench/loadgen), three targets:
//   A  single       one standalone ringkv node, --storage memory (the baseline)
//   B  cluster-n1   a master and 3 memory nodes, --n 1 --r 1 --w 1 (routing only, no copies)
//   C  cluster-n3   a master and 3 memory nodes, --n 3 --r 2 --w 2 (the default replication)
// Each gets two workloads: write-only (every request a set) and read-only (every request a
// get, every key preloaded). 3 generator processes run in parallel, one per node's memcached
// port (for the single node all three hit its one port); ops/s summed, p99 the worst of the
// three. Each row is a ratio to the single node under the same workload (INFO: no goal).
//
// TS-client path (bench/lib/client-load: RingClient, which pulls the master's lease table and
// sends each request straight to the key's owner over msgpack RPC), two targets:
//   single       a master and ONE memory node, --n 1 --r 1 --w 1 (the client needs a master)
//   cluster-n3   the cluster-n3 deployment above, after its memcached cells
// Same two workloads, 3 generator processes of `--client-concurrency` requests in flight
// each (closed loop), ops/s summed. Then, on cluster-n3, once per run (in the last round with
// TS-client cells), an OPEN-LOOP write-only run at half the best TS-client cluster-n3 write
// ops/s measured so far, the rate split over the 3 processes; its p99 (latency from each
// request's intended time, over all the processes' requests) is the latency goal.
//
// Goals (issue 6), PASS / MISS: cluster-n3 TS client write >= 0.4x single, read >= 0.4x
// single, p99 at half peak <= 5 ms. A goal whose window had failed or unanswered requests
// misses, and says so.
//
// Every target is started fresh for each round, measured and stopped; the whole sequence is
// repeated `--rounds` times in the same order and each cell reports its best round (highest
// ops/s). The TS-client cells run in the first `--client-rounds` rounds (default every round,
// quick: 1, to keep --quick near a minute). All rounds, with every generator's full report,
// are in the JSON, with the CPU the generators, the servers and other processes used during
// each window (from /proc). The SVG beside it plots ops/s, p99 and x single per path and
// workload, one bar per target, with the goals' limits as reference lines.
//
//   node dist/bench/bench-cluster.js [--quick] [--duration-s S] [--rounds N] [--client-rounds N] [--no-write]
import { benchCommand, intArg, parseBenchOptions, runBench, type BenchOptions } from './lib/cli.js';
import { defaultClientLoadSettings, mergeSnapshots, runClientLoadInChild, type ClientLoadReport, type ClientLoadSettings } from './lib/client-load.js';
import { startBenchCluster, waitServing } from './lib/cluster.js';
import { clientGoals, clusterGoalLimits, halfPeakRate, infoGoals, type GoalRecord, type HalfPeakFigure, type Measured, type ThroughputFigure } from './lib/cluster-goals.js';
import { defaultLoadSettings, runLoadInChild, type LoadReport } from './lib/loadgen.js';
import type { ClusterView } from './lib/master-http.js';
import { CpuSampler, cpuUseBetween, type CpuUse } from './lib/proc-cpu.js';
import { cellText, cliBuilt, commandLine, commitInfo, fixed, machineInfo, machineText, markdownTable, pickBest, ratio, resultsBase, publishResults, resultsTitle } from './lib/report.js';
import { ServerSet, startRingkv, type RunningServer } from './lib/servers.js';
import { barChart } from './lib/svg-plot.js';

type Target = 'single' | 'cluster-n1' | 'cluster-n3';
type ClientTarget = 'single' | 'cluster-n3';
/** What one deployment is: a memcached-path target, or the TS client's single node (master + 1 node). */
type Deployed = Target | 'client-single';
type Workload = 'write' | 'read';

const targets: ReadonlyArray<{ target: Target; what: string; replication?: { n: number; r: number; w: number } }> = [
  { target: 'single', what: 'one standalone node, --storage memory' },
  { target: 'cluster-n1', what: 'master + 3 memory nodes, --n 1 --r 1 --w 1 (routing only)', replication: { n: 1, r: 1, w: 1 } },
  { target: 'cluster-n3', what: 'master + 3 memory nodes, --n 3 --r 2 --w 2 (default replication)', replication: { n: 3, r: 2, w: 2 } },
];
const clientTargets: ReadonlyArray<{ target: ClientTarget; what: string }> = [
  { target: 'single', what: 'master + 1 memory node, --n 1 --r 1 --w 1 (the TS client needs a master; its own deployment)' },
  { target: 'cluster-n3', what: 'the cluster-n3 deployment of the memcached path (N=3 R=2 W=2), after its memcached cells' },
];
const workloads: ReadonlyArray<{ workload: Workload; getRatio: number; preload: boolean }> = [
  { workload: 'write', getRatio: 0, preload: false },
  { workload: 'read', getRatio: 1, preload: true },
];

/** Nodes in a cluster target, and generator processes per cell (one per node on the memcached path). */
const clusterSize = 3;
const generatorsPerCell = 3;
/** Lease length given to the master: long, so no lease churns during a measured window. */
const leaseMs = 10_000;
/** Bounds of the start-up waits (every loop below ends by one of these). */
const limits = {
  settleMsMax: 30_000,
  pollMs: 100,
  httpTimeoutMs: 2_000,
  probeMsMax: 15_000,
  probeTimeoutMs: 2_000,
  stopGraceMs: 5_000,
} as const;
/** The open-loop run's generators: at most this many requests in flight each (more are dropped, counted). */
const halfPeakInflightMax = 10_000;

interface Options extends BenchOptions {
  keys: number;
  rounds: number;
  conns: number;
  clientConcurrency: number;
  clientRounds?: number;
}

const opts = parseBenchOptions<Options>(
  benchCommand('bench-cluster', 'a single ringkv node beside 3-node clusters, through the memcached protocol and the TS client; prints ratios and goals, writes bench/results/', {
    quick: 'short run: 2 s windows, 1 s warm-up, TS-client cells in one round',
    durationS: { help: 'measured window per cell, seconds (default 8, quick 2)', min: 1, max: 600 },
    warmupS: { help: 'unrecorded warm-up per cell, seconds (default 2, quick 1)', min: 0, max: 600 },
  })
    .option('--keys <n>', 'key space', intArg(1, 5_000_000), 10_000)
    .option('--rounds <n>', 'times the whole sequence is repeated; each cell keeps its best', intArg(1, 10), 2)
    .option('--conns <n>', 'connections of each of the 3 memcached generator processes', intArg(1, 1000), 16)
    .option('--client-concurrency <n>', 'requests in flight of each of the 3 TS-client generator processes', intArg(1, 4096), 16)
    .option('--client-rounds <n>', 'how many rounds (the first ones) also run the TS-client cells (default: every round; quick: 1)', intArg(1, 10)),
);
const rounds = opts.rounds;
const clientRounds = Math.min(opts.clientRounds ?? (opts.quick ? 1 : rounds), rounds);
const settings = {
  generators: generatorsPerCell,
  connsPerGenerator: opts.conns,
  depth: 1,
  valueSize: 100,
  keys: opts.keys,
  dist: 'uniform' as const,
  durationS: opts.durationS ?? (opts.quick ? 2 : 8),
  warmupS: opts.warmupS ?? (opts.quick ? 1 : 2),
  rounds,
  leaseMs,
  clusterSize,
  client: {
    generators: generatorsPerCell,
    concurrencyPerGenerator: opts.clientConcurrency,
    poolSize: defaultClientLoadSettings.poolSize,
    timeoutMs: defaultClientLoadSettings.timeoutMs,
    rounds: clientRounds,
    halfPeak: {
      workload: 'write' as const,
      getRatio: 0,
      peakShare: clusterGoalLimits.peakShare,
      round: clientRounds,
      tickMs: 1,
      inflightMaxPerGenerator: halfPeakInflightMax,
    },
  },
};

/** One memcached-path cell's measurement: the 3 generators' reports, combined. */
interface Measurement {
  /** Sum of the generators' ops/s. */
  opsPerS: number;
  /** Worst p50 / p99 / p999 of the generators. */
  p50Ms: number;
  p99Ms: number;
  p999Ms: number;
  errors: number;
  misses: number;
  preloadErrors: number;
  errorSamples: string[];
  notes: string[];
  /** Cores used during the generators' common window (undefined: not measurable). */
  cpu?: CpuUse;
  /** Every generator's report, in port order. */
  raw: Array<{ port: number; report: LoadReport }>;
}

interface Cell {
  target: Target;
  workload: Workload;
  runs: Array<{ round: number; result?: Measurement; error?: string }>;
  best?: Measurement;
}

/** One TS-client cell's measurement: the generators' reports, combined. */
interface ClientMeasurement {
  /** Sum of the generators' successful replies per second. */
  opsPerS: number;
  /** Worst p50 / p99 / p999 of the generators. */
  p50Ms: number;
  p99Ms: number;
  p999Ms: number;
  /** Failed requests in the window, and requests unanswered after the bounded drain (summed). */
  errors: number;
  unfinished: number;
  errorsByCode: Record<string, number>;
  warmupErrors: number;
  drainErrors: number;
  misses: number;
  preloadErrors: number;
  /** RingClient's counters over the window, summed. */
  retries: number;
  busy: number;
  notOwner: number;
  /** The generators' own CPU over their windows (summed) and the busiest one's event-loop utilization. */
  generatorCores: number;
  generatorEluMax: number;
  cpu?: CpuUse;
  errorSamples: string[];
  notes: string[];
  raw: ClientLoadReport[];
}

interface ClientCell {
  target: ClientTarget;
  workload: Workload;
  runs: Array<{ round: number; result?: ClientMeasurement; error?: string }>;
  best?: ClientMeasurement;
}

/** The open-loop run on cluster-n3 at half its peak. */
interface HalfPeakRun {
  round: number;
  workload: 'write';
  /** The peak: the best TS-client cluster-n3 write ops/s so far, and the round it came from. */
  peakOpsPerS?: number;
  peakRound?: number;
  /** Offered, in total and per generator process. */
  rate?: number;
  ratePerGenerator?: number;
  result?: {
    offeredPerS: number;
    goodputPerS: number;
    /** Over every generator's requests (merged histograms), ms from the intended time. */
    p50Ms: number;
    p99Ms: number;
    p999Ms: number;
    maxMs: number;
    /** The worst single generator's p99. */
    worstP99Ms: number;
    offered: number;
    ok: number;
    errors: number;
    errorsByCode: Record<string, number>;
    droppedByGenerator: number;
    unfinished: number;
    warmupErrors: number;
    retries: number;
    busy: number;
    /** The generators' ticks: worst p99 lateness, ms; busiest event loop; own CPU summed. */
    tickLagP99Ms: number;
    generatorEluMax: number;
    generatorCores: number;
    cpu?: CpuUse;
    errorSamples: string[];
    notes: string[];
    raw: ClientLoadReport[];
  };
  error?: string;
}

/** A started target: the ports the load goes to and every process behind them. */
interface Deployment {
  target: Deployed;
  master?: RunningServer;
  nodes: RunningServer[];
  /** From spawning the first process to every node answering a set. */
  startMs: number;
  /** The master's view once settled (clusters only). */
  view?: ClusterView;
}

// Servers started and not yet stopped: stopped by PID if the run is interrupted.
const running = new ServerSet();
// Generator processes: aborting kills every one still running, by PID.
const generatorAbort = new AbortController();

function track(server: RunningServer): RunningServer {
  return running.add(server);
}

function stop(server: RunningServer, graceMs: number = limits.stopGraceMs): Promise<void> {
  return running.stop(server, graceMs);
}

async function deploy(what: Deployed): Promise<Deployment> {
  const t0 = Date.now();
  if (what === 'single') {
    const node = track(await startRingkv({ storage: 'memory' }));
    await waitServing([node], limits);
    return { target: what, nodes: [node], startMs: Date.now() - t0 };
  }
  const replication = what === 'client-single' ? { n: 1, r: 1, w: 1 } : targets.find((t) => t.target === what)!.replication!;
  const size = what === 'client-single' ? 1 : clusterSize;
  const ids = Array.from({ length: size }, (_, i) => `n${i + 1}`);
  const { master, nodes, view } = await startBenchCluster({ replication, leaseMs, ids, limits, track, what });
  return { target: what, master, nodes, startMs: Date.now() - t0, view };
}

/** Nodes first (so none sees its master vanish mid-shutdown), then the master. */
async function undeploy(d: Deployment): Promise<void> {
  await Promise.allSettled(d.nodes.map((s) => stop(s)));
  if (d.master) await stop(d.master);
}

/** The tail of every process's stderr, for an error message. */
function stderrTails(d: Deployment | undefined): string {
  if (!d) return '';
  const all = [...d.nodes.map((s, i) => [`node${i + 1}`, s] as const), ...(d.master ? [['master', d.master] as const] : [])];
  return all
    .map(([name, s]) => [name, s.stderr().trim().slice(-300)] as const)
    .filter(([, text]) => text.length > 0)
    .map(([name, text]) => `${name}: ${text}`)
    .join(' | ');
}

// ---- CPU of a cell ---------------------------------------------------------------------------

/** The servers' PIDs by group, for cpuUseBetween. */
function serverPids(d: Deployment): Record<string, number[]> {
  return { nodes: d.nodes.map((s) => s.pid), ...(d.master ? { master: [d.master.pid] } : {}) };
}

/** Runs `generators` while sampling /proc, then the cores used during their common window. */
async function withCpu<T>(d: Deployment, generators: () => Promise<T[]>, windowOf: (r: T) => [number, number] | undefined): Promise<{ reports: T[]; cpu?: CpuUse }> {
  const groups = serverPids(d);
  const sampler = new CpuSampler(Object.values(groups).flat());
  let reports: T[];
  let samples: ReturnType<CpuSampler['stop']>;
  try {
    reports = await generators();
  } finally {
    samples = sampler.stop();
  }
  const windows = reports.map(windowOf);
  if (windows.some((w) => w === undefined)) return { reports };
  const from = Math.max(...windows.map((w) => w![0]));
  const to = Math.min(...windows.map((w) => w![1]));
  const cpu = to > from ? cpuUseBetween(samples, from, to, groups) : undefined;
  return cpu ? { reports, cpu } : { reports };
}

function cpuText(cpu: CpuUse | undefined): string {
  if (!cpu) return '–';
  const servers = Object.values(cpu.servers).reduce((a, b) => a + b, 0);
  return `${fixed(cpu.generators, 2)} / ${fixed(servers, 2)} / ${fixed(cpu.others, 2)}`;
}

/** Every generator settled; the reports, or one error naming every generator that failed. */
function allOrError<T>(results: PromiseSettledResult<T>[], name: (i: number) => string): T[] {
  const failed = results.flatMap((r, i) => (r.status === 'rejected' ? [`${name(i)}: ${(r.reason as Error).message}`] : []));
  if (failed.length) throw new Error(failed.join('; '));
  return results.map((r) => (r as PromiseFulfilledResult<T>).value);
}

// ---- memcached path ------------------------------------------------------------------------

async function measure(d: Deployment, workload: Workload): Promise<Measurement> {
  const w = workloads.find((x) => x.workload === workload)!;
  const ports = Array.from({ length: generatorsPerCell }, (_, i) => d.nodes[i % d.nodes.length]!.port);
  const { reports, cpu } = await withCpu(
    d,
    async () =>
      // allSettled: never leave a generator running against servers about to be stopped.
      allOrError(
        await Promise.allSettled(
          ports.map((port, i) =>
            runLoadInChild(
              {
                ...defaultLoadSettings,
                port,
                conns: settings.connsPerGenerator,
                depth: settings.depth,
                getRatio: w.getRatio,
                keys: settings.keys,
                valueSize: settings.valueSize,
                dist: settings.dist,
                warmupS: settings.warmupS,
                durationS: settings.durationS,
                preload: w.preload,
                // Each generator its own sequence, so three do not walk the same keys in step.
                seed: i + 1,
                // For the window's wall-clock start (the CPU figures); costs one histogram a second.
                timeline: true,
              },
              { signal: generatorAbort.signal },
            ),
          ),
        ),
        (i) => `generator ${i + 1} (port ${ports[i]})`,
      ),
    (r) => (r.timeline ? [r.timeline.originMs, r.timeline.originMs + r.measuredS * 1000] : undefined),
  );
  const worst = (f: (r: LoadReport) => number) => Math.max(...reports.map(f));
  const sum = (f: (r: LoadReport) => number) => reports.reduce((a, r) => a + f(r), 0);
  const errorSamples = reports.flatMap((r) => r.errorSamples);
  const m: Measurement = {
    opsPerS: sum((r) => r.opsPerS),
    p50Ms: worst((r) => r.latencyMs.p50),
    p99Ms: worst((r) => r.latencyMs.p99),
    p999Ms: worst((r) => r.latencyMs.p999),
    errors: sum((r) => r.errors),
    misses: sum((r) => r.misses),
    preloadErrors: sum((r) => r.preload.errors),
    errorSamples,
    notes: [],
    ...(cpu ? { cpu } : {}),
    raw: reports.map((report, i) => ({ port: ports[i]!, report })),
  };
  if (m.errors > 0) m.notes.push(`${m.errors} errors (${errorSamples.find((s) => !s.startsWith('preload:')) ?? errorSamples[0] ?? ''})`);
  if (m.misses > 0) m.notes.push(`${m.misses} misses`);
  if (m.preloadErrors > 0) m.notes.push(`${m.preloadErrors} preload errors (${errorSamples.find((s) => s.startsWith('preload:')) ?? ''})`);
  const stopped = reports.map((r) => r.stoppedBy).filter((s) => s !== 'duration');
  if (stopped.length) m.notes.push(`stopped by ${stopped.join(', ')}`);
  // Windows that do not overlap make the sum meaningless: say when preloads differed much.
  if (w.preload) {
    const pre = reports.map((r) => r.preload.seconds);
    const skew = Math.max(...pre) - Math.min(...pre);
    if (skew > settings.warmupS / 2) m.notes.push(`preload times differ by ${fixed(skew, 2)} s`);
  }
  return m;
}

// ---- TS-client path ------------------------------------------------------------------------

function masterAddr(d: Deployment): string {
  if (!d.master) throw new Error(`${d.target} has no master: the TS client needs one`);
  return `${d.master.host}:${d.master.port}`;
}

function clientBase(d: Deployment): ClientLoadSettings {
  return {
    ...defaultClientLoadSettings,
    master: masterAddr(d),
    keys: settings.keys,
    valueSize: settings.valueSize,
    dist: settings.dist,
    warmupS: settings.warmupS,
    durationS: settings.durationS,
    timeoutMs: settings.client.timeoutMs,
    poolSize: settings.client.poolSize,
  };
}

/** Runs the client generators (one per settings) in parallel, with the CPU of their common window. */
function runClientGenerators(d: Deployment, each: ClientLoadSettings[]): Promise<{ reports: ClientLoadReport[]; cpu?: CpuUse }> {
  return withCpu(
    d,
    async () =>
      allOrError(
        await Promise.allSettled(each.map((s) => runClientLoadInChild(s, { signal: generatorAbort.signal }))),
        (i) => `client generator ${i + 1}`,
      ),
    (r) => [r.windowStartMs, r.windowEndMs],
  );
}

function sumCodes(reports: ClientLoadReport[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of reports) for (const [code, n] of Object.entries(r.errorsByCode)) out[code] = (out[code] ?? 0) + n;
  return out;
}

/** Notes every TS-client run shares: errors by code, outside-window failures, saturated generators. */
function clientNotes(reports: ClientLoadReport[], errors: number, unfinished: number, codes: Record<string, number>): string[] {
  const notes: string[] = [];
  const samples = reports.flatMap((r) => r.errorSamples);
  if (errors > 0) notes.push(`${errors} errors ${JSON.stringify(codes)} (${samples.find((s) => s.startsWith('window:')) ?? samples[0] ?? ''})`);
  if (unfinished > 0) notes.push(`${unfinished} unanswered after the drain`);
  const warm = reports.reduce((a, r) => a + r.warmupErrors, 0);
  const drain = reports.reduce((a, r) => a + r.drainErrors, 0);
  if (warm > 0) notes.push(`${warm} warm-up errors`);
  if (drain > 0) notes.push(`${drain} errors after the window`);
  const retries = reports.reduce((a, r) => a + r.client.retries, 0);
  const busy = reports.reduce((a, r) => a + r.client.busy, 0);
  const notOwner = reports.reduce((a, r) => a + r.client.notOwner, 0);
  if (retries + busy + notOwner > 0) notes.push(`client: ${retries} retries, ${busy} busy, ${notOwner} not owner`);
  const elu = Math.max(...reports.map((r) => r.generator.eventLoopUtilization));
  if (elu >= 0.9) notes.push(`GENERATOR SATURATED (event loop ${fixed(elu * 100, 0)} % busy)`);
  return notes;
}

async function measureClient(d: Deployment, workload: Workload): Promise<ClientMeasurement> {
  const w = workloads.find((x) => x.workload === workload)!;
  const G = settings.client.generators;
  const base: ClientLoadSettings = {
    ...clientBase(d),
    mode: 'closed',
    concurrency: settings.client.concurrencyPerGenerator,
    getRatio: w.getRatio,
    preload: w.preload,
    // The processes share the preload: each sets its shard of the keys.
    preloadShards: G,
  };
  const { reports, cpu } = await runClientGenerators(
    d,
    Array.from({ length: G }, (_, i) => ({ ...base, preloadShard: i, seed: i + 1 })),
  );
  const worst = (f: (r: ClientLoadReport) => number) => Math.max(...reports.map(f));
  const sum = (f: (r: ClientLoadReport) => number) => reports.reduce((a, r) => a + f(r), 0);
  const errorsByCode = sumCodes(reports);
  const m: ClientMeasurement = {
    opsPerS: sum((r) => r.opsPerS),
    p50Ms: worst((r) => r.latencyMs.p50),
    p99Ms: worst((r) => r.latencyMs.p99),
    p999Ms: worst((r) => r.latencyMs.p999),
    errors: sum((r) => r.errors),
    unfinished: sum((r) => r.unfinished),
    errorsByCode,
    warmupErrors: sum((r) => r.warmupErrors),
    drainErrors: sum((r) => r.drainErrors),
    misses: sum((r) => r.misses),
    preloadErrors: sum((r) => r.preload.errors),
    retries: sum((r) => r.client.retries),
    busy: sum((r) => r.client.busy),
    notOwner: sum((r) => r.client.notOwner),
    generatorCores: sum((r) => r.generator.cpuCores),
    generatorEluMax: worst((r) => r.generator.eventLoopUtilization),
    ...(cpu ? { cpu } : {}),
    errorSamples: reports.flatMap((r) => r.errorSamples),
    notes: [],
    raw: reports,
  };
  m.notes.push(...clientNotes(reports, m.errors, m.unfinished, errorsByCode));
  if (m.misses > 0) m.notes.push(`${m.misses} misses`);
  if (m.preloadErrors > 0) m.notes.push(`${m.preloadErrors} preload errors (${m.errorSamples.find((s) => s.startsWith('preload:')) ?? ''})`);
  const stopped = reports.map((r) => r.stoppedBy).filter((s) => s !== 'duration');
  if (stopped.length) m.notes.push(`stopped by ${stopped.join(', ')}`);
  const starts = reports.map((r) => r.windowStartMs);
  const skewS = (Math.max(...starts) - Math.min(...starts)) / 1000;
  if (skewS > settings.warmupS / 2) m.notes.push(`windows start ${fixed(skewS, 2)} s apart`);
  return m;
}

/** The best TS-client cluster-n3 write ops/s so far, and its round. */
function writePeak(clientCells: ClientCell[]): { opsPerS: number; round: number } | undefined {
  const cell = clientCells.find((c) => c.target === 'cluster-n3' && c.workload === 'write');
  let best: { opsPerS: number; round: number } | undefined;
  for (const r of cell?.runs ?? []) if (r.result && r.result.opsPerS > (best?.opsPerS ?? 0)) best = { opsPerS: r.result.opsPerS, round: r.round };
  return best;
}

async function measureHalfPeak(d: Deployment, run: HalfPeakRun, clientCells: ClientCell[]): Promise<void> {
  const peak = writePeak(clientCells);
  if (!peak) throw new Error('no TS-client cluster-n3 write result to take the peak from');
  const G = settings.client.generators;
  const { total, perGenerator } = halfPeakRate(peak.opsPerS, G, settings.client.halfPeak.peakShare);
  Object.assign(run, { peakOpsPerS: peak.opsPerS, peakRound: peak.round, rate: total, ratePerGenerator: perGenerator });
  const base: ClientLoadSettings = {
    ...clientBase(d),
    mode: 'open',
    rate: perGenerator,
    tickMs: settings.client.halfPeak.tickMs,
    inflightMax: settings.client.halfPeak.inflightMaxPerGenerator,
    getRatio: settings.client.halfPeak.getRatio,
    preload: false,
  };
  const { reports, cpu } = await runClientGenerators(
    d,
    Array.from({ length: G }, (_, i) => ({ ...base, seed: 101 + i })),
  );
  const merged = mergeSnapshots(reports.map((r) => r.histogramNs));
  const sum = (f: (r: ClientLoadReport) => number) => reports.reduce((a, r) => a + f(r), 0);
  const worst = (f: (r: ClientLoadReport) => number) => Math.max(...reports.map(f));
  const ms = (q: number) => (merged.count ? merged.quantile(q) / 1e6 : Number.NaN);
  const offered = sum((r) => r.open?.offered ?? 0);
  const ok = sum((r) => r.ok);
  const errors = sum((r) => r.errors);
  const unfinished = sum((r) => r.unfinished);
  const errorsByCode = sumCodes(reports);
  const result: NonNullable<HalfPeakRun['result']> = {
    offeredPerS: sum((r) => r.open?.offeredPerS ?? 0),
    goodputPerS: sum((r) => r.opsPerS),
    p50Ms: ms(0.5),
    p99Ms: ms(0.99),
    p999Ms: ms(0.999),
    maxMs: merged.max / 1e6,
    worstP99Ms: worst((r) => r.latencyMs.p99),
    offered,
    ok,
    errors,
    errorsByCode,
    droppedByGenerator: sum((r) => r.open?.droppedByGenerator ?? 0),
    unfinished,
    warmupErrors: sum((r) => r.warmupErrors),
    retries: sum((r) => r.client.retries),
    busy: sum((r) => r.client.busy),
    tickLagP99Ms: worst((r) => r.open?.tickLagMs.p99 ?? 0),
    generatorEluMax: worst((r) => r.generator.eventLoopUtilization),
    generatorCores: sum((r) => r.generator.cpuCores),
    ...(cpu ? { cpu } : {}),
    errorSamples: reports.flatMap((r) => r.errorSamples),
    notes: clientNotes(reports, errors, unfinished, errorsByCode),
    raw: reports,
  };
  if (result.droppedByGenerator > 0) result.notes.push(`${result.droppedByGenerator} not sent: ${halfPeakInflightMax} in flight per generator`);
  if (result.goodputPerS < 0.95 * total) result.notes.push(`goodput ${Math.round(result.goodputPerS)}/s below 95 % of the ${total}/s offered`);
  if (result.tickLagP99Ms > 0.2 * result.p99Ms) result.notes.push(`GENERATOR LATE (tick lag p99 ${fixed(result.tickLagP99Ms, 2)} ms)`);
  run.result = result;
}

// ---- rounds --------------------------------------------------------------------------------

/** One thing measured on a deployment: records its own result, or `fail` records why not. */
interface Step {
  label: string;
  run: (d: Deployment) => Promise<string>;
  fail: (error: string) => void;
}

interface Startup {
  round: number;
  target: Deployed;
  startMs?: number;
  members?: Array<{ id: string; pieces: number }>;
  leases?: number;
  error?: string;
  /** stderr of the target's processes, when they wrote any (warnings under load included) */
  stderr?: string;
}

async function runDeployment(what: Deployed, round: number, steps: Step[], startups: Startup[]): Promise<void> {
  const name = what === 'client-single' ? 'single (TS client: master + 1 node)' : what;
  const label = (step: string) => `[round ${round}/${settings.rounds}] ${step || name}`;
  const startup: Startup = { round, target: what };
  startups.push(startup);
  let d: Deployment | undefined;
  try {
    try {
      d = await deploy(what);
    } catch (e) {
      // deploy tracked whatever it started: stop it all before recording the failure.
      const tails = running.tails();
      await running.stopAll(limits.stopGraceMs);
      throw new Error(`start: ${(e as Error).message}${tails ? ` | stderr: ${tails}` : ''}`);
    }
    startup.startMs = d.startMs;
    if (d.view) {
      startup.members = d.view.members.map((m) => ({ id: m.id, pieces: m.pieces }));
      startup.leases = d.view.leases.length;
    }
    console.error(
      `${label('')} started in ${d.startMs} ms` +
        (d.view ? ` (${d.view.leases.length} pieces: ${d.view.members.map((m) => `${m.id} ${m.pieces}`).join(', ')})` : ''),
    );
    for (const step of steps) {
      const t = Date.now();
      const took = () => `(${fixed((Date.now() - t) / 1000, 1)} s)`;
      try {
        const line = await step.run(d);
        console.error(`${label(step.label)} ${line} ${took()}`);
      } catch (e) {
        const tails = stderrTails(d);
        const error = (e as Error).message + (tails ? ` | stderr: ${tails}` : '');
        step.fail(error);
        console.error(`${label(step.label)} ERROR ${error} ${took()}`);
      }
    }
    const tails = stderrTails(d);
    if (tails) startup.stderr = tails;
  } catch (e) {
    startup.error = (e as Error).message;
    console.error(`${label('')} ERROR ${startup.error}`);
    for (const step of steps) step.fail(startup.error);
  } finally {
    if (d) await undeploy(d);
  }
}

function resultLine(m: { opsPerS: number; p50Ms: number; p99Ms: number; notes: string[]; cpu?: CpuUse }): string {
  return (
    `${Math.round(m.opsPerS).toString().padStart(7)} ops/s  p50 ${fixed(m.p50Ms, 3)} ms  p99 ${fixed(m.p99Ms, 3)} ms  cores gen/servers/other ${cpuText(m.cpu)}` +
    (m.notes.length ? '  ' + m.notes.join('; ') : '')
  );
}

function memcachedSteps(target: Target, round: number, cells: Cell[]): Step[] {
  return cells
    .filter((c) => c.target === target)
    .map((cell) => ({
      label: `${target.padEnd(10)} ${cell.workload.padEnd(5)}`,
      run: async (d) => {
        const result = await measure(d, cell.workload);
        cell.runs.push({ round, result });
        return resultLine(result);
      },
      fail: (error) => cell.runs.push({ round, error }),
    }));
}

function clientSteps(target: ClientTarget, round: number, clientCells: ClientCell[]): Step[] {
  return clientCells
    .filter((c) => c.target === target)
    .map((cell) => ({
      label: `${target.padEnd(10)} ${cell.workload.padEnd(5)} TS client`,
      run: async (d) => {
        const result = await measureClient(d, cell.workload);
        cell.runs.push({ round, result });
        return resultLine(result);
      },
      fail: (error) => cell.runs.push({ round, error }),
    }));
}

function halfPeakStep(round: number, clientCells: ClientCell[], onRun: (run: HalfPeakRun) => void): Step {
  const run: HalfPeakRun = { round, workload: 'write' };
  onRun(run);
  return {
    label: `cluster-n3 write TS client, open loop at ${settings.client.halfPeak.peakShare}x peak`,
    run: async (d) => {
      await measureHalfPeak(d, run, clientCells);
      const r = run.result!;
      return (
        `offered ${run.rate}/s (peak ${Math.round(run.peakOpsPerS ?? 0)}/s, round ${run.peakRound}): goodput ${Math.round(r.goodputPerS)}/s  ` +
        `p50 ${fixed(r.p50Ms, 3)} ms  p99 ${fixed(r.p99Ms, 3)} ms  p999 ${fixed(r.p999Ms, 3)} ms  cores gen/servers/other ${cpuText(r.cpu)}` +
        (r.notes.length ? '  ' + r.notes.join('; ') : '')
      );
    },
    fail: (error) => {
      run.error = error;
    },
  };
}

// ---- tables --------------------------------------------------------------------------------

function notesOf(runs: Array<{ result?: { opsPerS: number }; error?: string }>, best: { notes: string[] }): string {
  const failedRounds = runs.filter((r) => r.error).length;
  const rs = runs.map((r) => (r.result ? Math.round(r.result.opsPerS / 1000) + 'k' : 'err')).join('/');
  return [`rounds ${rs}`, ...best.notes, ...(failedRounds ? [`${failedRounds} round(s) failed`] : [])].join('; ');
}

function renderTable(cells: Cell[]): string {
  const header = ['target', 'workload', 'ops/s', 'p50 ms', 'p99 ms', 'x single', 'cores gen / srv / other', 'notes'];
  const rows = cells.map((c) => {
    const m = c.best;
    if (!m) return [c.target, c.workload, '–', '–', '–', '–', '–', cellText(c.runs.map((r) => r.error).filter(Boolean)[0] ?? 'no result', 160)];
    const base = cells.find((x) => x.target === 'single' && x.workload === c.workload)?.best;
    return [c.target, c.workload, Math.round(m.opsPerS).toString(), fixed(m.p50Ms, 3), fixed(m.p99Ms, 3), fixed(ratio(m, base), 2), cpuText(m.cpu), cellText(notesOf(c.runs, m), 160)];
  });
  return markdownTable(header, rows, [0, 1, 7]);
}

function renderClientTable(cells: ClientCell[]): string {
  const header = ['target', 'workload', 'ops/s', 'p50 ms', 'p99 ms', 'x single', 'cores gen / srv / other', 'gen loop', 'notes'];
  const rows = cells.map((c) => {
    const m = c.best;
    if (!m) return [c.target, c.workload, '–', '–', '–', '–', '–', '–', cellText(c.runs.map((r) => r.error).filter(Boolean)[0] ?? 'not run', 160)];
    const base = cells.find((x) => x.target === 'single' && x.workload === c.workload)?.best;
    return [
      c.target,
      c.workload,
      Math.round(m.opsPerS).toString(),
      fixed(m.p50Ms, 3),
      fixed(m.p99Ms, 3),
      fixed(ratio(m, base), 2),
      cpuText(m.cpu),
      `${fixed(m.generatorEluMax * 100, 0)} %`,
      cellText(notesOf(c.runs, m), 200),
    ];
  });
  return markdownTable(header, rows, [0, 1, 8]);
}

function renderHalfPeak(run: HalfPeakRun | undefined): string {
  const header = ['peak ops/s', 'offered ops/s', 'goodput ops/s', 'p50 ms', 'p99 ms', 'p999 ms', 'max ms', 'worst gen p99', 'errors', 'not sent', 'tick lag p99 ms', 'cores gen / srv / other', 'notes'];
  if (!run) return markdownTable(header, [['–', '–', '–', '–', '–', '–', '–', '–', '–', '–', '–', '–', 'not run']], [12]);
  const r = run.result;
  if (!r) {
    return markdownTable(header, [[fixed(run.peakOpsPerS, 0), fixed(run.rate, 0), '–', '–', '–', '–', '–', '–', '–', '–', '–', '–', cellText(run.error ?? 'no result', 200)]], [12]);
  }
  return markdownTable(
    header,
    [
      [
        fixed(run.peakOpsPerS, 0),
        String(run.rate),
        fixed(r.goodputPerS, 0),
        fixed(r.p50Ms, 3),
        fixed(r.p99Ms, 3),
        fixed(r.p999Ms, 3),
        fixed(r.maxMs, 1),
        fixed(r.worstP99Ms, 3),
        String(r.errors + r.unfinished),
        String(r.droppedByGenerator),
        fixed(r.tickLagP99Ms, 3),
        cpuText(r.cpu),
        cellText(r.notes.join('; '), 200),
      ],
    ],
    [12],
  );
}

function renderGoals(goals: GoalRecord[]): string {
  return markdownTable(
    ['goal', 'measured', 'verdict', 'why'],
    goals.map((g) => [g.goal, g.ratio !== undefined ? `${fixed(g.ratio, 3)}x` : g.value !== undefined ? `${fixed(g.value, 3)} ms` : '–', g.verdict, cellText(g.why ?? '', 200)]),
    [0, 2, 3],
  );
}

// ---- plot ----------------------------------------------------------------------------------

/** The plot's series, one bar per target in each group (the TS client has no cluster-n1). */
const plotSeries: ReadonlyArray<{ target: Target; name: string; color: string }> = [
  { target: 'single', name: 'single', color: '#7f7f7f' },
  { target: 'cluster-n1', name: 'cluster-n1 (N=1)', color: '#1f77b4' },
  { target: 'cluster-n3', name: 'cluster-n3 (N=3 R=2 W=2)', color: '#d62728' },
];

const p99Label = (v: number) => (v >= 10 ? v.toFixed(0) : v >= 1 ? v.toFixed(1) : v.toFixed(2));

/**
 * ops/s, p99 and x single of every cell as an SVG: one group per (path, workload), one bar
 * per target (x single: the cluster targets, the single node being the line at 1); a last
 * group for the open-loop run at half the peak (cluster-n3 only: its goodput and p99).
 * Reference lines: the 0.4x goal over the TS-client groups, the 5 ms goal over the
 * half-peak group.
 */
function renderPlot(cells: Cell[], clientCells: ClientCell[], halfPeak: HalfPeakRun | undefined, title: string): string {
  type Group = { path: 'memcached' | 'client'; workload: Workload } | { path: 'half-peak' };
  const groups: Group[] = [
    ...workloads.map((w) => ({ path: 'memcached' as const, workload: w.workload })),
    ...workloads.map((w) => ({ path: 'client' as const, workload: w.workload })),
    { path: 'half-peak' },
  ];
  const clientFirst = workloads.length;
  const clientLast = 2 * workloads.length - 1;
  const halfPeakAt = groups.length - 1;
  const h = settings.client.halfPeak;
  /** The cell of a target in a group, with the single node's cell of the same path and workload. */
  const cellOf = (g: Group, target: Target): { m?: { opsPerS: number; p99Ms: number }; base?: { opsPerS: number } } => {
    if (g.path === 'half-peak') return {};
    const list: Array<{ target: Target | ClientTarget; workload: Workload; best?: { opsPerS: number; p99Ms: number } }> = g.path === 'memcached' ? cells : clientCells;
    const find = (t: Target) => list.find((c) => c.target === t && c.workload === g.workload)?.best;
    const m = find(target);
    const base = find('single');
    return { ...(m ? { m } : {}), ...(base ? { base } : {}) };
  };
  const r = halfPeak?.result;
  const value = (pick: (m: { opsPerS: number; p99Ms: number }, base: { opsPerS: number } | undefined) => number | undefined, atHalfPeak: number | undefined) =>
    plotSeries.map((s) =>
      groups.map((g) => {
        if (g.path === 'half-peak') return s.target === 'cluster-n3' ? atHalfPeak : undefined;
        const { m, base } = cellOf(g, s.target);
        return m ? pick(m, base) : undefined;
      }),
    );
  return barChart({
    title,
    subtitle:
      `best of ${settings.rounds} round(s) (TS client: ${settings.client.rounds}), ${settings.warmupS} s warm-up + ${settings.durationS} s; ` +
      `TS-client single = master + 1 node; p99 = worst generator's (half peak: over all requests)`,
    categories: groups.map((g) =>
      g.path === 'half-peak' ? `TS client, open loop\nwrite at ${h.peakShare}x peak` : `${g.path === 'memcached' ? 'memcached' : 'TS client'}\n${g.workload}`,
    ),
    series: plotSeries.map((s) => ({ name: s.name, color: s.color })),
    panels: [
      { yLabel: 'ops/s (half peak: goodput)', values: value((m) => m.opsPerS, r?.goodputPerS) },
      {
        yLabel: 'p99 ms (log scale)',
        scale: 'log',
        values: value((m) => m.p99Ms, r?.p99Ms),
        label: p99Label,
        refLines: [{ y: clusterGoalLimits.p99MsMax, label: `goal <= ${clusterGoalLimits.p99MsMax} ms`, categories: [halfPeakAt, halfPeakAt] }],
      },
      {
        // The single node is 1 by definition: a line, not bars, which leaves the TS-client groups' first slot to the goal's label.
        yLabel: 'x single (same path, workload)',
        values: value((m, base) => ratio(m, base), undefined).map((row, si) => (plotSeries[si]!.target === 'single' ? row.map(() => undefined) : row)),
        label: (v) => v.toFixed(2),
        refLines: [
          { y: 1, label: 'single = 1' },
          { y: clusterGoalLimits.ratioMin, label: `goal >= ${clusterGoalLimits.ratioMin}x`, categories: [clientFirst, clientLast] },
        ],
      },
    ],
  });
}

// ---- goals ---------------------------------------------------------------------------------

function throughputOf(cell: ClientCell | undefined): Measured<ThroughputFigure> {
  if (cell?.best) return { figure: { opsPerS: cell.best.opsPerS, errors: cell.best.errors, unfinished: cell.best.unfinished } };
  const error = cell?.runs.map((r) => r.error).find(Boolean);
  return { why: error ? `no result (${error.slice(0, 200)})` : 'not run' };
}

function halfPeakOf(run: HalfPeakRun | undefined): Measured<HalfPeakFigure> {
  if (!run) return { why: 'not run' };
  if (!run.result) return { why: run.error ? `no result (${run.error.slice(0, 200)})` : 'no result' };
  const r = run.result;
  return { figure: { p99Ms: r.p99Ms, offered: r.offered, ok: r.ok, errors: r.errors, droppedByGenerator: r.droppedByGenerator, unfinished: r.unfinished } };
}

function evaluate(cells: Cell[], clientCells: ClientCell[], halfPeak: HalfPeakRun | undefined): { goals: GoalRecord[]; info: GoalRecord[] } {
  const cc = (target: ClientTarget, workload: Workload) => throughputOf(clientCells.find((c) => c.target === target && c.workload === workload));
  const goals = clientGoals({
    single: { write: cc('single', 'write'), read: cc('single', 'read') },
    n3: { write: cc('cluster-n3', 'write'), read: cc('cluster-n3', 'read') },
    halfPeak: halfPeakOf(halfPeak),
  });
  return { goals, info: infoGoals(cells) };
}

// ---- main ----------------------------------------------------------------------------------

async function main(): Promise<number> {
  const command = commandLine();
  const startedAt = new Date();
  if (!cliBuilt('bench-cluster')) return 1;
  const cells: Cell[] = [];
  for (const t of targets) for (const w of workloads) cells.push({ target: t.target, workload: w.workload, runs: [] });
  const clientCells: ClientCell[] = [];
  for (const t of clientTargets) for (const w of workloads) clientCells.push({ target: t.target, workload: w.workload, runs: [] });
  let halfPeak: HalfPeakRun | undefined;
  const c = settings.client;
  console.error(
    `bench-cluster: ${settings.rounds} round(s), order single cluster-n1 [TS single] cluster-n3 (each: ${workloads.map((w) => w.workload).join(', ')}); ` +
      `memcached: ${settings.generators} loadgen x ${settings.connsPerGenerator} conns, depth ${settings.depth}; ` +
      `TS client (rounds 1..${c.rounds}): ${c.generators} processes x ${c.concurrencyPerGenerator} in flight, then (round ${c.halfPeak.round}) open-loop write at ${c.halfPeak.peakShare}x the cluster-n3 write peak; ` +
      `${settings.valueSize} B values, ${settings.keys} keys, ${settings.dist}, ${settings.warmupS} s warm-up + ${settings.durationS} s per cell`,
  );
  const startups: Startup[] = [];
  for (let round = 1; round <= settings.rounds; round++) {
    const client = round <= c.rounds;
    await runDeployment('single', round, memcachedSteps('single', round, cells), startups);
    await runDeployment('cluster-n1', round, memcachedSteps('cluster-n1', round, cells), startups);
    if (client) await runDeployment('client-single', round, clientSteps('single', round, clientCells), startups);
    const n3: Step[] = [...memcachedSteps('cluster-n3', round, cells)];
    if (client) n3.push(...clientSteps('cluster-n3', round, clientCells));
    if (client && round === c.halfPeak.round) n3.push(halfPeakStep(round, clientCells, (run) => (halfPeak = run)));
    await runDeployment('cluster-n3', round, n3, startups);
  }
  for (const cell of cells) pickBest(cell);
  for (const cell of clientCells) pickBest(cell);
  const { goals, info } = evaluate(cells, clientCells, halfPeak);
  const machine = machineInfo();
  const commit = commitInfo();
  const finishedAt = new Date();
  const method =
    `Each target started fresh per round (clusters: master --lease-ms ${leaseMs}, nodes joined one by one, measured only once the master shows every piece leased, none moving, ` +
    `and every node answers a set), measured write then read, then stopped; the whole sequence repeated ${settings.rounds} time(s) in the same order; ` +
    `the TS-client cells in round(s) 1..${c.rounds} (single on its own master + 1 node deployment, cluster-n3 on the cluster-n3 deployment after its memcached cells). ` +
    `Each cell shows its best round (highest ops/s). ops/s is the sum of the ${settings.generators} generators', p50/p99 the worst generator's; ` +
    `"x single" divides by the single node's ops/s under the same workload and through the same path (memcached: the standalone node; TS client: master + 1 node). ` +
    `TS client ops/s count successful replies only; failed requests are counted and shown, and make a goal MISS. ` +
    `Half peak: once, in round ${c.halfPeak.round}, on that round's cluster-n3 deployment, an open-loop write-only load (write is the costlier operation: a forward to the owner ` +
    `and two replica writes) at ${c.halfPeak.peakShare}x the best TS-client cluster-n3 write ops/s measured so far, split evenly over ${c.generators} processes; request i due at ` +
    `t0 + i/rate, started by a ${c.halfPeak.tickMs} ms tick, latency from the due time (waiting in the generator counts), every request due in the window accounted; ` +
    `p50/p99/p999 over all the processes' requests (merged histograms). Cores (gen / srv / other): CPU used during the generators' common window by the generator ` +
    `processes, by the master and nodes, and by every process outside the bench (/proc, sampled every 250 ms).`;
  const base = resultsBase(startedAt, commit, 'cluster', opts.quick);
  const title = resultsTitle('bench:cluster', startedAt, commit, opts.quick);
  const svg = renderPlot(cells, clientCells, halfPeak, title.replace(/^# /, ''));
  const md = [
    title,
    '',
    `Command: \`${command}\`  `,
    `Machine: ${machineText(machine)}  `,
    `Targets: ${targets.map((t) => `${t.target} = ${t.what}`).join('; ')}. TS client: ${clientTargets.map((t) => `${t.target} = ${t.what}`).join('; ')}.  `,
    `Load: memcached path: ${settings.generators} loadgen processes in parallel, one per node (single node: all on its one port), ${settings.connsPerGenerator} connections each, depth ${settings.depth}. ` +
      `TS client: ${c.generators} client-load processes (RingClient, pool ${c.poolSize} connections per node, timeout ${c.timeoutMs} ms), ${c.concurrencyPerGenerator} requests in flight each. ` +
      `write = 100 % set, read = 100 % get after preloading every key (memcached: each generator preloads all; TS client: each preloads a third); ${settings.valueSize} B values, ${settings.keys} keys (${settings.dist}), ` +
      `${settings.warmupS} s warm-up + ${settings.durationS} s measured.  `,
    `Method: ${method} Every process (master, nodes, generators) shares this machine's ${machine.cpus} CPU(s).  `,
    `Run time: ${fixed((finishedAt.getTime() - startedAt.getTime()) / 1000, 0)} s.`,
    '',
    '## memcached protocol (loadgen)',
    '',
    renderTable(cells),
    '',
    '## TS client (RingClient over RPC)',
    '',
    renderClientTable(clientCells),
    '',
    `## cluster-n3 through the TS client at ${c.halfPeak.peakShare}x its write peak (open loop, write-only)`,
    '',
    renderHalfPeak(halfPeak),
    '',
    '## Goals (issue 6)',
    '',
    renderGoals(goals),
    '',
    ...(opts.write ? [`![ops/s, p99 and x single per path, workload and target](${base}.svg)`, ''] : []),
  ].join('\n');
  const bestOf = (m: Measurement | ClientMeasurement | undefined) => {
    if (!m) return undefined;
    const { raw: _raw, errorSamples: _samples, ...rest } = m;
    return rest;
  };
  publishResults('bench-cluster', {
    write: opts.write,
    base,
    md,
    svg,
    header: { benchmark: 'bench:cluster', startedAt, finishedAt, command, commit, machine, quick: opts.quick },
    body: () => ({
      settings,
      targets,
      clientTargets,
      workloads,
      method,
      plot: `${base}.svg`,
      startups,
      // The suite reads `goals` (bench/lib/suite.ts): issue 6's goals, then the memcached path's INFO rows.
      goals: [...goals, ...info],
      cells: cells.map((cell) => ({ target: cell.target, workload: cell.workload, best: bestOf(cell.best), runs: cell.runs })),
      clientCells: clientCells.map((cell) => ({ target: cell.target, workload: cell.workload, best: bestOf(cell.best), runs: cell.runs })),
      halfPeak,
    }),
  });
  return 0;
}

async function stopAll(): Promise<void> {
  generatorAbort.abort();
  await running.stopAll(2000);
}

await runBench('bench-cluster', main, { stopAll, stopping: () => `${running.size} server(s) and the generators` });
