// The differential conformance cases: byte-level scripts of the memcached text protocol
// whose normalised replies must be identical on memcached 1.6.18 and on ringkv.
// The expected behaviour is whatever memcached does (see /work/shared/memcached-text-protocol.md);
// these cases carry no expected output of their own, so they can only be validated by
// running them against two memcached processes (RINGKV_CONFORMANCE_PEER=memcached).
//
// Rules every case follows:
// - Keys come from `k(name)` (prefixed by the case index) so cases never share keys; the
//   only exceptions are the 1-byte keys `Q` and `R` of the two item-size boundary cases.
// - Keys may hold control bytes (tab, 0x01, 0x7f...): memcached 1.6.18 splits on spaces
//   only, and so does ringkv; a case below checks it.
// - Nothing depends on the wall clock within a second: TTLs are 0, negative, absolute in the
//   past, far in the future, or 30..3600 s read back immediately in the same write.
// - No case uses a literal cas unique that could match a real one (ringkv's uniques need not
//   be small counters): cas values are parsed from earlier replies (+1 for a mismatch).
// - Cases that flush_all come last, so they cannot hide keys of cases that run after them.
// - 1.6.18 remembers that an item was stored under a base64 (`b`) key and then echoes `k`
//   in base64 even for a plain-key mg; ringkv echoes the key as the request gave it. A
//   quirk of memcached's item layout, left out.
// - Flags above 2^32-1 are left out: 1.6.18 truncates them silently (`set k 4294967296 ...`
//   stores flags 0), a quirk no client relies on.
import { type ConformanceCase, casOf, entry, exchange, requests, script } from './conformance-harness.js';
import { connect } from './mc-client.js';

/** memcached's default item size limit (`-I 1m`). */
const itemSizeMax = 1024 * 1024;
/** The largest value memcached stores under a 1-byte key with flags 0 (spec section 4). */
const valueBytesMax1ByteKey = itemSizeMax - 59 - 1;

const a = (n: number, ch = 'a') => ch.repeat(n);
/** A key of exactly `len` bytes that is still unique to the case. */
const longKey = (prefix: string, len: number) => prefix.padEnd(len, 'x');
/** An absolute exptime an hour ahead, fixed at load so both servers get the same bytes. */
const unixHourAhead = Math.floor(Date.now() / 1000) + 3600;

/** memcached `stats` names that clients, dashboards and the issue rely on. */
const STATS_CLIENTS_READ = [
  'pid', 'uptime', 'time', 'version', 'pointer_size', 'rusage_user', 'rusage_system', 'max_connections',
  'curr_connections', 'total_connections', 'cmd_get', 'cmd_set', 'cmd_flush', 'cmd_touch', 'get_hits',
  'get_misses', 'get_expired', 'get_flushed', 'delete_misses', 'delete_hits', 'incr_misses', 'incr_hits',
  'decr_misses', 'decr_hits', 'cas_misses', 'cas_hits', 'cas_badval', 'touch_hits', 'touch_misses',
  'store_too_large', 'bytes_read', 'bytes_written', 'limit_maxbytes', 'threads', 'bytes', 'curr_items',
  'total_items', 'evictions', 'reclaimed',
];

