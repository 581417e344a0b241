// Anti-entropy (server/replication/anti-entropy.ts) between in-process replicas: each
// node is a MemoryStore and an AntiEntropy, wired to the others by a `call` that passes
// bodies and replies through msgpack (as the RPC would) and dispatches to the peer's
// handle() or to a small rep.get / rep.put. A node's merge is the vector-clock resolve
// (mergeRecords), store.put, then ae.noteWrite, as the node does. The expected state is
// computed from the definition: every replica of a key's range ends with mergeRecords of
// every version any of them held; and the incremental trees must equal a fresh build.
import { decode, encode } from '@msgpack/msgpack';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { hash64, initHash } from '../../ring/index.js';
import { ManualClock } from '../../server/clock.js';
import { AeError, aeEndToWire, AntiEntropy, type AeDeps, type AeRange } from '../../server/replication/anti-entropy.js';
import { mergeRecords, recordDigest } from '../../server/replication/versions.js';
import { MemoryStore } from '../../server/storage/memory-store.js';
import { decodeRecord, encodeRecord, type StoredRecord, type VectorClock } from '../../server/storage/record.js';
import type { Store } from '../../server/storage/store.js';

beforeAll(async () => {
  await initHash();
});

const T0 = 1_700_000_000_000;
const FP = 'ring-1';

// Four tokens; (T3, T0] wraps past 2^64 - 1.
const t = [0x2n << 60n, 0x6n << 60n, 0xan << 60n, 0xen << 60n] as const;
function threeNodeRanges(): AeRange[] {
  return [
    { start: t[3], end: t[0], replicas: ['a', 'b'] },
    { start: t[0], end: t[1], replicas: ['b', 'c'] },
    { start: t[1], end: t[2], replicas: ['a', 'c'] },
    { start: t[2], end: t[3], replicas: ['a', 'b', 'c'] },
  ];
}
function twoNodeRanges(): AeRange[] {
  return threeNodeRanges().map((r) => ({ ...r, replicas: ['a', 'b'] }));
}

function rec(value: string, clock: VectorClock, wallMs = T0, opts: { tombstone?: boolean; logical?: number } = {}): StoredRecord {
  const tombstone = opts.tombstone ?? false;
  return {
    value: tombstone ? Buffer.alloc(0) : Buffer.from(value),
    flags: 0,
    expiresAtMs: 0,
    version: { clock, ts: { wallMs, logical: opts.logical ?? 0 } },
    tombstone,
    fetched: false,
    accessedMs: wallMs,
  };
}

function position(key: string): bigint {
  return hash64(Buffer.from(key, 'latin1'));
}

function inRange(r: { start: bigint; end: bigint }, pos: bigint): boolean {
  const size = r.end > r.start ? r.end - r.start : r.end - r.start + (1n << 64n);
  return BigInt.asUintN(64, pos - r.start - 1n) < size;
}

/** `n` keys `${prefix}${i}` whose positions lie in `range`. */
function keysIn(range: { start: bigint; end: bigint }, n: number, prefix = 'k'): string[] {
  const keys: string[] = [];
  for (let i = 0; keys.length < n; i++) if (inRange(range, position(`${prefix}${i}`))) keys.push(`${prefix}${i}`);
  return keys;
}

/** What the RPC does to a body: msgpack there and back (bin arrives as Uint8Array). */
function wire<T>(v: unknown): T {
  return decode(encode(v, { ignoreUndefined: true })) as T;
}

function memoryStore(): MemoryStore {
  return new MemoryStore({ memoryBytes: 256 << 20, clock: new ManualClock(T0) });
}

/** What a node's code uses of its store here (a racing wrapper stands in for a MemoryStore). */
type NodeStore = Pick<Store, 'get' | 'scan' | 'put' | 'remove'>;

interface Node {
  id: string;
  store: NodeStore;
  ae: AntiEntropy;
  fingerprint: string;
  ranges: AeRange[];
}

type NodeOptions = Partial<Pick<AeDeps, 'depth' | 'scanBatch' | 'maxKeysPerRound'>> & { store?: NodeStore };

