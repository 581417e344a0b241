// Moving data when the ring changes: a joining node copies in the records of the ranges
// it will hold, a leaving node hands out the records of the ranges it gives up (and the
// hints it keeps for others), before the master changes the ring. Reads keep using the
// current ring until then, and writes already go to both rings' replicas (see
// replication/replicator.ts), so nothing written during the copy is missed.
//
// The unit is the moving range: a piece (start, end] of the ring whose preference list
// gains a node (ring/ `diffPreference` of the current and the next ring). Each one goes
// queued -> streaming -> catching-up -> flipping -> done, and says why it waits when it
// waits (WireRangeMove in master/core.ts); every node reports its moves to the master.
//
// Join: the joiner streams each moving range from ONE of its current replicas (spread over
// them), in `stream.scan` pages in key order, ranges of one source sharing a scan. After
// merging a page durably it records the last key (the cursor) in its store's metadata, so
// a restarted joiner, a broken connection or a timeout resumes from there, never from the
// start. A page that fails is retried smaller (a link that breaks every N bytes still
// carries pages under N); a source that is down, or that made no progress for
// --transfer-stall-ms, or failed three times running, is replaced by another replica of
// the range, which continues from the same cursor (keys are ordered the same on every
// node). Then the range catches up:
// the joiner compares it with each other current replica, page by page (`stream.digest`:
// one hash per page of keys and version tags), and pulls only the records of pages that
// differ (`stream.diff`), so a key acknowledged on W replicas that the streaming source
// lacked still arrives, at the cost of a hash per page instead of a second copy of the
// range. When every range is through, the joiner calls `joined` (flipping) and the master
// changes the ring and grants the leases (done).
//
// Leave: the leaver walks its own store in key order and pushes each record to the nodes
// of the key's next-ring list that do not replicate it now; its cursor is saved after
// every page, so a restarted leaver goes on where it was. A receiver that does not answer
// is retried until --transfer-stall-ms without progress, then gets the records as hints
// (replayed when it is back). Then every hint the leaver holds is replayed or handed on
// (catching-up), then `left` (flipping), and the master recalls its leases.
//
// Both sides name the next ring by its fingerprint: a page asked for with another ring (a
// membership change meanwhile, such as a source marked down) is refused, and the mover
// plans again with the new one; a new range inside a range it had saved keeps that one's
// cursor, so a ring change does not start the copy over either.
import { diffPreference, hash64, keyPosition, positionCount, positionMax, type PreferenceMove } from '../../ring/index.js';
import { IN_RING, tokenHex } from '../master/core.js';
import type { LocalKv } from '../kv/local-kv.js';
import type { RangeMoveState, RangeMoveWait, WireMember, WireRangeMove, WireTransfer } from '../master/core.js';
import { decodeRecord, encodeRecord, type StoredRecord } from '../storage/record.js';
import type { Store } from '../storage/store.js';
import type { HintStore } from '../replication/hints.js';
import { versionTag, type Replicator, type WireItem } from '../replication/replicator.js';

export interface TransferOptions {
  selfId: string;
  replicator: Replicator;
  kv: LocalKv;
  store: Store;
  hints: HintStore;
  members(): ReadonlyMap<string, WireMember>;
  /** An RPC to a peer by id with a deadline (rejects on failure). */
  callPeer<T>(id: string, type: string, body: unknown, timeoutMs: number): Promise<T>;
  /** An RPC to the master. */
  callMaster<T>(type: string, body: unknown): Promise<T>;
  /** Pull the lease table now. */
  refresh(): Promise<void>;
  /** Byte rate of a transfer, both directions. */
  mbPerS: number;
  /** A call with no progress this long is abandoned and retried (elsewhere when possible). */
  stallMs: number;
  /** Streams a joiner runs at once. */
  concurrency: number;
  now(): number;
  sleep(ms: number): Promise<void>;
  /** Problems worth an operator's attention (a source given up, a receiver that stalls). */
  warn?(fields: Record<string, unknown>, message: string): void;
}

/** Records scanned per page at most, and bytes of a page's records (both shrink after failures). */
const PAGE_KEYS = 1000;
const PAGE_BYTES = 4 * 1024 * 1024;
const MIN_PAGE_KEYS = 16;
const MIN_PAGE_BYTES = 16 * 1024;
/** Records of a leave's push call. */
const PUSH_KEYS = 200;
/** Records a catch-up digest page covers (the peer scans them; only the ranges' keys are hashed). */
const DIGEST_KEYS = 4000;
/** Ranges in one stream request, at most (a join moves a few hundred at most). */
const RANGES_MAX = 65_536;
/** Failures of one catch-up peer before it is left to anti-entropy. */
const CATCHUP_FAILURES_MAX = 4;
const META_IN = 'transfer.in';
const META_OUT = 'transfer.out';

export class TransferError extends Error {
  constructor(
    readonly code: 'RING_MISMATCH' | 'BAD_REQUEST',
    message: string,
  ) {
    super(message);
  }
}

/** One moving range as this node tracks it. */
interface Move {
  readonly start: bigint;
  readonly end: bigint;
  readonly startHex: string;
  readonly endHex: string;
  /** Join: the range's current replicas (preference order); leave: the leaver. */
  readonly candidates: readonly string[];
  source: string;
  readonly target: string;
  state: RangeMoveState;
  keys: number;
  bytes: number;
  retries: number;
  waiting?: RangeMoveWait;
  error?: string;
  /** Join: the last key merged from this range's stream (undefined: none yet). */
  cursor?: string;
  /** Records the source scanned for this range's stream so far, and its store's size (progress). */
  scanned: number;
  total: number;
}

