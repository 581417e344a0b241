// The internal RPC caller: one logical connection to one host:port, many calls multiplexed
// on it by id. It connects on the first call and, after a loss, again on the next call (no
// retry or backoff here: whether a call may be repeated is the caller's knowledge, and
// RpcUnavailable.sent tells it whether the request may have gone out).
//
// Every call has a deadline; at it the call rejects with RpcTimeout and its id is
// forgotten, so a late reply is counted and dropped. Losing the connection rejects every
// call waiting on it. Bounds: calls outstanding (maxPending) and request bytes not yet
// taken by the kernel (maxQueuedBytes); past either, call() rejects at once with RpcBusy.
import net from 'node:net';
import { assert } from '../../util/assert.js';
import { encodeFrame, frameLimits, FrameDecoder, FrameError, type FrameLimits } from './frame.js';
import { CONNECTION_ID, FrameWriter, parseReply, type Reply } from './envelope.js';
import { RpcBusy, RpcEncodeError, RpcError, RpcProtocolError, RpcRemoteError, RpcTimeout, RpcUnavailable } from './errors.js';
import { globalTimers, type Timers } from './timers.js';

export interface RpcClientOptions extends Partial<FrameLimits> {
  host: string;
  port: number;
  /** Time allowed for the TCP connect; past it the calls waiting on it fail RpcUnavailable CONNECT_TIMEOUT. Default 5000 ms. */
  connectTimeoutMs?: number;
  /** Calls outstanding at once; one more rejects at once with RpcBusy. Default 10_000. */
  maxPending?: number;
  /** Request bytes queued and not yet taken by the kernel; past it call() rejects with RpcBusy. Default 64 MiB. */
  maxQueuedBytes?: number;
  timers?: Timers;
}

export interface CallOptions {
  /** The deadline, in ms from now; also sent to the server, which gives up on the request after it. */
  timeoutMs: number;
}

export interface RpcClientCounters {
  calls: number;
  timeouts: number;
  /** Replies that arrived after their call had timed out. */
  lateReplies: number;
  /** TCP connections opened (the first and every reconnect). */
  connects: number;
}

interface Settings {
  host: string;
  port: number;
  endpoint: string;
  limits: FrameLimits;
  connectTimeoutMs: number;
  maxPending: number;
  maxQueuedBytes: number;
  timers: Timers;
}

interface PendingCall {
  readonly type: string;
  readonly resolve: (body: unknown) => void;
  readonly reject: (e: RpcError) => void;
  timer: unknown;
}

/** One TCP connection and the calls waiting on it; never reused after it fails. */
class ClientConnection {
  readonly pending = new Map<number, PendingCall>();
  private readonly socket: net.Socket;
  private readonly decoder: FrameDecoder;
  private readonly writer: FrameWriter;
  private connected = false;
  private failed = false;
  private connectTimer: unknown;
  private lastSocketError: Error | undefined;
  readonly closed: Promise<void>;

  constructor(
    private readonly s: Settings,
    private readonly counters: RpcClientCounters,
    private readonly onFailed: (conn: ClientConnection) => void,
  ) {
    counters.connects++;
    this.decoder = new FrameDecoder(s.limits);
    // Writes before the connect completes are buffered by the socket and sent on connect.
    this.socket = net.connect({ host: s.host, port: s.port });
    this.socket.setNoDelay(true);
    this.writer = new FrameWriter(this.socket);
    this.closed = new Promise((resolve) => this.socket.once('close', () => resolve()));
    this.connectTimer = s.timers.setTimeout(() => {
      this.connectTimer = undefined;
      this.fail((sent) => new RpcUnavailable('CONNECT_TIMEOUT', sent, `connect to ${s.endpoint} timed out after ${s.connectTimeoutMs} ms`));
    }, s.connectTimeoutMs);
    this.socket.once('connect', () => {
      this.connected = true;
      this.clearConnectTimer();
    });
    this.socket.on('data', (d: Buffer) => this.onData(d));
    this.socket.on('error', (e: Error) => {
      this.lastSocketError = e;
    });
    this.socket.once('close', () => {
      const cause = this.lastSocketError;
      if (!this.connected) {
        this.fail((sent) => new RpcUnavailable('CONNECT_FAILED', sent, `cannot connect to ${this.s.endpoint}: ${cause?.message ?? 'closed'}`, { cause }));
      } else {
        this.fail((sent) => new RpcUnavailable('CONNECTION_LOST', sent, `connection to ${this.s.endpoint} lost before the reply`, { cause }));
      }
    });
  }

