// bench:node — one ringkv node beside its peers, in one run, on this machine:
//
//   memcached protocol  real memcached -t 1 | the Node floor | ringkv --storage memory | ringkv --storage level
//                       each driven by our generator (bench/loadgen) and by Debian's memcaslap
//   HTTP                the Node HTTP floor | ringkv memory | ringkv level, driven by autocannon
//
// Machines are shared and noisy, so no absolute figure is claimed: each row is a ratio to
// memcached and to the Node floor measured with the same generator and settings minutes
// apart. Every target is started fresh, loaded, measured and stopped in turn; the whole
// sequence is repeated `--rounds` times in the same order (ABCD ABCD) and each cell reports
// its best round (highest ops/s): noise from other tenants only ever slows a run down, so
// the best round is the closest to what the target can do. All rounds are in the JSON.
//
//   node dist/bench/bench-node.js [--quick] [--duration-s S] [--rounds N] [--check]
import { existsSync } from 'node:fs';
import path from 'node:path';
import { benchCommand, intArg, parseBenchOptions, runBench, type BenchOptions } from './lib/cli.js';
import { runHttpLoad, type HttpLoadReport } from './lib/http-load.js';
import { defaultLoadSettings, runLoadInChild, type LoadReport } from './lib/loadgen.js';
import { memcaslapKeys, runMemcaslap, type MemcaslapReport } from './lib/memcaslap.js';
import { cellText, commandLine, commitInfo, fixed, machineInfo, machineText, markdownTable, pickBest, ratio, resultsBase, publishResults, resultsTitle } from './lib/report.js';
import {
  cliPath,
  repoRoot,
  ServerSet,
  startFloorHttp,
  startFloorMemcached,
  startMemcached,
  startRingkv,
  type RunningServer,
} from './lib/servers.js';

type Generator = 'loadgen' | 'memcaslap' | 'autocannon';
type Target = 'memcached' | 'floor' | 'ringkv-memory' | 'ringkv-level' | 'floor-http';

/** The issue's targets: ringkv's throughput as a fraction of the Node floor's. */
const goals: ReadonlyArray<{ target: Target; generator: Generator; ratioMin: number }> = [
  { target: 'ringkv-memory', generator: 'loadgen', ratioMin: 0.8 },
  { target: 'ringkv-memory', generator: 'memcaslap', ratioMin: 0.8 },
  { target: 'ringkv-level', generator: 'loadgen', ratioMin: 0.6 },
  { target: 'ringkv-level', generator: 'memcaslap', ratioMin: 0.6 },
];

interface Options extends BenchOptions {
  keys?: number;
  rounds: number;
  conns: number;
  check: boolean;
  memcaslap: boolean;
  autocannon: boolean;
}

const opts = parseBenchOptions<Options>(
  benchCommand('bench-node', 'one ringkv node beside memcached and the Node floors; prints ratios, writes bench/results/', {
    quick: 'short run (about a minute): 2 s windows, 50k keys',
    durationS: { help: 'measured window per cell, seconds (default 10, quick 2)', min: 1, max: 600 },
    warmupS: { help: 'unrecorded warm-up per cell, seconds (default 2, quick 1)', min: 0, max: 600 },
  })
    .option('--keys <n>', 'key space (default 100000, quick 50000; memcaslap rounds it up to conns x 1000)', intArg(1, 5_000_000))
    .option('--rounds <n>', 'times the whole ABCD sequence is repeated; each cell keeps its best', intArg(1, 10), 2)
    .option('--conns <n>', 'connections of every generator', intArg(1, 1000), defaultLoadSettings.conns)
    .option('--check', 'exit 1 unless every target passes', false)
    .option('--no-memcaslap', 'skip the memcaslap cells')
    .option('--no-autocannon', 'skip the HTTP cells'),
);
const durationS = opts.durationS ?? (opts.quick ? 2 : 10);
const warmupS = opts.warmupS ?? (opts.quick ? 1 : 2);
// 50k in quick runs: memcaslap's key space is a whole number of thousands per connection.
const keys = opts.keys ?? (opts.quick ? 50_000 : 100_000);
const settings = {
  conns: opts.conns,
  depth: 1,
  getRatio: 0.9,
  valueSize: 100,
  keys,
  dist: 'uniform' as const,
  durationS,
  warmupS,
  rounds: opts.rounds,
  memcaslapKeyBytes: 16,
  memcaslapKeys: memcaslapKeys({ keys, conns: opts.conns }),
  memcaslapDurationS: Math.max(1, Math.round(durationS)),
  httpKey: 'bench-key-1',
};

