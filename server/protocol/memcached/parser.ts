// The memcached text-protocol parser: a pure function over (buffer, offset) that returns
// need-more, a typed command, or a typed error. Bad input is a returned value, never a
// throw. It follows memcached 1.6.18's proto_text.c (see shared/memcached-text-protocol.md):
// tokens split on spaces only, a trailing \r stripped, data blocks read by length (binary
// safe), and memcached's own order of checks so that errors match byte for byte.
import type { StoreMode } from '../../kv/local-kv.js';
import type { Command, MetaBase, MetaFlag, ParseResult } from './commands.js';

export const KEY_MAX_BYTES = 250;
/** A line without \n longer than this closes the connection, unless it is a get. */
export const LINE_MAX_BYTES = 2048;
/** memcached's MFLAG_MAX_OPT_LENGTH: at most this many tokens in a meta command. */
const META_MAX_TOKENS = 20;
const META_OPAQUE_MAX_BYTES = 32;
const INT32_MAX = 2 ** 31 - 1;
const U64_MAX = (1n << 64n) - 1n;

export const ERR_BAD_FORMAT = 'CLIENT_ERROR bad command line format\r\n';
export const ERR_BAD_CHUNK = 'CLIENT_ERROR bad data chunk\r\n';
export const ERR_UNKNOWN = 'ERROR\r\n';
export const ERR_EXPTIME = 'CLIENT_ERROR invalid exptime argument\r\n';
export const ERR_DELTA = 'CLIENT_ERROR invalid numeric delta argument\r\n';
export const ERR_DELETE_USAGE = 'CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n';
export const ERR_TOO_LARGE = 'SERVER_ERROR object too large for cache\r\n';

export interface ParserLimits {
  /** Largest get/gets line before the connection is closed (memcached: unbounded). */
  maxGetLineBytes: number;
  /** Values larger than this cannot be an item: the block is swallowed, not buffered. */
  maxValueBytes: number;
}

/**
 * memcached 1.6.18's key rule, as the server applies it (not protocol.txt's wording):
 * 1..250 bytes, split on spaces only, so any other byte may appear, control characters
 * included (memcaslap's keys start with raw binary bytes). NUL and line feeds are
 * refused as well, since no memcached line can carry them in a key and every key must
 * be reachable over HTTP and the TS client too.
 */
export function keyIsValid(key: string): boolean {
  if (key.length === 0 || key.length > KEY_MAX_BYTES) return false;
  for (let i = 0; i < key.length; i++) {
    const c = key.charCodeAt(i);
    if (c === 0x20 || c === 0x0a || c === 0x00) return false;
  }
  return true;
}

function tokenize(buf: Buffer, start: number, end: number): string[] {
  const tokens: string[] = [];
  let i = start;
  while (i < end) {
    while (i < end && buf[i] === 0x20) i++;
    if (i >= end) break;
    const s = i;
    while (i < end && buf[i] !== 0x20) i++;
    tokens.push(buf.toString('latin1', s, i));
  }
  return tokens;
}

/** strtol/strtoul-style decimal: optional sign, digits, nothing after. */
function parseDecimal(t: string, allowMinus: boolean): bigint | undefined {
  if (!/^[+-]?[0-9]+$/.test(t)) return undefined;
  if (t[0] === '-' && !allowMinus) {
    // strtoul accepts "-0" (and wraps); memcached refuses a wrapped, sign-looking result.
    return /^-0+$/.test(t) ? 0n : undefined;
  }
  return BigInt(t);
}

/** memcached's safe_strtol into int32. */
export function parseI32(t: string): number | undefined {
  const n = parseDecimal(t, true);
  if (n === undefined || n > BigInt(INT32_MAX) || n < -BigInt(INT32_MAX) - 1n) return undefined;
  return Number(n);
}

/** memcached's client flags: strtoul truncated to 32 bits, as 1.6.18 stores them. */
export function parseFlags(t: string): number | undefined {
  const n = parseDecimal(t, false);
  if (n === undefined || n > U64_MAX) return undefined;
  return Number(n & 0xffffffffn);
}

/** memcached's safe_strtoull. */
export function parseU64(t: string): bigint | undefined {
  const n = parseDecimal(t, false);
  if (n === undefined || n > U64_MAX) return undefined;
  return n;
}

function isNoreply(tokens: string[]): boolean {
  return tokens[tokens.length - 1] === 'noreply';
}

