// bench:check — compares the newest quick suite (bench/results/*-suite-quick.json) with the
// committed baseline bench/baseline.json ({ "<bench>/<goal>": ratio }): exit 1, one line per
// problem, when a ratio moved more than 15 % the wrong way (down for "higher is better",
// up for "lower is better", as the goal's operator says) or a baseline goal is missing.
//
//   node dist/bench/bench-check.js [--suite FILE] [--baseline FILE] [--update]
//
// --update writes the baseline from the suite instead of checking.
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Command } from 'commander';
import { isMain } from './lib/cli.js';
import { repoRoot } from './lib/servers.js';
import { baselineFrom, compareWithBaseline, goalKey, regressionShare, type Baseline, type SuiteGoal } from './lib/suite.js';

const prog = 'bench-check';

/** The newest *-suite-quick.json in `dir` (by the startedAt it records, then mtime), or undefined. */
export function newestQuickSuite(dir: string): string | undefined {
  if (!existsSync(dir)) return undefined;
  const files = readdirSync(dir)
    .filter((f) => f.endsWith('-suite-quick.json'))
    .map((f) => {
      const p = path.join(dir, f);
      let started = 0;
      try {
        started = Date.parse((JSON.parse(readFileSync(p, 'utf8')) as { startedAt?: string }).startedAt ?? '') || 0;
      } catch {
        /* unreadable: sorts last */
      }
      return { p, started, mtime: statSync(p).mtimeMs };
    })
    .sort((a, b) => b.started - a.started || b.mtime - a.mtime);
  return files[0]?.p;
}

function main(): number {
  const opts = new Command('bench-check')
    .description('compare the newest quick suite with bench/baseline.json; exit 1 on a >15 % regression')
    .option('--suite <file>', 'suite results JSON (default: newest bench/results/*-suite-quick.json)')
    .option('--baseline <file>', 'baseline JSON', path.join(repoRoot, 'bench', 'baseline.json'))
    .option('--update', 'write the baseline from the suite instead of checking', false)
    .parse()
    .opts<{ suite?: string; baseline: string; update: boolean }>();
  const suitePath = opts.suite ?? newestQuickSuite(path.join(repoRoot, 'bench', 'results'));
  if (!suitePath) {
    console.error(`${prog}: no bench/results/*-suite-quick.json: run \`npm run bench -- --quick\` first`);
    return 2;
  }
  const suite = JSON.parse(readFileSync(suitePath, 'utf8')) as { goals?: SuiteGoal[]; commit?: { short: string; dirty: boolean } };
  const goals = suite.goals ?? [];
  const rel = path.relative(repoRoot, suitePath);
  if (opts.update) {
    const baseline = baselineFrom(goals);
    writeFileSync(opts.baseline, JSON.stringify(baseline, null, 2) + '\n');
    console.log(`${prog}: wrote ${path.relative(repoRoot, opts.baseline)}: ${Object.keys(baseline).length} ratios from ${rel}`);
    return 0;
  }
  if (!existsSync(opts.baseline)) {
    console.error(`${prog}: ${opts.baseline} is missing: create it with --update`);
    return 2;
  }
  const baseline = JSON.parse(readFileSync(opts.baseline, 'utf8')) as Baseline;
  const problems = compareWithBaseline(goals, baseline);
  for (const p of problems) console.log(p.line);
  const unbased = goals.filter((g) => g.ratio !== undefined && !(goalKey(g) in baseline)).length;
  console.error(
    `${prog}: ${rel} vs ${path.relative(repoRoot, opts.baseline)}: ${Object.keys(baseline).length} baseline ratios, ` +
      `${problems.length} problem(s) (threshold ${(regressionShare * 100).toFixed(0)} %)${unbased ? `, ${unbased} goal(s) not in the baseline` : ''}`,
  );
  return problems.length > 0 ? 1 : 0;
}

if (isMain(import.meta.url)) process.exitCode = main();
