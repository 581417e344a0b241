// The lease master's safety, as a property over random histories. A small world holds the
// MasterCore, five nodes' own views of their leases (what the owner library would hold:
// exactly the pieces of its latest grant, valid until when it asked + leaseMs, driftMs = 0),
// recalls and their answers in flight, and the last persisted snapshot. Events: a node
// registers (joins, comes back, or restarts), a live node renews, a node goes silent (it
// never renews nor answers again, but keeps serving what it holds until it runs out), time
// passes and the master ticks, a recall reaches its node (answered at once or later), an
// answer reaches the master, a message is lost, the master restarts from its snapshot.
//
// After every event: no two nodes hold a valid lease on one position; whatever a node
// holds is, per the table, its own at that generation; per position the table's
// generation never goes down and goes up whenever the owner changes; the pieces tile the
// ring whenever a member is up; durable state never changes without a persist effect.
// At the end, with the live nodes renewing and every recall answered for a while, the
// table converges to the ring of the live members.
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { Ring, initHash } from '../../ring/index.js';
import { MasterCore, MasterError, type Effect, type MasterSnapshot, type WireRecall } from '../../server/master/core.js';
import {
  decode,
  doubleHolding,
  fencingProblem,
  ids,
  info,
  NodeView,
  pieceAtSorted,
  probePositions,
  recalls,
  settings,
  tilingProblem,
} from './helpers.js';

let positions: bigint[] = [];

beforeAll(async () => {
  await initHash();
  positions = probePositions(64);
});

type Recall = Extract<Effect, { type: 'recall' }>;

type Event =
  | { t: 'register'; id: number }
  | { t: 'renew'; k: number }
  | { t: 'silence'; k: number }
  | { t: 'tick'; dt: number; renew: number }
  | { t: 'deliver'; k: number; answerNow: boolean }
  | { t: 'answer'; k: number }
  | { t: 'lose'; k: number }
  | { t: 'restart' };

const k = fc.nat({ max: 1000 });
const RENEW_PCT = (process.env.P ?? '50,50,50,50,50').split(',').map(Number);
const W = (process.env.W ?? '2,5,1,5,3,2,1,1').split(',').map(Number);
const eventArb: fc.Arbitrary<Event> = fc.oneof(
  { weight: W[0]!, arbitrary: fc.record({ t: fc.constant('register' as const), id: fc.integer({ min: 0, max: ids.length - 1 }) }) },
  { weight: W[1]!, arbitrary: fc.record({ t: fc.constant('renew' as const), k }) },
  { weight: W[2]!, arbitrary: fc.record({ t: fc.constant('silence' as const), k }) },
  {
    weight: W[3]!,
    arbitrary: fc.record({ t: fc.constant('tick' as const), dt: fc.integer({ min: 0, max: 700 }), renew: fc
        .tuple(...RENEW_PCT.map((pct) => fc.integer({ min: 0, max: 99 }).map((x) => x < pct)))
        .map((bits) => bits.reduce((m, b, i) => m | (b ? 1 << i : 0), 0)) }),
  },
  { weight: W[4]!, arbitrary: fc.record({ t: fc.constant('deliver' as const), k, answerNow: fc.integer({ min: 0, max: 3 }).map((x) => x === 0) }) },
  { weight: W[5]!, arbitrary: fc.record({ t: fc.constant('answer' as const), k }) },
  { weight: W[6]!, arbitrary: fc.record({ t: fc.constant('lose' as const), k }) },
  { weight: W[7]!, arbitrary: fc.constant({ t: 'restart' as const }) },
);

const STATS: Record<string, number> = {};
const bump = (k: string) => { STATS[k] = (STATS[k] ?? 0) + 1; };
class World {
  now = 0;
  core = new MasterCore(settings, undefined, 0);
  readonly nodes = new Map<string, NodeView>();
  recallsInFlight: Recall[] = [];
  answersInFlight: Array<{ nodeId: string; acked: WireRecall[] }> = [];
  /** What the shell last wrote to disk (JSON), as it would: after every persist effect. */
  persisted: string | undefined;
  /** Per probe position, the owner and generation last seen in the table. */
  readonly seen: Array<{ owner: string; generation: number } | undefined> = [];
  readonly trace: string[] = [];

