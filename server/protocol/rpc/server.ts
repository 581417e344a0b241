// The internal RPC listener: one handler per request type, many requests multiplexed on
// each connection, replies leaving in whatever order the handlers finish.
//
// Bounds, per connection: requests running at once (maxInflightPerConn) and reply bytes
// not yet taken by the kernel (maxConnReplyBytes); at either the server stops reading from
// that connection until it falls back under. Undispatched bytes are at most one frame
// (maxFrameBytes) plus one socket read. Connections beyond maxConns are turned away with
// a BUSY connection reply.
//
// A peer that breaks the framing gets one last reply with id 0 naming the problem, and
// only its connection is closed. Every request carries its deadline (timeoutMs, relative);
// when it passes the handler's signal is aborted and its reply skipped: the caller has
// stopped waiting. A request without one is answered BAD_REQUEST and not run.
import net from 'node:net';
import { listen } from '../../util/listen.js';
import { assert } from '../../util/assert.js';
import { encodeFrame, frameLimits, FrameDecoder, FrameError, type FrameLimits } from './frame.js';
import { CONNECTION_ID, FrameWriter, parseRequest, REPLY_TYPE, type Request, type WireError } from './envelope.js';
import { RpcRemoteError, RpcTimeout, RpcUnavailable } from './errors.js';
import { globalTimers, type Timers } from './timers.js';

export interface RpcServerOptions extends Partial<FrameLimits> {
  host: string;
  /** 0 = any free port; listen() resolves with the one bound. */
  port: number;
  /** Requests running at once on one connection; at the bound the server stops reading from it. Default 1024. */
  maxInflightPerConn?: number;
  /** Connections served at once; more are answered BUSY and closed. Default 1024. */
  maxConns?: number;
  /** Reply bytes queued for one connection before the server stops reading from it. Default 16 MiB. */
  maxConnReplyBytes?: number;
  /** How long a connection we are closing may stay half-open for its last frame to reach the peer. Default 1000 ms. */
  finalFrameLingerMs?: number;
  timers?: Timers;
  /**
   * Told once per request a handler ran (or that named no handler: ok false), when it is
   * answered or the handler finishes after its caller left; for metrics. Must be cheap.
   */
  onSettled?: (type: string, ok: boolean, error?: unknown) => void;
}

export interface RpcContext {
  /** The request id, unique among the requests in flight on its connection. */
  readonly id: number;
  readonly type: string;
  /** The caller's deadline, in ms from when the request was read. */
  readonly timeoutMs: number;
  /** Aborted when the deadline passes or the connection closes: nobody will read the reply. */
  readonly signal: AbortSignal;
  /** `address:port` of the caller. */
  readonly peer: string;
}

/**
 * Answers one request. The body is whatever the caller sent (unchecked: validate it).
 * Throwing (or rejecting with) an object whose `code` is a string sends ok:false with that
 * code, its message and its other enumerable fields; any other throw sends code INTERNAL.
 */
export type RpcHandler = (body: unknown, ctx: RpcContext) => unknown;

export interface RpcServerCounters {
  connections: number;
  totalConnections: number;
  rejectedConnections: number;
  requests: number;
  /** Connections closed because the peer sent a bad frame. */
  protocolErrors: number;
  /** Replies skipped because the request's deadline had passed. */
  expiredReplies: number;
}

interface Settings {
  limits: FrameLimits;
  maxInflightPerConn: number;
  maxConnReplyBytes: number;
  finalFrameLingerMs: number;
  timers: Timers;
  onSettled: ((type: string, ok: boolean, error?: unknown) => void) | undefined;
}

interface Shared {
  readonly settings: Settings;
  readonly handlers: ReadonlyMap<string, RpcHandler>;
  readonly counters: RpcServerCounters;
}

/** Longest error message sent; a handler's message can be anything, a frame cannot. */
const MAX_ERROR_MESSAGE_CHARS = 4096;
/** Fields of a thrown error that are not extra detail for the caller. */
const NOT_EXTRA = new Set(['code', 'message', 'name', 'stack', 'cause']);

/**
 * One request being handled. Its AbortController is made only when the handler reads
 * `ctx.signal` (most never do): one per request was a measurable share of a node's CPU.
 */
class Running implements RpcContext {
  timer: unknown = undefined;
  expired = false;
  private controller: AbortController | undefined;
  private reason: unknown;

