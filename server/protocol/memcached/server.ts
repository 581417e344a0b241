// The memcached text-protocol listener: one Connection per socket. A connection parses
// every complete command of a read, executes them in order, and writes all replies of
// that read with one syscall. Replies that wait (a write becoming durable) hold their
// place in an ordered queue, so replies always leave in request order.
//
// Bounds: a line without \n (2 KiB, or maxGetLineBytes for get), replies waiting per
// connection (maxPipeline) and reply bytes made or buffered (maxConnReplyBytes): past the
// last two the connection stops reading until the client catches up. A client that does
// not catch up within requestTimeoutMs is dropped, as is one whose partial request does
// not complete in that time (slow loris); idleTimeoutMs drops silent connections.
//
// Overload: each command but version/stats/quit passes the node's Admission first; a
// refused one is answered `SERVER_ERROR busy` without being run (overload.ts).
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Maybe } from '../../kv/local-kv.js';
import type { Command } from './commands.js';
import { execute, type McContext, type Reply } from './execute.js';
import { parseCommand, skimCommand, type ParserLimits, type Skim } from './parser.js';
import { listen } from '../../util/listen.js';
import { MC_BUSY, type Admission } from '../../overload.js';
import type { NodeMetrics } from '../../metrics.js';

export interface McServerOptions {
  host: string;
  port: number;
  limits: ParserLimits;
  maxConns: number;
  maxConnReplyBytes: number;
  /** Commands whose replies may wait at once on one connection before reading pauses. */
  maxPipeline?: number;
  /** Overload control shared by every front end; absent = admit everything. */
  admission?: Admission;
  /** memcached's idle_timeout: a connection with no traffic either way for this long is closed; 0 = never. */
  idleTimeoutMs?: number;
  /**
   * A request that has begun to arrive must arrive whole, and replies the node has made
   * must be taken by the client, within this long, or the connection is closed (slow
   * senders, clients that stop reading, peers that vanished mid-request); 0 = never.
   */
  requestTimeoutMs?: number;
  /** Request counts and durations (GET /metrics); absent = not measured. */
  metrics?: NodeMetrics;
}

/** Commands an operator needs during an overload: never refused, never counted in flight. */
const ALWAYS_ADMITTED: ReadonlySet<Command['kind']> = new Set(['version', 'stats', 'quit', 'verbosity', 'mn']);

export interface ConnectionCounters {
  curr_connections: number;
  total_connections: number;
  rejected_connections: number;
  /** Connections closed by idle_timeout or the request timeout. */
  timed_out_connections: number;
  bytes_read: number;
  bytes_written: number;
}

interface Slot {
  reply: Reply | undefined;
  ready: boolean;
}

const EMPTY = Buffer.alloc(0);
const BUSY_BYTES = Buffer.from(MC_BUSY, 'latin1');
/** Refusals in a row go out as one slice of this (no part per refusal). */
const BUSY_RUN = 1024;
const BUSY_BLOCK = Buffer.from(MC_BUSY.repeat(BUSY_RUN), 'latin1');
/** Idle time before TCP keepalive probes a silent peer. */
const KEEPALIVE_MS = 60_000;

/** Replies of one turn up to this size are copied into one buffer; larger ones are written as they are. */
const CONCAT_MAX_BYTES = 64 * 1024;

function replyBytes(parts: Array<string | Buffer>): Buffer {
  let size = 0;
  for (const p of parts) size += typeof p === 'string' ? p.length : p.length;
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  for (const p of parts) {
    if (typeof p === 'string') at += out.write(p, at, 'latin1');
    else at += p.copy(out, at);
  }
  return out;
}

/** Appends a reply's parts to `out`; returns their size in bytes. */
function pushReply(out: Array<string | Buffer>, r: Reply): number {
  if (typeof r === 'string') {
    if (r.length > 0) out.push(r);
    return r.length;
  }
  if (Buffer.isBuffer(r)) {
    out.push(r);
    return r.length;
  }
  let n = 0;
  for (const p of r) {
    out.push(p);
    n += p.length;
  }
  return n;
}

