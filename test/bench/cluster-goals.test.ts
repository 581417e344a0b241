// bench:cluster's goals (bench/lib/cluster-goals) and how the suite reads them: PASS / MISS
// from the ratio or the p99, failed requests never hidden behind a passing figure, ERROR when
// a measurement is missing; the memcached path's INFO rows identical to those the suite made
// from `cells` before bench:cluster had goals (bench/baseline.json keys them); and the CPU
// split of a window (bench/lib/proc-cpu) from synthetic /proc samples.
import { describe, expect, it } from 'vitest';
import { clientGoals, halfPeakGoal, halfPeakRate, infoGoals, throughputGoal, type HalfPeakFigure } from '../../bench/lib/cluster-goals.js';
import { cpuUseBetween, type ProcCpuSample } from '../../bench/lib/proc-cpu.js';
import { goalsOf } from '../../bench/lib/suite.js';

const ok = (opsPerS: number, errors = 0, unfinished = 0) => ({ figure: { opsPerS, errors, unfinished } });
const half = (p99Ms: number, more: Partial<HalfPeakFigure> = {}) => ({ figure: { p99Ms, offered: 1000, ok: 1000, errors: 0, droppedByGenerator: 0, unfinished: 0, ...more } });

describe('throughput goals', () => {
  it('passes at or above 0.4x single and misses below', () => {
    expect(throughputGoal('write', ok(10_000), ok(5_000))).toEqual({ goal: 'cluster-n3 TS client write >= 0.4x single', ratio: 0.5, limit: 0.4, verdict: 'PASS' });
    expect(throughputGoal('read', ok(10_000), ok(4_000)).verdict).toBe('PASS');
    const miss = throughputGoal('read', ok(10_000), ok(3_999));
    expect(miss.verdict).toBe('MISS');
    expect(miss.ratio).toBeCloseTo(0.3999, 6);
  });

  it('misses, saying why, when a window had failed or unanswered requests', () => {
    const g = throughputGoal('write', ok(10_000), ok(9_000, 3));
    expect(g.verdict).toBe('MISS');
    expect(g.ratio).toBeCloseTo(0.9, 9);
    expect(g.why).toMatch(/cluster-n3: 3 errors/);
    const s = throughputGoal('write', ok(10_000, 0, 2), ok(9_000));
    expect(s.verdict).toBe('MISS');
    expect(s.why).toMatch(/single: 2 unanswered/);
  });

  it('is an ERROR when either side has no figure', () => {
    expect(throughputGoal('write', { why: 'not run' }, ok(1))).toMatchObject({ verdict: 'ERROR', why: 'single write: not run' });
    expect(throughputGoal('read', ok(1), { why: 'no result (boom)' })).toMatchObject({ verdict: 'ERROR', why: 'cluster-n3 read: no result (boom)' });
    expect(throughputGoal('read', ok(0), ok(1)).verdict).toBe('ERROR');
  });
});

describe('the p99 at half peak goal', () => {
  it('passes at or under 5 ms and misses above', () => {
    expect(halfPeakGoal(half(5))).toEqual({ goal: 'cluster-n3 TS client p99 at half peak <= 5 ms', value: 5, limit: 5, verdict: 'PASS' });
    expect(halfPeakGoal(half(5.01)).verdict).toBe('MISS');
  });

  it('misses when requests failed, went unanswered or were never sent', () => {
    expect(halfPeakGoal(half(1, { errors: 1 })).verdict).toBe('MISS');
    expect(halfPeakGoal(half(1, { unfinished: 1 })).verdict).toBe('MISS');
    const g = halfPeakGoal(half(1, { droppedByGenerator: 7 }));
    expect(g.verdict).toBe('MISS');
    expect(g.why).toMatch(/7 not sent/);
  });

  it('is an ERROR without a successful request or a run', () => {
    expect(halfPeakGoal(half(Number.NaN, { ok: 0 })).verdict).toBe('ERROR');
    expect(halfPeakGoal({ why: 'no TS-client cluster-n3 write result' })).toMatchObject({ verdict: 'ERROR', why: 'no TS-client cluster-n3 write result' });
  });

  it('offers half the peak, split evenly over the generators', () => {
    expect(halfPeakRate(10_000, 3)).toEqual({ total: 5001, perGenerator: 1667 });
    expect(halfPeakRate(1, 3)).toEqual({ total: 3, perGenerator: 1 });
    expect(() => halfPeakRate(0, 3)).toThrow();
    expect(() => halfPeakRate(100, 0)).toThrow();
  });
});

