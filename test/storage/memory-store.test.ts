// MemoryStore beyond the conformance suite: it is bounded by memoryBytes and evicts the
// least recently used records, as memcached does, counting each eviction.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../server/clock.js';
import { MemoryStore } from '../../server/storage/memory-store.js';
import { MEMORY_RECORD_OVERHEAD_BYTES as RECORD_OVERHEAD_BYTES } from '../../server/storage/store.js';
import type { StoredRecord } from '../../server/storage/record.js';
import { content, rec, scanAll, type Content } from './fixtures.js';

const VALUE_BYTES = 100;
/** What one record of the tests below costs: key 'kN' (2 bytes), value, overhead. */
const CHARGE = 2 + VALUE_BYTES + RECORD_OVERHEAD_BYTES;

function storeFor(records: number): MemoryStore {
  return new MemoryStore({ memoryBytes: records * CHARGE, clock: new ManualClock() });
}

const value = (i: number) => Buffer.alloc(VALUE_BYTES, 0x30 + i);

describe('MemoryStore eviction', () => {
  it('evicts the least recently written record once memoryBytes is exceeded', async () => {
    const store = storeFor(5);
    await store.open();
    for (let i = 0; i < 5; i++) store.put(`k${i}`, rec(value(i)));
    expect(store.stats().evictions).toBe(0);
    expect(store.stats().items).toBe(5);
    store.put('k5', rec(value(5)));
    expect(store.get('k0')).toBeUndefined();
    for (let i = 1; i <= 5; i++) expect(store.get(`k${i}`)?.value.equals(value(i))).toBe(true);
    expect(store.stats().evictions).toBe(1);
    expect(store.stats().items).toBe(5);
    expect(store.stats().bytes).toBeLessThanOrEqual(store.stats().limitBytes);
    await store.close();
  });

  it('a recently read record survives the eviction of older ones', async () => {
    const store = storeFor(5);
    for (let i = 0; i < 5; i++) store.put(`k${i}`, rec(value(i)));
    expect(store.get('k0')).toBeDefined(); // k0 is now the most recently used
    store.put('k5', rec(value(5)));
    store.put('k6', rec(value(6)));
    expect(store.get('k0')?.value.equals(value(0))).toBe(true);
    expect(store.get('k1')).toBeUndefined();
    expect(store.get('k2')).toBeUndefined();
    expect(store.get('k3')).toBeDefined();
    expect(store.stats().evictions).toBe(2);
    await store.close();
  });

  it('an overwrite refreshes recency too', async () => {
    const store = storeFor(3);
    for (let i = 0; i < 3; i++) store.put(`k${i}`, rec(value(i)));
    store.put('k0', rec(value(9)));
    store.put('k3', rec(value(3)));
    expect(store.get('k0')?.value.equals(value(9))).toBe(true);
    expect(store.get('k1')).toBeUndefined();
    expect(store.stats().evictions).toBe(1);
    await store.close();
  });

  it('one large record evicts as many older ones as it needs', async () => {
    const store = storeFor(10);
    for (let i = 0; i < 10; i++) store.put(`k${i}`, rec(value(i)));
    // Three records' worth of room.
    store.put('kb', rec(Buffer.alloc(3 * CHARGE - 2 - RECORD_OVERHEAD_BYTES)));
    expect(store.stats().evictions).toBe(3);
    for (let i = 0; i < 3; i++) expect(store.get(`k${i}`)).toBeUndefined();
    for (let i = 3; i < 10; i++) expect(store.get(`k${i}`)).toBeDefined();
    expect(store.stats().bytes).toBe(10 * CHARGE);
    await store.close();
  });

  it('a record larger than the whole store is not kept, counts as an eviction, and takes the old value with it', async () => {
    const store = storeFor(4);
    store.put('k', rec(value(1)));
    store.put('other', rec(value(2)));
    store.put('k', rec(Buffer.alloc(5 * CHARGE)));
    // Serving the old value in place of the refused one would be a stale read.
    expect(store.get('k')).toBeUndefined();
    expect(store.get('other')).toBeDefined();
    expect(store.stats().evictions).toBe(1);
    expect(store.stats().items).toBe(1);
    await store.close();
  });

  it('reading is what counts as use, not the order of keys', async () => {
    const store = storeFor(4);
    for (const k of ['k3', 'k1', 'k0', 'k2']) store.put(k, rec(value(0)));
    store.get('k3');
    store.get('k1');
    store.put('k4', rec(value(4)));
    store.put('k5', rec(value(5)));
    expect([...(await scanAll(store, 10))].map(([k]) => k)).toEqual(['k1', 'k3', 'k4', 'k5']);
    await store.close();
  });

  it('under eviction pressure, items, bytes and evictions stay consistent with what is held (tombstones included)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.record({ key: fc.nat({ max: 15 }), size: fc.nat({ max: 300 }), tombstone: fc.boolean(), read: fc.nat({ max: 15 }) }),
          { maxLength: 80 },
        ),
        async (ops) => {
          const store = new MemoryStore({ memoryBytes: 2000, clock: new ManualClock() });
          let writes = 0;
          for (const op of ops) {
            store.put(`key${op.key}`, rec(Buffer.alloc(op.size, 1), { tombstone: op.tombstone }));
            writes++;
            store.get(`key${op.read}`);
          }
          const held = await scanAll(store, 1000);
          const s = store.stats();
          expect(s.items).toBe(held.filter(([, c]) => !c.tombstone).length);
          expect(s.bytes).toBe(held.reduce((sum, [k, c]) => sum + k.length + c.value.length / 2 + RECORD_OVERHEAD_BYTES, 0));
          expect(s.bytes).toBeLessThanOrEqual(s.limitBytes);
          // Every write is either held, overwritten, or evicted; overwrites are not evictions.
          expect(s.evictions).toBeLessThanOrEqual(writes);
          const distinctWritten = new Set(ops.map((o) => o.key)).size;
          expect(s.evictions).toBeGreaterThanOrEqual(distinctWritten - held.length);
          await store.close();
        },
      ),
      { numRuns: 50 },
    );
  });
});

