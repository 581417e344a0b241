// The recorder's contract: one tick per event, completions once, values unique per key,
// and a bound on the number of operations.
import { describe, expect, it } from 'vitest';
import { AssertionError } from '../../server/util/assert.js';
import { HistoryFull, HistoryRecorder, MAX_OPS_DEFAULT } from './recorder.js';

describe('HistoryRecorder', () => {
  it('gives every event the next tick and keeps ops in invocation order', () => {
    const rec = new HistoryRecorder();
    const a = rec.invoke('c0', { kind: 'write', key: 'k', value: 'a' });
    const b = rec.invoke('c1', { kind: 'read', key: 'k' });
    rec.ok(b, 'a');
    rec.info(a, 'timeout');
    const c = rec.invoke('c1', { kind: 'delete', key: 'k' });
    rec.fail(c, 'connect refused');
    const d = rec.invoke('c1', { kind: 'read', key: 'k' });
    const h = rec.history();
    expect(h.map((op) => op.id)).toEqual([a, b, c, d]);
    expect(h.map((op) => op.invokedAt)).toEqual([0, 1, 4, 6]);
    expect(h.map((op) => op.completion)).toEqual([
      { type: 'info', at: 3, reason: 'timeout' },
      { type: 'ok', at: 2, value: 'a' },
      { type: 'fail', at: 5, reason: 'connect refused' },
      { type: 'pending' },
    ]);
  });

  it('returns snapshots: a later completion does not change an earlier history', () => {
    const rec = new HistoryRecorder();
    const a = rec.invoke('c0', { kind: 'read', key: 'k' });
    const before = rec.history();
    rec.ok(a);
    expect(before[0]!.completion).toEqual({ type: 'pending' });
    expect(rec.history()[0]!.completion.type).toBe('ok');
  });

  it('refuses a second completion and an op it never saw', () => {
    const rec = new HistoryRecorder();
    const a = rec.invoke('c0', { kind: 'write', key: 'k', value: 'a' });
    rec.ok(a);
    expect(() => rec.info(a, 'late')).toThrow(AssertionError);
    expect(() => rec.ok((a + 1) as typeof a)).toThrow(AssertionError);
  });

  it('refuses a repeated value on one key, allows it on another', () => {
    const rec = new HistoryRecorder();
    rec.invoke('c0', { kind: 'write', key: 'k', value: 'v' });
    rec.invoke('c1', { kind: 'write', key: 'j', value: 'v' });
    expect(() => rec.invoke('c2', { kind: 'write', key: 'k', value: 'v' })).toThrow(/unique per key/);
  });

  it('throws HistoryFull past maxOps', () => {
    expect(new HistoryRecorder().maxOps).toBe(MAX_OPS_DEFAULT);
    const rec = new HistoryRecorder({ maxOps: 2 });
    rec.invoke('c0', { kind: 'read', key: 'k' });
    rec.invoke('c1', { kind: 'read', key: 'k' });
    expect(() => rec.invoke('c2', { kind: 'read', key: 'k' })).toThrow(HistoryFull);
    expect(rec.size).toBe(2);
    expect(() => new HistoryRecorder({ maxOps: 0 })).toThrow(AssertionError);
  });
});
