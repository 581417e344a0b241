// GET /metrics of a lease master and of a cluster node, both in-process (ports 0): the
// master's members by status, leases, lsn, change log, generations and RPC requests; the
// node's replication gauges and its RPC requests counted by type (unknown types: other).
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaults } from '../../server/config.js';
import { masterDefaults, startMaster, type RunningMaster } from '../../server/master/master.js';
import { startNode, type RunningNode } from '../../server/node.js';
import { RpcClient } from '../../server/protocol/rpc/index.js';
import { pollUntil } from '../helpers/async.js';
import type { Exposition } from '../helpers/prometheus.js';
import { McClient } from '../helpers/mc.js';
import { scrape, valueOf } from '../helpers/prometheus.js';

const dirs: string[] = [];
const tmp = (): string => {
  const d = mkdtempSync(path.join(os.tmpdir(), 'ringkv-obs-master-'));
  dirs.push(d);
  return d;
};

describe('a master with one node', () => {
  let master: RunningMaster;
  let node: RunningNode;
  let rpc: RpcClient | undefined;

  beforeAll(async () => {
    master = await startMaster({
      ...masterDefaults,
      port: 0,
      httpPort: 0,
      data: tmp(),
      leaseMs: 2000,
      renewMs: 300,
      driftMs: 50,
      tickMs: 50,
      vnodes: 8,
      n: 1,
      r: 1,
      w: 1,
      logLevel: 'silent',
    });
    node = await startNode({
      ...defaults,
      id: 'm1',
      host: '127.0.0.1',
      port: 0,
      httpPort: 0,
      rpcPort: 0,
      data: tmp(),
      storage: 'memory',
      master: `127.0.0.1:${master.port}`,
      antiEntropyMs: 60_000,
      shutdownGraceMs: 500,
      logLevel: 'silent',
    });
  });

  afterAll(async () => {
    rpc?.close();
    await node?.close();
    await master?.close();
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  it('master /metrics: one member up, every range held, the table version, RPC requests by type', async () => {
    // Wait for the node's first renewal, with every lease held.
    let e: Exposition | undefined;
    await pollUntil(
      10_000,
      async () => {
        e = await scrape(master.httpPort);
        const renewed = valueOf(e, 'ringkv_master_rpc_requests_total', { command: 'renew', result: 'ok' }) > 0;
        return renewed && valueOf(e, 'ringkv_master_leases', { state: 'held' }) > 0 && valueOf(e, 'ringkv_master_leases', { state: 'unheld' }) === 0;
      },
      () => `a renewal and every lease held: ${JSON.stringify(e?.samples.filter((s) => s.name.startsWith('ringkv_master')))}`,
      100,
    );
    e = e!;
    expect(e.types.get('ringkv_master_members')).toBe('gauge');
    expect(valueOf(e, 'ringkv_master_members', { status: 'up' })).toBe(1);
    for (const status of ['down', 'joining', 'leaving', 'left']) expect(valueOf(e, 'ringkv_master_members', { status })).toBe(0);
    const ranges = valueOf(e, 'ringkv_master_ranges');
    expect(ranges).toBeGreaterThan(0);
    expect(valueOf(e, 'ringkv_master_leases', { state: 'held' }) + valueOf(e, 'ringkv_master_leases', { state: 'recalling' })).toBe(ranges);
    const core = master.core!.gauges(Date.now());
    expect(valueOf(e, 'ringkv_master_table_lsn')).toBe(core.lsn);
    expect(valueOf(e, 'ringkv_master_table_lsn')).toBeGreaterThan(0);
    expect(valueOf(e, 'ringkv_master_change_log_entries')).toBe(core.changeLogEntries);
    expect(valueOf(e, 'ringkv_master_generations')).toBeGreaterThan(0);
    expect(valueOf(e, 'ringkv_master_rpc_requests_total', { command: 'register', result: 'ok' })).toBe(1);
    expect(valueOf(e, 'ringkv_master_rpc_requests_total', { command: 'renew', result: 'ok' })).toBeGreaterThanOrEqual(1);
    expect(valueOf(e, 'ringkv_master_rpc_requests_total', { command: 'changes', result: 'ok' })).toBeGreaterThanOrEqual(1);
    expect(e.samples.some((s) => s.name === 'process_cpu_user_seconds_total')).toBe(true);
    // GET /cluster still answers beside it.
    const cluster = (await (await fetch(`http://127.0.0.1:${master.httpPort}/cluster`)).json()) as { members: unknown[] };
    expect(cluster.members).toHaveLength(1);
  });

  it('node /metrics in a cluster: leases held, peers down, replication counters, RPC requests by type', async () => {
    const c = await McClient.connect(node.port);
    try {
      expect(await c.set('cluster-key', 'v')).toBe('STORED');
      expect((await c.get('cluster-key'))?.value.toString()).toBe('v');
    } finally {
      c.close();
    }
    rpc = new RpcClient({ host: '127.0.0.1', port: node.rpcPort! });
    const pings = 4;
    for (let i = 0; i < pings; i++) await rpc.call('ping', {}, { timeoutMs: 2000 });
    await expect(rpc.call('no.such.type', {}, { timeoutMs: 2000 })).rejects.toMatchObject({ code: 'UNKNOWN_TYPE' });

    const e = await scrape(node.httpPort);
    expect(valueOf(e, 'ringkv_requests_total', { frontend: 'rpc', command: 'ping', result: 'ok' })).toBe(pings);
    expect(valueOf(e, 'ringkv_requests_total', { frontend: 'rpc', command: 'other', result: 'error' })).toBe(1);
    // RPC requests are counted, not timed.
    expect(e.samples.some((s) => s.name === 'ringkv_request_duration_seconds_count' && s.labels.frontend === 'rpc')).toBe(false);
    expect(valueOf(e, 'ringkv_requests_total', { frontend: 'memcached', command: 'set', result: 'ok' })).toBe(1);
    expect(valueOf(e, 'ringkv_requests_total', { frontend: 'memcached', command: 'get', result: 'ok' })).toBe(1);
    expect(valueOf(e, 'ringkv_leases_held')).toBeGreaterThan(0);
    expect(valueOf(e, 'ringkv_leases_held')).toBe(node.membership!.owner.leases().length);
    expect(valueOf(e, 'ringkv_lease_table_lsn')).toBeGreaterThan(0);
    expect(valueOf(e, 'ringkv_peers_down')).toBe(0);
    for (const name of ['ringkv_hints_held', 'ringkv_hints_bytes', 'ringkv_read_repairs_total', 'ringkv_quorum_failures_total', 'ringkv_anti_entropy_rounds_total', 'ringkv_stream_bytes_in_total']) {
      expect(e.types.has(name), name).toBe(true);
    }
    expect(valueOf(e, 'ringkv_quorum_failures_total')).toBe(0);
  });

  it('node /stats and /metrics in a cluster: the range-move counters, and ranges by state at 0 with no move', async () => {
    const stats = node.stats();
    for (const k of ['transfer_retries', 'transfer_source_switches', 'transfer_resumes', 'transfer_catchup_keys', 'transfer_catchup_bytes', 'transfer_stalls']) {
      expect(stats[k], k).toBe(0);
    }
    const e = await scrape(node.httpPort);
    for (const name of ['ringkv_transfer_retries_total', 'ringkv_transfer_stalls_total', 'ringkv_transfer_catchup_bytes_total']) expect(e.types.get(name), name).toBe('counter');
    expect(e.samples.filter((s) => s.name === 'ringkv_transfer_ranges').map((s) => s.labels.state)).toEqual(['queued', 'streaming', 'catching-up', 'flipping', 'done', 'failed']);
    expect(e.samples.filter((s) => s.name === 'ringkv_transfer_ranges').every((s) => s.value === 0)).toBe(true);
    expect(e.samples.filter((s) => s.name === 'ringkv_transfer_ranges_waiting')).toHaveLength(7);
  });
});
