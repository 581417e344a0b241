// Connection timeouts of an in-process node: the request timeout (--request-timeout 1 s)
// drops a memcached slow loris and a client that stops reading its replies, but not a
// client that keeps completing requests; the idle timeout drops silent connections only
// when set; the HTTP port drops a slow header sender with Node's own 408.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningNode } from '../../server/node.js';
import { pollUntil, sleep } from '../helpers/async.js';
import { getParser, setCommand } from '../helpers/mc.js';
import { closeAll, mcClient, mcStats, RawConn, startTestNode, tracker } from './helpers.js';

/** Every wait for a timeout to act is bounded by this (the timeouts themselves are 0.5 to 1 s). */
const closeWithinMs = 5000;

describe('memcached request timeout (1 s)', () => {
  const t = tracker();
  let node: RunningNode;
  const kicks = async () => Number((await mcStats(t, node)).get('idle_kicks'));

  beforeAll(async () => {
    node = await startTestNode(t, { storage: 'memory', requestTimeoutMs: 1000, maxConnReplyBytes: 64 * 1024 });
  });
  afterAll(() => closeAll(t));

  it('closes a slow loris whose request never completes, and counts it in idle_kicks', async () => {
    const before = await kicks();
    const c = await RawConn.connect(t, node.port);
    const t0 = Date.now();
    c.write('get abc');
    // One more key byte every 200 ms: the request grows but never completes.
    while (!c.closed && Date.now() - t0 < closeWithinMs) {
      await sleep(200);
      c.write('d');
    }
    await c.waitClosed(1000);
    // Closed by the timeout, not at once (the timeout is 1 s, checked on a coarse clock).
    expect(c.closedAt - t0).toBeGreaterThanOrEqual(500);
    expect(c.text()).toBe('');
    expect(await kicks()).toBe(before + 1);
  });

  it('keeps a client that completes a request every 200 ms for 3 s, even with a partial one always pending', async () => {
    const before = await kicks();
    const c = await RawConn.connect(t, node.port);
    // Each write completes the previous request and starts the next one.
    c.write('get ab');
    const rounds = 15;
    for (let i = 0; i < rounds; i++) {
      await sleep(200);
      c.write('c\r\nget ab');
    }
    c.write('c\r\n');
    await c.waitFor((s) => s.split('END\r\n').length - 1 === rounds + 1, closeWithinMs);
    expect(c.text()).toBe('END\r\n'.repeat(rounds + 1));
    expect(c.closed).toBe(false);
    c.write('version\r\n');
    await c.waitFor((s) => s.endsWith('\r\n') && s.includes('VERSION '), closeWithinMs);
    expect(c.closed).toBe(false);
    expect(await kicks()).toBe(before);
  });

  it('closes a client that never reads its replies, while other connections are answered', async () => {
    const big = Buffer.alloc(500_000, 0x62);
    const setter = await mcClient(t, node);
    expect(await setter.set('big', big)).toBe('STORED');
    expect(await setter.set('small', 'tiny')).toBe('STORED');
    const before = await mcStats(t, node);
    const kicksBefore = Number(before.get('idle_kicks'));

    // Paused from the start: the kernel buffers fill, then the node's writes back up.
    const stuck = await RawConn.connect(t, node.port, false);
    stuck.write('get big\r\n'.repeat(200));
    const t0 = Date.now();

    // The node stays responsive meanwhile.
    const other = await mcClient(t, node);
    expect(await other.command('version')).toMatch(/^VERSION /);
    await other.write('get small\r\n');
    expect((await other.read(getParser)).map((v) => v.value.toString())).toEqual(['tiny']);

    await pollUntil(closeWithinMs, async () => Number((await mcStats(t, node)).get('idle_kicks')) === kicksBefore + 1, () => 'the stuck connection was not timed out', 100);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(500);
    // The stuck client now reads: it finds the connection closed, after far fewer than 200 replies.
    stuck.startReading();
    await stuck.waitClosed(closeWithinMs);
    expect(stuck.received.length).toBeLessThan(200 * big.length);

    // Still answering afterwards, on the connection that did read.
    await other.write('get small\r\n');
    expect((await other.read(getParser)).length).toBe(1);
  });

  it('does not close an idle connection when no idle timeout is set', async () => {
    const c = await RawConn.connect(t, node.port);
    await sleep(1500);
    expect(c.closed).toBe(false);
    c.write('version\r\n');
    await c.waitFor((s) => s.startsWith('VERSION ') && s.endsWith('\r\n'), closeWithinMs);
    expect(c.closed).toBe(false);
  });
});

describe('memcached idle timeout (0.5 s)', () => {
  const t = tracker();
  let node: RunningNode;

  beforeAll(async () => {
    node = await startTestNode(t, { storage: 'memory', idleTimeoutMs: 500 });
  });
  afterAll(() => closeAll(t));

  it('closes a silent connection and counts it in idle_kicks; a busy one is not cut', async () => {
    const before = Number((await mcStats(t, node)).get('idle_kicks'));
    const idle = await RawConn.connect(t, node.port);
    const t0 = Date.now();
    // Meanwhile a connection with traffic every 200 ms outlives the idle one.
    const active = await RawConn.connect(t, node.port);
    let answers = 0;
    while (!idle.closed && Date.now() - t0 < closeWithinMs) {
      active.write('version\r\n');
      answers++;
      await sleep(200);
    }
    await idle.waitClosed(1000);
    expect(idle.closedAt - t0).toBeGreaterThanOrEqual(300);
    expect(idle.text()).toBe('');
    await active.waitFor((s) => s.split('VERSION ').length - 1 === answers, closeWithinMs);
    expect(active.closed).toBe(false);
    expect(Number((await mcStats(t, node)).get('idle_kicks'))).toBe(before + 1);
  });
});

describe('HTTP request timeout (1 s)', () => {
  const t = tracker();
  let node: RunningNode;

  beforeAll(async () => {
    node = await startTestNode(t, { storage: 'memory', requestTimeoutMs: 1000 });
  });
  afterAll(() => closeAll(t));

  // Node checks requestTimeout/headersTimeout only every connectionsCheckingInterval
  // (30 s by default); HttpServer sets it from requestTimeoutMs, so this takes ~1 s.
  it('answers 408 and closes a client that sends its headers a byte every 200 ms', async () => {
    const c = await RawConn.connect(t, node.httpPort);
    const t0 = Date.now();
    c.write('GET /kv/a HTTP/1.1\r\nHost: x\r\n');
    const header = 'X-Slow: yes\r\n';
    for (let i = 0; !c.closed && Date.now() - t0 < closeWithinMs; i++) {
      await sleep(200);
      c.write(header[i % header.length]!);
    }
    await c.waitClosed(1000);
    expect(c.text()).toMatch(/^HTTP\/1\.1 408 /);
  });
});
