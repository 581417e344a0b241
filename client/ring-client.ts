// The TypeScript client of a ringkv cluster: Centrifuge's lookup library. It holds a copy
// of the master's lease table (pulled at connect, every refreshMs, and at once after a
// NOT_OWNER answer), hashes each key to its ring position and sends the request straight
// to the owner's RPC address with the generation it sees, so a deposed owner refuses it.
// The table is a hint: the owner decides.
//
// Invariants:
// - every request has one deadline (timeoutMs), retries and table refreshes included;
// - a request is repeated only when it certainly did not run (NOT_OWNER, connect failed,
//   local bound) or when it is idempotent (get, getMany); a write whose request may have
//   reached a node is never sent twice: its caller gets Timeout or Unavailable{sent};
// - bounded: `poolSize` connections per node address, connections only to addresses the
//   table names, at most maxBatchKeys keys per kv.many, retry backoff capped at retryMaxMs.
import { hash64, initHash } from '../ring/index.js';
import { LeaseTable } from '../server/cluster/lease-table.js';
import { IN_RING, type ChangesReply, type WireMember } from '../server/master/core.js';
import { MasterLink, RpcBusy, RpcClient, RpcEncodeError, RpcError, RpcRemoteError, RpcTimeout, RpcUnavailable } from '../server/protocol/rpc/index.js';
import { BadRequest, Busy, Closed, NonNumeric, RingkvError, ServerError, Timeout, Unavailable, ValueTooLarge } from './errors.js';
import { checkFlags, checkItemSize, keyBytes, MAX_ITEM_SIZE_DEFAULT, ttlMs, u64Text, valueBytes, type Key, type Value } from './keys.js';

export interface RingClientOptions {
  /**
   * The lease master's RPC address `host:port`, or several (an HA setup: one leads, the
   * others stand by): tried in order, following a standby's NOT_LEADER answer to the leader.
   */
  master: string | readonly string[];
  /** Deadline of each request, retries included, in ms. Default 5000. */
  timeoutMs?: number;
  /** How often the lease table is pulled from the master, in ms (the timer does not keep the process alive). Default 1000. */
  refreshMs?: number;
  /** RPC connections per node address; requests are spread over them round-robin (each one multiplexes). Default 2. */
  poolSize?: number;
  /**
   * Largest item in bytes, counted as memcached counts it (59 bytes of overhead + key +
   * value + 4 when flags are set); larger values fail with ValueTooLarge before any I/O.
   * Set it to the nodes' --max-item-size. Default 1 MiB.
   */
  maxItemSize?: number;
  /**
   * Deadline of one try of an idempotent request (get, getMany), in ms: a node that went
   * silent costs one try, and the rest of timeoutMs goes to the range's next owner.
   * Writes get the whole remaining timeoutMs in one try. Default 1000.
   */
  attemptTimeoutMs?: number;
  /** Deadline of a TCP connect, in ms; a connect that fails sent nothing, so any request may be retried. Default 1000. */
  connectTimeoutMs?: number;
  /** First pause between tries, in ms; it doubles after each try. Default 10. */
  retryMinMs?: number;
  /** Longest pause between tries, in ms. Default 200. */
  retryMaxMs?: number;
  /** Most keys in one kv.many request (a node accepts at most 10,000). Default 10,000. */
  maxBatchKeys?: number;
}

/** Per-request options. */
export interface RequestOptions {
  /** Deadline of this request, retries included, in ms. Default: the client's timeoutMs. */
  timeoutMs?: number;
  /** Read quorum of this request: replicas heard before answering (1..N). Default: the cluster's R. */
  r?: number;
  /** Write quorum of this request: durable copies before the write is acknowledged (1..N). Default: the cluster's W. */
  w?: number;
}

/** get with `{ siblings: true }`: every concurrent version instead of one last-writer-wins winner. */
export interface SiblingsOptions extends RequestOptions {
  siblings: true;
}

export interface StoreOptions extends RequestOptions {
  /** Time to live in seconds; 0 = no expiry. Default 0. */
  ttl?: number;
  /** memcached's opaque 32-bit flags, stored with the value. Default 0. */
  flags?: number;
}

