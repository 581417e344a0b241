// Errors of the internal RPC, one class per thing a caller can act on, each with a stable
// `code` (undici's habit). Callers branch on the class first: an RpcRemoteError's code is
// whatever the peer's handler said (NOT_OWNER, UNKNOWN_TYPE, ...), while the other classes
// name what happened on this side.
//
//   RpcTimeout      the deadline passed; the request may or may not have run.
//   RpcUnavailable  no connection, or it was lost before the reply; `sent` says whether the
//                   request may have reached the peer (false: certainly not, safe to retry).
//   RpcRemoteError  the peer answered ok:false.
//   RpcProtocolError a frame broke the protocol; the connection was closed.
//   RpcBusy         a local bound (pending calls, queued bytes) was reached; nothing was sent.
//   RpcEncodeError  the request cannot be sent as a frame (too large, not encodable); nothing was sent.
import type { FrameErrorCode } from './frame.js';

export abstract class RpcError extends Error {
  abstract readonly code: string;
}

export class RpcTimeout extends RpcError {
  override readonly name = 'RpcTimeout';
  readonly code = 'TIMEOUT';
  constructor(
    /** The request type that timed out. */
    readonly type: string,
    readonly timeoutMs: number,
    /** `host:port` of the peer. */
    readonly endpoint: string,
  ) {
    super(`${type} to ${endpoint}: no reply within ${timeoutMs} ms`);
  }
}

export type UnavailableReason =
  /** The TCP connect failed (refused, unreachable, ...). */
  | 'CONNECT_FAILED'
  /** The TCP connect did not complete within connectTimeoutMs. */
  | 'CONNECT_TIMEOUT'
  /** The connection closed before the reply. */
  | 'CONNECTION_LOST'
  /** The peer turned the connection away (e.g. at its connection limit). */
  | 'REFUSED'
  /** close() was called on this side. */
  | 'CLOSED';

export class RpcUnavailable extends RpcError {
  override readonly name = 'RpcUnavailable';
  readonly code = 'UNAVAILABLE';
  constructor(
    readonly reason: UnavailableReason,
    /** False when the request certainly never left this process; true when it may have reached the peer. */
    readonly sent: boolean,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export class RpcRemoteError extends RpcError {
  override readonly name = 'RpcRemoteError';
  constructor(
    /** The code the peer sent (NOT_OWNER, UNKNOWN_TYPE, INTERNAL, ...). */
    readonly code: string,
    message: string,
    /** Every other field of the peer's error, e.g. `{ generation, owner }` of a NOT_OWNER reply. */
    readonly details: Readonly<Record<string, unknown>>,
  ) {
    super(message);
  }
}

export class RpcProtocolError extends RpcError {
  override readonly name = 'RpcProtocolError';
  constructor(
    readonly code: FrameErrorCode,
    message: string,
    /** True when the peer reported that OUR frame was bad; false when its frame was bad. */
    readonly reportedByPeer: boolean,
  ) {
    super(message);
  }
}

export class RpcBusy extends RpcError {
  override readonly name = 'RpcBusy';
  readonly code = 'BUSY';
}

export class RpcEncodeError extends RpcError {
  override readonly name = 'RpcEncodeError';
  constructor(
    readonly code: FrameErrorCode,
    message: string,
  ) {
    super(message);
  }
}
