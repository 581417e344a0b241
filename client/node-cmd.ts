// `ringkv node` and what `ringkv cluster add` shares with it: the node's flags (one list),
// the NodeConfig built from them (one builder), and running a node until SIGTERM/SIGINT.
// Every usage error or startup failure is one line on stderr and exit code 2.
import { Command, InvalidArgumentError, Option } from 'commander';
import { defaults, MIN_ITEM_SIZE, type NodeConfig, type StorageKind } from '../server/config.js';
import { startNode, type RunningNode } from '../server/node.js';
import { LOG_LEVELS, type LogLevel } from '../server/log.js';
import { masterList } from '../server/master/leadership.js';

export const EXIT_USAGE = 2;

export function fail(message: string): never {
  process.stderr.write(`ringkv: ${message}\n`);
  process.exit(EXIT_USAGE);
}

export function intIn(name: string, min: number, max: number) {
  return (v: string): number => {
    if (!/^[0-9]+$/.test(v)) throw new InvalidArgumentError(`${name} must be a whole number`);
    const n = Number(v);
    if (n < min || n > max) throw new InvalidArgumentError(`${name} must be between ${min} and ${max}`);
    return n;
  };
}

export const port = intIn('port', 0, 65535);

/** --log-level, for `ringkv node` and `ringkv master`: JSON log lines on stderr at this level and above. */
export function logLevelOption(): Option {
  return new Option('--log-level <level>', 'structured (JSON) logs on stderr at this level and above').choices([...LOG_LEVELS]).default(defaults.logLevel);
}

export function address(v: string): string {
  const i = v.lastIndexOf(':');
  const p = Number(v.slice(i + 1));
  if (i <= 0 || !Number.isInteger(p) || p < 1 || p > 65535) throw new InvalidArgumentError('want host:port');
  return v;
}

/** `host:port[,host:port...]`: the lease masters (one, or the several of an HA setup), each checked as `address`; kept as given. */
export function addressList(v: string): string {
  const list = masterList(v);
  if (list.length === 0) throw new InvalidArgumentError('want host:port[,host:port...]');
  for (const a of list) {
    try {
      address(a);
    } catch {
      throw new InvalidArgumentError(`want host:port[,host:port...], got ${JSON.stringify(a)}`);
    }
  }
  return list.join(',');
}

/** Node ids name vector-clock entries and ring members: plain words only. */
export function nodeId(v: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(v) || v === '__proto__') {
    throw new InvalidArgumentError('node id must be 1-64 letters, digits, ".", "_" or "-", starting with a letter or digit');
  }
  return v;
}

