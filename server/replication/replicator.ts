// Dynamo's replication on one node: the coordinator's side of quorum writes and reads,
// the replica's side of both, and hinted handoff.
//
// Write: the coordinator stores the new version locally, sends it to the other nodes of
// the key's preference list (the first N distinct nodes clockwise on the ring of live
// members) and answers once W of them (itself included) hold it durably. A node the
// failure detector calls down, or whose call fails, is replaced by the next healthy node
// past the list, which keeps the version as a hint for it (sloppy quorum); when there is
// no such node the coordinator keeps the hint itself (not counted toward W). Fewer than W
// durable copies: the write fails with QuorumError (SERVER_ERROR unavailable, HTTP 503),
// never a silent success. The remaining copies complete in the background.
//
// Read: before a command runs on the coordinator's local store, R-1 other replicas send
// their version of the key; each is merged into the local record (vector clocks: newer
// replaces, concurrent versions become siblings), and a replica whose version lacks what
// the merge holds gets the merged record back (read repair). Then the command runs on
// local state, which now reflects at least R replicas: with R + W > N it has seen every
// acknowledged write.
//
// Hints replay in batches when the target answers again (the failure detector's up event,
// and a periodic pass) and are deleted only once the target acknowledged that version.
import { Ring, type Member } from '../../ring/index.js';
import type { LocalKv } from '../kv/local-kv.js';
import { IN_NEXT_RING, IN_RING, type WireMember } from '../master/core.js';
import { decodeRecord, encodeRecord, type StoredRecord } from '../storage/record.js';
import { assert } from '../util/assert.js';
import { Coalescer } from './coalescer.js';
import type { FailureDetector } from './failure-detector.js';
import type { HintStore } from './hints.js';
import { recordDigest, sameVersions } from './versions.js';
import { keyPosition } from '../../ring/index.js';

export interface ReplicationSettings {
  /** Copies of every key. */
  readonly n: number;
  /** Replicas a read hears from (the coordinator included). */
  readonly r: number;
  /** Durable copies before a write is acknowledged (the coordinator included). */
  readonly w: number;
  readonly vnodes: number;
}

/** Per-request quorum sizes (TS client `{ r, w }`); undefined = the cluster's. */
export interface Quorum {
  r?: number;
  w?: number;
}

/** Fewer than W copies written, or fewer than R replicas answered. */
export class QuorumError extends Error {
  readonly code = 'UNAVAILABLE';
  constructor(readonly detail: string) {
    super('unavailable');
  }
}

/** A replica item on the wire: `record` is encodeRecord bytes; `hintFor` names the node a fallback keeps it for. */
export interface WireItem {
  key: string;
  record: Uint8Array;
  hintFor?: string;
}

export interface ReplicatorOptions {
  selfId: string;
  kv: LocalKv;
  /** The cluster's members as the master last said (addresses, status). */
  members(): ReadonlyMap<string, WireMember>;
  settings(): ReplicationSettings | undefined;
  /** Changes whenever members() may have (the lease table's LSN). */
  viewVersion(): number;
  call<T>(rpcAddr: string, type: string, body: unknown, timeoutMs: number): Promise<T>;
  hints: HintStore;
  fd: FailureDetector;
  /** Deadline of one replica call; a replica slower than this is treated as down. */
  replicaTimeoutMs: number;
  /** A quorum read asks further replicas when the first are silent this long. Default replicaTimeoutMs / 5. */
  hedgeMs?: number;
  /** Hints per replay batch. */
  hintBatch: number;
}

export interface ReplicationCounters {
  replica_writes: number;
  replica_write_failures: number;
  quorum_failures: number;
  hints_sent: number;
  hints_stored: number;
  hints_replayed: number;
  hints_kept_locally: number;
  read_repairs: number;
  coordinated_for_down_owner: number;
}

interface RingCache {
  version: number;
  current: Ring | undefined;
  fingerprint: string;
  next: Ring | undefined;
  nextFingerprint: string;
}

/** One key of a quorum read: R-1 answers needed, asked of `candidates` in order. */
interface KeyRead {
  key: string;
  /** Answers still needed. */
  need: number;
  /** Reachable replicas other than this node, in preference-list order. */
  candidates: string[];
  /** candidates[0 .. asked) were asked. */
  asked: number;
  /** Asked and not yet answered. */
  outstanding: number;
  /** Usable answers, for read repair once every one asked has answered. */
  answers: Array<{ from: string; theirs: StoredRecord | undefined }>;
}

