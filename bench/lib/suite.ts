// The suite's view of the benches' results: every bench's goals (node, memory, cluster:
// its `goals` array, INFO rows included) or verdicts (overload) as one list of SuiteGoal,
// the goals table (the suite's markdown and the README's `<!-- bench:table -->` block), and
// the comparison of a suite's ratios with a committed baseline (bench:check). Pure functions:
// no files, no processes, so test/bench/bench-check.test.ts can drive them directly.
import { cellText, fixed, markdownTable } from './report.js';

/** Which way is good: "higher" for throughput shares, "lower" for bytes/item or p99 multiples. */
export type Direction = 'higher' | 'lower';

export interface SuiteGoal {
  /** The bench's short name: node, cluster, memory, overload. */
  bench: string;
  /** The goal as the bench names it (a cluster result without `goals`: made up here, see clusterGoals). */
  goal: string;
  /** The figure the bench measured (a ratio, except memory's RSS bound, which is in MB). */
  ratio?: number;
  limit?: number;
  direction: Direction;
  /** The bench's verdict (PASS, FAIL, MISS, SKIP, ERROR) or INFO when it has no limit. */
  verdict: string;
  why?: string;
}

/** "<bench>/<goal>": the baseline's key. */
export function goalKey(g: { bench: string; goal: string }): string {
  return `${g.bench}/${g.goal}`;
}

/**
 * The direction and limit a goal's text states: ">= 0.8x" and "> ..." are higher-is-better,
 * "<= 2.5x" and "< 5x" lower-is-better. Undefined when the text has no operator.
 */
export function parseComparison(text: string): { direction: Direction; limit?: number } | undefined {
  const m = /(>=|<=|>|<)\s*([0-9]+(?:\.[0-9]+)?)?/.exec(text);
  if (!m) return undefined;
  const direction: Direction = m[1]!.startsWith('>') ? 'higher' : 'lower';
  return m[2] !== undefined ? { direction, limit: Number(m[2]) } : { direction };
}

const num = (x: unknown): number | undefined => (typeof x === 'number' && Number.isFinite(x) ? x : undefined);
const str = (x: unknown): string | undefined => (typeof x === 'string' ? x : undefined);
type Json = Record<string, unknown>;
const records = (x: unknown): Json[] => (Array.isArray(x) ? x.filter((r): r is Json => typeof r === 'object' && r !== null) : []);

/** One goal-like record: `goal` (node, memory) or `target` (overload) names it; `ratio` or `value` is the figure. */
function fromRecord(bench: string, r: Json): SuiteGoal | undefined {
  const goal = str(r.goal) ?? str(r.target);
  if (goal === undefined) return undefined;
  const cmp = parseComparison(goal);
  const limit = num(r.limit) ?? cmp?.limit;
  const ratio = num(r.ratio) ?? num(r.value);
  const why = str(r.why);
  return {
    bench,
    goal,
    ...(ratio !== undefined ? { ratio } : {}),
    ...(limit !== undefined ? { limit } : {}),
    // No operator in the text: a goal is a share to reach, so higher is better.
    direction: cmp?.direction ?? 'higher',
    verdict: str(r.verdict) ?? '?',
    ...(why ? { why } : {}),
  };
}

/**
 * bench:cluster results written before it had goals (no `goals` array): each cluster
 * target's ops/s over the single node's under the same workload ("x single" in its table),
 * from `cells`, as INFO goals without a limit so bench:check still watches them. bench:cluster
 * now writes `goals` (its three goals, then these INFO rows under the same names, made by
 * lib/cluster-goals.ts's infoGoals), and goalsOf reads that instead.
 */
function clusterGoals(json: Json): SuiteGoal[] {
  const cells = records(json.cells);
  const ops = (c: Json) => num((c.best as Json | undefined)?.opsPerS);
  const out: SuiteGoal[] = [];
  for (const c of cells) {
    const target = str(c.target);
    const workload = str(c.workload);
    if (!target || !workload || target === 'single') continue;
    const single = cells.find((x) => x.target === 'single' && x.workload === workload);
    const a = ops(c);
    const b = single ? ops(single) : undefined;
    const ratio = a !== undefined && b !== undefined && b > 0 ? a / b : undefined;
    out.push({
      bench: 'cluster',
      goal: `${target} ${workload} ops/s x single`,
      ...(ratio !== undefined ? { ratio } : {}),
      direction: 'higher',
      verdict: ratio === undefined ? 'ERROR' : 'INFO',
      ...(ratio === undefined ? { why: `${a === undefined ? target : 'single'} ${workload}: no result` } : {}),
    });
  }
  return out;
}

/** Every goal of one bench's results JSON, whatever the bench calls them (goals, verdicts, cells). */
export function goalsOf(bench: string, json: unknown): SuiteGoal[] {
  if (typeof json !== 'object' || json === null) return [];
  const j = json as Json;
  if (Array.isArray(j.goals)) return records(j.goals).flatMap((r) => fromRecord(bench, r) ?? []);
  if (Array.isArray(j.verdicts)) return records(j.verdicts).flatMap((r) => fromRecord(bench, r) ?? []);
  if (bench === 'cluster' || Array.isArray(j.cells)) return clusterGoals(j);
  return [];
}

// ---- bench:check ---------------------------------------------------------------------------

/** { "<bench>/<goal>": ratio } */
export type Baseline = Record<string, number>;

