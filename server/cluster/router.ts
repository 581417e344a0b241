// Routing memcached commands in a cluster: a node accepts any key and runs the command
// itself when it holds the lease of the key's range, or forwards it to the owner over
// the internal RPC (as a memcached proxy would). The owner is the serialization point:
// cas, incr/decr, append/prepend and add/replace run there, atomically.
//
// Every forward carries the generation the sender sees for the range. The receiver
// serves only while it holds a valid lease; otherwise it answers NOT_OWNER and the sender
// refreshes its table and tries again, a bounded number of times, then gives up with
// `SERVER_ERROR unavailable` (the range is between owners for longer than the bound).
import { keyPosition } from '../../ring/index.js';
import type { Maybe } from '../kv/local-kv.js';
import type { Command } from '../protocol/memcached/commands.js';
import { execute, type McContext, type Reply } from '../protocol/memcached/execute.js';
import { IN_RING, tokenHex } from '../master/core.js';

/** Members that hold or will hold data: flush_all must reach them all. */
const TAKES_TRAFFIC: ReadonlySet<string> = new Set(['up', 'joining', 'leaving']);
import type { LeaseTable } from './lease-table.js';
import { type KvRequest, type KvResult, type LocalKvApi } from '../kv/api.js';
import type { Owner } from './owner.js';
import { QuorumError, type Quorum, type Replicator } from '../replication/replicator.js';
import { MC_BUSY, OVERLOADED } from '../overload.js';

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

/** The key of a command about one key, a one-key get or gat (what a multi-get falls back to) included. */
function singleKey(cmd: Command): string | undefined {
  if ((cmd.kind === 'get' || cmd.kind === 'gat') && cmd.keys.length === 1) return cmd.keys[0];
  return commandKey(cmd);
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
  /** Replication (quorum reads and writes); absent: a key lives only on its owner. */
  replicator?: Replicator;
}

/**
 * Plain reads and writes (get, set, delete, touch and their meta forms without a cas or a
 * mode): any node of the preference list may coordinate them when the owner is down, as
 * in Dynamo. The rest (cas, add, replace, append/prepend, incr/decr) need the owner's
 * lease: the owner is their serialization point.
 */
export function isPlain(cmd: Command): boolean {
  switch (cmd.kind) {
    case 'get':
    case 'gat':
    case 'delete':
    case 'touch':
    case 'me':
      return true;
    case 'store':
    case 'too-large':
      return cmd.mode === 'set' && (cmd.kind === 'too-large' || cmd.cas === undefined);
    case 'mg':
      return !cmd.flags.some((f) => f.letter === 'N');
    case 'ms':
      return !cmd.flags.some((f) => f.letter === 'C' || f.letter === 'I' || (f.letter === 'M' && !/^[sS]?$/.test(f.token)));
    case 'md':
      return !cmd.flags.some((f) => f.letter === 'C');
    default:
      return false;
  }
}

/** A write that does not depend on the value before it: no quorum read needed first. */
function isBlind(cmd: Command): boolean {
  return (cmd.kind === 'store' && cmd.mode === 'set') || cmd.kind === 'too-large';
}

