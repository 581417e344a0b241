// The memcached text-protocol listener: one Connection per socket. A connection parses
// every complete command of a read, executes them in order, and writes all replies of
// that read with one syscall. Replies that wait (a write becoming durable) hold their
// place in an ordered queue, so replies always leave in request order.
//
// Bounds: a line without \n (2 KiB, or maxGetLineBytes for get), replies waiting per
// connection (maxPipeline) and reply bytes buffered (maxConnReplyBytes): past the last
// two the connection stops reading until the client catches up.
import net from 'node:net';
import type { Maybe } from '../../kv/local-kv.js';
import type { Command } from './commands.js';
import { execute, type McContext, type Reply } from './execute.js';
import { parseCommand, type ParserLimits } from './parser.js';
import { listen } from '../../util/listen.js';

export interface McServerOptions {
  host: string;
  port: number;
  limits: ParserLimits;
  maxConns: number;
  maxConnReplyBytes: number;
  /** Commands whose replies may wait at once on one connection before reading pauses. */
  maxPipeline?: number;
}

export interface ConnectionCounters {
  curr_connections: number;
  total_connections: number;
  rejected_connections: number;
  bytes_read: number;
  bytes_written: number;
}

interface Slot {
  reply: Reply | undefined;
  ready: boolean;
}

const EMPTY = Buffer.alloc(0);

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

function pushReply(out: Array<string | Buffer>, r: Reply): void {
  if (typeof r === 'string') {
    if (r.length > 0) out.push(r);
  } else if (Buffer.isBuffer(r)) out.push(r);
  else for (const p of r) out.push(p);
}

class Connection {
  private buf: Buffer = EMPTY;
  private off = 0;
  /** Bytes of a refused data block still to discard. */
  private swallow = 0;
  /** Replies ready to write at the end of this turn. */
  private out: Array<string | Buffer> = [];
  /** Replies still waiting, in request order; `out` may only grow when this is empty. */
  private readonly queue: Slot[] = [];
  private quitting = false;
  private closed = false;
  private flushScheduled = false;
  private paused = false;
  private ending = false;

  constructor(
    private readonly socket: net.Socket,
    private readonly ctx: McContext,
    private readonly opts: McServerOptions,
    private readonly counters: ConnectionCounters,
  ) {
    socket.setNoDelay(true);
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
    while (!this.quitting && !this.closed && this.off < this.buf.length) {
      if (this.queue.length >= maxPipeline) {
        this.pause();
        return;
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
    let reply: Maybe<Reply>;
    try {
      reply = this.ctx.dispatch ? this.ctx.dispatch(cmd) : execute(cmd, this.ctx);
    } catch (e) {
      reply = `SERVER_ERROR ${e instanceof Error ? e.message.replace(/[\r\n]/g, ' ') : 'internal error'}\r\n`;
    }
    if (cmd.kind === 'quit') this.quitting = true;
    this.emit(reply);
  }

  private emit(reply: Maybe<Reply>): void {
    if (!(reply instanceof Promise)) {
      if (this.queue.length === 0) pushReply(this.out, reply);
      else this.queue.push({ reply, ready: true });
      return;
    }
    const slot: Slot = { reply: undefined, ready: false };
    this.queue.push(slot);
    reply.then(
      (r) => {
        slot.reply = r;
        slot.ready = true;
        this.scheduleFlush();
      },
      (e: unknown) => {
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

  private flush(): void {
    while (this.queue.length > 0 && this.queue[0]!.ready) {
      pushReply(this.out, this.queue.shift()!.reply!);
    }
    if (this.out.length > 0 && !this.closed) {
      const bytes = replyBytes(this.out);
      this.counters.bytes_written += bytes.length;
      if (!this.socket.write(bytes)) this.pause();
      if (this.socket.writableLength > this.opts.maxConnReplyBytes) this.pause();
    }
    this.out = [];
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
    this.socket.pause();
  }

  private maybeResume(): void {
    const maxPipeline = this.opts.maxPipeline ?? 1024;
    if (!this.paused || this.closed) return;
    if (this.socket.writableLength > this.opts.maxConnReplyBytes || this.queue.length >= maxPipeline) return;
    this.paused = false;
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
    bytes_read: 0,
    bytes_written: 0,
  };
  private readonly server: net.Server;
  private readonly conns = new Map<net.Socket, Connection>();

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
    this.conns.set(socket, new Connection(socket, this.ctx, this.opts, this.counters));
    socket.on('close', () => {
      this.counters.curr_connections--;
      this.conns.delete(socket);
    });
  }

  listen(): Promise<number> {
    return listen(this.server, this.opts.port, this.opts.host);
  }

  /** Stop accepting; let each connection deliver the replies it owes; after `graceMs`, cut the rest. */
  async close(graceMs: number): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    const drained = Promise.all([...this.conns.values()].map((c) => c.drainAndEnd()));
    const timer = setTimeout(() => {
      for (const s of this.conns.keys()) s.destroy();
    }, graceMs);
    await Promise.all([closed, drained]);
    clearTimeout(timer);
  }
}
