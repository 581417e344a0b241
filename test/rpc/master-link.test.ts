// MasterLink against real RpcServers on loopback: it finds the master that leads among a
// list (following a standby's NOT_LEADER hint, or trying the next address when there is
// none or an address is dead), within one deadline, and passes every other error through.
// With one address it is a plain RpcClient call.
import { deadAddr } from '../helpers/connect.js';
import { afterEach, describe, expect, it } from 'vitest';
import { MasterLink, RpcRemoteError, RpcServer, RpcTimeout, RpcUnavailable, type MasterLinkOptions } from '../../server/protocol/rpc/index.js';
import { NotLeaderError, NOT_LEADER } from '../../server/master/leadership.js';
import { rejection } from '../helpers/async.js';

const HOST = '127.0.0.1';

const servers: RpcServer[] = [];
const links: MasterLink[] = [];

afterEach(async () => {
  await Promise.all(links.splice(0).map((l) => l.close()));
  await Promise.all(servers.splice(0).map((s) => s.close(0)));
});

interface FakeMaster {
  readonly addr: string;
  readonly server: RpcServer;
  /** Requests received, by type. */
  readonly seen: string[];
}

/**
 * A master on an ephemeral port. `leader`: answers `ping` with its own address.
 * `standby`: refuses with NOT_LEADER naming `hint()` (none when it returns undefined).
 */
async function fakeMaster(kind: 'leader' | 'standby', hint: () => string | undefined = () => undefined): Promise<FakeMaster> {
  const server = new RpcServer({ host: HOST, port: 0 });
  servers.push(server);
  const seen: string[] = [];
  let addr = '';
  const answer = (type: string) => (body: unknown) => {
    seen.push(type);
    if (kind === 'standby') throw new NotLeaderError(hint());
    if (type === 'leave') throw Object.assign(new Error('fewer than 3 members would remain'), { code: 'BAD_MEMBER', members: 2 });
    return { from: addr, body };
  };
  for (const type of ['ping', 'leave']) server.handle(type, answer(type));
  server.handle('never', () => new Promise(() => {}));
  addr = `${HOST}:${await server.listen()}`;
  return { addr, server, seen };
}

function link(addrs: string | string[], opts: MasterLinkOptions = {}): MasterLink {
  const l = new MasterLink(addrs, opts);
  links.push(l);
  return l;
}