describe('how the suite reads bench:cluster', () => {
  const cells = [
    { target: 'single', workload: 'write', best: { opsPerS: 1000 } },
    { target: 'single', workload: 'read', best: { opsPerS: 2000 } },
    { target: 'cluster-n1', workload: 'write', best: { opsPerS: 400 } },
    { target: 'cluster-n1', workload: 'read' },
    { target: 'cluster-n3', workload: 'write', best: { opsPerS: 250 } },
    { target: 'cluster-n3', workload: 'read', best: { opsPerS: 500 } },
  ];

  it('keeps the INFO rows the suite made from the cells, under the same names', () => {
    expect(goalsOf('cluster', { cells, goals: infoGoals(cells) })).toEqual(goalsOf('cluster', { cells }));
    expect(infoGoals(cells).map((g) => g.goal)).toEqual([
      'cluster-n1 write ops/s x single',
      'cluster-n1 read ops/s x single',
      'cluster-n3 write ops/s x single',
      'cluster-n3 read ops/s x single',
    ]);
  });

  it('reads the goals with their limits and directions from the text', () => {
    const goals = clientGoals({
      single: { write: ok(10_000), read: ok(20_000) },
      n3: { write: ok(3_000), read: ok(9_000) },
      halfPeak: half(3.5),
    });
    const rows = goalsOf('cluster', { cells, goals: [...goals, ...infoGoals(cells)] });
    expect(rows.slice(0, 3)).toEqual([
      { bench: 'cluster', goal: 'cluster-n3 TS client write >= 0.4x single', ratio: 0.3, limit: 0.4, direction: 'higher', verdict: 'MISS' },
      { bench: 'cluster', goal: 'cluster-n3 TS client read >= 0.4x single', ratio: 0.45, limit: 0.4, direction: 'higher', verdict: 'PASS' },
      { bench: 'cluster', goal: 'cluster-n3 TS client p99 at half peak <= 5 ms', ratio: 3.5, limit: 5, direction: 'lower', verdict: 'PASS' },
    ]);
    expect(rows).toHaveLength(3 + 4);
  });
});

describe('cpuUseBetween', () => {
  const sample = (atMs: number, total: number, busy: number, tree: number, self: number, pids: Record<number, number>): ProcCpuSample => ({ atMs, total, busy, tree, self, pids });
  // 2 CPUs; between t=1000 and t=2000, 200 ticks in all (100 per core).
  const samples = [
    sample(500, 0, 0, 0, 0, { 10: 0, 11: 0, 12: 0 }),
    sample(1000, 1000, 600, 400, 10, { 10: 100, 11: 100, 12: 10 }),
    sample(1500, 1100, 690, 480, 12, { 10: 130, 11: 120, 12: 12 }),
    sample(2000, 1200, 780, 560, 15, { 10: 160, 11: 140, 12: 15 }),
    sample(2500, 1300, 800, 570, 16, { 10: 170, 11: 145, 12: 16 }),
  ];

  it('splits the cores of the samples inside the window by group', () => {
    const u = cpuUseBetween(samples, 900, 2100, { nodes: [10, 11], master: [12] }, 2)!;
    expect(u.seconds).toBe(1);
    expect(u.servers.nodes).toBeCloseTo(1.0, 9); // (60 + 40) ticks / 100 per core
    expect(u.servers.master).toBeCloseTo(0.05, 9);
    expect(u.bench).toBeCloseTo(0.05, 9);
    expect(u.generators).toBeCloseTo((160 - 100 - 5 - 5) / 100, 9); // tree 160 - servers 105 - bench 5
    expect(u.others).toBeCloseTo((180 - 160) / 100, 9);
  });

  it('is undefined with fewer than two samples inside, or a server missing', () => {
    expect(cpuUseBetween(samples, 1100, 1900, { nodes: [10] }, 2)).toBeUndefined();
    expect(cpuUseBetween(samples, 900, 2100, { nodes: [99] }, 2)).toBeUndefined();
  });
});