const STORE_MODES: Readonly<Record<string, StoreMode>> = {
  set: 'set',
  add: 'add',
  replace: 'replace',
  append: 'append',
  prepend: 'prepend',
  cas: 'cas',
};

/**
 * Parse one command at `offset`. `end` defaults to the buffer length. The caller
 * keeps unconsumed bytes and calls again when more arrive.
 */
export function parseCommand(buf: Buffer, offset: number, limits: ParserLimits, end: number = buf.length): ParseResult {
  const nl = buf.indexOf(0x0a, offset);
  if (nl === -1 || nl >= end) {
    const pending = end - offset;
    if (pending > LINE_MAX_BYTES) {
      let i = offset;
      while (i < end && buf[i] === 0x20) i++;
      const isGet = i - offset <= 100 && (buf.toString('latin1', i, i + 4) === 'get ' || buf.toString('latin1', i, i + 5) === 'gets ');
      if (!isGet) return { type: 'close', reason: 'line too long' };
      if (pending > limits.maxGetLineBytes) return { type: 'close', reason: 'get line too long' };
    }
    return { type: 'need-more' };
  }
  const lineEnd = nl > offset && buf[nl - 1] === 0x0d ? nl - 1 : nl;
  const next = nl + 1;
  const tokens = tokenize(buf, offset, lineEnd);
  if (tokens.length === 0) return { type: 'error', reply: ERR_UNKNOWN, next };
  const name = tokens[0]!;
  const words = tokens.length;
  switch (name) {
    case 'get':
    case 'gets':
      if (words < 2) return { type: 'error', reply: ERR_UNKNOWN, next };
      return retrieval(tokens.slice(1), name === 'gets', next);
    case 'gat':
    case 'gats': {
      if (words < 3) return words === 2 ? gatNoKeys(tokens, next) : { type: 'error', reply: ERR_UNKNOWN, next };
      const exptime = parseI32(tokens[1]!);
      if (exptime === undefined) return { type: 'error', reply: ERR_EXPTIME, next };
      const r = retrieval(tokens.slice(2), name === 'gats', next);
      if (r.type !== 'command' || r.command.kind !== 'get') return r;
      return { type: 'command', command: { kind: 'gat', exptime, keys: r.command.keys, withCas: r.command.withCas }, next };
    }
    case 'set':
    case 'add':
    case 'replace':
    case 'append':
    case 'prepend':
      if (words !== 5 && words !== 6) return { type: 'error', reply: ERR_UNKNOWN, next };
      return storage(buf, STORE_MODES[name]!, tokens, next, end, limits);
    case 'cas':
      if (words !== 6 && words !== 7) return { type: 'error', reply: ERR_UNKNOWN, next };
      return storage(buf, 'cas', tokens, next, end, limits);
    case 'delete': {
      if (words < 2 || words > 4) return { type: 'error', reply: ERR_UNKNOWN, next };
      const key = tokens[1]!;
      const noreply = isNoreply(tokens);
      // Legacy `delete <key> 0` is accepted; any other extra token is a usage error.
      // memcached checks the usage before the key, and noreply silences both errors
      // (found by test/fuzz: `delete <251 bytes> x` is the usage error, `delete <251 bytes> noreply` is silent).
      const extra = words - (noreply ? 3 : 2);
      if (extra > 1 || (extra === 1 && tokens[2] !== '0')) {
        return { type: 'error', reply: noreply ? '' : ERR_DELETE_USAGE, next };
      }
      if (!keyIsValid(key)) return { type: 'error', reply: noreply ? '' : ERR_BAD_FORMAT, next };
      return { type: 'command', command: { kind: 'delete', key, noreply }, next };
    }
    case 'incr':
    case 'decr': {
      if (words !== 3 && words !== 4) return { type: 'error', reply: ERR_UNKNOWN, next };
      const noreply = isNoreply(tokens);
      const key = tokens[1]!;
      if (!keyIsValid(key)) return { type: 'error', reply: noreply ? '' : ERR_BAD_FORMAT, next };
      const delta = parseU64(tokens[2]!);
      if (delta === undefined) return { type: 'error', reply: noreply ? '' : ERR_DELTA, next };
      return { type: 'command', command: { kind: 'delta', incr: name === 'incr', key, delta, noreply }, next };
    }
    case 'touch': {
      if (words !== 3 && words !== 4) return { type: 'error', reply: ERR_UNKNOWN, next };
      const noreply = isNoreply(tokens);
      const key = tokens[1]!;
      if (!keyIsValid(key)) return { type: 'error', reply: noreply ? '' : ERR_BAD_FORMAT, next };
      const exptime = parseI32(tokens[2]!);
      if (exptime === undefined) return { type: 'error', reply: noreply ? '' : ERR_EXPTIME, next };
      return { type: 'command', command: { kind: 'touch', key, exptime, noreply }, next };
    }
    case 'flush_all': {
      if (words > 3) return { type: 'error', reply: ERR_UNKNOWN, next };
      const noreply = isNoreply(tokens);
      // memcached reads the delay whenever there is a token besides a final noreply and
      // ignores a 2nd one (found by test/fuzz: `flush_all 0 x` is OK, `flush_all x 0` an exptime error).
      let delay = 0;
      if (words === 3 || (words === 2 && !noreply)) {
        const d = parseI32(tokens[1]!);
        if (d === undefined) return { type: 'error', reply: noreply ? '' : ERR_EXPTIME, next };
        delay = d;
      }
      return { type: 'command', command: { kind: 'flush_all', delay, noreply }, next };
    }
    case 'version':
      return { type: 'command', command: { kind: 'version' }, next };
    case 'verbosity': {
      if (words !== 2 && words !== 3) return { type: 'error', reply: ERR_UNKNOWN, next };
      const noreply = isNoreply(tokens);
      if (words === 2 && noreply) return { type: 'command', command: { kind: 'verbosity', noreply }, next };
      // memcached reads the level with safe_strtoul (found by test/fuzz: `verbosity -1` is an error,
      // `verbosity 4294967296` is OK).
      if (parseFlags(tokens[1]!) === undefined) return { type: 'error', reply: noreply ? '' : ERR_BAD_FORMAT, next };
      return { type: 'command', command: { kind: 'verbosity', noreply }, next };
    }
    case 'stats':
      return { type: 'command', command: { kind: 'stats', args: tokens.slice(1) }, next };
    case 'quit':
      return { type: 'command', command: { kind: 'quit' }, next };
    case 'mn':
      return { type: 'command', command: { kind: 'mn' }, next };
    case 'mg':
    case 'md':
    case 'ma':
      return meta(name, tokens, next);
    case 'me':
      return metaDebug(tokens, next);
    case 'ms':
      return metaSet(buf, tokens, next, end, limits);
    default:
      return { type: 'error', reply: ERR_UNKNOWN, next };
  }
}

