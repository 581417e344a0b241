// A memcached text-protocol load generator: `conns` connections, each keeping `depth`
// requests in flight, a get/set mix over `key:0 .. key:<keys-1>` chosen uniformly or by Zipf,
// fixed-size values. Every key is set once first (preload) so gets hit; then a warm-up that
// is not recorded; then the measured window, which ends at `durationS` or after
// `maxRequests` replies, whichever comes first.
//
// Replies are parsed incrementally on Buffers (a reply may span reads; one read may hold many
// replies). Latency is taken with process.hrtime.bigint: one timestamp per write batch (all
// its requests leave together) and one per read batch (all its replies arrived together),
// recorded in nanoseconds into a log-linear histogram (< 0.8 % bucket error).
//
// With `timeline`, the measured window is also cut into 1-second buckets (from the
// instant it opens): each bucket counts the replies that arrived in it and keeps their
// latencies in a histogram of its own, summarized when the next second begins (so memory
// stays one histogram however long the run). With `startAtMs`, the window opens at that
// wall-clock instant instead of after `warmupS`, so several generator processes measure
// the same seconds.
//
// The generator shares the machine with the server under test, so callers run it in its
// own process (`runLoadInChild`) to keep it off the server's event loop, with identical
// settings for every target.
import { spawn } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { assert } from '../../server/util/assert.js';
import { Histogram, type HistogramSnapshot } from './histogram.js';
import { makeKeyChooser, makeRng } from './keys.js';
import { repoRoot } from './servers.js';
import { workloadArgs, type Workload } from './workload-args.js';

export interface LoadSettings extends Workload {
  host: string;
  port: number;
  /** TCP connections to open. */
  conns: number;
  /** Requests kept in flight per connection (pipeline depth); 1 = request/response. */
  depth: number;
  /** Upper bound on replies counted in the measured window (the run stops there). */
  maxRequests: number;
  /** Set every key once before the warm-up so gets hit. */
  preload: boolean;
  /** Also report per-second samples of the measured window (`LoadReport.timeline`). Off when absent. */
  timeline?: boolean;
  /**
   * Open the measured window at this wall-clock instant (ms since the epoch) rather than
   * `warmupS` after the preload: the load between preload and this instant is the warm-up
   * (`warmupS` is then unused). A preload that ends later opens the window at once
   * (`LoadReport.lateStartMs` says by how much). Absent: `warmupS` as usual.
   */
  startAtMs?: number;
}

export const defaultLoadSettings: Omit<LoadSettings, 'port'> = {
  host: '127.0.0.1',
  conns: 50,
  depth: 1,
  getRatio: 0.9,
  keys: 100_000,
  valueSize: 100,
  dist: 'uniform',
  zipfS: 0.99,
  warmupS: 2,
  durationS: 10,
  maxRequests: 50_000_000,
  preload: true,
  seed: 1,
};

/** Limits of the generator itself (named so a run can never grow without bound). */
export const loadLimits = {
  connsMax: 1000,
  depthMax: 1024,
  keysMax: 5_000_000,
  valueSizeMax: 1024 * 1024,
  durationSMax: 3600,
  /** Requests in flight per connection while preloading. */
  preloadDepth: 32,
  /** Preload must finish within this, or the run fails. */
  preloadMsMax: 120_000,
  connectMsMax: 5_000,
  /** After the window closes, wait this long for in-flight replies before closing. */
  drainMsMax: 2_000,
  /** Unparsed reply bytes a connection may hold (a reply larger than this is an error). */
  rxBytesMax: 2 * 1024 * 1024,
  errorSamplesMax: 5,
  /** How far in the future `startAtMs` may lie, ms. */
  startAheadMsMax: 600_000,
} as const;

export type StopReason = 'duration' | 'max-requests' | 'connections-lost';

/** One second of the measured window (`LoadSettings.timeline`). */
export interface TimelineSample {
  /** Wall-clock start of this second, ms since the epoch (window start + index s). */
  atMs: number;
  /** Seconds of the measured window inside this bucket: 1, except the last one may be shorter. */
  spanS: number;
  /** Replies received in this second, and the errors among them (connections lost included). */
  ops: number;
  errors: number;
  /** Latency of those replies, ms; null when the second had no reply. */
  p50Ms: number | null;
  p99Ms: number | null;
  maxMs: number | null;
}

