// Each node's own opinion of which peers answer (Dynamo §4.8.1: local failure detection,
// no global view needed). The master's view is slow by design (a peer is down for it only
// once its lease ran out); replication needs to stop waiting on a silent peer within a
// heartbeat, so a write meant for it goes to a fallback node with a hint at once.
//
// A peer is down after a failed call (timeout, refused connection) and up again after any
// call that succeeded; the node pings every peer that is down, or that it has not heard
// from for a heartbeat, so "up again" is noticed within about one heartbeat too.
// Listeners hear each down -> up transition (hinted handoff replays then).
import { assert } from '../util/assert.js';

export interface FailureDetectorOptions {
  now(): number;
  /** Pings a peer; rejects when it does not answer in time. */
  ping(peerId: string): Promise<void>;
  heartbeatMs: number;
}

export class FailureDetector {
  private readonly down = new Map<string, number>();
  private readonly heard = new Map<string, number>();
  private readonly pinging = new Set<string>();
  private readonly upListeners: Array<(peerId: string) => void> = [];
  private timer: NodeJS.Timeout | undefined;
  /** Transitions seen, for stats. */
  downs = 0;

  constructor(private readonly o: FailureDetectorOptions) {
    assert(o.heartbeatMs > 0, 'heartbeatMs must be positive');
  }

  isDown(peerId: string): boolean {
    return this.down.has(peerId);
  }

  downPeers(): string[] {
    return [...this.down.keys()].sort();
  }

  /** A call to the peer failed: it is down until a call succeeds. */
  failed(peerId: string): void {
    if (!this.down.has(peerId)) {
      this.down.set(peerId, this.o.now());
      this.downs++;
    }
  }

  /** A call to the peer succeeded. */
  answered(peerId: string): void {
    this.heard.set(peerId, this.o.now());
    if (this.down.delete(peerId)) for (const l of this.upListeners) l(peerId);
  }

  onUp(listener: (peerId: string) => void): void {
    this.upListeners.push(listener);
  }

  /** Forget a peer that left the cluster. */
  forget(peerId: string): void {
    this.down.delete(peerId);
    this.heard.delete(peerId);
  }

  /** Starts pinging `peers()` (re-read every beat). */
  start(peers: () => readonly string[]): void {
    assert(this.timer === undefined, 'failure detector already started');
    this.timer = setInterval(() => this.beat(peers()), this.o.heartbeatMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** One heartbeat: ping each peer that is down or quiet for a heartbeat (one ping in flight per peer). */
  beat(peers: readonly string[]): void {
    const now = this.o.now();
    for (const id of peers) {
      if (this.pinging.has(id)) continue;
      if (!this.down.has(id) && now - (this.heard.get(id) ?? -Infinity) < this.o.heartbeatMs) continue;
      this.pinging.add(id);
      this.o.ping(id).then(
        () => this.answered(id),
        () => this.failed(id),
      ).finally(() => this.pinging.delete(id));
    }
  }
}
