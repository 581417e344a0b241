// `ringkv start`: a whole cluster on this machine, for trying ringkv out and for tests. One
// lease master and N nodes run as child processes of this one (the same CLI, `master` and
// `node` subcommands) on 127.0.0.1; this process reads their ready lines, waits until the
// master's view shows every node up, nothing moving and every piece held, prints where
// everything listens, and from then on only supervises.
//
// Invariants: a child is stopped only by its PID, nodes before the master (a node stopping
// after its master would keep calling it); a child that dies on its own takes the whole
// cluster down with it (a partial cluster that looks started is worse than none). The
// children run in their own process group, so a terminal's Ctrl-C reaches this process
// only, and the stop order above holds.
//
// Ports, for base port B (default 7000, so the defaults of `master` and `node`):
//   master  RPC B          HTTP B+80
//   node i  RPC B+100+i    HTTP B+1079+i    memcached B+4210+i     (i = 1..N)
// B = 7000 gives master 7000/7080 and n1 7101/8080/11211, n2 7102/8081/11212, ...
// B = 0 lets the OS pick every port (each child gets 0 and says what it bound).
//
// Exit codes: 0 after SIGTERM/SIGINT/SIGHUP (children stopped); 2 for bad flags and for a
// failed start (a child died before the cluster was ready, or it did not settle within
// READY_TIMEOUT_MS); 1 when a child died after the cluster was ready.
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, Option } from 'commander';
import { intIn, logLevelOption } from './node-cmd.js';
import type { LogLevel } from '../server/log.js';
import { assert } from '../server/util/assert.js';
import { fetchView, problems, type MasterView } from './status.js';

const EXIT_USAGE = 2;
/** A child died after the cluster was ready. */
const EXIT_CHILD_DIED = 1;
const HOST = '127.0.0.1';

export const NODES_MAX = 64;
/** From launch to a settled view; past it the cluster is stopped and start fails. */
export const READY_TIMEOUT_MS = 30_000;
/** SIGTERM, then SIGKILL after this long: above a node's own shutdown grace (5 s). */
export const STOP_GRACE_MS = 10_000;
/** Pause between two `view` calls while waiting for the cluster to settle. */
const SETTLE_POLL_MS = 200;
/** Lines of a child's stderr kept for the message when it dies. */
const STDERR_TAIL_LINES = 5;
/** The stderr tail quoted in the one-line message about a dead child is cut to this. */
const STDERR_TAIL_CHARS_MAX = 600;
/** Stdout bytes a child may write before its ready line; a child that says more is broken. */
const READY_OUTPUT_MAX_BYTES = 64 * 1024;
/** A stderr line longer than this is forwarded in pieces. */
const STDERR_LINE_MAX_BYTES = 4096;

/** Offsets from the base port; node offsets get the node's 1-based index added. */
export const PORT_OFFSETS = { masterRpc: 0, masterHttp: 80, nodeRpc: 100, nodeHttp: 1079, nodeMemcached: 4210 } as const;

export interface NodePorts {
  readonly id: string;
  readonly memcached: number;
  readonly http: number;
  readonly rpc: number;
}

export interface PortPlan {
  readonly master: { readonly rpc: number; readonly http: number };
  readonly nodes: readonly NodePorts[];
}

/** The highest base port at which N nodes' ports all stay within 65535. */
export function basePortMax(nodes: number): number {
  return 65535 - PORT_OFFSETS.nodeMemcached - nodes;
}

/** Every port of the cluster; all 0 (the OS picks) when basePort is 0. */
export function planPorts(basePort: number, nodes: number): PortPlan {
  assert(Number.isInteger(nodes) && nodes >= 1 && nodes <= NODES_MAX, `nodes must be 1..${NODES_MAX}`);
  assert(basePort === 0 || (basePort >= 1 && basePort <= basePortMax(nodes)), 'base port out of range');
  const at = (offset: number, i = 0) => (basePort === 0 ? 0 : basePort + offset + i);
  const plan: PortPlan = {
    master: { rpc: at(PORT_OFFSETS.masterRpc), http: at(PORT_OFFSETS.masterHttp) },
    nodes: Array.from({ length: nodes }, (_, k) => ({
      id: `n${k + 1}`,
      memcached: at(PORT_OFFSETS.nodeMemcached, k + 1),
      http: at(PORT_OFFSETS.nodeHttp, k + 1),
      rpc: at(PORT_OFFSETS.nodeRpc, k + 1),
    })),
  };
  if (basePort !== 0) {
    const all = [plan.master.rpc, plan.master.http, ...plan.nodes.flatMap((n) => [n.memcached, n.http, n.rpc])];
    assert(new Set(all).size === all.length && all.every((p) => p <= 65535), 'planned ports must be distinct and valid');
  }
  return plan;
}

