// MasterCore's live membership, driven with plain values and explicit times: register with
// `join` (a new node starts joining while others are in the ring), `joined` (into the ring;
// its pieces arrive by recall), `leave` (up -> leaving, refused below `keep` up members;
// the leaver keeps its leases), `left` (out of the ring; its pieces are recalled), and how
// joining / leaving / left members renew, go down (or do not), and survive a restart.
// Expected owners come from ring/ (Ring.build(...).ownerOf), lookups from a linear scan of
// the decoded table (helpers.ts), so nothing here reuses the core's own search.
import { beforeAll, describe, expect, it } from 'vitest';
import { Ring, initHash } from '../../ring/index.js';
import { IN_NEXT_RING, IN_RING, MasterCore, MasterError, type MemberStatus } from '../../server/master/core.js';
import {
  acknowledgeAll,
  applyChanges,
  canonical,
  catchMaster,
  clone,
  decode,
  doubleHolding,
  expectOwnership,
  hasPersist,
  info,
  maxGeneration,
  NodeView,
  pieceAt,
  pieces,
  probePositions,
  recalls,
  ringOf,
  settings,
} from './helpers.js';

beforeAll(async () => {
  await initHash();
});

const positions = (): bigint[] => probePositions(256);
const statusOf = (core: MasterCore, id: string): MemberStatus | undefined => core.table().members.find((m) => m.id === id)?.status;
/** The table's pieces without the LSN: owners, ranges and generations. */
const leasesOf = (core: MasterCore) => canonical(core.table()).leases;

/** The members registered in order (no join flag), every recall answered at once. */
function cluster(members: string[], now = 0): MasterCore {
  const core = new MasterCore(settings, undefined, now);
  for (const id of members) acknowledgeAll(core, core.register(info(id), now).effects, now);
  return core;
}

/** Every member renews at `now` (so nobody goes down at the next tick). */
function renewAll(core: MasterCore, ids: string[], now: number): void {
  for (const id of ids) core.renew(id, now);
}

/** The member changes logged since `lsn`, in order. */
function memberChanges(core: MasterCore, lsn: number): Array<{ id: string; status: MemberStatus }> {
  const reply = core.changesSince(lsn);
  if (!('changes' in reply)) throw new Error('expected a change log');
  return reply.changes.flatMap((c) => c.members.map((m) => ({ id: m.id, status: m.status })));
}

describe('membership sets', () => {
  it('IN_RING is up and leaving; IN_NEXT_RING is up and joining', () => {
    expect([...IN_RING].sort()).toEqual(['leaving', 'up']);
    expect([...IN_NEXT_RING].sort()).toEqual(['joining', 'up']);
  });
});

