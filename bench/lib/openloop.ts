// An OPEN-LOOP memcached text-protocol load generator, for overload tests: requests leave at
// fixed intended times whatever the server does, so the offered load does not fall when the
// server slows down (a closed-loop generator, waiting for replies, quietly offers less).
//
// Open mode: request i of the run is due at t0 + i / rate and goes to connection i mod conns.
// A timer ticks every `tickMs`; each tick schedules every request due by then (with its own
// intended time, however late the tick is) and writes each connection's due batch with one
// socket.write. Replies come back in request order per connection, so each connection keeps
// a FIFO (a ring) of its requests' kinds, keys and intended times; a reply's latency is
// arrival - INTENDED send time (no coordinated omission: time spent waiting in the generator,
// in the kernel or in the server all counts). When a connection's socket buffer is full (the
// server stopped reading), due requests wait in the ring unsent and leave when it drains; when
// a connection holds `backlogMax` requests (sent and unanswered plus unsent), further ones are
// not scheduled on it and count as `droppedByGenerator`, so memory stays bounded.
//
// Closed mode (calibration, to measure capacity): each connection keeps `depth` requests in
// flight, the next sent when a reply arrives.
//
// Both: every key is set once first (preload, closed loop), then an unrecorded warm-up, then
// the measured window. Replies arriving in the window are counted: ok (hits, misses, STORED:
// the goodput), `SERVER_ERROR busy` (shed by admission control: counted apart, with a latency
// histogram of their own), and other errors. Offered = requests whose intended time falls in
// the window; sent = requests written in it. The generator also measures itself: how late its
// ticks ran (the scheduling error it adds to every latency), its event-loop utilization and CPU,
// so a run where it could not keep up says so.
//
// Cheap per request by construction: request bytes are slices of pre-built blobs (loadgen's),
// one write per connection per tick, replies parsed in place with Buffer.indexOf, latency
// recorded in an allocation-free histogram. Callers run it in its own process
// (`runOpenLoopInChild`, CLI bench/openloop.ts), away from the server's event loop.
import net from 'node:net';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { assert } from '../../server/util/assert.js';
import { Histogram, type HistogramSnapshot } from './histogram.js';
import { makeKeyChooser, makeRng } from './keys.js';
import {
  buildBlobs,
  connect,
  kindGet,
  kindSet,
  loadLimits,
  runJsonChild,
  validateSettings,
  valueBytes,
  type ChildOptions,
  type LoadSettings,
  type RequestBlobs,
} from './loadgen.js';
import { repoRoot } from './servers.js';
import { workloadArgs } from './workload-args.js';

export type OpenLoopMode = 'open' | 'closed';

export interface OpenLoopSettings extends Omit<LoadSettings, 'maxRequests' | 'timeline' | 'startAtMs'> {
  /** open: `rate` ops/s at fixed intended times; closed: `depth` requests in flight per connection. */
  mode: OpenLoopMode;
  /** Offered load, requests per second over all connections (open mode). */
  rate: number;
  /** Scheduler period, ms. */
  tickMs: number;
  /** Requests a connection may hold (sent and unanswered, plus unsent) before new ones are dropped. */
  backlogMax: number;
}

export const defaultOpenLoopSettings: Omit<OpenLoopSettings, 'port'> = {
  host: '127.0.0.1',
  mode: 'open',
  rate: 10_000,
  conns: 50,
  depth: 1,
  getRatio: 0.5,
  keys: 100_000,
  valueSize: 1024,
  dist: 'uniform',
  zipfS: 0.99,
  warmupS: 2,
  durationS: 5,
  preload: true,
  seed: 1,
  tickMs: 1,
  backlogMax: 100_000,
};

export const openLoopLimits = {
  rateMax: 5_000_000,
  tickMsMax: 100,
  backlogMaxMax: 1_000_000,
  /** First ring size per connection; it doubles up to backlogMax. */
  ringInitial: 1024,
  /** A connection whose socket holds this many unflushed bytes gets no more until it drains. */
  writeBufferBytesMax: 256 * 1024,
  /** One write carries at most this many bytes (a batch after a drain is cut in pieces). */
  writeBatchBytesMax: 64 * 1024,
  /** Requests one tick schedules at most (a tick very late catches up over the next ones). */
  scheduleTickMax: 200_000,
} as const;

