// bench:suite — runs bench-node, bench-cluster, bench-memory and bench-overload one after
// another, each as a child process with a timeout, then gathers every goal of the results
// each wrote into one table: bench/results/<date>-<commit>-suite[-quick].{json,md}. With
// --readme it also puts that table (and the command that made it) between README.md's
// `<!-- bench:table -->` and `<!-- /bench:table -->` lines.
//
//   node dist/bench/bench-suite.js [--quick] [--only node,memory] [--check] [--no-write] [--readme]
//
// Exits 0 whatever the verdicts (they are printed) unless --check; exits 1 when a bench
// failed, timed out or wrote no results. bench:check compares the quick suite with
// bench/baseline.json.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Command } from 'commander';
import { cellText, commandLine, commitInfo, fixed, machineInfo, machineText, markdownTable, publishResults, resultsBase, resultsTitle } from './lib/report.js';
import { repoRoot } from './lib/servers.js';
import { goalsOf, goalsTable, readmeBlock, readmeMarkers, replaceMarkedBlock, type SuiteGoal } from './lib/suite.js';

const prog = 'bench-suite';

interface BenchSpec {
  bench: string;
  script: string;
  /** The results file's name part: `<date>-<commit>-<prefix>...[-quick].json` (overload adds its variant). */
  prefix: string;
  timeoutS: { quick: number; full: number };
}

const benches: BenchSpec[] = [
  { bench: 'node', script: 'bench-node.js', prefix: 'node', timeoutS: { quick: 240, full: 900 } },
  { bench: 'cluster', script: 'bench-cluster.js', prefix: 'cluster', timeoutS: { quick: 240, full: 900 } },
  { bench: 'memory', script: 'bench-memory.js', prefix: 'memory', timeoutS: { quick: 240, full: 600 } },
  { bench: 'overload', script: 'bench-overload.js', prefix: 'overload', timeoutS: { quick: 240, full: 600 } },
];

const opts = new Command('bench-suite')
  .description('run bench-node, bench-cluster, bench-memory and bench-overload, then one table of every goal')
  .option('--quick', 'pass --quick to every bench (about 3 minutes in all)', false)
  .option('--only <list>', `comma-separated subset of: ${benches.map((b) => b.bench).join(', ')}`)
  .option('--check', 'exit 1 unless every goal passes (INFO goals aside)', false)
  .option('--no-write', 'do not write the suite results (the benches still write theirs: the suite reads them)')
  .option('--readme', `rewrite the block between README.md's ${readmeMarkers.start} and ${readmeMarkers.end} with the goals table`, false)
  .parse()
  .opts<{ quick: boolean; only?: string; check: boolean; write: boolean; readme: boolean }>();

const selected = opts.only ? opts.only.split(',').map((s) => s.trim()) : benches.map((b) => b.bench);
for (const s of selected) {
  if (!benches.some((b) => b.bench === s)) {
    console.error(`${prog}: --only: unknown bench "${s}"`);
    process.exit(2);
  }
}

interface BenchRun {
  bench: string;
  command: string;
  exitCode: number | null;
  signal: string | null;
  timedOut: boolean;
  durationS: number;
  /** Path of its results JSON, relative to the repo root. */
  results?: string;
  /** The commit its results JSON records (HEAD can move during a suite). */
  commit?: string;
  /** How `results` was found: from the path the bench printed, or the newest matching file. */
  found?: 'printed' | 'newest';
  error?: string;
}

let current: ChildProcess | undefined;
let stopping = false;

