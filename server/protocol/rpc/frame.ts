// Framing of the internal RPC (DESIGN.md, "Wire formats"): each frame is a 4-byte
// big-endian unsigned length N, then N bytes of msgpack encoding a map
// `{ id: number, type: string, ...fields }`.
//
// The decoder is pure: Buffers go in (split anywhere), complete frames or one typed
// FrameError come out; it owns no socket and no timer. Invariants:
//   * Bad input is a returned value, never a throw out of next().
//   * A header declaring more than maxFrameBytes is reported as soon as its 4 bytes are
//     seen; the decoder never waits to buffer an oversized body.
//   * After an error the stream cannot be resynchronised, so the decoder stays failed and
//     drops further input: a peer that keeps sending garbage cannot grow our memory.
//   * As long as the caller drains next() after each push(), at most maxFrameBytes + 4
//     bytes stay buffered (one incomplete frame and its header).
//   * Each byte is copied at most once (when a body spans chunks); a 64 MiB frame arriving
//     in 64 KiB reads is not re-concatenated on every read.
//
// Binary values (msgpack bin) decode to Uint8Array views into the received bytes, not
// copies: a caller that keeps one for long (a cache) and cares about retaining the whole
// socket read behind it should copy it.
import { Decoder, Encoder, ExtData, ExtensionCodec } from '@msgpack/msgpack';
import { assert } from '../../util/assert.js';

/** Size of the length prefix. */
export const HEADER_BYTES = 4;
/** Largest length an unsigned 32-bit header can declare. */
const MAX_U32 = 0xffff_ffff;

export interface FrameLimits {
  /** Largest frame body in bytes, header excluded. Also the largest msgpack bin inside it. */
  maxFrameBytes: number;
  /** Longest msgpack string in bytes. Keys are <= 250 bytes and values travel as bin, so strings stay small. */
  maxStrLength: number;
  /** Most elements in one msgpack array. */
  maxArrayLength: number;
  /** Most entries in one msgpack map. */
  maxMapLength: number;
}

export const DEFAULT_FRAME_LIMITS: Readonly<FrameLimits> = Object.freeze({
  // 64 MiB: a 1 MiB value (memcached's default item size) plus envelope fits 60 times over,
  // and a batch of them (hint replay, range streaming) still fits in one frame.
  maxFrameBytes: 64 * 1024 * 1024,
  maxStrLength: 1024 * 1024,
  maxArrayLength: 1024 * 1024,
  maxMapLength: 1024 * 1024,
});

/** Defaults overlaid with the caller's settings, checked once. */
export function frameLimits(partial: Partial<FrameLimits> = {}): FrameLimits {
  const limits: FrameLimits = {
    maxFrameBytes: partial.maxFrameBytes ?? DEFAULT_FRAME_LIMITS.maxFrameBytes,
    maxStrLength: partial.maxStrLength ?? DEFAULT_FRAME_LIMITS.maxStrLength,
    maxArrayLength: partial.maxArrayLength ?? DEFAULT_FRAME_LIMITS.maxArrayLength,
    maxMapLength: partial.maxMapLength ?? DEFAULT_FRAME_LIMITS.maxMapLength,
  };
  assert(
    Number.isSafeInteger(limits.maxFrameBytes) && limits.maxFrameBytes >= 1 && limits.maxFrameBytes <= MAX_U32,
    `maxFrameBytes must be an integer in 1..${MAX_U32}, got ${limits.maxFrameBytes}`,
  );
  for (const k of ['maxStrLength', 'maxArrayLength', 'maxMapLength'] as const) {
    assert(Number.isSafeInteger(limits[k]) && limits[k] >= 0, `${k} must be a non-negative integer, got ${limits[k]}`);
  }
  return limits;
}

export type FrameErrorCode = 'FRAME_TOO_LARGE' | 'FRAME_MALFORMED';