/** Ranges by position: the moves whose range holds a ring position. */
class RangeIndex<T extends { start: bigint; end: bigint }> {
  private readonly sorted: T[];
  private readonly wrap: T[];
  constructor(ranges: readonly T[]) {
    this.sorted = [...ranges].sort((a, b) => (a.end < b.end ? -1 : a.end > b.end ? 1 : 0));
    this.wrap = ranges.filter((r) => r.start >= r.end);
  }

  /** Every range holding `pos` (several when several moves share a range, as a leave's targets do). */
  find(pos: bigint): T[] {
    const s = this.sorted;
    let lo = 0;
    let hi = s.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (s[mid]!.end < pos) lo = mid + 1;
      else hi = mid;
    }
    const out: T[] = [];
    for (let i = lo; i < s.length && s[i]!.end === s[lo]!.end; i++) {
      const r = s[i]!;
      if (r.start < r.end ? pos > r.start : true) out.push(r);
    }
    if (out.length === 0) for (const r of this.wrap) if (pos > r.start) out.push(r);
    return out;
  }
}

type WireRange = [string, string];

/** What a join saves after every page (store metadata `transfer.in`): each range's cursor and stage. */
interface SavedIn {
  fingerprint: string;
  /** a, b: the range's start and end (hex); c: cursor; s: streamed through; u: caught up; n, t: progress. */
  moves: Array<{ a: string; b: string; c?: string; s: boolean; u: boolean; n: number; t: number }>;
}

/** The pieces (lo, hi] of a ring range on the line: two when it wraps past the top, one for the whole ring. */
function linear(r: { start: bigint; end: bigint }): Array<[bigint, bigint]> {
  if (r.start < r.end) return [[r.start, r.end]];
  if (r.start === r.end) return [[-1n, positionMax]];
  return [
    [r.start, positionMax],
    [-1n, r.end],
  ];
}

/** Is the ring range `inner` inside `outer`? */
function rangeWithin(inner: { start: bigint; end: bigint }, outer: { start: bigint; end: bigint }): boolean {
  const out = linear(outer);
  return linear(inner).every(([lo, hi]) => out.some(([olo, ohi]) => olo <= lo && hi <= ohi));
}

/** The ranges of a stream request, checked at the boundary. */
function rangesOf(v: unknown): RangeIndex<{ start: bigint; end: bigint }> {
  if (!Array.isArray(v) || v.length === 0 || v.length > RANGES_MAX) throw new TransferError('BAD_REQUEST', `ranges must be 1..${RANGES_MAX} [start, end] pairs`);
  const hex = /^[0-9a-f]{1,16}$/;
  return new RangeIndex(
    v.map((r: unknown) => {
      if (!Array.isArray(r) || r.length !== 2 || typeof r[0] !== 'string' || typeof r[1] !== 'string' || !hex.test(r[0]) || !hex.test(r[1])) {
        throw new TransferError('BAD_REQUEST', 'a range is [start, end] as hex tokens');
      }
      return { start: BigInt(`0x${r[0]}`), end: BigInt(`0x${r[1]}`) };
    }),
  );
}

const wireRanges = (moves: readonly Move[]): WireRange[] => moves.map((m) => [m.startHex, m.endHex]);
const optKey = (v: unknown, name: string): string | undefined => {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw new TransferError('BAD_REQUEST', `${name} must be a key`);
  return v;
};
const errorCode = (e: unknown): unknown => (e as { code?: unknown } | null)?.code;
const errorText = (e: unknown): string => (e instanceof Error ? e.message : String(e)).slice(0, 200);

/** The digest of one page of a range: the keys and version tags, in key order. */
function pageHash(parts: readonly string[]): string {
  return parts.length === 0 ? '0' : hash64(parts.join('\n')).toString(16);
}

export class Transfers {
  readonly counters = {
    stream_keys_in: 0,
    stream_bytes_in: 0,
    stream_keys_out: 0,
    stream_bytes_out: 0,
    stream_pages_served: 0,
    transfer_retries: 0,
    transfer_source_switches: 0,
    transfer_resumes: 0,
    transfer_catchup_keys: 0,
    transfer_catchup_bytes: 0,
    transfer_stalls: 0,
  };
  private direction: 'in' | 'out' | undefined;
  private moves: Move[] = [];
  private done = false;
  private startedMs = 0;
  private throttleBytes = 0;
  private throttleSinceMs = 0;
  /** Keys and bytes over the whole move (moves are replanned when the ring changes). */
  private totalKeys = 0;
  private totalBytes = 0;
  private totalRetries = 0;
  private leaveSeen = 0;
  private leaveTotal = 1;

  constructor(private readonly o: TransferOptions) {}

  /** The move as it stands, for the master (and so `ringkv status` and GET /cluster). */
  progress(): WireTransfer | undefined {
    if (this.direction === undefined) return undefined;
    const elapsedS = Math.max(0.001, (this.o.now() - this.startedMs) / 1000);
    const ranges: WireRangeMove[] = this.moves.map((m) => ({
      start: m.startHex,
      end: m.endHex,
      source: m.source,
      target: m.target,
      state: m.state,
      keys: m.keys,
      bytes: m.bytes,
      rateBytesPerS: m.state === 'streaming' || m.state === 'catching-up' ? Math.round(m.bytes / elapsedS) : 0,
      retries: m.retries,
      ...(m.waiting ? { waiting: m.waiting } : {}),
      ...(m.error !== undefined && (m.state === 'failed' || m.waiting) ? { error: m.error } : {}),
    }));
    const fraction = this.done ? 1 : this.fraction();
    const rate = Math.round(this.totalBytes / elapsedS);
    const eta = fraction > 0 && fraction < 1 ? Math.round((elapsedS * (1 - fraction)) / fraction) : undefined;
    return {
      direction: this.direction,
      keys: this.totalKeys,
      bytes: this.totalBytes,
      fraction,
      rateBytesPerS: rate,
      ...(eta !== undefined && !this.done ? { etaS: eta } : {}),
      done: this.done,
      state: this.overallState(),
      retries: this.totalRetries,
      ranges,
    };
  }