export function validateOpenLoopSettings(s: OpenLoopSettings): void {
  validateSettings({ ...s, maxRequests: Number.MAX_SAFE_INTEGER });
  const L = openLoopLimits;
  assert(s.mode === 'open' || s.mode === 'closed', `mode ${String(s.mode)}`);
  assert(s.mode === 'closed' || (s.rate > 0 && s.rate <= L.rateMax), `rate ${s.rate} not in (0, ${L.rateMax}]`);
  assert(s.tickMs >= 1 && s.tickMs <= L.tickMsMax, `tick ${s.tickMs} ms not in [1, ${L.tickMsMax}]`);
  assert(Number.isInteger(s.backlogMax) && s.backlogMax >= 1 && s.backlogMax <= L.backlogMaxMax, `backlog max ${s.backlogMax}`);
}

// ---- reply parser ------------------------------------------------------------------------

/** What a reply says (the parser's verdict; whether it answers the right request is the caller's). */
export const ReplyKind = {
  /** VALUE <key> <flags> <bytes>\r\n<data>\r\nEND\r\n */
  Hit: 0,
  /** END\r\n */
  Miss: 1,
  /** STORED\r\n */
  Stored: 2,
  /** SERVER_ERROR busy\r\n: refused by admission control */
  Busy: 3,
  /** ERROR, CLIENT_ERROR ..., any other SERVER_ERROR ..., NOT_STORED, anything else */
  Error: 4,
} as const;
export type ReplyKind = (typeof ReplyKind)[keyof typeof ReplyKind];

const END_LINE = Buffer.from('END\r\n', 'latin1');
const STORED_LINE = Buffer.from('STORED\r\n', 'latin1');
const BUSY_PREFIX = Buffer.from('SERVER_ERROR busy', 'latin1');

/** `buf[at..]` starts with `word`. */
function startsWith(buf: Buffer, at: number, word: Buffer): boolean {
  return buf.length - at >= word.length && buf.compare(word, 0, word.length, at, at + word.length) === 0;
}

/**
 * Incremental parser of memcached text replies to `get` and `set`: feed it the socket's
 * chunks as they come (a reply may span chunks; a chunk may hold many replies). VALUE blocks
 * are skipped by their byte count, so data holding "END\r\n" is data.
 */
export class ReplyParser {
  private rx: Buffer | null = null;
  /** Why the stream is out of step (malformed); once set, feed() parses nothing more. */
  broken: string | undefined;
  /** The reply being reported to the callback: its buffer, first line's start and '\n'. */
  private buf: Buffer = END_LINE;
  private lineStart = 0;
  private lineEnd = 0;
  /** Data bytes of the VALUE being reported (Hit only). */
  dataBytes = 0;

  constructor(private readonly pendingBytesMax: number = loadLimits.rxBytesMax) {}

  /** Bytes held of an incomplete reply. */
  get pendingBytes(): number {
    return this.rx ? this.rx.length : 0;
  }

  /** The first line of the reply being reported, without CRLF (for error samples). */
  line(charsMax = 120): string {
    return this.buf.toString('latin1', this.lineStart, Math.min(this.lineEnd, this.lineStart + charsMax)).trimEnd();
  }

