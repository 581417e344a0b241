// RingClient against in-process fakes (an RpcServer playing the master, another playing a
// node, raw sockets playing a node that dies mid-request): the local checks that need no
// I/O, and which failures are retried (NOT_OWNER, connect failed, idempotent reads) and
// which surface at once as typed errors (writes that may have reached a node, BAD_REQUEST,
// deadlines, close()).
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { RpcServer, type RpcHandler } from '../../server/protocol/rpc/index.js';
import type { ChangesReply } from '../../server/master/core.js';
import { NotLeaderError } from '../../server/master/leadership.js';
import {
  BadRequest,
  Closed,
  InvalidKey,
  KeyTooLong,
  NonNumeric,
  RingClient,
  RingkvError,
  ServerError,
  Timeout,
  Unavailable,
  ValueTooLarge,
  type RingClientOptions,
} from '../../client/index.js';

const HOST = '127.0.0.1';
const WHOLE_RING = 'ffffffffffffffff';

const cleanups: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A master whose table gives the whole ring to one node at `rpcAddr`; counts the pulls. */
async function fakeMaster(rpcAddr: () => string, generation = 7) {
  const master = new RpcServer({ host: HOST, port: 0 });
  const state = { pulls: 0, lsn: 1 };
  master.handle('changes', (): ChangesReply => {
    state.pulls++;
    return {
      lsn: state.lsn,
      full: {
        lsn: state.lsn,
        leases: [{ start: WHOLE_RING, end: WHOLE_RING, owner: 'n1', generation }],
        members: [{ id: 'n1', addrs: { memcached: `${HOST}:1`, http: `${HOST}:1`, rpc: rpcAddr() }, status: 'up' }],
      },
    };
  });
  const port = await master.listen();
  cleanups.push(() => master.close(0));
  return { port, state };
}

/** A node answering kv / kv.many with the given handlers. */
async function fakeNode(kv: RpcHandler, many?: RpcHandler) {
  const node = new RpcServer({ host: HOST, port: 0 });
  node.handle('kv', kv);
  if (many) node.handle('kv.many', many);
  const port = await node.listen();
  cleanups.push(() => node.close(0));
  return `${HOST}:${port}`;
}

async function connect(nodeAddr: string, opts: Partial<RingClientOptions> = {}) {
  const m = await fakeMaster(() => nodeAddr);
  const kv = await RingClient.connect({ master: `${HOST}:${m.port}`, refreshMs: 60_000, ...opts });
  cleanups.push(() => kv.close());
  return { kv, master: m.state };
}

const okItem = (value: Uint8Array) => ({ status: 'OK', item: { value, flags: 3, cas: '18446744073709551615', expiresAtMs: 0 } });
const never = () => new Promise(() => {});

/** A port with nobody listening (bound, then closed). */
async function deadPort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, HOST, r));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise((r) => srv.close(r));
  return port;
}

/** A "node" that reads a request and drops the connection, counting the requests that reached it. */
async function droppingNode() {
  const state = { requests: 0 };
  const srv = net.createServer((s) => {
    s.on('data', () => {
      state.requests++;
      s.destroy();
    });
    s.on('error', () => {});
  });
  await new Promise<void>((r) => srv.listen(0, HOST, r));
  cleanups.push(() => new Promise((r) => srv.close(r)));
  return { addr: `${HOST}:${(srv.address() as net.AddressInfo).port}`, state };
}

