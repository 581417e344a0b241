// The checker against a model: one register per key, several clients, and every op
// taking effect at one random point inside its interval (between its invoke and its
// completion events), so each generated history is linearizable by construction. Ops
// fated `fail` never take effect; ops fated `info` take effect before the info event,
// after it (still travelling), or never; ops left in flight at the end stay pending,
// applied or not. The checker must accept every such history without a single problem,
// and must name the loss when the final state drops an acknowledged write that nothing
// could follow. A second model lets reads return any earlier value of the register
// (eventual consistency): still no error, stale-read warnings allowed.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { checkHistory, formatProblems, type LostWrite, type ReplicaStates } from './checker.js';
import { HistoryRecorder, type Call, type History, type Key, type Operation, type OpId, type Value } from './recorder.js';

const CLIENTS = 3;
const KEYS = ['k0', 'k1'] as const;
const STEPS_MAX = 80;
const RUNS = 300;

/** One scheduling decision; the numbers are read differently by the state the client is in. */
interface Step {
  /** A client 0..CLIENTS-1, or CLIENTS: let one info op still travelling land. */
  readonly client: number;
  readonly a: number;
  readonly b: number;
  readonly c: number;
}

const step: fc.Arbitrary<Step> = fc.record({
  client: fc.nat(CLIENTS),
  a: fc.nat(99),
  b: fc.nat(99),
  c: fc.nat(99),
});

/** How an info op's effect is placed: before the info event, after it, or nowhere. */
type InfoMode = 'before' | 'after' | 'never';

interface InFlight {
  readonly id: OpId;
  readonly call: Call;
  readonly fate: 'ok' | 'fail' | 'info';
  readonly infoMode: InfoMode;
  applied: boolean;
  result?: Value | undefined;
}

/** A mutation applied to the register: which op, and the value it replaced. */
interface Applied {
  readonly id: OpId;
  readonly key: Key;
  readonly before: Value | undefined;
}

interface Simulated {
  readonly history: History;
  readonly final: Map<Key, Value | undefined>;
  readonly applied: readonly Applied[];
}

function simulate(steps: readonly Step[], tailKey: Key | null, staleReads: boolean): Simulated {
  const rec = new HistoryRecorder({ maxOps: STEPS_MAX + 1 });
  const register = new Map<Key, Value | undefined>(KEYS.map((k) => [k, undefined]));
  const past = new Map<Key, (Value | undefined)[]>(KEYS.map((k) => [k, [undefined]]));
  const applied: Applied[] = [];
  const clients: (InFlight | undefined)[] = new Array(CLIENTS).fill(undefined);
  const travelling: InFlight[] = [];
  let values = 0;

  const apply = (op: InFlight, pick: number): void => {
    op.applied = true;
    const key = op.call.key;
    if (op.call.kind === 'read') {
      const seen = past.get(key)!;
      op.result = staleReads ? seen[seen.length - 1 - (pick % seen.length)] : register.get(key);
      return;
    }
    const value = op.call.kind === 'write' ? op.call.value : undefined;
    applied.push({ id: op.id, key, before: register.get(key) });
    register.set(key, value);
    past.get(key)!.push(value);
  };

  for (const s of steps) {
    if (s.client === CLIENTS) {
      const op = travelling.splice(s.a % Math.max(1, travelling.length), 1)[0];
      if (op !== undefined) apply(op, s.b);
      continue;
    }
    const name = `c${s.client}`;
    const op = clients[s.client];
    if (op === undefined) {
      const key = KEYS[s.b % KEYS.length]!;
      const call: Call = s.a < 50 ? { kind: 'write', key, value: `v${values++}` } : s.a < 80 ? { kind: 'read', key } : { kind: 'delete', key };
      const fate = s.c < 75 ? 'ok' : s.c < 87 ? 'fail' : 'info';
      const infoMode: InfoMode = (['before', 'after', 'never'] as const)[s.c % 3]!;
      clients[s.client] = { id: rec.invoke(name, call), call, fate, infoMode, applied: false };
    } else if (!op.applied && (op.fate === 'ok' || (op.fate === 'info' && op.infoMode === 'before'))) {
      apply(op, s.a);
    } else {
      if (op.fate === 'ok') rec.ok(op.id, op.result);
      else if (op.fate === 'fail') rec.fail(op.id, 'refused before sending');
      else {
        rec.info(op.id, 'timeout');
        if (!op.applied && op.infoMode === 'after') travelling.push(op);
      }
      clients[s.client] = undefined;
    }
  }
  if (tailKey !== null) {
    // One more write, after every event so far: the natural "last acknowledged write".
    const call: Call = { kind: 'write', key: tailKey, value: `v${values++}` };
    const op: InFlight = { id: rec.invoke('tail', call), call, fate: 'ok', infoMode: 'never', applied: false };
    apply(op, 0);
    rec.ok(op.id);
  }
  return { history: rec.history(), final: register, applied };
}

