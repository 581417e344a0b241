// What a request may carry, checked before any I/O with the node's own rules, so a bad key
// or an oversized value fails at once and identically on every front-end (DESIGN.md,
// "Keys, ring, ownership"): keys are 1..250 bytes without space, NUL or line feed; an item
// is sized as memcached sizes it (header + key + value + flags), against maxItemSize.
// Pure functions: no sockets, no clocks.
import { BadRequest, InvalidKey, KeyTooLong, ValueTooLarge } from './errors.js';

/** A key: text (sent as its UTF-8 bytes) or raw bytes. */
export type Key = string | Uint8Array;
/** A value: text (stored as its UTF-8 bytes) or raw bytes. */
export type Value = string | Uint8Array;

/** memcached's KEY_MAX_LENGTH. */
export const KEY_MAX_BYTES = 250;
/** memcached's default item size (-I 1m). */
export const MAX_ITEM_SIZE_DEFAULT = 1024 * 1024;
/** memcached's per-item overhead as the node counts it (server/kv/local-kv.ts itemSize): header, cas, NUL, CRLF. */
export const ITEM_OVERHEAD_BYTES = 48 + 8 + 1 + 2;
const U64_MAX = (1n << 64n) - 1n;
const U32_MAX = 0xffff_ffff;

/** The key's bytes, or InvalidKey / KeyTooLong. */
export function keyBytes(key: Key): Buffer {
  let bytes: Buffer;
  if (typeof key === 'string') bytes = Buffer.from(key, 'utf8');
  else if (key instanceof Uint8Array) bytes = Buffer.isBuffer(key) ? key : Buffer.from(key.buffer, key.byteOffset, key.byteLength);
  else throw new InvalidKey(`a key must be a string or a Uint8Array, got ${typeof key}`);
  if (bytes.length === 0) throw new InvalidKey('a key must not be empty');
  if (bytes.length > KEY_MAX_BYTES) throw new KeyTooLong(bytes.length);
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i]!;
    if (b === 0x20 || b === 0x00 || b === 0x0a) throw new InvalidKey(`a key must not contain a space, NUL or line feed (byte 0x${b.toString(16).padStart(2, '0')} at ${i})`);
  }
  return bytes;
}

/** The value's bytes. */
export function valueBytes(value: Value): Buffer {
  if (typeof value === 'string') return Buffer.from(value, 'utf8');
  if (value instanceof Uint8Array) return Buffer.isBuffer(value) ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  throw new BadRequest(`a value must be a string or a Uint8Array, got ${typeof value}`);
}

/** Bytes an item takes, as the node counts them against its --max-item-size. */
export function itemSize(keyBytes: number, valueBytes: number, flags: number): number {
  return ITEM_OVERHEAD_BYTES + keyBytes + valueBytes + (flags !== 0 ? 4 : 0);
}

/** ValueTooLarge unless the item fits in maxItemSize. */
export function checkItemSize(key: Buffer, value: Buffer, flags: number, maxItemSize: number): void {
  const size = itemSize(key.length, value.length, flags);
  if (size > maxItemSize) {
    throw new ValueTooLarge(`item of ${size} bytes (value ${value.length}, key ${key.length}) exceeds maxItemSize ${maxItemSize}`);
  }
}

/** memcached flags: an unsigned 32-bit integer. */
export function checkFlags(flags: number): number {
  if (!Number.isInteger(flags) || flags < 0 || flags > U32_MAX) throw new BadRequest(`flags must be an unsigned 32-bit integer, got ${flags}`);
  return flags;
}

/** A ttl in seconds (0 = no expiry) as the wire's ttlMs. */
export function ttlMs(ttl: number): number {
  if (typeof ttl !== 'number' || !Number.isFinite(ttl) || ttl < 0) throw new BadRequest(`ttl must be a number of seconds >= 0, got ${ttl}`);
  return Math.round(ttl * 1000);
}

/** An unsigned 64-bit number as the wire's decimal text. */
export function u64Text(n: bigint | number, name: string): string {
  const v = typeof n === 'number' && Number.isSafeInteger(n) ? BigInt(n) : n;
  if (typeof v !== 'bigint' || v < 0n || v > U64_MAX) throw new BadRequest(`${name} must be an unsigned 64-bit integer, got ${String(n)}`);
  return v.toString();
}
