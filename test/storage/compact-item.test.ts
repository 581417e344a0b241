// The memory store's item encoding (server/storage/compact-item.ts): every field of a
// StoredRecord survives a write and a read at any offset of a buffer, siblings and
// tombstones included, and a copied value does not change when the buffer does.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BIT_FETCHED, H_ACCESSED, H_BITS, H_LENGTH, H_SLOT, hashKey, ItemCodec } from '../../server/storage/compact-item.js';
import { LOGICAL_MAX, SIBLINGS_MAX, type StoredRecord } from '../../server/storage/record.js';

const nodeId = fc.oneof(fc.constantFrom('n1', 'n2', 'node-b', 'a', '1', '\u00e9t\u00e9', ''), fc.string({ maxLength: 12 }).filter((s) => s !== '__proto__'));
const clockArb = fc.dictionary(nodeId, fc.oneof(fc.nat({ max: 1000 }), fc.constant(2 ** 40), fc.maxSafeNat()), { maxKeys: 6 });

const versionArb = fc.record({
  value: fc.uint8Array({ maxLength: 300 }),
  flags: fc.oneof(fc.constant(0), fc.constant(0xffffffff), fc.nat({ max: 0xffffffff })),
  expiresAtMs: fc.oneof(fc.constant(0), fc.constant(-1), fc.maxSafeNat()),
  clock: clockArb,
  wallMs: fc.oneof(fc.constant(0), fc.constant(2 ** 46), fc.maxSafeNat()),
  logical: fc.integer({ min: 0, max: LOGICAL_MAX }),
  tombstone: fc.boolean(),
  fetched: fc.boolean(),
  accessedMs: fc.oneof(fc.maxSafeNat(), fc.double({ noNaN: true })),
});

/** Keys as the protocols make them (latin1 strings, 1-250 bytes), and any string at all. */
const keyArb = fc.oneof(
  fc.string({ unit: fc.integer({ min: 0, max: 0xff }).map((c) => String.fromCharCode(c)), maxLength: 250 }),
  fc.string({ unit: 'binary', maxLength: 20 }),
  fc.string({ unit: fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c)), maxLength: 20 }),
);

type VersionFields = typeof versionArb extends fc.Arbitrary<infer T> ? T : never;

function toRecord(v: VersionFields, siblings?: VersionFields[]): StoredRecord {
  const r: StoredRecord = {
    value: Buffer.from(v.value),
    flags: v.flags,
    expiresAtMs: v.expiresAtMs,
    version: { clock: v.clock, ts: { wallMs: v.wallMs, logical: v.logical } },
    tombstone: v.tombstone,
    fetched: v.fetched,
    accessedMs: v.accessedMs,
  };
  return siblings && siblings.length > 0 ? { ...r, siblings: siblings.map((s) => toRecord(s)) } : r;
}

/** Every persisted field, plus the two in-memory ones the item keeps. */
function full(r: StoredRecord, withAccess = true): unknown {
  return {
    value: Buffer.from(r.value).toString('hex'),
    flags: r.flags,
    expiresAtMs: r.expiresAtMs,
    clock: Object.entries(r.version.clock),
    ts: { wallMs: r.version.ts.wallMs, logical: r.version.ts.logical },
    tombstone: r.tombstone,
    ...(withAccess ? { fetched: r.fetched, accessedMs: r.accessedMs } : {}),
  };
}

function roundTrip(codec: ItemCodec, r: StoredRecord, at: number, copy: boolean, slot = 7, key = 'key:1'): { back: StoredRecord; buf: Buffer; size: number } {
  const size = codec.size(key, r);
  const buf = Buffer.alloc(at + size + 5, 0xa5);
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.length);
  codec.write(buf, dv, at, slot, key, r);
  expect(codec.key(buf, dv, at)).toBe(key);
  expect(codec.keyEquals(buf, dv, at, key)).toBe(true);
  expect(dv.getUint32(at + H_SLOT, true)).toBe(slot);
  expect(dv.getUint32(at + H_LENGTH, true)).toBe(size);
  // Nothing written past the item.
  expect([...buf.subarray(at + size)]).toEqual([0xa5, 0xa5, 0xa5, 0xa5, 0xa5]);
  return { back: codec.read(buf, dv, at, copy), buf, size };
}

