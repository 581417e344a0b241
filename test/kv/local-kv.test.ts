// LocalKv (server/kv/local-kv.ts): memcached's semantics over a Store, run over every
// Store implementation with a ManualClock. What memcached 1.6 does is the reference: the
// statuses of storage commands, cas uniques, exptime rules, flush_all with and without a
// delay, incr/decr arithmetic and in-place padding, counters, and the background sweep.
// The last block restarts a LevelStore-backed kv: data, flush marker and HLC survive.
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../server/clock.js';
import {
  expiryFromExptime,
  itemSize,
  LocalKv,
  parseStoredU64,
  REALTIME_MAXDELTA_S,
  type KvCounters,
  type StoreMode,
} from '../../server/kv/local-kv.js';
import { casUnique } from '../../server/storage/record.js';
import type { Store } from '../../server/storage/store.js';
import { levelFactory, memoryFactory, type StoreFactory } from '../storage/fixtures.js';

const T0 = 1_700_000_000_000;
const U64_MAX = (1n << 64n) - 1n;
const DAY_S = 24 * 60 * 60;
const GRACE_MS = 60_000;
const MAX_ITEM = 1024;

const b = (s: string) => Buffer.from(s, 'latin1');

/** A LocalKv over one store, its clock, and the shortcuts the tests use. */
class Harness {
  constructor(
    readonly kv: LocalKv,
    readonly clock: ManualClock,
    readonly store: Store,
  ) {}

  static async start(factory: StoreFactory, clock = new ManualClock(T0), over?: Store): Promise<Harness> {
    const store = over ?? (await factory.create({ clock, open: false }));
    const kv = new LocalKv({ nodeId: 'n1', store, clock, maxItemSize: MAX_ITEM, tombstoneGraceMs: GRACE_MS });
    await kv.open();
    return new Harness(kv, clock, store);
  }

  /** A storage command with a memcached exptime (seconds, relative or absolute). */
  async store_(mode: StoreMode, key: string, value: string, opts: { flags?: number; exptime?: number; cas?: bigint } = {}) {
    const expires = expiryFromExptime(opts.exptime ?? 0, this.clock.now());
    return (await this.kv.storeItem(mode, key, b(value), opts.flags ?? 0, expires, opts.cas)).status;
  }
  set(key: string, value: string, opts: { flags?: number; exptime?: number } = {}) {
    return this.store_('set', key, value, opts);
  }
  /** The live value without counting a get; undefined when absent, expired or flushed. */
  value(key: string): string | undefined {
    return this.kv.peek(key)?.value.toString('latin1');
  }
  cas(key: string): bigint {
    const r = this.kv.peek(key);
    if (!r) throw new Error(`no live item ${key}`);
    return casUnique(r.version.ts);
  }
  async incr(key: string, by: bigint | number, incr = true) {
    return this.kv.delta(key, incr, BigInt(by));
  }
  async touch(key: string, exptime: number) {
    return this.kv.touch(key, expiryFromExptime(exptime, this.clock.now()));
  }
  /** Runs sweep steps until a pass completes; bounded, so a sweep that never ends fails. */
  async sweepPass(limit = 100): Promise<number> {
    for (let steps = 1; steps <= 10_000; steps++) if (await this.kv.sweepStep(limit)) return steps;
    throw new Error('sweep never finished a pass');
  }
}

const backends: Array<{ name: string; factory: () => StoreFactory }> = [
  { name: 'MemoryStore', factory: memoryFactory },
  { name: 'LevelStore', factory: levelFactory },
];