export interface DeltaOptions extends RequestOptions {
  /**
   * Create a missing key with this value (returned as is, not incremented, as memcached's
   * `ma N` does). Without it a missing key answers undefined.
   */
  initial?: bigint | number;
  /** Time to live of an item created from `initial`, in seconds; 0 = no expiry. */
  ttl?: number;
}

/** A stored item. */
export interface Item {
  /** The value's bytes (a Buffer: `item.value.toString()` decodes UTF-8). */
  readonly value: Buffer;
  readonly flags: number;
  /** The cas unique of this version, for cas(). */
  readonly cas: bigint;
  /** Absolute expiry, Unix ms; 0 = never. */
  readonly expiresAtMs: number;
}

export interface RingClientCounters {
  /** Requests started (a getMany counts once). */
  requests: number;
  /** Tries repeated after a retryable failure (a getMany round counts once). */
  retries: number;
  /** NOT_OWNER answers: the table was stale for that key. */
  notOwner: number;
  /** Tries a node refused in overload (each was retried after a backoff, or became a Busy error). */
  busy: number;
  /** Lease-table pulls that succeeded / failed. */
  refreshes: number;
  refreshFailures: number;
}

/** The wire shapes of server/kv/api.ts as msgpack delivers them (bytes as Uint8Array). */
type WireRequest = { r?: number; w?: number; siblings?: boolean } & (
  | { op: 'get'; key: Buffer }
  | { op: 'set' | 'add' | 'replace' | 'append' | 'prepend' | 'cas'; key: Buffer; value: Buffer; flags: number; ttlMs: number; cas?: string }
  | { op: 'delete'; key: Buffer }
  | { op: 'incr' | 'decr'; key: Buffer; delta: string; initial?: string; ttlMs?: number }
  | { op: 'touch'; key: Buffer; ttlMs: number });
type WireStatus = 'OK' | 'NOT_FOUND' | 'NOT_STORED' | 'EXISTS' | 'TOO_LARGE' | 'NON_NUMERIC';
interface WireResult {
  readonly status: WireStatus;
  readonly item?: { value: Uint8Array; flags: number; cas: string; expiresAtMs: number };
  readonly value?: string;
  readonly siblings?: Array<{ value: Uint8Array; flags: number; cas: string; expiresAtMs: number }>;
}

/** The error of a request an earlier try of which may have reached a node: never "certainly not sent". */
function mayHaveRun(e: RingkvError): RingkvError {
  return (e instanceof Unavailable && !e.sent) || e instanceof Busy ? new Unavailable(true, `${e.message} (an earlier try may have reached a node)`, { cause: e }) : e;
}

/** The per-request quorum fields of a request, when given (checked by the node against N). */
function quorumOf(opts: RequestOptions): { r?: number; w?: number } {
  const q: { r?: number; w?: number } = {};
  for (const name of ['r', 'w'] as const) {
    const v = opts[name];
    if (v === undefined) continue;
    if (!Number.isInteger(v) || v < 1) throw new BadRequest(`${name} must be a positive integer, got ${String(v)}`);
    q[name] = v;
  }
  return q;
}

const PLAIN_OPS = new Set(['get', 'set', 'delete', 'touch']);
/** How long a node that failed to answer is passed over for plain requests. */
const SUSPECT_MS = 2_000;

interface Settings {
  masters: string[];
  timeoutMs: number;
  refreshMs: number;
  poolSize: number;
  maxItemSize: number;
  attemptTimeoutMs: number;
  connectTimeoutMs: number;
  retryMinMs: number;
  retryMaxMs: number;
  maxBatchKeys: number;
}

/** What to do after a failed try: repeat it, or end the request with `error`. */
interface Verdict {
  readonly retry: boolean;
  readonly error: RingkvError;
}

/** The node's limit on keys in one kv.many (server/cluster/cluster.ts). */
const NODE_BATCH_KEYS_MAX = 10_000;

export class RingClient {
  readonly counters: RingClientCounters = { requests: 0, retries: 0, notOwner: 0, busy: 0, refreshes: 0, refreshFailures: 0 };
  private readonly table = new LeaseTable();
  /** The masters; pulls go to the one that leads (the last that answered). */
  private readonly master: MasterLink;
  /** `host:port` -> its connections and the next one to use. */
  private readonly pools = new Map<string, { clients: RpcClient[]; next: number }>();
  private pulling: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  /** Nodes that failed to answer lately (until the time given): plain requests go elsewhere meanwhile. */
  private readonly suspects = new Map<string, number>();