const storage: ConformanceCase[] = [
  requests('set then get', (k) => [`set ${k('a')} 0 0 5\r\nhello\r\n`, `get ${k('a')}\r\n`]),
  requests('keys with control bytes are plain key bytes', (k) => [
    `set ${k('a')}\tb 0 0 1\r\nx\r\n`,
    `set ${k('a')}\x01\x10\x7f 0 0 1\r\ny\r\n`,
    `get ${k('a')}\tb ${k('a')}\x01\x10\x7f\r\n`,
    `mg ${k('a')}\tb v k\r\n`,
    `delete ${k('a')}\tb\r\n`,
  ]),
  requests('set overwrites value and flags', (k) => [
    `set ${k('a')} 1 0 3\r\none\r\nset ${k('a')} 2 0 5\r\nthree\r\n`,
    `get ${k('a')}\r\n`,
  ]),
  requests('flags 4294967295 round-trip in get and gets', (k) => [
    `set ${k('a')} 4294967295 0 1\r\nx\r\n`,
    `get ${k('a')}\r\n`,
    `gets ${k('a')}\r\n`,
  ]),
  requests('bytes 0 stores an empty value', (k) => [`set ${k('a')} 0 0 0\r\n\r\n`, `get ${k('a')}\r\n`]),
  requests('binary value with CRLF, NUL and 0xff', (k) => [
    `set ${k('a')} 0 0 8\r\n\r\n\x00\xff\r\n\r\n\r\n`,
    `get ${k('a')}\r\n`,
  ]),
  requests('value that looks like protocol lines', (k) => {
    const value = 'END\r\nVALUE x 0 1\r\nSTORED\r\nHD c1\r\n';
    return [`set ${k('a')} 0 0 ${value.length}\r\n${value}\r\n`, `get ${k('a')} ${k('a')}\r\nmg ${k('a')} v\r\n`];
  }),
  requests('6th junk token is ignored (stores, replies)', (k) => [`set ${k('a')} 0 0 1 junk\r\nz\r\n`, `get ${k('a')}\r\n`]),
  requests('set noreply success is silent', (k) => [`set ${k('a')} 0 0 1 noreply\r\nz\r\n`, `get ${k('a')}\r\n`]),
  requests('set with 4 tokens -> ERROR, block parsed as command', (k) => [`set ${k('a')} 0 0\r\nz\r\n`, `get ${k('a')}\r\n`]),
  requests('set with 7 tokens -> ERROR, block parsed as command', (k) => [`set ${k('a')} 0 0 1 a b\r\nz\r\n`, `get ${k('a')}\r\n`]),
  requests('set with only a key -> ERROR', (k) => [`set ${k('a')}\r\n`, `set\r\n`]),
  requests('negative flags -> bad command line format, then ERROR', (k) => [`set ${k('a')} -1 0 1\r\nb\r\n`, `get ${k('a')}\r\n`]),
  requests('non-numeric flags -> bad command line format, then ERROR', (k) => [`set ${k('a')} abc 0 1\r\nb\r\n`]),
  requests('non-numeric exptime -> bad command line format, then ERROR', (k) => [`set ${k('a')} 0 x 1\r\nb\r\n`]),
  requests('negative bytes -> bad command line format, then ERROR', (k) => [`set ${k('a')} 0 0 -1\r\nb\r\n`]),
  requests('non-numeric bytes -> bad command line format, then ERROR', (k) => [`set ${k('a')} 0 0 x\r\nb\r\n`]),
  requests('bad flags with noreply: error silent, block still parsed', (k) => [`set ${k('a')} -1 0 1 noreply\r\nb\r\n`]),
  requests('data longer than bytes -> bad data chunk, rest parsed, old value kept', (k) => [
    `set ${k('a')} 0 0 1\r\nx\r\n`,
    `set ${k('a')} 0 0 2\r\nabc\r\n`,
    `get ${k('a')}\r\n`,
  ]),
  requests('data block ended by bare LF -> bad data chunk', (k) => [`set ${k('a')} 0 0 1\r\nx\nget ${k('a')}\r\n`]),
  requests('data shorter than bytes -> bad data chunk, bytes past the block parsed', (k) => [
    `set ${k('a')} 0 0 3\r\nab\r\nXY\r\n`,
    `get ${k('a')}\r\n`,
  ]),
  requests('bad data chunk with noreply', (k) => [`set ${k('a')} 0 0 2 noreply\r\nabc\r\n`, `get ${k('a')}\r\n`]),
  requests('key of 250 bytes is accepted', (k) => {
    const key = longKey(k('a'), 250);
    return [`set ${key} 0 0 1\r\nv\r\n`, `get ${key}\r\n`, `delete ${key}\r\n`];
  }),
  requests('key of 251 bytes -> bad command line format, block parsed', (k) => [
    `set ${longKey(k('a'), 251)} 0 0 1\r\nv\r\n`,
    `add ${longKey(k('a'), 251)} 0 0 1\r\nv\r\n`,
    `cas ${longKey(k('a'), 251)} 0 0 1 1\r\nv\r\n`,
  ]),
  requests('key of 251 bytes on non-storage commands', (k) => {
    const key = longKey(k('a'), 251);
    return [`get ${key}\r\n`, `gets ${key}\r\n`, `touch ${key} 0\r\n`, `delete ${key}\r\n`, `incr ${key} 1\r\n`, `decr ${key} 1\r\n`, `gat 0 ${key}\r\n`];
  }),
  requests('value of exactly 1 MiB -> object too large, block swallowed', (k) => [
    `set ${k('a')} 0 0 ${itemSizeMax}\r\n${a(itemSizeMax)}\r\n`,
    `get ${k('a')}\r\n`,
    `set ${k('a')} 0 0 2\r\nok\r\n`,
    `get ${k('a')}\r\n`,
  ]),
  requests('item size boundary: 1048516 stored, 1048517 too large and old value deleted', () => [
    `set Q 0 0 ${valueBytesMax1ByteKey}\r\n${a(valueBytesMax1ByteKey, 'q')}\r\n`,
    `get Q\r\n`,
    `set Q 0 0 ${valueBytesMax1ByteKey + 1}\r\n${a(valueBytesMax1ByteKey + 1, 'q')}\r\n`,
    `get Q\r\n`,
    `set Q 0 0 1\r\nq\r\n`,
    `get Q\r\n`,
    `delete Q\r\n`,
  ]),
  requests('nonzero flags cost 4 bytes of item size', (k) => {
    // The largest value for this key with flags != 0 (spec section 4), then one byte more.
    const n = itemSizeMax - 59 - k('a').length - 4;
    return [
      `set ${k('a')} 1 0 ${n}\r\n${a(n)}\r\n`,
      `set ${k('b')} 1 0 ${n + 1}\r\n${a(n + 1)}\r\n`,
      `set ${k('c')} 0 0 ${n + 1}\r\n${a(n + 1)}\r\n`,
      `mg ${k('a')} s f\r\nmg ${k('b')} s f\r\nmg ${k('c')} s f\r\n`,
    ];
  }),
  requests('too large with noreply is silent and still deletes', (k) => [
    `set ${k('a')} 0 0 1\r\nx\r\n`,
    `set ${k('a')} 0 0 ${itemSizeMax} noreply\r\n${a(itemSizeMax)}\r\n`,
    `get ${k('a')}\r\n`,
  ]),
  requests('too large add/replace keep the old value', (k) => [
    `set ${k('a')} 0 0 1\r\nx\r\n`,
    `add ${k('a')} 0 0 ${itemSizeMax}\r\n${a(itemSizeMax)}\r\n`,
    `replace ${k('a')} 0 0 ${itemSizeMax}\r\n${a(itemSizeMax)}\r\n`,
    `get ${k('a')}\r\n`,
  ]),
  requests('add: stored when absent, NOT_STORED when present', (k) => [
    `add ${k('a')} 3 0 1\r\na\r\n`,
    `add ${k('a')} 4 0 1\r\nb\r\n`,
    `get ${k('a')}\r\n`,
  ]),
  requests('add noreply: success and failure are silent', (k) => [
    `add ${k('a')} 0 0 1 noreply\r\na\r\nadd ${k('a')} 0 0 1 noreply\r\nb\r\n`,
    `get ${k('a')}\r\n`,
  ]),
  requests('replace: NOT_STORED when absent, replaces value and flags when present', (k) => [
    `replace ${k('a')} 0 0 1\r\na\r\n`,
    `get ${k('a')}\r\n`,
    `set ${k('a')} 1 0 1\r\na\r\nreplace ${k('a')} 9 0 2\r\nbb\r\n`,
    `get ${k('a')}\r\n`,
  ]),
  requests('replace noreply: failure is silent', (k) => [`replace ${k('a')} 0 0 1 noreply\r\na\r\n`, `get ${k('a')}\r\n`]),
  requests('append and prepend keep the item flags', (k) => [
    `set ${k('a')} 5 0 2\r\nmm\r\n`,
    `append ${k('a')} 7 0 2\r\nzz\r\n`,
    `prepend ${k('a')} 9 0 2\r\naa\r\n`,
    `get ${k('a')}\r\n`,
  ]),
  requests('append and prepend on a missing key -> NOT_STORED', (k) => [
    `append ${k('a')} 0 0 1\r\na\r\n`,
    `prepend ${k('a')} 0 0 1\r\na\r\n`,
    `get ${k('a')}\r\n`,
  ]),
  requests('append and prepend noreply', (k) => [
    `append ${k('a')} 0 0 1 noreply\r\na\r\n`,
    `set ${k('a')} 0 0 1\r\nm\r\nappend ${k('a')} 0 0 1 noreply\r\nz\r\nprepend ${k('a')} 0 0 1 noreply\r\na\r\n`,
    `get ${k('a')}\r\n`,
  ]),
  requests('append of 0 bytes and binary append', (k) => [
    `set ${k('a')} 0 0 1\r\nm\r\nappend ${k('a')} 0 0 0\r\n\r\nappend ${k('a')} 0 0 3\r\n\x00\r\n\r\n`,
    `get ${k('a')}\r\n`,
  ]),
  requests('append keeps the TTL (mg t)', (k) => [
    `set ${k('a')} 0 600 1\r\nm\r\nappend ${k('a')} 0 0 1\r\nz\r\nmg ${k('a')} t v\r\n`,
  ]),
];

