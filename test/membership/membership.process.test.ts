// Live membership with real processes on loopback (a master and 3 to 5 nodes of the
// compiled CLI, real TCP between them):
//   1. under continuous load from 4 TS clients (RingClient, which retries inside itself)
//      and 1 memcached client (on n1, which stays), reads and writes, the cluster grows
//      3 -> 5 (n4 joins, then n5) and shrinks 5 -> 3 (n5 leaves, then n4): no client sees
//      a failed request, every read returns a value written for its key, every key's last
//      acknowledged value ends up on exactly its 3 replicas of the final ring, and the
//      share of keys each joiner receives is within +-10% of what ring/ predicts;
//   2. a node that holds hints for a partitioned node is decommissioned: it hands the hints
//      on to a node that stays before it leaves; once the partition heals, every hinted
//      key reaches its target and no node holds a hint any more.
// What each node holds is read through GET /debug/local/:key (its own record, or a hint it
// keeps) and GET /stats; the cluster's state through the master's GET /cluster. Every wait
// is a bounded poll on a condition; every process is stopped by its handle.
//
// Knobs (environment): MEMBERSHIP_STEADY_MS, the load between two membership changes in
// test 1 (default 3000: ~25 s of load, ~30 s in all; 8000 gives a minute-long soak);
// MEMBERSHIP_STORAGE=level runs test 1 on LevelDB instead of memory.
import http from 'node:http';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { hash64, initHash, Ring } from '../../ring/index.js';
import type { RunningServer } from '../../bench/lib/servers.js';
import { RingClient } from '../../client/index.js';
import { pool, pollUntil, sleep } from '../helpers/async.js';
import { request } from '../helpers/http.js';
import { getParser, McClient, setCommand } from '../helpers/mc.js';
import { debugLocal, holds, setPartition, settled, stat, stopStarted, startTestCluster, startTestNode, until, view, type ClusterView, type DebugLocal } from '../helpers/cluster.js';

const vnodes = 32;
const N = 3;
const leaseMs = 3000;
const renewMs = 500;
/** Load between membership changes (test 1): 5 such pauses plus the moves make ~25 s of load. */
const steadyMs = Number(process.env.MEMBERSHIP_STEADY_MS ?? 3000);
/** Storage of every node of test 1 (memory: faster; level also works). */
const storage: 'memory' | 'level' = process.env.MEMBERSHIP_STORAGE === 'level' ? 'level' : 'memory';

/** Short failure-detection, repair and forwarding timings for every node. */
function nodeArgs(o: { antiEntropyMs?: number; debugFaults?: boolean; streamMbPerS?: number } = {}): string[] {
  return [
    '--heartbeat-ms', '100',
    '--replica-timeout-ms', '1000',
    '--anti-entropy-ms', String(o.antiEntropyMs ?? 1000),
    '--forward-timeout-ms', '2000',
    '--unavailable-ms', '8000',
    '--stream-mb-per-s', String(o.streamMbPerS ?? 64),
    ...(o.debugFaults ? ['--debug-faults'] : []),
  ];
}

/** Every process started by the running test, so that afterEach stops each by its handle. */
const started: RunningServer[] = [];
const track = (s: RunningServer) => (started.push(s), s);
/** Clients and connections the running test opened. */
const closers: Array<() => unknown> = [];
/** Keep-alive connections for the thousands of /debug/local requests of a test. */
let agent: http.Agent | undefined;

beforeAll(async () => {
  await initHash();
});

afterEach(async () => {
  for (const c of closers.splice(0)) {
    try {
      await c();
    } catch {
      // already closed
    }
  }
  agent?.destroy();
  agent = undefined;
  await stopStarted(started);
}, 60_000);

function newAgent(): http.Agent {
  agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
  return agent;
}

