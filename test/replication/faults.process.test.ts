// Replication under faults, with real processes on loopback (a master and 3 or 4 nodes of
// the compiled CLI, real TCP between them):
//   1. a replica SIGKILLed in the middle of 5,000 W=2 writes: every acknowledged write
//      reads back, and after the restart (same id, same LevelDB) all three replicas of
//      every acknowledged key hold its version (hints kept by the coordinators, plus
//      anti-entropy for what was written while the ring left the node out);
//   2. a replica SIGSTOPped (a partition the master does not notice: its lease is long):
//      writes keep succeeding through sloppy quorum, each copy meant for it held as a hint
//      by the fallback node past the preference list; after SIGCONT the hints are
//      replayed to it and then deleted;
//   3. a replica whose data dir is wiped and which restarts empty: anti-entropy alone (no
//      reads, no writes, no hints) brings back every key it replicates.
// What each node holds is read through GET /debug/local/:key, which shows the node's own
// record (or a hint it keeps) without any replication on the way, and GET /stats.
// Every wait is a bounded poll on a condition; every process is stopped by its handle.
import { rmSync } from 'node:fs';
import http from 'node:http';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { initHash, Ring } from '../../ring/index.js';
import type { RunningServer } from '../../bench/lib/servers.js';
import { pool, pollUntil, sleep, thawAll } from '../helpers/async.js';
import { request } from '../helpers/http.js';
import { McClient, setCommand } from '../helpers/mc.js';
import { debugLocal, holds, nodeStats, startTestCluster, stat, stopStarted, startTestNode, until, type DebugLocal } from '../helpers/cluster.js';

const vnodes = 16;
/**
 * Short failure-detection and repair timings for every node. The replica deadline stays at
 * a second: a dead peer refuses connections at once anyway, and with 300 ms a burst of
 * writes on a busy 2-core machine makes healthy peers miss it, so that the coordinators call
 * them down (writes then fail their quorum, hints land on other nodes).
 */
function nodeArgs(o: { antiEntropyMs?: number } = {}): string[] {
  return [
    '--heartbeat-ms', '100',
    '--replica-timeout-ms', '1000',
    '--anti-entropy-ms', String(o.antiEntropyMs ?? 500),
    '--forward-timeout-ms', '1000',
    '--unavailable-ms', '5000',
  ];
}

/** Every process started by the running test, so that afterEach stops each by its handle. */
const started: RunningServer[] = [];
const track = (s: RunningServer) => (started.push(s), s);
/** PIDs a test SIGSTOPped and has not continued yet. */
const frozen = new Set<number>();
/** Keep-alive connections for the thousands of /debug/local requests of a test. */
let agent: http.Agent;

beforeAll(async () => {
  await initHash();
});

afterEach(async () => {
  thawAll(frozen);
  agent?.destroy();
  // A restarted node shares the data dir that the handle of its first run removes when stopped.
  await stopStarted(started);
}, 60_000);

function newAgent(): http.Agent {
  agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
  return agent;
}

async function statSum(nodes: readonly RunningServer[], name: string): Promise<number> {
  let sum = 0;
  for (const n of nodes) sum += await stat(n, name);
  return sum;
}

/** The version(s) a record carries, for comparing replicas: clock entries in id order (a clock is a map). */
function versionOf(d: DebugLocal): string {
  return JSON.stringify([d, ...d.siblings].map((v) => [Object.entries(v.version.clock).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)), v.version.ts, v.tombstone]));
}

/** Writes keys[i] = values[i] for every i, pipelined on one connection; returns the replies. */
async function setAll(port: number, keys: readonly string[], values: readonly string[]): Promise<string[]> {
  const c = await McClient.connect(port);
  try {
    const replies: string[] = [];
    for (let i = 0; i < keys.length; i += 100) {
      const n = Math.min(100, keys.length - i);
      await c.write(Buffer.concat(keys.slice(i, i + n).map((k, j) => setCommand(k, values[i + j]!))));
      for (let j = 0; j < n; j++) replies.push(await c.line(20_000));
    }
    return replies;
  } finally {
    c.close();
  }
}