const expiry: ConformanceCase[] = [
  requests('negative exptime: STORED but expired at once; add then succeeds', (k) => [
    `set ${k('a')} 0 -1 1\r\na\r\n`,
    `get ${k('a')}\r\n`,
    `add ${k('a')} 0 0 1\r\nb\r\n`,
    `get ${k('a')}\r\n`,
  ]),
  requests('absolute exptime in the past expires at once', (k) => [`set ${k('a')} 0 1000000000 1\r\na\r\n`, `get ${k('a')}\r\n`]),
  requests('exptime 2592001 (> 30 days) is an absolute past time', (k) => [
    `set ${k('a')} 0 2592001 1\r\na\r\n`,
    `get ${k('a')}\r\n`,
    `set ${k('b')} 0 2592000 1\r\nb\r\n`,
    `get ${k('b')}\r\n`,
  ]),
  requests('absolute exptime an hour ahead keeps the item', (k) => [
    `set ${k('a')} 0 ${unixHourAhead} 1\r\na\r\n`,
    `get ${k('a')}\r\n`,
  ]),
  requests('expired item: replace/append NOT_STORED, incr/touch/delete NOT_FOUND', (k) => [
    `set ${k('a')} 0 -1 1\r\n1\r\n`,
    `replace ${k('a')} 0 0 1\r\n2\r\nappend ${k('a')} 0 0 1\r\n2\r\n`,
    `incr ${k('a')} 1\r\ntouch ${k('a')} 0\r\ndelete ${k('a')}\r\n`,
  ]),
  requests('TTL of 30 and 3600 s read back with mg t', (k) => [
    `set ${k('a')} 0 30 1\r\na\r\nset ${k('b')} 0 3600 1\r\nb\r\nmg ${k('a')} t\r\nmg ${k('b')} t\r\n`,
  ]),
];

const casCases: ConformanceCase[] = [
  script('gets then cas with its unique -> STORED, new unique', async (c, k) => {
    const r1 = await c.request(`set ${k('a')} 5 0 1\r\na\r\ngets ${k('a')}\r\n`);
    const req = `cas ${k('a')} 6 0 1 ${casOf(r1)}\r\nb\r\ngets ${k('a')}\r\n`;
    return [entry('set+gets', r1), entry('cas <cas>; gets', await c.request(req))];
  }),
  script('cas with unique + 1 -> EXISTS, value kept', async (c, k) => {
    const r1 = await c.request(`set ${k('a')} 0 0 1\r\na\r\ngets ${k('a')}\r\n`);
    const req = `cas ${k('a')} 0 0 1 ${casOf(r1) + 1n}\r\nb\r\ngets ${k('a')}\r\n`;
    return [entry('set+gets', r1), entry('cas <cas+1>', await c.request(req))];
  }),
  script('cas with a used unique a second time -> EXISTS', async (c, k) => {
    const r1 = await c.request(`set ${k('a')} 0 0 1\r\na\r\ngets ${k('a')}\r\n`);
    const req = `cas ${k('a')} 0 0 1 ${casOf(r1)}\r\nb\r\ncas ${k('a')} 0 0 1 ${casOf(r1)}\r\nc\r\nget ${k('a')}\r\n`;
    return [entry('set+gets', r1), entry('cas twice', await c.request(req))];
  }),
  requests('cas on a missing key -> NOT_FOUND', (k) => [`cas ${k('a')} 0 0 1 12345\r\na\r\n`]),
  requests('cas unique 0 on an existing item -> EXISTS', (k) => [`set ${k('a')} 0 0 1\r\na\r\ncas ${k('a')} 0 0 1 0\r\nb\r\n`]),
  script('cas after delete -> NOT_FOUND', async (c, k) => {
    const r1 = await c.request(`set ${k('a')} 0 0 1\r\na\r\ngets ${k('a')}\r\n`);
    const r2 = await c.request(`delete ${k('a')}\r\ncas ${k('a')} 0 0 1 ${casOf(r1)}\r\nb\r\n`);
    return [entry('set+gets', r1), entry('delete+cas', r2)];
  }),
  script('cas noreply: success, EXISTS and NOT_FOUND are silent', async (c, k) => {
    const r1 = await c.request(`set ${k('a')} 0 0 1\r\na\r\ngets ${k('a')}\r\n`);
    const u = casOf(r1);
    const r2 = await c.request(
      `cas ${k('a')} 0 0 1 ${u} noreply\r\nb\r\ncas ${k('a')} 0 0 1 ${u} noreply\r\nc\r\ncas ${k('b')} 0 0 1 ${u} noreply\r\nd\r\nget ${k('a')} ${k('b')}\r\n`,
    );
    return [entry('set+gets', r1), entry('cas noreply x3', r2)];
  }),
  script('cas with a 7th junk token is accepted', async (c, k) => {
    const r1 = await c.request(`set ${k('a')} 0 0 1\r\na\r\ngets ${k('a')}\r\n`);
    const r2 = await c.request(`cas ${k('a')} 0 0 1 ${casOf(r1)} junk\r\nb\r\nget ${k('a')}\r\n`);
    return [entry('set+gets', r1), entry('cas junk', r2)];
  }),
  requests('cas with 5 or 8 tokens -> ERROR, block parsed', (k) => [
    `cas ${k('a')} 0 0 1\r\nb\r\n`,
    `cas ${k('a')} 0 0 1 2 a b\r\nb\r\n`,
  ]),
  requests('cas with a bad unique -> bad command line format', (k) => [
    `cas ${k('a')} 0 0 1 abc\r\nb\r\n`,
    `cas ${k('a')} 0 0 1 -1\r\nb\r\n`,
  ]),
  requests('cas unique: unchanged by get/touch/gat, changed by append/incr/set', (k) => [
    `set ${k('a')} 0 0 1\r\n1\r\ngets ${k('a')}\r\n`,
    `get ${k('a')}\r\ntouch ${k('a')} 0\r\ngat 0 ${k('a')}\r\ngets ${k('a')}\r\n`,
    `append ${k('a')} 0 0 1\r\n2\r\ngets ${k('a')}\r\n`,
    `incr ${k('a')} 1\r\ngets ${k('a')}\r\n`,
    `prepend ${k('a')} 0 0 1\r\n1\r\ngets ${k('a')}\r\n`,
    `set ${k('a')} 0 0 1\r\n1\r\ngets ${k('a')}\r\n`,
  ]),
  requests('distinct items have distinct uniques', (k) => [
    `set ${k('a')} 0 0 1\r\na\r\nset ${k('b')} 0 0 1\r\nb\r\ngets ${k('a')} ${k('b')} ${k('a')}\r\n`,
  ]),
];

