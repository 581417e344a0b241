// RpcClient against RpcServer over real loopback TCP: multiplexing, the error classes a
// caller branches on, deadlines, losing and regaining the connection, bad frames from
// either side, and the per-connection bounds.
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import {
  encodeFrame,
  FrameDecoder,
  FrameError,
  RpcBusy,
  RpcClient,
  RpcEncodeError,
  RpcProtocolError,
  RpcRemoteError,
  RpcServer,
  RpcTimeout,
  RpcUnavailable,
  type Frame,
  type RpcClientOptions,
  type RpcServerOptions,
  type Timers,
} from '../../server/protocol/rpc/index.js';
import { connectSocket } from '../helpers/connect.js';
import { rejection } from '../helpers/async.js';

const HOST = '127.0.0.1';
const T = { timeoutMs: 10_000 };

const servers: RpcServer[] = [];
const clients: RpcClient[] = [];
const sockets: net.Socket[] = [];
const rawServers: net.Server[] = [];

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  for (const s of sockets.splice(0)) s.destroy();
  await Promise.all(servers.splice(0).map((s) => s.close(0)));
  await Promise.all(rawServers.splice(0).map((s) => new Promise((r) => s.close(r))));
});

async function startServer(opts: Partial<RpcServerOptions> = {}, port = 0): Promise<{ server: RpcServer; port: number }> {
  const server = new RpcServer({ host: HOST, port, ...opts });
  servers.push(server);
  server.handle('echo', (body) => body);
  return { server, port: await server.listen() };
}

function client(port: number, opts: Partial<RpcClientOptions> = {}): RpcClient {
  const c = new RpcClient({ host: HOST, port, ...opts });
  clients.push(c);
  return c;
}

/** A promise and its resolver, to hold a handler until the test lets it go. */
function gate<T = void>(): { promise: Promise<T>; open: (v: T) => void } {
  let open!: (v: T) => void;
  const promise = new Promise<T>((r) => (open = r));
  return { promise, open };
}

/** Poll a condition (a bounded wait, not a timing assertion). */
async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 2000; i++) {
    if (cond()) return;
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error(`gave up waiting for ${what}`);
}

/** Everything a raw socket receives until the server closes it. */
function readUntilClose(socket: net.Socket): Promise<Buffer> {
  const parts: Buffer[] = [];
  socket.on('data', (d: Buffer) => parts.push(d));
  return new Promise((resolve) => socket.once('close', () => resolve(Buffer.concat(parts))));
}

function framesOf(bytes: Buffer): Frame[] {
  const d = new FrameDecoder();
  d.push(bytes);
  const out: Frame[] = [];
  for (;;) {
    const r = d.next();
    if (r.kind !== 'frame') return out;
    out.push(r.frame);
  }
}

async function rawConnect(port: number): Promise<net.Socket> {
  const s = await connectSocket(port, HOST, 5000);
  s.on('error', () => {});
  sockets.push(s);
  return s;
}