  private fraction(): number {
    if (this.direction === 'out') return Math.min(1, this.leaveSeen / this.leaveTotal);
    if (this.moves.length === 0) return 0;
    let f = 0;
    for (const m of this.moves) {
      if (m.state === 'catching-up' || m.state === 'flipping' || m.state === 'done') f += 1;
      else if (m.total > 0) f += Math.min(1, m.scanned / m.total);
    }
    return Math.min(1, f / this.moves.length);
  }

  /** The move as a whole: failed if any range failed, else where its least advanced ranges are. */
  private overallState(): RangeMoveState {
    if (this.done) return 'done';
    const states = new Set(this.moves.map((m) => m.state));
    if (states.has('failed')) return 'failed';
    if (states.size === 0 || (states.size === 1 && states.has('queued'))) return 'queued';
    for (const s of ['streaming', 'catching-up', 'flipping'] as const) if (states.has(s) || (s === 'streaming' && states.has('queued'))) return s;
    return 'done';
  }

  // ---- the source of a join ---------------------------------------------------------

  /** Checks the fingerprint of the next ring a request names; refreshes once before refusing. */
  private async checkRing(fingerprint: unknown): Promise<void> {
    if (typeof fingerprint !== 'string') throw new TransferError('BAD_REQUEST', 'a stream request needs the next ring fingerprint');
    const rep = this.o.replicator;
    if (fingerprint !== rep.nextRingFingerprint()) {
      await this.o.refresh().catch(() => {});
      if (fingerprint !== rep.nextRingFingerprint()) throw new TransferError('RING_MISMATCH', 'the next ring differs here: refresh and start over');
    }
  }

  /** Only what this node replicates now is served: a key of the ranges, here, in the current ring. */
  private servable(ranges: RangeIndex<{ start: bigint; end: bigint }>, key: string): boolean {
    const pos = keyPosition(key);
    return ranges.find(pos).length > 0 && this.o.replicator.preferenceList(pos).includes(this.o.selfId);
  }

  /** `stream.scan`: one page, in key order after `after`, of the records of `ranges` this node replicates now. */
  async serveScan(body: unknown): Promise<{ items: WireItem[]; next: string | null; scanned: number; total: number }> {
    const b = (body ?? {}) as { target?: unknown; fingerprint?: unknown; ranges?: unknown; after?: unknown; limit?: unknown; maxBytes?: unknown };
    if (typeof b.target !== 'string') throw new TransferError('BAD_REQUEST', 'stream.scan needs target, fingerprint and ranges');
    const ranges = rangesOf(b.ranges);
    const after = optKey(b.after, 'after');
    const limit = typeof b.limit === 'number' && Number.isInteger(b.limit) && b.limit > 0 ? Math.min(b.limit, 10_000) : PAGE_KEYS;
    const maxBytes = typeof b.maxBytes === 'number' && b.maxBytes > 0 ? Math.min(b.maxBytes, 32 * 1024 * 1024) : PAGE_BYTES;
    await this.checkRing(b.fingerprint);
    const items: WireItem[] = [];
    let bytes = 0;
    let stopAt: string | undefined;
    let scanned = 0;
    const last = await this.o.store.scan(after, limit, (key, record) => {
      if (stopAt !== undefined) return;
      scanned++;
      if (!this.servable(ranges, key)) return;
      const enc = encodeRecord(record);
      items.push({ key, record: enc });
      bytes += enc.length;
      if (bytes >= maxBytes) stopAt = key;
    });
    this.counters.stream_pages_served++;
    this.counters.stream_keys_out += items.length;
    this.counters.stream_bytes_out += bytes;
    return { items, next: stopAt ?? last ?? null, scanned, total: this.o.store.stats().items };
  }

  /**
   * `stream.digest`: the hash of the keys and version tags of `ranges` among the next
   * `limit` records after `after`, and the last key visited (null: the end of the store).
   */
  async serveDigest(body: unknown): Promise<{ last: string | null; hash: string; count: number }> {
    const b = (body ?? {}) as { fingerprint?: unknown; ranges?: unknown; after?: unknown; limit?: unknown };
    const ranges = rangesOf(b.ranges);
    const after = optKey(b.after, 'after');
    const limit = typeof b.limit === 'number' && Number.isInteger(b.limit) && b.limit > 0 ? Math.min(b.limit, 10_000) : DIGEST_KEYS;
    await this.checkRing(b.fingerprint);
    const parts: string[] = [];
    let seen = 0;
    const last = await this.o.store.scan(after, limit, (key, record) => {
      seen++;
      if (this.servable(ranges, key)) parts.push(`${key}\u0000${versionTag(record)}`);
    });
    return { last: seen < limit ? null : (last ?? null), hash: pageHash(parts), count: parts.length };
  }