const ringkvBuilt = existsSync(cliPath);
/** A memcaslap cell with more error replies than this share of its ops is not a measurement. */
const memcaslapErrorShareMax = 0.001;

/** One measurement of one target with one generator. */
interface Measurement {
  opsPerS: number;
  p50Ms: number;
  p99Ms: number;
  p999Ms: number;
  /** p50/p99/p999 are upper bounds of log2 buckets (memcaslap) */
  latencyUpperBounds: boolean;
  notes: string[];
  raw: LoadReport | MemcaslapReport | HttpLoadReport;
}

interface Cell {
  target: Target;
  generator: Generator;
  runs: Array<{ round: number; result?: Measurement; error?: string }>;
  best?: Measurement;
  skipped?: string;
}

// Servers started and not yet stopped: stopped by PID if the run is interrupted.
const running = new ServerSet();

async function start(target: Target): Promise<RunningServer> {
  let server: RunningServer;
  switch (target) {
    case 'memcached':
      server = await startMemcached({ threads: 1, memoryMb: 1024 });
      break;
    case 'floor':
      server = await startFloorMemcached();
      break;
    case 'ringkv-memory':
      server = await startRingkv({ storage: 'memory' });
      break;
    case 'ringkv-level':
      server = await startRingkv({ storage: 'level' });
      break;
    case 'floor-http':
      server = await startFloorHttp();
      break;
    default: {
      const never: never = target;
      throw new Error(`unknown target ${String(never)}`);
    }
  }
  return running.add(server);
}

async function measure(target: Target, generator: Generator, server: RunningServer): Promise<Measurement> {
  const notes: string[] = [];
  if (generator === 'loadgen') {
    const r = await runLoadInChild({
      ...defaultLoadSettings,
      port: server.port,
      conns: settings.conns,
      depth: settings.depth,
      getRatio: settings.getRatio,
      keys: settings.keys,
      valueSize: settings.valueSize,
      dist: settings.dist,
      warmupS: settings.warmupS,
      durationS: settings.durationS,
    });
    if (r.errors > 0) notes.push(`${r.errors} errors (${r.errorSamples[0] ?? ''})`);
    if (r.misses > 0) notes.push(`${r.misses} misses`);
    if (r.preload.errors > 0) notes.push(`${r.preload.errors} preload errors`);
    if (r.stoppedBy !== 'duration') notes.push(`stopped by ${r.stoppedBy}`);
    return { opsPerS: r.opsPerS, p50Ms: r.latencyMs.p50, p99Ms: r.latencyMs.p99, p999Ms: r.latencyMs.p999, latencyUpperBounds: false, notes, raw: r };
  }
  if (generator === 'memcaslap') {
    const r = await runMemcaslap({
      host: server.host,
      port: server.port,
      conns: settings.conns,
      getRatio: settings.getRatio,
      valueSize: settings.valueSize,
      keys: settings.keys,
      keyBytes: settings.memcaslapKeyBytes,
      durationS: settings.memcaslapDurationS,
    });
    if (r.errorReplies > r.ops * memcaslapErrorShareMax) {
      // memcaslap's keys start with 8 raw bytes (0x10-ish, never space/CR/LF/NUL); memcached
      // takes them, a server applying protocol.txt's "no control characters" rule refuses them.
      throw new Error(
        `${r.errorReplies} error replies to ${r.ops} ops (first: ${r.errorSample}); memcaslap puts 8 raw bytes (0x10..) ` +
          `at the start of every key, which a server refusing control characters in keys rejects`,
      );
    }
    if (r.errorReplies > 0) notes.push(`${r.errorReplies} error replies (${r.errorSample})`);
    if (r.getMisses > 0) notes.push(`${r.getMisses} misses`);
    if (r.log2Mismatch) notes.push('log2 latency buckets did not match Min/Max: percentiles omitted');
    return { opsPerS: r.opsPerS, p50Ms: r.latencyMs.p50, p99Ms: r.latencyMs.p99, p999Ms: r.latencyMs.p999, latencyUpperBounds: true, notes, raw: r };
  }
  const port = server.httpPort;
  if (port === undefined) throw new Error(`${target} has no HTTP port`);
  const r = await runHttpLoad({
    host: server.host,
    port,
    key: settings.httpKey,
    valueSize: settings.valueSize,
    conns: settings.conns,
    pipelining: settings.depth,
    warmupS: settings.warmupS,
    durationS: settings.durationS,
  });
  if (r.errors > 0) notes.push(`${r.errors} errors`);
  if (r.timeouts > 0) notes.push(`${r.timeouts} timeouts`);
  if (r.non2xx > 0) notes.push(`${r.non2xx} non-2xx`);
  return { opsPerS: r.opsPerS, p50Ms: r.latencyMs.p50, p99Ms: r.latencyMs.p99, p999Ms: r.latencyMs.p999, latencyUpperBounds: false, notes, raw: r };
}

