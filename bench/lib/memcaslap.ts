// Debian's memcaslap (libmemcached-tools' memaslap) as a second, independent generator: a C
// program, so it costs the shared CPU less per request than our Node generator, and its
// figures do not depend on our parser. Run with one thread (-T 1) like our one generator
// process, a get/set mix from a -F config file, fixed key and value lengths, and the key
// space = concurrency x window (-w, whole thousands only).
//
// Its latency is only printed as a log2 histogram in microseconds ("Log2 Dist"): row `r:`
// lists the counts of buckets r, r+1, r+2, r+3, and bucket k holds latencies in
// [2^(k-1), 2^k) us (checked on every run against the printed Min and Max). Percentiles are
// therefore reported as the bucket's upper bound: "at most this", within a factor of two.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { assert } from '../../server/util/assert.js';

export const memcaslapPath = '/usr/bin/memcaslap';

export interface MemcaslapSettings {
  host: string;
  port: number;
  /** -c: concurrent connections */
  conns: number;
  /** fraction of commands that are get; the rest set */
  getRatio: number;
  /** -X: fixed value length, bytes */
  valueSize: number;
  /** key space; the window per connection is keys / conns */
  keys: number;
  /** key length in bytes (memaslap accepts 16..250) */
  keyBytes: number;
  /** -t, whole seconds */
  durationS: number;
}

export interface MemcaslapReport {
  command: string;
  configFile: string;
  runTimeS: number;
  ops: number;
  opsPerS: number;
  cmdGet: number;
  cmdSet: number;
  getMisses: number;
  latencyUs: { min: number; max: number; avg: number };
  /** [k, count]: latencies in [2^(k-1), 2^k) us */
  log2Us: Array<[number, number]>;
  /** upper bounds of the log2 buckets holding each quantile, ms (NaN when not printed) */
  latencyMs: { p50: number; p99: number; p999: number };
  /** true when the log2 bucket convention did not match Min/Max (percentiles are then NaN) */
  log2Mismatch: boolean;
  /** error replies memcaslap printed (counted over all output, also the dropped head) */
  errorReplies: number;
  /** the first error reply printed, for the report */
  errorSample: string;
}

/**
 * Output kept from memcaslap, bytes. Its report is a few kB at the end, but it prints every
 * unexpected server reply as it goes, so the head is dropped past this and the tail kept.
 */
const outputBytesMax = 256 * 1024;

/** Error replies memcaslap echoed (lines like "<48 CLIENT_ERROR bad command line format"). */
const errorReplyPattern = /^<\d+ (CLIENT_ERROR|SERVER_ERROR|ERROR)\b/;

export function memcaslapConfig(s: MemcaslapSettings): string {
  const get = Math.round(s.getRatio * 1000) / 1000;
  const set = Math.round((1 - get) * 1000) / 1000;
  return [
    '# written by bench/lib/memcaslap.ts: fixed key and value lengths, get/set mix',
    'key',
    `${s.keyBytes} ${s.keyBytes} 1`,
    'value',
    `${s.valueSize} ${s.valueSize} 1`,
    'cmd',
    `0 ${set}`, // 0 = set
    `1 ${get}`, // 1 = get
    '',
  ].join('\n');
}

/**
 * Window per connection, in thousands: memcaslap only accepts whole multiples of 1k for -w
 * (a bare "400" is refused, "0.4k" becomes 0k and hangs), so the key space it uses is
 * conns x window k, the requested `keys` rounded up.
 */
export function memcaslapWindowK(s: Pick<MemcaslapSettings, 'keys' | 'conns'>): number {
  return Math.max(1, Math.ceil(s.keys / s.conns / 1000));
}

/** The key space memcaslap actually uses for these settings. */
export function memcaslapKeys(s: Pick<MemcaslapSettings, 'keys' | 'conns'>): number {
  return s.conns * memcaslapWindowK(s) * 1000;
}

export function memcaslapArgs(s: MemcaslapSettings, configFile: string): string[] {
  return [
    '-s', `${s.host}:${s.port}`,
    '-F', configFile,
    '-T', '1',
    '-c', String(s.conns),
    '-X', String(s.valueSize),
    '-w', `${memcaslapWindowK(s)}k`,
    '-t', `${s.durationS}s`,
    '-S', `${s.durationS}s`, // one statistics dump at the end: that is where latency is printed
  ];
}

function num(text: string, re: RegExp, what: string): number {
  const m = re.exec(text);
  assert(m !== null, `memcaslap output has no ${what}`);
  return Number(m[1]);
}