export interface LoadTimeline {
  /** Wall-clock instant the measured window opened, ms since the epoch (bucket 0 starts here). */
  originMs: number;
  bucketMs: number;
  /** Every second of the window, in order, seconds without replies included. */
  samples: TimelineSample[];
}

export interface LoadReport {
  settings: LoadSettings;
  preload: { keys: number; seconds: number; errors: number };
  /** Measured window, seconds (wall clock between its first and last instant). */
  measuredS: number;
  /** Replies received in the measured window. */
  ops: number;
  opsPerS: number;
  gets: number;
  sets: number;
  hits: number;
  misses: number;
  /** Error replies, malformed replies and connections lost, outside preload. */
  errors: number;
  errorSamples: string[];
  latencyMs: { p50: number; p99: number; p999: number; max: number; mean: number };
  /** Latency histogram in nanoseconds. */
  histogramNs: HistogramSnapshot;
  stoppedBy: StopReason;
  /** Per-second samples, with `settings.timeline` only. */
  timeline?: LoadTimeline;
  /** With `settings.startAtMs`: how late the window opened after it, ms (0 on time). */
  lateStartMs?: number;
}

export function validateSettings(s: LoadSettings): void {
  const L = loadLimits;
  assert(Number.isInteger(s.port) && s.port > 0 && s.port < 65536, `port ${s.port}`);
  assert(Number.isInteger(s.conns) && s.conns >= 1 && s.conns <= L.connsMax, `conns ${s.conns} not in [1, ${L.connsMax}]`);
  assert(Number.isInteger(s.depth) && s.depth >= 1 && s.depth <= L.depthMax, `depth ${s.depth} not in [1, ${L.depthMax}]`);
  assert(s.getRatio >= 0 && s.getRatio <= 1, `get ratio ${s.getRatio} not in [0, 1]`);
  assert(Number.isInteger(s.keys) && s.keys >= 1 && s.keys <= L.keysMax, `keys ${s.keys} not in [1, ${L.keysMax}]`);
  assert(Number.isInteger(s.valueSize) && s.valueSize >= 0 && s.valueSize <= L.valueSizeMax, `value size ${s.valueSize}`);
  assert(s.durationS > 0 && s.durationS <= L.durationSMax, `duration ${s.durationS} s not in (0, ${L.durationSMax}]`);
  assert(s.warmupS >= 0 && s.warmupS <= L.durationSMax, `warm-up ${s.warmupS} s`);
  assert(Number.isSafeInteger(s.maxRequests) && s.maxRequests >= 1, `max requests ${s.maxRequests}`);
  assert(s.dist === 'uniform' || s.dist === 'zipf', `dist ${String(s.dist)}`);
  if (s.startAtMs !== undefined) {
    assert(Number.isFinite(s.startAtMs) && s.startAtMs - Date.now() <= L.startAheadMsMax, `start at ${s.startAtMs} is more than ${L.startAheadMsMax} ms away`);
  }
}

/** Bucket length of the timeline. */
const timelineBucketMs = 1000;

/** The second being filled, and the samples of the seconds before it. */
interface TimelineState {
  originNs: number;
  originMs: number;
  index: number;
  hist: Histogram;
  ops: number;
  errors: number;
  samples: TimelineSample[];
}

/** All request bytes for every key, in two blobs with offset tables (few objects, ~35 B a key). */
export interface RequestBlobs {
  getBlob: Buffer;
  getOff: Uint32Array;
  setBlob: Buffer;
  setOff: Uint32Array;
  /** The value followed by \r\n, shared by every set. */
  valueCrlf: Buffer;
}

