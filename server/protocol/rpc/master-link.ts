// The way to the active lease master, given the list of masters (`--master a:7000,b:7000`).
// With `--store etcd` several masters run and one leads; the others answer every request
// but `role` with NOT_LEADER, naming the leader when they know it (server/master/leadership.ts).
//
// A call goes to the current guess of the leader (at first the first address). Then:
//   - NOT_LEADER naming a leader: that address becomes the guess (added to the list when
//     new) and the call is sent there at once;
//   - NOT_LEADER naming none, no connection, a lost connection, no reply in time
//     (RpcUnavailable, RpcTimeout) or SHUTTING_DOWN: the next address in the list, with a
//     pause after each round of tries that all failed (pauseMinMs doubling to pauseMaxMs);
//   - any other error (BAD_MEMBER, UNKNOWN_NODE, RpcBusy, ...): thrown as it is.
// All within the call's one deadline (timeoutMs); past it the last error is thrown.
//
// With one address and no hint, a call is one RpcClient call: the same errors, no retry (a
// lone master that is away is the caller's business, as it always was).
//
// Like a plain RpcClient, this repeats a request only after a failure; a timed-out request
// may have run on the master that did not answer, and is then sent to the next one, which
// refuses it unless it leads. The master's requests are built to be repeated (register,
// renew, changes, view, progress, leave).
import { leaderHint, masterList, NOT_LEADER } from '../../master/leadership.js';
import { RpcClient, type CallOptions, type RpcClientOptions } from './client.js';
import { RpcRemoteError, RpcTimeout, RpcUnavailable } from './errors.js';
import { splitAddr } from './peers.js';

export interface MasterLinkOptions extends Omit<RpcClientOptions, 'host' | 'port'> {
  /**
   * Deadline of one try, in ms, when there is more than one address: a master that went
   * silent costs this much of the call's deadline, not all of it. Default: the whole
   * remaining deadline.
   */
  attemptTimeoutMs?: number;
  /** Pause after a round of failed tries, doubling up to pauseMaxMs. Default 50 ms. */
  pauseMinMs?: number;
  /** Longest pause between rounds. Default 500 ms. */
  pauseMaxMs?: number;
}

export interface MasterLinkCounters {
  /** Calls made through the link. */
  calls: number;
  /** Tries repeated after a retryable failure (at another address or the same one). */
  retries: number;
  /** Times the guess of the leader changed (a hint or a failure). */
  switches: number;
}

export class MasterLink {
  readonly counters: MasterLinkCounters = { calls: 0, retries: 0, switches: 0 };
  private readonly addrs: string[];
  private readonly clients = new Map<string, RpcClient>();
  private readonly clientOpts: Omit<RpcClientOptions, 'host' | 'port'>;
  private readonly attemptTimeoutMs: number | undefined;
  private readonly pauseMinMs: number;
  private readonly pauseMaxMs: number;
  private current = 0;
  private closed = false;
  /** Wakes the calls sleeping between rounds (at close). */
  private readonly sleepers = new Set<() => void>();

  /** `masters`: host:port addresses, as a list or comma-separated; tried in this order. */
  constructor(masters: string | readonly string[], opts: MasterLinkOptions = {}) {
    const list = typeof masters === 'string' ? masterList(masters) : masters.map((s) => s.trim()).filter((s) => s.length > 0);
    if (list.length === 0) throw new Error('no master address given: want host:port[,host:port...]');
    for (const a of list) splitAddr(a);
    this.addrs = [...new Set(list)];
    const { attemptTimeoutMs, pauseMinMs, pauseMaxMs, ...clientOpts } = opts;
    this.clientOpts = clientOpts;
    this.attemptTimeoutMs = attemptTimeoutMs;
    this.pauseMinMs = pauseMinMs ?? 50;
    this.pauseMaxMs = pauseMaxMs ?? 500;
    if (attemptTimeoutMs !== undefined && !(attemptTimeoutMs > 0)) throw new Error(`attemptTimeoutMs must be > 0, got ${attemptTimeoutMs}`);
    if (!(this.pauseMinMs > 0 && this.pauseMaxMs >= this.pauseMinMs)) throw new Error('want 0 < pauseMinMs <= pauseMaxMs');
  }

