// The Replicator (server/replication/replicator.ts) on N simulated nodes in one process.
// Every node is built from real parts: a LocalKv over a MemoryStore, a HintStore over a
// memory-level sublevel, and a FailureDetector whose timer is never started. The only fake
// is the RPC: `call` passes the body and the reply through msgpack (as the wire would) and
// dispatches to the target's Replicator.receive (rep.put) or serveGet (rep.get); per target
// it can answer, fail at once (UNAVAILABLE / TIMEOUT), or hang until the test releases it.
// Covered: N copies on the preference list and nowhere else (the ring of members the
// master calls up); acknowledgement after exactly W durable copies; QuorumError with hints
// kept by the coordinator; sloppy quorum (a hint on the next node counts toward W) and hint
// replay; quorum reads that merge a newer version and read-repair a stale replica; siblings
// from concurrent writes and the write that supersedes them; per-request quorums
// (withQuorum, checkQuorum).
import { decode, encode } from '@msgpack/msgpack';
import { MemoryLevel } from 'memory-level';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { initHash } from '../../ring/index.js';
import { ManualClock } from '../../server/clock.js';
import { LocalKv } from '../../server/kv/local-kv.js';
import type { WireMember } from '../../server/master/core.js';
import { FailureDetector } from '../../server/replication/failure-detector.js';
import { HintStore } from '../../server/replication/hints.js';
import { keyPosition } from '../../ring/index.js';
import { QuorumError, Replicator, versionTag, type ReplicationSettings } from '../../server/replication/replicator.js';
import { compareClocks, sameVersions } from '../../server/replication/versions.js';
import { MemoryStore } from '../../server/storage/memory-store.js';
import { decodeRecord, type StoredRecord } from '../../server/storage/record.js';

beforeAll(async () => {
  await initHash();
});

const T0 = 1_700_000_000_000;
const MB = 1024 * 1024;

/** How a node answers calls made to it. */
type Mode = 'up' | 'UNAVAILABLE' | 'TIMEOUT' | 'hang';

interface SimNode {
  readonly id: string;
  readonly kv: LocalKv;
  readonly hints: HintStore;
  readonly fd: FailureDetector;
  readonly rep: Replicator;
  readonly db: MemoryLevel<Buffer, Uint8Array>;
}

interface Held {
  readonly to: string;
  deliver(): void;
  fail(code: 'TIMEOUT' | 'UNAVAILABLE'): void;
}

function rpcError(code: string): Error {
  return Object.assign(new Error(`simulated ${code}`), { code });
}

const wire = <T>(x: unknown): T => decode(encode(x, { ignoreUndefined: true })) as T;

class Sim {
  readonly nodes = new Map<string, SimNode>();
  readonly members = new Map<string, WireMember>();
  readonly modes = new Map<string, Mode>();
  /** Calls made, in order: who called whom with what. */
  readonly log: Array<{ from: string; to: string; type: string }> = [];
  private readonly held: Held[] = [];
  private readonly inflight = new Set<Promise<unknown>>();
  readonly clock = new ManualClock(T0);
  private view = 0;

  constructor(public settings: ReplicationSettings) {}

  static async start(ids: readonly string[], s: Partial<ReplicationSettings> = {}): Promise<Sim> {
    const sim = new Sim({ n: 3, r: 2, w: 2, vnodes: 16, ...s });
    for (const id of ids) {
      sim.members.set(id, { id, addrs: { memcached: `${id}:11211`, http: `${id}:8080`, rpc: id }, status: 'up' });
    }
    for (const id of ids) sim.nodes.set(id, await sim.makeNode(id));
    sims.push(sim);
    return sim;
  }

  private async makeNode(id: string): Promise<SimNode> {
    const store = new MemoryStore({ memoryBytes: 64 * MB, clock: this.clock });
    const kv = new LocalKv({ nodeId: id, store, clock: this.clock, maxItemSize: MB, tombstoneGraceMs: 60_000 });
    await kv.open();
    const db = new MemoryLevel<Buffer, Uint8Array>({ keyEncoding: 'buffer', valueEncoding: 'view' });
    await db.open();
    const hints = new HintStore({
      db: db.sublevel<Buffer, Uint8Array>('hints', { keyEncoding: 'buffer', valueEncoding: 'view' }),
      clock: this.clock,
      maxHintBytes: 64 * MB,
      hintWindowMs: 3 * 3600_000,
    });
    await hints.open();
    const fd = new FailureDetector({ now: () => this.clock.now(), heartbeatMs: 1000, ping: async () => {} });
    const rep = new Replicator({
      selfId: id,
      kv,
      members: () => this.members,
      settings: () => this.settings,
      viewVersion: () => this.view,
      call: <T>(addr: string, type: string, body: unknown) => this.call<T>(id, addr, type, body),
      hints,
      fd,
      replicaTimeoutMs: 1000,
      hedgeMs: 20,
      hintBatch: 2,
    });
    kv.hooks = { replicate: (k, r, d) => rep.replicate(k, r, d) };
    return { id, kv, hints, fd, rep, db };
  }

