// The workload flags both memcached load generators take (bench/loadgen.ts, closed loop;
// bench/openloop.ts, open loop), declared once, and the settings they become.
import { Option, type Command } from 'commander';
import { intArg, numberArg } from './cli.js';
import { loadLimits as L } from './loadgen.js';
import type { Workload } from './workload-args.js';

export interface WorkloadOptions extends Workload {
  host: string;
  port: number;
  conns: number;
  depth: number;
  preload: boolean;
  json: boolean;
}

type WorkloadDefaults = Omit<WorkloadOptions, 'port' | 'json' | 'preload'>;

/** Adds the workload flags to a generator's command; `depthHelp` says what depth means there. */
export function addWorkloadOptions(cmd: Command, d: WorkloadDefaults, depthHelp: string): Command {
  cmd    .option('--host <host>', 'server address', d.host)
    .requiredOption('--port <port>', 'server memcached port', intArg(1, 65535))
    .option('--conns <n>', 'TCP connections', intArg(1, L.connsMax), d.conns)
    .option('--depth <n>', depthHelp, intArg(1, L.depthMax), d.depth);
  return addWorkloadMixOptions(cmd, d, L)
    .option('--no-preload', 'skip setting every key before the run')
    .option('--seed <n>', 'seed of the key/operation sequence', intArg(0, 2 ** 31 - 1), d.seed)
    .option('--json', 'print the report as one line of JSON', false);
}

/** Bounds of the workload flags, per generator. */
export interface WorkloadLimits {
  keysMax: number;
  valueSizeMax: number;
  durationSMax: number;
}

/** The flags of the workload itself (mix, keys, values, key choice, timing), shared by every generator. */
export function addWorkloadMixOptions(cmd: Command, d: Omit<Workload, 'seed'>, L: WorkloadLimits): Command {
  return cmd
    .option('--get-ratio <r>', 'fraction of requests that are gets (rest are sets)', numberArg(0, 1), d.getRatio)
    .option('--keys <n>', 'key space size (key:0 .. key:<n-1>)', intArg(1, L.keysMax), d.keys)
    .option('--value-size <bytes>', 'value size', intArg(0, L.valueSizeMax), d.valueSize)
    .addOption(new Option('--dist <dist>', 'key distribution').choices(['uniform', 'zipf']).default(d.dist))
    .option('--zipf-s <s>', 'Zipf exponent', numberArg(0.01, 5), d.zipfS)
    .option('--warmup-s <s>', 'unrecorded warm-up, seconds', numberArg(0, L.durationSMax), d.warmupS)
    .option('--duration-s <s>', 'measured window, seconds', numberArg(0.1, L.durationSMax), d.durationS);
}

/** The settings the workload flags give (every generator's settings start with these). */
export function workloadSettings(o: WorkloadOptions): Omit<WorkloadOptions, 'json'> {
  return {
    host: o.host,
    port: o.port,
    conns: o.conns,
    depth: o.depth,
    getRatio: o.getRatio,
    keys: o.keys,
    valueSize: o.valueSize,
    dist: o.dist,
    zipfS: o.zipfS,
    warmupS: o.warmupS,
    durationS: o.durationS,
    preload: o.preload,
    seed: o.seed,
  };
}
