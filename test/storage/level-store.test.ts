// LevelStore beyond the shared conformance suite: group commit (one LevelDB batch per
// event-loop turn, applied in order), reads while a batch is in flight, the highest
// timestamp found on open, and the bounded LRU tier in front of LevelDB.
import { Level } from 'level';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ManualClock } from '../../server/clock.js';
import { LevelStore } from '../../server/storage/level-store.js';
import { compareHlc, type Hlc } from '../../server/storage/record.js';
import { content, nextTurn, rec, TempDirs } from './fixtures.js';

const dirs = new TempDirs();
const opened: LevelStore[] = [];

async function openStore(dir: string, cacheBytes = 8 * 1024 * 1024): Promise<LevelStore> {
  const store = new LevelStore({ dir, cacheBytes, clock: new ManualClock() });
  opened.push(store);
  await store.open();
  return store;
}

afterEach(async () => {
  vi.restoreAllMocks();
  await Promise.all(opened.splice(0).map((s) => s.close()));
  await dirs.removeAll();
});

/** Counts the write batches LevelDB receives (array-form db.batch calls) from now on. */
function countBatches(): { readonly count: number; readonly sizes: number[] } {
  const sizes: number[] = [];
  const original = Level.prototype.batch;
  vi.spyOn(Level.prototype, 'batch').mockImplementation(function (this: Level<Buffer, Uint8Array>, ...args: unknown[]) {
    if (Array.isArray(args[0])) sizes.push(args[0].length);
    return (original as (...a: unknown[]) => unknown).apply(this, args) as never;
  });
  return {
    get count() {
      return sizes.length;
    },
    sizes,
  };
}

describe('LevelStore group commit', () => {
  it('writes of one turn go into one batch, and the later write to a key wins after reopen', async () => {
    const dir = await dirs.make();
    const store = await openStore(dir);
    const batches = countBatches();
    const p1 = store.put('k', rec('first', { ts: { wallMs: 1, logical: 0 } }));
    const p2 = store.put('other', rec('o'));
    const p3 = store.put('k', rec('second', { ts: { wallMs: 2, logical: 0 } }));
    const p4 = store.remove('gone');
    await Promise.all([p1, p2, p3, p4]);
    // One batch for the whole turn; the two writes to 'k' were coalesced into one op.
    expect(batches.sizes).toEqual([3]);
    await store.close();
    const again = await openStore(dir);
    expect(again.get('k')?.value.toString()).toBe('second');
    expect(again.get('k')?.version.ts).toEqual({ wallMs: 2, logical: 0 });
    expect(again.get('other')?.value.toString()).toBe('o');
  });

  it('writes of different turns go into different batches, applied in order', async () => {
    const dir = await dirs.make();
    const store = await openStore(dir);
    const batches = countBatches();
    const acks: Array<Promise<void>> = [];
    // Each turn overwrites the same key; the batches must reach LevelDB in turn order.
    for (let i = 0; i < 20; i++) {
      acks.push(store.put('k', rec(`v${i}`)), store.put(`turn:${i}`, rec(String(i))));
      if (i % 2 === 0) acks.push(store.remove(`turn:${i}`));
      await nextTurn();
    }
    await Promise.all(acks);
    expect(batches.count).toBeGreaterThan(1);
    expect(batches.count).toBeLessThanOrEqual(20);
    await store.close();
    const again = await openStore(dir);
    expect(again.get('k')?.value.toString()).toBe('v19');
    for (let i = 0; i < 20; i++) expect(again.get(`turn:${i}`)?.value.toString()).toBe(i % 2 === 0 ? undefined : String(i));
  });

  it('reads during an in-flight batch see the newest value', async () => {
    const dir = await dirs.make();
    const store = await openStore(dir);
    await store.put('k', rec('durable'));
    await store.put('r', rec('to remove'));
    const p1 = store.put('k', rec('in flight'));
    const p2 = store.remove('r');
    await nextTurn(); // the batch has been handed to LevelDB (or has even committed)
    expect(store.get('k')?.value.toString()).toBe('in flight');
    expect(store.get('r')).toBeUndefined();
    const p3 = store.put('k', rec('newest'));
    const p4 = store.put('r', rec('back'));
    // Both the batch in flight and the open one hold 'k': the open one is newer.
    expect(store.get('k')?.value.toString()).toBe('newest');
    expect(store.get('r')?.value.toString()).toBe('back');
    expect(store.pending('k')).toBeInstanceOf(Promise);
    await store.pending('k');
    expect(store.get('k')?.value.toString()).toBe('newest');
    expect(store.pending('k')).toBeUndefined();
    await Promise.all([p1, p2, p3, p4]);
    await store.close();
    const again = await openStore(dir);
    expect(again.get('k')?.value.toString()).toBe('newest');
    expect(again.get('r')?.value.toString()).toBe('back');
  });

  it('the promise of a later write resolves no earlier than that of an earlier one', async () => {
    const store = await openStore(await dirs.make());
    const order: number[] = [];
    const acks: Array<Promise<void>> = [];
    for (let i = 0; i < 10; i++) {
      acks.push(store.put(`k${i}`, rec('v')).then(() => void order.push(i)));
      if (i % 3 === 0) await nextTurn();
    }
    await Promise.all(acks);
    expect(order).toEqual([...order].sort((a, b) => a - b));
  });

  it('close() makes every accepted write durable, even ones never awaited', async () => {
    const dir = await dirs.make();
    const store = await openStore(dir);
    for (let i = 0; i < 500; i++) void store.put(`k${i}`, rec(`v${i}`));
    await nextTurn();
    for (let i = 500; i < 1000; i++) void store.put(`k${i}`, rec(`v${i}`));
    for (let i = 0; i < 1000; i += 10) void store.remove(`k${i}`);
    await store.close();
    const again = await openStore(dir);
    for (let i = 0; i < 1000; i++) expect(again.get(`k${i}`)?.value.toString()).toBe(i % 10 === 0 ? undefined : `v${i}`);
    expect(again.stats().items).toBe(900);
  });
});

