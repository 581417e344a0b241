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

/** How likely each kind of event is, and how likely each node is to renew when time passes. */
interface Profile {
  weights: Record<Event['t'], number>;
  /** Per node (n0..n4), percent chance that it renews at a tick: steady owners and flaky joiners. */
  renewPct: readonly number[];
}

const k = fc.nat({ max: 1000 });

function events(profile: Profile): fc.Arbitrary<Event[]> {
  const w = profile.weights;
  const renewMask = fc
    .tuple(...profile.renewPct.map((pct) => fc.integer({ min: 0, max: 99 }).map((x) => x < pct)))
    .map((bits) => bits.reduce((mask, b, i) => mask | (b ? 1 << i : 0), 0));
  const event: fc.Arbitrary<Event> = fc.oneof(
    { weight: w.register, arbitrary: fc.record({ t: fc.constant('register' as const), id: fc.integer({ min: 0, max: ids.length - 1 }) }) },
    { weight: w.renew, arbitrary: fc.record({ t: fc.constant('renew' as const), k }) },
    { weight: w.silence, arbitrary: fc.record({ t: fc.constant('silence' as const), k }) },
    { weight: w.tick, arbitrary: fc.record({ t: fc.constant('tick' as const), dt: fc.integer({ min: 0, max: 700 }), renew: renewMask }) },
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
        return this.run(this.core.tick(this.now));
      case 'deliver':
        if (this.recallsInFlight.length > 0) this.deliver(e.k % this.recallsInFlight.length, e.answerNow);
        return;
      case 'answer': {
        if (this.answersInFlight.length === 0) return;
        const [a] = this.answersInFlight.splice(e.k % this.answersInFlight.length, 1);
        return this.run(this.core.recalled(a!.nodeId, a!.acked, this.now));
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
    // Plain throws, not expect(): this runs thousands of times per property.
    const fail = (what: string): never => {
      throw new Error(`${what}\n  after:\n    ${this.trace.slice(-12).join('\n    ')}`);
    };
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
    if (pieces.length > 0) {
      positions.forEach((pos, i) => {
        const p = pieceAtSorted(pieces, pos)!;
        const was = this.seen[i];
        if (was && p.generation < was.generation) fail(`generation went down at ${pos.toString(16)}: ${was.generation} -> ${p.generation}`);
        if (was && p.owner !== was.owner && p.generation <= was.generation) {
          fail(`owner ${was.owner} -> ${p.owner} at ${pos.toString(16)} without a higher generation (${was.generation} -> ${p.generation})`);
        }
        this.seen[i] = { owner: p.owner, generation: p.generation };
      });
    }
    // What a restart would come back to is what the master runs on now.
    if (this.persisted !== undefined || table.lsn > 0) {
      if (JSON.stringify(this.core.snapshot()) !== this.persisted) fail('durable state changed without a persist effect');
    }
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