function gatNoKeys(tokens: string[], next: number): ParseResult {
  // `gat <exptime>` with no key answers END, as memcached does.
  const exptime = parseI32(tokens[1]!);
  if (exptime === undefined) return { type: 'error', reply: ERR_EXPTIME, next };
  return { type: 'command', command: { kind: 'gat', exptime, keys: [], withCas: tokens[0] === 'gats' }, next };
}

function retrieval(keys: string[], withCas: boolean, next: number): ParseResult {
  for (const k of keys) {
    // One bad key makes the whole reply that one error line.
    if (!keyIsValid(k)) return { type: 'error', reply: ERR_BAD_FORMAT, next };
  }
  return { type: 'command', command: { kind: 'get', keys, withCas }, next };
}

function storage(buf: Buffer, mode: StoreMode, tokens: string[], lineNext: number, end: number, limits: ParserLimits): ParseResult {
  const noreply = isNoreply(tokens);
  const fail = (reply: string): ParseResult => ({ type: 'error', reply: noreply ? '' : reply, next: lineNext });
  const key = tokens[1]!;
  if (!keyIsValid(key)) return fail(ERR_BAD_FORMAT);
  const flags = parseFlags(tokens[2]!);
  const exptime = parseI32(tokens[3]!);
  const bytes = parseI32(tokens[4]!);
  if (flags === undefined || exptime === undefined || bytes === undefined) return fail(ERR_BAD_FORMAT);
  if (bytes < 0 || bytes > INT32_MAX - 2) return fail(ERR_BAD_FORMAT);
  let cas: bigint | undefined;
  if (mode === 'cas') {
    cas = parseU64(tokens[5]!);
    if (cas === undefined) return fail(ERR_BAD_FORMAT);
  }
  if (bytes > limits.maxValueBytes) {
    return { type: 'command', command: { kind: 'too-large', mode, key, noreply }, next: lineNext, swallow: bytes + 2 };
  }
  const blockEnd = lineNext + bytes + 2;
  if (blockEnd > end) return { type: 'need-more' };
  if (buf[blockEnd - 2] !== 0x0d || buf[blockEnd - 1] !== 0x0a) {
    // memcached consumes <bytes>+2 and parses what follows as commands.
    return { type: 'error', reply: noreply ? '' : ERR_BAD_CHUNK, next: blockEnd };
  }
  const value = Buffer.from(buf.subarray(lineNext, lineNext + bytes));
  return { type: 'command', command: { kind: 'store', mode, key, flags, exptime, value, cas, noreply }, next: blockEnd };
}