describe('compact item encoding', () => {
  it('keys: stored as they are, compared in JS string order without decoding', () => {
    const codec = new ItemCodec();
    const r = toRecord({ value: new Uint8Array([1]), flags: 0, expiresAtMs: 0, clock: { n1: 1 }, wallMs: 1, logical: 0, tombstone: false, fetched: false, accessedMs: 1 });
    const place = (key: string, at: number) => {
      const size = codec.size(key, r);
      const buf = Buffer.alloc(at + size);
      const dv = new DataView(buf.buffer, buf.byteOffset, buf.length);
      codec.write(buf, dv, at, 0, key, r);
      return { buf, dv, at, size };
    };
    const sign = (n: number) => (n < 0 ? -1 : n > 0 ? 1 : 0);
    fc.assert(
      fc.property(keyArb, keyArb, fc.nat({ max: 9 }), fc.nat({ max: 9 }), (a, b, ia, ib) => {
        const x = place(a, ia);
        const y = place(b, ib);
        expect(codec.key(x.buf, x.dv, x.at)).toBe(a);
        // One byte per code unit for latin1 keys, two when any code unit is above 0xff.
        const wide = [...a].some((ch) => ch.split('').some((u) => u.charCodeAt(0) > 0xff));
        expect(x.size).toBe(50 + (wide ? 2 : 1) * a.length + 12 + 1);
        expect(codec.keyEquals(x.buf, x.dv, x.at, b)).toBe(a === b);
        const js = a < b ? -1 : a > b ? 1 : 0;
        expect(sign(codec.compareKey(x.buf, x.dv, x.at, b))).toBe(js);
        expect(sign(codec.compareKeys(x.buf, x.dv, x.at, y.buf, y.dv, y.at))).toBe(js);
        expect(sign(codec.compareKeys(y.buf, y.dv, y.at, x.buf, x.dv, x.at))).toBe(b < a ? -1 : b > a ? 1 : 0);
        expect(hashKey(a) === hashKey(b) || a !== b).toBe(true);
      }),
      { numRuns: 500 },
    );
    // Prefixes and the high latin1 bytes.
    for (const [a, b] of [['key', 'key:'], ['\u00ff', '\u0100'], ['a\u00e9', 'a\u00ea'], ['', 'x'], ['\u0100a', '\u0100']] as const) {
      const x = place(a, 0);
      expect(sign(codec.compareKey(x.buf, x.dv, 0, b)), `${a} vs ${b}`).toBe(a < b ? -1 : 1);
    }
  });

  it('round-trips every field at any offset, with and without siblings, value copied or viewed', () => {
    const codec = new ItemCodec(); // one codec across runs: its node-id table grows
    fc.assert(
      fc.property(
        versionArb,
        fc.array(versionArb, { maxLength: SIBLINGS_MAX }),
        fc.nat({ max: 64 }),
        fc.boolean(),
        fc.nat({ max: 0x7fffffff }),
        keyArb,
        (v, sibs, at, copy, slot, key) => {
          // Siblings as replication stores them: clocks of plain counters, no access bits.
          const r = toRecord(v, sibs);
          const { back } = roundTrip(codec, r, at, copy, slot, key);
          expect(full(back)).toEqual(full(r));
          expect(Buffer.isBuffer(back.value)).toBe(true);
          // Clock entries keep their order, so every replica encodes one version alike.
          expect(Object.keys(back.version.clock)).toEqual(Object.keys(r.version.clock));
          if (sibs.length === 0) {
            expect('siblings' in back).toBe(false);
          } else {
            expect(back.siblings!.map((s) => full(s, false))).toEqual(r.siblings!.map((s) => full(s, false)));
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it('a record without siblings and an empty siblings list encode alike', () => {
    const codec = new ItemCodec();
    const base = toRecord({ value: new Uint8Array([1, 2]), flags: 1, expiresAtMs: 0, clock: { n1: 2 }, wallMs: 5, logical: 1, tombstone: false, fetched: false, accessedMs: 5 });
    const a = roundTrip(codec, base, 0, true);
    const b = roundTrip(codec, { ...base, siblings: [] }, 0, true);
    expect(b.size).toBe(a.size);
    expect(b.buf.equals(a.buf)).toBe(true);
  });

  it('a tombstone with a clock of several nodes', () => {
    const codec = new ItemCodec();
    const r = toRecord({ value: new Uint8Array(0), flags: 0, expiresAtMs: 0, clock: { a: 3, 'node-b': 1, c: 2 ** 40 }, wallMs: 2 ** 46, logical: LOGICAL_MAX, tombstone: true, fetched: false, accessedMs: 2 ** 46 });
    const { back, size } = roundTrip(codec, r, 3, true);
    expect(back.tombstone).toBe(true);
    expect(back.value.length).toBe(0);
    expect(back.version.clock).toEqual({ a: 3, 'node-b': 1, c: 2 ** 40 });
    expect(size).toBe(50 + 'key:1'.length + 3 * 12);
  });

  it('a copied value is the caller\'s: later writes to the buffer do not reach it; a viewed one shares the bytes', () => {
    const codec = new ItemCodec();
    const r = toRecord({ value: new Uint8Array([9, 8, 7]), flags: 0, expiresAtMs: 0, clock: { n1: 1 }, wallMs: 1, logical: 0, tombstone: false, fetched: false, accessedMs: 1 });
    const { back, buf } = roundTrip(codec, r, 0, true);
    const dv = new DataView(buf.buffer, buf.byteOffset, buf.length);
    const viewed = codec.read(buf, dv, 0, false);
    buf.fill(0);
    expect([...back.value]).toEqual([9, 8, 7]);
    expect([...viewed.value]).toEqual([0, 0, 0]);
  });

  it('fetched and accessedMs live at fixed places of the header (the store updates them in place)', () => {
    const codec = new ItemCodec();
    const r = toRecord({ value: new Uint8Array([1]), flags: 0, expiresAtMs: 0, clock: { n1: 1 }, wallMs: 100, logical: 0, tombstone: false, fetched: false, accessedMs: 100 });
    const { buf } = roundTrip(codec, r, 10, true);
    const dv = new DataView(buf.buffer, buf.byteOffset, buf.length);
    buf[10 + H_BITS] = buf[10 + H_BITS]! | BIT_FETCHED;
    dv.setFloat64(10 + H_ACCESSED, 12345, true);
    const back = codec.read(buf, dv, 10, true);
    expect(back.fetched).toBe(true);
    expect(back.accessedMs).toBe(12345);
    expect(full(back, false)).toEqual(full(r, false));
  });
});