  node(id: string): SimNode {
    const n = this.nodes.get(id);
    if (!n) throw new Error(`no node ${id}`);
    return n;
  }

  /** The key's preference list as the replicators compute it. */
  pl(key: string): string[] {
    return this.node([...this.nodes.keys()][0]!).rep.preferenceList(keyPosition(key));
  }

  /** The master's view changes: `id` is up or down for every node (a new view version). */
  setStatus(id: string, status: 'up' | 'down'): void {
    this.members.set(id, { ...this.members.get(id)!, status });
    this.view++;
  }

  setMode(id: string, mode: Mode): void {
    this.modes.set(id, mode);
  }

  /** Calls to `to` held by 'hang'. */
  heldFor(to: string): number {
    return this.held.filter((h) => h.to === to).length;
  }

  /** Lets the held calls to `to` through (they reach the target now) or fails them. */
  release(to: string, how: 'deliver' | 'TIMEOUT' | 'UNAVAILABLE'): number {
    const mine = this.held.filter((h) => h.to === to);
    this.held.splice(0, this.held.length, ...this.held.filter((h) => h.to !== to));
    for (const h of mine) (how === 'deliver' ? h.deliver() : h.fail(how));
    return mine.length;
  }

  /** Runs until no call is in flight and the event loop has gone idle a few times (LevelDB, hints). */
  async settle(): Promise<void> {
    for (let idle = 0; idle < 5; ) {
      if (this.inflight.size > 0) {
        idle = 0;
        await Promise.allSettled([...this.inflight]);
      } else idle++;
      await new Promise<void>((r) => setImmediate(r));
    }
  }

  private call<T>(from: string, to: string, type: string, body: unknown): Promise<T> {
    this.log.push({ from, to, type });
    const bytes = encode(body, { ignoreUndefined: true });
    let tracked: Promise<unknown> | undefined;
    const p = new Promise<T>((resolve, reject) => {
      const deliver = () => {
        const run = this.dispatch(to, type, decode(bytes)).then((reply) => resolve(wire<T>(reply)), reject);
        this.track(run);
      };
      const mode = this.modes.get(to) ?? 'up';
      if (mode === 'UNAVAILABLE' || mode === 'TIMEOUT') reject(rpcError(mode));
      else if (mode === 'hang') this.held.push({ to, deliver, fail: (code) => reject(rpcError(code)) });
      else deliver();
    });
    if (this.modes.get(to) !== 'hang') tracked = p;
    if (tracked) this.track(tracked);
    return p;
  }

  private track(p: Promise<unknown>): void {
    const q = p.then(
      () => undefined,
      () => undefined,
    );
    this.inflight.add(q);
    void q.then(() => this.inflight.delete(q));
  }

  private async dispatch(to: string, type: string, body: unknown): Promise<unknown> {
    const n = this.node(to);
    if (type === 'rep.put') return n.rep.receive(body);
    if (type === 'rep.get') return n.rep.serveGet(body);
    throw Object.assign(new Error(`unknown call ${type}`), { code: 'BAD_REQUEST' });
  }

  async close(): Promise<void> {
    await this.settle();
    for (const n of this.nodes.values()) await n.db.close();
  }
}

const sims: Sim[] = [];
afterEach(async () => {
  for (const s of sims.splice(0)) await s.close();
});

const ids = (count: number) => Array.from({ length: count }, (_, i) => `n${i + 1}`);

async function set(node: SimNode, key: string, value: string): Promise<StoredRecord> {
  const r = await node.kv.storeItem('set', key, Buffer.from(value), 0, 0);
  expect(r.status).toBe('STORED');
  return r.record!;
}

/** A write that reaches only `node` (as if replication were off for it). */
async function setLocalOnly(node: SimNode, key: string, value: string): Promise<StoredRecord> {
  const hooks = node.kv.hooks;
  node.kv.hooks = {};
  try {
    return await set(node, key, value);
  } finally {
    node.kv.hooks = hooks;
  }
}