// ---- meta commands ----------------------------------------------------------------------

/** Flags memcached 1.6.18's _meta_flag_preparse knows; any other letter is an invalid flag. */
const META_KNOWN = new Set('bNTRlOPLkstcfvhuqFCMJDIE'.split(''));

type MetaParse = { ok: true; base: MetaBase } | { ok: false; reply: string };

/**
 * The flags of a meta command, checked as memcached 1.6.18's _meta_flag_preparse does (found
 * by test/fuzz against a live 1.6.18): a repeated flag, or a byte >= 0x7f (which 1.6.18
 * reports as a duplicate), or an unknown letter stops at once; a bad token does not: every
 * flag is still read and each bad one overwrites the error text, so the LAST bad token names
 * the error (`mg k Tx D` -> invalid numeric delta value). A bad F sets no text of its own,
 * leaving the earlier one or the default `bad command line format`. `b` decodes the key in
 * its place in that order.
 */
function metaFlags(tokens: string[], firstFlag: number, duplicateReply: string, invalidReply: string): MetaParse {
  const key = tokens[1]!;
  const flags: MetaFlag[] = [];
  const seen = new Set<string>();
  let failed = false;
  let bad: string | undefined;
  let keyBytes = key;
  const fail = (reply?: string): void => {
    failed = true;
    if (reply !== undefined) bad = reply;
  };
  for (let i = firstFlag; i < tokens.length; i++) {
    const t = tokens[i]!;
    const letter = t[0]!;
    if (letter.charCodeAt(0) >= 0x7f || seen.has(letter)) return { ok: false, reply: duplicateReply };
    seen.add(letter);
    if (!META_KNOWN.has(letter)) return { ok: false, reply: invalidReply };
    const token = t.slice(1);
    switch (letter) {
      case 'b': {
        const decoded = decodeBase64Key(key);
        if (decoded === undefined) fail('CLIENT_ERROR error decoding key\r\n');
        else keyBytes = decoded;
        break;
      }
      case 'N':
      case 'T':
      case 'R':
        if (parseI32(token) === undefined) fail('CLIENT_ERROR bad token in command line format\r\n');
        break;
      case 'F':
        if (parseFlags(token) === undefined) fail();
        break;
      case 'C':
        if (parseU64(token) === undefined) fail('CLIENT_ERROR bad token in command line format\r\n');
        break;
      case 'M':
        if (t.length !== 2) fail('CLIENT_ERROR incorrect length for M token\r\n');
        break;
      case 'J':
        if (parseU64(token) === undefined) fail('CLIENT_ERROR invalid numeric initial value\r\n');
        break;
      case 'D':
        if (parseU64(token) === undefined) fail('CLIENT_ERROR invalid numeric delta value\r\n');
        break;
    }
    flags.push({ letter, token });
  }
  if (failed) return { ok: false, reply: bad ?? ERR_BAD_FORMAT };
  const base64 = seen.has('b');
  return { ok: true, base: { key: keyBytes, keyToken: base64 ? reencodeKey(keyBytes) : key, base64, flags, quiet: seen.has('q') } };
}

const BASE64_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

/**
 * memcached 1.6.18's base64_decode (Jouni Malinen's), which is lenient: bytes outside the
 * alphabet are skipped, the remaining characters ('=' included) must be a non-zero multiple
 * of 4, and decoding stops after the first block holding padding (found by test/fuzz:
 * `me -10000000 b` decodes '10000000'; a strict decoder refused it).
 */