/** Members that take replica writes. */
const TAKES_WRITES: ReadonlySet<string> = new Set(['up', 'joining', 'leaving']);

/** Keys per rep.get: answers are not split by bytes, so few enough that 1 MiB items fit a frame. */
const READ_KEYS_PER_CALL = 32;
/** Items and record bytes per coalesced rep.put (a frame may hold 64 MiB). */
const PUT_ITEMS_PER_CALL = 1000;
const PUT_BYTES_PER_CALL = 4 * 1024 * 1024;


export class Replicator {
  readonly counters: ReplicationCounters = {
    replica_writes: 0,
    replica_write_failures: 0,
    quorum_failures: 0,
    hints_sent: 0,
    hints_stored: 0,
    hints_replayed: 0,
    hints_kept_locally: 0,
    read_repairs: 0,
    coordinated_for_down_owner: 0,
  };
  private ringCache: RingCache = { version: -1, current: undefined, fingerprint: '', next: undefined, nextFingerprint: '' };
  /** The quorum of the request running now (set around its synchronous part). */
  private current: Quorum = {};
  private readonly replaying = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  /** Replica writes of one turn, one rep.put per peer. */
  private readonly puts = new Coalescer<WireItem, void>({
    send: async (id, items) => {
      const reply = await this.callPeer<{ ok?: unknown }>(id, 'rep.put', { items });
      if (reply?.ok !== items.length) throw new Error(`rep.put: ${String(reply?.ok)} of ${items.length} items acknowledged`);
      return items.map(() => undefined);
    },
    maxItems: PUT_ITEMS_PER_CALL,
    maxBytes: PUT_BYTES_PER_CALL,
    bytes: (it) => it.key.length + it.record.length,
  });
  /** Quorum-read fetches of one turn, one rep.get per peer; each key's answer still encoded. */
  private readonly gets = new Coalescer<{ key: string; have: string }, Uint8Array | true | null>({
    send: async (id, items) => {
      const reply = await this.callPeer<{ records: Array<Uint8Array | true | null> }>(id, 'rep.get', { keys: items.map((i) => i.key), have: items.map((i) => i.have) });
      if (!Array.isArray(reply.records) || reply.records.length !== items.length) throw new Error('rep.get: malformed reply');
      return reply.records;
    },
    maxItems: READ_KEYS_PER_CALL,
    maxBytes: Number.MAX_SAFE_INTEGER,
    bytes: () => 0,
  });

  constructor(private readonly o: ReplicatorOptions) {
    o.fd.onUp((id) => void this.replay(id));
  }

  // ---- the ring of live members ---------------------------------------------------

  /**
   * The ring the leases follow and reads use: members up or leaving (the master grants
   * leases on the same one). While a node joins or leaves, the next ring (members up or
   * joining) differs: writes go to both lists, so a joining node gets every new write
   * while it copies the old ones, and a leaving node's successor too.
   */
  ring(): Ring | undefined {
    return this.rings().current;
  }

  /** The ring as it will be once every join and leave completes. */
  nextRing(): Ring | undefined {
    return this.rings().next;
  }

  private rings(): RingCache {
    const v = this.o.viewVersion();
    if (this.ringCache.version !== v) {
      const s = this.o.settings();
      const build = (statuses: ReadonlySet<string>) => {
        const members: Member[] = [...this.o.members().values()]
          .filter((m) => statuses.has(m.status))
          .map((m) => (m.zone === undefined ? { id: m.id } : { id: m.id, zone: m.zone }))
          .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
        const ring = s && members.length > 0 ? Ring.build(members, { vnodes: s.vnodes }) : undefined;
        return { ring, fingerprint: `${s?.vnodes}/${s?.n}/${members.map((m) => `${m.id}@${m.zone ?? ''}`).join(',')}` };
      };
      const cur = build(IN_RING);
      const next = build(IN_NEXT_RING);
      this.ringCache = { version: v, current: cur.ring, fingerprint: cur.fingerprint, next: next.ring, nextFingerprint: next.fingerprint };
    }
    return this.ringCache;
  }

  /** Names the ring: equal on two nodes exactly when they compute the same ranges and preference lists. */
  ringFingerprint(): string {
    return this.rings().fingerprint;
  }

  nextRingFingerprint(): string {
    return this.rings().nextFingerprint;
  }

  /** The key's preference list: N distinct members of the current ring clockwise from its position. */
  preferenceList(pos: bigint): string[] {
    const ring = this.ring();
    const s = this.o.settings();
    if (!ring || !s) return [];
    return ring.preferenceList(pos, s.n);
  }

