// bench/lib/svg-plot: the line chart is one <svg> element, one polyline per series with
// every finite point, and every event label, escaped; the bar chart one bar per finite
// value, its height proportional to the value (on a log axis: to its logarithm), inside
// its category's group, in series order; a reference line over the categories it names.
import { describe, expect, it } from 'vitest';
import { barChart, linePlot, niceTicks } from '../../bench/lib/svg-plot.js';

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

interface Bar {
  x: number;
  y: number;
  width: number;
  height: number;
  fill: string;
  title: string;
}

function bars(svg: string): Bar[] {
  const re = /<rect class="bar" x="([^"]+)" y="([^"]+)" width="([^"]+)" height="([^"]+)" fill="([^"]+)"><title>([^<]*)<\/title><\/rect>/g;
  return [...svg.matchAll(re)].map((m) => ({ x: Number(m[1]), y: Number(m[2]), width: Number(m[3]), height: Number(m[4]), fill: m[5]!, title: m[6]! }));
}

describe('barChart', () => {
  const categories = ['primary', 'depth 16', '100 KiB\nvalues', 'HTTP & GET'];
  const series = [{ name: 'memcached' }, { name: 'Node <floor>' }, { name: 'ringkv-memory', color: '#123456' }];
  const opsPerS = [
    [100_000, 300_000, 10_000, undefined],
    [90_000, 250_000, 9_000, 60_000],
    [80_000, Number.NaN, 8_000, 50_000],
  ];
  const svg = barChart({
    title: 'bench:node abc1234',
    subtitle: 'best of 2 rounds',
    categories,
    series,
    panels: [
      { yLabel: 'ops/s', values: opsPerS },
      { yLabel: 'x floor', values: [[1.1, 1.2, 1.1, undefined], [1, 1, 1, 1], [0.9, undefined, 0.85, 0.8]], label: (v) => v.toFixed(2), refLines: [{ y: 1, label: 'floor = 1' }] },
    ],
  });
  const all = bars(svg);
  const panel1 = all.filter((b) => !/: \d\.\d\d$/.test(b.title));
  const panel2 = all.filter((b) => /: \d\.\d\d$/.test(b.title));

  it('is one well-formed svg element', () => {
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg.trimEnd().endsWith('</svg>')).toBe(true);
    expect(tagsBalance(svg)).toBe(true);
  });

  it('draws one bar per finite value, none for undefined or NaN', () => {
    expect(panel1).toHaveLength(10);
    expect(panel2).toHaveLength(10);
    expect(all).toHaveLength(20);
    for (const b of all) expect([b.x, b.y, b.width, b.height].every((v) => Number.isFinite(v) && v >= 0)).toBe(true);
  });

  it('makes heights proportional to the values, on one scale per panel', () => {
    const h = (title: string) => panel1.find((b) => b.title === title)!.height;
    expect(h('memcached, depth 16: 300k') / h('memcached, primary: 100k')).toBeCloseTo(3, 2);
    expect(h('Node &lt;floor&gt;, primary: 90k') / h('ringkv-memory, 100 KiB values: 8k')).toBeCloseTo(90 / 8, 1);
    // The tallest bar leaves headroom for its value text.
    expect(Math.max(...panel1.map((b) => b.height))).toBeLessThan(200);
    const h2 = (title: string) => panel2.find((b) => b.title === title)!.height;
    expect(h2('memcached, depth 16: 1.20') / h2('ringkv-memory, HTTP &amp; GET: 0.80')).toBeCloseTo(1.5, 2);
  });

  it('puts each bar inside its category group, series left to right, in the series colour', () => {
    // The panel's frame: the plot area the groups divide equally.
    const frame = /<g class="panel">\n<rect x="([^"]+)" y="[^"]+" width="([^"]+)"/.exec(svg)!;
    const plotLeft = Number(frame[1]);
    const groupW = Number(frame[2]) / categories.length;
    expect(plotLeft).toBeGreaterThan(0);
    expect(plotLeft + Number(frame[2])).toBeLessThanOrEqual(1000);
    for (const b of panel1) {
      const ci = categories.findIndex((c) => b.title.includes(`, ${c.replace('\n', ' ').replace('&', '&amp;')}:`));
      expect(ci).toBeGreaterThanOrEqual(0);
      expect(b.x).toBeGreaterThanOrEqual(plotLeft + ci * groupW);
      expect(b.x + b.width).toBeLessThanOrEqual(plotLeft + (ci + 1) * groupW);
    }
    const primary = panel1.filter((b) => b.title.includes(', primary:'));
    expect(primary.map((b) => b.title.split(',')[0])).toEqual(['memcached', 'Node &lt;floor&gt;', 'ringkv-memory']);
    expect(primary.map((b) => b.x)).toEqual([...primary.map((b) => b.x)].sort((a, b) => a - b));
    expect(primary[2]!.fill).toBe('#123456');
    expect(primary[0]!.fill).not.toBe(primary[1]!.fill);
  });

  it('labels bars, legend, categories (multi-line), axes and reference lines, escaping text', () => {
    for (const text of ['300k', '8k', '0.85', 'Node &lt;floor&gt;', 'HTTP &amp; GET', '>100 KiB<', '>values<', 'floor = 1', 'ops/s', 'x floor', 'best of 2 rounds', 'abc1234']) {
      expect(svg).toContain(text);
    }
    expect(svg).not.toContain('Node <floor>');
    expect(svg).not.toContain('HTTP & GET');
    expect(svg.match(/<rect class="swatch"/g)).toHaveLength(3);
    expect(svg.match(/<line class="ref"/g)).toHaveLength(1);
  });
});