describe('register with join', () => {
  it('the first node of a cluster is up at once, join or not, and holds the whole ring', () => {
    const core = new MasterCore(settings, undefined, 0);
    const r = core.register(info('n0'), 0, { join: true });
    expect(statusOf(core, 'n0')).toBe('up');
    expect(r.grant.leases.length).toBe(settings.vnodes);
    expectOwnership(core, ringOf(['n0']));
  });

  it('a new node joining a cluster with members in the ring starts joining: no leases, not in the ring, logged and persisted', () => {
    const core = cluster(['n0', 'n1']);
    const before = leasesOf(core);
    const lsn = core.table().lsn;

    const r = core.register(info('n2'), 100, { join: true });
    expect(statusOf(core, 'n2')).toBe('joining');
    expect(core.member('n2')).toMatchObject({ status: 'joining', renewedAtMs: 100 });
    expect(r.grant.leases).toEqual([]);
    expect(r.effects).toEqual([{ type: 'persist' }]); // the member change; no recall: the ring is unchanged
    expect(leasesOf(core)).toEqual(before);
    expect(core.table().lsn).toBe(lsn + 1);
    expect(memberChanges(core, lsn)).toEqual([{ id: 'n2', status: 'joining' }]);
    expectOwnership(core, ringOf(['n0', 'n1']));
    expect(core.view(100).leases.some((l) => 'movingTo' in l)).toBe(false);

    // It renews (it is live) and keeps holding nothing, however long it copies.
    for (let now = 200; now <= 5000; now += 200) {
      renewAll(core, ['n0', 'n1'], now);
      expect(core.renew('n2', now).grant.leases).toEqual([]);
      expect(core.tick(now)).toEqual([]);
      expect(statusOf(core, 'n2')).toBe('joining');
    }
    expect(leasesOf(core)).toEqual(before);
    expect(core.view(5000).members.find((m) => m.id === 'n2')!.pieces).toBe(0);
  });

  it('without join, a new node is up at once and its pieces are recalled for it', () => {
    const core = cluster(['n0']);
    const r = core.register(info('n1'), 100);
    expect(statusOf(core, 'n1')).toBe('up');
    expect(recalls(r.effects).map((x) => x.nodeId)).toEqual(['n0']);
  });

  it('joining counts only members in the ring: with every other member down, a new node is up at once', () => {
    const core = cluster(['n0']);
    core.tick(settings.leaseMs); // n0 never renewed
    expect(statusOf(core, 'n0')).toBe('down');
    core.register(info('n1'), 1100, { join: true });
    expect(statusOf(core, 'n1')).toBe('up');
    expectOwnership(core, ringOf(['n1']));
  });

  it('joining and left members are not in the ring: a new node joining next to only such members is up at once', () => {
    const core = cluster(['n0', 'n1']);
    core.register(info('n2'), 0, { join: true });
    core.leave('n1', 0, 1);
    acknowledgeAll(core, core.left('n1', 10), 10);
    renewAll(core, ['n1', 'n2'], 900);
    core.tick(1000); // n0 down: n1 left and n2 joining are all that is left, none of them in the ring
    expect([statusOf(core, 'n0'), statusOf(core, 'n1'), statusOf(core, 'n2')]).toEqual(['down', 'left', 'joining']);
    core.register(info('n3'), 1010, { join: true });
    expect(statusOf(core, 'n3')).toBe('up');
  });

  it('a leaving member is in the ring: a new node joining next to it starts joining', () => {
    const core = cluster(['n0', 'n1']);
    core.leave('n1', 10, 1);
    core.renew('n1', 900);
    core.tick(1000); // n0 down: only the leaving n1 is in the ring
    expect(statusOf(core, 'n0')).toBe('down');
    expect(statusOf(core, 'n1')).toBe('leaving');
    core.register(info('n2'), 1010, { join: true });
    expect(statusOf(core, 'n2')).toBe('joining');
  });

  it('a known live node keeps its status when it registers again (a restart during a join or a leave goes on)', () => {
    const core = cluster(['n0', 'n1', 'n2']);
    core.register(info('n3'), 10, { join: true });
    core.leave('n2', 10, 2);
    const before = clone(core.table());
    for (const join of [true, false]) {
      for (const [id, status] of [['n0', 'up'], ['n2', 'leaving'], ['n3', 'joining']] as const) {
        const r = core.register(info(id), 20, { join });
        expect(statusOf(core, id), `${id} join=${join}`).toBe(status);
        expect(r.effects).toEqual([]);
        expect(recalls(r.effects)).toEqual([]);
        if (id === 'n3') expect(r.grant.leases).toEqual([]);
        else expect(r.grant.leases.length).toBeGreaterThan(0);
      }
    }
    expect(core.table()).toEqual(before);
  });

  it('a down node comes back up, join or not', () => {
    for (const join of [true, false]) {
      const core = cluster(['n0', 'n1']);
      core.renew('n0', 900);
      core.tick(1000); // n1 down
      expect(statusOf(core, 'n1')).toBe('down');
      const back = core.register(info('n1'), 1010, { join });
      expect(statusOf(core, 'n1'), `join=${join}`).toBe('up');
      acknowledgeAll(core, back.effects, 1010);
      expectOwnership(core, ringOf(['n0', 'n1']));
    }
  });

  it('a node that left is refused, join or not, and nothing changes', () => {
    const core = cluster(['n0', 'n1']);
    core.leave('n1', 10, 1);
    acknowledgeAll(core, core.left('n1', 20), 20);
    const before = clone(core.table());
    for (const join of [true, false, undefined]) {
      const e = catchMaster(() => core.register(info('n1'), 30, join === undefined ? {} : { join }));
      expect(e, `join=${join}`).toBeInstanceOf(MasterError);
      expect(e!.code).toBe('BAD_MEMBER');
      expect(statusOf(core, 'n1')).toBe('left');
    }
    expect(core.table()).toEqual(before);
  });
});

