// The connection bound (--max-conns, memcached's -c) on the memcached and HTTP ports, and
// the memcached stats groups beside the general one (items, slabs, settings, sizes,
// conns), as far as they mean something for ringkv.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningNode } from '../../server/node.js';
import { sleep } from '../helpers/async.js';
import { setCommand, statsParser } from '../helpers/mc.js';
import { closeAll, mcClient, mcStats, RawConn, startTestNode, tracker } from './helpers.js';

describe('--max-conns 2', () => {
  const t = tracker();
  let node: RunningNode;

  beforeAll(async () => {
    node = await startTestNode(t, { storage: 'memory', maxConns: 2 });
  });
  afterAll(() => closeAll(t));

  it('memcached: the third connection is told "ERROR Too many open connections" and closed; a freed slot is reused', async () => {
    const a = await RawConn.connect(t, node.port);
    const b = await RawConn.connect(t, node.port);
    a.write('version\r\n');
    b.write('version\r\n');
    await a.waitFor((s) => s.includes('VERSION'), 5_000);
    await b.waitFor((s) => s.includes('VERSION'), 5_000);
    const c = await RawConn.connect(t, node.port);
    await c.waitClosed(5_000);
    expect(c.text()).toBe('ERROR Too many open connections\r\n');

    a.socket.destroy();
    await sleep(50);
    const d = await RawConn.connect(t, node.port);
    d.write('version\r\n');
    await d.waitFor((s) => s.includes('VERSION'), 5_000);
    expect(d.closed).toBe(false);
    d.write('stats\r\n');
    const stats = statsParser(Buffer.from(await d.waitFor((s) => s.includes('END\r\n'), 5_000), 'latin1').subarray(d.text().indexOf('STAT')));
    expect(stats?.value.get('rejected_connections')).toBe('1');
    expect(stats?.value.get('max_connections')).toBe('2');
  });

  it('HTTP: connections past the bound are closed unanswered', async () => {
    const a = await RawConn.connect(t, node.httpPort);
    const b = await RawConn.connect(t, node.httpPort);
    const c = await RawConn.connect(t, node.httpPort);
    await c.waitClosed(5_000);
    expect(c.text()).toBe('');
    a.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
    await a.waitFor((s) => s.includes('"ok"'), 5_000);
    expect(b.closed).toBe(false);
  });
});

describe('memcached stats groups', () => {
  const t = tracker();
  let node: RunningNode;

  beforeAll(async () => {
    node = await startTestNode(t, { storage: 'memory', memoryMb: 8, maxInflight: 77, idleTimeoutMs: 0 });
  });
  afterAll(() => closeAll(t));

  it('items, slabs, settings, sizes and conns answer; an unknown group is ERROR', async () => {
    const c = await mcClient(t, node);
    await c.write(Buffer.concat(['a', 'b', 'c'].map((k) => setCommand(`stats-${k}`, 'v'.repeat(100)))));
    for (let i = 0; i < 3; i++) expect(await c.line()).toBe('STORED');

    await c.write('stats items\r\n');
    const items = await c.read(statsParser);
    expect(items.get('items:1:number')).toBe('3');
    expect(items.get('items:1:evicted')).toBe('0');

    await c.write('stats slabs\r\n');
    const slabs = await c.read(statsParser);
    expect(slabs.get('active_slabs')).toBe('1');
    expect(Number(slabs.get('total_malloced'))).toBeGreaterThan(300);

    await c.write('stats settings\r\n');
    const settings = await c.read(statsParser);
    expect(settings.get('maxbytes')).toBe(String(8 * 1024 * 1024));
    expect(settings.get('evictions')).toBe('on');
    expect(settings.get('max_inflight')).toBe('77');

    await c.write('stats sizes\r\n');
    expect((await c.read(statsParser)).get('sizes_status')).toBe('disabled');
    await c.write('stats conns\r\n');
    expect((await c.read(statsParser)).size).toBe(0);
    expect(await c.command('stats nonsense')).toBe('ERROR');

    const general = await mcStats(t, node);
    expect(general.get('curr_items')).toBe('3');
    for (const name of ['requests_inflight', 'rejected_requests', 'rejected_inflight', 'rejected_lag', 'event_loop_lag_ms', 'idle_kicks']) {
      expect(general.has(name), name).toBe(true);
    }
  });
});
