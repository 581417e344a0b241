// Executes parsed memcached commands against a node's LocalKv and formats the replies
// byte for byte as memcached 1.6.18 does. One exhaustive switch over the command kinds;
// the status -> reply mapping lives in one table per command family.
import { casText, type StoredRecord } from '../../storage/record.js';
import { expiryFromExptime, REALTIME_MAXDELTA_S, type LocalKv, type Maybe, type StoreMode, type StoreStatus } from '../../kv/local-kv.js';
import type { Command, MetaBase, MetaFlag } from './commands.js';
import { parseFlags, parseI32, parseU64 } from './parser.js';

/** A reply: text (latin1, so keys round-trip) and value bytes, written in order. */
export type Reply = string | Buffer | ReadonlyArray<string | Buffer>;

export interface McContext {
  readonly kv: LocalKv;
  /** What `version` answers (after "VERSION "). */
  readonly version: string;
  /** `stats [group]` lines as name/value pairs; undefined for an unknown group (-> ERROR). */
  stats(args: readonly string[]): Array<readonly [string, string | number]> | undefined;
  /** `stats reset` and friends answer with a fixed word instead of a list. */
  statsCommand?(args: readonly string[]): string | undefined;
  /** In a cluster: runs a command where its key lives (here, or forwarded to the owner). */
  dispatch?(cmd: Command): Maybe<Reply>;
}

const STORE_REPLY: Readonly<Record<StoreStatus, string>> = {
  STORED: 'STORED\r\n',
  NOT_STORED: 'NOT_STORED\r\n',
  EXISTS: 'EXISTS\r\n',
  NOT_FOUND: 'NOT_FOUND\r\n',
  TOO_LARGE: 'SERVER_ERROR object too large for cache\r\n',
};

const META_STORE_CODE: Readonly<Record<Exclude<StoreStatus, 'TOO_LARGE'>, string>> = {
  STORED: 'HD',
  NOT_STORED: 'NS',
  EXISTS: 'EX',
  NOT_FOUND: 'NF',
};

const NON_NUMERIC = 'CLIENT_ERROR cannot increment or decrement non-numeric value\r\n';
const CRLF = '\r\n';

/** Absolute expiry in ms for a memcached exptime; an already-expired time maps to 1 (the epoch). */
export function expiryMs(exptime: number, nowMs: number): number {
  const e = expiryFromExptime(exptime, nowMs);
  return e === -1 ? 1 : e;
}

/** memcached's EXPTIME_TO_POSITIVE_TIME for meta tokens: a negative TTL expires at once. */
function metaExpiryMs(token: string, nowMs: number): number {
  const t = parseI32(token) ?? 0;
  return expiryMs(t < 0 ? REALTIME_MAXDELTA_S + 1 : t, nowMs);
}

function then<T, R>(v: Maybe<T>, f: (t: T) => R): Maybe<R> {
  return v instanceof Promise ? v.then(f) : f(v);
}

function quiet(noreply: boolean, reply: string): string {
  return noreply ? '' : reply;
}

function valueLine(key: string, r: StoredRecord, withCas: boolean): string {
  return withCas
    ? `VALUE ${key} ${r.flags} ${r.value.length} ${casText(r.version.ts)}\r\n`
    : `VALUE ${key} ${r.flags} ${r.value.length}\r\n`;
}