describe('joined', () => {
  it('joining -> up: the pieces the ring gives it are recalled from their owners and arrive with higher generations', () => {
    const core = cluster(['n0', 'n1']);
    core.register(info('n2'), 100, { join: true });
    const before = pieces(core);
    const lsn = core.table().lsn;
    const target = ringOf(['n0', 'n1', 'n2']);

    const effects = core.joined('n2', 200);
    expect(hasPersist(effects)).toBe(true);
    expect(statusOf(core, 'n2')).toBe('up');
    expect(core.member('n2')!.renewedAtMs).toBe(200); // the call is a sign of life too
    expect(memberChanges(core, lsn)).toEqual([{ id: 'n2', status: 'up' }]);
    const rs = recalls(effects);
    expect(rs.map((r) => r.nodeId).sort()).toEqual(['n0', 'n1']);
    // The recalled positions are exactly those the new ring gives n2, each from its current owner.
    const recalled = rs.flatMap((r) => decode(r.leases).map((p) => ({ ...p, from: r.nodeId })));
    for (const pos of positions()) {
      const hit = recalled.filter((p) => pieceAt([p], pos));
      expect(hit.length, `recall covers ${pos.toString(16)}`).toBe(target.ownerOf(pos) === 'n2' ? 1 : 0);
      if (hit.length === 1) expect(hit[0]!.from).toBe(pieceAt(before, pos)!.owner);
    }
    // Nothing moves before the acknowledgements: the owners keep them (but no longer renew them).
    expect(leasesOf(core).every((l) => l.owner !== 'n2')).toBe(true);
    expect(core.renew('n2', 210).grant.leases).toEqual([]);
    const n0renewed = new Set(core.renew('n0', 210).grant.leases.map((l) => l.end));
    for (const l of rs.find((r) => r.nodeId === 'n0')!.leases) expect(n0renewed.has(l.end)).toBe(false);

    const atRecall = clone(core.table());
    acknowledgeAll(core, effects, 220);
    expectOwnership(core, target);
    const after = pieces(core);
    for (const pos of positions()) {
      const p = pieceAt(after, pos)!;
      if (p.owner === 'n2') expect(p.generation).toBeGreaterThan(maxGeneration(before));
      else expect(p.generation).toBe(pieceAt(before, pos)!.generation);
    }
    const log = core.changesSince(atRecall.lsn);
    expect('changes' in log && canonical(applyChanges(atRecall, log.changes))).toEqual(canonical(core.table()));
    const granted = decode(core.renew('n2', 230).grant.leases);
    for (const pos of positions()) expect(pieceAt(granted, pos) !== undefined).toBe(target.ownerOf(pos) === 'n2');
  });

  it('the old owners give up the recalled positions before the joiner holds them', () => {
    const core = cluster(['n0']);
    const n0 = new NodeView('n0');
    const n1 = new NodeView('n1');
    n0.grant(core.renew('n0', 0).grant, 0);
    n1.grant(core.register(info('n1'), 10, { join: true }).grant, 10);
    expect(n1.valid(10)).toEqual([]);
    const effects = core.joined('n1', 20);
    n1.grant(core.renew('n1', 30).grant, 30);
    expect(n1.valid(30)).toEqual([]); // nothing before the answer
    for (const r of recalls(effects)) {
      const given = new Set(n0.revoke(r.leases));
      core.recalled(r.nodeId, r.leases.filter((l) => given.has(l.end)), 40);
    }
    n1.grant(core.renew('n1', 50).grant, 50);
    n0.grant(core.renew('n0', 50).grant, 50);
    expect(n1.valid(50).length).toBeGreaterThan(0);
    expect(doubleHolding([n0, n1], 50)).toBeUndefined();
    expectOwnership(core, ringOf(['n0', 'n1']));
  });

  it('unanswered, the joiner gets its pieces once the old owners\' leases run out', () => {
    const core = cluster(['n0']); // n0's leases run until 1000
    core.register(info('n1'), 100, { join: true });
    core.joined('n1', 200);
    core.renew('n0', 500);
    core.renew('n1', 500);
    for (let now = 510; now < 1000; now += 10) expect(hasPersist(core.tick(now)), `at ${now}`).toBe(false);
    expect(leasesOf(core).every((l) => l.owner === 'n0')).toBe(true);
    expect(hasPersist(core.tick(1000))).toBe(true);
    expectOwnership(core, ringOf(['n0', 'n1']));
  });

  it('refused for an unknown or down node; a no-op for up, leaving and left members and the second time', () => {
    const core = cluster(['n0', 'n1', 'n2']);
    core.register(info('n3'), 0, { join: true });
    expect(catchMaster(() => core.joined('nobody', 10))?.code).toBe('UNKNOWN_NODE');

    acknowledgeAll(core, core.joined('n3', 10), 10);
    const before = clone(core.table());
    expect(core.joined('n3', 20)).toEqual([]); // again
    expect(core.joined('n0', 20)).toEqual([]); // up
    core.leave('n2', 20, 1);
    const leaving = clone(core.table());
    expect(core.joined('n2', 30)).toEqual([]);
    expect(statusOf(core, 'n2')).toBe('leaving');
    expect(core.table()).toEqual(leaving);
    acknowledgeAll(core, core.left('n2', 30), 30);
    const gone = clone(core.table());
    expect(core.joined('n2', 40)).toEqual([]);
    expect(statusOf(core, 'n2')).toBe('left');
    expect(core.table()).toEqual(gone);
    expect(before.lsn).toBeLessThan(gone.lsn);

    renewAll(core, ['n0', 'n3'], 1000);
    core.tick(1040); // n1 down (last heard at 0)
    expect(statusOf(core, 'n1')).toBe('down');
    const e = catchMaster(() => core.joined('n1', 1050));
    expect(e?.code).toBe('UNKNOWN_NODE');
    expect(statusOf(core, 'n1')).toBe('down');
  });

  it('a joining member that stops renewing goes down at renewedAt + leaseMs; the ring does not change; it cannot join then', () => {
    const core = cluster(['n0', 'n1']);
    core.register(info('n2'), 100, { join: true });
    core.renew('n2', 300);
    const before = leasesOf(core);
    const lsn = core.table().lsn;
    renewAll(core, ['n0', 'n1'], 1000);
    expect(core.tick(1299)).toEqual([]);
    expect(statusOf(core, 'n2')).toBe('joining');
    const down = core.tick(1300);
    expect(hasPersist(down)).toBe(true);
    expect(recalls(down)).toEqual([]);
    expect(statusOf(core, 'n2')).toBe('down');
    expect(memberChanges(core, lsn)).toEqual([{ id: 'n2', status: 'down' }]);
    expect(leasesOf(core)).toEqual(before);
    expect(catchMaster(() => core.renew('n2', 1310))?.code).toBe('UNKNOWN_NODE');
    expect(catchMaster(() => core.joined('n2', 1310))?.code).toBe('UNKNOWN_NODE');
  });

  it('a joiner that went down before it joined joins again when it comes back (it never got its data); one that was up comes back up', () => {
    const core = cluster(['n0', 'n1']);
    core.register(info('n2'), 100, { join: true });
    renewAll(core, ['n0', 'n1'], 1000);
    core.tick(1300);
    expect(statusOf(core, 'n2')).toBe('down');
    core.register(info('n2'), 1400, { join: true });
    expect(statusOf(core, 'n2')).toBe('joining');
    // The same across a master restart.
    const restarted = new MasterCore(settings, core.snapshot(), 1500);
    expect(statusOf(restarted, 'n2')).toBe('joining');
    restarted.joined('n2', 1600);
    renewAll(restarted, ['n0', 'n1', 'n2'], 2000);
    restarted.tick(2000 + settings.leaseMs + 1);
    for (const id of ['n0', 'n1', 'n2']) expect(statusOf(restarted, id)).toBe('down');
    restarted.register(info('n0'), 70_000, { join: true });
    expect(statusOf(restarted, 'n0')).toBe('up');
    restarted.register(info('n2'), 70_001, { join: true });
    expect(statusOf(restarted, 'n2')).toBe('up'); // n0 is in the ring, but n2 has its data
  });
});

