// bench/lib/suite: goals from each bench's JSON shape (node's goals, memory's value/limit,
// overload's verdicts, cluster's cells), their direction from the operator, and bench:check's
// comparison: 15 % the wrong way is a regression, the right way never is, missing goals and
// goals without a ratio are reported.
import { describe, expect, it } from 'vitest';
import { baselineFrom, compareWithBaseline, goalsOf, parseComparison, type SuiteGoal } from '../../bench/lib/suite.js';

const g = (goal: string, ratio: number | undefined, direction: 'higher' | 'lower', bench = 'b'): SuiteGoal => ({
  bench,
  goal,
  ...(ratio !== undefined ? { ratio } : {}),
  direction,
  verdict: 'PASS',
});

describe('parseComparison', () => {
  it('reads the direction and limit from the operator', () => {
    expect(parseComparison('ringkv-memory >= 0.8x floor (loadgen)')).toEqual({ direction: 'higher', limit: 0.8 });
    expect(parseComparison("ringkv-memory bytes/item <= 2.5x memcached's")).toEqual({ direction: 'lower', limit: 2.5 });
    expect(parseComparison('p99 admitted at 2x < 5x p99 at 0.5x')).toEqual({ direction: 'lower', limit: 5 });
    expect(parseComparison('cluster-n3 write ops/s x single')).toBeUndefined();
  });
});

describe('goalsOf', () => {
  it('takes node goals (ratio, limit from the text), memory goals (value, limit) and overload verdicts', () => {
    const node = goalsOf('node', { goals: [{ goal: 'ringkv-level >= 0.6x floor (loadgen)', ratio: 0.9, verdict: 'PASS' }] });
    expect(node).toEqual([{ bench: 'node', goal: 'ringkv-level >= 0.6x floor (loadgen)', ratio: 0.9, limit: 0.6, direction: 'higher', verdict: 'PASS' }]);
    const memory = goalsOf('memory', { goals: [{ goal: 'bytes/item <= 2.5x memcached', value: 4.1, limit: 2.5, verdict: 'MISS' }] });
    expect(memory[0]).toMatchObject({ ratio: 4.1, limit: 2.5, direction: 'lower', verdict: 'MISS' });
    const overload = goalsOf('overload', {
      verdicts: [
        { target: 'goodput at 2x >= 90 % of peak', at: 2, value: 0.88, limit: 0.9, verdict: 'MISS' },
        { target: 'p99 admitted at 2x < 5x p99 at 0.5x', at: 2, limit: 5, verdict: 'SKIP', why: 'no 2x step' },
      ],
    });
    expect(overload.map((x) => [x.direction, x.ratio, x.limit, x.verdict])).toEqual([
      ['higher', 0.88, 0.9, 'MISS'],
      ['lower', undefined, 5, 'SKIP'],
    ]);
  });

  it('makes INFO goals of the cluster cells, x single per workload', () => {
    const cells = [
      { target: 'single', workload: 'write', best: { opsPerS: 1000 } },
      { target: 'cluster-n3', workload: 'write', best: { opsPerS: 500 } },
      { target: 'cluster-n1', workload: 'write' },
    ];
    expect(goalsOf('cluster', { cells })).toEqual([
      { bench: 'cluster', goal: 'cluster-n3 write ops/s x single', ratio: 0.5, direction: 'higher', verdict: 'INFO' },
      { bench: 'cluster', goal: 'cluster-n1 write ops/s x single', direction: 'higher', verdict: 'ERROR', why: 'cluster-n1 write: no result' },
    ]);
  });
});

describe('compareWithBaseline', () => {
  it('higher is better: a fall of more than 15 % regresses, a rise never does', () => {
    const base = { 'b/up': 1.0 };
    expect(compareWithBaseline([g('up', 0.86, 'higher')], base)).toEqual([]);
    expect(compareWithBaseline([g('up', 0.85, 'higher')], base)).toEqual([]); // exactly 15 %: allowed
    const p = compareWithBaseline([g('up', 0.84, 'higher')], base);
    expect(p).toHaveLength(1);
    expect(p[0]).toMatchObject({ key: 'b/up', kind: 'regression' });
    expect(p[0]!.line).toContain('REGRESSION b/up');
    expect(compareWithBaseline([g('up', 5, 'higher')], base)).toEqual([]);
  });

  it('lower is better: a rise of more than 15 % regresses, a fall never does', () => {
    const base = { 'b/down': 2.0 };
    expect(compareWithBaseline([g('down', 2.3, 'lower')], base)).toEqual([]);
    expect(compareWithBaseline([g('down', 2.31, 'lower')], base).map((x) => x.kind)).toEqual(['regression']);
    expect(compareWithBaseline([g('down', 0.1, 'lower')], base)).toEqual([]);
    // The same drop that is fine for "lower" regresses "higher".
    expect(compareWithBaseline([g('down', 1.6, 'higher')], base).map((x) => x.kind)).toEqual(['regression']);
  });

  it('reports baseline goals the suite lacks or has no ratio for, ignores new goals', () => {
    const base = { 'b/gone': 1, 'b/skipped': 1, 'b/ok': 1 };
    const problems = compareWithBaseline([g('skipped', undefined, 'higher'), g('ok', 1, 'higher'), g('new', 0.01, 'higher')], base);
    expect(problems.map((p) => [p.key, p.kind])).toEqual([
      ['b/gone', 'missing'],
      ['b/skipped', 'no-ratio'],
    ]);
  });

  it('a custom threshold applies', () => {
    expect(compareWithBaseline([g('x', 0.94, 'higher')], { 'b/x': 1 }, 0.05).map((p) => p.kind)).toEqual(['regression']);
  });
});

describe('baselineFrom', () => {
  it('keeps every goal with a ratio, keyed bench/goal, sorted', () => {
    const goals = [g('z', 2, 'lower', 'memory'), g('a', undefined, 'higher', 'node'), g('a', 1, 'higher', 'cluster')];
    expect(baselineFrom(goals)).toEqual({ 'cluster/a': 1, 'memory/z': 2 });
    expect(Object.keys(baselineFrom(goals))).toEqual(['cluster/a', 'memory/z']);
    // A baseline made from a suite checks clean against that suite.
    expect(compareWithBaseline(goals, baselineFrom(goals))).toEqual([]);
  });
});
