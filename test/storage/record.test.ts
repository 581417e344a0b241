// Records, versions and the hybrid logical clock (server/storage/record.ts): the msgpack
// codec round-trips every record and refuses anything else with CorruptRecordError; the
// HLC only moves forward; cas uniques are unique per tick and agree in both forms.
import { Encoder } from '@msgpack/msgpack';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  casText,
  casUnique,
  compareHlc,
  CorruptRecordError,
  decodeRecord,
  encodeRecord,
  HybridClock,
  LOGICAL_MAX,
  nextVersion,
  type Hlc,
  type StoredRecord,
} from '../../server/storage/record.js';
import { content, rec } from './fixtures.js';

const hlcArb: fc.Arbitrary<Hlc> = fc.record({
  wallMs: fc.oneof(fc.integer({ min: 0, max: 2 ** 47 }), fc.integer({ min: 1_600_000_000_000, max: 2_000_000_000_000 })),
  logical: fc.integer({ min: 0, max: LOGICAL_MAX }),
});

const recordArb: fc.Arbitrary<StoredRecord> = fc
  .record({
    value: fc.uint8Array({ maxLength: 2048 }),
    flags: fc.oneof(fc.constantFrom(0, 4294967295), fc.nat({ max: 4294967295 })),
    expiresAtMs: fc.oneof(fc.constantFrom(0, -1), fc.integer({ min: 1, max: 2 ** 50 })),
    // Node ids are operator-chosen names; '__proto__' is not one (msgpack refuses it as a map key).
    clock: fc.dictionary(
      fc.string({ minLength: 1, maxLength: 12 }).filter((id) => id !== '__proto__'),
      fc.integer({ min: 1, max: 2 ** 50 }),
      { maxKeys: 8 },
    ),
    ts: hlcArb,
    tombstone: fc.boolean(),
  })
  .map((f) => rec(f.value, f));

/**
 * What "not nonsense" means for a decoded record: every field has the type and range
 * that encodeRecord could have written.
 */
function wellFormed(r: StoredRecord): boolean {
  const uint = (n: unknown, max: number) => typeof n === 'number' && Number.isSafeInteger(n) && n >= 0 && n <= max;
  const clock = r.version?.clock as unknown;
  return (
    Buffer.isBuffer(r.value) &&
    uint(r.flags, 4294967295) &&
    typeof r.expiresAtMs === 'number' &&
    Number.isSafeInteger(r.expiresAtMs) &&
    r.expiresAtMs >= -1 &&
    typeof clock === 'object' &&
    clock !== null &&
    !Array.isArray(clock) &&
    !(clock instanceof Uint8Array) &&
    Object.values(clock).every((c) => uint(c, Number.MAX_SAFE_INTEGER)) &&
    uint(r.version.ts.wallMs, Number.MAX_SAFE_INTEGER) &&
    uint(r.version.ts.logical, LOGICAL_MAX) &&
    typeof r.tombstone === 'boolean'
  );
}

/** decodeRecord must either throw CorruptRecordError or return a well-formed record. */
function expectCorruptOrWellFormed(bytes: Uint8Array): void {
  let decoded: StoredRecord;
  try {
    decoded = decodeRecord(bytes);
  } catch (e) {
    expect(e, `decoding ${Buffer.from(bytes).toString('hex')}`).toBeInstanceOf(CorruptRecordError);
    return;
  }
  expect(wellFormed(decoded), `decoded nonsense from ${Buffer.from(bytes).toString('hex')}: ${JSON.stringify(decoded)}`).toBe(true);
}

function expectCorrupt(bytes: Uint8Array): void {
  expect(() => decodeRecord(bytes), Buffer.from(bytes).toString('hex')).toThrow(CorruptRecordError);
}

const raw = new Encoder();