describe('leave', () => {
  it('up -> leaving: persisted and logged, no recall; it keeps its leases and stays in the ring', () => {
    const core = cluster(['n0', 'n1', 'n2']);
    const before = leasesOf(core);
    const held = core.renew('n2', 0).grant.leases.length;
    expect(held).toBeGreaterThan(0);
    const lsn = core.table().lsn;

    const effects = core.leave('n2', 100, 2);
    expect(effects).toEqual([{ type: 'persist' }]);
    expect(statusOf(core, 'n2')).toBe('leaving');
    expect(memberChanges(core, lsn)).toEqual([{ id: 'n2', status: 'leaving' }]);
    expect(leasesOf(core)).toEqual(before);

    // However long it takes to hand its data on, it renews every lease it held.
    for (let now = 200; now <= 5000; now += 200) {
      renewAll(core, ['n0', 'n1'], now);
      expect(core.renew('n2', now).grant.leases.length).toBe(held);
      expect(core.tick(now)).toEqual([]);
    }
    expect(statusOf(core, 'n2')).toBe('leaving');
    expect(leasesOf(core)).toEqual(before);
    expectOwnership(core, ringOf(['n0', 'n1', 'n2']));
  });

  it('refused when fewer than keep up members would stay; a refusal changes nothing', () => {
    const core = cluster(['n0', 'n1', 'n2']);
    const before = clone(core.table());
    for (const keep of [3, 4]) {
      const e = catchMaster(() => core.leave('n2', 10, keep));
      expect(e, `keep ${keep}`).toBeInstanceOf(MasterError);
      expect(e!.code).toBe('BAD_MEMBER');
    }
    expect(statusOf(core, 'n2')).toBe('up');
    expect(core.table()).toEqual(before);

    core.leave('n2', 20, 2); // exactly keep stay
    // A leaving member does not count as staying.
    expect(catchMaster(() => core.leave('n1', 30, 2))?.code).toBe('BAD_MEMBER');
    expect(statusOf(core, 'n1')).toBe('up');
    core.leave('n1', 30, 1);
    expect(statusOf(core, 'n1')).toBe('leaving');
    // The last up member cannot leave with keep >= 1.
    expect(catchMaster(() => core.leave('n0', 40, 1))?.code).toBe('BAD_MEMBER');
    expect(statusOf(core, 'n0')).toBe('up');
  });

  it('joining, down and left members do not count as staying', () => {
    const core = cluster(['n0', 'n1', 'n2']);
    core.register(info('n3'), 0, { join: true });
    // n0, n1 stay up, n3 joining: n2 may leave with keep 2 but not 3.
    expect(catchMaster(() => core.leave('n2', 10, 3))?.code).toBe('BAD_MEMBER');
    core.leave('n2', 10, 2);
    acknowledgeAll(core, core.left('n2', 20), 20);
    // n2 left: n1 leaving with keep 1 leaves n0 (and the joining n3): fine; with keep 2, not.
    expect(catchMaster(() => core.leave('n1', 30, 2))?.code).toBe('BAD_MEMBER');
    renewAll(core, ['n0', 'n3'], 900);
    core.renew('n2', 900);
    core.tick(1000); // n1 down
    expect(statusOf(core, 'n1')).toBe('down');
    // n0 is the only up member; n1 down, n2 left, n3 joining.
    expect(catchMaster(() => core.leave('n0', 1010, 1))?.code).toBe('BAD_MEMBER');
  });

  it('refused for a joining or down member; unknown for a stranger; a no-op when leaving or left', () => {
    const core = cluster(['n0', 'n1', 'n2', 'n3']);
    core.register(info('n4'), 0, { join: true });
    expect(catchMaster(() => core.leave('n4', 10, 1))?.code).toBe('BAD_MEMBER');
    expect(statusOf(core, 'n4')).toBe('joining');
    expect(catchMaster(() => core.leave('nobody', 10, 1))?.code).toBe('UNKNOWN_NODE');

    core.leave('n3', 10, 1);
    const leaving = clone(core.table());
    expect(core.leave('n3', 20, 1)).toEqual([]);
    expect(core.leave('n3', 20, 100)).toEqual([]); // already leaving: keep no longer matters
    expect(core.table()).toEqual(leaving);
    acknowledgeAll(core, core.left('n3', 30), 30);
    const gone = clone(core.table());
    expect(core.leave('n3', 40, 1)).toEqual([]);
    expect(statusOf(core, 'n3')).toBe('left');
    expect(core.table()).toEqual(gone);

    renewAll(core, ['n0', 'n1', 'n3', 'n4'], 900);
    core.tick(1000); // n2 down
    expect(statusOf(core, 'n2')).toBe('down');
    expect(catchMaster(() => core.leave('n2', 1010, 1))?.code).toBe('BAD_MEMBER');
    expect(statusOf(core, 'n2')).toBe('down');
  });

  it('a leaving member that stops renewing goes down, and its pieces go to the others at once', () => {
    const core = cluster(['n0', 'n1', 'n2']);
    core.leave('n2', 100, 1);
    renewAll(core, ['n0', 'n1'], 900);
    core.tick(1000);
    expect(statusOf(core, 'n2')).toBe('down');
    expectOwnership(core, ringOf(['n0', 'n1']));
  });
});