  constructor(
    readonly id: number,
    readonly type: string,
    readonly timeoutMs: number,
    readonly peer: string,
  ) {}

  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.reason !== undefined) this.controller.abort(this.reason);
    }
    return this.controller.signal;
  }

  abort(reason: Error): void {
    if (this.reason !== undefined) return;
    this.reason = reason;
    this.controller?.abort(reason);
  }
}

type ConnState = 'open' | 'draining' | 'ending' | 'closed';

class ServerConnection {
  private readonly decoder: FrameDecoder;
  private readonly writer: FrameWriter;
  private readonly running = new Set<Running>();
  private state: ConnState = 'open';
  private paused = false;
  private pumping = false;
  private lingerTimer: unknown = undefined;
  readonly peer: string;
  readonly closed: Promise<void>;

  constructor(
    private readonly socket: net.Socket,
    private readonly shared: Shared,
  ) {
    this.peer = `${socket.remoteAddress}:${socket.remotePort}`;
    this.decoder = new FrameDecoder(shared.settings.limits);
    this.writer = new FrameWriter(socket, () => this.pump());
    socket.setNoDelay(true);
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
    socket.on('data', (d: Buffer) => this.onData(d));
    socket.on('drain', () => this.pump());
    socket.on('error', () => socket.destroy());
    // The peer will send no more: answer what it asked, then close our side.
    socket.on('end', () => this.drain());
    socket.once('close', () => this.onClose());
  }

  private onData(chunk: Buffer): void {
    // While ending, input is read and dropped: unread bytes at close would make the kernel
    // reset the connection and could destroy our last frame before the peer reads it.
    if (this.state === 'ending' || this.state === 'closed') return;
    this.decoder.push(chunk);
    this.pump();
  }

  /** Dispatch buffered requests up to the bounds, then pause or resume reading to match. */
  private pump(): void {
    if (this.pumping) return; // a handler that settled synchronously, inside the loop below
    this.pumping = true;
    try {
      const max = this.shared.settings.maxInflightPerConn;
      while (this.state === 'open' || this.state === 'draining') {
        if (this.state === 'open' && this.running.size >= max) break;
        if (this.writer.queuedBytes > this.shared.settings.maxConnReplyBytes) break;
        const r = this.decoder.next();
        if (r.kind === 'need-more') break;
        if (r.kind === 'error') return this.fail(r.error);
        const req = parseRequest(r.frame);
        if (req instanceof FrameError) return this.fail(req);
        if ('error' in req) {
          this.sendError(req.id, req.error);
          continue;
        }
        if (this.state === 'draining') {
          // Never run: the caller learns for certain that this request did nothing.
          this.sendError(req.id, { code: 'SHUTTING_DOWN', message: 'server is shutting down' });
          continue;
        }
        this.dispatch(req);
      }
    } finally {
      this.pumping = false;
    }
    this.updateFlow();
  }

  private updateFlow(): void {
    if (this.state !== 'open' && this.state !== 'draining') return;
    const full =
      (this.state === 'open' && this.running.size >= this.shared.settings.maxInflightPerConn) ||
      this.writer.queuedBytes > this.shared.settings.maxConnReplyBytes;
    if (full && !this.paused) {
      this.paused = true;
      this.socket.pause();
    } else if (!full && this.paused) {
      this.paused = false;
      this.socket.resume();
    }
  }

  private dispatch(req: Request): void {
    const { counters, handlers, settings } = this.shared;
    counters.requests++;
    const handler = handlers.get(req.type);
    if (handler === undefined) {
      const error = { code: 'UNKNOWN_TYPE', message: `no handler for request type ${JSON.stringify(req.type)}` };
      settings.onSettled?.(req.type, false, error);
      this.sendError(req.id, error);
      return;
    }
    const timeoutMs = req.timeoutMs;
    const run = new Running(req.id, req.type, timeoutMs, this.peer);
    run.timer = settings.timers.setTimeout(() => this.expire(run, req), timeoutMs);
    this.running.add(run);
    let result: unknown;
    try {
      result = handler(req.body, run);
    } catch (e) {
      this.settle(run, req.id, false, e);
      return;
    }
    if (isThenable(result)) {
      result.then(
        (v) => this.settle(run, req.id, true, v),
        (e: unknown) => this.settle(run, req.id, false, e),
      );
    } else {
      this.settle(run, req.id, true, result);
    }
  }