const retrieval: ConformanceCase[] = [
  requests('multi-get: request order, misses silent, repeats returned twice', (k) => [
    `set ${k('a')} 1 0 1\r\na\r\nset ${k('b')} 2 0 2\r\nbb\r\n`,
    `get ${k('b')} ${k('miss')} ${k('a')} ${k('b')} ${k('a')}\r\n`,
  ]),
  requests('multi-gets with uniques', (k) => [
    `set ${k('a')} 1 0 1\r\na\r\nset ${k('b')} 2 0 2\r\nbb\r\n`,
    `gets ${k('a')} ${k('miss')} ${k('b')} ${k('a')}\r\n`,
  ]),
  requests('multi-get of large values: one reply past 64 KiB, byte for byte', (k) => {
    const big = (n: number, seed: number) => Array.from({ length: n }, (_, i) => String.fromCharCode(97 + ((i * 7 + seed) % 26))).join('');
    return [
      `set ${k('a')} 5 0 100000\r\n${big(100_000, 1)}\r\nset ${k('b')} 6 0 200000\r\n${big(200_000, 2)}\r\n`,
      `get ${k('a')} ${k('b')} ${k('miss')} ${k('a')}\r\n`,
      `get ${k('a')}\r\nget ${k('b')}\r\nmg ${k('a')} v f\r\n`,
    ];
  }),
  requests('get of only misses -> END', (k) => [`get ${k('x')} ${k('y')} ${k('z')}\r\n`]),
  requests('get and gets with no key -> ERROR', () => [`get\r\n`, `gets\r\n`, `get \r\n`]),
  requests('multi-get with one over-long key -> only one error line', (k) => [
    `set ${k('a')} 0 0 1\r\na\r\n`,
    `get ${k('a')} ${k('a')} ${longKey(k('b'), 251)} ${k('a')}\r\n`,
    `gets ${k('a')} ${longKey(k('b'), 251)}\r\n`,
  ]),
  requests('multi-get with the over-long key after 30 hits', (k) => [
    `set ${k('a')} 0 0 1\r\na\r\n`,
    `get ${`${k('a')} `.repeat(30)}${longKey(k('b'), 251)} ${k('a')}\r\n`,
  ]),
  requests('runs of spaces, leading and trailing spaces', (k) => [
    `set  ${k('a')}  0  0  1 \r\na\r\n`,
    `get ${k('a')}  ${k('a')}   ${k('a')} \r\n`,
    `  get ${k('a')}\r\n`,
  ]),
  requests('multi-get of 100 keys with hits and misses', (k) => {
    const sets = Array.from({ length: 50 }, (_, i) => `set ${k(`m${i}`)} ${i} 0 ${String(i).length}\r\n${i}\r\n`).join('');
    const keys = Array.from({ length: 100 }, (_, i) => k(`m${i}`)).join(' ');
    return [sets, `get ${keys}\r\n`];
  }),
  requests('gat 0 returns the value and clears the TTL', (k) => [
    `set ${k('a')} 3 600 1\r\na\r\n`,
    `gat 0 ${k('a')} ${k('miss')} ${k('a')}\r\nmg ${k('a')} t\r\n`,
  ]),
  requests('gats returns uniques and sets the TTL', (k) => [
    `set ${k('a')} 0 0 1\r\na\r\ngets ${k('a')}\r\n`,
    `gats 300 ${k('a')}\r\nmg ${k('a')} t\r\n`,
  ]),
  requests('gat -1 returns the value once, then the item is gone', (k) => [
    `set ${k('a')} 0 0 1\r\na\r\n`,
    `gat -1 ${k('a')}\r\n`,
    `get ${k('a')}\r\n`,
  ]),
  requests('gat with an absolute past time returns then expires', (k) => [
    `set ${k('a')} 0 0 1\r\na\r\ngat 2592001 ${k('a')}\r\nget ${k('a')}\r\n`,
  ]),
  requests('gat with a bad exptime -> invalid exptime argument', (k) => [
    `set ${k('a')} 0 0 1\r\na\r\n`,
    `gat abc ${k('a')}\r\n`,
    `gats x1 ${k('a')}\r\n`,
  ]),
  requests('gat without keys -> END; gat/gats without args -> ERROR', (k) => [
    `gat 10\r\n`,
    `gats 0\r\n`,
    `gat\r\n`,
    `gats\r\n`,
    `gat ${k('miss')}\r\n`,
  ]),
];

const deletion: ConformanceCase[] = [
  requests('delete: DELETED then NOT_FOUND', (k) => [`set ${k('a')} 0 0 1\r\na\r\n`, `delete ${k('a')}\r\n`, `delete ${k('a')}\r\n`, `get ${k('a')}\r\n`]),
  requests('legacy delete <key> 0, with and without noreply', (k) => [
    `set ${k('a')} 0 0 1\r\na\r\nset ${k('b')} 0 0 1\r\nb\r\n`,
    `delete ${k('a')} 0\r\n`,
    `delete ${k('b')} 0 noreply\r\n`,
    `get ${k('a')} ${k('b')}\r\n`,
  ]),
  requests('delete with a bad 3rd token -> usage message', (k) => [
    `set ${k('a')} 0 0 1\r\na\r\n`,
    `delete ${k('a')} 1\r\n`,
    `delete ${k('a')} x y\r\n`,
    `get ${k('a')}\r\n`,
  ]),
  requests('delete with wrong token counts -> ERROR', (k) => [`delete\r\n`, `delete ${k('a')} 0 noreply x\r\n`, `delete a b c d e\r\n`]),
  requests('delete noreply: hit and miss are silent', (k) => [
    `set ${k('a')} 0 0 1\r\na\r\n`,
    `delete ${k('a')} noreply\r\ndelete ${k('a')} noreply\r\n`,
    `get ${k('a')}\r\n`,
  ]),
];

const arithmetic: ConformanceCase[] = [
  requests('incr and decr basic; NOT_FOUND on a missing key', (k) => [
    `set ${k('a')} 0 0 2\r\n10\r\n`,
    `incr ${k('a')} 5\r\ndecr ${k('a')} 3\r\nincr ${k('a')} 0\r\n`,
    `incr ${k('miss')} 1\r\ndecr ${k('miss')} 1\r\n`,
  ]),
  requests('incr wraps at 2^64', (k) => [
    `set ${k('a')} 0 0 20\r\n18446744073709551615\r\n`,
    `incr ${k('a')} 1\r\n`,
    `set ${k('b')} 0 0 20\r\n18446744073709551615\r\nincr ${k('b')} 2\r\n`,
    `set ${k('c')} 0 0 1\r\n9\r\nincr ${k('c')} 18446744073709551615\r\n`,
  ]),
  requests('decr floors at 0', (k) => [
    `set ${k('a')} 0 0 1\r\n5\r\n`,
    `decr ${k('a')} 10\r\ndecr ${k('a')} 1\r\n`,
    `set ${k('b')} 0 0 20\r\n18446744073709551615\r\ndecr ${k('b')} 18446744073709551615\r\n`,
  ]),
  requests('bad delta -> invalid numeric delta argument', (k) => [
    `set ${k('a')} 0 0 1\r\n1\r\n`,
    `incr ${k('a')} abc\r\nincr ${k('a')} -1\r\ndecr ${k('a')} 18446744073709551616\r\nincr ${k('a')} 1x\r\n`,
    `get ${k('a')}\r\n`,
  ]),
  requests('non-numeric values -> cannot increment or decrement', (k) => [
    `set ${k('a')} 0 0 3\r\nabc\r\nincr ${k('a')} 1\r\n`,
    `set ${k('b')} 0 0 3\r\n12a\r\nincr ${k('b')} 1\r\n`,
    `set ${k('c')} 0 0 0\r\n\r\nincr ${k('c')} 1\r\n`,
    `set ${k('d')} 0 0 2\r\n-5\r\ndecr ${k('d')} 1\r\n`,
    `set ${k('e')} 0 0 20\r\n18446744073709551616\r\nincr ${k('e')} 1\r\n`,
  ]),
  requests('leading spaces and + are accepted in the value', (k) => [
    `set ${k('a')} 0 0 3\r\n 12\r\nincr ${k('a')} 1\r\nget ${k('a')}\r\n`,
    `set ${k('b')} 0 0 3\r\n+12\r\nincr ${k('b')} 1\r\nget ${k('b')}\r\n`,
  ]),
  requests('value "1 2": parsing stops at the space', (k) => [`set ${k('a')} 0 0 3\r\n1 2\r\nincr ${k('a')} 1\r\nget ${k('a')}\r\n`]),
  requests('decr to a shorter number pads with spaces (10 -> "9 ")', (k) => [
    `set ${k('a')} 0 0 2\r\n10\r\n`,
    `decr ${k('a')} 1\r\n`,
    `get ${k('a')}\r\n`,
    `set ${k('b')} 0 0 4\r\n1000\r\ndecr ${k('b')} 999\r\nget ${k('b')}\r\n`,
  ]),
  requests('incr to a longer number grows the value (9 -> 10, 99 -> 100)', (k) => [
    `set ${k('a')} 0 0 1\r\n9\r\nincr ${k('a')} 1\r\nget ${k('a')}\r\n`,
    `set ${k('b')} 0 0 2\r\n99\r\nincr ${k('b')} 1\r\nget ${k('b')}\r\n`,
  ]),
  requests('incr keeps flags and TTL', (k) => [`set ${k('a')} 42 600 1\r\n1\r\nincr ${k('a')} 1\r\nmg ${k('a')} f t v\r\n`]),
  requests('incr/decr noreply: success, miss and non-numeric are silent', (k) => [
    `set ${k('a')} 0 0 2\r\n12\r\nset ${k('b')} 0 0 1\r\nx\r\n`,
    `incr ${k('a')} 5 noreply\r\ndecr ${k('a')} 1 noreply\r\nincr ${k('miss')} 1 noreply\r\nincr ${k('b')} 1 noreply\r\n`,
    `get ${k('a')}\r\n`,
  ]),
  requests('incr/decr with wrong token counts -> ERROR', (k) => [`incr ${k('a')}\r\n`, `incr\r\n`, `decr ${k('a')} 1 noreply x\r\n`]),
  requests('incr with a junk 4th token is accepted', (k) => [`set ${k('a')} 0 0 1\r\n1\r\nincr ${k('a')} 1 x\r\n`]),
];