class Cluster {
  readonly nodes = new Map<string, Node>();
  readonly down = new Set<string>();
  readonly failing = new Set<string>();
  /** Replaces a peer's answer (a peer that lies). */
  tamper: ((to: string, type: string, reply: unknown) => unknown) | undefined;

  constructor(ranges: AeRange[], ids: string[], opts: NodeOptions = {}) {
    for (const id of ids) this.add(id, ranges, opts);
  }

  add(id: string, ranges: AeRange[], opts: NodeOptions = {}): Node {
    const store = opts.store ?? memoryStore();
    const node: Node = { id, store, fingerprint: FP, ranges, ae: undefined as unknown as AntiEntropy };
    node.ae = new AntiEntropy({
      selfId: id,
      layout: () => ({ fingerprint: node.fingerprint, ranges: node.ranges.filter((r) => r.replicas.includes(id)) }),
      store,
      call: <T>(peer: string, type: string, body: unknown) => this.call(peer, type, body) as Promise<T>,
      isUp: (peer) => !this.down.has(peer),
      merge: (key, record) => this.merge(id, key, record),
      depth: opts.depth,
      scanBatch: opts.scanBatch,
      maxKeysPerRound: opts.maxKeysPerRound,
    });
    this.nodes.set(id, node);
    return node;
  }

  node(id: string): Node {
    const n = this.nodes.get(id);
    if (n === undefined) throw new Error(`no node ${id}`);
    return n;
  }

  /** A local write on `id`, as a client's put: the store, then noteWrite. */
  write(id: string, key: string, record: StoredRecord): void {
    const n = this.node(id);
    n.store.put(key, record);
    n.ae.noteWrite(key, record);
  }

  remove(id: string, key: string): void {
    const n = this.node(id);
    n.store.remove(key);
    n.ae.noteWrite(key, undefined);
  }

  /** The node's merge: vector-clock resolve with what it holds, put, noteWrite. */
  merge(id: string, key: string, record: StoredRecord): void {
    const n = this.node(id);
    const held = n.store.get(key);
    const { record: merged } = mergeRecords(held === undefined ? [record] : [held, record], 16);
    n.store.put(key, merged);
    n.ae.noteWrite(key, merged);
  }

  async call(to: string, type: string, body: unknown): Promise<unknown> {
    await Promise.resolve();
    if (this.failing.has(to)) throw new Error(`${to} is unreachable`);
    const n = this.node(to);
    const b = wire<Record<string, unknown>>(body);
    let reply: unknown;
    if (type === 'rep.get') {
      reply = { records: (b.keys as string[]).map((k) => (n.store.get(k) === undefined ? null : encodeRecord(n.store.get(k)!))) };
    } else if (type === 'rep.put') {
      const items = b.items as { key: string; record: Uint8Array }[];
      for (const { key, record } of items) this.merge(to, key, decodeRecord(record));
      reply = { ok: items.length };
    } else {
      reply = await n.ae.handle(type as 'ae.roots', b);
    }
    reply = wire(reply);
    return this.tamper === undefined ? reply : this.tamper(to, type, reply);
  }

  /** Rounds by every node in turn until a whole pass exchanges nothing; returns the passes that exchanged keys. */
  async settle(maxPasses = 50): Promise<number> {
    for (let pass = 0; pass < maxPasses; pass++) {
      let exchanged = 0;
      for (const n of this.nodes.values()) exchanged += (await n.ae.round()).keysExchanged;
      if (exchanged === 0) return pass;
    }
    throw new Error(`no convergence after ${maxPasses} passes`);
  }
}

/** Every record of a store, key -> record. */
async function contents(store: Pick<Store, 'scan'>): Promise<Map<string, StoredRecord>> {
  const out = new Map<string, StoredRecord>();
  let after: string | undefined;
  while ((after = await store.scan(after, 100, (k, r) => out.set(k, r))) !== undefined);
  return out;
}

