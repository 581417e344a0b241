// GET /metrics of in-process nodes (ports 0 on 127.0.0.1): memcached and HTTP requests
// sent over real sockets move ringkv_requests_total by exactly the requests sent, with the
// right command and result labels, and the duration histogram's count by the same; the
// gauges come from the node's stats; each node has its own registry; the text is valid
// Prometheus exposition.
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaults, type NodeConfig } from '../../server/config.js';
import { startNode, type RunningNode } from '../../server/node.js';
import { BUSY, ERROR, MISS, NodeMetrics, OK, mcCommandIndex, mcResult, MC_COMMANDS } from '../../server/metrics.js';
import { RANGE_MOVE_STATES, RANGE_MOVE_WAITS, type WireRangeMove, type WireTransfer } from '../../server/master/core.js';
import { request } from '../helpers/http.js';
import { McClient, setCommand } from '../helpers/mc.js';
import { parseExposition, scrape, valueOf, type Exposition } from '../helpers/prometheus.js';

const nodes: RunningNode[] = [];
const dirs: string[] = [];
const clients: McClient[] = [];

async function start(over: Partial<NodeConfig> = {}): Promise<RunningNode> {
  const data = mkdtempSync(path.join(os.tmpdir(), 'ringkv-obs-'));
  dirs.push(data);
  const node = await startNode({ ...defaults, id: 'obs', host: '127.0.0.1', port: 0, httpPort: 0, data, storage: 'memory', logLevel: 'silent', shutdownGraceMs: 500, ...over });
  nodes.push(node);
  return node;
}

async function connect(node: RunningNode): Promise<McClient> {
  const c = await McClient.connect(node.port);
  clients.push(c);
  return c;
}