  /**
   * `stream.diff`: the records of `ranges` in (after, through] (through null: to the end)
   * whose version tag differs from the asker's `have` ([key, tag] pairs), up to maxBytes;
   * `next` is where to ask again, null once the interval is through.
   */
  async serveDiff(body: unknown): Promise<{ items: WireItem[]; next: string | null }> {
    const b = (body ?? {}) as { fingerprint?: unknown; ranges?: unknown; after?: unknown; through?: unknown; have?: unknown; maxBytes?: unknown };
    const ranges = rangesOf(b.ranges);
    let after = optKey(b.after, 'after');
    const through = optKey(b.through, 'through');
    if (!Array.isArray(b.have) || b.have.length > 100_000) throw new TransferError('BAD_REQUEST', 'have must be at most 100000 [key, tag] pairs');
    const have = new Map<string, string>();
    for (const h of b.have as unknown[]) {
      if (!Array.isArray(h) || typeof h[0] !== 'string' || typeof h[1] !== 'string') throw new TransferError('BAD_REQUEST', 'have holds [key, tag] pairs');
      have.set(h[0], h[1]);
    }
    const maxBytes = typeof b.maxBytes === 'number' && b.maxBytes > 0 ? Math.min(b.maxBytes, 32 * 1024 * 1024) : PAGE_BYTES;
    await this.checkRing(b.fingerprint);
    const items: WireItem[] = [];
    let bytes = 0;
    for (;;) {
      let passed = false;
      let full: string | undefined;
      const last = await this.o.store.scan(after, PAGE_KEYS, (key, record) => {
        if (passed || full !== undefined) return;
        if (through !== undefined && key > through) {
          passed = true;
          return;
        }
        if (!this.servable(ranges, key) || have.get(key) === versionTag(record)) return;
        const enc = encodeRecord(record);
        items.push({ key, record: enc });
        bytes += enc.length;
        if (bytes >= maxBytes) full = key;
      });
      if (full !== undefined) {
        this.countOut(items, bytes);
        return { items, next: full };
      }
      if (passed || last === undefined || last === through) break;
      after = last;
    }
    this.countOut(items, bytes);
    return { items, next: null };
  }

  private countOut(items: readonly WireItem[], bytes: number): void {
    this.counters.stream_keys_out += items.length;
    this.counters.stream_bytes_out += bytes;
  }

  // ---- joining ------------------------------------------------------------------------

  /** Copies in every range this node will replicate, one source each, then catches up; then `joined`. */
  async join(): Promise<void> {
    this.begin('in');
    for (;;) {
      await this.o.refresh().catch(() => {});
      const fingerprint = this.o.replicator.nextRingFingerprint();
      this.moves = this.planJoin();
      await this.restoreIn(fingerprint);
      try {
        await this.runStreams(fingerprint);
      } catch (e) {
        if (errorCode(e) === 'RING_MISMATCH') {
          // The ring moved: plan again with the new one (a short pause, should it move on).
          await this.o.sleep(50);
          continue;
        }
        for (const m of this.moves) if (m.state !== 'flipping') this.setState(m, 'failed', undefined, errorText(e));
        throw e;
      }
      if (this.o.replicator.nextRingFingerprint() !== fingerprint) continue;
      break;
    }
    for (const m of this.moves) this.setState(m, 'flipping', 'lease-pending');
    await this.untilAccepted(() => this.o.callMaster('joined', { id: this.o.selfId }));
    await this.untilFlipped((status) => status !== 'joining');
    await this.o.store.putMeta(META_IN, new Uint8Array(0)).catch(() => {});
    this.finish();
  }

  /** The pieces of the ring whose preference list differs between the current and the next ring. */
  private changedLists(): PreferenceMove[] {
    const rep = this.o.replicator;
    const cur = rep.ring();
    const next = rep.nextRing();
    const n = rep.replicaCount();
    return cur && next && n !== undefined ? diffPreference(cur, next, n) : [];
  }

  /** The ranges whose preference list gains this node, each with a first source spread over its replicas. */
  private planJoin(): Move[] {
    const moves: Move[] = [];
    for (const d of this.changedLists()) {
      if (!d.after.includes(this.o.selfId) || d.before.includes(this.o.selfId)) continue;
      const candidates = d.before;
      const first = moves.length % candidates.length;
      const ordered = [...candidates.slice(first), ...candidates.slice(0, first)];
      const source = ordered.find((id) => this.o.replicator.reachable(id)) ?? ordered[0]!;
      moves.push(this.newMove(d.start, d.end, candidates, source, this.o.selfId));
    }
    return moves;
  }

  private newMove(start: bigint, end: bigint, candidates: readonly string[], source: string, target: string): Move {
    return { start, end, startHex: tokenHex(start), endHex: tokenHex(end), candidates, source, target, state: 'queued', waiting: 'concurrency', keys: 0, bytes: 0, retries: 0, scanned: 0, total: 0 };
  }

  /**
   * Picks up what an earlier run of this join saved (before a restart, or before the ring
   * changed under it): a range inside a saved range takes its cursor, since every key of
   * it up to the cursor is here whatever the source was; it was streamed through if that
   * one was, and caught up if that one was under the same ring (else it compares again).
   */
  private async restoreIn(fingerprint: string): Promise<void> {
    const saved = await this.readMeta<SavedIn>(META_IN);
    if (!saved || !Array.isArray(saved.moves)) return;
    const olds = saved.moves.map((r) => ({ ...r, start: BigInt(`0x${r.a}`), end: BigInt(`0x${r.b}`) }));
    // A new ring has other pieces: cut the new ranges where saved ones begin and end, so
    // that each piece lies inside one saved range (and takes its cursor) or outside all.
    const cuts = [...new Set(olds.flatMap((o) => [o.start, o.end]))];
    this.moves = this.moves.flatMap((m) => this.split(m, cuts));
    let resumed = false;
    for (const m of this.moves) {
      const r = olds.find((o) => rangeWithin(m, o));
      if (!r) continue;
      if (r.c !== undefined) m.cursor = r.c;
      m.scanned = r.n;
      m.total = r.t;
      if (r.u && saved.fingerprint === fingerprint) this.setState(m, 'flipping', 'lease-pending');
      else if (r.s || r.u) this.setState(m, 'catching-up');
      resumed ||= r.c !== undefined || r.s || r.u;
    }
    if (resumed) this.counters.transfer_resumes++;
  }

