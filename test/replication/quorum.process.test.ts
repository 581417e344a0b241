// Quorums at the edges, with real processes: every front-end refuses a write it cannot
// make durable on W nodes (never a silent success), per-request r/w are honoured and
// checked against N, and a dead owner does not cost plain reads and writes their
// availability (another replica coordinates them at once).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../../bench/lib/servers.js';
import { RingClient, Unavailable, BadRequest } from '../../client/index.js';
import { McClient } from '../helpers/mc.js';
import { request } from '../helpers/http.js';
import { pieceOf, startTestCluster, view } from '../helpers/cluster.js';
import { hash64, initHash } from '../../ring/index.js';

const ids = ['n1', 'n2', 'n3'];
const nodeArgs = ['--heartbeat-ms', '100', '--replica-timeout-ms', '300', '--forward-timeout-ms', '1000', '--unavailable-ms', '3000'];

describe('quorums of a 3-node cluster (N=3, R=2, W=2)', () => {
  const started: RunningServer[] = [];
  const track = (s: RunningServer) => (started.push(s), s);
  let master: RunningServer;
  let nodes: RunningServer[];
  let kv: RingClient;

  beforeAll(async () => {
    await initHash();
    // A long lease: the master keeps calling a killed node up, so only the nodes' own
    // failure detectors notice it (the interesting case for sloppy quorum).
    ({ master, nodes } = await startTestCluster({ ids, leaseMs: 20_000, renewMs: 2_000, vnodes: 16, nodeArgs }, track));
    kv = await RingClient.connect({ master: `127.0.0.1:${master.port}`, timeoutMs: 5_000 });
  }, 60_000);

  afterAll(async () => {
    await kv?.close();
    await Promise.all(started.map((s) => s.stop(2_000)));
  });

  it('checks per-request quorums against N', async () => {
    await kv.set('q:ok', 'v', { w: 3 });
    expect((await kv.get('q:ok', { r: 3 }))?.value.toString()).toBe('v');
    await expect(kv.set('q:bad', 'v', { w: 4 })).rejects.toBeInstanceOf(BadRequest);
    const r = await request(nodes[0]!.httpPort!, 'GET', '/kv/q:ok?r=4');
    expect(r.status).toBe(400);
    expect(JSON.parse(r.body.toString('utf8'))).toMatchObject({ error: 'bad_request' });
    expect((await request(nodes[1]!.httpPort!, 'GET', '/kv/q:ok?r=3')).body.toString()).toBe('v');
  });

  it('keeps serving plain reads and writes through a dead owner, and refuses writes that cannot reach W', async () => {
    // A key whose owner is n3, so that killing n3 leaves n1, n2 to coordinate for it.
    const v = await view(master);
    const keyOwnedBy = (owner: string): string => {
      for (let i = 0; i < 10_000; i++) {
        const key = `dead-owner:${i}`;
        if (pieceOf(v, hashOf(key)).owner === owner) return key;
      }
      throw new Error(`no key owned by ${owner}`);
    };
    const key = keyOwnedBy('n3');
    await kv.set(key, 'before');
    await nodes[2]!.kill();

    // Plain ops still work at once (well before the 20 s lease could move), on every front-end.
    const mc = await McClient.connect(nodes[0]!.port);
    expect(await mc.set(key, 'after')).toBe('STORED');
    expect((await mc.get(key))?.value.toString()).toBe('after');
    expect((await kv.get(key))?.value.toString()).toBe('after');
    await kv.set(key, 'via-client');
    expect((await request(nodes[1]!.httpPort!, 'GET', `/kv/${key}`)).body.toString()).toBe('via-client');
    // A conditional op needs the lease holder: it waits (--unavailable-ms) and then says so.
    expect(await mc.command(`incr ${key} 1`)).toBe('SERVER_ERROR unavailable');

    // With n3 dead, W = 3 cannot be met on any front-end; W = 2 still can.
    await expect(kv.set(key, 'w3', { w: 3 })).rejects.toBeInstanceOf(Unavailable);
    const put = await request(nodes[1]!.httpPort!, 'PUT', `/kv/${key}?w=3`, { body: Buffer.from('w3') });
    expect(put.status).toBe(503);
    expect(JSON.parse(put.body.toString('utf8'))).toMatchObject({ error: 'unavailable' });

    // Kill a second node: one copy is all that is left, so W = 2 fails everywhere.
    await nodes[1]!.kill();
    expect(await mc.set(key, 'lonely')).toBe('SERVER_ERROR unavailable');
    expect(await mc.command(`get ${key}`)).toBe('SERVER_ERROR unavailable');
    await expect(kv.set(key, 'lonely')).rejects.toBeInstanceOf(Unavailable);
    expect((await request(nodes[0]!.httpPort!, 'PUT', `/kv/${key}`, { body: Buffer.from('x') })).status).toBe(503);
    // ...but a request that asks for one copy is served.
    await kv.set(key, 'alone', { w: 1 });
    expect((await kv.get(key, { r: 1 }))?.value.toString()).toBe('alone');
    const stats = JSON.parse((await request(nodes[0]!.httpPort!, 'GET', '/stats')).body.toString('utf8')) as Record<string, number>;
    expect(stats.quorum_failures).toBeGreaterThan(0);
    expect(stats.hints_held).toBeGreaterThan(0);
    mc.close();
  }, 60_000);
});

function hashOf(key: string): bigint {
  return hash64(Buffer.from(key, 'latin1'));
}
