// Memory-only storage (`--storage memory`): the LRU tier is the store, bounded in bytes
// by `--memory-mb`, and evicts the least recently used records as memcached does.
import { LRUCache } from 'lru-cache';
import type { Clock } from '../clock.js';
import type { StoredRecord } from './record.js';
import { recordCharge, type Store, type StoreStats } from './store.js';

export interface MemoryStoreOptions {
  memoryBytes: number;
  clock: Clock;
}

export class MemoryStore implements Store {
  readonly kind = 'memory' as const;
  private readonly cache: LRUCache<string, StoredRecord>;
  private tombstones = 0;
  private evictions = 0;
  private readonly meta = new Map<string, Uint8Array>();

  constructor(private readonly opts: MemoryStoreOptions) {
    this.cache = new LRUCache<string, StoredRecord>({
      maxSize: opts.memoryBytes,
      sizeCalculation: (r, k) => recordCharge(k, r),
      // lru-cache would otherwise read performance.now(); give it the injected clock.
      perf: { now: () => opts.clock.now() },
      dispose: (r, _k, reason) => {
        if (r.tombstone) this.tombstones--;
        if (reason === 'evict') this.evictions++;
      },
    });
  }

  async open(): Promise<void> {}

  get(key: string): StoredRecord | undefined {
    return this.cache.get(key);
  }

  put(key: string, record: StoredRecord): void {
    // lru-cache calls dispose only for a different object: the same one again is just a touch.
    if (this.cache.peek(key) === record) {
      this.cache.get(key);
      return;
    }
    if (record.tombstone) this.tombstones++;
    this.cache.set(key, record);
    // A record larger than the whole store is refused by lru-cache; count it as evicted.
    if (this.cache.peek(key) !== record) {
      if (record.tombstone) this.tombstones--;
      this.evictions++;
    }
  }

  remove(key: string): void {
    this.cache.delete(key);
  }

  pending(): undefined {
    return undefined;
  }

  async scan(afterKey: string | undefined, limit: number, visit: (key: string, r: StoredRecord) => void): Promise<string | undefined> {
    // LRU order is not key order; sort a bounded snapshot of keys instead of holding an iterator
    // across mutations.
    const keys: string[] = [];
    for (const k of this.cache.keys()) if (afterKey === undefined || k > afterKey) keys.push(k);
    keys.sort();
    let last: string | undefined;
    for (const k of keys.slice(0, limit)) {
      const r = this.cache.peek(k);
      if (r) visit(k, r);
      last = k;
    }
    return last;
  }

  highestTimestamp(): undefined {
    return undefined;
  }

  async getMeta(name: string): Promise<Uint8Array | undefined> {
    return this.meta.get(name);
  }

  async putMeta(name: string, value: Uint8Array): Promise<void> {
    this.meta.set(name, value);
  }

  stats(): StoreStats {
    return {
      items: this.cache.size - this.tombstones,
      bytes: this.cache.calculatedSize,
      evictions: this.evictions,
      limitBytes: this.opts.memoryBytes,
      cacheHits: 0,
      cacheMisses: 0,
    };
  }

  async close(): Promise<void> {
    this.cache.clear();
  }
}
