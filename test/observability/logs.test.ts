// Structured logs of the compiled CLI, as child processes (stopped by PID in afterAll/afterEach):
// JSON lines on stderr with level, time, msg and the node's id, stdout left to the ready
// line; --log-level silent writes nothing; a bad level is a one-line usage error, exit 2;
// a master logs its members' status changes and a cluster node the ring it joined.
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { startMaster, startRingkv, type RunningServer } from '../../bench/lib/servers.js';
import { LOG_LEVELS } from '../../server/log.js';
import { pollUntil } from '../helpers/async.js';
import { expectOneLineFailure, runCli } from '../helpers/cli.js';
import { request } from '../helpers/http.js';
import { McClient } from '../helpers/mc.js';

interface LogLine {
  level: string;
  time: string;
  msg: string;
  pid: number;
  [field: string]: unknown;
}

const servers: RunningServer[] = [];
const running = new Set<ChildProcess>();
const dirs: string[] = [];

function tmp(): string {
  const d = mkdtempSync(path.join(os.tmpdir(), 'ringkv-logs-'));
  dirs.push(d);
  return d;
}

async function track(s: Promise<RunningServer>): Promise<RunningServer> {
  const server = await s;
  servers.push(server);
  return server;
}

afterEach(async () => {
  // Nodes before the master; each by its PID (SIGTERM, SIGKILL after the grace).
  for (const s of servers.splice(0).reverse()) await s.stop(5000);
});

afterAll(() => {
  for (const p of running) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** Every stderr line, parsed: each must be one JSON object with level, time, msg and pid. */
function logLines(stderr: string, pid: number): LogLine[] {
  if (stderr === '') return [];
  expect(stderr.endsWith('\n'), JSON.stringify(stderr)).toBe(true);
  return stderr
    .slice(0, -1)
    .split('\n')
    .map((l) => {
      const o = JSON.parse(l) as LogLine;
      expect(LOG_LEVELS, l).toContain(o.level);
      expect(typeof o.msg, l).toBe('string');
      expect(Number.isNaN(Date.parse(o.time)), l).toBe(false);
      expect(o.pid, l).toBe(pid);
      return o;
    });
}

async function mcTraffic(port: number): Promise<void> {
  const c = await McClient.connect(port);
  try {
    for (let i = 0; i < 5; i++) expect(await c.set(`logged-key-${i}`, 'v')).toBe('STORED');
    expect(await c.get('logged-key-0')).toBeDefined();
    expect(await c.get('logged-absent')).toBeUndefined();
  } finally {
    c.close();
  }
}

describe('ringkv node --log-level', () => {
  it('debug: JSON lines on stderr (node started with its ports, node stopping), none per request', async () => {
    const node = await track(startRingkv({ args: ['--id', 'logs-n1', '--log-level', 'debug'] }));
    await mcTraffic(node.port);
    expect((await request(node.httpPort!, 'GET', '/kv/logged-key-1')).status).toBe(200);
    await pollUntil(5000, async () => node.stderr().includes('"node started"'), () => node.stderr());
    servers.splice(servers.indexOf(node), 1);
    expect(await node.stop()).toBe(0);

    const lines = logLines(node.stderr(), node.pid);
    const started = lines.find((l) => l.msg === 'node started');
    expect(started, node.stderr()).toMatchObject({ level: 'info', node: 'logs-n1', memcached: `127.0.0.1:${node.port}`, http: `127.0.0.1:${node.httpPort}`, storage: 'memory' });
    expect(lines.some((l) => l.msg === 'node stopping' && l.level === 'info')).toBe(true);
    for (const l of lines) expect(l.node, JSON.stringify(l)).toBe('logs-n1');
    // No request is logged, even at debug.
    expect(node.stderr()).not.toMatch(/logged-key|logged-absent/);
    expect(lines.length).toBeLessThanOrEqual(4);
  });

  it('silent: nothing on stderr, from start to stop', async () => {
    const node = await track(startRingkv({ args: ['--log-level', 'silent'] }));
    await mcTraffic(node.port);
    servers.splice(servers.indexOf(node), 1);
    expect(await node.stop()).toBe(0);
    expect(node.stderr()).toBe('');
  });

  it('warn: the info lines are left out', async () => {
    const node = await track(startRingkv({ args: ['--log-level', 'warn'] }));
    await mcTraffic(node.port);
    servers.splice(servers.indexOf(node), 1);
    expect(await node.stop()).toBe(0);
    expect(node.stderr()).toBe('');
  });

  it('a bad level: one line naming the flag and the choices, exit 2', async () => {
    const run = await runCli(['node', '--port', '0', '--http-port', '0', '--storage', 'memory', '--data', tmp(), '--log-level', 'loud'], 10_000, running);
    expectOneLineFailure(run, /--log-level/);
    expect(run.stderr).toMatch(/loud/);
    expect(run.stderr).toMatch(/fatal, error, warn, info, debug, trace, silent/);
  });

  it('ringkv master: a bad level is refused the same way', async () => {
    const run = await runCli(['master', '--port', '0', '--http-port', '0', '--data', tmp(), '--log-level', 'verbose'], 10_000, running);
    expectOneLineFailure(run, /--log-level.*verbose|verbose.*--log-level/);
  });
});

describe('a master and a cluster node, --log-level info', () => {
  it('the master logs its start and the member registering; the node logs the ring it joined', async () => {
    const master = await track(startMaster({ args: ['--lease-ms', '1500', '--vnodes', '8', '--n', '1', '--r', '1', '--w', '1', '--log-level', 'info'] }));
    const node = await track(startRingkv({ args: ['--id', 'logs-c1', '--master', `127.0.0.1:${master.port}`, '--rpc-port', '0', '--log-level', 'info'] }));
    await pollUntil(10_000, async () => /"member registered"/.test(master.stderr()) && /"ring changed"/.test(node.stderr()), () => `master: ${master.stderr()}\nnode: ${node.stderr()}`, 100);

    const m = logLines(master.stderr(), master.pid);
    expect(m.find((l) => l.msg === 'master started')).toMatchObject({ level: 'info', component: 'master', rpc: `127.0.0.1:${master.port}`, http: `127.0.0.1:${master.httpPort}` });
    expect(m.find((l) => l.msg === 'member registered')).toMatchObject({ level: 'info', member: 'logs-c1', from: null, to: 'up' });

    const n = logLines(node.stderr(), node.pid);
    expect(n.find((l) => l.msg === 'node started')).toMatchObject({ level: 'info', node: 'logs-c1', master: `127.0.0.1:${master.port}` });
    expect(n.find((l) => l.msg === 'member status changed' && l.member === 'logs-c1')).toMatchObject({ to: 'up', self: true });
    expect(n.find((l) => l.msg === 'ring changed')).toMatchObject({ members: ['logs-c1'] });
    expect(n.filter((l) => l.level === 'warn' || l.level === 'error')).toEqual([]);
  }, 30_000);
});