/** Every key held by some replica of a range is held by all of its replicas, with one digest. */
async function expectConverged(c: Cluster): Promise<void> {
  const held = new Map<string, Map<string, StoredRecord>>();
  for (const n of c.nodes.values()) held.set(n.id, await contents(n.store));
  for (const range of c.nodes.values().next().value!.ranges) {
    const keys = new Set<string>();
    for (const id of range.replicas) for (const k of held.get(id)!.keys()) if (inRange(range, position(k))) keys.add(k);
    for (const k of keys) {
      const digests = range.replicas.map((id) => {
        const r = held.get(id)!.get(k);
        return r === undefined ? undefined : recordDigest(r);
      });
      expect(new Set(digests).size, `key ${k} on ${range.replicas.join(',')}: ${digests.join(' vs ')}`).toBe(1);
      expect(digests[0]).toBeDefined();
    }
  }
}

/** The roots the node serves equal those of a fresh AntiEntropy built from its store by one scan. */
async function expectTreesFresh(n: Node, depth?: number): Promise<void> {
  const layout = { fingerprint: n.fingerprint, ranges: n.ranges.filter((r) => r.replicas.includes(n.id)) };
  const fresh = new AntiEntropy({
    selfId: n.id,
    layout: () => layout,
    store: n.store,
    call: () => Promise.reject(new Error('unused')),
    isUp: () => true,
    merge: () => undefined,
    depth,
  });
  const body = { fingerprint: n.fingerprint, ends: layout.ranges.map((r) => aeEndToWire(r.end)) };
  expect(await n.ae.handle('ae.roots', body)).toEqual(await fresh.handle('ae.roots', body));
}

