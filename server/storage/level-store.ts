// Durable storage: LevelDB (through `level`) behind a write-through LRU tier bounded in
// bytes (`--cache-mb`).
//
// Writes are group-committed: every put of one event-loop turn joins one LevelDB batch,
// and at most one batch is in flight, so batches reach LevelDB in the order they were
// made (two concurrent batches could be applied out of order by the thread pool). Until
// its batch commits, a record lives in `forming`/`inflight` batches that reads consult first.
//
// Keys on disk: one prefix byte per key space, then the key bytes (latin1 strings are
// bytes 1:1). 'd' data records; 'm' node metadata. Later key spaces (hints) get their own.
import { Level } from 'level';
import { LRUCache } from 'lru-cache';
import type { Clock } from '../clock.js';
import { assert } from '../util/assert.js';
import { compareHlc, decodeRecord, encodeRecord, type Hlc, type StoredRecord } from './record.js';
import { recordCharge, type Store, type StoreStats } from './store.js';

const DATA = 0x64; // 'd'
const META = 0x6d; // 'm'
const NOT_BATCHED = Symbol('not batched');

type Db = Level<Buffer, Uint8Array>;

/** Writes of one event-loop turn, committed to LevelDB as one batch: a record, or null for a removal. */
interface Batch {
  readonly writes: Map<string, StoredRecord | null>;
  readonly done: Deferred;
}

interface Deferred {
  promise: Promise<void>;
  resolve: () => void;
  reject: (e: unknown) => void;
}

function deferred(): Deferred {
  let resolve!: () => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // A batch failure is reported to every waiter; never as an unhandled rejection.
  promise.catch(() => {});
  return { promise, resolve, reject };
}

function dataKey(key: string): Buffer {
  const b = Buffer.allocUnsafe(1 + key.length);
  b[0] = DATA;
  b.write(key, 1, 'latin1');
  return b;
}

export interface LevelStoreOptions {
  dir: string;
  cacheBytes: number;
  clock: Clock;
}

export class LevelStore implements Store {
  readonly kind = 'level' as const;
  private readonly db: Db;
  private readonly cache: LRUCache<string, StoredRecord>;
  /** Writes of the current turn, not yet handed to LevelDB. */
  private forming: Batch | undefined;
  /** The batch LevelDB is writing now (at most one, so batches apply in order). */
  private inflight: Batch | undefined;
  private items = 0;
  private bytes = 0;
  private cacheHits = 0;
  private cacheMisses = 0;
  private closed = false;
  private failure: unknown;
  private highest: Hlc | undefined;

  /** The node's LevelDB, for key spaces of its own beside the records (hints). */
  get level(): Db {
    return this.db;
  }

  constructor(private readonly opts: LevelStoreOptions) {
    this.db = new Level<Buffer, Uint8Array>(opts.dir, { keyEncoding: 'buffer', valueEncoding: 'view' });
    this.cache = new LRUCache<string, StoredRecord>({
      maxSize: opts.cacheBytes,
      sizeCalculation: (r, k) => recordCharge(k, r),
      perf: { now: () => opts.clock.now() },
    });
  }

  async open(): Promise<void> {
    await this.db.open();
    // Count live items and bytes once, so stats are right after a restart.
    for await (const [k, v] of this.db.iterator({ gt: Buffer.from([DATA]), lt: Buffer.from([DATA + 1]) })) {
      const r = decodeRecord(v);
      if (!this.highest || compareHlc(r.version.ts, this.highest) > 0) this.highest = r.version.ts;
      if (!r.tombstone) {
        this.items++;
        this.bytes += k.length - 1 + r.value.length;
      }
    }
  }

  /** Every record is read through here: unflushed batches first, then the cache tier, then LevelDB. */
  get(key: string): StoredRecord | undefined {
    const o = this.batched(key);
    if (o !== NOT_BATCHED) return o ?? undefined;
    const c = this.cache.get(key);
    if (c !== undefined) {
      this.cacheHits++;
      return c;
    }
    this.cacheMisses++;
    return this.load(key);
  }

  put(key: string, record: StoredRecord): Promise<void> {
    this.account(key, this.current(key), record);
    this.cache.set(key, record);
    return this.enqueue(key, record);
  }

  remove(key: string): Promise<void> {
    this.account(key, this.current(key), undefined);
    this.cache.delete(key);
    return this.enqueue(key, null);
  }

