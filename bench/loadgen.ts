// CLI of the memcached load generator (bench/lib/loadgen.ts). Prints a summary, or with
// --json one line of JSON (the LoadReport) that bench-node reads from a child process.
//
//   node dist/bench/loadgen.js --port 11211 --conns 50 --depth 1 --get-ratio 0.9 \
//     --keys 100000 --value-size 100 --duration-s 10 --dist uniform --warmup-s 2
import { Command, Option } from 'commander';
import { intArg, numberArg } from './lib/cli.js';
import { defaultLoadSettings as d, loadLimits as L, runLoad, type LoadSettings } from './lib/loadgen.js';

interface CliOptions {
  host: string;
  port: number;
  conns: number;
  depth: number;
  getRatio: number;
  keys: number;
  valueSize: number;
  dist: 'uniform' | 'zipf';
  zipfS: number;
  warmupS: number;
  durationS: number;
  maxRequests: number;
  preload: boolean;
  seed: number;
  json: boolean;
  timeline: boolean;
  startAtMs?: number;
}

const program = new Command('loadgen')
  .description('memcached text-protocol load generator (get/set mix, pipelined, latency histogram)')
  .option('--host <host>', 'server address', d.host)
  .requiredOption('--port <port>', 'server memcached port', intArg(1, 65535))
  .option('--conns <n>', 'TCP connections', intArg(1, L.connsMax), d.conns)
  .option('--depth <n>', 'requests in flight per connection (pipeline depth)', intArg(1, L.depthMax), d.depth)
  .option('--get-ratio <r>', 'fraction of requests that are gets (rest are sets)', numberArg(0, 1), d.getRatio)
  .option('--keys <n>', 'key space size (key:0 .. key:<n-1>)', intArg(1, L.keysMax), d.keys)
  .option('--value-size <bytes>', 'value size', intArg(0, L.valueSizeMax), d.valueSize)
  .addOption(new Option('--dist <dist>', 'key distribution').choices(['uniform', 'zipf']).default(d.dist))
  .option('--zipf-s <s>', 'Zipf exponent', numberArg(0.01, 5), d.zipfS)
  .option('--warmup-s <s>', 'unrecorded warm-up, seconds', numberArg(0, L.durationSMax), d.warmupS)
  .option('--duration-s <s>', 'measured window, seconds', numberArg(0.1, L.durationSMax), d.durationS)
  .option('--max-requests <n>', 'stop the window after this many replies', intArg(1, Number.MAX_SAFE_INTEGER), d.maxRequests)
  .option('--no-preload', 'skip setting every key before the run')
  .option('--seed <n>', 'seed of the key/operation sequence', intArg(0, 2 ** 31 - 1), d.seed)
  .option('--timeline', 'also report every second of the measured window (ops, errors, p50/p99/max)', false)
  .option('--start-at-ms <ms>', 'open the measured window at this wall-clock time (ms since the epoch) instead of after --warmup-s', intArg(0, Number.MAX_SAFE_INTEGER))
  .option('--json', 'print the report as one line of JSON', false)
  .parse();

const o = program.opts<CliOptions>();
const settings: LoadSettings = {
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
  maxRequests: o.maxRequests,
  preload: o.preload,
  seed: o.seed,
  ...(o.timeline ? { timeline: true } : {}),
  ...(o.startAtMs !== undefined ? { startAtMs: o.startAtMs } : {}),
};

try {
  const r = await runLoad(settings);
  if (o.json) {
    process.stdout.write(JSON.stringify(r) + '\n');
  } else {
    const f = (x: number) => x.toFixed(3);
    console.log(
      [
        `target ${settings.host}:${settings.port}  conns=${settings.conns} depth=${settings.depth} get=${settings.getRatio} keys=${settings.keys} value=${settings.valueSize}B dist=${settings.dist}`,
        `preload ${r.preload.keys} keys in ${r.preload.seconds.toFixed(2)} s (${r.preload.errors} errors)`,
        `ops/s ${Math.round(r.opsPerS)}  (${r.ops} ops in ${r.measuredS.toFixed(2)} s, stopped by ${r.stoppedBy})`,
        `latency ms  p50 ${f(r.latencyMs.p50)}  p99 ${f(r.latencyMs.p99)}  p999 ${f(r.latencyMs.p999)}  max ${f(r.latencyMs.max)}`,
        `gets ${r.gets} (hits ${r.hits}, misses ${r.misses})  sets ${r.sets}  errors ${r.errors}${r.errorSamples.length ? ': ' + r.errorSamples.join(' | ') : ''}`,
      ].join('\n'),
    );
    for (const [i, t] of (r.timeline?.samples ?? []).entries()) {
      const p = (x: number | null) => (x === null ? '-' : f(x));
      console.log(`  second ${String(i).padStart(3)}  ops/s ${String(Math.round(t.ops / Math.max(t.spanS, 1e-9))).padStart(7)}  p50 ${p(t.p50Ms)}  p99 ${p(t.p99Ms)}  max ${p(t.maxMs)}  errors ${t.errors}${t.spanS < 1 ? `  (${t.spanS.toFixed(2)} s)` : ''}`);
    }
  }
} catch (e) {
  console.error(`loadgen: ${(e as Error).message}`);
  process.exitCode = 1;
}