  /** The current guess of the leader's address (host:port). */
  leader(): string {
    return this.addrs[this.current]!;
  }

  /** Every address known: the ones given, then the leaders named by hints. */
  addresses(): readonly string[] {
    return [...this.addrs];
  }

  /**
   * Send one request to the leader and wait for its reply body. Rejects with the RpcError
   * of the last try (see errors.ts): RpcRemoteError NOT_LEADER when no master led before
   * the deadline.
   */
  async call<T>(type: string, body: unknown, opts: CallOptions): Promise<T> {
    const deadline = Date.now() + opts.timeoutMs;
    this.counters.calls++;
    let failedInRound = 0;
    let pauseMs = this.pauseMinMs;
    let first = true;
    for (;;) {
      if (this.closed) throw new RpcUnavailable('CLOSED', false, `master link (${this.addrs.join(',')}) is closed`);
      const at = this.current;
      const addr = this.addrs[at]!;
      // The first try gets exactly the caller's timeout (a lone master: a plain call).
      const leftMs = first ? opts.timeoutMs : deadline - Date.now();
      const tryMs = this.addrs.length > 1 && this.attemptTimeoutMs !== undefined ? Math.min(leftMs, this.attemptTimeoutMs) : leftMs;
      if (!first) this.counters.retries++;
      first = false;
      try {
        return await this.client(addr).call<T>(type, body, { timeoutMs: tryMs });
      } catch (e) {
        if (this.closed) throw e;
        const hint = leaderHint(e);
        if (hint !== undefined && hint !== addr) {
          this.follow(at, hint);
        } else if (this.addrs.length > 1 && retryable(e)) {
          this.advance(at);
        } else {
          throw e;
        }
        if (++failedInRound >= this.addrs.length) {
          failedInRound = 0;
          const leftNow = deadline - Date.now();
          if (leftNow <= 0) throw e;
          await this.sleep(Math.min(pauseMs, leftNow));
          pauseMs = Math.min(pauseMs * 2, this.pauseMaxMs);
        }
        if (Date.now() >= deadline) throw e;
      }
    }
  }

  /** Close every connection; calls in flight and later ones fail with RpcUnavailable CLOSED. */
  async close(): Promise<void> {
    this.closed = true;
    for (const wake of this.sleepers) wake();
    this.sleepers.clear();
    await Promise.all([...this.clients.values()].map((c) => c.close()));
  }

  /** A hint names the leader: guess it (unless another call moved the guess already). */
  private follow(from: number, hint: string): void {
    let i = this.addrs.indexOf(hint);
    if (i < 0) {
      try {
        splitAddr(hint);
      } catch {
        // Not an address we can dial: as if no hint was given.
        this.advance(from);
        return;
      }
      i = this.addrs.push(hint) - 1;
    }
    if (this.current === from && i !== from) {
      this.current = i;
      this.counters.switches++;
    }
  }

  /** The guess failed: the next address (unless another call moved the guess already). */
  private advance(from: number): void {
    if (this.current !== from) return;
    this.current = (from + 1) % this.addrs.length;
    if (this.current !== from) this.counters.switches++;
  }

  private client(addr: string): RpcClient {
    let c = this.clients.get(addr);
    if (c === undefined) {
      const [host, port] = splitAddr(addr);
      // `[v6]:port`: the host without its brackets.
      c = new RpcClient({ ...this.clientOpts, host: host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host, port });
      this.clients.set(addr, c);
    }
    return c;
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        this.sleepers.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      this.sleepers.add(wake);
    });
  }
}

/** A failure after which another master (or the same one, later) may answer: nothing was refused on its merits. */
function retryable(e: unknown): boolean {
  if (e instanceof RpcTimeout) return true;
  if (e instanceof RpcUnavailable) return e.reason !== 'CLOSED';
  return e instanceof RpcRemoteError && (e.code === NOT_LEADER || e.code === 'SHUTTING_DOWN');
}
