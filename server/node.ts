// A ringkv node: storage, the key-value semantics over it, and its front-ends (memcached
// text protocol and HTTP), wired together with the background sweep. `startNode` returns
// once every listener is bound; `close` stops accepting, lets in-flight requests finish,
// and closes LevelDB.
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { systemClock, type Clock } from './clock.js';
import { MB, type NodeConfig } from './config.js';
import { LocalKv } from './kv/local-kv.js';
import { LocalKvApi } from './kv/api.js';
import { HttpServer } from './protocol/http.js';
import { McServer } from './protocol/memcached/server.js';
import type { McContext } from './protocol/memcached/execute.js';
import { startClusterMembership, type ClusterMembership } from './cluster/cluster.js';
import { LevelStore } from './storage/level-store.js';
import { MemoryStore } from './storage/memory-store.js';
import type { Store } from './storage/store.js';
import { casText, type StoredRecord } from './storage/record.js';
import { jsonValue } from './protocol/http.js';
import { Admission } from './overload.js';
import { createLogger, errText, type Logger } from './log.js';
import { NodeMetrics } from './metrics.js';
import { watchCluster, type ClusterWatch } from './cluster/watch.js';

export const RINGKV_VERSION = '0.1.0';
/** memcached-compatible version text: clients that gate features on "1.6" see 1.6.18's protocol. */
export const VERSION_TEXT = `1.6.18-ringkv-${RINGKV_VERSION}`;

export interface RunningNode {
  readonly config: NodeConfig;
  readonly port: number;
  readonly httpPort: number;
  readonly kv: LocalKv;
  /** In a cluster: the internal RPC port and the membership (leases, lease table). */
  readonly rpcPort?: number;
  readonly membership?: ClusterMembership;
  /** In a cluster: resolves once this node has been decommissioned and handed everything over. */
  readonly left?: Promise<void>;
  stats(): Record<string, string | number>;
  /** Its Prometheus registry and request counters (GET /metrics). */
  readonly metrics: NodeMetrics;
  close(): Promise<void>;
}

/** One record as GET /debug/local shows it: the version in full, the value as text or base64. */
function debugRecord(key: string, r: StoredRecord, hintFor: string | null): Record<string, unknown> {
  const one = (v: StoredRecord) => ({
    ...jsonValue(v.value),
    flags: v.flags,
    expiresAtMs: v.expiresAtMs,
    version: { clock: v.version.clock, ts: v.version.ts, cas: casText(v.version.ts) },
    tombstone: v.tombstone,
  });
  const { siblings, ...self } = r;
  return { key: Buffer.from(key, 'latin1').toString('utf8'), ...one(self as StoredRecord), hintFor, siblings: (siblings ?? []).map(one) };
}

