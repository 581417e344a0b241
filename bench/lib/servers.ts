// Starting and stopping the real processes that tests and benchmarks compare:
// a ringkv node (the compiled CLI, as users run it) and Debian's memcached.
// Every process started here is killed by its PID; every data dir is temporary.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
/** The repo root, whether this file runs from source (bench/lib) or from dist/bench/lib. */
export const repoRoot = here.includes(`${path.sep}dist${path.sep}`)
  ? path.resolve(here, '../../..')
  : path.resolve(here, '../..');
export const cliPath = path.join(repoRoot, 'dist', 'client', 'cli.js');

export interface RunningServer {
  readonly name: string;
  readonly pid: number;
  readonly host: string;
  /** memcached text protocol port */
  readonly port: number;
  /** HTTP port, when the server has one */
  readonly httpPort?: number;
  readonly dataDir?: string;
  readonly proc: ChildProcess;
  /** Captured stderr (bounded), for failure messages. */
  stderr(): string;
  /** SIGTERM, wait for exit (SIGKILL after `graceMs`), remove temporary data unless kept. */
  stop(graceMs?: number): Promise<number | null>;
  /** SIGKILL and wait for exit; data dir is kept (for restart tests). */
  kill(): Promise<void>;
}

/** A free TCP port on 127.0.0.1 (bind to 0, read, close). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

export async function waitForPort(port: number, host = '127.0.0.1', timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, host);
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`port ${host}:${port} did not open within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

function exited(proc: ChildProcess): Promise<number | null> {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve(proc.exitCode);
  return new Promise((resolve) => proc.once('exit', (code) => resolve(code)));
}

function capture(proc: ChildProcess, maxBytes = 64 * 1024): () => string {
  let text = '';
  proc.stderr?.on('data', (d: Buffer) => {
    if (text.length < maxBytes) text += d.toString('utf8');
  });
  return () => text;
}

function makeHandle(
  name: string,
  proc: ChildProcess,
  port: number,
  httpPort: number | undefined,
  dataDir: string | undefined,
  removeData: boolean,
  stderr: () => string,
): RunningServer {
  const cleanup = () => {
    if (dataDir && removeData) rmSync(dataDir, { recursive: true, force: true });
  };
  return {
    name,
    pid: proc.pid!,
    host: '127.0.0.1',
    port,
    httpPort,
    dataDir,
    proc,
    stderr,
    async stop(graceMs = 5000) {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGTERM');
        const timer = setTimeout(() => proc.kill('SIGKILL'), graceMs);
        const code = await exited(proc);
        clearTimeout(timer);
        cleanup();
        return code;
      }
      cleanup();
      return proc.exitCode;
    },
    async kill() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
      await exited(proc);
    },
  };
}

export interface MemcachedOptions {
  threads?: number;
  memoryMb?: number;
  extraArgs?: string[];
}

/** Debian's memcached on an ephemeral loopback port. */
export async function startMemcached(opts: MemcachedOptions = {}): Promise<RunningServer> {
  const port = await freePort();
  const args = ['-l', '127.0.0.1', '-p', String(port), '-U', '0', '-t', String(opts.threads ?? 1), '-m', String(opts.memoryMb ?? 64)];
  if (process.getuid?.() === 0) args.push('-u', 'root');
  args.push(...(opts.extraArgs ?? []));
  const proc = spawn('memcached', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  const stderr = capture(proc);
  const spawnError = new Promise<never>((_, reject) => proc.once('error', reject));
  await Promise.race([waitForPort(port), spawnError]);
  return makeHandle('memcached', proc, port, undefined, undefined, false, stderr);
}

export interface RingkvNodeOptions {
  storage?: 'memory' | 'level';
  /** Existing data dir (kept on stop); a fresh temporary one (removed on stop) when absent. */
  dataDir?: string;
  port?: number;
  httpPort?: number;
  args?: string[];
  env?: NodeJS.ProcessEnv;
  nodeArgs?: string[];
}

/**
 * Waits for a child's ready line (`pattern` captures two ports). Before ready, a failure
 * kills the child and removes its temporary data; after ready, exits are the caller's
 * business (a restart test kills a process and reuses its data).
 */
function waitReady(
  name: string,
  proc: ChildProcess,
  pattern: RegExp,
  stderr: () => string,
  cleanup: () => void,
  timeoutMs = 15_000,
): Promise<{ port: number; httpPort: number }> {
  return new Promise((resolve, reject) => {
    let out = '';
    let settled = false;
    const fail = (e: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      cleanup();
      reject(e);
    };
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      fail(new Error(`${name} did not get ready in ${timeoutMs} ms: ${stderr()}`));
    }, timeoutMs);
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString('utf8');
      const m = pattern.exec(out);
      if (m && !settled) {
        settled = true;
        clearTimeout(timer);
        resolve({ port: Number(m[1]), httpPort: Number(m[2]) });
      }
    });
    proc.once('error', (e) => fail(e));
    proc.once('exit', (code) => fail(new Error(`${name} exited with ${code} before ready: ${stderr()}`)));
  });
}

/**
 * A ringkv node as a child process of the compiled CLI. Resolves once the node prints
 * its ready line: `ringkv node ready memcached=HOST:PORT http=HOST:PORT pid=PID`.
 */
