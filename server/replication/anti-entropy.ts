// Anti-entropy (Dynamo §4.7): replicas of a ring range compare Merkle trees of what they
// hold and exchange only the keys of the leaves that differ, so that divergence that
// hinted handoff and read repair missed (a lost hint, a key nobody reads) heals in the
// background, in work proportional to the difference and not to the data.
//
// Trees. One MerkleTree per range of the layout (the ranges this node replicates), each
// entry (key, position, recordDigest(record)) for every record in the store, tombstones
// included (a delete must travel like a write). Beside each tree a per-leaf map key ->
// digest: the tree keeps only entry hashes, and the exchange needs the keys of a leaf and
// their digests without scanning the store (the store is in key order, a leaf is a slice of
// positions). The trees are built lazily by one full scan of the store, in batches that
// yield to the event loop, the first time they are needed and whenever the layout's
// fingerprint changes; concurrent callers share one build, and builds run one at a time.
// After a build, `noteWrite` keeps them current in O(depth) per write.
//
// A write racing the scan: the scan may have passed the key already, or read it before
// the write. So every key noted while a build is in progress is remembered and re-read
// with the synchronous `store.get` after the last scan step, in the same synchronous
// stretch that installs the new trees: no write falls between the re-read and the install.
//
// Protocol with a peer P (the requester sends its fingerprint; P answers RING_MISMATCH
// unless its ring is the same, so both name the same ranges and build the same shapes):
//   1. ae.roots  {fingerprint, ends}          -> {roots: (hex | null)[]}
//   2. ae.leaves {fingerprint, ends}          -> {leaves: hex[][]}  (the whole leaf level)
//   3. ae.keys   {fingerprint, leaves: [{end, leaf}]} -> {keys: [key, digest][]}
//   4. per key: P has it with another digest, or only P has it -> rep.get, merge, and push
//      our merged record back if it still differs from P's; only we have it -> rep.put.
// A range is named by its end as 16 lowercase hex digits, a hash likewise (msgpack would
// turn a u64 into a lossy JS number). Leaf levels are fetched whole: at the default depth
// 6 a level is 64 hashes, about the size of one key exchange, so a top-down walk would
// only add round trips.
//
// Bounds: at most `maxKeysPerRound` distinct keys pulled or pushed per peer per round (the
// rest wait for the next round: repaired leaves match then, so each round makes progress);
// every request and reply is chunked (ranges per call, leaves per call, keys and bytes per
// rep.get / rep.put). Everything from a peer is checked, and a malformed answer fails that
// peer for the round (MerkleWireError), never an assertion.
//
// Invariants: after every public method returns, for each tree set, a key is in the tree
// of the range holding its position exactly when it is in that range's leaf map, with the
// digest the tree was given; once a build is installed, tree and maps equal what a fresh
// scan of the store would produce, provided the node calls noteWrite after every change.
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { AssertionError, keyPosition } from '../../ring/index.js';
import { decodeRecord, encodeRecord, type StoredRecord } from '../storage/record.js';
import type { Store } from '../storage/store.js';
import { assert } from '../util/assert.js';
import { depthMax, depthMin, MerkleTree } from './merkle.js';
import { hashesFromWire, hashesToWire, MerkleWireError } from './merkle-wire.js';
import { recordDigest } from './versions.js';

/** A ring range (start, end] (start === end: the whole ring) and its N-node preference list. */
export interface AeRange {
  start: bigint;
  end: bigint;
  replicas: readonly string[];
}

/** Every range of the current ring where selfId is among the replicas; the fingerprint changes whenever the ring does. */
export interface AeLayout {
  fingerprint: string;
  ranges: readonly AeRange[];
}

export interface AeDeps {
  selfId: string;
  layout(): AeLayout;
  store: Pick<Store, 'get' | 'scan'>;
  /** RPC to a peer by node id; rejects on any failure. */
  call<T>(peerId: string, type: string, body: unknown): Promise<T>;
  /** Is the peer believed reachable (failure detector)? Down peers are skipped this round. */
  isUp(peerId: string): boolean;
  /** Merge a peer's record into the local store (vector-clock resolve); resolves when durable. The store's put then calls noteWrite itself. */
  merge(key: string, record: StoredRecord): Promise<void> | void;
  /** Merkle depth per range, default `aeDepthDefault`. Every replica must use the same. */
  depth?: number;
  /** Records per scan step of a tree build, default `aeScanBatchDefault`. */
  scanBatch?: number;
  /** Bound on keys exchanged with one peer per round, default `aeMaxKeysPerRoundDefault`. */
  maxKeysPerRound?: number;
}