  /**
   * Parses every complete reply in the bytes held plus `chunk`, calling `onReply` for each in
   * order; `onReply` returning false stops the parse (the caller gave up on this stream).
   * Returns the replies reported, or -1 when the stream is malformed (see `broken`).
   */
  feed(chunk: Buffer, onReply: (kind: ReplyKind) => boolean): number {
    if (this.broken !== undefined) return -1;
    const buf = this.rx ? Buffer.concat([this.rx, chunk]) : chunk;
    this.rx = null;
    const len = buf.length;
    let off = 0;
    let n = 0;
    while (off < len) {
      const nl = buf.indexOf(10, off);
      if (nl < 0) break;
      let end = nl + 1;
      let kind: ReplyKind;
      const b0 = buf[off];
      if (b0 === 86 /* V */) {
        const bytes = valueBytes(buf, off, nl);
        if (bytes < 0) return this.fail(`malformed VALUE line ${JSON.stringify(buf.toString('latin1', off, Math.min(nl, off + 80)))}`);
        const dataEnd = nl + 1 + bytes;
        if (dataEnd + 2 + END_LINE.length > len) break; // data, \r\n, END\r\n not all here yet
        if (buf[dataEnd] !== 13 || buf[dataEnd + 1] !== 10 || !startsWith(buf, dataEnd + 2, END_LINE)) {
          return this.fail('VALUE data not followed by \\r\\nEND\\r\\n');
        }
        end = dataEnd + 2 + END_LINE.length;
        kind = ReplyKind.Hit;
        this.dataBytes = bytes;
      } else if (nl - off + 1 === END_LINE.length && startsWith(buf, off, END_LINE)) {
        kind = ReplyKind.Miss;
      } else if (nl - off + 1 === STORED_LINE.length && startsWith(buf, off, STORED_LINE)) {
        kind = ReplyKind.Stored;
      } else if (startsWith(buf, off, BUSY_PREFIX) && (buf[off + BUSY_PREFIX.length] === 13 || buf[off + BUSY_PREFIX.length] === 10 || buf[off + BUSY_PREFIX.length] === 32)) {
        kind = ReplyKind.Busy;
      } else {
        kind = ReplyKind.Error;
      }
      this.buf = buf;
      this.lineStart = off;
      this.lineEnd = nl;
      n++;
      off = end;
      if (!onReply(kind)) return n;
    }
    if (off < len) {
      if (len - off > this.pendingBytesMax) return this.fail(`more than ${this.pendingBytesMax} unparsed reply bytes`);
      this.rx = buf.subarray(off);
    }
    return n;
  }

  private fail(why: string): -1 {
    this.broken = why;
    this.rx = null;
    return -1;
  }
}

// ---- report ------------------------------------------------------------------------------

export interface LatencySummaryMs {
  count: number;
  p50: number;
  p99: number;
  p999: number;
  max: number;
  mean: number;
}

/** One second of the measured window. */
export interface OpenLoopSecond {
  /** Offered (intended in this second), sent (written in it), replies that arrived in it. */
  offered: number;
  sent: number;
  ok: number;
  busy: number;
  errors: number;
  /** p99 of the admitted replies that arrived in this second, ms (null: none). */
  p99Ms: number | null;
  /** Requests held by the generator at the second's last tick: sent and unanswered, and unsent. */
  inflight: number;
  unsent: number;
}

export interface OpenLoopReport {
  settings: OpenLoopSettings;
  preload: { keys: number; seconds: number; errors: number };
  /** Wall-clock bounds of the measured window, ms since the epoch. */
  windowStartMs: number;
  windowEndMs: number;
  measuredS: number;
  /** Requests whose intended send time is in the window (open mode); sent ones (closed mode). */
  offered: number;
  /** Requests written to a socket in the window. */
  sent: number;
  /** Requests not scheduled because their connection held `backlogMax` (or was lost). */
  droppedByGenerator: number;
  /** Replies in the window: ok = hits + misses + stored (the goodput). */
  ok: number;
  hits: number;
  misses: number;
  stored: number;
  busy: number;
  errors: number;
  errorSamples: string[];
  offeredPerS: number;
  sentPerS: number;
  goodputPerS: number;
  busyPerS: number;
  /** Latency of admitted (ok) replies and of busy replies, from the intended send time. */
  admittedMs: LatencySummaryMs;
  busyMs: LatencySummaryMs;
  admittedHistogramNs: HistogramSnapshot;
  busyHistogramNs: HistogramSnapshot;
  /** How late the scheduler ran: per tick, now - intended time of the first request it scheduled. */
  tickLagMs: LatencySummaryMs;
  /** Requests sent and unanswered (over all connections), sampled every tick of the window. */
  inflight: { mean: number; max: number; atEnd: number };
  /** Requests scheduled but held unsent (socket buffer full: the server is not reading). */
  unsent: { mean: number; max: number; atEnd: number };
  /** Age of the oldest request still unanswered when the window closed, ms (0 when none). */
  oldestUnansweredMs: number;
  /** Writes deferred because a socket held writeBufferBytesMax (TCP backpressure), in the window. */
  backpressureStalls: number;
  /** The generator itself over the window: CPU (cores) and event-loop utilization (0..1). */
  generator: { cpuCores: number; eventLoopUtilization: number };
  seconds: OpenLoopSecond[];
  stoppedBy: 'duration' | 'connections-lost';
}