const touching: ConformanceCase[] = [
  requests('touch hit and miss', (k) => [`set ${k('a')} 0 0 1\r\na\r\n`, `touch ${k('a')} 600\r\nmg ${k('a')} t\r\n`, `touch ${k('miss')} 0\r\n`]),
  requests('touch -1 expires the item', (k) => [`set ${k('a')} 0 0 1\r\na\r\ntouch ${k('a')} -1\r\nget ${k('a')}\r\ntouch ${k('a')} 0\r\n`]),
  requests('touch 0 clears the TTL', (k) => [`set ${k('a')} 0 600 1\r\na\r\ntouch ${k('a')} 0\r\nmg ${k('a')} t\r\n`]),
  requests('touch with an absolute past time expires', (k) => [`set ${k('a')} 0 0 1\r\na\r\ntouch ${k('a')} 2592001\r\nget ${k('a')}\r\n`]),
  requests('touch with a bad exptime or no exptime', (k) => [
    `set ${k('a')} 0 0 1\r\na\r\n`,
    `touch ${k('a')} abc\r\n`,
    `touch ${k('a')}\r\n`,
    `touch\r\n`,
  ]),
  requests('touch noreply: hit, miss and bad exptime are silent', (k) => [
    `set ${k('a')} 0 0 1\r\na\r\n`,
    `touch ${k('a')} 0 noreply\r\ntouch ${k('miss')} 0 noreply\r\ntouch ${k('a')} abc noreply\r\n`,
  ]),
];

const misc: ConformanceCase[] = [
  requests('version (with and without extra args)', () => [`version\r\n`, `version a b\r\n`]),
  requests('verbosity forms', () => [
    `verbosity\r\n`,
    `verbosity 0\r\n`,
    `verbosity x\r\n`,
    `verbosity 0 noreply\r\n`,
    `verbosity noreply\r\n`,
    `verbosity 0 2\r\n`,
    `verbosity 0 2 3\r\n`,
    `verbosity x noreply\r\n`,
  ]),
  requests('unknown commands -> ERROR', () => [`bogus\r\n`, `bogus a b c\r\n`, `gett k\r\n`, `noreply\r\n`]),
  requests('upper-case commands -> ERROR (the block too)', (k) => [`GET ${k('a')}\r\n`, `SET ${k('a')} 0 0 1\r\nx\r\n`, `Get ${k('a')}\r\n`]),
  requests('empty lines -> ERROR', () => [`\r\n`, `\r\n\r\n`, `\n`, `   \r\n`]),
  requests('bare LF line endings', (k) => [`set ${k('a')} 0 0 1\nx\r\nget ${k('a')}\n`, `delete ${k('a')}\nget ${k('a')}\n`]),
  requests('tab is not a separator', (k) => [`get\t${k('a')}\r\n`, `version\tx\r\n`]),
  requests('stats noreply and unknown stats -> ERROR', () => [`stats noreply\r\n`, `stats bogus\r\n`]),
  // ringkv reports memcached's user-facing counters (not its slab and thread internals,
  // which have no meaning here): the names every client and dashboard reads must be
  // present, in memcached's order. Values are not compared.
  script('stats: the names clients read, in memcached order', async (c) => {
    const reply = await exchange(c, `stats\r\n`);
    const names = [...reply.matchAll(/^STAT (\S+) /gm)].map((m) => m[1]);
    const wanted = new Set(STATS_CLIENTS_READ);
    return [names.filter((n) => n !== undefined && wanted.has(n)).join(' ')];
  }),
  requests('pipelining 60 commands in one write', (k) => {
    let req = '';
    for (let i = 0; i < 20; i++) req += `set ${k(`p${i}`)} ${i} 0 ${String(i * 7).length}\r\n${i * 7}\r\n`;
    for (let i = 0; i < 20; i++) req += `incr ${k(`p${i}`)} ${i}\r\n`;
    for (let i = 0; i < 20; i += 2) req += `get ${k(`p${i}`)} ${k(`p${i + 1}`)}\r\n`;
    for (let i = 0; i < 10; i++) req += `delete ${k(`p${i}`)}\r\n`;
    return [req];
  }),
  requests('classic and meta commands interleaved in one write', (k) => [
    `set ${k('a')} 5 0 1\r\na\r\nmg ${k('a')} v f\r\nms ${k('a')} 1 F6\r\nb\r\nget ${k('a')}\r\nmd ${k('a')}\r\nget ${k('a')}\r\n`,
  ]),
  script('one command split into 1-byte writes', async (c, k) => {
    const req = `set ${k('a')} 7 0 5\r\nab\r\nc\r\nget ${k('a')}\r\n`;
    await c.sendBytewise(req);
    return [entry(`${req} (bytewise)`, await c.request(''))];
  }),
  // No `t` here: the byte-by-byte send takes long enough for memcached's one-second
  // clock to tick between ms and mg (it then reports t59), which is timing, not protocol.
  script('meta command split into 1-byte writes', async (c, k) => {
    const req = `ms ${k('a')} 2 T60 F3\r\nhi\r\nmg ${k('a')} v f s\r\n`;
    await c.sendBytewise(req);
    return [entry(`${req} (bytewise)`, await c.request(''))];
  }),
  script('near-1 MiB value sent in 64 KiB writes', async (c, k) => {
    const n = valueBytesMax1ByteKey - 200;
    const req = `set ${k('a')} 0 0 ${n}\r\n${a(n, 'z')}\r\n`;
    for (let i = 0; i < req.length; i += 65536) await c.send(req.slice(i, i + 65536));
    return [entry('set (chunked)', await c.request('')), await exchange(c, `get ${k('a')}\r\n`)];
  }),
  script('line of 2048 bytes without newline stays open', async (c) => {
    await c.send(a(2048, 'x'));
    return [entry('2048 x, then CRLF', await c.request('\r\n'))];
  }),
  script('line over 2048 bytes without newline closes the connection', async (c) => {
    await c.send(a(3000, 'x'));
    return [entry('3000 x, no newline', await c.readUntilClose())];
  }),
  script('storage line over 2048 bytes without newline closes', async (c, k) => {
    await c.send(`set ${k('a')} 0 0 1 ${a(3000, 'x')}`);
    return [entry('long set line', await c.readUntilClose())];
  }),
  requests('line over 2048 bytes with its newline in the same write -> ERROR', () => [`${a(3000, 'x')}\r\n`]),
  script('long multi-get line split across writes', async (c, k) => {
    const first = await c.request(`set ${k('a')} 0 0 1\r\na\r\n`);
    await c.send(`get ${`${k('miss')} `.repeat(300)}`);
    return [entry('set', first), entry('get 300 misses ... a', await c.request(`${k('a')}\r\n`))];
  }),
  script('quit flushes earlier replies and ignores the bytes after it', async (c, k) => {
    const r1 = await c.request(`set ${k('a')} 0 0 1\r\na\r\n`);
    await c.send(`get ${k('a')}\r\nquit\r\nget ${k('a')}\r\nset ${k('a')} 0 0 1\r\nb\r\n`);
    const r2 = await c.readUntilClose();
    const c2 = await connect(c.port);
    try {
      return [entry('set', r1), entry('get, quit, get, set', r2), entry('get (new connection)', await c2.request(`get ${k('a')}\r\n`))];
    } finally {
      c2.close();
    }
  }),
  script('quit with arguments closes too', async (c) => {
    await c.send(`quit foo bar\r\n`);
    return [entry('quit foo bar', await c.readUntilClose())];
  }),
];

