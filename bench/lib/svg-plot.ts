// A line chart as a standalone SVG string, by hand (no dependency): one or more panels
// stacked vertically that share the x axis, each with its own y axis, one polyline per
// series, and vertical event markers drawn across every panel and labelled above the top
// one (one label row per marker, so close events never overlap).
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