  run(effects: readonly Effect[]): void {
    if (effects.some((e) => e.type === 'persist')) this.persisted = JSON.stringify(this.core.snapshot());
    this.recallsInFlight.push(...recalls(effects));
  }

  live(): NodeView[] {
    return [...this.nodes.values()].filter((n) => n.alive).sort((a, b) => (a.id < b.id ? -1 : 1));
  }

  register(id: string): void {
    const node = this.nodes.get(id) ?? new NodeView(id);
    this.nodes.set(id, node);
    const r = this.core.register(info(id), this.now);
    this.run(r.effects);
    node.alive = true;
    node.grant(r.grant, this.now);
  }

  renew(node: NodeView): void {
    if (!node.registered) return this.register(node.id);
    try {
      const r = this.core.renew(node.id, this.now);
      this.run(r.effects);
      node.grant(r.grant, this.now);
    } catch (e) {
      if (!(e instanceof MasterError) || e.code !== 'UNKNOWN_NODE') throw e;
      // As the owner library: keep what it holds (it runs out on its own), register next time.
      node.registered = false;
    }
  }

  deliver(i: number, answerNow: boolean): void {
    const [r] = this.recallsInFlight.splice(i, 1);
    const node = r && this.nodes.get(r.nodeId);
    if (!r || !node || !node.alive) return; // a silent node never answers
    // As the shell does: the answer names ends; the shell passes on the recall's own leases.
    const given = new Set(node.revoke(r.leases));
    const acked = r.leases.filter((l) => given.has(l.end));
    if (answerNow) this.run(this.core.recalled(r.nodeId, acked, this.now));
    else this.answersInFlight.push({ nodeId: r.nodeId, acked });
  }

  step(e: Event): void {
    this.trace.push(`${this.now} ${JSON.stringify(e)}`);
    switch (e.t) {
      case 'register':
        return this.register(ids[e.id]!);
      case 'renew': {
        const live = this.live();
        if (live.length > 0) this.renew(live[e.k % live.length]!);
        return;
      }
      case 'silence': {
        const live = this.live();
        if (live.length > 0) live[e.k % live.length]!.alive = false;
        return;
      }
      case 'tick':
        // Time passes; the live nodes picked by the bit mask renew first (their timers fired).
        this.now += e.dt;
        for (const node of this.live()) if ((e.renew >> ids.indexOf(node.id as (typeof ids)[number])) & 1) this.renew(node);
        {
          const upBefore = this.core.table().members.filter((m) => m.status === 'up').length;
          const eff = this.core.tick(this.now);
          const upAfter = this.core.table().members.filter((m) => m.status === 'up').length;
          if (upAfter < upBefore) { bump('down'); if (this.answersInFlight.length) bump('downWithAnswers'); }
          if (eff.some((x) => x.type === 'persist') && upAfter === upBefore) bump('lapse');
          return this.run(eff);
        }
      case 'deliver':
        if (this.recallsInFlight.length > 0) this.deliver(e.k % this.recallsInFlight.length, e.answerNow);
        return;
      case 'answer': {
        if (this.answersInFlight.length === 0) return;
        const [a] = this.answersInFlight.splice(e.k % this.answersInFlight.length, 1);
        const eff = this.core.recalled(a!.nodeId, a!.acked, this.now);
        bump(eff.length ? 'answerHandsOver' : 'answerNoop');
        return this.run(eff);
      }
      case 'lose': {
        const n = this.recallsInFlight.length + this.answersInFlight.length;
        if (n === 0) return;
        const i = e.k % n;
        if (i < this.recallsInFlight.length) this.recallsInFlight.splice(i, 1);
        else this.answersInFlight.splice(i - this.recallsInFlight.length, 1);
        return;
      }
      case 'restart': {
        const snapshot = this.persisted === undefined ? undefined : (JSON.parse(this.persisted) as MasterSnapshot);
        this.core = new MasterCore(settings, snapshot, this.now);
        // Whatever was in flight to or from the old process died with its connections.
        this.recallsInFlight = [];
        this.answersInFlight = [];
        return;
      }
    }
  }