export function execute(cmd: Command, ctx: McContext): Maybe<Reply> {
  const kv = ctx.kv;
  switch (cmd.kind) {
    case 'get':
      return retrieve(kv, cmd.keys, cmd.withCas, (k) => kv.get(k));
    case 'gat': {
      const exp = expiryMs(cmd.exptime, kv.now());
      return retrieve(kv, cmd.keys, cmd.withCas, (k) => kv.getAndTouch(k, exp));
    }
    case 'store': {
      const exp = expiryMs(cmd.exptime, kv.now());
      return then(kv.storeItem(cmd.mode, cmd.key, cmd.value, cmd.flags, exp, cmd.cas), (r) => {
        if (cmd.noreply) return '';
        if (r.status === 'TOO_LARGE' && (cmd.mode === 'append' || cmd.mode === 'prepend')) {
          return 'SERVER_ERROR out of memory storing object\r\n';
        }
        return STORE_REPLY[r.status];
      });
    }
    case 'too-large':
      if (cmd.meta) return then(kv.rejectTooLarge('set', cmd.key), () => 'SERVER_ERROR object too large for cache\r\n');
      return then(kv.rejectTooLarge(cmd.mode, cmd.key), () => quiet(cmd.noreply, STORE_REPLY.TOO_LARGE));
    case 'delete':
      return then(kv.delete(cmd.key), (r) => quiet(cmd.noreply, r === 'DELETED' ? 'DELETED\r\n' : 'NOT_FOUND\r\n'));
    case 'delta':
      return then(kv.delta(cmd.key, cmd.incr, cmd.delta), (r) => {
        if (cmd.noreply) return '';
        switch (r.status) {
          case 'OK':
            return `${r.value}\r\n`;
          case 'NOT_FOUND':
            return 'NOT_FOUND\r\n';
          case 'NON_NUMERIC':
            return NON_NUMERIC;
          case 'EXISTS':
            return 'EXISTS\r\n';
        }
      });
    case 'touch':
      return then(kv.touch(cmd.key, expiryMs(cmd.exptime, kv.now())), (r) => quiet(cmd.noreply, `${r}\r\n`));
    case 'flush_all':
      return then(kv.flushAll(cmd.delay), () => quiet(cmd.noreply, 'OK\r\n'));
    case 'version':
      return `VERSION ${ctx.version}\r\n`;
    case 'verbosity':
      return quiet(cmd.noreply, 'OK\r\n');
    case 'stats':
      return stats(ctx, cmd.args);
    case 'quit':
      return '';
    case 'mn':
      return 'MN\r\n';
    case 'mg':
      return metaGet(kv, cmd);
    case 'ms':
      return metaSet(kv, cmd);
    case 'md':
      return metaDelete(kv, cmd);
    case 'ma':
      return metaArithmetic(kv, cmd);
    case 'me':
      return metaDebug(kv, cmd);
    default: {
      const never: never = cmd;
      throw new Error(`unhandled command ${JSON.stringify(never)}`);
    }
  }
}

function retrieve(kv: LocalKv, keys: readonly string[], withCas: boolean, fetch: (k: string) => Maybe<StoredRecord | undefined>): Maybe<Reply> {
  void kv;
  const parts: Array<string | Buffer> = [];
  let waits: Promise<unknown>[] | undefined;
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i]!;
    const r = fetch(key);
    if (r instanceof Promise) {
      // Hold this key's slot; fill it in when its write is durable.
      const at = parts.length;
      parts.push('', '', '');
      (waits ??= []).push(
        r.then((rec) => {
          if (rec) {
            parts[at] = valueLine(key, rec, withCas);
            parts[at + 1] = rec.value;
            parts[at + 2] = CRLF;
          }
        }),
      );
    } else if (r) {
      parts.push(valueLine(key, r, withCas), r.value, CRLF);
    }
  }
  parts.push('END\r\n');
  return waits ? Promise.all(waits).then(() => parts) : parts;
}

function stats(ctx: McContext, args: readonly string[]): Reply {
  const word = ctx.statsCommand?.(args);
  if (word !== undefined) return word;
  const lines = ctx.stats(args);
  if (!lines) return 'ERROR\r\n';
  let out = '';
  for (const [name, value] of lines) out += `STAT ${name} ${value}\r\n`;
  return out + 'END\r\n';
}

// ---- meta commands ------------------------------------------------------------------------

function flagOf(m: MetaBase, letter: string): MetaFlag | undefined {
  return m.flags.find((f) => f.letter === letter);
}

/** ` k<key>` (base64 and ` b` under the b flag), as memcached's META_KEY writes it. */
function metaKey(m: MetaBase): string {
  return m.base64 ? ` k${m.keyToken} b` : ` k${m.key}`;
}

/** The O and k return flags, in request order: what every meta reply echoes. */
function echoFlags(m: MetaBase): string {
  let out = '';
  for (const f of m.flags) {
    if (f.letter === 'O') out += ` O${f.token}`;
    else if (f.letter === 'k') out += metaKey(m);
  }
  return out;
}

function ttlText(r: StoredRecord, now: number): string {
  if (r.expiresAtMs === 0) return '-1';
  return String(Math.max(0, Math.ceil((r.expiresAtMs - now) / 1000)));
}