function summary(h: Histogram): LatencySummaryMs {
  const ms = (ns: number) => ns / 1e6;
  return {
    count: h.count,
    p50: ms(h.quantile(0.5)),
    p99: ms(h.quantile(0.99)),
    p999: ms(h.quantile(0.999)),
    max: ms(h.max),
    mean: ms(h.mean()),
  };
}

// ---- the run -----------------------------------------------------------------------------

/** One connection: a ring of requests [head, head + inflight) sent, then `unsent` not yet written. */
class OLConn {
  kinds: Uint8Array;
  keys: Uint32Array;
  intended: Float64Array;
  head = 0;
  inflight = 0;
  unsent = 0;
  alive = true;
  readonly parser = new ReplyParser();

  constructor(
    readonly socket: net.Socket,
    private readonly capMax: number,
  ) {
    const cap = Math.min(openLoopLimits.ringInitial, capMax);
    this.kinds = new Uint8Array(cap);
    this.keys = new Uint32Array(cap);
    this.intended = new Float64Array(cap);
  }

  get held(): number {
    return this.inflight + this.unsent;
  }

  /** Appends an unsent request; false when the connection holds capMax already. */
  push(kind: number, key: number, intendedNs: number): boolean {
    let cap = this.kinds.length;
    if (this.held === cap) {
      if (cap >= this.capMax) return false;
      this.grow(Math.min(cap * 2, this.capMax));
      cap = this.kinds.length;
    }
    const i = (this.head + this.held) % cap;
    this.kinds[i] = kind;
    this.keys[i] = key;
    this.intended[i] = intendedNs;
    this.unsent++;
    return true;
  }

  private grow(cap: number): void {
    const old = this.kinds.length;
    const kinds = new Uint8Array(cap);
    const keys = new Uint32Array(cap);
    const intended = new Float64Array(cap);
    for (let j = 0; j < this.held; j++) {
      const i = (this.head + j) % old;
      kinds[j] = this.kinds[i]!;
      keys[j] = this.keys[i]!;
      intended[j] = this.intended[i]!;
    }
    this.kinds = kinds;
    this.keys = keys;
    this.intended = intended;
    this.head = 0;
  }
}

type Phase = 'preload' | 'warmup' | 'measure' | 'done';

class OpenLoopRun {
  private readonly rng: () => number;
  private readonly chooseKey: () => number;
  private readonly blobs: RequestBlobs;
  private conns: OLConn[] = [];
  private phase: Phase = 'preload';
  private readonly intervalNs: number;
  private t0Ns = 0;
  private scheduled = 0;
  private preloadNext = 0;
  /** Preload sets refused as busy, to send again. */
  private readonly preloadRetry: number[] = [];
  private preloadAcked = 0;
  private preloadErrors = 0;
  private preloadStartNs = 0;
  private preloadEndNs = 0;
  private mStartNs = 0;
  private mEndNs = 0;
  private windowStartMs = 0;
  private windowEndMs = 0;
  // Totals over every connection, kept as they change.
  private inflight = 0;
  private unsent = 0;
  // Counters of the measured window.
  private offered = 0;
  private sent = 0;
  private dropped = 0;
  private ok = 0;
  private hits = 0;
  private misses = 0;
  private stored = 0;
  private busy = 0;
  private errors = 0;
  private stalls = 0;
  private readonly errorSamples: string[] = [];
  private readonly admitted = new Histogram();
  private readonly busyHist = new Histogram();
  private readonly tickLag = new Histogram();
  private samples = 0;
  private inflightSum = 0;
  private inflightMax = 0;
  private unsentSum = 0;
  private unsentMax = 0;
  private oldestUnansweredNs = 0;
  // The current second of the window, and the ones before.
  private secIndex = 0;
  private sec: OpenLoopSecond = OpenLoopRun.emptySecond();
  private secHist = new Histogram();
  private readonly seconds: OpenLoopSecond[] = [];
  private cpuStart: NodeJS.CpuUsage = process.cpuUsage();
  private eluStart = performance.eventLoopUtilization();
  private cpuCores = 0;
  private elu = 0;
  private stoppedBy: OpenLoopReport['stoppedBy'] = 'duration';
  private timers: NodeJS.Timeout[] = [];
  private ticker: NodeJS.Timeout | undefined;
  private onPreloaded: ((error?: Error) => void) | undefined;
  private onDone: (() => void) | undefined;