  /** The caller has stopped waiting: tell the handler, and skip its reply. */
  private expire(run: Running, req: Request): void {
    run.timer = undefined;
    run.expired = true;
    run.abort(new RpcTimeout(req.type, req.timeoutMs, this.peer));
    if (this.state === 'draining' && this.running.delete(run)) {
      // While open, an expired handler still counts against maxInflightPerConn (it still
      // holds resources); while draining, a handler that ignores its signal must not keep
      // the connection open past the deadline.
      this.shared.counters.expiredReplies++;
      if (this.running.size === 0) this.finishDrain();
    }
  }

  private settle(run: Running, id: number, ok: boolean, value: unknown): void {
    this.shared.settings.onSettled?.(run.type, ok, ok ? undefined : value);
    // Not running any more: the connection closed while the handler worked.
    if (!this.running.delete(run)) return;
    if (run.timer !== undefined) this.shared.settings.timers.clearTimeout(run.timer);
    if (run.expired) this.shared.counters.expiredReplies++;
    else if (ok) this.sendReply(id, value);
    else this.sendError(id, toWireError(value));
    if (this.state === 'draining' && this.running.size === 0) this.finishDrain();
    else this.pump();
  }

  private sendReply(id: number, body: unknown): void {
    const frame = encodeFrame({ id, type: REPLY_TYPE, ok: true, body }, this.shared.settings.limits.maxFrameBytes);
    if (frame instanceof FrameError) {
      // The handler's answer cannot travel; the caller still gets an answer that says why.
      const code = frame.code === 'FRAME_TOO_LARGE' ? 'FRAME_TOO_LARGE' : 'INTERNAL';
      this.sendError(id, { code, message: `reply not sent: ${frame.message}` });
      return;
    }
    this.writer.write(frame);
  }

  private sendError(id: number, error: WireError): void {
    const max = this.shared.settings.limits.maxFrameBytes;
    let frame = encodeFrame({ id, type: REPLY_TYPE, ok: false, error }, max);
    if (frame instanceof FrameError) {
      // An extra field that cannot travel (or is too big): send the code and message alone.
      const bare = { code: clip(error.code), message: clip(error.message) };
      frame = encodeFrame({ id, type: REPLY_TYPE, ok: false, error: bare }, max);
    }
    assert(!(frame instanceof FrameError), 'a clipped error reply always encodes');
    this.writer.write(frame);
  }

  /** The peer broke the protocol: tell it why with a connection reply, then close this connection only. */
  private fail(error: FrameError): void {
    this.shared.counters.protocolErrors++;
    this.refuse(error.code, error.message);
  }

  /** Send one connection-level error reply (id 0) and close. */
  refuse(code: string, message: string): void {
    if (this.state === 'ending' || this.state === 'closed') return;
    this.abortAll(new RpcUnavailable('CONNECTION_LOST', true, `connection closed: ${code}`));
    this.sendError(CONNECTION_ID, { code, message });
    this.end();
  }

  /** Stop taking new work; answer what is running, then close. */
  drain(): void {
    if (this.state !== 'open') return;
    this.state = 'draining';
    if (this.running.size === 0) this.finishDrain();
    else this.pump();
  }

  private finishDrain(): void {
    this.end();
  }

  private end(): void {
    this.state = 'ending';
    this.writer.flush();
    this.socket.end();
    // Keep reading (and dropping) so the peer's unread bytes do not turn our close into a reset.
    if (this.paused) {
      this.paused = false;
      this.socket.resume();
    }
    const { timers, finalFrameLingerMs } = this.shared.settings;
    this.lingerTimer = timers.setTimeout(() => this.destroy(), finalFrameLingerMs);
  }

  destroy(): void {
    this.socket.destroy();
  }

  private abortAll(reason: Error): void {
    const timers = this.shared.settings.timers;
    for (const run of this.running) {
      if (run.timer !== undefined) timers.clearTimeout(run.timer);
      run.abort(reason);
    }
    this.running.clear();
  }

  private onClose(): void {
    this.state = 'closed';
    this.writer.stop();
    this.abortAll(new RpcUnavailable('CONNECTION_LOST', true, 'connection closed'));
    if (this.lingerTimer !== undefined) {
      this.shared.settings.timers.clearTimeout(this.lingerTimer);
      this.lingerTimer = undefined;
    }
  }
}

function isThenable(v: unknown): v is PromiseLike<unknown> {
  return (typeof v === 'object' || typeof v === 'function') && v !== null && typeof (v as PromiseLike<unknown>).then === 'function';
}

function clip(s: string): string {
  return s.length > MAX_ERROR_MESSAGE_CHARS ? s.slice(0, MAX_ERROR_MESSAGE_CHARS) : s;
}

