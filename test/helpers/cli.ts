// Running the compiled `ringkv` CLI in a test: one command that should end by itself,
// with its exit code and every byte it printed, killed (by PID) if it does not.
import { spawn, type ChildProcess } from 'node:child_process';
import { expect } from 'vitest';
import { cliPath } from '../../bench/lib/servers.js';

export const EXIT_USAGE = 2;

export interface CliRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs `ringkv <args>`; `tracked` holds the process while it runs, so afterAll/afterEach can kill it. */
export function runCli(args: string[], timeoutMs: number, tracked: Set<ChildProcess>): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [cliPath, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    tracked.add(proc);
    let stdout = '';
    let stderr = '';
    proc.stdout!.on('data', (d: Buffer) => (stdout += d.toString('utf8')));
    proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`ringkv ${args.join(' ')} still running after ${timeoutMs} ms; stdout ${JSON.stringify(stdout)} stderr ${JSON.stringify(stderr)}`));
    }, timeoutMs);
    proc.once('error', (e) => {
      clearTimeout(timer);
      tracked.delete(proc);
      reject(e);
    });
    // 'close' (not 'exit'): every byte of stdout and stderr has been read by then.
    proc.once('close', (code, signal) => {
      clearTimeout(timer);
      tracked.delete(proc);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** A usage error or startup failure: exactly one `ringkv: ...` line on stderr, nothing on stdout, exit 2. */
export function expectOneLineFailure(run: CliRun, pattern: RegExp): void {
  expect(run.code, `stderr: ${run.stderr}`).toBe(EXIT_USAGE);
  expect(run.stderr.endsWith('\n'), JSON.stringify(run.stderr)).toBe(true);
  const lines = run.stderr.slice(0, -1).split('\n');
  expect(lines, JSON.stringify(run.stderr)).toHaveLength(1);
  expect(lines[0]).toMatch(/^ringkv: /);
  expect(lines[0]).toMatch(pattern);
  expect(run.stdout).toBe('');
}

/** Resolves with the exit code and signal once `proc` has exited; rejects after `timeoutMs`. */
export function exitOf(proc: ChildProcess, timeoutMs: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve({ code: proc.exitCode, signal: proc.signalCode });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`pid ${proc.pid} did not exit within ${timeoutMs} ms`)), timeoutMs);
    proc.once('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal });
    });
  });
}
