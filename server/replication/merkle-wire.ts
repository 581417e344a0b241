// The Merkle exchange between replicas: node hashes on the wire, the serving side of a
// peer's request, and the walk that finds the differing leaves against a remote tree.
//
// A hash travels as exactly 16 lowercase hex digits: our msgpack decoders turn a uint 64
// into a JS number, which loses the low bits past 2^53. Everything arriving
// from a peer is bad input until checked: it is refused with MerkleWireError (an
// operating error a caller branches on), never with an assertion.
//
// The walk asks one level at a time for the children of the nodes that differed at the
// level above: depth + 1 rounds at most, and O(differing leaves × depth) hashes. The
// caller's fetcher must be bound to a peer's tree of the same range and depth (the
// request names them; the peer refuses a mismatch).
import { assert } from '../util/assert.js';
import { childrenOf, type MerkleDiff, type MerkleTree } from './merkle.js';

/** Nodes asked for in one fetch when `RemoteDiffOptions.maxNodesPerFetch` is not given. */
export const maxNodesPerFetchDefault = 1024;
/** Upper bound on `maxNodesPerFetch`: one whole level of a depth-16 tree. */
export const maxNodesPerFetchMax = 65_536;

/** A peer sent something that is not a valid Merkle message. */
export class MerkleWireError extends Error {
  override name = 'MerkleWireError';
}

const hexPattern = /^[0-9a-f]{16}$/;

/** Hashes as 16-hex-digit strings (zero-padded, lowercase). */
export function hashesToWire(hashes: readonly bigint[]): string[] {
  return hashes.map((h) => {
    assert(typeof h === 'bigint' && h >= 0n && h < 1n << 64n, `hash ${String(h)} is not a u64`);
    return h.toString(16).padStart(16, '0');
  });
}

/** Parses `count` hashes from a peer; anything else throws MerkleWireError. */
export function hashesFromWire(wire: unknown, count: number): bigint[] {
  if (!Array.isArray(wire)) throw new MerkleWireError('merkle hashes must be an array');
  if (wire.length !== count) throw new MerkleWireError(`expected ${count} merkle hashes, got ${wire.length}`);
  return wire.map((s: unknown, k) => {
    if (typeof s !== 'string' || !hexPattern.test(s)) throw new MerkleWireError(`merkle hash ${k} is not 16 lowercase hex digits`);
    return BigInt(`0x${s}`);
  });
}

/** One level of `tree` in wire form (the whole level: for small depths or a full sync). */
export function serializeLevel(tree: MerkleTree, depth: number): string[] {
  return hashesToWire(tree.level(depth));
}

/**
 * The serving side: the wire hashes of nodes `indexes` at `depth` of `tree`, for a peer's
 * request whose fields are checked here (at most 2^depth distinct indexes in range).
 */
export function answerNodes(tree: MerkleTree, depth: unknown, indexes: unknown): string[] {
  if (typeof depth !== 'number' || !Number.isInteger(depth) || depth < 0 || depth > tree.depth) {
    throw new MerkleWireError(`merkle depth must be an integer in 0..${tree.depth}`);
  }
  const width = 2 ** depth;
  if (!Array.isArray(indexes) || indexes.length > width) throw new MerkleWireError(`merkle indexes must be an array of at most ${width}`);
  for (const i of indexes) {
    if (typeof i !== 'number' || !Number.isInteger(i) || i < 0 || i >= width) {
      throw new MerkleWireError(`merkle index must be an integer in 0..${width - 1}`);
    }
  }
  return hashesToWire(tree.nodes(depth, indexes as number[]));
}

/** Returns the peer's hashes of nodes `indexes` (same order) at `depth` of its tree. */
export type RemoteNodesFetcher = (depth: number, indexes: number[]) => Promise<bigint[]>;

export interface RemoteDiffOptions {
  /** Most node indexes in one fetch; a level's request is split beyond it. Default `maxNodesPerFetchDefault`. */
  maxNodesPerFetch?: number;
}

export interface RemoteDiff extends MerkleDiff {
  /** Calls made to the fetcher. */
  fetches: number;
}

/**
 * The leaves where `local` and the peer's tree differ, walking down from the root and
 * asking only for the children of differing nodes: the same leaves and nodesCompared as
 * `diffTrees` against a local copy of the peer's tree.
 */
export async function diffFromRemote(local: MerkleTree, fetch: RemoteNodesFetcher, opts: RemoteDiffOptions = {}): Promise<RemoteDiff> {
  const maxNodesPerFetch = opts.maxNodesPerFetch ?? maxNodesPerFetchDefault;
  assert(
    Number.isInteger(maxNodesPerFetch) && maxNodesPerFetch >= 1 && maxNodesPerFetch <= maxNodesPerFetchMax,
    `maxNodesPerFetch must be an integer in 1..${maxNodesPerFetchMax}, got ${maxNodesPerFetch}`,
  );
  let frontier = [0];
  let nodesCompared = 0;
  let fetches = 0;
  // Bounded: one pass per level, depth + 1 passes at most.
  for (let d = 0; d <= local.depth && frontier.length > 0; d++) {
    const asked = d === 0 ? frontier : childrenOf(frontier);
    const mine = local.nodes(d, asked);
    const theirs: bigint[] = [];
    for (let from = 0; from < asked.length; from += maxNodesPerFetch) {
      const chunk = asked.slice(from, from + maxNodesPerFetch);
      theirs.push(...checkHashes(await fetch(d, chunk), chunk.length));
      fetches++;
    }
    nodesCompared += asked.length;
    frontier = asked.filter((_, k) => mine[k] !== theirs[k]);
  }
  assert(fetches <= Math.ceil(nodesCompared / maxNodesPerFetch) + local.depth + 1, 'fetches stay within their bound');
  return { leaves: frontier, nodesCompared, fetches };
}

/** A fetcher's answer, checked: `count` u64 bigints (it comes from a peer). */
function checkHashes(hashes: unknown, count: number): bigint[] {
  if (!Array.isArray(hashes) || hashes.length !== count) {
    throw new MerkleWireError(`expected ${count} merkle hashes from the peer, got ${Array.isArray(hashes) ? hashes.length : typeof hashes}`);
  }
  for (const h of hashes) {
    if (typeof h !== 'bigint' || h < 0n || h >= 1n << 64n) throw new MerkleWireError('a merkle hash from the peer is not a u64');
  }
  return hashes as bigint[];
}