const metaGet: ConformanceCase[] = [
  // Sent without request(): its own `mn` would add a second MN that may arrive separately.
  script('mn with and without args', async (c) => {
    const out: string[] = [];
    for (const req of ['mn\r\n', 'mn a b c\r\n']) {
      await c.send(req);
      out.push(entry(req, await c.readMn()));
    }
    return out;
  }),
  requests('mg miss -> EN; with k and O echoes them; q hides it', (k) => [
    `mg ${k('a')}\r\n`,
    `mg ${k('a')} v\r\n`,
    `mg ${k('a')} k Oab12 v s\r\n`,
    `mg ${k('a')} q\r\nmg ${k('a')} v q k\r\n`,
  ]),
  requests('mg hit with v k f s c t O echoes in request order', (k) => [
    `ms ${k('a')} 2 F9\r\nhi\r\n`,
    `mg ${k('a')} v k f s c t Oxy\r\n`,
    `mg ${k('a')} Oxy t c s f k v\r\n`,
  ]),
  requests('mg hit without v -> HD with flags', (k) => [`ms ${k('a')} 2\r\nhi\r\n`, `mg ${k('a')}\r\nmg ${k('a')} s f\r\n`]),
  requests('mg hit with q still answers', (k) => [`ms ${k('a')} 2\r\nhi\r\n`, `mg ${k('a')} q\r\nmg ${k('a')} v q k\r\n`]),
  requests('mg on an item stored by classic set', (k) => [`set ${k('a')} 77 0 3\r\nabc\r\nmg ${k('a')} s f v\r\n`]),
  requests('mg b: base64 key, k echoes it with b', (k) => {
    const key = Buffer.from(k('a')).toString('base64');
    return [`ms ${key} 2 b k\r\nhi\r\n`, `mg ${key} b k v\r\n`, `get ${k('a')}\r\n`];
  }),
  requests('mg b with an invalid base64 key -> error decoding key', (k) => [`mg ${k('a')}! b v\r\n`]),
  requests('mg with no key -> ERROR', () => [`mg\r\n`, `mg \r\n`]),
  requests('mg unknown flag -> invalid flag', (k) => [`mg ${k('a')} zz\r\n`, `mg ${k('a')} v Z\r\n`]),
  requests('mg duplicate flag -> duplicate flag', (k) => [`mg ${k('a')} v v\r\n`, `mg ${k('a')} s f s\r\n`, `mg ${k('a')} Oa Ob\r\n`]),
  requests('mg opaque: 31 bytes ok, 32 bytes too long', (k) => [`mg ${k('a')} O${a(31, 'o')}\r\n`, `mg ${k('a')} O${a(32, 'o')}\r\n`]),
  requests('mg too many flags -> options flags are too long', (k) => [
    `mg ${k('a')} a b c d e f g h i j k l m n o p q r s t u v w x y z\r\n`,
  ]),
  requests('mg T touches and t reports', (k) => [
    `ms ${k('a')} 2\r\nhi\r\nmg ${k('a')} t\r\nmg ${k('a')} T60 t v\r\nmg ${k('a')} t\r\n`,
  ]),
  requests('mg with a bad T token', (k) => [`mg ${k('a')} Tx\r\n`, `mg ${k('a')} T\r\n`]),
  requests('mg N vivifies on miss: W, then Z', (k) => [`mg ${k('a')} N30 v c t s f\r\n`, `mg ${k('a')} v t\r\n`]),
  requests('mg h reports hit-before', (k) => [`ms ${k('a')} 2\r\nhi\r\nmg ${k('a')} h\r\nmg ${k('a')} h\r\n`]),
  requests('mg ignores P and L proxy tokens', (k) => [`ms ${k('a')} 2 P1 L2\r\nhi\r\nmg ${k('a')} v P9 L9\r\n`]),
  requests('mg with a key of 250 and 251 bytes', (k) => [`mg ${longKey(k('a'), 250)} v\r\n`, `mg ${longKey(k('a'), 251)} v\r\n`]),
];