afterAll(async () => {
  for (const c of clients.splice(0)) c.close();
  for (const n of nodes.splice(0)) await n.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const REQ = 'ringkv_requests_total';
const DUR = 'ringkv_request_duration_seconds';
const req = (e: Exposition, frontend: string, command: string, result: string) => valueOf(e, REQ, { frontend, command, result });
const durCount = (e: Exposition, frontend: string, command: string) => valueOf(e, `${DUR}_count`, { frontend, command });

/** Every histogram series: cumulative buckets in order of le, +Inf equal to _count, a _sum. */
function checkHistograms(e: Exposition): void {
  const series = new Map<string, Array<{ le: number; value: number }>>();
  for (const s of e.samples.filter((x) => x.name === `${DUR}_bucket`)) {
    const key = `${s.labels.frontend}/${s.labels.command}`;
    const list = series.get(key) ?? [];
    list.push({ le: s.labels.le === '+Inf' ? Infinity : Number(s.labels.le), value: s.value });
    series.set(key, list);
  }
  expect(series.size).toBeGreaterThan(0);
  for (const [key, buckets] of series) {
    const [frontend, command] = key.split('/') as [string, string];
    expect(buckets.map((b) => b.le)).toEqual([0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, Infinity]);
    for (let i = 1; i < buckets.length; i++) expect(buckets[i]!.value, key).toBeGreaterThanOrEqual(buckets[i - 1]!.value);
    const count = durCount(e, frontend, command);
    expect(buckets.at(-1)!.value, key).toBe(count);
    const total = ['ok', 'miss', 'error', 'busy'].reduce((a, r) => a + req(e, frontend, command, r), 0);
    expect(count, `${key}: every counted request is timed`).toBe(total);
    const sum = valueOf(e, `${DUR}_sum`, { frontend, command });
    expect(sum, key).toBeGreaterThan(0);
    expect(sum, key).toBeLessThan(count * 5);
  }
}

describe('a standalone node, memory storage', () => {
  let node: RunningNode;
  let before: Exposition;

  beforeAll(async () => {
    node = await start();
    before = await scrape(node.httpPort);
  });

  it('exposes valid Prometheus text with the process metrics and the node gauges', () => {
    expect(before.types.get(REQ)).toBe('counter');
    expect(before.types.get(DUR)).toBe('histogram');
    for (const name of ['process_cpu_user_seconds_total', 'process_resident_memory_bytes', 'nodejs_eventloop_lag_seconds', 'nodejs_heap_size_used_bytes']) {
      expect(before.samples.some((s) => s.name === name), name).toBe(true);
    }
    for (const [name, type] of [
      ['ringkv_connections', 'gauge'],
      ['ringkv_items', 'gauge'],
      ['ringkv_bytes', 'gauge'],
      ['ringkv_cache_hit_ratio', 'gauge'],
      ['ringkv_evictions_total', 'counter'],
      ['ringkv_rejected_requests_total', 'counter'],
      ['ringkv_requests_inflight', 'gauge'],
    ] as const) {
      expect(before.types.get(name), name).toBe(type);
    }
    // A standalone node has no replication metrics.
    expect(before.types.has('ringkv_hints_held')).toBe(false);
    expect(before.types.has('ringkv_peers_down')).toBe(false);
    // Nothing was asked yet, and /metrics itself is not counted.
    expect(before.samples.filter((s) => s.name === REQ)).toEqual([]);
  });

  it('memcached: sets, hits, misses, a multi-get, deletes and a bad line, counted exactly', async () => {
    const c = await connect(node);
    const sets = 7;
    for (let i = 0; i < sets; i++) expect(await c.set(`mk-${i}`, `value-${i}`)).toBe('STORED');
    const hits = 5;
    for (let i = 0; i < hits; i++) expect((await c.get(`mk-${i}`))?.value.toString()).toBe(`value-${i}`);
    const misses = 3;
    for (let i = 0; i < misses; i++) expect(await c.get(`absent-${i}`)).toBeUndefined();
    expect(await c.command('delete mk-0')).toBe('DELETED');
    expect(await c.command('delete mk-0')).toBe('NOT_FOUND');
    expect(await c.command('incr mk-1 1')).toMatch(/^CLIENT_ERROR/);
    expect(await c.command('bogus-command')).toBe('ERROR');
    // A pipelined burst in one write: 10 sets and a gets of 3 keys.
    await c.write(Buffer.concat([...Array.from({ length: 10 }, (_, i) => setCommand(`burst-${i}`, 'x')), Buffer.from('gets burst-0 burst-1 nope\r\n')]));
    for (let i = 0; i < 10; i++) expect(await c.line()).toBe('STORED');
    for (let i = 0; i < 2 * 2; i++) await c.line(); // VALUE line and data, twice
    expect(await c.line()).toBe('END');

    const after = await scrape(node.httpPort);
    expect(req(after, 'memcached', 'set', 'ok')).toBe(sets + 10);
    expect(req(after, 'memcached', 'get', 'ok')).toBe(hits);
    expect(req(after, 'memcached', 'get', 'miss')).toBe(misses);
    expect(req(after, 'memcached', 'gets', 'ok')).toBe(1);
    expect(req(after, 'memcached', 'delete', 'ok')).toBe(1);
    expect(req(after, 'memcached', 'delete', 'miss')).toBe(1);
    expect(req(after, 'memcached', 'incr', 'error')).toBe(1);
    expect(req(after, 'memcached', 'other', 'error')).toBe(1);
    expect(durCount(after, 'memcached', 'set')).toBe(sets + 10);
    expect(durCount(after, 'memcached', 'get')).toBe(hits + misses);
    const mcTotal = after.samples.filter((s) => s.name === REQ && s.labels.frontend === 'memcached').reduce((a, s) => a + s.value, 0);
    expect(mcTotal).toBe(sets + hits + misses + 2 + 1 + 1 + 10 + 1);
    checkHistograms(after);

    // Gauges from stats(): 6 mk keys and 10 burst keys stored, this connection open.
    expect(valueOf(after, 'ringkv_items')).toBe(16);
    expect(valueOf(after, 'ringkv_connections')).toBeGreaterThanOrEqual(1);
    expect(valueOf(after, 'ringkv_bytes')).toBeGreaterThan(0);
    expect(valueOf(after, 'ringkv_get_hits_total')).toBe(hits + 2);
    expect(valueOf(after, 'ringkv_read_bytes_total')).toBeGreaterThan(0);
  });

  it('HTTP: PUT, GET hit and miss, HEAD, DELETE, a bad key and other routes, counted exactly; /metrics not counted', async () => {
    const e0 = await scrape(node.httpPort);
    const puts = 4;
    for (let i = 0; i < puts; i++) expect((await request(node.httpPort, 'PUT', `/kv/hk-${i}`, { body: Buffer.from(`v${i}`) })).status).toBe(204);
    for (let i = 0; i < 3; i++) expect((await request(node.httpPort, 'GET', `/kv/hk-${i}`)).status).toBe(200);
    for (let i = 0; i < 2; i++) expect((await request(node.httpPort, 'GET', `/kv/nope-${i}`)).status).toBe(404);
    expect((await request(node.httpPort, 'HEAD', '/kv/hk-0')).status).toBe(200);
    expect((await request(node.httpPort, 'DELETE', '/kv/hk-0')).status).toBe(204);
    expect((await request(node.httpPort, 'DELETE', '/kv/hk-0')).status).toBe(404);
    expect((await request(node.httpPort, 'PUT', '/kv/hk-1', { headers: { 'if-match': '"1"' }, body: Buffer.from('x') })).status).toBe(412);
    expect((await request(node.httpPort, 'GET', '/kv/%zz')).status).toBe(400);
    expect((await request(node.httpPort, 'GET', '/stats')).status).toBe(200);
    expect((await request(node.httpPort, 'GET', '/healthz')).status).toBe(200);
    expect((await request(node.httpPort, 'GET', '/no-such-route')).status).toBe(404);
    const e1 = await scrape(node.httpPort);
    await scrape(node.httpPort);
    const e2 = await scrape(node.httpPort);
    for (const e of [e1, e2]) {
      const d = (command: string, result: string) => req(e, 'http', command, result) - req(e0, 'http', command, result);
      expect(d('put', 'ok')).toBe(puts);
      expect(d('put', 'miss')).toBe(1);
      expect(d('get', 'ok')).toBe(3);
      expect(d('get', 'miss')).toBe(2);
      expect(d('get', 'error')).toBe(1);
      expect(d('head', 'ok')).toBe(1);
      expect(d('delete', 'ok')).toBe(1);
      expect(d('delete', 'miss')).toBe(1);
      expect(d('other', 'ok')).toBe(2);
      expect(d('other', 'error')).toBe(1);
      expect(durCount(e, 'http', 'get') - durCount(e0, 'http', 'get')).toBe(6);
      expect(durCount(e, 'http', 'put') - durCount(e0, 'http', 'put')).toBe(puts + 1);
    }
    // The memcached counts did not move.
    expect(req(e2, 'memcached', 'set', 'ok')).toBe(req(e0, 'memcached', 'set', 'ok'));
    checkHistograms(e2);
  });

  it('cache_hit_ratio is hits / (hits + misses) of the stats', async () => {
    const e = await scrape(node.httpPort);
    const s = node.stats();
    const hits = Number(s.cache_hits);
    const total = hits + Number(s.cache_misses);
    expect(valueOf(e, 'ringkv_cache_hit_ratio')).toBeCloseTo(total === 0 ? 0 : hits / total, 6);
  });
});

describe('two nodes in one process', () => {
  it('keep their own registries', async () => {
    const a = await start({ id: 'obs-a' });
    const b = await start({ id: 'obs-b' });
    const c = await connect(a);
    for (let i = 0; i < 3; i++) expect(await c.set(`two-${i}`, 'v')).toBe('STORED');
    const ea = await scrape(a.httpPort);
    const eb = await scrape(b.httpPort);
    expect(req(ea, 'memcached', 'set', 'ok')).toBe(3);
    expect(req(eb, 'memcached', 'set', 'ok')).toBe(0);
    expect(valueOf(ea, 'ringkv_items')).toBe(3);
    expect(valueOf(eb, 'ringkv_items')).toBe(0);
  });
});

describe('a node refusing requests in overload (level storage, --max-inflight 1)', () => {
  it('counts refused requests as busy, and exports rejected_requests', async () => {
    const node = await start({ id: 'obs-busy', storage: 'level', maxInflight: 1 });
    const c = await connect(node);
    const n = 20;
    // One write: the first set's LevelDB write is still pending while the rest are read.
    await c.write(Buffer.concat(Array.from({ length: n }, (_, i) => setCommand(`busy-${i}`, 'v'))));
    const replies: string[] = [];
    for (let i = 0; i < n; i++) replies.push(await c.line());
    const busy = replies.filter((r) => r === 'SERVER_ERROR busy').length;
    const stored = replies.filter((r) => r === 'STORED').length;
    expect(busy + stored).toBe(n);
    expect(busy).toBeGreaterThan(0);
    const e = await scrape(node.httpPort);
    expect(req(e, 'memcached', 'set', 'busy')).toBe(busy);
    expect(req(e, 'memcached', 'set', 'ok')).toBe(stored);
    expect(durCount(e, 'memcached', 'set')).toBe(n);
    expect(valueOf(e, 'ringkv_rejected_requests_total')).toBe(busy);
    expect(valueOf(e, 'ringkv_rejected_requests_total')).toBe(Number(node.stats().rejected_requests));
  });
});

describe('memcached command names and results', () => {
  it('map every command kind to a fixed name, and classify replies', () => {
    const name = (cmd: Parameters<typeof mcCommandIndex>[0]) => MC_COMMANDS[mcCommandIndex(cmd)];
    expect(name({ kind: 'get', keys: ['a'], withCas: false })).toBe('get');
    expect(name({ kind: 'get', keys: ['a'], withCas: true })).toBe('gets');
    expect(name({ kind: 'store', mode: 'cas', key: 'a', flags: 0, exptime: 0, value: Buffer.alloc(0), noreply: false })).toBe('cas');
    expect(name({ kind: 'too-large', mode: 'append', key: 'a', noreply: false })).toBe('append');
    expect(name({ kind: 'delta', incr: false, key: 'a', delta: 1n, noreply: false })).toBe('decr');
    expect(name({ kind: 'mn' })).toBe('mn');
    expect(new Set(MC_COMMANDS).size).toBe(MC_COMMANDS.length);

    expect(mcResult('STORED\r\n')).toBe(OK);
    expect(mcResult('STAT pid 1\r\nEND\r\n')).toBe(OK);
    expect(mcResult('')).toBe(OK);
    expect(mcResult(['VALUE a 0 1\r\n', Buffer.from('x'), '\r\n', 'END\r\n'])).toBe(OK);
    expect(mcResult(['', '', '', 'VALUE b 0 1\r\n', Buffer.from('x'), '\r\n', 'END\r\n'])).toBe(OK);
    expect(mcResult(['', '', '', 'END\r\n'])).toBe(MISS);
    expect(mcResult('END\r\n')).toBe(MISS);
    expect(mcResult('EN\r\n')).toBe(MISS);
    expect(mcResult('NOT_FOUND\r\n')).toBe(MISS);
    expect(mcResult('NS\r\n')).toBe(MISS);
    expect(mcResult('EXISTS\r\n')).toBe(MISS);
    expect(mcResult('ERROR\r\n')).toBe(ERROR);
    expect(mcResult('CLIENT_ERROR bad data chunk\r\n')).toBe(ERROR);
    expect(mcResult('SERVER_ERROR out of memory storing object\r\n')).toBe(ERROR);
    expect(mcResult('SERVER_ERROR busy\r\n')).toBe(BUSY);
  });
});

describe('range moves in /metrics (a cluster node\'s NodeMetrics, fed plain stats and a transfer)', () => {
  const TRANSFER_COUNTERS = ['retries', 'source_switches', 'resumes', 'catchup_keys', 'catchup_bytes', 'stalls'] as const;
  const range = (state: WireRangeMove['state'], waiting?: WireRangeMove['waiting']): WireRangeMove => ({
    start: '0000000000000001',
    end: '0000000000000002',
    source: 'n1',
    target: 'n4',
    state,
    keys: 1,
    bytes: 1,
    rateBytesPerS: 0,
    retries: 0,
    ...(waiting ? { waiting } : {}),
  });
  const stats = Object.fromEntries(TRANSFER_COUNTERS.map((c, i) => [`transfer_${c}`, (i + 1) * 10]));

  it('the transfer counters from stats, and ranges by state and by waiting reason, every label always present', async () => {
    let transfer: WireTransfer | undefined;
    const m = new NodeMetrics({ stats: () => stats, cluster: true, defaultMetrics: false, transfer: () => transfer });
    let e = parseExposition(await m.render());
    TRANSFER_COUNTERS.forEach((c, i) => {
      const name = `ringkv_transfer_${c}_total`;
      expect(e.types.get(name), name).toBe('counter');
      expect(valueOf(e, name), name).toBe((i + 1) * 10);
    });
    expect(e.types.get('ringkv_transfer_ranges')).toBe('gauge');
    expect(e.types.get('ringkv_transfer_ranges_waiting')).toBe('gauge');
    // No move yet: every state and reason at 0.
    for (const state of RANGE_MOVE_STATES) expect(e.samples.filter((s) => s.name === 'ringkv_transfer_ranges' && s.labels.state === state).map((s) => s.value)).toEqual([0]);
    for (const reason of RANGE_MOVE_WAITS) expect(e.samples.filter((s) => s.name === 'ringkv_transfer_ranges_waiting' && s.labels.reason === reason).map((s) => s.value)).toEqual([0]);

    const ranges = [range('streaming'), range('streaming', 'throttle'), range('queued', 'concurrency'), range('queued', 'concurrency'), range('failed', 'source-down'), range('done')];
    transfer = { direction: 'in', keys: 6, bytes: 6, fraction: 0.5, rateBytesPerS: 0, done: false, ranges };
    e = parseExposition(await m.render());
    const byState = Object.fromEntries(RANGE_MOVE_STATES.map((s) => [s, valueOf(e, 'ringkv_transfer_ranges', { state: s })]));
    expect(byState).toEqual({ queued: 2, streaming: 2, 'catching-up': 0, flipping: 0, done: 1, failed: 1 });
    const byReason = Object.fromEntries(RANGE_MOVE_WAITS.map((r) => [r, valueOf(e, 'ringkv_transfer_ranges_waiting', { reason: r })]));
    expect(byReason).toEqual({ throttle: 1, concurrency: 2, 'source-down': 1, 'source-busy': 0, 'receiver-down': 0, 'receiver-busy': 0, 'lease-pending': 0 });

    // The move is over: back to 0 where nothing is (no stale label values).
    transfer = { ...transfer, done: true, ranges: ranges.map((r) => ({ ...r, state: 'done' as const, waiting: undefined })) };
    e = parseExposition(await m.render());
    expect(valueOf(e, 'ringkv_transfer_ranges', { state: 'done' })).toBe(6);
    expect(valueOf(e, 'ringkv_transfer_ranges', { state: 'queued' })).toBe(0);
    expect(valueOf(e, 'ringkv_transfer_ranges_waiting', { reason: 'concurrency' })).toBe(0);
  });

  it('a standalone node has none of them', async () => {
    const m = new NodeMetrics({ stats: () => stats, cluster: false, defaultMetrics: false });
    const e = parseExposition(await m.render());
    expect([...e.types.keys()].filter((n) => n.startsWith('ringkv_transfer_'))).toEqual([]);
  });
});