describe('replication under faults (processes)', () => {
  it('SIGKILL one replica during 5,000 W=2 writes: every acknowledged write reads back; after the restart all 3 replicas converge', async () => {
    const ids = ['n1', 'n2', 'n3'];
    const renewMs = 500;
    const args = nodeArgs();
    const { master, nodes } = await startTestCluster({ ids, leaseMs: 3000, renewMs, vnodes, storage: 'level', nodeArgs: args }, track);
    const victim = nodes[2]!;
    const survivors = nodes.slice(0, 2);
    newAgent();

    const total = 5000;
    const killAt = 1500;
    const concurrency = 32;
    const tag = Date.now().toString(36);
    const keys = Array.from({ length: total }, (_, i) => `kill:${i}`);
    const values = keys.map((k) => `${k}=${tag}`);
    const outcome: Array<'acked' | string | undefined> = new Array(total);
    let next = 0;
    let killing: Promise<void> | undefined;
    const streamDeadline = Date.now() + 40_000;
    const t0 = Date.now();

    // 32 connections, half to each survivor, each with one write in flight.
    const worker = async (w: number): Promise<void> => {
      const port = survivors[w % survivors.length]!.port;
      let c = await McClient.connect(port);
      try {
        for (let i = next++; i < total && Date.now() < streamDeadline; i = next++) {
          if (i === killAt) killing = victim.kill();
          try {
            await c.write(setCommand(keys[i]!, values[i]!));
            const line = await c.line(15_000);
            outcome[i] = line === 'STORED' ? 'acked' : line;
          } catch (e) {
            // No reply in time or a closed connection: not acknowledged; start afresh.
            outcome[i] = `error: ${(e as Error).message.slice(0, 100)}`;
            c.close();
            c = await McClient.connect(port);
          }
        }
      } finally {
        c.close();
      }
    };
    await Promise.all(Array.from({ length: concurrency }, (_, w) => worker(w)));
    await killing;
    const streamMs = Date.now() - t0;
    expect(killing, 'the victim was killed during the stream').toBeDefined();

    const acked = keys.map((_, i) => i).filter((i) => outcome[i] === 'acked');
    const failed = keys.map((_, i) => i).filter((i) => outcome[i] !== 'acked');
    const ackedAfterKill = acked.filter((i) => i >= killAt).length;
    console.log(
      `kill stream: ${acked.length} of ${total} writes acknowledged (${ackedAfterKill} after the kill) in ${streamMs} ms; ` +
        `failed: ${failed.length}${failed.length ? ` e.g. ${failed.slice(0, 3).map((i) => `${keys[i]}: ${outcome[i]}`).join('; ')}` : ''}`,
    );
    // Two replicas of every key stay up and W = 2: every write was attempted, and at most a
    // few (no more than one per connection) may fail around the kill.
    expect(outcome.filter((o) => o === undefined).length, 'writes never attempted (stream deadline)').toBe(0);
    expect(failed.length, 'writes refused with two replicas up').toBeLessThanOrEqual(concurrency);

    // Every acknowledged write reads back through a survivor (R = 2 of the two left), by
    // HTTP GET: one key per request, coordinated for the dead owner by a replica. (Not a
    // memcached get: while the dead node still owns its ranges, the one-key fallback of a
    // get is forwarded as 'mc' to a stand-in replica, whose Router.serve refuses get
    // commands (commandKey names no key for them) until --unavailable-ms; the answer then
    // arrives cut to "SERVER_ERROR unavaila", without its CRLF.)
    const reads = await pool(acked, 16, async (i, j) => {
      const r = await request(survivors[j % 2]!.httpPort!, 'GET', `/kv/${encodeURIComponent(keys[i]!)}`, { agent });
      return r.status === 200 && r.body.toString('latin1') === values[i] ? undefined : `${keys[i]}: ${r.status} ${r.body.toString('latin1').slice(0, 100)}`;
    });
    const wrong = reads.filter((r) => r !== undefined);
    expect(wrong.slice(0, 5), `${wrong.length} acknowledged writes not read back`).toEqual([]);

    // The master drops the silent node from the ring (its lease lapses), so the keys written
    // from then on have no replica, and no hint, for it: the restart must be repaired.
    await until(master, (v) => v.members.some((m) => m.id === 'n3' && m.status === 'down'), 15_000);

    // What the survivors hold (acknowledged writes, and any failed one that landed somewhere).
    const target = Math.max(...(await Promise.all(survivors.map((s) => stat(s, 'curr_items')))));
    expect(target).toBeGreaterThanOrEqual(acked.length);

    const back = track(await startTestNode(master, 'n3', { renewMs, nodeArgs: args, storage: 'level', dataDir: victim.dataDir! }));
    const restartedAt = Date.now();
    const replicas = [...survivors, back];
    // The cheap signal first: the restarted node's item count reaches the survivors'.
    let count = 0;
    const countedMs = await pollUntil(
      30_000,
      async () => (count = await stat(back, 'curr_items')) >= target,
      () => `n3 holds ${count} items, the survivors ${target}`,
      50,
    );
    // Per key, the restarted node first (the one that lags), then the survivors; a key is
    // done once all three hold its value with the same version.
    let pending = acked;
    let lastMiss = '';
    const convergedMs = await pollUntil(
      30_000,
      async () => {
        const left = await pool(pending, 16, async (i) => {
          const mine = await debugLocal(back.httpPort!, keys[i]!, agent);
          if (!holds(mine, values[i]!)) {
            lastMiss = `${keys[i]} on n3: ${JSON.stringify(mine)}`;
            return i;
          }
          for (const s of survivors) {
            const theirs = await debugLocal(s.httpPort!, keys[i]!, agent);
            if (!holds(theirs, values[i]!) || versionOf(theirs!) !== versionOf(mine!)) {
              lastMiss = `${keys[i]}: n3 ${JSON.stringify(mine)} vs ${s.httpPort}: ${JSON.stringify(theirs)}`;
              return i;
            }
          }
          return -1;
        });
        pending = left.filter((i) => i >= 0);
        return pending.length === 0;
      },
      () => `${pending.length} of ${acked.length} acknowledged keys not on all 3 replicas; e.g. ${lastMiss}`,
      250,
    );
    console.log(
      `converged after ${countedMs} ms (n3's curr_items reached the survivors' ${target}); ` +
        `every acknowledged key verified on all ${replicas.length} replicas ${Date.now() - restartedAt} ms after the restart (the check itself took ${convergedMs} ms)`,
    );
    expect(pending).toEqual([]);
  }, 90_000);

  it('SIGSTOP one node: writes succeed through sloppy quorum with hints on the fallback; after SIGCONT the hints are replayed, then deleted', async () => {
    const ids = ['n1', 'n2', 'n3', 'n4'];
    // A long lease: the master keeps the frozen node in the ring for the whole test, so only
    // the nodes' own failure detectors see it gone. Anti-entropy is off (a long period), so
    // the frozen node's copies can come back only through hinted handoff.
    const { nodes } = await startTestCluster({ ids, leaseMs: 30_000, renewMs: 2000, vnodes, nodeArgs: nodeArgs({ antiEntropyMs: 600_000 }) }, track);
    const victimId = 'n2';
    const victim = nodes[ids.indexOf(victimId)]!;
    const others = nodes.filter((n) => n !== victim);
    const idOf = new Map(nodes.map((n, i) => [n, ids[i]!]));
    const byId = new Map(nodes.map((n, i) => [ids[i]!, n]));
    newAgent();
    // The ring the nodes compute: every member up, ids in order, the master's vnodes.
    const ring = Ring.build(ids.map((id) => ({ id })), { vnodes });

    process.kill(victim.pid, 'SIGSTOP');
    frozen.add(victim.pid);
    const stoppedAt = Date.now();

    const keys = Array.from({ length: 300 }, (_, i) => `stop:${i}`);
    const values = keys.map((k) => `${k}=${Date.now().toString(36)}`);
    // One connection to each other node, each writing its third of the keys in turn.
    const replies = new Array<string>(keys.length);
    await Promise.all(
      others.map(async (n, w) => {
        const c = await McClient.connect(n.port);
        try {
          for (let i = w; i < keys.length; i += others.length) {
            await c.write(setCommand(keys[i]!, values[i]!));
            replies[i] = await c.line(15_000);
          }
        } finally {
          c.close();
        }
      }),
    );
    const writeMs = Date.now() - stoppedAt;
    expect(replies.filter((r) => r !== 'STORED'), 'every write acknowledged with one replica frozen').toEqual([]);

    // Every key whose preference list names the frozen node has a hint for it on the
    // fallback (the first node past the list), with the written value; no other key has one.
    const hinted: Array<{ i: number; fallback: string }> = [];
    for (let i = 0; i < keys.length; i++) {
      const walk = ring.preferenceList(ring.position(keys[i]!), ids.length);
      if (walk.slice(0, 3).includes(victimId)) hinted.push({ i, fallback: walk[3]! });
    }
    expect(hinted.length).toBeGreaterThan(100);
    const seen = await pool(keys, 16, async (k) => Promise.all(others.map((n) => debugLocal(n.httpPort!, k, agent))));
    const hintedSet = new Set(hinted.map((h) => h.i));
    for (let i = 0; i < keys.length; i++) {
      const holders = others.filter((_, j) => seen[i]![j]?.hintFor === victimId).map((n) => idOf.get(n));
      const h = hinted.find((x) => x.i === i);
      if (!hintedSet.has(i)) {
        expect(holders, `${keys[i]} (not replicated on ${victimId}) has no hint for it`).toEqual([]);
        continue;
      }
      expect(holders, `${keys[i]}: the hint for ${victimId} is on the fallback`).toEqual([h!.fallback]);
      const d = seen[i]![others.indexOf(byId.get(h!.fallback)!)]!;
      expect(d.value, `${keys[i]}: the hint holds the written value`).toBe(values[i]);
      expect(d.tombstone).toBe(false);
    }
    const heldBefore = await Promise.all(others.map((n) => stat(n, 'hints_held')));
    expect(heldBefore.reduce((a, b) => a + b, 0), `hints_held on ${others.map((n) => idOf.get(n)).join(',')}: ${heldBefore}`).toBeGreaterThanOrEqual(hinted.length);
    for (const n of others) expect(String((await nodeStats(n.httpPort!)).peers_down), `${idOf.get(n)} sees ${victimId} down`).toContain(victimId);
    const frozenMs = Date.now() - stoppedAt;

    process.kill(victim.pid, 'SIGCONT');
    frozen.delete(victim.pid);
    const resumedAt = Date.now();

    // The hints reach the node, then go: none held anywhere, and the node has each value.
    let missing = hinted;
    let held: number[] = [];
    await pollUntil(
      20_000,
      async () => {
        held = await Promise.all(nodes.map((n) => stat(n, 'hints_held')));
        const left = await pool(missing, 16, async (h) => ((holds(await debugLocal(victim.httpPort!, keys[h.i]!, agent), values[h.i]!)) ? undefined : h));
        missing = left.filter((h): h is (typeof hinted)[number] => h !== undefined);
        return missing.length === 0 && held.every((x) => x === 0);
      },
      () => `hints_held per node ${held}; ${missing.length} hinted keys not on ${victimId}, e.g. ${missing.slice(0, 3).map((h) => keys[h.i]).join(', ')}`,
    );
    const handedOffMs = Date.now() - resumedAt;
    const replayed = await statSum(others, 'hints_replayed');
    console.log(
      `SIGSTOP: ${keys.length} writes in ${writeMs} ms, ${hinted.length} hinted (node frozen ${frozenMs} ms); ` +
        `hints replayed (${replayed}) and deleted ${handedOffMs} ms after SIGCONT`,
    );
    expect(replayed, 'hints_replayed on the others').toBeGreaterThanOrEqual(hinted.length);
    // Deleted on the fallbacks: they hold no record of their own for these keys, so nothing is left.
    const after = await pool(hinted, 16, async (h) => debugLocal(byId.get(h.fallback)!.httpPort!, keys[h.i]!, agent));
    expect(after.filter((d) => d !== undefined).slice(0, 3), 'hints left on the fallbacks').toEqual([]);
  }, 90_000);

  it("wipe one node's data dir and restart it empty: anti-entropy restores every key it replicates", async () => {
    const ids = ['n1', 'n2', 'n3'];
    const renewMs = 500;
    const { master, nodes } = await startTestCluster({ ids, leaseMs: 3000, renewMs, vnodes, storage: 'level', nodeArgs: nodeArgs() }, track);
    const [n1, n2, victim] = nodes as [RunningServer, RunningServer, RunningServer];
    newAgent();

    const keys = Array.from({ length: 2000 }, (_, i) => `wipe:${i}`);
    const values = keys.map((k) => `${k}=${Date.now().toString(36)}`);
    const replies = await setAll(n1.port, keys, values);
    expect(replies.filter((r) => r !== 'STORED')).toEqual([]);
    // N = 3 on 3 nodes: every node holds every key (the third copy lands after the reply).
    let items: number[] = [];
    await pollUntil(
      15_000,
      async () => (items = await Promise.all(nodes.map((n) => stat(n, 'curr_items')))).every((x) => x === keys.length),
      () => `curr_items per node ${items}, expected ${keys.length} each`,
    );

    const exchangedBefore = await statSum([n1, n2], 'anti_entropy_keys_exchanged');
    const repairsBefore = await statSum([n1, n2], 'read_repairs');
    const replayedBefore = await statSum([n1, n2], 'hints_replayed');

    await victim.kill();
    rmSync(victim.dataDir!, { recursive: true, force: true });
    const back = track(await startTestNode(master, 'n3', { renewMs, nodeArgs: nodeArgs(), storage: 'level', dataDir: victim.dataDir! }));
    const restartedAt = Date.now();
    // Empty but for what anti-entropy may already have brought in the moments since it joined.
    const itemsAtStart = await stat(back, 'curr_items');

    // No reads or writes anywhere from here on: only anti-entropy can restore the keys.
    let missing = keys.map((_, i) => i);
    let lastMiss = '';
    await pollUntil(
      30_000,
      async () => {
        if ((await stat(back, 'curr_items')) < keys.length) return false;
        const left = await pool(missing, 16, async (i) => {
          const d = await debugLocal(back.httpPort!, keys[i]!, agent);
          if (holds(d, values[i]!)) return -1;
          lastMiss = `${keys[i]}: ${JSON.stringify(d)}`;
          return i;
        });
        missing = left.filter((i) => i >= 0);
        return missing.length === 0;
      },
      () => `${missing.length} of ${keys.length} keys not restored on n3 (curr_items is checked first); e.g. ${lastMiss}`,
      250,
    );
    const restoredMs = Date.now() - restartedAt;

    // The work was anti-entropy's: at least one exchange per restored key (a pull by n3 or a
    // push by a peer), and no read repair or hint replay anywhere.
    let exchanged = 0;
    await pollUntil(
      10_000,
      async () => (exchanged = (await statSum([n1, n2, back], 'anti_entropy_keys_exchanged')) - exchangedBefore) >= keys.length,
      () => `anti_entropy_keys_exchanged grew by ${exchanged}, expected at least ${keys.length}`,
    );
    console.log(`anti-entropy restored ${keys.length} keys on the wiped node (${itemsAtStart} when it came up): converged after ${restoredMs} ms (${exchanged} keys exchanged)`);
    expect(await statSum([n1, n2], 'read_repairs')).toBe(repairsBefore);
    expect(await stat(back, 'read_repairs')).toBe(0);
    expect(await statSum([n1, n2, back], 'hints_replayed')).toBe(replayedBefore);
  }, 90_000);
});