function decodeBase64Key(text: string): string | undefined {
  const sextets: number[] = [];
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    const v = ch === '=' ? -1 : BASE64_ALPHABET.indexOf(ch);
    if (v !== -1 || ch === '=') sextets.push(v);
  }
  if (sextets.length === 0 || sextets.length % 4 !== 0) return undefined;
  const out: number[] = [];
  for (let i = 0; i < sextets.length; i += 4) {
    const block = sextets.slice(i, i + 4);
    const pad = block.filter((v) => v === -1).length;
    const [a, b, c, d] = block.map((v) => Math.max(v, 0)) as [number, number, number, number];
    out.push(((a << 2) | (b >> 4)) & 0xff, ((b << 4) | (c >> 2)) & 0xff, ((c << 6) | d) & 0xff);
    if (pad > 2) return undefined;
    if (pad > 0) {
      out.length -= pad;
      break;
    }
  }
  if (out.length > KEY_MAX_BYTES) return undefined;
  return Buffer.from(out).toString('latin1');
}

/** The `k` flag echoes a base64 key as 1.6.18 does: the decoded bytes encoded again (`!!YR==` echoes `YQ==`). */
function reencodeKey(key: string): string {
  return Buffer.from(key, 'latin1').toString('base64');
}

function meta(name: 'mg' | 'md' | 'ma', tokens: string[], next: number): ParseResult {
  if (tokens.length < 2) return { type: 'error', reply: ERR_UNKNOWN, next };
  const key = tokens[1]!;
  if (key.length > KEY_MAX_BYTES) return { type: 'error', reply: ERR_BAD_FORMAT, next };
  if (tokens.length + 1 > META_MAX_TOKENS) {
    const reply = name === 'mg' ? 'CLIENT_ERROR options flags are too long\r\n' : 'CLIENT_ERROR options flags too long\r\n';
    return { type: 'error', reply, next };
  }
  const generic = name === 'md' || name === 'ma';
  const parsed = metaFlags(
    tokens,
    2,
    generic ? 'CLIENT_ERROR invalid or duplicate flag\r\n' : 'CLIENT_ERROR duplicate flag\r\n',
    generic ? 'CLIENT_ERROR invalid or duplicate flag\r\n' : 'CLIENT_ERROR invalid flag\r\n',
  );
  // md and ma answer every flag problem with one message, as 1.6.18 does.
  if (!parsed.ok) return { type: 'error', reply: generic ? 'CLIENT_ERROR invalid or duplicate flag\r\n' : parsed.reply, next };
  if (!keyIsValid(parsed.base.key)) return { type: 'error', reply: ERR_BAD_FORMAT, next };
  // ma's mode comes before the opaque's length, and 1.6.18 knows only I, D, + and - (found
  // by test/fuzz: `ma k MX O<33 bytes>` is an invalid mode, `ma k Mi` is refused too).
  const mode = name === 'ma' ? parsed.base.flags.find((f) => f.letter === 'M') : undefined;
  if (mode && !['I', 'D', '+', '-'].includes(mode.token)) return { type: 'error', reply: 'CLIENT_ERROR invalid mode for ma M token\r\n', next };
  const opaque = parsed.base.flags.find((f) => f.letter === 'O');
  if (opaque && opaque.token.length + 1 > META_OPAQUE_MAX_BYTES) return { type: 'error', reply: 'CLIENT_ERROR opaque token too long\r\n', next };
  return { type: 'command', command: { kind: name, ...parsed.base }, next };
}

/**
 * `me <key> [b]`: memcached 1.6.18's process_meta_command reads only a `b` right after the
 * key and ignores every other token; each of its errors is `bad command line format`
 * (found by test/fuzz: `me` and `me k x y` differed).
 */
function metaDebug(tokens: string[], next: number): ParseResult {
  const keyToken = tokens[1];
  if (keyToken === undefined || keyToken.length > KEY_MAX_BYTES) return { type: 'error', reply: ERR_BAD_FORMAT, next };
  const base64 = tokens[2] === 'b';
  const key = base64 ? decodeBase64Key(keyToken) : keyToken;
  if (key === undefined || !keyIsValid(key)) return { type: 'error', reply: ERR_BAD_FORMAT, next };
  const flags: MetaFlag[] = base64 ? [{ letter: 'b', token: '' }] : [];
  return { type: 'command', command: { kind: 'me', key, keyToken: base64 ? reencodeKey(key) : keyToken, base64, flags, quiet: false }, next };
}

