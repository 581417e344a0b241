// CLI of the memcached load generator (bench/lib/loadgen.ts). Prints a summary, or with
// --json one line of JSON (the LoadReport) that bench-node reads from a child process.
//
//   node dist/bench/loadgen.js --port 11211 --conns 50 --depth 1 --get-ratio 0.9 \
//     --keys 100000 --value-size 100 --duration-s 10 --dist uniform --warmup-s 2
import { Command } from 'commander';
import { intArg } from './lib/cli.js';
import { defaultLoadSettings as d, runLoad, type LoadSettings } from './lib/loadgen.js';
import { addWorkloadOptions, workloadSettings, type WorkloadOptions } from './lib/workload-cli.js';

interface CliOptions extends WorkloadOptions {
  maxRequests: number;
  timeline: boolean;
  startAtMs?: number;
}

const program = addWorkloadOptions(
  new Command('loadgen').description('memcached text-protocol load generator (get/set mix, pipelined, latency histogram)'),
  d,
  'requests in flight per connection (pipeline depth)',
)
  .option('--max-requests <n>', 'stop the window after this many replies', intArg(1, Number.MAX_SAFE_INTEGER), d.maxRequests)
  .option('--timeline', 'also report every second of the measured window (ops, errors, p50/p99/max)', false)
  .option('--start-at-ms <ms>', 'open the measured window at this wall-clock time (ms since the epoch) instead of after --warmup-s', intArg(0, Number.MAX_SAFE_INTEGER))
  .parse();

const o = program.opts<CliOptions>();
const settings: LoadSettings = {
  ...workloadSettings(o),
  maxRequests: o.maxRequests,
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