export type ReadyLine =
  | { readonly kind: 'master'; readonly rpc: number; readonly http: number; readonly pid: number }
  | { readonly kind: 'node'; readonly memcached: number; readonly http: number; readonly rpc: number; readonly pid: number };

/** The ready lines of `ringkv master` and `ringkv node` (client/cli.ts); anything else is undefined. */
export function parseReadyLine(line: string): ReadyLine | undefined {
  const m = /^ringkv master ready rpc=\S+:(\d+) http=\S+:(\d+) pid=(\d+)$/.exec(line);
  if (m) return { kind: 'master', rpc: Number(m[1]), http: Number(m[2]), pid: Number(m[3]) };
  const n = /^ringkv node ready memcached=\S+:(\d+) http=\S+:(\d+) rpc=\S+:(\d+) pid=(\d+)$/.exec(line);
  if (n) return { kind: 'node', memcached: Number(n[1]), http: Number(n[2]), rpc: Number(n[3]), pid: Number(n[4]) };
  return undefined;
}

/** Why the view does not yet show the cluster we started, settled; empty once it does. */
export function notSettled(view: MasterView, ids: readonly string[]): string[] {
  const out: string[] = [];
  const registered = new Set(view.members.map((m) => m.id));
  const missing = ids.filter((id) => !registered.has(id));
  if (missing.length > 0) out.push(`not registered: ${missing.join(', ')}`);
  // Members from an earlier run over the same data dir: harmless once down and holding nothing.
  const strangers = view.members.filter((m) => !ids.includes(m.id) && (m.status === 'up' || m.pieces > 0));
  if (strangers.length > 0) out.push(`members not started by this command: ${strangers.map((m) => m.id).join(', ')} (from an earlier run over the same --data?)`);
  const ours = { ...view, members: view.members.filter((m) => ids.includes(m.id)) };
  out.push(...problems(ours));
  return out;
}

// ---- the shell: child processes -------------------------------------------------------

/** The compiled CLI beside this file: children run the same ringkv as this process. */
const cliPath = fileURLToPath(new URL('./cli.js', import.meta.url));

interface Child {
  /** `master`, or the node id. */
  readonly id: string;
  readonly proc: ChildProcess;
  /** Resolves with the child's ready line; never rejects (a death is reported by the supervisor). */
  readonly ready: Promise<ReadyLine>;
  /** Resolves once the process has exited. */
  readonly exited: Promise<void>;
  alive(): boolean;
  /** How it ended: "exited with code 2", "was killed by SIGKILL", "could not be started (...)". */
  how(): string;
  /** The last lines of its stderr, for the message when it dies. */
  tail(): string[];
}

type Phase = 'starting' | 'ready' | 'stopping';

function describeExit(proc: ChildProcess, spawnError: Error | undefined): string {
  if (spawnError) return `could not be started (${spawnError.message})`;
  return proc.signalCode !== null ? `was killed by ${proc.signalCode}` : `exited with code ${proc.exitCode}`;
}

/** Keeps the children, reports the ones that die, and stops them all in order, once. */
class Supervisor {
  phase: Phase = 'starting';
  private master: Child | undefined;
  private readonly nodes: Child[] = [];

  constructor() {
    for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.on(signal, () => this.onSignal(signal));
    // Last resort (an exception in this process): no child outlives it.
    process.on('exit', () => {
      for (const c of this.all()) if (c.alive()) c.proc.kill('SIGKILL');
    });
  }

  spawn(id: string, args: string[]): Child {
    assert(this.phase === 'starting', 'children are started only while starting');
    const child = spawnChild(id, args, () => this.onClose(child));
    if (id === 'master') this.master = child;
    else this.nodes.push(child);
    return child;
  }

  /** A one-line error, the children stopped, and the exit code. */
  fail(code: number, message: string): void {
    if (this.phase === 'stopping') return;
    process.stderr.write(`ringkv: ${message.replace(/\s+/g, ' ')}\n`);
    void this.stopAll().then(() => process.exit(code));
  }

  private all(): Child[] {
    return this.master ? [...this.nodes, this.master] : [...this.nodes];
  }

