// fast-check arbitraries for the internal RPC's wire values, shared by the frame codec's
// unit tests and its fuzzing.
import fc from 'fast-check';

/** A msgpack value that survives a round trip unchanged (no -0, no undefined, no __proto__ keys). */
export function wireValue(o: { maxString?: number; maxBytes?: number } = {}): fc.Arbitrary<unknown> {
  const str = (max: number | undefined) => (max === undefined ? fc.string() : fc.string({ maxLength: max }));
  return fc.letrec((tie) => ({
    value: fc.oneof(
      { depthSize: 'small', withCrossShrink: true },
      fc.constant(null),
      fc.boolean(),
      fc.integer(),
      fc.maxSafeInteger(),
      fc.double().map((d) => (Object.is(d, -0) ? 0 : d)),
      str(o.maxString),
      fc.uint8Array({ maxLength: o.maxBytes ?? 64 }),
      fc.array(tie('value'), { maxLength: 4 }),
      fc.dictionary(
        str(o.maxString === undefined ? undefined : Math.min(8, o.maxString)).filter((k) => k !== '__proto__'),
        tie('value'),
        { maxKeys: 4 },
      ),
    ),
  })).value;
}
