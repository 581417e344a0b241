// bench:memory — what one ringkv node's items cost in RSS, beside memcached, in one run:
//
//   1. bytes per item: memcached -m 1024 -t 1 | ringkv --storage memory --memory-mb 1024 |
//      ringkv --storage level (default cache), each started fresh, its RSS read from
//      /proc/<pid>/status (VmRSS) before loading, then `--keys` sets (`key:<i>`, 100 B values,
//      the generator's preload: 50 connections x depth 32), a settle of `--settle-s` (nothing
//      forced: no GC, no flush), RSS and `stats` read again.
//      bytes/item = (RSS after - RSS before) / curr_items.
//   2. the memory-mode bound: ringkv --storage memory --memory-mb 64 given `--bound-keys` sets
//      (default 1,000,000 or --keys if more, quick runs too: 64 MB holds about 280k items of
//      100 B, so it evicts most of them): RSS after <= 64 x 1.5 + 64 MB.
//
// Targets run one after another on the same machine; the generator is a separate process
// (bench/lib/loadgen), so the RSS read is the server's alone. For ringkv the pid is the Node
// process's own (servers.ts spawns node directly); bench/lib/loop-probe is loaded into it to
// report its V8 heap beside the RSS (what is JS objects vs Buffers and the rest). The SVG
// beside the JSON plots bytes/item per target (with the 2.5x memcached limit) and every
// target's RSS before, after and at its peak (with the bound over ringkv-memory-64).
//
//   node dist/bench/bench-memory.js [--quick] [--keys N] [--bound-keys N] [--settle-s S] [--check] [--no-write]
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Command } from 'commander';
import { intArg, numberArg, parseBenchOptions, runBench, type BenchOptions } from './lib/cli.js';
import { defaultLoadSettings, runLoadInChild, type LoadReport } from './lib/loadgen.js';
import { loopProbeEnv, readLoopSamples } from './lib/loop-probe.js';
import { cellText, cliBuilt, commandLine, commitInfo, fixed, machineInfo, machineText, markdownTable, publishResults, resultsBase, resultsTitle } from './lib/report.js';
import { repoRoot, ServerSet, startMemcached, startRingkv, type RunningServer } from './lib/servers.js';
import { barChart } from './lib/svg-plot.js';

const prog = 'bench-memory';

/** The issue's targets. */
const targets = {
  /** ringkv --storage memory bytes/item <= this multiple of memcached's. */
  bytesPerItemRatioMax: 2.5,
  /** In memory mode RSS <= memory-mb x this + boundSlackMb. */
  boundFactor: 1.5,
  boundSlackMb: 64,
  /** --memory-mb of the bound check. */
  boundMemoryMb: 64,
} as const;

type Target = 'memcached' | 'ringkv-memory' | 'ringkv-level' | 'ringkv-memory-64';

interface Options extends BenchOptions {
  keys?: number;
  boundKeys?: number;
  settleS: number;
  valueSize: number;
  check: boolean;
}

const opts = parseBenchOptions<Options>(
  new Command(prog)
    .description('RSS and bytes per item after N sets, ringkv beside memcached, and the memory-mode RSS bound; writes bench/results/')
    .option('--quick', 'short run: 200,000 keys instead of 1,000,000', false)
    .option('--keys <n>', 'keys set per target (default 1000000, quick 200000)', intArg(1, 5_000_000))
    .option('--bound-keys <n>', 'keys set into the --memory-mb 64 target, enough to evict (default 1000000, or --keys if more)', intArg(1, 5_000_000))
    .option('--value-size <bytes>', 'value size', intArg(1, 1024 * 1024), 100)
    .option('--settle-s <s>', 'wait after the last set before reading RSS and stats, seconds', numberArg(0, 60), 2)
    .option('--check', 'exit 1 unless every target passes', false),
);

