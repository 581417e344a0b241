// A node's membership in a cluster: its internal RPC listener (forwarded commands from
// other nodes, recalls from the master), its owner library (leases), its lookup library
// (the lease table, pulled from the master every lookupRefreshMs and at once after a
// not-owner answer) and the router that sends each command where its key lives.
import { initHash } from '../../ring/index.js';
import type { Clock } from '../clock.js';
import type { NodeConfig } from '../config.js';
import type { ChangesReply, NodeAddrs, WireLease } from '../master/core.js';
import type { McContext } from '../protocol/memcached/execute.js';
import { MasterLink, RpcClient, RpcPeers, RpcServer, RpcUnavailable } from '../protocol/rpc/index.js';
import { LeaseTable } from './lease-table.js';
import { Owner, realTimers } from './owner.js';
import { Router, type WireCommand } from './router.js';
import { kvRequestFromWire, type KvRequest, type LocalKvApi } from '../kv/api.js';
import type { LocalKv } from '../kv/local-kv.js';
import type { Store } from '../storage/store.js';
import { LevelStore } from '../storage/level-store.js';
import { MemoryLevel } from 'memory-level';
import { FailureDetector } from '../replication/failure-detector.js';
import { HintStore, type HintSpace } from '../replication/hints.js';
import { Replicator, type ReplicationSettings } from '../replication/replicator.js';
import { AntiEntropy, type AeLayout, type AeRange } from '../replication/anti-entropy.js';
import { MB } from '../config.js';
import { Transfers } from './transfer.js';
import { OVERLOADED, type Admission } from '../overload.js';
import { errText, silentLogger, type Logger } from '../log.js';
import type { NodeMetrics } from '../metrics.js';

export interface ClusterMembership {
  readonly rpcPort: number;
  readonly router: Router;
  readonly owner: Owner;
  readonly table: LeaseTable;
  readonly replicator: Replicator;
  readonly hints: HintStore;
  readonly antiEntropy: AntiEntropy;
  readonly fd: FailureDetector;
  /** When the last anti-entropy round that reached every replica peer started (0: none yet). */
  readonly aeCoveredMs: () => number;
  readonly selfId: string;
  readonly transfers: Transfers;
  /** Resolves once this node has left the cluster (decommissioned, every lease handed over). */
  readonly left: Promise<void>;
  /** Test fault injection: the node ids this node cannot reach from now on (empty: heal). */
  partition(ids: readonly string[]): void;
  /** Registers with the master (call once every listener is bound). */
  join(addrs: Omit<NodeAddrs, 'rpc'>): Promise<void>;
  close(): Promise<void>;
}