const arbitraryRun = fc.record({
  steps: fc.array(step, { maxLength: STEPS_MAX, size: 'max' }),
  tailKey: fc.option(fc.constantFrom(...KEYS)),
});

/** The end of a non-failed op for the oracle below: +∞ when the outcome is unknown. */
function end(op: Operation): number {
  return op.completion.type === 'ok' ? op.completion.at : Number.POSITIVE_INFINITY;
}

/**
 * The notion, computed independently of the checker: the last mutation applied
 * to `key`, when it is an acknowledged write and no other non-failed write or delete of
 * the key could follow it (ended, or may end, after it was invoked).
 */
function lastUnfollowedWrite(sim: Simulated, key: Key): Applied | undefined {
  const last = sim.applied.filter((a) => a.key === key).at(-1);
  if (last === undefined) return undefined;
  const w = sim.history[last.id]!;
  if (w.call.kind !== 'write' || w.completion.type !== 'ok') return undefined;
  const followed = sim.history.some(
    (b) => b.id !== w.id && b.call.key === key && b.call.kind !== 'read' && b.completion.type !== 'fail' && end(b) > w.invokedAt,
  );
  return followed ? undefined : last;
}

function replicas(final: ReadonlyMap<Key, Value | undefined>): Map<string, Map<Key, Value | undefined>> {
  return new Map(['n1', 'n2', 'n3'].map((n) => [n, new Map(final)]));
}

describe('checkHistory against a linearizable register model', () => {
  it('accepts every generated history, and reports a dropped last acknowledged write as lost', () => {
    let dropped = 0;
    fc.assert(
      fc.property(arbitraryRun, ({ steps, tailKey }) => {
        const sim = simulate(steps, tailKey, false);
        const result = checkHistory(sim.history, sim.final, { replicaStates: replicas(sim.final), staleReadsFail: true });
        expect(result.problems, formatProblems(result.problems)).toEqual([]);

        for (const key of KEYS) {
          const last = lastUnfollowedWrite(sim, key);
          if (last === undefined) continue;
          dropped++;
          const broken = new Map(sim.final).set(key, last.before);
          const problems = checkHistory(sim.history, broken).problems;
          const lost = problems.filter((p): p is LostWrite => p.kind === 'lost-write');
          expect(lost.map((p) => p.key), formatProblems(problems)).toEqual([key]);
          expect(lost[0]!.lost.map((op) => op.id)).toContain(last.id);
        }
      }),
      { numRuns: RUNS },
    );
    // Not vacuous: about 40% of runs have an eligible key (mostly the tail write), so
    // 1/6 is many standard deviations below the mean.
    expect(dropped).toBeGreaterThan(RUNS / 6);
  });

  it('reports a read whose result is replaced by a value never written', () => {
    fc.assert(
      fc.property(arbitraryRun, fc.nat(), ({ steps, tailKey }, pick) => {
        const sim = simulate(steps, tailKey, false);
        const reads = sim.history.filter((op) => op.call.kind === 'read' && op.completion.type === 'ok');
        fc.pre(reads.length > 0);
        const victim = reads[pick % reads.length]!;
        const forged = sim.history.map((op) =>
          op === victim && op.completion.type === 'ok' ? { ...op, completion: { ...op.completion, value: 'forged' } } : op,
        );
        const problems = checkHistory(forged, sim.final).problems;
        expect(problems.map((p) => [p.kind, p.key, p.ops.map((op) => op.id)]), formatProblems(problems)).toEqual([
          ['never-written', victim.call.key, [victim.id]],
        ]);
      }),
      { numRuns: RUNS },
    );
  });

  it('reports divergence when one replica misses the final value of a key', () => {
    fc.assert(
      fc.property(arbitraryRun, fc.constantFrom(...KEYS), ({ steps, tailKey }, key) => {
        const sim = simulate(steps, tailKey, false);
        const states = replicas(sim.final);
        states.get('n2')!.set(key, sim.final.get(key) === undefined ? 'stray' : undefined);
        const problems = checkHistory(sim.history, sim.final, { replicaStates: states as ReplicaStates }).problems;
        expect(problems.map((p) => [p.kind, p.key])).toEqual([['divergence', key]]);
      }),
      { numRuns: RUNS },
    );
  });
});

describe('checkHistory against an eventually consistent register model', () => {
  it('finds no error when reads return any earlier value, and only stale-read warnings', () => {
    let warned = 0;
    fc.assert(
      fc.property(arbitraryRun, ({ steps, tailKey }) => {
        const sim = simulate(steps, tailKey, true);
        const result = checkHistory(sim.history, sim.final, { replicaStates: replicas(sim.final) });
        expect(result.ok, formatProblems(result.problems)).toBe(true);
        expect(result.problems.every((p) => p.kind === 'stale-read' && p.severity === 'warning')).toBe(true);
        if (result.problems.length > 0) warned++;
      }),
      { numRuns: RUNS },
    );
    // The model does produce stale reads, so the warning class is exercised.
    expect(warned).toBeGreaterThan(0);
  });
});