const metaSet: ConformanceCase[] = [
  requests('ms default mode is set', (k) => [`ms ${k('a')} 2\r\nhi\r\nms ${k('a')} 3\r\nbye\r\nmg ${k('a')} v\r\n`]),
  requests('ms modes S E R A P', (k) => [
    `ms ${k('a')} 2 MS\r\nh2\r\nms ${k('a')} 2 ME\r\nh3\r\nms ${k('b')} 2 MR\r\nh4\r\n`,
    `ms ${k('a')} 2 MA\r\nzz\r\nms ${k('a')} 2 MP\r\naa\r\nmg ${k('a')} v\r\n`,
    `ms ${k('c')} 2 ME\r\nh5\r\nms ${k('c')} 2 MR\r\nh6\r\nmg ${k('c')} v\r\nmg ${k('b')} v\r\n`,
  ]),
  requests('ms append/prepend on a missing key -> NS, even with q', (k) => [
    `ms ${k('a')} 2 MA\r\nzz\r\nms ${k('a')} 2 MP q\r\nzz\r\nms ${k('a')} 2 MR q\r\nzz\r\n`,
  ]),
  requests('ms append ignores F and T', (k) => [`ms ${k('a')} 2 F3\r\nhi\r\nms ${k('a')} 2 MA F7 T60\r\nzz\r\nmg ${k('a')} f t v\r\n`]),
  requests('ms invalid mode swallows the block', (k) => [
    `ms ${k('a')} 2\r\nhi\r\n`,
    `ms ${k('a')} 2 MX\r\nxx\r\nmg ${k('a')} v\r\n`,
    `ms ${k('a')} 2 Ms\r\nxx\r\n`,
    `ms ${k('a')} 2 MEE\r\nxx\r\n`,
    `mg ${k('a')} v\r\n`,
  ]),
  requests('ms F T c k O flags', (k) => [
    `ms ${k('a')} 2 F5 T0 c k Oxy\r\nhi\r\n`,
    `mg ${k('a')} f t v c\r\n`,
    `ms ${k('a')} 2 F4294967295 T30\r\nhi\r\nmg ${k('a')} f t\r\n`,
  ]),
  requests('ms T-1 stores an expired item; T30 is read back', (k) => [
    `ms ${k('a')} 2 T-1\r\nhi\r\nmg ${k('a')} t\r\n`,
    `ms ${k('b')} 2 T30\r\nhi\r\nmg ${k('b')} t\r\n`,
  ]),
  requests('ms q suppresses HD but not NS', (k) => [
    `ms ${k('a')} 2 q\r\nhi\r\nms ${k('a')} 2 ME q\r\nzz\r\nms ${k('a')} 2 q k Oz c\r\nyo\r\nmg ${k('a')} v\r\n`,
  ]),
  script('ms C with the current unique -> HD; unique + 1 -> EX (even with q)', async (c, k) => {
    const r1 = await c.request(`ms ${k('a')} 2 c\r\nhi\r\n`);
    const u = casOf(r1);
    const r2 = await c.request(`ms ${k('a')} 2 C${u} c\r\nyo\r\nmg ${k('a')} v c\r\n`);
    const u2 = casOf(r2);
    const r3 = await c.request(`ms ${k('a')} 2 C${u2 + 1n}\r\nno\r\nms ${k('a')} 2 C${u2 + 1n} q\r\nno\r\nmg ${k('a')} v\r\n`);
    return [entry('ms c', r1), entry('ms C<cas> c; mg', r2), entry('ms C<cas+1> (twice)', r3)];
  }),
  requests('ms C on a missing key -> NF', (k) => [`ms ${k('a')} 2 C12345\r\nhi\r\n`]),
  requests('ms I (without C) stores', (k) => [`ms ${k('a')} 2 T0 F3 I\r\nhi\r\nmg ${k('a')} f t v\r\n`]),
  requests('ms b: base64 key and k echo', (k) => {
    const key = Buffer.from(k('a')).toString('base64');
    return [`ms ${key} 2 b k\r\nhi\r\n`, `get ${k('a')}\r\n`, `ms ${k('a')}! 2 b\r\nhi\r\n`];
  }),
  requests('ms missing datalen -> bad command line format, block parsed', (k) => [`ms ${k('a')}\r\nhi\r\n`, `ms\r\n`]),
  requests('ms bad datalen (abc, -1, old S2 syntax) -> block parsed', (k) => [
    `ms ${k('a')} abc\r\nhi\r\n`,
    `ms ${k('a')} -1\r\nhi\r\n`,
    `ms ${k('a')} S2\r\nhi\r\n`,
  ]),
  requests('ms bad flag values swallow the block', (k) => [
    `ms ${k('a')} 2 F-1\r\nhi\r\n`,
    `ms ${k('a')} 2 Fx\r\nhi\r\n`,
    `ms ${k('a')} 2 Tx\r\nhi\r\n`,
    `ms ${k('a')} 2 Cx\r\nhi\r\n`,
    `ms ${k('a')} 2 zz\r\nhi\r\n`,
    `ms ${k('a')} 2 F1 F2\r\nhi\r\n`,
    `mg ${k('a')} v\r\n`,
  ]),
  requests('ms bad data chunk', (k) => [`ms ${k('a')} 2\r\nabc\r\n`, `mg ${k('a')} v\r\n`]),
  requests('ms 0-length value', (k) => [`ms ${k('a')} 0\r\n\r\nmg ${k('a')} v s\r\n`]),
  requests('ms binary value', (k) => [`ms ${k('a')} 5 F1\r\n\r\n\x00\r\n\r\nmg ${k('a')} v f\r\nget ${k('a')}\r\n`]),
  requests('ms item size boundary with a 1-byte key', () => [
    `ms R ${valueBytesMax1ByteKey}\r\n${a(valueBytesMax1ByteKey, 'r')}\r\nmg R s\r\n`,
    `ms R ${valueBytesMax1ByteKey + 1}\r\n${a(valueBytesMax1ByteKey + 1, 'r')}\r\nmg R s\r\n`,
    `ms R 1\r\nr\r\nmg R s v\r\nmd R\r\n`,
  ]),
  requests('ms over-long key -> bad command line format, block parsed', (k) => [`ms ${longKey(k('a'), 251)} 1\r\na\r\n`]),
];

const metaDelete: ConformanceCase[] = [
  requests('md hit and miss, with q', (k) => [
    `md ${k('a')}\r\nmd ${k('a')} q\r\n`,
    `ms ${k('a')} 1\r\na\r\nmd ${k('a')} q\r\nmg ${k('a')} v\r\n`,
    `ms ${k('a')} 1\r\na\r\nmd ${k('a')}\r\n`,
  ]),
  requests('md k and O echo on hit and miss', (k) => [
    `md ${k('a')} k Oz1\r\n`,
    `ms ${k('a')} 1\r\na\r\nmd ${k('a')} k Oz2\r\n`,
    `md ${k('a')} q k Oz3\r\n`,
  ]),
  script('md C: unique + 1 -> EX (even with q), current unique -> HD', async (c, k) => {
    const r1 = await c.request(`ms ${k('a')} 1 c\r\na\r\n`);
    const u = casOf(r1);
    const r2 = await c.request(`md ${k('a')} C${u + 1n}\r\nmd ${k('a')} C${u + 1n} q\r\nmd ${k('a')} C${u}\r\nmg ${k('a')} v\r\n`);
    return [entry('ms c', r1), entry('md C<cas+1> x2, md C<cas>', r2)];
  }),
  requests('md I T30 marks stale: mg gets X W, then Z X', (k) => [
    `ms ${k('a')} 2\r\nhi\r\n`,
    `md ${k('a')} I T30\r\nmg ${k('a')} v c t\r\nmg ${k('a')} v c\r\nmg ${k('a')} v\r\n`,
  ]),
  requests('md invalid or duplicate flag', (k) => [`md ${k('a')} q q\r\n`, `md ${k('a')} x\r\n`, `md ${k('a')} C\r\n`, `md\r\n`]),
  requests('md over-long key', (k) => [`md ${longKey(k('a'), 251)}\r\n`]),
];

