// One suite for the Store interface (server/storage/store.ts), run against every
// implementation, as abstract-level runs its test/index.js against every backend. A new
// implementation (the simulator's) is one more `storeSuite(...)` line at the bottom.
//
// The heart is the model-based property at the end: random puts and removes applied to a
// store and to a Map give the same reads and the same scan, and, for durable stores, the
// same again after close and reopen: every acknowledged write survives.
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import type { StoredRecord } from '../../server/storage/record.js';
import type { Store } from '../../server/storage/store.js';
import {
  byteOrder,
  content,
  latin1,
  levelFactory,
  memoryFactory,
  nextTurn,
  rec,
  scanAll,
  type Content,
  type StoreFactory,
} from './fixtures.js';

const MiB = 1024 * 1024;

/** Awaits a write whether the implementation returns a promise or nothing. */
async function done(p: Promise<void> | void): Promise<void> {
  await p;
}

function storeSuite(name: string, makeFactory: () => StoreFactory): void {
  describe(`Store conformance: ${name}`, () => {
    const factory = makeFactory();
    afterEach(async () => {
      await factory.cleanup();
    });

    /** The same check on the live store and, for durable stores, after a reopen. */
    async function andAfterReopen(store: Store, check: (s: Store) => Promise<void> | void): Promise<Store> {
      await check(store);
      if (!factory.reopen) return store;
      const reopened = await factory.reopen(store);
      await check(reopened);
      return reopened;
    }

    describe('put and get', () => {
      const values: Array<[string, Buffer]> = [
        ['empty', Buffer.alloc(0)],
        ['CRLF', Buffer.from('\r\n', 'latin1')],
        ['a lone END line', Buffer.from('\r\nEND\r\n', 'latin1')],
        ['NUL bytes', Buffer.from([0, 0, 1, 0])],
        ['every byte value', Buffer.from(Array.from({ length: 256 }, (_, i) => i))],
        ['1 MiB', Buffer.from(Array.from({ length: MiB }, (_, i) => (i * 7919 + (i >> 8)) & 0xff))],
      ];

      it.each(values)('round-trips a binary value: %s', async (_label, value) => {
        let store = await factory.create();
        const r = rec(value, { flags: 7, ts: { wallMs: 1_700_000_000_123, logical: 9 } });
        const p = store.put('bin', r);
        // Visible at once, before the write is durable.
        expect(content(store.get('bin'))).toEqual(content(r));
        await done(p);
        store = await andAfterReopen(store, (s) => {
          const got = s.get('bin');
          expect(got).toBeDefined();
          expect(Buffer.isBuffer(got!.value)).toBe(true);
          expect(got!.value.length).toBe(value.length);
          expect(got!.value.equals(value)).toBe(true);
          expect(content(got)).toEqual(content(r));
        });
      });

      it('keeps every persisted field: flags 0 and 2^32-1, expiry, vector clock, HLC', async () => {
        let store = await factory.create();
        const records: Record<string, StoredRecord> = {
          f0: rec('zero flags', { flags: 0 }),
          fmax: rec('max flags', { flags: 4294967295 }),
          expired: rec('x', { expiresAtMs: -1 }),
          expires: rec('y', { expiresAtMs: 1_700_000_123_456 }),
          clocks: rec('z', { clock: { a: 3, 'node-b': 1, c: 2 ** 40 }, ts: { wallMs: 2 ** 46, logical: 0xffff } }),
          tomb: rec('', { tombstone: true, ts: { wallMs: 5, logical: 1 } }),
        };
        const writes = Object.entries(records).map(([k, r]) => store.put(k, r));
        for (const [k, r] of Object.entries(records)) expect(content(store.get(k))).toEqual(content(r));
        await Promise.all(writes);
        store = await andAfterReopen(store, (s) => {
          for (const [k, r] of Object.entries(records)) expect(content(s.get(k)), k).toEqual(content(r));
        });
      });

      it('keys with bytes 0x80-0xff (latin1 strings) are distinct keys of their own', async () => {
        let store = await factory.create();
        const keys = [latin1(0x80), latin1(0xff), latin1(0xc3, 0xa9), latin1(0xe9), 'plain', latin1(0x61, 0xff, 0x00, 0x62)];
        const writes = keys.map((k, i) => store.put(k, rec(`v${i}`)));
        await Promise.all(writes);
        store = await andAfterReopen(store, async (s) => {
          keys.forEach((k, i) => expect(s.get(k)?.value.toString('latin1'), JSON.stringify(k)).toBe(`v${i}`));
          // 'é' as UTF-8 (c3 a9) and as latin1 (e9) must not collide.
          expect(s.get('\u00e9')?.value.toString()).toBe('v3');
          const scanned = (await scanAll(s, 100)).map(([k]) => k);
          expect(scanned).toEqual([...keys].sort(byteOrder));
        });
      });

      it('get of an absent key is undefined', async () => {
        const store = await factory.create();
        expect(store.get('nope')).toBeUndefined();
        await done(store.put('yes', rec('1')));
        expect(store.get('nope')).toBeUndefined();
        expect(store.get('ye')).toBeUndefined();
        expect(store.get('yess')).toBeUndefined();
      });

      it('an overwrite replaces the record, and the latest write wins', async () => {
        let store = await factory.create();
        const first = rec('first', { flags: 1, ts: { wallMs: 10, logical: 0 } });
        const second = rec('second value', { flags: 2, ts: { wallMs: 11, logical: 0 } });
        const p1 = store.put('k', first);
        const p2 = store.put('k', second);
        expect(content(store.get('k'))).toEqual(content(second));
        await Promise.all([p1, p2]);
        expect(store.stats().items).toBe(1);
        store = await andAfterReopen(store, (s) => {
          expect(content(s.get('k'))).toEqual(content(second));
          expect(s.stats().items).toBe(1);
        });
      });

      it('a record read after put has the same content, and after it is durable too', async () => {
        const store = await factory.create();
        const r = rec('content', { flags: 3, expiresAtMs: 99, clock: { a: 1, b: 2 }, ts: { wallMs: 77, logical: 5 } });
        const p = store.put('c', r);
        expect(content(store.get('c'))).toEqual(content(r));
        await done(p);
        expect(content(store.get('c'))).toEqual(content(r));
        // Twice in a row: the second read may come from another tier.
        expect(content(store.get('c'))).toEqual(content(r));
      });
    });

    describe('remove', () => {
      it('removes the record at once and for good', async () => {
        let store = await factory.create();
        await done(store.put('a', rec('1')));
        await done(store.put('b', rec('2')));
        const p = store.remove('a');
        expect(store.get('a')).toBeUndefined();
        expect(store.get('b')?.value.toString()).toBe('2');
        await done(p);
        expect(store.get('a')).toBeUndefined();
        store = await andAfterReopen(store, async (s) => {
          expect(s.get('a')).toBeUndefined();
          expect(s.get('b')?.value.toString()).toBe('2');
          expect(s.stats().items).toBe(1);
          expect((await scanAll(s, 10)).map(([k]) => k)).toEqual(['b']);
        });
      });

      it('removing an absent key changes nothing', async () => {
        const store = await factory.create();
        await done(store.put('a', rec('1')));
        const before = store.stats();
        await done(store.remove('zzz'));
        expect(store.stats().items).toBe(before.items);
        expect(store.stats().bytes).toBe(before.bytes);
        expect(store.get('a')?.value.toString()).toBe('1');
      });

      it('a remove then a put of the same key in one turn leaves the put', async () => {
        let store = await factory.create();
        await done(store.put('k', rec('old')));
        const p1 = store.remove('k');
        const p2 = store.put('k', rec('new'));
        expect(store.get('k')?.value.toString()).toBe('new');
        await Promise.all([p1, p2]);
        store = await andAfterReopen(store, (s) => expect(s.get('k')?.value.toString()).toBe('new'));
      });
    });

    describe('stats', () => {
      it('tombstones are kept and readable but do not count as items', async () => {
        let store = await factory.create();
        expect(store.stats().items).toBe(0);
        await done(store.put('live', rec('v')));
        await done(store.put('dead', rec('', { tombstone: true })));
        expect(store.get('dead')?.tombstone).toBe(true);
        expect(store.stats().items).toBe(1);
        // live -> tombstone
        await done(store.put('live', rec('', { tombstone: true })));
        expect(store.stats().items).toBe(0);
        // tombstone -> live
        await done(store.put('dead', rec('back')));
        expect(store.stats().items).toBe(1);
        // tombstone -> tombstone, tombstone removed
        await done(store.put('live', rec('', { tombstone: true, ts: { wallMs: 9, logical: 9 } })));
        expect(store.stats().items).toBe(1);
        await done(store.remove('live'));
        expect(store.stats().items).toBe(1);
        store = await andAfterReopen(store, (s) => expect(s.stats().items).toBe(1));
      });

      it('putting the very same record object again changes no count', async () => {
        const store = await factory.create();
        const tomb = rec('', { tombstone: true });
        const live = rec('v');
        await done(store.put('t', tomb));
        await done(store.put('l', live));
        const before = store.stats();
        expect(before.items).toBe(1);
        await done(store.put('t', tomb));
        await done(store.put('l', live));
        expect(store.stats().items).toBe(before.items);
        expect(store.stats().bytes).toBe(before.bytes);
        await done(store.remove('t'));
        await done(store.remove('l'));
        expect(store.stats().items).toBe(0);
      });

      it('bytes follow adds, overwrites and removes', async () => {
        let store = await factory.create();
        await done(store.put('other', rec('x'.repeat(50))));
        const base = store.stats().bytes;
        await done(store.put('key', rec('v'.repeat(100))));
        const added = store.stats().bytes - base;
        // At least the key and the value; implementations may add a fixed overhead.
        expect(added).toBeGreaterThanOrEqual('key'.length + 100);
        await done(store.put('key', rec('v'.repeat(250))));
        expect(store.stats().bytes - base).toBe(added + 150);
        await done(store.put('key', rec('v'.repeat(10))));
        expect(store.stats().bytes - base).toBe(added - 90);
        await done(store.remove('key'));
        expect(store.stats().bytes).toBe(base);
        // A tombstone holds no value bytes.
        await done(store.put('key', rec('v'.repeat(1000))));
        const withValue = store.stats().bytes;
        await done(store.put('key', rec('', { tombstone: true })));
        expect(store.stats().bytes).toBeLessThanOrEqual(withValue - 1000);
        await done(store.remove('key'));
        expect(store.stats().bytes).toBe(base);
        const reopenedBase = base;
        store = await andAfterReopen(store, (s) => expect(s.stats().bytes).toBe(reopenedBase));
      });

      it('reports a limit and counters that are numbers', async () => {
        const store = await factory.create({ bytes: 12345678 });
        const s = store.stats();
        expect(s.limitBytes).toBe(12345678);
        for (const v of Object.values(s)) expect(Number.isSafeInteger(v) && v >= 0).toBe(true);
      });
    });

    describe('scan', () => {
      // 60 keys, including latin1 high bytes, NUL and prefixes of each other.
      const keys = Array.from({ length: 40 }, (_, i) => `key:${i}`)
        .concat(['k', 'ke', 'key', 'key:', latin1(0x00), latin1(0x01, 0x02), latin1(0x7f), latin1(0x80), latin1(0xff), latin1(0xff, 0xff)])
        .concat(Array.from({ length: 10 }, (_, i) => latin1(0x80 + i * 12, 0x41 + i)));
      const sorted = [...keys].sort(byteOrder);

      async function filled(): Promise<Store> {
        const store = await factory.create();
        // Insert in a scrambled order, tombstones included (scan visits them).
        const order = keys.map((k, i) => [k, (i * 37) % keys.length] as const).sort((a, b) => a[1] - b[1]);
        const writes = order.map(([k], i) => store.put(k, rec(`v:${k}`, { tombstone: i % 9 === 0 })));
        await Promise.all(writes);
        return store;
      }

      it.each([1, 3, 7, 59, 60, 61, 1000])('pages of %i visit every key exactly once, in key order', async (limit) => {
        let store = await filled();
        store = await andAfterReopen(store, async (s) => {
          const seen: string[] = [];
          let after: string | undefined;
          for (let pages = 0; pages <= keys.length + 1; pages++) {
            const page: string[] = [];
            const last = await s.scan(after, limit, (k, r) => {
              page.push(k);
              expect(content(r)).toEqual(content(s.get(k)));
            });
            expect(page.length).toBeLessThanOrEqual(limit);
            if (last === undefined) {
              expect(page).toEqual([]);
              break;
            }
            expect(last).toBe(page[page.length - 1]);
            seen.push(...page);
            after = last;
          }
          expect(seen).toEqual(sorted);
        });
      });

      it('afterKey is exclusive and need not exist', async () => {
        const store = await filled();
        const visit = async (after: string | undefined, limit: number) => {
          const out: string[] = [];
          await store.scan(after, limit, (k) => out.push(k));
          return out;
        };
        expect(await visit('key:1', 3)).toEqual(sorted.filter((k) => byteOrder(k, 'key:1') > 0).slice(0, 3));
        expect(await visit('key:10a', 100)).toEqual(sorted.filter((k) => byteOrder(k, 'key:10a') > 0));
        expect(await visit(latin1(0xff, 0xff), 5)).toEqual([]);
        expect(await store.scan(latin1(0xff, 0xff), 5, () => {})).toBeUndefined();
        expect(await visit(undefined, 2)).toEqual(sorted.slice(0, 2));
      });

      it('an empty store scans to nothing', async () => {
        const store = await factory.create();
        const visited: string[] = [];
        expect(await store.scan(undefined, 10, (k) => visited.push(k))).toBeUndefined();
        expect(visited).toEqual([]);
      });

      it('sees writes at once, before they are durable, like get', async () => {
        const store = await factory.create();
        await done(store.put('b', rec('old b')));
        await done(store.put('c', rec('c')));
        // Not awaited: "visible to get at once" holds for scan as well.
        const writes = [store.put('a', rec('new a')), store.put('b', rec('new b')), store.remove('c')];
        const seen: Array<[string, string]> = [];
        await store.scan(undefined, 10, (k, r) => seen.push([k, r.value.toString()]));
        expect(seen).toEqual([
          ['a', 'new a'],
          ['b', 'new b'],
        ]);
        await Promise.all(writes);
      });
    });

    describe('durability signals', () => {
      it('put and remove promises resolve', async () => {
        const store = await factory.create();
        await expect(Promise.resolve(store.put('k', rec('v')))).resolves.toBeUndefined();
        await expect(Promise.resolve(store.remove('k'))).resolves.toBeUndefined();
      });

      it(`pending(key) is ${factory.kind === 'memory' ? 'always undefined' : 'a promise until the write is durable'}`, async () => {
        const store = await factory.create();
        expect(store.pending('k')).toBeUndefined();
        const p = store.put('k', rec('v'));
        const waiting = store.pending('k');
        expect(store.pending('other')).toBeUndefined();
        if (factory.kind === 'memory') {
          expect(p).toBeUndefined();
          expect(waiting).toBeUndefined();
        } else {
          expect(waiting).toBeInstanceOf(Promise);
          await waiting;
          // Durable now: nothing to wait for any more.
          expect(store.pending('k')).toBeUndefined();
          await p;
          const r = store.remove('k');
          expect(store.pending('k')).toBeInstanceOf(Promise);
          await r;
          expect(store.pending('k')).toBeUndefined();
        }
      });
    });

    describe('metadata', () => {
      it('getMeta/putMeta round trip, apart from the record key space', async () => {
        let store = await factory.create();
        expect(await store.getMeta('flush')).toBeUndefined();
        const marker = Buffer.from('{"ts":1}', 'utf8');
        await store.putMeta('flush', marker);
        await store.putMeta('other', new Uint8Array([0, 255, 13, 10]));
        await store.putMeta('flush', Buffer.from('{"ts":2}', 'utf8'));
        store = await andAfterReopen(store, async (s) => {
          expect(Buffer.from((await s.getMeta('flush'))!).toString('utf8')).toBe('{"ts":2}');
          expect([...(await s.getMeta('other'))!]).toEqual([0, 255, 13, 10]);
          expect(await s.getMeta('absent')).toBeUndefined();
          // Metadata is not a record.
          expect(s.get('flush')).toBeUndefined();
          expect(await scanAll(s, 10)).toEqual([]);
          expect(s.stats().items).toBe(0);
        });
        // And records are not metadata.
        await done(store.put('rec', rec('v')));
        expect(await store.getMeta('rec')).toBeUndefined();
      });
    });

    describe('model-based: random puts and removes', () => {
      // A small key pool so that overwrites, removes of present keys and re-puts happen often.
      const pool = ['a', 'ab', 'b', 'key:1', 'key:10', latin1(0x00), latin1(0x7f, 0x01), latin1(0x80), latin1(0xe9, 0x0d, 0x0a), latin1(0xff)];
      type Op =
        | { kind: 'put'; key: number; value: Uint8Array; flags: number; expiresAtMs: number; tombstone: boolean }
        | { kind: 'remove'; key: number }
        | { kind: 'yield' };
      const opArb: fc.Arbitrary<Op> = fc.oneof(
        {
          weight: 6,
          arbitrary: fc.record({
            kind: fc.constant('put' as const),
            key: fc.nat({ max: pool.length - 1 }),
            value: fc.uint8Array({ maxLength: 64 }),
            flags: fc.oneof(fc.constant(0), fc.constant(4294967295), fc.nat({ max: 4294967295 })),
            expiresAtMs: fc.oneof(fc.constant(0), fc.constant(-1), fc.integer({ min: 1, max: 2 ** 45 })),
            tombstone: fc.boolean(),
          }),
        },
        { weight: 3, arbitrary: fc.record({ kind: fc.constant('remove' as const), key: fc.nat({ max: pool.length - 1 }) }) },
        // Lets a batch go to disk between ops, so batches of every shape are exercised.
        { weight: 1, arbitrary: fc.constant({ kind: 'yield' as const }) },
      );

      async function expectSame(store: Store, model: Map<string, StoredRecord>, when: string): Promise<void> {
        for (const k of pool) expect(content(store.get(k)), `${when}: get(${JSON.stringify(k)})`).toEqual(content(model.get(k)));
        const expected: Array<[string, Content]> = [...model.entries()]
          .sort(([a], [b]) => byteOrder(a, b))
          .map(([k, r]) => [k, content(r)!]);
        expect(await scanAll(store, 3), `${when}: scan`).toEqual(expected);
        expect(store.stats().items, `${when}: items`).toBe([...model.values()].filter((r) => !r.tombstone).length);
      }

      it(`matches a Map${factory.reopen ? ', and still does after close and reopen' : ''}`, async () => {
        await fc.assert(
          fc.asyncProperty(fc.array(opArb, { maxLength: 40 }), async (ops) => {
            let store = await factory.create();
            try {
              const model = new Map<string, StoredRecord>();
              const acks: Array<Promise<void>> = [];
              let tick = 0;
              for (const op of ops) {
                if (op.kind === 'yield') {
                  await nextTurn();
                  continue;
                }
                const key = pool[op.key]!;
                let p: Promise<void> | void;
                if (op.kind === 'put') {
                  const r = rec(op.value, {
                    flags: op.flags,
                    expiresAtMs: op.expiresAtMs,
                    tombstone: op.tombstone,
                    ts: { wallMs: 1_000 + tick++, logical: tick % 3 },
                    clock: { n1: tick },
                  });
                  p = store.put(key, r);
                  model.set(key, r);
                } else {
                  p = store.remove(key);
                  model.delete(key);
                }
                if (p) acks.push(p);
                // Visible at once.
                expect(content(store.get(key))).toEqual(content(model.get(key)));
              }
              await Promise.all(acks);
              await expectSame(store, model, 'after acknowledgement');
              if (factory.reopen) {
                store = await factory.reopen(store);
                await expectSame(store, model, 'after reopen');
              }
            } finally {
              await factory.cleanup();
            }
          }),
          { numRuns: 30 },
        );
      });
    });
  });
}

storeSuite('MemoryStore', memoryFactory);
storeSuite('LevelStore', levelFactory);
