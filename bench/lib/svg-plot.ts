// Charts as standalone SVG strings, by hand (no dependency).
//
// linePlot: one or more panels stacked vertically that share the x axis, each with its own
// y axis, one polyline per series, and vertical event markers drawn across every panel and
// labelled above the top one (one label row per marker, so close events never overlap).
//
// barChart: grouped bars, one group per category (a workload, say) and one bar per series
// (a target) in each group, in one or more panels stacked vertically that share the
// categories, each with its own y axis (linear from 0, or logarithmic from a whole decade
// for figures spanning several, like latencies); every bar carries its value as text, so
// small bars beside large ones still read.
export interface PlotSeries {
  name: string;
  /** [x, y] points, in x order; points with a non-finite coordinate are dropped. */
  points: Array<[number, number]>;
  color?: string;
}

export interface PlotPanel {
  yLabel: string;
  series: PlotSeries[];
}

export interface PlotMarker {
  x: number;
  label: string;
}

export interface PlotOptions {
  title: string;
  xLabel: string;
  panels: PlotPanel[];
  markers?: PlotMarker[];
  /** x range; from the data (and markers) when absent. */
  xMin?: number;
  xMax?: number;
  width?: number;
  panelHeight?: number;
}

const palette = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e'];
const markerColor = '#555';

export function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** A round step (1, 2 or 5 times a power of ten) cutting [lo, hi] into about `count` parts. */
function niceStep(lo: number, hi: number, count: number): number {
  const raw = (hi - lo) / count;
  const pow = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 5, 10].map((m) => m * pow).find((s) => s >= raw) ?? 10 * pow;
}

/** About `count` round tick values inside [lo, hi]. */
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  if (!(hi > lo)) return [lo];
  const step = niceStep(lo, hi, count);
  const ticks: number[] = [];
  for (let v = Math.ceil(lo / step) * step, i = 0; v <= hi + step * 1e-9 && i < 100; v += step, i++) ticks.push(Number(v.toPrecision(12)));
  return ticks;
}

function fmt(v: number): string {
  if (Math.abs(v) >= 1000) return `${Number((v / 1000).toPrecision(4))}k`;
  return String(Number(v.toPrecision(4)));
}