  private onClose(child: Child): void {
    if (this.phase === 'stopping') return;
    const all = child.tail().join(' | ');
    const tail = all.length > STDERR_TAIL_CHARS_MAX ? `...${all.slice(-STDERR_TAIL_CHARS_MAX)}` : all;
    const what = child.id === 'master' ? 'master' : `node ${child.id}`;
    const code = this.phase === 'ready' ? EXIT_CHILD_DIED : EXIT_USAGE;
    this.fail(code, `${what} (pid ${child.proc.pid ?? '-'}) ${child.how()}, stopping the cluster; its stderr: ${tail.length > 0 ? tail : '(empty)'}`);
  }

  private onSignal(signal: string): void {
    if (this.phase === 'stopping') {
      // A second Ctrl-C: no more waiting.
      for (const c of this.all()) if (c.alive()) c.proc.kill('SIGKILL');
      return;
    }
    const n = this.nodes.length;
    process.stderr.write(`ringkv: ${signal}: stopping ${n} node${n === 1 ? '' : 's'}, then the master\n`);
    void this.stopAll().then(() => process.exit(0));
  }

  /** Nodes first (all at once), then the master; each SIGTERM, then SIGKILL after the grace. */
  private async stopAll(): Promise<void> {
    this.phase = 'stopping';
    await Promise.all(this.nodes.map((c) => stopChild(c, STOP_GRACE_MS)));
    if (this.master) await stopChild(this.master, STOP_GRACE_MS);
  }
}