export function buildBlobs(keys: number, valueSize: number): RequestBlobs {
  const gets: string[] = [];
  const sets: string[] = [];
  const getOff = new Uint32Array(keys + 1);
  const setOff = new Uint32Array(keys + 1);
  let g = 0;
  let s = 0;
  for (let k = 0; k < keys; k++) {
    const get = `get key:${k}\r\n`;
    const set = `set key:${k} 0 0 ${valueSize}\r\n`;
    gets.push(get);
    sets.push(set);
    g += get.length;
    s += set.length;
    getOff[k + 1] = g;
    setOff[k + 1] = s;
  }
  const value = Buffer.alloc(valueSize + 2, 'v');
  value.write('\r\n', valueSize, 'latin1');
  return {
    getBlob: Buffer.from(gets.join(''), 'latin1'),
    getOff,
    setBlob: Buffer.from(sets.join(''), 'latin1'),
    setOff,
    valueCrlf: value,
  };
}

export const kindGet = 0;
export const kindSet = 1;

const enum Reply {
  Hit,
  Miss,
  Stored,
  Error,
}

/** One connection's in-flight requests: a ring of (kind, send time). */
class LoadConn {
  readonly kinds: Uint8Array;
  readonly startsNs: Float64Array;
  head = 0;
  inflight = 0;
  rx: Buffer | null = null;
  alive = true;

  constructor(
    readonly socket: net.Socket,
    readonly capacity: number,
  ) {
    this.kinds = new Uint8Array(capacity);
    this.startsNs = new Float64Array(capacity);
  }

  push(kind: number, startNs: number): void {
    assert(this.inflight < this.capacity, 'in-flight ring overflow');
    const i = (this.head + this.inflight) % this.capacity;
    this.kinds[i] = kind;
    this.startsNs[i] = startNs;
    this.inflight++;
  }

  /** Index of the oldest request, which the next reply answers. */
  oldest(): number {
    assert(this.inflight > 0, 'reply with no request in flight');
    return this.head;
  }

  pop(): void {
    this.head = (this.head + 1) % this.capacity;
    this.inflight--;
  }
}

type Phase = 'preload' | 'warmup' | 'measure' | 'drain';

export function connect(host: string, port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, host);
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`connect to ${host}:${port} timed out after ${loadLimits.connectMsMax} ms`));
    }, loadLimits.connectMsMax);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.setNoDelay(true);
      resolve(socket);
    });
    socket.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

/** Parses the byte count at the end of `VALUE <key> <flags> <bytes>\r\n`; -1 when malformed. */
export function valueBytes(buf: Buffer, lineStart: number, nl: number): number {
  let end = nl;
  if (end > lineStart && buf[end - 1] === 13) end--;
  let n = 0;
  let digits = 0;
  let mul = 1;
  for (let i = end - 1; i > lineStart; i--) {
    const c = buf[i]!;
    if (c === 32) break;
    if (c < 48 || c > 57 || digits >= 9) return -1;
    n += (c - 48) * mul;
    mul *= 10;
    digits++;
  }
  return digits === 0 ? -1 : n;
}

class LoadRun {
  private readonly rng: () => number;
  private readonly chooseKey: () => number;
  private readonly blobs: RequestBlobs;
  private readonly base = process.hrtime.bigint();
  private conns: LoadConn[] = [];
  private phase: Phase = 'preload';
  private preloadNext = 0;
  private preloadAcked = 0;
  private preloadErrors = 0;
  private preloadStartNs = 0;
  private preloadEndNs = 0;
  private measureStartNs = 0;
  private measureEndNs = 0;
  private readonly hist = new Histogram();
  private ops = 0;
  private gets = 0;
  private sets = 0;
  private hits = 0;
  private misses = 0;
  private errors = 0;
  private readonly errorSamples: string[] = [];
  private stoppedBy: StopReason = 'duration';
  private tl: TimelineState | undefined;
  private lateStartMs = 0;
  private timers: NodeJS.Timeout[] = [];
  private onPreloaded: ((error?: Error) => void) | undefined;
  private onDrained: (() => void) | undefined;

  constructor(private readonly s: LoadSettings) {
    this.rng = makeRng(s.seed);
    this.chooseKey = makeKeyChooser(s.keys, s.dist, s.zipfS, this.rng);
    this.blobs = buildBlobs(s.keys, s.valueSize);
  }

