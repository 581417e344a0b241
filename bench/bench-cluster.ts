// bench:cluster — what replication costs, measured side by side in one run on this machine:
//
//   A  single       one standalone ringkv node, --storage memory (the baseline)
//   B  cluster-n1   a master and 3 memory nodes, --n 1 --r 1 --w 1 (routing only, no copies)
//   C  cluster-n3   a master and 3 memory nodes, --n 3 --r 2 --w 2 (the default replication)
//
// Each target gets two workloads from our memcached-protocol generator (bench/loadgen):
// write-only (every request a set) and read-only (every request a get, every key preloaded).
// The load is spread over the target's nodes: 3 generator processes run in parallel, one per
// node's memcached port (for the single node all three hit its one port), and their ops/s
// are summed; p99 is the worst of the three.
//
// As in bench:node, no absolute figure is claimed: each row is a ratio to the single node
// under the same workload, minutes apart. Every target is started fresh for each round,
// measured under both workloads and stopped; the whole sequence is repeated `--rounds` times
// in the same order (ABC ABC) and each cell reports its best round (highest ops/s). All
// rounds, with every generator's full report, are in the JSON.
//
//   node dist/bench/bench-cluster.js [--quick] [--duration-s S] [--rounds N] [--no-write]
import { benchCommand, intArg, parseBenchOptions, runBench, type BenchOptions } from './lib/cli.js';
import { startBenchCluster, waitServing } from './lib/cluster.js';
import { defaultLoadSettings, runLoadInChild, type LoadReport } from './lib/loadgen.js';
import type { ClusterView } from './lib/master-http.js';
import { cellText, cliBuilt, commandLine, commitInfo, fixed, machineInfo, machineText, markdownTable, pickBest, ratio, resultsBase, publishResults, resultsTitle } from './lib/report.js';
import { ServerSet, startRingkv, type RunningServer } from './lib/servers.js';

type Target = 'single' | 'cluster-n1' | 'cluster-n3';
type Workload = 'write' | 'read';

const targets: ReadonlyArray<{ target: Target; what: string; replication?: { n: number; r: number; w: number } }> = [
  { target: 'single', what: 'one standalone node, --storage memory' },
  { target: 'cluster-n1', what: 'master + 3 memory nodes, --n 1 --r 1 --w 1 (routing only)', replication: { n: 1, r: 1, w: 1 } },
  { target: 'cluster-n3', what: 'master + 3 memory nodes, --n 3 --r 2 --w 2 (default replication)', replication: { n: 3, r: 2, w: 2 } },
];
const workloads: ReadonlyArray<{ workload: Workload; getRatio: number; preload: boolean }> = [
  { workload: 'write', getRatio: 0, preload: false },
  { workload: 'read', getRatio: 1, preload: true },
];

/** Nodes in a cluster target, and generator processes per cell (one per node). */
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

interface Options extends BenchOptions {
  keys: number;
  rounds: number;
  conns: number;
}

const opts = parseBenchOptions<Options>(
  benchCommand('bench-cluster', 'a single ringkv node beside 3-node clusters with and without replication; prints ratios, writes bench/results/', {
    quick: 'short run: 2 s windows, 1 s warm-up',
    durationS: { help: 'measured window per cell, seconds (default 8, quick 2)', min: 1, max: 600 },
    warmupS: { help: 'unrecorded warm-up per cell, seconds (default 2, quick 1)', min: 0, max: 600 },
  })
    .option('--keys <n>', 'key space', intArg(1, 5_000_000), 10_000)
    .option('--rounds <n>', 'times the whole ABC sequence is repeated; each cell keeps its best', intArg(1, 10), 2)
    .option('--conns <n>', 'connections of each of the 3 generator processes', intArg(1, 1000), 16),
);
const settings = {
  generators: generatorsPerCell,
  connsPerGenerator: opts.conns,
  depth: 1,
  valueSize: 100,
  keys: opts.keys,
  dist: 'uniform' as const,
  durationS: opts.durationS ?? (opts.quick ? 2 : 8),
  warmupS: opts.warmupS ?? (opts.quick ? 1 : 2),
  rounds: opts.rounds,
  leaseMs,
  clusterSize,
};

/** One cell's measurement: the 3 generators' reports, combined. */
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
  /** Every generator's report, in port order. */
  raw: Array<{ port: number; report: LoadReport }>;
}

