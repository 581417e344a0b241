// Range transfers of a join, with real processes on loopback (a master and 3 or 4 nodes of
// the compiled CLI, N=3 R=2 W=2, real TCP between them). A joiner streams each moving
// range in key order from ONE current replica (`stream.scan` pages), records the last key
// it has durably merged, catches up with the range's other replicas (page hashes, the
// differing keys pulled), then calls `joined`. The tests:
//   a. the joiner (LevelDB) SIGKILLed half-way and restarted with the same id and data dir
//      resumes from its saved cursors: the bytes sent over the whole join stay within 1.3x
//      of the data moved, every key reads back, and the joiner holds its keys;
//   b. every connection to the sources cut every ~200 KB (a cut proxy in front of each
//      source's RPC port, advertised with --rpc-advertise): the join still completes, by
//      retries, and the joiner holds its keys;
//   c. the source of a streaming range SIGKILLed mid-transfer (long leases keep the dead
//      node in the ring meanwhile): the joiner switches to another replica of the range,
//      completes without starting over, holds its keys; every key stays readable;
//   d. the states of the moving ranges (queued, streaming, catching-up, flipping, done)
//      are visible in the master's GET /cluster and in `ringkv status`;
//   e. a source paused (SIGSTOP) mid-transfer: its calls stall (--transfer-stall-ms), its
//      ranges move to another replica, the master puts it down (the ring changes) and the
//      join goes on from its cursors: n4 receives each record it holds once.
// What each node holds is read through GET /debug/local/:key and GET /stats; the cluster's
// state through the master's GET /cluster. Every wait is a bounded poll on a condition;
// every process is stopped by its handle, every proxy closed, in afterEach.
import type { ChildProcess } from 'node:child_process';
import http from 'node:http';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { hash64, initHash, Ring } from '../../ring/index.js';
import { freePort, startMaster, startRingkv, type RunningServer } from '../../bench/lib/servers.js';
import { RingClient } from '../../client/index.js';
import type { WireRangeMove, WireTransfer } from '../../server/master/core.js';
import { pool, sleep } from '../helpers/async.js';
import { runCli } from '../helpers/cli.js';
import { startCutProxy, type CutProxy } from '../helpers/cut-proxy.js';
import { McClient, setCommand } from '../helpers/mc.js';
import { debugLocal, holds, nodeStats, settled, stopStarted, startTestCluster, startTestNode, until, view, type ClusterView } from '../helpers/cluster.js';

const vnodes = 16;
const N = 3;
const replication = { n: N, r: 2, w: 2 };
const leaseMs = 3000;
const renewMs = 500;

/**
 * Node flags of every test: short failure detection; anti-entropy off (a long period), so
 * that what a joiner holds came by its transfer alone, and the byte counters count the
 * transfer alone.
 */
function nodeArgs(o: { streamMbPerS?: number; stallMs?: number; concurrency?: number } = {}): string[] {
  return [
    '--heartbeat-ms', '100',
    '--replica-timeout-ms', '1000',
    '--anti-entropy-ms', '600000',
    '--forward-timeout-ms', '2000',
    '--unavailable-ms', '8000',
    '--stream-mb-per-s', String(o.streamMbPerS ?? 64),
    ...(o.stallMs !== undefined ? ['--transfer-stall-ms', String(o.stallMs)] : []),
    ...(o.concurrency !== undefined ? ['--transfer-concurrency', String(o.concurrency)] : []),
  ];
}

/** Every process started by the running test, so that afterEach stops each by its handle. */
const started: RunningServer[] = [];
const track = (s: RunningServer) => (started.push(s), s);
/** Clients, proxies and connections the running test opened. */
const closers: Array<() => unknown> = [];
/** CLI processes the running test started (killed by PID if still running). */
const cliProcs = new Set<ChildProcess>();
let agent: http.Agent | undefined;

beforeAll(async () => {
  await initHash();
});

