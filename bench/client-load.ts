// CLI of the TypeScript-client load generator (bench/lib/client-load.ts). Prints a summary,
// or with --json one line of JSON (the ClientLoadReport) that bench-cluster reads from a
// child process.
//
//   node dist/bench/client-load.js --master 127.0.0.1:7000 --concurrency 16 --get-ratio 0.9 \
//     --keys 10000 --value-size 100 --warmup-s 1 --duration-s 5
//   node dist/bench/client-load.js --master 127.0.0.1:7000 --mode open --rate 5000 --get-ratio 0 --no-preload
import { clientLoadCommand, clientLoadSettingsOf, runClientLoad } from './lib/client-load.js';

const program = clientLoadCommand().parse();
const o = program.opts<Record<string, unknown>>();
const settings = clientLoadSettingsOf(o);

try {
  const r = await runClientLoad(settings);
  if (o.json) {
    process.stdout.write(JSON.stringify(r) + '\n');
  } else {
    const f = (x: number) => x.toFixed(3);
    const load = settings.mode === 'open' ? `open loop, rate ${settings.rate} ops/s` : `closed loop, ${settings.concurrency} in flight`;
    const lines = [
      `master ${settings.master}  ${load}  get=${settings.getRatio} keys=${settings.keys} value=${settings.valueSize}B dist=${settings.dist}`,
      `preload ${r.preload.keys} keys in ${r.preload.seconds.toFixed(2)} s (${r.preload.errors} errors)`,
      `ok/s ${Math.round(r.opsPerS)}  (${r.ok} ok in ${r.measuredS.toFixed(2)} s, stopped by ${r.stoppedBy})  gets ${r.gets} (hits ${r.hits}, misses ${r.misses})  sets ${r.sets}`,
      `latency ms  p50 ${f(r.latencyMs.p50)}  p99 ${f(r.latencyMs.p99)}  p999 ${f(r.latencyMs.p999)}  max ${f(r.latencyMs.max)}`,
      `errors ${r.errors} ${JSON.stringify(r.errorsByCode)}  warm-up errors ${r.warmupErrors}  drain errors ${r.drainErrors}  unfinished ${r.unfinished}` +
        (r.errorSamples.length ? `  samples: ${r.errorSamples.join(' | ')}` : ''),
      `client: ${r.client.requests} requests, ${r.client.retries} retries, ${r.client.busy} busy, ${r.client.notOwner} not owner, ${r.client.refreshFailures} failed table pulls`,
      `generator: cpu ${r.generator.cpuCores.toFixed(2)} cores; event loop ${(r.generator.eventLoopUtilization * 100).toFixed(0)} % busy`,
    ];
    if (r.open) {
      lines.push(
        `open: offered ${Math.round(r.open.offeredPerS)}/s (${r.open.offered}), sent ${r.open.sent}, dropped by generator ${r.open.droppedByGenerator}; ` +
          `in flight max ${r.open.inflightMaxSeen}, at end ${r.open.inflightAtEnd}; tick lag ms p50 ${f(r.open.tickLagMs.p50)} p99 ${f(r.open.tickLagMs.p99)} max ${f(r.open.tickLagMs.max)}`,
      );
    }
    console.log(lines.join('\n'));
  }
} catch (e) {
  console.error(`client-load: ${(e as Error).message}`);
  process.exitCode = 1;
}
// Nothing should be left running (the client is closed); if something is, do not hang the parent.
setTimeout(() => process.exit(), 1000).unref();