/** A frame that cannot be accepted. Returned as a value by the decoder and the encoder, never thrown by them. */
export class FrameError extends Error {
  override readonly name = 'FrameError';
  constructor(
    readonly code: FrameErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/** A decoded frame: a msgpack map with a numeric id and a string type; other fields are unchecked here. */
export interface Frame {
  id: number;
  type: string;
  [field: string]: unknown;
}

export type DecodeResult =
  | { readonly kind: 'frame'; readonly frame: Frame }
  | { readonly kind: 'error'; readonly error: FrameError }
  | { readonly kind: 'need-more' };

const NEED_MORE: DecodeResult = Object.freeze({ kind: 'need-more' });
const EMPTY = Buffer.alloc(0);

export class FrameDecoder {
  readonly limits: FrameLimits;
  private readonly msgpack: Decoder;
  /** Received chunks; chunks[head] is the first with unread bytes, from headOffset on. */
  private chunks: Buffer[] = [];
  private head = 0;
  private headOffset = 0;
  private buffered = 0;
  /** Declared body length of the frame being read; -1 while its header is incomplete. */
  private bodyBytes = -1;
  private failed: DecodeResult | null = null;

  constructor(limits: Partial<FrameLimits> = {}) {
    this.limits = frameLimits(limits);
    this.msgpack = new Decoder({
      maxStrLength: this.limits.maxStrLength,
      maxBinLength: this.limits.maxFrameBytes,
      maxArrayLength: this.limits.maxArrayLength,
      maxMapLength: this.limits.maxMapLength,
      // No extension types travel on this wire (no timestamps, no custom types); refusing
      // them keeps a peer from making us build ExtData objects or parse dates.
      maxExtLength: 0,
    });
  }

  /** Bytes received and not yet returned as frames. */
  get bufferedBytes(): number {
    return this.buffered;
  }

  /** True once an error was returned: the stream is dead and input is dropped. */
  get hasFailed(): boolean {
    return this.failed !== null;
  }

  /** Append received bytes. Call next() until it returns need-more before the next push. */
  push(chunk: Buffer): void {
    if (this.failed !== null || chunk.length === 0) return;
    this.chunks.push(chunk);
    this.buffered += chunk.length;
  }

  /** The next complete frame, the error that ended the stream, or need-more. */
  next(): DecodeResult {
    if (this.failed !== null) return this.failed;
    if (this.bodyBytes < 0) {
      if (this.buffered < HEADER_BYTES) return NEED_MORE;
      const n = this.take(HEADER_BYTES).readUInt32BE(0);
      if (n > this.limits.maxFrameBytes) {
        return this.fail('FRAME_TOO_LARGE', `frame of ${n} bytes exceeds maxFrameBytes ${this.limits.maxFrameBytes}`);
      }
      this.bodyBytes = n;
    }
    if (this.buffered < this.bodyBytes) return NEED_MORE;
    const body = this.take(this.bodyBytes);
    this.bodyBytes = -1;
    return this.parse(body);
  }

  private parse(body: Buffer): DecodeResult {
    const fault = shapeFault(body);
    if (fault !== undefined) return this.fail('FRAME_MALFORMED', `frame body is not one msgpack value: ${fault}`);
    let value: unknown;
    try {
      value = this.msgpack.decode(body);
    } catch (e) {
      // DecodeError for bad bytes and limits, RangeError for truncated or trailing data.
      return this.fail('FRAME_MALFORMED', `frame body is not one msgpack value: ${e instanceof Error ? e.message : String(e)}`);
    }
    if (!isPlainMap(value)) return this.fail('FRAME_MALFORMED', 'frame body is not a msgpack map');
    const { id, type } = value;
    if (typeof id !== 'number' || !Number.isSafeInteger(id) || id < 0) {
      return this.fail('FRAME_MALFORMED', 'frame has no non-negative integer id');
    }
    if (typeof type !== 'string' || type.length === 0) return this.fail('FRAME_MALFORMED', 'frame has no string type');
    return { kind: 'frame', frame: value as Frame };
  }

  private fail(code: FrameErrorCode, message: string): DecodeResult {
    this.failed = { kind: 'error', error: new FrameError(code, message) };
    // Nothing after a bad frame can be trusted: release what is buffered.
    this.chunks = [];
    this.head = 0;
    this.headOffset = 0;
    this.buffered = 0;
    this.bodyBytes = -1;
    return this.failed;
  }

  /** Remove and return the next n buffered bytes: a view when they lie in one chunk, else one copy. */
  private take(n: number): Buffer {
    assert(n <= this.buffered, `take(${n}) with ${this.buffered} bytes buffered`);
    if (n === 0) return EMPTY;
    const first = this.chunks[this.head]!;
    let out: Buffer;
    if (first.length - this.headOffset >= n) {
      out = first.subarray(this.headOffset, this.headOffset + n);
      this.advance(n);
    } else {
      out = Buffer.allocUnsafe(n);
      let filled = 0;
      while (filled < n) {
        const chunk = this.chunks[this.head]!;
        const k = Math.min(n - filled, chunk.length - this.headOffset);
        chunk.copy(out, filled, this.headOffset, this.headOffset + k);
        filled += k;
        this.advance(k);
      }
    }
    assert(out.length === n, 'take returned the wrong length');
    return out;
  }

  private advance(k: number): void {
    this.buffered -= k;
    this.headOffset += k;
    if (this.headOffset === this.chunks[this.head]!.length) {
      this.chunks[this.head] = EMPTY; // release the chunk now, not at the next compaction
      this.head++;
      this.headOffset = 0;
    }
    if (this.head === this.chunks.length) {
      this.chunks = [];
      this.head = 0;
    } else if (this.head >= 1024) {
      // A huge frame in many small reads: compact the list of consumed slots now and then.
      this.chunks = this.chunks.slice(this.head);
      this.head = 0;
    }
  }
}

/**
 * Deepest nesting of arrays and maps a frame may hold: the msgpack encoder's own limit
 * (its DEFAULT_MAX_DEPTH), so every frame encodeFrame writes still decodes.
 */
const MAX_DEPTH = 100;

/**
 * Walks a msgpack body without building anything, and refuses a body that would make the
 * msgpack decoder allocate far more than its own size. Found by test/fuzz/rpc-frame: the
 * decoder keeps ~100 bytes of state per level of nesting (a 4 MB frame of 0x91 bytes, one
 * array in another, took 465 MB of heap), and allocates `new Array(size)` for the size an
 * array header declares before reading any element (1.5 KB of nested array32 headers
 * declaring 1,000,000 each took 1.1 GB and 5 s). Here nesting stops at MAX_DEPTH, and every
 * array and map must hold all the values it declares within the body, so what the decoder
 * allocates stays proportional to the frame. Returns the fault, or undefined when the
 * shape is sound (the decoder still checks the rest: UTF-8, limits, trailing bytes).
 */
function shapeFault(body: Uint8Array): string | undefined {
  const n = body.length;
  const open: number[] = []; // values still to read in each enclosing container
  let left = 1; // values still to read at this level: the top level holds exactly one
  let at = 0;
  // A big-endian length of `bytes` bytes, or NaN (which every check below refuses) past the end.
  const size = (bytes: number): number => {
    if (at + bytes > n) return NaN;
    let v = 0;
    for (let i = 0; i < bytes; i++) v = v * 256 + (body[at + i] ?? 0);
    at += bytes;
    return v;
  };
  for (;;) {
    if (left === 0) {
      if (open.length === 0) return undefined;
      left = open.pop()!;
      continue;
    }
    if (at >= n) return 'truncated';
    left--;
    const b = body[at++]!;
    let skip = 0;
    let values = -1; // the values a container holds (a map: two per entry)
    if (b <= 0x7f || b >= 0xe0 || b === 0xc0 || b === 0xc2 || b === 0xc3) skip = 0;
    else if (b <= 0x8f) values = (b & 0x0f) * 2;
    else if (b <= 0x9f) values = b & 0x0f;
    else if (b <= 0xbf) skip = b & 0x1f;
    else {
      switch (b) {
        case 0xc4: case 0xd9: skip = size(1); break; // bin8, str8
        case 0xc5: case 0xda: skip = size(2); break; // bin16, str16
        case 0xc6: case 0xdb: skip = size(4); break; // bin32, str32
        case 0xc7: skip = size(1) + 1; break; // ext8: length, type, data
        case 0xc8: skip = size(2) + 1; break;
        case 0xc9: skip = size(4) + 1; break;
        case 0xcc: case 0xd0: skip = 1; break;
        case 0xcd: case 0xd1: skip = 2; break;
        case 0xca: case 0xce: case 0xd2: skip = 4; break;
        case 0xcb: case 0xcf: case 0xd3: skip = 8; break;
        case 0xd4: skip = 2; break; // fixext: type, data
        case 0xd5: skip = 3; break;
        case 0xd6: skip = 5; break;
        case 0xd7: skip = 9; break;
        case 0xd8: skip = 17; break;
        case 0xdc: values = size(2); break; // array16
        case 0xdd: values = size(4); break; // array32
        case 0xde: values = size(2) * 2; break; // map16
        case 0xdf: values = size(4) * 2; break; // map32
        default: return `byte 0x${b.toString(16)} is never used`;
      }
    }
    if (Number.isNaN(skip) || Number.isNaN(values)) return 'truncated';
    if (values < 0) {
      if (skip > n - at) return 'truncated';
      at += skip;
    } else if (values > n - at) {
      return `a container declares ${values} values with ${n - at} bytes left`;
    } else if (values > 0) {
      if (open.length + 1 > MAX_DEPTH) return `arrays and maps nested deeper than ${MAX_DEPTH}`;
      open.push(left);
      left = values;
    }
  }
}

function isPlainMap(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && Object.getPrototypeOf(v) === Object.prototype;
}

// Encoding. Values the decoder would refuse, or that msgpack would flatten silently,
// fail here, locally, instead of killing the connection at the peer.
const strictCodec = new ExtensionCodec();
strictCodec.register({
  type: -1, // replaces the built-in timestamp extension
  encode: (v: unknown) => {
    if (v instanceof Date) throw new TypeError('a Date cannot travel on the RPC wire: send epoch milliseconds');
    if (v instanceof ExtData) throw new TypeError('msgpack extension types are not accepted on the RPC wire');
    if (v instanceof Map || v instanceof Set) throw new TypeError('a Map or Set would encode as an empty map: send an object or array');
    // The decoder refuses this key (a prototype-pollution guard), which would kill the
    // connection at the peer (found by test/fuzz/rpc-frame: `JSON.parse('{"__proto__": 1}')`).
    if (typeof v === 'object' && v !== null && Object.hasOwn(v, '__proto__')) throw new TypeError('a "__proto__" key is refused by the decoder');
    return null;
  },
  decode: () => {
    throw new TypeError('unreachable: the decoder admits no extension');
  },
});

const ENCODER_OPTIONS = { extensionCodec: strictCodec, ignoreUndefined: true, initialBufferSize: 64 * 1024 } as const;
/** The encoder's buffer grows to the largest message and never shrinks; past this size we start a new one. */
const ENCODER_KEEP_BYTES = 1024 * 1024;
let encoder = new Encoder(ENCODER_OPTIONS);

/**
 * One frame (header + msgpack body) ready to write, or FRAME_TOO_LARGE when the body would
 * exceed maxFrameBytes (the peer would refuse it and drop the connection), or
 * FRAME_MALFORMED when the message holds something msgpack cannot carry here.
 * Fields that are undefined are left out.
 */
export function encodeFrame(message: Frame, maxFrameBytes: number = DEFAULT_FRAME_LIMITS.maxFrameBytes): Buffer | FrameError {
  assert(Number.isSafeInteger(message.id) && message.id >= 0, `frame id must be a non-negative integer, got ${message.id}`);
  assert(typeof message.type === 'string' && message.type.length > 0, 'frame type must be a non-empty string');
  let body: Uint8Array;
  try {
    body = encoder.encodeSharedRef(message);
  } catch (e) {
    encoder = new Encoder(ENCODER_OPTIONS);
    return new FrameError('FRAME_MALFORMED', `cannot encode frame: ${e instanceof Error ? e.message : String(e)}`);
  }
  const n = body.length;
  let out: Buffer | FrameError;
  if (n > maxFrameBytes) {
    out = new FrameError('FRAME_TOO_LARGE', `frame of ${n} bytes exceeds maxFrameBytes ${maxFrameBytes}`);
  } else {
    out = Buffer.allocUnsafe(HEADER_BYTES + n);
    out.writeUInt32BE(n, 0);
    out.set(body, HEADER_BYTES);
  }
  if (n > ENCODER_KEEP_BYTES) encoder = new Encoder(ENCODER_OPTIONS);
  return out;
}
