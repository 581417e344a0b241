// `ringkv start` and `ringkv status` as users run them (the compiled dist/client/cli.js):
// a whole cluster as children of one process, its ready lines, the master's view read back
// by `status`, memcached traffic across nodes, and every child gone after SIGTERM or after
// one of them dies. The pure readings (ports, ready lines, key-space shares, health) are
// tested with plain values.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliPath, freePort } from '../../bench/lib/servers.js';
import { McClient } from '../helpers/mc.js';
import { keyShares, pieceSize, problems, RING_SIZE, summarize, type MasterView } from '../../client/status.js';
import { notSettled, parseReadyLine, planPorts } from '../../client/start.js';
import { EXIT_USAGE, expectOneLineFailure, runCli as runCliWith, type CliRun } from '../helpers/cli.js';

/** A cluster of three on loopback settles in a few seconds; start itself gives up at 30 s. */
const readyTimeoutMs = 45_000;
/** A command that should end by itself is killed after this long. */
const runTimeoutMs = 15_000;


/** Every process this file started, and every child pid a `start` printed: killed by PID in afterAll. */
const procs = new Set<ChildProcess>();
const childPids = new Set<number>();
const tmps: string[] = [];

function tmpDir(): string {
  const d = mkdtempSync(path.join(os.tmpdir(), 'ringkv-start-'));
  tmps.push(d);
  return d;
}

const runCli = (args: string[]): Promise<CliRun> => runCliWith(args, runTimeoutMs, procs);


interface StartedCluster {
  proc: ChildProcess;
  /** Resolves when the start process has closed its stdio and exited. */
  closed: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stdoutLines: string[];
  stderr(): string;
  master: { pid: number; rpc: number; http: number };
  nodes: Array<{ id: string; pid: number; memcached: number; http: number; rpc: number }>;
}

const MASTER_LINE = /^ringkv master pid=(\d+) rpc=127\.0\.0\.1:(\d+) http=127\.0\.0\.1:(\d+)$/;
const NODE_LINE = /^ringkv node id=(n\d+) pid=(\d+) memcached=127\.0\.0\.1:(\d+) http=127\.0\.0\.1:(\d+) rpc=127\.0\.0\.1:(\d+)$/;
const READY_LINE = /^ringkv cluster ready nodes=(\d+) master=127\.0\.0\.1:(\d+)$/;