  private constructor(private readonly s: Settings) {
    // With several masters, a silent one costs one try (attemptTimeoutMs), as a silent node does.
    this.master = new MasterLink(s.masters, { connectTimeoutMs: s.connectTimeoutMs, attemptTimeoutMs: s.attemptTimeoutMs });
  }

  /** Pulls the lease table from the master that leads, and keeps it fresh. Unavailable when none answers in time. */
  static async connect(opts: RingClientOptions): Promise<RingClient> {
    const client = new RingClient(settingsOf(opts));
    try {
      await initHash();
      await client.refresh();
    } catch (e) {
      await client.close();
      throw e;
    }
    client.timer = setInterval(() => void client.refresh().catch(() => {}), client.s.refreshMs);
    client.timer.unref();
    return client;
  }

  // ---- the API -----------------------------------------------------------------------

  /**
   * The item, or undefined when the key is missing or expired. With `{ siblings: true }`:
   * every concurrent version the replicas hold (newest first; [] when missing), which
   * writes through different coordinators during a partition can leave behind; the next
   * write of the key supersedes them all.
   */
  get(key: Key, opts: SiblingsOptions): Promise<Item[]>;
  get(key: Key, opts?: RequestOptions): Promise<Item | undefined>;
  async get(key: Key, opts: RequestOptions & { siblings?: boolean } = {}): Promise<Item | undefined | Item[]> {
    const siblings = opts.siblings === true;
    const r = await this.run({ op: 'get', key: keyBytes(key), ...quorumOf(opts), ...(siblings ? { siblings } : {}) }, true, opts);
    if (r.status === 'NOT_FOUND') return siblings ? [] : undefined;
    const item = itemOf(want(r, 'OK', 'get'));
    if (!siblings) return item;
    return (r.siblings ?? [r.item!]).map((s) => itemOf({ status: 'OK', item: s }));
  }

  /**
   * Several items at once, keyed by the caller's keys (missing ones are absent). Keys are
   * grouped by owner, one kv.many per owner in parallel; keys whose range moved meanwhile
   * are grouped again with a fresh table, until the deadline.
   */
  getMany(keys: Iterable<string>, opts?: RequestOptions): Promise<Map<string, Item>>;
  getMany(keys: Iterable<Uint8Array>, opts?: RequestOptions): Promise<Map<Uint8Array, Item>>;
  getMany(keys: Iterable<Key>, opts?: RequestOptions): Promise<Map<Key, Item>>;
  getMany(keys: Iterable<Key>, opts: RequestOptions = {}): Promise<Map<Key, Item>> {
    // A lone string is iterable too (by character): almost certainly a mistake.
    if (typeof keys === 'string') return Promise.reject(new BadRequest('getMany takes a list of keys, not one string'));
    return this.runMany(keys, opts);
  }

  /** Stores the value whatever was there. */
  async set(key: Key, value: Value, opts: StoreOptions = {}): Promise<void> {
    want(await this.store('set', key, value, opts), 'OK', 'set');
  }

  /** Stores only when the key is missing; false when it exists. */
  async add(key: Key, value: Value, opts: StoreOptions = {}): Promise<boolean> {
    return stored(await this.store('add', key, value, opts), 'add');
  }

  /** Stores only when the key exists; false when it is missing. */
  async replace(key: Key, value: Value, opts: StoreOptions = {}): Promise<boolean> {
    return stored(await this.store('replace', key, value, opts), 'replace');
  }

  /** Appends to an existing value (its flags and expiry stay); false when the key is missing. */
  async append(key: Key, value: Value, opts: RequestOptions = {}): Promise<boolean> {
    return stored(await this.store('append', key, value, opts), 'append');
  }

  /** Prepends to an existing value (its flags and expiry stay); false when the key is missing. */
  async prepend(key: Key, value: Value, opts: RequestOptions = {}): Promise<boolean> {
    return stored(await this.store('prepend', key, value, opts), 'prepend');
  }

  /** Stores only if the item is still the version `cas` names; false when it changed (EXISTS) or is gone. */
  async cas(key: Key, value: Value, cas: bigint, opts: StoreOptions = {}): Promise<boolean> {
    const r = await this.store('cas', key, value, opts, u64Text(cas, 'cas'));
    if (r.status === 'EXISTS' || r.status === 'NOT_FOUND') return false;
    want(r, 'OK', 'cas');
    return true;
  }