const settings = {
  keys: opts.keys ?? (opts.quick ? 200_000 : 1_000_000),
  /** The bound is only tested when the store evicts: 64 MB holds about 280k items of 100 B. */
  boundKeys: opts.boundKeys ?? Math.max(opts.keys ?? 0, 1_000_000),
  valueSize: opts.valueSize,
  settleS: opts.settleS,
  /** Connections of the generator's preload (which keeps loadLimits.preloadDepth = 32 sets in flight on each). */
  conns: 50,
  memcachedMemoryMb: 1024,
  ringkvMemoryMb: 1024,
  boundMemoryMb: targets.boundMemoryMb,
};

interface Stats {
  [name: string]: string;
}

interface Measurement {
  target: Target;
  pid: number;
  rssBeforeKb: number;
  rssAfterKb: number;
  /** VmHWM after the settle: the highest RSS the process ever had. */
  hwmKb: number;
  items: number;
  /** The server's own `bytes` (ringkv: what its accounting charges; memcached: item bytes). */
  statBytes: number;
  evictions: number;
  limitMaxbytes: number;
  bytesPerItem: number;
  /** ringkv only: V8 heap used at the end (loop-probe), MB. */
  heapMb?: number;
  loadSeconds: number;
  loadErrors: number;
  notes: string[];
}

interface Row {
  target: Target;
  result?: Measurement;
  error?: string;
  skipped?: string;
}

// Servers started and not yet stopped: stopped by PID if the run is interrupted.
const running = new ServerSet();
const abort = new AbortController();

/** VmRSS and VmHWM of `pid` from /proc, kB. */
function procMemory(pid: number): { rssKb: number; hwmKb: number } {
  const text = readFileSync(`/proc/${pid}/status`, 'latin1');
  const field = (name: string) => {
    const m = new RegExp(`^${name}:\\s+(\\d+)\\s+kB`, 'm').exec(text);
    if (!m) throw new Error(`/proc/${pid}/status has no ${name}`);
    return Number(m[1]);
  };
  return { rssKb: field('VmRSS'), hwmKb: field('VmHWM') };
}

const statsTimeoutMs = 10_000;
const statsReplyBytesMax = 256 * 1024;

/** One `stats` round trip on a connection of its own: `STAT name value` lines until END. */
function readStats(server: RunningServer): Promise<Stats> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(server.port, server.host);
    let text = '';
    const done = (e?: Error) => {
      clearTimeout(timer);
      socket.destroy();
      if (e) {
        reject(e);
        return;
      }
      const stats: Stats = {};
      for (const line of text.split('\r\n')) {
        const m = /^STAT (\S+) (.*)$/.exec(line);
        if (m) stats[m[1]!] = m[2]!;
      }
      resolve(stats);
    };
    const timer = setTimeout(() => done(new Error(`stats: no END within ${statsTimeoutMs} ms`)), statsTimeoutMs);
    socket.once('connect', () => socket.write('stats\r\n'));
    socket.on('data', (d: Buffer) => {
      text += d.toString('latin1');
      if (text.endsWith('END\r\n')) done();
      else if (text.length > statsReplyBytesMax) done(new Error('stats: reply too large'));
    });
    socket.once('error', (e) => done(e));
    socket.once('close', () => done(new Error(`stats: connection closed (${text.length} bytes read)`)));
  });
}

const probePath = path.join(repoRoot, 'dist', 'bench', 'lib', 'loop-probe.js');

