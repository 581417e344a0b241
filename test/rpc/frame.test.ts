// The RPC frame codec is pure: these tests feed it valid streams split at random points,
// random bytes, and each kind of bad frame, and check it never throws, never buffers past
// one frame, and reports an oversized header before its body arrives.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { encode } from '@msgpack/msgpack';
import { encodeFrame, FrameDecoder, FrameError, type DecodeResult, type Frame } from '../../server/protocol/rpc/frame.js';
import { wireValue as wireValueOf } from '../helpers/wire-arbitraries.js';

const wireValue = wireValueOf();

const frameArb: fc.Arbitrary<Frame> = fc.record({
  id: fc.nat(),
  type: fc.string({ minLength: 1, maxLength: 16 }),
  body: wireValue,
});

function encodeOk(f: Frame, max?: number): Buffer {
  const b = encodeFrame(f, max);
  if (b instanceof FrameError) throw b;
  return b;
}

function framed(body: Uint8Array): Buffer {
  const out = Buffer.alloc(4 + body.length);
  out.writeUInt32BE(body.length, 0);
  out.set(body, 4);
  return out;
}

function splitAt(buf: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (buf.length + 1)))].sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let prev = 0;
  for (const p of points) {
    chunks.push(buf.subarray(prev, p));
    prev = p;
  }
  chunks.push(buf.subarray(prev));
  return chunks;
}

/** Feed chunks as a connection does (drain after each push); check the buffer bound on the way. */
function decodeChunks(chunks: Buffer[], max: number): Array<Exclude<DecodeResult, { kind: 'need-more' }>> {
  const d = new FrameDecoder({ maxFrameBytes: max });
  const out: Array<Exclude<DecodeResult, { kind: 'need-more' }>> = [];
  for (const c of chunks) {
    d.push(c);
    for (;;) {
      const r = d.next();
      if (r.kind === 'need-more') break;
      out.push(r);
      if (r.kind === 'error') return out;
    }
    expect(d.bufferedBytes).toBeLessThanOrEqual(max + 4);
  }
  return out;
}

/** Bodies as plain values, so Buffer vs Uint8Array views do not matter to the comparison. */
function plain(v: unknown): unknown {
  if (v instanceof Uint8Array) return { bin: [...v] };
  if (Array.isArray(v)) return v.map(plain);
  if (v !== null && typeof v === 'object') {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]));
  }
  return v;
}

function decodeOne(bytes: Buffer, max = 1024): DecodeResult {
  const d = new FrameDecoder({ maxFrameBytes: max });
  d.push(bytes);
  return d.next();
}

function expectError(r: DecodeResult, code: string): void {
  expect(r.kind).toBe('error');
  if (r.kind === 'error') expect(r.error.code).toBe(code);
}

