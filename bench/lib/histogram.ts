// A log-linear latency histogram in the manner of HdrHistogram: values below 2^subBits are
// counted exactly; above, each power of two is split into 2^(subBits-1) equal buckets, so a
// bucket's width is at most 1/2^(subBits-1) of its lower bound. With subBits = 8 that is
// 1/128 (< 0.8 %), and a percentile reported at the bucket midpoint is within 0.4 % of the
// true sample. Recording is O(1) with no allocation, so it can sit on the generator's hot path.
//
// Values are non-negative integers in whatever unit the caller picks (the load generator
// records nanoseconds). Values above `valueMax` are clamped into the top bucket and counted
// as `clamped`, so a stalled request still shows up in p999 and max instead of vanishing.
import { assert } from '../../server/util/assert.js';

/** Exact below 2^subBits, then 2^(subBits-1) buckets per power of two. */
const subBits = 8;
const subCount = 1 << subBits; // 256
const halfCount = subCount >> 1; // 128
/** Largest recordable exponent: 2^40 ns is about 18 minutes, far above any bounded run. */
const exponentMax = 40;
const bucketCount = subCount + (exponentMax - subBits + 1) * halfCount;
const two32 = 2 ** 32;

/** floor(log2(v)) for a positive integer v < 2^53. */
function log2Floor(v: number): number {
  if (v < two32) return 31 - Math.clz32(v);
  return 32 + 31 - Math.clz32(Math.floor(v / two32));
}

function indexOf(v: number): number {
  if (v < subCount) return v;
  const shift = log2Floor(v) - (subBits - 1); // >= 1, and v / 2^shift is in [128, 256)
  return subCount + (shift - 1) * halfCount + (Math.floor(v / 2 ** shift) - halfCount);
}

/** [low, high) of bucket `i`. */
function boundsOf(i: number): [number, number] {
  if (i < subCount) return [i, i + 1];
  const shift = Math.floor((i - subCount) / halfCount) + 1;
  const low = (halfCount + ((i - subCount) % halfCount)) * 2 ** shift;
  return [low, low + 2 ** shift];
}

/** A histogram's counts in a form that survives JSON (a child process reports it on stdout). */
export interface HistogramSnapshot {
  /** [bucket index, count] for every non-empty bucket, ascending. */
  readonly buckets: Array<[number, number]>;
  readonly count: number;
  readonly min: number;
  readonly max: number;
  readonly sum: number;
  readonly clamped: number;
}

export class Histogram {
  private readonly counts = new Float64Array(bucketCount);
  private readonly valueMax = boundsOf(bucketCount - 1)[0];
  count = 0;
  min = Number.POSITIVE_INFINITY;
  max = 0;
  sum = 0;
  clamped = 0;

  record(value: number): void {
    let v = value < 0 ? 0 : Math.floor(value);
    if (v > this.valueMax) {
      v = this.valueMax;
      this.clamped++;
    }
    this.counts[indexOf(v)]++;
    this.count++;
    this.sum += v;
    if (v < this.min) this.min = v;
    if (v > this.max) this.max = v;
  }

  /**
   * The value at quantile q (0 < q <= 1): the midpoint of the bucket holding the
   * ceil(q * count)-th smallest sample, clamped to [min, max]. NaN when empty.
   */
  quantile(q: number): number {
    assert(q > 0 && q <= 1, `quantile ${q} outside (0, 1]`);
    if (this.count === 0) return Number.NaN;
    const rank = Math.max(1, Math.ceil(q * this.count));
    let seen = 0;
    for (let i = 0; i < bucketCount; i++) {
      seen += this.counts[i]!;
      if (seen >= rank) {
        const [low, high] = boundsOf(i);
        const mid = high - low === 1 ? low : (low + high) / 2;
        return Math.min(this.max, Math.max(this.min, mid));
      }
    }
    assert(false, `histogram rank ${rank} beyond count ${this.count}`);
  }

  mean(): number {
    return this.count === 0 ? Number.NaN : this.sum / this.count;
  }

  snapshot(): HistogramSnapshot {
    const buckets: Array<[number, number]> = [];
    for (let i = 0; i < bucketCount; i++) if (this.counts[i]! > 0) buckets.push([i, this.counts[i]!]);
    return { buckets, count: this.count, min: this.count ? this.min : 0, max: this.max, sum: this.sum, clamped: this.clamped };
  }

  static fromSnapshot(s: HistogramSnapshot): Histogram {
    const h = new Histogram();
    let total = 0;
    for (const [i, c] of s.buckets) {
      assert(Number.isInteger(i) && i >= 0 && i < bucketCount, `bad histogram bucket ${i}`);
      h.counts[i] = c;
      total += c;
    }
    assert(total === s.count, `histogram snapshot counts ${total} != count ${s.count}`);
    h.count = s.count;
    h.min = s.count ? s.min : Number.POSITIVE_INFINITY;
    h.max = s.max;
    h.sum = s.sum;
    h.clamped = s.clamped;
    return h;
  }
}
