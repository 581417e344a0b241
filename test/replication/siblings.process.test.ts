// Siblings across a partition, with real processes: a master and five memory-storage
// nodes (N = 3, R = 2, W = 2) with --debug-faults and short replication timings.
//
// 1. A key with preference list [A, B, C] (D, E the other two). After v0 reaches all three
//    replicas, the network splits {A, D} | {B, C, E}; v1 is written through A (the owner
//    coordinates: its copy + a hint on D) and v2 through B (the owner is unreachable, so B
//    coordinates with C). Both writes are acknowledged. After healing, hints replay and
//    anti-entropy runs until A, B and C hold the same two concurrent versions; then
//    `get(key, { siblings: true })` returns both values, a plain get (memcached on every
//    node, HTTP, the TS client) returns the one last-writer-wins winner, and a new set
//    supersedes both everywhere. Run twice: with the owner side's write first and last, so
//    that the LWW winner (the later HLC timestamp) is once each side's.
// 2. Without a partition, two writers hammering one key through different nodes leave one
//    version (the owner coordinates both), identical on the three replicas.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hash64, initHash, Ring } from '../../ring/index.js';
import type { RunningServer } from '../../bench/lib/servers.js';
import { RingClient } from '../../client/index.js';
import { McClient } from '../helpers/mc.js';
import { json, request } from '../helpers/http.js';
import { debugFaultNodeArgs, debugLocal, pieceOf, setPartition, startTestCluster, view, type DebugLocal, type DebugVersion } from '../helpers/cluster.js';

const leaseMs = 20_000;
const renewMs = 500;
const vnodes = 16;
const ids = ['n1', 'n2', 'n3', 'n4', 'n5'];
const nodeArgs = [...debugFaultNodeArgs];

/** What a node itself holds for key (GET /debug/local), undefined on 404. */
const local = (node: RunningServer, key: string): Promise<DebugLocal | undefined> => debugLocal(node.httpPort!, key);

/** One version as comparable text: clock (sorted), timestamp, tombstone, value. */
function versionText(v: DebugVersion): string {
  const clock = Object.entries(v.version.clock).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return JSON.stringify([clock, v.version.ts.wallMs, v.version.ts.logical, v.tombstone, v.value]);
}

/** The set of versions a record holds (itself and its siblings), sorted, as text. */
function versionSet(r: DebugLocal | undefined): string[] {
  if (!r) return [];
  return [r, ...r.siblings].map(versionText).sort();
}