describe('barChart on a log axis', () => {
  const p99 = [
    [0.5, 5, 50],
    [1, 10, 400],
    [0, Number.NaN, 2],
  ];
  const svg = barChart({ title: 'p99', categories: ['a', 'b', 'c'], series: [{ name: 's0' }, { name: 's1' }, { name: 's2' }], panels: [{ yLabel: 'p99 ms', scale: 'log', values: p99 }] });
  const bs = bars(svg);
  const h = (title: string) => bs.find((b) => b.title === title)!.height;

  it('draws no bar for values <= 0 or NaN, one for every positive value', () => {
    expect(tagsBalance(svg)).toBe(true);
    expect(bs).toHaveLength(7);
    expect(bs.some((b) => b.title.startsWith('s2, a:'))).toBe(false);
  });

  it('gives each decade the same height, and every bar some height', () => {
    const decade = h('s0, b: 5') - h('s0, a: 0.5');
    expect(decade).toBeGreaterThan(10);
    expect(h('s0, c: 50') - h('s0, b: 5')).toBeCloseTo(decade, 0);
    expect(h('s1, b: 10') - h('s1, a: 1')).toBeCloseTo(decade, 0);
    expect(h('s1, c: 400') - h('s2, c: 2')).toBeCloseTo(decade * Math.log10(200), 0);
    expect(Math.min(...bs.map((b) => b.height))).toBeGreaterThan(0);
    expect(Math.max(...bs.map((b) => b.height))).toBeLessThan(200);
  });

  it('ticks whole decades with 1-2-5 steps', () => {
    const ticks = [...svg.matchAll(/dominant-baseline="middle">([^<]+)<\/text>/g)].map((m) => m[1]);
    expect(ticks).toEqual(expect.arrayContaining(['0.1', '0.2', '0.5', '1', '2', '5', '10', '100', '1k']));
  });
});

describe('barChart reference lines over some categories', () => {
  const categories = ['a', 'b', 'c', 'd'];
  const series = [{ name: 's0' }, { name: 's1' }];
  const values = [
    [1, 2, 0.5, 0.3],
    [1, 1.5, 0.6, 0.2],
  ];
  const chart = (refLines: Array<{ y: number; label: string; categories?: [number, number] }>) =>
    barChart({ title: 'ratios', categories, series, panels: [{ yLabel: 'x single', values, refLines }] });
  const frameOf = (svg: string) => {
    const m = /<g class="panel">\n<rect x="([^"]+)" y="([^"]+)" width="([^"]+)" height="([^"]+)"/.exec(svg)!;
    return { left: Number(m[1]), top: Number(m[2]), width: Number(m[3]), height: Number(m[4]) };
  };
  const refs = (svg: string) =>
    [...svg.matchAll(/<line class="ref" x1="([^"]+)" y1="([^"]+)" x2="([^"]+)" y2="([^"]+)"/g)].map((m) => ({ x1: Number(m[1]), y1: Number(m[2]), x2: Number(m[3]), y2: Number(m[4]) }));

  it('spans only the groups named, at the same height as a whole-panel line', () => {
    const svg = chart([{ y: 0.4, label: 'goal >= 0.4x', categories: [1, 2] }]);
    expect(tagsBalance(svg)).toBe(true);
    const f = frameOf(svg);
    const groupW = f.width / categories.length;
    const [line] = refs(svg);
    expect(line!.x1).toBeCloseTo(f.left + groupW, 0);
    expect(line!.x2).toBeCloseTo(f.left + 3 * groupW, 0);
    expect(line!.y1).toBe(line!.y2);
    // Same scale as a line over the whole panel: the span changes where, not how high.
    const whole = chart([{ y: 0.4, label: 'goal >= 0.4x' }]);
    expect(refs(whole)[0]!.y1).toBeCloseTo(line!.y1, 1);
    expect(refs(whole)[0]!.x1).toBe(frameOf(whole).left);
    // Its label sits inside the plot, just above the line's left end, with a halo; the right margin is not widened for it.
    const text = /<text x="([^"]+)" y="([^"]+)"[^>]*paint-order="stroke">goal &gt;= 0\.4x<\/text>/.exec(svg);
    expect(text).not.toBeNull();
    expect(Number(text![1])).toBeGreaterThan(line!.x1);
    expect(Number(text![1])).toBeLessThan(line!.x1 + groupW / 4);
    expect(Number(text![2])).toBeLessThan(line!.y1);
    expect(f.left + f.width).toBe(1000 - 20);
  });

  it('labels a line reaching the last group right of the panel, as a whole-panel one', () => {
    const svg = chart([{ y: 5, label: 'goal <= 5 ms', categories: [3, 3] }]);
    const f = frameOf(svg);
    const [line] = refs(svg);
    expect(line!.x1).toBeCloseTo(f.left + (3 * f.width) / 4, 0);
    expect(line!.x2).toBe(f.left + f.width);
    expect(svg).toContain(`<text x="${f.left + f.width + 4}" y="${line!.y1.toFixed(1)}" dominant-baseline="middle" font-size="10" fill="#555">goal &lt;= 5 ms</text>`);
    expect(f.left + f.width).toBeLessThan(1000 - 20);
  });

  it('clamps a span outside the categories to them', () => {
    const svg = chart([{ y: 1, label: 'r', categories: [-3, 9] }]);
    const f = frameOf(svg);
    const [line] = refs(svg);
    expect(line!.x1).toBe(f.left);
    expect(line!.x2).toBe(f.left + f.width);
  });
});
