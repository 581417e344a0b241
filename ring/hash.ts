// Positions on the ring: xxhash64 (seed 0) of a key's bytes, as an unsigned 64-bit bigint.
//
// The hash is shared by every node, the master and every client, so it must be exactly
// xxhash64 (not "a good 64-bit hash"): another implementation (memcached proxy, a client
// in another language) must place keys and tokens where we do. Strings hash as their
// UTF-8 bytes, so `hash64('é') === hash64(new TextEncoder().encode('é'))`.
//
// xxhash-wasm compiles its WebAssembly module asynchronously, while placement must be a
// synchronous, pure function; so the module is loaded once by `initHash()` at startup
// and `hash64` refuses to run before that rather than returning a wrong value.
import xxhash from 'xxhash-wasm';

type XxhashApi = Awaited<ReturnType<typeof xxhash>>;

/** The seed of every ring hash (DESIGN.md: xxhash64, seed 0). */
const seed = 0n;

let api: XxhashApi | undefined;
let loading: Promise<XxhashApi> | undefined;

/** Thrown by `hash64` when `initHash()` has not completed yet. */
export class HashNotInitializedError extends Error {
  override name = 'HashNotInitializedError';
  constructor() {
    super('hash64 called before initHash() resolved: await initHash() once at startup');
  }
}

/**
 * Loads the xxhash WebAssembly module. Idempotent: concurrent and repeated calls share
 * one load; a failed load is forgotten so that a later call can retry.
 */
export async function initHash(): Promise<void> {
  if (api !== undefined) return;
  loading ??= xxhash().catch((err: unknown) => {
    loading = undefined;
    throw err;
  });
  api = await loading;
}

/** xxhash64 (seed 0) of `input`'s bytes (UTF-8 for strings): an integer in [0, 2^64). */
export function hash64(input: Uint8Array | string): bigint {
  const h = api;
  if (h === undefined) throw new HashNotInitializedError();
  // h64 encodes the string as UTF-8 straight into wasm memory, without a copy here.
  return typeof input === 'string' ? h.h64(input, seed) : h.h64Raw(input, seed);
}

/**
 * The ring position of a key held as a latin1 string (one character per byte, as every
 * front-end holds keys): xxhash64 of the key's bytes.
 */
export function keyPosition(key: string): bigint {
  return hash64(Buffer.from(key, 'latin1'));
}
