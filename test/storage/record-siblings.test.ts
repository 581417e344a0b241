// Siblings in storage and in a node's merge. The record codec (server/storage/record.ts)
// carries concurrent versions as a ninth element, only when there are some: a record
// without siblings encodes byte for byte as the 8-element format, and a malformed ninth
// element (empty, a tuple of the wrong length, more than SIBLINGS_MAX) is a
// CorruptRecordError. LocalKv.merge (server/kv/local-kv.ts), run over every Store: a
// dominated or equal version changes nothing, a dominating one replaces, a concurrent one
// becomes a sibling; merge moves the HLC past what it saw; and touch keeps the cas unique
// while moving the vector clock so that replicas take the touched version.
import { decode, Encoder } from '@msgpack/msgpack';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../server/clock.js';
import { LocalKv } from '../../server/kv/local-kv.js';
import { LocalKvApi } from '../../server/kv/api.js';
import { compareClocks } from '../../server/replication/versions.js';
import {
  casUnique,
  compareHlc,
  CorruptRecordError,
  decodeRecord,
  encodeRecord,
  LOGICAL_MAX,
  SIBLINGS_MAX,
  type StoredRecord,
  type VectorClock,
} from '../../server/storage/record.js';
import type { Store } from '../../server/storage/store.js';
import { content, levelFactory, memoryFactory, rec, type StoreFactory } from './fixtures.js';

const T0 = 1_700_000_000_000;
const raw = new Encoder({ ignoreUndefined: true });

function fields(r: StoredRecord): unknown[] {
  return [r.value, r.flags, r.expiresAtMs, r.version.clock, r.version.ts.wallMs, r.version.ts.logical, r.tombstone ? 1 : 0];
}

/** A record holding `siblings` beside itself. */
function withSiblings(r: StoredRecord, siblings: StoredRecord[]): StoredRecord {
  return { ...r, siblings };
}

function sib(i: number, extra: Partial<{ tombstone: boolean }> = {}): StoredRecord {
  return rec(`s${i}`, { clock: { [`n${i}`]: 1 }, ts: { wallMs: T0 + i, logical: i % 7 }, flags: i, ...extra });
}

/** Every version of a record as comparable content: itself, then its siblings in order. */
function versions(r: StoredRecord | undefined) {
  if (!r) return undefined;
  return [content(r), ...(r.siblings ?? []).map((s) => content(s))];
}

function expectCorrupt(bytes: Uint8Array, why: string): void {
  expect(() => decodeRecord(bytes), why).toThrow(CorruptRecordError);
}

