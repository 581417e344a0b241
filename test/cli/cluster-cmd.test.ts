// `ringkv cluster remove` and `ringkv cluster add` as users run them (the compiled
// dist/client/cli.js) against a real master and real nodes on loopback: a 4-node cluster
// with data loses n4 (it hands its data on, leaves, and its process exits 0), refuses to
// go below N = 3 nodes, refuses an unknown id, and gains n5 (a node that copies its data
// in and says `joined`). Progress is printed as plain lines (stderr is a pipe here). The
// pure parts (the progress line, `ringkv status` with moving and departed members) are
// tested with plain values. Every wait is bounded; every process is stopped by its handle.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliPath, type RunningServer } from '../../bench/lib/servers.js';
import { progressLine } from '../../client/cluster-cmd.js';
import { formatStatus, summarize, type MasterView } from '../../client/status.js';
import { startTestCluster, until, view } from '../helpers/cluster.js';
import { exitOf, expectOneLineFailure, runCli as runCliWith, type CliRun } from '../helpers/cli.js';
import { McClient } from '../helpers/mc.js';

const leaseMs = 3000;
const renewMs = 500;
const vnodes = 16;
/** Keys written before the changes, and their value size: about 1 MiB, so a move at 1 MiB/s takes a second or two. */
const KEYS = 1000;
const VALUE_BYTES = 1000;
/** A remove or a join of that much data ends well within this. */
const moveTimeoutMs = 60_000;
/** A command that fails at once is killed after this long. */
const quickTimeoutMs = 15_000;

/** Short failure detection and forwarding; a slow transfer, so that it shows progress. */
const nodeArgs = [
  '--heartbeat-ms', '100',
  '--replica-timeout-ms', '1000',
  '--anti-entropy-ms', '1000',
  '--forward-timeout-ms', '2000',
  '--unavailable-ms', '8000',
  '--stream-mb-per-s', '1',
];

/** One progress line: "n4 leaving: 52% 1234 keys 5.1 MiB 3.2 MiB/s eta 4s", then " retries N" and " waiting <reason>" when any. */
const progressPattern = (id: string, statuses: string) =>
  new RegExp(`^${id} (${statuses}): \\d{1,3}% \\d+ keys \\d+\\.\\d MiB \\d+\\.\\d MiB/s( eta \\d+s)?( \\(\\d+ pieces? to hand over\\))?( retries \\d+)?( waiting [a-z-]+)?$`);

/** Processes: the cluster's (stopped by handle), CLI runs, and the `cluster add` node. */
const servers: RunningServer[] = [];
const track = (s: RunningServer) => (servers.push(s), s);
const cliRuns = new Set<ChildProcess>();
const spawned: ChildProcess[] = [];
const tmps: string[] = [];

let master: RunningServer;
let nodes: RunningServer[];
const masterAddr = () => `127.0.0.1:${master.port}`;
const runCli = (args: string[], timeoutMs = quickTimeoutMs): Promise<CliRun> => runCliWith(args, timeoutMs, cliRuns);
const valueOf = (i: number) => `${String(i).padStart(6, '0')}:${'v'.repeat(VALUE_BYTES - 7)}`;

/** Every one of `ports` (memcached) answers a sample of the keys with the value written. */
async function expectAllAnswer(ports: number[]): Promise<void> {
  for (const p of ports) {
    const c = await McClient.connect(p);
    try {
      for (let i = 0; i < KEYS; i += 50) expect((await c.get(`cc-${i}`))?.value.toString('latin1'), `key cc-${i} through port ${p}`).toBe(valueOf(i));
    } finally {
      c.close();
    }
  }
}

beforeAll(async () => {
  ({ master, nodes } = await startTestCluster({ ids: ['n1', 'n2', 'n3', 'n4'], leaseMs, renewMs, vnodes, nodeArgs }, track));
  const c = await McClient.connect(nodes[0]!.port);
  try {
    for (let i = 0; i < KEYS; i++) expect(await c.set(`cc-${i}`, valueOf(i))).toBe('STORED');
  } finally {
    c.close();
  }
}, 60_000);

afterAll(async () => {
  for (const p of cliRuns) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  for (const p of spawned) {
    if (p.exitCode === null && p.signalCode === null) {
      p.kill('SIGTERM');
      await exitOf(p, 10_000).catch(() => p.kill('SIGKILL'));
    }
  }
  // Nodes first, then the master.
  for (const s of servers.filter((s) => s.name === 'ringkv').reverse()) await s.stop();
  for (const s of servers.filter((s) => s.name !== 'ringkv')) await s.stop();
  for (const d of tmps) rmSync(d, { recursive: true, force: true });
}, 60_000);

