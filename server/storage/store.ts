// The storage interface every implementation (LevelDB + LRU tier, memory-only, and the
// simulator's) provides, with one conformance suite run against each
// (test/storage/store-conformance.test.ts).
//
// Reads are synchronous: the memory store is a Map, and the LevelDB store reads through
// its LRU tier and then LevelDB's synchronous get (a few microseconds from the block
// cache). That makes every read-modify-write (cas, incr, append) atomic without locks.
// Writes are applied to what reads see at once, and `durable` tells when they are safe
// on disk: a write is acknowledged only after its promise resolves.
import type { Hlc, StoredRecord } from './record.js';

export interface StoreStats {
  /** Live records the store holds (tombstones excluded; expired-but-unswept included). */
  items: number;
  /** Bytes of keys and values held. */
  bytes: number;
  /** Records evicted to stay within the memory bound (memory mode). */
  evictions: number;
  /** Upper bound of bytes, as memcached's limit_maxbytes. */
  limitBytes: number;
  /** Cache tier hits and misses (level mode); in memory mode every read is a hit or absent. */
  cacheHits: number;
  cacheMisses: number;
}

export interface Store {
  readonly kind: 'level' | 'memory';
  open(): Promise<void>;
  /** The record under `key`, tombstones included; undefined when there is none. */
  get(key: string): StoredRecord | undefined;
  /** Store (or replace) a record. Visible to `get` at once; the promise resolves when durable. */
  put(key: string, record: StoredRecord): Promise<void> | void;
  /** Remove the record entirely (sweep, purge). Visible at once; durable when resolved. */
  remove(key: string): Promise<void> | void;
  /**
   * Resolves when every write to `key` accepted so far is durable; undefined when
   * nothing is pending (so a read need not wait).
   */
  pending(key: string): Promise<void> | undefined;
  /** Visit up to `limit` records after `afterKey` (exclusive) in key order; returns the last key seen. */
  scan(afterKey: string | undefined, limit: number, visit: (key: string, record: StoredRecord) => void): Promise<string | undefined>;
  /**
   * Optional: visit up to `limit` records from `cursor` (0 starts a pass) in the store's
   * own order, for passes that need every record but no order (the sweep), where key
   * order would cost a store without one a pass over every record per page. Returns the
   * next cursor, or undefined once the pass is complete. A record written during a pass
   * may be visited twice or not at all (the next pass sees it).
   */
  sweepScan?(cursor: number, limit: number, visit: (key: string, record: StoredRecord) => void): Promise<number | undefined>;
  stats(): StoreStats;
  /** The newest version timestamp found on open, so a restarted node's clock never goes back. */
  highestTimestamp(): Hlc | undefined;
  /** Node metadata (the flush marker, ...): small values outside the record key space. */
  getMeta(name: string): Promise<Uint8Array | undefined>;
  putMeta(name: string, value: Uint8Array): Promise<void>;
  /** Flush pending writes and release resources. */
  close(): Promise<void>;
}

/** Bytes charged for a record held as objects (the LevelStore's LRU tier): the key, the value and a fixed overhead. */
export function recordCharge(key: string, r: StoredRecord): number {
  return key.length + r.value.length + RECORD_OVERHEAD_BYTES;
}

/**
 * What a record held as JS objects costs beyond its key and value bytes (LevelStore's cache
 * tier), measured (bench:memory, 2026-11-25: 200k records of 100 B built as LocalKv builds
 * them, after a forced GC): the record and version objects, the vector clock and HLC
 * objects, the key string, the value's Buffer object and its backing store's header, and
 * the LRU's slot, about 460 B in V8. Charging less let `--memory-mb 64` hold 4.5x more items
 * than 64 MB (RSS 427 MB) when the memory store held records this way.
 */
export const RECORD_OVERHEAD_BYTES = 464;

/**
 * What a record costs in memory mode (MemoryStore, compact items) beyond its key and value
 * bytes: 96 B measured (2026-11-25: 200k and 1M records of 100 B under `key:<i>` built by
 * LocalKv, after a forced GC, (heapUsed + arrayBuffers) per record - key - value = 96 and
 * 91 B; V8's heap grows by 0-1 B per record): the item's 50 B header and one 12 B clock
 * entry, the slot's 20 B (LRU links, place, key hash) and the hash table's 4 B bucket at a
 * load of 3/8 to 3/4. Plus 32 B for segment space the cleaner leaves dead: it keeps segments
 * within 1.25x their live bytes, and a quarter of a 100 B value's ~170 B item is 43 B.
 * More clock entries, siblings and keys with code units above 0xff are charged as encoded
 * (compact-item.ts).
 */
export const MEMORY_RECORD_OVERHEAD_BYTES = 128;