function metaSet(buf: Buffer, tokens: string[], lineNext: number, end: number, limits: ParserLimits): ParseResult {
  if (tokens.length < 2) return { type: 'error', reply: ERR_UNKNOWN, next: lineNext };
  const key = tokens[1]!;
  if (key.length > KEY_MAX_BYTES || tokens.length === 2) return { type: 'error', reply: ERR_BAD_FORMAT, next: lineNext };
  if (tokens.length + 1 > META_MAX_TOKENS) return { type: 'error', reply: 'CLIENT_ERROR options flags too long\r\n', next: lineNext };
  const bytes = parseI32(tokens[2]!);
  if (bytes === undefined || bytes < 0 || bytes > INT32_MAX - 2) return { type: 'error', reply: ERR_BAD_FORMAT, next: lineNext };
  const swallow = bytes + 2;
  // From here on every error swallows the data block, as memcached does.
  const parsed = metaFlags(tokens, 3, 'CLIENT_ERROR duplicate flag\r\n', 'CLIENT_ERROR invalid flag\r\n');
  const failSwallow = (reply: string): ParseResult => {
    const blockEnd = lineNext + swallow;
    if (blockEnd <= end) return { type: 'error', reply, next: blockEnd };
    return { type: 'error', reply, next: lineNext, swallow };
  };
  if (!parsed.ok) return failSwallow(parsed.reply);
  const mode = parsed.base.flags.find((f) => f.letter === 'M');
  if (mode && !'EAPRS'.includes(mode.token[0] ?? '?')) return failSwallow('CLIENT_ERROR invalid mode for ms M token\r\n');
  if (!keyIsValid(parsed.base.key)) return failSwallow(ERR_BAD_FORMAT);
  const opaque = parsed.base.flags.find((f) => f.letter === 'O');
  if (opaque && opaque.token.length + 1 > META_OPAQUE_MAX_BYTES) return failSwallow('CLIENT_ERROR opaque token too long\r\n');
  if (bytes > limits.maxValueBytes) {
    return {
      type: 'command',
      command: { kind: 'too-large', mode: 'set', key: parsed.base.key, noreply: false, meta: parsed.base },
      next: lineNext,
      swallow,
    };
  }
  const blockEnd = lineNext + swallow;
  if (blockEnd > end) return { type: 'need-more' };
  if (buf[blockEnd - 2] !== 0x0d || buf[blockEnd - 1] !== 0x0a) return { type: 'error', reply: ERR_BAD_CHUNK, next: blockEnd };
  const value = Buffer.from(buf.subarray(lineNext, lineNext + bytes));
  const command: Command = { kind: 'ms', value, ...parsed.base };
  return { type: 'command', command, next: blockEnd };
}

// ---- skimming: framing a command the node will refuse, without parsing it ----------------

/** Where a skimmed command ends, and what its refusal looks like. */
export interface Skim {
  /** Offset just past the command line. */
  next: number;
  /** Data-block bytes (value and its \r\n) after the line; 0 for commands without one. */
  block: number;
  /** A classic noreply command: its refusal is silent. */
  noreply: boolean;
  /** The command word, for metrics (one of a fixed set of literals). */
  command: string;
}

/** Command words a refusal may skim: [word, token index of the data length or -1, may end in noreply]. */
const SKIMMABLE = new Map<string, readonly [number, boolean]>([
  ['get', [-1, false]],
  ['gets', [-1, false]],
  ['gat', [-1, false]],
  ['gats', [-1, false]],
  ['delete', [-1, true]],
  ['incr', [-1, true]],
  ['decr', [-1, true]],
  ['touch', [-1, true]],
  ['set', [4, true]],
  ['add', [4, true]],
  ['replace', [4, true]],
  ['append', [4, true]],
  ['prepend', [4, true]],
  ['cas', [4, true]],
  ['mg', [-1, false]],
  ['md', [-1, false]],
  ['ma', [-1, false]],
]);
/** The skimmable words by length, for a match on bytes (no string made per command). */
const SKIM_BY_LENGTH: ReadonlyArray<readonly string[]> = Array.from({ length: 8 }, (_, n) => [...SKIMMABLE.keys()].filter((w) => w.length === n));

function bytesAre(buf: Buffer, start: number, word: string): boolean {
  for (let i = 0; i < word.length; i++) if (buf[start + i] !== word.charCodeAt(i)) return false;
  return true;
}