/** The reply for a thrown value: its own code and fields when it has a string code, else INTERNAL. */
export function toWireError(e: unknown): WireError {
  if (e instanceof RpcRemoteError) {
    // A handler passing on a peer's answer (a forwarded NOT_OWNER) passes it on whole.
    return { ...e.details, code: clip(e.code), message: clip(e.message) };
  }
  if (typeof e === 'object' && e !== null && typeof (e as { code?: unknown }).code === 'string') {
    const src = e as Record<string, unknown>;
    const out: WireError = { code: clip(src.code as string), message: '' };
    for (const k of Object.keys(src)) if (!NOT_EXTRA.has(k)) out[k] = src[k];
    out.message = clip(typeof src.message === 'string' ? src.message : (src.code as string));
    return out;
  }
  return { code: 'INTERNAL', message: clip(e instanceof Error ? e.message : String(e)) };
}

export class RpcServer {
  readonly counters: RpcServerCounters = {
    connections: 0,
    totalConnections: 0,
    rejectedConnections: 0,
    requests: 0,
    protocolErrors: 0,
    expiredReplies: 0,
  };
  private readonly server: net.Server;
  private readonly handlers = new Map<string, RpcHandler>();
  private readonly conns = new Set<ServerConnection>();
  private readonly shared: Shared;
  private readonly maxConns: number;
  private closing: Promise<void> | null = null;

  constructor(private readonly opts: RpcServerOptions) {
    const settings: Settings = {
      limits: frameLimits(opts),
      maxInflightPerConn: opts.maxInflightPerConn ?? 1024,
      maxConnReplyBytes: opts.maxConnReplyBytes ?? 16 * 1024 * 1024,
      finalFrameLingerMs: opts.finalFrameLingerMs ?? 1000,
      timers: opts.timers ?? globalTimers,
      onSettled: opts.onSettled,
    };
    this.maxConns = opts.maxConns ?? 1024;
    assert(Number.isSafeInteger(settings.maxInflightPerConn) && settings.maxInflightPerConn >= 1, 'maxInflightPerConn must be >= 1');
    assert(Number.isSafeInteger(this.maxConns) && this.maxConns >= 1, 'maxConns must be >= 1');
    assert(settings.maxConnReplyBytes >= 0 && settings.finalFrameLingerMs >= 0, 'byte and time bounds must be >= 0');
    this.shared = { settings, handlers: this.handlers, counters: this.counters };
    // Half-open allowed: a peer that sends FIN after its requests still gets its replies.
    this.server = net.createServer({ allowHalfOpen: true }, (socket) => this.accept(socket));
  }

  /** Register the handler of one request type (once per type). */
  handle(type: string, handler: RpcHandler): this {
    assert(type.length > 0 && type !== REPLY_TYPE, `request type ${JSON.stringify(type)} is reserved or empty`);
    assert(!this.handlers.has(type), `a handler for ${JSON.stringify(type)} is already registered`);
    this.handlers.set(type, handler);
    return this;
  }

  private accept(socket: net.Socket): void {
    const conn = new ServerConnection(socket, this.shared);
    const admitted = this.closing === null && this.counters.connections < this.maxConns;
    this.conns.add(conn);
    if (admitted) {
      this.counters.connections++;
      this.counters.totalConnections++;
    }
    socket.once('close', () => {
      this.conns.delete(conn);
      if (admitted) this.counters.connections--;
    });
    if (!admitted) {
      this.counters.rejectedConnections++;
      conn.refuse('BUSY', `too many connections (maxConns ${this.maxConns})`);
    }
  }

  /** Bind; resolves with the port (useful with port 0). */
  listen(): Promise<number> {
    return listen(this.server, this.opts.port, this.opts.host);
  }

  /**
   * Stop accepting; let running requests finish and their replies go out (requests that
   * arrive meanwhile are answered SHUTTING_DOWN, never run); after graceMs, cut what is left.
   */
  close(graceMs: number): Promise<void> {
    if (this.closing !== null) return this.closing;
    const timers = this.shared.settings.timers;
    this.closing = (async () => {
      // The callback fires once every connection has closed; an error only means "was not listening".
      const stopped = new Promise<void>((resolve) => this.server.close(() => resolve()));
      for (const c of this.conns) c.drain();
      const timer = timers.setTimeout(() => {
        for (const c of this.conns) c.destroy();
      }, graceMs);
      await Promise.all([stopped, ...[...this.conns].map((c) => c.closed)]);
      timers.clearTimeout(timer);
    })();
    return this.closing;
  }
}
