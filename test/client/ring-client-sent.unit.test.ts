// A plain write is retried after a try that may have reached the node (a stand-in may
// coordinate it), so its final error must keep saying "may have happened" even when the
// last try certainly did not leave: a caller must never read sent=false for a write
// that a node received.
import { afterEach, expect, it } from 'vitest';
import { RpcServer } from '../../server/protocol/rpc/index.js';
import type { ChangesReply } from '../../server/master/core.js';
import { RingClient, Unavailable } from '../../client/index.js';

const HOST = '127.0.0.1';
const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

it('reports a set whose first try reached the node as Unavailable{sent: true}, though later tries could not connect', async () => {
  const node = new RpcServer({ host: HOST, port: 0 });
  let received = 0;
  node.handle('kv', () => {
    received++;
    return new Promise(() => {}); // never answers: the try times out
  });
  const nodePort = await node.listen();
  const master = new RpcServer({ host: HOST, port: 0 });
  master.handle(
    'changes',
    (): ChangesReply => ({
      lsn: 1,
      full: {
        lsn: 1,
        leases: [{ start: 'ffffffffffffffff', end: 'ffffffffffffffff', owner: 'n1', generation: 1 }],
        members: [{ id: 'n1', addrs: { memcached: `${HOST}:1`, http: `${HOST}:1`, rpc: `${HOST}:${nodePort}` }, status: 'up' }],
      },
    }),
  );
  const masterPort = await master.listen();
  cleanups.push(() => master.close(0));
  const kv = await RingClient.connect({ master: `${HOST}:${masterPort}`, refreshMs: 60_000, attemptTimeoutMs: 300, timeoutMs: 1500 });
  cleanups.push(() => kv.close());
  const p = kv.set('k', 'v').catch((e: unknown) => e);
  // Wait until the first try reached the node, then take the node away: later tries
  // cannot connect (certainly not sent), but the first one may have run.
  for (let i = 0; i < 100 && received === 0; i++) await new Promise((r) => setTimeout(r, 20));
  expect(received).toBe(1);
  await new Promise((r) => setTimeout(r, 350));
  await node.close(0);
  const e = await p;
  expect(e).toBeInstanceOf(Unavailable);
  expect((e as Unavailable).sent).toBe(true);
});