describe('FrameDecoder', () => {
  it('decodes any sequence of valid frames, split anywhere, to the same messages', () => {
    fc.assert(
      fc.property(fc.array(frameArb, { maxLength: 8 }), fc.array(fc.nat(), { maxLength: 12 }), (frames, cuts) => {
        const stream = Buffer.concat(frames.map((f) => encodeOk(f)));
        const out = decodeChunks(splitAt(stream, cuts), 1 << 20);
        expect(out.every((r) => r.kind === 'frame')).toBe(true);
        expect(out.map((r) => (r.kind === 'frame' ? plain(r.frame) : r))).toEqual(frames.map(plain));
      }),
      { numRuns: 500 },
    );
  });

  it('delivers byte-at-a-time input the same as one chunk', () => {
    const frames: Frame[] = [
      { id: 1, type: 'get', body: { key: 'k' } },
      { id: 2, type: 'set', body: { key: 'k', value: new Uint8Array([0, 1, 255]) } },
    ];
    const stream = Buffer.concat(frames.map((f) => encodeOk(f)));
    const bytes = [...stream].map((b) => Buffer.from([b]));
    const out = decodeChunks(bytes, 1024);
    expect(out.map((r) => (r.kind === 'frame' ? plain(r.frame) : r))).toEqual(frames.map(plain));
  });

  // 5,000 + 5,000 runs: the 10,000 random-input cases, with small frames to keep it fast.
  const MAX = 256;

  it('never throws on random bytes and never buffers more than maxFrameBytes + 4', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), fc.array(fc.nat(), { maxLength: 8 }), (bytes, cuts) => {
        const out = decodeChunks(splitAt(Buffer.from(bytes), cuts), MAX);
        // At most one error, and only as the last result.
        expect(out.slice(0, -1).every((r) => r.kind === 'frame')).toBe(true);
      }),
      { numRuns: 5000 },
    );
  });

  it('never throws on well-sized frames with random bodies, mixed with valid frames', () => {
    const piece = fc.oneof(
      fc.uint8Array({ maxLength: MAX }).map((b) => framed(b)),
      frameArb.map((f) => encodeFrame(f, MAX)).filter((b): b is Buffer => !(b instanceof FrameError)),
    );
    fc.assert(
      fc.property(fc.array(piece, { maxLength: 6 }), fc.array(fc.nat(), { maxLength: 8 }), (pieces, cuts) => {
        const out = decodeChunks(splitAt(Buffer.concat(pieces), cuts), MAX);
        for (const r of out) {
          if (r.kind === 'error') expect(r.error.code).toBe('FRAME_MALFORMED');
          else {
            expect(Number.isSafeInteger(r.frame.id)).toBe(true);
            expect(typeof r.frame.type).toBe('string');
          }
        }
      }),
      { numRuns: 5000 },
    );
  });

  it('reports FRAME_TOO_LARGE as soon as the header declares maxFrameBytes + 1, before any body byte', () => {
    const d = new FrameDecoder({ maxFrameBytes: 100 });
    const header = Buffer.alloc(4);
    header.writeUInt32BE(101, 0);
    d.push(header.subarray(0, 2));
    expect(d.next().kind).toBe('need-more');
    d.push(header.subarray(2));
    expectError(d.next(), 'FRAME_TOO_LARGE');
    expect(d.bufferedBytes).toBe(0);
    // The stream is dead: more input is dropped, not buffered, and the error repeats.
    d.push(Buffer.alloc(1000));
    expect(d.bufferedBytes).toBe(0);
    expectError(d.next(), 'FRAME_TOO_LARGE');
  });

  it('waits for a body of exactly maxFrameBytes', () => {
    const d = new FrameDecoder({ maxFrameBytes: 100 });
    const header = Buffer.alloc(4);
    header.writeUInt32BE(100, 0);
    d.push(header);
    expect(d.next().kind).toBe('need-more');
  });

  it('reports the largest declared length (2^32 - 1) with the default limit', () => {
    const d = new FrameDecoder();
    d.push(Buffer.from([0xff, 0xff, 0xff, 0xff]));
    expectError(d.next(), 'FRAME_TOO_LARGE');
  });

  it('reports FRAME_MALFORMED for bodies that are not one msgpack map with id and type', () => {
    const cases: Array<[string, Uint8Array]> = [
      ['empty body', new Uint8Array(0)],
      ['never-used byte 0xc1', Uint8Array.of(0xc1)],
      ['truncated map', encode({ id: 1, type: 'x' }).subarray(0, 5)],
      ['trailing bytes', Buffer.concat([encode({ id: 1, type: 'x' }), Uint8Array.of(0xc0)])],
      ['array', encode([1, 'x'])],
      ['number', encode(42)],
      ['string', encode('hello')],
      ['bin', encode(new Uint8Array(3))],
      ['nil', encode(null)],
      ['map without id', encode({ type: 'x' })],
      ['map without type', encode({ id: 1 })],
      ['string id', encode({ id: '1', type: 'x' })],
      ['negative id', encode({ id: -1, type: 'x' })],
      ['fractional id', encode({ id: 1.5, type: 'x' })],
      ['numeric type', encode({ id: 1, type: 7 })],
      ['empty type', encode({ id: 1, type: '' })],
      ['timestamp extension', encode({ id: 1, type: 'x', at: new Date(0) })],
      ['__proto__ key', protoMap()],
    ];
    for (const [name, body] of cases) {
      const r = decodeOne(framed(body));
      expect(r.kind, name).toBe('error');
      if (r.kind === 'error') expect(r.error.code, name).toBe('FRAME_MALFORMED');
    }
  });

  it('applies the string, map and array limits', () => {
    const d = (body: unknown) => {
      const dec = new FrameDecoder({ maxFrameBytes: 1 << 20, maxStrLength: 10, maxArrayLength: 3, maxMapLength: 4 });
      dec.push(framed(encode(body)));
      return dec.next();
    };
    expect(d({ id: 1, type: 'x', s: '0123456789' }).kind).toBe('frame');
    expectError(d({ id: 1, type: 'x', s: '0123456789a' }), 'FRAME_MALFORMED');
    expectError(d({ id: 1, type: 'x', a: [1, 2, 3, 4] }), 'FRAME_MALFORMED');
    expectError(d({ id: 1, type: 'x', a: 1, b: 2, c: 3 }), 'FRAME_MALFORMED');
  });

  it('copies nothing when a frame lies in one chunk, and once when it spans many', () => {
    const value = new Uint8Array(10_000).fill(7);
    const bytes = encodeOk({ id: 3, type: 'set', body: value });
    const out = decodeChunks(splitAt(bytes, [1, 2, 3, 100, 5000, 9000]), 1 << 20);
    expect(out).toHaveLength(1);
    const f = out[0]!;
    expect(f.kind === 'frame' && (f.frame.body as Uint8Array).length).toBe(10_000);
  });
});

