// Shared by the fuzz tests (test/fuzz/*.test.ts): fast-check parameters and the helpers
// that cut a byte stream into the chunks a socket might deliver.
//
// Seeds: every property runs with RINGKV_FUZZ_SEED when it is set (to replay a failure
// seen in CI), else with a fresh random seed. On failure fast-check prints the seed and
// the shrink path (`{ seed: ..., path: "..." }`); rerun with RINGKV_FUZZ_SEED=<seed>.
import type fc from 'fast-check';

/** Cases per fuzz target, as the issue asks ("10,000 cases each in CI"). */
export const FUZZ_RUNS = 10_000;

function seedFromEnv(): number | undefined {
  const text = process.env.RINGKV_FUZZ_SEED;
  if (text === undefined || text === '') return undefined;
  const seed = Number(text);
  if (!Number.isSafeInteger(seed)) throw new Error(`RINGKV_FUZZ_SEED must be an integer, got ${JSON.stringify(text)}`);
  return seed;
}

/** fast-check parameters: `numRuns` cases, the env seed when given. */
export function fuzzParams<T>(numRuns: number = FUZZ_RUNS, extra: fc.Parameters<T> = {}): fc.Parameters<T> {
  const seed = seedFromEnv();
  return { numRuns, ...(seed !== undefined ? { seed } : {}), ...extra };
}

/** Cut `buf` at the given points (taken modulo its length + 1), keeping empty chunks out. */
export function splitAt(buf: Buffer, cuts: readonly number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (buf.length + 1)))].sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let prev = 0;
  for (const p of points) {
    if (p > prev) chunks.push(buf.subarray(prev, p));
    prev = p;
  }
  if (buf.length > prev) chunks.push(buf.subarray(prev));
  return chunks;
}

/** A printable form of bytes for failure messages (latin1, control bytes escaped by JSON). */
export function show(bytes: Buffer | string, max = 300): string {
  const text = typeof bytes === 'string' ? bytes : bytes.toString('latin1');
  return JSON.stringify(text.length > max ? `${text.slice(0, max)}...(+${text.length - max})` : text);
}