  private nowNs(): number {
    return Number(process.hrtime.bigint() - this.base);
  }

  async run(): Promise<LoadReport> {
    const capacity = Math.max(this.s.depth, loadLimits.preloadDepth);
    const sockets = await Promise.all(Array.from({ length: this.s.conns }, () => connect(this.s.host, this.s.port)));
    this.conns = sockets.map((socket) => new LoadConn(socket, capacity));
    for (const c of this.conns) this.attach(c);
    try {
      if (this.s.preload) await this.preload();
      const finished = new Promise<void>((resolve) => (this.onDrained = resolve));
      this.phase = 'warmup';
      for (const c of this.conns) this.fill(c);
      const warmupMs = this.s.startAtMs === undefined ? this.s.warmupS * 1000 : Math.max(0, this.s.startAtMs - Date.now());
      this.timers.push(
        setTimeout(() => {
          if (this.phase !== 'warmup') return; // every connection was lost during warm-up
          this.measureStartNs = this.nowNs();
          this.phase = 'measure';
          const wallMs = Date.now();
          if (this.s.startAtMs !== undefined) this.lateStartMs = Math.max(0, wallMs - this.s.startAtMs);
          if (this.s.timeline) {
            this.tl = { originNs: this.measureStartNs, originMs: wallMs, index: 0, hist: new Histogram(), ops: 0, errors: 0, samples: [] };
          }
          this.timers.push(setTimeout(() => this.stop('duration'), this.s.durationS * 1000));
        }, warmupMs),
      );
      await finished;
    } finally {
      for (const t of this.timers) clearTimeout(t);
      for (const c of this.conns) c.socket.destroy();
    }
    return this.report();
  }

  private preload(): Promise<void> {
    this.preloadStartNs = this.nowNs();
    return new Promise<void>((resolve, reject) => {
      this.timers.push(
        setTimeout(
          () => reject(new Error(`preload of ${this.s.keys} keys did not finish in ${loadLimits.preloadMsMax} ms (${this.preloadAcked} acked)`)),
          loadLimits.preloadMsMax,
        ),
      );
      this.onPreloaded = (error) => {
        this.onPreloaded = undefined;
        this.preloadEndNs = this.nowNs();
        if (error) reject(error);
        else resolve();
      };
      for (const c of this.conns) this.fill(c);
    });
  }

  private stop(reason: StopReason): void {
    if (this.phase === 'drain') return;
    if (this.phase !== 'measure') {
      // Every connection died before the window opened: end now, reporting what happened.
      this.measureStartNs = this.nowNs();
    }
    this.stoppedBy = reason;
    this.measureEndNs = this.nowNs();
    this.phase = 'drain';
    this.timers.push(setTimeout(() => this.onDrained?.(), loadLimits.drainMsMax));
    this.checkDrained();
  }

  private checkDrained(): void {
    if (this.phase !== 'drain') return;
    if (this.conns.every((c) => !c.alive || c.inflight === 0)) this.onDrained?.();
  }

  private attach(c: LoadConn): void {
    c.socket.on('data', (chunk: Buffer) => this.onData(c, chunk));
    const lost = (why: string) => {
      if (!c.alive) return;
      c.alive = false;
      if (this.phase !== 'drain') this.fail(`connection lost: ${why}`);
      this.allLostCheck();
      this.checkDrained();
    };
    c.socket.on('error', (e) => lost(e.message));
    c.socket.on('close', () => lost('closed by peer'));
  }

  private fail(sample: string): void {
    this.errors++;
    if (this.phase === 'measure' && this.tl) this.second(this.nowNs()).errors++;
    this.sample(sample);
  }

  /** The timeline's bucket for instant `nowNs`, closing the seconds before it. */
  private second(nowNs: number): TimelineState {
    const tl = this.tl!;
    const index = Math.floor((nowNs - tl.originNs) / (timelineBucketMs * 1e6));
    // Bounded: one pass per elapsed second of a window at most durationSMax long.
    while (tl.index < index) this.closeSecond(1);
    return tl;
  }