/** `ringkv start` on ephemeral ports, resolved once its final ready line is out. */
async function startCluster(nodes: number): Promise<StartedCluster> {
  const data = path.join(tmpDir(), 'data');
  const proc = spawn(process.execPath, [cliPath, 'start', '--nodes', String(nodes), '--base-port', '0', '--storage', 'memory', '--data', data], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  procs.add(proc);
  let stdout = '';
  let stderr = '';
  proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
  const closed = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => proc.once('close', (code, signal) => resolve({ code, signal })));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no cluster ready line within ${readyTimeoutMs} ms; stdout ${stdout} stderr ${stderr}`)), readyTimeoutMs);
    proc.stdout!.on('data', (d: Buffer) => {
      stdout += d.toString('utf8');
      // Child pids are recorded as soon as they are printed, so afterAll can always kill them.
      for (const m of stdout.matchAll(/pid=(\d+)/g)) childPids.add(Number(m[1]));
      if (/^ringkv cluster ready .*\n/m.test(stdout)) {
        clearTimeout(timer);
        resolve();
      }
    });
    void closed.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`ringkv start ended (${code ?? signal}) before ready; stdout ${stdout} stderr ${stderr}`));
    });
  });
  const stdoutLines = stdout.slice(0, -1).split('\n');
  const mm = MASTER_LINE.exec(stdoutLines[0] ?? '');
  expect(mm, stdout).not.toBeNull();
  const parsed = stdoutLines.slice(1, -1).map((l) => {
    const m = NODE_LINE.exec(l);
    expect(m, l).not.toBeNull();
    return { id: m![1]!, pid: Number(m![2]), memcached: Number(m![3]), http: Number(m![4]), rpc: Number(m![5]) };
  });
  return {
    proc,
    closed,
    stdoutLines,
    stderr: () => stderr,
    master: { pid: Number(mm![1]), rpc: Number(mm![2]), http: Number(mm![3]) },
    nodes: parsed,
  };
}

function isGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return false;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

function withinMs<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return Promise.race([p, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms))]);
}

afterAll(() => {
  for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  for (const pid of childPids) if (!isGone(pid)) process.kill(pid, 'SIGKILL');
  for (const d of tmps) rmSync(d, { recursive: true, force: true });
});

describe('ringkv start --nodes 3 --base-port 0, then ringkv status', () => {
  let cluster: StartedCluster;

  beforeAll(async () => {
    cluster = await startCluster(3);
  }, readyTimeoutMs + 5_000);

  it('prints the master, one line per node with its pid and ports, then the ready line', () => {
    const lines = cluster.stdoutLines;
    expect(lines).toHaveLength(5);
    expect(cluster.nodes.map((n) => n.id)).toEqual(['n1', 'n2', 'n3']);
    const ready = READY_LINE.exec(lines[4]!);
    expect(ready, lines[4]).not.toBeNull();
    expect(Number(ready![1])).toBe(3);
    expect(Number(ready![2])).toBe(cluster.master.rpc);
    const pids = [cluster.master.pid, ...cluster.nodes.map((n) => n.pid)];
    expect(new Set(pids).size).toBe(4);
    expect(pids).not.toContain(cluster.proc.pid);
    for (const pid of pids) expect(isGone(pid), `pid ${pid}`).toBe(false);
    const ports = [cluster.master.rpc, cluster.master.http, ...cluster.nodes.flatMap((n) => [n.memcached, n.http, n.rpc])];
    expect(new Set(ports).size).toBe(ports.length);
  });

  it('status --json: three up members whose key-space shares sum to 1', async () => {
    const run = await runCli(['status', '--master', `127.0.0.1:${cluster.master.rpc}`, '--json']);
    expect(run.code, run.stderr).toBe(0);
    const s = JSON.parse(run.stdout) as { members: Array<{ id: string; status: string; share: number; pieces: number; addrs: { memcached: string } }>; leases: unknown[]; health: { healthy: boolean } };
    expect(s.members.map((m) => m.id).sort()).toEqual(['n1', 'n2', 'n3']);
    for (const m of s.members) {
      expect(m.status).toBe('up');
      expect(m.pieces).toBeGreaterThan(0);
      expect(m.share).toBeGreaterThan(0);
      const node = cluster.nodes.find((n) => n.id === m.id)!;
      expect(m.addrs.memcached).toBe(`127.0.0.1:${node.memcached}`);
    }
    expect(Math.abs(s.members.reduce((a, m) => a + m.share, 0) - 1)).toBeLessThan(1e-9);
    expect(s.health.healthy).toBe(true);
    expect((s as unknown as { masters: unknown }).masters).toEqual([expect.objectContaining({ addr: `127.0.0.1:${cluster.master.rpc}`, role: 'leader', store: 'level' })]);
  });

  it('status without --json: a member table and "health: healthy"', async () => {
    const run = await runCli(['status', '--master', `127.0.0.1:${cluster.master.rpc}`]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toBe('');
    const lines = run.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(new RegExp(`^master 127\\.0\\.0\\.1:${cluster.master.rpc} lsn=\\d+ lease=\\d+ms members=3 pieces=\\d+$`));
    // The one master of `ringkv start` (level store) leads.
    expect(lines[1]).toBe(`masters: 127.0.0.1:${cluster.master.rpc} leader`);
    expect(lines[2]).toMatch(/^ID\s+ZONE\s+STATUS\s+MEMCACHED\s+HTTP\s+RPC\s+PIECES\s+SHARE\s+GENERATIONS\s+RENEWED$/);
    for (const [i, id] of ['n1', 'n2', 'n3'].entries()) expect(lines[3 + i]).toMatch(new RegExp(`^${id}\\s+-\\s+up\\s+127\\.0\\.0\\.1:\\d+\\s.*%\\s+\\d+-\\d+\\s+\\d+\\.\\ds ago$`));
    expect(lines).toContain('moving: none');
    expect(lines).toContain('health: healthy');
    // Then each node's replication counters, read from its /stats.
    const rep = lines.indexOf('replication:');
    expect(rep).toBeGreaterThan(lines.indexOf('health: healthy'));
    expect(lines[rep + 1]).toMatch(/^\s+ID\s+HINTS\s+HINTS-REPLAYED\s+HINTS-DROPPED\s+READ-REPAIRS\s+AE-ROUNDS\s+AE-KEYS\s+QUORUM-FAILURES\s+PEERS-DOWN$/);
    for (const [i, id] of ['n1', 'n2', 'n3'].entries()) expect(lines[rep + 2 + i]).toMatch(new RegExp(`^\\s+${id}\\s+\\d+\\s+\\d+\\s+\\d+\\s+\\d+\\s+\\d+\\s+\\d+\\s+\\d+\\s+\\S+$`));
  });

  it('serves memcached across nodes: set through n1, get through n3', async () => {
    const c1 = await McClient.connect(cluster.nodes[0]!.memcached);
    const c3 = await McClient.connect(cluster.nodes[2]!.memcached);
    try {
      for (let i = 0; i < 20; i++) expect(await c1.set(`start-key-${i}`, `value-${i}`)).toBe('STORED');
      for (let i = 0; i < 20; i++) expect((await c3.get(`start-key-${i}`))?.value.toString()).toBe(`value-${i}`);
    } finally {
      c1.close();
      c3.close();
    }
  });

  it('SIGTERM: stops every child and exits 0', async () => {
    cluster.proc.kill('SIGTERM');
    const exit = await withinMs(cluster.closed, 30_000, 'ringkv start after SIGTERM');
    expect(exit, cluster.stderr()).toEqual({ code: 0, signal: null });
    for (const pid of [cluster.master.pid, ...cluster.nodes.map((n) => n.pid)]) expect(isGone(pid), `pid ${pid}`).toBe(true);
  }, 35_000);
});

describe('a child that dies', () => {
  it('takes the cluster down: one line naming it, the others stopped, exit 1', async () => {
    const cluster = await startCluster(2);
    const n2 = cluster.nodes[1]!;
    process.kill(n2.pid, 'SIGKILL');
    const exit = await withinMs(cluster.closed, 30_000, 'ringkv start after a node died');
    expect(exit, cluster.stderr()).toEqual({ code: 1, signal: null });
    const lines = cluster.stderr().trimEnd().split('\n').filter((l) => !l.startsWith('['));
    expect(lines, cluster.stderr()).toHaveLength(1);
    expect(lines[0]).toMatch(new RegExp(`^ringkv: node n2 \\(pid ${n2.pid}\\) was killed by SIGKILL`));
    for (const pid of [cluster.master.pid, ...cluster.nodes.map((n) => n.pid)]) expect(isGone(pid), `pid ${pid}`).toBe(true);
  }, readyTimeoutMs + 35_000);
});

describe('errors: one line, exit 2', () => {
  it('status against a closed port', async () => {
    const port = await freePort();
    expectOneLineFailure(await runCli(['status', '--master', `127.0.0.1:${port}`]), new RegExp(`^ringkv: cannot reach master at 127\\.0\\.0\\.1:${port}`));
    expectOneLineFailure(await runCli(['status', '--master', `127.0.0.1:${port}`, '--json']), /cannot reach master/);
  });

  it.each([
    ['--nodes 0', ['--nodes', '0'], /--nodes/],
    ['--nodes not a number', ['--nodes', 'three'], /--nodes/],
    ['an unknown storage kind', ['--storage', 'disk'], /disk/],
    ['a base port that pushes node ports past 65535', ['--base-port', '65000'], /--base-port 65000/],
  ])('start with %s', async (_name, flags, pattern) => {
    expectOneLineFailure(await runCli(['start', '--data', path.join(tmpDir(), 'data'), ...flags]), pattern);
  });

  it('status with a master that is not host:port', async () => {
    expectOneLineFailure(await runCli(['status', '--master', 'nowhere']), /--master/);
  });
});

// ---- pure readings ---------------------------------------------------------------------

const hex = (t: bigint) => t.toString(16).padStart(16, '0');
const member = (id: string, status = 'up') => ({ id, addrs: { memcached: 'h:1', http: 'h:2', rpc: 'h:3' }, status, lastRenewalAgoMs: 10, pieces: 1 });
const lease = (start: bigint, end: bigint, owner: string, extra: Partial<{ generation: number; expiresInMs: number; movingTo: string; movingForMs: number }> = {}) => ({
  start: hex(start),
  end: hex(end),
  owner,
  generation: extra.generation ?? 1,
  expiresInMs: extra.expiresInMs ?? 1000,
  ...(extra.movingTo ? { movingTo: extra.movingTo, movingForMs: extra.movingForMs ?? 5 } : {}),
});

describe('key-space shares', () => {
  it('one piece with start === end is the whole ring', () => {
    expect(pieceSize(hex(42n), hex(42n))).toBe(RING_SIZE);
    expect(keyShares([lease(0n, 0n, 'n1')]).get('n1')).toBe(1);
  });

  it('a piece that wraps past 2^64 - 1 counts both ends', () => {
    const max = RING_SIZE - 1n;
    expect(pieceSize(hex(max - 9n), hex(5n))).toBe(15n);
    expect(pieceSize(hex(max), hex(0n))).toBe(1n);
  });

  it('tiling pieces sum to 1, the wrapping one included', () => {
    const q = RING_SIZE / 4n;
    const leases = [lease(3n * q + 7n, q, 'n1'), lease(q, 2n * q, 'n2'), lease(2n * q, 3n * q + 7n, 'n1')];
    const shares = keyShares(leases);
    expect(shares.get('n2')).toBeCloseTo(0.25, 12);
    expect(shares.get('n1')).toBeCloseTo(0.75, 12);
  });

  it('summarize gives per-member share and generation range (members by id), and health', () => {
    const half = RING_SIZE / 2n;
    const view: MasterView = {
      lsn: 3,
      leaseMs: 1000,
      members: [member('n3'), member('n1'), member('n2')],
      leases: [lease(half, 0n, 'n1', { generation: 4 }), lease(0n, half / 2n, 'n2', { generation: 2 }), lease(half / 2n, half, 'n2', { generation: 9 })],
    };
    const s = summarize(view);
    expect(s.members.map((m) => [m.id, m.share, m.generations])).toEqual([
      ['n1', 0.5, { min: 4, max: 4 }],
      ['n2', 0.5, { min: 2, max: 9 }],
      ['n3', 0, null],
    ]);
    expect(s.health).toEqual({ healthy: true, problems: [] });
  });
});

describe('health and settling', () => {
  const half = RING_SIZE / 2n;
  const base: MasterView = { lsn: 1, leaseMs: 1000, members: [member('n1'), member('n2')], leases: [lease(half, 0n, 'n1'), lease(0n, half, 'n2')] };

  it('names what is wrong: a member down, pieces moving, pieces not held', () => {
    expect(problems(base)).toEqual([]);
    expect(problems({ ...base, members: [member('n1'), member('n2', 'down')] })).toEqual(['member not up: n2 (down)']);
    expect(problems({ ...base, leases: [lease(half, 0n, 'n1', { movingTo: 'n2' }), lease(0n, half, 'n2')] })).toEqual(['1 piece moving']);
    expect(problems({ ...base, leases: [lease(half, 0n, 'n1'), lease(0n, half, 'n2', { expiresInMs: 0 })] })).toEqual(['1 piece not held by a live lease']);
    expect(problems({ lsn: 0, leaseMs: 1000, members: [], leases: [] })).toEqual(['no member has registered']);
  });

  it('start waits for every node it started, and tolerates a down member of an earlier run', () => {
    expect(notSettled(base, ['n1', 'n2'])).toEqual([]);
    expect(notSettled(base, ['n1', 'n2', 'n3'])).toEqual(['not registered: n3']);
    const old = { ...member('n9', 'down'), pieces: 0 };
    expect(notSettled({ ...base, members: [...base.members, old] }, ['n1', 'n2'])).toEqual([]);
    expect(notSettled({ ...base, members: [...base.members, member('n9')] }, ['n1', 'n2'])[0]).toMatch(/not started by this command: n9/);
  });
});

describe('ports and ready lines', () => {
  it('base 7000 gives the defaults of `master` and `node`; base 0 gives all zeros', () => {
    const p = planPorts(7000, 2);
    expect(p.master).toEqual({ rpc: 7000, http: 7080 });
    expect(p.nodes).toEqual([
      { id: 'n1', memcached: 11211, http: 8080, rpc: 7101 },
      { id: 'n2', memcached: 11212, http: 8081, rpc: 7102 },
    ]);
    const z = planPorts(0, 3);
    expect([z.master.rpc, z.master.http, ...z.nodes.flatMap((n) => [n.memcached, n.http, n.rpc])].every((x) => x === 0)).toBe(true);
    const top = planPorts(65535 - 4210 - 64, 64);
    expect(top.nodes[63]!.memcached).toBe(65535);
  });

  it('reads the ready lines of master and node, and nothing else', () => {
    expect(parseReadyLine('ringkv master ready rpc=127.0.0.1:7000 http=127.0.0.1:7080 pid=12')).toEqual({ kind: 'master', rpc: 7000, http: 7080, pid: 12 });
    expect(parseReadyLine('ringkv node ready memcached=127.0.0.1:11211 http=127.0.0.1:8080 rpc=127.0.0.1:7101 pid=13')).toEqual({
      kind: 'node',
      memcached: 11211,
      http: 8080,
      rpc: 7101,
      pid: 13,
    });
    expect(parseReadyLine('ringkv node ready memcached=127.0.0.1:11211 http=127.0.0.1:8080 pid=13')).toBeUndefined();
    expect(parseReadyLine('something else')).toBeUndefined();
  });
});