describe('left', () => {
  it('leaving -> left: out of the ring; its pieces are recalled to the others and handed over higher; then its renewals hold nothing', () => {
    const core = cluster(['n0', 'n1', 'n2']);
    const n2held = decode(core.renew('n2', 0).grant.leases);
    core.leave('n2', 100, 2);
    const before = pieces(core);
    const lsn = core.table().lsn;
    const target = ringOf(['n0', 'n1']);

    const effects = core.left('n2', 200);
    expect(hasPersist(effects)).toBe(true);
    expect(statusOf(core, 'n2')).toBe('left');
    expect(memberChanges(core, lsn)).toEqual([{ id: 'n2', status: 'left' }]);
    // One recall, to n2, naming every piece it holds; the others keep theirs.
    const rs = recalls(effects);
    expect(rs.map((r) => r.nodeId)).toEqual(['n2']);
    const recalled = decode(rs[0]!.leases);
    for (const pos of positions()) expect(pieceAt(recalled, pos) !== undefined).toBe(pieceAt(n2held, pos) !== undefined);
    const moving = core.view(200).leases.filter((l) => 'movingTo' in l);
    expect(moving.length).toBeGreaterThan(0);
    for (const l of moving) {
      expect(l.owner).toBe('n2');
      expect(l.movingTo).toBe(target.ownerOf(BigInt(`0x${l.end}`)));
    }
    // Until it answers, n2 still owns them in the table but they are no longer renewed.
    expect(leasesOf(core).filter((l) => l.owner === 'n2').length).toBeGreaterThan(0);
    expect(core.renew('n2', 210).grant.leases).toEqual([]);

    acknowledgeAll(core, effects, 220);
    expectOwnership(core, target);
    for (const pos of positions()) {
      const was = pieceAt(before, pos)!;
      const now = pieceAt(pieces(core), pos)!;
      if (was.owner === 'n2') expect(now.generation).toBeGreaterThan(maxGeneration(before));
      else expect(now).toMatchObject({ owner: was.owner, generation: was.generation });
    }
    // A left node keeps renewing until recalled: allowed, and it holds nothing.
    for (let now = 300; now <= 3000; now += 300) {
      const g = core.renew('n2', now);
      expect(g.grant.leases).toEqual([]);
      expect(g.effects).toEqual([]);
    }
    expect(core.view(3000).members.find((m) => m.id === 'n2')!.pieces).toBe(0);
  });

  it('tick never marks a left member down; an unanswered recall lapses to the others when the lease runs out', () => {
    const core = cluster(['n0', 'n1', 'n2']);
    core.leave('n2', 0, 1);
    core.renew('n2', 400); // n2's leases run until 1400
    core.left('n2', 500); // ... and n2 never renews nor answers again
    const lsn = core.table().lsn;
    for (let now = 600; now < 1400; now += 100) {
      renewAll(core, ['n0', 'n1'], now);
      expect(hasPersist(core.tick(now)), `at ${now}`).toBe(false);
    }
    expect(leasesOf(core).some((l) => l.owner === 'n2')).toBe(true);
    expect(hasPersist(core.tick(1400))).toBe(true);
    expectOwnership(core, ringOf(['n0', 'n1']));
    for (let now = 1500; now <= 20_000; now += 500) {
      renewAll(core, ['n0', 'n1'], now);
      core.tick(now);
    }
    expect(statusOf(core, 'n2')).toBe('left');
    expect(core.member('n2')!.status).toBe('left');
    expect(memberChanges(core, lsn)).toEqual([]); // no member change after left
    // Still allowed to renew (a late renewal); still holds nothing.
    expect(core.renew('n2', 20_100).grant.leases).toEqual([]);
  });

  it('refused unless leaving; unknown for a stranger; a no-op the second time', () => {
    const core = cluster(['n0', 'n1', 'n2']);
    core.register(info('n3'), 0, { join: true });
    const before = clone(core.table());
    expect(catchMaster(() => core.left('n0', 10))?.code).toBe('BAD_MEMBER'); // up
    expect(catchMaster(() => core.left('n3', 10))?.code).toBe('BAD_MEMBER'); // joining
    expect(catchMaster(() => core.left('nobody', 10))?.code).toBe('UNKNOWN_NODE');
    expect(core.table()).toEqual(before);
    expect(statusOf(core, 'n0')).toBe('up');
    expect(statusOf(core, 'n3')).toBe('joining');

    core.leave('n1', 10, 1);
    acknowledgeAll(core, core.left('n1', 20), 20);
    const gone = clone(core.table());
    expect(core.left('n1', 30)).toEqual([]);
    expect(core.table()).toEqual(gone);

    renewAll(core, ['n0', 'n3'], 900);
    core.tick(1000); // n2 down
    expect(statusOf(core, 'n2')).toBe('down');
    expect(catchMaster(() => core.left('n2', 1010))?.code).toBe('BAD_MEMBER');
    expect(statusOf(core, 'n2')).toBe('down');
  });

  it('a join and a leave at once: the joiner takes pieces only after joined, the leaver gives its pieces up only after left', () => {
    const core = cluster(['n0', 'n1', 'n2']);
    core.register(info('n3'), 10, { join: true });
    core.leave('n2', 10, 2);
    expectOwnership(core, ringOf(['n0', 'n1', 'n2']));
    const join = core.joined('n3', 20);
    // The leaver is recalled like any live owner: nothing reaches n3 before the answers.
    expect(recalls(join).map((r) => r.nodeId).sort()).toEqual(['n0', 'n1', 'n2']);
    expect(leasesOf(core).some((l) => l.owner === 'n3')).toBe(false);
    acknowledgeAll(core, join, 20);
    expectOwnership(core, ringOf(['n0', 'n1', 'n2', 'n3']));
    acknowledgeAll(core, core.left('n2', 30), 30);
    expectOwnership(core, ringOf(['n0', 'n1', 'n3']));
    expect(core.renew('n2', 40).grant.leases).toEqual([]);
  });
});

