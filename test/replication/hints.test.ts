// The durable hint store (server/replication/hints.ts) over a real LevelDB in temporary
// directories: round trip, durability across a restart, replay pagination in key order,
// replacement and stale acknowledgements, the byte bound, the hint window (at add and by
// expire), isolation between targets ('n1' vs 'n10'), the key space it occupies, misuse,
// and the decommission drain. Time moves only through a ManualClock.
import { Level } from 'level';
import { afterEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../server/clock.js';
import {
  HINT_ENTRIES_MAX,
  HintArgumentError,
  HintStore,
  HintStoreBusyError,
  HintStoreStateError,
  hintSublevel,
  type HintEntry,
  type HintSpace,
  type HintStoreOptions,
} from '../../server/replication/hints.js';
import { encodeRecord, type Hlc, type StoredRecord } from '../../server/storage/record.js';
import { AssertionError } from '../../server/util/assert.js';
import { byteOrder, content, latin1, rec, TempDirs } from '../storage/fixtures.js';

const HOUR_MS = 3600_000;
const WINDOW_MS = 3 * HOUR_MS;
const T0 = 1_700_000_000_000;

type Db = Level<Buffer, Uint8Array>;
interface Opened {
  dir: string;
  db: Db;
  hints: HintStore;
}
type Settings = Partial<Pick<HintStoreOptions, 'maxHintBytes' | 'hintWindowMs' | 'maxQueuedWrites'>>;

const dirs = new TempDirs();
const dbs = new Set<Db>();
let clock = new ManualClock(T0);

afterEach(async () => {
  // Closing a Level closes its sublevels, hence the hint stores over it.
  await Promise.all([...dbs].map((db) => db.close()));
  dbs.clear();
  await dirs.removeAll();
  clock = new ManualClock(T0);
});

/** A LevelDB opened the way a node opens its own (buffer keys, view values), and a HintStore over it. */
async function openAt(dir: string, settings: Settings = {}): Promise<Opened> {
  const db: Db = new Level<Buffer, Uint8Array>(dir, { keyEncoding: 'buffer', valueEncoding: 'view' });
  await db.open();
  dbs.add(db);
  const hints = new HintStore({
    db,
    clock,
    maxHintBytes: settings.maxHintBytes ?? 64 * 1024 * 1024,
    hintWindowMs: settings.hintWindowMs ?? WINDOW_MS,
    ...(settings.maxQueuedWrites === undefined ? {} : { maxQueuedWrites: settings.maxQueuedWrites }),
  });
  await hints.open();
  return { dir, db, hints };
}

async function create(settings: Settings = {}): Promise<Opened> {
  return openAt(await dirs.make(), settings);
}

/** A restart: close the store and its LevelDB, then open both over the same files. */
async function reopen(o: Opened, settings: Settings = {}): Promise<Opened> {
  await o.hints.close();
  await o.db.close();
  dbs.delete(o.db);
  return openAt(o.dir, settings);
}

/** A record whose version was made `ageMs` before the clock's now. */
function aged(value: string, ageMs = 0, logical = 0): StoredRecord {
  const ts: Hlc = { wallMs: clock.now() - ageMs, logical };
  return rec(value, { ts, clock: { n1: logical + 1 } });
}

/** The charge the store must report for a hint, computed independently of the store. */
function charge(target: string, key: string, r: StoredRecord): number {
  return Buffer.byteLength(target, 'latin1') + Buffer.byteLength(key, 'latin1') + encodeRecord(r).length;
}

function acks(entries: readonly HintEntry[]): Array<{ key: string; ts: Hlc }> {
  return entries.map((e) => ({ key: e.key, ts: e.record.version.ts }));
}

/** Every hint of a target, paging with the given bounds; checks each page's bounds on the way. */
async function readAll(hints: HintStore, target: string, maxEntries = 7, maxBytes = 1 << 30): Promise<HintEntry[]> {
  const out: HintEntry[] = [];
  let after: string | undefined;
  for (let pages = 0; pages < 10_000; pages++) {
    const page = await hints.batch(target, after, maxEntries, maxBytes);
    if (page.length === 0) return out;
    expect(page.length).toBeLessThanOrEqual(maxEntries);
    if (page.length > 1) expect(page.reduce((n, e) => n + charge(target, e.key, e.record), 0)).toBeLessThanOrEqual(maxBytes);
    out.push(...page);
    after = page[page.length - 1]!.key;
  }
  throw new Error('batch paging did not terminate');
}

describe('HintStore', () => {
  it('adds, replays in a batch and deletes on acknowledgement', async () => {
    const { hints } = await create();
    const a = aged('alpha', 1000);
    const b = aged('beta', 2000);
    const c = aged('', 10, 3);
    expect(await hints.add('n2', 'k2', b)).toBe('stored');
    expect(await hints.add('n2', 'k1', a)).toBe('stored');
    expect(await hints.add('n2', 'k3', { ...c, tombstone: true })).toBe('stored');
    expect(hints.targets()).toEqual(['n2']);
    const bytes = charge('n2', 'k1', a) + charge('n2', 'k2', b) + charge('n2', 'k3', { ...c, tombstone: true });
    expect(hints.pending('n2')).toEqual({ entries: 3, bytes });

    const page = await hints.batch('n2', undefined, 10, 1 << 20);
    expect(page.map((e) => e.key)).toEqual(['k1', 'k2', 'k3']);
    expect(page.map((e) => content(e.record))).toEqual([content(a), content(b), content({ ...c, tombstone: true })]);

    expect(await hints.acknowledge('n2', acks(page))).toBe(3);
    expect(hints.targets()).toEqual([]);
    expect(hints.pending('n2')).toEqual({ entries: 0, bytes: 0 });
    expect(await hints.batch('n2', undefined, 10, 1 << 20)).toEqual([]);
    expect(hints.stats()).toMatchObject({ entries: 0, bytes: 0, stored: 3, replayed: 3, dropped: 0, expired: 0 });
  });

  it('keeps hints, counts and bytes across a restart, and serves them after it', async () => {
    let o = await create();
    const written = new Map<string, StoredRecord>();
    for (let i = 0; i < 40; i++) {
      const target = `n${i % 3}`;
      const key = `key-${i}`;
      const r = aged(`value-${i}`.repeat(i % 5), i * 1000, i % 4);
      expect(await o.hints.add(target, key, r)).toBe('stored');
      written.set(`${target}/${key}`, r);
    }
    // One replaced and one acknowledged before the restart.
    const newer = aged('newer', 0, 9);
    await o.hints.add('n0', 'key-0', newer);
    written.set('n0/key-0', newer);
    const [first] = await o.hints.batch('n1', undefined, 1, 1 << 20);
    expect(await o.hints.acknowledge('n1', acks([first!]))).toBe(1);
    written.delete(`n1/${first!.key}`);

    const before = { targets: o.hints.targets(), pending: o.hints.targets().map((t) => o.hints.pending(t)), stats: o.hints.stats() };
    o = await reopen(o);
    expect(o.hints.targets()).toEqual(before.targets);
    expect(o.hints.targets().map((t) => o.hints.pending(t))).toEqual(before.pending);
    expect(o.hints.stats()).toMatchObject({ entries: before.stats.entries, bytes: before.stats.bytes, stored: 0, replayed: 0 });

    const expectedBytes = [...written].reduce((n, [tk, r]) => n + charge(tk.split('/')[0]!, tk.split('/')[1]!, r), 0);
    expect(o.hints.stats()).toMatchObject({ entries: written.size, bytes: expectedBytes });
    const found = new Map<string, StoredRecord>();
    for (const t of o.hints.targets()) for (const e of await readAll(o.hints, t)) found.set(`${t}/${e.key}`, e.record);
    expect(new Map([...found].map(([k, r]) => [k, content(r)]))).toEqual(new Map([...written].map(([k, r]) => [k, content(r)])));
  });

  it('pages through one target once, in key byte order, within both bounds', async () => {
    const { hints } = await create();
    // Keys with control bytes and high bytes, as memcached clients send them.
    const keys = new Set<string>();
    for (let i = 0; keys.size < 60; i++) {
      const key = latin1(1 + ((i * 37) % 255), 0x21 + ((i * 11) % 200), ...(i % 3 ? [0xff] : []));
      if (!/[ \n]/.test(key)) keys.add(key);
    }
    for (const [i, key] of [...keys].entries()) await hints.add('n2', key, aged('v'.repeat(i % 13), 5));
    const sorted = [...keys].sort(byteOrder);
    for (const [maxEntries, maxBytes] of [[1, 1 << 20], [7, 1 << 20], [1000, 1 << 20], [50, 200], [50, 1]] as const) {
      const all = await readAll(hints, 'n2', maxEntries, maxBytes);
      expect(all.map((e) => e.key)).toEqual(sorted);
    }
    // Resuming after a key that is no longer held starts at the next one held.
    const page = await hints.batch('n2', sorted[29], 1, 1 << 20);
    expect(page.map((e) => e.key)).toEqual([sorted[30]]);
    expect(await hints.acknowledge('n2', acks(page))).toBe(1);
    expect((await hints.batch('n2', sorted[30], 1, 1 << 20)).map((e) => e.key)).toEqual([sorted[31]]);
  });

  it('returns a hint larger than maxBytes alone, so replay never stalls', async () => {
    const { hints } = await create();
    await hints.add('n2', 'a', aged('x'.repeat(1000)));
    await hints.add('n2', 'b', aged('y'));
    const first = await hints.batch('n2', undefined, 10, 100);
    expect(first.map((e) => e.key)).toEqual(['a']);
    expect((await hints.batch('n2', 'a', 10, 100)).map((e) => e.key)).toEqual(['b']);
  });

  it('fills a batch up to exactly maxBytes and not one byte past it', async () => {
    const { hints } = await create();
    const [a, b, c] = [aged('aaaa'), aged('bbbbbbbb'), aged('c')];
    await hints.add('n2', 'a', a);
    await hints.add('n2', 'b', b);
    await hints.add('n2', 'c', c);
    const exact = charge('n2', 'a', a) + charge('n2', 'b', b);
    expect((await hints.batch('n2', undefined, 10, exact)).map((e) => e.key)).toEqual(['a', 'b']);
    expect((await hints.batch('n2', undefined, 10, exact - 1)).map((e) => e.key)).toEqual(['a']);
    expect((await hints.batch('n2', undefined, 2, 1 << 20)).map((e) => e.key)).toEqual(['a', 'b']);
  });

  it('replaces a hint only with a newer timestamp', async () => {
    const { hints } = await create();
    const mid = aged('mid', 1000, 5);
    const older = aged('older-and-longer', 1000, 4);
    const same = { ...aged('same-ts-other-value', 1000, 5) };
    const newer = aged('new', 1000, 6);
    expect(await hints.add('n2', 'k', mid)).toBe('stored');
    expect(await hints.add('n2', 'k', older)).toBe('stored'); // held version is newer: kept
    expect(await hints.add('n2', 'k', same)).toBe('stored'); // same version again: kept
    expect(content((await hints.batch('n2', undefined, 10, 1 << 20))[0]!.record)).toEqual(content(mid));
    expect(hints.pending('n2')).toEqual({ entries: 1, bytes: charge('n2', 'k', mid) });
    expect(hints.stats()).toMatchObject({ stored: 1, superseded: 2 });

    expect(await hints.add('n2', 'k', newer)).toBe('stored');
    expect(content((await hints.batch('n2', undefined, 10, 1 << 20))[0]!.record)).toEqual(content(newer));
    expect(hints.pending('n2')).toEqual({ entries: 1, bytes: charge('n2', 'k', newer) });
    expect(hints.stats()).toMatchObject({ entries: 1, stored: 2, superseded: 2 });
  });

  it('keeps a newer hint when the acknowledgement names the version it replaced', async () => {
    const { hints } = await create();
    const v1 = aged('v1', 100, 1);
    const v2 = aged('v2', 50, 0);
    await hints.add('n2', 'k', v1);
    await hints.add('n2', 'other', v1);
    const page = await hints.batch('n2', undefined, 10, 1 << 20);
    await hints.add('n2', 'k', v2); // written while the batch was in flight to the target
    expect(await hints.acknowledge('n2', acks(page))).toBe(1); // only 'other'
    const left = await hints.batch('n2', undefined, 10, 1 << 20);
    expect(left.map((e) => [e.key, content(e.record)])).toEqual([['k', content(v2)]]);
    expect(hints.pending('n2')).toEqual({ entries: 1, bytes: charge('n2', 'k', v2) });
    // Acknowledged twice, and an unknown key: nothing more is deleted or counted.
    expect(await hints.acknowledge('n2', [...acks(page), ...acks(page), { key: 'never', ts: v1.version.ts }])).toBe(0);
    expect(await hints.acknowledge('n2', [...acks(left), ...acks(left)])).toBe(1);
    expect(hints.stats()).toMatchObject({ entries: 0, bytes: 0, replayed: 2 });
  });

  it('refuses hints past maxHintBytes, counts them, and has room again after acknowledgements', async () => {
    const r = aged('0123456789');
    const each = charge('n2', 'k0', r);
    const { hints } = await create({ maxHintBytes: 3 * each });
    for (let i = 0; i < 3; i++) expect(await hints.add('n2', `k${i}`, r)).toBe('stored');
    expect(await hints.add('n3', 'k3', r)).toBe('dropped-full');
    expect(await hints.add('n2', 'k4', r)).toBe('dropped-full');
    // A larger replacement does not fit either; the held version stays.
    expect(await hints.add('n2', 'k0', aged('0123456789-longer', 0, 1))).toBe('dropped-full');
    // A replacement of the same size fits: it frees what it replaces.
    const same = aged('abcdefghij', 0, 2);
    expect(await hints.add('n2', 'k1', same)).toBe('stored');
    expect(hints.stats()).toMatchObject({ entries: 3, bytes: 3 * each, dropped: 3, droppedFull: 3, droppedOld: 0, stored: 4 });
    expect(hints.targets()).toEqual(['n2']);

    const [first] = await hints.batch('n2', undefined, 1, 1 << 20);
    await hints.acknowledge('n2', acks([first!]));
    expect(await hints.add('n3', 'k3', r)).toBe('stored');
    expect(hints.stats().bytes).toBe(3 * each);
  });

  it('refuses records older than the hint window at add time', async () => {
    const { hints } = await create();
    expect(await hints.add('n2', 'old', aged('x', WINDOW_MS + 1))).toBe('dropped-old');
    expect(await hints.add('n2', 'edge', aged('x', WINDOW_MS))).toBe('stored');
    expect(await hints.add('n2', 'future', aged('x', -60_000))).toBe('stored'); // a peer's clock ahead of ours
    expect(hints.stats()).toMatchObject({ entries: 2, dropped: 1, droppedOld: 1, droppedFull: 0 });
    expect((await hints.batch('n2', undefined, 10, 1 << 20)).map((e) => e.key)).toEqual(['edge', 'future']);
  });

  it('expires hints older than the window, oldest first, a bounded number per call, also after a restart', async () => {
    let o = await create();
    for (let i = 0; i < 10; i++) await o.hints.add(`n${i % 2}`, `old${i}`, aged('x', HOUR_MS + i * 1000));
    for (let i = 0; i < 4; i++) await o.hints.add(`n${i % 3}`, `young${i}`, aged('y', 0));
    // A hint replaced by a newer version is aged by the newer one.
    await o.hints.add('n1', 'old9', aged('z', 0, 1));
    expect(await o.hints.expire(100)).toBe(0);
    clock.advance(WINDOW_MS - HOUR_MS - 4500); // old5..old8 are past the window now (ages > 3 h)
    o = await reopen(o);
    expect(await o.hints.expire(3)).toBe(3); // old8, old7, old6: the oldest
    expect((await readAll(o.hints, 'n1')).map((e) => e.key)).toEqual(['old1', 'old3', 'old5', 'old9', 'young1']);
    expect(await o.hints.expire(3)).toBe(1);
    expect(await o.hints.expire(3)).toBe(0);
    const keys = async (t: string) => (await readAll(o.hints, t)).map((e) => e.key);
    expect([...(await keys('n0')), ...(await keys('n1')), ...(await keys('n2'))].sort()).toEqual(
      ['old0', 'old1', 'old2', 'old3', 'old4', 'old9', 'young0', 'young1', 'young2', 'young3'].sort(),
    );
    clock.advance(HOUR_MS);
    expect(await o.hints.expire(HINT_ENTRIES_MAX)).toBe(5);
    expect(o.hints.stats()).toMatchObject({ entries: 5, expired: 9 });
    expect(o.hints.targets().reduce((n, t) => n + o.hints.pending(t).entries, 0)).toBe(5);
  });

  it('keeps targets apart, including one whose name extends another', async () => {
    const { hints } = await create();
    const r1 = aged('for-n1');
    const r10 = aged('for-n10', 0, 1);
    await hints.add('n1', 'k', r1);
    await hints.add('n10', 'k', r10);
    await hints.add('n10', 'k2', r10);
    expect(hints.targets()).toEqual(['n1', 'n10']);
    expect((await readAll(hints, 'n1')).map((e) => content(e.record))).toEqual([content(r1)]);
    expect((await readAll(hints, 'n10')).map((e) => e.key)).toEqual(['k', 'k2']);
    expect(await hints.batch('n2', undefined, 10, 1 << 20)).toEqual([]);
    expect(hints.pending('n2')).toEqual({ entries: 0, bytes: 0 });
    // n10's version of 'k' acknowledged on n1's behalf deletes nothing.
    expect(await hints.acknowledge('n1', [{ key: 'k', ts: r10.version.ts }, { key: 'k2', ts: r10.version.ts }])).toBe(0);
    expect(hints.pending('n1').entries).toBe(1);
    expect(hints.pending('n10').entries).toBe(2);
    expect(await hints.acknowledge('n10', [{ key: 'k', ts: r10.version.ts }])).toBe(1);
    expect(hints.pending('n10').entries).toBe(1);
  });

  it('writes only under the hints sublevel, outside the data and meta key spaces', async () => {
    const { db, hints } = await create();
    await hints.add('n2', 'k', aged('v'));
    const rootKeys: Buffer[] = [];
    for await (const k of db.keys()) rootKeys.push(k);
    expect(rootKeys.length).toBe(2); // the hint and its age-index entry
    for (const k of rootKeys) expect(k.subarray(0, 7).toString('latin1')).toBe('!hints!');
    for (const prefix of [0x64, 0x6d]) {
      for await (const k of db.keys({ gte: Buffer.from([prefix]), lt: Buffer.from([prefix + 1]) })) throw new Error(`hint key in ${String.fromCharCode(prefix)}: ${k.toString('hex')}`);
    }
  });

  it('finds the counts of its two key spaces disagreeing on open (an invariant, asserted)', async () => {
    const o = await create();
    await o.hints.add('n2', 'k', aged('v'));
    const space = o.db.sublevel<Buffer, Uint8Array>('hints', { keyEncoding: 'buffer', valueEncoding: 'view' });
    await space.put(Buffer.concat([Buffer.from('hn2\0stray', 'latin1')]), encodeRecord(aged('w')));
    await o.hints.close();
    const again = new HintStore({ db: o.db, clock, maxHintBytes: 1 << 20, hintWindowMs: WINDOW_MS });
    await expect(again.open()).rejects.toBeInstanceOf(AssertionError);
  });

  it('rejects misuse with typed errors', async () => {
    const dir = await dirs.make();
    const db: Db = new Level<Buffer, Uint8Array>(dir, { keyEncoding: 'buffer', valueEncoding: 'view' });
    dbs.add(db);
    await db.open();
    const hints = new HintStore({ db, clock, maxHintBytes: 1 << 20, hintWindowMs: WINDOW_MS });
    await expect(hints.add('n2', 'k', aged('v'))).rejects.toMatchObject({ name: 'HintStoreStateError', code: 'NOT_OPEN' });
    expect(() => hints.targets()).toThrow(HintStoreStateError);
    await hints.open();
    await expect(hints.open()).rejects.toMatchObject({ code: 'ALREADY_OPEN' });

    for (const target of ['', 'n 2', 'n\u00002', 'x'.repeat(256), 'nø']) {
      await expect(hints.add(target, 'k', aged('v'))).rejects.toMatchObject({ name: 'HintArgumentError', code: 'BAD_TARGET' });
    }
    for (const key of ['', 'a b', 'a\nb', 'a\u0000b', 'k'.repeat(251), 'k\u0100']) {
      await expect(hints.add('n2', key, aged('v'))).rejects.toMatchObject({ code: 'BAD_KEY' });
      await expect(hints.acknowledge('n2', [{ key, ts: { wallMs: T0, logical: 0 } }])).rejects.toBeInstanceOf(HintArgumentError);
    }
    await expect(hints.add('n2', 'k', aged('v', 0, 0x10000))).rejects.toMatchObject({ code: 'BAD_RECORD' });
    await expect(hints.acknowledge('n2', [{ key: 'k', ts: { wallMs: -1, logical: 0 } }])).rejects.toMatchObject({ code: 'BAD_RECORD' });
    await expect(hints.batch('n2', undefined, 0, 100)).rejects.toMatchObject({ code: 'BAD_LIMIT' });
    await expect(hints.batch('n2', undefined, HINT_ENTRIES_MAX + 1, 100)).rejects.toMatchObject({ code: 'BAD_LIMIT' });
    await expect(hints.batch('n2', undefined, 10, 0)).rejects.toMatchObject({ code: 'BAD_LIMIT' });
    await expect(hints.expire(0)).rejects.toMatchObject({ code: 'BAD_LIMIT' });
    await expect(hints.acknowledge('n2', new Array(HINT_ENTRIES_MAX + 1).fill({ key: 'k', ts: { wallMs: T0, logical: 0 } }))).rejects.toMatchObject({ code: 'BAD_LIMIT' });
    expect(hints.stats()).toMatchObject({ entries: 0, stored: 0, dropped: 0 });

    await hints.close();
    await hints.close(); // idempotent
    await expect(hints.add('n2', 'k', aged('v'))).rejects.toMatchObject({ code: 'CLOSED' });
    await expect(hints.batch('n2', undefined, 1, 1)).rejects.toMatchObject({ code: 'CLOSED' });
    await expect(hints.open()).rejects.toMatchObject({ code: 'CLOSED' });
  });

  it('changes nothing when LevelDB refuses a write, and goes on with the next one', async () => {
    const { db } = await create();
    const real = hintSublevel(db);
    let failNext = false;
    const space: HintSpace = {
      open: () => real.open(),
      close: () => real.close(),
      get: (k) => real.get(k),
      getMany: (ks) => real.getMany(ks),
      iterator: (r) => real.iterator(r),
      keys: (r) => real.keys(r),
      batch: (ops) => {
        if (!failNext) return real.batch(ops);
        failNext = false;
        return Promise.reject(new Error('disk full'));
      },
    };
    const hints = new HintStore({ db: space, clock, maxHintBytes: 1 << 20, hintWindowMs: WINDOW_MS });
    await hints.open();
    const v1 = aged('v1', 0, 1);
    await hints.add('n2', 'k', v1);
    failNext = true;
    await expect(hints.add('n2', 'k', aged('v2-longer', 0, 2))).rejects.toThrow('disk full');
    expect(hints.pending('n2')).toEqual({ entries: 1, bytes: charge('n2', 'k', v1) });
    failNext = true;
    await expect(hints.acknowledge('n2', [{ key: 'k', ts: v1.version.ts }])).rejects.toThrow('disk full');
    expect(hints.stats()).toMatchObject({ entries: 1, replayed: 0, stored: 1 });
    expect(await hints.acknowledge('n2', [{ key: 'k', ts: v1.version.ts }])).toBe(1);
    expect(hints.stats()).toMatchObject({ entries: 0, bytes: 0, replayed: 1 });
  });

  it('bounds the writes waiting in its queue', async () => {
    const { hints } = await create({ maxQueuedWrites: 4 });
    const adds = Array.from({ length: 6 }, (_, i) => hints.add('n2', `k${i}`, aged('v')));
    const results = await Promise.allSettled(adds);
    expect(results.filter((r) => r.status === 'fulfilled').length).toBe(4);
    for (const r of results.slice(4)) {
      expect(r.status).toBe('rejected');
      expect((r as PromiseRejectedResult).reason).toBeInstanceOf(HintStoreBusyError);
    }
    expect(hints.pending('n2').entries).toBe(4);
    // The queue empties again once the writes complete.
    expect(await hints.add('n2', 'later', aged('v'))).toBe('stored');
  });

  it('applies concurrent writes in call order', async () => {
    const { hints } = await create();
    const older = aged('older', 10, 1);
    const newer = aged('newer', 10, 2);
    const [a, b, c] = await Promise.all([hints.add('n2', 'k', older), hints.add('n2', 'k', newer), hints.acknowledge('n2', [{ key: 'k', ts: older.version.ts }])]);
    expect([a, b, c]).toEqual(['stored', 'stored', 0]);
    expect((await readAll(hints, 'n2')).map((e) => content(e.record))).toEqual([content(newer)]);
    expect(hints.stats()).toMatchObject({ entries: 1, bytes: charge('n2', 'k', newer) });
  });

  it('drains every hint of every target in bounded batches, so a decommission can hand them on', async () => {
    const from = await create();
    const to = await create();
    const expected = new Map<string, string>();
    for (let i = 0; i < 45; i++) {
      const target = ['n1', 'n10', 'n3'][i % 3]!;
      const key = `k${String(i).padStart(2, '0')}`;
      await from.hints.add(target, key, aged(`v${i}`, i));
      expected.set(`${target}/${key}`, `v${i}`);
    }
    const seen: string[] = [];
    let batches = 0;
    for await (const { target, entries } of from.hints.drain(4, 1 << 20)) {
      batches++;
      expect(entries.length).toBeGreaterThan(0);
      expect(entries.length).toBeLessThanOrEqual(4);
      // Hand on, then acknowledge here: deleted only once the new holder has them.
      for (const e of entries) expect(await to.hints.add(target, e.key, e.record)).toBe('stored');
      expect(await from.hints.acknowledge(target, acks(entries))).toBe(entries.length);
      for (const e of entries) seen.push(`${target}/${e.key}`);
    }
    expect(batches).toBe(3 * 4); // 15 hints per target in pages of 4
    // Target by target (sorted), each in key order.
    const inOrder = ['n1', 'n10', 'n3'].flatMap((t) => [...expected.keys()].filter((k) => k.startsWith(`${t}/`)).sort(byteOrder));
    expect(seen).toEqual(inOrder);
    expect(from.hints.stats()).toMatchObject({ entries: 0, bytes: 0, replayed: 45 });
    expect(from.hints.targets()).toEqual([]);
    const moved = new Map<string, string>();
    for (const t of to.hints.targets()) for (const e of await readAll(to.hints, t)) moved.set(`${t}/${e.key}`, e.record.value.toString('latin1'));
    expect(moved).toEqual(expected);

    // One target only, without acknowledging: everything is yielded once and nothing deleted.
    const only: string[] = [];
    for await (const { target, entries } of to.hints.drain(2, 60, 'n3')) for (const e of entries) only.push(`${target}/${e.key}`);
    expect(only).toEqual([...expected.keys()].filter((k) => k.startsWith('n3/')).sort(byteOrder));
    expect(to.hints.stats().entries).toBe(45);
  });
});
