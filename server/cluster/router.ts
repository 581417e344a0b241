// Routing memcached commands in a cluster: a node accepts any key and runs the command
// itself when it holds the lease of the key's range, or forwards it to the owner over
// the internal RPC (as a memcached proxy would). The owner is the serialization point:
// cas, incr/decr, append/prepend and add/replace run there, atomically.
//
// Every forward carries the generation the sender sees for the range. The receiver
// serves only while it holds a valid lease; otherwise it answers NOT_OWNER and the sender
// refreshes its table and tries again, a bounded number of times, then gives up with
// `SERVER_ERROR unavailable` (the range is between owners for longer than the bound).
import { hash64 } from '../../ring/index.js';
import type { Maybe } from '../kv/local-kv.js';
import type { Command } from '../protocol/memcached/commands.js';
import { execute, type McContext, type Reply } from '../protocol/memcached/execute.js';
import { tokenHex } from '../master/core.js';
import type { LeaseTable } from './lease-table.js';
import { type KvRequest, type KvResult, type LocalKvApi } from '../kv/api.js';
import type { Owner } from './owner.js';

/** A forwarded command on the wire: Buffers stay binary; 64-bit numbers travel as decimal text. */
export type WireCommand = Record<string, unknown> & { kind: string };

export function encodeCommand(cmd: Command): WireCommand {
  const w: WireCommand = { ...cmd } as WireCommand;
  if (cmd.kind === 'store' && cmd.cas !== undefined) w.cas = cmd.cas.toString();
  if (cmd.kind === 'delta') w.delta = cmd.delta.toString();
  if (cmd.kind === 'store' || cmd.kind === 'ms') w.value = cmd.value;
  return w;
}

export function decodeCommand(w: WireCommand): Command {
  const c = { ...w } as Record<string, unknown>;
  if (w.kind === 'store' && typeof w.cas === 'string') c.cas = BigInt(w.cas);
  if (w.kind === 'delta' && typeof w.delta === 'string') c.delta = BigInt(w.delta);
  // A copy: decoded bytes are a view into the whole socket read, which a stored value must not pin.
  if ((w.kind === 'store' || w.kind === 'ms') && w.value instanceof Uint8Array) c.value = Buffer.from(w.value);
  return c as unknown as Command;
}

export function replyToBuffer(r: Reply): Buffer {
  if (typeof r === 'string') return Buffer.from(r, 'latin1');
  if (Buffer.isBuffer(r)) return r;
  return Buffer.concat(r.map((p) => (typeof p === 'string' ? Buffer.from(p, 'latin1') : p)));
}

export function keyPosition(key: string): bigint {
  return hash64(Buffer.from(key, 'latin1'));
}

/** The key of a single-key command, or undefined for commands that are not about one key. */
export function commandKey(cmd: Command): string | undefined {
  switch (cmd.kind) {
    case 'store':
    case 'too-large':
    case 'delete':
    case 'delta':
    case 'touch':
    case 'mg':
    case 'ms':
    case 'md':
    case 'ma':
    case 'me':
      return cmd.key;
    default:
      return undefined;
  }
}

export interface Forwarder {
  /** Sends a command to a node's RPC address; resolves with the reply or rejects with a coded error. */
  call<T>(rpcAddr: string, type: string, body: unknown, timeoutMs: number): Promise<T>;
}

export interface RouterOptions {
  selfId: string;
  ctx: McContext;
  /** The structured API on this node's store (HTTP, TS client, `kv` RPC). */
  api: LocalKvApi;
  owner: Owner;
  table: LeaseTable;
  forwarder: Forwarder;
  /** Pull the master's changes now (after a not-owner answer). */
  refresh(): Promise<void>;
  /** Give up on a key after this long without an owner that answers. */
  unavailableMs: number;
  forwardTimeoutMs: number;
  now(): number;
  sleep(ms: number): Promise<void>;
}

const UNAVAILABLE = 'SERVER_ERROR unavailable\r\n';

export class NotOwnerError extends Error {
  readonly code = 'NOT_OWNER';
  constructor(
    readonly owner: string | undefined,
    readonly generation: number | undefined,
  ) {
    super(`not the owner of this range${owner ? ` (owner: ${owner}, generation ${generation})` : ''}`);
  }
}

/** No owner answered for the key's range within unavailableMs. */
export class UnavailableError extends Error {
  readonly code = 'UNAVAILABLE';
  constructor() {
    super('no owner answers for this key right now');
  }
}

/** Values arrive from msgpack as Uint8Array; the rest of the node works with Buffers. */
function fromWire(r: KvResult): KvResult {
  if (!r.item) return r;
  const v = r.item.value as Uint8Array;
  return { ...r, item: { ...r.item, value: Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength) } };
}

export class Router {
  constructor(private readonly o: RouterOptions) {}

