// Prometheus text exposition (format 0.0.4), parsed strictly enough to catch a malformed
// /metrics: every line is a comment (# HELP / # TYPE), blank, or `name{labels} value`;
// every sample belongs to a family declared by a # TYPE line before it.
import { request } from './http.js';

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Exposition {
  samples: Sample[];
  /** family name -> type (counter, gauge, histogram, summary, untyped) */
  types: Map<string, string>;
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;

function familyOf(name: string, types: Map<string, string>): string | undefined {
  if (types.has(name)) return name;
  for (const suffix of ['_bucket', '_sum', '_count']) {
    if (name.endsWith(suffix)) {
      const base = name.slice(0, -suffix.length);
      const t = types.get(base);
      if (t === 'histogram' || t === 'summary') return base;
    }
  }
  return undefined;
}

export function parseExposition(text: string): Exposition {
  const samples: Sample[] = [];
  const types = new Map<string, string>();
  if (!text.endsWith('\n')) throw new Error('exposition must end with a newline');
  for (const line of text.slice(0, -1).split('\n')) {
    if (line === '') continue;
    if (line.startsWith('#')) {
      const m = /^# (HELP|TYPE) (\S+)(?: (.*))?$/.exec(line);
      if (!m) throw new Error(`bad comment line ${JSON.stringify(line)}`);
      if (!NAME.test(m[2]!)) throw new Error(`bad metric name in ${JSON.stringify(line)}`);
      if (m[1] === 'TYPE') {
        if (!['counter', 'gauge', 'histogram', 'summary', 'untyped'].includes(m[3] ?? '')) throw new Error(`bad type in ${JSON.stringify(line)}`);
        if (types.has(m[2]!)) throw new Error(`family ${m[2]} declared twice`);
        types.set(m[2]!, m[3]!);
      }
      continue;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)(?: (-?\d+))?$/.exec(line);
    if (!m) throw new Error(`not a sample line: ${JSON.stringify(line)}`);
    const labels: Record<string, string> = {};
    const raw = m[2] ?? '';
    const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)/y;
    let at = 0;
    while (at < raw.length) {
      re.lastIndex = at;
      const l = re.exec(raw);
      if (!l) throw new Error(`bad labels in ${JSON.stringify(line)}`);
      labels[l[1]!] = l[2]!.replace(/\\(.)/g, (_, ch: string) => (ch === 'n' ? '\n' : ch));
      at = re.lastIndex;
    }
    const v = m[3]!;
    const value = /^[+]?inf$/i.test(v) ? Infinity : /^-inf$/i.test(v) ? -Infinity : Number(v);
    if (Number.isNaN(value) && !/^nan$/i.test(v)) throw new Error(`bad value in ${JSON.stringify(line)}`);
    if (familyOf(m[1]!, types) === undefined) throw new Error(`sample ${m[1]} has no # TYPE before it`);
    samples.push({ name: m[1]!, labels, value });
  }
  return { samples, types };
}

/** The value of the one sample with this name and (at least) these labels; 0 when there is none. */
export function valueOf(e: Exposition, name: string, labels: Record<string, string> = {}): number {
  const found = e.samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  if (found.length > 1) throw new Error(`${found.length} samples of ${name} ${JSON.stringify(labels)}`);
  return found[0]?.value ?? 0;
}

/** GET /metrics on 127.0.0.1:port: checks the content type and parses the text. */
export async function scrape(port: number): Promise<Exposition> {
  const r = await request(port, 'GET', '/metrics');
  if (r.status !== 200) throw new Error(`GET /metrics: ${r.status} ${r.body.toString()}`);
  const type = String(r.headers['content-type']);
  if (!type.startsWith('text/plain; version=0.0.4')) throw new Error(`GET /metrics content-type ${type}`);
  return parseExposition(r.body.toString('utf8'));
}
