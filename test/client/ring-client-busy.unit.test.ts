// RingClient against an in-process fake node that refuses requests in overload (remote code
// OVERLOADED): a refusal is retried after a backoff without pulling the lease table again,
// for any request (a refused one never ran, so even incr is safe to send again); a node
// that keeps refusing until the deadline makes the caller's error Busy.
import { afterEach, describe, expect, it } from 'vitest';
import { RpcServer, type RpcHandler } from '../../server/protocol/rpc/index.js';
import type { ChangesReply } from '../../server/master/core.js';
import { Busy, RingClient, RingkvError, Unavailable, type RingClientOptions } from '../../client/index.js';

const HOST = '127.0.0.1';
const WHOLE_RING = 'ffffffffffffffff';

const cleanups: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A master whose table gives the whole ring to one node at `rpcAddr`; counts the pulls. */
async function fakeMaster(rpcAddr: string) {
  const master = new RpcServer({ host: HOST, port: 0 });
  const state = { pulls: 0 };
  master.handle('changes', (): ChangesReply => {
    state.pulls++;
    return {
      lsn: 1,
      full: {
        lsn: 1,
        leases: [{ start: WHOLE_RING, end: WHOLE_RING, owner: 'n1', generation: 7 }],
        members: [{ id: 'n1', addrs: { memcached: `${HOST}:1`, http: `${HOST}:1`, rpc: rpcAddr }, status: 'up' }],
      },
    };
  });
  const port = await master.listen();
  cleanups.push(() => master.close(0));
  return { port, state };
}

async function fakeNode(kv: RpcHandler): Promise<string> {
  const node = new RpcServer({ host: HOST, port: 0 });
  node.handle('kv', kv);
  const port = await node.listen();
  cleanups.push(() => node.close(0));
  return `${HOST}:${port}`;
}

async function connect(nodeAddr: string, opts: Partial<RingClientOptions> = {}) {
  const m = await fakeMaster(nodeAddr);
  const kv = await RingClient.connect({ master: `${HOST}:${m.port}`, refreshMs: 60_000, ...opts });
  cleanups.push(() => kv.close());
  return { kv, master: m.state };
}

const overloaded = () => Object.assign(new Error('the node is overloaded'), { code: 'OVERLOADED' });
const okItem = () => ({ status: 'OK', item: { value: new Uint8Array([0x76]), flags: 0, cas: '5', expiresAtMs: 0 } });

describe('RingClient and a node refusing in overload (OVERLOADED)', () => {
  it('retries a refused set after a backoff, without pulling the lease table again', async () => {
    let calls = 0;
    const addr = await fakeNode(() => {
      calls++;
      if (calls <= 2) throw overloaded();
      return okItem();
    });
    const { kv, master } = await connect(addr);
    const pullsBefore = master.pulls;
    await kv.set('k', 'v');
    expect(calls).toBe(3);
    expect(kv.counters.busy).toBe(2);
    expect(kv.counters.retries).toBe(2);
    expect(kv.counters.notOwner).toBe(0);
    // Overload is not a stale table: no pull because of it.
    expect(master.pulls).toBe(pullsBefore);
  });

  it('rejects with Busy once a node that always refuses has refused until the deadline', async () => {
    let calls = 0;
    const addr = await fakeNode(() => {
      calls++;
      throw overloaded();
    });
    const { kv, master } = await connect(addr);
    const pullsBefore = master.pulls;
    const e = await kv.set('k', 'v', { timeoutMs: 300 }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(Busy);
    expect(e).toBeInstanceOf(RingkvError);
    expect((e as Busy).code).toBe('BUSY');
    expect((e as Busy).name).toBe('Busy');
    expect(calls).toBeGreaterThanOrEqual(2);
    expect(kv.counters.retries).toBeGreaterThanOrEqual(1);
    expect(kv.counters.busy).toBe(calls);
    expect(master.pulls).toBe(pullsBefore);
  });

  it('rejects a get with Busy too (reads are refused like writes)', async () => {
    const { kv } = await connect(await fakeNode(() => Promise.reject(overloaded())));
    const e = await kv.get('k', { timeoutMs: 200 }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(Busy);
  });

  it('retries a refused incr (a refusal means it never ran) and returns the value of its one run', async () => {
    let calls = 0;
    let runs = 0;
    const addr = await fakeNode(() => {
      calls++;
      if (calls === 1) throw overloaded();
      runs++;
      return { status: 'OK', value: String(41 + runs), item: okItem().item };
    });
    const { kv } = await connect(addr);
    expect(await kv.incr('counter', 1)).toBe(42n);
    expect(calls).toBe(2);
    expect(runs).toBe(1);
    expect(kv.counters.busy).toBe(1);
    expect(kv.counters.retries).toBe(1);
  });

  it('an incr refused on every try is Busy: none of them ran, so nothing may have happened', async () => {
    let calls = 0;
    const addr = await fakeNode(() => {
      calls++;
      throw overloaded();
    });
    const { kv } = await connect(addr);
    const e = await kv.incr('counter', 1, { timeoutMs: 200 }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(Busy);
    expect(calls).toBeGreaterThanOrEqual(2);
  });

  it('a set refused until the deadline after an earlier try timed out is Unavailable{sent:true}, not Busy', async () => {
    // The first try gets no answer (it may have run); the node refuses every later one.
    let calls = 0;
    const addr = await fakeNode(() => {
      calls++;
      if (calls === 1) return new Promise(() => {});
      throw overloaded();
    });
    const { kv } = await connect(addr, { attemptTimeoutMs: 100 });
    const e = await kv.set('k', 'v', { timeoutMs: 500 }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(Unavailable);
    expect((e as Unavailable).sent).toBe(true);
    expect(calls).toBeGreaterThanOrEqual(2);
    expect(kv.counters.busy).toBe(calls - 1);
  });
});
