// The workload every load generator runs (loadgen, openloop, client-load), and its flags
// back from settings to arguments, so a parent hands its child process exactly its settings.
import type { KeyDist } from './keys.js';

/** What every generator's load is made of, whatever it speaks (memcached text, RPC). */
export interface Workload {
  /** Fraction of requests that are gets; the rest are sets. */
  getRatio: number;
  /** Size of the key space: keys are `key:0` .. `key:<keys-1>`. */
  keys: number;
  /** Bytes per value, for preload and for every set. */
  valueSize: number;
  dist: KeyDist;
  /** Zipf exponent, used when dist = zipf. */
  zipfS: number;
  /** Unrecorded load before the measured window, seconds. */
  warmupS: number;
  /** Length of the measured window, seconds. */
  durationS: number;
  /** Seed of the key and operation sequence. */
  seed: number;
}

/** `--get-ratio ... --seed ...`: the flags addWorkloadOptions (workload-cli.ts) declares, minus host, port and depth. */
export function workloadArgs(s: Workload): string[] {
  return [
    '--get-ratio', String(s.getRatio),
    '--keys', String(s.keys),
    '--value-size', String(s.valueSize),
    '--dist', s.dist,
    '--zipf-s', String(s.zipfS),
    '--warmup-s', String(s.warmupS),
    '--duration-s', String(s.durationS),
    '--seed', String(s.seed),
  ];
}
