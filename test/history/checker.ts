// The history checker of the fault tests (Jepsen's idea, much simpler): given what the
// clients recorded (recorder.ts), the values read after healing and each replica's
// state, it says whether an acknowledged write was lost, a read returned a value never
// written, or replicas diverged. It is a pure function of plain values.
//
// Words. A *mutation* is a write or a delete. A completed op has an *end*: its completion
// tick if ok; +∞ if info or pending, because an op whose outcome is unknown may take
// effect at any time after its invocation, even after the client gave up on it. A fail
// op certainly did not happen and is ignored, except that a read returning its value is
// reported. An op B *could follow* an op A when B.end > A.invokedAt: B was not known to
// be over before A began, so some real-time-respecting order puts B after A. Otherwise
// (B.end < A.invokedAt, ticks are never equal) B precedes A in real time and cannot
// overwrite it. The *sources* of a value v of key k are the non-failed writes of k with
// value v; the sources of "absent" are the non-failed deletes of k and the initial state
// (whose end is -1, before every tick).
//
// Rules:
// - never-written (error): an ok read of k returned v, yet no source of v was invoked
//   before the read completed: no write of k had v, or only failed ones, or only writes
//   invoked after the read was over. The same for a final read (nothing to compare in
//   time there).
// - lost-write (error): the final read of k returned F. An ok mutation A is lost when
//   every source X of F has X.end < A.invokedAt: F cannot come from A nor from anything
//   that could follow A. This is "the last acknowledged write, not overwritten or
//   deleted by anything that could come after it, must be visible", stated so that it
//   also covers acknowledged deletes (a resurrected value is a lost delete) and
//   acknowledged writes overtaken only by info ops (then either value may be final).
//   Equivalently: F must come from an op that could be last in some order that respects
//   real time, with info ops free to take effect or not. Only the best source (largest
//   end) matters, so the check is linear.
// - stale-read (warning; an error with staleReadsFail): an ok read R of k returned r
//   while an ok mutation A of k had been acknowledged before R began (A.end < R.invokedAt)
//   and began after every source of r that R could see completed. Eventual consistency
//   allows it (a read quorum may miss the newest replica until repair), a linearizable
//   store does not.
// - divergence (error): after healing, two replicas hold different values for a key
//   (a key missing from a replica's map reads as absent).
// - duplicate-value (error): two writes of one key carry the same value, so a read
//   cannot tell them apart; the recorder refuses this, a hand-built history may not.
//
// Cost: O(n log n) in the number of operations; problems are bounded by operations.

import { assert } from '../../server/util/assert.js';
import type { History, Key, Operation, Value } from './recorder.js';

export type Severity = 'error' | 'warning';

interface ProblemBase {
  readonly severity: Severity;
  readonly key: Key;
  /** Every operation involved, in id order (empty for divergence). */
  readonly ops: readonly Operation[];
  /** One line: what is wrong and why. */
  readonly explanation: string;
}

/** A read (or the final read, `read: 'final'`) returned a value with no possible source. */
export interface NeverWritten extends ProblemBase {
  readonly kind: 'never-written';
  readonly read: Operation | 'final';
  readonly value: Value;
}

/** The final value cannot come from an acknowledged mutation or anything that could follow it. */
export interface LostWrite extends ProblemBase {
  readonly kind: 'lost-write';
  readonly finalValue: Value | undefined;
  /** The acknowledged mutations lost, in id order. */
  readonly lost: readonly Operation[];
  /** The best source of the final value: an op, the initial absent state, or none. */
  readonly source: Operation | 'initial' | undefined;
}

/** A read missed a mutation acknowledged before it began (allowed by eventual consistency). */
export interface StaleRead extends ProblemBase {
  readonly kind: 'stale-read';
  readonly read: Operation;
  /** The newest acknowledged mutation the read missed. */
  readonly newer: Operation;
  readonly source: Operation | 'initial';
}

/** Replicas disagree on a key after healing. */
export interface Divergence extends ProblemBase {
  readonly kind: 'divergence';
  readonly replicas: readonly { readonly replica: string; readonly value: Value | undefined }[];
}