// The compact representation (server/storage/compact-item.ts): records are bytes in shared
// segments, and get() decodes one. What callers rely on must hold all the same.
describe('MemoryStore compact records', () => {
  const MIN_TABLE = 1024;
  const clock = () => new ManualClock();
  const T = 1_700_000_000_000;

  it('get returns own fields, so a spread keeps every one of them', () => {
    const store = new MemoryStore({ memoryBytes: 1 << 20, clock: clock() });
    store.put('k', rec('v', { flags: 5, expiresAtMs: 7, clock: { a: 1, b: 2 } }));
    const r = store.get('k')!;
    const copy = { ...r };
    expect(Object.keys(copy).sort()).toEqual(['accessedMs', 'expiresAtMs', 'fetched', 'flags', 'tombstone', 'value', 'version']);
    expect(copy.version.clock).toEqual({ a: 1, b: 2 });
    expect(copy.flags).toBe(5);
  });

  it('fetched and accessedMs set on a record that get returned persist: on the next get, past the cache of records handed out, in scan', async () => {
    const store = new MemoryStore({ memoryBytes: 1 << 20, clock: clock() });
    for (let i = 0; i < 1000; i++) store.put(`k${i}`, rec(`v${i}`, { ts: { wallMs: T, logical: 0 } }));
    const r = store.get('k1')!;
    expect(r.fetched).toBe(false);
    expect(r.accessedMs).toBe(T);
    r.fetched = true;
    r.accessedMs = T + 5;
    // The same object while it is tracked, as a Map of objects would return.
    expect(store.get('k1')).toBe(r);
    // Hundreds of other reads push it out of the cache: its fields were written back.
    for (let i = 2; i < 1000; i++) store.get(`k${i}`)!.accessedMs = T + i;
    const again = store.get('k1')!;
    expect(again.fetched).toBe(true);
    expect(again.accessedMs).toBe(T + 5);
    const seen = new Map<string, [boolean, number]>();
    await store.scan(undefined, 2000, (k, x) => seen.set(k, [x.fetched, x.accessedMs]));
    expect(seen.get('k1')).toEqual([true, T + 5]);
    expect(seen.get('k500')).toEqual([false, T + 500]);
    expect(seen.get('k0')).toEqual([false, T]);
  });

  it('a new write starts with the record\'s own access bits', () => {
    const store = new MemoryStore({ memoryBytes: 1 << 20, clock: clock() });
    store.put('k', rec('a'));
    const r = store.get('k')!;
    r.fetched = true;
    store.put('k', rec('b'));
    expect(store.get('k')!.fetched).toBe(false);
    expect(store.get('k')!.value.toString()).toBe('b');
  });

  it('putting the record get returned is a touch; a changed copy of it is a write', () => {
    const store = new MemoryStore({ memoryBytes: 1 << 20, clock: clock() });
    store.put('a', rec('1'));
    store.put('b', rec('2'));
    const a = store.get('a')!;
    a.fetched = true;
    const before = store.stats();
    store.put('a', a);
    expect(store.stats()).toEqual(before);
    expect(store.get('a')).toBe(a);
    store.put('a', { ...a, flags: 9 });
    expect(store.get('a')!.flags).toBe(9);
    expect(store.get('a')!.fetched).toBe(true);
  });

  it('values handed out are copies: later writes, evictions and compactions do not change them', () => {
    const store = new MemoryStore({ memoryBytes: 20_000, clock: clock() });
    store.put('k', rec(Buffer.alloc(100, 1)));
    const r = store.get('k')!;
    // Churn: overwrites, evictions and compactions reuse the segment bytes.
    for (let i = 0; i < 2000; i++) store.put(`x${i % 50}`, rec(Buffer.alloc(50 + (i % 200), i & 0xff)));
    expect(store.arenaStats().compactions).toBeGreaterThan(0);
    expect(r.value.equals(Buffer.alloc(100, 1))).toBe(true);
  });

  it('the index (an open-addressing table) finds every key through growth, removals and reuse of slots', async () => {
    const store = new MemoryStore({ memoryBytes: 1 << 30, clock: clock() });
    const held = new Set<string>();
    let seed = 7;
    const rnd = (n: number) => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) % n;
    for (let round = 0; round < 6; round++) {
      for (let i = 0; i < 8000; i++) {
        const k = `key:${rnd(20_000)}`;
        store.put(k, rec(k));
        held.add(k);
      }
      for (let i = 0; i < 6000; i++) {
        const k = `key:${rnd(20_000)}`;
        store.remove(k);
        held.delete(k);
      }
      for (let i = 0; i < 20_000; i++) {
        const k = `key:${i}`;
        const r = store.get(k);
        if (held.has(k)) expect(r?.value.toString(), k).toBe(k);
        else expect(r, k).toBeUndefined();
      }
      expect(store.stats().items).toBe(held.size);
    }
    expect(store.arenaStats().buckets).toBeGreaterThan(MIN_TABLE);
    expect((await scanAll(store, 997)).map(([k]) => k)).toEqual([...held].sort());
  });

  it('keys with code units above 0xff are keys of their own', async () => {
    const store = new MemoryStore({ memoryBytes: 1 << 20, clock: clock() });
    const keys = ['\u00e9', '\u0100', '\u00c3\u00a9', 'a\u20acb', '\ud83d\ude00', '\ud800', 'plain'];
    keys.forEach((k, i) => store.put(k, rec(`v${i}`)));
    keys.forEach((k, i) => expect(store.get(k)?.value.toString(), JSON.stringify(k)).toBe(`v${i}`));
    expect(store.get('\u0101')).toBeUndefined();
    expect((await scanAll(store, 3)).map(([k]) => k)).toEqual([...keys].sort());
    // A key stored two bytes per code unit is charged for them.
    const wide = new MemoryStore({ memoryBytes: 1 << 20, clock: clock() });
    wide.put('\u0100\u0100', rec('v'));
    const narrow = new MemoryStore({ memoryBytes: 1 << 20, clock: clock() });
    narrow.put('\u00ff\u00ff', rec('v'));
    expect(wide.stats().bytes - narrow.stats().bytes).toBe(2);
  });

  it('siblings are kept and read back', () => {
    const store = new MemoryStore({ memoryBytes: 1 << 20, clock: clock() });
    const sib = rec('other', { clock: { n2: 1 }, ts: { wallMs: T - 1, logical: 0 } });
    store.put('k', { ...rec('mine', { clock: { n1: 1 } }), siblings: [sib] });
    const r = store.get('k')!;
    expect(r.value.toString()).toBe('mine');
    expect(r.siblings).toHaveLength(1);
    expect(r.siblings![0]!.value.toString()).toBe('other');
    expect(r.siblings![0]!.version).toEqual(sib.version);
    // Charged as encoded: more than the same record without siblings.
    const plain = new MemoryStore({ memoryBytes: 1 << 20, clock: clock() });
    plain.put('k', rec('mine', { clock: { n1: 1 } }));
    expect(store.stats().bytes).toBeGreaterThan(plain.stats().bytes);
  });

  it('records too large for a segment get a Buffer of their own, freed with them', () => {
    const store = new MemoryStore({ memoryBytes: 64 * 1024 * 1024, clock: clock() });
    const big = Buffer.alloc(512 * 1024, 3);
    store.put('big', rec(big));
    store.put('small', rec('s'));
    expect(store.arenaStats().largeBytes).toBeGreaterThan(big.length);
    expect(store.get('big')!.value.equals(big)).toBe(true);
    const r = store.get('big')!;
    r.fetched = true;
    for (let i = 0; i < 300; i++) store.get('small');
    expect(store.get('big')!.fetched).toBe(true);
    store.put('big', rec('now small'));
    expect(store.arenaStats().largeBytes).toBe(0);
    expect(store.get('big')!.value.toString()).toBe('now small');
  });

  it('segments and large items together stay within 1.25x memoryBytes when the sizes written change', () => {
    const memoryBytes = 2_000_000; // segments of 32 KiB, items of 4 KiB and more have a buffer of their own
    const store = new MemoryStore({ memoryBytes, clock: clock() });
    const within = () => {
      const a = store.arenaStats();
      // Segments still holding a few live items give way as those are evicted.
      expect(a.segments * a.segmentBytes + a.largeBytes).toBeLessThanOrEqual(memoryBytes * 1.25 + 2 * a.segmentBytes);
    };
    for (let i = 0; i < 20_000; i++) store.put(`small${i}`, rec(Buffer.alloc(100, 1)));
    within();
    for (let i = 0; i < 1000; i++) {
      store.put(`large${i}`, rec(Buffer.alloc(8000, 2)));
      within();
    }
    expect(store.arenaStats().largeBytes).toBeGreaterThan(memoryBytes / 2);
    expect(store.get('large999')!.value.equals(Buffer.alloc(8000, 2))).toBe(true);
  });

  it('under churn, matches an LRU model: content, access bits, order of eviction and counts; segments stay within the bound', async () => {
    let compactions = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.oneof(
            { weight: 5, arbitrary: fc.record({ op: fc.constant('put' as const), key: fc.nat({ max: 79 }), size: fc.nat({ max: 400 }), tombstone: fc.boolean(), flags: fc.nat() }) },
            { weight: 4, arbitrary: fc.record({ op: fc.constant('get' as const), key: fc.nat({ max: 79 }), mark: fc.boolean() }) },
            { weight: 1, arbitrary: fc.record({ op: fc.constant('remove' as const), key: fc.nat({ max: 79 }) }) },
          ),
          { minLength: 50, maxLength: 600 },
        ),
        async (ops) => {
          // Segments of 4 KiB; 80 keys of up to 400 B: evictions, overwrites and compactions.
          const memoryBytes = 40_000;
          const store = new MemoryStore({ memoryBytes, clock: clock() });
          // Recency order: first = least recently used.
          const model = new Map<string, { r: StoredRecord; fetched: boolean; accessedMs: number }>();
          let charged = 0;
          let evictions = 0;
          const cost = (k: string, r: StoredRecord) => k.length + r.value.length + RECORD_OVERHEAD_BYTES;
          let tick = 0;
          for (const o of ops) {
            const key = `key${o.key}`;
            tick++;
            if (o.op === 'put') {
              const r = rec(Buffer.alloc(o.size, tick & 0xff), { tombstone: o.tombstone, flags: o.flags, clock: { n1: tick }, ts: { wallMs: T + tick, logical: tick & 7 } });
              store.put(key, r);
              const old = model.get(key);
              if (old) {
                charged -= cost(key, old.r);
                model.delete(key);
              }
              while (charged + cost(key, r) > memoryBytes) {
                const [k, v] = model.entries().next().value!;
                model.delete(k);
                charged -= cost(k, v.r);
                evictions++;
              }
              model.set(key, { r, fetched: false, accessedMs: r.accessedMs });
              charged += cost(key, r);
            } else if (o.op === 'get') {
              const got = store.get(key);
              const m = model.get(key);
              expect(content(got)).toEqual(content(m?.r));
              if (m && got) {
                expect([got.fetched, got.accessedMs]).toEqual([m.fetched, m.accessedMs]);
                model.delete(key);
                model.set(key, m);
                if (o.mark) {
                  got.fetched = m.fetched = true;
                  got.accessedMs = m.accessedMs = T + 1e6 + tick;
                }
              }
            } else {
              store.remove(key);
              const old = model.get(key);
              if (old) charged -= cost(key, old.r);
              model.delete(key);
            }
          }
          const held = new Map<string, [Content, boolean, number]>();
          await store.scan(undefined, 1000, (k, r) => held.set(k, [content(r)!, r.fetched, r.accessedMs]));
          const expected = new Map([...model].map(([k, m]) => [k, [content(m.r)!, m.fetched, m.accessedMs] as [Content, boolean, number]]));
          expect(held).toEqual(expected);
          const s = store.stats();
          expect(s.items).toBe([...model.values()].filter((m) => !m.r.tombstone).length);
          expect(s.bytes).toBe(charged);
          expect(s.evictions).toBe(evictions);
          const a = store.arenaStats();
          expect(a.spaceEvictions).toBe(0);
          expect(a.segments * a.segmentBytes + a.largeBytes).toBeLessThanOrEqual(memoryBytes * 1.25);
          compactions += a.compactions;
          // And the LRU order: evicting everything goes least recently used first.
          const order: string[] = [];
          for (const k of model.keys()) order.push(k);
          const last = order[order.length - 1];
          if (last !== undefined) {
            store.put('flood', rec(Buffer.alloc(memoryBytes - 'flood'.length - RECORD_OVERHEAD_BYTES)));
            expect(store.get(last)).toBeUndefined();
            expect(store.stats().items).toBe(1);
          }
        },
      ),
      { numRuns: 60 },
    );
    expect(compactions).toBeGreaterThan(0);
  });

  it('values large beside the per-record overhead: segments stay within 1.25x memoryBytes, evicting least recently used first when they are full', () => {
    const memoryBytes = 2_000_000; // segments of 32 KiB
    const store = new MemoryStore({ memoryBytes, clock: clock() });
    for (let i = 0; i < 20_000; i++) {
      store.put(`k${i % 3000}`, rec(Buffer.alloc(300 + ((i * 7919) % 700), i & 0xff), { clock: { n1: i } }));
      if (i % 3 === 0) store.get(`k${(i * 31) % 3000}`);
      if (i % 100 === 0) {
        const a = store.arenaStats();
        expect(a.largeBytes).toBe(0);
        expect(a.segments * a.segmentBytes).toBeLessThanOrEqual(memoryBytes * 1.25);
      }
    }
    expect(store.arenaStats().compactions).toBeGreaterThan(0);
    const s = store.stats();
    expect(s.bytes).toBeLessThanOrEqual(memoryBytes);
    // Most of the bound is used all the same.
    expect(s.bytes).toBeGreaterThan(memoryBytes * 0.75);
  });
});

