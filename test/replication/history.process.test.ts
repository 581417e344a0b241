// The history test: concurrent clients against a real cluster while a seeded schedule of
// faults runs, every operation recorded (test/history/recorder.ts) and the whole history
// judged at the end (test/history/checker.ts): no acknowledged write lost, no read of a
// value never written, every key's replicas identical after healing.
//
// The cluster: a master and four LevelDB nodes (N = 3, R = 2, W = 2; so every key has a
// fallback node for hints), short replication timings and --debug-faults. The load: two
// RingClients and two memcached clients (each on its own node, moving on when it dies),
// each doing sets of unique values, gets and deletes over 20 keys. The faults, one node at
// a time, one every 0.8-1.6 s: SIGKILL then restart on the same data dir; SIGSTOP for
// ~1 s then SIGCONT; or a symmetric partition of one node for ~1 s. The seed comes from
// RINGKV_SEED (default below) and is printed: the same seed replays the same choices of
// faults, victims, keys and operations (timing still varies).
//
// How outcomes are recorded (the recorder's ok / fail / info):
// - a read that answered is ok with its value; a read that failed is fail (ignored);
// - a set or delete that was acknowledged (STORED, DELETED, no error) is ok;
// - a set or delete that failed after its bytes may have left is info (may have happened,
//   now or later): SERVER_ERROR, Timeout, Unavailable{sent: true}, a lost connection; a
//   RingClient Unavailable{sent: false} means no try reached any node: fail;
// - a delete answered NOT_FOUND is info: it changed nothing when the key was absent, but
//   it may be the retry of a try that did delete (a node retries plain commands).
//
// A write queued at a paused owner must not be applied when it resumes: its sender gave
// up and retried it through another coordinator, and later writes followed. Nodes refuse
// a forwarded request that arrives after its deadline (server/cluster/router.ts); this
// test found the bug (seeds 11 and 16) before that rule existed.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hash64, initHash, Ring } from '../../ring/index.js';
import type { RunningServer } from '../../bench/lib/servers.js';
import { BadRequest, InvalidKey, RingClient, Unavailable, ValueTooLarge } from '../../client/index.js';
import { McClient, getParser } from '../helpers/mc.js';
import { debugFaultNodeArgs, debugLocal, nodeStats, setPartition, settled, startTestCluster, startTestNode, until, type ClusterView, type DebugLocal } from '../helpers/cluster.js';
import { HistoryRecorder, type Call, type Key, type Value } from '../history/recorder.js';
import { checkHistory, formatProblems, type ReplicaStates } from '../history/checker.js';

const DEFAULT_SEED = 20_240_601;
const seed = process.env.RINGKV_SEED !== undefined && process.env.RINGKV_SEED !== '' ? Number(process.env.RINGKV_SEED) : DEFAULT_SEED;
if (!Number.isSafeInteger(seed)) throw new Error(`RINGKV_SEED must be an integer, got ${JSON.stringify(process.env.RINGKV_SEED)}`);

const leaseMs = 2500;
const renewMs = 250;
const vnodes = 16;
const ids = ['n1', 'n2', 'n3', 'n4'];
const nodeArgs = [...debugFaultNodeArgs];
/** How long the faults run (the clients stop with them). */
const loadMs = 12_000;
/** Upper bound on operations per client. */
const opsMaxPerClient = 5_000;
const keys = Array.from({ length: 20 }, (_, i) => `hk:${i}`);
const convergeTimeoutMs = 30_000;

