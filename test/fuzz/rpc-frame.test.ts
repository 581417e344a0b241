// Fuzzing the RPC frame codec (server/protocol/rpc/frame.ts), 10,000 cases per property,
// beyond what test/rpc/frame.test.ts covers:
//   * streams mixing valid frames, random bodies, near-limit nesting, huge declared lengths
//     and raw garbage, split at random points, are decoded exactly as a reference model of
//     the framing says: same frames, the same error code at the same moment (a too-large
//     header as soon as its 4 bytes are in, before any body byte), FrameError values only,
//     and bufferedBytes equal to the unread bytes (so never above maxFrameBytes + 4);
//     after an error the decoder stays failed and buffers nothing more;
//   * valid frames split anywhere (byte by byte too) decode to the messages encoded;
//   * encodeFrame never throws on any JS value, and whatever it encodes the decoder accepts.
import { Decoder, encode } from '@msgpack/msgpack';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { encodeFrame, FrameDecoder, FrameError, type DecodeResult, type Frame } from '../../server/protocol/rpc/frame.js';
import { FUZZ_RUNS, fuzzParams, splitAt } from './fuzz-support.js';
import { wireValue as wireValueOf } from '../helpers/wire-arbitraries.js';

type Result = Exclude<DecodeResult, { kind: 'need-more' }>;

/** `{ id: 7, type: 'deep', d: [[[...null]]] }` with `levels` one-element arrays, by hand (the encoder stops at 100). */
function nested(levels: number): Uint8Array {
  const map = [0x83, ...encode('id'), ...encode(7), ...encode('type'), ...encode('deep'), ...encode('d')];
  return Buffer.concat([Buffer.from(map), Buffer.alloc(levels, 0x91), Buffer.from([0xc0])]);
}

function framed(body: Uint8Array): Buffer {
  const out = Buffer.alloc(4 + body.length);
  out.writeUInt32BE(body.length, 0);
  out.set(body, 4);
  return out;
}

const wireValue = wireValueOf({ maxString: 20, maxBytes: 40 });

const frameArb: fc.Arbitrary<Frame> = fc.record({ id: fc.nat(), type: fc.string({ minLength: 1, maxLength: 12 }), body: wireValue });

function plain(v: unknown): unknown {
  if (v instanceof Uint8Array) return { bin: Buffer.from(v).toString('hex') };
  if (Array.isArray(v)) return v.map(plain);
  if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]));
  return v;
}

// ---- the reference model of the framing ---------------------------------------------------------

interface Expected {
  kind: 'frame' | 'error';
  code?: 'FRAME_TOO_LARGE' | 'FRAME_MALFORMED';
  frame?: unknown;
  /** Stream offset at which the result is complete: it must come out of the first drain after that byte. */
  end: number;
}

function depthOf(v: unknown): number {
  if (Array.isArray(v)) return 1 + Math.max(0, ...v.map(depthOf));
  if (v !== null && typeof v === 'object' && !(v instanceof Uint8Array)) return 1 + Math.max(0, ...Object.values(v).map(depthOf));
  return 0;
}

/**
 * The framing as DESIGN.md and frame.ts state it: a 4-byte big-endian length N, refused at
 * once above maxFrameBytes, then N bytes of one msgpack map with a non-negative integer id
 * and a non-empty string type, arrays and maps nested at most 100 deep. The first error
 * ends the stream.
 */
function model(stream: Buffer, max: number): Expected[] {
  const msgpack = new Decoder({ maxStrLength: 1024 * 1024, maxBinLength: max, maxArrayLength: 1024 * 1024, maxMapLength: 1024 * 1024, maxExtLength: 0 });
  const out: Expected[] = [];
  let off = 0;
  while (stream.length - off >= 4) {
    const n = stream.readUInt32BE(off);
    if (n > max) {
      out.push({ kind: 'error', code: 'FRAME_TOO_LARGE', end: off + 4 });
      return out;
    }
    if (stream.length - off - 4 < n) break;
    const end = off + 4 + n;
    let value: unknown;
    let ok = true;
    try {
      value = msgpack.decode(stream.subarray(off + 4, end));
    } catch {
      ok = false;
    }
    const v = value as { id?: unknown; type?: unknown };
    ok &&= typeof v === 'object' && v !== null && Object.getPrototypeOf(v) === Object.prototype && depthOf(v) <= 100;
    ok &&= typeof v.id === 'number' && Number.isSafeInteger(v.id) && v.id >= 0 && typeof v.type === 'string' && v.type.length > 0;
    if (!ok) {
      out.push({ kind: 'error', code: 'FRAME_MALFORMED', end });
      return out;
    }
    out.push({ kind: 'frame', frame: plain(value), end });
    off = end;
  }
  return out;
}