/** Parses the final summary and the "Total Statistics (N events)" block. */
export function parseMemcaslap(text: string): Omit<MemcaslapReport, 'command' | 'configFile' | 'errorReplies' | 'errorSample'> {
  const run = /Run time: ([\d.]+)s Ops: (\d+) TPS: (\d+)/.exec(text);
  assert(run !== null, `memcaslap printed no "Run time: ... TPS:" line: ${text.slice(-500)}`);
  const totalAt = text.lastIndexOf('Total Statistics (');
  const blockEnd = text.indexOf('cmd_get', totalAt);
  const block = totalAt < 0 ? '' : text.slice(totalAt, blockEnd < 0 ? text.length : blockEnd);
  const log2Us: Array<[number, number]> = [];
  let min = Number.NaN;
  let max = Number.NaN;
  let avg = Number.NaN;
  if (block) {
    min = num(block, /Min:\s+(\d+)/, 'Min');
    max = num(block, /Max:\s+(\d+)/, 'Max');
    avg = num(block, /Avg:\s+(\d+)/, 'Avg');
    const distAt = block.indexOf('Log2 Dist:');
    for (const line of block.slice(distAt).split('\n').slice(1)) {
      const m = /^\s*(\d+):\s+([\d\s]+)$/.exec(line);
      if (!m) break;
      const row = Number(m[1]);
      m[2]!.trim().split(/\s+/).forEach((c, i) => {
        if (Number(c) > 0) log2Us.push([row + i, Number(c)]);
      });
    }
  }
  // Check the bucket convention: Min must fall in the first bucket, Max in the last.
  const first = log2Us[0]?.[0];
  const last = log2Us[log2Us.length - 1]?.[0];
  const inBucket = (v: number, k: number) => v >= 2 ** (k - 1) && v < 2 ** k;
  const log2Mismatch = first === undefined || last === undefined || !inBucket(Math.max(min, 1), first) || !inBucket(max, last);
  const total = log2Us.reduce((a, [, c]) => a + c, 0);
  const quantileMs = (q: number): number => {
    if (log2Mismatch || total === 0) return Number.NaN;
    const rank = Math.max(1, Math.ceil(q * total));
    let seen = 0;
    for (const [k, c] of log2Us) {
      seen += c;
      if (seen >= rank) return Math.min(2 ** k, max) / 1000;
    }
    return max / 1000;
  };
  return {
    runTimeS: Number(run[1]),
    ops: Number(run[2]),
    opsPerS: Number(run[3]),
    cmdGet: num(text, /cmd_get: (\d+)/, 'cmd_get'),
    cmdSet: num(text, /cmd_set: (\d+)/, 'cmd_set'),
    getMisses: num(text, /get_misses: (\d+)/, 'get_misses'),
    latencyUs: { min, max, avg },
    log2Us,
    latencyMs: { p50: quantileMs(0.5), p99: quantileMs(0.99), p999: quantileMs(0.999) },
    log2Mismatch,
  };
}

/** Runs memcaslap to completion (killed by PID if it overruns by 30 s) and parses its report. */
export async function runMemcaslap(s: MemcaslapSettings): Promise<MemcaslapReport> {
  assert(Number.isInteger(s.durationS) && s.durationS >= 1, `memcaslap takes whole seconds, got ${s.durationS}`);
  assert(s.keyBytes >= 16 && s.keyBytes <= 250, `memcaslap key length ${s.keyBytes} not in [16, 250]`);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ringkv-memcaslap-'));
  const configFile = path.join(dir, 'mix.cfg');
  writeFileSync(configFile, memcaslapConfig(s));
  const args = memcaslapArgs(s, configFile);
  const budgetMs = (s.durationS + 30) * 1000;
  let errorReplies = 0;
  let errorSample = '';
  try {
    const out = await new Promise<string>((resolve, reject) => {
      const child = spawn(memcaslapPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
      let text = '';
      let partial = '';
      const take = (d: Buffer) => {
        const chunk = d.toString('latin1');
        const lines = (partial + chunk).split('\n');
        partial = lines.pop() ?? '';
        for (const line of lines) {
          if (!errorReplyPattern.test(line)) continue;
          errorReplies++;
          if (!errorSample) errorSample = line.trim();
        }
        text += chunk;
        if (text.length > outputBytesMax) text = text.slice(text.length - outputBytesMax / 2);
      };
      child.stdout.on('data', take);
      child.stderr.on('data', take);
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`memcaslap (pid ${child.pid}) overran ${budgetMs} ms`));
      }, budgetMs);
      child.once('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        if (code === 0) resolve(text);
        else reject(new Error(`memcaslap exited with ${code}: ${text.slice(-800)}`));
      });
    });
    return { command: [memcaslapPath, ...args].join(' '), configFile: memcaslapConfig(s), ...parseMemcaslap(out), errorReplies, errorSample };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
