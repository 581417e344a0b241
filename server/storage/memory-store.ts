// Memory-only storage (`--storage memory`): bounded in bytes by `--memory-mb`, evicting
// the least recently used records as memcached does.
//
// Compact: a record is not a graph of JS objects (record, version, clock, HLC, Buffer,
// key string, Map entry: about 570 B in V8 for a 100 B value) but one item of bytes
// (compact-item.ts: a 50 B header, the key, the clock, the value) in a segment, a large
// buffer shared by thousands of items. The index is off V8's heap too: an open-addressing
// hash table of slot numbers (Int32Array), and per slot four int32 of LRU links and the
// item's place plus its key's hash, in chunks. So V8's heap holds nothing per record: no
// garbage when records go, nothing for the young generation to copy, nothing to mark.
//
// Reads decode: get() returns a fresh StoredRecord with own data properties (callers
// spread records), its value a copy of the item's bytes, because a segment's bytes are
// moved and reused (a view would change under a reply still queued on a socket). A record
// can be mutated by its reader (`fetched`, `accessedMs`: LocalKv marks a fetch), so the
// last VIEW_CACHE records handed out are remembered: a get of one of them returns the same
// object (as a Map of objects would), and when it leaves the cache its two mutable fields
// are written back into the item. Mutations are made right after the get, so they persist.
//
// Space: items are appended to the head segment. A write, removal or eviction leaves dead
// bytes in the segment that held the old item; a segment with no live item is reused as it
// is, and when a new head is needed and none is empty, the cleaner compacts the segment with
// the fewest live bytes in place (items slide down; their slots learn the new place) and
// appends after them. Segments stay within PHYSICAL_FACTOR x memoryBytes. Items too large
// for a segment get a buffer of their own, dropped when the item goes.
import type { Clock } from '../clock.js';
import { assert } from '../util/assert.js';
import {
  BASE_ITEM_BYTES,
  BIT_FETCHED,
  BIT_TOMBSTONE,
  BIT_VIEW,
  H_ACCESSED,
  H_BITS,
  H_LENGTH,
  H_SLOT,
  H_VIEW,
  HEADER_BYTES,
  hashKey,
  ItemCodec,
} from './compact-item.js';
import type { StoredRecord } from './record.js';
import { MEMORY_RECORD_OVERHEAD_BYTES, type Store, type StoreStats } from './store.js';

export interface MemoryStoreOptions {
  memoryBytes: number;
  clock: Clock;
}

/** Physical state of the segments, for tests and diagnostics. */
export interface ArenaStats {
  segmentBytes: number;
  /** Segments allocated (normal ones). */
  segments: number;
  /** Bytes of live items in normal segments. */
  liveBytes: number;
  /** Bytes of items with a buffer of their own. */
  largeBytes: number;
  /** Segment compactions run by the cleaner. */
  compactions: number;
  /** Records evicted only to make room in segments (beyond what the byte bound asked). */
  spaceEvictions: number;
  /** Slots of the index (records held, plus free ones) and buckets of its hash table. */
  slots: number;
  buckets: number;
}

const NONE = -1;
// Slots: per slot four int32 (LRU prev, LRU next, segment, offset) and the key's hash, in
// chunks, so that the arrays never need a copy to grow.
const CHUNK_BITS = 14;
const CHUNK = 1 << CHUNK_BITS;
const CHUNK_MASK = CHUNK - 1;
const L_PREV = 0;
const L_NEXT = 1;
const L_SEG = 2;
const L_OFF = 3;
const MIN_BUCKETS = 1024;
/** Records handed out whose mutable fields are tracked (at most 256: the slot is a byte). */
const VIEW_CACHE = 128;
const MAX_SEGMENT_BYTES = 1 << 20;
const MIN_SEGMENT_BYTES = 4096;
/** Items from this size on live in a buffer of their own (at most an eighth of a segment). */
const LARGE_ITEM_BYTES = 16 * 1024;
/**
 * Segments may hold this much more than memoryBytes: room for the cleaner when values are
 * large beside the per-record overhead. With 100 B values live items are about 70% of the
 * bytes charged, and segments stay within 1.25x their live bytes.
 */
