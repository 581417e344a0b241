// Watching a test cluster through its master's GET /cluster: the view, bounded polling
// until a condition holds, and which piece of the table covers a ring position; and each
// node through its own HTTP port: what it holds for a key (GET /debug/local), its /stats.
import { existsSync } from 'node:fs';
import type http from 'node:http';
import { request } from './http.js';
import { startMaster, startRingkv, type RunningServer } from '../../bench/lib/servers.js';
import type { WireTransfer } from '../../server/master/core.js';

export interface ClusterView {
  lsn: number;
  members: Array<{
    id: string;
    status: string;
    pieces: number;
    addrs: { memcached: string; http: string; rpc: string };
    /** A joining or leaving member's move, as it last reported it. */
    transfer?: WireTransfer;
    /** The last move it finished (after a join or a leave). */
    lastTransfer?: WireTransfer;
  }>;
  leases: Array<{ start: string; end: string; owner: string; generation: number; expiresInMs: number; movingTo?: string }>;
}

export async function view(master: RunningServer): Promise<ClusterView> {
  const r = await request(master.httpPort!, 'GET', '/cluster');
  if (r.status !== 200) throw new Error(`GET /cluster answered ${r.status}: ${r.body.toString('utf8')}`);
  return JSON.parse(r.body.toString('utf8')) as ClusterView;
}