/** Resolves with the exit code once the process has exited (bounded). */
function exitOf(s: RunningServer, timeoutMs: number): Promise<number | null> {
  const p = s.proc;
  if (p.exitCode !== null || p.signalCode !== null) return Promise.resolve(p.exitCode);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${s.name} pid ${s.pid} did not exit within ${timeoutMs} ms`)), timeoutMs);
    p.once('exit', (code) => {
      clearTimeout(timer);
      resolve(code);
    });
  });
}

/** Everything a process writes to stdout from now on. */
function captureStdout(s: RunningServer): () => string {
  let text = '';
  s.proc.stdout?.on('data', (d: Buffer) => {
    if (text.length < 64 * 1024) text += d.toString('utf8');
  });
  return () => text;
}

const statusOf = (v: ClusterView, id: string) => v.members.find((m) => m.id === id)?.status;
const moving = (v: ClusterView) => v.leases.filter((l) => l.movingTo !== undefined).length;

// ---- test 1: the load -------------------------------------------------------------------

/** One key's history as its (only) writer sees it. Values are `<key>#<seq>`. */
interface KeyState {
  /** The highest seq whose write was acknowledged (0: none). */
  acked: number;
  /** The highest seq whose write was sent (acknowledged or not). */
  sent: number;
  /** Seqs sent but not acknowledged (failed: may or may not have happened). */
  unsure: Set<number>;
}

interface LoadStats {
  writes: number;
  reads: number;
  failures: string[];
  /** A read that returned something never written for its key, or nothing after an acknowledged write. */
  wrong: string[];
  /** A read that returned an older value than one acknowledged before the read started. */
  stale: string[];
  maxLatencyMs: number;
}

const newStats = (): LoadStats => ({ writes: 0, reads: 0, failures: [], wrong: [], stale: [], maxLatencyMs: 0 });

/** Padding that makes each record a few hundred bytes, so that a join's copy takes a while at 1 MiB/s. */
const padding = 'x'.repeat(240);
const valueOf = (key: string, seq: number) => `${key}#${seq}#${padding}`;

/** The seq a read returned for `key` (0: a miss), or undefined when the value is not valueOf(key, seq). */
function seqOf(key: string, value: string | undefined): number | undefined {
  if (value === undefined) return 0;
  const prefix = `${key}#`;
  if (!value.startsWith(prefix)) return undefined;
  const n = Number(value.slice(prefix.length, value.indexOf('#', prefix.length)));
  return Number.isSafeInteger(n) && n > 0 && value === valueOf(key, n) ? n : undefined;
}

/** Checks one read of `key` against its history: `ackedBefore` was acknowledged before the read began. */
function checkRead(s: LoadStats, key: string, st: KeyState, ackedBefore: number, value: string | undefined, phase: () => string): void {
  const seq = seqOf(key, value);
  // Written for this key: a seq sent by now (a miss only before the first acknowledged write).
  if (seq === undefined || seq > st.sent || (seq === 0 && (ackedBefore > 0 || st.acked > 0))) {
    s.wrong.push(`${phase()}: ${key} read ${JSON.stringify(value?.slice(0, 80))} (acked ${ackedBefore}, sent ${st.sent})`);
    return;
  }
  // Older than a write acknowledged before the read began (R + W > N should rule it out).
  if (seq < ackedBefore) s.stale.push(`${phase()}: ${key} read #${seq}, #${ackedBefore} was acknowledged before the read`);
}

describe('live membership (processes)', () => {
  it('grow 3 -> 5 and shrink 5 -> 3 under load from 4 TS clients and 1 memcached client: no failed request, every key on its N replicas, join shares as ring/ predicts', async () => {
    const t0 = Date.now();
    const args = nodeArgs();
    const { master, nodes } = await startTestCluster({ ids: ['n1', 'n2', 'n3'], leaseMs, renewMs, vnodes, storage, nodeArgs: args }, track);
    const byId = new Map<string, RunningServer>(nodes.map((n, i) => [`n${i + 1}`, n]));
    const n1 = byId.get('n1')!;
    newAgent();
    const timings: string[] = [`cluster of 3 up: ${Date.now() - t0} ms`];
    const mark = (what: string, since: number) => timings.push(`${what}: ${Date.now() - since} ms`);

    // 5 clients (4 TS, 1 memcached), each the only writer of its own keys.
    const clientsN = 5;
    const keysPerClient = 600;
    const tag = Date.now().toString(36);
    const keysOf = Array.from({ length: clientsN }, (_, c) => Array.from({ length: keysPerClient }, (_, i) => `m${tag}:c${c}:${i}`));
    const allKeys = keysOf.flat();
    const state = new Map<string, KeyState>(allKeys.map((k) => [k, { acked: 0, sent: 0, unsure: new Set<number>() }]));
    let phaseName = 'fill';
    const phaseStart = Date.now();
    const phase = () => `${phaseName} +${((Date.now() - phaseStart) / 1000).toFixed(1)}s`;

    const ts = await Promise.all(Array.from({ length: 4 }, () => RingClient.connect({ master: `127.0.0.1:${master.port}`, timeoutMs: 10_000 })));
    for (const c of ts) closers.push(() => c.close());

    /** One client's operations: set and get through a TS client or a memcached connection to n1. */
    type Ops = { set(key: string, value: string): Promise<void>; get(key: string): Promise<string | undefined> };
    const tsOps = (c: RingClient): Ops => ({
      set: (k, v) => c.set(k, v),
      get: async (k) => (await c.get(k))?.value.toString('latin1'),
    });
    let mc = await McClient.connect(n1.port);
    closers.push(() => mc.close());
    const mcOps: Ops = {
      // A reply that is not the expected one (SERVER_ERROR, a timeout, a closed connection)
      // throws: a failed request. The connection is then started afresh.
      async set(k, v) {
        try {
          await mc.write(setCommand(k, v));
          const line = await mc.line(20_000);
          if (line !== 'STORED') throw new Error(`set answered ${JSON.stringify(line)}`);
        } catch (e) {
          mc.close();
          mc = await McClient.connect(n1.port);
          throw e;
        }
      },
      async get(k) {
        try {
          await mc.write(`get ${k}\r\n`);
          const items = await mc.read(getParser, 20_000);
          return items[0]?.value.toString('latin1');
        } catch (e) {
          mc.close();
          mc = await McClient.connect(n1.port);
          throw e;
        }
      },
    };
    const ops: Ops[] = [...ts.map(tsOps), mcOps];
    const stats = ops.map(newStats);

    const write = async (c: number, key: string): Promise<void> => {
      const st = state.get(key)!;
      const seq = ++st.sent;
      const started = Date.now();
      try {
        await ops[c]!.set(key, valueOf(key, seq));
        st.acked = seq;
        st.unsure.clear();
      } catch (e) {
        st.unsure.add(seq);
        stats[c]!.failures.push(`${phase()}: set ${key}: ${(e as Error).message.slice(0, 200)}`);
      }
      stats[c]!.writes++;
      stats[c]!.maxLatencyMs = Math.max(stats[c]!.maxLatencyMs, Date.now() - started);
    };
    const read = async (c: number, key: string): Promise<void> => {
      const st = state.get(key)!;
      const ackedBefore = st.acked;
      const started = Date.now();
      try {
        checkRead(stats[c]!, key, st, ackedBefore, await ops[c]!.get(key), phase);
      } catch (e) {
        stats[c]!.failures.push(`${phase()}: get ${key}: ${(e as Error).message.slice(0, 200)}`);
      }
      stats[c]!.reads++;
      stats[c]!.maxLatencyMs = Math.max(stats[c]!.maxLatencyMs, Date.now() - started);
    };

    // Every key written once before any membership change, so that the key set is fixed and
    // each joiner's share can be compared with ring/'s prediction. The TS clients write
    // 8 at a time (each key by one of them only); the memcached client one at a time.
    const fillStart = Date.now();
    await Promise.all(ops.map((_, c) => pool(keysOf[c]!, c < 4 ? 8 : 1, (k) => write(c, k))));
    mark(`fill (${allKeys.length} keys)`, fillStart);

    // The load: per TS client 4 workers, per memcached client 1 (its one connection), each
    // working its own slice of the client's keys, one operation at a time (so a read never
    // races a write of its own key): 60% writes, 40% reads.
    let stop = false;
    const workersPer = (c: number) => (c < 4 ? 4 : 1);
    const loadStart = Date.now();
    const load = Promise.all(
      ops.flatMap((_, c) =>
        Array.from({ length: workersPer(c) }, async (_, w) => {
          const mine = keysOf[c]!.filter((_, i) => i % workersPer(c) === w);
          while (!stop) {
            const key = mine[Math.floor(Math.random() * mine.length)]!;
            if (Math.random() < 0.6) await write(c, key);
            else await read(c, key);
          }
        }),
      ),
    );
    const totals = () => stats.reduce((a, s) => ({ ops: a.ops + s.reads + s.writes, failures: a.failures + s.failures.length }), { ops: 0, failures: 0 });

    try {
      phaseName = 'steady (3 nodes)';
      await sleep(steadyMs);

      /**
       * Starts `id` (copying at 1 MiB/s, so that the copy overlaps the load for a second or
       * two), waits until it is up and no piece is moving; returns how many keys it holds
       * right after it became up, and how many ring/ says it must hold.
       */
      const join = async (id: string, members: string[]) => {
        phaseName = `join ${id}`;
        const since = Date.now();
        const node = track(await startTestNode(master, id, { renewMs, nodeArgs: nodeArgs({ streamMbPerS: 1 }), storage }));
        byId.set(id, node);
        let progress: { fraction: number; keys: number; done: boolean; ranges?: readonly unknown[] } | undefined;
        let joiningSeen = false;
        await until(
          master,
          (v) => {
            const m = v.members.find((x) => x.id === id) as (ClusterView['members'][number] & { transfer?: { fraction: number; keys: number; done: boolean } }) | undefined;
            if (m?.status === 'joining') joiningSeen = true;
            if (m?.transfer && !m.transfer.done) progress = m.transfer;
            return m?.status === 'up';
          },
          30_000,
        );
        const items = await stat(node, 'curr_items');
        const keysIn = await stat(node, 'stream_keys_in');
        mark(`join ${id}: up (copied in)`, since);
        await until(master, settled(members), 30_000);
        mark(`join ${id}: up and every piece settled`, since);
        const ring = Ring.build(members.map((m) => ({ id: m })), { vnodes });
        const predicted = allKeys.filter((k) => ring.preferenceList(hash64(Buffer.from(k, 'latin1')), N).includes(id)).length;
        return { id, items, predicted, keysIn, joiningSeen, progress };
      };
      const leaves: string[] = [];
      const leave = async (id: string, staying: string[]) => {
        phaseName = `leave ${id}`;
        const since = Date.now();
        const node = byId.get(id)!;
        const stdout = captureStdout(node);
        const r = await request(master.httpPort!, 'POST', `/cluster/members/${id}/leave`);
        expect(r.status, `POST leave ${id}: ${r.body.toString('utf8')}`).toBe(202);
        let progress: { ranges?: readonly unknown[] } | undefined;
        await until(
          master,
          (v) => {
            const m = v.members.find((x) => x.id === id) as (ClusterView['members'][number] & { transfer?: unknown }) | undefined;
            if (m?.transfer) progress = m.transfer;
            return m?.status === 'left';
          },
          30_000,
        );
        mark(`leave ${id}: left`, since);
        leaves.push(`leave ${id}: last progress while handing out: ${JSON.stringify(progress ? { ...progress, ranges: progress.ranges?.length } : progress)}`);
        const code = await exitOf(node, 30_000);
        mark(`leave ${id}: process exited`, since);
        expect(code, `${id} exits 0 once it has left; stderr: ${node.stderr().slice(-2000)}`).toBe(0);
        expect(stdout()).toContain(`ringkv node ${id} left the cluster`);
        await until(master, settled(staying), 30_000);
        mark(`leave ${id}: every piece settled`, since);
      };

      const j4 = await join('n4', ['n1', 'n2', 'n3', 'n4']);
      phaseName = 'steady (4 nodes)';
      await sleep(steadyMs);
      const j5 = await join('n5', ['n1', 'n2', 'n3', 'n4', 'n5']);
      phaseName = 'steady (5 nodes)';
      await sleep(steadyMs);
      await leave('n5', ['n1', 'n2', 'n3', 'n4']);
      phaseName = 'steady (4 nodes again)';
      await sleep(steadyMs);
      await leave('n4', ['n1', 'n2', 'n3']);
      phaseName = 'steady (3 nodes again)';
      await sleep(steadyMs);
      stop = true;
      await load;
      const loadMs = Date.now() - loadStart;
      mark('load', loadStart);

      // The numbers first, whatever the verdict.
      const t = totals();
      console.log(
        `membership under load: ${t.ops} operations in ${loadMs} ms (${Math.round((t.ops * 1000) / loadMs)}/s), ${t.failures} failed\n` +
          stats
            .map(
              (s, c) =>
                `  ${c < 4 ? `ts${c}` : 'mc(n1)'}: ${s.writes} writes, ${s.reads} reads, ${s.failures.length} failed, ${s.wrong.length} wrong, ${s.stale.length} stale, max latency ${s.maxLatencyMs} ms` +
                (c < 4 ? `, retries ${ts[c]!.counters.retries}, not-owner ${ts[c]!.counters.notOwner}` : ''),
            )
            .join('\n') +
          `\n  ` +
          [j4, j5]
            .map(
              (j) =>
                `join ${j.id}: holds ${j.items} of ${allKeys.length} keys (${((100 * j.items) / allKeys.length).toFixed(1)}%), ` +
                `ring/ predicts ${j.predicted} (${((100 * j.predicted) / allKeys.length).toFixed(1)}%): off by ${((100 * (j.items - j.predicted)) / j.predicted).toFixed(2)}%; ` +
                `stream_keys_in ${j.keysIn}; seen joining: ${j.joiningSeen}, last progress while copying: ${JSON.stringify(j.progress ? { ...j.progress, ranges: j.progress.ranges?.length } : j.progress)}`,
            )
            .join('\n  ') +
          `\n  ${leaves.join('\n  ')}` +
          `\n  timings: ${timings.join('; ')}`,
      );
      const failures = stats.flatMap((s) => s.failures);
      expect(failures.slice(0, 10), `${failures.length} failed requests`).toEqual([]);
      const wrong = stats.flatMap((s) => s.wrong);
      expect(wrong.slice(0, 10), `${wrong.length} reads of a value never written for the key`).toEqual([]);
      const stale = stats.flatMap((s) => s.stale);
      if (stale.length > 0) console.log(`stale reads (${stale.length}):\n  ${stale.slice(0, 20).join('\n  ')}`);
      for (const j of [j4, j5]) {
        expect(j.joiningSeen, `${j.id} was seen joining (copying) before it was up`).toBe(true);
        expect(Math.abs(j.items - j.predicted) / j.predicted, `${j.id} holds ${j.items} keys, ring/ predicts ${j.predicted}`).toBeLessThanOrEqual(0.1);
      }

      // Every key's last acknowledged value on exactly its N replicas of the final ring
      // (the third copy, and repairs, may land after the reply: a bounded poll).
      const final = ['n1', 'n2', 'n3'];
      const ring = Ring.build(final.map((id) => ({ id })), { vnodes });
      const verifyStart = Date.now();
      let pending = allKeys;
      let lastMiss = '';
      await pollUntil(
        20_000,
        async () => {
          const left = await pool(pending, 16, async (k) => {
            const st = state.get(k)!;
            const ok = (d: DebugLocal | undefined) => holds(d, valueOf(k, st.acked)) || [...st.unsure].some((s) => holds(d, valueOf(k, s)));
            for (const id of ring.preferenceList(hash64(Buffer.from(k, 'latin1')), N)) {
              const d = await debugLocal(byId.get(id)!.httpPort!, k, agent);
              if (!ok(d)) {
                lastMiss = `${k} (acked #${st.acked}) on ${id}: ${JSON.stringify(d).slice(0, 600)}`;
                return k;
              }
            }
            return undefined;
          });
          pending = left.filter((k): k is string => k !== undefined);
          return pending.length === 0;
        },
        () => `${pending.length} of ${allKeys.length} keys not on all ${N} replicas with their last acknowledged value; e.g. ${lastMiss}`,
        500,
      );
      mark('verify', verifyStart);
      const items = await Promise.all(final.map((id) => stat(byId.get(id)!, 'curr_items')));
      expect(items, `curr_items of ${final}: every key, nothing else`).toEqual(final.map(() => allKeys.length));
      console.log(`verified every key on its ${N} replicas; total ${Date.now() - t0} ms; ${timings.slice(-1)[0]}`);
    } finally {
      stop = true;
      await load.catch(() => {});
    }
  }, 180_000);
  it('decommission of a node that holds hints for a partitioned node hands those hints on first; after the heal every hinted key reaches its target', async () => {
    const t0 = Date.now();
    const ids = ['n1', 'n2', 'n3', 'n4'];
    // Anti-entropy is off (a long period): once the partition heals, the partitioned node can
    // get its copies back only through the hints. The master keeps it in the ring all along
    // (its link to the master is not partitioned).
    const { master, nodes } = await startTestCluster({ ids, leaseMs, renewMs, vnodes, storage: 'memory', nodeArgs: nodeArgs({ antiEntropyMs: 600_000, debugFaults: true }) }, track);
    const byId = new Map(ids.map((id, i) => [id, nodes[i]!]));
    const [n1, n2, n3, n4] = nodes as [RunningServer, RunningServer, RunningServer, RunningServer];
    const X = 'n4'; // partitioned away
    const Y = 'n3'; // holds hints for X, then leaves
    newAgent();
    const timings: string[] = [`cluster of 4 up: ${Date.now() - t0} ms`];
    const mark = (what: string, since: number) => timings.push(`${what}: ${Date.now() - since} ms`);

    const partition = setPartition;
    let healed = false;
    const heal = async () => {
      if (healed) return;
      healed = true;
      for (const n of nodes) if (n.proc.exitCode === null && n.proc.signalCode === null) await partition(n, []);
    };

    try {
      await partition(n4, ['n1', 'n2', 'n3']);
      for (const n of [n1, n2, n3]) await partition(n, [X]);
      const partitionedAt = Date.now();

      // Keys of two kinds, by the ring the nodes compute (4 members, the master's vnodes):
      //   A: replicas n1, n2, X, owner not X: each write's copy for X goes to Y (the one
      //      node past the list) as a hint;
      //   B: replicas n1, n2, Y: Y holds the record itself, and when Y leaves, X is the
      //      key's new replica, which Y cannot reach: Y keeps the copy as a hint too.
      const ring4 = Ring.build(ids.map((id) => ({ id })), { vnodes });
      const tag = Date.now().toString(36);
      const A: string[] = [];
      const B: string[] = [];
      // C: more A-kind keys, written while Y leaves: copies for X that reach Y during its
      // leave must not die with it (Y refuses new hints once leaving; what it kept goes on).
      const C: string[] = [];
      for (let i = 0; A.length < 150 || B.length < 150 || C.length < 5000; i++) {
        const k = `h${tag}:${i}`;
        const pref = ring4.preferenceList(hash64(Buffer.from(k, 'latin1')), N);
        const set = [...pref].sort().join(',');
        if (set === 'n1,n2,n4' && pref[0] !== X && A.length < 150) A.push(k);
        else if (set === 'n1,n2,n4' && pref[0] !== X && C.length < 5000) C.push(k);
        else if (set === 'n1,n2,n3' && B.length < 150) B.push(k);
      }
      const keys = [...A, ...B];
      const valueFor = (k: string) => `${k}=${tag}`;
      const c = await McClient.connect(n1.port);
      closers.push(() => c.close());
      const replies: string[] = [];
      for (let i = 0; i < keys.length; i += 50) {
        const batch = keys.slice(i, i + 50);
        await c.write(Buffer.concat(batch.map((k) => setCommand(k, valueFor(k)))));
        for (let j = 0; j < batch.length; j++) replies.push(await c.line(20_000));
      }
      expect(replies.filter((r) => r !== 'STORED'), 'every write acknowledged with X partitioned').toEqual([]);
      mark(`${keys.length} writes with ${X} partitioned`, partitionedAt);

      // Y holds a hint for X of every A key (and no record of it); X holds nothing of either kind.
      let heldY = 0;
      await pollUntil(
        10_000,
        async () => (heldY = await stat(n3, 'hints_held')) >= A.length,
        () => `${Y} holds ${heldY} hints, expected ${A.length}`,
      );
      const onY = await pool(A, 16, (k) => debugLocal(n3.httpPort!, k, agent));
      const notHinted = A.filter((k, i) => !(onY[i]?.hintFor === X && onY[i]?.value === valueFor(k)));
      expect(notHinted.slice(0, 5), `A keys without a hint for ${X} on ${Y}`).toEqual([]);
      const onX = await pool(keys, 16, (k) => debugLocal(n4.httpPort!, k, agent));
      expect(onX.filter((d) => d !== undefined).length, `${X} holds none of the keys written while it was partitioned`).toBe(0);
      const hintsBefore = { n1: await stat(n1, 'hints_held'), n2: await stat(n2, 'hints_held') };
      console.log(`before the leave: ${Y} holds ${heldY} hints; n1 ${hintsBefore.n1}, n2 ${hintsBefore.n2}`);

      // Decommission Y while X is still unreachable, with writers of C keys running.
      let stopWriters = false;
      let next = 0;
      const ackedC: string[] = [];
      const writers = Promise.all(
        [n1, n2, n1, n2, n1, n2, n1, n2].map(async (n) => {
          const w = await McClient.connect(n.port);
          closers.push(() => w.close());
          while (!stopWriters && next < C.length) {
            const k = C[next++]!;
            await w.write(setCommand(k, valueFor(k)));
            if ((await w.line(20_000)) === 'STORED') ackedC.push(k);
          }
        }),
      );
      const leaveAt = Date.now();
      const stdout = captureStdout(n3);
      const r = await request(master.httpPort!, 'POST', `/cluster/members/${Y}/leave`);
      expect(r.status, `POST leave ${Y}: ${r.body.toString('utf8')}`).toBe(202);
      await until(master, (v) => statusOf(v, Y) === 'left', 30_000);
      mark(`${Y} left`, leaveAt);
      const code = await exitOf(n3, 30_000);
      mark(`${Y} exited`, leaveAt);
      stopWriters = true;
      await writers;
      console.log(`${ackedC.length} C keys acknowledged while ${Y} left`);
      expect(code, `${Y} exits 0 once it has left; stderr: ${n3.stderr().slice(-2000)}`).toBe(0);
      expect(stdout()).toContain(`ringkv node ${Y} left the cluster`);
      expect(n3.stderr(), `${Y}'s stderr`).not.toMatch(/leave failed/);

      // Every hint for X now lives on a node that stays: the A keys' hints, and the B keys'
      // copies Y could not push to X. X still has none of them.
      const held = { n1: await stat(n1, 'hints_held'), n2: await stat(n2, 'hints_held'), n4: await stat(n4, 'hints_held') };
      const stored = (await stat(n1, 'hints_stored')) + (await stat(n2, 'hints_stored'));
      console.log(`after ${Y} left (${X} still partitioned): hints_held n1 ${held.n1}, n2 ${held.n2}, n4 ${held.n4}; hints_stored on n1+n2 ${stored}`);
      expect(held.n1 + held.n2 - hintsBefore.n1 - hintsBefore.n2, `hints for ${X} handed on to n1/n2 (A: ${A.length}, B: ${B.length})`).toBeGreaterThanOrEqual(keys.length);
      const onXBeforeHeal = await pool(keys, 16, (k) => debugLocal(n4.httpPort!, k, agent));
      expect(onXBeforeHeal.filter((d) => d !== undefined).length, `${X} still holds none of the keys before the heal`).toBe(0);
      await until(master, settled(['n1', 'n2', 'n4']), 30_000);

      // Heal: the hints replay to X, then go.
      await heal();
      const healedAt = Date.now();
      const live = [n1, n2, n4];
      let missing = [...keys, ...ackedC];
      let hints: number[] = [];
      await pollUntil(
        30_000,
        async () => {
          hints = await Promise.all(live.map((n) => stat(n, 'hints_held')));
          const left = await pool(missing, 16, async (k) => (holds(await debugLocal(n4.httpPort!, k, agent), valueFor(k)) ? undefined : k));
          missing = left.filter((k): k is string => k !== undefined);
          return missing.length === 0 && hints.every((h) => h === 0);
        },
        () => `hints_held n1,n2,n4: ${hints}; ${missing.length} of ${keys.length + ackedC.length} hinted keys not on ${X}, e.g. ${missing.slice(0, 3).join(', ')}`,
      );
      mark(`every hinted key on ${X}, no hint held`, healedAt);
      const replayed = (await stat(n1, 'hints_replayed')) + (await stat(n2, 'hints_replayed'));
      expect(replayed, 'hints replayed to X by n1/n2').toBeGreaterThanOrEqual(keys.length);
      // Every key also on its other replicas (n1, n2) of the final ring.
      const final = Ring.build(['n1', 'n2', 'n4'].map((id) => ({ id })), { vnodes });
      const wrong = await pool(keys, 16, async (k) => {
        for (const id of final.preferenceList(hash64(Buffer.from(k, 'latin1')), N)) {
          if (!holds(await debugLocal(byId.get(id)!.httpPort!, k, agent), valueFor(k))) return `${k} on ${id}`;
        }
        return undefined;
      });
      expect(wrong.filter((w) => w !== undefined).slice(0, 5)).toEqual([]);
      console.log(`hinted keys: A ${A.length} (hints on ${Y}), B ${B.length} (records on ${Y}); hints_replayed on n1+n2 ${replayed}; timings: ${timings.join('; ')}; total ${Date.now() - t0} ms`);
    } finally {
      await heal().catch(() => {});
    }
  }, 120_000);
});