  pending(key: string): Promise<void> | undefined {
    if (this.forming?.writes.has(key)) return this.forming.done.promise;
    if (this.inflight?.writes.has(key)) return this.inflight.done.promise;
    return undefined;
  }

  async scan(afterKey: string | undefined, limit: number, visit: (key: string, r: StoredRecord) => void): Promise<string | undefined> {
    assert(limit > 0, 'scan limit must be positive');
    // Writes accepted before the scan are on disk once their batches commit.
    await Promise.all([this.forming?.done.promise, this.inflight?.done.promise].map((p) => p?.catch(() => {})));
    const gt = afterKey === undefined ? Buffer.from([DATA]) : dataKey(afterKey);
    let last: string | undefined;
    for await (const [k, v] of this.db.iterator({ gt, lt: Buffer.from([DATA + 1]), limit })) {
      last = k.toString('latin1', 1);
      // A write made during the scan is newer than the disk copy the iterator holds.
      const b = this.batched(last);
      const r = b === NOT_BATCHED ? decodeRecord(v) : b;
      if (r) visit(last, r);
    }
    return last;
  }

  async getMeta(name: string): Promise<Uint8Array | undefined> {
    return this.db.get(Buffer.concat([Buffer.from([META]), Buffer.from(name, 'utf8')]));
  }

  async putMeta(name: string, value: Uint8Array): Promise<void> {
    await this.db.put(Buffer.concat([Buffer.from([META]), Buffer.from(name, 'utf8')]), value);
  }

  highestTimestamp(): Hlc | undefined {
    return this.highest;
  }

  stats(): StoreStats {
    return {
      items: this.items,
      bytes: this.bytes,
      evictions: 0,
      limitBytes: this.opts.cacheBytes,
      cacheHits: this.cacheHits,
      cacheMisses: this.cacheMisses,
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    // Drain: the open batch is handed over when the in-flight one completes.
    while (this.inflight || this.forming) {
      if (this.inflight) await this.inflight.done.promise.catch(() => {});
      else this.flush();
    }
    this.closed = true;
    await this.db.close();
  }

  /** The record in an unflushed batch (null: removed there), or NOT_BATCHED. */
  private batched(key: string): StoredRecord | null | typeof NOT_BATCHED {
    if (this.forming?.writes.has(key)) return this.forming.writes.get(key)!;
    if (this.inflight?.writes.has(key)) return this.inflight.writes.get(key)!;
    return NOT_BATCHED;
  }

  /** The current record without counting a cache hit or miss (no client asked for it). */
  private current(key: string): StoredRecord | undefined {
    const b = this.batched(key);
    if (b !== NOT_BATCHED) return b ?? undefined;
    return this.cache.get(key) ?? this.load(key);
  }

  private load(key: string): StoredRecord | undefined {
    const bytes = this.db.getSync(dataKey(key));
    if (bytes === undefined) return undefined;
    const r = decodeRecord(bytes);
    this.cache.set(key, r);
    return r;
  }

  private account(key: string, before: StoredRecord | undefined, after: StoredRecord | undefined): void {
    if (before && !before.tombstone) {
      this.items--;
      this.bytes -= key.length + before.value.length;
    }
    if (after && !after.tombstone) {
      this.items++;
      this.bytes += key.length + after.value.length;
    }
  }

  private enqueue(key: string, record: StoredRecord | null): Promise<void> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    assert(!this.closed, 'write after close');
    if (!this.forming) {
      this.forming = { writes: new Map(), done: deferred() };
      if (!this.inflight) setImmediate(() => this.flush());
    }
    this.forming.writes.set(key, record);
    return this.forming.done.promise;
  }

  private flush(): void {
    if (this.inflight || !this.forming) return;
    const batch = this.forming;
    this.forming = undefined;
    this.inflight = batch;
    const ops = [];
    for (const [key, r] of batch.writes) {
      ops.push(r === null ? { type: 'del' as const, key: dataKey(key) } : { type: 'put' as const, key: dataKey(key), value: encodeRecord(r) });
    }
    this.db.batch(ops).then(
      () => {
        this.inflight = undefined;
        batch.done.resolve();
        if (this.forming) this.flush();
      },
      (e: unknown) => {
        // LevelDB refused a write: nothing after it may be acknowledged or served either.
        this.failure = e;
        this.inflight = undefined;
        const queued = this.forming;
        this.forming = undefined;
        for (const b of [batch, queued]) {
          if (!b) continue;
          for (const key of b.writes.keys()) this.cache.delete(key);
          b.done.reject(e);
        }
      },
    );
  }
}