afterEach(async () => {
  for (const c of closers.splice(0).reverse()) {
    try {
      await c();
    } catch {
      // already closed
    }
  }
  for (const p of cliProcs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  cliProcs.clear();
  agent?.destroy();
  agent = undefined;
  await stopStarted(started);
}, 60_000);

function newAgent(): http.Agent {
  agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
  return agent;
}

// ---- keys, values, the ring -------------------------------------------------------------

/** A value of ~100 bytes naming its key, so a value found under another key is caught. */
const valueOf = (key: string) => `${key}=`.padEnd(100, 'v');

function makeKeys(n: number): string[] {
  const tag = Date.now().toString(36);
  return Array.from({ length: n }, (_, i) => `t${tag}:${i}`);
}

const ringOf = (ids: readonly string[]) => Ring.build([...ids].sort().map((id) => ({ id })), { vnodes });
const listOf = (ring: Ring, key: string) => ring.preferenceList(hash64(Buffer.from(key, 'latin1')), N);
/** The keys `id` replicates in the ring of `ids`. */
const keysOfNode = (ids: readonly string[], id: string, keys: readonly string[]) => {
  const ring = ringOf(ids);
  return keys.filter((k) => listOf(ring, k).includes(id));
};

/** Up to `n` of `items`, spread evenly. */
function sample<T>(items: readonly T[], n: number): T[] {
  if (items.length <= n) return [...items];
  const step = items.length / n;
  return Array.from({ length: n }, (_, i) => items[Math.floor(i * step)]!);
}

// ---- loading and checking -------------------------------------------------------------

/**
 * Writes every key once through the nodes' memcached ports: `perNode` connections per node,
 * each pipelining `batch` sets at a time. Throws unless every set is STORED.
 */
async function preload(nodes: readonly RunningServer[], keys: readonly string[], perNode = 2, batch = 200): Promise<number> {
  const t0 = Date.now();
  let next = 0;
  const bad: string[] = [];
  const conns = await Promise.all(nodes.flatMap((n) => Array.from({ length: perNode }, () => McClient.connect(n.port))));
  try {
    await Promise.all(
      conns.map(async (c) => {
        for (;;) {
          const from = next;
          next += batch;
          if (from >= keys.length) return;
          const chunk = keys.slice(from, from + batch);
          await c.write(Buffer.concat(chunk.map((k) => setCommand(k, valueOf(k)))));
          for (const k of chunk) {
            const line = await c.line(20_000);
            if (line !== 'STORED' && bad.length < 10) bad.push(`${k}: ${line}`);
          }
        }
      }),
    );
  } finally {
    for (const c of conns) c.close();
  }
  if (bad.length > 0) throw new Error(`preload: sets not stored, e.g. ${bad.join('; ')}`);
  return Date.now() - t0;
}

/** Every key read through the cluster (RingClient, the cluster's R): the ones missing or wrong. */
async function unreadable(master: RunningServer, keys: readonly string[]): Promise<string[]> {
  const client = await RingClient.connect({ master: `127.0.0.1:${master.port}`, timeoutMs: 15_000 });
  try {
    const chunks: string[][] = [];
    for (let i = 0; i < keys.length; i += 1000) chunks.push(keys.slice(i, i + 1000));
    const bad = await pool(chunks, 4, async (chunk) => {
      const got = await client.getMany(chunk);
      return chunk.filter((k) => got.get(k)?.value.toString('latin1') !== valueOf(k)).map((k) => `${k}: ${JSON.stringify(got.get(k)?.value.toString('latin1').slice(0, 40))}`);
    });
    return bad.flat();
  } finally {
    await client.close();
  }
}

/** The keys of `keys` that `node` does not hold itself (GET /debug/local) with their value. */
async function notOn(node: RunningServer, keys: readonly string[]): Promise<string[]> {
  const a = agent ?? newAgent();
  const r = await pool(keys, 16, async (k) => (holds(await debugLocal(node.httpPort!, k, a), valueOf(k)) ? undefined : k));
  return r.filter((k): k is string => k !== undefined);
}

/** A node's /stats counters, each checked to be a number. */
async function counters<K extends string>(node: RunningServer, names: readonly K[]): Promise<Record<K, number>> {
  const s = await nodeStats(node.httpPort!);
  const out = {} as Record<K, number>;
  for (const n of names) {
    const v = s[n];
    if (typeof v !== 'number') throw new Error(`stat ${n} of node on http ${node.httpPort} is ${JSON.stringify(v)} (missing from GET /stats?)`);
    out[n] = v;
  }
  return out;
}

const memberOf = (v: ClusterView, id: string) => v.members.find((m) => m.id === id);
const statusOf = (v: ClusterView, id: string) => memberOf(v, id)?.status;

/** Starts a master with the tests' timings and vnodes. */
async function master(): Promise<RunningServer> {
  return track(
    await startMaster({ args: ['--lease-ms', String(leaseMs), '--vnodes', String(vnodes), '--n', String(replication.n), '--r', String(replication.r), '--w', String(replication.w)] }),
  );
}

/**
 * A memory node whose RPC port sits behind a cut proxy: the node listens on a free port,
 * tells the cluster the proxy's address (--rpc-advertise), and the proxy forwards there.
 */
async function startProxiedNode(m: RunningServer, id: string, args: string[]): Promise<{ node: RunningServer; proxy: CutProxy }> {
  const proxy = await startCutProxy();
  closers.push(() => proxy.close());
  const rpcPort = await freePort();
  proxy.setTarget(rpcPort);
  const node = track(
    await startRingkv({
      storage: 'memory',
      args: ['--master', `127.0.0.1:${m.port}`, '--id', id, '--rpc-port', String(rpcPort), '--rpc-advertise', `127.0.0.1:${proxy.port}`, '--renew-ms', String(renewMs), '--drift-ms', '100', ...args],
    }),
  );
  return { node, proxy };
}

/**
 * Polls `step` every `intervalMs` until it returns true or `timeoutMs` passes (then throws
 * `describe()`): for the loops that watch a join and act on what they see.
 */
async function watch(timeoutMs: number, intervalMs: number, step: () => Promise<boolean>, describe: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await step()) return;
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms: ${describe()}`);
    await sleep(intervalMs);
  }
}

/**
 * Waits until the joiner n4 has received 30% of the `mineCount` keys it will hold and
 * names the source streaming the most of its ranges then (one of `ids`).
 */
async function streamingSource(m: RunningServer, n4: RunningServer, ids: readonly string[], mineCount: number): Promise<{ victim: string; keysIn: number; transfer: WireTransfer | undefined }> {
  let keysIn = 0;
  let victim: string | undefined;
  let transfer: WireTransfer | undefined;
  await watch(
    30_000,
    50,
    async () => {
      keysIn = (await counters(n4, ['stream_keys_in'] as const)).stream_keys_in;
      const v = await view(m);
      transfer = memberOf(v, 'n4')?.transfer;
      if (statusOf(v, 'n4') === 'up') throw new Error(`n4 was up before it had received 30% of its ${mineCount} keys (stream_keys_in ${keysIn})`);
      if (keysIn < 0.3 * mineCount) return false;
      const bySource = new Map<string, number>();
      for (const r of transfer?.ranges ?? []) if (r.state === 'streaming' && ids.includes(r.source)) bySource.set(r.source, (bySource.get(r.source) ?? 0) + 1);
      victim = [...bySource].sort((a, b) => b[1] - a[1])[0]?.[0];
      return victim !== undefined;
    },
    () => `n4's stream_keys_in ${keysIn} of ${mineCount}; its transfer: ${showTransfer(transfer)}`,
  );
  return { victim: victim!, keysIn, transfer };
}