/** Observes a promise without awaiting it. */
function watch<T>(p: Promise<T>): { state: () => 'pending' | 'resolved' | 'rejected'; value: () => T | undefined; error: () => unknown } {
  let state: 'pending' | 'resolved' | 'rejected' = 'pending';
  let value: T | undefined;
  let error: unknown;
  p.then(
    (v) => {
      state = 'resolved';
      value = v;
    },
    (e: unknown) => {
      state = 'rejected';
      error = e;
    },
  );
  return { state: () => state, value: () => value, error: () => error };
}

const valueOf = (r: StoredRecord | undefined) => r?.value.toString();

describe('writes', () => {
  it('puts a write on exactly the N nodes of its preference list, with the same version everywhere', async () => {
    const sim = await Sim.start(ids(5), { n: 3, w: 2 });
    for (let i = 0; i < 12; i++) {
      const key = `key-${i}`;
      const pl = sim.pl(key);
      expect(pl).toHaveLength(3);
      const coordinator = sim.node(pl[i % 3]!);
      const written = await set(coordinator, key, `v${i}`);
      await sim.settle();
      for (const id of sim.nodes.keys()) {
        const r = sim.node(id).kv.raw(key);
        if (pl.includes(id)) {
          expect(valueOf(r), `${key} on ${id}`).toBe(`v${i}`);
          expect(sameVersions(r!, written)).toBe(true);
        } else {
          expect(r, `${key} must not be on ${id}`).toBeUndefined();
        }
      }
    }
    // Two replica writes per key, all plain rep.put, and none needed a hint.
    expect(sim.log.filter((c) => c.type === 'rep.put')).toHaveLength(24);
    expect([...sim.nodes.values()].reduce((s, n) => s + n.rep.counters.replica_writes, 0)).toBe(24);
    for (const n of sim.nodes.values()) expect(n.hints.targets()).toEqual([]);
  });

  it('coalesces the replica writes of one turn into one rep.put per peer', async () => {
    const sim = await Sim.start(ids(3), { n: 3, w: 2 });
    const a = sim.node('n1');
    const calls = sim.log.length;
    // Ten writes started in one turn: every other node is on every key's list (N=3 of 3).
    await Promise.all(Array.from({ length: 10 }, (_, i) => set(a, `batch-${i}`, `v${i}`)));
    await sim.settle();
    const puts = sim.log.slice(calls).filter((c) => c.type === 'rep.put');
    expect(puts.map((c) => c.to).sort()).toEqual(['n2', 'n3']);
    expect(a.rep.batching()).toMatchObject({ putCalls: 2, putItems: 20 });
    for (let i = 0; i < 10; i++) for (const id of ['n2', 'n3']) expect(valueOf(sim.node(id).kv.raw(`batch-${i}`))).toBe(`v${i}`);
  });

  it('acknowledges after W copies: W=2 of 3 resolves while one replica hangs', async () => {
    const sim = await Sim.start(ids(3), { n: 3, w: 2 });
    const key = 'hang-one';
    const [c, r1, r2] = sim.pl(key) as [string, string, string];
    sim.setMode(r2, 'hang');
    await set(sim.node(c), key, 'v');
    expect(valueOf(sim.node(r1).kv.raw(key))).toBe('v');
    expect(sim.node(r2).kv.raw(key)).toBeUndefined();
    expect(sim.heldFor(r2)).toBe(1);
    // The hanging copy completes in the background once the replica answers.
    sim.release(r2, 'deliver');
    await sim.settle();
    expect(valueOf(sim.node(r2).kv.raw(key))).toBe('v');
  });

  it('waits for exactly W durable copies: pending with W-1, resolved at W', async () => {
    const sim = await Sim.start(ids(3), { n: 3, w: 3 });
    const key = 'wait-for-w';
    const [c, r1, r2] = sim.pl(key) as [string, string, string];
    sim.setMode(r1, 'hang');
    sim.setMode(r2, 'hang');
    const p = watch(Promise.resolve(sim.node(c).kv.storeItem('set', key, Buffer.from('v'), 0, 0)));
    await sim.settle();
    expect(p.state()).toBe('pending'); // 1 copy (the coordinator's)
    sim.release(r1, 'deliver');
    await sim.settle();
    expect(valueOf(sim.node(r1).kv.raw(key))).toBe('v');
    expect(p.state()).toBe('pending'); // 2 copies
    sim.release(r2, 'deliver');
    await sim.settle();
    expect(p.state()).toBe('resolved'); // 3 copies
    expect(p.value()?.status).toBe('STORED');
  });

  it('fails with QuorumError when too few copies can be written, and the coordinator keeps hints for the down replicas', async () => {
    const sim = await Sim.start(ids(3), { n: 3, w: 2 });
    const key = 'two-down';
    const [c, r1, r2] = sim.pl(key) as [string, string, string];
    sim.setMode(r1, 'UNAVAILABLE');
    sim.setMode(r2, 'TIMEOUT');
    const coord = sim.node(c);
    const err = await Promise.resolve(coord.kv.storeItem('set', key, Buffer.from('v'), 0, 0)).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(QuorumError);
    expect((err as QuorumError).code).toBe('UNAVAILABLE');
    expect(coord.rep.counters.quorum_failures).toBe(1);
    expect(coord.rep.counters.hints_kept_locally).toBe(2);
    // The failed calls taught the failure detector.
    expect(coord.fd.isDown(r1)).toBe(true);
    expect(coord.fd.isDown(r2)).toBe(true);
    // The hints are durable by the time the write failed.
    const local = coord.kv.raw(key)!;
    expect(coord.hints.targets()).toEqual([r1, r2].sort());
    for (const t of [r1, r2]) {
      const batch = await coord.hints.batch(t, undefined, 10, MB);
      expect(batch.map((e) => e.key)).toEqual([key]);
      expect(sameVersions(batch[0]!.record, local)).toBe(true);
    }
  });

  it('does not call replicas its failure detector calls down; they get hints straight away', async () => {
    const sim = await Sim.start(ids(3), { n: 3, w: 2 });
    const key = 'known-down';
    const [c, r1, r2] = sim.pl(key) as [string, string, string];
    const coord = sim.node(c);
    coord.fd.failed(r1);
    coord.fd.failed(r2);
    await expect(Promise.resolve(coord.kv.storeItem('set', key, Buffer.from('v'), 0, 0))).rejects.toBeInstanceOf(QuorumError);
    expect(sim.log.filter((l) => l.to === r1 || l.to === r2)).toEqual([]);
    expect(coord.hints.pending(r1).entries).toBe(1);
    expect(coord.hints.pending(r2).entries).toBe(1);
    expect(sim.node(r1).kv.raw(key)).toBeUndefined();
  });
});

