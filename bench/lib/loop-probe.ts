// Loaded into a server process under test with `node --import <dist/bench/lib/loop-probe.js>`
// (bench:overload passes it as a Node flag of the ringkv node): samples the process's own
// event loop from inside, without touching server code, and appends one JSON line per
// interval to the file named by $RINGKV_LOOP_PROBE_FILE:
//
//   {"atMs":…, "elu":0.97, "delayP50Ms":…, "delayP99Ms":…, "delayMaxMs":…, "rssMb":…, "heapMb":…}
//
// elu = event-loop utilization over the interval (share of time the loop was busy), delay =
// how late a 10 ms timer fired (perf_hooks.monitorEventLoopDelay records the whole interval
// between its callbacks; the 10 ms period is taken off here, so 0 = on time), memory = RSS
// and V8 heap at the sample. The timer is unref'd, so the probe never keeps a process alive;
// one small synchronous append per interval is its whole cost. Without the variable it does
// nothing.
import { appendFileSync, readFileSync } from 'node:fs';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';

export interface LoopSample {
  atMs: number;
  elu: number;
  delayP50Ms: number;
  delayP99Ms: number;
  delayMaxMs: number;
  rssMb: number;
  heapMb: number;
}

export const loopProbeEnv = 'RINGKV_LOOP_PROBE_FILE';
export const loopProbeIntervalMs = 200;

/** The samples a probe wrote to `file` (the bench's side); none when there is no file or it cannot be read. */
export function readLoopSamples(file: string | undefined): LoopSample[] {
  if (!file) return [];
  try {
    return readFileSync(file, 'utf8')
      .split('\n')
      .filter((l) => l.trim().length > 0)
      .map((l) => JSON.parse(l) as LoopSample);
  } catch {
    return [];
  }
}

const file = process.env[loopProbeEnv];
if (file) {
  const resolutionMs = 10;
  const delay = monitorEventLoopDelay({ resolution: resolutionMs });
  delay.enable();
  let elu = performance.eventLoopUtilization();
  let last = performance.now();
  const timer = setInterval(() => {
    const now = performance.eventLoopUtilization();
    const at = performance.now();
    // This callback's own lateness: when one turn of the loop held it past the whole
    // interval, the 10 ms monitor has no sample yet, and this is the delay.
    const lateMs = Math.max(0, at - last - loopProbeIntervalMs);
    last = at;
    const m = process.memoryUsage();
    const round = (x: number) => Math.round(x * 100) / 100;
    const ms = (ns: number) => Math.max(0, round(ns / 1e6 - resolutionMs));
    const some = delay.count > 0;
    const sample: LoopSample = {
      atMs: Date.now(),
      elu: Math.round(performance.eventLoopUtilization(now, elu).utilization * 1000) / 1000,
      delayP50Ms: some ? ms(delay.percentile(50)) : round(lateMs),
      delayP99Ms: some ? Math.max(ms(delay.percentile(99)), round(lateMs)) : round(lateMs),
      delayMaxMs: some ? Math.max(ms(delay.max), round(lateMs)) : round(lateMs),
      rssMb: Math.round(m.rss / 1024 / 1024),
      heapMb: Math.round(m.heapUsed / 1024 / 1024),
    };
    elu = now;
    delay.reset();
    try {
      appendFileSync(file, JSON.stringify(sample) + '\n');
    } catch {
      clearInterval(timer); // the bench removed the file: stop quietly
    }
  }, loopProbeIntervalMs);
  timer.unref();
}
