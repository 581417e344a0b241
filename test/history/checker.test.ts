// Hand-built histories, one rule at a time. The recorder is the notation: each line below
// is one event, so the tick order of the events is the order of the lines.
import { describe, expect, it } from 'vitest';
import { AssertionError } from '../../server/util/assert.js';
import { checkHistory, formatProblems, type LostWrite, type NeverWritten, type Problem, type StaleRead } from './checker.js';
import { HistoryRecorder, type Call, type History, type Operation, type OpId, type Value } from './recorder.js';

const write = (key: string, value: string): Call => ({ kind: 'write', key, value });
const read = (key: string): Call => ({ kind: 'read', key });
const del = (key: string): Call => ({ kind: 'delete', key });

/** Invokes and completes at once: a sequential op. */
function done(rec: HistoryRecorder, client: string, call: Call, value?: Value): OpId {
  const op = rec.invoke(client, call);
  rec.ok(op, value);
  return op;
}

const final = (entries: Record<string, Value | undefined>): Map<string, Value | undefined> => new Map(Object.entries(entries));

function kinds(problems: readonly Problem[]): string[] {
  return problems.map((p) => p.kind);
}

function only<K extends Problem['kind']>(problems: readonly Problem[], kind: K): Extract<Problem, { kind: K }> {
  expect(kinds(problems), formatProblems(problems)).toEqual([kind]);
  return problems[0] as Extract<Problem, { kind: K }>;
}

function expectOk(history: History, finals?: Map<string, Value | undefined>): void {
  const result = checkHistory(history, finals);
  expect(result.problems, formatProblems(result.problems)).toEqual([]);
  expect(result.ok).toBe(true);
}

describe('a correct sequential history', () => {
  it('passes', () => {
    const rec = new HistoryRecorder();
    done(rec, 'c0', write('k', 'a'));
    done(rec, 'c1', read('k'), 'a');
    done(rec, 'c0', write('k', 'b'));
    done(rec, 'c1', read('k'), 'b');
    done(rec, 'c0', del('k'));
    done(rec, 'c1', read('k'), undefined);
    done(rec, 'c0', write('j', 'x'));
    done(rec, 'c1', read('missing'), undefined);
    expectOk(rec.history(), final({ k: undefined, j: 'x', missing: undefined }));
  });
});

describe('never-written', () => {
  it('a read of a value no write had fails', () => {
    const rec = new HistoryRecorder();
    done(rec, 'c0', write('k', 'a'));
    const r = done(rec, 'c1', read('k'), 'zzz');
    const result = checkHistory(rec.history(), final({ k: 'a' }));
    expect(result.ok).toBe(false);
    const p = only(result.problems, 'never-written') as NeverWritten;
    expect(p.key).toBe('k');
    expect(p.value).toBe('zzz');
    expect(p.read).toMatchObject({ id: r });
    expect(p.explanation).toMatch(/no write of this key ever had that value/);
  });

  it('a read of the value of a write recorded as fail fails', () => {
    const rec = new HistoryRecorder();
    const w = rec.invoke('c0', write('k', 'a'));
    rec.fail(w, 'ValueTooLarge');
    done(rec, 'c1', read('k'), 'a');
    const p = only(checkHistory(rec.history()).problems, 'never-written');
    expect(p.ops.map((op) => op.id)).toEqual([0, 1]);
    expect(p.explanation).toMatch(/recorded as fail/);
  });

  it('a read that completed before the write was invoked fails (a value from the future)', () => {
    const rec = new HistoryRecorder();
    done(rec, 'c1', read('k'), 'a');
    done(rec, 'c0', write('k', 'a'));
    const p = only(checkHistory(rec.history(), final({ k: 'a' })).problems, 'never-written');
    expect(p.explanation).toMatch(/after the read completed/);
  });

  it('a read of a write still in flight, or with an unknown outcome, passes', () => {
    const rec = new HistoryRecorder();
    const pending = rec.invoke('c0', write('k', 'a'));
    done(rec, 'c1', read('k'), 'a');
    const lost = rec.invoke('c2', write('j', 'b'));
    rec.info(lost, 'timeout');
    done(rec, 'c1', read('j'), 'b');
    expect(pending).toBe(0);
    expectOk(rec.history(), final({ k: 'a', j: 'b' }));
  });

  it('a final read of a value no write had is reported, together with the write it lost', () => {
    const rec = new HistoryRecorder();
    const w = done(rec, 'c0', write('k', 'a'));
    const result = checkHistory(rec.history(), final({ k: 'garbage' }));
    expect(kinds(result.problems)).toEqual(['never-written', 'lost-write']);
    expect((result.problems[0] as NeverWritten).read).toBe('final');
    expect((result.problems[1] as LostWrite).lost.map((op) => op.id)).toEqual([w]);
  });
});