  /** True when the key existed. */
  async delete(key: Key, opts: RequestOptions = {}): Promise<boolean> {
    const r = await this.run({ op: 'delete', key: keyBytes(key), ...quorumOf(opts) }, false, opts);
    if (r.status === 'NOT_FOUND') return false;
    want(r, 'OK', 'delete');
    return true;
  }

  /** Sets a new time to live (seconds, 0 = none); false when the key is missing. */
  async touch(key: Key, ttl: number, opts: RequestOptions = {}): Promise<boolean> {
    const r = await this.run({ op: 'touch', key: keyBytes(key), ttlMs: ttlMs(ttl), ...quorumOf(opts) }, false, opts);
    if (r.status === 'NOT_FOUND') return false;
    want(r, 'OK', 'touch');
    return true;
  }

  /** Adds `delta` (wrapping at 2^64, as memcached); the new value, or undefined when missing. NonNumeric for a non-number. */
  incr(key: Key, delta: bigint | number = 1n, opts: DeltaOptions = {}): Promise<bigint | undefined> {
    return this.delta('incr', key, delta, opts);
  }

  /** Subtracts `delta` (stopping at 0, as memcached); the new value, or undefined when missing. */
  decr(key: Key, delta: bigint | number = 1n, opts: DeltaOptions = {}): Promise<bigint | undefined> {
    return this.delta('decr', key, delta, opts);
  }

  /** Stops the refresh timer and closes every connection; requests in flight and later ones fail with Closed. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    const all = [...this.pools.values()].flatMap((p) => p.clients);
    this.pools.clear();
    await Promise.all([this.master.close(), ...all.map((c) => c.close())]);
  }

  // ---- requests ----------------------------------------------------------------------

  private store(op: 'set' | 'add' | 'replace' | 'append' | 'prepend' | 'cas', key: Key, value: Value, opts: StoreOptions, cas?: string): Promise<WireResult> {
    const k = keyBytes(key);
    const v = valueBytes(value);
    const flags = checkFlags(opts.flags ?? 0);
    checkItemSize(k, v, flags, this.s.maxItemSize);
    const req: WireRequest = { op, key: k, value: v, flags, ttlMs: ttlMs(opts.ttl ?? 0), ...(cas !== undefined ? { cas } : {}), ...quorumOf(opts) };
    return this.run(req, false, opts);
  }

  private async delta(op: 'incr' | 'decr', key: Key, delta: bigint | number, opts: DeltaOptions): Promise<bigint | undefined> {
    const req: WireRequest = {
      op,
      key: keyBytes(key),
      delta: u64Text(delta, 'delta'),
      ...(opts.initial !== undefined ? { initial: u64Text(opts.initial, 'initial'), ttlMs: ttlMs(opts.ttl ?? 0) } : {}),
      ...quorumOf(opts),
    };
    const r = await this.run(req, false, opts);
    if (r.status === 'NOT_FOUND') return undefined;
    if (r.status === 'NON_NUMERIC') throw new NonNumeric(`${op}: the value is not a decimal unsigned 64-bit number`);
    want(r, 'OK', op);
    if (typeof r.value !== 'string' || !/^[0-9]{1,20}$/.test(r.value)) throw new ServerError('BAD_REPLY', `${op}: the node answered no number`);
    return BigInt(r.value);
  }

  /**
   * Sends one request to its key's owner until it gets an answer or the deadline passes.
   * Which failures are retried is decided by `verdict`; between tries the table is
   * refreshed and the pause doubles from retryMinMs to retryMaxMs.
   */
  private async run(req: WireRequest, idempotent: boolean, opts: RequestOptions): Promise<WireResult> {
    const timeoutMs = this.timeoutOf(opts);
    this.checkOpen();
    this.counters.requests++;
    const deadline = Date.now() + timeoutMs;
    const pos = hash64(req.key);
    let pauseMs = this.s.retryMinMs;
    let why: RingkvError | undefined;
    // Plain reads and writes survive a dead owner: any node routes them to a replica that
    // coordinates in its place; a retry after the owner failed to answer goes elsewhere.
    const plain = PLAIN_OPS.has(req.op);
    /** Some try may have reached a node: a write that then fails "may have happened". */
    let reached = false;
    for (;;) {
      const route = this.table.route(pos);
      let member = route?.member;
      const leftMs = deadline - Date.now();
      if (leftMs <= 0) throw this.expired(why, timeoutMs, req.op, reached);
      let via = false;
      if (plain && member !== undefined && this.isSuspect(member.id)) {
        const alt = this.alternate(member.id);
        if (alt) [member, via] = [alt, true];
      }
      if (route !== undefined && member !== undefined && IN_RING.has(member.status)) {
        try {
          const callMs = idempotent || plain ? Math.min(leftMs, this.s.attemptTimeoutMs) : leftMs;
          // The deadline: a node that gets the request after the client gave up refuses it
          // (a plain write may be retried elsewhere; a late run of this one must not win).
          const deadline = Date.now() + callMs;
          const body = via ? { req, route: true, deadline } : { req, generation: route.lease.generation, deadline };
          return await this.node(member.addrs.rpc).call<WireResult>('kv', body, { timeoutMs: callMs });
        } catch (e) {
          if (e instanceof RpcUnavailable || e instanceof RpcTimeout) this.suspects.set(member.id, Date.now() + SUSPECT_MS);
          if (e instanceof RpcTimeout || (e instanceof RpcUnavailable && e.sent)) reached = true;
          const v = this.verdict(e, idempotent || plain, timeoutMs, `${req.op} on ${member.id}`);
          if (!v.retry) throw reached ? mayHaveRun(v.error) : v.error;
          why = v.error;
        }
      } else {
        why = new Unavailable(false, `no live owner for the key in the lease table (lsn ${this.table.lsn})`);
      }
      await this.pause(deadline, pauseMs, why);
      pauseMs = Math.min(pauseMs * 2, this.s.retryMaxMs);
      this.counters.retries++;
    }
  }

