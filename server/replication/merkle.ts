// Merkle trees over one ring range, for anti-entropy (Dynamo §4.7): two replicas of a
// range compare trees top-down and exchange only the keys of the leaves that differ.
// Pure: no I/O, no clocks. Requires `initHash()` (ring/) to have resolved.
//
// Shape. A tree covers the positions (start, end] of the ring (wrapping past 2^64-1 when
// start > end; start === end is the whole ring) with 2^depth leaves. A key's leaf is its
// position's offset within the range scaled to 2^depth buckets, so leaves are contiguous
// sub-ranges and a repair of leaf i scans only `leafRange(i)`. Depth is fixed per tree
// and both replicas must use the same range and depth (diffTrees asserts it).
//
// Leaf hash = sum mod 2^64 of entryHash(key, versionDigest) over the leaf's entries.
// Why a sum and not a hash of the sorted entries: (Z/2^64, +) is a commutative group, so
// the leaf is independent of insertion order (two replicas that received the same writes
// in different orders agree), and every entry has an inverse, so put / remove / replace
// update a leaf in O(1) (subtract the old entry hash, add the new one) and the path to the
// root in O(depth), never rescanning the leaf. Why a sum and not XOR, which is a group
// too: XOR makes every element its own inverse, so two equal entry hashes cancel to the
// empty leaf; a sum only cancels with an explicit remove. Neither is collision resistant
// against an adversary who picks keys (Wagner's generalized birthday), which is fine:
// replicas are trusted peers and the 64-bit sums only have to catch accidents.
//
// Inner node hash = hash64(left ‖ right), each child a big-endian u64 (16 bytes). Nodes
// live in one heap-ordered array: the node at (depth d, index i) is slot 2^d + i.
//
// Invariants: every leaf equals the sum of its entries' hashes; every inner node equals
// the hash of its children (both hold after each public method returns); a key is in
// the tree at most once, in the leaf of the position it was first put with.
import { hash64, positionCount, positionMax } from '../../ring/index.js';
import type { Version } from '../storage/record.js';
import { LOGICAL_MAX } from '../storage/record.js';
import { assert } from '../util/assert.js';

/** Depth when `MerkleTreeOptions.depth` is not given: 1024 leaves. */
export const depthDefault = 10;
/** Smallest depth: a root and two leaves. */
export const depthMin = 1;
/** Largest depth: 65,536 leaves, 1 MiB of node hashes, 16 hashes per update. */
export const depthMax = 16;

export interface MerkleTreeOptions {
  /** Exclusive start of the range, a position in [0, 2^64). */
  start: bigint;
  /** Inclusive end of the range; `start === end` is the whole ring. */
  end: bigint;
  /** Levels below the root: 2^depth leaves. Default `depthDefault`, `depthMin`..`depthMax`. */
  depth?: number;
}

/** One entry of a tree: a key, its ring position (hash64 of the key) and its version digest. */
export interface MerkleEntry {
  key: string;
  pos: bigint;
  digest: string;
}

/**
 * The positions (start, end] a leaf covers, `size` of them. A leaf of a range with fewer
 * than 2^depth positions may cover none: then size is 0n and start === end (which here
 * does NOT mean the whole ring; no leaf of a depth >= 1 tree covers the whole ring).
 */
export interface LeafRange {
  start: bigint;
  end: bigint;
  size: bigint;
}

/** What `diffTrees` found: the differing leaves, ascending, and the node pairs compared. */
export interface MerkleDiff {
  leaves: number[];
  /** 1 (the roots) + 2 per differing inner node, so <= 1 + 2 * depth * leaves.length. */
  nodesCompared: number;
}

interface Slot {
  /** Leaf index, fixed when the key is first put. */
  leaf: number;
  hash: bigint;
}

export class MerkleTree {
  readonly start: bigint;
  readonly end: bigint;
  readonly depth: number;
  /** Number of positions in the range: 1..2^64. */
  readonly #size: bigint;
  /** Heap-ordered node hashes: slot 1 is the root, slot 2^d + i is node i at depth d; slot 0 unused. */
  readonly #nodes: BigUint64Array;
  readonly #entries = new Map<string, Slot>();