const PHYSICAL_FACTOR = 1.25;

/** Uninitialised bytes of their own (not from Buffer's pool), as a plain Uint8Array: its subarrays are cheaper than a Buffer's. */
function plainBytes(n: number): Uint8Array {
  const b = Buffer.allocUnsafeSlow(n);
  return new Uint8Array(b.buffer, b.byteOffset, b.length);
}

/**
 * A record's charge from its item's size: the key, the value, the measured fixed overhead,
 * and whatever the item holds beyond the common shape (more clock entries, siblings, a key
 * with code units above 0xff).
 */
function charge(itemBytes: number): number {
  return itemBytes - BASE_ITEM_BYTES + MEMORY_RECORD_OVERHEAD_BYTES;
}

export class MemoryStore implements Store {
  readonly kind = 'memory' as const;
  private readonly codec = new ItemCodec();
  private readonly meta = new Map<string, Uint8Array>();
  private readonly limit: number;

  // ---- index: hash table and slots
  /** Slot + 1 per bucket, 0 = empty; linear probing, deletion by backward shift. */
  private table = new Int32Array(MIN_BUCKETS);
  private tableMask = MIN_BUCKETS - 1;
  private links: Int32Array[] = [];
  private hashes: Int32Array[] = [];
  /** Slots handed out so far; freed slots are chained through L_NEXT from freeSlot. */
  private slotsUsed = 0;
  private freeSlot = NONE;
  /** Most and least recently used slots. */
  private lruHead = NONE;
  private lruTail = NONE;

  // ---- segments
  private readonly segmentBytes: number;
  private readonly largeMin: number;
  private readonly physicalCap: number;
  private bufs: Array<Uint8Array | undefined> = [];
  private views: Array<DataView | undefined> = [];
  private fill: number[] = [];
  private live: number[] = [];
  private large: boolean[] = [];
  private head = NONE;
  private emptySegments: number[] = [];
  private freeSegmentIds: number[] = [];
  private normalSegments = 0;
  private largeBytes = 0;
  /** Bytes of live items in normal segments. */
  private liveBytes = 0;
  private compactions = 0;
  private spaceEvictions = 0;
  /** Where reserve() placed the item. */
  private placedSeg = 0;
  private placedOff = 0;

  // ---- records handed out (see the top)
  private readonly cachedSlot = new Int32Array(VIEW_CACHE).fill(NONE);
  private readonly cachedView: Array<StoredRecord | undefined> = new Array<StoredRecord | undefined>(VIEW_CACHE).fill(undefined);
  private nextCached = 0;

  // ---- accounting
  private charged = 0;
  private records = 0;
  private tombstones = 0;
  private evictions = 0;

  constructor(private readonly opts: MemoryStoreOptions) {
    assert(opts.memoryBytes > 0, 'memoryBytes must be positive');
    this.limit = opts.memoryBytes;
    let seg = MIN_SEGMENT_BYTES;
    while (seg < MAX_SEGMENT_BYTES && seg * 64 < opts.memoryBytes) seg *= 2;
    this.segmentBytes = seg;
    // Values this large get a buffer of their own: get() hands out a view instead of a copy
    // (such a buffer is never reused), and segments are not churned by a few big items.
    this.largeMin = Math.min(seg / 8, LARGE_ITEM_BYTES);
    this.physicalCap = Math.max(Math.ceil(opts.memoryBytes * PHYSICAL_FACTOR), 2 * seg);
  }

  async open(): Promise<void> {}

  get(key: string): StoredRecord | undefined {
    const slot = this.find(key, hashKey(key));
    if (slot === NONE) return undefined;
    this.touch(slot);
    return this.view(slot, true);
  }