  private async runMany<K extends Key>(keys: Iterable<K>, opts: RequestOptions): Promise<Map<K, Item>> {
    const timeoutMs = this.timeoutOf(opts);
    // Every key is checked before any I/O; equal keys are asked for once.
    const byBytes = new Map<string, { bytes: Buffer; pos: bigint; callers: K[] }>();
    for (const k of keys) {
      const bytes = keyBytes(k);
      const id = bytes.toString('latin1');
      const e = byBytes.get(id);
      if (e) e.callers.push(k);
      else byBytes.set(id, { bytes, pos: 0n, callers: [k] });
    }
    const out = new Map<K, Item>();
    if (byBytes.size === 0) return out;
    this.checkOpen();
    this.counters.requests++;
    const deadline = Date.now() + timeoutMs;
    type Entry = { bytes: Buffer; pos: bigint; callers: K[] };
    let pending: Entry[] = [...byBytes.values()];
    for (const e of pending) e.pos = hash64(e.bytes);
    let batchKeys = this.s.maxBatchKeys;
    let pauseMs = this.s.retryMinMs;
    let why: RingkvError | undefined;
    for (;;) {
      const leftMs = deadline - Date.now();
      if (leftMs <= 0) throw this.expired(why, timeoutMs, 'getMany');
      const next: Entry[] = [];
      const groups = new Map<string, { id: string; entries: Entry[] }>();
      const alone: Entry[] = [];
      for (const e of pending) {
        const member = this.table.route(e.pos)?.member;
        // An owner that did not answer lately: these keys go one by one, through another node.
        if (member !== undefined && this.isSuspect(member.id)) {
          alone.push(e);
          continue;
        }
        if (member === undefined || !IN_RING.has(member.status)) {
          why = new Unavailable(false, `no live owner for a key in the lease table (lsn ${this.table.lsn})`);
          next.push(e);
          continue;
        }
        const g = groups.get(member.addrs.rpc) ?? { id: member.id, entries: [] };
        g.entries.push(e);
        groups.set(member.addrs.rpc, g);
      }
      const batches: Array<[string, string, Entry[]]> = [];
      for (const [addr, g] of groups) {
        for (let i = 0; i < g.entries.length; i += batchKeys) batches.push([addr, g.id, g.entries.slice(i, i + batchKeys)]);
      }
      const callMs = Math.min(leftMs, this.s.attemptTimeoutMs);
      let shrink = false;
      const q = quorumOf(opts);
      const singles = alone.map(async (e) => {
        const r = await this.run({ op: 'get', key: e.bytes, ...q }, true, { ...opts, timeoutMs: Math.max(1, leftMs) });
        if (r.status === 'NOT_FOUND') return;
        const item = itemOf(want(r, 'OK', 'getMany'));
        for (const k of e.callers) out.set(k, item);
      });
      await Promise.all([
        ...singles,
        ...batches.map(async ([addr, id, batch]) => {
          let reply: { results?: unknown };
          try {
            reply = await this.node(addr).call<{ results?: unknown }>('kv.many', { keys: batch.map((e) => e.bytes), ...q }, { timeoutMs: callMs });
          } catch (e) {
            if (e instanceof RpcUnavailable || e instanceof RpcTimeout) this.suspects.set(id, Date.now() + SUSPECT_MS);
            // A reply too big for one frame: the same keys go again in smaller batches.
            if (e instanceof RpcRemoteError && e.code === 'FRAME_TOO_LARGE' && batch.length > 1) {
              shrink = true;
              why = new ServerError(e.code, e.message);
            } else {
              const v = this.verdict(e, true, timeoutMs, `getMany on ${id}`);
              if (!v.retry) throw v.error;
              why = v.error;
            }
            next.push(...batch);
            return;
          }
          const results = reply.results;
          if (!Array.isArray(results) || results.length !== batch.length) throw new ServerError('BAD_REPLY', `getMany on ${id}: ${batch.length} keys asked, a malformed answer came back`);
          for (let j = 0; j < batch.length; j++) {
            const r = results[j] as WireResult | null;
            const e = batch[j]!;
            // null: that node does not hold the key's range (any more); route it again.
            if (r === null) {
              next.push(e);
              continue;
            }
            if (r.status === 'NOT_FOUND') continue;
            const item = itemOf(want(r, 'OK', 'getMany'));
            for (const k of e.callers) out.set(k, item);
          }
        }),
      ]);
      if (next.length === 0) return out;
      if (shrink) batchKeys = Math.max(1, Math.floor(batchKeys / 2));
      else {
        why ??= new Unavailable(false, `the owner of a key moved (lsn ${this.table.lsn})`);
        await this.pause(deadline, pauseMs, why);
        pauseMs = Math.min(pauseMs * 2, this.s.retryMaxMs);
      }
      this.counters.retries++;
      pending = next;
    }
  }