  get queuedBytes(): number {
    return this.writer.queuedBytes;
  }

  send(id: number, frame: Buffer, call: PendingCall): void {
    assert(!this.failed, 'send on a failed connection');
    assert(!this.pending.has(id), `call id ${id} already pending`);
    this.pending.set(id, call);
    this.writer.write(frame);
  }

  private onData(chunk: Buffer): void {
    if (this.failed) return;
    this.decoder.push(chunk);
    for (;;) {
      const r = this.decoder.next();
      if (r.kind === 'need-more') return;
      if (r.kind === 'error') {
        const err = r.error;
        this.fail(() => new RpcProtocolError(err.code, `bad frame from ${this.s.endpoint}: ${err.message}`, false));
        return;
      }
      const reply = parseReply(r.frame);
      if (reply instanceof FrameError) {
        this.fail(() => new RpcProtocolError(reply.code, `bad reply from ${this.s.endpoint}: ${reply.message}`, false));
        return;
      }
      this.onReply(reply);
      if (this.failed) return;
    }
  }

  private onReply(reply: Reply): void {
    if (reply.id === CONNECTION_ID) {
      // The server speaks about the connection, and closes it after this frame.
      const { code, message } = reply.ok ? { code: 'UNKNOWN', message: 'ok reply with id 0' } : reply.error;
      if (code === 'FRAME_TOO_LARGE' || code === 'FRAME_MALFORMED') {
        this.fail(() => new RpcProtocolError(code, `${this.s.endpoint} refused our frame: ${message}`, true));
      } else {
        // Nothing of ours was read (the server turns connections away before reading).
        this.fail(() => new RpcUnavailable('REFUSED', false, `${this.s.endpoint} refused the connection: ${code}: ${message}`));
      }
      return;
    }
    const call = this.pending.get(reply.id);
    if (call === undefined) {
      this.counters.lateReplies++;
      return;
    }
    this.pending.delete(reply.id);
    this.s.timers.clearTimeout(call.timer);
    if (reply.ok) call.resolve(reply.body);
    else {
      const { code, message, ...details } = reply.error;
      call.reject(new RpcRemoteError(code, message, details));
    }
  }

  /** Forget a call whose deadline passed. */
  forget(id: number): void {
    this.pending.delete(id);
  }

  /** End this connection, rejecting every call on it with the error made for it. */
  fail(makeError: (sent: boolean) => RpcError): void {
    if (this.failed) return;
    this.failed = true;
    this.clearConnectTimer();
    this.writer.stop();
    this.socket.destroy();
    const calls = [...this.pending.values()];
    this.pending.clear();
    // Before the connect completed, no byte of any request left this process.
    const sent = this.connected;
    for (const call of calls) {
      this.s.timers.clearTimeout(call.timer);
      call.reject(makeError(sent));
    }
    this.onFailed(this);
  }

  private clearConnectTimer(): void {
    if (this.connectTimer !== undefined) {
      this.s.timers.clearTimeout(this.connectTimer);
      this.connectTimer = undefined;
    }
  }
}

export class RpcClient {
  readonly counters: RpcClientCounters = { calls: 0, timeouts: 0, lateReplies: 0, connects: 0 };
  private readonly s: Settings;
  private conn: ClientConnection | null = null;
  private lastId = 0;
  private closed = false;