  constructor(private readonly s: OpenLoopSettings) {
    this.rng = makeRng(s.seed);
    this.chooseKey = makeKeyChooser(s.keys, s.dist, s.zipfS, this.rng);
    this.blobs = buildBlobs(s.keys, s.valueSize);
    this.intervalNs = s.mode === 'open' ? 1e9 / s.rate : 0;
  }

  private static emptySecond(): OpenLoopSecond {
    return { offered: 0, sent: 0, ok: 0, busy: 0, errors: 0, p99Ms: null, inflight: 0, unsent: 0 };
  }

  private nowNs(): number {
    return performance.now() * 1e6;
  }

  async run(): Promise<OpenLoopReport> {
    const sockets = await Promise.all(Array.from({ length: this.s.conns }, () => connect(this.s.host, this.s.port)));
    this.conns = sockets.map((socket) => new OLConn(socket, Math.max(this.s.backlogMax, this.s.depth, loadLimits.preloadDepth)));
    for (const c of this.conns) this.attach(c);
    try {
      if (this.s.preload) await this.preload();
      const done = new Promise<void>((resolve) => (this.onDone = resolve));
      this.phase = 'warmup';
      this.t0Ns = this.nowNs();
      this.ticker = setInterval(() => this.tick(), this.s.tickMs);
      if (this.s.mode === 'closed') for (const c of this.conns) this.fillClosed(c);
      this.timers.push(
        setTimeout(() => {
          if (this.phase !== 'warmup') return; // every connection was lost during warm-up
          this.openWindow();
          this.timers.push(setTimeout(() => this.stop('duration'), this.s.durationS * 1000));
        }, this.s.warmupS * 1000),
      );
      await done;
    } finally {
      if (this.ticker) clearInterval(this.ticker);
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
      for (const c of this.conns) this.fillClosed(c);
    });
  }

  private openWindow(): void {
    this.mStartNs = this.nowNs();
    this.windowStartMs = Date.now();
    this.cpuStart = process.cpuUsage();
    this.eluStart = performance.eventLoopUtilization();
    this.phase = 'measure';
  }

  private stop(reason: OpenLoopReport['stoppedBy']): void {
    if (this.phase === 'done') return;
    const now = this.nowNs();
    if (this.phase === 'measure') {
      this.mEndNs = now;
      this.windowEndMs = Date.now();
      const cpu = process.cpuUsage(this.cpuStart);
      const seconds = Math.max(1e-9, (this.mEndNs - this.mStartNs) / 1e9);
      this.cpuCores = (cpu.user + cpu.system) / 1e6 / seconds;
      this.elu = performance.eventLoopUtilization(this.eluStart).utilization;
      this.closeSecond();
      for (const c of this.conns) {
        if (c.held > 0) this.oldestUnansweredNs = Math.max(this.oldestUnansweredNs, now - c.intended[c.head]!);
      }
    } else {
      this.mStartNs = this.mEndNs = now; // the window never opened
      this.windowStartMs = this.windowEndMs = Date.now();
    }
    this.stoppedBy = reason;
    this.phase = 'done';
    this.onDone?.();
  }

  private attach(c: OLConn): void {
    c.socket.on('data', (chunk: Buffer) => this.onData(c, chunk));
    c.socket.on('drain', () => this.send(c));
    const lost = (why: string) => {
      if (!c.alive) return;
      this.lose(c, `connection lost: ${why}`);
    };
    c.socket.on('error', (e) => lost(e.message));
    c.socket.on('close', () => lost('closed by peer'));
  }

  private lose(c: OLConn, why: string): void {
    if (this.phase === 'done') return;
    c.alive = false;
    c.socket.destroy();
    this.fail(why);
    this.inflight -= c.inflight;
    this.unsent -= c.unsent;
    c.inflight = 0;
    c.unsent = 0;
    if (!this.conns.every((x) => !x.alive)) return;
    if (this.phase === 'preload') this.onPreloaded?.(new Error(`every connection was lost during preload: ${this.errorSamples.join('; ')}`));
    else this.stop('connections-lost');
  }

  private fail(sample: string): void {
    if (this.phase === 'measure') {
      this.errors++;
      this.sec.errors++;
    }
    if (this.errorSamples.length < loadLimits.errorSamplesMax) this.errorSamples.push(`${this.phase}: ${sample}`);
  }

  // ---- scheduling and sending ----

  private tick(): void {
    if (this.phase === 'done') return;
    const now = this.nowNs();
    // Bounded: at most one pass per second of a window at most durationSMax long.
    while (this.phase === 'measure' && now - this.mStartNs >= (this.secIndex + 1) * 1e9 && this.secIndex < loadLimits.durationSMax) this.closeSecond();
    if (this.s.mode === 'open') this.schedule(now);
    if (this.phase === 'measure') {
      this.samples++;
      this.inflightSum += this.inflight;
      this.unsentSum += this.unsent;
      if (this.inflight > this.inflightMax) this.inflightMax = this.inflight;
      if (this.unsent > this.unsentMax) this.unsentMax = this.unsent;
      this.sec.inflight = this.inflight;
      this.sec.unsent = this.unsent;
    }
  }

  /** Schedules every request due by `now` (at most scheduleTickMax), then writes each connection's batch. */
  private schedule(now: number): void {
    const due = Math.min(Math.floor((now - this.t0Ns) / this.intervalNs) + 1, this.scheduled + openLoopLimits.scheduleTickMax);
    if (due <= this.scheduled) return;
    const measuring = this.phase === 'measure';
    const firstIntended = this.t0Ns + this.scheduled * this.intervalNs;
    if (measuring) this.tickLag.record(now - firstIntended);
    const conns = this.conns;
    const n = conns.length;
    for (let i = this.scheduled; i < due; i++) {
      const intended = this.t0Ns + i * this.intervalNs;
      const inWindow = measuring && intended >= this.mStartNs;
      if (inWindow) {
        this.offered++;
        this.sec.offered++;
      }
      const kind = this.rng() < this.s.getRatio ? kindGet : kindSet;
      const key = this.chooseKey();
      const c = conns[i % n]!;
      if (!c.alive || !c.push(kind, key, intended)) {
        if (inWindow) this.dropped++;
        continue;
      }
      this.unsent++;
    }
    this.scheduled = due;
    for (let j = 0; j < n; j++) if (conns[j]!.unsent > 0) this.send(conns[j]!);
  }

  /** Writes the connection's unsent requests, a batch per write, while its socket takes them. */
  private send(c: OLConn): void {
    if (!c.alive || this.phase === 'done') return;
    const b = this.blobs;
    const L = openLoopLimits;
    const socket = c.socket;
    // Bounded: each pass writes at least one request, and unsent only shrinks here.
    while (c.unsent > 0) {
      if (socket.writableLength >= L.writeBufferBytesMax) {
        if (this.phase === 'measure') this.stalls++;
        return; // 'drain' calls send again
      }
      const cap = c.kinds.length;
      const pieces: Buffer[] = [];
      let bytes = 0;
      let k = 0;
      while (k < c.unsent && bytes < L.writeBatchBytesMax) {
        const i = (c.head + c.inflight + k) % cap;
        const key = c.keys[i]!;
        if (c.kinds[i] === kindGet) {
          const p = b.getBlob.subarray(b.getOff[key]!, b.getOff[key + 1]!);
          pieces.push(p);
          bytes += p.length;
        } else {
          const p = b.setBlob.subarray(b.setOff[key]!, b.setOff[key + 1]!);
          pieces.push(p, b.valueCrlf);
          bytes += p.length + b.valueCrlf.length;
        }
        k++;
      }
      c.unsent -= k;
      c.inflight += k;
      this.unsent -= k;
      this.inflight += k;
      if (this.phase === 'measure') {
        this.sent += k;
        this.sec.sent += k;
      }
      socket.write(pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces, bytes));
    }
  }

  /** Closed loop (preload, or closed mode): tops the connection up to its depth and sends. */
  private fillClosed(c: OLConn): void {
    if (!c.alive) return;
    const preload = this.phase === 'preload';
    const depth = preload ? loadLimits.preloadDepth : this.s.depth;
    const now = this.nowNs();
    while (c.held < depth) {
      let kind: number;
      let key: number;
      if (preload) {
        const retry = this.preloadRetry.pop();
        if (retry === undefined && this.preloadNext >= this.s.keys) break;
        kind = kindSet;
        key = retry ?? this.preloadNext++;
      } else if (this.phase === 'warmup' || this.phase === 'measure') {
        kind = this.rng() < this.s.getRatio ? kindGet : kindSet;
        key = this.chooseKey();
        if (this.phase === 'measure') {
          this.offered++;
          this.sec.offered++;
        }
      } else {
        break;
      }
      assert(c.push(kind, key, now), 'closed-loop ring overflow');
      this.unsent++;
    }
    this.send(c);
  }

  // ---- replies ----

  private onData(c: OLConn, chunk: Buffer): void {
    if (!c.alive || this.phase === 'done') return;
    const now = this.nowNs();
    const r = c.parser.feed(chunk, (kind) => this.complete(c, kind, now));
    if (r < 0) {
      this.lose(c, c.parser.broken ?? 'malformed reply');
      return;
    }
    if (!c.alive) return;
    if (this.phase === 'preload') {
      if (this.preloadAcked === this.s.keys) {
        this.onPreloaded?.();
        return; // run() moves on to the warm-up
      }
      this.fillClosed(c);
    } else if (this.s.mode === 'closed') {
      this.fillClosed(c);
    }
  }

  /** Accounts one reply against the connection's oldest request; false when out of step. */
  private complete(c: OLConn, reply: ReplyKind, now: number): boolean {
    if (c.inflight === 0) {
      this.lose(c, `reply ${JSON.stringify(c.parser.line())} with no request in flight`);
      return false;
    }
    const i = c.head;
    const kind = c.kinds[i]!;
    const key = c.keys[i]!;
    const intended = c.intended[i]!;
    c.head = (i + 1) % c.kinds.length;
    c.inflight--;
    this.inflight--;
    if ((kind === kindGet && reply === ReplyKind.Stored) || (kind === kindSet && (reply === ReplyKind.Hit || reply === ReplyKind.Miss))) {
      this.lose(c, `reply ${JSON.stringify(c.parser.line())} does not answer a ${kind === kindGet ? 'get' : 'set'}`);
      return false;
    }
    if (this.phase === 'preload') {
      if (reply === ReplyKind.Busy) {
        // A node refusing in overload did not store it: set it again (as a client would).
        this.preloadRetry.push(key);
        return true;
      }
      this.preloadAcked++;
      if (reply !== ReplyKind.Stored) {
        this.preloadErrors++;
        if (this.errorSamples.length < loadLimits.errorSamplesMax) this.errorSamples.push(`preload: ${c.parser.line()}`);
      }
      return true;
    }
    if (this.phase !== 'measure') return true;
    const latency = now - intended;
    switch (reply) {
      case ReplyKind.Hit:
        if (c.parser.dataBytes !== this.s.valueSize) {
          this.fail(`value of ${c.parser.dataBytes} bytes, expected ${this.s.valueSize}`);
          return true;
        }
        this.hits++;
        break;
      case ReplyKind.Miss:
        this.misses++;
        break;
      case ReplyKind.Stored:
        this.stored++;
        break;
      case ReplyKind.Busy:
        this.busy++;
        this.sec.busy++;
        this.busyHist.record(latency);
        return true;
      default:
        this.fail(c.parser.line() || 'empty reply line');
        return true;
    }
    this.ok++;
    this.sec.ok++;
    this.admitted.record(latency);
    this.secHist.record(latency);
    return true;
  }

  private closeSecond(): void {
    const h = this.secHist;
    this.sec.p99Ms = h.count === 0 ? null : h.quantile(0.99) / 1e6;
    this.seconds.push(this.sec);
    this.secIndex++;
    this.sec = OpenLoopRun.emptySecond();
    this.secHist = new Histogram();
  }

  private report(): OpenLoopReport {
    const measuredS = Math.max(1e-9, (this.mEndNs - this.mStartNs) / 1e9);
    const samples = Math.max(1, this.samples);
    return {
      settings: this.s,
      preload: {
        keys: this.s.preload ? this.s.keys : 0,
        seconds: this.s.preload ? (this.preloadEndNs - this.preloadStartNs) / 1e9 : 0,
        errors: this.preloadErrors,
      },
      windowStartMs: this.windowStartMs,
      windowEndMs: this.windowEndMs,
      measuredS,
      offered: this.offered,
      sent: this.sent,
      droppedByGenerator: this.dropped,
      ok: this.ok,
      hits: this.hits,
      misses: this.misses,
      stored: this.stored,
      busy: this.busy,
      errors: this.errors,
      errorSamples: this.errorSamples,
      offeredPerS: this.offered / measuredS,
      sentPerS: this.sent / measuredS,
      goodputPerS: this.ok / measuredS,
      busyPerS: this.busy / measuredS,
      admittedMs: summary(this.admitted),
      busyMs: summary(this.busyHist),
      admittedHistogramNs: this.admitted.snapshot(),
      busyHistogramNs: this.busyHist.snapshot(),
      tickLagMs: summary(this.tickLag),
      inflight: { mean: this.inflightSum / samples, max: this.inflightMax, atEnd: this.inflight },
      unsent: { mean: this.unsentSum / samples, max: this.unsentMax, atEnd: this.unsent },
      oldestUnansweredMs: this.oldestUnansweredNs / 1e6,
      backpressureStalls: this.stalls,
      generator: { cpuCores: this.cpuCores, eventLoopUtilization: this.elu },
      seconds: this.seconds,
      stoppedBy: this.stoppedBy,
    };
  }
}