const metaArithmetic: ConformanceCase[] = [
  requests('ma on a missing key -> NF (q does not hide it)', (k) => [`ma ${k('a')}\r\nma ${k('a')} q\r\nma ${k('a')} v q\r\n`]),
  requests('ma default incr by 1; D delta; v returns the value', (k) => [
    `ms ${k('a')} 1\r\n5\r\n`,
    `ma ${k('a')}\r\nma ${k('a')} v\r\nma ${k('a')} v D10\r\nmg ${k('a')} v\r\n`,
  ]),
  requests('ma modes MI MD M+ M-', (k) => [
    `ms ${k('a')} 2\r\n50\r\n`,
    `ma ${k('a')} v MI D5\r\nma ${k('a')} v MD D3\r\nma ${k('a')} v M+ D1\r\nma ${k('a')} v M- D100\r\n`,
  ]),
  requests('ma N with J creates, returning the initial value un-incremented', (k) => [
    `ma ${k('a')} N0 J10 v\r\nma ${k('a')} N0 J10 v\r\n`,
    `ma ${k('b')} N0\r\nma ${k('b')} v\r\n`,
    `ma ${k('c')} N30 J7 v t\r\n`,
    `ma ${k('d')} MD N0 J3 v\r\n`,
  ]),
  requests('ma wraps at 2^64 and floors at 0', (k) => [
    `ms ${k('a')} 20\r\n18446744073709551615\r\nma ${k('a')} v\r\n`,
    `ms ${k('b')} 1\r\n5\r\nma ${k('b')} MD D10 v\r\nma ${k('b')} D18446744073709551615 v\r\nma ${k('b')} D18446744073709551615 v\r\n`,
  ]),
  requests('ma q suppresses HD and VA', (k) => [`ms ${k('a')} 1\r\n5\r\nma ${k('a')} q\r\nma ${k('a')} v q\r\nmg ${k('a')} v\r\n`]),
  requests('ma t and c flags; T sets the TTL', (k) => [
    `ms ${k('a')} 1\r\n1\r\nma ${k('a')} t c v\r\nma ${k('a')} T60 t\r\nma ${k('a')} t v\r\n`,
  ]),
  requests('ma k and O echo', (k) => [`ms ${k('a')} 1\r\n1\r\nma ${k('a')} v k Oxx\r\n`, `ma ${k('miss')} k Oyy\r\n`]),
  script('ma C: current unique -> ok, unique + 1 -> EX', async (c, k) => {
    const r1 = await c.request(`ms ${k('a')} 1 c\r\n1\r\n`);
    const u = casOf(r1);
    const r2 = await c.request(`ma ${k('a')} v C${u + 1n}\r\nma ${k('a')} v C${u}\r\nmg ${k('a')} v\r\n`);
    return [entry('ms c', r1), entry('ma C<cas+1>, ma C<cas>', r2)];
  }),
  requests('ma on non-numeric values', (k) => [
    `ms ${k('a')} 3\r\nabc\r\nma ${k('a')}\r\n`,
    `ms ${k('b')} 3\r\n-10\r\nma ${k('b')} v\r\n`,
  ]),
  requests('ma invalid mode, bad D, bad J, bad N', (k) => [
    `ma ${k('a')} v MX\r\n`,
    `ma ${k('a')} Mx\r\n`,
    `ma ${k('a')} v Dabc\r\n`,
    `ma ${k('a')} N0 D18446744073709551616 v\r\n`,
    `ma ${k('a')} N0 J18446744073709551616 v\r\n`,
    `ma ${k('a')} v J5x N0\r\n`,
    `ma ${k('a')} D\r\n`,
    `ma ${k('a')} N\r\n`,
  ]),
  requests('ma duplicate flag and no key', (k) => [`ma ${k('a')} D1 D2\r\n`, `ma\r\n`]),
  requests('ma over-long key', (k) => [`ma ${longKey(k('a'), 251)}\r\n`]),
  requests('ma and incr share the value', (k) => [
    `set ${k('a')} 0 0 1\r\n7\r\nma ${k('a')} v\r\nincr ${k('a')} 2\r\nma ${k('a')} MD v\r\nget ${k('a')}\r\n`,
  ]),
];

// flush_all hides every key on the server, so these run last and each checks only its own keys.
const flush: ConformanceCase[] = [
  requests('flush_all with too many args -> ERROR, nothing flushed', (k) => [
    `set ${k('a')} 0 0 1\r\na\r\n`,
    `flush_all 0 noreply x\r\n`,
    `get ${k('a')}\r\n`,
  ]),
  requests('flush_all with a bad delay -> invalid exptime argument, nothing flushed', (k) => [
    `set ${k('a')} 0 0 1\r\na\r\n`,
    `flush_all abc\r\n`,
    `flush_all abc noreply\r\n`,
    `get ${k('a')}\r\n`,
  ]),
  requests('flush_all hides existing items; items stored after are kept', (k) => [
    `set ${k('a')} 0 0 1\r\na\r\nset ${k('b')} 0 0 1\r\nb\r\n`,
    `flush_all\r\n`,
    `get ${k('a')} ${k('b')}\r\n`,
    `set ${k('c')} 0 0 1\r\nc\r\nadd ${k('a')} 0 0 1\r\nA\r\n`,
    `get ${k('a')} ${k('b')} ${k('c')}\r\n`,
  ]),
  requests('flush_all in one write with sets before and after', (k) => [
    `set ${k('a')} 0 0 1\r\na\r\nflush_all\r\nset ${k('b')} 0 0 1\r\nb\r\nget ${k('a')} ${k('b')}\r\n`,
  ]),
  requests('flush_all 0, -1 and noreply', (k) => [
    `set ${k('a')} 0 0 1\r\na\r\nflush_all 0\r\nget ${k('a')}\r\n`,
    `set ${k('a')} 0 0 1\r\na\r\nflush_all -1\r\nget ${k('a')}\r\n`,
    `set ${k('a')} 0 0 1\r\na\r\nflush_all noreply\r\nget ${k('a')}\r\n`,
    `set ${k('a')} 0 0 1\r\na\r\nflush_all 0 noreply\r\nget ${k('a')}\r\n`,
  ]),
  requests('flush_all then incr/cas/touch see nothing', (k) => [
    `set ${k('a')} 0 0 1\r\n1\r\nflush_all\r\nincr ${k('a')} 1\r\ntouch ${k('a')} 0\r\ncas ${k('a')} 0 0 1 1\r\n2\r\nmg ${k('a')} v\r\n`,
  ]),
];

/** Every case, in run order (flush_all cases last). */
export const conformanceCases: readonly ConformanceCase[] = [
  ...storage,
  ...expiry,
  ...casCases,
  ...retrieval,
  ...deletion,
  ...arithmetic,
  ...touching,
  ...misc,
  ...metaGet,
  ...metaSet,
  ...metaDelete,
  ...metaArithmetic,
  ...flush,
];
