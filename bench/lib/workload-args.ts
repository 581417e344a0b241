// The workload flags every load generator takes (loadgen, openloop, client-load), back from
// settings to arguments, so a parent hands its child process exactly its settings.
import type { KeyDist } from './keys.js';

export interface WorkloadArgSettings {
  getRatio: number;
  keys: number;
  valueSize: number;
  dist: KeyDist;
  zipfS: number;
  warmupS: number;
  durationS: number;
  seed: number;
}

/** `--get-ratio ... --seed ...`: the flags addWorkloadOptions (workload-cli.ts) declares, minus host, port and depth. */
export function workloadArgs(s: WorkloadArgSettings): string[] {
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