describe('ringkv cluster remove', () => {
  it('an unknown node id: one line, exit 2', async () => {
    expectOneLineFailure(await runCli(['cluster', 'remove', 'n9', '--master', masterAddr()]), /n9.*UNKNOWN_NODE/);
  });

  it('a master that does not answer: one line, exit 2', async () => {
    expectOneLineFailure(await runCli(['cluster', 'remove', 'n4', '--master', '127.0.0.1:1']), /cannot reach master at 127\.0\.0\.1:1/);
  });

  it('n4 of 4: progress lines, "n4 left the cluster", exit 0; the master shows it left, its process exited 0, every other node answers', async () => {
    const t0 = Date.now();
    const run = await runCli(['cluster', 'remove', 'n4', '--master', masterAddr()], moveTimeoutMs);
    const tookMs = Date.now() - t0;
    expect(run.code, `stderr: ${run.stderr}`).toBe(0);
    expect(run.stdout).toBe('n4 left the cluster\n');
    const lines = run.stderr.trimEnd().split('\n');
    expect(lines.length, run.stderr).toBeGreaterThanOrEqual(1);
    for (const l of lines) expect(l).toMatch(progressPattern('n4', 'leaving|left'));
    // Plain mode: at most one line a second (plus the first and the final one).
    expect(lines.length).toBeLessThanOrEqual(Math.ceil(tookMs / 1000) + 2);
    expect(lines.at(-1)).toMatch(/^n4 left: 100% /);
    // Something was handed over (n4 held about 3/4 of the keys).
    expect(lines.some((l) => /: \d+% [1-9]\d* keys/.test(l)), run.stderr).toBe(true);

    const v = await view(master);
    expect(v.members.find((m) => m.id === 'n4')).toMatchObject({ status: 'left', pieces: 0 });
    expect(v.leases.every((l) => l.owner !== 'n4')).toBe(true);
    const n4 = nodes[3]!;
    expect(await exitOf(n4.proc, 15_000), n4.stderr()).toEqual({ code: 0, signal: null });
    await expectAllAnswer(nodes.slice(0, 3).map((n) => n.port));
  }, moveTimeoutMs + 30_000);

  it('a node of the 3 left when N = 3: refused (BAD_MEMBER), one line, exit 2, nothing changes', async () => {
    expectOneLineFailure(await runCli(['cluster', 'remove', 'n3', '--master', masterAddr()]), /refused to remove n3 \(BAD_MEMBER\).*fewer than 3/);
    const v = await view(master);
    expect(v.members.filter((m) => m.status === 'up').map((m) => m.id).sort()).toEqual(['n1', 'n2', 'n3']);
  });

  it('usage errors: no node id, a bad node id, a bad --timeout-s', async () => {
    expectOneLineFailure(await runCli(['cluster', 'remove', '--master', masterAddr()]), /missing required argument 'node-id'/);
    expectOneLineFailure(await runCli(['cluster', 'remove', 'bad id!', '--master', masterAddr()]), /node id/);
    expectOneLineFailure(await runCli(['cluster', 'remove', 'n1', '--timeout-s', 'soon']), /--timeout-s/);
  });
});