/** Two writes of one key carry the same value. */
export interface DuplicateValue extends ProblemBase {
  readonly kind: 'duplicate-value';
  readonly value: Value;
}

export type Problem = NeverWritten | LostWrite | StaleRead | Divergence | DuplicateValue;
export type ProblemKind = Problem['kind'];

/** What each replica holds after healing: replica id -> key -> value (absent = undefined or missing). */
export type ReplicaStates = ReadonlyMap<string, ReadonlyMap<Key, Value | undefined>>;

export interface CheckOptions {
  /** Each replica's state after healing; compared key by key. Default: not checked. */
  replicaStates?: ReplicaStates;
  /** Count stale reads as errors, for a store that claims linearizable reads. Default false. */
  staleReadsFail?: boolean;
}

export interface CheckResult {
  /** No problem of severity error. */
  readonly ok: boolean;
  /** Errors first, then warnings; each group by key, then by the first op involved. */
  readonly problems: readonly Problem[];
}

/**
 * Checks a history. `finalReads` holds, for keys read after healing, the value read
 * (undefined = absent); when given, it must cover every key that a non-failed mutation
 * touched (a forgotten key would pass unchecked).
 */
export function checkHistory(history: History, finalReads?: ReadonlyMap<Key, Value | undefined>, opts: CheckOptions = {}): CheckResult {
  checkWellFormed(history);
  const indexes = indexByKey(history);
  const problems: Problem[] = [];
  for (const index of indexes.values()) {
    problems.push(...duplicateValues(index));
    for (const read of index.reads) problems.push(...checkRead(index, read, opts.staleReadsFail ?? false));
  }
  if (finalReads !== undefined) {
    for (const index of indexes.values()) {
      assert(index.mutated === false || finalReads.has(index.key), `finalReads lacks key ${show(index.key)}, which the history writes or deletes`);
    }
    for (const [key, value] of finalReads) problems.push(...checkFinal(indexes.get(key) ?? new KeyIndex(key), value));
  }
  if (opts.replicaStates !== undefined) problems.push(...divergences(opts.replicaStates));
  problems.sort(byReport);
  return { ok: !problems.some((p) => p.severity === 'error'), problems };
}

// --- time ---

/** The end of a non-failed op: +∞ when its outcome is unknown. */
function endOf(op: Operation): number {
  switch (op.completion.type) {
    case 'ok':
      return op.completion.at;
    case 'info':
    case 'pending':
      return Number.POSITIVE_INFINITY;
    case 'fail':
      throw new Error(`endOf(#${op.id}): a failed op has no effect, hence no end`);
    default: {
      const never: never = op.completion;
      throw new Error(`unknown completion ${JSON.stringify(never)}`);
    }
  }
}

/** The initial absent state ends before every tick. */
const INITIAL_END = -1;

// --- per-key index ---

class KeyIndex {
  /** Every write of the key, failed ones too, by value. */
  readonly writesByValue = new Map<Value, Operation[]>();
  /** Non-failed deletes, by invocation tick; `deleteBest[i]` has the largest end among deletes[0..i]. */
  readonly deletes: Operation[] = [];
  readonly deleteBest: Operation[] = [];
  /** Ok mutations, by end; `ackedNewest[i]` was invoked last among acked[0..i]. */
  readonly acked: Operation[] = [];
  readonly ackedNewest: Operation[] = [];
  /** Ok reads. */
  readonly reads: Operation[] = [];
  /** Some non-failed mutation touched the key. */
  mutated = false;

  constructor(readonly key: Key) {}

  add(op: Operation): void {
    assert(op.call.key === this.key, 'an op filed under another key');
    const failed = op.completion.type === 'fail';
    if (op.call.kind === 'write') {
      const same = this.writesByValue.get(op.call.value) ?? [];
      same.push(op);
      this.writesByValue.set(op.call.value, same);
    }
    if (op.call.kind === 'read') {
      if (op.completion.type === 'ok') this.reads.push(op);
      return;
    }
    if (failed) return;
    this.mutated = true;
    if (op.call.kind === 'delete') this.deletes.push(op);
    if (op.completion.type === 'ok') this.acked.push(op);
  }

