// The lease master's safety, as a property over random histories. A small world holds the
// MasterCore, five nodes' own views of their leases (what the owner library would hold:
// exactly the pieces of its latest grant, valid until when it asked + leaseMs, driftMs = 0),
// recalls and their answers in flight, and the last persisted snapshot. Events: a node
// registers (joins, comes back, or restarts), a live node renews, a node goes silent (it
// never renews nor answers again, but keeps serving what it holds until it runs out), time
// passes (some nodes renew, steady ones more often than flaky ones) and the master ticks, a
// recall reaches its node (answered at once or later), an answer reaches the master, a
// message is lost, the master restarts from its last persisted snapshot. A renewal is asked
// and received at the same instant (no request delay is modelled).
//
// After every event: no two nodes hold a valid lease on one position; whatever a node
// holds is, per the table, its own at that generation; per position the table's
// generation never goes down and goes up whenever the owner changes; the pieces tile the
// ring whenever a member is up; durable state never changes without a persist effect.
// At the end, with the live nodes renewing and every recall answered for a while, the
// table converges to the ring of the live members.
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { initHash } from '../../ring/index.js';
import { MasterError } from '../../server/master/core.js';
import {
  decode,
  doubleHolding,
  expectOwnership,
  fencingProblem,
  ids,
  info,
  LeaseWorld,
  NodeView,
  probePositions,
  renewMask,
  renewsAt,
  ringOf,
  settings,
  tilingProblem,
} from './helpers.js';

let positions: bigint[] = [];

beforeAll(async () => {
  await initHash();
  positions = probePositions(64);
});

type Event =
  | { t: 'register'; id: number }
  | { t: 'renew'; k: number }
  | { t: 'silence'; k: number }
  | { t: 'tick'; dt: number; renew: number }
  | { t: 'deliver'; k: number; answerNow: boolean }
  | { t: 'answer'; k: number }
  | { t: 'lose'; k: number }
  | { t: 'restart' };

/** How likely each kind of event is, and how likely each node is to renew when time passes. */
interface Profile {
  weights: Record<Event['t'], number>;
  /** Per node (n0..n4), percent chance that it renews at a tick: steady owners and flaky joiners. */
  renewPct: readonly number[];
}

const k = fc.nat({ max: 1000 });

function events(profile: Profile): fc.Arbitrary<Event[]> {
  const w = profile.weights;
  const event: fc.Arbitrary<Event> = fc.oneof(
    { weight: w.register, arbitrary: fc.record({ t: fc.constant('register' as const), id: fc.integer({ min: 0, max: ids.length - 1 }) }) },
    { weight: w.renew, arbitrary: fc.record({ t: fc.constant('renew' as const), k }) },
    { weight: w.silence, arbitrary: fc.record({ t: fc.constant('silence' as const), k }) },
    { weight: w.tick, arbitrary: fc.record({ t: fc.constant('tick' as const), dt: fc.integer({ min: 0, max: 700 }), renew: renewMask(profile.renewPct) }) },
    // Most answers are held back, so that they can arrive after the world has moved on.
    { weight: w.deliver, arbitrary: fc.record({ t: fc.constant('deliver' as const), k, answerNow: fc.integer({ min: 0, max: 3 }).map((x) => x === 0) }) },
    { weight: w.answer, arbitrary: fc.record({ t: fc.constant('answer' as const), k }) },
    { weight: w.lose, arbitrary: fc.record({ t: fc.constant('lose' as const), k }) },
    { weight: w.restart, arbitrary: fc.constant({ t: 'restart' as const }) },
  );
  // size 'max': without it fast-check keeps arrays near 10 events, too short for anything to happen.
  return fc.array(event, { minLength: 1, maxLength: 60, size: 'max' });
}

const steadyAndFlaky = [90, 90, 50, 40, 30];
const mixed: Profile = {
  weights: { register: 3, renew: 3, silence: 1, tick: 5, deliver: 4, answer: 3, lose: 1, restart: 1 },
  renewPct: steadyAndFlaky,
};
/** Without restarts (which drop every message in flight), late answers live long enough to meet re-planned recalls. */
const lateAnswers: Profile = { ...mixed, weights: { ...mixed.weights, restart: 0 } };

class World extends LeaseWorld {
  constructor() {
    super(12);
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
        for (const node of this.live()) if (renewsAt(e.renew, node.id)) this.renew(node);
        return this.run(this.core.tick(this.now));
      case 'deliver':
        if (this.recallsInFlight.length > 0) this.deliver(e.k % this.recallsInFlight.length, e.answerNow);
        return;
      case 'answer':
        return this.answer(e.k);
      case 'lose':
        return this.lose(e.k);
      case 'restart':
        // Whatever was in flight to or from the old process died with its connections.
        this.restart();
        return;
    }
  }

  /** Every invariant, at this instant (node leases only shrink between events, so this is every instant). */
  check(): void {
    // Plain throws, not expect(): this runs thousands of times per property.
    const fail = (what: string): never => this.fail(what);
    const table = this.core.table();
    const pieces = decode(table.leases);
    const tiling = tilingProblem(pieces);
    if (tiling !== undefined && table.members.some((m) => m.status === 'up')) fail(`tiling: ${tiling}`);
    const two = doubleHolding(this.nodes.values(), this.now);
    if (two !== undefined) fail(`two holders: ${two}`);
    if (tiling === undefined) {
      const fencing = fencingProblem(this.nodes.values(), pieces, this.now);
      if (fencing !== undefined) fail(`fencing: ${fencing}`);
    }
    this.checkGenerations(pieces, positions);
    // What a restart would come back to is what the master runs on now.
    this.checkPersisted();
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
    expectOwnership(this.core, ringOf(up), positions);
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

// A failure prints fast-check's seed and path: pass them as `{ seed, path }` to fc.assert to replay it.
describe('lease master safety', () => {
  it('mixed histories: joins, renewals, silences, ticks, recalls answered, late or lost, master restarts', () => {
    fc.assert(
      fc.property(events(mixed), (h) => history(h)),
      { numRuns: 150 },
    );
  });

  it('late recall answers: flaky joiners come and go while answers to earlier recalls are still on their way', () => {
    fc.assert(
      fc.property(events(lateAnswers), (h) => history(h)),
      { numRuns: 250 },
    );
  });
});