describe('codec with siblings', () => {
  const recordArb = fc
    .record({
      value: fc.uint8Array({ maxLength: 64 }),
      flags: fc.nat({ max: 4294967295 }),
      expiresAtMs: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 2 ** 50 })),
      clock: fc.dictionary(fc.constantFrom('a', 'b', 'c', 'node-7'), fc.integer({ min: 1, max: 2 ** 40 }), { maxKeys: 4 }),
      wallMs: fc.integer({ min: 0, max: 2 ** 47 }),
      logical: fc.integer({ min: 0, max: LOGICAL_MAX }),
      tombstone: fc.boolean(),
    })
    .map((f) => rec(f.value, { ...f, ts: { wallMs: f.wallMs, logical: f.logical } }));

  it('round-trips records with 1..SIBLINGS_MAX siblings, in order', () => {
    fc.assert(
      fc.property(recordArb, fc.array(recordArb, { minLength: 1, maxLength: SIBLINGS_MAX }), (r, sibs) => {
        const bytes = encodeRecord(withSiblings(r, sibs));
        const back = decodeRecord(bytes);
        expect(versions(back)).toEqual(versions(withSiblings(r, sibs)));
        expect(back.siblings).toHaveLength(sibs.length);
        // Decoded siblings are plain versions: no nested siblings.
        for (const s of back.siblings!) expect(s.siblings).toBeUndefined();
        // The ninth element is there, one 7-tuple per sibling.
        const a = decode(bytes) as unknown[];
        expect(a).toHaveLength(9);
        expect((a[8] as unknown[]).map((x) => (x as unknown[]).length)).toEqual(sibs.map(() => 7));
      }),
      { numRuns: 200 },
    );
  });

  it('encodes a record without siblings exactly as the 8-element format, absent or empty', () => {
    fc.assert(
      fc.property(recordArb, (r) => {
        const legacy = raw.encode([1, ...fields(r)]);
        expect(Buffer.from(encodeRecord(r)).equals(Buffer.from(legacy))).toBe(true);
        expect(Buffer.from(encodeRecord(withSiblings(r, []))).equals(Buffer.from(legacy))).toBe(true);
        const back = decodeRecord(legacy);
        expect(back.siblings).toBeUndefined();
        expect(content(back)).toEqual(content(r));
      }),
      { numRuns: 200 },
    );
  });

  it('keeps a tombstone sibling a tombstone', () => {
    const r = withSiblings(rec('live', { clock: { a: 1 } }), [sib(2, { tombstone: true })]);
    const back = decodeRecord(encodeRecord(r));
    expect(back.tombstone).toBe(false);
    expect(back.siblings![0]!.tombstone).toBe(true);
    expect(back.siblings![0]!.value.length).toBe(0);
  });

  it('refuses malformed siblings with CorruptRecordError', () => {
    const base = [1, ...fields(rec('v', { clock: { a: 1 } }))];
    const ok = fields(sib(1));
    // Sanity: the hand-built form decodes when well formed.
    expect(versions(decodeRecord(raw.encode([...base, [ok]])))).toEqual(versions(withSiblings(rec('v', { clock: { a: 1 } }), [sib(1)])));
    expect(decodeRecord(raw.encode([...base, Array.from({ length: SIBLINGS_MAX }, () => ok)])).siblings).toHaveLength(SIBLINGS_MAX);

    expectCorrupt(raw.encode([...base, []]), 'empty siblings');
    expectCorrupt(raw.encode([...base, [ok.slice(0, 6)]]), 'a 6-tuple');
    expectCorrupt(raw.encode([...base, [[...ok, 0]]]), 'an 8-tuple');
    expectCorrupt(raw.encode([...base, [ok, ok.slice(0, 6)]]), 'a bad second sibling');
    expectCorrupt(raw.encode([...base, Array.from({ length: SIBLINGS_MAX + 1 }, () => ok)]), 'SIBLINGS_MAX + 1 siblings');
    expectCorrupt(raw.encode([...base, Array.from({ length: SIBLINGS_MAX + 2 }, () => ok)]), 'SIBLINGS_MAX + 2 siblings');
    expectCorrupt(raw.encode([...base, null]), 'nil siblings');
    expectCorrupt(raw.encode([...base, 3]), 'a number for siblings');
    expectCorrupt(raw.encode([...base, [{ value: 1 }]]), 'a map for a sibling');
    expectCorrupt(raw.encode([...base, [ok], []]), 'a tenth element');
    // A sibling whose fields are wrong, as for the record itself.
    const badFields: Array<[string, number, unknown]> = [
      ['value', 0, 'text'],
      ['flags', 1, -1],
      ['clock', 3, { a: -1 }],
      ['logical', 5, LOGICAL_MAX + 1],
      ['tombstone', 6, 2],
    ];
    for (const [name, i, v] of badFields) {
      const bad = [...ok];
      bad[i] = v;
      expectCorrupt(raw.encode([...base, [bad]]), `sibling ${name}`);
    }
  });
});

