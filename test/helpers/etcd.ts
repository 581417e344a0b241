// Debian's etcd (etcd-server, /usr/bin/etcd) for the HA tests: a single member, or a
// three-member cluster, each member a child process on loopback ports with its own
// temporary data dir. A member is ready when its client URL answers GET /health with
// {"health":"true"} (for a cluster: every member, so a leader is elected and every member
// has joined). Elections are short (heartbeat 50 ms, election timeout 500 ms) so that a
// killed etcd leader is replaced in about a second.
//
// Every member is stopped by its handle (its PID); stop() removes the data dir. As a last
// resort, a member still running when the test process exits normally (a test that threw
// before its afterEach could stop it) is SIGKILLed and its dir removed by an exit hook.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { freePort, type RunningServer } from '../../bench/lib/servers.js';

/** One etcd member; a RunningServer whose `port` (and `httpPort`) is its client port. */
export interface EtcdMember extends RunningServer {
  /** `e0`, `e1`, ... (its --name). */
  readonly name: string;
  /** http://127.0.0.1:PORT, what etcd clients dial. */
  readonly clientUrl: string;
  /** 127.0.0.1:PORT, as `ringkv master --etcd` takes it. */
  readonly clientAddr: string;
  readonly peerUrl: string;
  readonly dataDir: string;
  /** SIGTERM (SIGKILL after `graceMs`), wait for the exit, remove the data dir. */
  stop(graceMs?: number): Promise<number | null>;
  /** SIGKILL and wait for the exit; the data dir stays until stop(). */
  kill(): Promise<void>;
}

export interface EtcdCluster {
  readonly members: readonly EtcdMember[];
  /** Every member's host:port, comma-separated: the masters' --etcd. */
  readonly endpoints: string;
  /**
   * Stops every member and removes their dirs. SIGKILL, all at once: the data is thrown
   * away anyway, and a member SIGTERMed while its peers go too waits seconds for a
   * leadership transfer nobody can take.
   */
  stop(): Promise<void>;
}

export interface EtcdOptions {
  /** Raft heartbeat in ms (default 50). */
  heartbeatMs?: number;
  /** Raft election timeout in ms (default 500). */
  electionTimeoutMs?: number;
  /** How long to wait for /health (default 20 s). */
  readyTimeoutMs?: number;
  /** etcd's log level on stderr (default warn; captured, see stderr()). */
  logLevel?: 'debug' | 'info' | 'warn' | 'error';
}

export const etcdBinary = process.env.RINGKV_ETCD_BIN ?? 'etcd';

/** Children alive right now, SIGKILLed (and their dirs removed) if the test process exits first. */
const live = new Map<number, { proc: ChildProcess; dataDir: string }>();
let exitHook = false;
function guard(proc: ChildProcess, dataDir: string): void {
  live.set(proc.pid!, { proc, dataDir });
  proc.once('exit', () => live.delete(proc.pid!));
  if (exitHook) return;
  exitHook = true;
  process.once('exit', () => {
    for (const { proc, dataDir } of live.values()) {
      try {
        proc.kill('SIGKILL');
      } catch {
        // already gone
      }
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
}

function exited(proc: ChildProcess): Promise<number | null> {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve(proc.exitCode);
  return new Promise((resolve) => proc.once('exit', (code) => resolve(code)));
}

/** GET /health on a member: true when it answers {"health":"true"}. */
export function etcdHealthy(clientPort: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port: clientPort, path: '/health', agent: false, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        try {
          resolve(res.statusCode === 200 && (JSON.parse(Buffer.concat(chunks).toString('utf8')) as { health?: unknown }).health === 'true');
        } catch {
          resolve(false);
        }
      });
      res.on('error', () => resolve(false));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => resolve(false));
  });
}

interface Planned {
  name: string;
  clientPort: number;
  peerPort: number;
}

const url = (port: number) => `http://127.0.0.1:${port}`;