  /** Runs a client's command: here, on the owner, or on every node (flush_all). */
  dispatch(cmd: Command): Maybe<Reply> {
    if (cmd.kind === 'get' || cmd.kind === 'gat') return this.multiGet(cmd);
    if (cmd.kind === 'flush_all') return this.broadcast(cmd);
    const key = commandKey(cmd);
    if (key === undefined) return execute(cmd, this.o.ctx);
    const pos = keyPosition(key);
    if (this.o.owner.holds(pos) !== undefined) return execute(cmd, this.o.ctx);
    return this.forward(cmd, pos);
  }

  /** The owner's side of a forwarded command. */
  serve(w: WireCommand, senderGeneration: number | undefined): Maybe<Buffer> {
    const cmd = decodeCommand(w);
    if (cmd.kind === 'flush_all') return toBuffer(execute(cmd, this.o.ctx));
    const key = commandKey(cmd);
    if (key === undefined) throw new NotOwnerError(undefined, undefined);
    const pos = keyPosition(key);
    const held = this.o.owner.holds(pos);
    // Fencing: a sender that saw a newer generation knows the range moved on from us.
    if (held === undefined || (senderGeneration !== undefined && senderGeneration > held)) {
      const r = this.o.table.route(pos);
      throw new NotOwnerError(r?.lease.owner, r?.lease.generation);
    }
    return toBuffer(execute(cmd, this.o.ctx));
  }

  /** A structured request (HTTP, TS client) run on the owner of its key. */
  runKv(req: KvRequest): Maybe<KvResult> {
    const pos = keyPosition(req.key);
    if (this.o.owner.holds(pos) !== undefined) return this.o.api.run(req);
    return this.viaOwner<KvResult>(pos, {
      local: () => this.o.api.run(req),
      remote: (rpc, generation) => this.o.forwarder.call<KvResult>(rpc, 'kv', { req, generation }, this.o.forwardTimeoutMs).then(fromWire),
      answer: (e) => {
        throw e;
      },
      unavailable: () => {
        throw new UnavailableError();
      },
      idempotent: req.op === 'get',
    });
  }

  /** The owner's side of `kv`. */
  serveKv(req: KvRequest, senderGeneration: number | undefined): Maybe<KvResult> {
    const pos = keyPosition(req.key);
    const held = this.o.owner.holds(pos);
    if (held === undefined || (senderGeneration !== undefined && senderGeneration > held)) {
      const r = this.o.table.route(pos);
      throw new NotOwnerError(r?.lease.owner, r?.lease.generation);
    }
    return this.o.api.run(req);
  }

  /** The owner's side of a forwarded multi-get: one reply block per key, null where not owner. */
  serveGet(keys: string[], withCas: boolean, exptime: number | undefined): Maybe<Array<Buffer | null>> {
    const out: Array<Buffer | null | Promise<Buffer>> = keys.map((k) => {
      if (this.o.owner.holds(keyPosition(k)) === undefined) return null;
      const cmd: Command = exptime === undefined ? { kind: 'get', keys: [k], withCas } : { kind: 'gat', keys: [k], withCas, exptime };
      return toBuffer(execute(cmd, this.o.ctx));
    });
    if (!out.some((b) => b instanceof Promise)) return out.map((b) => (b === null ? null : stripEnd(b as Buffer)));
    return Promise.all(out).then((bs) => bs.map((b) => (b === null ? null : stripEnd(b))));
  }

  private multiGet(cmd: Extract<Command, { kind: 'get' | 'gat' }>): Maybe<Reply> {
    const exptime = cmd.kind === 'gat' ? cmd.exptime : undefined;
    const parts: Array<Maybe<Buffer>> = new Array(cmd.keys.length);
    const remote = new Map<string, number[]>();
    for (let i = 0; i < cmd.keys.length; i++) {
      const key = cmd.keys[i]!;
      const pos = keyPosition(key);
      if (this.o.owner.holds(pos) !== undefined) {
        const one: Command = exptime === undefined ? { kind: 'get', keys: [key], withCas: cmd.withCas } : { kind: 'gat', keys: [key], withCas: cmd.withCas, exptime };
        const r = toBuffer(execute(one, this.o.ctx));
        parts[i] = r instanceof Promise ? r.then(stripEnd) : stripEnd(r);
        continue;
      }
      const owner = this.o.table.route(pos)?.lease.owner ?? '';
      const list = remote.get(owner) ?? [];
      list.push(i);
      remote.set(owner, list);
    }
    for (const [owner, idx] of remote) {
      const keys = idx.map((i) => cmd.keys[i]!);
      const member = this.o.table.members.get(owner);
      const batch: Promise<Array<Buffer | null>> = member
        ? this.o.forwarder
            .call<{ parts: Array<Uint8Array | null> }>(member.addrs.rpc, 'mc.get', { keys, withCas: cmd.withCas, exptime }, this.o.forwardTimeoutMs)
            .then((r) => r.parts.map((p) => (p === null ? null : Buffer.from(p))))
            .catch(() => keys.map(() => null))
        : Promise.resolve(keys.map(() => null));
      idx.forEach((i, j) => {
        // A key the owner would not serve goes the single-key way, with its retries.
        parts[i] = batch.then((bs) => {
          const b = bs[j];
          if (b) return b;
          const one: Command = exptime === undefined ? { kind: 'get', keys: [cmd.keys[i]!], withCas: cmd.withCas } : { kind: 'gat', keys: [cmd.keys[i]!], withCas: cmd.withCas, exptime };
          return Promise.resolve(this.forward(one, keyPosition(cmd.keys[i]!))).then((r) => stripEnd(replyToBuffer(r)));
        });
      });
    }
    const end = Buffer.from('END\r\n');
    if (!parts.some((p) => p instanceof Promise)) return [...(parts as Buffer[]), end];
    return Promise.all(parts).then((bs) => {
      // An unavailable key fails the whole get, as one error line (like memcached's errors).
      const failed = bs.find((b) => b.toString('latin1').startsWith('SERVER_ERROR'));
      return failed ?? [...bs, end];
    });
  }