export interface AeRoundResult {
  /** Peers contacted: the up replicas sharing a range with this node (down ones are skipped). */
  peers: number;
  /** Ranges whose roots were compared (the peer replicates them too). */
  rangesCompared: number;
  rangesDiffering: number;
  /** Distinct keys pulled or pushed (a key pulled and pushed back counts once). */
  keysExchanged: number;
  /** Peers that failed, answered RING_MISMATCH or sent a malformed answer; skipped for the rest of the round. */
  failedPeers: string[];
}

export type AeErrorCode = 'RING_MISMATCH' | 'BAD_REQUEST';

/** What `handle` refuses a request with; the RPC server sends `code` to the requester. */
export class AeError extends Error {
  override readonly name = 'AeError';
  constructor(
    readonly code: AeErrorCode,
    message: string,
  ) {
    super(message);
  }
}

export const aeDepthDefault = 6;
/** Written keys held back from the trees before they are applied anyway (bounds the pending set). */
export const aePendingMax = 100_000;
export const aeScanBatchDefault = 1000;
export const aeMaxKeysPerRoundDefault = 10_000;
/** Keys per rep.get and per rep.put call. */
export const aeKeysPerCall = 500;
/**
 * Keys per rep.get call: the peer's answer is not split by bytes, so few enough keys that
 * 1 MiB items (the default limit) stay well inside the RPC's 64 MiB frame.
 */
export const aePullKeysPerCall = 32;
/** Encoded record bytes per rep.put call (well under the RPC's 64 MiB frame), beyond the first record. */
export const aePushBytesPerCall = 8 * 1024 * 1024;
/** Ranges named in one ae.roots request (and the most a responder accepts). */
export const aeEndsPerRequestMax = 4096;
/** Leaf hashes in one ae.leaves reply: ranges per request = this / 2^depth. */
export const aeLeafHashesPerReplyMax = 65_536;
/** Leaves named in one ae.keys request (and the most a responder accepts). */
export const aeLeavesPerRequestMax = 4096;

/** Leaves asked for per ae.keys call by the requester. */
const leavesPerKeysCall = 256;
/** Our own keys in the leaves of one ae.keys call: the peer's answer is likely about as large. */
const localKeysPerKeysCall = 10_000;

const hexPattern = /^[0-9a-f]{16}$/;

/** A range end on the wire: 16 lowercase hex digits, `end.toString(16).padStart(16, '0')`. */
export function aeEndToWire(end: bigint): string {
  return hashesToWire([end])[0]!;
}

/** A node hash on the wire: the same 16 lowercase hex digits. */
function hashToWire(hash: bigint): string {
  return hashesToWire([hash])[0]!;
}

/** One range of a tree set: its tree, and per leaf the digests of the keys the tree holds. */
interface RangeTree {
  readonly range: AeRange;
  readonly wireEnd: string;
  readonly tree: MerkleTree;
  /** Leaf i -> (key -> digest); undefined while the leaf is empty (most leaves of a small store). */
  readonly digests: (Map<string, string> | undefined)[];
}

/** The trees of one layout (one fingerprint), found by position or by wire end. */
class TreeSet {
  readonly fingerprint: string;
  /** Ascending by end; only the first may wrap (or be the whole ring, then alone). */
  readonly sorted: readonly RangeTree[];
  readonly #ends: readonly bigint[];
  readonly #byEnd = new Map<string, RangeTree>();

  constructor(layout: AeLayout, depth: number) {
    this.fingerprint = layout.fingerprint;
    const sorted = layout.ranges
      .map((range): RangeTree => {
        const tree = new MerkleTree({ start: range.start, end: range.end, depth });
        return { range, wireEnd: aeEndToWire(range.end), tree, digests: new Array(tree.leafCount).fill(undefined) };
      })
      .sort((a, b) => (a.range.end < b.range.end ? -1 : a.range.end > b.range.end ? 1 : 0));
    checkDisjoint(sorted);
    for (const rt of sorted) this.#byEnd.set(rt.wireEnd, rt);
    this.sorted = sorted;
    this.#ends = sorted.map((rt) => rt.range.end);
  }

  byWireEnd(end: string): RangeTree | undefined {
    return this.#byEnd.get(end);
  }