/** The flags of a node, added to `cmd` (`ringkv node`, `ringkv cluster add`). */
export function addNodeOptions(cmd: Command): Command {
  return cmd
    .option('--id <id>', 'node id (the name in vector clocks and on the ring)', nodeId, defaults.id)
    .option('--host <addr>', 'address to listen on', defaults.host)
    .option('--port <n>', 'memcached text protocol port (0 = any free port)', port, defaults.port)
    .option('--http-port <n>', 'HTTP/JSON port (0 = any free port)', port, defaults.httpPort)
    .option('--data <dir>', 'data directory (LevelDB lives in <dir>/db)', defaults.data)
    .addOption(new Option('--storage <kind>', 'level (durable) or memory (LRU only, like memcached)').choices(['level', 'memory']).default(defaults.storage))
    .option('--cache-mb <n>', 'LRU cache tier in front of LevelDB, MiB', intIn('--cache-mb', 1, 1 << 20), defaults.cacheMb)
    .option('--memory-mb <n>', 'store size in memory mode, MiB', intIn('--memory-mb', 1, 1 << 20), defaults.memoryMb)
    .option('--max-item-size <bytes>', 'largest item (memcached -I)', intIn('--max-item-size', MIN_ITEM_SIZE, 512 * 1024 * 1024), defaults.maxItemSize)
    .option('--max-conns <n>', 'connections accepted at once (memcached -c)', intIn('--max-conns', 1, 1 << 20), defaults.maxConns)
    .option('--max-inflight <n>', 'client requests in flight before new ones are refused as busy (0 = no bound)', intIn('--max-inflight', 0, 1 << 24), defaults.maxInflight)
    .option('--max-lag-ms <ms>', 'event-loop lag past which new client requests are refused as busy (0 = off)', intIn('--max-lag-ms', 0, 60_000), defaults.maxLagMs)
    .option('--idle-timeout <s>', 'close connections silent both ways this many seconds (memcached idle_timeout; 0 = never)', intIn('--idle-timeout', 0, 86_400), defaults.idleTimeoutMs / 1000)
    .option('--request-timeout <s>', 'a request must arrive whole, and replies be taken, within this many seconds (0 = never)', intIn('--request-timeout', 0, 86_400), defaults.requestTimeoutMs / 1000)
    .option('--sweep-interval-ms <ms>', 'pause between sweeps of expired items', intIn('--sweep-interval-ms', 10, 86_400_000), defaults.sweepIntervalMs)
    .option('--master <host:port,...>', 'join the cluster of this lease master (its RPC address), or of these masters (one leads, the others stand by)', addressList)
    .option('--rpc-port <n>', 'internal RPC port, in a cluster (0 = any free port)', port, defaults.rpcPort)
    .option('--zone <name>', 'failure domain of this node (every node has one, or none)')
    .option('--renew-ms <ms>', "override the master's renewal period", intIn('--renew-ms', 10, 3_600_000))
    .option('--drift-ms <ms>', "override the master's clock-drift margin", intIn('--drift-ms', 0, 3_600_000))
    .option('--anti-entropy-ms <ms>', 'pause between anti-entropy rounds (Merkle-tree comparison with each replica)', intIn('--anti-entropy-ms', 50, 86_400_000), defaults.antiEntropyMs)
    .option('--max-hint-mb <n>', 'bytes of hints kept for unreachable replicas, MiB', intIn('--max-hint-mb', 0, 1 << 20), defaults.maxHintMb)
    .option('--hint-window-ms <ms>', 'hints older than this are dropped (anti-entropy repairs those keys)', intIn('--hint-window-ms', 1000, 30 * 86_400_000), defaults.hintWindowMs)
    .option('--tombstone-grace-ms <ms>', 'deleted keys are remembered this long (must exceed hint window + anti-entropy period)', intIn('--tombstone-grace-ms', 1000, 365 * 86_400_000), defaults.tombstoneGraceMs)
    .option('--max-siblings <n>', 'concurrent versions kept per key; past it the oldest collapse last-writer-wins', intIn('--max-siblings', 1, 32), defaults.maxSiblings)
    .option('--heartbeat-ms <ms>', 'failure detector: how often quiet or down peers are pinged', intIn('--heartbeat-ms', 10, 600_000), defaults.heartbeatMs)
    .option('--replica-timeout-ms <ms>', 'deadline of one replica call; slower peers count as down', intIn('--replica-timeout-ms', 10, 600_000), defaults.replicaTimeoutMs)
    .option('--forward-timeout-ms <ms>', 'deadline of one request forwarded to an owner', intIn('--forward-timeout-ms', 10, 600_000), defaults.forwardTimeoutMs)
    .option('--unavailable-ms <ms>', 'how long a request waits for an owner before SERVER_ERROR unavailable', intIn('--unavailable-ms', 10, 600_000), defaults.unavailableMs)
    .option('--stream-mb-per-s <n>', 'rate of the data transfer when this node joins or leaves, MiB/s', intIn('--stream-mb-per-s', 1, 100_000), defaults.streamMbPerS)
    .option('--transfer-stall-ms <ms>', 'a transfer call with no progress this long is retried, from another replica when one exists', intIn('--transfer-stall-ms', 100, 3_600_000), defaults.transferStallMs)
    .option('--transfer-concurrency <n>', 'range streams a joining node runs at once (the rest queue)', intIn('--transfer-concurrency', 1, 64), defaults.transferConcurrency)
    .option('--rpc-advertise <host:port>', 'the RPC address other nodes are told to use (default: host and rpc port)', address)
    .option('--debug-faults', 'accept fault injection over HTTP (PUT /debug/partition); for tests only')
    .addOption(logLevelOption());
}