  /** N, the copies of each key (undefined before the first table arrives). */
  replicaCount(): number | undefined {
    return this.o.settings()?.n;
  }

  /** The key's preference list in the next ring (equal to preferenceList unless a node joins or leaves). */
  nextPreferenceList(pos: bigint): string[] {
    const ring = this.nextRing();
    const s = this.o.settings();
    if (!ring || !s) return [];
    return ring.preferenceList(pos, s.n);
  }

  /** The first node of the preference list this node believes reachable (itself included). */
  healthyCoordinator(pos: bigint): string | undefined {
    return this.preferenceList(pos).find((id) => id === this.o.selfId || this.reachable(id));
  }

  /** A forwarded call to `id` failed for want of an answer. */
  peerFailed(id: string): void {
    this.o.fd.failed(id);
  }

  /** The request's quorum sizes, checked against N: 1 <= r, w <= N. */
  checkQuorum(q: Quorum): Quorum {
    const n = this.o.settings()?.n ?? 1;
    for (const [name, v] of [['r', q.r], ['w', q.w]] as const) {
      if (v !== undefined && (!Number.isInteger(v) || v < 1 || v > n)) {
        throw Object.assign(new Error(`${name} must be an integer from 1 to N (${n})`), { code: 'BAD_REQUEST' });
      }
    }
    return q;
  }

  /** May `id` hold hints for others? Not while it leaves: it would have to hand them on again. */
  keepsHints(id: string): boolean {
    const status = this.o.members().get(id)?.status;
    return status === 'up' || status === 'joining';
  }

  /** A member that takes replica traffic (up, joining or leaving) and answers, as far as this node knows. */
  reachable(id: string): boolean {
    const status = this.o.members().get(id)?.status;
    return status !== undefined && TAKES_WRITES.has(status) && !this.o.fd.isDown(id);
  }

  // ---- the coordinator ------------------------------------------------------------

  /** Runs `fn` (a command on the local store) with this request's quorum sizes. */
  withQuorum<T>(q: Quorum, fn: () => T): T {
    const prev = this.current;
    this.current = q;
    try {
      return fn();
    } finally {
      this.current = prev;
    }
  }

  /** LocalKv's replicate hook: resolves once W copies are durable. */
  replicate(key: string, record: StoredRecord, durable: Promise<void> | void): Promise<void> | void {
    const s = this.o.settings();
    const ring = this.ring();
    if (!s || !ring) return durable;
    const w = this.current.w ?? s.w;
    const pos = keyPosition(key);
    const list = ring.preferenceList(pos, s.n);
    const selfIn = list.includes(this.o.selfId);
    const targets = list.filter((id) => id !== this.o.selfId);
    // A node joining (or taking over from one leaving) gets the write too, not counted
    // toward W: its copy counts once the ring has moved.
    const next = this.nextRing();
    if (next && this.nextRingFingerprint() !== this.ringFingerprint()) {
      for (const id of next.preferenceList(pos, s.n)) {
        if (id !== this.o.selfId && !list.includes(id)) this.sendPending(id, key, record);
      }
    }
    // Alone on the list (every other member down or gone): only a W of 1 can be met.
    if (targets.length === 0 && selfIn && w <= 1) return durable;
    // The nodes past the list, in ring order: walked only when a replica is down.
    let fallbacks: string[] | undefined;
    const fallbackList = (): string[] => (fallbacks ??= ring.preferenceList(pos, ring.size).filter((id) => id !== this.o.selfId && !list.includes(id)));
    const bytes = encodeRecord(record);
    return new Promise<void>((resolve, reject) => {
      let acks = 0;
      let open = targets.length + 1;
      let done = false;
      const settle = () => {
        if (done) return;
        if (acks >= w) {
          done = true;
          resolve();
        } else if (open === 0) {
          done = true;
          this.counters.quorum_failures++;
          reject(new QuorumError(`${acks} of ${w} copies written`));
        }
      };
      const finish = (ok: boolean) => {
        if (ok) acks++;
        open--;
        settle();
      };
      Promise.resolve(durable).then(
        () => finish(selfIn),
        (e: unknown) => {
          if (!done) {
            done = true;
            reject(e as Error);
          }
        },
      );
      const hinted = (target: string): void => {
        const f = fallbackList().findIndex((id) => this.reachable(id) && this.keepsHints(id));
        if (f < 0) {
          // Nobody to hand it to: keep the hint here; it is a copy, but not one of the W.
          this.counters.hints_kept_locally++;
          this.o.hints.add(target, key, record).then(
            () => finish(false),
            () => finish(false),
          );
          return;
        }
        const via = fallbackList().splice(f, 1)[0]!;
        this.send(via, [{ key, record: bytes, hintFor: target }]).then(
          () => {
            this.counters.hints_sent++;
            finish(true);
          },
          () => hinted(target),
        );
      };
      for (const t of targets) {
        if (!this.reachable(t)) {
          hinted(t);
          continue;
        }
        this.counters.replica_writes++;
        this.send(t, [{ key, record: bytes }]).then(
          () => finish(true),
          () => {
            this.counters.replica_write_failures++;
            hinted(t);
          },
        );
      }
    });
  }

