// Replica traffic, one RPC per peer per event-loop turn: the items that requests handled
// in one turn address to one peer (replica writes, quorum-read fetches) travel together
// in one call, flushed when the turn's I/O callbacks are done (setImmediate). Under load a
// turn handles many requests, so the frames, envelopes, syscalls and replies per item
// fall as the load rises; an idle node sends each item alone, one turn late.
//
// Invariants:
// - every item added is settled exactly once: with its own result when the call
//   succeeds, with the call's error when it fails (the caller decides what a failure
//   means per item: a hint, a missing answer);
// - bounded: a peer's batch is sent at once when it reaches maxItems or maxBytes, so no
//   call carries more than those (one item larger than maxBytes goes alone).

export interface CoalescerOptions<I, R> {
  /** Sends one batch to one peer; resolves with one result per item, in order. */
  send(peer: string, items: I[]): Promise<R[]>;
  /** Items per call. */
  maxItems: number;
  /** Bytes per call, as `bytes` counts them. */
  maxBytes: number;
  /** An item's size toward maxBytes. */
  bytes(item: I): number;
}

interface Batch<I, R> {
  items: I[];
  bytes: number;
  waiters: Array<{ resolve: (r: R) => void; reject: (e: unknown) => void }>;
}

export class Coalescer<I, R> {
  private readonly batches = new Map<string, Batch<I, R>>();
  private scheduled = false;
  /** Calls made and items sent: items / calls is the batching achieved. */
  readonly counters = { calls: 0, items: 0 };

  constructor(private readonly o: CoalescerOptions<I, R>) {}

  /** Queues `item` for `peer`; settles when the call carrying it does. */
  add(peer: string, item: I): Promise<R> {
    const size = this.o.bytes(item);
    let b = this.batches.get(peer);
    if (b && b.bytes + size > this.o.maxBytes) {
      this.flush(peer, b);
      b = undefined;
    }
    if (!b) {
      b = { items: [], bytes: 0, waiters: [] };
      this.batches.set(peer, b);
    }
    const batch = b;
    batch.items.push(item);
    batch.bytes += size;
    const p = new Promise<R>((resolve, reject) => batch.waiters.push({ resolve, reject }));
    if (batch.items.length >= this.o.maxItems || batch.bytes >= this.o.maxBytes) this.flush(peer, batch);
    else if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.flushAll);
    }
    return p;
  }

  private readonly flushAll = (): void => {
    this.scheduled = false;
    for (const [peer, b] of this.batches) this.flush(peer, b);
  };

  private flush(peer: string, b: Batch<I, R>): void {
    this.batches.delete(peer);
    this.counters.calls++;
    this.counters.items += b.items.length;
    let sent: Promise<R[]>;
    try {
      sent = this.o.send(peer, b.items);
    } catch (e) {
      sent = Promise.reject(e);
    }
    sent.then(
      (results) => {
        for (let i = 0; i < b.waiters.length; i++) {
          if (i < results.length) b.waiters[i]!.resolve(results[i]!);
          else b.waiters[i]!.reject(new Error(`batch reply has ${results.length} results for ${b.items.length} items`));
        }
      },
      (e: unknown) => {
        for (const w of b.waiters) w.reject(e);
      },
    );
  }
}