describe('restart from a snapshot', () => {
  /** n0, n1 up; n2 leaving; n3 left (handed over); n4 joining. */
  function mixed(): MasterCore {
    const core = cluster(['n0', 'n1', 'n2', 'n3']);
    core.leave('n3', 10, 1);
    acknowledgeAll(core, core.left('n3', 20), 20);
    core.leave('n2', 30, 1);
    core.register(info('n4'), 40, { join: true });
    return core;
  }
  const statuses = (core: MasterCore) => Object.fromEntries(core.table().members.map((m) => [m.id, m.status]));

  it('keeps joining, leaving and left statuses, the table and the generations', () => {
    const core = mixed();
    const expected = { n0: 'up', n1: 'up', n2: 'leaving', n3: 'left', n4: 'joining' };
    expect(statuses(core)).toEqual(expected);
    const snap = clone(core.snapshot());
    expect(Object.fromEntries(snap.members.map((m) => [m.id, m.status]))).toEqual(expected);

    const restored = new MasterCore(settings, snap, 10_000);
    expect(statuses(restored)).toEqual(expected);
    expect(restored.table()).toEqual(core.table());
    expect(restored.snapshot()).toEqual(snap);
    for (const [id, status] of Object.entries(expected)) expect(restored.member(id)).toMatchObject({ status, addrs: info(id).addrs });
  });

  it('after the restart the moves go on: the left node is still refused and never down, the joiner joins, the leaver leaves', () => {
    const core = mixed();
    const old = maxGeneration(pieces(core));
    const restored = new MasterCore(settings, clone(core.snapshot()), 10_000);

    // Everyone renews without registering again; the joining n4 and left n3 hold nothing.
    for (const id of ['n0', 'n1', 'n2']) expect(restored.renew(id, 10_100).grant.leases.length).toBeGreaterThan(0);
    expect(restored.renew('n4', 10_100).grant.leases).toEqual([]);
    expect(restored.renew('n3', 10_100).grant.leases).toEqual([]);
    expect(catchMaster(() => restored.register(info('n3'), 10_100, { join: true }))?.code).toBe('BAD_MEMBER');
    // A restart of the moving nodes during their moves keeps them moving.
    restored.register(info('n4'), 10_150, { join: true });
    restored.register(info('n2'), 10_150);
    expect(statuses(restored)).toMatchObject({ n2: 'leaving', n4: 'joining' });

    acknowledgeAll(restored, restored.joined('n4', 10_200), 10_200);
    expectOwnership(restored, ringOf(['n0', 'n1', 'n2', 'n4']));
    acknowledgeAll(restored, restored.left('n2', 10_300), 10_300);
    expectOwnership(restored, ringOf(['n0', 'n1', 'n4']));
    for (const p of pieces(restored)) if (p.owner === 'n4') expect(p.generation).toBeGreaterThan(old);

    for (let now = 10_500; now <= 20_000; now += 500) {
      renewAll(restored, ['n0', 'n1', 'n4'], now);
      restored.tick(now);
    }
    expect(statuses(restored)).toEqual({ n0: 'up', n1: 'up', n2: 'left', n3: 'left', n4: 'up' });
  });

  it('a leave recalled but unanswered at the restart is recalled again, and lapses only a full lease after the restart', () => {
    const core = cluster(['n0', 'n1', 'n2']);
    core.leave('n2', 0, 1);
    const first = recalls(core.left('n2', 100));
    expect(first.map((r) => r.nodeId)).toEqual(['n2']); // never answered
    const snap = clone(core.snapshot());
    expect(snap.pieces.some((p) => p.owner === 'n2' && p.recallTo !== undefined)).toBe(true);

    const T = 600;
    const restored = new MasterCore(settings, snap, T);
    const again = recalls(restored.tick(T));
    expect(again.map((r) => r.nodeId)).toEqual(['n2']);
    expect(again[0]!.leases.map((l) => l.end).sort()).toEqual(first[0]!.leases.map((l) => l.end).sort());
    const table = restored.table();
    for (let now = T + 50; now < T + settings.leaseMs; now += 50) {
      renewAll(restored, ['n0', 'n1'], now);
      expect(hasPersist(restored.tick(now)), `handed over at ${now}`).toBe(false);
    }
    expect(restored.table()).toEqual(table);
    expect(hasPersist(restored.tick(T + settings.leaseMs))).toBe(true);
    expectOwnership(restored, ringOf(['n0', 'n1']));
    expect(restored.member('n2')!.status).toBe('left');
  });
});