  /**
   * Brings the local records of `keys` up to date with R-1 other replicas each (read
   * repair included). Undefined when there is nothing to ask (R = 1). Rejects with
   * QuorumError when fewer than R replicas of some key answer.
   *
   * Asks only the R-1 replicas it needs, the first reachable ones in preference-list
   * order (Cassandra's way rather than Dynamo's ask-all: half the replica reads at N=3,
   * R=2). A replica that fails is replaced by the next one at once; one that is silent
   * for hedgeMs is backed by the next (a speculative retry, so a hung replica costs
   * hedgeMs, not the replica deadline). Replicas that were not asked are brought up to
   * date by anti-entropy, and by read repair of a later read at a higher R.
   */
  quorumRead(keys: readonly string[], q: Quorum = {}): Promise<void> | undefined {
    const s = this.o.settings();
    if (!s) return undefined;
    const r = q.r ?? s.r;
    if (r <= 1) return undefined;
    const reads: KeyRead[] = [];
    const seen = new Set<string>();
    for (const key of keys) {
      if (seen.has(key)) continue;
      seen.add(key);
      const list = this.preferenceList(keyPosition(key));
      // R counts replicas, not live members: a list shortened by dead nodes does not shrink it.
      const k = Math.min(r, s.n) - (list.includes(this.o.selfId) ? 1 : 0);
      if (k <= 0) continue;
      const candidates = list.filter((id) => id !== this.o.selfId && this.reachable(id));
      if (candidates.length < k) {
        this.counters.quorum_failures++;
        return Promise.reject(new QuorumError(`${candidates.length + 1} of ${r} replicas reachable`));
      }
      reads.push({ key, need: k, candidates, asked: 0, outstanding: 0, answers: [] });
    }
    if (reads.length === 0) return undefined;
    return new Promise<void>((resolve, reject) => {
      let unsatisfied = reads.length;
      let done = false;
      let hedge: NodeJS.Timeout | undefined;
      const finish = (e?: Error) => {
        if (done) return;
        done = true;
        if (hedge) clearTimeout(hedge);
        if (e) reject(e);
        else resolve();
      };
      const ask = (kr: KeyRead): void => {
        const id = kr.candidates[kr.asked++]!;
        kr.outstanding++;
        // A digest read: the replica answers `true` instead of the record when it holds
        // exactly the versions this node holds now (the common case), so neither side
        // encodes, decodes or merges the value.
        const mine = this.o.kv.raw(kr.key);
        this.gets.add(id, { key: kr.key, have: mine ? versionTag(mine) : '' }).then(
          (answer) => {
            let theirs: StoredRecord | undefined;
            let ok = true;
            try {
              if (answer === true) theirs = mine;
              else {
                theirs = answer ? decodeRecord(answer) : undefined;
                this.absorb(kr.key, theirs);
              }
            } catch {
              ok = false; // a record we cannot decode or merge (corrupt clock): that replica did not answer usefully
            }
            if (ok) kr.answers.push({ from: id, theirs });
            heard(kr, ok);
          },
          () => heard(kr, false),
        );
      };
      const heard = (kr: KeyRead, ok: boolean): void => {
        kr.outstanding--;
        if (ok && kr.need > 0) {
          if (--kr.need === 0 && --unsatisfied === 0) finish();
        } else if (!ok && kr.need > 0) {
          // A failed replica is replaced at once while there is one to ask.
          if (kr.asked < kr.candidates.length) ask(kr);
          else if (kr.need > kr.outstanding) {
            this.counters.quorum_failures++;
            finish(new QuorumError('too few replicas of a key answered'));
          }
        }
        // Read repair waits for every answer asked for, so each replica is compared with
        // the final merge, whatever order the answers came in.
        if (kr.outstanding === 0) {
          for (const a of kr.answers) this.repair(a.from, kr.key, a.theirs);
          kr.answers = [];
        }
      };
      for (const kr of reads) for (let i = 0; i < kr.need; i++) ask(kr);
      hedge = setTimeout(() => {
        hedge = undefined;
        for (const kr of reads) {
          // Speculative retry: one more replica for every key still short of R, beyond those asked.
          const more = Math.min(kr.need, kr.candidates.length - kr.asked);
          for (let i = 0; i < more; i++) ask(kr);
        }
      }, this.hedgeMs());
      hedge.unref?.();
    });
  }