  constructor(opts: RpcClientOptions) {
    this.s = {
      host: opts.host,
      port: opts.port,
      endpoint: `${opts.host}:${opts.port}`,
      limits: frameLimits(opts),
      connectTimeoutMs: opts.connectTimeoutMs ?? 5000,
      maxPending: opts.maxPending ?? 10_000,
      maxQueuedBytes: opts.maxQueuedBytes ?? 64 * 1024 * 1024,
      timers: opts.timers ?? globalTimers,
    };
    assert(Number.isSafeInteger(this.s.maxPending) && this.s.maxPending >= 1, 'maxPending must be >= 1');
    assert(this.s.connectTimeoutMs > 0 && this.s.maxQueuedBytes >= 0, 'connectTimeoutMs must be > 0 and maxQueuedBytes >= 0');
  }

  /** `host:port` of the peer. */
  get endpoint(): string {
    return this.s.endpoint;
  }

  /** Calls waiting for a reply. */
  get pendingCalls(): number {
    return this.conn?.pending.size ?? 0;
  }

  /**
   * Send one request and wait for its reply body. T is the caller's claim about the body,
   * not checked here. Rejects with one of the RpcError classes (see errors.ts).
   */
  call<T>(type: string, body: unknown, opts: CallOptions): Promise<T> {
    assert(typeof type === 'string' && type.length > 0, 'call type must be a non-empty string');
    assert(Number.isFinite(opts.timeoutMs) && opts.timeoutMs > 0, `timeoutMs must be a positive number, got ${opts.timeoutMs}`);
    if (this.closed) return Promise.reject(new RpcUnavailable('CLOSED', false, `client for ${this.s.endpoint} is closed`));
    const conn = this.conn;
    if (conn !== null && conn.pending.size >= this.s.maxPending) {
      return Promise.reject(new RpcBusy(`${conn.pending.size} calls pending to ${this.s.endpoint} (maxPending ${this.s.maxPending})`));
    }
    if (conn !== null && conn.queuedBytes > this.s.maxQueuedBytes) {
      return Promise.reject(new RpcBusy(`${conn.queuedBytes} request bytes queued to ${this.s.endpoint} (maxQueuedBytes ${this.s.maxQueuedBytes})`));
    }
    const id = this.nextId(conn);
    const frame = encodeFrame({ id, type, timeoutMs: opts.timeoutMs, body }, this.s.limits.maxFrameBytes);
    if (frame instanceof FrameError) return Promise.reject(new RpcEncodeError(frame.code, `${type}: ${frame.message}`));
    const target = conn ?? this.connect();
    this.counters.calls++;
    return new Promise<T>((resolve, reject) => {
      const call: PendingCall = { type, resolve: resolve as (body: unknown) => void, reject, timer: undefined };
      call.timer = this.s.timers.setTimeout(() => {
        target.forget(id);
        this.counters.timeouts++;
        reject(new RpcTimeout(type, opts.timeoutMs, this.s.endpoint));
      }, opts.timeoutMs);
      target.send(id, frame, call);
    });
  }

  /** Reject every pending call with RpcUnavailable CLOSED and close the connection. */
  async close(): Promise<void> {
    this.closed = true;
    const conn = this.conn;
    if (conn === null) return;
    conn.fail((sent) => new RpcUnavailable('CLOSED', sent, `client for ${this.s.endpoint} closed`));
    await conn.closed;
  }

  private connect(): ClientConnection {
    const conn = new ClientConnection(this.s, this.counters, (c) => {
      if (this.conn === c) this.conn = null;
    });
    this.conn = conn;
    return conn;
  }

  /** Ids wrap within 1..2^32-1 (a msgpack uint32), skipping any still pending. */
  private nextId(conn: ClientConnection | null): number {
    for (;;) {
      this.lastId = this.lastId >= 0xffff_ffff ? 1 : this.lastId + 1;
      if (conn === null || !conn.pending.has(this.lastId)) return this.lastId;
    }
  }
}