export function linePlot(o: PlotOptions): string {
  const width = o.width ?? 900;
  const panelH = o.panelHeight ?? 220;
  const markers = o.markers ?? [];
  const left = 70;
  const right = 20;
  const gap = 30;
  const labelRow = 14;
  const top = 40 + labelRow * markers.length;
  const bottom = 50;
  const height = top + o.panels.length * panelH + (o.panels.length - 1) * gap + bottom;
  const plotW = width - left - right;

  const finite = (p: [number, number]) => Number.isFinite(p[0]) && Number.isFinite(p[1]);
  const allX = [...o.panels.flatMap((p) => p.series.flatMap((s) => s.points.filter(finite).map((q) => q[0]))), ...markers.map((m) => m.x)];
  const xMin = o.xMin ?? (allX.length ? Math.min(...allX) : 0);
  let xMax = o.xMax ?? (allX.length ? Math.max(...allX) : 1);
  if (!(xMax > xMin)) xMax = xMin + 1;
  const sx = (x: number) => left + ((x - xMin) / (xMax - xMin)) * plotW;
  const xTicks = niceTicks(xMin, xMax, 10);

  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect x="0" y="0" width="${width}" height="${height}" fill="white"/>`);
  out.push(`<text x="${width / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${escapeXml(o.title)}</text>`);

  o.panels.forEach((panel, pi) => {
    const y0 = top + pi * (panelH + gap);
    const ys = panel.series.flatMap((s) => s.points.filter(finite).map((q) => q[1]));
    const hi = Math.max(0, ...ys) || 1;
    const step = niceStep(0, hi, 5);
    const yMax = Math.ceil(hi / step - 1e-9) * step;
    const sy = (y: number) => y0 + panelH - (y / yMax) * panelH;
    out.push(`<g class="panel">`);
    out.push(`<rect x="${left}" y="${y0}" width="${plotW}" height="${panelH}" fill="none" stroke="#999"/>`);
    for (const t of niceTicks(0, yMax, 5)) {
      const y = sy(t).toFixed(1);
      out.push(`<line x1="${left}" y1="${y}" x2="${left + plotW}" y2="${y}" stroke="#eee"/>`);
      out.push(`<text x="${left - 6}" y="${y}" text-anchor="end" dominant-baseline="middle">${fmt(t)}</text>`);
    }
    for (const t of xTicks) {
      const x = sx(t).toFixed(1);
      out.push(`<line x1="${x}" y1="${y0}" x2="${x}" y2="${y0 + panelH}" stroke="#f3f3f3"/>`);
      if (pi === o.panels.length - 1) out.push(`<text x="${x}" y="${y0 + panelH + 16}" text-anchor="middle">${fmt(t)}</text>`);
    }
    const cy = y0 + panelH / 2;
    out.push(`<text x="16" y="${cy}" text-anchor="middle" transform="rotate(-90 16 ${cy})">${escapeXml(panel.yLabel)}</text>`);
    panel.series.forEach((s, si) => {
      const color = s.color ?? palette[si % palette.length]!;
      const pts = s.points.filter(finite).map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`);
      out.push(`<polyline fill="none" stroke="${color}" stroke-width="1.5" points="${pts.join(' ')}"><title>${escapeXml(s.name)}</title></polyline>`);
      if (panel.series.length > 1) {
        out.push(`<text x="${left + plotW - 8}" y="${y0 + 16 + si * 14}" text-anchor="end" fill="${color}">${escapeXml(s.name)}</text>`);
      }
    });
    out.push(`</g>`);
  });

  const yEnd = top + o.panels.length * panelH + (o.panels.length - 1) * gap;
  markers.forEach((m, i) => {
    const x = sx(m.x).toFixed(1);
    const ly = 40 + labelRow * i;
    const anchor = sx(m.x) > left + plotW * 0.75 ? 'end' : 'start';
    const dx = anchor === 'end' ? -3 : 3;
    out.push(`<line x1="${x}" y1="${ly - 4}" x2="${x}" y2="${yEnd}" stroke="${markerColor}" stroke-dasharray="4 3"/>`);
    out.push(`<text x="${(Number(x) + dx).toFixed(1)}" y="${ly + 6}" text-anchor="${anchor}" fill="${markerColor}">${escapeXml(m.label)}</text>`);
  });
  out.push(`<text x="${left + plotW / 2}" y="${height - 14}" text-anchor="middle">${escapeXml(o.xLabel)}</text>`);
  out.push(`</svg>`);
  return out.join('\n') + '\n';
}

export interface BarSeries {
  name: string;
  color?: string;
}

export interface BarPanel {
  yLabel: string;
  /** values[s][c]: series s in category c; undefined or non-finite draws no bar (the slot stays empty). */
  values: Array<Array<number | undefined>>;
  /** The text above a bar; default: 3-4 significant digits, thousands as "k". */
  label?: (v: number) => string;
  /**
   * Horizontal reference lines across the panel (1.0 on a ratio panel, say), labelled right of it.
   * `categories` [first, last] (indices, inclusive) limits a line to those groups (a goal that
   * only applies to some); labelled right of the panel when it reaches the last group, else
   * just above its left end.
   */
  refLines?: Array<{ y: number; label: string; categories?: [number, number] }>;
  /** 'log': the axis starts at a whole decade below the positive values; values <= 0 draw no bar. Default 'linear' from 0. */
  scale?: 'linear' | 'log';
}

export interface BarChartOptions {
  title: string;
  /** A line of smaller text under the title. */
  subtitle?: string;
  /** Group names along the x axis; "\n" breaks a name into lines. */
  categories: string[];
  series: BarSeries[];
  panels: BarPanel[];
  width?: number;
  panelHeight?: number;
}

/** Bars in a group take this share of the group's width; the rest separates groups. */
const groupFill = 0.8;

interface BarAxis {
  /** Where y sits on the axis: 0 at the bottom, 1 at the top (clamped). */
  frac: (y: number) => number;
  ticks: number[];
}

/** Value text above a bar needs this share of the panel's height. */
const labelHeadroom = 0.2;

/** From 0 to a round value with headroom above the highest. */
function linearAxis(values: number[]): BarAxis {
  const hi = (Math.max(0, ...values) || 1) / (1 - labelHeadroom);
  const step = niceStep(0, hi, 5);
  const yMax = Math.ceil(hi / step - 1e-9) * step;
  return { frac: (y) => Math.min(1, Math.max(0, y / yMax)), ticks: niceTicks(0, yMax, 5) };
}

/** From a whole decade below the lowest value to above the highest (with headroom); ticks at 1, 2 and 5 of each decade. */
function logAxis(values: number[]): BarAxis {
  const positive = values.filter((v) => v > 0);
  // A tenth of a decade below the lowest, so its bar never has zero height.
  const lo = positive.length ? Math.floor(Math.log10(Math.min(...positive)) - 0.1) : 0;
  let hi = positive.length ? Math.log10(Math.max(...positive)) : 1;
  hi = Math.max(hi, lo + 1);
  hi += ((hi - lo) * labelHeadroom) / (1 - labelHeadroom);
  const ticks: number[] = [];
  for (let d = lo; d <= hi; d++) for (const m of [1, 2, 5]) if (d + Math.log10(m) <= hi + 1e-9) ticks.push(Number((m * 10 ** d).toPrecision(12)));
  return { frac: (y) => Math.min(1, Math.max(0, (Math.log10(y) - lo) / (hi - lo))), ticks };
}

/** A grouped bar chart: see the file comment. */
export function barChart(o: BarChartOptions): string {
  const width = o.width ?? 1000;
  const panelH = o.panelHeight ?? 200;
  const left = 70;
  const nCat = Math.max(1, o.categories.length);
  /** The groups a reference line spans, clamped to the categories. */
  const spanOf = (r: { categories?: [number, number] }): [number, number] => {
    if (!r.categories) return [0, nCat - 1];
    const first = Math.min(nCat - 1, Math.max(0, Math.floor(r.categories[0])));
    return [first, Math.min(nCat - 1, Math.max(first, Math.floor(r.categories[1])))];
  };
  const refLabelChars = Math.max(0, ...o.panels.flatMap((p) => (p.refLines ?? []).filter((r) => spanOf(r)[1] === nCat - 1).map((r) => r.label.length)));
  const right = 20 + (refLabelChars > 0 ? 6 + 6 * refLabelChars : 0);
  const titleH = 28 + (o.subtitle ? 16 : 0);
  const legendY = titleH + 12;
  const top = legendY + 22;
  const catLines = Math.max(1, ...o.categories.map((c) => c.split('\n').length));
  const catH = 8 + 13 * catLines;
  const gap = catH + 18;
  const height = top + o.panels.length * panelH + (o.panels.length - 1) * gap + catH + 10;
  const plotW = width - left - right;
  const groupW = plotW / nCat;
  const nSer = Math.max(1, o.series.length);
  const barW = (groupW * groupFill) / nSer;
  const colorOf = (si: number) => o.series[si]?.color ?? palette[si % palette.length]!;

  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect x="0" y="0" width="${width}" height="${height}" fill="white"/>`);
  out.push(`<text x="${width / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${escapeXml(o.title)}</text>`);
  if (o.subtitle) out.push(`<text x="${width / 2}" y="40" text-anchor="middle" font-size="11" fill="#444">${escapeXml(o.subtitle)}</text>`);

  // Legend: a swatch and the name per series, in one row from the left.
  let lx = left;
  o.series.forEach((s, si) => {
    out.push(`<rect class="swatch" x="${lx}" y="${legendY}" width="12" height="12" fill="${colorOf(si)}"/>`);
    out.push(`<text x="${lx + 16}" y="${legendY + 10}">${escapeXml(s.name)}</text>`);
    lx += 16 + 7 * s.name.length + 18;
  });

  o.panels.forEach((panel, pi) => {
    const y0 = top + pi * (panelH + gap);
    const label = panel.label ?? fmt;
    const log = panel.scale === 'log';
    const drawable = (v: number | undefined): v is number => v !== undefined && Number.isFinite(v) && (!log || v > 0);
    const values = panel.values.flatMap((row) => row.filter(drawable));
    const refs = (panel.refLines ?? []).filter((r) => drawable(r.y));
    const axis = log ? logAxis([...values, ...refs.map((r) => r.y)]) : linearAxis([...values, ...refs.map((r) => r.y)]);
    const sy = (y: number) => y0 + panelH - axis.frac(y) * panelH;
    out.push(`<g class="panel">`);
    out.push(`<rect x="${left}" y="${y0}" width="${plotW}" height="${panelH}" fill="none" stroke="#999"/>`);
    for (const t of axis.ticks) {
      const y = sy(t).toFixed(1);
      out.push(`<line x1="${left}" y1="${y}" x2="${left + plotW}" y2="${y}" stroke="#eee"/>`);
      out.push(`<text x="${left - 6}" y="${y}" text-anchor="end" dominant-baseline="middle">${fmt(t)}</text>`);
    }
    const cy = y0 + panelH / 2;
    out.push(`<text x="16" y="${cy}" text-anchor="middle" transform="rotate(-90 16 ${cy})">${escapeXml(panel.yLabel)}</text>`);
    for (let ci = 1; ci < nCat; ci++) {
      const x = (left + ci * groupW).toFixed(1);
      out.push(`<line x1="${x}" y1="${y0}" x2="${x}" y2="${y0 + panelH}" stroke="#f3f3f3"/>`);
    }
    o.series.forEach((s, si) => {
      const row = panel.values[si] ?? [];
      o.categories.forEach((cat, ci) => {
        const v = row[ci];
        if (!drawable(v)) return;
        const x = left + ci * groupW + (groupW * (1 - groupFill)) / 2 + si * barW;
        const y = sy(v);
        const h = y0 + panelH - y;
        const tip = `${s.name}, ${cat.replace(/\n/g, ' ')}: ${label(v)}`;
        out.push(
          `<rect class="bar" x="${x.toFixed(1)}" y="${y.toFixed(1)}" width="${Math.max(1, barW - 1).toFixed(1)}" height="${h.toFixed(1)}" fill="${colorOf(si)}"><title>${escapeXml(tip)}</title></rect>`,
        );
        const tx = (x + barW / 2 + 3).toFixed(1);
        const ty = (y - 3).toFixed(1);
        out.push(`<text class="value" x="${tx}" y="${ty}" font-size="9" transform="rotate(-90 ${tx} ${ty})">${escapeXml(label(v))}</text>`);
      });
    });
    for (const r of refs) {
      const y = sy(r.y).toFixed(1);
      const [first, last] = spanOf(r);
      // Whole-panel lines keep the frame's exact ends.
      const x1 = first === 0 ? left : Number((left + first * groupW).toFixed(1));
      const x2 = last === nCat - 1 ? left + plotW : Number((left + (last + 1) * groupW).toFixed(1));
      out.push(`<line class="ref" x1="${x1}" y1="${y}" x2="${x2}" y2="${y}" stroke="${markerColor}" stroke-dasharray="4 3"/>`);
      if (last === nCat - 1) out.push(`<text x="${left + plotW + 4}" y="${y}" dominant-baseline="middle" font-size="10" fill="${markerColor}">${escapeXml(r.label)}</text>`);
      // Inside the plot, over the first group's first slot (a bar maybe: a white halo keeps it legible).
      else out.push(`<text x="${(x1 + 3).toFixed(1)}" y="${(Number(y) - 3).toFixed(1)}" font-size="10" fill="${markerColor}" stroke="white" stroke-width="3" paint-order="stroke">${escapeXml(r.label)}</text>`);
    }
    o.categories.forEach((cat, ci) => {
      const x = (left + (ci + 0.5) * groupW).toFixed(1);
      const lines = cat.split('\n');
      const spans = lines.map((line, li) => `<tspan x="${x}" dy="${li === 0 ? 0 : 13}">${escapeXml(line)}</tspan>`).join('');
      out.push(`<text class="category" x="${x}" y="${y0 + panelH + 16}" text-anchor="middle" font-size="11">${spans}</text>`);
    });
    out.push(`</g>`);
  });
  out.push(`</svg>`);
  return out.join('\n') + '\n';
}