  private closeSecond(spanS: number): void {
    const tl = this.tl!;
    const h = tl.hist;
    const ms = (ns: number) => (h.count === 0 ? null : ns / 1e6);
    tl.samples.push({
      atMs: tl.originMs + tl.index * timelineBucketMs,
      spanS,
      ops: tl.ops,
      errors: tl.errors,
      p50Ms: ms(h.count === 0 ? 0 : h.quantile(0.5)),
      p99Ms: ms(h.count === 0 ? 0 : h.quantile(0.99)),
      maxMs: ms(h.max),
    });
    tl.index++;
    tl.hist = new Histogram();
    tl.ops = 0;
    tl.errors = 0;
  }

  private sample(text: string): void {
    if (this.errorSamples.length < loadLimits.errorSamplesMax) this.errorSamples.push(text);
  }

  /** Tops the connection up to its window and sends the new requests in one write. */
  private fill(c: LoadConn): void {
    if (!c.alive) return;
    const window = this.phase === 'preload' ? loadLimits.preloadDepth : this.s.depth;
    const b = this.blobs;
    const pieces: Buffer[] = [];
    const startNs = this.nowNs();
    while (c.inflight < window) {
      let kind: number;
      let key: number;
      if (this.phase === 'preload') {
        if (this.preloadNext >= this.s.keys) break;
        kind = kindSet;
        key = this.preloadNext++;
      } else if (this.phase === 'warmup' || (this.phase === 'measure' && this.ops < this.s.maxRequests)) {
        kind = this.rng() < this.s.getRatio ? kindGet : kindSet;
        key = this.chooseKey();
      } else {
        break;
      }
      c.push(kind, startNs);
      if (kind === kindGet) {
        pieces.push(b.getBlob.subarray(b.getOff[key]!, b.getOff[key + 1]!));
      } else {
        pieces.push(b.setBlob.subarray(b.setOff[key]!, b.setOff[key + 1]!), b.valueCrlf);
      }
    }
    if (pieces.length === 1) c.socket.write(pieces[0]!);
    else if (pieces.length > 1) c.socket.write(Buffer.concat(pieces));
  }

  private onData(c: LoadConn, chunk: Buffer): void {
    const buf = c.rx ? Buffer.concat([c.rx, chunk]) : chunk;
    c.rx = null;
    const len = buf.length;
    const nowNs = this.nowNs();
    let off = 0;
    while (off < len) {
      const nl = buf.indexOf(10, off);
      if (nl < 0) break;
      let end = nl + 1;
      let reply: Reply;
      const b0 = buf[off];
      if (b0 === 86 /* V */) {
        const bytes = valueBytes(buf, off, nl);
        if (bytes < 0) {
          this.desync(c, `malformed VALUE line ${JSON.stringify(buf.toString('latin1', off, Math.min(nl, off + 80)))}`);
          return;
        }
        const dataEnd = nl + 1 + bytes;
        if (dataEnd + 7 > len) break; // data, \r\n, END\r\n not all here yet
        if (buf[dataEnd] !== 13 || buf[dataEnd + 1] !== 10 || buf.toString('latin1', dataEnd + 2, dataEnd + 7) !== 'END\r\n') {
          this.desync(c, 'VALUE data not followed by \\r\\nEND\\r\\n');
          return;
        }
        end = dataEnd + 7;
        reply = bytes === this.s.valueSize ? Reply.Hit : Reply.Error;
      } else if (b0 === 69 /* E */ && buf[off + 1] === 78 /* N */) {
        reply = Reply.Miss;
      } else if (b0 === 83 /* S */ && buf[off + 1] === 84 /* T */) {
        reply = Reply.Stored;
      } else {
        reply = Reply.Error; // ERROR, CLIENT_ERROR, SERVER_ERROR, NOT_STORED, ...
      }
      if (!this.complete(c, reply, nowNs, buf, off, nl)) return;
      off = end;
    }
    if (off < len) {
      if (len - off > loadLimits.rxBytesMax) {
        this.desync(c, `more than ${loadLimits.rxBytesMax} unparsed reply bytes`);
        return;
      }
      c.rx = buf.subarray(off);
    }
    if (this.phase === 'preload' && this.preloadAcked === this.s.keys) {
      this.onPreloaded?.();
      return; // run() switches to warm-up and fills every connection
    }
    if (this.phase === 'drain') this.checkDrained();
    else this.fill(c);
  }