function spawnChild(id: string, args: string[], onClose: () => void): Child {
  // detached: its own process group, so a terminal's SIGINT reaches only us and we choose the order.
  const proc = spawn(process.execPath, [cliPath, ...args], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let spawnError: Error | undefined;
  const tail: string[] = [];
  const forward = (line: string) => {
    process.stderr.write(`[${id}] ${line}\n`);
    tail.push(line);
    if (tail.length > STDERR_TAIL_LINES) tail.shift();
  };
  let partial = '';
  proc.stderr!.on('data', (d: Buffer) => {
    const lines = (partial + d.toString('utf8')).split('\n');
    partial = lines.pop()!;
    for (const l of lines) forward(l);
    while (partial.length > STDERR_LINE_MAX_BYTES) {
      forward(partial.slice(0, STDERR_LINE_MAX_BYTES));
      partial = partial.slice(STDERR_LINE_MAX_BYTES);
    }
  });

  const ready = new Promise<ReadyLine>((resolve) => {
    let out = '';
    const onData = (d: Buffer) => {
      out += d.toString('utf8');
      for (let eol = out.indexOf('\n'); eol >= 0; eol = out.indexOf('\n')) {
        const r = parseReadyLine(out.slice(0, eol));
        out = out.slice(eol + 1);
        if (r) {
          proc.stdout!.off('data', onData);
          proc.stdout!.resume();
          resolve(r);
          return;
        }
      }
      if (out.length > READY_OUTPUT_MAX_BYTES) out = '';
    };
    proc.stdout!.on('data', onData);
  });

  const exited = new Promise<void>((resolve) => {
    proc.once('exit', () => resolve());
    proc.once('error', (e) => {
      // Spawning failed: there is no process, and no 'exit' to come.
      if (proc.pid === undefined) {
        spawnError = e;
        resolve();
      }
    });
  });
  proc.once('close', () => {
    if (partial.length > 0) forward(partial);
    partial = '';
    onClose();
  });
  return {
    id,
    proc,
    ready,
    exited,
    alive: () => proc.pid !== undefined && spawnError === undefined && proc.exitCode === null && proc.signalCode === null,
    how: () => describeExit(proc, spawnError),
    tail: () => [...tail],
  };
}

async function stopChild(c: Child, graceMs: number): Promise<void> {
  if (!c.alive()) return;
  c.proc.kill('SIGTERM');
  const timer = setTimeout(() => {
    if (c.alive()) c.proc.kill('SIGKILL');
  }, graceMs);
  await c.exited;
  clearTimeout(timer);
}

// ---- the command ----------------------------------------------------------------------

export interface StartOptions {
  nodes: number;
  data: string;
  storage: 'level' | 'memory';
  basePort: number;
  /** Passed to the master and every node. */
  logLevel: LogLevel;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

async function runCluster(o: StartOptions): Promise<void> {
  const plan = planPorts(o.basePort, o.nodes);
  const ids = plan.nodes.map((n) => n.id);
  const sup = new Supervisor();
  /** What the wait is on, for the message if it never ends. */
  let waitingFor = 'the master';
  const deadline = setTimeout(() => sup.fail(EXIT_USAGE, `cluster not ready within ${READY_TIMEOUT_MS / 1000} s: ${waitingFor}`), READY_TIMEOUT_MS);

  // N copies per key, but never more than there are nodes (a 1-node cluster: N = R = W = 1).
  const n = Math.min(3, plan.nodes.length);
  const quorum = ['--n', String(n), '--r', String(Math.min(2, n)), '--w', String(Math.min(2, n))];
  const master = sup.spawn('master', ['master', '--host', HOST, '--port', String(plan.master.rpc), '--http-port', String(plan.master.http), '--data', o.data, ...quorum, '--log-level', o.logLevel]);
  const m = await master.ready;
  if (sup.phase !== 'starting') return;
  if (m.kind !== 'master') return sup.fail(EXIT_USAGE, 'the master printed a node ready line');
  const masterAddr = `${HOST}:${m.rpc}`;

  const nodes = plan.nodes.map((n) =>
    sup.spawn(n.id, [
      'node',
      '--id', n.id,
      '--host', HOST,
      '--port', String(n.memcached),
      '--http-port', String(n.http),
      '--rpc-port', String(n.rpc),
      '--data', path.join(o.data, n.id),
      '--storage', o.storage,
      '--master', masterAddr,
      '--log-level', o.logLevel,
    ]),
  );
  const pending = new Set(ids);
  waitingFor = `no ready line from ${ids.join(', ')}`;
  const readies = await Promise.all(
    nodes.map(async (c) => {
      const r = await c.ready;
      pending.delete(c.id);
      waitingFor = `no ready line from ${[...pending].join(', ')}`;
      return r;
    }),
  );
  if (sup.phase !== 'starting') return;

  waitingFor = 'no view from the master yet';
  for (;;) {
    try {
      const left = notSettled(await fetchView(HOST, m.rpc, 2_000), ids);
      if (left.length === 0) break;
      waitingFor = left.join('; ');
    } catch (e) {
      waitingFor = `master view: ${e instanceof Error ? e.message : String(e)}`;
    }
    if (sup.phase !== 'starting') return;
    await sleep(SETTLE_POLL_MS);
    if (sup.phase !== 'starting') return;
  }
  clearTimeout(deadline);
  sup.phase = 'ready';

  const lines = [`ringkv master pid=${m.pid} rpc=${HOST}:${m.rpc} http=${HOST}:${m.http}`];
  readies.forEach((r, k) => {
    assert(r.kind === 'node', 'a node printed a master ready line');
    lines.push(`ringkv node id=${ids[k]} pid=${r.pid} memcached=${HOST}:${r.memcached} http=${HOST}:${r.http} rpc=${HOST}:${r.rpc}`);
  });
  lines.push(`ringkv cluster ready nodes=${ids.length} master=${masterAddr}`);
  process.stdout.write(`${lines.join('\n')}\n`);
}


function fail(message: string): never {
  process.stderr.write(`ringkv: ${message}\n`);
  process.exit(EXIT_USAGE);
}

export function startCommand(): Command {
  return new Command('start')
    .description('run a lease master and N nodes on 127.0.0.1 as children of this process, until SIGTERM/Ctrl-C')
    .option('--nodes <n>', 'how many nodes (ids n1..nN)', intIn('--nodes', 1, NODES_MAX), 3)
    .option('--data <dir>', 'data directory: the master in <dir>/master, node i in <dir>/n<i>', './data')
    .addOption(new Option('--storage <kind>', "the nodes' storage: level (durable) or memory").choices(['level', 'memory']).default('level'))
    .option(
      '--base-port <n>',
      'master RPC B, HTTP B+80; node i RPC B+100+i, HTTP B+1079+i, memcached B+4210+i (0 = any free ports)',
      intIn('--base-port', 0, 65535),
      7000,
    )
    .addOption(logLevelOption())
    .action(async (o: { nodes: number; data: string; storage: 'level' | 'memory'; basePort: number; logLevel: LogLevel }) => {
      if (o.data.length === 0) fail('--data must not be empty');
      if (o.basePort !== 0 && o.basePort > basePortMax(o.nodes)) {
        fail(`--base-port ${o.basePort} puts node ports past 65535: with --nodes ${o.nodes} the highest base port is ${basePortMax(o.nodes)}`);
      }
      await runCluster({ nodes: o.nodes, data: path.resolve(o.data), storage: o.storage, basePort: o.basePort, logLevel: o.logLevel });
    });
}