describe('RingClient local checks (no I/O)', () => {
  it('refuses bad keys, oversized values and malformed options with typed errors before sending', async () => {
    let requests = 0;
    const { kv } = await connect(await fakeNode(() => (requests++, { status: 'OK' })));
    for (const bad of ['a b', '', 'a\nb', 'a\0b', new Uint8Array([0x61, 0x20])]) {
      const e = await kv.get(bad).catch((x: unknown) => x);
      expect(e, JSON.stringify(bad)).toBeInstanceOf(InvalidKey);
      expect((e as InvalidKey).code).toBe('INVALID_KEY');
    }
    // 'é' is two bytes in UTF-8: 126 of them make 252 bytes.
    for (const long of ['k'.repeat(251), 'é'.repeat(126), new Uint8Array(251).fill(0x41)]) {
      const e = await kv.set(long, 'v').catch((x: unknown) => x);
      expect(e).toBeInstanceOf(KeyTooLong);
      expect(e).toBeInstanceOf(InvalidKey);
      expect((e as KeyTooLong).code).toBe('KEY_TOO_LONG');
    }
    const big = await kv.set('k', new Uint8Array(2 * 1024 * 1024)).catch((x: unknown) => x);
    expect(big).toBeInstanceOf(ValueTooLarge);
    expect((big as ValueTooLarge).code).toBe('VALUE_TOO_LARGE');
    // The exact bound: 1 MiB minus 59 bytes of overhead minus the key (minus 4 with flags).
    await expect(kv.set('k', new Uint8Array(1048576 - 59 - 1 + 1))).rejects.toBeInstanceOf(ValueTooLarge);
    await expect(kv.set('k', new Uint8Array(1048576 - 59 - 1 - 4 + 1), { flags: 1 })).rejects.toBeInstanceOf(ValueTooLarge);
    await expect(kv.add('k', 'v', { flags: -1 })).rejects.toBeInstanceOf(BadRequest);
    await expect(kv.set('k', 'v', { ttl: -1 })).rejects.toBeInstanceOf(BadRequest);
    await expect(kv.incr('k', -1)).rejects.toBeInstanceOf(BadRequest);
    await expect(kv.incr('k', 1n << 64n)).rejects.toBeInstanceOf(BadRequest);
    await expect(kv.getMany(['ok', 'not ok'])).rejects.toBeInstanceOf(InvalidKey);
    expect(requests).toBe(0);
    // The largest values that fit do go out.
    await kv.set('k', new Uint8Array(1048576 - 59 - 1));
    await kv.set('k', new Uint8Array(1048576 - 59 - 1 - 4), { flags: 1 });
    expect(requests).toBe(2);
  });

  it('refuses bad options at connect', async () => {
    await expect(RingClient.connect({ master: 'nope' })).rejects.toBeInstanceOf(BadRequest);
    await expect(RingClient.connect({ master: [] })).rejects.toBeInstanceOf(BadRequest);
    await expect(RingClient.connect({ master: `${HOST}:1`, poolSize: 0 })).rejects.toBeInstanceOf(BadRequest);
  });
});

