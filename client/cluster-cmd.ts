// `ringkv cluster add` and `ringkv cluster remove`: growing and shrinking a running cluster.
//
// remove <id>: asks the lease master to decommission a node (RPC `leave`), then watches the
// master's view until the member has `left` and holds no piece, showing the hand-over's
// progress. The node itself does the work (server/cluster/transfer.ts) and exits once done.
//
// add [node flags]: runs a node exactly as `ringkv node` does (same flags, same config),
// which registers with the master as `joining` and copies its data in; this process also
// watches the master's view until the member is `up`, showing the copy's progress, says
// `ringkv node <id> joined`, and then goes on as a plain node until SIGTERM/SIGINT.
//
// Progress goes to stderr: a cli-progress bar when stderr is a terminal, otherwise (and
// with --no-progress) one plain line a second, e.g.
//   n4 leaving: 52% 1234 keys 5.1 MiB 3.2 MiB/s eta 4s
// Exit codes of remove: 0 once the node has left; 2 (one line `ringkv: ...`) when the master
// cannot be reached, does not know the node, refuses the leave, or the leave times out.
import { Command } from 'commander';
import cliProgress from 'cli-progress';
import { MasterLink, RpcRemoteError } from '../server/protocol/rpc/index.js';
import { NOT_LEADER } from '../server/master/leadership.js';
import { addNodeOptions, intIn, nodeConfig, nodeId, runNode } from './node-cmd.js';
import { RANGE_MOVE_STATES, type RangeMoveWait } from '../server/master/core.js';
import { formatTransfer, masterAddrs, mib, parseView, VIEW_TIMEOUT_MS, type ViewMember, type ViewTransfer } from './status.js';

const EXIT_USAGE = 2;
/** Exit code after Ctrl-C during a remove (the leave itself goes on). */
const EXIT_INTERRUPTED = 130;
/** Pause between two `view` calls while watching a member move. */
export const POLL_MS = 250;
/** One plain progress line per this many ms. */
export const LINE_EVERY_MS = 1000;
/** `remove` gives up watching after this long by default. */
export const REMOVE_TIMEOUT_S = 600;
/** While watching, the master may be away (restarting) this long before remove gives up. */
const MASTER_AWAY_MAX_MS = 15_000;

function fail(message: string): never {
  process.stderr.write(`ringkv: ${message.replace(/\s+/g, ' ')}\n`);
  process.exit(EXIT_USAGE);
}

// ---- pure: what a progress report says --------------------------------------------------

export interface MemberProgress {
  readonly id: string;
  readonly status: string;
  readonly pieces: number;
  /** The last transfer the master reported for this member, if any yet. */
  readonly transfer?: ViewTransfer;
}

const NOTHING_YET: ViewTransfer = { direction: 'out', keys: 0, bytes: 0, fraction: 0, rateBytesPerS: 0, done: false };

/**
 * Why the move is held up: the waiting reason of its least advanced range among those that
 * wait (failed ones first: they start again), or undefined when none waits.
 */
export function moveWaiting(t: Pick<ViewTransfer, 'ranges' | 'done'>): RangeMoveWait | undefined {
  if (t.done) return undefined;
  let best: { rank: number; waiting: RangeMoveWait } | undefined;
  for (const r of t.ranges ?? []) {
    if (r.waiting === undefined || r.state === 'done') continue;
    const rank = r.state === 'failed' ? -1 : RANGE_MOVE_STATES.indexOf(r.state);
    if (best === undefined || rank < best.rank) best = { rank, waiting: r.waiting };
  }
  return best?.waiting;
}

/** What follows the numbers: " retries 3" when any, " waiting source-down" while a range waits. */
function retriesAndWaiting(t: ViewTransfer, finished: boolean): string {
  const retries = t.retries !== undefined && t.retries > 0 ? ` retries ${t.retries}` : '';
  const waiting = finished ? undefined : moveWaiting(t);
  return `${retries}${waiting !== undefined ? ` waiting ${waiting}` : ''}`;
}

