// The history recorder of the fault tests: concurrent clients note every operation they
// start (invoke) and how it ended (ok, fail, info), and checker.ts judges the result.
//
// Time is a logical counter, not a clock: every event (an invocation or a completion)
// takes the next tick, so "A completed before B was invoked" is an exact comparison of
// two ticks and no wall clock or timer can blur it. A client records `invoke` just before
// it sends a request and `ok` just after the reply arrived, so a tick order between two
// events is a real-time order between the operations.
//
// Outcomes (Jepsen's words):
// - ok:   the operation happened; a read carries the value it returned (undefined = absent);
// - fail: the operation certainly did not happen (a typed error known to come before any
//         byte was sent: InvalidKey, ValueTooLarge, a connect that failed);
// - info: the outcome is unknown (Timeout, Unavailable{sent}, connection lost after
//         sending); the operation may take effect at any later time, even after `info`
//         was recorded, since the request may still be travelling;
// - pending (never completed): treated as info.
//
// Invariants: ticks strictly increase; an operation completes at most once; within one
// key, no two writes carry the same value (the checker identifies a write by the value a
// read returns); at most maxOps operations, past which invoke throws HistoryFull.

import { assert } from '../../server/util/assert.js';

/** A logical instant: the index of an event in the recorder (0, 1, 2, ...). */
export type Tick = number & { readonly __brand: 'Tick' };
/** An operation's index in the history (0, 1, 2, ...), in invocation order. */
export type OpId = number & { readonly __brand: 'OpId' };
/** A client's name, e.g. `c0`; one client runs one operation at a time. */
export type ClientId = string;
/** Keys and values are strings here: a test turns Buffers into hex or text. */
export type Key = string;
export type Value = string;

/** What a client asked for. */
export type Call =
  | { readonly kind: 'write'; readonly key: Key; readonly value: Value }
  | { readonly kind: 'read'; readonly key: Key }
  | { readonly kind: 'delete'; readonly key: Key };

/** How an operation ended; `at` is the tick of the completion event. */
export type Completion =
  | { readonly type: 'ok'; readonly at: Tick; /** A read's result; undefined = absent. Unused for writes and deletes. */ readonly value?: Value | undefined }
  | { readonly type: 'fail'; readonly at: Tick; readonly reason: string }
  | { readonly type: 'info'; readonly at: Tick; readonly reason: string }
  | { readonly type: 'pending' };

/** One operation of the history, as the checker reads it. */
export interface Operation {
  readonly id: OpId;
  readonly client: ClientId;
  readonly call: Call;
  readonly invokedAt: Tick;
  readonly completion: Completion;
}

/** The recorder's history: operations in invocation order, `history[i].id === i`. */
export type History = readonly Operation[];

/** Most operations a recorder keeps, unless told otherwise. */
export const MAX_OPS_DEFAULT = 100_000;

export interface HistoryRecorderOptions {
  /** Most operations recorded; the next invoke throws HistoryFull. Default MAX_OPS_DEFAULT. */
  maxOps?: number;
}

/** Thrown by invoke when maxOps operations are already recorded. */
export class HistoryFull extends Error {
  override readonly name = 'HistoryFull';
  readonly code = 'HISTORY_FULL';
  constructor(readonly maxOps: number) {
    super(`the history already holds maxOps = ${maxOps} operations`);
  }
}

export class HistoryRecorder {
  readonly maxOps: number;
  private readonly ops: Operation[] = [];
  private tickNext = 0;
  /** `key \0 value` of every write invoked, to keep values unique per key. */
  private readonly written = new Set<string>();

  constructor(opts: HistoryRecorderOptions = {}) {
    this.maxOps = opts.maxOps ?? MAX_OPS_DEFAULT;
    assert(Number.isSafeInteger(this.maxOps) && this.maxOps > 0, `maxOps must be a positive integer, got ${this.maxOps}`);
  }

  /** Notes that `client` is about to send `call`; returns the handle to complete it with. */
  invoke(client: ClientId, call: Call): OpId {
    if (this.ops.length >= this.maxOps) throw new HistoryFull(this.maxOps);
    if (call.kind === 'write') {
      const tag = `${call.key}\0${call.value}`;
      assert(!this.written.has(tag), `write of ${JSON.stringify(call.value)} to key ${JSON.stringify(call.key)} repeats a value: values must be unique per key`);
      this.written.add(tag);
    }
    const id = this.ops.length as OpId;
    this.ops.push({ id, client, call: { ...call }, invokedAt: this.tick(), completion: { type: 'pending' } });
    return id;
  }

  /** The operation happened; for a read, `value` is what it returned (undefined = absent). */
  ok(op: OpId, value?: Value | undefined): void {
    this.complete(op, (at) => ({ type: 'ok', at, value }));
  }

  /** The operation certainly did not happen (the error is known to precede sending). */
  fail(op: OpId, reason: string): void {
    this.complete(op, (at) => ({ type: 'fail', at, reason }));
  }

  /** The outcome is unknown: the operation may have happened, now or later, or never. */
  info(op: OpId, reason: string): void {
    this.complete(op, (at) => ({ type: 'info', at, reason }));
  }

  /** A snapshot of the operations so far; those not completed are `pending`. */
  history(): History {
    return this.ops.slice();
  }

  get size(): number {
    return this.ops.length;
  }

  private complete(id: OpId, completion: (at: Tick) => Completion): void {
    const op = this.ops[id];
    assert(op !== undefined, `no operation #${id} was invoked`);
    assert(op.completion.type === 'pending', `operation #${id} already completed (${op.completion.type})`);
    this.ops[id] = { ...op, completion: completion(this.tick()) };
  }

  private tick(): Tick {
    assert(Number.isSafeInteger(this.tickNext), 'the tick counter overflowed');
    return this.tickNext++ as Tick;
  }
}