export async function startClusterMembership(
  cfg: NodeConfig,
  ctx: McContext,
  api: LocalKvApi,
  clock: Clock,
  kv: LocalKv,
  store: Store,
  admission?: Admission,
  obs: { log?: Logger; metrics?: NodeMetrics } = {},
): Promise<ClusterMembership> {
  if (!cfg.master) throw new Error('no master configured');
  const log = obs.log ?? silentLogger;
  await initHash();
  // One address or several (--master a:7000,b:7000): calls go to the one that leads. With
  // several, a master that went silent (paused, cut off) costs one try of at most 1 s.
  const master = new MasterLink(cfg.master, { attemptTimeoutMs: Math.min(cfg.forwardTimeoutMs, 1000) });
  const peers = new RpcPeers();
  const peer = (addr: string): RpcClient => peers.get(addr);
  // Fault injection for tests (--debug-faults): peers this node cannot reach, as if the
  // network refused every connection to them. The master link is not affected.
  const unreachable = new Set<string>();
  const callPeer = <T>(addr: string, type: string, body: unknown, timeoutMs: number): Promise<T> => {
    for (const id of unreachable) {
      if (table.members.get(id)?.addrs.rpc === addr) return Promise.reject(new RpcUnavailable('CONNECT_FAILED', false, `${type} to ${id}: partitioned (debug fault)`));
    }
    return peer(addr).call<T>(type, body, { timeoutMs });
  };

  const table = new LeaseTable();
  const owner = new Owner({
    call: (type, body, timeoutMs) => master.call(type, body, { timeoutMs }),
    clock,
    timers: realTimers,
    ...(cfg.renewMs !== undefined ? { renewMs: cfg.renewMs } : {}),
    ...(cfg.driftMs !== undefined ? { driftMs: cfg.driftMs } : {}),
    callTimeoutMs: cfg.forwardTimeoutMs,
    onGrant: (grant) => {
      if (grant.lsn > table.lsn) void refresh().catch(() => {});
    },
  });
  let pulling: Promise<void> | undefined;
  let replication: ReplicationSettings | undefined;
  let viewVersion = 0;
  const refresh = (): Promise<void> => {
    pulling ??= master
      .call<ChangesReply>('changes', { lsn: table.lsn }, { timeoutMs: cfg.forwardTimeoutMs })
      .then((reply) => {
        if (reply.replication && JSON.stringify(reply.replication) !== JSON.stringify(replication)) {
          replication = reply.replication;
          viewVersion++;
        }
        if (table.apply(reply)) {
          viewVersion++;
          noticeGrants();
          noticeMove();
        }
      })
      .finally(() => {
        pulling = undefined;
      });
    return pulling;
  };
  /** The table names us owner of a piece we hold no lease on yet: renew now instead of at the next tick. */
  const noticeGrants = () => {
    const mine = table.all().filter((l: WireLease) => l.owner === cfg.id);
    const held = new Set(owner.leases().map((l) => `${l.end}/${l.generation}`));
    if (mine.some((l) => !held.has(`${l.end}/${l.generation}`))) owner.renewSoon();
  };

  // Replication: hints in their own key space of the node's LevelDB (memory mode: in memory).
  let hintSpace: HintSpace;
  let memLevel: MemoryLevel<Buffer, Uint8Array> | undefined;
  if (store instanceof LevelStore) hintSpace = store.level.sublevel<Buffer, Uint8Array>('hints', { keyEncoding: 'buffer', valueEncoding: 'view' });
  else {
    memLevel = new MemoryLevel<Buffer, Uint8Array>({ keyEncoding: 'buffer', valueEncoding: 'view' });
    await memLevel.open();
    hintSpace = memLevel.sublevel<Buffer, Uint8Array>('hints', { keyEncoding: 'buffer', valueEncoding: 'view' });
  }
  const hints = new HintStore({ db: hintSpace, clock, maxHintBytes: cfg.maxHintMb * MB, hintWindowMs: cfg.hintWindowMs });
  await hints.open();
  const fd = new FailureDetector({
    now: () => clock.now(),
    heartbeatMs: cfg.heartbeatMs,
    ping: async (id) => {
      const m = table.members.get(id);
      if (!m) throw new Error(`unknown node ${id}`);
      await callPeer(m.addrs.rpc, 'ping', {}, cfg.replicaTimeoutMs);
    },
  });
  const replicator = new Replicator({
    selfId: cfg.id,
    kv,
    members: () => table.members,
    settings: () => replication,
    viewVersion: () => viewVersion,
    call: callPeer,
    hints,
    fd,
    replicaTimeoutMs: cfg.replicaTimeoutMs,
    hintBatch: 500,
  });
  const antiEntropy = new AntiEntropy({
    selfId: cfg.id,
    layout: () => layoutOf(replicator, cfg.id),
    store,
    call: (id, type, body) => replicator.callPeer(id, type, body),
    isUp: (id) => replicator.reachable(id),
    merge: (key, record) => {
      const r = kv.merge(key, record);
      return r instanceof Promise ? r.then(() => undefined) : undefined;
    },
  });
  let aeCoveredMs = 0;

  // Joins and leaves: this node's own status in the table starts its part of the move.
  const transfers = new Transfers({
    selfId: cfg.id,
    replicator,
    kv,
    store,
    hints,
    members: () => table.members,
    callPeer: (id, type, body, timeoutMs) => replicator.callPeer(id, type, body, timeoutMs),
    callMaster: (type, body) => master.call(type, body, { timeoutMs: cfg.forwardTimeoutMs }),
    refresh: () => refresh(),
    mbPerS: cfg.streamMbPerS,
    stallMs: cfg.transferStallMs,
    concurrency: cfg.transferConcurrency,
    warn: (fields, message) => log.warn(fields, message),
    now: () => clock.now(),
    sleep: (ms) => new Promise((r) => setTimeout(r, ms)),
  });
  let moving: Promise<void> | undefined;
  let finishing: Promise<void> | undefined;
  let leftResolve: () => void = () => {};
  const left = new Promise<void>((r) => (leftResolve = r));
  let progressTimer: NodeJS.Timeout | undefined;
  const reportProgress = () => {
    const p = transfers.progress();
    if (p) void master.call('progress', { id: cfg.id, transfer: p }, { timeoutMs: cfg.forwardTimeoutMs }).catch(() => {});
  };
  const noticeMove = () => {
    const status = table.members.get(cfg.id)?.status;
    if (status === 'left') {
      // Out of the ring: once every lease is recalled and every hint handed on, this node's work is done.
      if (owner.leases().length === 0 && !finishing) {
        finishing = transfers.handOnRemainingHints().then(() => leftResolve());
      }
      return;
    }
    if (moving || closed || (status !== 'joining' && status !== 'leaving')) return;
    const run = status === 'joining' ? () => transfers.join() : () => transfers.leave();
    const what = status === 'joining' ? 'join' : 'leave';
    progressTimer ??= setInterval(reportProgress, 500);
    progressTimer.unref();
    log.info({ move: what }, `${what} transfer started`);
    moving = run()
      .then(() => {
        const p = transfers.progress();
        log.info({ move: what, keys: p?.keys, bytes: p?.bytes, ranges: p?.ranges?.length, retries: p?.retries }, `${what} transfer finished`);
      })
      .catch((e: unknown) => {
        log.error({ move: what, err: errText(e) }, `${what} failed`);
      })
      .finally(() => {
        reportProgress();
        if (progressTimer) clearInterval(progressTimer);
        progressTimer = undefined;
        moving = undefined;
        void refresh().catch(() => {});
      });
  };
  kv.hooks = {
    replicate: (key, record, durable) => replicator.replicate(key, record, durable),
    changed: (key, record) => antiEntropy.noteWrite(key, record),
    // A tombstone may go only once an anti-entropy round that reached every peer began after it.
    tombstonePurgeBefore: () => aeCoveredMs,
  };

  const router = new Router({
    selfId: cfg.id,
    ctx,
    api,
    owner,
    table,
    forwarder: { call: callPeer },
    refresh,
    unavailableMs: cfg.unavailableMs,
    forwardTimeoutMs: cfg.forwardTimeoutMs,
    now: () => clock.now(),
    sleep: (ms) => new Promise((r) => setTimeout(r, ms)),
    replicator,
  });

  const metrics = obs.metrics;
  const rpc = new RpcServer({ host: cfg.host, port: cfg.rpcPort, ...(metrics ? { onSettled: (type: string, ok: boolean, error?: unknown) => metrics.rpcDone(type, ok, error) } : {}) });
  // Client requests (from TS clients, and forwarded by other nodes' front ends) pass the
  // node's admission control; replica, hint, stream and anti-entropy traffic does not: it
  // is bounded by its own senders, and refusing it would only turn into hints and repairs.
  const admitted = <B>(handler: (body: B) => Promise<unknown>) =>
    async (body: B): Promise<unknown> => {
      if (admission === undefined) return handler(body);
      if (!admission.admit()) throw Object.assign(new Error('the node is overloaded'), { code: OVERLOADED });
      try {
        return await handler(body);
      } finally {
        admission.done();
      }
    };
  rpc.handle('mc', admitted(async (body: unknown) => {
    const b = body as { cmd: WireCommand; generation?: number; standIn?: boolean; deadline?: unknown };
    return { reply: await router.serve(b.cmd, b.generation, b.standIn === true, deadlineOf(b.deadline)) };
  }));
  rpc.handle('mc.get', admitted(async (body: unknown) => {
    const b = body as { keys: string[]; withCas: boolean; exptime?: number };
    return { parts: await router.serveGet(b.keys, b.withCas, b.exptime) };
  }));
  rpc.handle('kv', admitted(async (body: unknown) => {
    const b = body as { req: KvRequest & { key: unknown; value?: unknown }; generation?: number; standIn?: boolean; route?: boolean; deadline?: unknown };
    // route: a client whose owner does not answer asks this node to route the request
    // (forward it, or find a replica to coordinate it) as it does for its own front-ends.
    if (b.route === true) {
      router.checkDeadline(deadlineOf(b.deadline));
      return router.runKv(kvRequestFromWire(b.req));
    }
    return router.serveKv(kvRequestFromWire(b.req), b.generation, b.standIn === true, deadlineOf(b.deadline));
  }));
  rpc.handle('kv.many', admitted(async (body: unknown) => {
    // One round trip per owner for a client's getMany: null where this node is not the owner.
    const b = body as { keys?: unknown; r?: unknown };
    if (!Array.isArray(b.keys) || b.keys.length > 10_000) throw Object.assign(new Error('keys must be an array of at most 10000 keys'), { code: 'BAD_REQUEST' });
    const keys = b.keys.map((k: unknown) => kvRequestFromWire({ op: 'get', key: k, r: b.r }).key);
    const r = b.r === undefined || b.r === null ? {} : replicator.checkQuorum({ r: b.r as number });
    return { results: await router.serveMany(keys, r) };
  }));
  rpc.handle('rep.put', (body: unknown) => replicator.receive(body));
  rpc.handle('rep.get', async (body: unknown) => replicator.serveGet(body));
  rpc.handle('ping', async () => ({}));
  rpc.handle('stream.scan', (body: unknown) => transfers.serveScan(body));
  rpc.handle('stream.digest', (body: unknown) => transfers.serveDigest(body));
  rpc.handle('stream.diff', (body: unknown) => transfers.serveDiff(body));
  for (const type of ['ae.roots', 'ae.leaves', 'ae.keys'] as const) rpc.handle(type, (body: unknown) => antiEntropy.handle(type, body));
  rpc.handle('revoke', async (body: unknown) => owner.revoke((body as { leases: WireLease[] }).leases));
  const rpcPort = await rpc.listen();

  // Anti-entropy: a round every antiEntropyMs, and soon after the ring changes.
  let aeTimer: NodeJS.Timeout | undefined;
  let aeRunning: Promise<void> | undefined;
  let aeFingerprint = '';
  let closed = false;
  const runAntiEntropy = (): Promise<void> => {
    aeRunning ??= (async () => {
      const startedMs = clock.now();
      const layout = layoutOf(replicator, cfg.id);
      const expected = new Set(layout.ranges.flatMap((x) => x.replicas).filter((id) => id !== cfg.id));
      const r = await antiEntropy.round();
      // Covered only when every replica peer took part: a peer skipped as down may still
      // hold what a tombstone deletes, so no tombstone may go yet.
      if (r.failedPeers.length === 0 && r.peers === expected.size) aeCoveredMs = startedMs;
    })()
      .catch((e: unknown) => {
        log.error({ err: errText(e) }, 'anti-entropy round failed');
      })
      .finally(() => {
        aeRunning = undefined;
      });
    return aeRunning;
  };
  const scheduleAntiEntropy = (delayMs: number) => {
    if (closed) return;
    aeTimer = setTimeout(() => {
      aeFingerprint = replicator.ringFingerprint();
      void runAntiEntropy().finally(() => scheduleAntiEntropy(cfg.antiEntropyMs));
    }, delayMs);
    aeTimer.unref();
  };

  let timer: NodeJS.Timeout | undefined;
  return {
    rpcPort,
    router,
    owner,
    table,
    replicator,
    hints,
    antiEntropy,
    fd,
    aeCoveredMs: () => aeCoveredMs,
    selfId: cfg.id,
    transfers,
    left,
    partition(ids) {
      unreachable.clear();
      for (const id of ids) if (id !== cfg.id) unreachable.add(id);
    },
    async join(addrs) {
      // join: a node new to a running cluster copies its data in before it takes ranges.
      const info = { id: cfg.id, ...(cfg.zone ? { zone: cfg.zone } : {}), addrs: { ...addrs, rpc: cfg.rpcAdvertise ?? `${cfg.host}:${rpcPort}` }, join: true };
      await owner.start(info);
      await refresh();
      timer = setInterval(() => {
        void refresh()
          .then(() => {
            // A join or leave that failed (a peer away) starts again; a left node checks its leases.
            noticeMove();
            // A membership change: compare with the (new) replicas soon, not a period later.
            if (aeTimer && replicator.ringFingerprint() !== aeFingerprint) {
              clearTimeout(aeTimer);
              scheduleAntiEntropy(Math.min(cfg.antiEntropyMs, 1000));
              aeFingerprint = replicator.ringFingerprint();
            }
          })
          .catch(() => {});
      }, cfg.lookupRefreshMs);
      timer.unref();
      fd.start(() => [...table.members.values()].filter((m) => m.id !== cfg.id && (m.status === 'up' || m.status === 'joining' || m.status === 'leaving')).map((m) => m.id));
      replicator.start(cfg.heartbeatMs);
      aeFingerprint = replicator.ringFingerprint();
      scheduleAntiEntropy(Math.min(cfg.antiEntropyMs, 1000));
    },
    async close() {
      closed = true;
      if (timer) clearInterval(timer);
      if (progressTimer) clearInterval(progressTimer);
      if (aeTimer) clearTimeout(aeTimer);
      fd.stop();
      replicator.stop();
      owner.close();
      await rpc.close(cfg.shutdownGraceMs);
      await aeRunning;
      master.close();
      await peers.close();
      await hints.close();
      await memLevel?.close();
    },
  };
}

/** The ranges of the current ring this node replicates, with their replicas (anti-entropy's view). */
function layoutOf(replicator: Replicator, selfId: string): AeLayout {
  const ring = replicator.ring();
  const fingerprint = replicator.ringFingerprint();
  if (!ring) return { fingerprint, ranges: [] };
  const ranges: AeRange[] = [];
  for (const r of ring.ranges()) {
    const replicas = replicator.preferenceList(r.end);
    if (replicas.includes(selfId)) ranges.push({ start: r.start, end: r.end, replicas });
  }
  return { fingerprint, ranges };
}

/** A request's deadline (Unix ms) from the wire; anything but a finite number means none. */
function deadlineOf(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}
