// hash64 and Ring.build must refuse to run before initHash(): a silent fallback would
// place keys differently from every other process. In its own file so that no other
// test has initialised the (per-file) module state yet.
import { describe, expect, it } from 'vitest';
import { HashNotInitializedError, Ring, hash64, initHash } from '../../ring/index.js';

describe('hash64 before initHash', () => {
  it('throws a named error, then works once initHash resolves', async () => {
    expect(() => hash64('key')).toThrow(HashNotInitializedError);
    expect(() => hash64(new Uint8Array([1, 2, 3]))).toThrow(/initHash/);
    expect(() => Ring.build([{ id: 'a' }])).toThrow(HashNotInitializedError);
    await initHash();
    expect(hash64('')).toBe(0xef46db3751d8e999n);
  });
});