/** Runs the generator in this process (the CLI does this; benchmarks use `runOpenLoopInChild`). */
export async function runOpenLoop(settings: OpenLoopSettings): Promise<OpenLoopReport> {
  validateOpenLoopSettings(settings);
  return new OpenLoopRun(settings).run();
}

export const openLoopCliPath = path.join(repoRoot, 'dist', 'bench', 'openloop.js');

/** The CLI arguments that reproduce `settings`. */
export function openLoopArgs(s: OpenLoopSettings): string[] {
  return [
    '--host', s.host,
    '--port', String(s.port),
    '--mode', s.mode,
    '--rate', String(s.rate),
    '--conns', String(s.conns),
    '--depth', String(s.depth),
    ...workloadArgs(s),
    '--tick-ms', String(s.tickMs),
    '--backlog-max', String(s.backlogMax),
    ...(s.preload ? [] : ['--no-preload']),
  ];
}

/** Runs the generator as a separate Node process and returns its report (killed by PID if it overruns). */
export function runOpenLoopInChild(settings: OpenLoopSettings, options: ChildOptions = {}): Promise<OpenLoopReport> {
  validateOpenLoopSettings(settings);
  const budgetMs = loadLimits.preloadMsMax + (settings.warmupS + settings.durationS) * 1000 + 15_000;
  return runJsonChild<OpenLoopReport>('openloop', openLoopCliPath, [...openLoopArgs(settings), '--json'], budgetMs, options);
}
