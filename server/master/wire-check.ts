// Checking a moving node's transfer report (WireTransfer, with its ranges) at a boundary:
// the master checks the `progress` body before it keeps it, and `ringkv status` checks
// the master's view before it reads it, so a bad report is refused where it comes in
// instead of breaking whoever shows it later. Pure: no I/O.
import { RANGE_MOVE_STATES, RANGE_MOVE_WAITS, type RangeMoveState, type RangeMoveWait } from './core.js';

/** At most this many ranges in one report (a join moves about vnodes x N ranges). */
export const MAX_REPORTED_RANGES = 100_000;

const isStr = (v: unknown): v is string => typeof v === 'string';
const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const STATES: ReadonlySet<unknown> = new Set<RangeMoveState>(RANGE_MOVE_STATES);
const WAITS: ReadonlySet<unknown> = new Set<RangeMoveWait>(RANGE_MOVE_WAITS);

/** What is wrong with one WireRangeMove; undefined when nothing is. */
export function rangeMoveProblem(r: unknown): string | undefined {
  const x = r as Record<string, unknown> | null;
  if (!x || typeof x !== 'object') return 'a range is not an object';
  if (!isStr(x.start) || !isStr(x.end) || !isStr(x.source) || !isStr(x.target)) return 'a range needs start, end, source and target';
  if (!STATES.has(x.state)) return `bad range state ${JSON.stringify(x.state)}`;
  if (!isNum(x.keys) || !isNum(x.bytes) || !isNum(x.rateBytesPerS) || !isNum(x.retries)) return 'a range needs keys, bytes, rateBytesPerS and retries';
  if (x.waiting !== undefined && !WAITS.has(x.waiting)) return `bad range waiting reason ${JSON.stringify(x.waiting)}`;
  if (x.error !== undefined && !isStr(x.error)) return 'a range error must be text';
  return undefined;
}

/** What is wrong with a WireTransfer (ranges included); undefined when nothing is. */
export function transferProblem(t: unknown): string | undefined {
  const x = t as Record<string, unknown> | null;
  if (!x || typeof x !== 'object' || Array.isArray(x)) return 'not a transfer object';
  if (x.direction !== 'in' && x.direction !== 'out') return 'direction must be in or out';
  if (!isNum(x.keys) || !isNum(x.bytes) || !isNum(x.fraction) || !isNum(x.rateBytesPerS) || typeof x.done !== 'boolean') return 'a transfer needs keys, bytes, fraction, rateBytesPerS and done';
  if (x.etaS !== undefined && !isNum(x.etaS)) return 'etaS must be a number';
  if (x.state !== undefined && !STATES.has(x.state)) return `bad transfer state ${JSON.stringify(x.state)}`;
  if (x.retries !== undefined && !isNum(x.retries)) return 'retries must be a number';
  if (x.ranges === undefined) return undefined;
  if (!Array.isArray(x.ranges)) return 'ranges must be an array';
  if (x.ranges.length > MAX_REPORTED_RANGES) return `${x.ranges.length} ranges: at most ${MAX_REPORTED_RANGES}`;
  for (let i = 0; i < x.ranges.length; i++) {
    const p = rangeMoveProblem(x.ranges[i]);
    if (p !== undefined) return `range ${i}: ${p}`;
  }
  return undefined;
}