/** Polls until `ok` holds (bounded), returning the last view. */
export async function until(master: RunningServer, ok: (v: ClusterView) => boolean, timeoutMs = 15_000): Promise<ClusterView> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await view(master);
    if (ok(v)) return v;
    if (Date.now() > deadline) throw new Error(`cluster did not settle within ${timeoutMs} ms: ${JSON.stringify(v).slice(0, 2000)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Every piece held by one of `ids`, none moving, every lease renewed. */
export const settled = (ids: string[]) => (v: ClusterView) =>
  // Every id up (a joining node holds nothing yet, so the leases alone would look settled).
  ids.every((id) => v.members.some((m) => m.id === id && m.status === 'up')) &&
  v.leases.length > 0 &&
  v.leases.every((l) => ids.includes(l.owner) && l.movingTo === undefined && l.expiresInMs > 0);

/** The piece `(start, end]` containing `pos` (the wrapping piece and the whole ring included). */
export function pieceOf(v: ClusterView, pos: bigint): ClusterView['leases'][number] {
  for (const l of v.leases) {
    const s = BigInt(`0x${l.start}`);
    const e = BigInt(`0x${l.end}`);
    if (s < e ? pos > s && pos <= e : pos > s || pos <= e) return l;
  }
  throw new Error(`no piece covers ${pos}`);
}

export interface TestClusterOptions {
  ids: string[];
  leaseMs: number;
  renewMs: number;
  vnodes: number;
  driftMs?: number;
  /** Master's --n/--r/--w (default: the master's, 3/2/2). */
  replication?: { n: number; r: number; w: number };
  /** Extra flags for every node. */
  nodeArgs?: string[];
  storage?: 'memory' | 'level';
}

/**
 * A master and one memory-storage node per id, with short lease timings, waited for until
 * every range is held. `track` records each process so the caller's afterAll stops them.
 */
export async function startTestCluster(
  o: TestClusterOptions,
  track: (s: RunningServer) => RunningServer,
): Promise<{ master: RunningServer; nodes: RunningServer[] }> {
  const rep = o.replication ? ['--n', String(o.replication.n), '--r', String(o.replication.r), '--w', String(o.replication.w)] : [];
  const master = track(await startMaster({ args: ['--lease-ms', String(o.leaseMs), '--vnodes', String(o.vnodes), ...rep] }));
  const nodes: RunningServer[] = [];
  for (const id of o.ids) nodes.push(track(await startTestNode(master, id, o)));
  await until(master, settled(o.ids));
  return { master, nodes };
}

/** One memory-storage node joining `master` with the test timings. */
export function startTestNode(
  master: RunningServer,
  id: string,
  o: Pick<TestClusterOptions, 'renewMs' | 'driftMs' | 'nodeArgs' | 'storage'> & { dataDir?: string },
): Promise<RunningServer> {
  const ports = ['--rpc-port', '0'];
  return startRingkv({
    storage: o.storage ?? 'memory',
    ...(o.dataDir ? { dataDir: o.dataDir } : {}),
    args: ['--master', `127.0.0.1:${master.port}`, '--id', id, ...ports, '--renew-ms', String(o.renewMs), '--drift-ms', String(o.driftMs ?? 100), ...(o.nodeArgs ?? [])],
  });
}

/** What GET /debug/local/:key shows of one version (the record itself, or one of its siblings). */
export interface DebugVersion {
  value: string;
  encoding: 'utf8' | 'base64';
  flags: number;
  expiresAtMs: number;
  version: { clock: Record<string, number>; ts: { wallMs: number; logical: number }; cas: string };
  tombstone: boolean;
}

/** A node's own record of a key as GET /debug/local/:key shows it (hintFor: a hint it keeps for that node). */
export interface DebugLocal extends DebugVersion {
  key: string;
  hintFor: string | null;
  siblings: DebugVersion[];
}

/**
 * What the node on `httpPort` itself holds for `key` (undefined on 404). Pass a keep-alive
 * `agent` when asking about thousands of keys, so each is not a new connection.
 */
export async function debugLocal(httpPort: number, key: string, agent?: http.Agent): Promise<DebugLocal | undefined> {
  const r = await request(httpPort, 'GET', `/debug/local/${encodeURIComponent(Buffer.from(key, 'latin1').toString('utf8'))}`, agent ? { agent } : {});
  if (r.status === 404) return undefined;
  if (r.status !== 200) throw new Error(`GET /debug/local/${key} answered ${r.status}: ${r.body.toString('utf8')}`);
  return JSON.parse(r.body.toString('utf8')) as DebugLocal;
}

/** A node's GET /stats. */
export async function nodeStats(httpPort: number): Promise<Record<string, string | number>> {
  const r = await request(httpPort, 'GET', '/stats');
  if (r.status !== 200) throw new Error(`GET /stats answered ${r.status}: ${r.body.toString('utf8')}`);
  return JSON.parse(r.body.toString('utf8')) as Record<string, string | number>;
}

/** Node flags of the fault tests: --debug-faults and short replication timings. */
export const debugFaultNodeArgs: readonly string[] = [
  '--debug-faults',
  '--heartbeat-ms', '100',
  '--replica-timeout-ms', '300',
  '--anti-entropy-ms', '500',
  '--forward-timeout-ms', '1000',
  '--unavailable-ms', '5000',
];

/** Makes `node` (started with --debug-faults) treat the nodes `unreachable` as cut off ([] heals). */
export async function setPartition(node: RunningServer, unreachable: string[]): Promise<void> {
  const r = await request(node.httpPort!, 'PUT', '/debug/partition', {
    body: Buffer.from(JSON.stringify({ unreachable })),
    headers: { 'content-type': 'application/json' },
  });
  if (r.status !== 204) throw new Error(`PUT /debug/partition answered ${r.status}: ${r.body.toString()}`);
}

/** A counter of a node's /stats as a number. */
export async function stat(node: RunningServer, name: string): Promise<number> {
  const v = (await nodeStats(node.httpPort!))[name];
  if (typeof v !== 'number') throw new Error(`stat ${name} of ${node.httpPort} is ${JSON.stringify(v)}`);
  return v;
}

/** `d` is a live copy of `value` (every sibling too), held as the node's own record. */
export function holds(d: DebugLocal | undefined, value: string): boolean {
  return d !== undefined && d.hintFor === null && !d.tombstone && d.encoding === 'utf8' && d.value === value && d.siblings.every((s) => !s.tombstone && s.value === value);
}

/**
 * Stops every process in `started` by its handle (nodes first, newest first, so that a
 * restarted node's first handle, which owns the data dir, goes last; then the master),
 * empties it, and throws if a data dir was left behind.
 */
export async function stopStarted(started: RunningServer[]): Promise<void> {
  for (const s of started.filter((s) => s.name === 'ringkv').reverse()) await s.stop();
  for (const s of started.filter((s) => s.name !== 'ringkv')) await s.stop();
  const dirs = started.map((s) => s.dataDir).filter((d): d is string => d !== undefined);
  started.length = 0;
  const left = dirs.filter((d) => existsSync(d));
  if (left.length > 0) throw new Error(`data dirs left behind: ${left.join(', ')}`);
}