  /** Accounts one reply against the oldest request; false when the stream is out of step. */
  private complete(c: LoadConn, reply: Reply, nowNs: number, buf: Buffer, lineStart: number, nl: number): boolean {
    if (c.inflight === 0) {
      this.desync(c, 'reply with no request in flight');
      return false;
    }
    const i = c.oldest();
    const kind = c.kinds[i]!;
    const startNs = c.startsNs[i]!;
    c.pop();
    const errorLine = () => buf.toString('latin1', lineStart, Math.min(nl, lineStart + 120)).trimEnd();
    const mismatch = (kind === kindGet && reply === Reply.Stored) || (kind === kindSet && (reply === Reply.Hit || reply === Reply.Miss));
    if (mismatch) {
      this.desync(c, `reply ${JSON.stringify(errorLine())} does not answer a ${kind === kindGet ? 'get' : 'set'}`);
      return false;
    }
    if (this.phase === 'preload') {
      this.preloadAcked++;
      if (reply !== Reply.Stored) {
        this.preloadErrors++; // reported apart from the measured window's errors
        this.sample(`preload: ${errorLine()}`);
      }
      return true;
    }
    if (this.phase !== 'measure') return true;
    this.ops++;
    if (kind === kindGet) this.gets++;
    else this.sets++;
    if (reply === Reply.Hit) this.hits++;
    else if (reply === Reply.Miss) this.misses++;
    else if (reply === Reply.Error) this.fail(errorLine() || 'bad value length');
    this.hist.record(nowNs - startNs);
    if (this.tl) {
      const second = this.second(nowNs);
      second.ops++;
      second.hist.record(nowNs - startNs);
    }
    if (this.ops >= this.s.maxRequests) this.stop('max-requests');
    return true;
  }

  private desync(c: LoadConn, why: string): void {
    this.fail(why);
    c.socket.destroy();
    c.alive = false;
    c.inflight = 0;
    this.allLostCheck();
    this.checkDrained();
  }

  private allLostCheck(): void {
    if (!this.conns.every((x) => !x.alive)) return;
    if (this.phase === 'preload') this.onPreloaded?.(new Error(`every connection was lost during preload: ${this.errorSamples.join('; ')}`));
    else this.stop('connections-lost');
  }

  /** Closes the timeline at the window's end: every second up to it, the last one partial. */
  private finishTimeline(): LoadTimeline | undefined {
    if (!this.s.timeline) return undefined;
    const tl = this.tl;
    if (!tl) return { originMs: Date.now(), bucketMs: timelineBucketMs, samples: [] }; // the window never opened
    const endS = (this.measureEndNs - tl.originNs) / (timelineBucketMs * 1e6);
    // Bounded like second(): the whole seconds left, then the partial last one.
    while (tl.index + 1 <= endS) this.closeSecond(1);
    const rest = endS - tl.index;
    if (rest > 1e-6 || tl.ops > 0 || tl.errors > 0) this.closeSecond(Math.max(0, rest));
    return { originMs: tl.originMs, bucketMs: timelineBucketMs, samples: tl.samples };
  }

  private report(): LoadReport {
    const timeline = this.finishTimeline();
    const measuredS = Math.max(1e-9, (this.measureEndNs - this.measureStartNs) / 1e9);
    const ms = (ns: number) => ns / 1e6;
    const h = this.hist;
    return {
      settings: this.s,
      preload: {
        keys: this.s.preload ? this.s.keys : 0,
        seconds: this.s.preload ? (this.preloadEndNs - this.preloadStartNs) / 1e9 : 0,
        errors: this.preloadErrors,
      },
      measuredS,
      ops: this.ops,
      opsPerS: this.ops / measuredS,
      gets: this.gets,
      sets: this.sets,
      hits: this.hits,
      misses: this.misses,
      errors: this.errors,
      errorSamples: this.errorSamples,
      latencyMs: {
        p50: ms(h.quantile(0.5)),
        p99: ms(h.quantile(0.99)),
        p999: ms(h.quantile(0.999)),
        max: ms(h.max),
        mean: ms(h.mean()),
      },
      histogramNs: h.snapshot(),
      stoppedBy: this.stoppedBy,
      ...(timeline ? { timeline } : {}),
      ...(this.s.startAtMs !== undefined ? { lateStartMs: this.lateStartMs } : {}),
    };
  }
}