  /**
   * How a failed try ends: repeated when it certainly did not run, or when it is
   * idempotent; otherwise the typed error the caller sees.
   */
  private verdict(e: unknown, idempotent: boolean, timeoutMs: number, what: string): Verdict {
    if (this.closed) return { retry: false, error: new Closed() };
    if (e instanceof RpcRemoteError) {
      switch (e.code) {
        case 'NOT_OWNER':
          // The owner refused before running it. Refresh now, not at the next tick.
          this.counters.notOwner++;
          void this.refresh().catch(() => {});
          return { retry: true, error: new Unavailable(false, `${what}: not the owner (${e.message})`) };
        case 'SHUTTING_DOWN':
          return { retry: true, error: new Unavailable(false, `${what}: the node is shutting down`) };
        case 'OVERLOADED':
          // Refused before it ran, so any request may be tried again, after a backoff.
          this.counters.busy++;
          return { retry: true, error: new Busy(`${what}: the node is overloaded (${e.message})`) };
        case 'BAD_REQUEST':
          return { retry: false, error: new BadRequest(`${what}: ${e.message}`) };
        case 'UNAVAILABLE':
          // Too few replicas answered the coordinator (it already waited): a write may have
          // reached some of them, so this is "may have happened", never a silent success.
          return { retry: false, error: new Unavailable(true, `${what}: ${e.message}`) };
        default:
          return { retry: false, error: new ServerError(e.code, `${what}: ${e.code}: ${e.message}`) };
      }
    }
    if (e instanceof RpcUnavailable) {
      const error = new Unavailable(e.sent, `${what}: ${e.message}`, { cause: e });
      return { retry: !e.sent || idempotent, error };
    }
    if (e instanceof RpcTimeout) {
      return { retry: idempotent, error: new Timeout(timeoutMs, `${what}: no answer in time (request timeout ${timeoutMs} ms)`, { cause: e }) };
    }
    if (e instanceof RpcBusy) return { retry: true, error: new Unavailable(false, `${what}: ${e.message}`, { cause: e }) };
    if (e instanceof RpcEncodeError) return { retry: false, error: new BadRequest(`${what}: ${e.message}`) };
    if (e instanceof RpcError) return { retry: false, error: new ServerError(e.code, `${what}: ${e.message}`) };
    throw e;
  }