describe('record codec', () => {
  it('decode(encode(r)) keeps every persisted field', () => {
    fc.assert(
      fc.property(recordArb, (r) => {
        const decoded = decodeRecord(encodeRecord(r));
        expect(content(decoded)).toEqual(content(r));
        expect(Buffer.isBuffer(decoded.value)).toBe(true);
        // The access bits are not persisted: a decoded record starts unfetched.
        expect(decoded.fetched).toBe(false);
        expect(decoded.accessedMs).toBe(r.version.ts.wallMs);
      }),
      { numRuns: 300 },
    );
  });

  it('encodes a 1 MiB value and a value of every byte', () => {
    for (const value of [Buffer.alloc(1 << 20, 0xfe), Buffer.from(Array.from({ length: 256 }, (_, i) => i)), Buffer.alloc(0)]) {
      const r = rec(value, { flags: 4294967295 });
      expect(content(decodeRecord(encodeRecord(r)))).toEqual(content(r));
    }
  });

  it('an encoding does not change when the record is mutated later (it is a copy)', () => {
    const r = rec('abc');
    const bytes = encodeRecord(r);
    const copy = Uint8Array.from(bytes);
    r.value[0] = 0x7a;
    encodeRecord(rec('something else entirely, longer than the first'));
    expect([...bytes]).toEqual([...copy]);
  });

  describe('decode of anything else throws CorruptRecordError', () => {
    const good = encodeRecord(rec('value', { flags: 5, clock: { a: 1 }, ts: { wallMs: 1_700_000_000_000, logical: 3 } }));
    const fields = (over: Partial<Record<number, unknown>>, length = 8) => {
      const a: unknown[] = [1, new Uint8Array([1, 2]), 0, 0, { a: 1 }, 1_700_000_000_000, 0, 0];
      for (const [i, v] of Object.entries(over)) a[Number(i)] = v;
      return raw.encode(a.slice(0, length));
    };

    it.each([
      ['no bytes', new Uint8Array(0)],
      ['a reserved msgpack byte', new Uint8Array([0xc1])],
      ['a lone string', raw.encode('hello')],
      ['a map', raw.encode({ 0: 1 })],
      ['nil', raw.encode(null)],
      ['an unknown format version', fields({ 0: 2 })],
      ['too few fields', fields({}, 7)],
      ['a value that is not bytes', fields({ 1: 'text' })],
      ['flags that are not a number', fields({ 2: 'x' })],
    ])('%s', (_label, bytes) => expectCorrupt(bytes));

    it.each([
      ['every strict prefix of a valid record (a torn write)', 'prefix'],
      ['a valid record followed by extra bytes', 'suffix'],
    ])('%s', (_label, kind) => {
      if (kind === 'prefix') for (let n = 0; n < good.length; n++) expectCorrupt(good.subarray(0, n));
      else expectCorrupt(Buffer.concat([good, Buffer.from([0x00])]));
    });

    it.each([
      ['flags negative', fields({ 2: -1 })],
      ['flags above 2^32-1', fields({ 2: 2 ** 32 })],
      ['flags fractional', fields({ 2: 1.5 })],
      ['expiry not a number', fields({ 3: 'soon' })],
      ['vector clock nil', fields({ 4: null })],
      ['vector clock an array', fields({ 4: [1, 2] })],
      ['vector clock counter a string', fields({ 4: { a: 'one' } })],
      ['wallMs negative', fields({ 5: -5 })],
      ['logical a string', fields({ 6: 'x' })],
      ['logical above 2^16-1', fields({ 6: 65536 })],
      ['tombstone flag 2', fields({ 7: 2 })],
      ['tombstone flag a string', fields({ 7: 'yes' })],
    ])('a field out of type or range: %s', (_label, bytes) => expectCorrupt(bytes));

    it('random bytes: CorruptRecordError, or a well-formed record, never anything else', () => {
      fc.assert(
        fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => expectCorruptOrWellFormed(bytes)),
        { numRuns: 500 },
      );
    });

    it('a valid record with one byte flipped: CorruptRecordError, or a well-formed record', () => {
      fc.assert(
        fc.property(recordArb, fc.nat(), fc.integer({ min: 1, max: 255 }), (r, at, xor) => {
          const bytes = Uint8Array.from(encodeRecord(r));
          const i = at % bytes.length;
          bytes[i] = bytes[i]! ^ xor;
          expectCorruptOrWellFormed(bytes);
        }),
        { numRuns: 500 },
      );
    });
  });
});