  private forward(cmd: Command, pos: bigint): Promise<Reply> {
    const wire = encodeCommand(cmd);
    const reads = cmd.kind === 'get' || cmd.kind === 'gat' || cmd.kind === 'mg' || cmd.kind === 'me';
    return this.viaOwner<Reply>(pos, {
      local: () => execute(cmd, this.o.ctx),
      remote: (rpc, generation) =>
        this.o.forwarder.call<{ reply: Uint8Array }>(rpc, 'mc', { cmd: wire, generation }, this.o.forwardTimeoutMs).then((r) => Buffer.from(r.reply)),
      answer: (e) => `SERVER_ERROR ${String(e.message).replace(/[\r\n]/g, ' ')}\r\n`,
      unavailable: () => UNAVAILABLE,
      idempotent: reads && cmd.kind !== 'gat',
    });
  }

  /**
   * Runs `local` once this node holds the lease for `pos`, or `remote` on the owner the
   * table names; on NOT_OWNER (or an owner that cannot be reached before the request left)
   * refreshes the table and tries again until `unavailableMs` has passed. A request that
   * may have reached the owner is retried only when it is idempotent: an incr that timed
   * out may have happened, and must not happen twice.
   */
  async viaOwner<T>(
    pos: bigint,
    how: {
      local: () => Maybe<T>;
      remote: (rpcAddr: string, generation: number) => Promise<T>;
      /** The owner's own error answer (bad request, ...), as a reply. */
      answer: (e: Error & { code?: unknown }) => T;
      unavailable: () => T;
      idempotent: boolean;
    },
  ): Promise<T> {
    const deadline = this.o.now() + this.o.unavailableMs;
    let delayMs = 10;
    for (;;) {
      // The lease may have come to us meanwhile.
      if (this.o.owner.holds(pos) !== undefined) return how.local();
      const route = this.o.table.route(pos);
      const member = route ? this.o.table.members.get(route.lease.owner) : undefined;
      if (route && member && member.status === 'up' && route.lease.owner !== this.o.selfId) {
        try {
          return await how.remote(member.addrs.rpc, route.lease.generation);
        } catch (err) {
          const e = err as Error & { code?: unknown; sent?: unknown };
          const retry =
            e.code === 'NOT_OWNER' ||
            e.code === 'BUSY' ||
            (e.code === 'UNAVAILABLE' && (e.sent === false || how.idempotent)) ||
            (e.code === 'TIMEOUT' && how.idempotent);
          if (!retry) return e.code === 'UNAVAILABLE' || e.code === 'TIMEOUT' ? how.unavailable() : how.answer(e);
        }
      } else if (route?.lease.owner === this.o.selfId) {
        // The table says ours, but the lease is not here yet: ask the master now.
        this.o.owner.renewSoon();
      }
      if (this.o.now() + delayMs > deadline) return how.unavailable();
      await this.o.refresh().catch(() => {});
      await this.o.sleep(delayMs);
      delayMs = Math.min(delayMs * 2, 250);
    }
  }

  private async broadcast(cmd: Command): Promise<Reply> {
    const local = await execute(cmd, this.o.ctx);
    const wire = encodeCommand(cmd);
    const others = [...this.o.table.members.values()].filter((m) => m.id !== this.o.selfId && m.status === 'up');
    const results = await Promise.allSettled(others.map((m) => this.o.forwarder.call(m.addrs.rpc, 'mc', { cmd: wire }, this.o.forwardTimeoutMs)));
    const failed = others.filter((_, i) => results[i]!.status === 'rejected').map((m) => m.id);
    if (failed.length > 0 && !(cmd.kind === 'flush_all' && cmd.noreply)) return `SERVER_ERROR flush_all did not reach ${failed.join(',')}\r\n`;
    return local;
  }
}

function toBuffer(r: Maybe<Reply>): Maybe<Buffer> {
  return r instanceof Promise ? r.then(replyToBuffer) : replyToBuffer(r);
}

/** A single-key get reply without its END line: the VALUE block, or nothing for a miss. */
function stripEnd(b: Buffer): Buffer {
  return b.subarray(0, b.length - 5);
}

export { tokenHex };