describe.each([
  ['memory', memoryFactory],
  ['level', levelFactory],
] as const)('LocalKv.merge over %s', (_name, makeFactory) => {
  let factory: StoreFactory;
  beforeEach(() => {
    factory = makeFactory();
  });
  afterEach(async () => {
    await factory.cleanup();
  });

  async function start(opts: { maxSiblings?: number; nodeId?: string; store?: Store; clock?: ManualClock } = {}) {
    const clock = opts.clock ?? new ManualClock(T0);
    const store = opts.store ?? (await factory.create({ clock, open: false }));
    const changed: Array<[string, StoredRecord | undefined]> = [];
    const replicated: string[] = [];
    const kv = new LocalKv({ nodeId: opts.nodeId ?? 'n1', store, clock, maxItemSize: 1024 * 1024, tombstoneGraceMs: 60_000, maxSiblings: opts.maxSiblings });
    await kv.open();
    kv.hooks = {
      changed: (k, r) => changed.push([k, r]),
      replicate: (k) => {
        replicated.push(k);
      },
    };
    return { kv, clock, store, changed, replicated };
  }

  async function setLocal(kv: LocalKv, key: string, value: string): Promise<StoredRecord> {
    const r = await kv.storeItem('set', key, Buffer.from(value), 0, 0);
    expect(r.status).toBe('STORED');
    return r.record!;
  }

  const incoming = (value: string, clock: VectorClock, wallMs: number, logical = 0) => rec(value, { clock, ts: { wallMs, logical } });

  it('a get with siblings shows a live version concurrent with a newer delete (which a plain get does not)', async () => {
    const { kv } = await start();
    await kv.merge('k', incoming('alive', { a: 1 }, T0 + 1));
    await kv.merge('k', rec('', { clock: { b: 1 }, ts: { wallMs: T0 + 2, logical: 0 }, tombstone: true }));
    expect(kv.raw('k')!.tombstone).toBe(true);
    expect(kv.raw('k')!.siblings).toHaveLength(1);
    const api = new LocalKvApi(kv);
    expect((await api.run({ op: 'get', key: 'k' })).status).toBe('NOT_FOUND');
    const r = await api.run({ op: 'get', key: 'k', siblings: true });
    expect(r.status).toBe('OK');
    expect(r.siblings?.map((x) => x.value.toString())).toEqual(['alive']);
    expect(r.item?.value.toString()).toBe('alive');
    // Only deletes left: not found, with or without siblings.
    await kv.merge('k', rec('', { clock: { a: 2, b: 1 }, ts: { wallMs: T0 + 3, logical: 0 }, tombstone: true }));
    expect((await api.run({ op: 'get', key: 'k', siblings: true })).status).toBe('NOT_FOUND');
  });

  it('ignores a dominated or equal version', async () => {
    const { kv, changed, replicated } = await start();
    await setLocal(kv, 'k', 'one');
    const two = await setLocal(kv, 'k', 'two'); // clock {n1: 2}
    changed.length = 0;
    replicated.length = 0;
    const before = content(kv.raw('k'));
    // Older clock, even with a later timestamp: causality beats timestamps.
    expect(await kv.merge('k', incoming('stale', { n1: 1 }, T0 + 60_000))).toBe(false);
    expect(await kv.merge('k', { ...two, fetched: false })).toBe(false);
    expect(content(kv.raw('k'))).toEqual(before);
    expect(kv.raw('k')!.siblings).toBeUndefined();
    expect(changed).toEqual([]);
    expect(replicated).toEqual([]);
  });

  it('replaces with a dominating version, without replicating it again', async () => {
    const { kv, changed, replicated } = await start();
    await setLocal(kv, 'k', 'mine');
    replicated.length = 0;
    const theirs = incoming('theirs', { n1: 1, n2: 1 }, T0 - 10_000); // older timestamp, newer clock
    expect(await kv.merge('k', theirs)).toBe(true);
    expect(content(kv.raw('k'))).toEqual(content(theirs));
    expect(kv.raw('k')!.siblings ?? []).toHaveLength(0);
    expect(changed.map(([k, r]) => [k, content(r)])).toContainEqual(['k', content(theirs)]);
    expect(replicated).toEqual([]);
    expect((await kv.get('k'))!.value.toString()).toBe('theirs');
  });

  it('stores a version for a key it does not hold, siblings included', async () => {
    const { kv } = await start();
    const a = incoming('a', { n2: 1 }, T0 + 5);
    const b = incoming('b', { n3: 1 }, T0 + 3);
    expect(await kv.merge('fresh', withSiblings(a, [b]))).toBe(true);
    expect(versions(kv.raw('fresh'))).toEqual([content(a), content(b)]);
  });

  it('keeps a concurrent version as a sibling; the LWW-newest is what a read returns', async () => {
    const { kv } = await start();
    const mine = await setLocal(kv, 'k', 'mine'); // {n1: 1} at T0
    const theirs = incoming('theirs', { n2: 1 }, T0 + 1000);
    expect(compareClocks(mine.version.clock, theirs.version.clock)).toBe('concurrent');
    expect(await kv.merge('k', theirs)).toBe(true);
    const r = kv.raw('k')!;
    expect(r.siblings).toHaveLength(1);
    expect(versions(r)).toEqual([content(theirs), content(mine)]);
    expect((await kv.get('k'))!.value.toString()).toBe('theirs');
    // The same version again changes nothing.
    expect(await kv.merge('k', theirs)).toBe(false);
    expect(await kv.merge('k', mine)).toBe(false);
    // A third concurrent version joins them.
    const third = incoming('third', { n3: 1 }, T0 + 10);
    expect(await kv.merge('k', third)).toBe(true);
    expect(kv.raw('k')!.siblings).toHaveLength(2);
    // A local write supersedes every sibling.
    const next = await setLocal(kv, 'k', 'next');
    for (const v of [mine, theirs, third]) expect(compareClocks(next.version.clock, v.version.clock)).toBe('after');
    expect(kv.raw('k')!.siblings ?? []).toHaveLength(0);
  });

  it('collapses the oldest concurrent versions past maxSiblings', async () => {
    const { kv } = await start({ maxSiblings: 2 });
    await kv.merge('k', incoming('a', { a: 1 }, T0 + 1));
    await kv.merge('k', incoming('b', { b: 1 }, T0 + 2));
    expect(kv.counters.siblings_collapsed).toBe(0);
    await kv.merge('k', incoming('c', { c: 1 }, T0 + 3));
    const r = kv.raw('k')!;
    expect(r.value.toString()).toBe('c');
    expect(r.siblings!.map((s) => s.value.toString())).toEqual(['b']);
    expect(kv.counters.siblings_collapsed).toBe(1);
    // The winner absorbed 'a': a replay of 'a' is now dominated.
    expect(compareClocks(r.version.clock, { a: 1 })).toBe('after');
    expect(await kv.merge('k', incoming('a', { a: 1 }, T0 + 1))).toBe(false);
  });

  it('observes the HLC: a later local write is timestamped after the merged record', async () => {
    const { kv, clock } = await start();
    const future = { wallMs: T0 + 3_600_000, logical: 42 }; // a peer whose clock runs an hour ahead
    await kv.merge('k', incoming('theirs', { n2: 1 }, future.wallMs, future.logical));
    const overIt = await setLocal(kv, 'k', 'mine');
    const other = await setLocal(kv, 'other', 'x');
    expect(compareHlc(overIt.version.ts, future)).toBeGreaterThan(0);
    expect(compareHlc(other.version.ts, overIt.version.ts)).toBeGreaterThan(0);
    expect(compareClocks(overIt.version.clock, { n2: 1 })).toBe('after');
    // Even a dominated (ignored) version moves the clock.
    await kv.merge('k', incoming('older', { n2: 1 }, T0 + 7_200_000));
    clock.advance(1);
    const later = await setLocal(kv, 'k2', 'y');
    expect(compareHlc(later.version.ts, { wallMs: T0 + 7_200_000, logical: 0 })).toBeGreaterThan(0);
  });

  it('touch keeps the cas unique and moves the clock so that replicas take the touched version', async () => {
    const { kv, clock } = await start();
    const written = await setLocal(kv, 'k', 'v');
    const cas = casUnique(written.version.ts);
    clock.advance(5_000);
    expect(await kv.touch('k', T0 + 60_000)).toBe('TOUCHED');
    const touched = kv.raw('k')!;
    expect(touched.expiresAtMs).toBe(T0 + 60_000);
    expect(casUnique(touched.version.ts)).toBe(cas);
    expect(compareClocks(touched.version.clock, written.version.clock)).toBe('after');
    // The cas from before the touch still matches (memcached keeps it on touch).
    expect((await kv.storeItem('cas', 'k', Buffer.from('w'), 0, 0, cas)).status).toBe('STORED');

    // A replica holding the untouched version takes the touched one; the other way round, nothing moves.
    const replica = await start({ nodeId: 'n2' });
    expect(await replica.kv.merge('k', written)).toBe(true);
    expect(await replica.kv.merge('k', touched)).toBe(true);
    expect(replica.kv.raw('k')!.expiresAtMs).toBe(T0 + 60_000);
    expect(replica.kv.raw('k')!.siblings ?? []).toHaveLength(0);
    expect(await replica.kv.merge('k', written)).toBe(false);
    expect(replica.kv.raw('k')!.expiresAtMs).toBe(T0 + 60_000);
  });

  it('touch of a record with siblings supersedes them all', async () => {
    const { kv } = await start();
    const mine = await setLocal(kv, 'k', 'mine');
    const theirs = incoming('theirs', { n2: 1 }, T0 + 1000);
    const third = incoming('third', { n3: 1 }, T0 + 10);
    await kv.merge('k', theirs);
    await kv.merge('k', third);
    const top = kv.raw('k')!;
    expect(top.value.toString()).toBe('theirs');
    expect(top.siblings).toHaveLength(2);
    expect(await kv.touch('k', T0 + 90_000)).toBe('TOUCHED');
    const touched = kv.raw('k')!;
    expect(touched.siblings ?? []).toHaveLength(0);
    expect(touched.value.toString()).toBe('theirs');
    expect(casUnique(touched.version.ts)).toBe(casUnique(top.version.ts));
    // Its clock covers every version it replaced, not just the one it shows.
    for (const v of [mine, theirs, third]) expect(compareClocks(touched.version.clock, v.version.clock)).toBe('after');
  });

  it('keeps siblings across a restart (durable stores)', async () => {
    const { kv, store, clock } = await start();
    if (!factory.reopen) return;
    await setLocal(kv, 'k', 'mine');
    await kv.merge('k', incoming('theirs', { n2: 1 }, T0 + 1000));
    const before = versions(kv.raw('k'));
    const reopened = await factory.reopen(store, { clock });
    const again = await start({ store: reopened, clock });
    expect(versions(again.kv.raw('k'))).toEqual(before);
    expect(again.kv.raw('k')!.siblings).toHaveLength(1);
  });
});
