// The byte layout of one record in memory mode (MemoryStore): a fixed header, the key,
// the vector clock, the value, and (rarely) the siblings, back to back in one place of a
// segment (see memory-store.ts). No JS object per record: the bytes live in a few large
// buffers, and V8's heap holds nothing per record at all.
//
//   0  u32 slot          the MemoryStore slot that owns the item (the cleaner checks it)
//   4  u32 length        bytes of the whole item
//   8  f64 wallMs        HLC timestamp
//  16  f64 expiresAtMs
//  24  f64 accessedMs    mutable in place (a get's `l`)
//  32  u32 flags
//  36  u32 valueLength
//  40  u32 keyLength     UTF-16 code units of the key
//  44  u16 logical       HLC timestamp
//  46  u16 clock entries
//  48  u8  bits          tombstone, fetched (mutable in place), siblings, cached view, wide key
//  49  u8  view slot     which cached view of MemoryStore holds the item's fetched/accessedMs
//  50  key               one byte per code unit (keys are latin1 strings), or two (UTF-16LE)
//                        when some code unit is above 0xff
//      per clock entry:  u32 node id (an index into the codec's id table), f64 counter
//      value bytes
//      siblings, when bit 4: u8 count, then per sibling u32 length + encodeRecord() bytes
//
// All little-endian, unaligned (DataView). Node ids are interned: a store sees a handful.
// Siblings take the slow path (msgpack, as LevelDB stores them): they exist only while
// replicas disagree.
import { assert } from '../util/assert.js';
import { decodeRecord, encodeRecord, SIBLINGS_MAX, type StoredRecord } from './record.js';

export const H_SLOT = 0;
export const H_LENGTH = 4;
export const H_WALL = 8;
export const H_EXPIRES = 16;
export const H_ACCESSED = 24;
export const H_FLAGS = 32;
export const H_VALUE_LENGTH = 36;
export const H_KEY_LENGTH = 40;
export const H_LOGICAL = 44;
export const H_CLOCK_ENTRIES = 46;
export const H_BITS = 48;
export const H_VIEW = 49;
export const HEADER_BYTES = 50;
export const CLOCK_ENTRY_BYTES = 12;

export const BIT_TOMBSTONE = 1;
export const BIT_FETCHED = 2;
export const BIT_SIBLINGS = 4;
/** MemoryStore holds a decoded view of this item, whose fetched/accessedMs are the current ones. */
export const BIT_VIEW = 8;
/** The key is stored as UTF-16LE code units (some are above 0xff). */
export const BIT_WIDE_KEY = 16;

/** The size of an item with one clock entry and no siblings, beyond its key and value. */
export const BASE_ITEM_BYTES = HEADER_BYTES + CLOCK_ENTRY_BYTES;

const MAX_CLOCK_ENTRIES = 0xffff;
/** Where the key of the item at `off` ends (its clock begins). */
function keyEnd(buf: Uint8Array, dv: DataView, off: number): number {
  const n = dv.getUint32(off + H_KEY_LENGTH, true);
  return off + HEADER_BYTES + ((buf[off + H_BITS]! & BIT_WIDE_KEY) !== 0 ? 2 * n : n);
}

/**
 * A 32-bit hash of a key's code units (FNV-1a, then murmur3's finaliser so that the low
 * bits a power-of-two table uses are mixed).
 */
export function hashKey(key: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h | 0;
}

/** Values up to this many bytes are copied byte by byte. */
const SMALL_COPY = 32;

/**
 * Encodes records into items and decodes items into StoredRecords. One per store: it
 * owns the node-id table, and `size` prepares the `write` that follows it (no allocation
 * between the two beyond the clock's key list).
 */
export class ItemCodec {
  private readonly names: string[] = [];
  private readonly ids = new Map<string, number>();
  // Prepared by size(), used by write().
  private preparedSize = 0;
  private clockIds: string[] = [];
  private siblings: Uint8Array[] | undefined;
  private wideKey = false;

