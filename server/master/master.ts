// The lease master process: the shell around MasterCore. It owns the sockets (internal
// RPC for nodes and clients, HTTP for people: GET /cluster, GET /metrics for Prometheus),
// the timer that ticks the core, and the LevelDB file that keeps the core's snapshot across
// restarts. It logs (JSON on stderr) its start and every member's status change.
//
// Effects run in etcd raft's order: persist, then send, then reply. Events are handled
// one at a time on the event loop; a reply that follows a state change waits until that
// state is on disk, so no node ever holds a lease (or sees a generation) that a master
// restart could forget.
import http from 'node:http';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { Level } from 'level';
import { initHash } from '../../ring/index.js';
import { systemClock, type Clock } from '../clock.js';
import { RpcClient, RpcPeers, RpcServer, splitAddr } from '../protocol/rpc/index.js';
import { listen } from '../util/listen.js';
import { MasterCore, MasterError, type Effect, type MasterSettings, type MasterSnapshot, type MemberInfo, type WireTransfer } from './core.js';
import { transferProblem } from './wire-check.js';
import { createLogger, errText, type LogLevel, type Logger } from '../log.js';
import { MasterMetrics } from '../metrics.js';

export interface MasterConfig extends MasterSettings {
  host: string;
  /** Internal RPC port (nodes and clients). */
  port: number;
  httpPort: number;
  data: string;
  /** How often the core is ticked (membership expiry, recall timeouts). */
  tickMs: number;
  /** Deadline of a recall sent to a node. */
  recallTimeoutMs: number;
  /** Copies of every key, and the read and write quorums (Dynamo's N, R, W). */
  n: number;
  r: number;
  w: number;
  /** Structured logs on stderr at this level and above (default info). */
  logLevel?: LogLevel;
}

export const masterDefaults: Omit<MasterConfig, 'data'> = {
  host: '127.0.0.1',
  port: 7000,
  httpPort: 7080,
  leaseMs: 60_000,
  renewMs: 15_000,
  driftMs: 1_000,
  vnodes: 64,
  maxLogEntries: 10_000,
  recallResendMs: 2_000,
  tickMs: 250,
  recallTimeoutMs: 5_000,
  n: 3,
  r: 2,
  w: 2,
};

export interface RunningMaster {
  readonly port: number;
  readonly httpPort: number;
  readonly core: MasterCore;
  /** What GET /metrics shows. */
  readonly metrics: MasterMetrics;
  close(): Promise<void>;
}

const SNAPSHOT_KEY = 'snapshot';