/** Polls `probe` until `ok` holds (bounded); returns the last value. */
async function pollUntil<T>(what: string, probe: () => Promise<T>, ok: (t: T) => boolean, timeoutMs = 20_000): Promise<{ value: T; ms: number }> {
  const start = Date.now();
  for (;;) {
    const value = await probe();
    if (ok(value)) return { value, ms: Date.now() - start };
    if (Date.now() - start > timeoutMs) throw new Error(`${what}: not reached within ${timeoutMs} ms; last: ${JSON.stringify(value).slice(0, 3000)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function mcSet(node: RunningServer, key: string, value: string): Promise<string> {
  const c = await McClient.connect(node.port);
  try {
    return await c.set(key, value);
  } finally {
    c.close();
  }
}

async function mcGet(node: RunningServer, key: string): Promise<string | undefined> {
  const c = await McClient.connect(node.port);
  try {
    return (await c.get(key))?.value.toString('latin1');
  } finally {
    c.close();
  }
}

/** Compares two HLC timestamps: wall time, then the logical counter. */
function compareTs(a: DebugVersion, b: DebugVersion): number {
  return a.version.ts.wallMs - b.version.ts.wallMs || a.version.ts.logical - b.version.ts.logical;
}

describe('siblings: concurrent writes through two coordinators during a partition', () => {
  let master: RunningServer;
  const byId = new Map<string, RunningServer>();
  const started: RunningServer[] = [];
  const track = (s: RunningServer) => (started.push(s), s);
  let kv: RingClient | undefined;
  let ring: Ring;

  /** A key and its preference list on the ring of the five nodes (the nodes build the same ring). */
  const keyWithList = (prefix: string): { key: string; list: string[] } => {
    const key = `${prefix}:0`;
    return { key, list: ring.preferenceList(hash64(Buffer.from(key, 'latin1')), 3) };
  };

  beforeAll(async () => {
    await initHash();
    ring = Ring.build(ids.map((id) => ({ id })), { vnodes });
    const c = await startTestCluster({ ids, leaseMs, renewMs, vnodes, nodeArgs, storage: 'memory' }, track);
    master = c.master;
    ids.forEach((id, i) => byId.set(id, c.nodes[i]!));
  }, 60_000);

  afterAll(async () => {
    await kv?.close();
    await Promise.all(started.filter((s) => s.name === 'ringkv').map((s) => s.stop()));
    for (const s of started.filter((s) => s.name !== 'ringkv')) await s.stop();
  });

  it.each([
    { order: 'the owner side first', prefix: 'sib-a', ownerFirst: true },
    { order: 'the owner side last', prefix: 'sib-b', ownerFirst: false },
  ])('keeps both versions as siblings, the same on every replica after healing; plain reads agree on the LWW winner; a new set supersedes both ($order)', async ({ prefix, ownerFirst }) => {
    const { key, list } = keyWithList(prefix);
    const [A, B, C] = list.map((id) => byId.get(id)!) as [RunningServer, RunningServer, RunningServer];
    const [a, b, c] = list as [string, string, string];
    const others = ids.filter((id) => !list.includes(id));
    const [d, e] = others as [string, string];
    const all = ids.map((id) => byId.get(id)!);
    // The master's lease table agrees: the first node of the list owns the key's range.
    expect(pieceOf(await view(master), hash64(Buffer.from(key, 'latin1'))).owner).toBe(a);

    // v0 on all three replicas.
    expect(await mcSet(A, key, 'v0')).toBe('STORED');
    await pollUntil('v0 on A, B, C', () => Promise.all([A, B, C].map((n) => local(n, key))), (rs) => rs.every((r) => r?.value === 'v0' && r.siblings.length === 0));

    // {A, D} | {B, C, E}, set on both sides.
    const sideOne = [a, d];
    const sideTwo = [b, c, e];
    for (const id of sideOne) await setPartition(byId.get(id)!, sideTwo);
    for (const id of sideTwo) await setPartition(byId.get(id)!, sideOne);

    try {
      // A coordinates v1 (its copy + a hinted copy on D); B coordinates v2 for the
      // unreachable owner (its copy + C's).
      if (ownerFirst) {
        expect(await mcSet(A, key, 'v1')).toBe('STORED');
        expect(await mcSet(B, key, 'v2')).toBe('STORED');
      } else {
        expect(await mcSet(B, key, 'v2')).toBe('STORED');
        expect(await mcSet(A, key, 'v1')).toBe('STORED');
      }
      // Each side holds its own write only.
      expect((await local(A, key))?.value).toBe('v1');
      expect((await local(B, key))?.value).toBe('v2');
      expect((await local(C, key))?.value).toBe('v2');
      // The sloppy quorum's hints: D keeps v1 for B or C, E keeps v2 for A.
      const onD = await local(byId.get(d)!, key);
      expect(onD?.value).toBe('v1');
      expect([b, c]).toContain(onD?.hintFor);
      const onE = await local(byId.get(e)!, key);
      expect(onE?.value).toBe('v2');
      expect(onE?.hintFor).toBe(a);
    } finally {
      for (const n of all) await setPartition(n, []);
    }

    // Hints replay and anti-entropy bring both versions to all three replicas.
    const converged = await pollUntil(
      'A, B, C holding the same two versions',
      () => Promise.all([A, B, C].map((n) => local(n, key))),
      (rs) => {
        const sets = rs.map(versionSet);
        return sets[0]!.length === 2 && sets.every((s) => JSON.stringify(s) === JSON.stringify(sets[0]));
      },
    );
    const [ra] = converged.value as [DebugLocal, DebugLocal, DebugLocal];
    const versions = [ra, ...ra.siblings];
    expect(versions.map((v) => v.value).sort()).toEqual(['v1', 'v2']);
    expect(versions.every((v) => !v.tombstone)).toBe(true);
    // Neither clock dominates the other: v1 has seen more of a, v2 has b's counter.
    const [x, y] = versions as [DebugVersion, DebugVersion];
    const ahead = (p: DebugVersion, q: DebugVersion) => Object.entries(p.version.clock).some(([id, n]) => n > (q.version.clock[id] ?? 0));
    expect(ahead(x, y) && ahead(y, x)).toBe(true);
    // The top-level record is the LWW winner: the larger HLC timestamp (ties broken by a
    // node-id rule: then the top-level record is simply what we trust). The write made
    // second has the larger timestamp (the HLC never goes back on one machine).
    const winner = ra;
    const loser = ra.siblings[0]!;
    expect(compareTs(winner, loser)).toBeGreaterThanOrEqual(0);
    expect(winner.value).toBe(ownerFirst ? 'v2' : 'v1');
    console.log(`siblings (${ownerFirst ? 'owner first' : 'owner last'}): ${key} on [${list}] converged in ${converged.ms} ms; winner ${winner.value} ts ${JSON.stringify(winner.version.ts)} clock ${JSON.stringify(winner.version.clock)}, sibling ${loser.value} ts ${JSON.stringify(loser.version.ts)} clock ${JSON.stringify(loser.version.clock)}`);

    // { siblings: true } returns both; a plain read the winner, through every front-end.
    kv ??= await RingClient.connect({ master: `127.0.0.1:${master.port}` });
    const items = await kv.get(key, { siblings: true });
    expect(items.map((it) => it.value.toString()).sort()).toEqual(['v1', 'v2']);
    expect(items[0]!.value.toString()).toBe(winner.value);
    expect((await kv.get(key))?.value.toString()).toBe(winner.value);
    for (const n of all) {
      expect(await mcGet(n, key), `memcached get through ${n.port}`).toBe(winner.value);
      const h = await request(n.httpPort!, 'GET', `/kv/${encodeURIComponent(key)}`);
      expect(h.status).toBe(200);
      expect(h.body.toString()).toBe(winner.value);
      const hs = await request(n.httpPort!, 'GET', `/kv/${encodeURIComponent(key)}?siblings=true`);
      expect(hs.status).toBe(200);
      expect(((json(hs) as { siblings: Array<{ value: string }> }).siblings.map((s) => s.value)).sort()).toEqual(['v1', 'v2']);
    }
    // Reads changed nothing on the replicas (read repair found them equal).
    for (const n of [A, B, C]) expect(versionSet(await local(n, key))).toEqual(versionSet(ra));

    // A new write supersedes both siblings, on every replica.
    expect(await mcSet(byId.get(e)!, key, 'v3')).toBe('STORED');
    await pollUntil(
      'v3 alone on A, B, C',
      () => Promise.all([A, B, C].map((n) => local(n, key))),
      (rs) => rs.every((r) => r?.value === 'v3' && r.siblings.length === 0),
    );
    const one = await kv.get(key, { siblings: true });
    expect(one.map((it) => it.value.toString())).toEqual(['v3']);
    for (const n of all) {
      expect(await mcGet(n, key)).toBe('v3');
      const hs = await request(n.httpPort!, 'GET', `/kv/${encodeURIComponent(key)}?siblings=true`);
      expect((json(hs) as { siblings: Array<{ value: string }> }).siblings.map((s) => s.value)).toEqual(['v3']);
    }
    const finals = await Promise.all([A, B, C].map((n) => local(n, key)));
    expect(new Set(finals.map((r) => JSON.stringify(versionSet(r)))).size).toBe(1);
  }, 60_000);

  it('leaves one version, the same on every replica, after two writers race through different nodes without a partition', async () => {
    const { key, list } = keyWithList('race');
    const replicas = list.map((id) => byId.get(id)!);
    const entries = ids.filter((id) => id !== list[0]).map((id) => byId.get(id)!);
    const writers = await Promise.all([McClient.connect(entries[0]!.port), McClient.connect(entries[1]!.port), McClient.connect(replicas[0]!.port)]);
    try {
      await Promise.all(
        writers.map(async (w, i) => {
          for (let j = 0; j < 50; j++) expect(await w.set(key, `w${i}-${j}`)).toBe('STORED');
        }),
      );
    } finally {
      for (const w of writers) w.close();
    }
    const { value: rs, ms } = await pollUntil(
      'one version on the three replicas',
      () => Promise.all(replicas.map((n) => local(n, key))),
      (rs) => rs.every((r) => r !== undefined && r.siblings.length === 0 && versionText(r) === versionText(rs[0]!)),
    );
    const last = rs[0]!.value;
    expect(last).toMatch(/^w[0-2]-49$/);
    for (const n of ids.map((id) => byId.get(id)!)) expect(await mcGet(n, key)).toBe(last);
    kv ??= await RingClient.connect({ master: `127.0.0.1:${master.port}` });
    expect((await kv.get(key, { siblings: true })).map((it) => it.value.toString())).toEqual([last]);
    console.log(`race: ${key} on [${list}] settled on ${last} in ${ms} ms, clock ${JSON.stringify(rs[0]!.version.clock)}`);
  }, 60_000);
});
