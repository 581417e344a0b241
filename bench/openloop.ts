// CLI of the open-loop memcached load generator (bench/lib/openloop.ts). Prints a summary,
// or with --json one line of JSON (the OpenLoopReport) that bench-overload reads from a
// child process.
//
//   node dist/bench/openloop.js --port 11211 --rate 20000 --conns 50 --get-ratio 0.5 \
//     --value-size 1024 --keys 100000 --warmup-s 2 --duration-s 5
//   node dist/bench/openloop.js --port 11211 --mode closed --depth 8 ...   (capacity)
import { Command, Option } from 'commander';
import { intArg, numberArg } from './lib/cli.js';
import { addWorkloadOptions, workloadSettings, type WorkloadOptions } from './lib/workload-cli.js';
import { defaultOpenLoopSettings as d, openLoopLimits as OL, runOpenLoop, type OpenLoopMode, type OpenLoopSettings } from './lib/openloop.js';

interface CliOptions extends WorkloadOptions {
  mode: OpenLoopMode;
  rate: number;
  tickMs: number;
  backlogMax: number;
}

const program = addWorkloadOptions(
  new Command('openloop').description('open-loop memcached text-protocol load generator: fixed send schedule, latency from intended send time, busy replies counted apart'),
  d,
  'requests in flight per connection (closed mode)',
)
  .addOption(new Option('--mode <mode>', 'open: --rate ops/s at fixed times; closed: --depth in flight per connection').choices(['open', 'closed']).default(d.mode))
  .option('--rate <ops>', 'offered load, requests per second over all connections (open mode)', numberArg(1, OL.rateMax), d.rate)
  .option('--tick-ms <ms>', 'scheduler period, ms', numberArg(1, OL.tickMsMax), d.tickMs)
  .option('--backlog-max <n>', 'requests one connection may hold (unanswered + unsent) before new ones are dropped', intArg(1, OL.backlogMaxMax), d.backlogMax)
  .parse();

const o = program.opts<CliOptions>();
const settings: OpenLoopSettings = {
  ...workloadSettings(o),
  mode: o.mode,
  rate: o.rate,
  tickMs: o.tickMs,
  backlogMax: o.backlogMax,
};

try {
  const r = await runOpenLoop(settings);
  if (o.json) {
    process.stdout.write(JSON.stringify(r) + '\n');
  } else {
    const f = (x: number) => x.toFixed(3);
    const load = settings.mode === 'open' ? `open loop, rate ${settings.rate} ops/s` : `closed loop, depth ${settings.depth}`;
    console.log(
      [
        `target ${settings.host}:${settings.port}  ${load}  conns=${settings.conns} get=${settings.getRatio} keys=${settings.keys} value=${settings.valueSize}B dist=${settings.dist}`,
        `preload ${r.preload.keys} keys in ${r.preload.seconds.toFixed(2)} s (${r.preload.errors} errors)`,
        `window ${r.measuredS.toFixed(2)} s (stopped by ${r.stoppedBy}): offered ${Math.round(r.offeredPerS)}/s  sent ${Math.round(r.sentPerS)}/s  goodput ${Math.round(r.goodputPerS)}/s  busy ${Math.round(r.busyPerS)}/s  errors ${r.errors}  dropped by generator ${r.droppedByGenerator}`,
        `admitted ms  p50 ${f(r.admittedMs.p50)}  p99 ${f(r.admittedMs.p99)}  p999 ${f(r.admittedMs.p999)}  max ${f(r.admittedMs.max)}   busy ms p50 ${f(r.busyMs.p50)} p99 ${f(r.busyMs.p99)}`,
        `held: in flight mean ${Math.round(r.inflight.mean)} max ${r.inflight.max}; unsent mean ${Math.round(r.unsent.mean)} max ${r.unsent.max}; oldest unanswered at end ${r.oldestUnansweredMs.toFixed(1)} ms; backpressure stalls ${r.backpressureStalls}`,
        `generator: tick lag ms p50 ${f(r.tickLagMs.p50)} p99 ${f(r.tickLagMs.p99)} max ${f(r.tickLagMs.max)}; cpu ${r.generator.cpuCores.toFixed(2)} cores; event loop ${(r.generator.eventLoopUtilization * 100).toFixed(0)} % busy`,
        `gets hits ${r.hits} misses ${r.misses}  sets stored ${r.stored}${r.errorSamples.length ? '  samples: ' + r.errorSamples.join(' | ') : ''}`,
      ].join('\n'),
    );
    for (const [i, s] of r.seconds.entries()) {
      console.log(`  second ${String(i).padStart(3)}  offered ${String(s.offered).padStart(7)}  sent ${String(s.sent).padStart(7)}  ok ${String(s.ok).padStart(7)}  busy ${String(s.busy).padStart(6)}  p99 ${s.p99Ms === null ? '-' : f(s.p99Ms)}  in flight ${s.inflight}  unsent ${s.unsent}`);
    }
  }
} catch (e) {
  console.error(`openloop: ${(e as Error).message}`);
  process.exitCode = 1;
}