  private isSuspect(id: string): boolean {
    const until = this.suspects.get(id);
    if (until === undefined) return false;
    if (until > Date.now()) return true;
    this.suspects.delete(id);
    return false;
  }

  /** Another live member to carry a plain request whose owner does not answer (its router finds a replica). */
  private alternate(ownerId: string): WireMember | undefined {
    const up = [...this.table.members.values()].filter((m) => m.id !== ownerId && m.status === 'up' && !this.isSuspect(m.id));
    return up.length === 0 ? undefined : up[Math.floor(Math.random() * up.length)];
  }

  /** The error of a request whose deadline passed: why its last try failed. */
  private expired(why: RingkvError | undefined, timeoutMs: number, what: string, reached = false): RingkvError {
    if (this.closed) return new Closed();
    if (reached) return mayHaveRun(this.expired(why, timeoutMs, what));
    if (why instanceof Timeout || why instanceof Unavailable || why instanceof Busy) return why;
    if (why === undefined) return new Timeout(timeoutMs, `${what}: no answer within ${timeoutMs} ms`);
    return new Unavailable(false, `${what}: no owner answered within ${timeoutMs} ms (last: ${why.message})`, { cause: why });
  }

  /**
   * Between tries: pull the table (bounded by the deadline) and back off. After a refusal
   * in overload the table is not the problem: only back off, by a random part of the
   * pause, so that clients refused together do not come back together.
   */
  private async pause(deadline: number, pauseMs: number, why?: RingkvError): Promise<void> {
    const leftMs = deadline - Date.now();
    if (leftMs <= 0) return;
    if (why instanceof Busy) await sleep(Math.min(pauseMs * (0.5 + Math.random() / 2), leftMs));
    else await Promise.all([within(this.refresh().catch(() => {}), leftMs), sleep(Math.min(pauseMs, leftMs))]);
    this.checkOpen();
  }

  // ---- the lease table and the connections -------------------------------------------

  /** One pull of the master's changes at a time, from the master that leads (MasterLink finds it). */
  private refresh(): Promise<void> {
    if (this.closed) return Promise.reject(new Closed());
    this.pulling ??= this.pull().finally(() => {
      this.pulling = undefined;
    });
    return this.pulling;
  }

  private async pull(): Promise<void> {
    try {
      const reply = await this.master.call<ChangesReply>('changes', { lsn: this.table.lsn }, { timeoutMs: this.s.timeoutMs });
      if (typeof reply?.lsn !== 'number' || !('full' in reply || Array.isArray(reply.changes))) throw new ServerError('BAD_REPLY', 'the master answered changes with a malformed table');
      if (this.table.apply(reply)) this.dropStalePools();
      this.counters.refreshes++;
    } catch (e) {
      if (this.closed) throw new Closed();
      this.counters.refreshFailures++;
      const why = e instanceof Error ? e.message : String(e);
      throw new Unavailable(false, `no lease master answered (${this.master.addresses().join(', ')}): ${why}`, { cause: e });
    }
  }

  /** A connection to the node at `addr`, round-robin over its pool. */
  private node(addr: string): RpcClient {
    let pool = this.pools.get(addr);
    if (pool === undefined) {
      const [host, port] = parseAddr(addr);
      const clients = Array.from({ length: this.s.poolSize }, () => new RpcClient({ host, port, connectTimeoutMs: this.s.connectTimeoutMs }));
      pool = { clients, next: 0 };
      this.pools.set(addr, pool);
    }
    const c = pool.clients[pool.next]!;
    pool.next = (pool.next + 1) % pool.clients.length;
    return c;
  }

  /** Connections only to addresses the table still names (a restarted node may come back on another port). */
  private dropStalePools(): void {
    const live = new Set([...this.table.members.values()].map((m) => m.addrs.rpc));
    for (const [addr, pool] of this.pools) {
      if (live.has(addr)) continue;
      this.pools.delete(addr);
      for (const c of pool.clients) void c.close();
    }
  }