function plan(): Cell[] {
  const cells: Cell[] = [];
  const memcachedTargets: Target[] = ['memcached', 'floor', 'ringkv-memory', 'ringkv-level'];
  const generators: Generator[] = ['loadgen', ...(opts.memcaslap ? (['memcaslap'] as const) : [])];
  for (const generator of generators) for (const target of memcachedTargets) cells.push({ target, generator, runs: [] });
  if (opts.autocannon) for (const target of ['floor-http', 'ringkv-memory', 'ringkv-level'] as const) cells.push({ target, generator: 'autocannon', runs: [] });
  for (const cell of cells) {
    if (cell.target.startsWith('ringkv') && !ringkvBuilt) cell.skipped = `ringkv CLI not built (${path.relative(repoRoot, cliPath)} missing)`;
  }
  return cells;
}

async function runCell(cell: Cell, round: number): Promise<void> {
  const label = `[round ${round}/${settings.rounds}] ${cell.generator.padEnd(10)} -> ${cell.target.padEnd(13)}`;
  let server: RunningServer | undefined;
  try {
    server = await start(cell.target);
    const result = await measure(cell.target, cell.generator, server);
    cell.runs.push({ round, result });
    console.error(`${label} ${Math.round(result.opsPerS).toString().padStart(7)} ops/s  p50 ${fixed(result.p50Ms, 3)} ms  p99 ${fixed(result.p99Ms, 3)} ms${result.notes.length ? '  ' + result.notes.join('; ') : ''}`);
  } catch (e) {
    const error = (e as Error).message + (server ? ` | server stderr: ${server.stderr().slice(-400)}` : '');
    cell.runs.push({ round, error });
    console.error(`${label} ERROR ${error}`);
  } finally {
    if (server) await running.stop(server);
  }
}

function peer(cells: Cell[], target: Target, generator: Generator): Measurement | undefined {
  return cells.find((c) => c.target === target && c.generator === generator)?.best;
}

interface GoalResult {
  goal: string;
  ratio?: number;
  verdict: 'PASS' | 'FAIL' | 'SKIP' | 'ERROR';
  why?: string;
}

function evaluateGoals(cells: Cell[]): GoalResult[] {
  return goals.map((g) => {
    const goal = `${g.target} >= ${g.ratioMin}x floor (${g.generator})`;
    const cell = cells.find((c) => c.target === g.target && c.generator === g.generator);
    const floor = cells.find((c) => c.target === 'floor' && c.generator === g.generator);
    if (!cell || !floor) return { goal, verdict: 'SKIP', why: `${g.generator} cells not run` };
    if (cell.skipped) return { goal, verdict: 'SKIP', why: cell.skipped };
    const r = ratio(cell.best, floor.best);
    if (r === undefined) {
      const failed = [cell, floor].find((c) => !c.best);
      return { goal, verdict: 'ERROR', why: `${failed?.target ?? '?'}: ${failed?.runs.find((x) => x.error)?.error ?? 'no result'}` };
    }
    return { goal, ratio: r, verdict: r >= g.ratioMin ? 'PASS' : 'FAIL' };
  });
}