describe('anti-entropy rounds', () => {
  it('exchanges no keys between identical replicas', async () => {
    const c = new Cluster(threeNodeRanges(), ['a', 'b', 'c']);
    const ranges = threeNodeRanges();
    // Empty stores first.
    expect(await c.node('a').ae.round()).toEqual({ peers: 2, rangesCompared: 4, rangesDiffering: 0, keysExchanged: 0, failedPeers: [] });
    // Then the same records on every replica of each range, written in different orders.
    for (const range of ranges) {
      const keys = keysIn(range, 25);
      for (const id of range.replicas) {
        const order = id === 'a' ? keys : [...keys].reverse();
        for (const k of order) c.write(id, k, rec(`v-${k}`, { a: 1, b: 2 }, T0 + k.length));
      }
    }
    for (const id of ['a', 'b', 'c']) {
      const res = await c.node(id).ae.round();
      expect(res).toEqual({ peers: 2, rangesCompared: 4, rangesDiffering: 0, keysExchanged: 0, failedPeers: [] });
    }
    expect(c.node('a').ae.counters).toEqual({ rounds: 2, keysExchanged: 0, rangesDiffering: 0 });
  });

  it('repairs a missing key, a stale version, a tombstone and siblings in both directions', async () => {
    const c = new Cluster(twoNodeRanges(), ['a', 'b']);
    // Keys in the wrapping range and in a plain one.
    const [k0, k1, k2, k3] = keysIn(twoNodeRanges()[0]!, 4, 'w');
    const [k4, k5, k6, k7] = keysIn(twoNodeRanges()[2]!, 4, 'p');
    c.write('a', k0!, rec('only-a', { a: 1 }));
    c.write('b', k1!, rec('only-b', { b: 1 }));
    c.write('a', k2!, rec('old', { a: 1 }));
    c.write('b', k2!, rec('new', { a: 2 }, T0 + 1));
    c.write('a', k3!, rec('new', { a: 2 }, T0 + 1));
    c.write('b', k3!, rec('old', { a: 1 }));
    c.write('a', k4!, rec('live', { a: 1 }));
    c.write('b', k4!, rec('', { a: 1, b: 1 }, T0 + 1, { tombstone: true }));
    c.write('a', k5!, rec('', { a: 2 }, T0 + 1, { tombstone: true }));
    c.write('b', k5!, rec('live', { a: 1 }));
    c.write('a', k6!, rec('x', { a: 1 }));
    c.write('b', k6!, rec('y', { b: 1 }, T0 + 1));
    c.merge('a', k7!, rec('p', { a: 1 }));
    c.merge('a', k7!, rec('q', { b: 1 }));
    c.write('b', k7!, rec('r', { c: 1 }));

    const res = await c.node('a').ae.round();
    expect(res.keysExchanged).toBe(8);
    expect(res.rangesDiffering).toBe(2);
    expect(res.failedPeers).toEqual([]);
    await expectConverged(c);
    for (const id of ['a', 'b']) {
      const s = c.node(id).store;
      expect(s.get(k0!)?.value.toString()).toBe('only-a');
      expect(s.get(k1!)?.value.toString()).toBe('only-b');
      expect(s.get(k2!)?.value.toString()).toBe('new');
      expect(s.get(k3!)?.value.toString()).toBe('new');
      expect(s.get(k4!)?.tombstone).toBe(true);
      expect(s.get(k5!)?.tombstone).toBe(true);
      const sib6 = [s.get(k6!)!, ...(s.get(k6!)!.siblings ?? [])].map((r) => r.value.toString()).sort();
      expect(sib6).toEqual(['x', 'y']);
      const sib7 = [s.get(k7!)!, ...(s.get(k7!)!.siblings ?? [])].map((r) => r.value.toString()).sort();
      expect(sib7).toEqual(['p', 'q', 'r']);
      await expectTreesFresh(c.node(id));
    }
    // Nothing is left to do, from either side.
    expect((await c.node('a').ae.round()).keysExchanged).toBe(0);
    expect((await c.node('b').ae.round()).keysExchanged).toBe(0);
    expect(c.node('a').ae.counters).toEqual({ rounds: 2, keysExchanged: 8, rangesDiffering: 2 });
  });

  it('keeps the trees equal to a fresh build across puts, overwrites and removes', async () => {
    const c = new Cluster(twoNodeRanges(), ['a', 'b'], { depth: 3 });
    const keys = keysIn({ start: 0n, end: 0n }, 40);
    for (const k of keys) c.write('a', k, rec(k, { a: 1 }));
    await c.node('a').ae.round(); // builds the trees (and copies everything to b)
    for (const k of keys.slice(0, 10)) c.write('a', k, rec(`${k}!`, { a: 2 }, T0 + 1));
    for (const k of keys.slice(10, 20)) c.remove('a', k);
    for (const k of keys.slice(20, 25)) c.write('a', k, rec('', { a: 3 }, T0 + 2, { tombstone: true }));
    await expectTreesFresh(c.node('a'), 3);
    await c.node('b').ae.round();
    await expectConverged(c);
  });

  it('rebuilds the trees when the ring fingerprint changes', async () => {
    const all = twoNodeRanges();
    const c = new Cluster([all[0]!], ['a', 'b']);
    const [k] = keysIn(all[1]!, 1);
    c.write('a', k!, rec('moved', { a: 1 }));
    expect((await c.node('a').ae.round()).keysExchanged).toBe(0); // not a range of ours yet
    for (const n of c.nodes.values()) {
      n.fingerprint = 'ring-2';
      n.ranges = all;
    }
    const res = await c.node('a').ae.round();
    expect(res).toMatchObject({ rangesCompared: 4, keysExchanged: 1, failedPeers: [] });
    expect(c.node('b').store.get(k!)?.value.toString()).toBe('moved');
  });

  it('exchanges at most maxKeysPerRound keys with a peer per round, and finishes later', async () => {
    const whole: AeRange[] = [{ start: 5n, end: 5n, replicas: ['a', 'b'] }];
    const c = new Cluster(whole, ['a', 'b'], { maxKeysPerRound: 7 });
    const keys = keysIn(whole[0]!, 30);
    for (const k of keys.slice(0, 20)) c.write('a', k, rec(k, { a: 1 }));
    for (const k of keys.slice(20)) c.write('b', k, rec(k, { b: 1 }));
    const exchanged: number[] = [];
    for (let i = 0; i < 10; i++) {
      const n = (await c.node('a').ae.round()).keysExchanged;
      exchanged.push(n);
      if (n === 0) break;
    }
    expect(exchanged).toEqual([7, 7, 7, 7, 2, 0]);
    await expectConverged(c);
    expect((await contents(c.node('b').store)).size).toBe(30);
  });
});

