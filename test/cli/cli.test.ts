// The `ringkv` command line as users run it (the compiled dist/client/cli.js): help, and
// every usage error or startup failure as exactly one line on stderr with exit code 2.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { cliPath, startRingkv, type RunningServer } from '../../bench/lib/servers.js';
import { EXIT_USAGE, expectOneLineFailure, runCli as runCliWith, type CliRun } from '../helpers/cli.js';

/** A CLI run that should end by itself (help, usage error) is killed after this long. */
const runTimeoutMs = 10_000;


const running = new Set<ChildProcess>();
const servers: RunningServer[] = [];
const netServers: net.Server[] = [];
let tmp: string;

const runCli = (args: string[]): Promise<CliRun> => runCliWith(args, runTimeoutMs, running);

/** The node flags that keep a run off the default ports and out of ./data. */
function nodeArgs(extra: string[] = []): string[] {
  return ['node', '--port', '0', '--http-port', '0', '--data', path.join(tmp, 'data'), '--storage', 'memory', ...extra];
}


function occupy(): Promise<{ server: net.Server; port: number }> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      netServers.push(server);
      const addr = server.address();
      resolve({ server, port: typeof addr === 'object' && addr ? addr.port : 0 });
    });
  });
}

beforeEach(() => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'ringkv-cli-'));
});

afterEach(async () => {
  for (const proc of running) if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
  running.clear();
  for (const s of servers.splice(0)) await s.stop();
  for (const s of netServers.splice(0)) await new Promise<void>((resolve) => s.close(() => resolve()));
  rmSync(tmp, { recursive: true, force: true });
});

describe('ringkv --help', () => {
  it('lists the node command and exits 0', async () => {
    const run = await runCli(['--help']);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^\s+node\b/m);
    expect(run.stderr).toBe('');
  });

  it('lists the node flags under `node --help`', async () => {
    const run = await runCli(['node', '--help']);
    expect(run.code).toBe(0);
    for (const flag of ['--port', '--http-port', '--data', '--storage', '--cache-mb', '--memory-mb', '--max-item-size', '--max-conns']) {
      expect(run.stdout).toContain(flag);
    }
  });
});

describe('usage errors: one line on stderr, exit 2', () => {
  it.each([
    ['an unknown flag', ['--bogus'], /unknown option '--bogus'/],
    ['a port that is not a number', ['--port', 'abc'], /port.*abc|abc.*port/],
    ['a port out of range', ['--http-port', '65536'], /65536/],
    ['an unknown storage kind', ['--storage', 'disk'], /disk/],
    ['a cache size of 0', ['--cache-mb', '0'], /--cache-mb/],
    ['a flag without its value', ['--memory-mb'], /--memory-mb/],
    ['an item size below the minimum', ['--max-item-size', '10'], /--max-item-size/],
  ])('%s', async (_name, flags, pattern) => {
    expectOneLineFailure(await runCli(nodeArgs(flags)), pattern);
  });

  it('an unknown command', async () => {
    expectOneLineFailure(await runCli(['bogus']), /unknown command 'bogus'/);
  });
});

describe('a running node', () => {
  it('prints the ready line with its own pid and stops cleanly on SIGTERM and SIGINT', async () => {
    for (const signal of ['SIGTERM', 'SIGINT'] as const) {
      const proc = spawn(process.execPath, [cliPath, ...nodeArgs(), '--log-level', 'info'], { stdio: ['ignore', 'pipe', 'pipe'] });
      running.add(proc);
      let stderr = '';
      proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
      const closed = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
        proc.once('close', (code, sig) => resolve({ code, signal: sig })),
      );
      const line = await new Promise<string>((resolve, reject) => {
        let out = '';
        const timer = setTimeout(() => reject(new Error(`no ready line within ${runTimeoutMs} ms: ${stderr}`)), runTimeoutMs);
        proc.stdout!.on('data', (d: Buffer) => {
          out += d.toString('utf8');
          const eol = out.indexOf('\n');
          if (eol >= 0) {
            clearTimeout(timer);
            resolve(out.slice(0, eol));
          }
        });
      });
      const m = /^ringkv node ready memcached=127\.0\.0\.1:(\d+) http=127\.0\.0\.1:(\d+) pid=(\d+)$/.exec(line);
      expect(m, line).not.toBeNull();
      expect(Number(m![3])).toBe(proc.pid);
      expect(Number(m![1])).toBeGreaterThan(0);
      expect(Number(m![2])).toBeGreaterThan(0);
      const health = await fetch(`http://127.0.0.1:${m![2]}/healthz`);
      expect(health.status).toBe(200);

      proc.kill(signal);
      const exit = await Promise.race([
        closed,
        new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`no exit within ${runTimeoutMs} ms of ${signal}`)), runTimeoutMs)),
      ]);
      running.delete(proc);
      expect(exit, signal).toEqual({ code: 0, signal: null });
      // stderr holds only the node's structured log lines (started, stopping): no warning, no error.
      const logLines = stderr.split('\n').filter((l) => l.length > 0);
      expect(logLines.length, stderr).toBeGreaterThan(0);
      for (const l of logLines) expect((JSON.parse(l) as { level?: unknown }).level, l).toBe('info');
    }
  });
});

describe('startup failures: one line on stderr, exit 2', () => {
  it('the memcached port in use', async () => {
    const { port } = await occupy();
    const run = await runCli(['node', '--port', String(port), '--http-port', '0', '--data', path.join(tmp, 'data'), '--storage', 'memory']);
    expectOneLineFailure(run, /in use/);
    expect(run.stderr).toContain(String(port));
  });

  it('the HTTP port in use', async () => {
    const { port } = await occupy();
    const run = await runCli(['node', '--port', '0', '--http-port', String(port), '--data', path.join(tmp, 'data'), '--storage', 'memory']);
    expectOneLineFailure(run, /in use/);
    expect(run.stderr).toContain(String(port));
  });

  it('a data directory locked by another running node', async () => {
    const dataDir = path.join(tmp, 'shared');
    const first = await startRingkv({ storage: 'level', dataDir });
    servers.push(first);
    const run = await runCli(['node', '--port', '0', '--http-port', '0', '--data', dataDir, '--storage', 'level']);
    expectOneLineFailure(run, /data directory/);
    expect(run.stderr).toContain(dataDir);
    // The first node is untouched and keeps serving.
    const health = await fetch(`http://127.0.0.1:${first.httpPort}/healthz`);
    expect(health.status).toBe(200);
    expect(await first.stop()).toBe(0);
  });
});
