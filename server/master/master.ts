// The lease master process: the shell around MasterCore. It owns the sockets (internal
// RPC for nodes and clients, HTTP for people: GET /cluster, GET /role, GET /metrics for
// Prometheus), the timer that ticks the core, and the store that keeps the core's snapshot
// and change log across restarts (state-store.ts: LevelDB, or etcd). It logs (JSON on
// stderr) its start, its leadership and every member's status change.
//
// With `--store etcd` several masters run; one leads (election.ts) and the others stand by,
// answering NOT_LEADER with the leader's address. A master that wins loads the state from
// etcd and carries on: the granted leases and their generations stay, and since nobody
// knows when each lease was last renewed, every one counts as renewed at the takeover (as
// after a restart), so no piece moves before a lease granted by the old leader has run out.
// Every write is fenced by the leader's election key, and so is every reply: a reply that
// grants or shows state goes out only after a check, begun after the request arrived, that
// this master still leads (checks are shared by the requests that wait at once). A node
// counts its lease from when it asked, so a grant delayed past a deposition never extends
// a lease beyond what the new leader assumes.
//
// Effects run in etcd raft's order: persist, then send, then reply. Events are handled
// one at a time on the event loop; a reply that follows a state change waits until that
// state is on disk, so no node ever holds a lease (or sees a generation) that a master
// restart could forget.
import http from 'node:http';
import { Etcd3 } from 'etcd3';
import { initHash } from '../../ring/index.js';
import { systemClock, type Clock } from '../clock.js';
import { RpcClient, RpcPeers, RpcServer, splitAddr } from '../protocol/rpc/index.js';
import { listen } from '../util/listen.js';
import { MasterCore, MasterError, type Effect, type MasterSettings, type MemberInfo, type WireTransfer } from './core.js';
import { MasterElection } from './election.js';
import { NOT_LEADER, NotLeaderError, type MasterRole } from './leadership.js';
import { EtcdStateStore, LevelStateStore, type MasterStateStore } from './state-store.js';
import { transferProblem } from './wire-check.js';
import { createLogger, errText, type LogLevel, type Logger } from '../log.js';
import { MasterMetrics, type MasterGauges } from '../metrics.js';

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
  /** Where the state lives: LevelDB under `data` (one master), or etcd (several, one leads). */
  store?: 'level' | 'etcd';
  /** etcd endpoints, host:port (with store etcd). */
  etcd?: readonly string[];
  /** Key prefix in etcd: masters with the same endpoints and prefix form one group. */
  etcdPrefix?: string;
  /** The etcd lease of the leader's election key: a leader that stops renewing is replaced this long after. */
  masterTtlMs?: number;
  /** The RPC address the other masters name as leader (default host:port; set it when --host is 0.0.0.0). */
  advertise?: string;
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
  /** The core while this master leads (always, with the level store); undefined while it stands by. */
  readonly core: MasterCore | undefined;
  role(): MasterRole;
  /** What GET /metrics shows. */
  readonly metrics: MasterMetrics;
  close(): Promise<void>;
}

const NO_GAUGES: MasterGauges = {
  members: { up: 0, down: 0, joining: 0, leaving: 0, left: 0 },
  ranges: 0,
  leases: { held: 0, recalling: 0, unheld: 0 },
  lsn: 0,
  changeLogEntries: 0,
  generations: 0,
};