describe('tree build', () => {
  it('does not miss writes that race the scan, and concurrent callers share one build', async () => {
    const range: AeRange = { start: 0n, end: 0n, replicas: ['a', 'b'] };
    const mem = memoryStore();
    const keys = keysIn(range, 30).sort();
    for (const k of keys) mem.put(k, rec(k, { a: 1 }));
    const starts: (string | undefined)[] = [];
    const hooks: (() => void)[] = [];
    const racing: NodeStore = {
      get: (k) => mem.get(k),
      put: (k, r) => mem.put(k, r),
      remove: (k) => mem.remove(k),
      scan: async (after, limit, visit) => {
        starts.push(after);
        const last = await mem.scan(after, limit, visit);
        hooks.shift()?.(); // a write between two scan steps
        return last;
      },
    };
    const c = new Cluster([range], ['b']);
    const a = c.add('a', [range], { store: racing, scanBatch: 4 });
    const write = (k: string, r: StoredRecord | undefined): void => {
      if (r === undefined) mem.remove(k);
      else mem.put(k, r);
      a.ae.noteWrite(k, r);
    };
    hooks.push(
      () => write(keys[0]!, rec('overwritten', { a: 2 }, T0 + 1)), // already visited
      () => write('!first', rec('behind the cursor', { a: 1 })), // sorts before every scanned key
      () => write(keys[1]!, undefined), // visited, then removed
      () => write(keys[29]!, rec('ahead', { a: 3 }, T0 + 2)), // not visited yet
    );
    const body = { fingerprint: FP, ends: [aeEndToWire(0n)] };
    const [r1, r2] = await Promise.all([a.ae.handle('ae.roots', body), a.ae.handle('ae.roots', body)]);
    expect(r1).toEqual(r2);
    expect(starts.filter((s) => s === undefined)).toHaveLength(1);
    expect(hooks).toHaveLength(0);
    // b holds exactly what a's store holds now: the round must find nothing to exchange.
    for (const [k, r] of await contents(mem)) c.write('b', k, r);
    expect(await a.ae.round()).toMatchObject({ rangesDiffering: 0, keysExchanged: 0 });
    expect(starts.filter((s) => s === undefined)).toHaveLength(1); // built once
  });

  it('ignores keys whose position is in no range of ours, at build and at write', async () => {
    const ranges = threeNodeRanges();
    const c = new Cluster(ranges, ['a', 'b', 'c']);
    const [outside1, outside2] = keysIn(ranges[1]!, 2); // replicated by b and c only
    c.write('a', outside1!, rec('stray', { a: 1 }));
    const body = { fingerprint: FP, ends: [ranges[0]!, ranges[2]!, ranges[3]!].map((r) => aeEndToWire(r.end)) };
    // a's trees, built after the first stray write, equal those of an empty a.
    const empty = await new Cluster(ranges, ['a']).node('a').ae.handle('ae.roots', body);
    expect(await c.node('a').ae.handle('ae.roots', body)).toEqual(empty);
    c.write('a', outside2!, rec('stray too', { a: 1 }));
    expect(await c.node('a').ae.handle('ae.roots', body)).toEqual(empty);
    expect(await c.node('a').ae.round()).toMatchObject({ keysExchanged: 0, rangesDiffering: 0 });
    expect(c.node('b').store.get(outside1!)).toBeUndefined();
    expect(c.node('c').store.get(outside2!)).toBeUndefined();
    // The range a does not replicate is answered null.
    expect(await c.node('a').ae.handle('ae.roots', { fingerprint: FP, ends: [aeEndToWire(ranges[1]!.end)] })).toEqual({ roots: [null] });
  });
});

