// Every setting of a node, with its default, in one place. Names follow the CLI flag's
// words with the unit last (`--max-item-size` is `maxItemSize`, `--cache-mb` is `cacheMb`).

import { isLogLevel, type LogLevel } from './log.js';

export type StorageKind = 'level' | 'memory';

export interface NodeConfig {
  /** Node id: the name of this node in vector clocks (and, later, on the ring). */
  id: string;
  /** Address every listener binds to. Loopback by default: opening a store to a network is a choice. */
  host: string;
  /** memcached text protocol port (0 = ephemeral). */
  port: number;
  /** HTTP/JSON port (0 = ephemeral). */
  httpPort: number;
  /** Data directory: LevelDB lives in `<data>/db`. */
  data: string;
  storage: StorageKind;
  /** LRU cache tier in front of LevelDB, bounded in bytes. */
  cacheMb: number;
  /** The whole store in memory mode, bounded in bytes; least recently used items are evicted. */
  memoryMb: number;
  /** Largest item, counted as memcached counts it (header + key + value). */
  maxItemSize: number;
  /** Background sweep of expired items and old tombstones. */
  sweepIntervalMs: number;
  /** Records examined per sweep step, so one step never holds the event loop long. */
  sweepBatch: number;
  /**
   * Tombstones are kept this long so that replicas can learn of the delete: longer than
   * the hint window plus an anti-entropy round (and purged only once a round covered them).
   */
  tombstoneGraceMs: number;
  /** Largest memcached `get`/`gets` line (multi-get) before the connection is closed. */
  maxGetLineBytes: number;
  /** Replies buffered for one connection before the node stops reading from it. */
  maxConnReplyBytes: number;
  /** memcached `-c`: connections beyond this are refused. */
  maxConns: number;
  /** Client requests in flight (all front ends) before new ones are refused as busy; 0 = no bound. */
  maxInflight: number;
  /** Event-loop lag in ms past which new client requests are refused as busy; 0 = off. */
  maxLagMs: number;
  /** memcached's idle_timeout, in ms: connections silent both ways this long are closed; 0 = never. */
  idleTimeoutMs: number;
  /** A request must arrive whole, and replies must be taken, within this long; 0 = never. */
  requestTimeoutMs: number;
  /** How long SIGTERM waits for in-flight requests before closing anyway. */
  shutdownGraceMs: number;
  /** Lease master (host:port of its RPC), or several comma-separated (one leads); absent = a standalone node that owns every key. */
  master?: string;
  /** Internal RPC port (forwarded commands, recalls), in a cluster. */
  rpcPort: number;
  /** Optional failure-domain label; replicas spread across zones. */
  zone?: string;
  /** Overrides the master's renewal period (normally every node follows the master's). */
  renewMs?: number;
  /** Overrides the master's drift margin. */
  driftMs?: number;
  /** How often the node pulls lease-table changes from the master. */
  lookupRefreshMs: number;
  /** A key whose range has no answering owner for this long gets SERVER_ERROR unavailable. */
  unavailableMs: number;
  /** Deadline of one forwarded request. */
  forwardTimeoutMs: number;
  /** Pause between anti-entropy rounds (each compares Merkle trees with every replica peer). */
  antiEntropyMs: number;
  /** Bytes of hints kept for unreachable replicas, MiB. */
  maxHintMb: number;
  /** Hints older than this are dropped; anti-entropy repairs those keys. */
  hintWindowMs: number;
  /** Concurrent versions kept per key (siblings); past it the oldest collapse LWW. */
  maxSiblings: number;
  /** Failure detector: how often quiet or down peers are pinged. */
  heartbeatMs: number;
  /** Deadline of one replica call (write, read, hint replay); slower peers count as down. */
  replicaTimeoutMs: number;
  /** Accept fault injection over HTTP (PUT /debug/partition): for tests only. */
  debugFaults: boolean;
  /** Rate of a join's or a leave's data transfer, MiB per second. */
  streamMbPerS: number;
  /**
   * A transfer call (a page of a moving range, a push to a new replica) that makes no
   * progress for this long is abandoned and retried, from another replica of the range
   * when one exists.
   */
  transferStallMs: number;
  /** Range streams a joining node runs at once (Riak's handoff_concurrency); the rest queue. */
  transferConcurrency: number;
  /** The RPC address other nodes are told (behind a proxy or NAT); default host:rpcPort. */
  rpcAdvertise?: string;
  /** Structured logs (JSON lines on stderr) at this level and above. */
  logLevel: LogLevel;
}

export const MB = 1024 * 1024;

export const defaults: NodeConfig = {
  id: 'n1',
  host: '127.0.0.1',
  port: 11211,
  httpPort: 8080,
  data: './data/node1',
  storage: 'level',
  cacheMb: 64,
  memoryMb: 64,
  maxItemSize: 1024 * 1024,
  sweepIntervalMs: 60_000,
  sweepBatch: 10_000,
  tombstoneGraceMs: 4 * 3600_000,
  maxGetLineBytes: 2 * MB,
  maxConnReplyBytes: 4 * MB,
  maxConns: 4096,
  maxInflight: 4096,
  maxLagMs: 0,
  idleTimeoutMs: 0,
  requestTimeoutMs: 60_000,
  shutdownGraceMs: 5_000,
  rpcPort: 7101,
  lookupRefreshMs: 1_000,
  unavailableMs: 5_000,
  forwardTimeoutMs: 5_000,
  antiEntropyMs: 60_000,
  maxHintMb: 256,
  hintWindowMs: 3 * 3600_000,
  maxSiblings: 16,
  heartbeatMs: 1_000,
  replicaTimeoutMs: 1_000,
  debugFaults: false,
  streamMbPerS: 64,
  transferStallMs: 10_000,
  transferConcurrency: 2,
  logLevel: envLogLevel() ?? 'info',
};

/** RINGKV_LOG_LEVEL sets the default level (the test suite quiets its nodes with it); --log-level wins. */
function envLogLevel(): LogLevel | undefined {
  const v = process.env.RINGKV_LOG_LEVEL;
  return v !== undefined && isLogLevel(v) ? v : undefined;
}

/** The smallest item size that still holds a 1-byte key and a 1-byte value. */
export const MIN_ITEM_SIZE = 1024;