/** Feeds the chunks as a connection does (drain after each push) and checks every invariant on the way. */
function runDecoder(chunks: readonly Buffer[], max: number, expected: readonly Expected[]): void {
  const d = new FrameDecoder({ maxFrameBytes: max });
  let pushed = 0;
  let consumed = 0; // stream offset of the end of the last result
  let i = 0; // next expected result
  let failed: Result | undefined;
  for (const chunk of chunks) {
    d.push(chunk);
    pushed += chunk.length;
    for (;;) {
      const r = d.next();
      if (r.kind === 'need-more') break;
      if (failed) {
        // A failed decoder keeps answering the same error and holds nothing.
        expect(r).toBe(failed);
        break;
      }
      const want = expected[i];
      if (want === undefined) throw new Error(`unexpected ${r.kind} ${r.kind === 'error' ? r.error.message : ''} after ${pushed} bytes`);
      // Reported in the first drain after its last byte arrived, not later.
      expect(want.end, `result ${i} (${want.kind}) came late`).toBeGreaterThan(pushed - chunk.length);
      expect(want.end).toBeLessThanOrEqual(pushed);
      if (r.kind === 'error') {
        expect(r.error).toBeInstanceOf(FrameError);
        expect([r.kind, r.error.code], r.error.message).toEqual([want.kind, want.code]);
        expect(d.hasFailed).toBe(true);
        failed = r;
      } else {
        expect(r.kind, `expected ${want.code}`).toBe(want.kind);
        expect(plain(r.frame)).toEqual(want.frame);
      }
      consumed = want.end;
      i++;
    }
    if (failed) {
      expect(d.bufferedBytes).toBe(0);
      continue;
    }
    // Buffered: exactly the bytes past the last result, minus a header already read.
    const rest = pushed - consumed;
    expect(d.bufferedBytes).toBe(rest >= 4 ? rest - 4 : rest);
    expect(d.bufferedBytes).toBeLessThanOrEqual(max + 4);
  }
  // Every result the model has for these bytes came out.
  expect(i).toBe(expected.length);
  if (failed) {
    d.push(Buffer.alloc(1000, 1));
    expect(d.bufferedBytes).toBe(0);
    expect(d.next()).toBe(failed);
  }
}

// ---- stream pieces -------------------------------------------------------------------------------

const piece = (max: number): fc.Arbitrary<Buffer> =>
  fc.oneof(
    { weight: 4, arbitrary: frameArb.map((f) => encodeFrame(f, max)).filter((b): b is Buffer => !(b instanceof FrameError)) },
    { weight: 2, arbitrary: fc.uint8Array({ maxLength: max }).map(framed) },
    { weight: 2, arbitrary: wireValue.map((v) => framed(encode(v))).filter((b) => b.length - 4 <= max) },
    { weight: 1, arbitrary: fc.constantFrom(...[1, 50, 97, 98, 99, 100, 120].map(nested)).filter((b) => b.length <= max).map(framed) },
    {
      weight: 1,
      arbitrary: fc.tuple(fc.integer({ min: max + 1, max: 0xffffffff }), fc.uint8Array({ maxLength: 20 })).map(([n, rest]) => {
        const header = Buffer.alloc(4);
        header.writeUInt32BE(n, 0);
        return Buffer.concat([header, rest]); // a huge declared length, then whatever
      }),
    },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from(a)) },
  );

const cuts = fc.array(fc.nat(), { maxLength: 16 });

describe('FrameDecoder under fuzzing', () => {
  it('decodes mixed streams split anywhere exactly as the framing model says', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(64, 256, 1024).chain((max) => fc.tuple(fc.constant(max), fc.array(piece(max), { maxLength: 8 }), cuts, fc.nat({ max: 19 }))),
        ([max, pieces, cutPoints, bytewise]) => {
          const stream = Buffer.concat(pieces);
          const chunks = bytewise === 0 && stream.length <= 3000 ? [...stream].map((b) => Buffer.from([b])) : splitAt(stream, cutPoints);
          runDecoder(chunks, max, model(stream, max));
        },
      ),
      fuzzParams(FUZZ_RUNS),
    );
  });

  it('decodes valid frames split anywhere to the messages that were encoded', () => {
    fc.assert(
      fc.property(fc.array(frameArb, { minLength: 1, maxLength: 8 }), cuts, fc.nat({ max: 19 }), (frames, cutPoints, bytewise) => {
        const stream = Buffer.concat(frames.map((f) => encodeFrame(f) as Buffer));
        const chunks = bytewise === 0 && stream.length <= 3000 ? [...stream].map((b) => Buffer.from([b])) : splitAt(stream, cutPoints);
        const d = new FrameDecoder({ maxFrameBytes: 1 << 20 });
        const out: unknown[] = [];
        for (const c of chunks) {
          d.push(c);
          for (let r = d.next(); r.kind !== 'need-more'; r = d.next()) {
            if (r.kind === 'error') throw r.error;
            out.push(plain(r.frame));
          }
          expect(d.bufferedBytes).toBeLessThanOrEqual((1 << 20) + 4);
        }
        expect(out).toEqual(frames.map(plain));
        expect(d.bufferedBytes).toBe(0);
      }),
      fuzzParams(FUZZ_RUNS),
    );
  });

  it('refuses a huge declared length as soon as the 4 header bytes are in, whatever follows', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 1 << 20 }), fc.nat({ max: 0xffffffff }), fc.nat({ max: 3 }), fc.uint8Array({ maxLength: 64 }), (max, n, split, tail) => {
        const header = Buffer.alloc(4);
        header.writeUInt32BE(n, 0);
        const d = new FrameDecoder({ maxFrameBytes: max });
        d.push(header.subarray(0, split));
        expect(d.next().kind).toBe('need-more');
        d.push(Buffer.concat([header.subarray(split), tail]));
        const r = d.next();
        if (n > max) {
          expect(r.kind === 'error' && r.error.code).toBe('FRAME_TOO_LARGE');
          expect(d.bufferedBytes).toBe(0);
        } else {
          expect(r.kind === 'error' ? r.error.code : r.kind).not.toBe('FRAME_TOO_LARGE');
          expect(d.bufferedBytes).toBeLessThanOrEqual(max + 4);
        }
      }),
      fuzzParams(FUZZ_RUNS),
    );
  });
});