  constructor(opts: MerkleTreeOptions) {
    const depth = opts.depth ?? depthDefault;
    assert(
      Number.isInteger(depth) && depth >= depthMin && depth <= depthMax,
      `merkle depth must be an integer in ${depthMin}..${depthMax}, got ${depth}`,
    );
    assert(isPosition(opts.start), `range start ${String(opts.start)} is outside [0, 2^64)`);
    assert(isPosition(opts.end), `range end ${String(opts.end)} is outside [0, 2^64)`);
    this.start = opts.start;
    this.end = opts.end;
    this.depth = depth;
    this.#size = opts.end > opts.start ? opts.end - opts.start : opts.end - opts.start + positionCount;
    this.#nodes = new BigUint64Array(2 << depth);
    // Empty leaves sum to 0; every inner node of a level of an empty tree is the same hash.
    let empty = 0n;
    for (let d = depth - 1; d >= 0; d--) {
      empty = hashPair(empty, empty);
      this.#nodes.fill(empty, 1 << d, 2 << d);
    }
    assert(this.#nodes[1] === empty, 'root of an empty tree');
  }

  /** A tree of `entries` (a repeated key: the last one wins), hashing each inner node once. */
  static build(opts: MerkleTreeOptions, entries: Iterable<MerkleEntry>): MerkleTree {
    const tree = new MerkleTree(opts);
    for (const e of entries) tree.#set(e.key, e.pos, e.digest);
    for (let slot = (1 << tree.depth) - 1; slot >= 1; slot--) tree.#rehash(slot);
    return tree;
  }

  /** Number of keys in the tree. */
  get entryCount(): number {
    return this.#entries.size;
  }

  /** Number of leaves: 2^depth. */
  get leafCount(): number {
    return 1 << this.depth;
  }

  root(): bigint {
    return this.#nodes[1]!;
  }

  /** The 2^d node hashes at depth d (0 = the root, `depth` = the leaves), left to right. */
  level(d: number): bigint[] {
    this.#checkDepth(d);
    return Array.from(this.#nodes.subarray(1 << d, 2 << d));
  }

  /** The hashes of the nodes `indexes` at depth d: what a replica serves to a peer's walk. */
  nodes(d: number, indexes: readonly number[]): bigint[] {
    this.#checkDepth(d);
    return indexes.map((i) => {
      assert(Number.isInteger(i) && i >= 0 && i < 1 << d, `node index ${i} is outside 0..${(1 << d) - 1} at depth ${d}`);
      return this.#nodes[(1 << d) + i]!;
    });
  }

  /** Whether `pos` lies in the tree's range (start, end]. */
  contains(pos: bigint): boolean {
    return isPosition(pos) && this.#offset(pos) < this.#size;
  }

  /** The leaf holding position `pos`; asserts that pos lies in (start, end]. */
  leafOf(pos: bigint): number {
    assert(isPosition(pos), `position ${String(pos)} is outside [0, 2^64)`);
    const offset = this.#offset(pos);
    assert(offset < this.#size, `position ${pos} is outside the range (${this.start}, ${this.end}]`);
    const leaf = Number((offset << BigInt(this.depth)) / this.#size);
    assert(leaf >= 0 && leaf < this.leafCount, 'leaf index within the tree');
    return leaf;
  }

  /** The positions leaf i covers: offsets [ceil(i·size/2^D), ceil((i+1)·size/2^D)) of the range. */
  leafRange(i: number): LeafRange {
    assert(Number.isInteger(i) && i >= 0 && i < this.leafCount, `leaf ${i} is outside 0..${this.leafCount - 1}`);
    const lo = this.#firstOffset(i);
    const hi = this.#firstOffset(i + 1);
    assert(lo <= hi && hi <= this.#size, 'leaf offsets within the range');
    return {
      start: BigInt.asUintN(64, this.start + lo),
      end: BigInt.asUintN(64, this.start + hi),
      size: hi - lo,
    };
  }

  /** Whether the tree holds `key`. */
  has(key: string): boolean {
    return this.#entries.has(key);
  }

  /**
   * Adds `key` at position `pos` (hash64 of the key) with version digest `digest`, or
   * replaces the digest the key had. O(depth): the leaf and its ancestors only.
   */
  put(key: string, pos: bigint, digest: string): void {
    const leaf = this.#set(key, pos, digest);
    this.#rehashPath(leaf);
  }

  /** Removes `key` (a purged tombstone, a swept record, a range handed off); false when absent. */
  remove(key: string): boolean {
    const slot = this.#entries.get(key);
    if (slot === undefined) return false;
    this.#entries.delete(key);
    this.#addToLeaf(slot.leaf, -slot.hash);
    this.#rehashPath(slot.leaf);
    return true;
  }

  /** Whether `other` covers the same range with the same depth, so their nodes compare. */
  sameShape(other: MerkleTree): boolean {
    return this.start === other.start && this.end === other.end && this.depth === other.depth;
  }

  /** Sets the entry and its leaf sum, without rehashing; returns the leaf. */
  #set(key: string, pos: bigint, digest: string): number {
    const leaf = this.leafOf(pos);
    const hash = entryHash(key, digest);
    const slot = this.#entries.get(key);
    if (slot === undefined) {
      this.#entries.set(key, { leaf, hash });
      this.#addToLeaf(leaf, hash);
      return leaf;
    }
    // A key has one position (hash64 of it); another one means the caller mixed keys up.
    assert(slot.leaf === leaf, `key ${JSON.stringify(key)} was put in leaf ${slot.leaf}, now in leaf ${leaf}`);
    this.#addToLeaf(leaf, hash - slot.hash);
    slot.hash = hash;
    return leaf;
  }

  #addToLeaf(leaf: number, delta: bigint): void {
    const slot = (1 << this.depth) + leaf;
    this.#nodes[slot] = BigInt.asUintN(64, this.#nodes[slot]! + delta);
  }

  #rehashPath(leaf: number): void {
    for (let slot = ((1 << this.depth) + leaf) >> 1; slot >= 1; slot >>= 1) this.#rehash(slot);
  }

  #rehash(slot: number): void {
    this.#nodes[slot] = hashPair(this.#nodes[2 * slot]!, this.#nodes[2 * slot + 1]!);
  }

  /** Offset of pos after start: 0 for start + 1, size - 1 for end; >= size outside the range. */
  #offset(pos: bigint): bigint {
    return BigInt.asUintN(64, pos - this.start - 1n);
  }