  /** Bytes `key` and `r` take as an item; prepares write(key, r). */
  size(key: string, r: StoredRecord): number {
    const ids = Object.keys(r.version.clock);
    assert(ids.length <= MAX_CLOCK_ENTRIES, 'vector clock has too many entries');
    this.clockIds = ids;
    let wide = false;
    for (let i = 0; i < key.length; i++) {
      if (key.charCodeAt(i) > 0xff) {
        wide = true;
        break;
      }
    }
    this.wideKey = wide;
    let n = HEADER_BYTES + (wide ? 2 : 1) * key.length + ids.length * CLOCK_ENTRY_BYTES + r.value.length;
    const sibs = r.siblings;
    if (sibs !== undefined && sibs.length > 0) {
      assert(sibs.length <= SIBLINGS_MAX, 'too many siblings');
      const encoded = sibs.map((s) => encodeRecord(s));
      n += 1;
      for (const e of encoded) n += 4 + e.length;
      this.siblings = encoded;
    } else {
      this.siblings = undefined;
    }
    this.preparedSize = n;
    return n;
  }

  /** Writes the key and record last given to size() at `off`, owned by `slot`. */
  write(buf: Uint8Array, dv: DataView, off: number, slot: number, key: string, r: StoredRecord): void {
    const ts = r.version.ts;
    const clock = r.version.clock;
    const ids = this.clockIds;
    const sibs = this.siblings;
    dv.setUint32(off + H_SLOT, slot, true);
    dv.setUint32(off + H_LENGTH, this.preparedSize, true);
    dv.setFloat64(off + H_WALL, ts.wallMs, true);
    dv.setFloat64(off + H_EXPIRES, r.expiresAtMs, true);
    dv.setFloat64(off + H_ACCESSED, r.accessedMs, true);
    dv.setUint32(off + H_FLAGS, r.flags, true);
    dv.setUint32(off + H_VALUE_LENGTH, r.value.length, true);
    dv.setUint32(off + H_KEY_LENGTH, key.length, true);
    dv.setUint16(off + H_LOGICAL, ts.logical, true);
    dv.setUint16(off + H_CLOCK_ENTRIES, ids.length, true);
    buf[off + H_BITS] = (r.tombstone ? BIT_TOMBSTONE : 0) | (r.fetched ? BIT_FETCHED : 0) | (sibs ? BIT_SIBLINGS : 0) | (this.wideKey ? BIT_WIDE_KEY : 0);
    buf[off + H_VIEW] = 0;
    let p = off + HEADER_BYTES;
    if (this.wideKey) {
      for (let i = 0; i < key.length; i++, p += 2) dv.setUint16(p, key.charCodeAt(i), true);
    } else {
      for (let i = 0; i < key.length; i++) buf[p++] = key.charCodeAt(i);
    }
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!;
      dv.setUint32(p, this.idOf(id), true);
      dv.setFloat64(p + 4, clock[id]!, true);
      p += CLOCK_ENTRY_BYTES;
    }
    buf.set(r.value, p);
    p += r.value.length;
    if (sibs) {
      buf[p++] = sibs.length;
      for (const e of sibs) {
        dv.setUint32(p, e.length, true);
        buf.set(e, p + 4);
        p += 4 + e.length;
      }
    }
    assert(p === off + this.preparedSize, 'item size mismatch');
  }

  /**
   * The record of the item at `off`. `copyValue`: the value is a copy (the segment's bytes
   * will be reused); otherwise a view of `buf` (a buffer that is never reused).
   */
  read(buf: Uint8Array, dv: DataView, off: number, copyValue: boolean): StoredRecord {
    const names = this.names;
    const entries = dv.getUint16(off + H_CLOCK_ENTRIES, true);
    const clock: Record<string, number> = {};
    let p = keyEnd(buf, dv, off);
    for (let i = 0; i < entries; i++) {
      clock[names[dv.getUint32(p, true)]!] = dv.getFloat64(p + 4, true);
      p += CLOCK_ENTRY_BYTES;
    }
    const valueLength = dv.getUint32(off + H_VALUE_LENGTH, true);
    let value: Buffer;
    if (!copyValue) {
      value = Buffer.from(buf.buffer, buf.byteOffset + p, valueLength);
    } else if (valueLength <= SMALL_COPY) {
      // Buffer#copy and TypedArray#set cost more than the loop for a few bytes.
      value = Buffer.allocUnsafe(valueLength);
      for (let i = 0; i < valueLength; i++) value[i] = buf[p + i]!;
    } else {
      value = Buffer.allocUnsafe(valueLength);
      value.set(buf.subarray(p, p + valueLength));
    }
    const bits = buf[off + H_BITS]!;
    const version = { clock, ts: { wallMs: dv.getFloat64(off + H_WALL, true), logical: dv.getUint16(off + H_LOGICAL, true) } };
    const record: StoredRecord = {
      value,
      flags: dv.getUint32(off + H_FLAGS, true),
      expiresAtMs: dv.getFloat64(off + H_EXPIRES, true),
      version,
      tombstone: (bits & BIT_TOMBSTONE) !== 0,
      fetched: (bits & BIT_FETCHED) !== 0,
      accessedMs: dv.getFloat64(off + H_ACCESSED, true),
    };
    if ((bits & BIT_SIBLINGS) === 0) return record;
    // Siblings are rare: a second object, so the common record has no `siblings` slot.
    return { ...record, siblings: this.readSiblings(buf, p + valueLength, off + dv.getUint32(off + H_LENGTH, true)) };
  }

  /** Does the item at `off` have the key `key`? */
  keyEquals(buf: Uint8Array, dv: DataView, off: number, key: string): boolean {
    const n = key.length;
    if (dv.getUint32(off + H_KEY_LENGTH, true) !== n) return false;
    const p = off + HEADER_BYTES;
    if ((buf[off + H_BITS]! & BIT_WIDE_KEY) === 0) {
      for (let i = 0; i < n; i++) if (buf[p + i] !== key.charCodeAt(i)) return false;
    } else {
      for (let i = 0; i < n; i++) if (dv.getUint16(p + 2 * i, true) !== key.charCodeAt(i)) return false;
    }
    return true;
  }

  /** The key of the item at `off`. */
  key(buf: Uint8Array, dv: DataView, off: number): string {
    const n = dv.getUint32(off + H_KEY_LENGTH, true);
    const p = off + HEADER_BYTES;
    const wide = (buf[off + H_BITS]! & BIT_WIDE_KEY) !== 0;
    return Buffer.from(buf.buffer, buf.byteOffset + p, wide ? 2 * n : n).toString(wide ? 'utf16le' : 'latin1');
  }

  /** The key of the item at `off` against `key`, in JS string order (UTF-16 code units; latin1 byte order). */
  compareKey(buf: Uint8Array, dv: DataView, off: number, key: string): number {
    const n = dv.getUint32(off + H_KEY_LENGTH, true);
    const wide = (buf[off + H_BITS]! & BIT_WIDE_KEY) !== 0;
    const p = off + HEADER_BYTES;
    const m = Math.min(n, key.length);
    for (let i = 0; i < m; i++) {
      const c = (wide ? dv.getUint16(p + 2 * i, true) : buf[p + i]!) - key.charCodeAt(i);
      if (c !== 0) return c;
    }
    return n - key.length;
  }

  /** The keys of two items, in JS string order. */
  compareKeys(a: Uint8Array, adv: DataView, aoff: number, b: Uint8Array, bdv: DataView, boff: number): number {
    const an = adv.getUint32(aoff + H_KEY_LENGTH, true);
    const bn = bdv.getUint32(boff + H_KEY_LENGTH, true);
    const aw = (a[aoff + H_BITS]! & BIT_WIDE_KEY) !== 0;
    const bw = (b[boff + H_BITS]! & BIT_WIDE_KEY) !== 0;
    const ap = aoff + HEADER_BYTES;
    const bp = boff + HEADER_BYTES;
    const m = Math.min(an, bn);
    for (let i = 0; i < m; i++) {
      const c = (aw ? adv.getUint16(ap + 2 * i, true) : a[ap + i]!) - (bw ? bdv.getUint16(bp + 2 * i, true) : b[bp + i]!);
      if (c !== 0) return c;
    }
    return an - bn;
  }

  private readSiblings(buf: Uint8Array, start: number, end: number): StoredRecord[] {
    // A copy: msgpack's decoded values are views of the bytes they were decoded from.
    const bytes = Buffer.from(buf.subarray(start, end));
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
    const count = bytes[0]!;
    const out: StoredRecord[] = [];
    let p = 1;
    for (let i = 0; i < count; i++) {
      const n = view.getUint32(p, true);
      out.push(decodeRecord(bytes.subarray(p + 4, p + 4 + n)));
      p += 4 + n;
    }
    return out;
  }

  private idOf(name: string): number {
    let id = this.ids.get(name);
    if (id === undefined) {
      id = this.names.length;
      assert(id <= 0xffffffff, 'node id table full');
      this.names.push(name);
      this.ids.set(name, id);
    }
    return id;
  }
}
