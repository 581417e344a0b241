// Regressions found by the fault tests, each reduced to its smallest real-process form:
// a forwarded write that arrives after its sender gave up must not be run (it would win
// over writes acknowledged after it), and a multi-get's error reply must reach the
// client whole.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hash64, initHash, Ring } from '../../ring/index.js';
import type { RunningServer } from '../../bench/lib/servers.js';
import { McClient } from '../helpers/mc.js';
import { request } from '../helpers/http.js';
import { debugLocal, startTestCluster } from '../helpers/cluster.js';

const ids = ['n1', 'n2', 'n3', 'n4'];
const vnodes = 16;
const nodeArgs = ['--debug-faults', '--heartbeat-ms', '100', '--replica-timeout-ms', '300', '--forward-timeout-ms', '1000', '--unavailable-ms', '2000'];

describe('replication regressions (4 nodes, N=3)', () => {
  const started: RunningServer[] = [];
  const byId = new Map<string, RunningServer>();
  let ring: Ring;

  beforeAll(async () => {
    await initHash();
    const c = await startTestCluster({ ids, leaseMs: 20_000, renewMs: 500, vnodes, nodeArgs }, (s) => (started.push(s), s));
    ids.forEach((id, i) => byId.set(id, c.nodes[i]!));
    ring = Ring.build(ids.map((id) => ({ id })), { vnodes });
  }, 60_000);

  afterAll(async () => {
    for (const s of started) {
      try {
        process.kill(s.pid, 'SIGCONT');
      } catch {
        // already gone
      }
    }
    await Promise.all(started.filter((s) => s.name === 'ringkv').map((s) => s.stop()));
    for (const s of started.filter((s) => s.name !== 'ringkv')) await s.stop();
  });

  const listOf = (key: string) => ring.preferenceList(hash64(Buffer.from(key, 'latin1')), 3);

  it('refuses a forwarded write that arrives after its sender gave up (it must not win over later writes)', async () => {
    const key = 'late:0';
    const [x, y, z] = listOf(key).map((id) => byId.get(id)!) as [RunningServer, RunningServer, RunningServer];
    const cx = await McClient.connect(x.port);
    expect(await cx.set(key, 'v0')).toBe('STORED');
    cx.close();
    process.kill(x.pid, 'SIGSTOP'); // the owner stops; requests queue in its socket buffers
    const cy = await McClient.connect(y.port);
    const cz = await McClient.connect(z.port);
    try {
      // Forwarded to x, times out, then coordinated by a replica: acknowledged.
      expect(await cy.set(key, 'a')).toBe('STORED');
      // Acknowledged after a, so it is the value to keep.
      expect(await cz.set(key, 'b')).toBe('STORED');
    } finally {
      process.kill(x.pid, 'SIGCONT');
    }
    // x wakes up with the forwarded set of 'a' still queued: it must refuse it (its
    // sender gave up long ago), so every replica ends on b.
    const deadline = Date.now() + 15_000;
    for (;;) {
      const values = await Promise.all([x, y, z].map(async (n) => (await debugLocal(n.httpPort!, key))?.value));
      if (values.every((v) => v === 'b')) break;
      if (Date.now() > deadline) throw new Error(`replicas did not converge on b: ${JSON.stringify(values)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    for (const n of [x, y, z]) {
      const c = await McClient.connect(n.port);
      // x's failure detector may still count its peers down for a heartbeat after the
      // stop (every call it had out timed out): a quorum read there is unavailable, not wrong.
      let value: string | undefined;
      for (;;) {
        try {
          value = (await c.get(key))?.value.toString();
          break;
        } catch (e) {
          if (!/SERVER_ERROR unavailable/.test(String(e)) || Date.now() > deadline) throw e;
          await new Promise((r) => setTimeout(r, 100));
        }
      }
      expect(value, n.pid.toString()).toBe('b');
      c.close();
    }
    cy.close();
    cz.close();
  }, 40_000);

  it('sends a multi-get whose key is unavailable one whole SERVER_ERROR line', async () => {
    const lonely = byId.get('n1')!;
    let key = '';
    for (let i = 0; ; i++) {
      key = `t:${i}`;
      if (!listOf(key).includes('n1')) break;
    }
    const cut = await request(lonely.httpPort!, 'PUT', '/debug/partition', { body: Buffer.from(JSON.stringify({ unreachable: ['n2', 'n3', 'n4'] })) });
    expect(cut.status).toBe(204);
    const c = await McClient.connect(lonely.port);
    try {
      await c.write(`get ${key}\r\n`);
      expect(await c.line(8_000)).toBe('SERVER_ERROR unavailable');
      // The connection is still in step: the next command gets its own reply.
      expect(await c.command('version')).toMatch(/^VERSION /);
    } finally {
      c.close();
      await request(lonely.httpPort!, 'PUT', '/debug/partition', { body: Buffer.from(JSON.stringify({ unreachable: [] })) });
    }
  }, 30_000);
});