class Connection {
  private buf: Buffer = EMPTY;
  private off = 0;
  /** Bytes of a refused data block still to discard. */
  private swallow = 0;
  /** Replies ready to write at the end of this turn. */
  private out: Array<string | Buffer> = [];
  /** Refusals not yet in `out` (skimmed in a row while no reply waited). */
  private busyRun = 0;
  /** Where the last skimmed command ended (refusals in overload). */
  private readonly skim: Skim = { next: 0, block: 0, noreply: false, command: '' };
  /** Bytes in `out`: one read of small requests (64 KiB of `get big`) must not build gigabytes of replies. */
  private outBytes = 0;
  /** Replies still waiting, in request order; `out` may only grow when this is empty. */
  private readonly queue: Slot[] = [];
  private quitting = false;
  private closed = false;
  private flushScheduled = false;
  private paused = false;
  private ending = false;
  /** Since when (coarse clock) a partial request has waited for its next byte without one completing; 0 = none. */
  partialSince = 0;
  /** Since when reading has been paused because the client does not take its replies; 0 = not paused. */
  pausedSince = 0;

  constructor(
    private readonly socket: net.Socket,
    private readonly ctx: McContext,
    private readonly opts: McServerOptions,
    private readonly counters: ConnectionCounters,
    /** The server's coarse clock (ms), advanced once a second: cheap enough to read per read. */
    private readonly coarseNow: () => number,
  ) {
    socket.setNoDelay(true);
    // A peer that vanished without a FIN (power loss, a cut cable) is found by TCP keepalive.
    socket.setKeepAlive(true, KEEPALIVE_MS);
    if (opts.idleTimeoutMs) {
      // Node resets this timer on every read and write of the socket.
      socket.setTimeout(opts.idleTimeoutMs, () => this.timeOut());
    }
    socket.on('data', (d: Buffer) => this.onData(d));
    socket.on('drain', () => this.maybeResume());
    socket.on('error', () => socket.destroy());
    socket.on('close', () => {
      this.closed = true;
    });
    // The client sent FIN (`printf ... | nc`): answer what it asked, then close our side.
    socket.on('end', () => {
      this.quitting = true;
      this.flush();
    });
  }

  private onData(chunk: Buffer): void {
    this.counters.bytes_read += chunk.length;
    // After quit (or during shutdown) input is ignored, never buffered.
    if (this.quitting) return;
    if (this.swallow > 0) {
      const n = Math.min(this.swallow, chunk.length);
      this.swallow -= n;
      chunk = chunk.subarray(n);
      if (chunk.length === 0) return;
    }
    if (this.off >= this.buf.length) {
      this.buf = chunk;
      this.off = 0;
    } else {
      this.buf = Buffer.concat([this.buf.subarray(this.off), chunk]);
      this.off = 0;
    }
    this.process();
    this.flush();
  }

  /** Parse and run every complete command in the buffer. */
  private process(): void {
    const maxPipeline = this.opts.maxPipeline ?? 1024;
    const startOff = this.off;
    this.parse(maxPipeline);
    // The clock of a partial request starts when the request before it completed: a
    // sender that trickles bytes without finishing a request is not progressing.
    const pending = this.off < this.buf.length || this.swallow > 0;
    if (!pending) this.partialSince = 0;
    else if (this.off !== startOff || this.partialSince === 0) this.partialSince = this.coarseNow();
  }

  private parse(maxPipeline: number): void {
    while (!this.quitting && !this.closed && this.off < this.buf.length) {
      if (this.queue.length >= maxPipeline) {
        this.pause();
        return;
      }
      if (this.outBytes >= this.opts.maxConnReplyBytes) {
        // Send what is made; if the client is not taking it, read no further for now.
        this.flush();
        if (this.paused) return;
      }
      // In overload the rest of this turn is refused: frame each command without building it.
      const admission = this.opts.admission;
      if (admission !== undefined && admission.shedding() && skimCommand(this.buf, this.off, this.opts.limits, this.skim)) {
        const k = this.skim;
        this.off = k.next;
        if (k.block > 0) {
          const n = Math.min(this.buf.length - this.off, k.block);
          this.off += n;
          this.swallow = k.block - n;
        }
        admission.shed();
        this.opts.metrics?.mcShed(k.command);
        if (!k.noreply) {
          if (this.queue.length === 0) this.busyRun++;
          else this.queue.push({ reply: BUSY_BYTES, ready: true });
        }
        continue;
      }
      const r = parseCommand(this.buf, this.off, this.opts.limits);
      if (r.type === 'need-more') break;
      if (r.type === 'close') {
        this.flush();
        this.socket.destroy();
        this.closed = true;
        return;
      }
      this.off = r.next;
      if (r.swallow !== undefined) {
        // A refused data block: drop what we have of it, and the rest as it arrives.
        const have = this.buf.length - this.off;
        const n = Math.min(have, r.swallow);
        this.off += n;
        this.swallow = r.swallow - n;
      }
      if (r.type === 'error') {
        this.opts.metrics?.mcBadLine();
        this.emit(r.reply);
        continue;
      }
      this.run(r.command);
    }
    if (this.off >= this.buf.length) {
      this.buf = EMPTY;
      this.off = 0;
    }
  }