/** mulberry32: a small seeded PRNG, uniform in [0, 1). */
function prng(s: number): () => number {
  let a = s >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A node's own record of key (GET /debug/local); undefined when it has none (a hint it keeps for another is not its own). */
async function ownRecord(node: RunningServer, key: string): Promise<DebugLocal | undefined> {
  const rec = await debugLocal(node.httpPort!, key);
  return rec?.hintFor === null ? rec : undefined;
}

/** The versions a record holds as comparable text; [] when absent or only tombstones (a delete). */
function versionSet(r: DebugLocal | undefined): string[] {
  if (!r) return [];
  const all = [r, ...r.siblings];
  if (all.every((v) => v.tombstone)) return [];
  return all
    .map((v) => {
      const clock = Object.entries(v.version.clock).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
      return JSON.stringify([clock, v.version.ts, v.tombstone, v.value]);
    })
    .sort();
}

/** What a plain read of this record returns: the top-level (LWW) version, unless a tombstone. */
function plainValue(r: DebugLocal | undefined): Value | undefined {
  return r === undefined || r.tombstone ? undefined : r.value;
}

const allUp = (v: ClusterView) => ids.every((id) => v.members.some((m) => m.id === id && m.status === 'up')) && settled(ids)(v);

describe(`history under faults (seed ${seed})`, () => {
  let master: RunningServer;
  /** The running process of each node id (replaced on restart). */
  const live = new Map<string, RunningServer>();
  const started: RunningServer[] = [];
  const track = (s: RunningServer) => (started.push(s), s);
  const paused = new Set<number>();
  const ringClients: RingClient[] = [];
  const mcClients = new Set<McClient>();

  beforeAll(async () => {
    await initHash();
    const c = await startTestCluster({ ids, leaseMs, renewMs, vnodes, nodeArgs, storage: 'level' }, track);
    master = c.master;
    ids.forEach((id, i) => live.set(id, c.nodes[i]!));
  }, 60_000);

  afterAll(async () => {
    for (const pid of paused) {
      try {
        process.kill(pid, 'SIGCONT');
      } catch {
        // already gone
      }
    }
    for (const c of mcClients) c.close();
    await Promise.all(ringClients.map((k) => k.close()));
    // Running nodes first; then the handles of killed ones, whose stop() removes the data
    // dir they shared with their restarted successor; the master last.
    const running = [...live.values()];
    await Promise.all(running.map((s) => s.stop()));
    await Promise.all(started.filter((s) => s.name === 'ringkv' && !running.includes(s)).map((s) => s.stop()));
    for (const s of started.filter((s) => s.name !== 'ringkv')) await s.stop();
  });

  it('loses no acknowledged write, reads no value never written, and converges after healing', async () => {
    console.log(`history test seed ${seed} (replay: RINGKV_SEED=${seed} npx vitest run test/replication/history.process.test.ts)`);
    const t0 = Date.now();
    const at = () => `${((Date.now() - t0) / 1000).toFixed(1)}s`;
    const rec = new HistoryRecorder();
    let stopLoad = false;

    // ---- the clients ----------------------------------------------------------------

    const choose = (rnd: () => number, name: string, seq: number): Call => {
      const key = keys[Math.floor(rnd() * keys.length)]!;
      const x = rnd();
      if (x < 0.5) return { kind: 'write', key, value: `${name}-${seq}` };
      if (x < 0.85) return { kind: 'read', key };
      return { kind: 'delete', key };
    };

    const ringClientLoop = async (name: string, rnd: () => number): Promise<void> => {
      const kv = await RingClient.connect({ master: `127.0.0.1:${master.port}`, timeoutMs: 2000, refreshMs: 250 });
      ringClients.push(kv);
      for (let seq = 0; seq < opsMaxPerClient && !stopLoad; seq++) {
        const call = choose(rnd, name, seq);
        const op = rec.invoke(name, call);
        try {
          if (call.kind === 'write') {
            await kv.set(call.key, call.value);
            rec.ok(op);
          } else if (call.kind === 'delete') {
            if (await kv.delete(call.key)) rec.ok(op);
            else rec.info(op, 'NOT_FOUND');
          } else {
            const item = await kv.get(call.key);
            rec.ok(op, item?.value.toString('latin1'));
          }
        } catch (e) {
          const why = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
          // Unavailable{sent: false}: no try of it reached any node (the client keeps track
          // across its retries), so it certainly did not happen.
          const neverSent = e instanceof Unavailable && !e.sent;
          if (call.kind === 'read' || neverSent || e instanceof InvalidKey || e instanceof ValueTooLarge || e instanceof BadRequest) rec.fail(op, why);
          else rec.info(op, why);
          await sleep(20);
        }
      }
    };

    const mcClientLoop = async (name: string, rnd: () => number, home: number): Promise<void> => {
      let conn: McClient | undefined;
      let slot = home;
      for (let seq = 0; seq < opsMaxPerClient && !stopLoad; ) {
        if (conn === undefined) {
          const node = live.get(ids[slot % ids.length]!)!;
          try {
            conn = await McClient.connect(node.port, '127.0.0.1', 1000);
            mcClients.add(conn);
          } catch {
            slot++;
            await sleep(50);
            continue;
          }
        }
        const c = conn;
        const call = choose(rnd, name, seq++);
        const op = rec.invoke(name, call);
        try {
          if (call.kind === 'write') {
            const line = await c.set(call.key, call.value);
            if (line === 'STORED') rec.ok(op);
            else rec.info(op, line);
          } else if (call.kind === 'delete') {
            const line = await c.command(`delete ${call.key}`);
            if (line === 'DELETED') rec.ok(op);
            else rec.info(op, line);
          } else {
            await c.write(`get ${call.key}\r\n`);
            const items = await c.read(getParser);
            rec.ok(op, items[0]?.value.toString('latin1'));
          }
        } catch (e) {
          const why = e instanceof Error ? e.message : String(e);
          if (call.kind === 'read') rec.fail(op, why);
          else rec.info(op, why);
          // The connection may hold half a reply: start over, on the next node.
          c.close();
          mcClients.delete(c);
          conn = undefined;
          slot++;
          await sleep(20);
        }
      }
      if (conn) {
        conn.close();
        mcClients.delete(conn);
      }
    };

    const load = Promise.all([
      ringClientLoop('c0', prng(seed * 7 + 1)),
      ringClientLoop('c1', prng(seed * 7 + 2)),
      mcClientLoop('c2', prng(seed * 7 + 3), 0),
      mcClientLoop('c3', prng(seed * 7 + 4), 1),
    ]);

    // ---- the faults -------------------------------------------------------------------

    const rnd = prng(seed);
    const faults: string[] = [];
    const endAt = Date.now() + loadMs;
    try {
      while (Date.now() < endAt) {
        await sleep(800 + Math.floor(rnd() * 800));
        const id = ids[Math.floor(rnd() * ids.length)]!;
        const kind = (['kill', 'stop', 'partition'] as const)[Math.floor(rnd() * 3)]!;
        const pauseMs = 700 + Math.floor(rnd() * 600);
        const node = live.get(id)!;
        faults.push(`${at()} ${kind} ${id}`);
        if (kind === 'kill') {
          await node.kill();
          await sleep(pauseMs - 400);
          const again = track(await startTestNode(master, id, { renewMs, nodeArgs, storage: 'level', dataDir: node.dataDir! }));
          live.set(id, again);
        } else if (kind === 'stop') {
          process.kill(node.pid, 'SIGSTOP');
          paused.add(node.pid);
          await sleep(pauseMs);
          process.kill(node.pid, 'SIGCONT');
          paused.delete(node.pid);
        } else {
          const others = ids.filter((o) => o !== id);
          await setPartition(node, others);
          for (const o of others) await setPartition(live.get(o)!, [id]);
          await sleep(pauseMs);
          for (const n of live.values()) await setPartition(n, []);
        }
        // One fault at a time: the next waits until the master sees every node up again.
        await until(master, allUp, 15_000);
      }
    } finally {
      stopLoad = true;
      await load;
    }
    const history = rec.history();
    const count = (pred: (o: (typeof history)[number]) => boolean) => history.filter(pred).length;
    console.log(`faults (${faults.length}): ${faults.join(', ')}`);
    console.log(
      `load done at ${at()}: ${history.length} ops; writes ${count((o) => o.call.kind === 'write')} (ok ${count((o) => o.call.kind === 'write' && o.completion.type === 'ok')}, info ${count((o) => o.call.kind === 'write' && o.completion.type === 'info')}), ` +
        `reads ${count((o) => o.call.kind === 'read')} (ok ${count((o) => o.call.kind === 'read' && o.completion.type === 'ok')}, fail ${count((o) => o.call.kind === 'read' && o.completion.type === 'fail')}), ` +
        `deletes ${count((o) => o.call.kind === 'delete')} (ok ${count((o) => o.call.kind === 'delete' && o.completion.type === 'ok')}, info ${count((o) => o.call.kind === 'delete' && o.completion.type === 'info')})`,
    );
    const reasons = new Map<string, number>();
    for (const o of history) {
      const c = o.completion;
      if (c.type !== 'info' && c.type !== 'fail') continue;
      const why = `${o.call.kind} ${c.type}: ${c.reason.replace(/\d+/g, 'N').slice(0, 70)}`;
      reasons.set(why, (reasons.get(why) ?? 0) + 1);
    }
    console.log(`not ok, by reason:\n${[...reasons].sort((a, b) => b[1] - a[1]).map(([r, n]) => `  ${n} x ${r}`).join('\n')}`);
    expect(faults.length).toBeGreaterThanOrEqual(4);
    expect(count((o) => o.call.kind === 'write' && o.completion.type === 'ok')).toBeGreaterThan(100);

    // ---- healing and convergence -------------------------------------------------------

    for (const n of live.values()) await setPartition(n, []);
    await until(master, allUp, 15_000);
    const ring = Ring.build(ids.map((id) => ({ id })), { vnodes });
    const lists = new Map(keys.map((k) => [k, ring.preferenceList(hash64(Buffer.from(k, 'latin1')), 3)]));
    const healStart = Date.now();
    let last = '';
    let records = new Map<Key, Array<DebugLocal | undefined>>();
    for (;;) {
      records = new Map(await Promise.all(keys.map(async (k) => [k, await Promise.all(lists.get(k)!.map((id) => ownRecord(live.get(id)!, k)))] as const)));
      const diverging = keys.filter((k) => {
        const sets = records.get(k)!.map((r) => JSON.stringify(versionSet(r)));
        return sets.some((s) => s !== sets[0]);
      });
      const hintsHeld = await Promise.all(ids.map(async (id) => Number((await nodeStats(live.get(id)!.httpPort!)).hints_held)));
      if (diverging.length === 0 && hintsHeld.every((h) => h === 0)) break;
      last = `keys diverging: ${diverging.map((k) => `${k} ${JSON.stringify(records.get(k)!.map(versionSet))}`).join('; ').slice(0, 3000)}; hints held: ${hintsHeld.join(',')}`;
      if (Date.now() - healStart > convergeTimeoutMs) break;
      await sleep(200);
    }
    const convergeMs = Date.now() - healStart;
    console.log(`converged in ${convergeMs} ms${convergeMs > convergeTimeoutMs ? ` (NOT: ${last})` : ''}`);

    // The replicas' states, by place in each key's preference list (the checker compares
    // replicas key by key, and different keys live on different nodes).
    const states = new Map<string, Map<Key, Value | undefined>>(['r0', 'r1', 'r2'].map((r) => [r, new Map()]));
    for (const k of keys) records.get(k)!.forEach((r, i) => states.get(`r${i}`)!.set(k, plainValue(r)));
    const replicaStates: ReplicaStates = states;

    // Final reads through the client: what a reader sees after healing.
    const reader = await RingClient.connect({ master: `127.0.0.1:${master.port}`, timeoutMs: 5000 });
    ringClients.push(reader);
    const finalReads = new Map<Key, Value | undefined>();
    for (const k of keys) finalReads.set(k, (await reader.get(k))?.value.toString('latin1'));
    const siblingKeys = keys.filter((k) => (records.get(k)![0]?.siblings.length ?? 0) > 0);
    console.log(`final: ${keys.filter((k) => finalReads.get(k) !== undefined).length} keys present, ${siblingKeys.length} with siblings${siblingKeys.length ? ` (${siblingKeys.join(', ')})` : ''}`);

    const result = checkHistory(history, finalReads, { replicaStates });
    const warnings = result.problems.filter((p) => p.severity === 'warning').length;
    console.log(`history check: ${result.ok ? 'ok' : 'FAILED'}, ${warnings} warning(s) (stale reads, allowed)`);
    if (!result.ok) {
      console.log(formatProblems(result.problems.filter((p) => p.severity === 'error')));
      // What the replicas hold for the keys in question, versions in full.
      for (const k of new Set(result.problems.filter((p) => p.severity === 'error').map((p) => p.key))) {
        const rs = records.get(k) ?? [];
        console.log(`${k} on [${lists.get(k)}]: ${rs.map((r) => (r ? JSON.stringify([r, ...r.siblings].map((v) => ({ value: v.value, tombstone: v.tombstone, clock: v.version.clock, ts: v.version.ts }))) : 'absent')).join(' | ')}`);
      }
    }
    expect(result.ok, formatProblems(result.problems)).toBe(true);
    expect(convergeMs, last).toBeLessThanOrEqual(convergeTimeoutMs);
    // A reader sees what the replicas hold.
    for (const k of keys) expect(finalReads.get(k), k).toBe(plainValue(records.get(k)![0]));
  }, 120_000);
});
