// The master on etcd, in process (two `startMaster` shells on one real single-member etcd,
// nodes played by an RpcClient): one leads and the other stands by answering NOT_LEADER
// with the leader's address; a takeover keeps the members, pieces, owners, generations
// and the change log (a node at an old LSN gets the changes since, not the whole table);
// a master whose election key is gone (as when its etcd lease ran out while it was
// paused) grants nothing and changes nothing: its check fails, it stands down, and the
// state in etcd is as it was.
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Etcd3 } from 'etcd3';
import { initHash } from '../../ring/index.js';
import { startMaster, masterDefaults, type RunningMaster } from '../../server/master/master.js';
import type { ChangesReply, FullTable, LeaseGrant } from '../../server/master/core.js';
import { RpcClient, RpcRemoteError } from '../../server/protocol/rpc/index.js';
import { createLogger } from '../../server/log.js';
import { startEtcd, type EtcdMember } from '../helpers/etcd.js';
import { pollUntil } from '../helpers/async.js';

/** Waits (bounded) until `ok()` holds. */
const until = (ok: () => boolean, timeoutMs: number, what: string) => pollUntil(timeoutMs, async () => ok(), () => what, 50);

const quiet = createLogger({ level: 'error', bindings: { component: 'master' } });
let etcd: EtcdMember | undefined;
const masters: RunningMaster[] = [];
const clients: RpcClient[] = [];

beforeAll(async () => {
  await initHash();
});

afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  for (const m of masters.splice(0)) await m.close().catch(() => {});
  await etcd?.stop();
  etcd = undefined;
}, 30_000);

async function master(prefix: string): Promise<RunningMaster> {
  const m = await startMaster(
    {
      ...masterDefaults,
      host: '127.0.0.1',
      port: 0,
      httpPort: 0,
      data: '/nonexistent-not-used-with-etcd',
      leaseMs: 3000,
      renewMs: 500,
      driftMs: 100,
      vnodes: 8,
      tickMs: 50,
      store: 'etcd',
      etcd: [etcd!.clientAddr],
      etcdPrefix: prefix,
      masterTtlMs: 1000,
    },
    undefined,
    quiet,
  );
  masters.push(m);
  return m;
}

function rpc(m: RunningMaster): RpcClient {
  const c = new RpcClient({ host: '127.0.0.1', port: m.port });
  clients.push(c);
  return c;
}

const node = (id: string, i: number) => ({ id, addrs: { memcached: `127.0.0.1:${20000 + i}`, http: `127.0.0.1:${21000 + i}`, rpc: `127.0.0.1:${22000 + i}` } });

async function refusal(p: Promise<unknown>): Promise<RpcRemoteError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e, 'the call was refused').toBeInstanceOf(RpcRemoteError);
  return e as RpcRemoteError;
}