// Found by the membership property: when no member is left in the ring, recalls already
// under way must not hand their pieces to a member that has since gone down or left (a
// left node that still renews would be granted ranges it never held).
describe('recalls aimed out of the ring when the ring empties', () => {
  it('a left member is never granted a piece, even when the ring empties under a pending recall', () => {
    const core = cluster(['n0', 'n1', 'n2']);
    core.leave('n0', 10, 1);
    const first = recalls(core.left('n0', 20)); // n0's pieces recalled to n1 and n2; never answered
    expect(first.map((r) => r.nodeId)).toEqual(['n0']);
    core.leave('n1', 30, 1);
    renewAll(core, ['n0', 'n1'], 900); // n2 stops renewing; n0's recalled pieces are not renewed (they run out at 1000)
    core.tick(1000); // n2 down: only the leaving n1 is in the ring; n0's pieces are now recalled to n1
    expect(statusOf(core, 'n2')).toBe('down');
    const n1Generations = new Set(pieces(core).filter((p) => p.owner === 'n1').map((p) => p.generation));
    const n0Pieces = pieces(core).filter((p) => p.owner === 'n0');
    expect(n0Pieces.length).toBeGreaterThan(0);

    core.left('n1', 1010); // the ring is empty now
    core.tick(1020); // n0's leases on the recalled pieces ran out at 1000
    const granted = decode(core.renew('n1', 1030).grant.leases);
    // n1 left: it must not be granted anything it did not hold when it left, least of all n0's pieces.
    for (const p of pieces(core)) if (p.owner === 'n1') expect(n1Generations.has(p.generation), `n1 granted generation ${p.generation}`).toBe(true);
    for (const p of n0Pieces) expect(pieceAt(granted, p.end), `n0's piece ending ${p.end.toString(16)} granted to the left n1`).toBeUndefined();
  });

  it('a piece is not handed to a member that went down while it was being recalled to it', () => {
    const core = cluster(['n0']);
    core.register(info('n1'), 100); // n0's pieces recalled to n1; the recall is never answered
    core.tick(1100); // n0 (renewed at 0) and n1 (at 100) go down at once: nobody is in the ring
    expect([statusOf(core, 'n0'), statusOf(core, 'n1')]).toEqual(['down', 'down']);
    const before = leasesOf(core);
    core.tick(1110); // the recalled pieces' leases ran out at 1000
    expect(leasesOf(core)).toEqual(before); // "pieces stay with their (down) owners until someone is up"
  });
});