describe('LevelStore open', () => {
  it('highestTimestamp() is undefined on an empty store and the max version ts after reopen', async () => {
    const dir = await dirs.make();
    const store = await openStore(dir);
    expect(store.highestTimestamp()).toBeUndefined();
    // Not in key order, and not in write order: the max must be found wherever it is.
    const stamps: Hlc[] = [
      { wallMs: 1_700_000_000_500, logical: 3 },
      { wallMs: 1_700_000_000_900, logical: 0 },
      { wallMs: 1_700_000_000_900, logical: 7 },
      { wallMs: 1_700_000_000_100, logical: 65535 },
      { wallMs: 1_700_000_000_899, logical: 65535 },
    ];
    const keys = ['m', 'z', 'c', 'a', 'q'];
    await Promise.all(stamps.map((ts, i) => store.put(keys[i]!, rec('v', { ts }))));
    await store.close();
    const again = await openStore(dir);
    const max = [...stamps].sort(compareHlc).at(-1);
    expect(again.highestTimestamp()).toEqual(max);
    expect(max).toEqual({ wallMs: 1_700_000_000_900, logical: 7 });
  });

  it('a tombstone counts for highestTimestamp (it is a version like any other)', async () => {
    const dir = await dirs.make();
    const store = await openStore(dir);
    await store.put('live', rec('v', { ts: { wallMs: 100, logical: 0 } }));
    await store.put('dead', rec('', { tombstone: true, ts: { wallMs: 200, logical: 4 } }));
    await store.close();
    const again = await openStore(dir);
    expect(again.highestTimestamp()).toEqual({ wallMs: 200, logical: 4 });
  });

  it('recounts items and bytes on open', async () => {
    const dir = await dirs.make();
    const store = await openStore(dir);
    const acks: Array<Promise<void>> = [];
    for (let i = 0; i < 50; i++) acks.push(store.put(`key${i}`, rec('x'.repeat(i), { tombstone: i % 5 === 0 })));
    acks.push(store.remove('key7'), store.put('key8', rec('y'.repeat(100))));
    await Promise.all(acks);
    const before = store.stats();
    expect(before.items).toBe(50 - 10 - 1);
    await store.close();
    const again = await openStore(dir);
    expect(again.stats().items).toBe(before.items);
    expect(again.stats().bytes).toBe(before.bytes);
  });
});