describe('failures', () => {
  it('reports RING_MISMATCH, failing and lying peers in failedPeers, skips down ones, and repairs the rest', async () => {
    const range: AeRange[] = [{ start: 7n, end: 7n, replicas: ['a', 'b', 'c', 'd', 'e', 'f'] }];
    const c = new Cluster(range, ['a', 'b', 'c', 'd', 'e', 'f']);
    const [k] = keysIn(range[0]!, 1);
    c.write('a', k!, rec('v', { a: 1 }));
    c.failing.add('b');
    c.node('c').fingerprint = 'ring-other';
    c.down.add('e');
    c.tamper = (to, type, reply) => (to === 'f' && type === 'ae.roots' ? { roots: [12345] } : reply);

    const res = await c.node('a').ae.round();
    expect(res).toEqual({ peers: 4, rangesCompared: 1, rangesDiffering: 1, keysExchanged: 1, failedPeers: ['b', 'c', 'f'] });
    expect(c.node('d').store.get(k!)?.value.toString()).toBe('v');
    for (const id of ['b', 'c', 'e', 'f']) expect(c.node(id).store.get(k!)).toBeUndefined();
    expect(c.node('a').ae.counters.rounds).toBe(1);

    await expect(c.node('c').ae.handle('ae.roots', { fingerprint: FP, ends: [] })).rejects.toMatchObject({ code: 'RING_MISMATCH' });
    await expect(c.node('c').ae.handle('ae.keys', { fingerprint: FP, leaves: [] })).rejects.toBeInstanceOf(AeError);
  });

  it('fails a peer that answers keys outside the leaves asked for, or corrupt records', async () => {
    const c = new Cluster(twoNodeRanges(), ['a', 'b']);
    const [k, other] = keysIn(twoNodeRanges()[3]!, 2);
    const [far] = keysIn(twoNodeRanges()[0]!, 1);
    c.write('b', k!, rec('v', { b: 1 }));
    c.tamper = (_to, type, reply) => (type === 'ae.keys' ? { keys: [...(reply as { keys: unknown[] }).keys, [far, 'x']] } : reply);
    expect((await c.node('a').ae.round()).failedPeers).toEqual(['b']);
    c.tamper = (_to, type, reply) => (type === 'rep.get' ? { records: [new Uint8Array([1, 2, 3])] } : reply);
    expect((await c.node('a').ae.round()).failedPeers).toEqual(['b']);
    expect(c.node('a').store.get(k!)).toBeUndefined();
    c.tamper = undefined;
    c.write('b', other!, rec('w', { b: 1 }));
    expect(await c.node('a').ae.round()).toMatchObject({ failedPeers: [], keysExchanged: 2 });
    await expectConverged(c);
  });

  it('refuses malformed requests with BAD_REQUEST', async () => {
    const c = new Cluster(twoNodeRanges(), ['a', 'b']);
    const ae = c.node('a').ae;
    const end = aeEndToWire(twoNodeRanges()[0]!.end);
    const unknownEnd = aeEndToWire(123n);
    const bad: [string, unknown][] = [
      ['ae.roots', null],
      ['ae.roots', []],
      ['ae.roots', {}],
      ['ae.roots', { fingerprint: 1, ends: [] }],
      ['ae.roots', { fingerprint: FP }],
      ['ae.roots', { fingerprint: FP, ends: 'x' }],
      ['ae.roots', { fingerprint: FP, ends: ['0X12'] }],
      ['ae.roots', { fingerprint: FP, ends: ['ABCDEF0123456789'] }],
      ['ae.roots', { fingerprint: FP, ends: ['123'] }],
      ['ae.roots', { fingerprint: FP, ends: new Array(5000).fill(end) }],
      ['ae.leaves', { fingerprint: FP, ends: [unknownEnd] }],
      ['ae.keys', { fingerprint: FP, leaves: [{ end, leaf: 64 }] }],
      ['ae.keys', { fingerprint: FP, leaves: [{ end, leaf: -1 }] }],
      ['ae.keys', { fingerprint: FP, leaves: [{ end, leaf: 1.5 }] }],
      ['ae.keys', { fingerprint: FP, leaves: [{ end: unknownEnd, leaf: 0 }] }],
      ['ae.keys', { fingerprint: FP, leaves: [null] }],
      ['ae.nodes', { fingerprint: FP }],
    ];
    for (const [type, body] of bad) {
      await expect(ae.handle(type as 'ae.roots', body), `${type} ${JSON.stringify(body)?.slice(0, 80)}`).rejects.toMatchObject({ code: 'BAD_REQUEST' });
    }
    // Well-formed: a known end, a whole leaf level of 2^6 hashes, an empty leaf.
    expect(await ae.handle('ae.leaves', { fingerprint: FP, ends: [end] })).toMatchObject({ leaves: [expect.any(Array)] });
    expect(((await ae.handle('ae.leaves', { fingerprint: FP, ends: [end] })) as { leaves: string[][] }).leaves[0]).toHaveLength(64);
    expect(await ae.handle('ae.keys', { fingerprint: FP, leaves: [{ end, leaf: 63 }] })).toEqual({ keys: [] });
  });
});

