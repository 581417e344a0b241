// bench:cluster's goals (issue 6), as pure functions of its measurements so that
// test/bench/cluster-goals.test.ts can drive them:
//
//   cluster-n3 TS client write >= 0.4x single          ops/s through RingClient, 3 nodes N=3 R=2 W=2
//   cluster-n3 TS client read >= 0.4x single           over a master + 1 node (N=R=W=1), same run
//   cluster-n3 TS client p99 at half peak <= 5 ms      open loop at half the measured write peak
//
// and the INFO rows of the memcached path ("<target> <workload> ops/s x single"), made here
// exactly as bench/lib/suite.ts's clusterGoals makes them from `cells`: once the results JSON
// has a `goals` array the suite reads only that, so the INFO rows must be in it too, under the
// same names (bench/baseline.json keys them).
//
// Records have bench-node's shape ({ goal, ratio | value, limit, verdict, why }): the suite
// takes the limit and the direction from the goal's text (">= 0.4x", "<= 5 ms").

export type Workload = 'write' | 'read';

export interface GoalRecord {
  goal: string;
  /** A ratio to a peer (x single). */
  ratio?: number;
  /** A figure in the unit the goal's text names (ms). */
  value?: number;
  limit?: number;
  verdict: 'PASS' | 'MISS' | 'INFO' | 'ERROR' | 'SKIP';
  why?: string;
}

export const clusterGoalLimits = {
  /** cluster-n3 ops/s through the TS client, x the single node's, per workload. */
  ratioMin: 0.4,
  /** p99 of the open-loop run at half the measured peak, ms. */
  p99MsMax: 5,
  /** Share of the measured peak the open-loop run offers. */
  peakShare: 0.5,
} as const;

/** A closed-loop cell's best round, as far as the goals care. */
export interface ThroughputFigure {
  opsPerS: number;
  /** Failed requests in the window, and requests left unanswered after the bounded drain. */
  errors: number;
  unfinished: number;
}

/** The open-loop run at half the peak. */
export interface HalfPeakFigure {
  /** p99 over every generator's requests (merged histogram), ms. */
  p99Ms: number;
  offered: number;
  ok: number;
  errors: number;
  droppedByGenerator: number;
  unfinished: number;
}

/** A figure, or why there is none. */
export type Measured<T> = { figure: T } | { why: string };

/** The requests that did not succeed, as a reason a goal misses; '' when none. */
function failures(what: string, f: { errors: number; unfinished: number; droppedByGenerator?: number }): string {
  const parts = [
    ...(f.errors > 0 ? [`${f.errors} errors`] : []),
    ...(f.unfinished > 0 ? [`${f.unfinished} unanswered`] : []),
    ...((f.droppedByGenerator ?? 0) > 0 ? [`${f.droppedByGenerator} not sent (generator's in-flight bound)`] : []),
  ];
  return parts.length ? `${what}: ${parts.join(', ')} in the window` : '';
}

export function throughputGoal(workload: Workload, single: Measured<ThroughputFigure>, n3: Measured<ThroughputFigure>, ratioMin: number = clusterGoalLimits.ratioMin): GoalRecord {
  const goal = `cluster-n3 TS client ${workload} >= ${ratioMin}x single`;
  if ('why' in single) return { goal, limit: ratioMin, verdict: 'ERROR', why: `single ${workload}: ${single.why}` };
  if ('why' in n3) return { goal, limit: ratioMin, verdict: 'ERROR', why: `cluster-n3 ${workload}: ${n3.why}` };
  const a = n3.figure;
  const b = single.figure;
  if (!(b.opsPerS > 0)) return { goal, limit: ratioMin, verdict: 'ERROR', why: `single ${workload}: no successful request` };
  const ratio = a.opsPerS / b.opsPerS;
  // A request that failed is not hidden behind a ratio: the goal misses, and says why.
  const why = [failures('cluster-n3', a), failures('single', b)].filter(Boolean).join('; ');
  return { goal, ratio, limit: ratioMin, verdict: ratio >= ratioMin && !why ? 'PASS' : 'MISS', ...(why ? { why } : {}) };
}

export function halfPeakGoal(m: Measured<HalfPeakFigure>, p99MsMax: number = clusterGoalLimits.p99MsMax): GoalRecord {
  const goal = `cluster-n3 TS client p99 at half peak <= ${p99MsMax} ms`;
  if ('why' in m) return { goal, limit: p99MsMax, verdict: 'ERROR', why: m.why };
  const f = m.figure;
  if (f.ok === 0 || !Number.isFinite(f.p99Ms)) return { goal, limit: p99MsMax, verdict: 'ERROR', why: `no successful request of ${f.offered} offered` };
  const why = failures('open loop', f);
  return { goal, value: f.p99Ms, limit: p99MsMax, verdict: f.p99Ms <= p99MsMax && !why ? 'PASS' : 'MISS', ...(why ? { why } : {}) };
}

/** The three goals of issue 6's cluster case, in the order the table prints them. */
export function clientGoals(i: {
  single: Record<Workload, Measured<ThroughputFigure>>;
  n3: Record<Workload, Measured<ThroughputFigure>>;
  halfPeak: Measured<HalfPeakFigure>;
}): GoalRecord[] {
  return [throughputGoal('write', i.single.write, i.n3.write), throughputGoal('read', i.single.read, i.n3.read), halfPeakGoal(i.halfPeak)];
}

/** The memcached path's cells as bench/lib/suite.ts's clusterGoals reads them. */
export interface InfoCell {
  target: string;
  workload: string;
  best?: { opsPerS: number };
}

/**
 * The memcached path's INFO rows: each cluster target's ops/s over the single node's under
 * the same workload, no limit; ERROR when either has no result. Same names, figures and
 * reasons as suite.ts's clusterGoals.
 */
export function infoGoals(cells: readonly InfoCell[]): GoalRecord[] {
  const out: GoalRecord[] = [];
  for (const c of cells) {
    if (c.target === 'single') continue;
    const single = cells.find((x) => x.target === 'single' && x.workload === c.workload);
    const a = c.best?.opsPerS;
    const b = single?.best?.opsPerS;
    const ratio = a !== undefined && Number.isFinite(a) && b !== undefined && Number.isFinite(b) && b > 0 ? a / b : undefined;
    out.push(
      ratio !== undefined
        ? { goal: `${c.target} ${c.workload} ops/s x single`, ratio, verdict: 'INFO' }
        : { goal: `${c.target} ${c.workload} ops/s x single`, verdict: 'ERROR', why: `${a === undefined ? c.target : 'single'} ${c.workload}: no result` },
    );
  }
  return out;
}

/** The open-loop rate at `share` of the peak, in total and per generator process (at least 1/s each). */
export function halfPeakRate(peakOpsPerS: number, generators: number, share: number = clusterGoalLimits.peakShare): { total: number; perGenerator: number } {
  if (!(peakOpsPerS > 0) || !Number.isInteger(generators) || generators < 1) throw new Error(`no open-loop rate from peak ${peakOpsPerS} over ${generators} generators`);
  const perGenerator = Math.max(1, Math.round((peakOpsPerS * share) / generators));
  return { total: perGenerator * generators, perGenerator };
}
