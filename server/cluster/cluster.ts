// A node's membership in a cluster: its internal RPC listener (forwarded commands from
// other nodes, recalls from the master), its owner library (leases), its lookup library
// (the lease table, pulled from the master every lookupRefreshMs and at once after a
// not-owner answer) and the router that sends each command where its key lives.
import { initHash } from '../../ring/index.js';
import type { Clock } from '../clock.js';
import type { NodeConfig } from '../config.js';
import type { ChangesReply, NodeAddrs, WireLease } from '../master/core.js';
import type { McContext } from '../protocol/memcached/execute.js';
import { RpcClient, RpcPeers, RpcServer, splitAddr } from '../protocol/rpc/index.js';
import { LeaseTable } from './lease-table.js';
import { Owner, realTimers } from './owner.js';
import { keyPosition, Router, type WireCommand } from './router.js';
import { kvRequestFromWire, type KvRequest, type LocalKvApi } from '../kv/api.js';

export interface ClusterMembership {
  readonly rpcPort: number;
  readonly router: Router;
  readonly owner: Owner;
  readonly table: LeaseTable;
  /** Registers with the master (call once every listener is bound). */
  join(addrs: Omit<NodeAddrs, 'rpc'>): Promise<void>;
  close(): Promise<void>;
}

export async function startClusterMembership(cfg: NodeConfig, ctx: McContext, api: LocalKvApi, clock: Clock): Promise<ClusterMembership> {
  if (!cfg.master) throw new Error('no master configured');
  await initHash();
  const [masterHost, masterPort] = splitAddr(cfg.master);
  const master = new RpcClient({ host: masterHost, port: masterPort });
  const peers = new RpcPeers();
  const peer = (addr: string): RpcClient => peers.get(addr);

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
  const refresh = (): Promise<void> => {
    pulling ??= master
      .call<ChangesReply>('changes', { lsn: table.lsn }, { timeoutMs: cfg.forwardTimeoutMs })
      .then((reply) => {
        if (table.apply(reply)) noticeGrants();
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

  const router = new Router({
    selfId: cfg.id,
    ctx,
    api,
    owner,
    table,
    forwarder: { call: (addr, type, body, timeoutMs) => peer(addr).call(type, body, { timeoutMs }) },
    refresh,
    unavailableMs: cfg.unavailableMs,
    forwardTimeoutMs: cfg.forwardTimeoutMs,
    now: () => clock.now(),
    sleep: (ms) => new Promise((r) => setTimeout(r, ms)),
  });

  const rpc = new RpcServer({ host: cfg.host, port: cfg.rpcPort });
  rpc.handle('mc', async (body: unknown) => {
    const b = body as { cmd: WireCommand; generation?: number };
    return { reply: await router.serve(b.cmd, b.generation) };
  });
  rpc.handle('mc.get', async (body: unknown) => {
    const b = body as { keys: string[]; withCas: boolean; exptime?: number };
    return { parts: await router.serveGet(b.keys, b.withCas, b.exptime) };
  });
  rpc.handle('kv', async (body: unknown) => {
    const b = body as { req: KvRequest & { key: unknown; value?: unknown }; generation?: number };
    return router.serveKv(kvRequestFromWire(b.req), b.generation);
  });
  rpc.handle('kv.many', async (body: unknown) => {
    // One round trip per owner for a client's getMany: null where this node is not the owner.
    const b = body as { keys?: unknown };
    if (!Array.isArray(b.keys) || b.keys.length > 10_000) throw Object.assign(new Error('keys must be an array of at most 10000 keys'), { code: 'BAD_REQUEST' });
    const results = b.keys.map((k: unknown) => {
      const req = kvRequestFromWire({ op: 'get', key: k });
      return owner.holds(keyPosition(req.key)) === undefined ? null : api.run(req);
    });
    return { results: await Promise.all(results) };
  });
  rpc.handle('revoke', async (body: unknown) => owner.revoke((body as { leases: WireLease[] }).leases));
  const rpcPort = await rpc.listen();

  let timer: NodeJS.Timeout | undefined;
  return {
    rpcPort,
    router,
    owner,
    table,
    async join(addrs) {
      const info = { id: cfg.id, ...(cfg.zone ? { zone: cfg.zone } : {}), addrs: { ...addrs, rpc: `${cfg.host}:${rpcPort}` } };
      await owner.start(info);
      await refresh();
      timer = setInterval(() => void refresh().catch(() => {}), cfg.lookupRefreshMs);
      timer.unref();
    },
    async close() {
      if (timer) clearInterval(timer);
      owner.close();
      await rpc.close(cfg.shutdownGraceMs);
      master.close();
      await peers.close();
    },
  };
}
