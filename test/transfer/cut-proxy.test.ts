// The cut proxy of the transfer tests (test/helpers/cut-proxy.ts) against a local echo
// server: bytes pass unchanged while it does not cut; a connection is reset once it has
// carried the threshold, with no more than the threshold let through; a target set after
// start is used by the connections that follow; close() leaves nothing open.
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { startCutProxy, type CutProxy } from '../helpers/cut-proxy.js';

interface Echo {
  port: number;
  /** Bytes the echo server has received, every connection. */
  received(): number;
  /** Connections it has accepted. */
  accepted(): number;
  /** Connections open on its side now. */
  open(): number;
  close(): Promise<void>;
}

async function startEcho(): Promise<Echo> {
  let received = 0;
  let accepted = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    accepted++;
    sockets.add(s);
    s.on('error', () => {});
    s.on('close', () => sockets.delete(s));
    s.on('data', (d: Buffer) => {
      received += d.length;
      s.write(d);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    received: () => received,
    accepted: () => accepted,
    open: () => sockets.size,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

interface Talk {
  /** Everything the client received until the connection closed (or `timeoutMs` passed). */
  got: Buffer;
  closed: boolean;
  error?: string;
}

/** Connects to `port`, writes `payload` in chunks, and reads until `expectBytes` arrived or the connection closed. */
function talk(port: number, payload: Buffer, expectBytes: number, timeoutMs = 3000, chunk = 500): Promise<Talk> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let n = 0;
    let error: string | undefined;
    const s = net.connect(port, '127.0.0.1');
    const done = (closed: boolean) => {
      clearTimeout(timer);
      s.destroy();
      resolve({ got: Buffer.concat(chunks), closed, ...(error ? { error } : {}) });
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    s.on('error', (e) => (error = (e as NodeJS.ErrnoException).code ?? e.message));
    s.on('close', () => done(true));
    s.on('data', (d: Buffer) => {
      chunks.push(d);
      n += d.length;
      if (n >= expectBytes) done(false);
    });
    s.on('connect', async () => {
      for (let i = 0; i < payload.length && !s.destroyed; i += chunk) {
        s.write(payload.subarray(i, i + chunk));
        // A turn between chunks, so the echo comes back while the client is still sending.
        await new Promise((r) => setImmediate(r));
      }
    });
  });
}

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function echoAndProxy(opts: { cutEveryBytes?: number; withTarget?: boolean } = {}): Promise<{ echo: Echo; proxy: CutProxy }> {
  const echo = await startEcho();
  cleanups.push(() => echo.close());
  const proxy = await startCutProxy({ ...(opts.withTarget === false ? {} : { target: echo.port }), ...(opts.cutEveryBytes ? { cutEveryBytes: opts.cutEveryBytes } : {}) });
  cleanups.push(() => proxy.close());
  return { echo, proxy };
}

describe('cut proxy', () => {
  it('passes bytes through unchanged when it does not cut', async () => {
    const { echo, proxy } = await echoAndProxy();
    const payload = randomBytes(200_000);
    const r = await talk(proxy.port, payload, payload.length, 5000, 16 * 1024);
    expect(r.got.length).toBe(payload.length);
    expect(r.got.equals(payload)).toBe(true);
    expect(proxy.cuts).toBe(0);
    expect(proxy.connections).toBe(1);
    expect(proxy.bytes).toBe(2 * payload.length);
    expect(echo.received()).toBe(payload.length);
  });

  it('cuts a connection once it has carried cutEveryBytes (both directions), letting no more than that through', async () => {
    const { echo, proxy } = await echoAndProxy({ cutEveryBytes: 1000 });
    const payload = randomBytes(5000);
    const r = await talk(proxy.port, payload, payload.length);
    expect(r.closed, 'the client sees the connection close').toBe(true);
    expect(proxy.cuts).toBe(1);
    // Both directions count: the proxy let exactly the threshold through (sent and echoed
    // together), so what reached the echo plus what came back is at most that (an RST may
    // also drop bytes still unread in a receive buffer).
    expect(proxy.bytes).toBe(1000);
    expect(echo.received() + r.got.length).toBeLessThanOrEqual(1000);
    expect(r.got.length).toBeLessThan(1000);
    // What did come back is a prefix of what was sent (nothing altered, nothing reordered).
    expect(r.got.equals(payload.subarray(0, r.got.length))).toBe(true);
    expect(proxy.live).toBe(0);
    // The next connection gets its own budget, and is cut in turn.
    const again = await talk(proxy.port, payload, payload.length);
    expect(again.closed).toBe(true);
    expect(proxy.cuts).toBe(2);
    expect(proxy.connections).toBe(2);
  });

  it('cuts one large write mid-chunk: the receiver gets exactly the bytes under the threshold', async () => {
    const { echo, proxy } = await echoAndProxy({ cutEveryBytes: 1000 });
    const payload = randomBytes(5000);
    const r = await talk(proxy.port, payload, payload.length, 3000, payload.length);
    expect(r.closed).toBe(true);
    expect(proxy.cuts).toBe(1);
    expect(proxy.bytes).toBe(1000);
    expect(echo.received() + r.got.length).toBeLessThanOrEqual(1000);
  });

  it('stops cutting when told (undefined), and counts anew when the threshold changes', async () => {
    const { proxy } = await echoAndProxy({ cutEveryBytes: 1000 });
    proxy.setCutEveryBytes(undefined);
    const payload = randomBytes(20_000);
    const r = await talk(proxy.port, payload, payload.length);
    expect(r.got.equals(payload)).toBe(true);
    expect(proxy.cuts).toBe(0);
    proxy.setCutEveryBytes(3000);
    const cut = await talk(proxy.port, payload, payload.length);
    expect(cut.closed).toBe(true);
    expect(proxy.cuts).toBe(1);
    expect(() => proxy.setCutEveryBytes(0)).toThrow();
  });

  it('destroys connections that arrive before a target is set; uses the target once set', async () => {
    const { echo, proxy } = await echoAndProxy({ withTarget: false });
    const early = await talk(proxy.port, Buffer.from('hello'), 5);
    expect(early.closed).toBe(true);
    expect(early.got.length).toBe(0);
    expect(echo.accepted()).toBe(0);
    proxy.setTarget(echo.port);
    const late = await talk(proxy.port, Buffer.from('hello'), 5);
    expect(late.got.toString()).toBe('hello');
    expect(proxy.connections).toBe(2);
    expect(echo.accepted()).toBe(1);
  });

  it('closes a connection whose target does not listen', async () => {
    const { echo, proxy } = await echoAndProxy();
    await echo.close();
    const r = await talk(proxy.port, Buffer.from('x'), 1);
    expect(r.closed).toBe(true);
    expect(r.got.length).toBe(0);
    expect(proxy.live).toBe(0);
  });

  it('close() destroys every live connection and stops listening', async () => {
    const { echo, proxy } = await echoAndProxy();
    const sockets = await Promise.all(
      [0, 1, 2].map(
        () =>
          new Promise<net.Socket>((resolve, reject) => {
            const s = net.connect(proxy.port, '127.0.0.1', () => resolve(s));
            s.on('error', () => {});
            s.once('error', reject);
          }),
      ),
    );
    const closed = sockets.map((s) => new Promise<void>((resolve) => (s.destroyed ? resolve() : s.once('close', () => resolve()))));
    // Every connection reaches the echo server before the proxy closes.
    for (let i = 0; i < 100 && (proxy.live < 3 || echo.open() < 3); i++) await new Promise((r) => setTimeout(r, 10));
    expect(proxy.live).toBe(3);
    await proxy.close();
    await Promise.all(closed);
    expect(proxy.live).toBe(0);
    for (let i = 0; i < 100 && echo.open() > 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(echo.open(), 'the upstream side of every connection is closed too').toBe(0);
    const refused = await new Promise<string>((resolve) => {
      const s = net.connect(proxy.port, '127.0.0.1', () => {
        s.destroy();
        resolve('connected');
      });
      s.on('error', (e) => resolve((e as NodeJS.ErrnoException).code ?? e.message));
    });
    expect(refused).toBe('ECONNREFUSED');
    expect(proxy.cuts).toBe(0);
  });
});