  private run(cmd: Command): void {
    const metrics = this.opts.metrics;
    const startMs = metrics === undefined ? 0 : performance.now();
    const admission = ALWAYS_ADMITTED.has(cmd.kind) ? undefined : this.opts.admission;
    if (admission !== undefined && !admission.admit()) {
      metrics?.mcBusy(cmd, startMs);
      // Refused before any work. A noreply command stays silent, as memcached keeps it
      // silent on its own SERVER_ERRORs (out of memory); a meta command's q flag does not
      // hide errors.
      this.emit('noreply' in cmd && cmd.noreply ? '' : MC_BUSY);
      return;
    }
    let reply: Maybe<Reply>;
    try {
      reply = this.ctx.dispatch ? this.ctx.dispatch(cmd) : execute(cmd, this.ctx);
    } catch (e) {
      reply = `SERVER_ERROR ${e instanceof Error ? e.message.replace(/[\r\n]/g, ' ') : 'internal error'}\r\n`;
    }
    if (admission !== undefined) {
      if (reply instanceof Promise) {
        const done = (): void => admission.done();
        reply.then(done, done);
      } else admission.done();
    }
    if (cmd.kind === 'quit') this.quitting = true;
    this.emit(reply, metrics === undefined ? undefined : cmd, startMs);
  }

  /** With `cmd`: the reply of that command, counted in metrics once it is ready. */
  private emit(reply: Maybe<Reply>, cmd?: Command, startMs = 0): void {
    if (this.busyRun > 0) this.takeBusyRun();
    if (!(reply instanceof Promise)) {
      if (cmd !== undefined) this.opts.metrics!.mcDone(cmd, startMs, reply);
      if (this.queue.length === 0) this.outBytes += pushReply(this.out, reply);
      else this.queue.push({ reply, ready: true });
      return;
    }
    const slot: Slot = { reply: undefined, ready: false };
    this.queue.push(slot);
    reply.then(
      (r) => {
        if (cmd !== undefined) this.opts.metrics!.mcDone(cmd, startMs, r);
        slot.reply = r;
        slot.ready = true;
        this.scheduleFlush();
      },
      (e: unknown) => {
        if (cmd !== undefined) this.opts.metrics!.mcFailed(cmd, startMs);
        slot.reply = `SERVER_ERROR ${e instanceof Error ? e.message.replace(/[\r\n]/g, ' ') : 'storage failure'}\r\n`;
        slot.ready = true;
        this.scheduleFlush();
      },
    );
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      this.flush();
      // Replies drained: commands held back by the pipeline bound may run now.
      if (!this.closed && !this.quitting && this.queue.length === 0 && this.off < this.buf.length) {
        this.process();
        this.flush();
      }
      this.maybeResume();
    });
  }

  /** The refusals counted in `busyRun`, into `out` in their place. */
  private takeBusyRun(): void {
    for (let n = this.busyRun; n > 0; n -= BUSY_RUN) {
      const part = BUSY_BLOCK.subarray(0, Math.min(n, BUSY_RUN) * BUSY_BYTES.length);
      this.out.push(part);
      this.outBytes += part.length;
    }
    this.busyRun = 0;
  }

  private flush(): void {
    if (this.busyRun > 0) this.takeBusyRun();
    while (this.queue.length > 0 && this.queue[0]!.ready) {
      this.outBytes += pushReply(this.out, this.queue.shift()!.reply!);
    }
    if (this.out.length > 0 && !this.closed) {
      let ok: boolean;
      if (this.outBytes <= CONCAT_MAX_BYTES) {
        const bytes = replyBytes(this.out);
        this.counters.bytes_written += bytes.length;
        ok = this.socket.write(bytes);
      } else {
        // Large values go out as they are (one writev), not copied into one buffer first.
        this.counters.bytes_written += this.outBytes;
        this.socket.cork();
        ok = true;
        for (const p of this.out) ok = (typeof p === 'string' ? this.socket.write(p, 'latin1') : this.socket.write(p)) && ok;
        this.socket.uncork();
      }
      if (!ok) this.pause();
      if (this.socket.writableLength > this.opts.maxConnReplyBytes) this.pause();
    }
    this.out = [];
    this.outBytes = 0;
    if (this.quitting && this.queue.length === 0 && !this.ending) {
      // Close once the replies are out; unread input must not hold the socket open.
      this.ending = true;
      this.socket.once('finish', () => this.socket.destroy());
      this.socket.end();
    }
  }

  /** Shutdown: read no more commands, deliver the replies already owed, then end. */
  drainAndEnd(): Promise<void> {
    const done = new Promise<void>((resolve) => {
      if (this.closed) resolve();
      else this.socket.once('close', () => resolve());
    });
    this.quitting = true;
    this.flush();
    return done;
  }

  private pause(): void {
    if (this.paused) return;
    this.paused = true;
    this.pausedSince = this.coarseNow();
    this.partialSince = 0; // while paused the partial request waits on us, not on the client
    this.socket.pause();
  }

  /** Called once a second: close the connection if its request or its replies are stuck. */
  checkStalled(now: number, limitMs: number): void {
    if (this.closed) return;
    // Stuck on the client: paused with replies it does not take (not on our own work).
    const replyStuck = this.paused && this.pausedSince > 0 && this.socket.writableLength > 0 && now - this.pausedSince > limitMs;
    const requestStuck = this.partialSince > 0 && !this.paused && now - this.partialSince > limitMs;
    if (replyStuck || requestStuck) this.timeOut();
  }

  private timeOut(): void {
    if (this.closed) return;
    this.counters.timed_out_connections++;
    this.closed = true;
    this.socket.destroy();
  }

  private maybeResume(): void {
    const maxPipeline = this.opts.maxPipeline ?? 1024;
    if (!this.paused || this.closed) return;
    if (this.socket.writableLength > this.opts.maxConnReplyBytes || this.queue.length >= maxPipeline) return;
    this.paused = false;
    this.pausedSince = 0;
    this.socket.resume();
    if (this.off < this.buf.length) {
      this.process();
      this.flush();
    }
  }
}