  /** Sorts and builds the prefix tables once every op is added. */
  seal(): void {
    this.deletes.sort((a, b) => a.invokedAt - b.invokedAt);
    this.acked.sort((a, b) => endOf(a) - endOf(b));
    prefixBest(this.deletes, this.deleteBest, (a, b) => endOf(a) > endOf(b));
    prefixBest(this.acked, this.ackedNewest, (a, b) => a.invokedAt > b.invokedAt);
    assert(this.deleteBest.length === this.deletes.length && this.ackedNewest.length === this.acked.length, 'prefix tables out of step');
  }

  /**
   * The best source of `value` among ops invoked before `before`: the one with the
   * largest end (the one that could follow the most). `undefined` when there is none.
   */
  bestSource(value: Value | undefined, before: number): { op: Operation | 'initial'; end: number } | undefined {
    if (value === undefined) {
      const n = countBelow(this.deletes, before, (d) => d.invokedAt);
      const best = n > 0 ? this.deleteBest[n - 1] : undefined;
      return best === undefined ? { op: 'initial', end: INITIAL_END } : { op: best, end: endOf(best) };
    }
    let best: Operation | undefined;
    for (const w of this.writesByValue.get(value) ?? []) {
      if (w.completion.type === 'fail' || w.invokedAt >= before) continue;
      if (best === undefined || endOf(w) > endOf(best)) best = w;
    }
    return best === undefined ? undefined : { op: best, end: endOf(best) };
  }

  /** The acknowledged mutation invoked last among those that ended before `before`. */
  newestAckedBefore(before: number): Operation | undefined {
    const n = countBelow(this.acked, before, endOf);
    return n > 0 ? this.ackedNewest[n - 1] : undefined;
  }
}

function indexByKey(history: History): Map<Key, KeyIndex> {
  const indexes = new Map<Key, KeyIndex>();
  for (const op of history) {
    let index = indexes.get(op.call.key);
    if (index === undefined) {
      index = new KeyIndex(op.call.key);
      indexes.set(op.call.key, index);
    }
    index.add(op);
  }
  for (const index of indexes.values()) index.seal();
  return indexes;
}

/** out[i] = the best of items[0..i] by `better`. */
function prefixBest<T>(items: readonly T[], out: T[], better: (a: T, b: T) => boolean): void {
  let best: T | undefined;
  for (const item of items) {
    if (best === undefined || better(item, best)) best = item;
    out.push(best);
  }
}