describe('RingClient against fake nodes', () => {
  it('sends the key as bytes with the lease generation, and maps statuses to values', async () => {
    const seen: Array<{ req: Record<string, unknown>; generation: unknown }> = [];
    const { kv } = await connect(
      await fakeNode((body) => {
        const b = body as { req: Record<string, unknown>; generation: unknown };
        seen.push(b);
        switch (b.req.op) {
          case 'get':
            return okItem(new Uint8Array([1, 2, 3]));
          case 'incr':
            return { status: 'NON_NUMERIC' };
          case 'append':
            return { status: 'TOO_LARGE' };
          case 'add':
            return { status: 'NOT_STORED' };
          case 'set':
            return okItem(new Uint8Array());
          default:
            return { status: 'NOT_FOUND' };
        }
      }),
    );
    const item = await kv.get('ключ');
    expect(item).toEqual({ value: Buffer.from([1, 2, 3]), flags: 3, cas: (1n << 64n) - 1n, expiresAtMs: 0 });
    expect(seen[0]!.generation).toBe(7);
    expect(seen[0]!.req.key).toBeInstanceOf(Uint8Array);
    expect(Buffer.from(seen[0]!.req.key as Uint8Array).toString('utf8')).toBe('ключ');
    await expect(kv.incr('n', 1)).rejects.toBeInstanceOf(NonNumeric);
    await expect(kv.append('n', 'x')).rejects.toBeInstanceOf(ValueTooLarge);
    expect(await kv.add('n', 'x')).toBe(false);
    expect(await kv.delete('n')).toBe(false);
    expect(await kv.touch('n', 5)).toBe(false);
    expect(await kv.decr('n', 1)).toBeUndefined();
    expect(await kv.cas('n', 'x', 5n)).toBe(false);
    await kv.set('t', 'v', { ttl: 1.5, flags: 9 });
    expect(seen.at(-1)!.req).toMatchObject({ op: 'set', flags: 9, ttlMs: 1500 });
    await kv.incr('c', 5n, { initial: 10n, ttl: 2 }).catch(() => {});
    expect(seen.at(-1)!.req).toMatchObject({ op: 'incr', delta: '5', initial: '10', ttlMs: 2000 });
  });

  it('refreshes the table and retries after NOT_OWNER, for writes too (the owner refused before running it)', async () => {
    let refusals = 3;
    let runs = 0;
    const addr = await fakeNode(() => {
      if (refusals-- > 0) throw Object.assign(new Error('not the owner'), { code: 'NOT_OWNER' });
      runs++;
      return { status: 'OK', value: '42', item: okItem(new Uint8Array()).item };
    });
    const { kv, master } = await connect(addr);
    const pullsBefore = master.pulls;
    expect(await kv.incr('counter', 1)).toBe(42n);
    expect(runs).toBe(1);
    expect(master.pulls).toBeGreaterThan(pullsBefore);
    expect(kv.counters.notOwner).toBe(3);
  });

  it('surfaces BAD_REQUEST as BadRequest and unknown node errors as ServerError, without retrying', async () => {
    let calls = 0;
    const { kv } = await connect(
      await fakeNode((body) => {
        calls++;
        if ((body as { req: { op: string } }).req.op === 'get') throw Object.assign(new Error('nope'), { code: 'BAD_REQUEST' });
        throw new Error('boom');
      }),
    );
    await expect(kv.get('k')).rejects.toBeInstanceOf(BadRequest);
    const e = await kv.set('k', 'v').catch((x: unknown) => x);
    expect(e).toBeInstanceOf(ServerError);
    expect((e as ServerError).remoteCode).toBe('INTERNAL');
    expect(calls).toBe(2);
  });

  it('never sends a write twice once it may have reached a node: Unavailable with sent=true', async () => {
    const node = await droppingNode();
    const { kv } = await connect(node.addr, { timeoutMs: 2000 });
    const e = await kv.incr('k', 1).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(Unavailable);
    expect((e as Unavailable).code).toBe('UNAVAILABLE');
    expect((e as Unavailable).sent).toBe(true);
    expect(node.state.requests).toBe(1);
  });

  it('retries an idempotent get after a lost connection, until its deadline', async () => {
    const node = await droppingNode();
    const { kv } = await connect(node.addr, { timeoutMs: 600 });
    const e = await kv.get('k').catch((x: unknown) => x);
    expect(e).toBeInstanceOf(Unavailable);
    expect(node.state.requests).toBeGreaterThan(1);
  });

  it('retries any request while the owner cannot be connected to (nothing was sent), then Unavailable', async () => {
    const { kv } = await connect(`${HOST}:${await deadPort()}`, { timeoutMs: 500 });
    const e = await kv.set('k', 'v').catch((x: unknown) => x);
    expect(e).toBeInstanceOf(Unavailable);
    expect((e as Unavailable).sent).toBe(false);
    expect(kv.counters.retries).toBeGreaterThan(0);
  });

  it('answers Timeout when the node does not answer in time; a get is tried again within its deadline', async () => {
    let calls = 0;
    const { kv } = await connect(await fakeNode(() => (calls++, never())), { attemptTimeoutMs: 100 });
    // add is conditional: once it may have run, it is never sent again (a plain set may be).
    const w = await kv.add('k', 'v', { timeoutMs: 150 }).catch((x: unknown) => x);
    expect(w).toBeInstanceOf(Timeout);
    expect((w as Timeout).code).toBe('TIMEOUT');
    expect(calls).toBe(1);
    const r = await kv.get('k', { timeoutMs: 500 }).catch((x: unknown) => x);
    expect(r).toBeInstanceOf(Timeout);
    expect(calls).toBeGreaterThan(2);
  });

  it('getMany sends one kv.many per owner and routes keys that came back null again', async () => {
    const batches: number[] = [];
    let first = true;
    const addr = await fakeNode(
      (body) => okItem(Buffer.from((body as { req: { key: Uint8Array } }).req.key)),
      (body) => {
        const keys = (body as { keys: Uint8Array[] }).keys;
        batches.push(keys.length);
        const results = keys.map((k, i) => {
          if (first && i % 2 === 0) return null;
          const text = Buffer.from(k).toString();
          return text.startsWith('miss') ? { status: 'NOT_FOUND' } : okItem(Buffer.from(`v-${text}`));
        });
        first = false;
        return { results };
      },
    );
    const { kv } = await connect(addr);
    const keys = ['a', 'b', 'c', 'miss-1', 'd', 'a'];
    const got = await kv.getMany(keys);
    expect([...got.keys()].sort()).toEqual(['a', 'b', 'c', 'd']);
    for (const [k, item] of got) expect(item.value.toString()).toBe(`v-${k}`);
    expect(batches[0]).toBe(5); // 'a' asked for once
    expect(batches.length).toBe(2);
    const bytesKey = new Uint8Array([0x62]);
    const byBytes = await kv.getMany([bytesKey]);
    expect(byBytes.get(bytesKey)?.value.toString()).toBe('v-b');
    expect((await kv.getMany([])).size).toBe(0);
  });

  it('fails with Closed after close(), in flight and afterwards', async () => {
    const { kv } = await connect(await fakeNode(never));
    const inFlight = kv.get('k', { timeoutMs: 10_000 }).catch((x: unknown) => x);
    await new Promise((r) => setTimeout(r, 50));
    await kv.close();
    expect(await inFlight).toBeInstanceOf(Closed);
    const after = await kv.set('k', 'v').catch((x: unknown) => x);
    expect(after).toBeInstanceOf(Closed);
    expect((after as Closed).code).toBe('CLOSED');
    expect(after).toBeInstanceOf(RingkvError);
  });

  it('connects through the first master that answers, and is Unavailable when none does', async () => {
    const dead = `${HOST}:${await deadPort()}`;
    await expect(RingClient.connect({ master: dead, timeoutMs: 500 })).rejects.toBeInstanceOf(Unavailable);
    const addr = await fakeNode(() => ({ status: 'NOT_FOUND' }));
    const m = await fakeMaster(() => addr);
    const kv = await RingClient.connect({ master: [dead, `${HOST}:${m.port}`] });
    cleanups.push(() => kv.close());
    expect(await kv.get('k')).toBeUndefined();
  });

  it('finds the master that leads: follows a standby\'s NOT_LEADER hint, or tries the next one without a hint', async () => {
    const addr = await fakeNode(() => ({ status: 'NOT_FOUND' }));
    const m = await fakeMaster(() => addr);
    const leader = `${HOST}:${m.port}`;
    const standby = async (hint: string | undefined) => {
      const server = new RpcServer({ host: HOST, port: 0 });
      const seen = { changes: 0 };
      server.handle('changes', () => {
        seen.changes++;
        throw new NotLeaderError(hint);
      });
      const port = await server.listen();
      cleanups.push(() => server.close(0));
      return { addr: `${HOST}:${port}`, seen };
    };
    // The leader is reached only through the hint: it is not in the list.
    const hinting = await standby(leader);
    const kv = await RingClient.connect({ master: [hinting.addr], refreshMs: 60_000 });
    cleanups.push(() => kv.close());
    expect(await kv.get('k')).toBeUndefined();
    expect(hinting.seen.changes).toBe(1);
    expect(m.state.pulls).toBe(1);

    const silent = await standby(undefined);
    const kv2 = await RingClient.connect({ master: [silent.addr, leader], refreshMs: 60_000 });
    cleanups.push(() => kv2.close());
    expect(await kv2.get('k')).toBeUndefined();
    expect(silent.seen.changes).toBe(1);

    // Only standbys, no leader: Unavailable once the deadline passes.
    const t0 = Date.now();
    await expect(RingClient.connect({ master: [silent.addr, hinting.addr.replace(/:\d+$/, `:${await deadPort()}`)], timeoutMs: 400 })).rejects.toBeInstanceOf(Unavailable);
    expect(Date.now() - t0).toBeLessThan(2000);
  });
});