/** A ratio may move this share the wrong way before bench:check calls it a regression. */
export const regressionShare = 0.15;

export interface CheckProblem {
  key: string;
  kind: 'regression' | 'missing' | 'no-ratio';
  line: string;
}

/**
 * Compares a suite's goals with the baseline: a higher-is-better ratio that fell more than
 * 15 % below its baseline, or a lower-is-better one that rose more than 15 % above it, is a
 * regression; a baseline key the suite lacks is "missing", one whose ratio is absent
 * (skipped, errored) is "no-ratio". Goals not in the baseline are ignored (new goals).
 */
export function compareWithBaseline(goals: SuiteGoal[], baseline: Baseline, share = regressionShare): CheckProblem[] {
  const problems: CheckProblem[] = [];
  const byKey = new Map(goals.map((g) => [goalKey(g), g]));
  for (const [key, base] of Object.entries(baseline)) {
    const g = byKey.get(key);
    if (!g) {
      problems.push({ key, kind: 'missing', line: `MISSING ${key}: not in the suite's results (baseline ${base.toFixed(3)})` });
      continue;
    }
    if (g.ratio === undefined) {
      problems.push({ key, kind: 'no-ratio', line: `NO RATIO ${key}: ${g.verdict}${g.why ? ` (${g.why})` : ''} (baseline ${base.toFixed(3)})` });
      continue;
    }
    const worse = g.direction === 'higher' ? g.ratio < base * (1 - share) : g.ratio > base * (1 + share);
    if (worse) {
      const change = base !== 0 ? ((g.ratio - base) / Math.abs(base)) * 100 : Infinity;
      problems.push({
        key,
        kind: 'regression',
        line: `REGRESSION ${key}: ${g.ratio.toFixed(3)} vs baseline ${base.toFixed(3)} (${change >= 0 ? '+' : ''}${change.toFixed(1)} %, ${g.direction} is better, allowed ${(share * 100).toFixed(0)} %)`,
      });
    }
  }
  return problems;
}

/** The baseline a suite's goals make: every goal with a ratio, keys sorted. */
export function baselineFrom(goals: SuiteGoal[]): Baseline {
  const out: Baseline = {};
  for (const g of [...goals].sort((a, b) => goalKey(a).localeCompare(goalKey(b)))) if (g.ratio !== undefined) out[goalKey(g)] = g.ratio;
  return out;
}

// ---- the goals table and the README block ----------------------------------------------------

/** One row per goal: bench, goal, ratio, limit, which way is better, verdict, why. */
export function goalsTable(goals: SuiteGoal[], whyCharsMax = 120): string {
  return markdownTable(
    ['bench', 'goal', 'ratio', 'limit', 'better', 'verdict', 'why'],
    goals.map((g) => [g.bench, cellText(g.goal, 80), fixed(g.ratio, 3), fixed(g.limit, 2), g.direction, g.verdict, cellText(g.why ?? '', whyCharsMax)]),
    [0, 1, 4, 5, 6],
  );
}

/** The README's block that `bench-suite --readme` rewrites lies between these two lines. */
export const readmeMarkers = { start: '<!-- bench:table -->', end: '<!-- /bench:table -->' } as const;

function occurrences(text: string, needle: string): number {
  let n = 0;
  for (let at = text.indexOf(needle); at >= 0; at = text.indexOf(needle, at + needle.length)) n++;
  return n;
}

/**
 * `text` with what lies between the start and end markers replaced by `body` (the markers
 * stay, each on its own line; everything outside them is kept byte for byte). Throws unless
 * each marker occurs exactly once, the start before the end.
 */
export function replaceMarkedBlock(text: string, body: string, markers: { start: string; end: string } = readmeMarkers): string {
  const starts = occurrences(text, markers.start);
  const ends = occurrences(text, markers.end);
  if (starts !== 1 || ends !== 1) {
    throw new Error(`expected one "${markers.start}" and one "${markers.end}", found ${starts} and ${ends}`);
  }
  const s = text.indexOf(markers.start);
  const e = text.indexOf(markers.end);
  if (e < s) throw new Error(`"${markers.end}" comes before "${markers.start}"`);
  return `${text.slice(0, s + markers.start.length)}\n${body.trim()}\n${text.slice(e)}`;
}

export interface ReadmeBlockInput {
  /** The suite's command line, as run. */
  command: string;
  /** YYYY-MM-DD */
  date: string;
  /** Short commit, "+dirty" when the tree had uncommitted changes. */
  commit: string;
  quick: boolean;
  machine: string;
  durationS: number;
  /** The suite's markdown, relative to the README (absent when the suite wrote no files). */
  resultsLink?: string;
  goals: SuiteGoal[];
}

/** What `bench-suite --readme` puts between the README's markers: how it was made, then the goals table. */
export function readmeBlock(o: ReadmeBlockInput): string {
  const counts = new Map<string, number>();
  for (const g of o.goals) counts.set(g.verdict, (counts.get(g.verdict) ?? 0) + 1);
  return [
    `Latest ${o.quick ? 'quick ' : ''}suite: \`${o.command}\`, ${o.date}, commit ${o.commit}, ${o.machine}; ` +
      `${fixed(o.durationS, 0)} s; ${[...counts].map(([v, n]) => `${n} ${v}`).join(', ')}` +
      `${o.resultsLink ? ` ([results](${o.resultsLink}))` : ''}.`,
    '',
    goalsTable(o.goals, 80),
  ].join('\n');
}