interface Cell {
  target: Target;
  workload: Workload;
  runs: Array<{ round: number; result?: Measurement; error?: string }>;
  best?: Measurement;
}

/** A started target: the ports the load goes to and every process behind them. */
interface Deployment {
  target: Target;
  master?: RunningServer;
  nodes: RunningServer[];
  /** From spawning the first process to every node answering a set. */
  startMs: number;
  /** The master's view once settled (clusters only). */
  view?: ClusterView;
}


// Servers started and not yet stopped: stopped by PID if the run is interrupted.
const running = new ServerSet();

function track(server: RunningServer): RunningServer {
  return running.add(server);
}

function stop(server: RunningServer, graceMs: number = limits.stopGraceMs): Promise<void> {
  return running.stop(server, graceMs);
}

async function deploy(target: Target): Promise<Deployment> {
  const t0 = Date.now();
  const spec = targets.find((t) => t.target === target)!;
  if (!spec.replication) {
    const node = track(await startRingkv({ storage: 'memory' }));
    await waitServing([node], limits);
    return { target, nodes: [node], startMs: Date.now() - t0 };
  }
  const ids = Array.from({ length: clusterSize }, (_, i) => `n${i + 1}`);
  const { master, nodes, view } = await startBenchCluster({ replication: spec.replication, leaseMs, ids, limits, track });
  return { target, master, nodes, startMs: Date.now() - t0, view };
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

async function measure(d: Deployment, workload: Workload): Promise<Measurement> {
  const w = workloads.find((x) => x.workload === workload)!;
  const ports = Array.from({ length: generatorsPerCell }, (_, i) => d.nodes[i % d.nodes.length]!.port);
  // allSettled: never leave a generator running against servers about to be stopped.
  const results = await Promise.allSettled(
    ports.map((port, i) =>
      runLoadInChild({
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
      }),
    ),
  );
  const failed = results.flatMap((r, i) => (r.status === 'rejected' ? [`generator ${i + 1} (port ${ports[i]}): ${(r.reason as Error).message}`] : []));
  if (failed.length) throw new Error(failed.join('; '));
  const reports = results.map((r) => (r as PromiseFulfilledResult<LoadReport>).value);
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

function plan(): Cell[] {
  const cells: Cell[] = [];
  for (const t of targets) for (const w of workloads) cells.push({ target: t.target, workload: w.workload, runs: [] });
  return cells;
}

interface Startup {
  round: number;
  target: Target;
  startMs?: number;
  members?: Array<{ id: string; pieces: number }>;
  leases?: number;
  error?: string;
  /** stderr of the target's processes, when they wrote any (warnings under load included) */
  stderr?: string;
}

async function runTarget(target: Target, round: number, cells: Cell[], startups: Startup[]): Promise<void> {
  const label = (workload: string) => `[round ${round}/${settings.rounds}] ${target.padEnd(10)} ${workload.padEnd(5)}`;
  const startup: Startup = { round, target };
  startups.push(startup);
  let d: Deployment | undefined;
  try {
    try {
      d = await deploy(target);
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
    for (const cell of cells.filter((c) => c.target === target)) {
      try {
        const result = await measure(d, cell.workload);
        cell.runs.push({ round, result });
        console.error(
          `${label(cell.workload)} ${Math.round(result.opsPerS).toString().padStart(7)} ops/s  p50 ${fixed(result.p50Ms, 3)} ms  p99 ${fixed(result.p99Ms, 3)} ms` +
            (result.notes.length ? '  ' + result.notes.join('; ') : ''),
        );
      } catch (e) {
        const tails = stderrTails(d);
        const error = (e as Error).message + (tails ? ` | stderr: ${tails}` : '');
        cell.runs.push({ round, error });
        console.error(`${label(cell.workload)} ERROR ${error}`);
      }
    }
    const tails = stderrTails(d);
    if (tails) startup.stderr = tails;
  } catch (e) {
    startup.error = (e as Error).message;
    console.error(`${label('')} ERROR ${startup.error}`);
    for (const cell of cells.filter((c) => c.target === target)) cell.runs.push({ round, error: startup.error });
  } finally {
    if (d) await undeploy(d);
  }
}

function renderTable(cells: Cell[]): string {
  const header = ['target', 'workload', 'ops/s', 'p50 ms', 'p99 ms', 'x single', 'notes'];
  const rows = cells.map((c) => {
    const m = c.best;
    if (!m) return [c.target, c.workload, '–', '–', '–', '–', cellText(c.runs.map((r) => r.error).filter(Boolean)[0] ?? 'no result', 160)];
    const base = cells.find((x) => x.target === 'single' && x.workload === c.workload)?.best;
    const failedRounds = c.runs.filter((r) => r.error).length;
    const rounds = c.runs.map((r) => (r.result ? Math.round(r.result.opsPerS / 1000) + 'k' : 'err')).join('/');
    const notes = [`rounds ${rounds}`, ...m.notes, ...(failedRounds ? [`${failedRounds} round(s) failed`] : [])];
    return [c.target, c.workload, Math.round(m.opsPerS).toString(), fixed(m.p50Ms, 3), fixed(m.p99Ms, 3), fixed(ratio(m, base), 2), cellText(notes.join('; '), 160)];
  });
  return markdownTable(header, rows, [0, 1, 6]);
}

async function main(): Promise<number> {
  const command = commandLine();
  const startedAt = new Date();
  if (!cliBuilt('bench-cluster')) return 1;
  const cells = plan();
  console.error(
    `bench-cluster: ${settings.rounds} round(s), order ${targets.map((t) => t.target).join(' ')} (each: ${workloads.map((w) => w.workload).join(', ')}); ` +
      `${settings.generators} generators x ${settings.connsPerGenerator} conns, depth ${settings.depth}, ${settings.valueSize} B values, ${settings.keys} keys, ${settings.dist}, ` +
      `${settings.warmupS} s warm-up + ${settings.durationS} s per cell`,
  );
  const startups: Startup[] = [];
  for (let round = 1; round <= settings.rounds; round++) {
    for (const t of targets) await runTarget(t.target, round, cells, startups);
  }
  for (const cell of cells) pickBest(cell);
  const machine = machineInfo();
  const commit = commitInfo();
  const finishedAt = new Date();
  const method =
    `Each target started fresh per round (clusters: master --lease-ms ${leaseMs}, nodes joined one by one, measured only once the master shows every piece leased, none moving, ` +
    `and every node answers a set), measured write then read, then stopped; the whole sequence repeated ${settings.rounds} time(s) (ABC ABC); ` +
    `each cell shows its best round (highest ops/s). ops/s is the sum of the ${settings.generators} generators', p50/p99 the worst generator's; ` +
    `"x single" divides by the single node's ops/s under the same workload.`;
  const md = [
    resultsTitle('bench:cluster', startedAt, commit, opts.quick),
    '',
    `Command: \`${command}\`  `,
    `Machine: ${machineText(machine)}  `,
    `Targets: ${targets.map((t) => `${t.target} = ${t.what}`).join('; ')}.  `,
    `Load: ${settings.generators} loadgen processes in parallel, one per node (single node: all on its one port), ${settings.connsPerGenerator} connections each, depth ${settings.depth}; ` +
      `write = 100 % set, read = 100 % get after preloading every key (each generator preloads); ${settings.valueSize} B values, ${settings.keys} keys (${settings.dist}), ` +
      `${settings.warmupS} s warm-up + ${settings.durationS} s measured.  `,
    `Method: ${method} Every process (master, nodes, generators) shares this machine's ${machine.cpus} CPU(s).  `,
    `Run time: ${fixed((finishedAt.getTime() - startedAt.getTime()) / 1000, 0)} s.`,
    '',
    renderTable(cells),
    '',
  ].join('\n');
  publishResults('bench-cluster', {
    write: opts.write,
    base: resultsBase(startedAt, commit, 'cluster', opts.quick),
    md,
    header: { benchmark: 'bench:cluster', startedAt, finishedAt, command, commit, machine, quick: opts.quick },
    body: () => ({
      settings,
      targets,
      workloads,
      method,
      startups,
      cells: cells.map((c) => ({
        target: c.target,
        workload: c.workload,
        best: c.best && {
          opsPerS: c.best.opsPerS,
          p50Ms: c.best.p50Ms,
          p99Ms: c.best.p99Ms,
          p999Ms: c.best.p999Ms,
          errors: c.best.errors,
          misses: c.best.misses,
          preloadErrors: c.best.preloadErrors,
          notes: c.best.notes,
        },
        runs: c.runs,
      })),
    }),
  });
  return 0;
}

async function stopAll(): Promise<void> {
  await running.stopAll(2000);
}

await runBench('bench-cluster', main, { stopAll, stopping: () => `${running.size} server(s)` });