const UNAVAILABLE_BUF = Buffer.from('SERVER_ERROR unavailable\r\n');
const BUSY_BUF = Buffer.from(MC_BUSY);

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
  /** Requests this node sent to an owner (or a stand-in), and requests other nodes sent here. */
  readonly counters = { forwarded_out: 0, forwarded_in: 0 };

  constructor(private readonly o: RouterOptions) {}

  /** Runs a client's command: here, on the owner, or on every node (flush_all). */
  dispatch(cmd: Command): Maybe<Reply> {
    if (cmd.kind === 'get' || cmd.kind === 'gat') return this.multiGet(cmd);
    if (cmd.kind === 'flush_all') return this.broadcast(cmd);
    const key = commandKey(cmd);
    if (key === undefined) return execute(cmd, this.o.ctx);
    const pos = keyPosition(key);
    if (this.o.owner.holds(pos) !== undefined) return this.coordinate(cmd, key);
    return this.forward(cmd, pos);
  }

  /**
   * Runs a key command here, as its coordinator: first a quorum read (unless the command
   * is a blind write), so the local record reflects R replicas; then the command on the
   * local store, whose write replicates to W before the reply.
   */
  private coordinate(cmd: Command, key: string, deadline?: number): Maybe<Reply> {
    const rep = this.o.replicator;
    if (!rep) return execute(cmd, this.o.ctx);
    const sync = isBlind(cmd) ? undefined : rep.quorumRead([key]);
    if (!sync) return execute(cmd, this.o.ctx);
    return sync.then(() => {
      this.checkDeadline(deadline); // the quorum read took its time: the sender may have given up since
      return execute(cmd, this.o.ctx);
    });
  }

  /** The same for a structured request, with its own quorum sizes. */
  private coordinateKv(req: KvRequest, deadline?: number): Maybe<KvResult> {
    const rep = this.o.replicator;
    if (!rep) return this.o.api.run(req);
    const q = quorumOf(req, rep);
    const run = () => rep.withQuorum(q, () => this.o.api.run(req));
    const sync = req.op === 'set' ? undefined : rep.quorumRead([req.key], q);
    if (!sync) return run();
    return sync.then(() => {
      this.checkDeadline(deadline);
      return run();
    });
  }

  /** May this node coordinate a plain command for a down owner? Only as one of the key's replicas. */
  private mayStandIn(pos: bigint): boolean {
    return this.o.replicator?.preferenceList(pos).includes(this.o.selfId) ?? false;
  }

  /** The owner's side of a forwarded command. */
  /** When a forward sent now is given up by its sender (Unix ms). */
  private deadline(): number {
    return this.o.now() + this.o.forwardTimeoutMs;
  }

  /**
   * A forwarded request that arrives after its sender gave up is refused, not run: the
   * sender may have retried it elsewhere meanwhile (a plain write, through a stand-in),
   * and a late run would stamp an old request with a new timestamp, letting it win over
   * writes acknowledged after it. Clocks agree to within the lease drift, which bounds
   * the window this leaves.
   */
  checkDeadline(deadline: number | undefined): void {
    if (deadline !== undefined && this.o.now() > deadline) {
      throw Object.assign(new Error('the sender gave up on this request before it arrived'), { code: 'DEADLINE_EXCEEDED' });
    }
  }

  serve(w: WireCommand, senderGeneration: number | undefined, standIn = false, deadline?: number): Maybe<Buffer> {
    this.counters.forwarded_in++;
    this.checkDeadline(deadline);
    const cmd = decodeCommand(w);
    if (cmd.kind === 'flush_all') return toBuffer(execute(cmd, this.o.ctx));
    const key = singleKey(cmd);
    if (key === undefined) throw new NotOwnerError(undefined, undefined);
    const pos = keyPosition(key);
    if (standIn && isPlain(cmd) && this.mayStandIn(pos)) return toBuffer(this.coordinate(cmd, key, deadline));
    const held = this.o.owner.holds(pos);
    // Fencing: a sender that saw a newer generation knows the range moved on from us.
    if (held === undefined || (senderGeneration !== undefined && senderGeneration > held)) {
      const r = this.o.table.route(pos);
      throw new NotOwnerError(r?.lease.owner, r?.lease.generation);
    }
    return toBuffer(this.coordinate(cmd, key, deadline));
  }

  /** A structured request (HTTP, TS client) run on the owner of its key. */
  runKv(req: KvRequest): Maybe<KvResult> {
    const pos = keyPosition(req.key);
    if (this.o.owner.holds(pos) !== undefined) return this.coordinateKv(req);
    return this.viaOwner<KvResult>(pos, {
      local: () => this.coordinateKv(req),
      remote: (rpc, generation, standIn) =>
        this.o.forwarder
          .call<KvResult>(rpc, 'kv', { req, generation, deadline: this.deadline(), ...(standIn ? { standIn } : {}) }, this.o.forwardTimeoutMs)
          .then(fromWire),
      plain: req.op === 'get' || req.op === 'set' || req.op === 'delete' || req.op === 'touch',
      answer: (e) => {
        throw e;
      },
      unavailable: () => {
        throw new UnavailableError();
      },
      idempotent: req.op === 'get' || req.op === 'set' || req.op === 'delete' || req.op === 'touch',
    });
  }

  /** The owner's side of `kv`. */
  serveKv(req: KvRequest, senderGeneration: number | undefined, standIn = false, deadline?: number): Maybe<KvResult> {
    this.checkDeadline(deadline);
    const pos = keyPosition(req.key);
    const plain = req.op === 'get' || req.op === 'set' || req.op === 'delete' || req.op === 'touch';
    if (standIn && plain && this.mayStandIn(pos)) return this.coordinateKv(req, deadline);
    const held = this.o.owner.holds(pos);
    if (held === undefined || (senderGeneration !== undefined && senderGeneration > held)) {
      const r = this.o.table.route(pos);
      throw new NotOwnerError(r?.lease.owner, r?.lease.generation);
    }
    return this.coordinateKv(req, deadline);
  }

  /** The owner's side of a client's getMany (`kv.many`): null where this node is not the owner. */
  serveMany(keys: string[], q: Quorum): Maybe<Array<KvResult | null>> {
    const mine = keys.filter((k) => this.o.owner.holds(keyPosition(k)) !== undefined);
    const run = () => {
      const results = keys.map((k) => (this.o.owner.holds(keyPosition(k)) === undefined ? null : this.o.api.run({ op: 'get', key: k })));
      return results.some((r) => r instanceof Promise) ? Promise.all(results) : (results as Array<KvResult | null>);
    };
    const sync = mine.length > 0 ? this.o.replicator?.quorumRead(mine, q) : undefined;
    return sync ? sync.then(run) : run();
  }

  /** The owner's side of a forwarded multi-get: one reply block per key, null where not owner. */
  serveGet(keys: string[], withCas: boolean, exptime: number | undefined): Maybe<Array<Buffer | null>> {
    this.counters.forwarded_in++;
    const mine = keys.filter((k) => this.o.owner.holds(keyPosition(k)) !== undefined);
    const sync = mine.length > 0 ? this.o.replicator?.quorumRead(mine) : undefined;
    if (sync) {
      return sync.then(
        () => this.serveGetNow(keys, withCas, exptime),
        (e: unknown) => {
          if (e instanceof QuorumError) return keys.map((k) => (mine.includes(k) ? UNAVAILABLE_BUF : null));
          throw e;
        },
      );
    }
    return this.serveGetNow(keys, withCas, exptime);
  }

  private serveGetNow(keys: string[], withCas: boolean, exptime: number | undefined): Maybe<Array<Buffer | null>> {
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
    const local: number[] = [];
    const runLocal = (i: number): Maybe<Buffer> => {
      const key = cmd.keys[i]!;
      const one: Command = exptime === undefined ? { kind: 'get', keys: [key], withCas: cmd.withCas } : { kind: 'gat', keys: [key], withCas: cmd.withCas, exptime };
      const r = toBuffer(execute(one, this.o.ctx));
      return r instanceof Promise ? r.then(stripEnd) : stripEnd(r);
    };
    for (let i = 0; i < cmd.keys.length; i++) {
      const key = cmd.keys[i]!;
      const pos = keyPosition(key);
      if (this.o.owner.holds(pos) !== undefined) {
        local.push(i);
        continue;
      }
      const owner = this.o.table.route(pos)?.lease.owner ?? '';
      const list = remote.get(owner) ?? [];
      list.push(i);
      remote.set(owner, list);
    }
    if (local.length > 0) {
      const sync = this.o.replicator?.quorumRead(local.map((i) => cmd.keys[i]!));
      if (!sync) for (const i of local) parts[i] = runLocal(i);
      else {
        const ok = sync.then(
          () => true,
          () => false,
        );
        for (const i of local) parts[i] = ok.then((yes) => (yes ? runLocal(i) : UNAVAILABLE_BUF));
      }
    }
    for (const [owner, idx] of remote) {
      const keys = idx.map((i) => cmd.keys[i]!);
      const member = this.o.table.members.get(owner);
      const batch: Promise<Array<Buffer | null>> = member
        ? this.o.forwarder
            .call<{ parts: Array<Uint8Array | null> }>(member.addrs.rpc, 'mc.get', { keys, withCas: cmd.withCas, exptime }, this.o.forwardTimeoutMs)
            .then((r) => r.parts.map((p) => (p === null ? null : Buffer.from(p))))
            // An owner in overload refused the batch: so is the get (retrying key by key would add load).
            .catch((e: { code?: unknown }) => keys.map(() => (e.code === OVERLOADED ? BUSY_BUF : null)))
        : Promise.resolve(keys.map(() => null));
      idx.forEach((i, j) => {
        // A key the owner would not serve goes the single-key way, with its retries.
        parts[i] = batch.then((bs) => {
          const b = bs[j];
          if (b) return b;
          const one: Command = exptime === undefined ? { kind: 'get', keys: [cmd.keys[i]!], withCas: cmd.withCas } : { kind: 'gat', keys: [cmd.keys[i]!], withCas: cmd.withCas, exptime };
          // An error line (unavailable) stays whole: it becomes the reply of the whole get.
          return Promise.resolve(this.forward(one, keyPosition(cmd.keys[i]!))).then((r) => stripEnd(replyToBuffer(r)));
        });
      });
    }
    const end = Buffer.from('END\r\n');
    if (!parts.some((p) => p instanceof Promise)) return [...(parts as Buffer[]), end];
    return Promise.all(parts).then((bs) => {
      // An unavailable key fails the whole get, as one error line (like memcached's errors).
      const failed = bs.find((b) => b.toString('latin1', 0, 13) === 'SERVER_ERROR ');
      return failed ?? [...bs, end];
    });
  }

  private forward(cmd: Command, pos: bigint): Promise<Reply> {
    const wire = encodeCommand(cmd);
    const reads = cmd.kind === 'get' || cmd.kind === 'gat' || cmd.kind === 'mg' || cmd.kind === 'me';
    const key = singleKey(cmd);
    if (key === undefined) throw new Error(`${cmd.kind} is not a single-key command`);
    return this.viaOwner<Reply>(pos, {
      local: () => this.coordinate(cmd, key),
      remote: (rpc, generation, standIn) =>
        this.o.forwarder
          .call<{ reply: Uint8Array }>(rpc, 'mc', { cmd: wire, generation, deadline: this.deadline(), ...(standIn ? { standIn } : {}) }, this.o.forwardTimeoutMs)
          .then((r) => Buffer.from(r.reply)),
      plain: isPlain(cmd),
      answer: (e) => (e.code === OVERLOADED ? MC_BUSY : `SERVER_ERROR ${String(e.message).replace(/[\r\n]/g, ' ')}\r\n`),
      unavailable: () => UNAVAILABLE,
      idempotent: (reads && cmd.kind !== 'gat') || isPlain(cmd),
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
      remote: (rpcAddr: string, generation: number, standIn?: boolean) => Promise<T>;
      /** A plain command: when the owner is down, the first healthy replica coordinates it. */
      plain: boolean;
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
      const rep = this.o.replicator;
      let target = route?.lease.owner;
      let standIn = false;
      if (how.plain && rep && target !== undefined && target !== this.o.selfId && !rep.reachable(target)) {
        // The owner is down (for this node's failure detector, or the master): a replica coordinates.
        const c = rep.healthyCoordinator(pos);
        if (c === this.o.selfId) {
          rep.counters.coordinated_for_down_owner++;
          return how.local();
        }
        if (c !== undefined) {
          target = c;
          standIn = true;
        }
      }
      const member = target !== undefined ? this.o.table.members.get(target) : undefined;
      if (route && member && IN_RING.has(member.status) && target !== this.o.selfId) {
        try {
          this.counters.forwarded_out++;
          return await how.remote(member.addrs.rpc, route.lease.generation, standIn);
        } catch (err) {
          const e = err as Error & { code?: unknown; sent?: unknown };
          if (rep && (e.code === 'TIMEOUT' || (e.code === 'UNAVAILABLE' && !(e instanceof Error && e.name === 'RpcRemoteError')))) rep.peerFailed(target!);
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
    const others = [...this.o.table.members.values()].filter((m) => m.id !== this.o.selfId && TAKES_TRAFFIC.has(m.status));
    const results = await Promise.allSettled(others.map((m) => this.o.forwarder.call(m.addrs.rpc, 'mc', { cmd: wire }, this.o.forwardTimeoutMs)));
    const failed = others.filter((_, i) => results[i]!.status === 'rejected').map((m) => m.id);
    if (failed.length > 0 && !(cmd.kind === 'flush_all' && cmd.noreply)) return `SERVER_ERROR flush_all did not reach ${failed.join(',')}\r\n`;
    return local;
  }
}

function quorumOf(req: KvRequest, rep: Replicator): Quorum {
  return rep.checkQuorum({ ...(req.r !== undefined ? { r: req.r } : {}), ...(req.w !== undefined ? { w: req.w } : {}) });
}

function toBuffer(r: Maybe<Reply>): Maybe<Buffer> {
  return r instanceof Promise ? r.then(replyToBuffer) : replyToBuffer(r);
}

/** A single-key get reply without its END line: the VALUE block, or nothing for a miss. */
function stripEnd(b: Buffer): Buffer {
  return b.length >= 5 && b.toString('latin1', b.length - 5) === 'END\r\n' ? b.subarray(0, b.length - 5) : b;
}

export { tokenHex };