export async function startMaster(cfg: MasterConfig, clock: Clock = systemClock, log: Logger = createLogger({ level: cfg.logLevel ?? 'info', bindings: { component: 'master' } })): Promise<RunningMaster> {
  await initHash();
  const storeKind = cfg.store ?? 'level';
  // Unary calls (writes, checks) get a deadline well inside the TTL: a call stuck on a dead
  // etcd member is retried on another instead of holding every reply for seconds.
  const callMs = Math.max(500, Math.min(2000, Math.floor((cfg.masterTtlMs ?? 5000) / 2)));
  const etcd =
    storeKind === 'etcd'
      ? new Etcd3({
          hosts: (cfg.etcd ?? []).map((h) => `http://${h}`),
          dialTimeout: 2000,
          defaultCallOptions: (context) => (context.isStream ? {} : { deadline: Date.now() + callMs }),
        })
      : undefined;
  const etcdStore = etcd ? new EtcdStateStore(etcd, cfg.etcdPrefix ?? '/ringkv') : undefined;
  const store: MasterStateStore = etcdStore ?? new LevelStateStore(cfg.data);
  let election: MasterElection | undefined;
  /** The core while this master leads. */
  let core: MasterCore | undefined;
  let terms = 0;
  let self = '';
  /** The core, or NOT_LEADER naming the leader when known. */
  const lead = (): MasterCore => {
    if (!core) throw new NotLeaderError(election?.leader());
    return core;
  };
  const metrics = new MasterMetrics(() => (core ? core.gauges(clock.now()) : NO_GAUGES));
  /** Members' statuses as last logged: each change is one info line. */
  let statuses = new Map<string, string>();
  const logStatusChanges = () => {
    if (!core) return;
    const now = core.statuses();
    for (const [id, status] of now) {
      const was = statuses.get(id);
      if (was !== status) log.info({ member: id, from: was ?? null, to: status }, was === undefined ? 'member registered' : 'member status changed');
    }
    statuses = now;
  };

  /** Saves go in order; each reply waits for the save of its own change. */
  let persisted: Promise<void> = Promise.resolve();
  /** The LSN the queued saves reach: the next save adds the log entries after it. */
  let queuedLsn = 0;
  const persist = (): Promise<void> => {
    const c = lead();
    const snapshot = c.snapshot();
    const added = c.logAfter(queuedLsn);
    const keepFrom = c.oldestLogLsn();
    queuedLsn = snapshot.lsn;
    persisted = persisted.then(() => store.save(snapshot, added, keepFrom));
    persisted.catch((e: unknown) => {
      if ((e as { code?: unknown }).code === NOT_LEADER && core === c) election?.stepDown(`a fenced write failed: ${errText(e)}`);
    });
    return persisted;
  };

  /**
   * Resolves once a leadership check sent after this call began has passed (with etcd;
   * with one master at once). Waiting requests share one check.
   */
  let checking: Promise<void> | undefined;
  let nextCheck: Promise<void> | undefined;
  const stillLeading = (): Promise<void> => {
    if (!etcdStore) return Promise.resolve();
    if (!checking) {
      const c = core;
      checking = etcdStore
        .confirm()
        .catch((e: unknown) => {
          if ((e as { code?: unknown }).code === NOT_LEADER && core === c && c !== undefined) election?.stepDown(`the leadership check failed: ${errText(e)}`);
          throw e;
        })
        .finally(() => {
          checking = undefined;
        });
      return checking;
    }
    nextCheck ??= checking
      .catch(() => {})
      .then(() => {
        nextCheck = undefined;
        return stillLeading();
      });
    return nextCheck;
  };

  /** Leading: the state as saved, every lease counted as renewed now. */
  const takeOver = async (): Promise<void> => {
    const saved = await store.load();
    const c = new MasterCore(cfg, saved.snapshot, clock.now(), saved.log);
    queuedLsn = saved.snapshot?.lsn ?? 0;
    persisted = Promise.resolve();
    transfers.clear();
    lastTransfers.clear();
    statuses = c.statuses();
    core = c;
    terms++;
    const g = c.gauges(clock.now());
    log.info({ self, store: storeKind, term: terms, lsn: g.lsn, members: statuses.size, generations: g.generations }, 'leading');
  };
  const standBy = (reason: string): void => {
    if (core) log.warn({ self, reason }, 'no longer leading: standing by');
    core = undefined;
    etcdStore?.setFence(undefined);
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
    if (isMoving(core?.member(id)?.status)) lastTransfers.delete(id);
  };

  const peers = new RpcPeers();
  const peer = (addr: string): RpcClient => peers.get(addr);

  /** Carry out effects in order: persist first, then the recalls (which answer later as events). */
  const run = async (effects: Effect[]): Promise<void> => {
    const c = lead();
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
            // A recall answered after this master stopped leading: the new leader sends its own.
            if (core !== c) return;
            return run(c.recalled(e.nodeId, e.leases.filter((l) => given.has(l.end)), clock.now()));
          },
          // Unanswered: the core re-sends, and the lease lapses on its own if need be.
          () => {},
        )
        .catch((err: unknown) => log.error({ member: e.nodeId, err: errText(err) }, 'recall acknowledgement failed'));
    }
  };

  const rpc = new RpcServer({ host: cfg.host, port: cfg.port, onSettled: (type, ok, error) => metrics.rpcDone(type, ok, error) });
  // Every request but `role` needs the leader, and every reply waits for a leadership
  // check begun after the request arrived (with etcd: see the top of this file).
  const handle = (type: string, fn: (c: MasterCore, body: unknown) => Promise<unknown>) =>
    rpc.handle(type, async (body: unknown) => {
      let reply: unknown;
      try {
        reply = await fn(lead(), body);
      } catch (e) {
        // A refusal tells of state too (UNKNOWN_NODE from a core a new leader replaced):
        // it also goes out only from a master that still leads.
        if ((e as { code?: unknown }).code !== NOT_LEADER) await stillLeading();
        throw e;
      }
      await stillLeading();
      return reply;
    });
  rpc.handle('role', async () => role());
  handle('register', async (c, body) => {
    const r = c.register(parseMember(body), clock.now(), { join: (body as { join?: unknown }).join === true });
    await run(r.effects);
    return r.grant;
  });
  handle('renew', async (c, body) => {
    const r = c.renew(String((body as { id?: unknown }).id), clock.now());
    await run(r.effects);
    await persisted;
    return r.grant;
  });
  handle('changes', async (c, body) => {
    const lsn = Number((body as { lsn?: unknown }).lsn ?? 0);
    await persisted;
    return { ...c.changesSince(Number.isSafeInteger(lsn) ? lsn : 0), replication: { n: cfg.n, r: cfg.r, w: cfg.w, vnodes: cfg.vnodes } };
  });
  handle('view', async (c) => {
    await persisted;
    return view(c);
  });
  handle('table', async (c) => {
    await persisted;
    return c.table();
  });
  // Membership changes. `joined` and `left` come from the moving node itself, once its
  // data is where it must be; `leave` from an operator (ringkv cluster remove, or HTTP).
  const idOf = (body: unknown): string => String((body as { id?: unknown } | null)?.id ?? '');
  handle('joined', async (c, body) => {
    moveOver(idOf(body));
    await run(c.joined(idOf(body), clock.now()));
    return { status: c.member(idOf(body))?.status };
  });
  handle('leave', async (c, body) => {
    await run(c.leave(idOf(body), clock.now(), cfg.n));
    moveStarted(idOf(body));
    return { status: c.member(idOf(body))?.status };
  });
  handle('left', async (c, body) => {
    moveOver(idOf(body));
    await run(c.left(idOf(body), clock.now()));
    return { status: c.member(idOf(body))?.status };
  });
  // A moving node's progress (not persisted: it is reported again every few hundred ms),
  // and its final report (done) once the move is over, kept as its last move.
  handle('progress', async (c, body) => {
    const b = (body ?? {}) as { id?: unknown; transfer?: unknown };
    if (typeof b.id !== 'string' || !c.member(b.id) || typeof b.transfer !== 'object' || b.transfer === null) {
      throw new MasterError('BAD_MEMBER', 'progress needs a known member id and a transfer object');
    }
    const problem = transferProblem(b.transfer);
    if (problem !== undefined) throw new MasterError('BAD_MEMBER', `bad transfer from ${b.id}: ${problem}`);
    const transfer = { ...(b.transfer as WireTransfer), atMs: clock.now() };
    if (isMoving(c.member(b.id)?.status)) {
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
  const view = (c: MasterCore) => {
    const v = c.view(clock.now());
    for (const id of lastTransfers.keys()) if (!c.member(id)) lastTransfers.delete(id);
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
  /** A standby's HTTP answer: 503, and where the leader is when known. */
  const sendNotLeader = (res: http.ServerResponse) => {
    const leader = election?.leader();
    sendJson(res, 503, { error: 'not_leader', message: new NotLeaderError(leader).message, ...(leader ? { leader } : {}) });
  };
  const server = http.createServer((req, res) => {
    const url = req.url ?? '/';
    if (req.method === 'GET' && (url === '/cluster' || url.startsWith('/cluster?'))) {
      if (core) sendJson(res, 200, view(core));
      else sendNotLeader(res);
      return;
    }
    if (req.method === 'GET' && url === '/role') {
      sendJson(res, 200, role());
      return;
    }
    // The admin API: POST /cluster/members/<id>/leave decommissions a node.
    const leave = /^\/cluster\/members\/([^/?]+)\/leave$/.exec(url);
    if (leave && req.method === 'POST') {
      const id = decodeURIComponent(leave[1]!);
      req.resume();
      if (!core) {
        sendNotLeader(res);
        return;
      }
      const c = core;
      run(c.leave(id, clock.now(), cfg.n))
        .then(() => moveStarted(id))
        .then(() => stillLeading())
        .then(() => sendJson(res, 202, { id, status: c.member(id)?.status }))
        .catch((e: unknown) => {
          const code = (e as { code?: unknown }).code;
          if (code === NOT_LEADER) return sendNotLeader(res);
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

  const role = (): MasterRole => {
    const leader = core ? self : election?.leader();
    return { role: core ? 'leader' : 'standby', self, ...(leader ? { leader } : {}), store: storeKind, terms };
  };

  let port: number;
  let httpPort: number;
  try {
    // One master on LevelDB leads from the start; on etcd, every master starts as a standby.
    if (!etcd) await takeOver();
    port = await rpc.listen();
    httpPort = await listen(server, cfg.httpPort, cfg.host);
    self = cfg.advertise ?? `${cfg.host}:${port}`;
    if (etcd && etcdStore) {
      election = new MasterElection(
        etcd,
        `${cfg.etcdPrefix ?? '/ringkv'}/master`,
        cfg.masterTtlMs ?? 5000,
        self,
        {
          elected: async (fence) => {
            etcdStore.setFence(fence);
            await takeOver();
          },
          deposed: (reason) => standBy(reason),
        },
        log,
      );
      election.start();
    }
  } catch (e) {
    await election?.close().catch(() => {});
    await rpc.close(0).catch(() => {});
    await store.close().catch(() => {});
    etcd?.close();
    throw e;
  }

  let ticking = false;
  const timer = setInterval(() => {
    if (ticking || !core) return;
    ticking = true;
    run(core.tick(clock.now()))
      .catch((err: unknown) => {
        if ((err as { code?: unknown }).code !== NOT_LEADER) log.error({ err: errText(err) }, 'tick failed');
      })
      .finally(() => {
        ticking = false;
      });
  }, cfg.tickMs);

  const v = core?.gauges(clock.now());
  log.info(
    { rpc: self, http: `${cfg.host}:${httpPort}`, store: storeKind, ...(etcd ? { etcd: cfg.etcd } : { data: cfg.data }), lsn: v?.lsn, members: statuses.size, n: cfg.n, r: cfg.r, w: cfg.w, leaseMs: cfg.leaseMs },
    'master started',
  );

  return {
    port,
    httpPort,
    get core() {
      return core;
    },
    role,
    metrics,
    async close() {
      log.info('master stopping');
      clearInterval(timer);
      await election?.close();
      await Promise.all([rpc.close(1000), new Promise<void>((r) => server.close(() => r()))]);
      server.closeAllConnections();
      await peers.close();
      await persisted.catch(() => {});
      await store.close();
      etcd?.close();
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