/** How many items, sorted ascending by `of`, have `of(item) < bound`. */
function countBelow<T>(items: readonly T[], bound: number, of: (item: T) => number): number {
  let lo = 0;
  let hi = items.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (of(items[mid]!) < bound) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

// --- rules ---

function checkRead(index: KeyIndex, read: Operation, staleReadsFail: boolean): Problem[] {
  assert(read.call.kind === 'read' && read.completion.type === 'ok', 'checkRead takes ok reads');
  const value = read.completion.value;
  const readEnd = endOf(read);
  const source = index.bestSource(value, readEnd);
  if (source === undefined) {
    assert(value !== undefined, 'absent always has a source: the initial state');
    return [neverWritten(index, read, value)];
  }
  const newer = index.newestAckedBefore(read.invokedAt);
  if (newer === undefined || newer.invokedAt < source.end) return [];
  return [
    {
      kind: 'stale-read',
      severity: staleReadsFail ? 'error' : 'warning',
      key: index.key,
      read,
      newer,
      source: source.op,
      ops: byId([read, newer, ...(source.op === 'initial' ? [] : [source.op])]),
      explanation:
        `read #${read.id} began @${read.invokedAt} and returned ${show(value)} from ${describeSource(source.op)}, ` +
        `though #${newer.id} (${describeCall(newer)}) was acknowledged @${endOf(newer)} and began @${newer.invokedAt}, after that source; ` +
        `eventual consistency allows this`,
    },
  ];
}

function neverWritten(index: KeyIndex, read: Operation | 'final', value: Value): NeverWritten {
  const writes = index.writesByValue.get(value) ?? [];
  const readEnd = read === 'final' ? Number.POSITIVE_INFINITY : endOf(read);
  const why =
    writes.length === 0
      ? 'no write of this key ever had that value'
      : writes
          .map((w) =>
            w.completion.type === 'fail'
              ? `#${w.id} had it but was recorded as fail (certainly not applied)`
              : `#${w.id} had it but was invoked @${w.invokedAt}, after the read completed @${readEnd}`,
          )
          .join('; ');
  const who = read === 'final' ? 'the final read' : `read #${read.id}`;
  return {
    kind: 'never-written',
    severity: 'error',
    key: index.key,
    read,
    value,
    ops: byId([...(read === 'final' ? [] : [read]), ...writes]),
    explanation: `${who} returned ${show(value)}: ${why}`,
  };
}

function checkFinal(index: KeyIndex, value: Value | undefined): Problem[] {
  const problems: Problem[] = [];
  const source = index.bestSource(value, Number.POSITIVE_INFINITY);
  if (source === undefined) {
    assert(value !== undefined, 'absent always has a source: the initial state');
    problems.push(neverWritten(index, 'final', value));
  }
  const sourceEnd = source?.end ?? Number.NEGATIVE_INFINITY;
  const lost = index.acked.filter((a) => a.invokedAt > sourceEnd);
  if (lost.length === 0) return problems;
  const newest = lost.reduce((a, b) => (b.invokedAt > a.invokedAt ? b : a));
  const from = source === undefined ? 'has no source' : `can only come from ${describeSource(source.op)}`;
  problems.push({
    kind: 'lost-write',
    severity: 'error',
    key: index.key,
    finalValue: value,
    lost: byId(lost),
    source: source?.op,
    ops: byId([...lost, ...(source === undefined || source.op === 'initial' ? [] : [source.op])]),
    explanation:
      `final value ${show(value)} ${from}, yet #${newest.id} (${describeCall(newest)}) was acknowledged @${endOf(newest)} ` +
      `and began @${newest.invokedAt}, after that: it or a later-or-concurrent write/delete must show` +
      (lost.length > 1 ? ` (${lost.length} acknowledged mutations lost)` : ''),
  });
  return problems;
}

function duplicateValues(index: KeyIndex): Problem[] {
  const problems: Problem[] = [];
  for (const [value, writes] of index.writesByValue) {
    if (writes.length < 2) continue;
    problems.push({
      kind: 'duplicate-value',
      severity: 'error',
      key: index.key,
      value,
      ops: byId(writes),
      explanation: `${writes.length} writes (${writes.map((w) => `#${w.id}`).join(', ')}) carry ${show(value)}: a read cannot tell which one it saw`,
    });
  }
  return problems;
}

function divergences(replicaStates: ReplicaStates): Problem[] {
  const replicas = [...replicaStates.keys()].sort();
  const keys = new Set<Key>();
  for (const state of replicaStates.values()) for (const key of state.keys()) keys.add(key);
  const problems: Problem[] = [];
  for (const key of [...keys].sort()) {
    const values = replicas.map((replica) => ({ replica, value: replicaStates.get(replica)!.get(key) }));
    if (values.every((v) => v.value === values[0]!.value)) continue;
    problems.push({
      kind: 'divergence',
      severity: 'error',
      key,
      replicas: values,
      ops: [],
      explanation: `replicas disagree after healing: ${values.map((v) => `${v.replica}=${show(v.value)}`).join(', ')}`,
    });
  }
  return problems;
}

// --- well-formedness (programmer errors in the test, not findings) ---

function checkWellFormed(history: History): void {
  const ids = new Set<number>();
  const ticks = new Set<number>();
  for (const op of history) {
    assert(!ids.has(op.id), `op id #${op.id} appears twice`);
    ids.add(op.id);
    assert(Number.isSafeInteger(op.invokedAt) && op.invokedAt >= 0, `op #${op.id}: invokedAt ${op.invokedAt} is not a tick`);
    assert(!ticks.has(op.invokedAt), `tick @${op.invokedAt} is used twice`);
    ticks.add(op.invokedAt);
    if (op.completion.type === 'pending') continue;
    const at = op.completion.at;
    assert(Number.isSafeInteger(at) && at > op.invokedAt, `op #${op.id} completes @${at}, not after its invocation @${op.invokedAt}`);
    assert(!ticks.has(at), `tick @${at} is used twice`);
    ticks.add(at);
  }
}

// --- formatting ---

function byId(ops: readonly Operation[]): Operation[] {
  return [...new Set(ops)].sort((a, b) => a.id - b.id);
}

function byReport(a: Problem, b: Problem): number {
  if (a.severity !== b.severity) return a.severity === 'error' ? -1 : 1;
  if (a.key !== b.key) return a.key < b.key ? -1 : 1;
  return (a.ops[0]?.id ?? -1) - (b.ops[0]?.id ?? -1);
}

const VALUE_SHOWN_MAX = 40;

function show(value: Value | undefined): string {
  if (value === undefined) return 'absent';
  const text = JSON.stringify(value);
  return text.length <= VALUE_SHOWN_MAX ? text : `${text.slice(0, VALUE_SHOWN_MAX - 4)}..."`;
}

function describeCall(op: Operation): string {
  return op.call.kind === 'write' ? `write ${show(op.call.value)}` : op.call.kind;
}

function describeSource(source: Operation | 'initial'): string {
  if (source === 'initial') return 'the initial state (no delete could follow)';
  const end = endOf(source);
  return `#${source.id} (${describeCall(source)}, ${end === Number.POSITIVE_INFINITY ? 'outcome unknown' : `completed @${end}`})`;
}

/** One operation on one line: `#9 c1 write k="v3" invoked @12, ok @13`. */
export function formatOp(op: Operation): string {
  const call = op.call.kind === 'write' ? `write ${show(op.call.key)}=${show(op.call.value)}` : `${op.call.kind} ${show(op.call.key)}`;
  const c = op.completion;
  const outcome =
    c.type === 'pending'
      ? 'pending'
      : c.type === 'ok'
        ? `ok @${c.at}${op.call.kind === 'read' ? ` -> ${show(c.value)}` : ''}`
        : `${c.type} @${c.at} (${c.reason})`;
  return `#${op.id} ${op.client} ${call} invoked @${op.invokedAt}, ${outcome}`;
}

export interface FormatOptions {
  /** Most problems listed; the rest are counted. Default 20. */
  maxProblems?: number;
  /** Most operations listed under one problem. Default 6. */
  maxOpsPerProblem?: number;
}

/** A report for a test failure message: a summary line, then each problem and its ops. */
export function formatProblems(problems: readonly Problem[], opts: FormatOptions = {}): string {
  const maxProblems = opts.maxProblems ?? 20;
  const maxOps = opts.maxOpsPerProblem ?? 6;
  assert(maxProblems > 0 && maxOps > 0, 'format limits must be positive');
  if (problems.length === 0) return 'history check: no problems';
  const errors = problems.filter((p) => p.severity === 'error').length;
  const lines = [`history check: ${errors} error(s), ${problems.length - errors} warning(s)`];
  problems.slice(0, maxProblems).forEach((p, i) => {
    lines.push(`${i + 1}. [${p.severity}] ${p.kind} key ${show(p.key)}: ${p.explanation}`);
    for (const op of p.ops.slice(0, maxOps)) lines.push(`     ${formatOp(op)}`);
    if (p.ops.length > maxOps) lines.push(`     ... and ${p.ops.length - maxOps} more operations`);
  });
  if (problems.length > maxProblems) lines.push(`... and ${problems.length - maxProblems} more problems`);
  return lines.join('\n');
}