async function start(target: Target, loopFile: string): Promise<RunningServer> {
  let server: RunningServer;
  const probe = { nodeArgs: ['--import', probePath], env: { [loopProbeEnv]: loopFile } };
  switch (target) {
    case 'memcached':
      server = await startMemcached({ threads: 1, memoryMb: settings.memcachedMemoryMb });
      break;
    case 'ringkv-memory':
      server = await startRingkv({ storage: 'memory', args: ['--memory-mb', String(settings.ringkvMemoryMb)], ...probe });
      break;
    case 'ringkv-level':
      server = await startRingkv({ storage: 'level', ...probe });
      break;
    case 'ringkv-memory-64':
      server = await startRingkv({ storage: 'memory', args: ['--memory-mb', String(settings.boundMemoryMb)], ...probe });
      break;
    default: {
      const never: never = target;
      throw new Error(`unknown target ${String(never)}`);
    }
  }
  return running.add(server);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Sets every key once with the generator's preload; the measured window after it is one get. */
function load(server: RunningServer, keys: number): Promise<LoadReport> {
  return runLoadInChild(
    {
      ...defaultLoadSettings,
      host: server.host,
      port: server.port,
      conns: settings.conns,
      keys,
      valueSize: settings.valueSize,
      preload: true,
      getRatio: 1,
      warmupS: 0,
      durationS: 0.1,
      maxRequests: 1,
    },
    { signal: abort.signal },
  );
}

async function measure(target: Target): Promise<Measurement> {
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'ringkv-bench-memory-'));
  const loopFile = path.join(tmp, 'loop.jsonl');
  let server: RunningServer | undefined;
  try {
    server = await start(target, loopFile);
    await sleep(500); // let start-up allocations finish before the baseline
    const before = procMemory(server.pid);
    const r = await load(server, target === 'ringkv-memory-64' ? settings.boundKeys : settings.keys);
    await sleep(settings.settleS * 1000);
    const after = procMemory(server.pid);
    const stats = await readStats(server);
    const num = (name: string) => Number(stats[name] ?? NaN);
    const items = num('curr_items');
    const notes: string[] = [];
    if (r.preload.errors > 0) notes.push(`${r.preload.errors} preload errors`);
    if (r.errors > 0) notes.push(`${r.errors} errors (${r.errorSamples[0] ?? ''})`);
    if (target === 'ringkv-memory-64' && num('evictions') === 0) notes.push('nothing evicted: the bound was not exercised (raise --bound-keys)');
    const loop = readLoopSamples(loopFile);
    const last = loop[loop.length - 1];
    return {
      target,
      pid: server.pid,
      rssBeforeKb: before.rssKb,
      rssAfterKb: after.rssKb,
      hwmKb: after.hwmKb,
      items,
      statBytes: num('bytes'),
      evictions: num('evictions'),
      limitMaxbytes: num('limit_maxbytes'),
      bytesPerItem: items > 0 ? ((after.rssKb - before.rssKb) * 1024) / items : NaN,
      ...(last ? { heapMb: last.heapMb } : {}),
      loadSeconds: r.preload.seconds,
      loadErrors: r.preload.errors + r.errors,
      notes,
    };
  } finally {
    if (server) await running.stop(server);
    rmSync(tmp, { recursive: true, force: true });
  }
}

const mb = (kb: number) => kb / 1024;

function rowOf(rows: Row[], target: Target): Measurement | undefined {
  return rows.find((r) => r.target === target)?.result;
}

interface GoalResult {
  goal: string;
  value?: number;
  limit: number;
  verdict: 'PASS' | 'MISS' | 'SKIP' | 'ERROR';
  why?: string;
}

function boundMb(): number {
  return settings.boundMemoryMb * targets.boundFactor + targets.boundSlackMb;
}

function evaluate(rows: Row[]): GoalResult[] {
  const results: GoalResult[] = [];
  const whyNot = (t: Target) => {
    const row = rows.find((r) => r.target === t);
    return row?.skipped ? { verdict: 'SKIP' as const, why: row.skipped } : { verdict: 'ERROR' as const, why: `${t}: ${row?.error ?? 'no result'}` };
  };
  {
    const goal = `ringkv-memory bytes/item <= ${targets.bytesPerItemRatioMax}x memcached's`;
    const m = rowOf(rows, 'ringkv-memory');
    const base = rowOf(rows, 'memcached');
    const value = m && base && base.bytesPerItem > 0 ? m.bytesPerItem / base.bytesPerItem : undefined;
    if (value === undefined || !Number.isFinite(value)) results.push({ goal, limit: targets.bytesPerItemRatioMax, ...whyNot(!m ? 'ringkv-memory' : 'memcached') });
    else results.push({ goal, value, limit: targets.bytesPerItemRatioMax, verdict: value <= targets.bytesPerItemRatioMax ? 'PASS' : 'MISS' });
  }
  {
    const goal = `ringkv --memory-mb ${settings.boundMemoryMb}: RSS after <= ${settings.boundMemoryMb} x ${targets.boundFactor} + ${targets.boundSlackMb} MB`;
    const m = rowOf(rows, 'ringkv-memory-64');
    if (!m) results.push({ goal, limit: boundMb(), ...whyNot('ringkv-memory-64') });
    else {
      const value = mb(m.rssAfterKb);
      const why =
        `${settings.boundKeys} sets; peak RSS (VmHWM) ${fixed(mb(m.hwmKb), 0)} MB; ${m.items} items kept, ${m.evictions} evicted; accounted bytes ${fixed(m.statBytes / 1024 / 1024, 1)} MB` +
        (m.notes.length ? `; ${m.notes.join('; ')}` : '');
      results.push({ goal, value, limit: boundMb(), verdict: value <= boundMb() ? 'PASS' : 'MISS', why });
    }
  }
  return results;
}

