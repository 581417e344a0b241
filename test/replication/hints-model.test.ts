// Model-based test of the hint store (server/replication/hints.ts) on a real LevelDB:
// random sequences of add, batch+acknowledge, stale and exact acknowledgements, clock
// advances, expire and restarts, checked after every step against a Map model of what
// must be held (per target: key -> record) and of the counters. Small domains (three
// targets, one a prefix of another; five keys; a tight byte bound; ages around the hint
// window) make replacements, drops, stale acks and expiry frequent. fast-check prints the
// seed and the shrunk sequence of a failure.
import fc from 'fast-check';
import { Level } from 'level';
import { afterAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../server/clock.js';
import { HintStore, type AddResult, type HintEntry } from '../../server/replication/hints.js';
import { compareHlc, encodeRecord, type Hlc, type StoredRecord } from '../../server/storage/record.js';
import { byteOrder, content, latin1, rec, TempDirs } from '../storage/fixtures.js';

const WINDOW_MS = 3 * 3600_000;
const MAX_BYTES = 400;
const T0 = 1_700_000_000_000;
const TARGETS = ['n1', 'n10', 'n2'] as const;
const KEYS = ['a', 'ab', 'b', latin1(0x01, 0x7f), latin1(0xff)] as const;

type Op =
  | { t: 'add'; target: string; key: string; ageMs: number; logical: number; valueBytes: number }
  | { t: 'replay'; target: string; maxEntries: number; maxBytes: number }
  | { t: 'ackStale'; pick: number; logicalDelta: number }
  | { t: 'ackExact'; pick: number }
  | { t: 'advance'; ms: number }
  | { t: 'expire'; maxEntries: number }
  | { t: 'reopen' };

const target = fc.constantFrom(...TARGETS);
const key = fc.constantFrom(...KEYS);
const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      t: fc.constant('add' as const),
      target,
      key,
      // Mostly inside the window, sometimes exactly at its edge or just past it, sometimes from a clock ahead of ours.
      ageMs: fc.oneof(fc.integer({ min: 0, max: WINDOW_MS }), fc.constantFrom(WINDOW_MS, WINDOW_MS + 1, -5)),
      logical: fc.nat({ max: 3 }),
      valueBytes: fc.nat({ max: 120 }),
    }),
  },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('replay' as const), target, maxEntries: fc.integer({ min: 1, max: 4 }), maxBytes: fc.integer({ min: 1, max: 400 }) }) },
  // `pick` chooses one of the hints held (modulo their number), so acknowledgements mostly hit.
  { weight: 1, arbitrary: fc.record({ t: fc.constant('ackStale' as const), pick: fc.nat(), logicalDelta: fc.constantFrom(-1, 1) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('ackExact' as const), pick: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('advance' as const), ms: fc.integer({ min: 0, max: WINDOW_MS / 2 }) }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('expire' as const), maxEntries: fc.integer({ min: 1, max: 5 }) }) },
  { weight: 1, arbitrary: fc.constant({ t: 'reopen' as const }) },
);

interface ModelHint {
  record: StoredRecord;
  bytes: number;
}

/** What the store must hold and count; counters start again at every open, as the store's do. */
class Model {
  readonly hints = new Map<string, Map<string, ModelHint>>();
  counters = { stored: 0, superseded: 0, droppedFull: 0, droppedOld: 0, replayed: 0, expired: 0 };

  /** The pick-th hint held, in (target, key) order; undefined when none is. */
  pick(n: number): { t: string; k: string; h: ModelHint } | undefined {
    const all = [...this.hints].flatMap(([t, m]) => [...m].map(([k, h]) => ({ t, k, h })));
    all.sort((a, b) => (a.t === b.t ? byteOrder(a.k, b.k) : a.t < b.t ? -1 : 1));
    return all.length === 0 ? undefined : all[n % all.length];
  }

  held(t: string, k: string): ModelHint | undefined {
    return this.hints.get(t)?.get(k);
  }