describe('RpcClient and RpcServer over loopback', () => {
  it('round-trips binary values, including a 1 MiB Uint8Array', async () => {
    const { port } = await startServer();
    const c = client(port);
    const small = Uint8Array.from([0, 1, 2, 254, 255]);
    const big = new Uint8Array(1 << 20);
    for (let i = 0; i < big.length; i++) big[i] = (i * 31) & 0xff;
    const r1 = await c.call<{ key: string; value: Uint8Array }>('echo', { key: 'k', value: small }, T);
    expect(r1.key).toBe('k');
    expect(r1.value).toBeInstanceOf(Uint8Array);
    expect(Buffer.from(r1.value).equals(Buffer.from(small))).toBe(true);
    const r2 = await c.call<Uint8Array>('echo', big, T);
    expect(r2.length).toBe(big.length);
    expect(Buffer.from(r2).equals(Buffer.from(big))).toBe(true);
    expect(await c.call('echo', undefined, T)).toBeUndefined();
    expect(c.counters.connects).toBe(1);
  });

  it('multiplexes 1,000 concurrent calls on one connection, replies in reverse order', async () => {
    const { server, port } = await startServer();
    const held: Array<() => void> = [];
    server.handle('hold', async (body) => {
      await new Promise<void>((r) => held.push(r));
      return { n: (body as { n: number }).n * 2 };
    });
    const c = client(port);
    const calls = Array.from({ length: 1000 }, (_, n) => c.call<{ n: number }>('hold', { n }, T));
    await until(() => held.length === 1000, 'all 1,000 requests to reach the handler');
    for (const release of held.reverse()) release();
    const replies = await Promise.all(calls);
    expect(replies.map((r) => r.n)).toEqual(Array.from({ length: 1000 }, (_, n) => n * 2));
    expect(c.counters.connects).toBe(1);
    expect(server.counters.totalConnections).toBe(1);
    expect(c.pendingCalls).toBe(0);
  });

  it('delivers a coded error with its extra fields as RpcRemoteError', async () => {
    const { server, port } = await startServer();
    server.handle('notOwner', () => {
      throw Object.assign(new Error('range moved'), { code: 'NOT_OWNER', generation: 7, owner: 'n2' });
    });
    server.handle('plainObject', async () => {
      throw { code: 'NOT_OWNER', generation: 8, owner: 'n3' };
    });
    server.handle('bug', () => {
      throw new TypeError('x is undefined');
    });
    const c = client(port);
    const e1 = await rejection(c.call('notOwner', {}, T));
    expect(e1).toBeInstanceOf(RpcRemoteError);
    expect(e1).toMatchObject({ code: 'NOT_OWNER', message: 'range moved', details: { generation: 7, owner: 'n2' } });
    const e2 = await rejection(c.call('plainObject', {}, T));
    expect(e2).toMatchObject({ code: 'NOT_OWNER', message: 'NOT_OWNER', details: { generation: 8, owner: 'n3' } });
    const e3 = await rejection(c.call('bug', {}, T));
    expect(e3).toBeInstanceOf(RpcRemoteError);
    expect(e3).toMatchObject({ code: 'INTERNAL', message: 'x is undefined', details: {} });
    // The connection survives handler errors.
    expect(await c.call('echo', 1, T)).toBe(1);
  });

  it('passes a forwarded RpcRemoteError on whole', async () => {
    const { server: downstream, port: dport } = await startServer();
    downstream.handle('get', () => {
      throw { code: 'NOT_OWNER', message: 'not mine', generation: 3, owner: 'n9' };
    });
    const { server: proxy, port: pport } = await startServer();
    const toDownstream = client(dport);
    proxy.handle('get', (body) => toDownstream.call('get', body, T));
    const e = await rejection(client(pport).call('get', { key: 'k' }, T));
    expect(e).toMatchObject({ code: 'NOT_OWNER', message: 'not mine', details: { generation: 3, owner: 'n9' } });
  });

  it('answers an unknown type with UNKNOWN_TYPE', async () => {
    const { port } = await startServer();
    const e = await rejection(client(port).call('nope', {}, T));
    expect(e).toBeInstanceOf(RpcRemoteError);
    expect((e as RpcRemoteError).code).toBe('UNKNOWN_TYPE');
  });

  it('rejects with RpcTimeout at the deadline, and the server aborts the handler at its own', async () => {
    const { server, port } = await startServer();
    const aborted = gate<unknown>();
    server.handle('never', (_body, ctx) => {
      ctx.signal.addEventListener('abort', () => aborted.open(ctx.signal.reason));
      return new Promise(() => {});
    });
    const c = client(port);
    const e = await rejection(c.call('never', {}, { timeoutMs: 30 }));
    expect(e).toBeInstanceOf(RpcTimeout);
    expect(e).toMatchObject({ code: 'TIMEOUT', type: 'never', timeoutMs: 30 });
    expect(await aborted.promise).toBeInstanceOf(RpcTimeout);
    expect(c.pendingCalls).toBe(0);
    expect(await c.call('echo', 'still fine', T)).toBe('still fine');
  });

  it('forgets a timed-out id: the late reply is counted and dropped (simulated timers)', async () => {
    const { server, port } = await startServer();
    const release = gate();
    server.handle('slow', async () => {
      await release.promise;
      return 'late';
    });
    // Timers the test fires by hand: the client's deadlines follow the test, not the clock.
    const fired: Array<{ fn: () => void; ms: number; cleared: boolean }> = [];
    const timers: Timers = {
      setTimeout: (fn, ms) => {
        const t = { fn, ms, cleared: false };
        fired.push(t);
        return t;
      },
      clearTimeout: (h) => {
        (h as { cleared: boolean }).cleared = true;
      },
    };
    const c = client(port, { timers });
    const p = c.call('slow', {}, { timeoutMs: 1234 });
    const deadline = fired.find((t) => t.ms === 1234)!;
    await until(() => server.counters.requests === 1, 'the request to arrive');
    deadline.fn();
    const e = await rejection(p);
    expect(e).toBeInstanceOf(RpcTimeout);
    release.open();
    await until(() => c.counters.lateReplies === 1, 'the late reply');
    const ok = c.call('echo', 'next', { timeoutMs: 1000 });
    expect(await ok).toBe('next');
    expect(c.counters).toMatchObject({ timeouts: 1, lateReplies: 1, connects: 1 });
  });

  it('rejects a pending call with RpcUnavailable when the server goes away mid-call', async () => {
    const { server, port } = await startServer();
    const started = gate();
    server.handle('never', () => {
      started.open();
      return new Promise(() => {});
    });
    const c = client(port);
    const p = c.call('never', {}, T);
    await started.promise;
    const closing = server.close(10);
    const e = await rejection(p);
    expect(e).toBeInstanceOf(RpcUnavailable);
    expect(e).toMatchObject({ code: 'UNAVAILABLE', reason: 'CONNECTION_LOST', sent: true });
    await closing;
  });

  it('reconnects on the next call after the server restarts on the same port', async () => {
    const first = await startServer();
    const c = client(first.port);
    expect(await c.call('echo', 1, T)).toBe(1);
    const started = gate();
    first.server.handle('never', () => {
      started.open();
      return new Promise(() => {});
    });
    const lost = rejection(c.call('never', {}, T));
    await started.promise;
    await first.server.close(0);
    expect(await lost).toBeInstanceOf(RpcUnavailable);
    // Nobody listening: the next call fails to connect, and says nothing was sent.
    const refused = await rejection(c.call('echo', 2, T));
    expect(refused).toMatchObject({ code: 'UNAVAILABLE', reason: 'CONNECT_FAILED', sent: false });
    await startServer({}, first.port);
    expect(await c.call('echo', 3, T)).toBe(3);
    expect(c.counters.connects).toBe(3);
  });

  it('closes a raw socket that sends an oversized header or garbage, after one error frame, and serves others', async () => {
    const { server, port } = await startServer({ maxFrameBytes: 1 << 20 });
    const gated = gate();
    server.handle('gated', async () => {
      await gated.promise;
      return 'done';
    });
    const good = client(port, { maxFrameBytes: 1 << 20 });
    expect(await good.call('echo', 'before', T)).toBe('before');
    const inFlight = good.call('gated', {}, T);

    const header = Buffer.alloc(4);
    header.writeUInt32BE((1 << 20) + 1, 0);
    const malformed = Buffer.from([0, 0, 0, 1, 0xc1]);
    const notAMap = Buffer.concat([Buffer.from([0, 0, 0, 1]), Buffer.from([0x2a])]);
    const cases: Array<[Buffer, string]> = [
      [header, 'FRAME_TOO_LARGE'],
      // The body keeps coming after the server has answered: it must still read our error frame.
      [Buffer.concat([header, Buffer.alloc(4 << 20, 0x61)]), 'FRAME_TOO_LARGE'],
      [Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), 'FRAME_TOO_LARGE'],
      [malformed, 'FRAME_MALFORMED'],
      [notAMap, 'FRAME_MALFORMED'],
    ];
    for (const [bytes, code] of cases) {
      const raw = await rawConnect(port);
      const received = readUntilClose(raw);
      raw.write(bytes);
      const frames = framesOf(await received);
      expect(frames).toEqual([{ id: 0, type: 'reply', ok: false, error: { code, message: expect.any(String) } }]);
    }
    expect(server.counters.protocolErrors).toBe(cases.length);
    gated.open();
    expect(await inFlight).toBe('done');
    expect(await good.call('echo', 'after', T)).toBe('after');
    expect(good.counters.connects).toBe(1);
  });

  it('lets an in-flight call finish during close(), answering new requests SHUTTING_DOWN', async () => {
    const { server, port } = await startServer();
    const started = gate();
    const release = gate();
    server.handle('work', async () => {
      started.open();
      await release.promise;
      return 'finished';
    });
    const c = client(port);
    const p = c.call('work', {}, T);
    await started.promise;
    const closing = server.close(10_000);
    // Read while the server drains: answered at once, never run.
    const e = await rejection(c.call('echo', 'too late', T));
    expect(e).toBeInstanceOf(RpcRemoteError);
    expect((e as RpcRemoteError).code).toBe('SHUTTING_DOWN');
    release.open();
    expect(await p).toBe('finished');
    await closing;
  });

  it('finishes a drain at the deadline of a handler that ignores its signal', async () => {
    const { server, port } = await startServer();
    const started = gate();
    server.handle('stuck', () => {
      started.open();
      return new Promise(() => {});
    });
    const c = client(port);
    const p = rejection(c.call('stuck', {}, { timeoutMs: 100 }));
    await started.promise;
    // A grace far longer than the test's own timeout: close() must end at the request's deadline.
    await server.close(10 * 60_000);
    expect(await p).toBeInstanceOf(RpcTimeout);
    expect(server.counters.expiredReplies).toBe(1);
  });

  it('answers a request without a deadline BAD_REQUEST and keeps the connection', async () => {
    const { port } = await startServer();
    const raw = await rawConnect(port);
    const frames: Frame[] = [];
    const d = new FrameDecoder();
    raw.on('data', (b: Buffer) => {
      d.push(b);
      for (let r = d.next(); r.kind === 'frame'; r = d.next()) frames.push(r.frame);
    });
    const enc = (f: Frame) => encodeFrame(f) as Buffer;
    raw.write(Buffer.concat([enc({ id: 1, type: 'echo', body: 'x' }), enc({ id: 2, type: 'echo', timeoutMs: 1000, body: 'y' })]));
    await until(() => frames.length === 2, 'two replies');
    expect(frames).toContainEqual({ id: 1, type: 'reply', ok: false, error: { code: 'BAD_REQUEST', message: expect.any(String) } });
    expect(frames).toContainEqual({ id: 2, type: 'reply', ok: true, body: 'y' });
  });

  it('stops reading from a connection at maxInflightPerConn and resumes as requests complete', async () => {
    const { server, port } = await startServer({ maxInflightPerConn: 4 });
    let running = 0;
    let maxRunning = 0;
    const held: Array<() => void> = [];
    server.handle('hold', async (body) => {
      running++;
      maxRunning = Math.max(maxRunning, running);
      await new Promise<void>((r) => held.push(r));
      running--;
      return body;
    });
    const c = client(port);
    const calls = Array.from({ length: 20 }, (_, i) => c.call('hold', i, T));
    await until(() => held.length === 4, 'four requests running');
    // Give the rest every chance to (wrongly) start.
    for (let i = 0; i < 10; i++) await new Promise((r) => setImmediate(r));
    expect(held.length).toBe(4);
    let released = 0;
    while (released < 20) {
      await until(() => held.length > released, 'the next request to start');
      held[released++]!();
    }
    expect(await Promise.all(calls)).toEqual(Array.from({ length: 20 }, (_, i) => i));
    expect(maxRunning).toBe(4);
  });

  it('rejects past maxPending with RpcBusy, at once', async () => {
    const { server, port } = await startServer();
    const release = gate();
    server.handle('hold', () => release.promise.then(() => 'ok'));
    const c = client(port, { maxPending: 2 });
    const a = c.call('hold', {}, T);
    const b = c.call('hold', {}, T);
    const e = await rejection(c.call('hold', {}, T));
    expect(e).toBeInstanceOf(RpcBusy);
    expect((e as RpcBusy).code).toBe('BUSY');
    release.open();
    expect(await Promise.all([a, b])).toEqual(['ok', 'ok']);
    expect(await c.call('hold', {}, T)).toBe('ok');
  });

  it('fails a request larger than maxFrameBytes locally, without connecting', async () => {
    const c = client(1, { maxFrameBytes: 1000 });
    const e = await rejection(c.call('echo', new Uint8Array(2000), T));
    expect(e).toBeInstanceOf(RpcEncodeError);
    expect((e as RpcEncodeError).code).toBe('FRAME_TOO_LARGE');
    expect(c.counters.connects).toBe(0);
  });

  it('reports our frame refused by a server with a smaller limit as RpcProtocolError (reportedByPeer)', async () => {
    const { port } = await startServer({ maxFrameBytes: 1000 });
    const c = client(port);
    const e = await rejection(c.call('echo', new Uint8Array(5000), T));
    expect(e).toBeInstanceOf(RpcProtocolError);
    expect(e).toMatchObject({ code: 'FRAME_TOO_LARGE', reportedByPeer: true });
    expect(await c.call('echo', 'small', T)).toBe('small');
  });

  it('sends FRAME_TOO_LARGE when a reply cannot fit in a frame', async () => {
    const { server, port } = await startServer({ maxFrameBytes: 1000 });
    server.handle('big', () => new Uint8Array(5000));
    const e = await rejection(client(port).call('big', {}, T));
    expect(e).toBeInstanceOf(RpcRemoteError);
    expect((e as RpcRemoteError).code).toBe('FRAME_TOO_LARGE');
  });

  it('turns connections past maxConns away with RpcUnavailable REFUSED', async () => {
    const { server, port } = await startServer({ maxConns: 1 });
    const a = client(port);
    expect(await a.call('echo', 'a', T)).toBe('a');
    const e = await rejection(client(port).call('echo', 'b', T));
    expect(e).toMatchObject({ code: 'UNAVAILABLE', reason: 'REFUSED', sent: false });
    expect(server.counters.rejectedConnections).toBe(1);
    expect(await a.call('echo', 'a2', T)).toBe('a2');
  });

  it('closes on a bad frame from the server with RpcProtocolError', async () => {
    const raw = net.createServer((s) => {
      s.on('error', () => {});
      s.resume(); // read, so that the client's close is seen and this socket closes too
      s.end(Buffer.from([0, 0, 0, 1, 0xc1]));
    });
    rawServers.push(raw);
    await new Promise<void>((r) => raw.listen(0, HOST, r));
    const port = (raw.address() as net.AddressInfo).port;
    const c = client(port);
    const e = await rejection(c.call('echo', 1, T));
    expect(e).toBeInstanceOf(RpcProtocolError);
    expect(e).toMatchObject({ code: 'FRAME_MALFORMED', reportedByPeer: false });
  });

  it('rejects calls after close() with RpcUnavailable CLOSED', async () => {
    const { server, port } = await startServer();
    server.handle('never', () => new Promise(() => {}));
    const c = client(port);
    const p = rejection(c.call('never', {}, T));
    await until(() => server.counters.requests === 1, 'the request to arrive');
    await c.close();
    expect(await p).toMatchObject({ code: 'UNAVAILABLE', reason: 'CLOSED', sent: true });
    expect(await rejection(c.call('echo', 1, T))).toMatchObject({ reason: 'CLOSED', sent: false });
  });

  it('refuses values that cannot be encoded, locally', async () => {
    const { port } = await startServer();
    const c = client(port);
    const e = await rejection(c.call('echo', { at: new Date() }, T));
    expect(e).toBeInstanceOf(RpcEncodeError);
    expect(encodeFrame({ id: 1, type: 'x', body: new Date() })).toBeInstanceOf(FrameError);
    expect(await c.call('echo', 'ok', T)).toBe('ok');
  });
});