  /** Every invariant, at this instant (node leases only shrink between events, so this is every instant). */
  check(): void {
    const where = () => `\n  after:\n    ${this.trace.slice(-12).join('\n    ')}`;
    const table = this.core.table();
    const pieces = decode(table.leases);
    const anyUp = table.members.some((m) => m.status === 'up');
    if (anyUp) expect(tilingProblem(pieces), `tiling${where()}`).toBeUndefined();
    expect(doubleHolding(this.nodes.values(), this.now), `two holders${where()}`).toBeUndefined();
    if (pieces.length > 0 && tilingProblem(pieces) === undefined) {
      expect(fencingProblem(this.nodes.values(), pieces, this.now), `fencing${where()}`).toBeUndefined();
    }
    if (pieces.length > 0) {
      positions.forEach((pos, i) => {
        const p = pieceAtSorted(pieces, pos)!;
        const was = this.seen[i];
        if (was) {
          expect(p.generation, `generation went down at ${pos.toString(16)}${where()}`).toBeGreaterThanOrEqual(was.generation);
          if (p.owner !== was.owner) {
            expect(p.generation, `owner ${was.owner} -> ${p.owner} at ${pos.toString(16)} kept the generation${where()}`).toBeGreaterThan(was.generation);
          }
        }
        this.seen[i] = { owner: p.owner, generation: p.generation };
      });
    }
    // What a restart would come back to is what the master runs on now.
    const durable = JSON.stringify(this.core.snapshot());
    if (this.persisted !== undefined || table.lsn > 0) expect(durable, `changed without persist${where()}`).toBe(this.persisted);
  }

  /** Live nodes renew every renewMs and answer every recall at once; silent ones stay silent. */
  settle(): void {
    if (this.live().length === 0) this.register(ids[0]);
    this.answersInFlight = []; // late answers time out
    this.trace.push(`${this.now} settle`);
    for (let round = 0; round < 16; round++) {
      this.now += settings.renewMs;
      for (const node of this.live()) this.renew(node);
      this.run(this.core.tick(this.now));
      for (let i = 0; i < 100 && this.recallsInFlight.length > 0; i++) this.deliver(0, true);
      expect(this.recallsInFlight).toEqual([]);
      this.check();
    }
    const up = this.core
      .table()
      .members.filter((m) => m.status === 'up')
      .map((m) => m.id)
      .sort();
    expect(up).toEqual(this.live().map((n) => n.id));
    const ring = Ring.build(
      up.map((id) => ({ id })),
      { vnodes: settings.vnodes },
    );
    const pieces = decode(this.core.table().leases);
    for (const pos of [...positions, ...pieces.map((p) => p.end)]) {
      expect(pieceAtSorted(pieces, pos)!.owner, `owner of ${pos.toString(16)}`).toBe(ring.ownerOf(pos));
    }
    expect(this.core.view(this.now).leases.some((l) => 'movingTo' in l)).toBe(false);
  }
}

function history(events: readonly Event[]): void {
  const w = new World();
  for (const e of events) {
    w.step(e);
    w.check();
  }
  w.settle();
}

describe('lease master safety', () => {
  it('one holder per position, rising generations, a tiled ring, and convergence, over random histories', () => {
    fc.assert(
      fc.property(fc.array(eventArb, { minLength: Number(process.env.MINLEN ?? 1), maxLength: 60, size: 'max' }), (events) => { bump('runs'); history(events); }),
      { numRuns: Number(process.env.RUNS ?? 100), ...(process.env.SEED ? { seed: Number(process.env.SEED) } : {}) },
    );
    console.log(STATS);
  });
});