  totalBytes(): number {
    let n = 0;
    for (const m of this.hints.values()) for (const h of m.values()) n += h.bytes;
    return n;
  }

  set(t: string, k: string, h: ModelHint): void {
    const m = this.hints.get(t) ?? new Map<string, ModelHint>();
    m.set(k, h);
    this.hints.set(t, m);
  }

  delete(t: string, k: string): void {
    const m = this.hints.get(t);
    m?.delete(k);
    if (m?.size === 0) this.hints.delete(t);
  }

  /** The spec of add, restated independently of the implementation. */
  add(t: string, k: string, r: StoredRecord, now: number): AddResult {
    if (now - r.version.ts.wallMs > WINDOW_MS) {
      this.counters.droppedOld++;
      return 'dropped-old';
    }
    const held = this.held(t, k);
    if (held && compareHlc(held.record.version.ts, r.version.ts) >= 0) {
      this.counters.superseded++;
      return 'stored';
    }
    const bytes = t.length + k.length + encodeRecord(r).length;
    if (this.totalBytes() - (held?.bytes ?? 0) + bytes > MAX_BYTES) {
      this.counters.droppedFull++;
      return 'dropped-full';
    }
    this.set(t, k, { record: r, bytes });
    this.counters.stored++;
    return 'stored';
  }

  /** The first page of a target under both bounds (a single oversized hint comes alone). */
  page(t: string, maxEntries: number, maxBytes: number): string[] {
    const keys = [...(this.hints.get(t)?.keys() ?? [])].sort(byteOrder);
    const out: string[] = [];
    let bytes = 0;
    for (const k of keys) {
      const b = this.held(t, k)!.bytes;
      if (out.length === maxEntries || (out.length > 0 && bytes + b > maxBytes)) break;
      out.push(k);
      bytes += b;
    }
    return out;
  }

  /** Oldest first; equal ages in (target, 0x00, key) byte order, as the age index sorts them. */
  expire(now: number, maxEntries: number): number {
    const old: Array<{ t: string; k: string; wallMs: number; order: Buffer }> = [];
    for (const [t, m] of this.hints) {
      for (const [k, h] of m) {
        const wallMs = h.record.version.ts.wallMs;
        if (now - wallMs > WINDOW_MS) old.push({ t, k, wallMs, order: Buffer.concat([Buffer.from(t, 'latin1'), Buffer.from([0]), Buffer.from(k, 'latin1')]) });
      }
    }
    old.sort((a, b) => a.wallMs - b.wallMs || Buffer.compare(a.order, b.order));
    const gone = old.slice(0, maxEntries);
    for (const g of gone) this.delete(g.t, g.k);
    this.counters.expired += gone.length;
    return gone.length;
  }
}

const dirs = new TempDirs();
afterAll(() => dirs.removeAll());

interface Opened {
  db: Level<Buffer, Uint8Array>;
  hints: HintStore;
}

async function openAt(dir: string, clock: ManualClock): Promise<Opened> {
  const db = new Level<Buffer, Uint8Array>(dir, { keyEncoding: 'buffer', valueEncoding: 'view' });
  await db.open();
  const hints = new HintStore({ db, clock, maxHintBytes: MAX_BYTES, hintWindowMs: WINDOW_MS });
  await hints.open();
  return { db, hints };
}

async function closeAll(o: Opened): Promise<void> {
  await o.hints.close();
  await o.db.close();
}

/** Counts, bytes, targets and counters after every step. */
function checkCounts(o: Opened, model: Model): void {
  const targets = [...model.hints.keys()].sort();
  expect(o.hints.targets()).toEqual(targets);
  for (const t of TARGETS) {
    const m = model.hints.get(t);
    expect(o.hints.pending(t)).toEqual({ entries: m?.size ?? 0, bytes: [...(m?.values() ?? [])].reduce((n, h) => n + h.bytes, 0) });
  }
  const c = model.counters;
  expect(o.hints.stats()).toEqual({
    entries: [...model.hints.values()].reduce((n, m) => n + m.size, 0),
    bytes: model.totalBytes(),
    limitBytes: MAX_BYTES,
    ...c,
    dropped: c.droppedFull + c.droppedOld,
  });
}