/**
 * One plain progress line: "n4 leaving: 52% 1234 keys 5.1 MiB 3.2 MiB/s eta 4s", then
 * " retries N" when calls were retried and " waiting <reason>" while a range waits.
 */
export function progressLine(p: MemberProgress): string {
  const t = p.transfer ?? NOTHING_YET;
  // Left: the data is handed over; only the leases are still being recalled.
  const finished = p.status === 'left' || p.status === 'up';
  const shown = finished ? { ...t, fraction: 1, done: true } : t;
  const pieces = p.status === 'left' && p.pieces > 0 ? ` (${p.pieces} ${p.pieces === 1 ? 'piece' : 'pieces'} to hand over)` : '';
  return `${p.id} ${p.status}: ${formatTransfer(shown)}${pieces}${retriesAndWaiting(shown, finished)}`;
}

// ---- showing progress --------------------------------------------------------------------

export interface ProgressDisplay {
  show(p: MemberProgress): void;
  /** The move is over: its last state is shown (a plain line even within the second), then stop(). */
  finish(p: MemberProgress): void;
  /** Final: the bar is closed (its line stays), no more output. */
  stop(): void;
}

/** Not a terminal, or --no-progress: one line on stderr at the first report, then one a second. */
class LineDisplay implements ProgressDisplay {
  private lastMs = -Infinity;
  private lastLine = '';
  private stopped = false;

  constructor(private readonly out: NodeJS.WritableStream) {}

  show(p: MemberProgress): void {
    if (this.stopped || Date.now() - this.lastMs < LINE_EVERY_MS) return;
    this.write(progressLine(p));
  }

  finish(p: MemberProgress): void {
    const line = progressLine(p);
    if (!this.stopped && line !== this.lastLine) this.write(line);
    this.stop();
  }

  private write(line: string): void {
    this.lastMs = Date.now();
    this.lastLine = line;
    this.out.write(`${line}\n`);
  }

  stop(): void {
    this.stopped = true;
  }
}

/** A terminal: one cli-progress bar, redrawn in place. */
class BarDisplay implements ProgressDisplay {
  private static readonly TOTAL = 1000;
  private readonly bar: cliProgress.SingleBar;
  private started = false;
  private stopped = false;

  constructor(out: NodeJS.WritableStream) {
    this.bar = new cliProgress.SingleBar(
      {
        stream: out,
        format: '{label} [{bar}] {pct} | {keys} keys | {mib} MiB | {rate} MiB/s | eta {etaText}{extra}',
        barsize: 30,
        fps: 10,
        hideCursor: false,
        gracefulExit: false,
        clearOnComplete: false,
        linewrap: false,
      },
      cliProgress.Presets.shades_classic,
    );
  }

  show(p: MemberProgress): void {
    if (this.stopped) return;
    const t = p.transfer ?? NOTHING_YET;
    const finished = p.status === 'left' || p.status === 'up' || t.done;
    const fraction = finished ? 1 : Math.min(1, Math.max(0, t.fraction));
    const payload = {
      label: `${p.id} ${p.status}`,
      pct: finished ? '100%' : `${Math.min(99, Math.floor(fraction * 100))}%`,
      keys: t.keys,
      mib: mib(t.bytes),
      rate: mib(t.rateBytesPerS),
      etaText: t.etaS !== undefined && !finished ? `${Math.round(t.etaS)}s` : '-',
      extra: `${p.status === 'left' && p.pieces > 0 ? ` | ${p.pieces} pieces to hand over` : ''}${retriesAndWaiting(t, finished)}`,
    };
    const value = Math.round(fraction * BarDisplay.TOTAL);
    if (!this.started) {
      this.started = true;
      this.bar.start(BarDisplay.TOTAL, value, payload);
    } else {
      this.bar.update(value, payload);
    }
  }