describe.each(backends)('LocalKv over $name', ({ factory: makeFactory }) => {
  const factory = makeFactory();
  let h: Harness;
  beforeEach(async () => {
    h = await Harness.start(factory);
  });
  afterEach(async () => {
    await factory.cleanup();
  });

  describe('storage commands', () => {
    it('set stores value and flags, and replaces whatever was there', async () => {
      expect(await h.set('k', 'v1', { flags: 4294967295 })).toBe('STORED');
      const r = await h.kv.get('k');
      expect(r?.value.toString()).toBe('v1');
      expect(r?.flags).toBe(4294967295);
      expect(await h.set('k', '', { flags: 0 })).toBe('STORED');
      expect(h.value('k')).toBe('');
      expect(h.kv.peek('k')?.flags).toBe(0);
      expect(await h.set('bin', '\r\nEND\r\n\0')).toBe('STORED');
      expect(h.value('bin')).toBe('\r\nEND\r\n\0');
    });

    it('add stores only when the key holds no live item', async () => {
      expect(await h.store_('add', 'k', 'first')).toBe('STORED');
      expect(await h.store_('add', 'k', 'second')).toBe('NOT_STORED');
      expect(h.value('k')).toBe('first');
      expect(await h.kv.delete('k')).toBe('DELETED');
      expect(await h.store_('add', 'k', 'third')).toBe('STORED');
      expect(h.value('k')).toBe('third');
    });

    it('replace stores only over a live item', async () => {
      expect(await h.store_('replace', 'k', 'x')).toBe('NOT_STORED');
      expect(h.value('k')).toBeUndefined();
      await h.set('k', 'old', { flags: 1 });
      expect(await h.store_('replace', 'k', 'new', { flags: 2 })).toBe('STORED');
      expect(h.value('k')).toBe('new');
      expect(h.kv.peek('k')?.flags).toBe(2);
    });

    it("append and prepend need a live item and keep the item's own flags and expiry", async () => {
      expect(await h.store_('append', 'k', 'x')).toBe('NOT_STORED');
      expect(await h.store_('prepend', 'k', 'x')).toBe('NOT_STORED');
      expect(h.value('k')).toBeUndefined();
      await h.set('k', 'mid', { flags: 7, exptime: 100 });
      const expiry = h.kv.peek('k')!.expiresAtMs;
      expect(await h.store_('append', 'k', '>>', { flags: 99, exptime: 5 })).toBe('STORED');
      expect(await h.store_('prepend', 'k', '<<', { flags: 98, exptime: 1 })).toBe('STORED');
      expect(h.value('k')).toBe('<<mid>>');
      expect(h.kv.peek('k')?.flags).toBe(7);
      expect(h.kv.peek('k')?.expiresAtMs).toBe(expiry);
      h.clock.advance(50_000); // past the exptimes given to append/prepend, before the item's own
      expect(h.value('k')).toBe('<<mid>>');
    });

    it('cas: NOT_FOUND on a miss, EXISTS on a stale unique, STORED on the current one', async () => {
      expect(await h.store_('cas', 'k', 'v', { cas: 1n })).toBe('NOT_FOUND');
      await h.set('k', 'v1');
      const c1 = h.cas('k');
      expect(await h.store_('cas', 'k', 'bad', { cas: c1 + 1n })).toBe('EXISTS');
      expect(await h.store_('cas', 'k', 'bad', { cas: c1 - 1n })).toBe('EXISTS');
      expect(h.value('k')).toBe('v1');
      expect(await h.store_('cas', 'k', 'v2', { cas: c1 })).toBe('STORED');
      expect(h.value('k')).toBe('v2');
      // The unique it used is spent.
      expect(await h.store_('cas', 'k', 'v3', { cas: c1 })).toBe('EXISTS');
      expect(await h.store_('cas', 'k', 'v3', { cas: h.cas('k') })).toBe('STORED');
      expect(h.value('k')).toBe('v3');
    });

    it('the cas unique changes on every modification, and not on touch, get or a failed command', async () => {
      const uniques: bigint[] = [];
      const modified = async (step: () => Promise<unknown>) => {
        await step();
        uniques.push(h.cas('k'));
      };
      const unchanged = async (step: () => Promise<unknown>) => {
        const before = h.cas('k');
        await step();
        expect(h.cas('k')).toBe(before);
      };
      // Without advancing the clock: the HLC's logical part must tell them apart.
      await modified(() => h.set('k', '1'));
      await modified(() => h.set('k', '1'));
      await modified(() => h.store_('append', 'k', '0'));
      await modified(() => h.store_('prepend', 'k', '1'));
      await modified(() => h.store_('replace', 'k', '5'));
      await modified(() => h.incr('k', 1));
      await modified(() => h.incr('k', 1, false));
      await modified(async () => h.store_('cas', 'k', '9', { cas: h.cas('k') }));
      h.clock.advance(1);
      await modified(() => h.set('k', '9x'));
      await unchanged(() => h.touch('k', 100));
      await unchanged(async () => h.kv.get('k'));
      await unchanged(async () => h.kv.getAndTouch('k', 0));
      await unchanged(() => h.store_('add', 'k', 'x'));
      await unchanged(() => h.store_('cas', 'k', 'x', { cas: 1n }));
      await unchanged(async () => h.kv.delete('k', 1n));
      await unchanged(() => h.incr('k', 1)); // refused: '9x' is not numeric
      expect(h.value('k')).toBe('9x');
      expect(new Set(uniques).size).toBe(uniques.length);
      expect(uniques).toEqual([...uniques].sort((x, y) => (x < y ? -1 : 1)));
    });

    it('delete removes a live item; with a cas unique only when it matches', async () => {
      expect(await h.kv.delete('k')).toBe('NOT_FOUND');
      await h.set('k', 'v');
      expect(await h.kv.delete('k', h.cas('k') + 1n)).toBe('EXISTS');
      expect(h.value('k')).toBe('v');
      expect(await h.kv.delete('k', h.cas('k'))).toBe('DELETED');
      expect(h.value('k')).toBeUndefined();
      expect(await h.kv.get('k')).toBeUndefined();
      expect(await h.kv.delete('k')).toBe('NOT_FOUND');
      // A delete leaves a tombstone behind, with a newer version.
      expect(h.store.get('k')?.tombstone).toBe(true);
      expect(h.store.get('k')?.version.clock).toEqual({ n1: 2 });
    });
  });

  describe('expiry', () => {
    it('a relative exptime (seconds) expires that many seconds later', async () => {
      await h.set('k', 'v', { exptime: 10 });
      h.clock.advance(9_999);
      expect(h.value('k')).toBe('v');
      h.clock.advance(1);
      expect(h.value('k')).toBeUndefined();
      expect(await h.kv.get('k')).toBeUndefined();
    });

    it('up to 30 days is relative; above, it is an absolute Unix time', async () => {
      await h.set('rel', 'v', { exptime: REALTIME_MAXDELTA_S });
      await h.set('abs', 'v', { exptime: Math.floor(T0 / 1000) + 100 });
      await h.set('past', 'v', { exptime: REALTIME_MAXDELTA_S + 1 }); // 1970: already gone
      expect(h.value('past')).toBeUndefined();
      h.clock.advance(99_999);
      expect(h.value('abs')).toBe('v');
      h.clock.advance(1);
      expect(h.value('abs')).toBeUndefined();
      h.clock.set(T0 + 29 * DAY_S * 1000);
      expect(h.value('rel')).toBe('v');
      h.clock.set(T0 + 30 * DAY_S * 1000);
      expect(h.value('rel')).toBeUndefined();
    });

    it('a negative exptime stores an item that is expired at once', async () => {
      await h.set('k', 'old');
      expect(await h.set('k', 'v', { exptime: -1 })).toBe('STORED');
      expect(h.value('k')).toBeUndefined();
      expect(await h.kv.get('k')).toBeUndefined();
      expect(h.kv.counters.get_expired).toBe(1);
    });

    it('an expired item reads as absent to every command, and add succeeds on it', async () => {
      await h.set('k', '5', { exptime: 1 });
      h.clock.advance(1_000);
      expect(await h.kv.get('k')).toBeUndefined();
      expect(await h.store_('replace', 'k', 'x')).toBe('NOT_STORED');
      expect(await h.store_('append', 'k', 'x')).toBe('NOT_STORED');
      expect(await h.store_('cas', 'k', 'x', { cas: casUnique(h.store.get('k')!.version.ts) })).toBe('NOT_FOUND');
      expect((await h.incr('k', 1)).status).toBe('NOT_FOUND');
      expect(await h.touch('k', 100)).toBe('NOT_FOUND');
      expect(await h.kv.delete('k')).toBe('NOT_FOUND');
      expect(await h.store_('add', 'k', 'new')).toBe('STORED');
      expect(h.value('k')).toBe('new');
      // The new item does not inherit the old expiry.
      h.clock.advance(10 * DAY_S * 1000);
      expect(h.value('k')).toBe('new');
    });

    it('touch replaces the expiry and keeps the value', async () => {
      await h.set('k', 'v', { exptime: 10 });
      h.clock.advance(5_000);
      expect(await h.touch('k', 100)).toBe('TOUCHED');
      h.clock.advance(50_000);
      expect(h.value('k')).toBe('v');
      expect(await h.touch('k', -1)).toBe('TOUCHED');
      expect(h.value('k')).toBeUndefined();
      expect(await h.touch('k', 100)).toBe('NOT_FOUND');
    });

    it('gat returns the item and replaces its expiry', async () => {
      await h.set('k', 'v', { exptime: 10 });
      const r = await h.kv.getAndTouch('k', expiryFromExptime(0, h.clock.now()));
      expect(r?.value.toString()).toBe('v');
      h.clock.advance(60_000);
      expect(h.value('k')).toBe('v');
    });
  });

  describe('flush_all', () => {
    it('immediate: every item is gone, and items written after it (even in the same ms) survive', async () => {
      await h.set('a', '1');
      await h.set('b', '2');
      await h.kv.flushAll(0);
      expect(h.value('a')).toBeUndefined();
      expect(await h.kv.get('b')).toBeUndefined();
      expect(h.kv.counters.get_flushed).toBe(1);
      await h.set('c', '3');
      expect(await h.store_('add', 'a', 'again')).toBe('STORED');
      h.clock.advance(1_000);
      expect(h.value('c')).toBe('3');
      expect(h.value('a')).toBe('again');
      expect(h.value('b')).toBeUndefined();
      // Flushed items are gone for every command, not only get.
      expect(await h.store_('replace', 'b', 'x')).toBe('NOT_STORED');
      expect(await h.touch('b', 0)).toBe('NOT_FOUND');
      // A second flush takes the survivors too.
      await h.kv.flushAll(0);
      expect(h.value('c')).toBeUndefined();
      expect(h.value('a')).toBeUndefined();
    });

    it('delayed: items vanish only once the delay has passed, including items written during it', async () => {
      await h.set('before', '1');
      await h.kv.flushAll(10);
      expect(h.value('before')).toBe('1');
      h.clock.advance(5_000);
      await h.set('during', '2');
      await h.set('before', '1b'); // rewritten during the delay: still flushed
      h.clock.advance(4_999);
      expect(h.value('before')).toBe('1b');
      expect(h.value('during')).toBe('2');
      h.clock.advance(2);
      expect(h.value('before')).toBeUndefined();
      expect(h.value('during')).toBeUndefined();
      h.clock.advance(1_000);
      await h.set('after', '3');
      h.clock.advance(60_000);
      expect(h.value('after')).toBe('3');
    });
  });

  describe('incr and decr', () => {
    async function withValue(v: string) {
      await h.set('n', v, { flags: 5, exptime: 1000 });
    }

    it('incr adds and decr subtracts, keeping flags and expiry', async () => {
      await withValue('10');
      const expiry = h.kv.peek('n')!.expiresAtMs;
      const r = await h.incr('n', 5);
      expect(r.status === 'OK' && r.value).toBe(15n);
      expect(h.value('n')).toBe('15');
      const d = await h.incr('n', 3, false);
      expect(d.status === 'OK' && d.value).toBe(12n);
      expect(h.value('n')).toBe('12');
      expect(h.kv.peek('n')?.flags).toBe(5);
      expect(h.kv.peek('n')?.expiresAtMs).toBe(expiry);
    });

    it('incr wraps at 2^64', async () => {
      await withValue(U64_MAX.toString());
      const r = await h.incr('n', 1);
      expect(r.status === 'OK' && r.value).toBe(0n);
      // In place, as memcached: padded with spaces to the old length.
      expect(h.value('n')).toBe('0'.padEnd(20, ' '));
      await withValue('18446744073709551610');
      const r2 = await h.incr('n', 10);
      expect(r2.status === 'OK' && r2.value).toBe(4n);
      await withValue('1');
      const r3 = await h.incr('n', U64_MAX);
      expect(r3.status === 'OK' && r3.value).toBe(0n);
      expect(h.value('n')).toBe('0');
    });

    it('decr stops at 0', async () => {
      await withValue('5');
      const r = await h.incr('n', 10, false);
      expect(r.status === 'OK' && r.value).toBe(0n);
      expect(h.value('n')).toBe('0');
      const r2 = await h.incr('n', 1, false);
      expect(r2.status === 'OK' && r2.value).toBe(0n);
      await withValue(U64_MAX.toString());
      const r3 = await h.incr('n', U64_MAX, false);
      expect(r3.status === 'OK' && r3.value).toBe(0n);
    });

    it('a shorter result is space-padded to the old length; a longer one grows', async () => {
      await withValue('100');
      await h.incr('n', 1, false);
      expect(h.value('n')).toBe('99 ');
      await h.incr('n', 1);
      expect(h.value('n')).toBe('100');
      await h.incr('n', 900);
      expect(h.value('n')).toBe('1000');
      await withValue(' 12');
      await h.incr('n', 1);
      expect(h.value('n')).toBe('13 ');
      await withValue('9');
      await h.incr('n', 1);
      expect(h.value('n')).toBe('10');
    });

    it('refuses non-numeric values and leaves them alone', async () => {
      for (const v of ['12a', '', 'abc', '-5', ' ', '1.5', '18446744073709551616']) {
        await withValue(v);
        const before = h.cas('n');
        const hits = h.kv.counters.incr_hits + h.kv.counters.decr_hits;
        expect((await h.incr('n', 1)).status, JSON.stringify(v)).toBe('NON_NUMERIC');
        expect((await h.incr('n', 1, false)).status, JSON.stringify(v)).toBe('NON_NUMERIC');
        expect(h.value('n')).toBe(v);
        expect(h.cas('n')).toBe(before);
        expect(h.kv.counters.incr_hits + h.kv.counters.decr_hits).toBe(hits);
      }
    });

    it('a miss is NOT_FOUND, or with create stores the initial value un-incremented', async () => {
      expect((await h.incr('m', 1)).status).toBe('NOT_FOUND');
      expect(h.value('m')).toBeUndefined();
      const r = await h.kv.delta('m', true, 5n, { create: { initial: 42n, expiresAtMs: 0 } });
      expect(r).toMatchObject({ status: 'OK', value: 42n, created: true });
      expect(h.value('m')).toBe('42');
    });

    it('a cas unique that does not match refuses the delta', async () => {
      await withValue('7');
      const r = await h.kv.delta('n', true, 1n, { casIn: h.cas('n') + 1n });
      expect(r.status).toBe('EXISTS');
      expect(h.value('n')).toBe('7');
      const ok = await h.kv.delta('n', true, 1n, { casIn: h.cas('n') });
      expect(ok.status).toBe('OK');
      expect(h.value('n')).toBe('8');
    });
  });

  describe('too large', () => {
    // memcached's charge with cas: 48 + 8 + key + 1 + value + 2 (+4 with flags), so with a
    // 1-byte key and MAX_ITEM = 1024 the largest value is 964 bytes (960 with flags).
    it('the limit is memcached item size, flags included', async () => {
      expect(itemSize(1, 964, 0)).toBe(MAX_ITEM);
      expect(await h.set('k', 'x'.repeat(964))).toBe('STORED');
      expect(await h.set('j', 'x'.repeat(965))).toBe('TOO_LARGE');
      expect(await h.set('f', 'x'.repeat(960), { flags: 1 })).toBe('STORED');
      expect(await h.set('g', 'x'.repeat(961), { flags: 1 })).toBe('TOO_LARGE');
      expect(h.value('j')).toBeUndefined();
      expect(h.kv.counters.store_too_large).toBe(2);
    });

    it('a too-large set deletes the old value; replace, append and add leave it', async () => {
      await h.set('k', 'old');
      expect(await h.set('k', 'x'.repeat(2000))).toBe('TOO_LARGE');
      expect(h.value('k')).toBeUndefined();
      expect(await h.kv.get('k')).toBeUndefined();

      await h.set('r', 'old');
      expect(await h.store_('replace', 'r', 'x'.repeat(2000))).toBe('TOO_LARGE');
      expect(h.value('r')).toBe('old');
      expect(await h.store_('append', 'r', 'x'.repeat(962))).toBe('TOO_LARGE'); // 3 + 962 > 964
      expect(h.value('r')).toBe('old');
      expect(await h.store_('add', 'a', 'x'.repeat(2000))).toBe('TOO_LARGE');
      expect(h.value('a')).toBeUndefined();
    });

    it('rejectTooLarge (value refused before it was read) deletes the old value for set only', async () => {
      await h.set('s', 'old');
      await h.set('r', 'old');
      await h.kv.rejectTooLarge('set', 's');
      await h.kv.rejectTooLarge('replace', 'r');
      expect(h.value('s')).toBeUndefined();
      expect(h.value('r')).toBe('old');
      expect(h.kv.counters.store_too_large).toBe(2);
    });
  });

  describe('counters', () => {
    it('move as memcached moves them', async () => {
      const c = h.kv.counters;
      const expectCounters = (want: Partial<KvCounters>) => expect({ ...c }).toMatchObject(want);
      expectCounters({ cmd_get: 0, cmd_set: 0, get_hits: 0, get_misses: 0, total_items: 0 });

      await h.kv.get('k'); // miss
      expectCounters({ cmd_get: 1, get_misses: 1, get_hits: 0 });
      await h.set('k', '1');
      await h.kv.get('k'); // hit
      expectCounters({ cmd_get: 2, get_hits: 1, get_misses: 1, cmd_set: 1, total_items: 1 });

      await h.store_('add', 'k', 'x'); // not stored, still a set command
      await h.store_('cas', 'k', 'x', { cas: h.cas('k') + 1n });
      await h.store_('cas', 'nope', 'x', { cas: 1n });
      await h.store_('cas', 'k', '2', { cas: h.cas('k') });
      expectCounters({ cmd_set: 5, cas_badval: 1, cas_misses: 1, cas_hits: 1, total_items: 2 });

      await h.incr('k', 1);
      await h.incr('k', 1, false);
      await h.incr('nope', 1);
      await h.incr('nope', 1, false);
      await h.incr('nope', 1, false);
      expectCounters({ incr_hits: 1, decr_hits: 1, incr_misses: 1, decr_misses: 2 });

      await h.touch('k', 100);
      await h.touch('nope', 100);
      await h.kv.getAndTouch('k', 0);
      expectCounters({ cmd_touch: 3, touch_hits: 2, touch_misses: 1, cmd_get: 3, get_hits: 2 });

      await h.set('e', 'v', { exptime: 1 });
      h.clock.advance(1_000);
      await h.kv.get('e');
      expectCounters({ cmd_get: 4, get_misses: 2, get_expired: 1 });

      await h.kv.delete('k');
      await h.kv.delete('k');
      expectCounters({ delete_hits: 1, delete_misses: 1 });

      await h.set('f', 'v');
      await h.kv.flushAll(0);
      await h.kv.get('f');
      expectCounters({ cmd_flush: 1, cmd_get: 5, get_misses: 3, get_flushed: 1, get_hits: 2 });

      await h.set('big', 'x'.repeat(2000));
      expectCounters({ store_too_large: 1 });
      // Reads that only peek (internal checks) count nothing.
      h.kv.peek('f');
      expectCounters({ cmd_get: 5 });
    });
  });

  describe('sweep', () => {
    it('removes expired and flushed records, and tombstones older than the grace period only', async () => {
      for (const k of ['e1', 'e2', 'e3']) await h.set(k, 'v', { exptime: 1 });
      await h.set('live1', 'v');
      await h.set('live2', 'v', { exptime: 1000 });
      await h.set('dead', 'v');
      await h.kv.delete('dead');
      h.clock.advance(2_000);
      await h.sweepPass();
      for (const k of ['e1', 'e2', 'e3']) expect(h.store.get(k), k).toBeUndefined();
      expect(h.value('live1')).toBe('v');
      expect(h.value('live2')).toBe('v');
      expect(h.store.get('dead')?.tombstone).toBe(true); // 2 s old: kept
      expect(h.kv.counters).toMatchObject({ expired_swept: 3, tombstones_purged: 0 });

      h.clock.set(T0 + GRACE_MS - 1);
      await h.sweepPass();
      expect(h.store.get('dead')?.tombstone).toBe(true);
      h.clock.set(T0 + GRACE_MS + 1);
      await h.sweepPass();
      expect(h.store.get('dead')).toBeUndefined();
      expect(h.kv.counters).toMatchObject({ expired_swept: 3, tombstones_purged: 1 });
      expect(h.store.stats().items).toBe(2);
    });

    it('removes flushed records and keeps those written after the flush', async () => {
      await h.set('old1', 'v');
      await h.set('old2', 'v');
      await h.kv.flushAll(0);
      await h.set('new', 'v');
      await h.sweepPass();
      expect(h.store.get('old1')).toBeUndefined();
      expect(h.store.get('old2')).toBeUndefined();
      expect(h.value('new')).toBe('v');
      expect(h.kv.counters.expired_swept).toBe(2);
    });

    it('leaves items of a delayed flush alone until the flush takes effect', async () => {
      await h.set('k', 'v');
      await h.kv.flushAll(10);
      await h.sweepPass();
      expect(h.value('k')).toBe('v');
      h.clock.advance(10_001);
      await h.sweepPass();
      expect(h.store.get('k')).toBeUndefined();
    });

    it('makes progress in bounded steps and starts over after a full pass', async () => {
      const expired = 30;
      for (let i = 0; i < expired; i++) await h.set(`e${String(i).padStart(2, '0')}`, 'v', { exptime: 1 });
      for (let i = 0; i < 5; i++) await h.set(`l${i}`, 'v');
      h.clock.advance(1_000);
      const limit = 7;
      let steps = 0;
      let finished = false;
      while (!finished) {
        const before = h.kv.counters.expired_swept;
        finished = await h.kv.sweepStep(limit);
        steps++;
        const removed = h.kv.counters.expired_swept - before;
        expect(removed).toBeLessThanOrEqual(limit);
        if (!finished) expect(steps).toBeLessThanOrEqual(Math.ceil((expired + 5) / limit));
        expect(steps).toBeLessThanOrEqual(Math.ceil((expired + 5) / limit) + 1);
      }
      expect(h.kv.counters.expired_swept).toBe(expired);
      expect(h.store.stats().items).toBe(5);
      // The next pass starts from the beginning again.
      await h.set('a-new', 'v', { exptime: 1 });
      h.clock.advance(1_000);
      await h.sweepPass(limit);
      expect(h.store.get('a-new')).toBeUndefined();
      expect(h.kv.counters.expired_swept).toBe(expired + 1);
    });

    it('never removes a live item', async () => {
      for (let i = 0; i < 20; i++) await h.set(`k${i}`, String(i), { exptime: i % 2 === 0 ? 0 : 3600 });
      h.clock.advance(60 * 60 * 1000 - 1);
      await h.sweepPass(3);
      for (let i = 0; i < 20; i++) expect(h.value(`k${i}`)).toBe(String(i));
      expect(h.kv.counters.expired_swept).toBe(0);
    });
  });
});