describe('the ring of live members', () => {
  it('leaves out members the master calls down, from the next view on', async () => {
    const sim = await Sim.start(ids(4), { n: 3, w: 3 });
    const key = Array.from({ length: 100 }, (_, i) => `live-${i}`).find((k) => sim.pl(k).includes('n4'))!;
    expect(key).toBeDefined();
    const before = sim.pl(key);
    const fp = sim.node('n1').rep.ringFingerprint();
    sim.setStatus('n4', 'down');
    const after = sim.pl(key);
    expect(after).not.toContain('n4');
    expect(after).toHaveLength(3);
    expect(after.filter((id) => before.includes(id))).toEqual(before.filter((id) => id !== 'n4'));
    expect(sim.node('n1').rep.ringFingerprint()).not.toBe(fp);
    expect(sim.node('n2').rep.reachable('n4')).toBe(false);

    // A write goes to the three live members; no hint is kept for a member that left the ring.
    const c = sim.node(after[0]!);
    await set(c, key, 'v');
    await sim.settle();
    for (const id of after) expect(valueOf(sim.node(id).kv.raw(key)), id).toBe('v');
    expect(sim.node('n4').kv.raw(key)).toBeUndefined();
    expect(sim.log.filter((l) => l.to === 'n4')).toEqual([]);
    for (const n of sim.nodes.values()) expect(n.hints.targets()).toEqual([]);

    sim.setStatus('n4', 'up');
    expect(sim.pl(key)).toEqual(before);
    expect(sim.node('n1').rep.ringFingerprint()).toBe(fp);
  });
});

