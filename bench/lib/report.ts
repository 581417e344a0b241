// What a benchmark run records besides its numbers (machine, commit, command) and how its
// table is rendered. Every speed figure in the table is a ratio to a peer measured in the
// same run; absolute ops/s are printed only so a reader can see the ratios' inputs.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { cliPath, repoRoot } from './servers.js';

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

/** One line, no pipes: a note must not break the markdown table. */
export function cellText(text: string, charsMax: number): string {
  const flat = text.replace(/\s+/g, ' ').replace(/\|/g, '/').trim();
  return flat.length > charsMax ? flat.slice(0, charsMax - 1) + '…' : flat;
}

/** A cell measured over several rounds: `best` is the round with the highest ops/s. */
export interface RoundsCell<M extends { opsPerS: number }> {
  runs: Array<{ round: number; result?: M; error?: string }>;
  best?: M;
}

export function pickBest<M extends { opsPerS: number }>(cell: RoundsCell<M>): void {
  for (const run of cell.runs) {
    if (run.result && (!cell.best || run.result.opsPerS > cell.best.opsPerS)) cell.best = run.result;
  }
}

export function ratio(m: { opsPerS: number } | undefined, base: { opsPerS: number } | undefined): number | undefined {
  return m && base && base.opsPerS > 0 ? m.opsPerS / base.opsPerS : undefined;
}

/** The command line this benchmark was started with, the script relative to the repo root. */
export function commandLine(): string {
  return ['node', ...process.execArgv, path.relative(repoRoot, process.argv[1] ?? ''), ...process.argv.slice(2)].join(' ');
}

/** False (after saying so on stderr as `prog`) when the ringkv CLI is not built. */
export function cliBuilt(prog: string): boolean {
  if (existsSync(cliPath)) return true;
  console.error(`${prog}: ${path.relative(repoRoot, cliPath)} is missing: build the CLI (npx tsc -p .), then re-run.`);
  return false;
}

/** The results' markdown title: `# bench:x <date> <commit>[ (uncommitted changes)][ — quick]`. */
export function resultsTitle(benchmark: string, startedAt: Date, commit: CommitInfo, quick: boolean): string {
  return `# ${benchmark} ${startedAt.toISOString().slice(0, 10)} ${commit.short}${commit.dirty ? ' (uncommitted changes)' : ''}${quick ? ' — quick' : ''}`;
}

/** The machine as the results' markdown shows it (without the `Machine: ` label). */
export function machineText(machine: MachineInfo): string {
  return `${machine.cpus} x ${machine.cpuModel}, ${machine.memoryMb} MB, ${machine.os}, Node ${machine.node}`;
}

/** The results' file name without extension: `<date>-<commit>-<name>[-quick]`. */
export function resultsBase(startedAt: Date, commit: CommitInfo, name: string, quick: boolean): string {
  return `${startedAt.toISOString().slice(0, 10)}-${commit.short}-${name}${quick ? '-quick' : ''}`;
}

export interface ResultsHeaderInput {
  benchmark: string;
  startedAt: Date;
  finishedAt: Date;
  command: string;
  commit: CommitInfo;
  machine: MachineInfo;
  quick: boolean;
}

/** The fields every results JSON starts with, in order. */
export function resultsHeader(h: ResultsHeaderInput) {
  return {
    benchmark: h.benchmark,
    startedAt: h.startedAt.toISOString(),
    finishedAt: h.finishedAt.toISOString(),
    command: h.command,
    commit: h.commit,
    machine: h.machine,
    quick: h.quick,
  };
}

/** Writes bench/results/<base>.json, .md (and .svg when given) and says so on stderr as `prog`. */
export function writeResults(prog: string, base: string, files: { json: unknown; md: string; svg?: string }): void {
  const dir = path.join(repoRoot, 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  // Histogram buckets are [index, count] pairs: one per line instead of four keeps the file small.
  const text = JSON.stringify(files.json, null, 2).replace(/\[\s+(-?[\d.e+]+),\s+(-?[\d.e+]+)\s+\]/g, '[$1, $2]');
  writeFileSync(path.join(dir, `${base}.json`), text + '\n');
  writeFileSync(path.join(dir, `${base}.md`), files.md);
  if (files.svg !== undefined) writeFileSync(path.join(dir, `${base}.svg`), files.svg);
  console.error(`${prog}: wrote bench/results/${base}.json${files.svg !== undefined ? ', .md and .svg' : ' and .md'}`);
}

/**
 * Prints the markdown on stdout and, when `write`, writes bench/results/<base>.json (the
 * header's fields, then the body's), .md and .svg (when given).
 */
export function publishResults(
  prog: string,
  o: { write: boolean; base: string; md: string; svg?: string; header: ResultsHeaderInput; body: () => Record<string, unknown> },
): void {
  console.log('\n' + o.md);
  if (!o.write) return;
  writeResults(prog, o.base, { json: { ...resultsHeader(o.header), ...o.body() }, md: o.md, ...(o.svg !== undefined ? { svg: o.svg } : {}) });
}