function renderItemsTable(rows: Row[]): string {
  const base = rowOf(rows, 'memcached');
  const header = ['target', 'items', 'RSS before MB', 'RSS after MB', 'peak RSS MB', 'bytes/item', 'x memcached', 'stats bytes MB', 'heap MB', 'load s', 'notes'];
  const body = rows
    .filter((r) => r.target !== 'ringkv-memory-64')
    .map((r) => {
      const m = r.result;
      if (!m) return [r.target, '–', '–', '–', '–', '–', '–', '–', '–', '–', cellText(r.skipped ?? r.error ?? 'no result', 120)];
      const x = base && base.bytesPerItem > 0 ? m.bytesPerItem / base.bytesPerItem : undefined;
      return [
        r.target,
        String(m.items),
        fixed(mb(m.rssBeforeKb), 1),
        fixed(mb(m.rssAfterKb), 1),
        fixed(mb(m.hwmKb), 1),
        fixed(m.bytesPerItem, 0),
        fixed(x, 2),
        fixed(m.statBytes / 1024 / 1024, 1),
        m.heapMb === undefined ? '–' : String(m.heapMb),
        fixed(m.loadSeconds, 1),
        cellText(m.notes.join('; '), 120),
      ];
    });
  return markdownTable(header, body, [0, 10]);
}

function renderBoundTable(rows: Row[]): string {
  const r = rows.find((x) => x.target === 'ringkv-memory-64');
  const header = ['target', 'memory-mb', 'bound MB', 'RSS before MB', 'RSS after MB', 'peak RSS MB', 'curr_items', 'evictions', 'stats bytes MB', 'heap MB', 'RSS after / stats bytes', 'verdict'];
  const m = r?.result;
  if (!r || !m) return markdownTable(header, [['ringkv-memory-64', String(settings.boundMemoryMb), fixed(boundMb(), 0), '–', '–', '–', '–', '–', '–', '–', '–', cellText(r?.skipped ?? r?.error ?? 'not run', 120)]], [0, 11]);
  return markdownTable(
    header,
    [
      [
        r.target,
        String(settings.boundMemoryMb),
        fixed(boundMb(), 0),
        fixed(mb(m.rssBeforeKb), 1),
        fixed(mb(m.rssAfterKb), 1),
        fixed(mb(m.hwmKb), 1),
        String(m.items),
        String(m.evictions),
        fixed(m.statBytes / 1024 / 1024, 1),
        m.heapMb === undefined ? '–' : String(m.heapMb),
        fixed((m.rssAfterKb * 1024) / m.statBytes, 2),
        mb(m.rssAfterKb) <= boundMb() ? 'PASS' : 'MISS',
      ],
    ],
    [0, 11],
  );
}

function renderGoals(results: GoalResult[]): string {
  return markdownTable(
    ['goal', 'value', 'limit', 'verdict', 'why'],
    results.map((g) => [g.goal, fixed(g.value, 2), fixed(g.limit, 1), g.verdict, cellText(g.why ?? '', 200)]),
    [0, 3, 4],
  );
}

