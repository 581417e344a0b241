// MemoryStore beyond the conformance suite: it is bounded by memoryBytes and evicts the
// least recently used records, as memcached does, counting each eviction.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../server/clock.js';
import { MemoryStore } from '../../server/storage/memory-store.js';
import { RECORD_OVERHEAD_BYTES } from '../../server/storage/store.js';
import { rec, scanAll } from './fixtures.js';

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