describe('MemoryStore sweepScan (the sweep, in slot order)', () => {
  const clock = () => new ManualClock(1_700_000_000_000);

  it('visits every record once per pass, at most limit per page, whatever the page size', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 120 }), fc.integer({ min: 1, max: 50 }), fc.array(fc.nat({ max: 150 }), { maxLength: 40 }), async (n, limit, removed) => {
        const store = new MemoryStore({ memoryBytes: 64 * 1024 * 1024, clock: clock() });
        for (let i = 0; i < n; i++) store.put(`k${i}`, rec(`v${i}`));
        for (const r of removed) store.remove(`k${r}`); // free slots in the middle are skipped
        const expected = new Set(Array.from({ length: n }, (_, i) => `k${i}`).filter((k) => !removed.includes(Number(k.slice(1)))));
        const seen: string[] = [];
        let cursor: number | undefined = 0;
        for (let pages = 0; cursor !== undefined; pages++) {
          expect(pages).toBeLessThanOrEqual(n + 1);
          let page = 0;
          cursor = await store.sweepScan(cursor, limit, (k, r) => {
            page++;
            expect(Buffer.from(r.value).toString('latin1')).toBe(`v${k.slice(1)}`);
            seen.push(k);
          });
          expect(page).toBeLessThanOrEqual(limit);
        }
        expect(seen.length).toBe(expected.size);
        expect(new Set(seen)).toEqual(expected);
      }),
      { numRuns: 200 },
    );
  });

  it('a record that stays through a pass is visited, while others come and go during it', async () => {
    const store = new MemoryStore({ memoryBytes: 64 * 1024 * 1024, clock: clock() });
    for (let i = 0; i < 100; i++) store.put(`stay${i}`, rec('s'));
    const seen = new Set<string>();
    let cursor: number | undefined = 0;
    for (let step = 0; cursor !== undefined && step < 1000; step++) {
      cursor = await store.sweepScan(cursor, 7, (k) => seen.add(k));
      store.put(`churn${step}`, rec('c'));
      if (step > 2) store.remove(`churn${step - 2}`);
    }
    expect(cursor).toBeUndefined();
    for (let i = 0; i < 100; i++) expect(seen.has(`stay${i}`)).toBe(true);
  });
});