export async function startRingkv(opts: RingkvNodeOptions = {}): Promise<RunningServer> {
  const removeData = opts.dataDir === undefined;
  const dataDir = opts.dataDir ?? mkdtempSync(path.join(os.tmpdir(), 'ringkv-node-'));
  const args = [
    ...(opts.nodeArgs ?? []),
    cliPath,
    'node',
    '--port', String(opts.port ?? 0),
    '--http-port', String(opts.httpPort ?? 0),
    '--data', dataDir,
    '--storage', opts.storage ?? 'memory',
    ...(opts.args ?? []),
  ];
  const proc = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...opts.env } });
  const stderr = capture(proc);
  const ready = await waitReady('ringkv node', proc, /ringkv node ready memcached=[^:\s]+:(\d+) http=[^:\s]+:(\d+)/, stderr, () => {
    if (removeData) rmSync(dataDir, { recursive: true, force: true });
  });
  proc.stdout!.resume();
  return makeHandle('ringkv', proc, ready.port, ready.httpPort, dataDir, removeData, stderr);
}

/**
 * Runs a compiled Node script that prints `<readyPrefix> port=N` once listening, and waits
 * for that line (the port comes from it, so `--port 0` lets the OS pick a free one).
 */
async function startNodeScript(name: string, script: string, readyPrefix: string, args: string[], timeoutMs = 15_000): Promise<{ proc: ChildProcess; port: number; stderr: () => string }> {
  const proc = spawn(process.execPath, [script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const stderr = capture(proc);
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`${name} did not get ready in ${timeoutMs} ms: ${stderr()}`));
    }, timeoutMs);
    const pattern = new RegExp(`${readyPrefix} port=(\\d+)`);
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString('utf8');
      const m = pattern.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    proc.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited with ${code} before ready: ${stderr()}`));
    });
  });
  proc.stdout!.resume();
  return { proc, port, stderr };
}

export const floorMemcachedPath = path.join(repoRoot, 'dist', 'bench', 'floor-memcached.js');
export const floorHttpPath = path.join(repoRoot, 'dist', 'bench', 'floor-http.js');

/** The Node floor for the memcached protocol (bench/floor-memcached.ts) on a free port. */
export async function startFloorMemcached(): Promise<RunningServer> {
  const { proc, port, stderr } = await startNodeScript('floor-memcached', floorMemcachedPath, 'floor ready', ['--port', '0']);
  return makeHandle('floor', proc, port, undefined, undefined, false, stderr);
}

/** The Node floor for HTTP (bench/floor-http.ts) on a free port; `port` and `httpPort` are both it. */
export async function startFloorHttp(): Promise<RunningServer> {
  const { proc, port, stderr } = await startNodeScript('floor-http', floorHttpPath, 'floor-http ready', ['--port', '0']);
  return makeHandle('floor-http', proc, port, port, undefined, false, stderr);
}

export interface MasterOptions {
  /** Existing data dir (kept on stop); a fresh temporary one (removed on stop) when absent. */
  dataDir?: string;
  port?: number;
  httpPort?: number;
  args?: string[];
}

/**
 * A ringkv lease master as a child process of the compiled CLI. `port` is its RPC port
 * (what nodes take as --master), `httpPort` serves GET /cluster.
 */
export async function startMaster(opts: MasterOptions = {}): Promise<RunningServer> {
  const removeData = opts.dataDir === undefined;
  const dataDir = opts.dataDir ?? mkdtempSync(path.join(os.tmpdir(), 'ringkv-master-'));
  const args = [cliPath, 'master', '--port', String(opts.port ?? 0), '--http-port', String(opts.httpPort ?? 0), '--data', dataDir, ...(opts.args ?? [])];
  const proc = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const stderr = capture(proc);
  const ready = await waitReady('ringkv master', proc, /ringkv master ready rpc=[^:\s]+:(\d+) http=[^:\s]+:(\d+)/, stderr, () => {
    if (removeData) rmSync(dataDir, { recursive: true, force: true });
  });
  proc.stdout!.resume();
  return makeHandle('ringkv-master', proc, ready.port, ready.httpPort, dataDir, removeData, stderr);
}

/**
 * The servers a bench has started and not stopped yet, so that every exit path (the end,
 * an error, Ctrl-C) stops them by PID.
 */
export class ServerSet {
  private readonly servers = new Set<RunningServer>();

  get size(): number {
    return this.servers.size;
  }

  add(server: RunningServer): RunningServer {
    this.servers.add(server);
    return server;
  }

  async stop(server: RunningServer, graceMs?: number): Promise<void> {
    this.servers.delete(server);
    await server.stop(graceMs);
  }

  /** Stops every server still running; one that fails to stop does not keep the others running. */
  async stopAll(graceMs?: number): Promise<void> {
    await Promise.allSettled([...this.servers].map((s) => this.stop(s, graceMs)));
  }

  /** The last lines of each server's stderr, for an error message ('' when they said nothing). */
  tails(chars = 300): string {
    return [...this.servers]
      .map((s) => `${s.name}: ${s.stderr().trim().slice(-chars)}`)
      .filter((t) => !t.endsWith(': '))
      .join(' | ');
  }
}