  private timeoutOf(opts: RequestOptions): number {
    const t = opts.timeoutMs ?? this.s.timeoutMs;
    if (typeof t !== 'number' || !Number.isFinite(t) || t <= 0) throw new BadRequest(`timeoutMs must be a positive number, got ${t}`);
    return t;
  }

  private checkOpen(): void {
    if (this.closed) throw new Closed();
  }
}

// ---- leaves ----------------------------------------------------------------------------

function settingsOf(o: RingClientOptions): Settings {
  const list = typeof o.master === 'string' ? [o.master] : [...(o.master ?? [])];
  if (list.length === 0) throw new BadRequest('master: at least one host:port is needed');
  const s: Settings = {
    masters: list.map((a) => (parseAddr(a), a)),
    timeoutMs: o.timeoutMs ?? 5000,
    refreshMs: o.refreshMs ?? 1000,
    poolSize: o.poolSize ?? 2,
    maxItemSize: o.maxItemSize ?? MAX_ITEM_SIZE_DEFAULT,
    attemptTimeoutMs: o.attemptTimeoutMs ?? 1000,
    connectTimeoutMs: o.connectTimeoutMs ?? 1000,
    retryMinMs: o.retryMinMs ?? 10,
    retryMaxMs: o.retryMaxMs ?? 200,
    maxBatchKeys: o.maxBatchKeys ?? NODE_BATCH_KEYS_MAX,
  };
  const positive = ['timeoutMs', 'refreshMs', 'attemptTimeoutMs', 'connectTimeoutMs', 'retryMinMs', 'retryMaxMs', 'maxItemSize'] as const;
  for (const k of positive) if (!Number.isFinite(s[k]) || s[k] <= 0) throw new BadRequest(`${k} must be a positive number, got ${s[k]}`);
  if (!Number.isSafeInteger(s.poolSize) || s.poolSize < 1 || s.poolSize > 64) throw new BadRequest(`poolSize must be an integer in 1..64, got ${s.poolSize}`);
  if (!Number.isSafeInteger(s.maxBatchKeys) || s.maxBatchKeys < 1 || s.maxBatchKeys > NODE_BATCH_KEYS_MAX) {
    throw new BadRequest(`maxBatchKeys must be an integer in 1..${NODE_BATCH_KEYS_MAX}, got ${s.maxBatchKeys}`);
  }
  if (s.retryMinMs > s.retryMaxMs) throw new BadRequest('retryMinMs must not exceed retryMaxMs');
  return s;
}

/** `host:port` (or `[v6]:port`) -> [host, port]. */
function parseAddr(addr: string): [string, number] {
  const i = typeof addr === 'string' ? addr.lastIndexOf(':') : -1;
  const port = Number(addr.slice(i + 1));
  if (i <= 0 || !Number.isInteger(port) || port < 1 || port > 65535) throw new BadRequest(`bad address ${JSON.stringify(addr)}: want host:port`);
  const host = addr.slice(0, i);
  return [host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host, port];
}

/** The result, when its status is the expected one; TOO_LARGE is ValueTooLarge; anything else a ServerError. */
function want(r: WireResult, status: WireStatus, op: string): WireResult {
  if (r?.status === status) return r;
  if (r?.status === 'TOO_LARGE') throw new ValueTooLarge(`${op}: the node refused the item as too large for its item size`);
  throw new ServerError('BAD_REPLY', `${op}: unexpected answer ${JSON.stringify(r?.status)}`);
}

function stored(r: WireResult, op: string): boolean {
  if (r.status === 'NOT_STORED') return false;
  want(r, 'OK', op);
  return true;
}

function itemOf(r: WireResult): Item {
  const it = r.item;
  if (it === undefined || !(it.value instanceof Uint8Array) || typeof it.cas !== 'string') throw new ServerError('BAD_REPLY', 'an item came back without value or cas');
  // A copy: the decoded bytes are a view into the socket's read buffer.
  return { value: Buffer.from(it.value), flags: it.flags, cas: BigInt(it.cas), expiresAtMs: it.expiresAtMs };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Waits for `p`, but no longer than `ms`. */
function within(p: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([p.then(() => {}), new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))]).finally(() => clearTimeout(timer));
}
