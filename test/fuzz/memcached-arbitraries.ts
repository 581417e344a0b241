// Generators of memcached text-protocol input shared by the parser-level and socket-level
// fuzz tests: numbers at every edge, keys with any byte memcached allows, and "token
// soup" (command words, numbers, keys, meta flags, separators, random bytes) that reaches
// far deeper into the parser than uniformly random bytes do.
import fc from 'fast-check';

export const latin1 = (s: string): Buffer => Buffer.from(s, 'latin1');

export const COMMAND_WORDS = [
  'get', 'gets', 'gat', 'gats', 'set', 'add', 'replace', 'append', 'prepend', 'cas', 'delete', 'incr', 'decr',
  'touch', 'flush_all', 'version', 'verbosity', 'stats', 'quit', 'mn', 'mg', 'ms', 'md', 'ma', 'me', 'noreply',
];

/** Numbers memcached must parse or refuse: small, signed, int32 and u64 edges, beyond, non-digits. */
export const numberText: fc.Arbitrary<string> = fc.oneof(
  fc.nat({ max: 40 }).map(String),
  fc.integer().map(String),
  fc.constantFrom(
    '-0', '+0', '+1', '00', '-1', '2147483645', '2147483646', '2147483647', '2147483648', '-2147483648', '-2147483649',
    '4294967295', '4294967296', '99999999999', '-99999999999', '18446744073709551615', '18446744073709551616',
    '1x', 'x1', '0x10', '1e3', '1.5', '+', '-', '', '\u00bd',
  ),
  fc.bigInt({ min: -(1n << 70n), max: 1n << 70n }).map(String),
);

/** A key byte: mostly printable, some control and high bytes (memcached splits on space only). */
export const keyChar: fc.Arbitrary<string> = fc
  .oneof(
    { weight: 10, arbitrary: fc.integer({ min: 0x21, max: 0x7e }) },
    { weight: 1, arbitrary: fc.integer({ min: 0x01, max: 0x1f }).filter((c) => c !== 0x0a && c !== 0x0d) },
    { weight: 1, arbitrary: fc.integer({ min: 0x7f, max: 0xff }) },
  )
  .map((c) => String.fromCharCode(c));

/** A key memcached accepts (1..250 bytes, no space, NUL or line feed), as a latin1 string. */
export const validKey: fc.Arbitrary<string> = fc
  .oneof(
    { weight: 6, arbitrary: fc.string({ unit: keyChar, minLength: 1, maxLength: 12 }) },
    { weight: 1, arbitrary: fc.string({ unit: keyChar, minLength: 240, maxLength: 250 }) },
  )
  .filter((k) => k !== 'noreply');

/** One token of command soup, drawn from `words` for its command names. */
export function soupToken(words: readonly string[]): fc.Arbitrary<string> {
  return fc.oneof(
    { weight: 4, arbitrary: fc.constantFrom(...words) },
    { weight: 4, arbitrary: numberText },
    { weight: 2, arbitrary: validKey },
    { weight: 2, arbitrary: fc.tuple(fc.constantFrom(...'bNTRlOPLkstcfvhuqFCMJDIExyz\u0080\u00ff'), numberText).map(([l, n]) => l + n) },
    { weight: 4, arbitrary: fc.constantFrom(' ', '  ', '\r\n', '\r\n', '\n', '\r', '\t', '\0') },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 24 }).map((a) => Buffer.from(a).toString('latin1')) },
    {
      weight: 1,
      arbitrary: fc.tuple(fc.constantFrom('x', ' ', '\r', 'k '), fc.integer({ min: 200, max: 3000 })).map(([s, n]) => s.repeat(n)),
    },
  );
}

/** Random bytes: mostly token soup that looks like commands, some plain random bytes. */
export function garbage(words: readonly string[] = COMMAND_WORDS): fc.Arbitrary<Buffer> {
  const token = soupToken(words);
  return fc.oneof(
    {
      weight: 3,
      arbitrary: fc
        .array(fc.tuple(token, fc.constantFrom(' ', ' ', '', '\r\n')), { maxLength: 40 })
        .map((ts) => latin1(ts.map(([t, s]) => t + s).join(''))),
    },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 3000 }).map((a) => Buffer.from(a)) },
  );
}