/** Replication's counters, as `stats` and /stats show them. */
function clusterStats(m: ClusterMembership): Record<string, number | string> {
  const h = m.hints.stats();
  const rc = m.replicator.counters;
  const batching = m.replicator.batching();
  const ae = m.antiEntropy.counters;
  return {
    cluster_leases_held: m.owner.leases().length,
    forwarded_requests: m.router.counters.forwarded_out,
    forwarded_received: m.router.counters.forwarded_in,
    cluster_table_lsn: m.table.lsn,
    cluster_table_pieces: m.table.size,
    replica_writes: rc.replica_writes,
    replica_write_failures: rc.replica_write_failures,
    quorum_failures: rc.quorum_failures,
    read_repairs: rc.read_repairs,
    coordinated_for_down_owner: rc.coordinated_for_down_owner,
    // Replica traffic coalesced per peer per turn: items per call is the batching reached.
    replica_put_calls: batching.putCalls,
    replica_put_items: batching.putItems,
    replica_get_calls: batching.getCalls,
    replica_get_keys: batching.getKeys,
    hints_held: h.entries,
    hints_bytes: h.bytes,
    hints_stored: rc.hints_stored,
    hints_sent: rc.hints_sent,
    hints_kept_locally: rc.hints_kept_locally,
    hints_replayed: rc.hints_replayed,
    hints_dropped: h.dropped,
    hints_expired: h.expired,
    anti_entropy_rounds: ae.rounds,
    anti_entropy_keys_exchanged: ae.keysExchanged,
    anti_entropy_ranges_differing: ae.rangesDiffering,
    peers_down: m.fd.downPeers().join(',') || '-',
    cluster_status: m.table.members.get(m.selfId)?.status ?? 'unknown',
    stream_keys_in: m.transfers.counters.stream_keys_in,
    stream_bytes_in: m.transfers.counters.stream_bytes_in,
    stream_keys_out: m.transfers.counters.stream_keys_out,
    stream_bytes_out: m.transfers.counters.stream_bytes_out,
    // Range moves: retried calls, switches to another source, moves resumed after a restart,
    // records and bytes pulled by the catch-up, ranges that stalled.
    transfer_retries: m.transfers.counters.transfer_retries,
    transfer_source_switches: m.transfers.counters.transfer_source_switches,
    transfer_resumes: m.transfers.counters.transfer_resumes,
    transfer_catchup_keys: m.transfers.counters.transfer_catchup_keys,
    transfer_catchup_bytes: m.transfers.counters.transfer_catchup_bytes,
    transfer_stalls: m.transfers.counters.transfer_stalls,
  };
}

export function makeStore(cfg: NodeConfig, clock: Clock): Store {
  if (cfg.storage === 'memory') return new MemoryStore({ memoryBytes: cfg.memoryMb * MB, clock });
  const dir = path.join(cfg.data, 'db');
  mkdirSync(dir, { recursive: true });
  return new LevelStore({ dir, cacheBytes: cfg.cacheMb * MB, clock });
}