export async function startMaster(cfg: MasterConfig, clock: Clock = systemClock, log: Logger = createLogger({ level: cfg.logLevel ?? 'info', bindings: { component: 'master' } })): Promise<RunningMaster> {
  await initHash();
  const dir = path.join(cfg.data, 'master');
  mkdirSync(dir, { recursive: true });
  const db = new Level<string, string>(dir, { valueEncoding: 'utf8' });
  await db.open();
  const saved = await db.get(SNAPSHOT_KEY);
  const core = new MasterCore(cfg, saved ? (JSON.parse(saved) as MasterSnapshot) : undefined, clock.now());
  const metrics = new MasterMetrics(() => core.gauges(clock.now()));
  /** Members' statuses as last logged: each change is one info line. */
  let statuses = core.statuses();
  const logStatusChanges = () => {
    const now = core.statuses();
    for (const [id, status] of now) {
      const was = statuses.get(id);
      if (was !== status) log.info({ member: id, from: was ?? null, to: status }, was === undefined ? 'member registered' : 'member status changed');
    }
    statuses = now;
  };

  /** Snapshots are written in order; each reply waits for the write of its own change. */
  let persisted: Promise<void> = Promise.resolve();
  const persist = (): Promise<void> => {
    const snapshot = JSON.stringify(core.snapshot());
    persisted = persisted.then(() => db.put(SNAPSHOT_KEY, snapshot));
    return persisted;
  };

  /** The last progress each moving node reported (joining: copied in; leaving: handed out). */
  const transfers = new Map<string, WireTransfer & { atMs: number }>();
  /**
   * Each member's last finished move: the final report (done) it sent once the move was
   * over. Kept until the member moves again (or is no longer a member); not persisted.
   */
  const lastTransfers = new Map<string, WireTransfer & { atMs: number }>();
  const isMoving = (status: string | undefined): boolean => status === 'joining' || status === 'leaving';
  /** `id` has stopped moving (joined, left): a final report already in keeps as its last move. */
  const moveOver = (id: string): void => {
    const t = transfers.get(id);
    transfers.delete(id);
    if (t?.done === true) lastTransfers.set(id, t);
  };
  /** `id` moves again: its last finished move is history. */
  const moveStarted = (id: string): void => {
    if (isMoving(core.member(id)?.status)) lastTransfers.delete(id);
  };

  const peers = new RpcPeers();
  const peer = (addr: string): RpcClient => peers.get(addr);

  /** Carry out effects in order: persist first, then the recalls (which answer later as events). */
  const run = async (effects: Effect[]): Promise<void> => {
    if (effects.some((e) => e.type === 'persist')) {
      logStatusChanges();
      await persist();
    }
    for (const e of effects) {
      if (e.type !== 'recall') continue;
      metrics.recallSent();
      log.debug({ member: e.nodeId, leases: e.leases.length }, 'recall sent');
      peer(e.rpc)
        .call<{ ends: string[] }>('revoke', { leases: e.leases }, { timeoutMs: cfg.recallTimeoutMs })
        .then(
          (ack) => {
            const given = new Set(ack.ends);
            return run(core.recalled(e.nodeId, e.leases.filter((l) => given.has(l.end)), clock.now()));
          },
          // Unanswered: the core re-sends, and the lease lapses on its own if need be.
          () => {},
        )
        .catch((err: unknown) => log.error({ member: e.nodeId, err: errText(err) }, 'recall acknowledgement failed'));
    }
  };

  const rpc = new RpcServer({ host: cfg.host, port: cfg.port, onSettled: (type, ok, error) => metrics.rpcDone(type, ok, error) });
  rpc.handle('register', async (body: unknown) => {
    const r = core.register(parseMember(body), clock.now(), { join: (body as { join?: unknown }).join === true });
    await run(r.effects);
    return r.grant;
  });
  rpc.handle('renew', async (body: unknown) => {
    const r = core.renew(String((body as { id?: unknown }).id), clock.now());
    await run(r.effects);
    await persisted;
    return r.grant;
  });
  rpc.handle('changes', async (body: unknown) => {
    const lsn = Number((body as { lsn?: unknown }).lsn ?? 0);
    await persisted;
    return { ...core.changesSince(Number.isSafeInteger(lsn) ? lsn : 0), replication: { n: cfg.n, r: cfg.r, w: cfg.w, vnodes: cfg.vnodes } };
  });
  rpc.handle('view', async () => {
    await persisted;
    return view();
  });
  rpc.handle('table', async () => {
    await persisted;
    return core.table();
  });
  // Membership changes. `joined` and `left` come from the moving node itself, once its
  // data is where it must be; `leave` from an operator (ringkv cluster remove, or HTTP).
  const idOf = (body: unknown): string => String((body as { id?: unknown } | null)?.id ?? '');
  rpc.handle('joined', async (body: unknown) => {
    moveOver(idOf(body));
    await run(core.joined(idOf(body), clock.now()));
    return { status: core.member(idOf(body))?.status };
  });
  rpc.handle('leave', async (body: unknown) => {
    await run(core.leave(idOf(body), clock.now(), cfg.n));
    moveStarted(idOf(body));
    return { status: core.member(idOf(body))?.status };
  });
  rpc.handle('left', async (body: unknown) => {
    moveOver(idOf(body));
    await run(core.left(idOf(body), clock.now()));
    return { status: core.member(idOf(body))?.status };
  });
  // A moving node's progress (not persisted: it is reported again every few hundred ms),
  // and its final report (done) once the move is over, kept as its last move.
  rpc.handle('progress', async (body: unknown) => {
    const b = (body ?? {}) as { id?: unknown; transfer?: unknown };
    if (typeof b.id !== 'string' || !core.member(b.id) || typeof b.transfer !== 'object' || b.transfer === null) {
      throw new MasterError('BAD_MEMBER', 'progress needs a known member id and a transfer object');
    }
    const problem = transferProblem(b.transfer);
    if (problem !== undefined) throw new MasterError('BAD_MEMBER', `bad transfer from ${b.id}: ${problem}`);
    const transfer = { ...(b.transfer as WireTransfer), atMs: clock.now() };
    if (isMoving(core.member(b.id)?.status)) {
      transfers.set(b.id, transfer);
      lastTransfers.delete(b.id);
    } else if (transfer.done === true) {
      // The final report of a move that is over (it may come after joined/left).
      lastTransfers.set(b.id, transfer);
    }
    // Any other report from a member that is not moving is late: dropped.
    return {};
  });

  /**
   * The core's view, with each moving member's current move as `transfer` and each other
   * member's last finished move as `lastTransfer`.
   */
  const view = () => {
    const v = core.view(clock.now());
    for (const id of lastTransfers.keys()) if (!core.member(id)) lastTransfers.delete(id);
    return {
      ...v,
      members: v.members.map((m) => {
        const moving = isMoving(m.status);
        const transfer = moving ? transfers.get(m.id) : undefined;
        const lastTransfer = moving ? undefined : lastTransfers.get(m.id);
        return transfer === undefined && lastTransfer === undefined ? m : { ...m, ...(transfer ? { transfer } : {}), ...(lastTransfer ? { lastTransfer } : {}) };
      }),
    };
  };
  const sendJson = (res: http.ServerResponse, status: number, body: unknown) => {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  };
  const server = http.createServer((req, res) => {
    const url = req.url ?? '/';
    if (req.method === 'GET' && (url === '/cluster' || url.startsWith('/cluster?'))) {
      sendJson(res, 200, view());
      return;
    }
    // The admin API: POST /cluster/members/<id>/leave decommissions a node.
    const leave = /^\/cluster\/members\/([^/?]+)\/leave$/.exec(url);
    if (leave && req.method === 'POST') {
      const id = decodeURIComponent(leave[1]!);
      req.resume();
      run(core.leave(id, clock.now(), cfg.n))
        .then(() => moveStarted(id))
        .then(() => sendJson(res, 202, { id, status: core.member(id)?.status }))
        .catch((e: unknown) => {
          const code = (e as { code?: unknown }).code;
          sendJson(res, code === 'UNKNOWN_NODE' ? 404 : code === 'BAD_MEMBER' ? 409 : 500, { error: String(code ?? 'internal').toLowerCase(), message: e instanceof Error ? e.message : String(e) });
        });
      return;
    }
    if (req.method === 'GET' && (url === '/metrics' || url.startsWith('/metrics?'))) {
      metrics.render().then(
        (text) => {
          res.writeHead(200, { 'content-type': metrics.contentType, 'content-length': Buffer.byteLength(text) });
          res.end(text);
        },
        (e: unknown) => sendJson(res, 500, { error: 'internal', message: errText(e) }),
      );
      return;
    }
    if (req.method === 'GET' && url === '/healthz') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"status":"ok"}');
      return;
    }
    const body = JSON.stringify({ error: 'not_found', message: `no route for ${req.method} ${url}` });
    res.writeHead(404, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });

  let port: number;
  let httpPort: number;
  try {
    port = await rpc.listen();
    httpPort = await listen(server, cfg.httpPort, cfg.host);
  } catch (e) {
    await rpc.close(0).catch(() => {});
    await db.close();
    throw e;
  }

  let ticking = false;
  const timer = setInterval(() => {
    if (ticking) return;
    ticking = true;
    run(core.tick(clock.now()))
      .catch((err: unknown) => log.error({ err: errText(err) }, 'tick failed'))
      .finally(() => {
        ticking = false;
      });
  }, cfg.tickMs);

  const v = core.gauges(clock.now());
  log.info({ rpc: `${cfg.host}:${port}`, http: `${cfg.host}:${httpPort}`, data: cfg.data, lsn: v.lsn, members: statuses.size, n: cfg.n, r: cfg.r, w: cfg.w, leaseMs: cfg.leaseMs }, 'master started');

  return {
    port,
    httpPort,
    core,
    metrics,
    async close() {
      log.info('master stopping');
      clearInterval(timer);
      await Promise.all([rpc.close(1000), new Promise<void>((r) => server.close(() => r()))]);
      server.closeAllConnections();
      await peers.close();
      await persisted.catch(() => {});
      await db.close();
    },
  };
}

export { splitAddr };


function parseMember(body: unknown): MemberInfo {
  const b = body as { id?: unknown; zone?: unknown; addrs?: Record<string, unknown> };
  const addrs = b.addrs ?? {};
  const str = (v: unknown) => (typeof v === 'string' ? v : '');
  const info: MemberInfo = {
    id: str(b.id),
    addrs: { memcached: str(addrs.memcached), http: str(addrs.http), rpc: str(addrs.rpc) },
    ...(typeof b.zone === 'string' && b.zone.length > 0 ? { zone: b.zone } : {}),
  };
  try {
    for (const a of Object.values(info.addrs)) splitAddr(a);
  } catch (e) {
    throw new MasterError('BAD_MEMBER', e instanceof Error ? e.message : String(e));
  }
  return info;
}
