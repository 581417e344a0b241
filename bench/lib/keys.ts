// Which key the next request touches: a seeded random generator (so two runs with the same
// seed send the same sequence to every target) and a uniform or Zipfian choice over the key
// space `key:0 .. key:<keys-1>`. The Zipf CDF is precomputed once; a draw is a binary search.
import { assert } from '../../server/util/assert.js';

export type KeyDist = 'uniform' | 'zipf';

/** sfc32: small, fast, good enough statistically for load generation; seeded for replay. */
export function makeRng(seed: number): () => number {
  let a = 0x9e3779b9 ^ seed;
  let b = 0x243f6a88;
  let c = 0xb7e15162;
  let d = seed >>> 0;
  const next = (): number => {
    a >>>= 0;
    b >>>= 0;
    c >>>= 0;
    d >>>= 0;
    let t = (a + b) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (c << 21) | (c >>> 11);
    d = (d + 1) | 0;
    t = (t + d) | 0;
    c = (c + t) | 0;
    return (t >>> 0) / 4294967296;
  };
  for (let i = 0; i < 16; i++) next(); // mix the seed in
  return next;
}

/** Cumulative probabilities of ranks 0..n-1 with weight 1/(rank+1)^s; last entry is 1. */
export function zipfCdf(n: number, s: number): Float64Array {
  assert(n >= 1, `zipf over ${n} keys`);
  assert(s > 0 && s < 10, `zipf exponent ${s} out of range`);
  const cdf = new Float64Array(n);
  let sum = 0;
  for (let i = 0; i < n; i++) {
    sum += 1 / Math.pow(i + 1, s);
    cdf[i] = sum;
  }
  for (let i = 0; i < n; i++) cdf[i]! /= sum;
  cdf[n - 1] = 1;
  return cdf;
}

/** A function returning the next key index in [0, keys). */
export function makeKeyChooser(keys: number, dist: KeyDist, zipfS: number, rng: () => number): () => number {
  assert(Number.isInteger(keys) && keys >= 1, `key space ${keys}`);
  if (dist === 'uniform') return () => Math.floor(rng() * keys);
  const cdf = zipfCdf(keys, zipfS);
  return () => {
    const u = rng();
    let lo = 0;
    let hi = keys - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (cdf[mid]! < u) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
}
