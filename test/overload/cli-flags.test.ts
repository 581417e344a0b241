// The overload flags of `ringkv node`: a bad value is a usage error (one line, exit 2), and
// the values given reach the node (`stats settings`). The settings are checked on a node
// started in-process from the flags parsed by the CLI's own option list and config builder.
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Command } from 'commander';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { addNodeOptions, nodeConfig } from '../../client/node-cmd.js';
import { startNode, type RunningNode } from '../../server/node.js';
import { expectOneLineFailure, runCli } from '../helpers/cli.js';
import { McClient, statsParser } from '../helpers/mc.js';

const running = new Set<ChildProcess>();
const dirs: string[] = [];
const nodes: RunningNode[] = [];

function tempDir(): string {
  const d = mkdtempSync(path.join(os.tmpdir(), 'ringkv-ovl-cli-'));
  dirs.push(d);
  return d;
}

afterEach(async () => {
  for (const p of running) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  running.clear();
  for (const n of nodes.splice(0)) await n.close();
});

afterAll(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const nodeArgs = (extra: string[]) => ['node', '--port', '0', '--http-port', '0', '--data', path.join(tempDir(), 'data'), '--storage', 'memory', ...extra];

describe('ringkv node overload flags', () => {
  it.each([
    ['--max-inflight', '-1'],
    ['--max-inflight', 'many'],
    ['--max-lag-ms', '1.5'],
    ['--idle-timeout', '-3'],
    ['--request-timeout', 'soon'],
  ])('%s %s is a usage error: exit 2, one line on stderr', async (flag, value) => {
    const run = await runCli(nodeArgs([flag, value]), 10_000, running);
    expectOneLineFailure(run, new RegExp(flag));
  });

  it('stats settings shows the values of --max-inflight 7 --idle-timeout 3 --max-lag-ms 40 --request-timeout 9', async () => {
    const cmd = addNodeOptions(new Command('node')).exitOverride();
    cmd.parse(nodeArgs(['--max-inflight', '7', '--idle-timeout', '3', '--max-lag-ms', '40', '--request-timeout', '9']).slice(1), { from: 'user' });
    const cfg = nodeConfig(cmd.opts());
    expect(cfg).toMatchObject({ maxInflight: 7, idleTimeoutMs: 3000, maxLagMs: 40, requestTimeoutMs: 9000 });
    const node = await startNode(cfg);
    nodes.push(node);
    const c = await McClient.connect(node.port);
    try {
      await c.write('stats settings\r\n');
      const s = await c.read(statsParser);
      expect(s.get('max_inflight')).toBe('7');
      expect(s.get('idle_timeout')).toBe('3');
      expect(s.get('max_lag_ms')).toBe('40');
      expect(s.get('request_timeout')).toBe('9');
    } finally {
      c.close();
    }
  });

  it('the defaults: max_inflight 4096, no lag bound, no idle timeout, a 60 s request timeout', async () => {
    const cmd = addNodeOptions(new Command('node')).exitOverride();
    cmd.parse(nodeArgs([]).slice(1), { from: 'user' });
    const node = await startNode(nodeConfig(cmd.opts()));
    nodes.push(node);
    const c = await McClient.connect(node.port);
    try {
      await c.write('stats settings\r\n');
      const s = await c.read(statsParser);
      expect([s.get('max_inflight'), s.get('max_lag_ms'), s.get('idle_timeout'), s.get('request_timeout')]).toEqual(['4096', '0', '0', '60']);
    } finally {
      c.close();
    }
  });
});