function metaGet(kv: LocalKv, m: MetaBase): Maybe<Reply> {
  const now = kv.now();
  const waits: Promise<unknown>[] = [];
  const track = <T>(v: Maybe<T>): T | undefined => {
    if (v instanceof Promise) {
      waits.push(v);
      return undefined;
    }
    return v;
  };
  let r = kv.metaLookup(m.key);
  // Like get: never show a value whose write is not durable yet.
  const pending = kv.store.pending(m.key);
  if (pending) waits.push(pending);
  let created = false;
  const vivify = flagOf(m, 'N');
  if (!r && vivify) {
    const rec = kv.vivify(m.key, metaExpiryMs(vivify.token, now));
    r = rec instanceof Promise ? kv.peek(m.key) : rec;
    if (rec instanceof Promise) waits.push(rec);
    created = true;
  }
  if (!r) {
    const reply = m.quiet ? '' : `EN${echoFlags(m)}\r\n`;
    return waits.length ? Promise.all(waits).then(() => reply) : reply;
  }
  const state = kv.metaState(m.key);
  const tokenSent = !created && (state?.winTokenSent ?? false);
  let won = created;
  let head = flagOf(m, 'v') ? `VA ${r.value.length}` : 'HD';
  for (const f of m.flags) {
    switch (f.letter) {
      case 'T': {
        const updated = track(kv.setExpiry(m.key, metaExpiryMs(f.token, now)));
        r = updated ?? kv.peek(m.key) ?? r;
        break;
      }
      case 'R': {
        const recacheAt = metaExpiryMs(f.token, now);
        if (!tokenSent && !created && r.expiresAtMs !== 0 && r.expiresAtMs < recacheAt) won = true;
        break;
      }
      case 's':
        head += ` s${r.value.length}`;
        break;
      case 't':
        head += ` t${ttlText(r, now)}`;
        break;
      case 'c':
        head += ` c${casText(r.version.ts)}`;
        break;
      case 'f':
        head += ` f${r.flags}`;
        break;
      case 'l':
        head += ` l${Math.max(0, Math.floor((now - r.accessedMs) / 1000))}`;
        break;
      case 'h':
        head += ` h${r.fetched ? 1 : 0}`;
        break;
      case 'O':
        head += ` O${f.token}`;
        break;
      case 'k':
        head += metaKey(m);
        break;
    }
  }
  if (tokenSent) head += ' Z';
  if (state?.stale) {
    head += ' X';
    if (!tokenSent) won = true;
  }
  if (won) {
    head += ' W';
    kv.claimWin(m.key);
  }
  if (!flagOf(m, 'u')) kv.noteFetch(r);
  const reply: Reply = flagOf(m, 'v') ? [head + CRLF, r.value, CRLF] : head + CRLF;
  return waits.length ? Promise.all(waits).then(() => reply) : reply;
}

const MS_MODES: Readonly<Record<string, StoreMode>> = { S: 'set', E: 'add', A: 'append', P: 'prepend', R: 'replace' };

function metaSet(kv: LocalKv, m: MetaBase & { value: Buffer }): Maybe<Reply> {
  const now = kv.now();
  const modeFlag = flagOf(m, 'M');
  let mode: StoreMode = modeFlag ? MS_MODES[modeFlag.token]! : 'set';
  const casFlag = flagOf(m, 'C');
  const cas = casFlag ? parseU64(casFlag.token) : undefined;
  const flagsFlag = flagOf(m, 'F');
  const clientFlags = flagsFlag ? parseFlags(flagsFlag.token) ?? 0 : 0;
  const ttl = flagOf(m, 'T');
  const exp = ttl ? metaExpiryMs(ttl.token, now) : 0;
  let precheck: StoreStatus | undefined;
  if (cas !== undefined) {
    if (mode === 'set' || mode === 'replace') mode = 'cas';
    else if (mode === 'append' || mode === 'prepend') {
      const cur = kv.peek(m.key);
      if (cur && casText(cur.version.ts) !== cas.toString()) precheck = 'EXISTS';
    }
  }
  const result = precheck ? { status: precheck } : kv.storeItem(mode, m.key, m.value, clientFlags, exp, mode === 'cas' ? cas : undefined);
  return then(result, (r) => {
    if (r.status === 'TOO_LARGE') return 'SERVER_ERROR object too large for cache\r\n';
    if (r.status === 'STORED' && flagOf(m, 'I') === undefined && m.quiet) return '';
    let out = META_STORE_CODE[r.status];
    for (const f of m.flags) {
      if (f.letter === 'O') out += ` O${f.token}`;
      else if (f.letter === 'k') out += metaKey(m);
      else if (f.letter === 'c' && r.record) out += ` c${casText(r.record.version.ts)}`;
    }
    if (r.status === 'STORED' && m.quiet) return '';
    return out + CRLF;
  });
}