  /** How long a quorum read waits on silent replicas before asking the next ones. */
  private hedgeMs(): number {
    return this.o.hedgeMs ?? Math.max(1, Math.round(this.o.replicaTimeoutMs / 5));
  }

  /** A replica's answer for `key`: merged here at once, so the command that waits sees it. */
  private absorb(key: string, theirs: StoredRecord | undefined): void {
    if (!theirs) return;
    const merged = this.o.kv.merge(key, theirs);
    if (merged instanceof Promise) merged.catch(() => {}); // a failed local write fails the read's own wait for durability
  }

  /** Read repair: a replica that answered without what the merge of all answers holds gets it. */
  private repair(from: string, key: string, theirs: StoredRecord | undefined): void {
    const ours = this.o.kv.raw(key);
    if (!ours) return;
    if (theirs && sameVersions(theirs, ours)) return;
    this.counters.read_repairs++;
    void this.send(from, [{ key, record: encodeRecord(ours) }]).catch(() => {});
  }

  /** A copy for a node of the next ring only: best effort, a hint when it does not answer. */
  private sendPending(id: string, key: string, record: StoredRecord): void {
    const bytes = encodeRecord(record);
    const keep = () => void this.o.hints.add(id, key, record).catch(() => {});
    if (!this.reachable(id)) return keep();
    this.counters.replica_writes++;
    this.send(id, [{ key, record: bytes }]).catch(() => {
      this.counters.replica_write_failures++;
      keep();
    });
  }

  // ---- the replica ----------------------------------------------------------------

  /** `rep.put`: merge replica writes (or keep hinted ones); resolves when durable. */
  async receive(body: unknown): Promise<{ ok: number }> {
    const items = checkItems(body);
    const writes: Array<Promise<unknown> | unknown> = [];
    for (const it of items) {
      const record = decodeRecord(it.record);
      if (it.hintFor !== undefined && it.hintFor !== this.o.selfId) {
        // A node on its way out must not take hints it could not hand on: the coordinator
        // picks the next fallback (a distinct code, so it does not take us for down).
        const own = this.o.members().get(this.o.selfId)?.status;
        if (own === 'leaving' || own === 'left') throw Object.assign(new Error(`${this.o.selfId} is ${own}: it keeps no hints`), { code: 'HINT_REFUSED' });
        writes.push(
          this.o.hints.add(it.hintFor, it.key, record).then((r) => {
            if (r !== 'stored') throw Object.assign(new Error(`hint ${r}`), { code: 'HINT_DROPPED' });
            this.counters.hints_stored++;
          }),
        );
      } else {
        writes.push(this.o.kv.merge(it.key, record));
      }
    }
    await Promise.all(writes);
    return { ok: items.length };
  }

  /**
   * `rep.get`: this node's records (siblings and tombstones included) for keys. With
   * `have` (the asker's versionTag per key, '' for none), a record whose tag matches is
   * answered `true`: the asker already holds exactly these versions.
   */
  serveGet(body: unknown): { records: Array<Uint8Array | true | null> } {
    const b = body as { keys?: unknown; have?: unknown } | null;
    const keys = b?.keys;
    if (!Array.isArray(keys) || keys.length > 10_000 || !keys.every((k) => typeof k === 'string')) {
      throw Object.assign(new Error('keys must be an array of at most 10000 strings'), { code: 'BAD_REQUEST' });
    }
    const have = b?.have;
    if (have !== undefined && (!Array.isArray(have) || have.length !== keys.length || !have.every((h) => typeof h === 'string'))) {
      throw Object.assign(new Error('have must be an array of strings, one per key'), { code: 'BAD_REQUEST' });
    }
    return {
      records: (keys as string[]).map((k, i) => {
        const r = this.o.kv.raw(k);
        if (!r) return null;
        const h = have === undefined ? '' : (have as string[])[i]!;
        return h !== '' && h === versionTag(r) ? true : encodeRecord(r);
      }),
    };
  }

