// The errors a RingClient caller can branch on: one class per thing to act on, each with
// a stable `code` (undici's habit). A missing key is never an error (undefined / false).
//
//   InvalidKey / KeyTooLong   the key breaks memcached's rule; nothing was sent.
//   ValueTooLarge             the item would exceed the item size; nothing stored.
//   BadRequest                the request is malformed (an option out of range, or the
//                             node refused it); retrying the same request cannot help.
//   NonNumeric                incr/decr of a value that is not a decimal number.
//   Timeout                   no answer within timeoutMs. For a write the outcome is
//                             unknown: it may or may not have been applied.
//   Unavailable               no owner could be reached, or the connection was lost after
//                             a non-idempotent request left (`sent` true: outcome unknown).
//   Busy                      the node refused the request in overload, before running it,
//                             and kept refusing until the deadline (the client backs off
//                             and retries meanwhile). Nothing was done.
//   ServerError               the node answered with an error the client does not know.
//   Closed                    the client was closed.

export abstract class RingkvError extends Error {
  abstract readonly code: string;
}

/** The key is empty, or holds a space, NUL or line feed (memcached's key rule). */
export class InvalidKey extends RingkvError {
  override readonly name: string = 'InvalidKey';
  readonly code: string = 'INVALID_KEY';
}

/** The key is longer than 250 bytes (a special case of InvalidKey). */
export class KeyTooLong extends InvalidKey {
  override readonly name = 'KeyTooLong';
  override readonly code = 'KEY_TOO_LONG';
  constructor(readonly keyBytes: number) {
    super(`key of ${keyBytes} bytes is longer than 250 bytes`);
  }
}

/** The item (value, key and memcached's item overhead) exceeds the item size. */
export class ValueTooLarge extends RingkvError {
  override readonly name = 'ValueTooLarge';
  readonly code = 'VALUE_TOO_LARGE';
}

/** The request is malformed; the client or the node refused it. */
export class BadRequest extends RingkvError {
  override readonly name = 'BadRequest';
  readonly code = 'BAD_REQUEST';
}

/** incr/decr of an item whose value is not a decimal unsigned 64-bit number. */
export class NonNumeric extends RingkvError {
  override readonly name = 'NonNumeric';
  readonly code = 'NON_NUMERIC';
}

/** No answer within the request's timeoutMs. A write may or may not have been applied. */
export class Timeout extends RingkvError {
  override readonly name = 'Timeout';
  readonly code = 'TIMEOUT';
  constructor(
    readonly timeoutMs: number,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** No owner of the key could be reached in time, or the connection was lost after a write left. */
export class Unavailable extends RingkvError {
  override readonly name = 'Unavailable';
  readonly code = 'UNAVAILABLE';
  constructor(
    /** True when the request may have reached a node (a write's outcome is then unknown). */
    readonly sent: boolean,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** The node refused the request in overload, before running it; retried with backoff until the deadline. */
export class Busy extends RingkvError {
  override readonly name = 'Busy';
  readonly code = 'BUSY';
}

/** The node answered with an error code this client does not handle (INTERNAL, UNKNOWN_TYPE, ...). */
export class ServerError extends RingkvError {
  override readonly name = 'ServerError';
  readonly code = 'SERVER_ERROR';
  constructor(
    /** The node's own code. */
    readonly remoteCode: string,
    message: string,
  ) {
    super(message);
  }
}

/** The client was closed; no request is sent any more. */
export class Closed extends RingkvError {
  override readonly name = 'Closed';
  readonly code = 'CLOSED';
  constructor() {
    super('the ringkv client is closed');
  }
}