describe('sloppy quorum and hinted handoff', () => {
  it('sends the copy of a down list member to the next node as a hint, which counts toward W', async () => {
    // W = N = 3: the write succeeds only if the hint counts.
    const sim = await Sim.start(ids(4), { n: 3, w: 3 });
    const key = 'sloppy';
    const [c, r1, down] = sim.pl(key) as [string, string, string];
    const fallback = [...sim.nodes.keys()].find((id) => !sim.pl(key).includes(id))!;
    sim.setMode(down, 'UNAVAILABLE');
    const coord = sim.node(c);
    const written = await set(coord, key, 'v');

    const hint = await sim.node(fallback).hints.find(key);
    expect(hint?.target).toBe(down);
    expect(sameVersions(hint!.record, written)).toBe(true);
    expect(valueOf(hint!.record)).toBe('v');
    // A hint is kept apart, not merged into the fallback's own data.
    expect(sim.node(fallback).kv.raw(key)).toBeUndefined();
    expect(sim.node(down).kv.raw(key)).toBeUndefined();
    expect(valueOf(sim.node(r1).kv.raw(key))).toBe('v');
    expect(coord.rep.counters.hints_sent).toBe(1);
    expect(coord.rep.counters.replica_write_failures).toBe(1);
    expect(sim.node(fallback).rep.counters.hints_stored).toBe(1);
    expect(coord.hints.targets()).toEqual([]);

    // The target is back: replay delivers the hint and deletes it.
    sim.setMode(down, 'up');
    const fb = sim.node(fallback);
    expect(await fb.rep.replay(down)).toBe(1);
    const delivered = sim.node(down).kv.raw(key);
    expect(valueOf(delivered)).toBe('v');
    expect(sameVersions(delivered!, written)).toBe(true);
    expect(await fb.hints.find(key)).toBeUndefined();
    expect(fb.hints.pending(down).entries).toBe(0);
    expect(fb.rep.counters.hints_replayed).toBe(1);
    // Nothing left to send.
    expect(await fb.rep.replay(down)).toBe(0);
  });

  it('keeps a hint whose replay the target did not acknowledge, and replays it on the up event', async () => {
    const sim = await Sim.start(ids(4), { n: 3, w: 3 });
    const keys = ['h-a', 'h-b', 'h-c', 'h-d', 'h-e'];
    // Put one down node's hints for several keys on fallbacks (hintBatch is 2: several batches).
    const down = 'n4';
    sim.setMode(down, 'UNAVAILABLE');
    const expected = new Map<string, string>();
    for (const key of keys) {
      const pl = sim.pl(key);
      const coord = sim.node(pl.find((id) => id !== down)!);
      await set(coord, key, `v-${key}`);
      if (pl.includes(down)) expected.set(key, `v-${key}`);
    }
    await sim.settle();
    expect(expected.size).toBeGreaterThan(0);
    const holders = [...sim.nodes.values()].filter((n) => n.id !== down && n.hints.targets().includes(down));
    const held = holders.reduce((s, n) => s + n.hints.pending(down).entries, 0);
    expect(held).toBe(expected.size);

    // Still down: replay sends, fails, deletes nothing.
    for (const h of holders) expect(await h.rep.replay(down)).toBe(0);
    expect(holders.reduce((s, n) => s + n.hints.pending(down).entries, 0)).toBe(held);
    for (const h of holders) expect(h.fd.isDown(down)).toBe(true);

    // Back: any successful call (here the failure detector's ping) fires the replay.
    sim.setMode(down, 'up');
    for (const h of holders) h.fd.answered(down);
    await sim.settle();
    for (const [key, v] of expected) expect(valueOf(sim.node(down).kv.raw(key)), key).toBe(v);
    for (const h of holders) expect(h.hints.targets()).toEqual([]);
    expect(holders.reduce((s, n) => s + n.rep.counters.hints_replayed, 0)).toBe(expected.size);
  });
});