  // ---- hinted handoff ---------------------------------------------------------------

  /** Starts the periodic pass: replays hints of reachable targets, expires old ones. */
  start(periodMs: number): void {
    assert(this.timer === undefined, 'replicator already started');
    this.timer = setInterval(() => {
      for (const t of this.o.hints.targets()) if (this.reachable(t)) void this.replay(t);
      void this.o.hints.expire(1000).catch(() => {});
    }, periodMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Replays every hint held for `target`, batch by batch; each is deleted once acknowledged. */
  async replay(target: string): Promise<number> {
    if (this.replaying.has(target) || target === this.o.selfId) return 0;
    this.replaying.add(target);
    let sent = 0;
    try {
      let after: string | undefined;
      for (;;) {
        if (!this.reachable(target)) break;
        const batch = await this.o.hints.batch(target, after, this.o.hintBatch, 4 * 1024 * 1024);
        if (batch.length === 0) break;
        await this.send(target, batch.map((e) => ({ key: e.key, record: encodeRecord(e.record) })));
        await this.o.hints.acknowledge(target, batch.map((e) => ({ key: e.key, ts: e.record.version.ts })));
        this.counters.hints_replayed += batch.length;
        sent += batch.length;
        after = batch[batch.length - 1]!.key;
      }
    } catch {
      // The target went away again: the rest waits for the next up event or pass.
    } finally {
      this.replaying.delete(target);
    }
    return sent;
  }

  // ---- calls ----------------------------------------------------------------------

  /**
   * Replica items to `id`. One plain item joins the turn's batch for `id`; hints (which a
   * leaving node refuses as a whole call) and replayed batches go in a call of their own.
   */
  private send(id: string, items: WireItem[]): Promise<unknown> {
    if (items.length === 1 && items[0]!.hintFor === undefined) return this.puts.add(id, items[0]!);
    return this.callPeer(id, 'rep.put', { items });
  }

  /** Batching achieved: replica items and fetches per call (stats). */
  batching(): { putCalls: number; putItems: number; getCalls: number; getKeys: number } {
    return { putCalls: this.puts.counters.calls, putItems: this.puts.counters.items, getCalls: this.gets.counters.calls, getKeys: this.gets.counters.items };
  }

  /** A call to a peer by id, feeding the failure detector; the deadline is --replica-timeout-ms unless given. */
  async callPeer<T>(id: string, type: string, body: unknown, timeoutMs = this.o.replicaTimeoutMs): Promise<T> {
    const m = this.o.members().get(id);
    if (!m) throw new QuorumError(`unknown node ${id}`);
    try {
      const r = await this.o.call<T>(m.addrs.rpc, type, body, timeoutMs);
      this.o.fd.answered(id);
      return r;
    } catch (e) {
      const code = (e as { code?: unknown }).code;
      if (code === 'TIMEOUT' || code === 'UNAVAILABLE' || code === 'BUSY') this.o.fd.failed(id);
      else this.o.fd.answered(id);
      throw e;
    }
  }
}

/**
 * Names the versions a record holds: equal on two replicas exactly when sameVersions
 * holds (timestamp, tombstone and vector clock of each version). A record without
 * siblings, the common case, is named without building recordDigest's JSON.
 */
export function versionTag(r: StoredRecord): string {
  if (r.siblings?.length) return recordDigest(r);
  const clock = r.version.clock;
  const ids = Object.keys(clock).sort();
  let tag = `${r.version.ts.wallMs}.${r.version.ts.logical}.${r.tombstone ? 1 : 0}`;
  for (const id of ids) {
    // Node ids are [A-Za-z0-9._-]; one that is not could make two clocks read alike.
    if (id.includes('|') || id.includes(':')) return recordDigest(r);
    tag += `|${id}:${clock[id]}`;
  }
  return tag;
}

function checkItems(body: unknown): WireItem[] {
  const items = (body as { items?: unknown } | null)?.items;
  const bad = () => Object.assign(new Error('items must be an array of {key, record, hintFor?}'), { code: 'BAD_REQUEST' });
  if (!Array.isArray(items) || items.length > 10_000) throw bad();
  for (const it of items as Array<Record<string, unknown>>) {
    if (!it || typeof it.key !== 'string' || !(it.record instanceof Uint8Array) || (it.hintFor !== undefined && typeof it.hintFor !== 'string')) throw bad();
  }
  return items as WireItem[];
}