  finish(p: MemberProgress): void {
    this.show(p);
    this.stop();
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    if (this.started) this.bar.stop();
  }
}

/** The bar on a terminal unless `plain`; plain lines otherwise. */
export function progressDisplay(plain: boolean, out: NodeJS.WritableStream & { isTTY?: boolean } = process.stderr): ProgressDisplay {
  return !plain && out.isTTY === true ? new BarDisplay(out) : new LineDisplay(out);
}

// ---- watching the master's view ----------------------------------------------------------

/** The way to the master that leads (one address, or several: --master a:7000,b:7000), for `leave` and for polling `view`. */
class MasterWatch {
  private readonly link: MasterLink;

  constructor(masters: string) {
    this.link = new MasterLink(masters, { connectTimeoutMs: VIEW_TIMEOUT_MS, maxPending: 4 });
  }

  /** The master answering now (the leader, as far as known). */
  get addr(): string {
    return this.link.leader();
  }

  call<T>(type: string, body: unknown): Promise<T> {
    return this.link.call<T>(type, body, { timeoutMs: VIEW_TIMEOUT_MS });
  }

  /** The member `id` in the master's view; undefined when the view does not list it. */
  async member(id: string): Promise<ViewMember | undefined> {
    return parseView(await this.call<unknown>('view', {})).members.find((m) => m.id === id);
  }