/** The NodeConfig of parsed node flags (see addNodeOptions); a contradiction is a usage error. */
export function nodeConfig(o: Record<string, unknown>): NodeConfig {
  const cfg: NodeConfig = {
    ...defaults,
    id: String(o.id),
    host: String(o.host),
    port: o.port as number,
    httpPort: o.httpPort as number,
    data: String(o.data),
    storage: o.storage as StorageKind,
    cacheMb: o.cacheMb as number,
    memoryMb: o.memoryMb as number,
    maxItemSize: o.maxItemSize as number,
    maxConns: o.maxConns as number,
    maxInflight: o.maxInflight as number,
    maxLagMs: o.maxLagMs as number,
    idleTimeoutMs: (o.idleTimeout as number) * 1000,
    requestTimeoutMs: (o.requestTimeout as number) * 1000,
    sweepIntervalMs: o.sweepIntervalMs as number,
    rpcPort: o.rpcPort as number,
    antiEntropyMs: o.antiEntropyMs as number,
    maxHintMb: o.maxHintMb as number,
    hintWindowMs: o.hintWindowMs as number,
    tombstoneGraceMs: o.tombstoneGraceMs as number,
    maxSiblings: o.maxSiblings as number,
    heartbeatMs: o.heartbeatMs as number,
    replicaTimeoutMs: o.replicaTimeoutMs as number,
    forwardTimeoutMs: o.forwardTimeoutMs as number,
    unavailableMs: o.unavailableMs as number,
    debugFaults: o.debugFaults === true,
    streamMbPerS: o.streamMbPerS as number,
    transferStallMs: o.transferStallMs as number,
    transferConcurrency: o.transferConcurrency as number,
    ...(o.rpcAdvertise !== undefined ? { rpcAdvertise: String(o.rpcAdvertise) } : {}),
    logLevel: o.logLevel as LogLevel,
    ...(o.renewMs !== undefined ? { renewMs: o.renewMs as number } : {}),
    ...(o.driftMs !== undefined ? { driftMs: o.driftMs as number } : {}),
    ...(o.master ? { master: String(o.master) } : {}),
    ...(o.zone ? { zone: String(o.zone) } : {}),
  };
  if (cfg.tombstoneGraceMs <= cfg.hintWindowMs + cfg.antiEntropyMs) fail('--tombstone-grace-ms must exceed --hint-window-ms plus --anti-entropy-ms (or deletes could come back)');
  return cfg;
}

export function nodeCommand(): Command {
  return addNodeOptions(new Command('node').description('run a ringkv node (standalone until a master is given)')).action(async (o: Record<string, unknown>) => {
    await runNode(nodeConfig(o));
  });
}

export interface RunNodeHooks {
  /** Called once the ready line is out. */
  onReady?(node: RunningNode): void;
  /** Called first when the node stops (signal or decommission), before it closes. */
  onStopping?(): void;
}

/**
 * Starts a node, prints its ready line, and keeps it running until SIGTERM/SIGINT (exit 0)
 * or until it has left the cluster (exit 0). A startup failure is one line and exit 2.
 */
export async function runNode(cfg: NodeConfig, hooks: RunNodeHooks = {}): Promise<RunningNode> {
  let node: RunningNode;
  try {
    node = await startNode(cfg);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'EADDRINUSE') fail(`cannot listen: address ${cfg.host} port in use (${err.message})`);
    if (err.code === 'EACCES') fail(`cannot listen: permission denied (${err.message})`);
    const cause = (err as { cause?: Error }).cause;
    if (err.code === 'LEVEL_DATABASE_NOT_OPEN' && cause) fail(`cannot open data directory ${cfg.data}: ${cause.message.replace(/\s+/g, ' ')}`);
    fail(`cannot start node: ${(err.message ?? String(e)).replace(/\s+/g, ' ')}`);
  }
  const rpc = node.rpcPort !== undefined ? ` rpc=${cfg.host}:${node.rpcPort}` : '';
  process.stdout.write(`ringkv node ready memcached=${cfg.host}:${node.port} http=${cfg.host}:${node.httpPort}${rpc} pid=${process.pid}\n`);
  onStop(async () => {
    hooks.onStopping?.();
    await node.close();
  });
  // Decommissioned (ringkv cluster remove): everything is handed over, so stop cleanly.
  void node.left?.then(async () => {
    hooks.onStopping?.();
    process.stdout.write(`ringkv node ${cfg.id} left the cluster\n`);
    await node.close();
    process.exit(0);
  });
  hooks.onReady?.(node);
  return node;
}

/** SIGTERM/SIGINT: stop cleanly once, then exit 0 (1 if stopping failed). */
export function onStop(stop: () => Promise<void>): void {
  let stopping = false;
  const handler = (signal: string) => {
    if (stopping) return;
    stopping = true;
    stop().then(
      () => process.exit(0),
      (e: unknown) => {
        process.stderr.write(`ringkv: error while stopping on ${signal}: ${e instanceof Error ? e.message : String(e)}\n`);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => handler('SIGTERM'));
  process.on('SIGINT', () => handler('SIGINT'));
}