/** How each target was started, under its name on the plot. */
function targetFlags(target: Target): string {
  switch (target) {
    case 'memcached':
      return `-m ${settings.memcachedMemoryMb} -t 1`;
    case 'ringkv-memory':
      return `--memory-mb ${settings.ringkvMemoryMb}`;
    case 'ringkv-level':
      return 'default cache';
    case 'ringkv-memory-64':
      return `--memory-mb ${settings.boundMemoryMb}`;
  }
}

/**
 * Two panels, one group per target: bytes/item (the memory-mode bound's target evicts, so it
 * has none) with the 2.5x memcached limit over the other ringkv targets, and RSS before,
 * after and at its peak, with the bound over ringkv-memory-64.
 */
function renderPlot(rows: Row[], title: string): string {
  const order = rows.map((r) => r.target);
  const result = (t: Target) => rowOf(rows, t);
  const base = result('memcached');
  const limit = base && base.bytesPerItem > 0 ? base.bytesPerItem * targets.bytesPerItemRatioMax : undefined;
  const ringkvItems = order.flatMap((t, i) => (t === 'ringkv-memory' || t === 'ringkv-level' ? [i] : []));
  const boundAt = order.indexOf('ringkv-memory-64');
  const rss = (pick: (m: Measurement) => number) => order.map((t) => (result(t) ? mb(pick(result(t)!)) : undefined));
  const none = order.map(() => undefined);
  return barChart({
    title,
    subtitle:
      `${settings.keys} sets of ${settings.valueSize} B per target (ringkv-memory-64: ${settings.boundKeys}, it evicts: no bytes/item); ` +
      `RSS ${settings.settleS} s after the last set; bytes/item = (RSS after - before) / curr_items`,
    categories: order.map((t) => `${t}\n${targetFlags(t)}`),
    series: [
      { name: 'RSS before the sets', color: '#bbbbbb' },
      { name: 'RSS after the sets', color: '#1f77b4' },
      { name: 'peak RSS (VmHWM)', color: '#ff7f0e' },
    ],
    panels: [
      {
        yLabel: 'bytes/item (RSS after)',
        values: [none, order.map((t) => (t === 'ringkv-memory-64' ? undefined : result(t)?.bytesPerItem)), none],
        label: (v) => v.toFixed(0),
        ...(limit !== undefined && ringkvItems.length
          ? { refLines: [{ y: limit, label: `${targets.bytesPerItemRatioMax}x memcached = ${limit.toFixed(0)} B`, categories: [Math.min(...ringkvItems), Math.max(...ringkvItems)] as [number, number] }] }
          : {}),
      },
      {
        yLabel: 'RSS MB',
        values: [rss((m) => m.rssBeforeKb), rss((m) => m.rssAfterKb), rss((m) => m.hwmKb)],
        label: (v) => v.toFixed(0),
        ...(boundAt >= 0 ? { refLines: [{ y: boundMb(), label: `bound ${fixed(boundMb(), 0)} MB`, categories: [boundAt, boundAt] as [number, number] }] } : {}),
      },
    ],
  });
}