/** Runs the load in this process (the CLI does this; benchmarks use `runLoadInChild`). */
export async function runLoad(settings: LoadSettings): Promise<LoadReport> {
  validateSettings(settings);
  return new LoadRun(settings).run();
}

export const loadgenCliPath = path.join(repoRoot, 'dist', 'bench', 'loadgen.js');

/** The CLI arguments that reproduce `settings`. */
export function loadArgs(s: LoadSettings): string[] {
  return [
    '--host', s.host,
    '--port', String(s.port),
    '--conns', String(s.conns),
    '--depth', String(s.depth),
    ...workloadArgs(s),
    '--max-requests', String(s.maxRequests),
    ...(s.preload ? [] : ['--no-preload']),
    ...(s.timeline ? ['--timeline'] : []),
    ...(s.startAtMs !== undefined ? ['--start-at-ms', String(Math.round(s.startAtMs))] : []),
  ];
}

/** Bytes of child stdout kept (the JSON report is a few kB). */
const childOutputBytesMax = 4 * 1024 * 1024;

export interface ChildOptions {
  /** Aborting kills the child by PID (SIGKILL) and rejects: for a caller that is stopping. */
  signal?: AbortSignal;
}

/**
 * Runs the generator as a separate Node process (its own event loop and heap, one core's
 * worth of work) and returns its JSON report. The child is killed by PID if it overruns,
 * or when `options.signal` aborts.
 */
export function runLoadInChild(settings: LoadSettings, options: ChildOptions = {}): Promise<LoadReport> {
  validateSettings(settings);
  const waitMs = settings.startAtMs === undefined ? settings.warmupS * 1000 : Math.max(0, settings.startAtMs - Date.now());
  const budgetMs = loadLimits.preloadMsMax + waitMs + settings.durationS * 1000 + loadLimits.drainMsMax + 15_000;
  return runJsonChild<LoadReport>('loadgen', loadgenCliPath, [...loadArgs(settings), '--json'], budgetMs, options);
}

/**
 * Runs a compiled Node script (a generator CLI) as a child process and resolves with the
 * JSON on the last line of its stdout. Killed by PID (SIGKILL) after `budgetMs`, or when
 * `options.signal` aborts; a non-zero exit rejects with its stderr.
 */
export function runJsonChild<T>(name: string, script: string, args: string[], budgetMs: number, options: ChildOptions = {}): Promise<T> {
  const { signal } = options;
  if (signal?.aborted) return Promise.reject(new Error(`${name} not started: aborted`));
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    const onAbort = () => {
      child.kill('SIGKILL');
      clearTimeout(timer);
      reject(new Error(`${name} (pid ${child.pid}) stopped: aborted`));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => {
      if (out.length < childOutputBytesMax) out += d.toString('utf8');
    });
    child.stderr.on('data', (d: Buffer) => {
      if (err.length < 64 * 1024) err += d.toString('utf8');
    });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${name} (pid ${child.pid}) overran its ${budgetMs} ms budget`));
    }, budgetMs);
    child.once('error', (e) => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      reject(e);
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      if (code !== 0) {
        reject(new Error(`${name} exited with ${code}: ${err.trim()}`));
        return;
      }
      try {
        const last = out.trim().split('\n').pop() ?? '';
        resolve(JSON.parse(last) as T);
      } catch (e) {
        reject(new Error(`${name} printed no JSON report: ${(e as Error).message}; stderr: ${err.trim()}`));
      }
    });
  });
}
