// Durable storage: LevelDB (through `level`) behind a write-through LRU tier bounded in
// bytes (`--cache-mb`).
//
// Writes are group-committed: every put of one event-loop turn joins one LevelDB batch,
// and at most one batch is in flight, so batches reach LevelDB in the order they were
// made (two concurrent batches could be applied out of order by the thread pool). Until
// its batch commits, a record lives in `batchOpen`/`flushing` maps that reads consult first.
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

type Db = Level<Buffer, Uint8Array>;

/** A write waiting for its batch: a record, or null for a removal. */
type Pending = Map<string, StoredRecord | null>;

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
  private batchOpen: Pending = new Map();
  private batchOpenDone: Deferred | undefined;
  /** The batch LevelDB is writing now. */
  private flushing: Pending | undefined;
  private flushingDone: Promise<void> | undefined;
  private items = 0;
  private bytes = 0;
  private cacheHits = 0;
  private cacheMisses = 0;
  private closed = false;
  private failure: unknown;
  private highest: Hlc | undefined;

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

  /** Every record is read through here; the order is the order of recency of writes. */
  get(key: string): StoredRecord | undefined {
    const o = this.batchOpen.get(key);
    if (o !== undefined) return o ?? undefined;
    const f = this.flushing?.get(key);
    if (f !== undefined) return f ?? undefined;
    const c = this.cache.get(key);
    if (c !== undefined) {
      this.cacheHits++;
      return c;
    }
    this.cacheMisses++;
    const bytes = this.db.getSync(dataKey(key));
    if (bytes === undefined) return undefined;
    const r = decodeRecord(bytes);
    this.cache.set(key, r);
    return r;
  }

  put(key: string, record: StoredRecord): Promise<void> {
    this.account(key, this.get(key), record);
    this.cache.set(key, record);
    return this.enqueue(key, record);
  }

  remove(key: string): Promise<void> {
    this.account(key, this.get(key), undefined);
    this.cache.delete(key);
    return this.enqueue(key, null);
  }

  pending(key: string): Promise<void> | undefined {
    if (this.batchOpen.has(key)) return this.batchOpenDone!.promise;
    if (this.flushing?.has(key)) return this.flushingDone;
    return undefined;
  }

  async scan(afterKey: string | undefined, limit: number, visit: (key: string, r: StoredRecord) => void): Promise<string | undefined> {
    assert(limit > 0, 'scan limit must be positive');
    const gt = afterKey === undefined ? Buffer.from([DATA]) : dataKey(afterKey);
    let last: string | undefined;
    for await (const [k, v] of this.db.iterator({ gt, lt: Buffer.from([DATA + 1]), limit })) {
      last = k.toString('latin1', 1);
      // The on-disk copy may be older than a write still in its batch.
      visit(last, this.batchOpen.get(last) ?? this.flushing?.get(last) ?? decodeRecord(v));
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
    // Drain: the open batch may schedule after the flushing one completes.
    while (this.flushingDone || this.batchOpen.size > 0) {
      if (this.flushingDone) await this.flushingDone.catch(() => {});
      else this.flush();
    }
    this.closed = true;
    await this.db.close();
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
    this.batchOpen.set(key, record);
    if (!this.batchOpenDone) {
      this.batchOpenDone = deferred();
      if (!this.flushingDone) setImmediate(() => this.flush());
    }
    return this.batchOpenDone.promise;
  }

  private flush(): void {
    if (this.flushingDone || this.batchOpen.size === 0) return;
    const batch = this.batchOpen;
    const done = this.batchOpenDone!;
    this.batchOpen = new Map();
    this.batchOpenDone = undefined;
    this.flushing = batch;
    const ops = [];
    for (const [key, r] of batch) {
      ops.push(r === null ? { type: 'del' as const, key: dataKey(key) } : { type: 'put' as const, key: dataKey(key), value: encodeRecord(r) });
    }
    this.flushingDone = this.db.batch(ops).then(
      () => {
        this.flushing = undefined;
        this.flushingDone = undefined;
        done.resolve();
        if (this.batchOpen.size > 0) this.flush();
      },
      (e: unknown) => {
        // LevelDB refused a write: no later write may be acknowledged either.
        this.failure = e;
        this.flushing = undefined;
        this.flushingDone = undefined;
        done.reject(e);
        this.batchOpenDone?.reject(e);
      },
    );
  }
}