describe('LocalKv over LevelStore across restarts', () => {
  const factory = levelFactory();
  afterEach(async () => {
    await factory.cleanup();
  });

  /** Closes h's store and starts a new kv on the same directory with `clock`. */
  async function restart(h: Harness, clock: ManualClock): Promise<Harness> {
    const store = await factory.reopen!(h.store, { clock, open: false });
    return Harness.start(factory, clock, store);
  }

  it('a get of a key whose write is not yet durable waits for it', async () => {
    const h = await Harness.start(factory);
    const write = h.kv.storeItem('set', 'k', b('v'), 0, 0);
    const read = h.kv.get('k');
    expect(read).toBeInstanceOf(Promise);
    expect((await read)?.value.toString()).toBe('v');
    expect(h.store.pending('k')).toBeUndefined();
    expect((await write).status).toBe('STORED');
  });

  it('finds its data, cas uniques and flush marker again after close and reopen', async () => {
    const clock = new ManualClock(T0);
    let h = await Harness.start(factory, clock);
    await h.set('old', 'flushed');
    await h.set('exp', 'soon', { exptime: 100 });
    h.clock.advance(1);
    await h.kv.flushAll(0);
    await h.set('kept', 'v', { flags: 3 });
    await h.set('exp', 'soon', { exptime: 100 });
    await h.kv.delete('exp2');
    const cas = h.cas('kept');
    h.clock.advance(1_000);
    h = await restart(h, clock);
    expect(h.value('old')).toBeUndefined();
    expect(h.value('kept')).toBe('v');
    expect(h.kv.peek('kept')?.flags).toBe(3);
    expect(h.cas('kept')).toBe(cas);
    expect(await h.store_('cas', 'kept', 'v2', { cas })).toBe('STORED');
    expect(h.value('exp')).toBe('soon');
    h.clock.advance(100_000);
    expect(h.value('exp')).toBeUndefined();
  });

  it('a delayed flush marker survives the restart and takes effect on time', async () => {
    const clock = new ManualClock(T0);
    let h = await Harness.start(factory, clock);
    await h.set('k', 'v');
    await h.kv.flushAll(100);
    clock.advance(10_000);
    h = await restart(h, clock);
    expect(h.value('k')).toBe('v');
    clock.set(T0 + 100_001);
    expect(h.value('k')).toBeUndefined();
  });

  it('after a restart, items written during a pending delayed flush still vanish when it takes effect', async () => {
    const clock = new ManualClock(T0);
    let h = await Harness.start(factory, clock);
    await h.kv.flushAll(100);
    clock.advance(10_000);
    h = await restart(h, clock);
    await h.set('during', 'v');
    const cas = h.cas('during');
    clock.set(T0 + 100_001);
    expect(h.value('during')).toBeUndefined();
    // A cas unique issued at T0+10s carries T0+10s, not the flush's future effective time.
    expect(cas).toBeLessThanOrEqual(casUnique({ wallMs: T0 + 10_000, logical: 0xffff }));
  });

  describe('the HLC never issues a cas unique at or below one issued before the restart', () => {
    // Each scenario ends with the wall clock set back an hour (NTP step, VM restore): only
    // what the node persisted can keep its HLC ahead.
    async function maxCasAfterRestart(before: (h: Harness) => Promise<bigint>): Promise<{ issued: bigint; after: bigint }> {
      const clock = new ManualClock(T0);
      let h = await Harness.start(factory, clock);
      const issued = await before(h);
      h = await restart(h, new ManualClock(T0 - 3_600_000));
      await h.set('fresh', 'v');
      return { issued, after: h.cas('fresh') };
    }

    it('when the newest version is a live record', async () => {
      const { issued, after } = await maxCasAfterRestart(async (h) => {
        let max = 0n;
        for (let i = 0; i < 50; i++) {
          await h.set(`k${i % 7}`, String(i));
          max = h.cas(`k${i % 7}`) > max ? h.cas(`k${i % 7}`) : max;
          if (i % 10 === 0) h.clock.advance(3);
        }
        return max;
      });
      expect(after).toBeGreaterThan(issued);
    });

    it('when the newest version is a tombstone', async () => {
      const { issued, after } = await maxCasAfterRestart(async (h) => {
        await h.set('k', 'v');
        h.clock.advance(10);
        await h.kv.delete('k');
        return casUnique(h.store.get('k')!.version.ts);
      });
      expect(after).toBeGreaterThan(issued);
    });

    it('when the last thing it did was a flush_all', async () => {
      const { issued, after } = await maxCasAfterRestart(async (h) => {
        await h.set('k', 'v');
        const c = h.cas('k');
        h.clock.advance(10);
        await h.kv.flushAll(0);
        return c + (10n << 16n);
      });
      expect(after).toBeGreaterThan(issued);
    });

    it('when the records that carried the newest versions have been swept away', async () => {
      const { issued, after } = await maxCasAfterRestart(async (h) => {
        await h.set('e', 'v', { exptime: 1 });
        const c1 = h.cas('e');
        await h.set('d', 'v');
        await h.kv.delete('d');
        const c2 = casUnique(h.store.get('d')!.version.ts);
        h.clock.advance(GRACE_MS + 1_000);
        await h.sweepPass();
        expect(h.store.get('e')).toBeUndefined();
        expect(h.store.get('d')).toBeUndefined();
        return c1 > c2 ? c1 : c2;
      });
      expect(after).toBeGreaterThan(issued);
    });
  });
});