export class McServer {
  readonly counters: ConnectionCounters = {
    curr_connections: 0,
    total_connections: 0,
    rejected_connections: 0,
    timed_out_connections: 0,
    bytes_read: 0,
    bytes_written: 0,
  };
  private readonly server: net.Server;
  private readonly conns = new Map<net.Socket, Connection>();
  private now = Date.now();
  private ticker: NodeJS.Timeout | undefined;

  constructor(
    private readonly ctx: McContext,
    private readonly opts: McServerOptions,
  ) {
    this.server = net.createServer({ allowHalfOpen: true }, (socket) => this.accept(socket));
  }

  private accept(socket: net.Socket): void {
    if (this.conns.size >= this.opts.maxConns) {
      // memcached's own words when it is out of connections.
      this.counters.rejected_connections++;
      socket.end('ERROR Too many open connections\r\n');
      return;
    }
    this.counters.curr_connections++;
    this.counters.total_connections++;
    this.conns.set(socket, new Connection(socket, this.ctx, this.opts, this.counters, () => this.now));
    socket.on('close', () => {
      this.counters.curr_connections--;
      this.conns.delete(socket);
    });
  }

  listen(): Promise<number> {
    const limitMs = this.opts.requestTimeoutMs ?? 0;
    this.ticker = setInterval(() => {
      this.now = Date.now();
      if (limitMs > 0) for (const c of this.conns.values()) c.checkStalled(this.now, limitMs);
    }, Math.min(1000, Math.max(50, limitMs / 4 || 1000)));
    this.ticker.unref();
    return listen(this.server, this.opts.port, this.opts.host);
  }

  /** Stop accepting; let each connection deliver the replies it owes; after `graceMs`, cut the rest. */
  async close(graceMs: number): Promise<void> {
    if (this.ticker) clearInterval(this.ticker);
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    const drained = Promise.all([...this.conns.values()].map((c) => c.drainAndEnd()));
    const timer = setTimeout(() => {
      for (const s of this.conns.keys()) s.destroy();
    }, graceMs);
    await Promise.all([closed, drained]);
    clearTimeout(timer);
  }
}