describe('master on etcd (in process)', () => {
  it('one leads, the other stands by naming it; a takeover keeps pieces, generations and the change log', async () => {
    etcd = await startEtcd();
    const a = await master('/t1');
    await until(() => a.role().role === 'leader', 10_000, "a.role().role === 'leader'");
    const b = await master('/t1');
    await until(() => b.role().leader === a.role().self, 10_000, 'b.role().leader === a.role().self');
    expect(b.role()).toMatchObject({ role: 'standby', store: 'etcd', leader: a.role().self, terms: 0 });

    const ca = rpc(a);
    for (const [i, id] of ['n1', 'n2', 'n3'].entries()) await ca.call<LeaseGrant>('register', node(id, i), { timeoutMs: 5000 });
    for (const id of ['n1', 'n2', 'n3']) await ca.call<LeaseGrant>('renew', { id }, { timeoutMs: 5000 });
    const before = await ca.call<FullTable>('table', {}, { timeoutMs: 5000 });
    expect(before.leases.length).toBeGreaterThan(0);
    expect(before.lsn).toBeGreaterThanOrEqual(3);

    // The standby refuses with the leader's address, and grants nothing.
    const cb = rpc(b);
    const refused = await refusal(cb.call('renew', { id: 'n1' }, { timeoutMs: 5000 }));
    expect(refused.code).toBe('NOT_LEADER');
    expect(refused.details.leader).toBe(a.role().self);
    expect(await cb.call('role', {}, { timeoutMs: 5000 })).toMatchObject({ role: 'standby', leader: a.role().self });

    // A resigns (a clean stop): B takes over with the same table.
    await a.close();
    masters.splice(masters.indexOf(a), 1);
    await until(() => b.role().role === 'leader', 10_000, "b.role().role === 'leader'");
    expect(b.role().terms).toBe(1);
    const after = await cb.call<FullTable>('table', {}, { timeoutMs: 5000 });
    expect(after.lsn).toBe(before.lsn);
    const key = (t: FullTable) => t.leases.map((l) => `${l.start}-${l.end}:${l.owner}@${l.generation}`).sort();
    expect(key(after)).toEqual(key(before));
    expect(after.members.map((m) => `${m.id}:${m.status}`).sort()).toEqual(before.members.map((m) => `${m.id}:${m.status}`).sort());
    // The change log came along: a node two changes behind gets those two changes.
    const changes = await cb.call<ChangesReply>('changes', { lsn: before.lsn - 2 }, { timeoutMs: 5000 });
    expect('changes' in changes ? changes.changes.map((c) => c.lsn) : 'full table').toEqual([before.lsn - 1, before.lsn]);
    // And the nodes renew with the new leader as before: pieces they held, at the same
    // generations (a piece still being recalled from n1 is not granted again).
    const grant = await cb.call<LeaseGrant>('renew', { id: 'n1' }, { timeoutMs: 5000 });
    const n1Before = new Set(before.leases.filter((l) => l.owner === 'n1').map((l) => `${l.end}@${l.generation}`));
    expect(grant.leases.length).toBeGreaterThan(0);
    expect(grant.leases.map((l) => `${l.end}@${l.generation}`).filter((p) => !n1Before.has(p))).toEqual([]);
  }, 60_000);

  it('a leader whose election key is gone (its etcd lease ran out while it was away) grants nothing, writes nothing, and stands down', async () => {
    etcd = await startEtcd();
    const a = await master('/t2');
    await until(() => a.role().role === 'leader', 10_000, "a.role().role === 'leader'");
    const ca = rpc(a);
    for (const [i, id] of ['n1', 'n2', 'n3'].entries()) await ca.call<LeaseGrant>('register', node(id, i), { timeoutMs: 5000 });

    const client = new Etcd3({ hosts: [etcd.clientUrl] });
    try {
      const snapshotKey = '/t2/state/snapshot';
      const saved = await client.get(snapshotKey).string();
      expect(saved).toBeTruthy();
      // What etcd does when a leader's lease expires: its election key goes.
      const keys = await client.getAll().prefix('').keys();
      const mine = keys.filter((k) => k.includes('/t2/master'));
      expect(mine.length).toBe(1);
      await client.delete().key(mine[0]!);

      // The next grant is refused (its leadership check fails), and so is a change.
      const renew = await refusal(ca.call('renew', { id: 'n1' }, { timeoutMs: 5000 }));
      expect(renew.code).toBe('NOT_LEADER');
      await until(() => a.role().role === 'standby', 5000, "a.role().role === 'standby'");
      const join = await refusal(ca.call('register', node('n4', 4), { timeoutMs: 5000 }));
      expect(join.code).toBe('NOT_LEADER');
      expect(await client.get(snapshotKey).string()).toBe(saved);

      // Standing again a lease period later, it leads a new term from the saved state.
      await until(() => a.role().role === 'leader', 10_000, "a.role().role === 'leader'");
      expect(a.role().terms).toBe(2);
      const t = await ca.call<FullTable>('table', {}, { timeoutMs: 5000 });
      expect(t.members.map((m) => m.id).sort()).toEqual(['n1', 'n2', 'n3']);
    } finally {
      client.close();
    }
  }, 60_000);
});
