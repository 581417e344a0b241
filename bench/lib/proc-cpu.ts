// CPU used by a benchmark's processes during a measured window, from Linux /proc: the
// servers by PID, the load generators as the rest of this process's tree (they are its
// children, their PIDs hidden inside the child runner), and every process outside the tree.
// A sampler reads /proc every `everyMs` while a cell runs; the cores between the first and
// last sample inside the window are then divided up. Counts are clock ticks, turned into
// cores by /proc/stat's total over the same interval (no CLK_TCK needed). Off Linux every
// sample is undefined and so is every figure.
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { cpuSample } from './cpu-share.js';

export interface ProcCpuSample {
  atMs: number;
  /** /proc/stat: ticks all CPUs spent busy, and busy + idle. */
  busy: number;
  total: number;
  /** Ticks of this process's tree (reaped children included). */
  tree: number;
  /** utime + stime of this process alone. */
  self: number;
  /** utime + stime of each watched PID (absent: it was not running). */
  pids: Record<number, number>;
}

/** Cores in use over an interval, by group. */
export interface CpuUse {
  /** Seconds between the two samples used. */
  seconds: number;
  /** The load generators: the tree minus the servers and this process. */
  generators: number;
  /** The servers, summed per group name (e.g. nodes, master). */
  servers: Record<string, number>;
  /** This process (the bench itself, its sampler included). */
  bench: number;
  /** Every process outside the tree (other tenants). */
  others: number;
}

function pidTicks(pid: number): number | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'latin1');
    const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return Number(f[11]) + Number(f[12]); // utime, stime
  } catch {
    return undefined;
  }
}

export function procCpuSample(pids: readonly number[]): ProcCpuSample | undefined {
  const s = cpuSample(process.pid);
  const self = pidTicks(process.pid);
  if (!s || self === undefined) return undefined;
  const out: Record<number, number> = {};
  for (const pid of pids) {
    const t = pidTicks(pid);
    if (t !== undefined) out[pid] = t;
  }
  return { atMs: s.atMs, busy: s.busy, total: s.total, tree: s.ours, self, pids: out };
}

/**
 * Cores used between the first and the last sample inside [fromMs, toMs], by group
 * (`servers`: group name -> PIDs). Undefined when fewer than two samples fall inside, or a
 * server's PID is missing from either.
 */
export function cpuUseBetween(samples: readonly ProcCpuSample[], fromMs: number, toMs: number, servers: Record<string, readonly number[]>, cpus: number = os.cpus().length): CpuUse | undefined {
  const inside = samples.filter((s) => s.atMs >= fromMs && s.atMs <= toMs);
  if (inside.length < 2) return undefined;
  const a = inside[0]!;
  const b = inside[inside.length - 1]!;
  const total = b.total - a.total;
  if (total <= 0) return undefined;
  const perCore = total / cpus; // ticks one core had in the interval
  const cores = (ticks: number) => Math.max(0, ticks / perCore);
  const byGroup: Record<string, number> = {};
  let serverTicks = 0;
  for (const [group, pids] of Object.entries(servers)) {
    let ticks = 0;
    for (const pid of pids) {
      const x = a.pids[pid];
      const y = b.pids[pid];
      if (x === undefined || y === undefined) return undefined;
      ticks += y - x;
    }
    serverTicks += ticks;
    byGroup[group] = cores(ticks);
  }
  const treeTicks = b.tree - a.tree;
  const selfTicks = b.self - a.self;
  return {
    seconds: (b.atMs - a.atMs) / 1000,
    generators: cores(treeTicks - serverTicks - selfTicks),
    servers: byGroup,
    bench: cores(selfTicks),
    others: cores(b.busy - a.busy - treeTicks),
  };
}

/** Samples /proc every `everyMs` until stopped (at most `samplesMax` samples: memory stays bounded). */
export class CpuSampler {
  private readonly samples: ProcCpuSample[] = [];
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly pids: readonly number[],
    everyMs = 250,
    private readonly samplesMax = 20_000,
  ) {
    this.take();
    this.timer = setInterval(() => this.take(), everyMs);
    this.timer.unref();
  }

  private take(): void {
    if (this.samples.length >= this.samplesMax) return;
    const s = procCpuSample(this.pids);
    if (s) this.samples.push(s);
  }

  /** Stops sampling (one last sample first) and returns every sample. */
  stop(): ProcCpuSample[] {
    clearInterval(this.timer);
    this.take();
    return this.samples;
  }
}
