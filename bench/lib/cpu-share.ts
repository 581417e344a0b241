// Who used the machine's CPUs, from Linux /proc: this process and its descendants (the
// servers and generators a benchmark started) versus everything else (other tenants, a
// parallel test run). On a shared machine a dip in a timeline may be someone else's work;
// sampling both every second says which. Counts are clock ticks; only differences between
// two samples mean anything. Off Linux (no /proc) every sample is undefined.
import { readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';

export interface CpuSample {
  atMs: number;
  /** Ticks all CPUs spent busy, and busy + idle, since boot (/proc/stat). */
  busy: number;
  total: number;
  /** Ticks of the process tree under `rootPid`, reaped children included. */
  ours: number;
}

/** Cores in use over [a, b]: by the tree (`ours`) and by every other process (`others`). */
export interface CpuShare {
  ours: number;
  others: number;
}

const pidsMax = 100_000;

function procStat(pid: string): { ppid: number; ticks: number } | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'latin1');
    // The command name is in parentheses and may hold spaces: fields start after the last ')'.
    const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
    // f[1] ppid; f[11..14] utime, stime, cutime, cstime
    return { ppid: Number(f[1]), ticks: Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]) };
  } catch {
    return undefined; // exited between readdir and read
  }
}

export function cpuSample(rootPid: number = process.pid): CpuSample | undefined {
  try {
    const line = readFileSync('/proc/stat', 'latin1').split('\n')[0] ?? '';
    const v = line.trim().split(/\s+/).slice(1).map(Number);
    const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = v;
    const busy = user + nice + system + irq + softirq + steal;
    const children = new Map<number, number[]>();
    const ticks = new Map<number, number>();
    for (const name of readdirSync('/proc').slice(0, pidsMax)) {
      if (name < '0' || name > '9') continue;
      const s = procStat(name);
      if (!s) continue;
      const pid = Number(name);
      ticks.set(pid, s.ticks);
      const list = children.get(s.ppid);
      if (list) list.push(pid);
      else children.set(s.ppid, [pid]);
    }
    let ours = 0;
    const stack = [rootPid];
    // Bounded by the number of processes read: each pid is visited once (a tree).
    for (let n = 0; stack.length > 0 && n < pidsMax; n++) {
      const pid = stack.pop()!;
      ours += ticks.get(pid) ?? 0;
      stack.push(...(children.get(pid) ?? []));
    }
    return { atMs: Date.now(), busy, total: busy + idle + iowait, ours };
  } catch {
    return undefined;
  }
}

/** Cores used between two samples, by the tree and by the rest (never below 0). */
export function cpuShare(a: CpuSample, b: CpuSample, cpus: number = os.cpus().length): CpuShare | undefined {
  const total = b.total - a.total;
  if (total <= 0) return undefined;
  const perCore = total / cpus; // ticks one core had in the interval
  const ours = (b.ours - a.ours) / perCore;
  const all = (b.busy - a.busy) / perCore;
  return { ours: Math.max(0, ours), others: Math.max(0, all - ours) };
}
