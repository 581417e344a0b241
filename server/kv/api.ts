// The structured key-value API that HTTP, the TypeScript client and the internal `kv`
// RPC speak (the memcached front-end speaks its own commands). One request type, one
// result type, plain data on the wire: keys and values as bytes, 64-bit numbers (cas
// uniques, counters) as decimal text, times as milliseconds.
//
// `LocalKvApi` runs a request on this node's LocalKv; in a cluster, a router decides
// whether to run it here or send it to the owner (server/cluster/kv-router.ts).
import { casText, casUnique } from '../storage/record.js';
import type { LocalKv, Maybe, StoreMode } from './local-kv.js';
import { keyIsValid } from '../protocol/memcached/parser.js';

/** Per-request replication options (TS client): quorum sizes, and siblings on a get. */
export interface KvOptions {
  r?: number;
  w?: number;
  /** get: return every concurrent version (KvResult.siblings) instead of one LWW winner. */
  siblings?: boolean;
}

export type KvRequest = KvOptions &
  (
    | { op: 'get'; key: string }
    | { op: StoreMode; key: string; value: Buffer; flags: number; ttlMs: number; cas?: string }
    | { op: 'delete'; key: string; cas?: string }
    | { op: 'incr' | 'decr'; key: string; delta: string; initial?: string; ttlMs?: number }
    | { op: 'touch'; key: string; ttlMs: number }
  );

export interface KvItem {
  readonly value: Buffer;
  readonly flags: number;
  /** The memcached cas unique, as decimal text. */
  readonly cas: string;
  /** Absolute expiry (Unix ms), 0 = never. */
  readonly expiresAtMs: number;
}

export type KvStatus = 'OK' | 'NOT_FOUND' | 'NOT_STORED' | 'EXISTS' | 'TOO_LARGE' | 'NON_NUMERIC';

export interface KvResult {
  readonly status: KvStatus;
  readonly item?: KvItem;
  /** incr/decr: the new value. */
  readonly value?: string;
  /** get with `siblings`: every live concurrent version, newest first (item is the first). */
  readonly siblings?: KvItem[];
}

/** ttl in ms from now -> absolute expiry; 0 = never, negative = already expired. */
export function expiryFromTtlMs(ttlMs: number, nowMs: number): number {
  if (ttlMs === 0) return 0;
  if (ttlMs < 0) return 1;
  return nowMs + ttlMs;
}

function parseU64Text(t: string | undefined): bigint | undefined {
  if (t === undefined || !/^[0-9]{1,20}$/.test(t)) return undefined;
  const n = BigInt(t);
  return n < 1n << 64n ? n : undefined;
}

export class KvRequestError extends Error {
  readonly code = 'BAD_REQUEST';
}

function then<T, R>(v: Maybe<T>, f: (t: T) => R): Maybe<R> {
  return v instanceof Promise ? v.then(f) : f(v);
}

const OPS = new Set(['get', 'set', 'add', 'replace', 'append', 'prepend', 'cas', 'delete', 'incr', 'decr', 'touch']);

/**
 * A request as it arrives over RPC (from a node or the TS client), checked field by field:
 * keys may come as text or bytes, values as bytes. Anything else is a BAD_REQUEST.
 */
export function kvRequestFromWire(w: unknown): KvRequest {
  const r = w as Record<string, unknown> | null;
  if (!r || typeof r !== 'object' || typeof r.op !== 'string' || !OPS.has(r.op)) throw new KvRequestError('unknown op');
  const key = r.key instanceof Uint8Array ? Buffer.from(r.key).toString('latin1') : r.key;
  if (typeof key !== 'string' || !keyIsValid(key)) throw new KvRequestError('key must be 1 to 250 bytes with no space, NUL or line feed');
  const num = (v: unknown, name: string): number => {
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new KvRequestError(`${name} must be a number`);
    return v;
  };
  const text = (v: unknown, name: string): string | undefined => {
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'string') throw new KvRequestError(`${name} must be decimal text`);
    return v;
  };
  const opts: KvOptions = {};
  for (const name of ['r', 'w'] as const) {
    const v = r[name];
    if (v === undefined || v === null) continue;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 64) throw new KvRequestError(`${name} must be a positive integer`);
    opts[name] = v;
  }
  if (r.siblings !== undefined && r.siblings !== null) {
    if (typeof r.siblings !== 'boolean') throw new KvRequestError('siblings must be a boolean');
    if (r.siblings) opts.siblings = true;
  }
  return { ...opts, ...requestBody(r as Record<string, unknown> & { op: string }, key, num, text) };
}