describe('convergence (property)', () => {
  const ids = ['a', 'b', 'c'] as const;
  const poolSize = 16;

  interface Spec {
    key: number;
    clock: Record<string, number>;
    wallOffset: number;
    logical: number;
    tombstone: boolean;
    holders: number[];
  }
  const spec: fc.Arbitrary<Spec> = fc.record({
    key: fc.integer({ min: 0, max: poolSize - 1 }),
    clock: fc.record({ a: fc.nat(3), b: fc.nat(3), c: fc.nat(3) }),
    wallOffset: fc.nat(4),
    logical: fc.nat(1),
    tombstone: fc.boolean(),
    holders: fc.uniqueArray(fc.nat(2), { minLength: 1, maxLength: 3 }),
  });

  it('every replica ends with mergeRecords of every version of its ranges', async () => {
    // Four keys in each of the four ranges.
    const keyPool = threeNodeRanges().flatMap((r, i) => keysIn(r, poolSize / 4, `r${i}-`));
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 2, max: 3 }),
        fc.array(spec, { maxLength: 60, size: 'max' }),
        fc.constantFrom(1, 3, 10_000),
        fc.integer({ min: 1, max: 6 }),
        async (nodeCount, specs, maxKeysPerRound, depth) => {
          const ranges = nodeCount === 3 ? threeNodeRanges() : twoNodeRanges();
          const c = new Cluster(ranges, ids.slice(0, nodeCount), { maxKeysPerRound, depth, scanBatch: 5 });
          const versions = new Map<string, StoredRecord[]>();
          const clocksSeen = new Set<string>();
          for (const s of specs) {
            const key = keyPool[s.key]!;
            const range = ranges.find((r) => inRange(r, position(key)))!;
            const clock = Object.fromEntries(Object.entries(s.clock).filter(([id, n]) => n > 0 && ids.indexOf(id as 'a') < nodeCount));
            // One clock, one write; at most 6 versions of a key (no sibling collapse).
            const clockText = `${key} ${JSON.stringify(clock)}`;
            if (Object.keys(clock).length === 0 || clocksSeen.has(clockText) || (versions.get(key)?.length ?? 0) >= 6) continue;
            clocksSeen.add(clockText);
            const r = rec(`${clockText}`, clock, T0 + s.wallOffset, { tombstone: s.tombstone, logical: s.logical });
            versions.set(key, [...(versions.get(key) ?? []), r]);
            const holders = s.holders.map((h) => range.replicas[h % range.replicas.length]!);
            // Some versions arrive before the trees exist, others after (through noteWrite).
            for (const id of new Set(holders)) c.merge(id, key, r);
            if (s.wallOffset === 0 && s.logical === 1) await c.node(range.replicas[0]!).ae.round();
          }
          await c.settle();
          for (const n of c.nodes.values()) {
            for (const key of keyPool) {
              const range = ranges.find((r) => inRange(r, position(key)))!;
              const all = versions.get(key);
              const held = n.store.get(key);
              if (all === undefined || !range.replicas.includes(n.id)) {
                expect(held).toBeUndefined();
                continue;
              }
              const expected = mergeRecords(all, 16).record;
              expect(held && recordDigest(held), `${key} on ${n.id}`).toBe(recordDigest(expected));
              expect(held!.value.equals(expected.value)).toBe(true);
            }
            await expectTreesFresh(n, depth);
          }
        },
      ),
      { numRuns: 60 },
    );
  });
});
