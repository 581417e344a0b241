// `ringkv status` with several masters (an HA setup): each listed master's role, read from
// its `role` reply or its error (a master older than the RPC, UNKNOWN_TYPE, is a lone
// leader on the level store; no answer is unreachable); the "masters:" line after the
// header; "no master leads" as a health problem; the view asked of the leader through a
// standby's hint. The pure parts take plain values; fetchRoles and fetchLeaderView run
// against in-process RpcServers on loopback.
import { deadAddr } from '../helpers/connect.js';
import { afterEach, describe, expect, it } from 'vitest';
import {
  fetchLeaderView,
  fetchRoles,
  formatMasters,
  formatStatus,
  masterAddrs,
  masterEntry,
  masterProblems,
  MasterUnreachable,
  parseRole,
  summarize,
  type MasterEntry,
  type MasterView,
} from '../../client/status.js';
import { addressList } from '../../client/node-cmd.js';
import { NotLeaderError, type MasterRole } from '../../server/master/leadership.js';
import { RpcRemoteError, RpcServer, RpcTimeout, RpcUnavailable } from '../../server/protocol/rpc/index.js';

const HOST = '127.0.0.1';
const member = (id: string) => ({ id, addrs: { memcached: 'h:1', http: 'h:2', rpc: 'h:3' }, status: 'up', lastRenewalAgoMs: 10, pieces: 1 });
const view: MasterView = {
  lsn: 9,
  leaseMs: 3000,
  members: [member('n1')],
  leases: [{ start: '0000000000000000', end: '0000000000000000', owner: 'n1', generation: 2, expiresInMs: 1000 }],
};

describe('the masters line and its health', () => {
  const three: MasterEntry[] = [
    { addr: '127.0.0.1:7000', role: 'leader', leader: '127.0.0.1:7000', store: 'etcd' },
    { addr: '127.0.0.1:7001', role: 'standby', leader: '127.0.0.1:7000', store: 'etcd' },
    { addr: '127.0.0.1:7002', role: 'unreachable', error: 'connect ECONNREFUSED' },
  ];

  it('formats each master with its role, in the order listed', () => {
    expect(formatMasters(three)).toBe('masters: 127.0.0.1:7000 leader, 127.0.0.1:7001 standby, 127.0.0.1:7002 unreachable');
    expect(formatMasters([{ addr: 'm:1', role: 'leader' }])).toBe('masters: m:1 leader');
  });

  it('no leader among the masters that answered is a problem; an unreachable standby is not', () => {
    expect(masterProblems(three)).toEqual([]);
    expect(masterProblems([])).toEqual([]);
    expect(masterProblems([three[1]!, three[2]!])).toEqual(['no master leads (standby: 127.0.0.1:7001)']);
    expect(masterProblems([three[2]!])).toEqual(['no master answered role (127.0.0.1:7002)']);
  });

  it('formatStatus prints the masters line right after the header; the health line names the problem', () => {
    const lines = formatStatus('127.0.0.1:7000', summarize(view, three));
    expect(lines[0]).toMatch(/^master 127\.0\.0\.1:7000 lsn=9 /);
    expect(lines[1]).toBe('masters: 127.0.0.1:7000 leader, 127.0.0.1:7001 standby, 127.0.0.1:7002 unreachable');
    expect(lines[2]).toMatch(/^ID\s+ZONE/);
    expect(lines.at(-1)).toBe('health: healthy');

    const none = summarize(view, [three[1]!, three[2]!]);
    expect(none.health.healthy).toBe(false);
    expect(formatStatus('127.0.0.1:7001', none).at(-1)).toBe('health: unhealthy: no master leads (standby: 127.0.0.1:7001)');
  });

  it('without masters (nobody asked) there is no masters line and no masters field', () => {
    const s = summarize(view);
    expect(s.masters).toBeUndefined();
    expect(formatStatus('m:1', s)[1]).toMatch(/^ID\s+ZONE/);
  });

  it('the JSON form carries the masters with addr, role and leader', () => {
    const json = JSON.parse(JSON.stringify(summarize(view, three))) as { masters: MasterEntry[] };
    expect(json.masters.map((m) => [m.addr, m.role, m.leader])).toEqual([
      ['127.0.0.1:7000', 'leader', '127.0.0.1:7000'],
      ['127.0.0.1:7001', 'standby', '127.0.0.1:7000'],
      ['127.0.0.1:7002', 'unreachable', undefined],
    ]);
  });
});