/** Spawns one member of `cluster` (already planned) and returns its handle; does not wait. */
function spawnMember(m: Planned, cluster: readonly Planned[], token: string, o: EtcdOptions): EtcdMember {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), `ringkv-etcd-${m.name}-`));
  const args = [
    '--name', m.name,
    '--data-dir', path.join(dataDir, 'member'),
    '--listen-client-urls', url(m.clientPort),
    '--advertise-client-urls', url(m.clientPort),
    '--listen-peer-urls', url(m.peerPort),
    '--initial-advertise-peer-urls', url(m.peerPort),
    '--initial-cluster', cluster.map((p) => `${p.name}=${url(p.peerPort)}`).join(','),
    '--initial-cluster-state', 'new',
    '--initial-cluster-token', token,
    '--heartbeat-interval', String(o.heartbeatMs ?? 50),
    '--election-timeout', String(o.electionTimeoutMs ?? 500),
    '--logger', 'zap',
    '--log-outputs', 'stderr',
    '--log-level', o.logLevel ?? 'warn',
  ];
  let proc: ChildProcess;
  try {
    proc = spawn(etcdBinary, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (e) {
    rmSync(dataDir, { recursive: true, force: true });
    throw e;
  }
  let text = '';
  proc.stderr!.on('data', (d: Buffer) => {
    // Keep the first 32 KiB and the last 32 KiB: the cause of a failure is at one end.
    text += d.toString('utf8');
    if (text.length > 64 * 1024) text = `${text.slice(0, 32 * 1024)}\n...\n${text.slice(-32 * 1024)}`;
  });
  // A spawn error (no etcd binary) arrives as an event; make it an exit for the waiters.
  let spawnError: Error | undefined;
  proc.once('error', (e) => {
    spawnError = e;
    rmSync(dataDir, { recursive: true, force: true });
  });
  if (proc.pid !== undefined) guard(proc, dataDir);
  const clientPort = m.clientPort;
  return {
    name: m.name,
    pid: proc.pid ?? -1,
    host: '127.0.0.1',
    port: clientPort,
    httpPort: clientPort,
    clientUrl: url(clientPort),
    clientAddr: `127.0.0.1:${clientPort}`,
    peerUrl: url(m.peerPort),
    dataDir,
    proc,
    stderr: () => (spawnError ? `${spawnError.message}\n${text}` : text),
    async stop(graceMs = 5000) {
      if (proc.pid !== undefined && proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGTERM');
        const timer = setTimeout(() => proc.kill('SIGKILL'), graceMs);
        await exited(proc);
        clearTimeout(timer);
      }
      rmSync(dataDir, { recursive: true, force: true });
      return proc.exitCode;
    },
    async kill() {
      if (proc.pid !== undefined && proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGKILL');
        await exited(proc);
      }
    },
  };
}

/** Plans `size` members on free ports, starts them all, waits for every /health. */
async function startMembers(size: number, o: EtcdOptions): Promise<EtcdMember[]> {
  const planned: Planned[] = [];
  const ports = new Set<number>();
  const take = async () => {
    for (;;) {
      const p = await freePort();
      if (!ports.has(p)) return ports.add(p), p;
    }
  };
  for (let i = 0; i < size; i++) planned.push({ name: `e${i}`, clientPort: await take(), peerPort: await take() });
  const token = `ringkv-test-${process.pid}-${Date.now().toString(36)}`;
  const members: EtcdMember[] = [];
  try {
    for (const m of planned) members.push(spawnMember(m, planned, token, o));
    const timeoutMs = o.readyTimeoutMs ?? 20_000;
    const deadline = Date.now() + timeoutMs;
    const pending = new Set(members);
    while (pending.size > 0) {
      for (const m of [...pending]) {
        if (m.proc.exitCode !== null || m.proc.signalCode !== null || m.pid < 0) {
          throw new EtcdStartError(`etcd member ${m.name} exited (${m.proc.exitCode ?? m.proc.signalCode ?? 'spawn failed'}) before it was healthy: ${m.stderr().trim().slice(-1500)}`, /address already in use/.test(m.stderr()));
        }
        if (await etcdHealthy(m.port)) pending.delete(m);
      }
      if (pending.size === 0) break;
      if (Date.now() > deadline) {
        throw new EtcdStartError(`etcd member(s) ${[...pending].map((m) => m.name).join(', ')} not healthy within ${timeoutMs} ms: ${[...pending].map((m) => m.stderr().trim().slice(-800)).join(' | ')}`, false);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    return members;
  } catch (e) {
    await Promise.all(members.map((m) => m.stop(1000)));
    throw e;
  }
}

class EtcdStartError extends Error {
  constructor(
    message: string,
    /** A port was taken between choosing it and etcd binding it: worth another try on other ports. */
    readonly portTaken: boolean,
  ) {
    super(message);
    this.name = 'EtcdStartError';
  }
}

async function startWithRetries(size: number, o: EtcdOptions): Promise<EtcdMember[]> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startMembers(size, o);
    } catch (e) {
      if (!(e instanceof EtcdStartError) || !e.portTaken || attempt >= 3) throw e;
    }
  }
}

/** A single-member etcd on free loopback ports, healthy. */
export async function startEtcd(o: EtcdOptions = {}): Promise<EtcdMember> {
  return (await startWithRetries(1, o))[0]!;
}

/** A `size`-member etcd cluster (default 3) on free loopback ports, every member healthy. */
export async function startEtcdCluster(size = 3, o: EtcdOptions = {}): Promise<EtcdCluster> {
  const members = await startWithRetries(size, o);
  return {
    members,
    endpoints: members.map((m) => m.clientAddr).join(','),
    async stop() {
      await Promise.all(members.map((m) => m.kill()));
      await Promise.all(members.map((m) => m.stop()));
    },
  };
}

/**
 * The member that leads the raft group now, asked of each live member in turn
 * (GET-less: the v3 JSON gateway's POST /v3/maintenance/status gives its own id and the
 * leader's). Undefined when no live member knows a leader.
 */
export async function etcdLeader(members: readonly EtcdMember[]): Promise<EtcdMember | undefined> {
  const status = new Map<EtcdMember, { self: string; leader: string }>();
  for (const m of members) {
    if (m.proc.exitCode !== null || m.proc.signalCode !== null) continue;
    const s = await postJson<{ header?: { member_id?: string }; leader?: string }>(m.port, '/v3/maintenance/status', {}).catch(() => undefined);
    if (s?.header?.member_id && s.leader) status.set(m, { self: s.header.member_id, leader: s.leader });
  }
  for (const [m, s] of status) if ([...status.values()].some((o) => o.leader === s.self)) return m;
  return undefined;
}

function postJson<T>(port: number, p: string, body: unknown, timeoutMs = 2000): Promise<T> {
  return new Promise((resolve, reject) => {
    const data = Buffer.from(JSON.stringify(body));
    const req = http.request(
      { host: '127.0.0.1', port, path: p, method: 'POST', agent: false, timeout: timeoutMs, headers: { 'content-type': 'application/json', 'content-length': data.length } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          if (res.statusCode !== 200) return reject(new Error(`POST ${p} answered ${res.statusCode}: ${text.slice(0, 200)}`));
          try {
            resolve(JSON.parse(text) as T);
          } catch (e) {
            reject(e as Error);
          }
        });
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`POST ${p} timed out`)));
    req.on('error', reject);
    req.end(data);
  });
}