  put(key: string, record: StoredRecord): void {
    const hash = hashKey(key);
    let slot = this.find(key, hash);
    // The very record get() handed out, again: just a touch (its fields are tracked).
    if (slot !== NONE && this.cachedViewOf(slot) === record) {
      this.touch(slot);
      return;
    }
    const size = this.codec.size(key, record);
    const cost = charge(size);
    if (cost > this.limit) {
      // Larger than the whole store: not kept, and the old value goes with it (serving it
      // in place of the refused write would be a stale read). Counted as evicted.
      if (slot !== NONE) this.removeSlot(slot);
      this.evictions++;
      return;
    }
    const fresh = slot === NONE;
    if (fresh) {
      slot = this.newSlot(hash);
    } else {
      this.kill(slot);
      this.unlink(slot);
    }
    // The slot is out of the LRU list (and, if fresh, out of the table) until written.
    while (this.charged + cost > this.limit) this.evictTail();
    this.reserve(size);
    const seg = this.placedSeg;
    const off = this.placedOff;
    this.codec.write(this.bufs[seg]!, this.views[seg]!, off, slot, key, record);
    const l = this.links[slot >>> CHUNK_BITS]!;
    const b = (slot & CHUNK_MASK) << 2;
    l[b + L_SEG] = seg;
    l[b + L_OFF] = off;
    if (!this.large[seg]) {
      this.live[seg]! += size;
      this.liveBytes += size;
    }
    this.linkHead(slot);
    if (fresh) this.tableInsert(slot, hash);
    this.charged += cost;
    this.records++;
    if (record.tombstone) this.tombstones++;
  }

  remove(key: string): void {
    const slot = this.find(key, hashKey(key));
    if (slot !== NONE) this.removeSlot(slot);
  }

  pending(): undefined {
    return undefined;
  }

  async scan(afterKey: string | undefined, limit: number, visit: (key: string, r: StoredRecord) => void): Promise<string | undefined> {
    assert(limit > 0, 'scan limit must be positive');
    // Nothing is kept in key order: one pass over the records keeps the `limit` smallest keys
    // after `afterKey` in a max-heap (compared in place, nothing decoded), then sorts them.
    // O(records) per page, where the Map-based store sorted every key per page.
    const heap: number[] = [];
    const cmp = (a: number, b: number) => this.compareSlots(a, b);
    // Slots in index order (sequential in memory), skipping free ones.
    for (let slot = 0; slot < this.slotsUsed; slot++) {
      if (this.links[slot >>> CHUNK_BITS]![((slot & CHUNK_MASK) << 2) + L_SEG] === NONE) continue;
      if (afterKey !== undefined && this.compareSlotKey(slot, afterKey) <= 0) continue;
      if (heap.length < limit) {
        heap.push(slot);
        siftUp(heap, heap.length - 1, cmp);
      } else if (cmp(slot, heap[0]!) < 0) {
        heap[0] = slot;
        siftDown(heap, 0, cmp);
      }
    }
    heap.sort(cmp);
    // Keys first: a visit may change the store (slots are reused, items move).
    const keys = heap.map((slot) => {
      const l = this.links[slot >>> CHUNK_BITS]!;
      const b = (slot & CHUNK_MASK) << 2;
      const seg = l[b + L_SEG]!;
      return this.codec.key(this.bufs[seg]!, this.views[seg]!, l[b + L_OFF]!);
    });
    for (const k of keys) {
      const slot = this.find(k, hashKey(k));
      if (slot !== NONE) visit(k, this.view(slot, false));
    }
    return keys.length > 0 ? keys[keys.length - 1] : undefined;
  }