describe('lost-write', () => {
  it('an acknowledged write missing from the final state, with nothing after it, fails', () => {
    const rec = new HistoryRecorder();
    const a = done(rec, 'c0', write('k', 'a'));
    const b = done(rec, 'c1', write('k', 'b'));
    done(rec, 'c2', read('k'), 'b');
    const result = checkHistory(rec.history(), final({ k: 'a' }));
    expect(result.ok).toBe(false);
    const p = only(result.problems, 'lost-write') as LostWrite;
    expect(p.key).toBe('k');
    expect(p.lost.map((op) => op.id)).toEqual([b]);
    expect(p.source).toMatchObject({ id: a });
    expect(p.explanation).toMatch(/final value "a" can only come from #0/);
  });

  it('an acknowledged write that vanished (final absent, no delete) fails', () => {
    const rec = new HistoryRecorder();
    const a = done(rec, 'c0', write('k', 'a'));
    const p = only(checkHistory(rec.history(), final({ k: undefined })).problems, 'lost-write') as LostWrite;
    expect(p.lost.map((op) => op.id)).toEqual([a]);
    expect(p.source).toBe('initial');
  });

  it('passes when a later write is what the final state shows', () => {
    const rec = new HistoryRecorder();
    done(rec, 'c0', write('k', 'a'));
    done(rec, 'c1', write('k', 'b'));
    expectOk(rec.history(), final({ k: 'b' }));
  });

  it('passes when a later delete explains an absent final state', () => {
    const rec = new HistoryRecorder();
    done(rec, 'c0', write('k', 'a'));
    done(rec, 'c1', del('k'));
    expectOk(rec.history(), final({ k: undefined }));
  });

  it('an acknowledged delete undone (the value resurrected) fails', () => {
    const rec = new HistoryRecorder();
    done(rec, 'c0', write('k', 'a'));
    const d = done(rec, 'c1', del('k'));
    const p = only(checkHistory(rec.history(), final({ k: 'a' })).problems, 'lost-write') as LostWrite;
    expect(p.lost.map((op) => op.id)).toEqual([d]);
    expect(p.explanation).toMatch(/\(delete\)/);
  });

  it('a later write recorded as fail does not excuse the loss', () => {
    const rec = new HistoryRecorder();
    done(rec, 'c0', write('k', 'a'));
    const b = done(rec, 'c0', write('k', 'b'));
    const c = rec.invoke('c1', write('k', 'c'));
    rec.fail(c, 'InvalidKey');
    const p = only(checkHistory(rec.history(), final({ k: 'a' })).problems, 'lost-write') as LostWrite;
    expect(p.lost.map((op) => op.id)).toEqual([b]);
  });

  it('names every acknowledged mutation lost, and counts them', () => {
    const rec = new HistoryRecorder();
    done(rec, 'c0', write('k', 'a'));
    const b = done(rec, 'c0', write('k', 'b'));
    const c = done(rec, 'c0', write('k', 'c'));
    const p = only(checkHistory(rec.history(), final({ k: 'a' })).problems, 'lost-write') as LostWrite;
    expect(p.lost.map((op) => op.id)).toEqual([b, c]);
    expect(p.explanation).toMatch(/#2 .* \(2 acknowledged mutations lost\)/);
  });

  it('a write with an unknown outcome (info) may or may not be in the final state', () => {
    const rec = new HistoryRecorder();
    done(rec, 'c0', write('k', 'a'));
    const b = rec.invoke('c1', write('k', 'b'));
    rec.info(b, 'timeout');
    expectOk(rec.history(), final({ k: 'a' }));
    expectOk(rec.history(), final({ k: 'b' }));
  });

  it('an info write may land after a later acknowledged write (it may still be travelling)', () => {
    const rec = new HistoryRecorder();
    const b = rec.invoke('c1', write('k', 'b'));
    rec.info(b, 'connection lost after sending');
    done(rec, 'c0', write('k', 'c'));
    expectOk(rec.history(), final({ k: 'b' }));
    expectOk(rec.history(), final({ k: 'c' }));
  });

  it('a write never completed (pending) may or may not be in the final state', () => {
    const rec = new HistoryRecorder();
    done(rec, 'c0', write('k', 'a'));
    rec.invoke('c1', write('k', 'b'));
    expectOk(rec.history(), final({ k: 'a' }));
    expectOk(rec.history(), final({ k: 'b' }));
  });

  it('of two overlapping writes either may be final, but not the one both followed', () => {
    const rec = new HistoryRecorder();
    done(rec, 'c2', write('k', 'old'));
    const a = rec.invoke('c0', write('k', 'a'));
    const b = rec.invoke('c1', write('k', 'b'));
    rec.ok(a);
    rec.ok(b);
    expectOk(rec.history(), final({ k: 'a' }));
    expectOk(rec.history(), final({ k: 'b' }));
    const p = only(checkHistory(rec.history(), final({ k: 'old' })).problems, 'lost-write') as LostWrite;
    expect(p.lost.map((op) => op.id)).toEqual([a, b]);
  });

  it('a write that completed before another began cannot be final', () => {
    const rec = new HistoryRecorder();
    const a = rec.invoke('c0', write('k', 'a'));
    const d = rec.invoke('c1', del('k'));
    rec.ok(a);
    rec.ok(d);
    const b = done(rec, 'c0', write('k', 'b'));
    expectOk(rec.history(), final({ k: 'b' }));
    const p = only(checkHistory(rec.history(), final({ k: 'a' })).problems, 'lost-write') as LostWrite;
    expect(p.lost.map((op) => op.id)).toEqual([b]);
    // The delete overlapped the write: before b, either order was possible.
    const early = new HistoryRecorder();
    const a2 = early.invoke('c0', write('k', 'a'));
    const d2 = early.invoke('c1', del('k'));
    early.ok(d2);
    early.ok(a2);
    expectOk(early.history(), final({ k: 'a' }));
    expectOk(early.history(), final({ k: undefined }));
  });

  it('of several deletes, the one that ended last is the one that could follow the most', () => {
    // d1 is invoked first but ends last, after w began: absent may be final.
    const rec = new HistoryRecorder();
    const d1 = rec.invoke('c0', del('k'));
    done(rec, 'c1', del('k'));
    const w = rec.invoke('c1', write('k', 'a'));
    rec.ok(w);
    rec.ok(d1);
    expectOk(rec.history(), final({ k: undefined }));
    expectOk(rec.history(), final({ k: 'a' }));
  });

  it('refuses final reads that leave out a written key (it would pass unchecked)', () => {
    const rec = new HistoryRecorder();
    done(rec, 'c0', write('k', 'a'));
    expect(() => checkHistory(rec.history(), final({}))).toThrow(AssertionError);
    expect(checkHistory(rec.history()).ok).toBe(true);
  });
});

describe('stale-read', () => {
  function history(): { rec: HistoryRecorder; b: OpId } {
    const rec = new HistoryRecorder();
    done(rec, 'c0', write('k', 'a'));
    const b = done(rec, 'c0', write('k', 'b'));
    return { rec, b };
  }

  it('a read that began after a newer write was acknowledged, and returned the older value, is a warning', () => {
    const { rec, b } = history();
    const r = done(rec, 'c1', read('k'), 'a');
    const result = checkHistory(rec.history(), final({ k: 'b' }));
    expect(result.ok).toBe(true);
    const p = only(result.problems, 'stale-read') as StaleRead;
    expect(p.severity).toBe('warning');
    expect(p.read.id).toBe(r);
    expect(p.newer.id).toBe(b);
    expect(p.explanation).toMatch(/eventual consistency allows this/);
    expect(checkHistory(rec.history(), final({ k: 'b' }), { staleReadsFail: true }).ok).toBe(false);
  });

  it('a read of absent after an acknowledged write is stale too', () => {
    const { rec } = history();
    done(rec, 'c1', read('k'), undefined);
    const p = only(checkHistory(rec.history()).problems, 'stale-read') as StaleRead;
    expect(p.source).toBe('initial');
  });

  it('the missed write is found even when an older acknowledged write ended later', () => {
    // b overlaps a (either order is fine), c began after a ended: the read missed c.
    const rec = new HistoryRecorder();
    const a = rec.invoke('c0', write('k', 'a'));
    const b = rec.invoke('c1', write('k', 'b'));
    rec.ok(a);
    const c = done(rec, 'c2', write('k', 'c'));
    rec.ok(b);
    done(rec, 'c3', read('k'), 'a');
    const p = only(checkHistory(rec.history()).problems, 'stale-read') as StaleRead;
    expect(p.newer.id).toBe(c);
    expect(p.source).toMatchObject({ id: a });
  });

  it('a read overlapping the newer write may return either value', () => {
    const rec = new HistoryRecorder();
    done(rec, 'c0', write('k', 'a'));
    const r = rec.invoke('c1', read('k'));
    done(rec, 'c0', write('k', 'b'));
    rec.ok(r, 'a');
    expectOk(rec.history(), final({ k: 'b' }));
  });
});

describe('divergence', () => {
  it('replicas that agree pass (a missing key reads as absent)', () => {
    const replicaStates = new Map([
      ['n1', new Map([['k', 'a'], ['gone', undefined]])],
      ['n2', new Map([['k', 'a']])],
    ]);
    expect(checkHistory([], undefined, { replicaStates }).ok).toBe(true);
  });

  it('replicas that disagree on a key fail, and the report names every replica', () => {
    const replicaStates = new Map([
      ['n1', new Map([['k', 'a'], ['j', 'x']])],
      ['n2', new Map([['k', 'a'], ['j', 'x']])],
      ['n3', new Map([['k', 'a']])],
    ]);
    const result = checkHistory([], undefined, { replicaStates });
    expect(result.ok).toBe(false);
    const p = only(result.problems, 'divergence');
    expect(p.key).toBe('j');
    expect(p.replicas).toEqual([
      { replica: 'n1', value: 'x' },
      { replica: 'n2', value: 'x' },
      { replica: 'n3', value: undefined },
    ]);
    expect(p.explanation).toBe('replicas disagree after healing: n1="x", n2="x", n3=absent');
  });
});

describe('duplicate values (a hand-built history)', () => {
  it('two writes of one value on one key are reported', () => {
    const op = (id: number, value: string): Operation =>
      ({ id, client: 'c0', call: { kind: 'write', key: 'k', value }, invokedAt: 2 * id, completion: { type: 'ok', at: 2 * id + 1 } }) as Operation;
    const p = only(checkHistory([op(0, 'v'), op(1, 'v')]).problems, 'duplicate-value');
    expect(p.ops.map((o) => o.id)).toEqual([0, 1]);
  });

  it('a value carried by two writes comes from whichever could follow the most', () => {
    // Only the duplicate is reported: the second "v" began after "w" and may be final.
    const op = (id: number, value: string, invokedAt: number, at: number): Operation =>
      ({ id, client: 'c0', call: { kind: 'write', key: 'k', value }, invokedAt, completion: { type: 'ok', at } }) as Operation;
    const history = [op(0, 'v', 0, 1), op(1, 'w', 2, 3), op(2, 'v', 4, 5)];
    expect(kinds(checkHistory(history, final({ k: 'v' })).problems)).toEqual(['duplicate-value']);
  });

  it('a malformed history is a programmer error', () => {
    const bad = { id: 0, client: 'c0', call: { kind: 'read', key: 'k' }, invokedAt: 3, completion: { type: 'ok', at: 3 } } as Operation;
    expect(() => checkHistory([bad])).toThrow(AssertionError);
  });
});

describe('formatProblems', () => {
  it('names the kind, the key, the explanation and each op on its own line', () => {
    const rec = new HistoryRecorder();
    done(rec, 'c0', write('k', 'a'));
    done(rec, 'c1', write('k', 'b'));
    const r = rec.invoke('c2', read('k'));
    rec.ok(r, 'b');
    const text = formatProblems(checkHistory(rec.history(), final({ k: 'a' })).problems);
    expect(text.split('\n')).toEqual([
      'history check: 1 error(s), 0 warning(s)',
      '1. [error] lost-write key "k": final value "a" can only come from #0 (write "a", completed @1), yet #1 (write "b") was acknowledged @3 and began @2, after that: it or a later-or-concurrent write/delete must show',
      '     #0 c0 write "k"="a" invoked @0, ok @1',
      '     #1 c1 write "k"="b" invoked @2, ok @3',
    ]);
    expect(formatProblems([])).toBe('history check: no problems');
  });

  it('bounds the report', () => {
    const rec = new HistoryRecorder();
    for (let i = 0; i < 5; i++) done(rec, 'c0', read(`k${i}`), `v${i}`);
    const text = formatProblems(checkHistory(rec.history()).problems, { maxProblems: 2 });
    expect(text).toMatch(/^history check: 5 error\(s\)/);
    expect(text).toMatch(/\.\.\. and 3 more problems$/);
    expect(text).toMatch(/#0 c0 read "k0" invoked @0, ok @1 -> "v0"/);
  });
});