export async function startNode(cfg: NodeConfig, clock: Clock = systemClock, log: Logger = createLogger({ level: cfg.logLevel, bindings: { node: cfg.id } })): Promise<RunningNode> {
  const startedMs = clock.now();
  const store = makeStore(cfg, clock);
  const kv = new LocalKv({ nodeId: cfg.id, store, clock, maxItemSize: cfg.maxItemSize, tombstoneGraceMs: cfg.tombstoneGraceMs, maxSiblings: cfg.maxSiblings });
  await kv.open();

  const api = new LocalKvApi(kv);
  const admission = new Admission({ maxInflight: cfg.maxInflight, maxLagMs: cfg.maxLagMs });
  let mc: McServer | undefined;
  let membership: ClusterMembership | undefined;
  const stats = (): Record<string, string | number> => {
    const s = store.stats();
    const cpu = process.cpuUsage();
    const c = kv.counters;
    const conn = mc?.counters;
    return {
      pid: process.pid,
      uptime: Math.floor((clock.now() - startedMs) / 1000),
      time: Math.floor(clock.now() / 1000),
      version: VERSION_TEXT,
      libevent: 'node',
      pointer_size: 64,
      rusage_user: (cpu.user / 1e6).toFixed(6),
      rusage_system: (cpu.system / 1e6).toFixed(6),
      max_connections: cfg.maxConns,
      curr_connections: conn?.curr_connections ?? 0,
      total_connections: conn?.total_connections ?? 0,
      rejected_connections: conn?.rejected_connections ?? 0,
      // memcached's name for connections closed by idle_timeout; ours also counts the request timeout
      idle_kicks: conn?.timed_out_connections ?? 0,
      cmd_get: c.cmd_get,
      cmd_set: c.cmd_set,
      cmd_flush: c.cmd_flush,
      cmd_touch: c.cmd_touch,
      get_hits: c.get_hits,
      get_misses: c.get_misses,
      get_expired: c.get_expired,
      get_flushed: c.get_flushed,
      delete_misses: c.delete_misses,
      delete_hits: c.delete_hits,
      incr_misses: c.incr_misses,
      incr_hits: c.incr_hits,
      decr_misses: c.decr_misses,
      decr_hits: c.decr_hits,
      cas_misses: c.cas_misses,
      cas_hits: c.cas_hits,
      cas_badval: c.cas_badval,
      touch_hits: c.touch_hits,
      touch_misses: c.touch_misses,
      store_too_large: c.store_too_large,
      bytes_read: conn?.bytes_read ?? 0,
      bytes_written: conn?.bytes_written ?? 0,
      limit_maxbytes: s.limitBytes,
      threads: 1,
      bytes: s.bytes,
      curr_items: s.items,
      total_items: c.total_items,
      evictions: s.evictions,
      reclaimed: c.expired_swept,
      // ringkv's own
      storage: store.kind,
      requests_inflight: admission.inflight,
      rejected_requests: admission.rejected,
      rejected_inflight: admission.counters.rejected_inflight,
      rejected_lag: admission.counters.rejected_lag,
      event_loop_lag_ms: admission.lagMs().toFixed(1),
      cache_hits: s.cacheHits,
      cache_misses: s.cacheMisses,
      tombstones_purged: c.tombstones_purged,
      siblings_collapsed: c.siblings_collapsed,
      ...(membership ? clusterStats(membership) : {}),
    };
  };

  const settings = (): Array<readonly [string, string | number]> => [
    ['maxbytes', store.stats().limitBytes],
    ['maxconns', cfg.maxConns],
    ['idle_timeout', cfg.idleTimeoutMs / 1000],
    ['max_inflight', cfg.maxInflight],
    ['max_lag_ms', cfg.maxLagMs],
    ['request_timeout', cfg.requestTimeoutMs / 1000],
    ['tcpport', cfg.port],
    ['evictions', cfg.storage === 'memory' ? 'on' : 'off'],
    ['item_size_max', cfg.maxItemSize],
    ['cas_enabled', 'yes'],
    ['flush_enabled', 'yes'],
    ['storage', cfg.storage],
    ['cache_mb', cfg.cacheMb],
    ['memory_mb', cfg.memoryMb],
    ['data', cfg.data],
    ['node_id', cfg.id],
  ];

  const mcCtx: McContext = {
      kv,
      version: VERSION_TEXT,
      stats(args) {
        if (args.length === 0) return Object.entries(stats());
        if (args.length === 1 && args[0] === 'settings') return settings();
        if (args.length === 1 && args[0] === 'items') {
          const s = store.stats();
          return [
            ['items:1:number', s.items],
            ['items:1:evicted', s.evictions],
            ['items:1:reclaimed', kv.counters.expired_swept],
          ];
        }
        if (args.length === 1 && args[0] === 'slabs') {
          const s = store.stats();
          return [
            ['active_slabs', s.items > 0 ? 1 : 0],
            ['total_malloced', s.bytes],
          ];
        }
        if (args.length === 1 && args[0] === 'sizes') return [['sizes_status', 'disabled']];
        if (args.length === 1 && args[0] === 'conns') return [];
        return undefined;
      },
      statsCommand(args) {
        if (args.length === 1 && args[0] === 'reset') {
          for (const k of Object.keys(kv.counters) as Array<keyof typeof kv.counters>) kv.counters[k] = 0;
          return 'RESET\r\n';
        }
        if (args.length === 2 && args[0] === 'detail' && (args[1] === 'on' || args[1] === 'off')) return 'OK\r\n';
        return undefined;
      },
  };
  const metrics = new NodeMetrics({ stats, cluster: cfg.master !== undefined, transfer: () => membership?.transfers.progress() });
  if (cfg.master) {
    membership = await startClusterMembership(cfg, mcCtx, api, clock, kv, store, admission, { log, metrics });
    const router = membership.router;
    mcCtx.dispatch = (cmd) => router.dispatch(cmd);
  }
  mc = new McServer(
    mcCtx,
    {
      host: cfg.host,
      port: cfg.port,
      limits: { maxGetLineBytes: cfg.maxGetLineBytes, maxValueBytes: cfg.maxItemSize },
      maxConns: cfg.maxConns,
      maxConnReplyBytes: cfg.maxConnReplyBytes,
      admission,
      idleTimeoutMs: cfg.idleTimeoutMs,
      requestTimeoutMs: cfg.requestTimeoutMs,
      metrics,
    },
  );
  const router = membership?.router;
  const debugLocal = async (key: string): Promise<unknown> => {
    const r = kv.raw(key);
    if (r) return debugRecord(key, r, null);
    const hint = await membership?.hints.find(key);
    return hint ? debugRecord(key, hint.record, hint.target) : undefined;
  };
  const httpServer = new HttpServer(
    {
      run: router ? (req) => router.runKv(req) : (req) => api.run(req),
      now: () => clock.now(),
      stats,
      debugLocal,
      admission,
      metrics,
      ...(cfg.debugFaults && membership ? { partition: (ids: string[]) => membership!.partition(ids) } : {}),
    },
    {
      host: cfg.host,
      port: cfg.httpPort,
      maxItemSize: cfg.maxItemSize,
      maxConns: cfg.maxConns,
      requestTimeoutMs: cfg.requestTimeoutMs,
      ...(cfg.idleTimeoutMs > 0 ? { idleTimeoutMs: cfg.idleTimeoutMs } : {}),
    },
  );

  let port: number;
  let httpPort: number;
  try {
    port = await mc.listen();
    httpPort = await httpServer.listen();
    await membership?.join({ memcached: `${cfg.host}:${port}`, http: `${cfg.host}:${httpPort}` });
  } catch (e) {
    admission.close();
    await mc.close(0).catch(() => {});
    await httpServer.close(0).catch(() => {});
    await membership?.close().catch(() => {});
    await store.close().catch(() => {});
    throw e;
  }

  // The background sweep: bounded steps, one at a time, never overlapping.
  let sweepTimer: NodeJS.Timeout | undefined;
  let sweeping: Promise<void> | undefined;
  let stopped = false;
  const scheduleSweep = (delayMs: number) => {
    if (stopped) return;
    sweepTimer = setTimeout(() => {
      sweeping = kv
        .sweepStep(cfg.sweepBatch)
        .then((finished) => scheduleSweep(finished ? cfg.sweepIntervalMs : 0))
        .catch((e: unknown) => {
          log.error({ err: errText(e) }, 'sweep failed');
          scheduleSweep(cfg.sweepIntervalMs);
        });
    }, delayMs);
    sweepTimer.unref();
  };
  scheduleSweep(cfg.sweepIntervalMs);
  const watch: ClusterWatch | undefined = membership ? watchCluster(membership, log) : undefined;
  log.info(
    {
      memcached: `${cfg.host}:${port}`,
      http: `${cfg.host}:${httpPort}`,
      ...(membership ? { rpc: `${cfg.host}:${membership.rpcPort}`, master: cfg.master } : {}),
      storage: cfg.storage,
      ...(cfg.storage === 'level' ? { data: cfg.data, cacheMb: cfg.cacheMb } : { memoryMb: cfg.memoryMb }),
      maxConns: cfg.maxConns,
      maxInflight: cfg.maxInflight,
    },
    'node started',
  );

  return {
    config: cfg,
    port,
    httpPort,
    kv,
    ...(membership ? { rpcPort: membership.rpcPort, membership, left: membership.left } : {}),
    stats,
    metrics,
    async close() {
      log.info('node stopping');
      watch?.stop();
      stopped = true;
      if (sweepTimer) clearTimeout(sweepTimer);
      await Promise.all([mc.close(cfg.shutdownGraceMs), httpServer.close(cfg.shutdownGraceMs)]);
      await membership?.close();
      await sweeping;
      admission.close();
      await store.close();
    },
  };
}