  /**
   * The range holding `pos`, or undefined. Ranges are disjoint, so it is the one with the
   * smallest end >= pos, or, past the last end, the first one (it wraps); a binary search.
   */
  rangeOf(pos: bigint): RangeTree | undefined {
    let lo = 0;
    let hi = this.#ends.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.#ends[mid]! < pos) lo = mid + 1;
      else hi = mid;
    }
    const rt = this.sorted[lo < this.sorted.length ? lo : 0];
    return rt !== undefined && rt.tree.contains(pos) ? rt : undefined;
  }

  /** The key now holds `record` (undefined: removed). A key outside every range is ignored. O(depth). */
  apply(key: string, record: StoredRecord | undefined): void {
    const pos = keyPosition(key);
    const rt = this.rangeOf(pos);
    if (rt === undefined) return;
    const leaf = rt.tree.leafOf(pos);
    if (record === undefined) {
      rt.tree.remove(key);
      const digests = rt.digests[leaf];
      digests?.delete(key);
      if (digests?.size === 0) rt.digests[leaf] = undefined;
    } else {
      const digest = recordDigest(record);
      const digests = (rt.digests[leaf] ??= new Map());
      if (digests.get(key) === digest) return;
      rt.tree.put(key, pos, digest);
      digests.set(key, digest);
    }
    assert(rt.tree.has(key) === (record !== undefined), 'a key is in the tree exactly when it is in its leaf map');
  }
}

/** Asserts that the ranges (ascending by end) do not overlap: a position has at most one tree. */
function checkDisjoint(sorted: readonly RangeTree[]): void {
  for (let i = 1; i < sorted.length; i++) {
    const { start, end } = sorted[i]!.range;
    assert(start < end && start >= sorted[i - 1]!.range.end, `range (${start}, ${end}] overlaps another range of the layout`);
  }
  const first = sorted[0]?.range;
  if (first !== undefined && first.start >= first.end && sorted.length > 1) {
    assert(first.start !== first.end, 'a whole-ring range must be the only range of the layout');
    assert(first.start >= sorted[sorted.length - 1]!.range.end, `range (${first.start}, ${first.end}] overlaps another range of the layout`);
  }
}

/** A build in progress: the keys written since it started (`dirty`) are re-read when its scan ends. */
interface Build {
  readonly fingerprint: string;
  readonly dirty: Set<string>;
  readonly promise: Promise<TreeSet>;
}

/** What one peer's exchange has done so far (kept when it fails halfway). */
interface PeerTally {
  rangesCompared: number;
  rangesDiffering: number;
  keysExchanged: number;
}

/** A differing leaf to ask the peer's keys of. */
interface LeafRef {
  rt: RangeTree;
  leaf: number;
}

export class AntiEntropy {
  readonly counters = { rounds: 0, keysExchanged: 0, rangesDiffering: 0 };
  readonly #deps: AeDeps;
  readonly #depth: number;
  readonly #scanBatch: number;
  readonly #maxKeysPerRound: number;
  /** The newest installed tree set (possibly of an older fingerprint until a build replaces it). */
  #current: TreeSet | undefined;
  /** The newest build started, until it ends. */
  #build: Build | undefined;
  /** The dirty sets of every build whose scan has not ended: noteWrite adds the key to each. */
  readonly #building = new Set<Set<string>>();
  /** Keys written since the installed trees were last brought up to date. */
  readonly #pending = new Set<string>();
  #round: Promise<AeRoundResult> | undefined;

  constructor(deps: AeDeps) {
    const depth = deps.depth ?? aeDepthDefault;
    const scanBatch = deps.scanBatch ?? aeScanBatchDefault;
    const maxKeysPerRound = deps.maxKeysPerRound ?? aeMaxKeysPerRoundDefault;
    assert(Number.isInteger(depth) && depth >= depthMin && depth <= depthMax, `anti-entropy depth must be an integer in ${depthMin}..${depthMax}, got ${depth}`);
    assert(Number.isSafeInteger(scanBatch) && scanBatch >= 1, `scanBatch must be a positive integer, got ${scanBatch}`);
    assert(Number.isSafeInteger(maxKeysPerRound) && maxKeysPerRound >= 1, `maxKeysPerRound must be a positive integer, got ${maxKeysPerRound}`);
    assert(typeof deps.selfId === 'string' && deps.selfId.length > 0, 'selfId must be a non-empty string');
    this.#deps = deps;
    this.#depth = depth;
    this.#scanBatch = scanBatch;
    this.#maxKeysPerRound = maxKeysPerRound;
  }