  async close(): Promise<void> {
    await this.link.close();
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const oneLine = (e: unknown): string => (e instanceof Error ? e.message : String(e)).replace(/\s+/g, ' ');

/**
 * The progress of `m`: its move now, or once it is over the final report the master keeps
 * (lastTransfer), or else the last transfer seen (a master that does not keep final reports).
 */
function progressOf(m: ViewMember, last: ViewTransfer | undefined): MemberProgress {
  const transfer = m.transfer ?? m.lastTransfer ?? last;
  return { id: m.id, status: m.status, pieces: m.pieces, ...(transfer ? { transfer } : {}) };
}

// ---- cluster remove ----------------------------------------------------------------------

export interface RemoveOptions {
  master: string;
  progress: boolean;
  timeoutS: number;
}

async function removeNode(id: string, o: RemoveOptions): Promise<void> {
  const link = new MasterWatch(o.master);
  try {
    await link.call('leave', { id });
  } catch (e) {
    if (e instanceof RpcRemoteError) {
      if (e.code === 'UNKNOWN_NODE') fail(`master at ${link.addr} has no member ${id} (UNKNOWN_NODE)`);
      if (e.code === 'BAD_MEMBER') fail(`master at ${link.addr} refused to remove ${id} (BAD_MEMBER): ${e.message}`);
      if (e.code === NOT_LEADER) fail(`no master leads among ${o.master}: ${e.message}`);
      fail(`master at ${link.addr} refused to remove ${id}: ${e.code}: ${e.message}`);
    }
    fail(`cannot reach master at ${o.master}: ${oneLine(e)}`);
  }

  const display = progressDisplay(!o.progress);
  process.once('SIGINT', () => {
    display.stop();
    process.stderr.write(`\nringkv: interrupted: ${id} is still leaving (the master goes on with it; ringkv status shows its progress)\n`);
    process.exit(EXIT_INTERRUPTED);
  });
  const deadline = Date.now() + o.timeoutS * 1000;
  let last: ViewTransfer | undefined;
  let shown: MemberProgress | undefined;
  let awaySinceMs: number | undefined;
  const stopWith = (message: string): never => {
    display.stop();
    fail(message);
  };
  for (;;) {
    let m: ViewMember | undefined;
    try {
      m = await link.member(id);
      awaySinceMs = undefined;
    } catch (e) {
      awaySinceMs ??= Date.now();
      if (Date.now() - awaySinceMs > MASTER_AWAY_MAX_MS) stopWith(`lost the master at ${o.master} while ${id} was leaving: ${oneLine(e)}`);
    }
    if (m) {
      if (m.transfer) last = m.transfer;
      shown = progressOf(m, last);
      if (m.status === 'left' && m.pieces === 0) {
        display.finish(shown);
        break;
      }
      display.show(shown);
      // Down (it stopped renewing) or back up after that: the leave did not go through.
      if (m.status !== 'leaving' && m.status !== 'left') {
        stopWith(`${id} is ${m.status}, no longer leaving (did it stop?): run ringkv cluster remove ${id} again once it is up`);
      }
    } else if (awaySinceMs === undefined) {
      stopWith(`master at ${o.master} no longer lists ${id}`);
    }
    if (Date.now() >= deadline) {
      stopWith(`${id} has not left within ${o.timeoutS} s (${shown ? progressLine(shown) : 'no progress seen'}); the master goes on with the leave`);
    }
    await sleep(POLL_MS);
  }
  await link.close();
  process.stdout.write(`${id} left the cluster\n`);
}

// ---- cluster add -------------------------------------------------------------------------

/**
 * Watches the master's view until member `id` is up, showing its join; then says so on
 * stdout. Never gives up (the node keeps running and keeps joining); stopped by `stop()`.
 */
function watchJoin(id: string, master: string, plain: boolean): { stop(): void } {
  const link = new MasterWatch(master);
  const display = progressDisplay(plain);
  let stopped = false;
  void (async () => {
    let last: ViewTransfer | undefined;
    while (!stopped) {
      const m = await link.member(id).catch(() => undefined);
      if (stopped) break;
      if (m) {
        if (m.transfer) last = m.transfer;
        if (m.status === 'joining') display.show(progressOf(m, last));
        if (m.status === 'up') {
          stopped = true;
          display.finish(progressOf(m, last));
          process.stdout.write(`ringkv node ${id} joined\n`);
          break;
        }
      }
      await sleep(POLL_MS);
    }
    await link.close();
  })();
  return {
    stop() {
      stopped = true;
      display.stop();
    },
  };
}

// ---- the commands ------------------------------------------------------------------------


function removeCommand(): Command {
  return new Command('remove')
    .description('decommission a node: it hands its data to the nodes that take its ranges, leaves the ring, and exits')
    .argument('<node-id>', 'the member to remove', nodeId)
    .option('--master <host:port,...>', "the lease master's RPC address, or every master's (one leads)", masterAddrs, '127.0.0.1:7000')
    .option('--no-progress', 'no progress bar: one plain line a second on stderr (also when stderr is not a terminal)')
    .option('--timeout-s <n>', 'give up watching (exit 2) after this many seconds; the leave itself goes on', intIn('--timeout-s', 1, 7 * 86_400), REMOVE_TIMEOUT_S)
    .action(async (id: string, o: RemoveOptions) => {
      await removeNode(id, o);
    });
}

function addCommand(): Command {
  return addNodeOptions(new Command('add').description('run a node that joins the cluster of --master, showing its data copy until it is up; then it runs as `ringkv node`'))
    .option('--no-progress', 'no progress bar: one plain line a second on stderr (also when stderr is not a terminal)')
    .action(async (o: Record<string, unknown>, cmd: Command) => {
      const cfg = nodeConfig(o);
      // stderr shows the join's progress: the node's own logs only from warn up, unless asked.
      if (cmd.getOptionValueSource('logLevel') === 'default') cfg.logLevel = 'warn';
      if (!cfg.master) fail('cluster add needs --master <host:port,...>: the lease master(s) of the cluster to join');
      const master = cfg.master;
      let watch: { stop(): void } | undefined;
      await runNode(cfg, {
        onReady: () => (watch = watchJoin(cfg.id, master, o.progress === false)),
        onStopping: () => watch?.stop(),
      });
    });
}

export function clusterCommand(): Command {
  return new Command('cluster').description('grow or shrink a running cluster: add a node, remove a node').addCommand(addCommand()).addCommand(removeCommand());
}