describe('quorum reads', () => {
  it('with R=2 asks only the next replica on the list: merges its newer version; a read at R=3 repairs the one not asked', async () => {
    const sim = await Sim.start(ids(3), { n: 3, r: 2, w: 3 });
    const key = 'rr';
    const [a, b, c] = sim.pl(key).map((id) => sim.node(id)) as [SimNode, SimNode, SimNode];
    await set(a, key, 'old');
    await sim.settle();
    const newer = await setLocalOnly(b, key, 'new'); // dominates 'old'; a and c never saw it
    expect(valueOf(a.kv.raw(key))).toBe('old');
    expect(valueOf(c.kv.raw(key))).toBe('old');

    const calls = sim.log.length;
    await a.rep.quorumRead([key]);
    expect(sim.log.slice(calls).filter((l) => l.type === 'rep.get').map((l) => l.to)).toEqual([b.id]);
    expect(valueOf(a.kv.raw(key))).toBe('new');
    expect(sameVersions(a.kv.raw(key)!, newer)).toBe(true);
    expect(valueOf((await a.kv.get(key))!)).toBe('new');
    await sim.settle();
    expect(a.rep.counters.read_repairs).toBe(0); // b already holds what a holds now
    expect(valueOf(c.kv.raw(key))).toBe('old'); // not asked: anti-entropy's, or a wider read's

    await a.rep.quorumRead([key], { r: 3 });
    await sim.settle();
    expect(a.rep.counters.read_repairs).toBe(1);
    expect(valueOf(c.kv.raw(key))).toBe('new');
    expect(sameVersions(c.kv.raw(key)!, newer)).toBe(true);
  });

  it('backs a silent replica with the next one after hedgeMs, and repairs it once it answers', async () => {
    const sim = await Sim.start(ids(3), { n: 3, r: 2, w: 3 });
    const key = 'hedge';
    const [a, b, c] = sim.pl(key).map((id) => sim.node(id)) as [SimNode, SimNode, SimNode];
    await set(a, key, 'old');
    await sim.settle();
    const newer = await setLocalOnly(c, key, 'new');
    sim.setMode(b.id, 'hang');
    const calls = sim.log.length;
    await a.rep.quorumRead([key]);
    expect(sim.log.slice(calls).filter((l) => l.type === 'rep.get').map((l) => l.to)).toEqual([b.id, c.id]);
    expect(sameVersions(a.kv.raw(key)!, newer)).toBe(true);
    expect(a.rep.counters.read_repairs).toBe(0); // b has not answered yet: nothing to compare

    sim.setMode(b.id, 'up');
    expect(sim.release(b.id, 'deliver')).toBe(1);
    await sim.settle();
    expect(a.rep.counters.read_repairs).toBe(1);
    expect(sameVersions(b.kv.raw(key)!, newer)).toBe(true);
  });

  it('a replica that holds the asker\'s versions answers true instead of its record (digest read)', async () => {
    const sim = await Sim.start(ids(3), { n: 3, r: 2, w: 3 });
    const key = 'digest';
    const [a, b] = sim.pl(key).map((id) => sim.node(id)) as [SimNode, SimNode, SimNode];
    await set(a, key, 'v1');
    await sim.settle();
    const tag = versionTag(a.kv.raw(key)!);
    expect(b.rep.serveGet({ keys: [key, 'absent'], have: [tag, ''] }).records).toEqual([true, null]);
    // A different (older or unknown) tag gets the record itself.
    const answer = b.rep.serveGet({ keys: [key], have: ['1.0.0|x:1'] }).records[0];
    expect(answer).toBeInstanceOf(Uint8Array);
    expect(sameVersions(decodeRecord(answer as Uint8Array), a.kv.raw(key)!)).toBe(true);
    // Without `have` (an older asker) every record is sent whole.
    expect(b.rep.serveGet({ keys: [key] }).records[0]).toBeInstanceOf(Uint8Array);
    expect(() => b.rep.serveGet({ keys: [key], have: [] })).toThrow(/have must be/);
    // A quorum read of an up-to-date key changes nothing and repairs nothing.
    await a.rep.quorumRead([key]);
    await sim.settle();
    expect(a.rep.counters.read_repairs).toBe(0);
    expect(valueOf(a.kv.raw(key))).toBe('v1');
  });

  it('replaces a replica that fails by the next one, without waiting for the hedge', async () => {
    const sim = await Sim.start(ids(3), { n: 3, r: 2, w: 3 });
    const key = 'replace';
    const [a, b, c] = sim.pl(key).map((id) => sim.node(id)) as [SimNode, SimNode, SimNode];
    await set(a, key, 'old');
    await sim.settle();
    const newer = await setLocalOnly(c, key, 'new');
    sim.setMode(b.id, 'UNAVAILABLE');
    const calls = sim.log.length;
    const read = a.rep.quorumRead([key])!;
    // The refusal settles in a microtask; c is asked in the next batch, long before 20 ms.
    await new Promise<void>((r) => setImmediate(r));
    await new Promise<void>((r) => setImmediate(r));
    expect(sim.log.slice(calls).filter((l) => l.type === 'rep.get').map((l) => l.to)).toEqual([b.id, c.id]);
    await read;
    expect(sameVersions(a.kv.raw(key)!, newer)).toBe(true);
  });

  it('repairs a replica that has nothing, and does nothing when R=1', async () => {
    const sim = await Sim.start(ids(3), { n: 3, r: 2, w: 1 });
    const key = 'rr-missing';
    const [a, b, c] = sim.pl(key).map((id) => sim.node(id)) as [SimNode, SimNode, SimNode];
    await setLocalOnly(a, key, 'only-a');
    expect(a.rep.quorumRead([key], { r: 1 })).toBeUndefined();
    await a.rep.quorumRead([key], { r: 3 });
    await sim.settle();
    expect(a.rep.counters.read_repairs).toBe(2);
    expect(valueOf(b.kv.raw(key))).toBe('only-a');
    expect(valueOf(c.kv.raw(key))).toBe('only-a');
  });

  it('rejects when fewer than R replicas are reachable', async () => {
    const sim = await Sim.start(ids(3), { n: 3, r: 2, w: 1 });
    const key = 'few';
    const [a, b, c] = sim.pl(key).map((id) => sim.node(id)) as [SimNode, SimNode, SimNode];
    await setLocalOnly(a, key, 'v');

    // Known down: refused before any call.
    a.fd.failed(c.id);
    const calls = sim.log.length;
    await expect(a.rep.quorumRead([key], { r: 3 })).rejects.toBeInstanceOf(QuorumError);
    expect(sim.log.length).toBe(calls);
    // R=2 still works with b.
    await expect(a.rep.quorumRead([key], { r: 2 })).resolves.toBeUndefined();

    // Found down by the call itself.
    a.fd.answered(c.id);
    sim.setMode(b.id, 'TIMEOUT');
    const err = await a.rep.quorumRead([key], { r: 3 })!.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(QuorumError);
    expect((err as QuorumError).code).toBe('UNAVAILABLE');
    expect(a.fd.isDown(b.id)).toBe(true);

    // Both others unreachable: even R=2 fails.
    sim.setMode(c.id, 'UNAVAILABLE');
    a.fd.answered(b.id);
    await expect(a.rep.quorumRead([key], { r: 2 })).rejects.toBeInstanceOf(QuorumError);
    expect(a.rep.counters.quorum_failures).toBe(3);
  });
});