  /** `m` cut at every point of `cuts` strictly inside it, in ring order from its start. */
  private split(m: Move, cuts: readonly bigint[]): Move[] {
    const span = (p: bigint) => (p - m.start + positionCount) % positionCount;
    const whole = m.start === m.end;
    const inside = cuts.filter((p) => p !== m.start && p !== m.end && (whole || span(p) < span(m.end))).sort((a, b) => (span(a) < span(b) ? -1 : span(a) > span(b) ? 1 : 0));
    if (inside.length === 0) return [m];
    const bounds = [m.start, ...inside, m.end];
    return bounds.slice(1).map((end, i) => this.newMove(bounds[i]!, end, m.candidates, m.source, m.target));
  }

  private async saveIn(fingerprint: string): Promise<void> {
    const moves: SavedIn['moves'] = this.moves.map((m) => ({
      a: m.startHex,
      b: m.endHex,
      ...(m.cursor !== undefined ? { c: m.cursor } : {}),
      s: m.state === 'catching-up' || m.state === 'flipping',
      u: m.state === 'flipping',
      n: m.scanned,
      t: m.total,
    }));
    await this.o.store.putMeta(META_IN, new TextEncoder().encode(JSON.stringify({ fingerprint, moves } satisfies SavedIn)));
  }

  private async readMeta<T>(name: string): Promise<T | undefined> {
    const bytes = await this.o.store.getMeta(name).catch(() => undefined);
    if (!bytes || bytes.length === 0) return undefined;
    try {
      return JSON.parse(new TextDecoder().decode(bytes)) as T;
    } catch {
      return undefined;
    }
  }