/** SIGTERM the child (its runBench stops its servers), SIGKILL its process group after a grace period. */
function stopChild(child: ChildProcess, graceMs: number): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return resolve();
    const pid = child.pid;
    const timer = setTimeout(() => {
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }, graceMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      clearTimeout(timer);
      resolve();
    }
  });
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    stopping = true;
    console.error(`${prog}: ${signal}: stopping ${current?.pid !== undefined ? `bench pid ${current.pid}` : 'nothing running'}`);
    void (current ? stopChild(current, 15_000) : Promise.resolve()).finally(() => process.exit(130));
  });
}
process.on('exit', () => {
  const pid = current?.pid;
  if (pid !== undefined && current?.exitCode === null && current.signalCode === null) {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
});

const resultsDir = path.join(repoRoot, 'bench', 'results');

/**
 * The newest results JSON named like this bench's, written after `since`. Any commit: HEAD
 * can move while the suite runs (the bench names its file by the commit it sees at its end).
 */
function newestResults(spec: BenchSpec, quick: boolean, since: number): string | undefined {
  if (!existsSync(resultsDir)) return undefined;
  const tail = quick ? '-quick.json' : '.json';
  const files = readdirSync(resultsDir)
    .filter((f) => /^\d{4}-\d{2}-\d{2}-[^-]+-/.test(f) && f.slice(11).replace(/^[^-]+-/, '').startsWith(spec.prefix) && f.endsWith(tail) && (quick || !f.endsWith('-quick.json')))
    .map((f) => ({ f, mtime: statSync(path.join(resultsDir, f)).mtimeMs }))
    .filter((x) => x.mtime >= since - 1000)
    .sort((a, b) => b.mtime - a.mtime);
  return files[0] ? path.join('bench', 'results', files[0].f) : undefined;
}

async function runOne(spec: BenchSpec): Promise<BenchRun> {
  const script = path.join(repoRoot, 'dist', 'bench', spec.script);
  const args = [script, ...(opts.quick ? ['--quick'] : [])];
  const command = ['node', path.relative(repoRoot, script), ...args.slice(1)].join(' ');
  const timeoutS = opts.quick ? spec.timeoutS.quick : spec.timeoutS.full;
  const t0 = Date.now();
  const run: BenchRun = { bench: spec.bench, command, exitCode: null, signal: null, timedOut: false, durationS: 0 };
  if (!existsSync(script)) {
    run.error = `${path.relative(repoRoot, script)} is missing: build first (npx tsc -p tsconfig.json)`;
    return run;
  }
  console.error(`${prog}: [${spec.bench}] ${command} (timeout ${timeoutS} s)`);
  // detached: its own process group, so a last-resort SIGKILL reaches the servers it started too.
  const child = spawn(process.execPath, args, { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  current = child;
  let printed: string | undefined;
  let stderrTail = '';
  // Both streams go to our stderr, so the suite's own stdout is its table only.
  child.stdout!.on('data', (d: Buffer) => process.stderr.write(d));
  child.stderr!.on('data', (d: Buffer) => {
    process.stderr.write(d);
    stderrTail = (stderrTail + d.toString('utf8')).slice(-20_000);
    for (const m of stderrTail.matchAll(/wrote (bench\/results\/\S+?\.json)/g)) printed = m[1];
  });
  const timer = setTimeout(() => {
    run.timedOut = true;
    console.error(`${prog}: [${spec.bench}] timed out after ${timeoutS} s: stopping pid ${child.pid}`);
    void stopChild(child, 15_000);
  }, timeoutS * 1000);
  await new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      run.exitCode = code;
      run.signal = signal;
      resolve();
    });
    child.once('error', (e) => {
      run.error = e.message;
      resolve();
    });
  });
  clearTimeout(timer);
  current = undefined;
  run.durationS = (Date.now() - t0) / 1000;
  if (printed && existsSync(path.join(repoRoot, printed))) {
    run.results = printed;
    run.found = 'printed';
  } else if (!run.timedOut && run.exitCode === 0) {
    const newest = newestResults(spec, opts.quick, t0);
    if (newest) {
      run.results = newest;
      run.found = 'newest';
    }
  }
  if (!run.error) {
    if (run.timedOut) run.error = `timed out after ${timeoutS} s`;
    else if (run.exitCode !== 0) run.error = `exit ${run.exitCode ?? run.signal}`;
    else if (!run.results) run.error = 'wrote no results file';
  }
  console.error(`${prog}: [${spec.bench}] ${run.error ?? 'done'} in ${fixed(run.durationS, 0)} s${run.results ? `: ${run.results}` : ''}`);
  return run;
}

function goalsFromRun(run: BenchRun): SuiteGoal[] {
  if (!run.results) return [{ bench: run.bench, goal: '(bench)', direction: 'higher', verdict: 'ERROR', why: run.error ?? 'no results' }];
  try {
    const json: unknown = JSON.parse(readFileSync(path.join(repoRoot, run.results), 'utf8'));
    const c = (json as { commit?: { short?: string; dirty?: boolean } }).commit;
    if (c?.short) run.commit = `${c.short}${c.dirty ? '+dirty' : ''}`;
    const goals = goalsOf(run.bench, json);
    if (goals.length === 0) return [{ bench: run.bench, goal: '(bench)', direction: 'higher', verdict: 'ERROR', why: `no goals in ${run.results}` }];
    return goals;
  } catch (e) {
    return [{ bench: run.bench, goal: '(bench)', direction: 'higher', verdict: 'ERROR', why: `${run.results}: ${(e as Error).message}` }];
  }
}

