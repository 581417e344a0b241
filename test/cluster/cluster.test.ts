// A real cluster of child processes on loopback: one lease master and three nodes with
// short lease timings. Keys written through any node land on the owner ring/ computes;
// any node reads any key; the owner serialises incr; a killed node's ranges pass to the
// others with higher generations; a restarted master keeps generations increasing.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initHash, Ring } from '../../ring/index.js';
import { startMaster, type RunningServer } from '../../bench/lib/servers.js';
import { McClient, getParser } from '../helpers/mc.js';
import { request } from '../helpers/http.js';
// Routing and leases alone: one copy per key (N = 1), so each node holds exactly its
// share of the ring. Replication has its own tests (test/replication/*.process.test.ts).
const ONE_COPY = { n: 1, r: 1, w: 1 };
import { pieceOf, settled, until, view, startTestCluster, startTestNode } from '../helpers/cluster.js';

const leaseMs = 1500;
const renewMs = 200;
const vnodes = 16;






function setMany(keys: string[]): Buffer {
  return Buffer.concat(keys.map((k) => Buffer.from(`set ${k} 0 0 ${k.length}\r\n${k}\r\n`, 'latin1')));
}

describe('cluster of a master and three nodes', () => {
  let master: RunningServer;
  const nodes: RunningServer[] = [];
  const ids = ['n1', 'n2', 'n3'];
  /** Every process started, so that each is stopped and its temporary data removed. */
  const started: RunningServer[] = [];
  const track = (s: RunningServer) => (started.push(s), s);

  beforeAll(async () => {
    await initHash();
    const c = await startTestCluster({ ids, leaseMs, renewMs, vnodes, replication: ONE_COPY }, track);
    master = c.master;
    nodes.push(...c.nodes);
  }, 60_000);

  afterAll(async () => {
    // Nodes first (they would keep calling the master), then the masters; stop() also
    // removes the temporary data dir of a process started with one, even after kill().
    await Promise.all(started.filter((s) => s.name === 'ringkv').map((s) => s.stop()));
    for (const s of started.filter((s) => s.name !== 'ringkv')) await s.stop();
  });

  it('hands every range to the owner the ring computes', async () => {
    const v = await view(master);
    const ring = Ring.build(ids.map((id) => ({ id })), { vnodes });
    for (let i = 0; i < 500; i++) {
      const pos = ring.position(`probe-${i}`);
      expect(pieceOf(v, pos).owner).toBe(ring.ownerOf(pos));
    }
  });

  it('stores 10,000 keys written through one node on their owners, readable from every node', async () => {
    const keys = Array.from({ length: 10_000 }, (_, i) => `key:${i}`);
    const c1 = await McClient.connect(nodes[0]!.port);
    await c1.write(setMany(keys));
    for (let i = 0; i < keys.length; i++) expect(await c1.line(20_000)).toBe('STORED');
    c1.close();

    // Where each key lives: curr_items per node equals the ring's share of the keys.
    const ring = Ring.build(ids.map((id) => ({ id })), { vnodes });
    const expected = new Map(ids.map((id) => [id, 0]));
    for (const k of keys) expected.set(ring.ownerOf(ring.position(k)), expected.get(ring.ownerOf(ring.position(k)))! + 1);
    for (let i = 0; i < nodes.length; i++) {
      const c = await McClient.connect(nodes[i]!.port);
      expect(Number((await c.stats()).get('curr_items')), ids[i]).toBe(expected.get(ids[i]!));
      c.close();
    }

    // Any node answers for any key (multi-get spanning all owners).
    for (const n of nodes.slice(1)) {
      const c = await McClient.connect(n.port);
      for (let i = 0; i < keys.length; i += 100) {
        const batch = keys.slice(i, i + 100);
        await c.write(`get ${batch.join(' ')}\r\n`);
        const items = await c.read(getParser, 20_000);
        expect(items.map((it) => it.key)).toEqual(batch);
        for (const it of items) expect(it.value.toString('latin1')).toBe(it.key);
      }
      c.close();
    }
  }, 120_000);

  it('answers HTTP for any key on any node: PUT through one node, GET and DELETE through others', async () => {
    const keys = Array.from({ length: 300 }, (_, i) => `http:${i}`);
    for (const k of keys) {
      const r = await request(nodes[0]!.httpPort!, 'PUT', `/kv/${encodeURIComponent(k)}?flags=7`, { body: Buffer.from(`v-${k}`) });
      expect(r.status, k).toBe(204);
    }
    for (const k of keys) {
      const r = await request(nodes[1]!.httpPort!, 'GET', `/kv/${encodeURIComponent(k)}`);
      expect(r.status, k).toBe(200);
      expect(r.body.toString()).toBe(`v-${k}`);
      expect(r.headers['x-ringkv-flags']).toBe('7');
    }
    for (const k of keys.slice(0, 50)) expect((await request(nodes[2]!.httpPort!, 'DELETE', `/kv/${encodeURIComponent(k)}`)).status).toBe(204);
    for (const k of keys.slice(0, 50)) expect((await request(nodes[0]!.httpPort!, 'GET', `/kv/${encodeURIComponent(k)}`)).status).toBe(404);
  }, 60_000);

  it('serialises incr on the owner: concurrent increments through different nodes add up exactly', async () => {
    const setup = await McClient.connect(nodes[0]!.port);
    expect(await setup.set('counter', '0')).toBe('STORED');
    setup.close();
    const perClient = 300;
    const clients = await Promise.all(nodes.flatMap((n) => [McClient.connect(n.port), McClient.connect(n.port)]));
    await Promise.all(
      clients.map(async (c) => {
        for (let i = 0; i < perClient; i++) {
          const r = await c.command('incr counter 1');
          expect(r).toMatch(/^\d+$/);
        }
      }),
    );
    for (const c of clients) c.close();
    const check = await McClient.connect(nodes[2]!.port);
    expect((await check.get('counter'))?.value.toString().trim()).toBe(String(clients.length * perClient));
    check.close();
  }, 60_000);

  it("gives a killed node's ranges to the others with higher generations", async () => {
    const before = await view(master);
    const victim = nodes[2]!;
    const victimPieces = before.leases.filter((l) => l.owner === 'n3');
    expect(victimPieces.length).toBeGreaterThan(0);
    await victim.kill();
    const after = await until(master, settled(['n1', 'n2']), leaseMs + 10 * renewMs + 10_000);
    const ring = Ring.build([{ id: 'n1' }, { id: 'n2' }], { vnodes });
    for (const p of victimPieces) {
      const pos = BigInt(`0x${p.end}`);
      const now = pieceOf(after, pos);
      expect(now.owner).toBe(ring.ownerOf(pos));
      expect(now.generation).toBeGreaterThan(p.generation);
    }
    // Keys of the dead node's ranges are writable again through the survivors.
    const c = await McClient.connect(nodes[0]!.port);
    for (let i = 0; i < 200; i++) expect(await c.set(`after-kill:${i}`, 'v')).toBe('STORED');
    c.close();
  }, 60_000);

  it('keeps generations increasing across a master restart', async () => {
    const before = await view(master);
    const maxBefore = Math.max(...before.leases.map((l) => l.generation));
    const dataDir = master.dataDir!;
    const port = master.port;
    const httpPort = master.httpPort!;
    await master.kill();
    // The restarted master reuses the first one's data dir, which the first handle removes at the end.
    master = track(await startMaster({ dataDir, port, httpPort, args: ['--lease-ms', String(leaseMs), '--vnodes', String(vnodes), '--n', '1', '--r', '1', '--w', '1'] }));
    const restored = await view(master);
    for (const l of before.leases) expect(pieceOf(restored, BigInt(`0x${l.end}`)).generation).toBe(l.generation);
    // A node that comes back takes ranges again: every new grant is above every old generation.
    nodes[2] = track(await startTestNode(master, 'n3', { renewMs }));
    const after = await until(master, settled(ids));
    const moved = after.leases.filter((l) => l.owner === 'n3');
    expect(moved.length).toBeGreaterThan(0);
    for (const l of moved) expect(l.generation).toBeGreaterThan(maxBefore);
  }, 60_000);
});