describe('MasterLink', () => {
  it('starts with the first address; a lone leader answers', async () => {
    const a = await fakeMaster('leader');
    const l = link([a.addr]);
    expect(l.leader()).toBe(a.addr);
    expect(await l.call('ping', { x: 1 }, { timeoutMs: 2000 })).toEqual({ from: a.addr, body: { x: 1 } });
    expect(l.counters).toEqual({ calls: 1, retries: 0, switches: 0 });
  });

  it('takes a comma list, and refuses an empty list or a bad address', () => {
    expect(link('h:1, h:2').addresses()).toEqual(['h:1', 'h:2']);
    expect(() => new MasterLink('')).toThrow(/no master/);
    expect(() => new MasterLink([])).toThrow(/no master/);
    expect(() => new MasterLink(['h:1', 'nowhere'])).toThrow(/host:port/);
  });

  it('follows a standby hint to the leader at once, and stays there', async () => {
    const leader = await fakeMaster('leader');
    const standby = await fakeMaster('standby', () => leader.addr);
    // A pause between rounds would take 5 s: a hint is followed without one.
    const l = link([standby.addr, leader.addr], { pauseMinMs: 5_000, pauseMaxMs: 5_000 });
    const t0 = Date.now();
    expect(await l.call('ping', {}, { timeoutMs: 10_000 })).toMatchObject({ from: leader.addr });
    expect(Date.now() - t0).toBeLessThan(2_000);
    expect(l.leader()).toBe(leader.addr);
    expect(await l.call('ping', {}, { timeoutMs: 2000 })).toMatchObject({ from: leader.addr });
    expect(standby.seen).toEqual(['ping']);
    expect(leader.seen).toEqual(['ping', 'ping']);
  });

  it('adds a hinted leader missing from the list', async () => {
    const leader = await fakeMaster('leader');
    const standby = await fakeMaster('standby', () => leader.addr);
    const l = link([standby.addr]);
    expect(await l.call('ping', {}, { timeoutMs: 2000 })).toMatchObject({ from: leader.addr });
    expect(l.addresses()).toEqual([standby.addr, leader.addr]);
    expect(l.leader()).toBe(leader.addr);
  });

  it('a standby without a hint: the next address', async () => {
    const standby = await fakeMaster('standby');
    const leader = await fakeMaster('leader');
    const l = link([standby.addr, leader.addr]);
    expect(await l.call('ping', {}, { timeoutMs: 2000 })).toMatchObject({ from: leader.addr });
    expect(l.leader()).toBe(leader.addr);
    expect(l.counters.retries).toBe(1);
  });

  it('a dead address first in the list: the next one', async () => {
    const dead = await deadAddr();
    const leader = await fakeMaster('leader');
    const l = link([dead, leader.addr]);
    expect(await l.call('ping', {}, { timeoutMs: 2000 })).toMatchObject({ from: leader.addr });
    expect(l.leader()).toBe(leader.addr);
  });

  it('a silent master costs attemptTimeoutMs, then the next one answers', async () => {
    const silent = await fakeMaster('leader');
    const leader = await fakeMaster('leader');
    // Both lead (as far as the link knows); the first just never answers this request.
    leader.server.handle('slowOrNot', () => 'ok');
    silent.server.handle('slowOrNot', () => new Promise(() => {}));
    const l = link([silent.addr, leader.addr], { attemptTimeoutMs: 100 });
    const t0 = Date.now();
    expect(await l.call('slowOrNot', {}, { timeoutMs: 3000 })).toBe('ok');
    expect(Date.now() - t0).toBeLessThan(1500);
    expect(l.leader()).toBe(leader.addr);
  });

  it('a leader change: the old leader turns standby with a hint, calls follow', async () => {
    let leaderAddr: string | undefined;
    const b = await fakeMaster('leader');
    // `a` leads until `demoted`, then names b.
    const server = new RpcServer({ host: HOST, port: 0 });
    servers.push(server);
    let demoted = false;
    server.handle('ping', () => {
      if (demoted) throw new NotLeaderError(leaderAddr);
      return { from: 'a' };
    });
    const a = `${HOST}:${await server.listen()}`;
    const l = link([a, b.addr]);
    expect(await l.call('ping', {}, { timeoutMs: 2000 })).toEqual({ from: 'a' });
    demoted = true;
    leaderAddr = b.addr;
    expect(await l.call('ping', {}, { timeoutMs: 2000 })).toMatchObject({ from: b.addr });
    expect(l.leader()).toBe(b.addr);
  });

  it('the deadline: no master leads, the last NOT_LEADER is thrown once timeoutMs has passed, with bounded pauses', async () => {
    const s1 = await fakeMaster('standby');
    const s2 = await fakeMaster('standby');
    const l = link([s1.addr, s2.addr]);
    const t0 = Date.now();
    const e = await rejection(l.call('ping', {}, { timeoutMs: 700 }));
    const took = Date.now() - t0;
    expect(e).toBeInstanceOf(RpcRemoteError);
    expect((e as RpcRemoteError).code).toBe(NOT_LEADER);
    expect(took).toBeGreaterThanOrEqual(690);
    expect(took).toBeLessThan(1200);
    // Pauses 50, 100, 200, 400 (capped at 500) between rounds of two tries: a handful of tries, not a storm.
    const tries = s1.seen.length + s2.seen.length;
    expect(tries).toBeGreaterThanOrEqual(4);
    expect(tries).toBeLessThanOrEqual(14);
  });

  it('the deadline with every address dead: the last RpcUnavailable', async () => {
    const l = link([await deadAddr(), await deadAddr()]);
    const e = await rejection(l.call('ping', {}, { timeoutMs: 300 }));
    expect(e).toBeInstanceOf(RpcUnavailable);
    expect((e as RpcUnavailable).reason).toBe('CONNECT_FAILED');
  });

  it('the deadline with a silent leader: RpcTimeout', async () => {
    const a = await fakeMaster('leader');
    const b = await fakeMaster('leader');
    const l = link([a.addr, b.addr]);
    const t0 = Date.now();
    const e = await rejection(l.call('never', {}, { timeoutMs: 300 }));
    expect(e).toBeInstanceOf(RpcTimeout);
    expect(Date.now() - t0).toBeLessThan(800);
  });

  it('a standby that names a leader nobody can reach: retried until the deadline, then the last error', async () => {
    const nowhere = await deadAddr();
    const standby = await fakeMaster('standby', () => nowhere);
    const l = link([standby.addr]);
    const e = await rejection(l.call('ping', {}, { timeoutMs: 400 }));
    expect(e).toBeInstanceOf(Error);
    expect(['UNAVAILABLE', NOT_LEADER]).toContain((e as { code: string }).code);
    expect(l.addresses()).toEqual([standby.addr, nowhere]);
  });

  it('passes BAD_MEMBER through at once, with its fields, no retry', async () => {
    const leader = await fakeMaster('leader');
    const other = await fakeMaster('leader');
    const l = link([leader.addr, other.addr]);
    const e = await rejection(l.call('leave', { id: 'n3' }, { timeoutMs: 2000 }));
    expect(e).toBeInstanceOf(RpcRemoteError);
    expect((e as RpcRemoteError).code).toBe('BAD_MEMBER');
    expect((e as RpcRemoteError).details).toEqual({ members: 2 });
    expect(leader.seen).toEqual(['leave']);
    expect(other.seen).toEqual([]);
    expect(l.leader()).toBe(leader.addr);
  });

  it('one address is a plain call: a dead master fails at once with RpcUnavailable, a standby with NOT_LEADER', async () => {
    const dead = link([await deadAddr()]);
    const t0 = Date.now();
    const e = await rejection(dead.call('ping', {}, { timeoutMs: 5000 }));
    expect(e).toBeInstanceOf(RpcUnavailable);
    expect(Date.now() - t0).toBeLessThan(1000);
    expect(dead.counters.retries).toBe(0);

    const standby = await fakeMaster('standby');
    const l = link([standby.addr]);
    const e2 = await rejection(l.call('ping', {}, { timeoutMs: 5000 }));
    expect((e2 as RpcRemoteError).code).toBe(NOT_LEADER);
    expect(standby.seen).toEqual(['ping']);

    const silent = await fakeMaster('leader');
    const l3 = link([silent.addr]);
    const e3 = await rejection(l3.call('never', {}, { timeoutMs: 200 }));
    expect(e3).toBeInstanceOf(RpcTimeout);
    expect((e3 as RpcTimeout).timeoutMs).toBe(200);
  });

  it('close: a call waiting between rounds ends at once with RpcUnavailable CLOSED, later calls too', async () => {
    const s1 = await fakeMaster('standby');
    const s2 = await fakeMaster('standby');
    const l = new MasterLink([s1.addr, s2.addr], { pauseMinMs: 5_000, pauseMaxMs: 5_000 });
    const p = rejection(l.call('ping', {}, { timeoutMs: 20_000 }));
    await new Promise((r) => setTimeout(r, 100));
    const t0 = Date.now();
    await l.close();
    const e = await p;
    expect(Date.now() - t0).toBeLessThan(500);
    expect(e).toBeInstanceOf(RpcUnavailable);
    expect((e as RpcUnavailable).reason).toBe('CLOSED');
    const later = await rejection(l.call('ping', {}, { timeoutMs: 1000 }));
    expect((later as RpcUnavailable).reason).toBe('CLOSED');
  });
});