describe('quorums when the master has called members down', () => {
  it('refuses a W=2 write when the coordinator is the only live member (never a silent success)', async () => {
    const sim = await Sim.start(ids(3));
    sim.setStatus('n2', 'down');
    sim.setStatus('n3', 'down');
    const n1 = sim.node('n1');
    await expect(Promise.resolve(n1.kv.storeItem('set', 'alone', Buffer.from('v'), 0, 0))).rejects.toBeInstanceOf(QuorumError);
    expect(n1.rep.counters.quorum_failures).toBe(1);
    // A request that asks for one copy is served.
    const r = await n1.rep.withQuorum({ w: 1 }, () => n1.kv.storeItem('set', 'alone', Buffer.from('v1'), 0, 0));
    expect(r.status).toBe('STORED');
  });

  it('does not shrink R to the live members', async () => {
    const sim = await Sim.start(ids(3));
    sim.setStatus('n3', 'down');
    const key = 'shrink';
    const coordinator = sim.node(sim.pl(key)[0]!);
    await expect(coordinator.rep.quorumRead([key], { r: 3 })).rejects.toBeInstanceOf(QuorumError);
    await expect(coordinator.rep.quorumRead([key], { r: 2 })).resolves.toBeUndefined();
  });

  it('read-repairs against the merge of every answer, whatever order they come in', async () => {
    const sim = await Sim.start(ids(3), { n: 3, r: 2, w: 3 });
    const key = 'order';
    const [a, b, c] = sim.pl(key).map((id) => sim.node(id)) as [SimNode, SimNode, SimNode];
    await set(a, key, 'old');
    await sim.settle();
    await setLocalOnly(b, key, 'new');
    // b (the newer one) is silent: after hedgeMs c is asked, and its stale answer satisfies R.
    sim.setMode(b.id, 'hang');
    await a.rep.quorumRead([key]);
    sim.setMode(b.id, 'up');
    expect(sim.release(b.id, 'deliver')).toBe(1);
    await sim.settle();
    expect(valueOf(a.kv.raw(key))).toBe('new');
    expect(valueOf(c.kv.raw(key))).toBe('new');
    expect(a.rep.counters.read_repairs).toBe(1);
  });
});