const showTransfer = (t: WireTransfer | undefined) =>
  t === undefined
    ? 'none'
    : JSON.stringify({ ...t, ranges: t.ranges?.length, states: t.ranges ? countStates(t.ranges) : undefined }).slice(0, 600);
function countStates(ranges: readonly WireRangeMove[]): Record<string, number> {
  const c: Record<string, number> = {};
  for (const r of ranges) c[r.state] = (c[r.state] ?? 0) + 1;
  return c;
}

describe('range transfers of a join (processes)', () => {
  it('a. the joiner SIGKILLed half-way resumes from its saved cursors after a restart (same id, same LevelDB): bytes sent < 1.3x the data, every key readable, the joiner holds its keys', async () => {
    const t0 = Date.now();
    const ids = ['n1', 'n2', 'n3'];
    const { master: m, nodes } = await startTestCluster({ ids, leaseMs, renewMs, vnodes, replication, storage: 'level', nodeArgs: nodeArgs() }, track);
    const timings: string[] = [`cluster of 3 up: ${Date.now() - t0} ms`];
    const keys = makeKeys(100_000);
    timings.push(`preload ${keys.length} keys: ${await preload(nodes, keys)} ms`);
    const mine = keysOfNode([...ids, 'n4'], 'n4', keys);

    // n4 joins at 2 MiB/s: its ~81k records of ~122 B (~10 MB) take ~5 s of streaming.
    const args4 = nodeArgs({ streamMbPerS: 2, stallMs: 2000 });
    const joinAt = Date.now();
    const n4 = track(await startTestNode(m, 'n4', { renewMs, nodeArgs: args4, storage: 'level' }));
    let before = { stream_keys_in: 0, stream_bytes_in: 0, transfer_catchup_bytes: 0, transfer_catchup_keys: 0 };
    await watch(
      30_000,
      50,
      async () => {
        before = await counters(n4, ['stream_keys_in', 'stream_bytes_in', 'transfer_catchup_bytes', 'transfer_catchup_keys'] as const);
        if (before.stream_keys_in >= 0.4 * mine.length) return true;
        if (statusOf(await view(m), 'n4') === 'up') throw new Error(`n4 was up before it had received 40% of its ${mine.length} keys (stream_keys_in ${before.stream_keys_in}): the join is too fast to kill half-way`);
        return false;
      },
      () => `n4's stream_keys_in ${before.stream_keys_in} of the ${mine.length} keys it will hold`,
    );
    await n4.kill();
    const killedAt = Date.now();
    timings.push(`n4 killed ${killedAt - joinAt} ms into its join, stream_keys_in ${before.stream_keys_in} (${((100 * before.stream_keys_in) / mine.length).toFixed(1)}% of ${mine.length})`);
    const vKilled = await view(m);
    expect(statusOf(vKilled, 'n4'), 'n4 had not joined yet when it was killed').toBe('joining');

    const back = track(await startTestNode(m, 'n4', { renewMs, nodeArgs: args4, storage: 'level', dataDir: n4.dataDir! }));
    timings.push(`n4 restarted (ready) ${Date.now() - killedAt} ms after the kill`);
    let last: ClusterView | undefined;
    await until(m, (v) => ((last = v), statusOf(v, 'n4') === 'up'), 40_000).catch((e: Error) => {
      throw new Error(`${e.message}\nn4 transfer: ${showTransfer(last && memberOf(last, 'n4')?.transfer)}\nn4 stderr: ${back.stderr().slice(-2000)}`);
    });
    timings.push(`n4 up ${Date.now() - killedAt} ms after the kill (join ${Date.now() - joinAt} ms in all)`);

    const after = await counters(back, ['stream_keys_in', 'stream_bytes_in', 'transfer_resumes', 'transfer_catchup_bytes', 'transfer_catchup_keys', 'transfer_retries'] as const);
    const sources = await Promise.all(nodes.map((n) => counters(n, ['stream_keys_out', 'stream_bytes_out'] as const)));
    const keysOut = sources.reduce((a, s) => a + s.stream_keys_out, 0);
    const bytesOut = sources.reduce((a, s) => a + s.stream_bytes_out, 0);
    const catchupBytes = before.transfer_catchup_bytes + after.transfer_catchup_bytes;
    const recordBytes = keysOut === 0 ? NaN : bytesOut / keysOut;
    const rangeBytes = recordBytes * mine.length;
    const ratio = (bytesOut + catchupBytes) / rangeBytes;
    const lastTransfer = memberOf(await view(m), 'n4')?.lastTransfer;
    console.log(
      `a. resume after SIGKILL: bytes sent / range size = ${ratio.toFixed(3)} ` +
        `(stream_bytes_out of n1..n3 ${bytesOut} for ${keysOut} records, ~${recordBytes.toFixed(0)} B each; catch-up ${catchupBytes} B; ` +
        `n4 holds ${mine.length} keys = ~${Math.round(rangeBytes)} B)\n` +
        `   n4 before the kill: ${JSON.stringify(before)}; after the restart: ${JSON.stringify(after)}\n` +
        `   per source: ${JSON.stringify(sources)}\n   last transfer: ${showTransfer(lastTransfer)}\n   timings: ${timings.join('; ')}`,
    );
    expect(after.transfer_resumes, 'the restarted n4 resumed at least one move from a saved cursor').toBeGreaterThanOrEqual(1);
    expect(after.stream_keys_in, 'the restarted n4 did not copy everything again').toBeLessThan(mine.length);
    expect(ratio, 'bytes sent over the whole join (both runs of n4) over the size of what n4 holds').toBeLessThan(1.3);

    const verifyAt = Date.now();
    const bad = await unreadable(m, keys);
    expect(bad.slice(0, 5), `${bad.length} of ${keys.length} keys not readable through the cluster with their value`).toEqual([]);
    const missing = await notOn(back, sample(mine, 500));
    expect(missing.slice(0, 5), `${missing.length} of 500 sampled keys of n4 not on n4`).toEqual([]);
    console.log(`a. verified ${keys.length} reads and 500 of n4's keys on n4 in ${Date.now() - verifyAt} ms; total ${Date.now() - t0} ms`);
  }, 90_000);

  it('b. every connection to the sources cut every ~200 KB: the join completes by retries, and the joiner holds its keys', async () => {
    const t0 = Date.now();
    const ids = ['n1', 'n2', 'n3'];
    const m = await master();
    const proxied: Array<{ node: RunningServer; proxy: CutProxy }> = [];
    for (const id of ids) proxied.push(await startProxiedNode(m, id, nodeArgs()));
    await until(m, settled(ids), 20_000);
    const nodes = proxied.map((p) => p.node);
    const proxies = proxied.map((p) => p.proxy);
    const keys = makeKeys(30_000);
    // The proxies carry the replication of the preload too: no cuts until it is in.
    for (const p of proxies) p.setCutEveryBytes(undefined);
    const preloadMs = await preload(nodes, keys);
    const cutEvery = 200_000;
    for (const p of proxies) p.setCutEveryBytes(cutEvery);
    const mine = keysOfNode([...ids, 'n4'], 'n4', keys);

    const joinAt = Date.now();
    const n4 = track(await startTestNode(m, 'n4', { renewMs, nodeArgs: nodeArgs({ streamMbPerS: 8, stallMs: 1000 }), storage: 'memory' }));
    let last: ClusterView | undefined;
    await until(m, (v) => ((last = v), statusOf(v, 'n4') === 'up'), 40_000).catch((e: Error) => {
      throw new Error(`${e.message}\nn4 transfer: ${showTransfer(last && memberOf(last, 'n4')?.transfer)}\ncuts ${proxies.map((p) => p.cuts)}\nn4 stderr: ${n4.stderr().slice(-2000)}`);
    });
    const joinMs = Date.now() - joinAt;
    const c4 = await counters(n4, ['stream_keys_in', 'stream_bytes_in', 'transfer_retries', 'transfer_stalls', 'transfer_source_switches', 'transfer_catchup_keys'] as const);
    const cuts = proxies.reduce((a, p) => a + p.cuts, 0);
    console.log(
      `b. join through proxies cutting every ${cutEvery} B: up in ${joinMs} ms (preload ${preloadMs} ms); cuts per source ${proxies.map((p) => p.cuts)}, ` +
        `connections ${proxies.map((p) => p.connections)}; n4 ${JSON.stringify(c4)}; n4 holds ${mine.length} keys; total ${Date.now() - t0} ms`,
    );
    expect(cuts, 'the proxies cut connections during the join').toBeGreaterThan(0);
    expect(c4.transfer_retries, "n4's transfer calls were retried").toBeGreaterThan(0);
    // Checks go to n4's HTTP port directly (not through a proxy); cuts may go on meanwhile.
    const missing = await notOn(n4, sample(mine, 1000));
    expect(missing.slice(0, 5), `${missing.length} of 1000 sampled keys of n4 not on n4`).toEqual([]);
  }, 90_000);

  it('c. the source of a streaming range SIGKILLed mid-transfer: the joiner switches to another replica and completes; every key stays readable', async () => {
    const t0 = Date.now();
    const ids = ['n1', 'n2', 'n3'];
    // Long leases: the master keeps the killed source in the ring (it does not go down) until
    // well after the join is through, so the join must complete by switching sources, not
    // by starting over in a ring without the dead node.
    const longLeaseMs = 15_000;
    const longRenewMs = 1000;
    const { master: m, nodes } = await startTestCluster({ ids, leaseMs: longLeaseMs, renewMs: longRenewMs, vnodes, replication, storage: 'memory', nodeArgs: nodeArgs() }, track);
    const byId = new Map(ids.map((id, i) => [id, nodes[i]!]));
    const keys = makeKeys(30_000);
    const preloadMs = await preload(nodes, keys);
    const mine = keysOfNode([...ids, 'n4'], 'n4', keys);

    // n4 joins at 1 MiB/s (its ~22k records take ~4 s); a stalled call is retried after 1 s.
    const joinAt = Date.now();
    const n4 = track(await startTestNode(m, 'n4', { renewMs: longRenewMs, nodeArgs: nodeArgs({ streamMbPerS: 1, stallMs: 1000 }), storage: 'memory' }));
    const { victim, keysIn, transfer: lastT } = await streamingSource(m, n4, ids, mine.length);
    const killed = byId.get(victim)!;
    await killed.kill();
    const killedAt = Date.now();
    const survivors = ids.filter((id) => id !== victim);
    console.log(`c. killed ${victim} (source of a streaming range) ${killedAt - joinAt} ms into the join, at stream_keys_in ${keysIn} of ${mine.length}; transfer then: ${showTransfer(lastT)}`);

    let last: ClusterView | undefined;
    const upView = await until(m, (v) => ((last = v), statusOf(v, 'n4') === 'up'), 40_000).catch((e: Error) => {
      throw new Error(`${e.message}\nn4 transfer: ${showTransfer(last && memberOf(last, 'n4')?.transfer)}\nn4 stderr: ${n4.stderr().slice(-2000)}`);
    });
    const upMs = Date.now() - joinAt;
    const victimDownAtUp = statusOf(upView, victim) === 'down';
    const c4 = await counters(n4, ['stream_keys_in', 'transfer_retries', 'transfer_stalls', 'transfer_source_switches', 'transfer_catchup_keys', 'transfer_catchup_bytes'] as const);
    console.log(
      `c. n4 up ${upMs} ms into the join (${Date.now() - killedAt} ms after the kill; ${victim} ${statusOf(upView, victim)} then); preload ${preloadMs} ms; n4 ${JSON.stringify(c4)}; ` +
        `last transfer: ${showTransfer(memberOf(await view(m), 'n4')?.lastTransfer)}`,
    );
    expect(c4.transfer_source_switches, 'n4 switched at least one range to another source').toBeGreaterThanOrEqual(1);

    // The keys n4 must hold whose replicas are n4 and the survivors, in the ring the join
    // targeted: the ring of all four while the victim is still in it (the lease keeps it
    // there), without the keys the victim replicates; the ring of the survivors and n4 (every
    // key) had the master already put the victim down.
    const targetRing = victimDownAtUp ? [...survivors, 'n4'] : [...ids, 'n4'];
    const ring = ringOf(targetRing);
    const due = keys.filter((k) => {
      const list = listOf(ring, k);
      return list.includes('n4') && list.every((id) => id === 'n4' || survivors.includes(id));
    });
    const missing = await notOn(n4, sample(due, 1000));
    expect(missing.slice(0, 5), `${missing.length} of ${Math.min(1000, due.length)} sampled keys (of ${due.length}) due on n4 in the ring of ${targetRing} not on n4`).toEqual([]);
    // And the keys of n4's ranges that the victim also replicates: every one of them was on
    // both survivors too, so n4 got them by its switch to a survivor (or by the catch-up).
    const shared = keysOfNode(targetRing, 'n4', keys).filter((k) => listOf(ring, k).includes(victim));
    const missingShared = await notOn(n4, sample(shared, 1000));
    expect(missingShared.slice(0, 5), `${missingShared.length} of ${Math.min(1000, shared.length)} sampled keys (of ${shared.length}) of n4 that ${victim} also replicates not on n4`).toEqual([]);

    // Every key readable through the cluster (R=2), the dead source still in the ring (its
    // pieces are coordinated by another replica meanwhile).
    const readAt = Date.now();
    const bad = await unreadable(m, keys);
    expect(bad.slice(0, 5), `${bad.length} of ${keys.length} keys not readable through the cluster with their value`).toEqual([]);
    console.log(`c. ${keys.length} keys read back in ${Date.now() - readAt} ms (${victim} ${statusOf(await view(m), victim)})`);
    console.log(`c. total ${Date.now() - t0} ms`);
  }, 90_000);

  it('e. a source paused (SIGSTOP) mid-transfer: its calls stall and move to another replica; the master then puts it down (the ring changes) and the join goes on from its cursors, not from the start', async () => {
    const t0 = Date.now();
    const ids = ['n1', 'n2', 'n3'];
    const { master: m, nodes } = await startTestCluster({ ids, leaseMs, renewMs, vnodes, replication, storage: 'memory', nodeArgs: nodeArgs() }, track);
    const byId = new Map(ids.map((id, i) => [id, nodes[i]!]));
    const keys = makeKeys(30_000);
    await preload(nodes, keys);
    const mine = keysOfNode([...ids, 'n4'], 'n4', keys);

    const joinAt = Date.now();
    const n4 = track(await startTestNode(m, 'n4', { renewMs, nodeArgs: nodeArgs({ streamMbPerS: 1, stallMs: 1000 }), storage: 'memory' }));
    const { victim, keysIn } = await streamingSource(m, n4, ids, mine.length);
    const paused = byId.get(victim)!;
    paused.proc.kill('SIGSTOP');
    closers.push(() => paused.proc.kill('SIGCONT'));
    const pausedAt = Date.now();
    console.log(`e. paused ${victim} ${pausedAt - joinAt} ms into the join, at stream_keys_in ${keysIn} of ${mine.length}`);

    let last: ClusterView | undefined;
    await until(m, (v) => ((last = v), statusOf(v, 'n4') === 'up'), 45_000).catch((e: Error) => {
      throw new Error(`${e.message}\nn4 transfer: ${showTransfer(last && memberOf(last, 'n4')?.transfer)}\nn4 stderr: ${n4.stderr().slice(-2000)}`);
    });
    const v = await view(m);
    const c4 = await counters(n4, ['stream_keys_in', 'transfer_retries', 'transfer_stalls', 'transfer_source_switches', 'transfer_resumes', 'transfer_catchup_keys'] as const);
    // What n4 holds in the ring it joined: without the paused node once the master put it down.
    const finalIds = statusOf(v, victim) === 'down' ? ['n4', ...ids.filter((id) => id !== victim)] : [...ids, 'n4'];
    const finalMine = keysOfNode(finalIds, 'n4', keys);
    console.log(
      `e. n4 up ${Date.now() - pausedAt} ms after the pause (${victim} ${statusOf(v, victim)}); n4 ${JSON.stringify(c4)}; ` +
        `records received / records held = ${(c4.stream_keys_in / finalMine.length).toFixed(3)} (${c4.stream_keys_in} / ${finalMine.length})`,
    );
    expect(c4.transfer_stalls, 'a call to the paused source stalled').toBeGreaterThanOrEqual(1);
    expect(c4.transfer_source_switches, 'the stalled ranges went to another replica').toBeGreaterThanOrEqual(1);
    expect(c4.stream_keys_in, 'n4 did not copy its ranges again when the ring changed').toBeLessThan(1.3 * finalMine.length);
    const missing = await notOn(n4, sample(finalMine, 1000));
    expect(missing.slice(0, 5), `${missing.length} of 1000 sampled keys of n4 not on n4`).toEqual([]);
    paused.proc.kill('SIGCONT');
    console.log(`e. total ${Date.now() - t0} ms`);
  }, 90_000);

  it('d. the moving ranges go through queued, streaming, catching-up and done, seen in GET /cluster and in `ringkv status`', async () => {
    const t0 = Date.now();
    const ids = ['n1', 'n2', 'n3'];
    const { master: m, nodes } = await startTestCluster({ ids, leaseMs, renewMs, vnodes, replication, storage: 'memory', nodeArgs: nodeArgs() }, track);
    const keys = makeKeys(30_000);
    await preload(nodes, keys);

    // One stream at a time at 1 MiB/s: the other ranges wait, queued.
    const n4 = track(await startTestNode(m, 'n4', { renewMs, nodeArgs: nodeArgs({ streamMbPerS: 1, concurrency: 1 }), storage: 'memory' }));
    const seen = new Set<string>();
    const transferStates = new Set<string>();
    let polls = 0;
    let withRanges = 0;
    let status: Promise<{ stdout: string; stderr: string; code: number | null }> | undefined;
    let lastT: WireTransfer | undefined;
    let final: ClusterView | undefined;
    await watch(
      40_000,
      100,
      async () => {
        const v = await view(m);
        polls++;
        const me = memberOf(v, 'n4');
        lastT = me?.transfer ?? lastT;
        if (me?.transfer?.state) transferStates.add(me.transfer.state);
        if (me?.transfer?.ranges) {
          withRanges++;
          for (const r of me.transfer.ranges) seen.add(r.state);
          // `ringkv status` once, while ranges are still queued or streaming.
          if (status === undefined && me.transfer.ranges.some((r) => r.state === 'streaming') && me.transfer.ranges.some((r) => r.state === 'queued')) {
            status = runCli(['status', '--master', `127.0.0.1:${m.port}`], 15_000, cliProcs);
          }
        }
        if (me?.status === 'up') {
          final = v;
          return true;
        }
        return false;
      },
      () => `n4 not up; states seen ${[...seen]}; last transfer ${showTransfer(lastT)}; stderr ${n4.stderr().slice(-1000)}`,
    );
    // The final report (every range done) reaches the master with the joiner's next progress
    // report, which may come a few hundred ms after the master has made it 'up'.
    const upAt = Date.now();
    let lastTransfer = memberOf(final!, 'n4')?.lastTransfer;
    if (lastTransfer === undefined) lastTransfer = memberOf(await until(m, (v) => memberOf(v, 'n4')?.lastTransfer !== undefined, 5_000), 'n4')?.lastTransfer;
    const lastTransferLagMs = Date.now() - upAt;
    const finalStates = countStates(lastTransfer?.ranges ?? []);
    for (const r of lastTransfer?.ranges ?? []) seen.add(r.state);
    console.log(
      `d. ${polls} polls (${withRanges} with ranges) in ${Date.now() - t0} ms: range states seen ${[...seen].join(', ')}; move states ${[...transferStates].join(', ')}; lastTransfer ${lastTransferLagMs} ms after up; ` +
        `last transfer: ${showTransfer(lastTransfer)}`,
    );
    expect(lastTransfer, "n4's last transfer is in the view once it is up").toBeDefined();
    expect(lastTransfer!.ranges?.length ?? 0, 'the last transfer lists its ranges').toBeGreaterThan(1);
    expect(finalStates, 'every range of the finished move is done').toEqual({ done: lastTransfer!.ranges!.length });
    expect(lastTransfer!.done).toBe(true);
    for (const s of ['queued', 'streaming', 'catching-up', 'done']) expect([...seen], `range state ${s} seen`).toContain(s);
    expect([...seen], 'no range failed').not.toContain('failed');

    expect(status, '`ringkv status` ran while ranges were streaming and queued').toBeDefined();
    const run = await status!;
    expect(run.code, run.stderr).toBe(0);
    const lines = run.stdout.split('\n');
    const at = lines.findIndex((l) => /moving ranges/i.test(l));
    expect(at, `a "moving ranges" section in:\n${run.stdout}`).toBeGreaterThanOrEqual(0);
    const rows = lines.slice(at + 1).filter((l) => /\b(streaming|queued)\b/.test(l));
    console.log(`d. \`ringkv status\` mid-transfer, from its moving-ranges section:\n${lines.slice(at, at + 6).join('\n')}`);
    expect(rows.length, `a moving-ranges row streaming or queued in:\n${run.stdout}`).toBeGreaterThan(0);
    expect(rows.some((l) => l.includes('n4')), `a moving-ranges row names the target n4:\n${run.stdout}`).toBe(true);
  }, 90_000);
});