function renderTable(cells: Cell[]): string {
  const header = ['target', 'generator', 'ops/s', 'p50 ms', 'p99 ms', 'p999 ms', 'x memcached', 'x floor', 'notes'];
  const rows = cells.map((c) => {
    const m = c.best;
    if (!m) {
      const why = c.skipped ?? c.runs.map((r) => r.error).filter(Boolean)[0] ?? 'no result';
      return [c.target, c.generator, '–', '–', '–', '–', '–', '–', cellText(why, 120)];
    }
    const lat = (x: number) => (m.latencyUpperBounds && Number.isFinite(x) ? '≤' : '') + fixed(x, 3);
    const isHttp = c.generator === 'autocannon';
    const vsMemcached = isHttp ? undefined : ratio(m, peer(cells, 'memcached', c.generator));
    const vsFloor = ratio(m, peer(cells, isHttp ? 'floor-http' : 'floor', c.generator));
    const failedRounds = c.runs.filter((r) => r.error).length;
    // Every round's ops/s, so a reader sees how much the machine moved under this cell.
    const rounds = c.runs.map((r) => (r.result ? Math.round(r.result.opsPerS / 1000) + 'k' : 'err')).join('/');
    const notes = [`rounds ${rounds}`, ...m.notes, ...(failedRounds ? [`${failedRounds} round(s) failed`] : [])];
    return [c.target, c.generator, Math.round(m.opsPerS).toString(), lat(m.p50Ms), lat(m.p99Ms), lat(m.p999Ms), isHttp ? 'n/a' : fixed(vsMemcached, 2), fixed(vsFloor, 2), cellText(notes.join('; '), 120)];
  });
  return markdownTable(header, rows, [0, 1, 8]);
}

function renderGoals(results: GoalResult[]): string {
  return markdownTable(
    ['goal', 'ratio', 'verdict', 'why'],
    results.map((g) => [g.goal, fixed(g.ratio, 2), g.verdict, cellText(g.why ?? '', 160)]),
    [0, 2, 3],
  );
}

async function main(): Promise<number> {
  const command = commandLine();
  const startedAt = new Date();
  const cells = plan();
  if (!ringkvBuilt) console.error(`bench-node: ${path.relative(repoRoot, cliPath)} is missing: ringkv targets are skipped (build the CLI, then re-run).`);
  console.error(
    `bench-node: ${settings.rounds} round(s), order ${cells.filter((c) => !c.skipped).map((c) => `${c.generator}:${c.target}`).join(' ')}; ` +
      `${settings.conns} conns, depth ${settings.depth}, ${settings.getRatio * 100}% get, ${settings.valueSize} B values, ${settings.keys} keys, ${settings.dist}, ` +
      `${settings.warmupS} s warm-up + ${settings.durationS} s per cell`,
  );
  for (let round = 1; round <= settings.rounds; round++) {
    for (const cell of cells) if (!cell.skipped) await runCell(cell, round);
  }
  for (const cell of cells) pickBest(cell);
  const goalResults = evaluateGoals(cells);
  const machine = machineInfo();
  const commit = commitInfo();
  const method = `Each target started fresh per cell, in the order listed, the whole sequence repeated ${settings.rounds} time(s) (ABCD ABCD); each cell shows its best round (highest ops/s). Ratios compare cells with the same generator.`;
  const md = [
    resultsTitle('bench:node', startedAt, commit, opts.quick),
    '',
    `Command: \`${command}\`  `,
    `Machine: ${machineText(machine)}, ${machine.memcached}, ${machine.memcaslap}  `,
    `Load: ${settings.conns} connections, depth ${settings.depth}, ${settings.getRatio * 100}% get / ${Math.round((1 - settings.getRatio) * 100)}% set, ${settings.valueSize} B values, ${settings.keys} keys (${settings.dist}), ${settings.warmupS} s warm-up + ${settings.durationS} s measured (memcaslap: ${settings.memcaslapKeys} keys of ${settings.memcaslapKeyBytes} B, ${settings.memcaslapDurationS} s, no warm-up); autocannon: GET one preloaded key.  `,
    `Method: ${method} memcaslap latencies are upper bounds of its log2 buckets (≤).`,
    '',
    renderTable(cells),
    '',
    renderGoals(goalResults),
    '',
  ].join('\n');
  publishResults('bench-node', {
    write: opts.write,
    base: resultsBase(startedAt, commit, 'node', opts.quick),
    md,
    header: { benchmark: 'bench:node', startedAt, finishedAt: new Date(), command, commit, machine, quick: opts.quick },
    body: () => ({
      settings,
      method,
      goals: goalResults,
      cells: cells.map((c) => ({
        target: c.target,
        generator: c.generator,
        skipped: c.skipped,
        best: c.best && { opsPerS: c.best.opsPerS, p50Ms: c.best.p50Ms, p99Ms: c.best.p99Ms, p999Ms: c.best.p999Ms, latencyUpperBounds: c.best.latencyUpperBounds, notes: c.best.notes },
        runs: c.runs,
      })),
    }),
  });
  if (opts.check && goalResults.some((g) => g.verdict !== 'PASS')) return 1;
  return 0;
}

async function stopAll(): Promise<void> {
  await running.stopAll(2000);
}

await runBench('bench-node', main, { stopAll, stopping: () => `${running.size} server(s)` });