describe('encodeFrame', () => {
  it('returns FRAME_TOO_LARGE instead of a frame the peer would refuse', () => {
    const r = encodeFrame({ id: 1, type: 'set', body: new Uint8Array(200) }, 100);
    expect(r).toBeInstanceOf(FrameError);
    expect((r as FrameError).code).toBe('FRAME_TOO_LARGE');
  });

  it('refuses values that cannot travel (Date, Map, functions) as FRAME_MALFORMED', () => {
    for (const body of [new Date(), new Map([[1, 2]]), () => 1]) {
      const r = encodeFrame({ id: 1, type: 'x', body });
      expect(r).toBeInstanceOf(FrameError);
      expect((r as FrameError).code).toBe('FRAME_MALFORMED');
    }
  });

  it('leaves undefined fields out', () => {
    const r = decodeOne(encodeOk({ id: 1, type: 'x', body: undefined }));
    expect(r.kind === 'frame' && 'body' in r.frame).toBe(false);
  });

  it('keeps working after a huge frame (the shared encoder is replaced, not kept grown)', () => {
    const big = encodeOk({ id: 1, type: 'x', body: new Uint8Array(3 << 20) }, 64 << 20);
    expect(big.length).toBeGreaterThan(3 << 20);
    const r = decodeOne(encodeOk({ id: 2, type: 'y', body: 'small' }));
    expect(r.kind === 'frame' && plain(r.frame)).toEqual({ id: 2, type: 'y', body: 'small' });
  });
});

/** `{ id: 1, type: 'x', __proto__: 1 }` by hand: the library's encoder would not write that key. */
function protoMap(): Uint8Array {
  return Buffer.concat([
    Buffer.from([0x83]),
    Buffer.from(encode('id')),
    Buffer.from(encode(1)),
    Buffer.from(encode('type')),
    Buffer.from(encode('x')),
    Buffer.from(encode('__proto__')),
    Buffer.from(encode(1)),
  ]);
}
