// The RPC envelope on top of frames, and the per-connection write coalescer both ends share.
//
//   request  { id >= 1, type, timeoutMs, body }
//   reply    { id, type: 'reply', ok: true, body }
//          | { id, type: 'reply', ok: false, error: { code, message, ...extra } }
//
// The request body sits under `body` rather than spread into the envelope, so any msgpack
// value can be a body and no body field can collide with id/type/timeoutMs. id 0 is never
// a request: a reply with id 0 speaks about the connection itself (the peer sent a bad
// frame, or the server is at its connection limit) and is the last frame before close.
// timeoutMs is the caller's deadline, relative (no clock agreement needed); the server
// uses it to abort the handler and to skip a reply nobody waits for.
import type net from 'node:net';
import { FrameError, type Frame } from './frame.js';

export const REPLY_TYPE = 'reply';
/** The id of a reply about the connection rather than one request. */
export const CONNECTION_ID = 0;

export interface WireError {
  code: string;
  message: string;
  [extra: string]: unknown;
}

export type Reply =
  | { readonly id: number; readonly ok: true; readonly body: unknown }
  | { readonly id: number; readonly ok: false; readonly error: WireError };

/** Checks that a decoded frame is a well-formed reply; a bad one is a protocol error. */
export function parseReply(frame: Frame): Reply | FrameError {
  if (frame.type !== REPLY_TYPE) return new FrameError('FRAME_MALFORMED', `expected a reply, got a frame of type ${JSON.stringify(frame.type)}`);
  if (frame.ok === true) return { id: frame.id, ok: true, body: frame.body };
  if (frame.ok === false && isWireError(frame.error)) return { id: frame.id, ok: false, error: frame.error };
  return new FrameError('FRAME_MALFORMED', 'reply has neither ok:true nor ok:false with an error {code, message}');
}

function isWireError(e: unknown): e is WireError {
  return typeof e === 'object' && e !== null && typeof (e as WireError).code === 'string' && typeof (e as WireError).message === 'string';
}

export interface Request {
  readonly id: number;
  readonly type: string;
  readonly timeoutMs: number;
  readonly body: unknown;
}

/**
 * A decoded frame as a request; FrameError when the frame cannot be answered at all
 * (id 0, a reply sent to a server: the connection is closed), or a WireError for a request
 * that can be answered but not run (no deadline: every request has one, DESIGN.md).
 */
export function parseRequest(frame: Frame): Request | FrameError | { readonly id: number; readonly error: WireError } {
  if (frame.id === CONNECTION_ID) return new FrameError('FRAME_MALFORMED', 'request id 0 is reserved');
  if (frame.type === REPLY_TYPE) return new FrameError('FRAME_MALFORMED', 'a reply was sent to a server');
  const t = frame.timeoutMs;
  if (!(typeof t === 'number' && Number.isFinite(t) && t > 0)) {
    return { id: frame.id, error: { code: 'BAD_REQUEST', message: 'request needs a deadline: timeoutMs, a positive number of ms' } };
  }
  return { id: frame.id, type: frame.type, timeoutMs: t, body: frame.body };
}

/** Below this, frames of one turn are copied into one buffer; above, they go out as one writev. */
const CONCAT_MAX_BYTES = 64 * 1024;

/**
 * Queues the frames written in one event-loop turn and hands them to the socket together
 * (memcached's one-syscall-per-batch). The flush runs on process.nextTick, which comes
 * after every promise continuation of the current turn, so replies settled together
 * leave together.
 */
export class FrameWriter {
  private out: Buffer[] = [];
  private outBytes = 0;
  private scheduled = false;
  private stopped = false;

  constructor(
    private readonly socket: net.Socket,
    /** Called after each flush (the server checks its write bound there). */
    private readonly onFlush: () => void = () => {},
  ) {}

  /** Bytes written here and not yet taken by the kernel. */
  get queuedBytes(): number {
    return this.outBytes + this.socket.writableLength;
  }

  write(frame: Buffer): void {
    if (this.stopped) return;
    this.out.push(frame);
    this.outBytes += frame.length;
    if (!this.scheduled) {
      this.scheduled = true;
      process.nextTick(() => this.flush());
    }
  }

  /** Hand everything queued to the socket now. */
  flush(): void {
    this.scheduled = false;
    if (this.stopped || this.out.length === 0) return;
    if (this.socket.destroyed || this.socket.writableEnded) {
      // Closed under us: the frames have nowhere to go, and the owner learns of the close from 'close'.
      this.stop();
      return;
    }
    const out = this.out;
    const bytes = this.outBytes;
    this.out = [];
    this.outBytes = 0;
    if (out.length === 1) this.socket.write(out[0]!);
    else if (bytes <= CONCAT_MAX_BYTES) this.socket.write(Buffer.concat(out, bytes));
    else {
      this.socket.cork();
      for (const b of out) this.socket.write(b);
      this.socket.uncork();
    }
    this.onFlush();
  }

  /** Drop what is queued and accept nothing more (the socket is going away). */
  stop(): void {
    this.stopped = true;
    this.out = [];
    this.outBytes = 0;
  }
}