async function main(): Promise<number> {
  const command = commandLine();
  const startedAt = new Date();
  const ringkvBuilt = cliBuilt(prog);
  const order: Target[] = ['memcached', 'ringkv-memory', 'ringkv-level', 'ringkv-memory-64'];
  const rows: Row[] = order.map((target) => (target.startsWith('ringkv') && !ringkvBuilt ? { target, skipped: 'ringkv CLI not built' } : { target }));
  console.error(
    `${prog}: ${settings.keys} keys${opts.quick ? ' (quick: 200,000 instead of 1,000,000)' : ''} of ${settings.valueSize} B per target ` +
      `(${settings.boundKeys} into ringkv-memory-64), ${settings.conns} conns x depth 32, settle ${settings.settleS} s; order ${order.join(' ')}`,
  );
  for (const row of rows) {
    if (row.skipped) continue;
    try {
      const m = await measure(row.target);
      row.result = m;
      console.error(
        `${prog}: ${row.target.padEnd(16)} items ${m.items}  RSS ${fixed(mb(m.rssBeforeKb), 1)} -> ${fixed(mb(m.rssAfterKb), 1)} MB (peak ${fixed(mb(m.hwmKb), 1)})  ` +
          `${fixed(m.bytesPerItem, 0)} B/item  stats bytes ${fixed(m.statBytes / 1024 / 1024, 1)} MB  evictions ${m.evictions}  load ${fixed(m.loadSeconds, 1)} s` +
          (m.notes.length ? `  ${m.notes.join('; ')}` : ''),
      );
    } catch (e) {
      row.error = (e as Error).message;
      console.error(`${prog}: ${row.target} ERROR ${row.error}`);
    }
  }
  const goals = evaluate(rows);
  for (const g of goals) console.error(`${prog}: ${g.verdict} ${g.goal}: ${fixed(g.value, 2)} (limit ${fixed(g.limit, 1)})${g.why ? ` — ${g.why}` : ''}`);
  const machine = machineInfo();
  const commit = commitInfo();
  const method =
    `Each target started fresh, one after another. RSS = VmRSS of the server process (/proc/<pid>/status; for ringkv the Node process) ` +
    `0.5 s after it is ready (before) and ${settings.settleS} s after the last set is acknowledged (after), nothing forced (no GC, no flush); ` +
    `peak = VmHWM. Sets: the generator's preload (bench/lib/loadgen, a separate process), ${settings.conns} connections x depth 32, ` +
    `every key key:0..key:${settings.keys - 1} once with a ${settings.valueSize} B value (ringkv-memory-64: key:0..key:${settings.boundKeys - 1}). bytes/item = (RSS after - RSS before) / curr_items. ` +
    `stats bytes = the server's own \`bytes\` (ringkv: what its store accounting charges, key + value + a fixed per-record overhead). ` +
    `heap MB = V8 heap used at the end (bench/lib/loop-probe inside the node).`;
  const base = resultsBase(startedAt, commit, 'memory', opts.quick);
  const title = resultsTitle('bench:memory', startedAt, commit, opts.quick);
  const svg = renderPlot(rows, title.replace(/^# /, ''));
  const md = [
    title,
    '',
    `Command: \`${command}\`  `,
    `Machine: ${machineText(machine)}, ${machine.memcached}  `,
    `Load: ${settings.keys} sets${opts.quick ? ' (quick: 200,000 instead of 1,000,000)' : ''} of ${settings.valueSize} B values per target; ` +
      `memcached -m ${settings.memcachedMemoryMb} -t 1; ringkv-memory --storage memory --memory-mb ${settings.ringkvMemoryMb}; ringkv-level --storage level (default cache); ` +
      `ringkv-memory-64 --storage memory --memory-mb ${settings.boundMemoryMb}, given ${settings.boundKeys} sets so that it evicts.  `,
    `Method: ${method}`,
    '',
    '## Bytes per item',
    '',
    renderItemsTable(rows),
    '',
    `## Memory-mode bound (--memory-mb ${settings.boundMemoryMb})`,
    '',
    renderBoundTable(rows),
    '',
    '## Targets',
    '',
    renderGoals(goals),
    '',
    ...(opts.write ? [`![bytes/item and RSS per target, with the limits](${base}.svg)`, ''] : []),
  ].join('\n');
  publishResults(prog, {
    write: opts.write,
    base,
    md,
    svg,
    header: { benchmark: 'bench:memory', startedAt, finishedAt: new Date(), command, commit, machine, quick: opts.quick },
    body: () => ({ settings, targets, method, plot: `${base}.svg`, goals, rows }),
  });
  if (opts.check && goals.some((g) => g.verdict !== 'PASS')) return 1;
  return 0;
}

async function stopAll(): Promise<void> {
  abort.abort();
  await running.stopAll(2000);
}

await runBench(prog, main, { stopAll, stopping: () => `${running.size} server(s)` });