/** Every hint's content, read back by paging. */
async function checkContent(o: Opened, model: Model): Promise<void> {
  for (const t of TARGETS) {
    const got: HintEntry[] = [];
    let after: string | undefined;
    for (let pages = 0; pages < 100; pages++) {
      const page = await o.hints.batch(t, after, 2, 1 << 20);
      if (page.length === 0) break;
      got.push(...page);
      after = page[page.length - 1]!.key;
    }
    const want = [...(model.hints.get(t) ?? new Map<string, ModelHint>())].sort(([a], [b]) => byteOrder(a, b));
    expect(got.map((e) => [e.key, content(e.record)])).toEqual(want.map(([k, h]) => [k, content(h.record)]));
  }
}

async function run(ops: Op[]): Promise<void> {
  const dir = await dirs.make();
  const clock = new ManualClock(T0);
  const model = new Model();
  let o = await openAt(dir, clock);
  try {
    for (const op of ops) {
      switch (op.t) {
        case 'add': {
          const ts: Hlc = { wallMs: clock.now() - op.ageMs, logical: op.logical };
          const r = rec('v'.repeat(op.valueBytes), { ts, clock: { n1: op.logical + 1 } });
          expect(await o.hints.add(op.target, op.key, r)).toBe(model.add(op.target, op.key, r, clock.now()));
          break;
        }
        case 'replay': {
          const page = await o.hints.batch(op.target, undefined, op.maxEntries, op.maxBytes);
          expect(page.map((e) => e.key)).toEqual(model.page(op.target, op.maxEntries, op.maxBytes));
          const deleted = await o.hints.acknowledge(op.target, page.map((e) => ({ key: e.key, ts: e.record.version.ts })));
          expect(deleted).toBe(page.length);
          for (const e of page) model.delete(op.target, e.key);
          model.counters.replayed += deleted;
          break;
        }
        case 'ackStale': {
          // The version just before or after the one held: an acknowledgement that must delete nothing.
          const p = model.pick(op.pick);
          if (!p) break;
          const held = p.h.record.version.ts;
          const ts = { wallMs: held.wallMs, logical: held.logical + op.logicalDelta };
          if (ts.logical < 0) break;
          expect(await o.hints.acknowledge(p.t, [{ key: p.k, ts }])).toBe(0);
          break;
        }
        case 'ackExact': {
          const p = model.pick(op.pick);
          if (!p) break;
          expect(await o.hints.acknowledge(p.t, [{ key: p.k, ts: p.h.record.version.ts }])).toBe(1);
          model.delete(p.t, p.k);
          model.counters.replayed++;
          break;
        }
        case 'advance':
          clock.advance(op.ms);
          break;
        case 'expire':
          expect(await o.hints.expire(op.maxEntries)).toBe(model.expire(clock.now(), op.maxEntries));
          break;
        case 'reopen':
          await closeAll(o);
          o = await openAt(dir, clock);
          model.counters = { stored: 0, superseded: 0, droppedFull: 0, droppedOld: 0, replayed: 0, expired: 0 };
          await checkContent(o, model);
          break;
        default: {
          const never: never = op;
          throw new Error(`unknown op ${JSON.stringify(never)}`);
        }
      }
      checkCounts(o, model);
    }
    await checkContent(o, model);
  } finally {
    await closeAll(o);
  }
}

describe('HintStore against a Map model', () => {
  it('agrees on every step of random add / replay / ack / expire / restart sequences', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 50, size: 'max' }), (ops) => run(ops)),
      { numRuns: 60 },
    );
  });
});
