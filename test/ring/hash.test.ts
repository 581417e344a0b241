// hash64 must be exactly xxhash64 with seed 0: published test vectors, plus agreement with
// a plain BigInt transcription of the xxHash spec (XXH64) on random inputs of every
// length class (< 4, < 8, < 32, >= 32 bytes, several 32-byte stripes).
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { hash64, initHash, positionMax } from '../../ring/index.js';

const mask = (1n << 64n) - 1n;
const P1 = 0x9e3779b185ebca87n;
const P2 = 0xc2b2ae3d27d4eb4fn;
const P3 = 0x165667b19e3779f9n;
const P4 = 0x85ebca77c2b2ae63n;
const P5 = 0x27d4eb2f165667c5n;

const rotl = (x: bigint, r: bigint) => ((x << r) | (x >> (64n - r))) & mask;
const mul = (x: bigint, y: bigint) => (x * y) & mask;
const add = (x: bigint, y: bigint) => (x + y) & mask;
const round = (acc: bigint, lane: bigint) => mul(rotl(add(acc, mul(lane, P2)), 31n), P1);
const mergeRound = (acc: bigint, v: bigint) => add(mul(acc ^ round(0n, v), P1), P4);

function readLe(bytes: Uint8Array, at: number, size: number): bigint {
  let v = 0n;
  for (let i = size - 1; i >= 0; i--) v = (v << 8n) | BigInt(bytes[at + i]!);
  return v;
}

/** XXH64 as the xxHash specification (doc/xxhash_spec.md) describes it. */
function xxh64Reference(bytes: Uint8Array, seed = 0n): bigint {
  const len = bytes.length;
  let p = 0;
  let h: bigint;
  if (len >= 32) {
    let v1 = add(add(seed, P1), P2);
    let v2 = add(seed, P2);
    let v3 = seed;
    let v4 = (seed - P1) & mask;
    for (; p + 32 <= len; p += 32) {
      v1 = round(v1, readLe(bytes, p, 8));
      v2 = round(v2, readLe(bytes, p + 8, 8));
      v3 = round(v3, readLe(bytes, p + 16, 8));
      v4 = round(v4, readLe(bytes, p + 24, 8));
    }
    h = add(add(rotl(v1, 1n), rotl(v2, 7n)), add(rotl(v3, 12n), rotl(v4, 18n)));
    for (const v of [v1, v2, v3, v4]) h = mergeRound(h, v);
  } else {
    h = add(seed, P5);
  }
  h = add(h, BigInt(len));
  for (; p + 8 <= len; p += 8) h = add(mul(rotl(h ^ round(0n, readLe(bytes, p, 8)), 27n), P1), P4);
  if (p + 4 <= len) {
    h = add(mul(rotl(h ^ mul(readLe(bytes, p, 4), P1), 23n), P2), P3);
    p += 4;
  }
  for (; p < len; p++) h = mul(rotl(h ^ mul(BigInt(bytes[p]!), P5), 11n), P1);
  h = mul(h ^ (h >> 33n), P2);
  h = mul(h ^ (h >> 29n), P3);
  return h ^ (h >> 32n);
}

const utf8 = new TextEncoder();

/** Any code points, lone surrogates included (TextEncoder writes those as U+FFFD). */
const anyText = fc
  .array(fc.integer({ min: 0, max: 0x10ffff }), { maxLength: 40 })
  .map((codePoints) => String.fromCodePoint(...codePoints));

beforeAll(async () => {
  await initHash();
});

describe('hash64', () => {
  it('matches published xxhash64 vectors (seed 0)', () => {
    const vectors: [string, bigint][] = [
      ['', 0xef46db3751d8e999n],
      ['a', 0xd24ec4f1a98c6e5bn],
      ['abc', 0x44bc2cf5ad770999n],
    ];
    for (const [input, expected] of vectors) {
      expect(hash64(input)).toBe(expected);
      expect(hash64(utf8.encode(input))).toBe(expected);
      expect(xxh64Reference(utf8.encode(input))).toBe(expected);
    }
  });

  it('agrees with the spec transcription on random bytes, as an unsigned 64-bit value', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        const h = hash64(bytes);
        expect(h).toBe(xxh64Reference(bytes));
        expect(h >= 0n && h <= positionMax).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  it('hashes a string as its UTF-8 bytes', () => {
    fc.assert(
      fc.property(anyText, (s) => {
        expect(hash64(s)).toBe(hash64(utf8.encode(s)));
      }),
      { numRuns: 200 },
    );
  });

  it('hashes only the bytes of a view, not its whole buffer', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 80 }), fc.nat(), fc.nat(), (bytes, x, y) => {
        const from = x % bytes.length;
        const to = from + (y % (bytes.length - from + 1));
        expect(hash64(bytes.subarray(from, to))).toBe(hash64(bytes.slice(from, to)));
      }),
      { numRuns: 100 },
    );
  });

  it('initHash is idempotent, also when called concurrently', async () => {
    await Promise.all([initHash(), initHash(), initHash()]);
    expect(hash64('abc')).toBe(0x44bc2cf5ad770999n);
  });
});
