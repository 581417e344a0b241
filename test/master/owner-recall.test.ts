// The owner library (server/cluster/owner.ts) against the real MasterCore, on a manual
// clock: when a node joins, the old owner gives up what the master recalls and the
// master hands it to the new owner; at no moment may both hold a valid lease on one key.
import { beforeAll, describe, expect, it } from 'vitest';
import { initHash } from '../../ring/index.js';
import { ManualClock } from '../../server/clock.js';
import { Owner, type MasterCall, type Timers } from '../../server/cluster/owner.js';
import { MasterCore, type Effect, type MemberInfo } from '../../server/master/core.js';
import { decode, info, probePositions, recalls, settings } from './helpers.js';

beforeAll(async () => {
  await initHash();
});

/** Timers that never fire: renewals happen only when the test asks. */
const noTimers: Timers = { setTimeout: () => 0, clearTimeout: () => {} };

describe('owner library and master core: a join', () => {
  it('the old owner stops serving every recalled position before the new owner is granted it', async () => {
    const clock = new ManualClock(0);
    const core = new MasterCore(settings, undefined, 0);
    const sent: Array<Extract<Effect, { type: 'recall' }>> = [];
    const call: MasterCall = async <T>(type: string, body: unknown): Promise<T> => {
      const r = type === 'register' ? core.register(body as MemberInfo, clock.now()) : core.renew((body as { id: string }).id, clock.now());
      sent.push(...recalls(r.effects));
      return r.grant as unknown as T;
    };
    const owner = (id: string): Owner =>
      new Owner({ info: info(id), call, clock, timers: noTimers, renewMs: 300, driftMs: 0, callTimeoutMs: 100 });

    const a = owner('n0');
    await a.start();
    clock.set(100);
    const b = owner('n1');
    await b.start();
    expect(sent.map((r) => r.nodeId)).toEqual(['n0']);
    // The master's shell (master.ts): send the recall, hand over what the answer names.
    for (const r of sent.splice(0)) {
      const given = new Set(a.revoke(r.leases).ends);
      core.recalled(r.nodeId, r.leases.filter((l) => given.has(l.end)), clock.now());
    }
    expect(core.table().leases.some((l) => l.owner === 'n1')).toBe(true);

    clock.set(110);
    b.renewSoon();
    await new Promise((resolve) => setImmediate(resolve));
    const positions = [...probePositions(256), ...decode(core.table().leases).map((p) => p.end)];
    expect(positions.filter((pos) => b.holds(pos) !== undefined).length).toBeGreaterThan(0);
    // A join splits the old owner's piece (x, y] into (x, t] (recalled) and (t, y] (kept):
    // the owner must stop serving (x, t] although it holds no piece ending at t.
    const both = positions.filter((pos) => a.holds(pos) !== undefined && b.holds(pos) !== undefined);
    expect(both.map((p) => p.toString(16))).toEqual([]);
  });
});