  /** The smallest offset whose leaf is >= i: ceil(i · size / 2^depth). */
  #firstOffset(i: number): bigint {
    const scaled = BigInt(i) * this.#size;
    const leaves = BigInt(this.leafCount);
    return (scaled + leaves - 1n) / leaves;
  }

  #checkDepth(d: number): void {
    assert(Number.isInteger(d) && d >= 0 && d <= this.depth, `depth ${d} is outside 0..${this.depth}`);
  }
}

/**
 * The leaves where `a` and `b` differ, found top-down: a node's children are compared
 * only when the node differs, so the work is O(differing leaves × depth), not O(leaves).
 * A difference is missed only if two different subtrees hash alike (about 2^-64 each).
 */
export function diffTrees(a: MerkleTree, b: MerkleTree): MerkleDiff {
  assert(a.sameShape(b), `trees differ in shape: (${a.start}, ${a.end}] depth ${a.depth} vs (${b.start}, ${b.end}] depth ${b.depth}`);
  let frontier = a.root() === b.root() ? [] : [0];
  let nodesCompared = 1;
  for (let d = 1; d <= a.depth && frontier.length > 0; d++) {
    const children = childrenOf(frontier);
    const left = a.nodes(d, children);
    const right = b.nodes(d, children);
    nodesCompared += children.length;
    frontier = children.filter((_, k) => left[k] !== right[k]);
  }
  assert(frontier.length === 0 || nodesCompared <= 1 + 2 * a.depth * frontier.length, 'diff walk stays within its bound');
  return { leaves: frontier, nodesCompared };
}

/** The children (at depth d + 1) of the nodes `indexes` (at depth d), in order. */
export function childrenOf(indexes: readonly number[]): number[] {
  const children: number[] = [];
  for (const i of indexes) children.push(2 * i, 2 * i + 1);
  return children;
}

/**
 * A stable text digest of a stored version: the HLC timestamp, the tombstone flag and
 * the vector clock with entries sorted by node id (code-unit order, the same on every
 * machine). A zero counter is dropped: a vector clock's missing entry means 0, so
 * {a: 0, b: 1} and {b: 1} are one clock and must not look like a difference. The value
 * is not included: a version names one write, and one write has one value.
 */
export function versionDigest(version: Version, tombstone: boolean): string {
  const { wallMs, logical } = version.ts;
  assert(Number.isSafeInteger(wallMs) && wallMs >= 0, `version wallMs must be a non-negative safe integer, got ${wallMs}`);
  assert(Number.isInteger(logical) && logical >= 0 && logical <= LOGICAL_MAX, `version logical must be in 0..${LOGICAL_MAX}, got ${logical}`);
  assert(typeof tombstone === 'boolean', 'tombstone must be a boolean');
  const clock: [string, number][] = [];
  for (const [node, counter] of Object.entries(version.clock)) {
    assert(Number.isSafeInteger(counter) && counter >= 0, `clock counter of ${node} must be a non-negative safe integer, got ${counter}`);
    if (counter > 0) clock.push([node, counter]);
  }
  clock.sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0));
  // JSON escapes every node id the same way everywhere, so the text is canonical.
  return JSON.stringify([wallMs, logical, tombstone ? 1 : 0, clock]);
}

const utf8 = new TextEncoder();

/**
 * hash64(u32 byte length of key ‖ key ‖ digest), all UTF-8. The length prefix makes the
 * encoding injective: no (key, digest) pair can shift bytes into its neighbour.
 */
export function entryHash(key: string, digest: string): bigint {
  assert(typeof key === 'string' && typeof digest === 'string', 'key and digest must be strings');
  const keyBytes = utf8.encode(key);
  const digestBytes = utf8.encode(digest);
  const bytes = new Uint8Array(4 + keyBytes.length + digestBytes.length);
  new DataView(bytes.buffer).setUint32(0, keyBytes.length);
  bytes.set(keyBytes, 4);
  bytes.set(digestBytes, 4 + keyBytes.length);
  return hash64(bytes);
}

// One scratch buffer for inner-node hashing: hashing is synchronous, so it is never shared.
const pair = new Uint8Array(16);
const pairView = new DataView(pair.buffer);

/** hash64 of the two children as big-endian u64s. */
function hashPair(left: bigint, right: bigint): bigint {
  pairView.setBigUint64(0, left);
  pairView.setBigUint64(8, right);
  return hash64(pair);
}

function isPosition(pos: bigint): boolean {
  return typeof pos === 'bigint' && pos >= 0n && pos <= positionMax;
}