describe('reading a role reply', () => {
  const role = (r: Partial<MasterRole>): MasterRole => ({ role: 'standby', self: 'b:1', leader: 'a:1', store: 'etcd', terms: 0, ...r });

  it('a MasterRole reply gives the role, leader and store', () => {
    expect(masterEntry('b:1', { reply: role({}) })).toEqual({ addr: 'b:1', role: 'standby', leader: 'a:1', store: 'etcd' });
    expect(masterEntry('b:1', { reply: role({ role: 'standby', leader: undefined }) })).toEqual({ addr: 'b:1', role: 'standby', store: 'etcd' });
    expect(masterEntry('a:1', { reply: role({ role: 'leader', self: 'a:1', terms: 3 }) })).toMatchObject({ role: 'leader', leader: 'a:1' });
  });

  it('a master older than the role RPC (UNKNOWN_TYPE) leads, on the level store', () => {
    expect(masterEntry('a:1', { error: new RpcRemoteError('UNKNOWN_TYPE', 'no handler for request type "role"', {}) })).toEqual({ addr: 'a:1', role: 'leader', leader: 'a:1', store: 'level' });
  });

  it('no answer, another refusal or a malformed reply: unreachable, with why', () => {
    expect(masterEntry('a:1', { error: new RpcUnavailable('CONNECT_FAILED', false, 'cannot connect to a:1: ECONNREFUSED') })).toEqual({ addr: 'a:1', role: 'unreachable', error: 'cannot connect to a:1: ECONNREFUSED' });
    expect(masterEntry('a:1', { error: new RpcTimeout('role', 2000, 'a:1') })).toMatchObject({ role: 'unreachable', error: expect.stringMatching(/no reply within 2000 ms/) });
    expect(masterEntry('a:1', { error: new RpcRemoteError('SHUTTING_DOWN', 'server is shutting down', {}) })).toMatchObject({ role: 'unreachable', error: 'SHUTTING_DOWN: server is shutting down' });
    expect(masterEntry('a:1', { reply: { role: 'boss' } })).toMatchObject({ role: 'unreachable', error: expect.stringMatching(/bad role reply/) });
    expect(masterEntry('a:1', { reply: null })).toMatchObject({ role: 'unreachable' });
  });

  it('parseRole checks the shape', () => {
    expect(parseRole(role({}))).toBeDefined();
    expect(parseRole({ role: 'leader' })).toBeDefined();
    expect(parseRole({ role: 'leader', leader: 7 })).toBeUndefined();
    expect(parseRole({ role: 'leader', store: 'zk' })).toBeUndefined();
    expect(parseRole('leader')).toBeUndefined();
  });
});

describe('--master lists', () => {
  it('status and cluster remove: every address is host:port; the list comes back comma-joined', () => {
    expect(masterAddrs('127.0.0.1:7000')).toBe('127.0.0.1:7000');
    expect(masterAddrs('a:7000, b:7000,c:7000')).toBe('a:7000,b:7000,c:7000');
    expect(() => masterAddrs('a:7000,nowhere')).toThrow(/host:port/);
    expect(() => masterAddrs(',')).toThrow(/host:port/);
  });

  it('node: the same rule for each address of --master', () => {
    expect(addressList('a:7000,b:7001')).toBe('a:7000,b:7001');
    expect(() => addressList('a:7000,b:0')).toThrow(/host:port/);
    expect(() => addressList('a:7000,b')).toThrow(/"b"/);
    expect(() => addressList('')).toThrow(/host:port/);
  });
});

// ---- against in-process masters --------------------------------------------------------

const servers: RpcServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close(0)));
});

/** A master answering `role` (or not at all: an old master), and `view` only when leading. */
async function fakeMaster(kind: 'leader' | 'standby' | 'old', leader: () => string | undefined = () => undefined): Promise<string> {
  const server = new RpcServer({ host: HOST, port: 0 });
  servers.push(server);
  let self = '';
  if (kind !== 'old') {
    server.handle('role', (): MasterRole => ({ role: kind, self, ...(kind === 'leader' ? { leader: self } : leader() ? { leader: leader()! } : {}), store: 'etcd', terms: kind === 'leader' ? 1 : 0 }));
  }
  server.handle('view', () => {
    if (kind === 'standby') throw new NotLeaderError(leader());
    return view;
  });
  self = `${HOST}:${await server.listen()}`;
  return self;
}

describe('asking the masters', () => {
  it('fetchRoles asks every listed master at once: leader, standby, unreachable, and an old master as leader', async () => {
    const leader = await fakeMaster('leader');
    const standby = await fakeMaster('standby', () => leader);
    const dead = await deadAddr();
    const roles = await fetchRoles([standby, leader, dead]);
    expect(formatMasters(roles)).toBe(`masters: ${standby} standby, ${leader} leader, ${dead} unreachable`);
    expect(roles[0]).toMatchObject({ leader });
    const old = await fakeMaster('old');
    expect(await fetchRoles([old])).toEqual([{ addr: old, role: 'leader', leader: old, store: 'level' }]);
  });

  it('fetchLeaderView asks the leader, through a standby\'s hint or past a dead master', async () => {
    const leader = await fakeMaster('leader');
    const standby = await fakeMaster('standby', () => leader);
    const dead = await deadAddr();
    expect(await fetchLeaderView([dead, standby, leader])).toEqual({ view, leader });
    expect((await fetchLeaderView(standby)).leader).toBe(leader);
  });

  it('fetchLeaderView: one dead master is MasterUnreachable at once; only standbys is NOT_LEADER at the deadline', async () => {
    const dead = await deadAddr();
    await expect(fetchLeaderView(dead, 5_000)).rejects.toBeInstanceOf(MasterUnreachable);
    const s1 = await fakeMaster('standby');
    const s2 = await fakeMaster('standby');
    const e = await fetchLeaderView([s1, s2], 300).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(RpcRemoteError);
    expect((e as RpcRemoteError).code).toBe('NOT_LEADER');
  });
});