  /** Records in slot order (sequential in memory): O(limit) per page, where scan is O(records). */
  async sweepScan(cursor: number, limit: number, visit: (key: string, r: StoredRecord) => void): Promise<number | undefined> {
    assert(limit > 0 && Number.isInteger(cursor) && cursor >= 0, 'sweepScan needs a cursor >= 0 and a positive limit');
    // Keys first: a visit may change the store (slots are reused, items move).
    const keys: string[] = [];
    let slot = cursor;
    for (; slot < this.slotsUsed && keys.length < limit; slot++) {
      const l = this.links[slot >>> CHUNK_BITS]!;
      const b = (slot & CHUNK_MASK) << 2;
      const seg = l[b + L_SEG]!;
      if (seg === NONE) continue;
      keys.push(this.codec.key(this.bufs[seg]!, this.views[seg]!, l[b + L_OFF]!));
    }
    for (const k of keys) {
      const s = this.find(k, hashKey(k));
      if (s !== NONE) visit(k, this.view(s, false));
    }
    return slot < this.slotsUsed ? slot : undefined;
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
      items: this.records - this.tombstones,
      bytes: this.charged,
      evictions: this.evictions,
      limitBytes: this.limit,
      cacheHits: 0,
      cacheMisses: 0,
    };
  }

  arenaStats(): ArenaStats {
    let liveBytes = 0;
    for (let s = 0; s < this.bufs.length; s++) if (this.bufs[s] && !this.large[s]) liveBytes += this.live[s]!;
    assert(liveBytes === this.liveBytes, 'live bytes of the segments');
    return {
      segmentBytes: this.segmentBytes,
      segments: this.normalSegments,
      liveBytes,
      largeBytes: this.largeBytes,
      compactions: this.compactions,
      spaceEvictions: this.spaceEvictions,
      slots: this.slotsUsed,
      buckets: this.table.length,
    };
  }

  async close(): Promise<void> {
    this.table = new Int32Array(MIN_BUCKETS);
    this.tableMask = MIN_BUCKETS - 1;
    this.links = [];
    this.hashes = [];
    this.slotsUsed = 0;
    this.freeSlot = NONE;
    this.lruHead = NONE;
    this.lruTail = NONE;
    this.bufs = [];
    this.views = [];
    this.fill = [];
    this.live = [];
    this.large = [];
    this.head = NONE;
    this.emptySegments = [];
    this.freeSegmentIds = [];
    this.normalSegments = 0;
    this.largeBytes = 0;
    this.liveBytes = 0;
    this.cachedSlot.fill(NONE);
    this.cachedView.fill(undefined);
    this.nextCached = 0;
    this.charged = 0;
    this.records = 0;
    this.tombstones = 0;
  }

  // ---- records handed out ---------------------------------------------------------------

  /** The record in `slot`: the tracked one if there is one, else decoded (and tracked when `track`). */
  private view(slot: number, track: boolean): StoredRecord {
    const l = this.links[slot >>> CHUNK_BITS]!;
    const b = (slot & CHUNK_MASK) << 2;
    const seg = l[b + L_SEG]!;
    const off = l[b + L_OFF]!;
    const buf = this.bufs[seg]!;
    if ((buf[off + H_BITS]! & BIT_VIEW) !== 0) return this.cachedView[buf[off + H_VIEW]!]!;
    const r = this.codec.read(buf, this.views[seg]!, off, !this.large[seg]);
    if (track) {
      const at = this.nextCached;
      this.nextCached = at === VIEW_CACHE - 1 ? 0 : at + 1;
      if (this.cachedSlot[at] !== NONE) this.writeBack(at);
      this.cachedSlot[at] = slot;
      this.cachedView[at] = r;
      buf[off + H_BITS] = buf[off + H_BITS]! | BIT_VIEW;
      buf[off + H_VIEW] = at;
    }
    return r;
  }

  private cachedViewOf(slot: number): StoredRecord | undefined {
    const l = this.links[slot >>> CHUNK_BITS]!;
    const b = (slot & CHUNK_MASK) << 2;
    const buf = this.bufs[l[b + L_SEG]!]!;
    const off = l[b + L_OFF]!;
    return (buf[off + H_BITS]! & BIT_VIEW) !== 0 ? this.cachedView[buf[off + H_VIEW]!] : undefined;
  }

  /** A tracked record leaves the cache: its fetched/accessedMs go back into its item. */
  private writeBack(at: number): void {
    const slot = this.cachedSlot[at]!;
    const r = this.cachedView[at]!;
    const l = this.links[slot >>> CHUNK_BITS]!;
    const b = (slot & CHUNK_MASK) << 2;
    const seg = l[b + L_SEG]!;
    const off = l[b + L_OFF]!;
    const buf = this.bufs[seg]!;
    this.views[seg]!.setFloat64(off + H_ACCESSED, r.accessedMs, true);
    buf[off + H_BITS] = (buf[off + H_BITS]! & ~(BIT_VIEW | BIT_FETCHED)) | (r.fetched ? BIT_FETCHED : 0);
    this.cachedSlot[at] = NONE;
    this.cachedView[at] = undefined;
  }

  // ---- the hash table -------------------------------------------------------------------

  /** The slot holding `key` (whose hash is `hash`), or NONE. */
  private find(key: string, hash: number): number {
    const table = this.table;
    const mask = this.tableMask;
    for (let i = hash & mask; ; i = (i + 1) & mask) {
      const e = table[i]!;
      if (e === 0) return NONE;
      const slot = e - 1;
      if (this.hashes[slot >>> CHUNK_BITS]![slot & CHUNK_MASK] === hash) {
        const l = this.links[slot >>> CHUNK_BITS]!;
        const b = (slot & CHUNK_MASK) << 2;
        const seg = l[b + L_SEG]!;
        if (this.codec.keyEquals(this.bufs[seg]!, this.views[seg]!, l[b + L_OFF]!, key)) return slot;
      }
    }
  }

  private tableInsert(slot: number, hash: number): void {
    // At most 3/4 full: grow first.
    if ((this.records + 1) * 4 > this.table.length * 3) this.growTable();
    const table = this.table;
    const mask = this.tableMask;
    let i = hash & mask;
    while (table[i] !== 0) i = (i + 1) & mask;
    table[i] = slot + 1;
  }

  private growTable(): void {
    const old = this.table;
    const table = new Int32Array(old.length * 2);
    const mask = table.length - 1;
    for (const e of old) {
      if (e === 0) continue;
      const slot = e - 1;
      let i = this.hashes[slot >>> CHUNK_BITS]![slot & CHUNK_MASK]! & mask;
      while (table[i] !== 0) i = (i + 1) & mask;
      table[i] = e;
    }
    this.table = table;
    this.tableMask = mask;
  }

  /** Takes `slot` out of the table, shifting later entries of its probe run back (no tombstones). */
  private tableDelete(slot: number): void {
    const table = this.table;
    const mask = this.tableMask;
    let i = this.hashes[slot >>> CHUNK_BITS]![slot & CHUNK_MASK]! & mask;
    while (table[i] !== slot + 1) {
      assert(table[i] !== 0, 'slot missing from the table');
      i = (i + 1) & mask;
    }
    for (let j = (i + 1) & mask; ; j = (j + 1) & mask) {
      const e = table[j]!;
      if (e === 0) break;
      const s = e - 1;
      const home = this.hashes[s >>> CHUNK_BITS]![s & CHUNK_MASK]! & mask;
      // The entry at j may move to the hole at i unless its home lies cyclically in (i, j].
      const stays = i <= j ? home > i && home <= j : home > i || home <= j;
      if (!stays) {
        table[i] = e;
        i = j;
      }
    }
    table[i] = 0;
  }

  // ---- slots and the LRU ----------------------------------------------------------------

  private newSlot(hash: number): number {
    let slot = this.freeSlot;
    if (slot !== NONE) {
      this.freeSlot = this.links[slot >>> CHUNK_BITS]![((slot & CHUNK_MASK) << 2) + L_NEXT]!;
    } else {
      slot = this.slotsUsed++;
      assert(slot < 0x7fffffff, 'too many slots');
      if ((slot & CHUNK_MASK) === 0) {
        this.links.push(new Int32Array(CHUNK * 4));
        this.hashes.push(new Int32Array(CHUNK));
      }
    }
    this.hashes[slot >>> CHUNK_BITS]![slot & CHUNK_MASK] = hash;
    const l = this.links[slot >>> CHUNK_BITS]!;
    const b = (slot & CHUNK_MASK) << 2;
    l[b + L_PREV] = NONE;
    l[b + L_NEXT] = NONE;
    l[b + L_SEG] = NONE;
    return slot;
  }

  private releaseSlot(slot: number): void {
    const l = this.links[slot >>> CHUNK_BITS]!;
    const b = (slot & CHUNK_MASK) << 2;
    l[b + L_SEG] = NONE;
    l[b + L_NEXT] = this.freeSlot;
    this.freeSlot = slot;
  }

  private touch(slot: number): void {
    if (slot === this.lruHead) return;
    this.unlink(slot);
    this.linkHead(slot);
  }

  private linkHead(slot: number): void {
    const l = this.links[slot >>> CHUNK_BITS]!;
    const b = (slot & CHUNK_MASK) << 2;
    l[b + L_PREV] = NONE;
    l[b + L_NEXT] = this.lruHead;
    if (this.lruHead !== NONE) this.links[this.lruHead >>> CHUNK_BITS]![((this.lruHead & CHUNK_MASK) << 2) + L_PREV] = slot;
    else this.lruTail = slot;
    this.lruHead = slot;
  }

  private unlink(slot: number): void {
    const l = this.links[slot >>> CHUNK_BITS]!;
    const b = (slot & CHUNK_MASK) << 2;
    const prev = l[b + L_PREV]!;
    const next = l[b + L_NEXT]!;
    if (prev !== NONE) this.links[prev >>> CHUNK_BITS]![((prev & CHUNK_MASK) << 2) + L_NEXT] = next;
    else this.lruHead = next;
    if (next !== NONE) this.links[next >>> CHUNK_BITS]![((next & CHUNK_MASK) << 2) + L_PREV] = prev;
    else this.lruTail = prev;
    l[b + L_PREV] = NONE;
    l[b + L_NEXT] = NONE;
  }

  /** A held record goes: item, LRU entry, table entry, slot. */
  private removeSlot(slot: number): void {
    this.kill(slot);
    this.unlink(slot);
    this.tableDelete(slot);
    this.releaseSlot(slot);
  }

  private evictTail(): void {
    const slot = this.lruTail;
    assert(slot !== NONE, 'nothing left to evict');
    this.removeSlot(slot);
    this.evictions++;
  }

  /** The key in `slot` against `key`, in JS string order. */
  private compareSlotKey(slot: number, key: string): number {
    const l = this.links[slot >>> CHUNK_BITS]!;
    const b = (slot & CHUNK_MASK) << 2;
    const seg = l[b + L_SEG]!;
    return this.codec.compareKey(this.bufs[seg]!, this.views[seg]!, l[b + L_OFF]!, key);
  }

  /** The keys in two slots, in JS string order. */
  private compareSlots(x: number, y: number): number {
    const lx = this.links[x >>> CHUNK_BITS]!;
    const bx = (x & CHUNK_MASK) << 2;
    const ly = this.links[y >>> CHUNK_BITS]!;
    const by = (y & CHUNK_MASK) << 2;
    const sx = lx[bx + L_SEG]!;
    const sy = ly[by + L_SEG]!;
    return this.codec.compareKeys(this.bufs[sx]!, this.views[sx]!, lx[bx + L_OFF]!, this.bufs[sy]!, this.views[sy]!, ly[by + L_OFF]!);
  }

  /** The slot's item is gone (overwritten, removed, evicted): its bytes are dead, its charge released. */
  private kill(slot: number): void {
    const l = this.links[slot >>> CHUNK_BITS]!;
    const b = (slot & CHUNK_MASK) << 2;
    const seg = l[b + L_SEG]!;
    const off = l[b + L_OFF]!;
    const buf = this.bufs[seg]!;
    const bits = buf[off + H_BITS]!;
    if ((bits & BIT_VIEW) !== 0) {
      const at = buf[off + H_VIEW]!;
      this.cachedSlot[at] = NONE;
      this.cachedView[at] = undefined;
    }
    const size = this.views[seg]!.getUint32(off + H_LENGTH, true);
    this.charged -= charge(size);
    this.records--;
    if ((bits & BIT_TOMBSTONE) !== 0) this.tombstones--;
    l[b + L_SEG] = NONE;
    if (this.large[seg]) {
      this.releaseLarge(seg);
      return;
    }
    this.liveBytes -= size;
    const left = this.live[seg]! - size;
    this.live[seg] = left;
    if (left === 0) {
      this.fill[seg] = 0;
      if (seg === this.head) return;
      // Large items may have taken the room since this segment was allocated: give it back.
      if (this.normalSegments * this.segmentBytes + this.largeBytes > this.physicalCap) this.releaseSegment(seg);
      else this.emptySegments.push(seg);
    }
  }

  // ---- segments -------------------------------------------------------------------------

  /** Room for `size` bytes: sets placedSeg/placedOff. May evict (never the slot being written: it is unlinked). */
  private reserve(size: number): void {
    if (size >= this.largeMin) {
      // Empty segments give way to a large item rather than stay beside it past the bound.
      while (this.normalSegments * this.segmentBytes + this.largeBytes + size > this.physicalCap && this.emptySegments.length > 0) {
        this.releaseSegment(this.emptySegments.pop()!);
      }
      const seg = this.newSegmentId();
      const buf = plainBytes(size);
      this.bufs[seg] = buf;
      this.views[seg] = new DataView(buf.buffer, buf.byteOffset, buf.length);
      this.fill[seg] = size;
      this.live[seg] = 0;
      this.large[seg] = true;
      this.largeBytes += size;
      this.placedSeg = seg;
      this.placedOff = 0;
      return;
    }
    if (this.head === NONE || this.fill[this.head]! + size > this.segmentBytes) this.newHead(size);
    const head = this.head;
    this.placedSeg = head;
    this.placedOff = this.fill[head]!;
    this.fill[head]! += size;
  }

  /** A head segment with room for `size` (< largeMin) bytes. */
  private newHead(size: number): void {
    for (;;) {
      // Evictions below may have emptied the head itself.
      if (this.head !== NONE && this.fill[this.head]! + size <= this.segmentBytes) return;
      const empty = this.emptySegments.pop();
      if (empty !== undefined) {
        this.head = empty;
        return;
      }
      const victim = this.leastLive();
      const room = victim === NONE ? 0 : this.segmentBytes - this.live[victim]!;
      const physical = this.normalSegments * this.segmentBytes;
      // Clean before growing when it is cheap (as many bytes freed as moved) or when a fifth
      // of the segments is dead (so they stay within 1.25x their live bytes).
      if (room >= size && (room >= this.segmentBytes / 2 || (physical - this.liveBytes) * 5 >= physical)) {
        this.compact(victim);
        this.head = victim;
        return;
      }
      if (physical + this.segmentBytes + this.largeBytes <= this.physicalCap) {
        this.head = this.allocateSegment();
        return;
      }
      if (room >= size && room >= this.largeMin) {
        this.compact(victim);
        this.head = victim;
        return;
      }
      // Segments are full of live items (values large beside the per-record charge): make
      // dead space by evicting, least recently used first, a quarter segment at a time.
      const target = this.segmentBytes / 4;
      let freed = 0;
      while (freed < target && this.lruTail !== NONE) {
        const before = this.charged;
        this.evictTail();
        this.spaceEvictions++;
        freed += before - this.charged;
      }
      assert(freed > 0 || this.emptySegments.length > 0, 'segments full with nothing to evict');
    }
  }

  /** The normal segment, other than the head, with the fewest live bytes; NONE if there is none. */
  private leastLive(): number {
    let best = NONE;
    let bestLive = Infinity;
    for (let s = 0; s < this.bufs.length; s++) {
      if (s === this.head || this.large[s] || this.bufs[s] === undefined || this.fill[s] === 0) continue;
      if (this.live[s]! < bestLive) {
        best = s;
        bestLive = this.live[s]!;
      }
    }
    return best;
  }

  /** Slides the live items of `seg` to its start, in order; each slot learns its item's new offset. */
  private compact(seg: number): void {
    const buf = this.bufs[seg]!;
    const dv = this.views[seg]!;
    const end = this.fill[seg]!;
    let src = 0;
    let dst = 0;
    while (src < end) {
      const slot = dv.getUint32(src + H_SLOT, true);
      const size = dv.getUint32(src + H_LENGTH, true);
      assert(size >= HEADER_BYTES && src + size <= end, 'corrupt segment');
      if (slot < this.slotsUsed) {
        const l = this.links[slot >>> CHUNK_BITS]!;
        const b = (slot & CHUNK_MASK) << 2;
        if (l[b + L_SEG] === seg && l[b + L_OFF] === src) {
          if (dst !== src) buf.copyWithin(dst, src, src + size);
          l[b + L_OFF] = dst;
          dst += size;
        }
      }
      src += size;
    }
    assert(dst === this.live[seg], 'live bytes of a compacted segment');
    this.fill[seg] = dst;
    this.compactions++;
  }

  private newSegmentId(): number {
    const id = this.freeSegmentIds.pop();
    if (id !== undefined) return id;
    this.bufs.push(undefined);
    this.views.push(undefined);
    this.fill.push(0);
    this.live.push(0);
    this.large.push(false);
    return this.bufs.length - 1;
  }

  private allocateSegment(): number {
    const seg = this.newSegmentId();
    const buf = plainBytes(this.segmentBytes);
    this.bufs[seg] = buf;
    this.views[seg] = new DataView(buf.buffer, buf.byteOffset, buf.length);
    this.fill[seg] = 0;
    this.live[seg] = 0;
    this.large[seg] = false;
    this.normalSegments++;
    return seg;
  }

  private releaseSegment(seg: number): void {
    this.bufs[seg] = undefined;
    this.views[seg] = undefined;
    this.normalSegments--;
    this.freeSegmentIds.push(seg);
  }

  private releaseLarge(seg: number): void {
    this.largeBytes -= this.fill[seg]!;
    this.bufs[seg] = undefined;
    this.views[seg] = undefined;
    this.fill[seg] = 0;
    this.live[seg] = 0;
    this.large[seg] = false;
    this.freeSegmentIds.push(seg);
  }
}

function siftUp(heap: number[], i: number, cmp: (a: number, b: number) => number): void {
  while (i > 0) {
    const parent = (i - 1) >> 1;
    if (cmp(heap[i]!, heap[parent]!) <= 0) return;
    [heap[i], heap[parent]] = [heap[parent]!, heap[i]!];
    i = parent;
  }
}

function siftDown(heap: number[], i: number, cmp: (a: number, b: number) => number): void {
  for (;;) {
    const l = 2 * i + 1;
    const r = l + 1;
    let top = i;
    if (l < heap.length && cmp(heap[l]!, heap[top]!) > 0) top = l;
    if (r < heap.length && cmp(heap[r]!, heap[top]!) > 0) top = r;
    if (top === i) return;
    [heap[i], heap[top]] = [heap[top]!, heap[i]!];
    i = top;
  }
}