describe('parseStoredU64 (memcached safe_strtoull over a stored value)', () => {
  it.each([
    ['12', 12n],
    [' 12', 12n],
    ['\t\n\v\f\r 12', 12n],
    ['1 2', 1n],
    ['12 ', 12n],
    ['12\r\n', 12n],
    ['+7', 7n],
    ['007', 7n],
    ['0', 0n],
    ['-0', 0n],
    ['18446744073709551615', U64_MAX],
    ['12a', undefined],
    ['a12', undefined],
    ['', undefined],
    [' ', undefined],
    ['+', undefined],
    ['-', undefined],
    ['-5', undefined],
    ['1.5', undefined],
    ['0x10', undefined],
    ['18446744073709551616', undefined],
    ['99999999999999999999', undefined],
    ['123456789012345678901234567890', undefined],
  ])('%j -> %s', (text, want) => {
    expect(parseStoredU64(b(text))).toBe(want);
  });

  const ws = fc.constantFrom(' ', '\t', '\n', '\r', '\v', '\f');
  it('reads any u64 with leading white space and anything after a white space', () => {
    fc.assert(
      fc.property(
        fc.bigInt({ min: 0n, max: U64_MAX }),
        fc.array(ws, { maxLength: 3 }),
        fc.option(fc.tuple(ws, fc.string({ maxLength: 8 }))),
        fc.boolean(),
        (n, lead, tail, plus) => {
          const text = lead.join('') + (plus ? '+' : '') + n.toString() + (tail ? tail[0] + tail[1] : '');
          expect(parseStoredU64(b(text))).toBe(n);
        },
      ),
    );
  });

  it('refuses a number above 2^64-1', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: U64_MAX + 1n, max: 10n ** 30n }), (n) => {
        expect(parseStoredU64(b(n.toString()))).toBeUndefined();
      }),
    );
  });

  it('refuses digits followed by anything but white space', () => {
    fc.assert(
      fc.property(
        fc.bigInt({ min: 0n, max: U64_MAX }),
        fc.integer({ min: 0x21, max: 0xff }).filter((c) => c < 0x30 || c > 0x39),
        fc.string({ maxLength: 5 }),
        (n, junk, rest) => {
          expect(parseStoredU64(Buffer.concat([b(n.toString()), Buffer.from([junk]), b(rest)]))).toBeUndefined();
        },
      ),
    );
  });

  it('refuses a negative number, unless strtoull wrapped it to a small positive one (as memcached)', () => {
    // strtoull("-n") is 2^64 - n; safe_strtoull refuses it only when that looks negative
    // as a signed 64-bit number, so "-18446744073709551615" reads as 1 in memcached too.
    fc.assert(
      fc.property(fc.bigInt({ min: 1n, max: 1n << 63n }), (n) => {
        expect(parseStoredU64(b(`-${n}`))).toBeUndefined();
      }),
    );
    fc.assert(
      fc.property(fc.bigInt({ min: (1n << 63n) + 1n, max: U64_MAX }), (n) => {
        expect(parseStoredU64(b(`-${n}`))).toBe((1n << 64n) - n);
      }),
    );
    expect(parseStoredU64(b('-18446744073709551615'))).toBe(1n);
  });
});

describe('expiryFromExptime', () => {
  const now = T0;
  it('follows memcached: 0 never, negative expired, relative up to 30 days, absolute beyond', () => {
    expect(expiryFromExptime(0, now)).toBe(0);
    expect(expiryFromExptime(-1, now)).toBe(-1);
    expect(expiryFromExptime(-1_000_000, now)).toBe(-1);
    expect(expiryFromExptime(1, now)).toBe(now + 1_000);
    expect(expiryFromExptime(REALTIME_MAXDELTA_S, now)).toBe(now + REALTIME_MAXDELTA_S * 1000);
    expect(expiryFromExptime(REALTIME_MAXDELTA_S + 1, now)).toBe(-1);
    expect(expiryFromExptime(now / 1000 + 5, now)).toBe(now + 5_000);
    expect(expiryFromExptime(now / 1000, now)).toBe(-1);
  });
});
