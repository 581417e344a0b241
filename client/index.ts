// The ringkv client library (the package entry): RingClient routes each request by key
// straight to the owner the master's lease table names, with bounded retries, and fails
// with typed errors that carry stable codes.
//
//   import { RingClient } from 'ringkv';
//   const kv = await RingClient.connect({ master: '127.0.0.1:7000' });
//   await kv.set('user:1', 'hello', { ttl: 60 });
//   const item = await kv.get('user:1'); // { value, flags, cas, expiresAtMs } or undefined
//   await kv.close();
export {
  RingClient,
  type DeltaOptions,
  type Item,
  type RequestOptions,
  type SiblingsOptions,
  type RingClientCounters,
  type RingClientOptions,
  type StoreOptions,
} from './ring-client.js';
export {
  BadRequest,
  Closed,
  InvalidKey,
  KeyTooLong,
  NonNumeric,
  RingkvError,
  ServerError,
  Timeout,
  Unavailable,
  Busy,
  ValueTooLarge,
} from './errors.js';
export { ITEM_OVERHEAD_BYTES, KEY_MAX_BYTES, MAX_ITEM_SIZE_DEFAULT, itemSize, keyBytes, type Key, type Value } from './keys.js';