// Any JS value, including those msgpack cannot carry or the decoder refuses.
const anyValue: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small' },
    fc.anything({ maxDepth: 2, withBigInt: true, withDate: true, withMap: true, withSet: true, withTypedArray: true, withSparseArray: true, withNullPrototype: true, withObjectString: true, withBoxedValues: true }),
    fc.constantFrom<unknown>(undefined, NaN, -0, Infinity, Symbol('s'), () => 1, new Date(0), new Map([[1, 2]]), new Set([1]), 2n ** 70n, Buffer.from('b')),
    fc.constantFrom(1, 90, 99, 100, 101, 150).map((depth) => {
      let v: unknown = null;
      for (let i = 0; i < depth; i++) v = [v];
      return v;
    }),
    fc.constantFrom('{"__proto__": 1}', '{"a": {"__proto__": {"x": 1}}}', '{"constructor": 1, "toString": 2}').map((t) => JSON.parse(t) as unknown),
    fc.array(tie('value'), { maxLength: 3 }),
    fc.dictionary(fc.string({ maxLength: 6 }), tie('value'), { maxKeys: 3 }),
  ),
})).value;

describe('encodeFrame under fuzzing', () => {
  it('never throws, and the decoder accepts every frame it encodes', () => {
    fc.assert(
      fc.property(fc.nat(), fc.string({ minLength: 1, maxLength: 8 }), anyValue, fc.constantFrom(64, 4096, 1 << 20), (id, type, body, max) => {
        const out = encodeFrame({ id, type, body }, max);
        if (out instanceof FrameError) {
          expect(['FRAME_TOO_LARGE', 'FRAME_MALFORMED']).toContain(out.code);
          return;
        }
        expect(out.readUInt32BE(0)).toBe(out.length - 4);
        expect(out.length - 4).toBeLessThanOrEqual(max);
        const d = new FrameDecoder({ maxFrameBytes: max });
        d.push(out);
        const r = d.next();
        if (r.kind !== 'frame') throw new Error(`encodeFrame wrote a frame the decoder refuses: ${r.kind === 'error' ? r.error.message : r.kind}`);
        expect([r.frame.id, r.frame.type]).toEqual([id, type]);
      }),
      fuzzParams(FUZZ_RUNS),
    );
  });

  it('regressions found by this fuzzing', () => {
    // A "__proto__" key is refused locally instead of killing the connection at the peer.
    const proto = encodeFrame({ id: 1, type: 'x', body: JSON.parse('{"__proto__": 1}') as unknown });
    expect(proto instanceof FrameError && proto.code).toBe('FRAME_MALFORMED');
    // Deep nesting and arrays declaring more elements than the body holds are refused
    // before the msgpack decoder allocates for them.
    const deep = new FrameDecoder();
    deep.push(framed(nested(1_000_000)));
    const r1 = deep.next();
    expect(r1.kind === 'error' && r1.error.code).toBe('FRAME_MALFORMED');
    const header = Buffer.from([0xdd, 0x00, 0x0f, 0x42, 0x40]); // array32 of 1,000,000
    const wide = new FrameDecoder();
    wide.push(framed(Buffer.concat([Buffer.from([0x83, 0xa2, 0x69, 0x64, 0x01, 0xa4, 0x74, 0x79, 0x70, 0x65, 0xa1, 0x78, 0xa1, 0x64]), ...Array.from({ length: 300 }, () => header)])));
    const r2 = wide.next();
    expect(r2.kind === 'error' && r2.error.code).toBe('FRAME_MALFORMED');
    // 100 levels (what the encoder itself allows) still decode.
    const ok = new FrameDecoder();
    ok.push(framed(nested(99)));
    expect(ok.next().kind).toBe('frame');
  });
});