describe('ringkv cluster add', () => {
  it('without --master: one line, exit 2', async () => {
    const data = mkdtempSync(path.join(os.tmpdir(), 'ringkv-cluster-add-'));
    tmps.push(data);
    expectOneLineFailure(await runCli(['cluster', 'add', '--id', 'n5', '--port', '0', '--http-port', '0', '--storage', 'memory', '--data', data]), /needs --master/);
  });

  it('n5 joins the 3 left: ready line, progress lines, "ringkv node n5 joined"; the master shows it up with pieces; it serves; SIGTERM stops it (exit 0)', async () => {
    const data = mkdtempSync(path.join(os.tmpdir(), 'ringkv-cluster-add-'));
    tmps.push(data);
    const args = ['cluster', 'add', '--id', 'n5', '--port', '0', '--http-port', '0', '--rpc-port', '0', '--storage', 'memory', '--data', data];
    const proc = spawn(process.execPath, [cliPath, ...args, '--master', masterAddr(), '--renew-ms', String(renewMs), '--drift-ms', '100', ...nodeArgs], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    spawned.push(proc);
    let stdout = '';
    let stderr = '';
    proc.stdout!.on('data', (d: Buffer) => (stdout += d.toString('utf8')));
    proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no "joined" line within ${moveTimeoutMs} ms; stdout ${stdout} stderr ${stderr}`)), moveTimeoutMs);
      const check = () => {
        if (/^ringkv node n5 joined$/m.test(stdout)) {
          clearTimeout(timer);
          resolve();
        }
      };
      proc.stdout!.on('data', check);
      proc.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`cluster add exited (${code}) before joining; stdout ${stdout} stderr ${stderr}`));
      });
    });
    const out = stdout.trimEnd().split('\n');
    expect(out[0]).toMatch(/^ringkv node ready memcached=127\.0\.0\.1:(\d+) http=127\.0\.0\.1:\d+ rpc=127\.0\.0\.1:\d+ pid=\d+$/);
    expect(out[1]).toBe('ringkv node n5 joined');
    const lines = stderr.trimEnd().split('\n');
    expect(lines.length, stderr).toBeGreaterThanOrEqual(1);
    for (const l of lines) expect(l).toMatch(progressPattern('n5', 'joining|up'));
    expect(lines.at(-1)).toMatch(/^n5 up: 100% /);

    const v = await until(master, (v) => v.members.some((m) => m.id === 'n5' && m.status === 'up' && m.pieces > 0), 20_000);
    expect(v.members.filter((m) => m.status === 'up').map((m) => m.id).sort()).toEqual(['n1', 'n2', 'n3', 'n5']);
    const n5Port = Number(/memcached=127\.0\.0\.1:(\d+)/.exec(out[0]!)![1]);
    await expectAllAnswer([...nodes.slice(0, 3).map((n) => n.port), n5Port]);

    proc.kill('SIGTERM');
    expect(await exitOf(proc, 15_000), stderr).toEqual({ code: 0, signal: null });
  }, moveTimeoutMs + 40_000);
});

// ---- pure ------------------------------------------------------------------------------

describe('progress lines and ringkv status with moving members', () => {
  const t = { direction: 'out' as const, keys: 1234, bytes: 5.1 * 1024 * 1024, fraction: 0.523, rateBytesPerS: 3.2 * 1024 * 1024, etaS: 4, done: false };

  it('a progress line: percentage, keys, MiB, MiB/s, eta while known', () => {
    expect(progressLine({ id: 'n4', status: 'leaving', pieces: 9, transfer: t })).toBe('n4 leaving: 52% 1234 keys 5.1 MiB 3.2 MiB/s eta 4s');
    expect(progressLine({ id: 'n4', status: 'leaving', pieces: 9 })).toBe('n4 leaving: 0% 0 keys 0.0 MiB 0.0 MiB/s');
    expect(progressLine({ id: 'n4', status: 'leaving', pieces: 9, transfer: { ...t, fraction: 1, done: true } })).toBe('n4 leaving: 100% 1234 keys 5.1 MiB 3.2 MiB/s');
    // Not done yet is never 100%.
    expect(progressLine({ id: 'n4', status: 'leaving', pieces: 9, transfer: { ...t, fraction: 0.999, etaS: 0 } })).toBe('n4 leaving: 99% 1234 keys 5.1 MiB 3.2 MiB/s eta 0s');
    expect(progressLine({ id: 'n4', status: 'left', pieces: 2, transfer: t })).toBe('n4 left: 100% 1234 keys 5.1 MiB 3.2 MiB/s (2 pieces to hand over)');
    expect(progressLine({ id: 'n5', status: 'up', pieces: 0, transfer: { ...t, direction: 'in' } })).toBe('n5 up: 100% 1234 keys 5.1 MiB 3.2 MiB/s');
  });

  it('status: a moving member shows its progress in STATUS; members that left are one line, not rows, and no problem', () => {
    const member = (id: string, status: string, extra: object = {}) => ({ id, addrs: { memcached: `h:1${id}`, http: 'h:2', rpc: 'h:3' }, status, lastRenewalAgoMs: 10, pieces: 1, ...extra });
    const lease = { start: '0000000000000000', end: '0000000000000000', owner: 'n1', generation: 3, expiresInMs: 1000 };
    const v: MasterView = {
      lsn: 7,
      leaseMs: 3000,
      members: [
        member('n1', 'up'),
        member('n2', 'joining', { pieces: 0, transfer: { ...t, direction: 'in', fraction: 0.37, rateBytesPerS: 2.1 * 1024 * 1024 } }),
        member('n3', 'leaving', { transfer: t }),
        member('n4', 'left', { pieces: 0 }),
        member('n5', 'left', { pieces: 2 }),
        member('n6', 'leaving'),
      ],
      leases: [lease],
    };
    const lines = formatStatus('m:1', summarize(v));
    expect(lines[0]).toBe('master m:1 lsn=7 lease=3000ms members=4 pieces=1');
    expect(lines[1]).toMatch(/^ID\s+ZONE\s+STATUS\s+MEMCACHED/);
    expect(lines[2]).toMatch(/^n1\s+-\s+up\s+h:1n1\s/);
    expect(lines[3]).toMatch(/^n2\s+-\s+joining 37% 2\.1 MiB\/s\s+h:1n2\s/);
    expect(lines[4]).toMatch(/^n3\s+-\s+leaving 52% 3\.2 MiB\/s\s+h:1n3\s/);
    expect(lines[5]).toMatch(/^n6\s+-\s+leaving\s+h:1n6\s/);
    expect(lines[6]).toBe('left: n4, n5 (handing over 2 pieces)');
    const health = lines.at(-1)!;
    expect(health).toMatch(/^health: unhealthy: members not up: n2 \(joining\), n3 \(leaving\), n6 \(leaving\)$/);
    expect(health).not.toMatch(/n4|n5/);
  });
});
