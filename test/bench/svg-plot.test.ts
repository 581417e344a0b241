// bench/lib/svg-plot: the chart is one <svg> element, one polyline per series with every
// finite point, and every event label, escaped.
import { describe, expect, it } from 'vitest';
import { linePlot, niceTicks } from '../../bench/lib/svg-plot.js';

/** Opening and closing tags balance (self-closing ones aside), in order. */
function tagsBalance(svg: string): boolean {
  const stack: string[] = [];
  let i = 0;
  for (let guard = 0; guard < 100_000; guard++) {
    const lt = svg.indexOf('<', i);
    if (lt < 0) return stack.length === 0;
    const gt = svg.indexOf('>', lt);
    if (gt < 0) return false;
    const tag = svg.slice(lt + 1, gt);
    i = gt + 1;
    if (tag.endsWith('/')) continue;
    const name = tag.split(' ')[0]!;
    if (name.startsWith('/')) {
      if (stack.pop() !== name.slice(1)) return false;
    } else {
      stack.push(name);
    }
  }
  return false;
}

function between(text: string, start: string, end: string): string[] {
  const found: string[] = [];
  for (let at = text.indexOf(start); at >= 0; at = text.indexOf(start, at + 1)) {
    const from = at + start.length;
    found.push(text.slice(from, text.indexOf(end, from)));
  }
  return found;
}

describe('linePlot', () => {
  const seconds = Array.from({ length: 20 }, (_, i) => i + 0.5);
  const svg = linePlot({
    title: 'bench:membership abc1234 2026-01-01',
    xLabel: 'time (s)',
    panels: [
      { yLabel: 'ops/s', series: [{ name: 'ops/s', points: seconds.map((x) => [x, 1000 + 10 * x] as [number, number]) }] },
      {
        yLabel: 'p99 (ms)',
        series: [
          { name: 'p99', points: seconds.map((x) => [x, x === 3.5 ? Number.NaN : 2] as [number, number]) },
          { name: 'p50 <median>', points: [[0.5, 1], [1.5, 1.2], [2.5, 1.1]] },
        ],
      },
    ],
    markers: [
      { x: 5, label: 'join started' },
      { x: 6.2, label: 'n4 up' },
      { x: 12, label: 'leave requested' },
      { x: 13, label: 'n4 left & gone' },
    ],
  });

  it('is one well-formed svg element', () => {
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg.trimEnd().endsWith('</svg>')).toBe(true);
    expect(tagsBalance(svg)).toBe(true);
  });

  it('draws one polyline per series with each finite point', () => {
    const points = between(svg, ' points="', '"');
    expect(points.map((p) => p.trim().split(' ').length)).toEqual([20, 19, 3]);
    for (const p of points.flatMap((x) => x.trim().split(' '))) {
      const xy = p.split(',').map(Number);
      expect(xy.length === 2 && xy.every((v) => Number.isFinite(v) && v >= 0)).toBe(true);
    }
  });

  it('labels the events, the axes and the title, escaping text', () => {
    for (const label of ['join started', 'n4 up', 'leave requested', 'n4 left &amp; gone', 'time (s)', 'ops/s', 'p99 (ms)', 'p50 &lt;median&gt;', 'abc1234']) {
      expect(svg).toContain(label);
    }
    expect(svg).not.toContain('n4 left & gone');
  });

  it('picks round ticks', () => {
    expect(niceTicks(0, 20, 10)).toEqual([0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20]);
    expect(niceTicks(0, 4300, 5)).toEqual([0, 1000, 2000, 3000, 4000]);
  });
});