async function main(): Promise<number> {
  const command = commandLine();
  const startedAt = new Date();
  const runs: BenchRun[] = [];
  for (const spec of benches) {
    if (!selected.includes(spec.bench)) continue;
    if (stopping) break;
    runs.push(await runOne(spec));
  }
  const finishedAt = new Date();
  // Read at the end, as the benches do: the suite's file is named by the commit they saw.
  const commit = commitInfo();
  const goals = runs.flatMap(goalsFromRun);
  const commits = [...new Set(runs.flatMap((r) => (r.commit ? [r.commit.replace(/\+dirty$/, '')] : [])))];
  const machine = machineInfo();
  const totalS = (finishedAt.getTime() - startedAt.getTime()) / 1000;

  const link = (p: string | undefined) => (p ? `[${path.basename(p)}](${path.basename(p)}) ([md](${path.basename(p).replace(/\.json$/, '.md')}))` : '–');
  const benchTable = markdownTable(
    ['bench', 'command', 'duration s', 'status', 'commit', 'results'],
    runs.map((r) => [r.bench, `\`${r.command}\``, fixed(r.durationS, 0), r.error ? cellText(r.error, 80) : 'ok', r.commit ?? '–', link(r.results)]),
    [0, 1, 3, 4, 5],
  );
  const goalTable = goalsTable(goals);
  const counts = new Map<string, number>();
  for (const g of goals) counts.set(g.verdict, (counts.get(g.verdict) ?? 0) + 1);
  const md = [
    resultsTitle('bench:suite', startedAt, commit, opts.quick),
    '',
    `Command: \`${command}\`  `,
    `Machine: ${machineText(machine)}  `,
    ...(commits.length > 1 ? [`**HEAD moved during the run**: the benches measured ${commits.join(', ')}.  `] : []),
    `Run time: ${fixed(totalS, 0)} s. Verdicts: ${[...counts].map(([v, n]) => `${n} ${v}`).join(', ')}.  `,
    `"ratio" is the figure the bench measured (memory's RSS bound is in MB, not a ratio); "limit" the goal's; ` +
      `"better" which way is good; INFO rows (bench:cluster's x single ratios, bench:node's HTTP PUT x floor-http) have no goal but bench:check still watches them.`,
    '',
    benchTable,
    '',
    goalTable,
    '',
  ].join('\n');
  const base = resultsBase(startedAt, commit, 'suite', opts.quick);
  publishResults(prog, {
    write: opts.write,
    base,
    md,
    header: { benchmark: 'bench:suite', startedAt, finishedAt, command, commit, machine, quick: opts.quick },
    body: () => ({ durationS: totalS, benches: runs, goals }),
  });
  console.error(`${prog}: durations: ${runs.map((r) => `${r.bench} ${fixed(r.durationS, 0)} s`).join(', ')}; total ${fixed(totalS, 0)} s`);
  for (const g of goals) console.error(`${prog}: ${g.verdict} ${g.bench}/${g.goal}: ${fixed(g.ratio, 3)}${g.limit !== undefined ? ` (limit ${fixed(g.limit, 2)})` : ''}`);
  if (stopping) return 130;
  if (opts.readme) {
    const readmePath = path.join(repoRoot, 'README.md');
    const block = readmeBlock({
      command,
      date: startedAt.toISOString().slice(0, 10),
      commit: `${commit.short}${commit.dirty ? '+dirty' : ''}`,
      quick: opts.quick,
      machine: `${machine.cpus} x ${machine.cpuModel}`,
      durationS: totalS,
      ...(opts.write ? { resultsLink: `bench/results/${base}.md` } : {}),
      goals,
    });
    try {
      writeFileSync(readmePath, replaceMarkedBlock(readFileSync(readmePath, 'utf8'), block));
      console.error(`${prog}: rewrote the ${readmeMarkers.start} block of README.md`);
    } catch (e) {
      console.error(`${prog}: --readme: README.md not changed: ${(e as Error).message}`);
      return 1;
    }
  }
  if (runs.some((r) => r.error)) return 1;
  if (opts.check && goals.some((g) => g.verdict !== 'PASS' && g.verdict !== 'INFO')) return 1;
  return 0;
}

process.exitCode = await main();
