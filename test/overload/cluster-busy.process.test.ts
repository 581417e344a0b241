// Overload in a cluster (real processes): an owner that refuses forwarded requests makes
// the forwarding node answer at once, on every front end, with the owner's refusal (not
// retry it inside the cluster, not call it unavailable), and the TS client backs off and
// retries refused requests, so those that succeed are stored and the rest fail as Busy.
// Two nodes, N=1: n2 (level storage, --max-inflight 1) owns the keys used; n1 forwards.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hash64, initHash, Ring } from '../../ring/index.js';
import { startMaster, type RunningServer } from '../../bench/lib/servers.js';
import { Busy, RingClient } from '../../client/index.js';
import { settled, startTestNode, until } from '../helpers/cluster.js';
import { request } from '../helpers/http.js';
import { McClient, setCommand } from '../helpers/mc.js';

const vnodes = 16;
const BUSY = 'SERVER_ERROR busy';

describe('overload in a cluster: an owner refusing forwarded requests', () => {
  const started: RunningServer[] = [];
  let master: RunningServer;
  let n1: RunningServer;
  let n2: RunningServer;
  /** Keys whose range n2 owns. */
  let keys: string[];

  beforeAll(async () => {
    await initHash();
    master = await startMaster({ args: ['--lease-ms', '20000', '--vnodes', String(vnodes), '--n', '1', '--r', '1', '--w', '1'] });
    started.push(master);
    n1 = await startTestNode(master, 'n1', { renewMs: 500 });
    started.push(n1);
    n2 = await startTestNode(master, 'n2', { renewMs: 500, storage: 'level', nodeArgs: ['--max-inflight', '1'] });
    started.push(n2);
    await until(master, settled(['n1', 'n2']));
    const ring = Ring.build([{ id: 'n1' }, { id: 'n2' }], { vnodes });
    keys = Array.from({ length: 400 }, (_, i) => `busy:${i}`)
      .filter((k) => ring.preferenceList(hash64(Buffer.from(k, 'latin1')), 1)[0] === 'n2')
      .slice(0, 60);
    expect(keys.length).toBe(60);
  }, 60_000);

  afterAll(async () => {
    for (const s of started.reverse()) await s.stop();
  });

  it('memcached: n1 answers each forwarded set STORED or SERVER_ERROR busy, in order, and a refused set was not stored', async () => {
    const batch = keys.slice(0, 30);
    const c = await McClient.connect(n1.port);
    await c.write(Buffer.concat(batch.map((k) => setCommand(k, `v-${k}`))));
    const replies: string[] = [];
    for (let i = 0; i < batch.length; i++) replies.push(await c.line());
    c.close();
    expect(replies.filter((r) => r !== 'STORED' && r !== BUSY), replies.join(' | ')).toEqual([]);
    expect(replies).toContain('STORED');
    expect(replies).toContain(BUSY);

    const owner = await McClient.connect(n2.port);
    for (const [i, k] of batch.entries()) {
      const got = await owner.get(k);
      if (replies[i] === 'STORED') expect(got?.value.toString(), k).toBe(`v-${k}`);
      else expect(got, `${k} was refused, so it must not be stored`).toBeUndefined();
    }
    const stats = await owner.stats();
    expect(Number(stats.get('rejected_inflight'))).toBeGreaterThan(0);
    owner.close();
  });

  it('HTTP: a request n2 refuses is a 503 busy with Retry-After on n1', async () => {
    const results = await Promise.all(
      keys.slice(30, 50).map((k) => request(n1.httpPort!, 'PUT', `/kv/${encodeURIComponent(k)}`, { body: Buffer.from('x') })),
    );
    const statuses = results.map((r) => r.status);
    expect(statuses.filter((s) => s !== 204 && s !== 503), statuses.join(',')).toEqual([]);
    const busy = results.filter((r) => r.status === 503);
    expect(busy.length).toBeGreaterThan(0);
    for (const r of busy) {
      expect(JSON.parse(r.body.toString('utf8'))).toMatchObject({ error: 'busy' });
      expect(r.headers['retry-after']).toBe('1');
    }
  });

  it('TS client: refused requests are retried after a backoff; what succeeds is stored, the rest is Busy', async () => {
    const kv = await RingClient.connect({ master: `127.0.0.1:${master.port}` });
    try {
      const batch = keys.slice(50, 60);
      const outcomes = await Promise.allSettled(batch.map((k) => kv.set(k, `ts-${k}`, { timeoutMs: 2_000 })));
      for (const o of outcomes) if (o.status === 'rejected') expect(o.reason).toBeInstanceOf(Busy);
      expect(kv.counters.busy).toBeGreaterThan(0);
      for (const [i, k] of batch.entries()) {
        if (outcomes[i]!.status === 'fulfilled') expect((await kv.get(k))?.value.toString()).toBe(`ts-${k}`);
      }
    } finally {
      await kv.close();
    }
  });
});