describe('HybridClock', () => {
  it('tick() strictly increases whatever the wall clock does (backwards, still, jumps)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 2 ** 45 }),
        fc.array(fc.oneof(fc.constant(0), fc.integer({ min: -10_000, max: 10_000 }), fc.integer({ min: -(2 ** 40), max: 2 ** 40 })), {
          minLength: 1,
          maxLength: 200,
        }),
        (start, steps) => {
          let wall = start;
          const clock = new HybridClock(() => wall);
          let prev = clock.peek();
          let maxWall = -Infinity;
          for (const step of steps) {
            wall = Math.max(0, wall + step);
            maxWall = Math.max(maxWall, wall);
            const ts = clock.tick();
            expect(compareHlc(ts, prev)).toBeGreaterThan(0);
            expect(casUnique(ts) > casUnique(prev)).toBe(true);
            // Never behind the wall clock it has seen, and logical stays in its 16 bits.
            expect(ts.wallMs).toBeGreaterThanOrEqual(maxWall);
            expect(ts.logical).toBeGreaterThanOrEqual(0);
            expect(ts.logical).toBeLessThanOrEqual(LOGICAL_MAX);
            expect(clock.peek()).toEqual(ts);
            prev = ts;
          }
        },
      ),
      { numRuns: 200 },
    );
  });

  it('a wall clock that stands still for more than 2^16 ticks carries into wallMs', () => {
    const clock = new HybridClock(() => 1000);
    let prev = clock.tick();
    expect(prev).toEqual({ wallMs: 1000, logical: 0 });
    for (let i = 0; i < LOGICAL_MAX + 10; i++) {
      const ts = clock.tick();
      expect(compareHlc(ts, prev)).toBeGreaterThan(0);
      prev = ts;
    }
    expect(prev).toEqual({ wallMs: 1001, logical: 9 });
  });

  it('observe() moves it forward past what it saw, and never back', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 44 }), hlcArb, (wall, seen) => {
        const clock = new HybridClock(() => wall);
        const before = clock.tick();
        clock.observe(seen);
        const after = clock.tick();
        expect(compareHlc(after, seen)).toBeGreaterThan(0);
        expect(compareHlc(after, before)).toBeGreaterThan(0);
        // An older timestamp changes nothing.
        const peek = clock.peek();
        clock.observe({ wallMs: 0, logical: 0 });
        clock.observe(before);
        expect(clock.peek()).toEqual(peek);
      }),
      { numRuns: 300 },
    );
  });

  it('a later tick is later even when observe() saw a timestamp with a saturated logical counter', () => {
    const clock = new HybridClock(() => 10);
    clock.observe({ wallMs: 50, logical: LOGICAL_MAX });
    expect(clock.tick()).toEqual({ wallMs: 51, logical: 0 });
  });
});

describe('cas unique', () => {
  it('casUnique is wallMs * 2^16 + logical, and casText is its decimal text', () => {
    fc.assert(
      fc.property(hlcArb, (ts) => {
        const u = casUnique(ts);
        expect(u).toBe(BigInt(ts.wallMs) * 65536n + BigInt(ts.logical));
        expect(casText(ts)).toBe(u.toString());
        expect(BigInt(casText(ts))).toBe(u);
      }),
      { numRuns: 500 },
    );
    // Around 2^53, where the double fast path has to step aside.
    for (const wallMs of [2 ** 37 - 1, 2 ** 37, 2 ** 37 + 1, 1_700_000_000_000]) {
      for (const logical of [0, 1, LOGICAL_MAX]) expect(casText({ wallMs, logical })).toBe(casUnique({ wallMs, logical }).toString());
    }
  });

  it('orders as compareHlc orders', () => {
    fc.assert(
      fc.property(hlcArb, hlcArb, (a, b) => {
        const c = compareHlc(a, b);
        const u = casUnique(a) - casUnique(b);
        expect(Math.sign(c)).toBe(u > 0n ? 1 : u < 0n ? -1 : 0);
      }),
    );
  });

  it('is unique per tick, even with a wall clock stuck or going back', () => {
    let wall = 1_700_000_000_000;
    const clock = new HybridClock(() => wall);
    const seen = new Set<string>();
    for (let i = 0; i < 5000; i++) {
      if (i % 7 === 0) wall -= 3;
      if (i % 11 === 0) wall += 5;
      seen.add(casText(clock.tick()));
    }
    expect(seen.size).toBe(5000);
  });
});

describe('nextVersion', () => {
  it("bumps only the writer's counter and keeps the others, without touching prev", () => {
    const ts1 = { wallMs: 1, logical: 0 };
    const ts2 = { wallMs: 2, logical: 0 };
    const first = nextVersion(undefined, 'a', ts1);
    expect(first).toEqual({ clock: { a: 1 }, ts: ts1 });
    const prev = { clock: { a: 4, b: 2 }, ts: ts1 };
    const next = nextVersion(prev, 'b', ts2);
    expect(next).toEqual({ clock: { a: 4, b: 3 }, ts: ts2 });
    expect(prev.clock).toEqual({ a: 4, b: 2 });
    expect(nextVersion(prev, 'c', ts2).clock).toEqual({ a: 4, b: 2, c: 1 });
  });
});