function metaDelete(kv: LocalKv, m: MetaBase): Maybe<Reply> {
  const casFlag = flagOf(m, 'C');
  const cas = casFlag ? parseU64(casFlag.token) : undefined;
  const echo = echoFlags(m);
  if (flagOf(m, 'I')) {
    // Invalidate: keep the item, mark it stale (next fetch wins the right to recache), new cas.
    const cur = kv.peek(m.key);
    if (!cur) return `NF${echo}\r\n`;
    if (cas !== undefined && casText(cur.version.ts) !== cas.toString()) return `EX${echo}\r\n`;
    const ttl = flagOf(m, 'T');
    const exp = ttl ? metaExpiryMs(ttl.token, kv.now()) : cur.expiresAtMs;
    const written = kv.storeItem('set', m.key, cur.value, cur.flags, exp);
    // Marked now, not when durable: a pipelined mg right behind must see it stale.
    kv.markStale(m.key);
    return then(written, () => (m.quiet ? '' : `HD${echo}\r\n`));
  }
  return then(kv.delete(m.key, cas), (r) => {
    if (r === 'DELETED') return m.quiet ? '' : `HD${echo}\r\n`;
    return r === 'EXISTS' ? `EX${echo}\r\n` : `NF${echo}\r\n`;
  });
}

function metaArithmetic(kv: LocalKv, m: MetaBase): Maybe<Reply> {
  const now = kv.now();
  const modeFlag = flagOf(m, 'M');
  let incr = true;
  if (modeFlag) {
    const c = modeFlag.token;
    if (c === 'I' || c === 'i' || c === '+') incr = true;
    else if (c === 'D' || c === 'd' || c === '-') incr = false;
    else return 'CLIENT_ERROR invalid mode for ma M token\r\n';
  }
  const deltaFlag = flagOf(m, 'D');
  const delta = deltaFlag ? parseU64(deltaFlag.token)! : 1n;
  const casFlag = flagOf(m, 'C');
  const casIn = casFlag ? parseU64(casFlag.token) : undefined;
  const viv = flagOf(m, 'N');
  const initialFlag = flagOf(m, 'J');
  const ttl = flagOf(m, 'T');
  const create = viv ? { initial: initialFlag ? parseU64(initialFlag.token)! : 0n, expiresAtMs: metaExpiryMs(viv.token, now) } : undefined;
  const result = kv.delta(m.key, incr, delta, { casIn, create, expiresAtMs: ttl ? metaExpiryMs(ttl.token, now) : undefined });
  return then(result, (r) => {
    switch (r.status) {
      case 'NON_NUMERIC':
        return NON_NUMERIC;
      case 'NOT_FOUND':
        return `NF${echoFlags(m)}\r\n`;
      case 'EXISTS':
        return `EX${echoFlags(m)}\r\n`;
      case 'OK': {
        if (m.quiet) return '';
        const text = r.value.toString();
        let head = flagOf(m, 'v') ? `VA ${text.length}` : 'HD';
        for (const f of m.flags) {
          if (f.letter === 'c') head += ` c${casText(r.record.version.ts)}`;
          else if (f.letter === 't') head += ` t${ttlText(r.record, now)}`;
          else if (f.letter === 'O') head += ` O${f.token}`;
          else if (f.letter === 'k') head += metaKey(m);
        }
        return flagOf(m, 'v') ? `${head}\r\n${text}\r\n` : `${head}\r\n`;
      }
    }
  });
}

function metaDebug(kv: LocalKv, m: MetaBase): Reply {
  const r = kv.peek(m.key);
  if (!r) return 'EN\r\n';
  const now = kv.now();
  const exp = r.expiresAtMs === 0 ? -1 : Math.max(0, Math.ceil((r.expiresAtMs - now) / 1000));
  const la = Math.max(0, Math.floor((now - r.accessedMs) / 1000));
  const size = 48 + 8 + m.key.length + 1 + r.value.length + 2 + (r.flags !== 0 ? 4 : 0);
  return `ME ${m.keyToken} exp=${exp} la=${la} cas=${casText(r.version.ts)} fetch=${r.fetched ? 'yes' : 'no'} cls=1 size=${size}\r\n`;
}
