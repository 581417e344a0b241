// What a benchmark run records besides its numbers (machine, commit, command) and how its
// table is rendered. Every speed figure in the table is a ratio to a peer measured in the
// same run; absolute ops/s are printed only so a reader can see the ratios' inputs.
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import { repoRoot } from './servers.js';

export interface MachineInfo {
  cpuModel: string;
  cpus: number;
  memoryMb: number;
  os: string;
  node: string;
  memcached: string;
  memcaslap: string;
}

function firstLine(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 5000 }).trim().split('\n')[0] ?? '';
  } catch {
    return 'unavailable';
  }
}

export function machineInfo(): MachineInfo {
  const cpus = os.cpus();
  return {
    cpuModel: cpus[0]?.model ?? 'unknown',
    cpus: cpus.length,
    memoryMb: Math.round(os.totalmem() / 1024 / 1024),
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    memcached: firstLine('memcached', ['-V']),
    memcaslap: firstLine('memcaslap', ['-V']),
  };
}

export interface CommitInfo {
  /** Short hash, or "nocommit" in a repository without commits. */
  short: string;
  /** Uncommitted changes were present: the figures are of the working tree, not of `short`. */
  dirty: boolean;
}

export function commitInfo(): CommitInfo {
  const git = (args: string[]) => execFileSync('git', args, { cwd: repoRoot, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 5000 }).trim();
  let short = 'nocommit';
  let dirty = true;
  try {
    short = git(['rev-parse', '--short', 'HEAD']);
  } catch {
    /* no commits yet, or not a git checkout */
  }
  try {
    dirty = git(['status', '--porcelain']).length > 0;
  } catch {
    /* not a git checkout: treat as dirty */
  }
  return { short, dirty };
}

export function fixed(x: number | undefined, digits: number): string {
  return x === undefined || !Number.isFinite(x) ? '–' : x.toFixed(digits);
}

/** A markdown table; columns listed in `left` are left-aligned, the others (numbers) right. */
export function markdownTable(header: string[], rows: string[][], left: number[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const isLeft = (i: number) => left.includes(i);
  const line = (cells: string[]) => '| ' + cells.map((c, i) => (isLeft(i) ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' | ') + ' |';
  const rule = '|' + widths.map((w, i) => (isLeft(i) ? ':' + '-'.repeat(w + 1) : '-'.repeat(w + 1) + ':')).join('|') + '|';
  return [line(header), rule, ...rows.map(line)].join('\n');
}