describe('concurrent versions', () => {
  it('become siblings after a merge, and a later write supersedes them all', async () => {
    const sim = await Sim.start(ids(3), { n: 3, r: 2, w: 3 });
    const key = 'conflict';
    const [a, b, c] = sim.pl(key).map((id) => sim.node(id)) as [SimNode, SimNode, SimNode];
    const va = await setLocalOnly(a, key, 'from-a');
    const vb = await setLocalOnly(b, key, 'from-b');
    expect(compareClocks(va.version.clock, vb.version.clock)).toBe('concurrent');

    // R=3: both others are asked, and each is repaired against the merge of every answer.
    await a.rep.quorumRead([key], { r: 3 });
    await sim.settle();
    const merged = a.kv.raw(key)!;
    expect(merged.siblings).toHaveLength(1);
    expect([valueOf(merged), valueOf(merged.siblings![0])].sort()).toEqual(['from-a', 'from-b']);
    // Read repair gave every replica the same set of versions.
    for (const n of [b, c]) expect(sameVersions(n.kv.raw(key)!, merged)).toBe(true);

    const resolved = await set(a, key, 'resolved');
    await sim.settle();
    expect(compareClocks(resolved.version.clock, va.version.clock)).toBe('after');
    expect(compareClocks(resolved.version.clock, vb.version.clock)).toBe('after');
    for (const n of [a, b, c]) {
      const r = n.kv.raw(key)!;
      expect(valueOf(r), n.id).toBe('resolved');
      expect(r.siblings ?? [], n.id).toHaveLength(0);
      expect(sameVersions(r, resolved)).toBe(true);
    }
  });
});

describe('per-request quorum', () => {
  it('withQuorum({w: 1}) acknowledges after the local write while every replica hangs', async () => {
    const sim = await Sim.start(ids(3), { n: 3, w: 2 });
    const [k1, k2] = ['wq-1', 'wq-2'];
    const c = sim.node(sim.pl(k1)[0]!);
    for (const id of sim.nodes.keys()) if (id !== c.id) sim.setMode(id, 'hang');

    const fast = watch(Promise.resolve(c.rep.withQuorum({ w: 1 }, () => c.kv.storeItem('set', k1, Buffer.from('v'), 0, 0))));
    // The cluster's W applies again outside withQuorum.
    const slow = watch(Promise.resolve(c.kv.storeItem('set', k2, Buffer.from('v'), 0, 0)));
    await sim.settle();
    expect(fast.state()).toBe('resolved');
    expect(fast.value()?.status).toBe('STORED');
    expect(slow.state()).toBe('pending');
    expect(valueOf(c.kv.raw(k1))).toBe('v');

    // And a larger w than the cluster's waits for more.
    const [x, y] = sim.pl(k1).filter((id) => id !== c.id) as [string, string];
    sim.setMode(x, 'up');
    sim.setMode(y, 'up');
    sim.release(x, 'deliver');
    sim.release(y, 'deliver');
    await sim.settle();
    expect(slow.state()).toBe('resolved');
    sim.setMode(y, 'hang');
    const strict = watch(Promise.resolve(c.rep.withQuorum({ w: 3 }, () => c.kv.storeItem('set', k1, Buffer.from('w3'), 0, 0))));
    await sim.settle();
    expect(strict.state()).toBe('pending');
    sim.release(y, 'deliver');
    await sim.settle();
    expect(strict.state()).toBe('resolved');
  });

  it('checkQuorum accepts 1..N and rejects anything else with BAD_REQUEST', async () => {
    const sim = await Sim.start(ids(3), { n: 3 });
    const rep = sim.node('n1').rep;
    expect(rep.checkQuorum({})).toEqual({});
    expect(rep.checkQuorum({ r: 1, w: 3 })).toEqual({ r: 1, w: 3 });
    expect(rep.checkQuorum({ r: 3 })).toEqual({ r: 3 });
    for (const q of [{ r: 0 }, { w: 0 }, { r: 4 }, { w: 4 }, { w: -1 }, { r: 1.5 }, { w: Number.NaN }, { r: 2, w: 4 }]) {
      let thrown: unknown;
      try {
        rep.checkQuorum(q);
      } catch (e) {
        thrown = e;
      }
      expect(thrown, JSON.stringify(q)).toBeInstanceOf(Error);
      expect((thrown as { code?: string }).code, JSON.stringify(q)).toBe('BAD_REQUEST');
    }
    // The bound follows N.
    sim.settings = { ...sim.settings, n: 5 };
    expect(rep.checkQuorum({ w: 5 })).toEqual({ w: 5 });
  });
});