/**
 * A decimal of at most 9 digits (optionally negative): inside every range memcached and
 * parseCommand accept for flags, exptime and cas, so it frames the same for both.
 */
function decimalAt(buf: Buffer, start: number, end: number, signed: boolean): boolean {
  if (signed && buf[start] === 0x2d) start++;
  if (end - start < 1 || end - start > 9) return false;
  for (let i = start; i < end; i++) if (buf[i]! < 0x30 || buf[i]! > 0x39) return false;
  return true;
}

function wordAt(buf: Buffer, start: number, end: number): string | undefined {
  const candidates = SKIM_BY_LENGTH[end - start];
  if (candidates === undefined) return undefined;
  for (const w of candidates) if (bytesAre(buf, start, w)) return w;
  return undefined;
}
const MAX_TOKENS = 24;
const tokenStarts = new Int32Array(MAX_TOKENS);
const tokenEnds = new Int32Array(MAX_TOKENS);

/**
 * Frames the complete, well-formed command at `off` without building it: for a node in
 * overload, whose refusal (`SERVER_ERROR busy`) needs only to know where the command ends
 * and whether it is silent. Skimming costs an indexOf and a scan of the line; parsing costs
 * strings and objects per command, as much as serving a cache hit.
 *
 * Returns false for anything it does not frame exactly as parseCommand would (an
 * incomplete or over-long line, another command, a malformed or oversized one, a data
 * block without its \r\n): the caller parses those. On true, `out` says where the line
 * ends and how many data bytes follow it (all of them may not have arrived yet).
 */
export function skimCommand(buf: Buffer, off: number, limits: ParserLimits, out: Skim): boolean {
  const eol = buf.indexOf(0x0a, off);
  if (eol < 0 || eol - off > 2048) return false;
  const end = eol > off && buf[eol - 1] === 0x0d ? eol - 1 : eol;
  let n = 0;
  let start = off;
  for (let i = off; i <= end; i++) {
    if (i === end || buf[i] === 0x20) {
      if (i === start || n === MAX_TOKENS) return false; // an empty token (two spaces), or too many
      tokenStarts[n] = start;
      tokenEnds[n] = i;
      n++;
      start = i + 1;
    } else if (buf[i] === 0x00 || buf[i] === 0x0d) return false;
  }
  if (n < 2) return false;
  const word = wordAt(buf, tokenStarts[0]!, tokenEnds[0]!);
  if (word === undefined) return false;
  const [lengthAt, classicNoreply] = SKIMMABLE.get(word)!;
  // Keys: 1..250 bytes (the scan above refused NUL; meta base64 keys are longer than 250 only when invalid).
  if (tokenEnds[1]! - tokenStarts[1]! > KEY_MAX_BYTES) return false;
  const noreply = classicNoreply && tokenEnds[n - 1]! - tokenStarts[n - 1]! === 7 && bytesAre(buf, tokenStarts[n - 1]!, 'noreply');
  let block = 0;
  if (lengthAt >= 0) {
    // set k f e bytes [noreply] | cas k f e bytes c [noreply]. A line memcached refuses
    // (bad flags, exptime or cas) does not swallow its block, so those must be numbers.
    const want = word === 'cas' ? 6 : 5;
    if (n !== want + (noreply ? 1 : 0)) return false;
    if (!decimalAt(buf, tokenStarts[2]!, tokenEnds[2]!, false) || !decimalAt(buf, tokenStarts[3]!, tokenEnds[3]!, true)) return false;
    if (word === 'cas' && !decimalAt(buf, tokenStarts[5]!, tokenEnds[5]!, false)) return false;
    const from = tokenStarts[lengthAt]!;
    const to = tokenEnds[lengthAt]!;
    if (to - from > 10) return false;
    let bytes = 0;
    for (let i = from; i < to; i++) {
      const d = buf[i]! - 0x30;
      if (d < 0 || d > 9) return false;
      bytes = bytes * 10 + d;
    }
    if (bytes > limits.maxValueBytes) return false;
    block = bytes + 2;
    // A block that has arrived must end in \r\n, as parseCommand checks (else its error).
    const blockEnd = eol + 1 + bytes;
    if (blockEnd + 1 < buf.length && (buf[blockEnd] !== 0x0d || buf[blockEnd + 1] !== 0x0a)) return false;
  }
  out.next = eol + 1;
  out.block = block;
  out.noreply = noreply;
  out.command = word;
  return true;
}