function requestBody(
  r: Record<string, unknown> & { op: string },
  key: string,
  num: (v: unknown, name: string) => number,
  text: (v: unknown, name: string) => string | undefined,
): KvRequest {
  switch (r.op) {
    case 'get':
      return { op: 'get', key };
    case 'delete':
      return { op: 'delete', key, ...(text(r.cas, 'cas') !== undefined ? { cas: text(r.cas, 'cas')! } : {}) };
    case 'touch':
      return { op: 'touch', key, ttlMs: num(r.ttlMs, 'ttlMs') };
    case 'incr':
    case 'decr': {
      const initial = text(r.initial, 'initial');
      return { op: r.op, key, delta: text(r.delta, 'delta') ?? '1', ...(initial !== undefined ? { initial, ttlMs: num(r.ttlMs ?? 0, 'ttlMs') } : {}) };
    }
    default: {
      if (!(r.value instanceof Uint8Array)) throw new KvRequestError('value must be bytes');
      // A copy: decoded bytes are a view into the whole socket read, which a stored value must not pin.
      const value = Buffer.from(r.value);
      const flags = num(r.flags ?? 0, 'flags');
      if (!Number.isInteger(flags) || flags < 0 || flags > 0xffffffff) throw new KvRequestError('flags must be an unsigned 32-bit integer');
      const cas = text(r.cas, 'cas');
      return { op: r.op as StoreMode, key, value, flags, ttlMs: num(r.ttlMs ?? 0, 'ttlMs'), ...(cas !== undefined ? { cas } : {}) };
    }
  }
}

/** The position-independent part: a request run against this node's LocalKv. */
export class LocalKvApi {
  constructor(private readonly kv: LocalKv) {}

  run(req: KvRequest): Maybe<KvResult> {
    const kv = this.kv;
    const now = kv.now();
    switch (req.op) {
      case 'get':
        if (req.siblings) {
          return then(kv.getVersions(req.key), (vs) =>
            vs.length === 0 ? { status: 'NOT_FOUND' as const } : { status: 'OK' as const, item: item(vs[0]!), siblings: vs.map(item) },
          );
        }
        return then(kv.get(req.key), (r) => (r ? { status: 'OK' as const, item: item(r) } : { status: 'NOT_FOUND' as const }));
      case 'set':
      case 'add':
      case 'replace':
      case 'append':
      case 'prepend':
      case 'cas': {
        let cas: bigint | undefined;
        if (req.op === 'cas') {
          cas = parseU64Text(req.cas);
          if (cas === undefined) throw new KvRequestError('cas must be a decimal unsigned 64-bit number');
        }
        return then(kv.storeItem(req.op, req.key, req.value, req.flags, expiryFromTtlMs(req.ttlMs, now), cas), (r) => {
          if (r.status === 'STORED') return { status: 'OK' as const, item: item(r.record!) };
          return { status: r.status };
        });
      }
      case 'delete': {
        const cas = req.cas === undefined ? undefined : parseU64Text(req.cas);
        if (req.cas !== undefined && cas === undefined) throw new KvRequestError('cas must be a decimal unsigned 64-bit number');
        return then(kv.delete(req.key, cas), (r) => ({ status: r === 'DELETED' ? ('OK' as const) : r }));
      }
      case 'incr':
      case 'decr': {
        const delta = parseU64Text(req.delta);
        if (delta === undefined) throw new KvRequestError('delta must be a decimal unsigned 64-bit number');
        const initial = req.initial === undefined ? undefined : parseU64Text(req.initial);
        if (req.initial !== undefined && initial === undefined) throw new KvRequestError('initial must be a decimal unsigned 64-bit number');
        const create = initial === undefined ? undefined : { initial, expiresAtMs: expiryFromTtlMs(req.ttlMs ?? 0, now) };
        return then(kv.delta(req.key, req.op === 'incr', delta, create ? { create } : {}), (r) => {
          if (r.status === 'OK') return { status: 'OK' as const, value: r.value.toString(), item: item(r.record) };
          return { status: r.status };
        });
      }
      case 'touch':
        return then(kv.touch(req.key, expiryFromTtlMs(req.ttlMs, now)), (r) => ({ status: r === 'TOUCHED' ? ('OK' as const) : r }));
      default: {
        const never: never = req;
        throw new KvRequestError(`unknown op ${JSON.stringify((never as { op?: unknown }).op)}`);
      }
    }
  }
}

function item(r: { value: Buffer; flags: number; version: { ts: { wallMs: number; logical: number } }; expiresAtMs: number }): KvItem {
  return { value: r.value, flags: r.flags, cas: casText(r.version.ts), expiresAtMs: r.expiresAtMs };
}

export { casUnique };