describe('LevelStore cache tier', () => {
  it('is bounded, and reads of evicted records come from LevelDB', async () => {
    const dir = await dirs.make();
    const cacheBytes = 4096;
    const store = await openStore(dir, cacheBytes);
    const n = 200;
    const value = (i: number) => `${i}:`.padEnd(200, String.fromCharCode(0x61 + (i % 26)));
    const acks: Array<Promise<void>> = [];
    for (let i = 0; i < n; i++) acks.push(store.put(`k${i}`, rec(value(i))));
    await Promise.all(acks);

    // k0 was written first; a 4 KiB tier cannot still hold it after 200 records of ~300 bytes.
    const s0 = store.stats();
    expect(store.get('k0')?.value.toString()).toBe(value(0));
    const s1 = store.stats();
    expect(s1.cacheMisses).toBe(s0.cacheMisses + 1);
    // Read back from LevelDB, it is in the tier again.
    expect(store.get('k0')?.value.toString()).toBe(value(0));
    const s2 = store.stats();
    expect(s2.cacheHits).toBe(s1.cacheHits + 1);
    expect(s2.cacheMisses).toBe(s1.cacheMisses);

    // A full pass: the tier holds a dozen records at most, so nearly every read misses.
    for (let i = 0; i < n; i++) expect(store.get(`k${i}`)?.value.toString()).toBe(value(i));
    const s3 = store.stats();
    const perRecord = 'k000'.length + 200 + 96;
    expect(s3.cacheMisses - s2.cacheMisses).toBeGreaterThanOrEqual(n - Math.ceil(cacheBytes / perRecord));
    expect(s3.cacheHits + s3.cacheMisses - s2.cacheHits - s2.cacheMisses).toBe(n);
  });

  it('a record larger than the whole tier is still stored and read', async () => {
    const dir = await dirs.make();
    const store = await openStore(dir, 1024);
    const big = Buffer.alloc(64 * 1024, 0xab);
    const p = store.put('big', rec(big));
    expect(store.get('big')?.value.equals(big)).toBe(true);
    await p;
    expect(store.get('big')?.value.equals(big)).toBe(true);
    expect(store.stats().items).toBe(1);
  });

  it('a removed record is not served from the tier or from LevelDB', async () => {
    const dir = await dirs.make();
    const store = await openStore(dir, 1 << 20);
    await store.put('k', rec('v'));
    expect(store.get('k')?.value.toString()).toBe('v'); // now in the tier
    await store.remove('k');
    expect(store.get('k')).toBeUndefined();
    expect(store.get('k')).toBeUndefined();
  });

  it('a reopened store starts with a cold tier and reads what is on disk', async () => {
    const dir = await dirs.make();
    const store = await openStore(dir);
    const r = rec('persisted', { flags: 42, ts: { wallMs: 9, logical: 9 } });
    await store.put('k', r);
    await store.close();
    const again = await openStore(dir);
    expect(again.stats().cacheMisses).toBe(0);
    expect(content(again.get('k'))).toEqual(content(r));
    expect(again.stats().cacheMisses).toBe(1);
  });
});

describe('LevelStore when LevelDB refuses a batch', () => {
  /** Makes the next array-form db.batch call return a promise the test settles; later calls pass through. */
  function holdNextBatch(): { fail: (e: Error) => void; readonly held: boolean } {
    let fail: ((e: Error) => void) | undefined;
    const original = Level.prototype.batch;
    let used = false;
    vi.spyOn(Level.prototype, 'batch').mockImplementation(function (this: Level<Buffer, Uint8Array>, ...args: unknown[]) {
      if (!used && Array.isArray(args[0])) {
        used = true;
        return new Promise<void>((_resolve, reject) => {
          fail = reject;
        }) as never;
      }
      return (original as (...a: unknown[]) => unknown).apply(this, args) as never;
    });
    return {
      fail: (e) => {
        if (!fail) throw new Error('no batch was held');
        fail(e);
      },
      get held() {
        return fail !== undefined;
      },
    };
  }

  async function withDurable(): Promise<{ dir: string; store: LevelStore }> {
    const dir = await dirs.make();
    const store = await openStore(dir);
    await store.put('k', rec('durable'));
    return { dir, store };
  }

  it('rejects the writes of the failed batch and every later write', async () => {
    const { store } = await withDurable();
    const batch = holdNextBatch();
    const refused = store.put('k', rec('refused'));
    await nextTurn();
    expect(batch.held).toBe(true);
    batch.fail(new Error('disk full'));
    await expect(refused).rejects.toThrow('disk full');
    await expect(store.put('later', rec('x'))).rejects.toThrow('disk full');
  });

  it('pending() of a key in the failing batch rejects, so that no read waiting on it is answered', async () => {
    const { store } = await withDurable();
    const batch = holdNextBatch();
    void store.put('k', rec('refused')).catch(() => {});
    await nextTurn();
    const waiting = store.pending('k');
    expect(waiting).toBeInstanceOf(Promise);
    batch.fail(new Error('disk full'));
    await expect(waiting).rejects.toThrow('disk full');
  });

  it('a refused write is not served by later reads', async () => {
    const { store } = await withDurable();
    const batch = holdNextBatch();
    void store.put('k', rec('refused')).catch(() => {});
    void store.put('new', rec('refused too')).catch(() => {});
    await nextTurn();
    batch.fail(new Error('disk full'));
    await store.pending('k')?.catch(() => {});
    await nextTurn();
    // LevelDB holds 'durable' and no 'new': a reply showing anything else shows a value
    // that the next restart takes back.
    expect(store.get('k')?.value.toString()).toBe('durable');
    expect(store.get('new')).toBeUndefined();
  });

  it('close() does not write, after the failure, the writes it refused', async () => {
    const { dir, store } = await withDurable();
    const batch = holdNextBatch();
    const first = store.put('k', rec('refused'));
    await nextTurn();
    // Accepted into the next batch while the first is in flight; refused when the first fails.
    const second = store.put('queued', rec('refused'));
    batch.fail(new Error('disk full'));
    await expect(first).rejects.toThrow('disk full');
    await expect(second).rejects.toThrow('disk full');
    await store.close();
    vi.restoreAllMocks();
    const again = await openStore(dir);
    expect(again.get('k')?.value.toString()).toBe('durable');
    expect(again.get('queued')).toBeUndefined();
  });
});
