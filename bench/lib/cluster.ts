// A benchmark's cluster: a lease master and memory nodes that join it one by one, started
// only once the master shows the ring settled on them and every node answers a set. Every
// wait is bounded; every process started is handed to the caller's `track` as soon as it
// runs, so the caller stops it (by PID) whatever happens next.
import net from 'node:net';
import { getClusterView, settledOn, type ClusterView } from './master-http.js';
import { startMaster, startRingkv, type RunningServer } from './servers.js';

/** Bounds of the start-up waits (every loop below ends by one of these). */
export interface ClusterLimits {
  settleMsMax: number;
  pollMs: number;
  httpTimeoutMs: number;
  probeMsMax: number;
  probeTimeoutMs: number;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** The master's arguments: replication and lease length. */
export function masterArgs(replication: { n: number; r: number; w: number }, leaseMs: number): string[] {
  const { n, r, w } = replication;
  return ['--n', String(n), '--r', String(r), '--w', String(w), '--lease-ms', String(leaseMs)];
}

/** A node's arguments to join `master` as `id` (an ephemeral RPC port), then `extra`. */
export function clusterNodeArgs(master: RunningServer, id: string, extra: readonly string[] = []): string[] {
  return ['--master', `127.0.0.1:${master.port}`, '--id', id, '--rpc-port', '0', ...extra];
}

/** Polls the master until the ring has settled on exactly `ids` (bounded by `limits.settleMsMax`). */
export async function waitSettled(master: RunningServer, ids: readonly string[], limits: ClusterLimits, what = 'cluster'): Promise<ClusterView> {
  const deadline = Date.now() + limits.settleMsMax;
  let last: ClusterView | undefined;
  let lastError = '';
  for (;;) {
    try {
      last = await getClusterView(master.host, master.httpPort!, limits.httpTimeoutMs);
      if (settledOn(ids, last)) return last;
    } catch (e) {
      lastError = (e as Error).message;
    }
    if (Date.now() > deadline) {
      throw new Error(`${what} did not settle within ${limits.settleMsMax} ms: ${last ? JSON.stringify(last).slice(0, 1500) : lastError}`);
    }
    await sleep(limits.pollMs);
  }
}

/** One memcached `set` on a fresh connection: the reply line, or why there was none. */
export function probeSet(server: RunningServer, key: string, timeoutMs: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect(server.port, server.host);
    let rx = '';
    const done = (line: string) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(line);
    };
    const timer = setTimeout(() => done(`no reply within ${timeoutMs} ms`), timeoutMs);
    socket.once('connect', () => socket.write(`set ${key} 0 0 1\r\nx\r\n`));
    socket.on('data', (d: Buffer) => {
      rx += d.toString('latin1');
      const nl = rx.indexOf('\r\n');
      if (nl >= 0) done(rx.slice(0, nl));
    });
    socket.once('error', (e) => done(`error: ${e.message}`));
    socket.once('close', () => done(`closed: ${JSON.stringify(rx)}`));
  });
}

/**
 * Waits until every node stores a key through its memcached port (bounded): the master
 * having settled does not mean each node has its table yet, and a preload must not
 * measure a node still joining.
 */
export async function waitServing(nodes: readonly RunningServer[], limits: ClusterLimits): Promise<void> {
  const deadline = Date.now() + limits.probeMsMax;
  for (const [i, node] of nodes.entries()) {
    for (let attempt = 0; ; attempt++) {
      const reply = await probeSet(node, `bench:probe:${i}:${attempt}`, limits.probeTimeoutMs);
      if (reply === 'STORED') break;
      if (Date.now() > deadline) throw new Error(`node ${i + 1} (port ${node.port}) answers a set with ${JSON.stringify(reply)} after ${limits.probeMsMax} ms`);
      await sleep(limits.pollMs);
    }
  }
}

export interface BenchClusterOptions {
  replication: { n: number; r: number; w: number };
  leaseMs: number;
  /** The nodes' ids, started in this order. */
  ids: readonly string[];
  /** Arguments every node gets after the joining ones. */
  extraNodeArgs?: readonly string[];
  limits: ClusterLimits;
  /** Called with every process as soon as it runs. */
  track: (server: RunningServer) => RunningServer;
  /** Names the cluster in a "did not settle" error. */
  what?: string;
}

export interface BenchCluster {
  master: RunningServer;
  nodes: RunningServer[];
  /** The master's view once settled. */
  view: ClusterView;
}

/** A master and `ids` memory nodes joined one by one; resolves once settled and every node serves. */
export async function startBenchCluster(o: BenchClusterOptions): Promise<BenchCluster> {
  const master = o.track(await startMaster({ args: masterArgs(o.replication, o.leaseMs) }));
  const nodes: RunningServer[] = [];
  for (const id of o.ids) {
    nodes.push(o.track(await startRingkv({ storage: 'memory', args: clusterNodeArgs(master, id, o.extraNodeArgs) })));
  }
  const view = await waitSettled(master, o.ids, o.limits, o.what);
  await waitServing(nodes, o.limits);
  return { master, nodes, view };
}
