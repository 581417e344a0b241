// Shared pieces of the storage tests: record builders, a comparable view of a record's
// persisted content, temporary LevelDB directories, and the store factories that the
// conformance suite (and the kv tests) run against.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ManualClock } from '../../server/clock.js';
import { LevelStore } from '../../server/storage/level-store.js';
import { MemoryStore } from '../../server/storage/memory-store.js';
import type { Hlc, StoredRecord, VectorClock } from '../../server/storage/record.js';
import type { Store } from '../../server/storage/store.js';

export interface RecordFields {
  flags?: number;
  expiresAtMs?: number;
  ts?: Hlc;
  clock?: VectorClock;
  tombstone?: boolean;
}

/** A record as a node would write it; `value` as latin1 text or raw bytes. */
export function rec(value: Buffer | Uint8Array | string, f: RecordFields = {}): StoredRecord {
  const ts = f.ts ?? { wallMs: 1_700_000_000_000, logical: 0 };
  const bytes = typeof value === 'string' ? Buffer.from(value, 'latin1') : Buffer.from(value);
  return {
    value: f.tombstone ? Buffer.alloc(0) : bytes,
    flags: f.flags ?? 0,
    expiresAtMs: f.expiresAtMs ?? 0,
    version: { clock: f.clock ?? { n1: 1 }, ts },
    tombstone: f.tombstone ?? false,
    fetched: false,
    accessedMs: ts.wallMs,
  };
}

/** What a store must keep of a record: everything but the in-memory access bits. */
export interface Content {
  value: string; // hex, so that a failing diff is readable and binary-exact
  flags: number;
  expiresAtMs: number;
  clock: VectorClock;
  ts: Hlc;
  tombstone: boolean;
}

export function content(r: StoredRecord | undefined): Content | undefined {
  if (r === undefined) return undefined;
  return {
    value: Buffer.from(r.value).toString('hex'),
    flags: r.flags,
    expiresAtMs: r.expiresAtMs,
    clock: { ...r.version.clock },
    ts: { wallMs: r.version.ts.wallMs, logical: r.version.ts.logical },
    tombstone: r.tombstone,
  };
}

/** Every record of the store, in scan order, paging `pageSize` at a time. */
export async function scanAll(store: Store, pageSize: number): Promise<Array<[string, Content]>> {
  const out: Array<[string, Content]> = [];
  let after: string | undefined;
  // Bounded: a store that never reports the end would otherwise loop forever.
  for (let pages = 0; pages < 100_000; pages++) {
    let seen = 0;
    const last = await store.scan(after, pageSize, (k, r) => {
      seen++;
      out.push([k, content(r)!]);
    });
    if (last === undefined || seen === 0) return out;
    after = last;
  }
  throw new Error('scan did not terminate');
}

/** Temporary directories, each removed by `removeAll`. */
export class TempDirs {
  private readonly dirs: string[] = [];
  async make(): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), 'ringkv-test-'));
    this.dirs.push(dir);
    return dir;
  }
  async removeAll(): Promise<void> {
    const dirs = this.dirs.splice(0);
    await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
  }
}

/**
 * How a suite gets stores of one implementation. `create` returns an opened store over a
 * fresh space; `reopen` (durable implementations only) closes a store and opens a new one
 * over the same data.
 */
export interface StoreFactory {
  readonly kind: 'level' | 'memory';
  create(opts?: FactoryOptions): Promise<Store>;
  reopen?(store: Store, opts?: FactoryOptions): Promise<Store>;
  /** Close every store this factory opened and delete their files. */
  cleanup(): Promise<void>;
}

export interface FactoryOptions {
  /** memoryBytes (memory) or cacheBytes (level); ignored by reopen, which keeps the original. */
  bytes?: number;
  clock?: ManualClock;
  /** Open the store before returning it (default true); false when its owner opens it (LocalKv.open). */
  open?: boolean;
}

const DEFAULT_BYTES = 64 * 1024 * 1024;

export function memoryFactory(): StoreFactory {
  const opened: Store[] = [];
  return {
    kind: 'memory',
    async create(opts = {}) {
      const store = new MemoryStore({ memoryBytes: opts.bytes ?? DEFAULT_BYTES, clock: opts.clock ?? new ManualClock() });
      if (opts.open !== false) await store.open();
      opened.push(store);
      return store;
    },
    async cleanup() {
      await Promise.all(opened.splice(0).map((s) => s.close()));
    },
  };
}

export function levelFactory(): StoreFactory {
  const dirs = new TempDirs();
  const opened: LevelStore[] = [];
  const dirOf = new Map<Store, { dir: string; bytes: number }>();
  async function openAt(dir: string, bytes: number, opts: FactoryOptions): Promise<LevelStore> {
    const store = new LevelStore({ dir, cacheBytes: bytes, clock: opts.clock ?? new ManualClock() });
    opened.push(store);
    dirOf.set(store, { dir, bytes });
    if (opts.open !== false) await store.open();
    return store;
  }
  return {
    kind: 'level',
    async create(opts = {}) {
      return openAt(await dirs.make(), opts.bytes ?? DEFAULT_BYTES, opts);
    },
    async reopen(store, opts = {}) {
      const where = dirOf.get(store);
      if (!where) throw new Error('reopen of a store this factory did not open');
      await store.close();
      return openAt(where.dir, where.bytes, opts);
    },
    async cleanup() {
      // LevelStore.close is idempotent, so stores already closed by reopen are fine here.
      await Promise.all(opened.splice(0).map((s) => s.close()));
      dirOf.clear();
      await dirs.removeAll();
    },
  };
}

/** Resolves after the current event-loop turn's setImmediate callbacks have run. */
export function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Bytes 0x00-0xff as a latin1 string, the way keys reach the store. */
export function latin1(...bytes: number[]): string {
  return Buffer.from(bytes).toString('latin1');
}

/** The byte order LevelDB sorts keys in; for latin1 strings it is also JS string order. */
export function byteOrder(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'latin1'), Buffer.from(b, 'latin1'));
}