  /**
   * Every range through its stream and its catch-up: `concurrency` streams at once; a
   * group's catch-up (digests, mostly) runs beside the next streams instead of holding a slot.
   */
  private async runStreams(fingerprint: string): Promise<void> {
    // Ranges of one source and one cursor share a scan; a resumed range keeps its own cursor.
    const queue: Move[][] = [];
    const groups = new Map<string, Move[]>();
    for (const m of this.moves) {
      if (m.state === 'flipping') continue;
      const k = `${m.source}\u0000${m.cursor ?? ''}\u0000${m.state}`;
      const g = groups.get(k) ?? [];
      g.push(m);
      groups.set(k, g);
    }
    queue.push(...groups.values());
    let failure: unknown;
    const catchUps: Array<Promise<void>> = [];
    const caughtUp = async (g: Move[]): Promise<void> => {
      try {
        await this.catchUp(fingerprint, g);
        for (const m of g) this.setState(m, 'flipping', 'lease-pending');
        await this.saveIn(fingerprint);
      } catch (e) {
        failure ??= e;
      }
    };
    const worker = async (): Promise<void> => {
      for (let g = queue.shift(); g !== undefined && failure === undefined; g = queue.shift()) {
        try {
          if (g[0]!.state !== 'catching-up') {
            const rest = await this.stream(fingerprint, g);
            if (rest.length > 0) {
              // Some ranges moved to other sources: each group of them is a stream of its own.
              queue.unshift(...rest);
              continue;
            }
          }
          catchUps.push(caughtUp(g));
        } catch (e) {
          failure ??= e;
        }
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, this.o.concurrency) }, () => worker()));
    await Promise.all(catchUps);
    if (failure !== undefined) throw failure;
  }

  /**
   * Streams the ranges of `group` from their source, page by page, from their cursor.
   * Returns the groups (each with a new source) that ranges went to when the source failed;
   * the ranges still here are streamed.
   */
  private async stream(fingerprint: string, group: Move[]): Promise<Move[][]> {
    const source = group[0]!.source;
    let pageKeys = PAGE_KEYS;
    let pageBytes = PAGE_BYTES;
    let successes = 0;
    let failures = 0;
    let lastProgressMs = this.o.now();
    for (const m of group) this.setState(m, 'streaming');
    const index = new RangeIndex(group);
    for (;;) {
      const after = group[0]!.cursor;
      let page: { items: WireItem[]; next: string | null; scanned: number; total: number };
      try {
        if (!this.inRing(source)) throw Object.assign(new Error(`${source} is no longer in the ring`), { code: 'UNAVAILABLE' });
        page = await this.o.callPeer(
          source,
          'stream.scan',
          { target: this.o.selfId, fingerprint, ranges: wireRanges(group), after: after ?? null, limit: pageKeys, maxBytes: pageBytes },
          this.o.stallMs,
        );
        if (!page || !Array.isArray(page.items) || (page.next !== null && typeof page.next !== 'string')) throw new Error('stream.scan: malformed reply');
      } catch (e) {
        if (errorCode(e) === 'RING_MISMATCH' && (await this.ringMoved(fingerprint))) throw e;
        failures++;
        this.retried(group, e, errorCode(e) === 'BUSY' ? 'source-busy' : 'source-down');
        // A failed page is asked for again smaller: a link that breaks every N bytes still carries pages under N.
        pageKeys = Math.max(MIN_PAGE_KEYS, pageKeys >> 1);
        pageBytes = Math.max(MIN_PAGE_BYTES, pageBytes >> 1);
        successes = 0;
        const stalled = this.o.now() - lastProgressMs >= this.o.stallMs;
        if (stalled) this.counters.transfer_stalls++;
        // The same source again while it may just have lost a connection; another replica
        // once it stalls, fails three times running, or is out of the ring.
        if (stalled || failures >= 3 || !this.inRing(source)) {
          const moved = this.switchSource(group, source);
          if (moved.length > 0) return moved;
        }
        await this.o.sleep(Math.min(2000, 50 * 2 ** Math.min(failures, 6)));
        continue;
      }
      failures = 0;
      lastProgressMs = this.o.now();
      if (++successes >= 4 && (pageKeys < PAGE_KEYS || pageBytes < PAGE_BYTES)) {
        pageKeys = Math.min(PAGE_KEYS, pageKeys * 2);
        pageBytes = Math.min(PAGE_BYTES, pageBytes * 2);
        successes = 0;
      }
      const bytes = await this.mergeAll(page.items, index);
      for (const m of group) {
        m.waiting = undefined;
        m.scanned += page.scanned;
        m.total = Math.max(page.total, m.scanned);
        if (page.next !== null) m.cursor = page.next;
      }
      this.counters.stream_keys_in += page.items.length;
      this.counters.stream_bytes_in += bytes;
      if (page.next === null) {
        for (const m of group) this.setState(m, 'catching-up');
      }
      await this.saveIn(fingerprint);
      if (page.next === null) return [];
      await this.throttle(bytes, group);
    }
  }

  /**
   * After a source failed: every range that has another replica that answers goes there
   * (with its cursor); returns those, grouped by new source. Ranges without one stay.
   */
  private switchSource(group: Move[], failed: string): Move[][] {
    const out = new Map<string, Move[]>();
    for (let i = group.length - 1; i >= 0; i--) {
      const m = group[i]!;
      const at = m.candidates.indexOf(failed);
      const others = [...m.candidates.slice(at + 1), ...m.candidates.slice(0, Math.max(0, at))].filter((id) => id !== failed && this.inRing(id));
      const alt = others.find((id) => this.o.replicator.reachable(id));
      if (alt === undefined) continue;
      m.source = alt;
      group.splice(i, 1);
      const g = out.get(alt) ?? [];
      g.unshift(m);
      out.set(alt, g);
    }
    if (out.size === 0) return [];
    this.counters.transfer_source_switches += out.size;
    this.o.warn?.({ from: failed, to: [...out.keys()], ranges: [...out.values()].reduce((n, g) => n + g.length, 0) }, 'transfer source switched');
    const groups = [...out.values()];
    if (group.length > 0) groups.push(group);
    return groups;
  }

  /**
   * Catching up: compares the ranges with each of their other current replicas, a digest
   * page at a time, and pulls the records of pages that differ. A peer that keeps failing
   * is left to anti-entropy (which compares every range once the ring has changed).
   */
  private async catchUp(fingerprint: string, group: Move[]): Promise<void> {
    for (const m of group) this.setState(m, 'catching-up');
    const peers = new Map<string, Move[]>();
    for (const m of group) {
      for (const id of m.candidates) {
        if (id === m.source || !this.inRing(id)) continue;
        const list = peers.get(id) ?? [];
        list.push(m);
        peers.set(id, list);
      }
    }
    for (const [peer, moves] of peers) {
      const index = new RangeIndex(moves);
      const ranges = wireRanges(moves);
      let after: string | undefined;
      let failures = 0;
      for (;;) {
        try {
          if (!this.o.replicator.reachable(peer)) throw Object.assign(new Error(`${peer} is down`), { code: 'UNAVAILABLE' });
          const d = await this.o.callPeer<{ last: string | null; hash: string }>(peer, 'stream.digest', { fingerprint, ranges, after: after ?? null, limit: DIGEST_KEYS }, this.o.stallMs);
          const mine = await this.localPage(index, after, d.last ?? undefined);
          if (pageHash(mine.parts) !== d.hash) await this.pullDiff(fingerprint, peer, moves, index, after, d.last ?? undefined, mine.have);
          for (const m of moves) m.waiting = undefined;
          failures = 0;
          if (d.last === null) break;
          after = d.last;
        } catch (e) {
          if (errorCode(e) === 'RING_MISMATCH' && (await this.ringMoved(fingerprint))) throw e;
          this.retried(moves, e, 'source-down');
          if (++failures >= CATCHUP_FAILURES_MAX) {
            this.o.warn?.({ peer, ranges: moves.length, err: errorText(e) }, 'catch-up with a replica given up: anti-entropy compares it after the ring changes');
            for (const m of moves) m.waiting = undefined;
            break;
          }
          await this.o.sleep(Math.min(2000, 100 * 2 ** failures));
        }
      }
    }
  }

  /** This node's keys and version tags of the ranges in (after, through], in key order. */
  private async localPage(index: RangeIndex<Move>, after: string | undefined, through: string | undefined): Promise<{ parts: string[]; have: Array<[string, string]> }> {
    const parts: string[] = [];
    const have: Array<[string, string]> = [];
    let from = after;
    for (;;) {
      let passed = false;
      const last = await this.o.store.scan(from, PAGE_KEYS, (key, record) => {
        if (passed) return;
        if (through !== undefined && key > through) {
          passed = true;
          return;
        }
        if (index.find(keyPosition(key)).length === 0) return;
        const tag = versionTag(record);
        parts.push(`${key}\u0000${tag}`);
        have.push([key, tag]);
      });
      if (passed || last === undefined || last === through) return { parts, have };
      from = last;
    }
  }

  private async pullDiff(
    fingerprint: string,
    peer: string,
    moves: Move[],
    index: RangeIndex<Move>,
    after: string | undefined,
    through: string | undefined,
    have: Array<[string, string]>,
  ): Promise<void> {
    let from = after;
    for (;;) {
      const rest = from === undefined ? have : have.filter(([k]) => k > from!);
      const r = await this.o.callPeer<{ items: WireItem[]; next: string | null }>(
        peer,
        'stream.diff',
        { fingerprint, ranges: wireRanges(moves), after: from ?? null, through: through ?? null, have: rest, maxBytes: PAGE_BYTES },
        this.o.stallMs,
      );
      if (!r || !Array.isArray(r.items)) throw new Error('stream.diff: malformed reply');
      const bytes = await this.mergeAll(r.items, index);
      this.counters.transfer_catchup_keys += r.items.length;
      this.counters.transfer_catchup_bytes += bytes;
      await this.throttle(bytes, moves);
      if (r.next === null) return;
      from = r.next;
    }
  }

  /** Merges a page's records durably, counting each against its range; returns the bytes. */
  private async mergeAll(items: readonly WireItem[], index: RangeIndex<Move>): Promise<number> {
    let bytes = 0;
    const writes: Array<Promise<boolean> | boolean> = [];
    for (const it of items) {
      if (typeof it?.key !== 'string' || !(it.record instanceof Uint8Array)) throw new Error('stream: malformed item');
      const record: StoredRecord = decodeRecord(it.record);
      writes.push(this.o.kv.merge(it.key, record));
      bytes += it.record.length;
      for (const m of index.find(keyPosition(it.key))) {
        m.keys++;
        m.bytes += it.record.length;
      }
    }
    await Promise.all(writes);
    this.totalKeys += items.length;
    this.totalBytes += bytes;
    return bytes;
  }

  /**
   * After a peer refused a request for naming another next ring: has ours moved (plan
   * again), or is the peer behind (a failure of that peer like any other, retried, then
   * another replica: one peer that cannot see the new ring must not hold the join)?
   */
  private async ringMoved(fingerprint: string): Promise<boolean> {
    await this.o.refresh().catch(() => {});
    return this.o.replicator.nextRingFingerprint() !== fingerprint;
  }

  private inRing(id: string): boolean {
    const m = this.o.members().get(id);
    return m !== undefined && IN_RING.has(m.status);
  }

  // ---- leaving ------------------------------------------------------------------------

  /** Hands out every record whose next-ring replicas lack it, then every hint; then `left`. */
  async leave(): Promise<void> {
    this.begin('out');
    for (;;) {
      await this.o.refresh().catch(() => {});
      const fingerprint = this.o.replicator.nextRingFingerprint();
      this.moves = this.planLeave();
      const index = new RangeIndex(this.moves);
      const saved = await this.readMeta<{ fingerprint: string; after?: string; seen: number }>(META_OUT);
      let after = saved?.fingerprint === fingerprint ? saved.after : undefined;
      this.leaveSeen = saved?.fingerprint === fingerprint ? saved.seen : 0;
      if (after !== undefined) this.counters.transfer_resumes++;
      this.leaveTotal = Math.max(1, this.o.store.stats().items);
      for (const m of this.moves) this.setState(m, 'streaming');
      for (;;) {
        const batches = new Map<string, WireItem[]>();
        const last = await this.o.store.scan(after, PAGE_KEYS, (key, record) => {
          this.leaveSeen++;
          const pos = keyPosition(key);
          let enc: Uint8Array | undefined;
          for (const m of index.find(pos)) {
            const list = batches.get(m.target) ?? [];
            list.push({ key, record: (enc ??= encodeRecord(record)) });
            batches.set(m.target, list);
          }
        });
        for (const [id, items] of batches) await this.pushTo(id, items, index);
        if (last === undefined) break;
        after = last;
        await this.o.store.putMeta(META_OUT, new TextEncoder().encode(JSON.stringify({ fingerprint, after, seen: this.leaveSeen })));
      }
      if (this.o.replicator.nextRingFingerprint() === fingerprint) break;
    }
    for (const m of this.moves) this.setState(m, 'catching-up');
    await this.handOnHints();
    for (const m of this.moves) this.setState(m, 'flipping', 'lease-pending');
    await this.untilAccepted(() => this.o.callMaster('left', { id: this.o.selfId }));
    await this.o.store.putMeta(META_OUT, new Uint8Array(0)).catch(() => {});
    this.finish();
  }

  /** For each range this node replicates now, one move per node the next ring adds to its list. */
  private planLeave(): Move[] {
    const moves: Move[] = [];
    for (const d of this.changedLists()) {
      if (!d.before.includes(this.o.selfId)) continue;
      for (const id of d.after) if (!d.before.includes(id)) moves.push(this.newMove(d.start, d.end, [this.o.selfId], this.o.selfId, id));
    }
    return moves;
  }

  private async pushTo(id: string, items: WireItem[], index: RangeIndex<Move>): Promise<void> {
    const mine = (key: string) => index.find(keyPosition(key)).filter((m) => m.target === id);
    for (let i = 0; i < items.length; i += PUSH_KEYS) {
      const chunk = items.slice(i, i + PUSH_KEYS);
      const bytes = chunk.reduce((n, it) => n + it.record.length, 0);
      const moves = [...new Set(chunk.flatMap((it) => mine(it.key)))];
      const since = this.o.now();
      for (let failures = 0; ; failures++) {
        try {
          await this.o.callPeer(id, 'rep.put', { items: chunk }, Math.min(this.o.stallMs, 30_000));
          for (const m of moves) m.waiting = undefined;
          break;
        } catch (e) {
          this.retried(moves, e, errorCode(e) === 'BUSY' ? 'receiver-busy' : 'receiver-down');
          // A new replica without progress for --transfer-stall-ms (or down, as the failure
          // detector says) gets the copies as hints, which replay when it is back (and go
          // with the other hints below).
          if (this.o.now() - since >= this.o.stallMs || (failures >= 2 && !this.o.replicator.reachable(id))) {
            this.counters.transfer_stalls++;
            this.o.warn?.({ target: id, keys: chunk.length, err: errorText(e) }, 'leave: receiver stalled, records kept as hints for it');
            for (const it of chunk) await this.o.hints.add(id, it.key, decodeRecord(it.record)).catch(() => {});
            break;
          }
          await this.o.sleep(Math.min(2000, 100 * 2 ** Math.min(failures, 4)));
        }
      }
      for (const it of chunk) {
        for (const m of mine(it.key)) {
          m.keys++;
          m.bytes += it.record.length;
        }
      }
      this.totalKeys += chunk.length;
      this.totalBytes += bytes;
      this.counters.stream_keys_out += chunk.length;
      this.counters.stream_bytes_out += bytes;
      await this.throttle(bytes, moves);
    }
  }

  /**
   * After `left`, before the process ends: hints added since the hand-on (a copy for a
   * next-ring replica that did not answer) go the same way, until none is left.
   */
  async handOnRemainingHints(): Promise<void> {
    for (let round = 0; this.o.hints.targets().length > 0; round++) {
      await this.handOnHints();
      if (this.o.hints.targets().length > 0) await this.o.sleep(Math.min(2000, 100 * 2 ** Math.min(round, 5)));
    }
  }

  /** The hints this node keeps for others must outlive it: replayed to their targets, or handed to another node. */
  private async handOnHints(): Promise<void> {
    const rep = this.o.replicator;
    for (const target of this.o.hints.targets()) {
      if (rep.reachable(target)) {
        await rep.replay(target);
        if (this.o.hints.pending(target).entries === 0) continue;
      }
      const heirs = [...this.o.members().values()].filter((m) => m.id !== this.o.selfId && m.id !== target && rep.reachable(m.id) && rep.keepsHints(m.id));
      for (let failures = 0; heirs.length > 0; ) {
        const batch = await this.o.hints.batch(target, undefined, 200, PAGE_BYTES);
        if (batch.length === 0) break;
        const heir = heirs[failures % heirs.length]!;
        try {
          await this.o.callPeer(heir.id, 'rep.put', { items: batch.map((e) => ({ key: e.key, record: encodeRecord(e.record), hintFor: target })) }, this.o.stallMs);
        } catch {
          // Another heir next time, a bounded pause apart; the caller tries again later.
          this.counters.transfer_retries++;
          if (++failures >= 3 * heirs.length) return;
          await this.o.sleep(Math.min(2000, 100 * 2 ** Math.min(failures, 5)));
          continue;
        }
        await this.o.hints.acknowledge(target, batch.map((e) => ({ key: e.key, ts: e.record.version.ts })));
        this.totalKeys += batch.length;
      }
    }
  }

  // ---- progress and pacing ------------------------------------------------------------

  private begin(direction: 'in' | 'out'): void {
    this.direction = direction;
    this.done = false;
    this.moves = [];
    this.startedMs = this.o.now();
    this.throttleSinceMs = this.startedMs;
    this.throttleBytes = 0;
    this.totalKeys = 0;
    this.totalBytes = 0;
    this.totalRetries = 0;
    this.leaveSeen = 0;
    this.leaveTotal = 1;
  }

  private setState(m: Move, state: RangeMoveState, waiting?: RangeMoveWait, error?: string): void {
    m.state = state;
    m.waiting = waiting;
    if (error !== undefined) m.error = error;
  }

  private retried(moves: readonly Move[], e: unknown, waiting: RangeMoveWait): void {
    this.counters.transfer_retries++;
    this.totalRetries++;
    const text = errorText(e);
    for (const m of moves) {
      m.retries++;
      m.waiting = waiting;
      m.error = text;
    }
  }

  private finish(): void {
    for (const m of this.moves) this.setState(m, 'done');
    this.done = true;
  }

  /** Keeps the transfer at or under --stream-mb-per-s; the ranges waiting say so meanwhile. */
  private async throttle(bytes: number, moves: readonly Move[]): Promise<void> {
    this.throttleBytes += bytes;
    const allowedMs = (this.throttleBytes / (this.o.mbPerS * 1024 * 1024)) * 1000;
    const elapsedMs = this.o.now() - this.throttleSinceMs;
    if (allowedMs <= elapsedMs) return;
    for (const m of moves) m.waiting ??= 'throttle';
    await this.o.sleep(allowedMs - elapsedMs);
    for (const m of moves) if (m.waiting === 'throttle') m.waiting = undefined;
  }

  /** Calls the master until it answers (it may be restarting). */
  private async untilAccepted(call: () => Promise<unknown>): Promise<void> {
    for (let failures = 0; ; failures++) {
      try {
        await call();
        return;
      } catch (e) {
        if (errorCode(e) === 'BAD_MEMBER' || errorCode(e) === 'UNKNOWN_NODE') throw e;
        await this.o.sleep(Math.min(2000, 100 * 2 ** Math.min(failures, 5)));
      }
    }
  }

  /** Waits until this node's status in the table says the master has changed the ring. */
  private async untilFlipped(flipped: (status: string | undefined) => boolean): Promise<void> {
    for (let i = 0; !flipped(this.o.members().get(this.o.selfId)?.status); i++) {
      await this.o.refresh().catch(() => {});
      if (flipped(this.o.members().get(this.o.selfId)?.status)) return;
      await this.o.sleep(Math.min(1000, 50 * 2 ** Math.min(i, 4)));
    }
  }
}