  /** Called by the node after every change of a local record (put: record; remove: undefined). Keeps the trees current in O(depth). */
  noteWrite(key: string, _record: StoredRecord | undefined): void {
    for (const dirty of this.#building) dirty.add(key);
    // Deferred: the trees take the key's record when they are next read (a round, a peer's
    // request), so the write path pays one Set insertion, and a key written many times
    // between rounds is hashed once.
    if (this.#current) {
      this.#pending.add(key);
      if (this.#pending.size >= aePendingMax) this.#flushPending();
    }
  }

  /** Applies the keys written since the trees were last read, from the store as it is now. */
  #flushPending(): void {
    const set = this.#current;
    if (set) for (const key of this.#pending) set.apply(key, this.#deps.store.get(key));
    this.#pending.clear();
  }

  /** Server side of the ae.* RPCs; throws AeError RING_MISMATCH when body.fingerprint is not ours, BAD_REQUEST for malformed bodies. */
  async handle(type: 'ae.roots' | 'ae.leaves' | 'ae.keys', body: unknown): Promise<unknown> {
    if (typeof body !== 'object' || body === null || Array.isArray(body)) throw badRequest('body must be an object');
    const b = body as Record<string, unknown>;
    if (typeof b.fingerprint !== 'string') throw badRequest('fingerprint must be a string');
    const fingerprint = b.fingerprint;
    this.#checkFingerprint(fingerprint, this.#deps.layout().fingerprint);
    switch (type) {
      case 'ae.roots': {
        const ends = parseEnds(b.ends, aeEndsPerRequestMax);
        const set = await this.#treesOf(fingerprint);
        const roots = ends.map((end) => {
          const rt = set.byWireEnd(end);
          return rt === undefined ? null : hashToWire(rt.tree.root());
        });
        return { roots };
      }
      case 'ae.leaves': {
        const ends = parseEnds(b.ends, Math.max(1, aeLeafHashesPerReplyMax >> this.#depth));
        const set = await this.#treesOf(fingerprint);
        const leaves = ends.map((end) => hashesToWire(knownRange(set, end).tree.level(this.#depth)));
        return { leaves };
      }
      case 'ae.keys': {
        const wanted = parseLeaves(b.leaves, 1 << this.#depth);
        const set = await this.#treesOf(fingerprint);
        const keys: [string, string][] = [];
        const seen = new Set<string>();
        for (const { end, leaf } of wanted) {
          const rt = knownRange(set, end);
          if (seen.has(`${end}/${leaf}`)) continue;
          seen.add(`${end}/${leaf}`);
          for (const entry of rt.digests[leaf] ?? []) keys.push(entry);
        }
        return { keys };
      }
      default:
        throw badRequest(`unknown anti-entropy request ${JSON.stringify(type)}`);
    }
  }

  /**
   * One round against every other replica that shares a range with this node and is up,
   * one peer at a time. A call while a round runs returns that round.
   */
  round(): Promise<AeRoundResult> {
    this.#round ??= this.#runRound().finally(() => {
      this.#round = undefined;
    });
    return this.#round;
  }

  async #runRound(): Promise<AeRoundResult> {
    const set = await this.#trees();
    const result: AeRoundResult = { peers: 0, rangesCompared: 0, rangesDiffering: 0, keysExchanged: 0, failedPeers: [] };
    for (const [peer, ranges] of peersOf(set, this.#deps.selfId)) {
      if (!this.#deps.isUp(peer)) continue;
      result.peers++;
      const tally: PeerTally = { rangesCompared: 0, rangesDiffering: 0, keysExchanged: 0 };
      try {
        await this.#syncPeer(set, peer, ranges, tally);
      } catch (e) {
        // A broken invariant here is our bug, not the peer's: let it surface.
        if (e instanceof AssertionError) throw e;
        result.failedPeers.push(peer);
      }
      result.rangesCompared += tally.rangesCompared;
      result.rangesDiffering += tally.rangesDiffering;
      result.keysExchanged += tally.keysExchanged;
    }
    this.counters.rounds++;
    this.counters.keysExchanged += result.keysExchanged;
    this.counters.rangesDiffering += result.rangesDiffering;
    return result;
  }

  /** Compares the ranges shared with `peer` top-down and exchanges the differing keys, within the round's key budget. */
  async #syncPeer(set: TreeSet, peer: string, ranges: readonly RangeTree[], tally: PeerTally): Promise<void> {
    const differing = await this.#differingRanges(set.fingerprint, peer, ranges, tally);
    const leaves = await this.#differingLeaves(set.fingerprint, peer, differing);
    let budget = this.#maxKeysPerRound;
    for (let from = 0; from < leaves.length && budget > 0; ) {
      const chunk = leafChunk(leaves, from);
      from += chunk.length;
      const theirs = await this.#peerKeys(set, peer, chunk);
      // Our digests read now, after the answer: the freshest local state to compare with.
      const mine = new Map<string, string>();
      for (const { rt, leaf } of chunk) for (const [key, digest] of rt.digests[leaf] ?? []) mine.set(key, digest);
      const pull = [...theirs.keys()].filter((key) => mine.get(key) !== theirs.get(key));
      const push = [...mine.keys()].filter((key) => !theirs.has(key));
      const pulled = pull.slice(0, budget);
      const pushed = push.slice(0, budget - pulled.length);
      budget -= pulled.length + pushed.length;
      assert(budget >= 0, 'the key budget is never overdrawn');
      await this.#exchange(peer, pulled, pushed, tally);
    }
  }

  /** Step 1: the ranges whose roots differ from the peer's (those the peer does not replicate are left out). */
  async #differingRanges(fingerprint: string, peer: string, ranges: readonly RangeTree[], tally: PeerTally): Promise<RangeTree[]> {
    const differing: RangeTree[] = [];
    for (const chunk of chunks(ranges, aeEndsPerRequestMax)) {
      const reply = await this.#deps.call<unknown>(peer, 'ae.roots', { fingerprint, ends: chunk.map((rt) => rt.wireEnd) });
      const roots = replyArray(reply, 'roots', chunk.length);
      chunk.forEach((rt, i) => {
        const theirs = roots[i];
        if (theirs === null) return;
        if (typeof theirs !== 'string' || !hexPattern.test(theirs)) throw new MerkleWireError(`root ${i} from ${peer} is not 16 lowercase hex digits`);
        tally.rangesCompared++;
        if (theirs === hashToWire(rt.tree.root())) return;
        tally.rangesDiffering++;
        differing.push(rt);
      });
    }
    return differing;
  }

  /** Step 2: the leaves of `ranges` that differ from the peer's, range by range, ascending. */
  async #differingLeaves(fingerprint: string, peer: string, ranges: readonly RangeTree[]): Promise<LeafRef[]> {
    const leaves: LeafRef[] = [];
    for (const chunk of chunks(ranges, Math.max(1, aeLeafHashesPerReplyMax >> this.#depth))) {
      const reply = await this.#deps.call<unknown>(peer, 'ae.leaves', { fingerprint, ends: chunk.map((rt) => rt.wireEnd) });
      const levels = replyArray(reply, 'leaves', chunk.length);
      chunk.forEach((rt, i) => {
        const theirs = hashesFromWire(levels[i], rt.tree.leafCount);
        rt.tree.level(rt.tree.depth).forEach((mine, leaf) => {
          if (mine !== theirs[leaf]) leaves.push({ rt, leaf });
        });
      });
    }
    return leaves;
  }

  /** Step 3: the peer's keys and digests in `chunk`; a key outside the leaves asked for is a malformed answer. */
  async #peerKeys(set: TreeSet, peer: string, chunk: readonly LeafRef[]): Promise<Map<string, string>> {
    const asked = new Set(chunk.map(({ rt, leaf }) => `${rt.wireEnd}/${leaf}`));
    const reply = await this.#deps.call<unknown>(peer, 'ae.keys', {
      fingerprint: set.fingerprint,
      leaves: chunk.map(({ rt, leaf }) => ({ end: rt.wireEnd, leaf })),
    });
    const theirs = new Map<string, string>();
    for (const pair of replyArray(reply, 'keys')) {
      if (!Array.isArray(pair) || pair.length !== 2 || typeof pair[0] !== 'string' || typeof pair[1] !== 'string') {
        throw new MerkleWireError(`a key of ${peer}'s ae.keys answer is not a [key, digest] pair of strings`);
      }
      const [key, digest] = pair as [string, string];
      const pos = keyPosition(key);
      const rt = set.rangeOf(pos);
      if (rt === undefined || !asked.has(`${rt.wireEnd}/${rt.tree.leafOf(pos)}`)) {
        throw new MerkleWireError(`${peer} answered key ${JSON.stringify(key)}, outside the leaves asked for`);
      }
      theirs.set(key, digest);
    }
    return theirs;
  }

  /**
   * Step 4: pull `pull` (rep.get, merge), then push what the peer lacks: the keys of
   * `push`, and each pulled key whose merged record still differs from the peer's.
   */
  async #exchange(peer: string, pull: readonly string[], push: readonly string[], tally: PeerTally): Promise<void> {
    const { store } = this.#deps;
    const toPush = [...push];
    for (const keys of chunks(pull, aePullKeysPerCall)) {
      const reply = await this.#deps.call<unknown>(peer, 'rep.get', { keys });
      // Decode the whole answer first: a corrupt one fails the peer before anything merges.
      const records = replyArray(reply, 'records', keys.length).map((bytes, i) => {
        if (bytes === null) return null;
        if (!(bytes instanceof Uint8Array)) throw new MerkleWireError(`record ${i} from ${peer} is neither bytes nor null`);
        return decodeRecord(bytes);
      });
      await Promise.all(keys.map((key, i) => (records[i] === null ? undefined : this.#deps.merge(key, records[i]!))));
      keys.forEach((key, i) => {
        const local = store.get(key);
        const theirs = records[i];
        if (local !== undefined && (theirs === null || recordDigest(local) !== recordDigest(theirs!))) toPush.push(key);
      });
      tally.keysExchanged += keys.length;
    }
    const counted = new Set(push);
    let items: { key: string; record: Uint8Array }[] = [];
    let bytes = 0;
    const flush = async (): Promise<void> => {
      if (items.length === 0) return;
      const reply = await this.#deps.call<unknown>(peer, 'rep.put', { items });
      if (typeof reply !== 'object' || reply === null || typeof (reply as { ok?: unknown }).ok !== 'number') {
        throw new MerkleWireError(`${peer}'s rep.put answer has no count ok`);
      }
      tally.keysExchanged += items.filter((item) => counted.has(item.key)).length;
      items = [];
      bytes = 0;
    };
    for (const key of toPush) {
      const local = store.get(key);
      if (local === undefined) continue; // removed since: nothing to push
      const record = encodeRecord(local);
      if (items.length === aeKeysPerCall || (items.length > 0 && bytes + record.length > aePushBytesPerCall)) await flush();
      items.push({ key, record });
      bytes += record.length;
    }
    await flush();
  }

  /** The trees of the current layout, building them if needed (one build shared by every caller). */
  #trees(): Promise<TreeSet> {
    const layout = this.#deps.layout();
    if (this.#current?.fingerprint === layout.fingerprint) {
      this.#flushPending();
      return Promise.resolve(this.#current);
    }
    if (this.#build?.fingerprint === layout.fingerprint) return this.#build.promise;
    // One scan at a time: a build for a newer layout waits for the one running.
    const prior = this.#build?.promise.then(
      () => undefined,
      () => undefined,
    );
    const dirty = new Set<string>();
    this.#building.add(dirty);
    const promise = (async () => {
      try {
        await prior;
        return await this.#scan(layout, dirty);
      } finally {
        // Runs after at least one await, so this.#build is already this build.
        this.#building.delete(dirty);
        if (this.#build?.dirty === dirty) this.#build = undefined;
      }
    })();
    this.#build = { fingerprint: layout.fingerprint, dirty, promise };
    return promise;
  }

  /** The trees for a request naming `fingerprint`; RING_MISMATCH when the ring moved on during a build. */
  async #treesOf(fingerprint: string): Promise<TreeSet> {
    const set = await this.#trees();
    this.#checkFingerprint(fingerprint, set.fingerprint);
    return set;
  }

  #checkFingerprint(theirs: string, ours: string): void {
    if (theirs !== ours) throw new AeError('RING_MISMATCH', `ring fingerprint ${JSON.stringify(theirs)} is not ours (${JSON.stringify(ours)})`);
  }

  /** One full scan of the store into a new tree set, then the re-read of the keys written meanwhile, then the install. */
  async #scan(layout: AeLayout, dirty: ReadonlySet<string>): Promise<TreeSet> {
    const set = new TreeSet(layout, this.#depth);
    let after: string | undefined;
    for (;;) {
      const last = await this.#deps.store.scan(after, this.#scanBatch, (key, record) => set.apply(key, record));
      if (last === undefined) break;
      assert(after === undefined || last > after, 'a store scan moves forward');
      after = last;
      await yieldToLoop();
    }
    // Synchronous from here to the install: no write can fall between re-read and install.
    for (const key of dirty) set.apply(key, this.#deps.store.get(key));
    // Keys pending for the old trees were written before this scan ended: the scan or the
    // dirty set has them.
    this.#pending.clear();
    this.#current = set;
    return set;
  }
}

/** The other replicas of the set's ranges, ascending by id, each with the ranges it shares with us. */
function peersOf(set: TreeSet, selfId: string): [string, RangeTree[]][] {
  const byPeer = new Map<string, RangeTree[]>();
  for (const rt of set.sorted) {
    for (const peer of new Set(rt.range.replicas)) {
      if (peer === selfId) continue;
      let ranges = byPeer.get(peer);
      if (ranges === undefined) byPeer.set(peer, (ranges = []));
      ranges.push(rt);
    }
  }
  return [...byPeer].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

/** The leaves from `from` on for one ae.keys call: at most leavesPerKeysCall, about localKeysPerKeysCall of our keys, at least one leaf. */
function leafChunk(leaves: readonly LeafRef[], from: number): LeafRef[] {
  const chunk: LeafRef[] = [];
  let keys = 0;
  for (let i = from; i < leaves.length && chunk.length < leavesPerKeysCall; i++) {
    const { rt, leaf } = leaves[i]!;
    const size = rt.digests[leaf]?.size ?? 0;
    if (chunk.length > 0 && keys + size > localKeysPerKeysCall) break;
    chunk.push(leaves[i]!);
    keys += size;
  }
  assert(chunk.length >= 1 || from >= leaves.length, 'a leaf chunk makes progress');
  return chunk;
}

function chunks<T>(items: readonly T[], size: number): T[][] {
  assert(Number.isSafeInteger(size) && size >= 1, 'chunk size must be a positive integer');
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/** `reply[field]`, checked to be an array (of `length` elements when given): it comes from a peer. */
function replyArray(reply: unknown, field: string, length?: number): unknown[] {
  const value = typeof reply === 'object' && reply !== null ? (reply as Record<string, unknown>)[field] : undefined;
  if (!Array.isArray(value)) throw new MerkleWireError(`the answer has no array ${field}`);
  if (length !== undefined && value.length !== length) throw new MerkleWireError(`expected ${length} ${field}, got ${value.length}`);
  return value;
}

function badRequest(message: string): AeError {
  return new AeError('BAD_REQUEST', message);
}

/** `ends` of a request: an array of at most `max` range ends in wire form. */
function parseEnds(ends: unknown, max: number): string[] {
  if (!Array.isArray(ends) || ends.length > max) throw badRequest(`ends must be an array of at most ${max} range ends`);
  for (const end of ends) {
    if (typeof end !== 'string' || !hexPattern.test(end)) throw badRequest('a range end must be 16 lowercase hex digits');
  }
  return ends as string[];
}

/** `leaves` of an ae.keys request: at most aeLeavesPerRequestMax {end, leaf}, leaf in 0..leafCount-1. */
function parseLeaves(leaves: unknown, leafCount: number): { end: string; leaf: number }[] {
  if (!Array.isArray(leaves) || leaves.length > aeLeavesPerRequestMax) {
    throw badRequest(`leaves must be an array of at most ${aeLeavesPerRequestMax} {end, leaf}`);
  }
  return leaves.map((item: unknown) => {
    const { end, leaf } = (typeof item === 'object' && item !== null ? item : {}) as { end?: unknown; leaf?: unknown };
    if (typeof end !== 'string' || !hexPattern.test(end)) throw badRequest('a leaf end must be 16 lowercase hex digits');
    if (typeof leaf !== 'number' || !Number.isInteger(leaf) || leaf < 0 || leaf >= leafCount) {
      throw badRequest(`a leaf index must be an integer in 0..${leafCount - 1}`);
    }
    return { end, leaf };
  });
}

/** The range a request names; a range not in our layout is a requester's error (the rings are equal). */
function knownRange(set: TreeSet, end: string): RangeTree {
  const rt = set.byWireEnd(end);
  if (rt === undefined) throw badRequest(`range end ${end} is not a range of this node`);
  return rt;
}
