// bench/lib/suite: the README block `bench-suite --readme` rewrites. Only the text between
// the markers changes; a README without exactly one pair of markers, in order, is refused;
// the block names the command and holds one row per goal.
import { describe, expect, it } from 'vitest';
import { goalsOf, readmeBlock, readmeMarkers, replaceMarkedBlock, type SuiteGoal } from '../../bench/lib/suite.js';

const { start, end } = readmeMarkers;
const readme = ['# ringkv', '', '## Performance', '', 'Intro.', '', start, 'old table', '| a | b |', end, '', 'After the block.', ''].join('\n');

describe('replaceMarkedBlock', () => {
  it('replaces only what lies between the markers', () => {
    const out = replaceMarkedBlock(readme, 'new table\n');
    expect(out).toBe(['# ringkv', '', '## Performance', '', 'Intro.', '', start, 'new table', end, '', 'After the block.', ''].join('\n'));
    expect(out).not.toContain('old table');
  });

  it('gives the same text when applied twice with the same body', () => {
    const once = replaceMarkedBlock(readme, '| x |\n|--|\n| 1 |');
    expect(replaceMarkedBlock(once, '| x |\n|--|\n| 1 |')).toBe(once);
  });

  it('works on an empty block (markers on adjacent lines)', () => {
    const empty = `a\n${start}\n${end}\nb\n`;
    expect(replaceMarkedBlock(empty, 'T')).toBe(`a\n${start}\nT\n${end}\nb\n`);
  });

  it('refuses a text without the markers, with one missing, repeated or reversed', () => {
    expect(() => replaceMarkedBlock('# no markers\n', 'T')).toThrow(/found 0 and 0/);
    expect(() => replaceMarkedBlock(`${start}\nx\n`, 'T')).toThrow(/found 1 and 0/);
    expect(() => replaceMarkedBlock(`${start}\n${end}\n${start}\n${end}\n`, 'T')).toThrow(/found 2 and 2/);
    expect(() => replaceMarkedBlock(`${end}\nx\n${start}\n`, 'T')).toThrow(/before/);
  });
});

describe('readmeBlock', () => {
  // bench-node's goals as its JSON holds them, through goalsOf like the suite reads them.
  const node = goalsOf('node', {
    goals: [
      { goal: 'ringkv-memory >= 0.9x floor (loadgen)', limit: 0.9, ratio: 0.93, verdict: 'PASS' },
      { goal: 'ringkv-memory depth 16 >= 0.9x floor depth 16 (loadgen)', limit: 0.9, ratio: 0.7, verdict: 'FAIL' },
      { goal: 'ringkv-memory HTTP PUT x floor-http (autocannon)', ratio: 0.66, verdict: 'INFO', why: 'measured ratio, no goal' },
    ],
  });
  const memory: SuiteGoal = { bench: 'memory', goal: "bytes/item <= 2.5x memcached's", ratio: 3.7, limit: 2.5, direction: 'lower', verdict: 'MISS' };
  const block = readmeBlock({
    command: 'node dist/bench/bench-suite.js --quick --readme',
    date: '2026-11-25',
    commit: 'abc1234+dirty',
    quick: true,
    machine: '2 x AMD EPYC',
    durationS: 123.4,
    resultsLink: 'bench/results/2026-11-25-abc1234-suite-quick.md',
    goals: [...node, memory],
  });
  const rows = block.split('\n').filter((l) => l.startsWith('| ') && !l.startsWith('| bench'));

  it('reads the limits and directions of the node goals, INFO without a limit', () => {
    expect(node.map((g) => [g.limit, g.direction, g.verdict])).toEqual([
      [0.9, 'higher', 'PASS'],
      [0.9, 'higher', 'FAIL'],
      [undefined, 'higher', 'INFO'],
    ]);
  });

  it('names the command, commit, run time, verdict counts and results', () => {
    const first = block.split('\n')[0]!;
    expect(first).toContain('`node dist/bench/bench-suite.js --quick --readme`');
    expect(first).toContain('abc1234+dirty');
    expect(first).toContain('123 s');
    expect(first).toContain('1 PASS, 1 FAIL, 1 INFO, 1 MISS');
    expect(first).toContain('(bench/results/2026-11-25-abc1234-suite-quick.md)');
  });

  it('has one row per goal with ratio, limit, direction and verdict', () => {
    expect(rows).toHaveLength(4);
    const cols = rows.map((r) => r.split('|').slice(1, -1).map((c) => c.trim()));
    expect(cols.map((c) => [c[0], c[2], c[3], c[4], c[5]])).toEqual([
      ['node', '0.930', '0.90', 'higher', 'PASS'],
      ['node', '0.700', '0.90', 'higher', 'FAIL'],
      ['node', '0.660', '–', 'higher', 'INFO'],
      ['memory', '3.700', '2.50', 'lower', 'MISS'],
    ]);
  });

  it('goes between the markers of a README', () => {
    const out = replaceMarkedBlock(readme, block);
    const inner = out.slice(out.indexOf(start) + start.length, out.indexOf(end));
    expect(inner.trim()).toBe(block.trim());
    expect(out.startsWith('# ringkv\n')).toBe(true);
    expect(out.endsWith(`${end}\n\nAfter the block.\n`)).toBe(true);
  });
});
