// The HTTP/JSON front-end of one real node (the compiled CLI), run against both storage
// kinds: exact bytes in and out, the conditional headers, the same store as the memcached
// port, and the JSON errors for every refused request.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRingkv, type RunningServer } from '../../bench/lib/servers.js';
import { json, request, type HttpReply } from '../helpers/http.js';
import { McClient, setCommand } from '../helpers/mc.js';

/** The default --max-item-size, and memcached's charge for an item (see server/kv/local-kv.ts). */
const maxItemSize = 1024 * 1024;
const itemOverheadBytes = 48 + 8 + 1 + 2;

interface ErrorBody {
  error: string;
  message: string;
}

function errorBody(reply: HttpReply): ErrorBody {
  const body = json(reply) as ErrorBody;
  expect(Object.keys(body).sort()).toEqual(['error', 'message']);
  expect(typeof body.error).toBe('string');
  expect(typeof body.message).toBe('string');
  expect(body.message.length).toBeGreaterThan(0);
  return body;
}

describe.each(['memory', 'level'] as const)('HTTP API (%s storage)', (storage) => {
  let node: RunningServer;
  let port: number;
  const clients: McClient[] = [];

  const put = (key: string, body: Buffer, query = '', headers: Record<string, string> = {}) =>
    request(port, 'PUT', `/kv/${key}${query}`, { body, headers });
  const get = (key: string) => request(port, 'GET', `/kv/${key}`);
  const mc = async () => {
    const c = await McClient.connect(node.port);
    clients.push(c);
    return c;
  };

  beforeAll(async () => {
    node = await startRingkv({ storage });
    port = node.httpPort!;
  });

  afterAll(async () => {
    for (const c of clients) c.close();
    await node?.stop();
  });

  it('returns exactly the bytes that were put, binary and empty and large', async () => {
    const bodies: Array<[string, Buffer]> = [
      ['bin', Buffer.from('a\r\nb\0c\r\nEND\r\n\xff\x00', 'latin1')],
      ['empty', Buffer.alloc(0)],
      ['crlf', Buffer.from('\r\n')],
      ['large', randomBytes(1_000_000)],
    ];
    for (const [name, body] of bodies) {
      const key = `bytes-${name}`;
      const w = await put(key, body);
      expect(w.status, name).toBe(204);
      const r = await get(key);
      expect(r.status, name).toBe(200);
      expect(r.headers['content-type']).toBe('application/octet-stream');
      expect(Number(r.headers['content-length']), name).toBe(body.length);
      expect(r.body.equals(body), `${name}: body differs`).toBe(true);
      expect(r.headers.etag).toBe(w.headers.etag);
    }
  });

  it('gives a fresh ETag on every put', async () => {
    const etags = new Set<string>();
    for (let i = 0; i < 5; i++) {
      const w = await put('etag', Buffer.from(`v${i}`));
      expect(w.status).toBe(204);
      expect(w.headers.etag).toMatch(/^"[0-9]+"$/);
      etags.add(w.headers.etag!);
    }
    expect(etags.size).toBe(5);
  });

  it('round-trips ?flags= in X-Ringkv-Flags (0 when absent)', async () => {
    expect((await put('flags-max', Buffer.from('x'), '?flags=4294967295')).status).toBe(204);
    expect((await get('flags-max')).headers['x-ringkv-flags']).toBe('4294967295');
    expect((await put('flags-none', Buffer.from('x'))).status).toBe(204);
    expect((await get('flags-none')).headers['x-ringkv-flags']).toBe('0');
  });

  it('honours ?ttl=: -1 is already expired, a positive ttl shows in X-Ringkv-Ttl', async () => {
    expect((await put('ttl-neg', Buffer.from('x'), '?ttl=-1')).status).toBe(204);
    const gone = await get('ttl-neg');
    expect(gone.status).toBe(404);
    expect(errorBody(gone).error).toBe('not_found');

    expect((await put('ttl-100', Buffer.from('x'), '?ttl=100')).status).toBe(204);
    const r = await get('ttl-100');
    expect(r.status).toBe(200);
    const ttl = Number(r.headers['x-ringkv-ttl']);
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(100);

    expect((await put('ttl-none', Buffer.from('x'))).status).toBe(204);
    expect((await get('ttl-none')).headers['x-ringkv-ttl']).toBeUndefined();
  });

  it('reads ?ttl= as seconds from now even past 30 days', async () => {
    // `?ttl=S` is documented as seconds, and X-Ringkv-Ttl answers in seconds from now:
    // memcached's "exptime over 30 days is a Unix time" rule belongs to the text
    // protocol's exptime, not to this API (where it would expire the item at once).
    const days35 = 35 * 24 * 3600;
    expect((await put('ttl-35d', Buffer.from('x'), `?ttl=${days35}`)).status).toBe(204);
    const r = await get('ttl-35d');
    expect(r.status).toBe(200);
    expect(Number(r.headers['x-ringkv-ttl'])).toBeGreaterThan(days35 - 60);
    expect(Number(r.headers['x-ringkv-ttl'])).toBeLessThanOrEqual(days35);
  });

  it('answers HEAD with the headers of GET and no body', async () => {
    const body = Buffer.from('twelve bytes');
    const w = await put('head', body, '?flags=7');
    const h = await request(port, 'HEAD', '/kv/head');
    expect(h.status).toBe(200);
    expect(Number(h.headers['content-length'])).toBe(body.length);
    expect(h.headers.etag).toBe(w.headers.etag);
    expect(h.headers['x-ringkv-flags']).toBe('7');
    expect(h.body.length).toBe(0);

    const missing = await request(port, 'HEAD', '/kv/head-missing');
    expect(missing.status).toBe(404);
    expect(missing.body.length).toBe(0);
  });

  it('deletes: 204, then 404 for GET and for a second DELETE', async () => {
    expect((await put('del', Buffer.from('x'))).status).toBe(204);
    const d = await request(port, 'DELETE', '/kv/del');
    expect(d.status).toBe(204);
    expect(d.body.length).toBe(0);
    expect((await get('del')).status).toBe(404);
    const again = await request(port, 'DELETE', '/kv/del');
    expect(again.status).toBe(404);
    expect(errorBody(again).error).toBe('not_found');
  });

  it('If-None-Match: * adds only when absent (412 when present, value kept)', async () => {
    const first = await put('add', Buffer.from('first'), '', { 'if-none-match': '*' });
    expect(first.status).toBe(204);
    const second = await put('add', Buffer.from('second'), '', { 'if-none-match': '*' });
    expect(second.status).toBe(412);
    expect(errorBody(second).error).toBe('precondition_failed');
    const r = await get('add');
    expect(r.body.toString()).toBe('first');
    expect(r.headers.etag).toBe(first.headers.etag);
  });

  it('If-Match: the current ETag writes (204), a stale one is refused (412)', async () => {
    const v1 = await put('cas', Buffer.from('v1'));
    const v2 = await put('cas', Buffer.from('v2'), '', { 'if-match': v1.headers.etag! });
    expect(v2.status).toBe(204);
    expect(v2.headers.etag).not.toBe(v1.headers.etag);

    const stale = await put('cas', Buffer.from('v3'), '', { 'if-match': v1.headers.etag! });
    expect(stale.status).toBe(412);
    expect(errorBody(stale).error).toBe('precondition_failed');
    expect((await get('cas')).body.toString()).toBe('v2');

    const absent = await put('cas-absent', Buffer.from('x'), '', { 'if-match': v2.headers.etag! });
    expect(absent.status).toBe(404);
    expect((await get('cas-absent')).status).toBe(404);

    const bad = await put('cas', Buffer.from('x'), '', { 'if-match': 'W/"nope"' });
    expect(bad.status).toBe(400);
    errorBody(bad);
  });

  it('shares one store with the memcached port, both ways', async () => {
    const c = await mc();
    const viaHttp = Buffer.from('from http\r\n\0end', 'latin1');
    expect((await put('shared-h', viaHttp, '?flags=42')).status).toBe(204);
    const seen = await c.get('shared-h');
    expect(seen?.flags).toBe(42);
    expect(seen?.value.equals(viaHttp)).toBe(true);

    const viaMc = Buffer.from('from memcached\r\nEND\r\n\xff', 'latin1');
    await c.write(setCommand('shared-m', viaMc, 9));
    expect(await c.line()).toBe('STORED');
    const r = await get('shared-m');
    expect(r.status).toBe(200);
    expect(r.headers['x-ringkv-flags']).toBe('9');
    expect(r.body.equals(viaMc)).toBe(true);

    expect(await c.command('delete shared-h')).toBe('DELETED');
    expect((await get('shared-h')).status).toBe(404);
    expect((await request(port, 'DELETE', '/kv/shared-m')).status).toBe(204);
    expect(await c.get('shared-m')).toBeUndefined();
  });

  it('accepts a 250-byte key and refuses bad keys with 400 bad_key', async () => {
    const longest = 'k'.repeat(250);
    expect((await put(longest, Buffer.from('x'))).status).toBe(204);
    expect((await get(longest)).body.toString()).toBe('x');

    // memcached's key rule: control bytes are key bytes (reachable here percent-encoded).
    expect((await put('a%01b', Buffer.from('ctl'))).status).toBe(204);
    expect((await get('a%01b')).body.toString()).toBe('ctl');

    const badKeys = ['k'.repeat(251), 'a%20b', 'a%00b', 'a%0Ab', '%E0%A4%A'];
    for (const key of badKeys) {
      for (const [method, body] of [['PUT', Buffer.from('x')], ['GET', undefined], ['DELETE', undefined]] as const) {
        const r = await request(port, method, `/kv/${key}`, body ? { body } : {});
        expect(r.status, `${method} ${key}`).toBe(400);
        expect(errorBody(r).error, `${method} ${key}`).toBe('bad_key');
      }
    }
  });

  it('refuses a body over the item size with 413, declared or chunked', async () => {
    const key = 'big';
    const limit = maxItemSize - itemOverheadBytes - key.length;
    expect((await put(key, Buffer.alloc(limit, 0x61))).status).toBe(204);

    const declared = await put(key, Buffer.alloc(limit + 1, 0x62));
    expect(declared.status).toBe(413);
    expect(errorBody(declared).error).toBe('too_large');

    const chunks = Array.from({ length: 32 }, () => Buffer.alloc(64 * 1024, 0x63));
    const chunked = await request(port, 'PUT', `/kv/${key}-chunked`, { chunks });
    expect(chunked.status).toBe(413);
    expect(errorBody(chunked).error).toBe('too_large');
    expect((await get(`${key}-chunked`)).status).toBe(404);

    expect((await request(port, 'GET', '/healthz')).status).toBe(200);
  });

  it('refuses bad ?ttl= and ?flags= with 400', async () => {
    const cases: Array<[string, string]> = [
      ['?ttl=abc', 'bad_ttl'],
      ['?ttl=1.5', 'bad_ttl'],
      ['?ttl=', 'bad_ttl'],
      ['?ttl=-2', 'bad_ttl'],
      ['?ttl=2147483648', 'bad_ttl'],
      ['?flags=-1', 'bad_flags'],
      ['?flags=4294967296', 'bad_flags'],
      ['?flags=0x10', 'bad_flags'],
    ];
    for (const [query, code] of cases) {
      const r = await put('params', Buffer.from('x'), query);
      expect(r.status, query).toBe(400);
      expect(errorBody(r).error, query).toBe(code);
    }
    expect((await get('params')).status).toBe(404);
  });

  it('answers an unknown route with 404 JSON and an unsupported method with 405 and Allow', async () => {
    for (const path of ['/nope', '/kv', '/stats/x']) {
      const r = await request(port, 'GET', path);
      expect(r.status, path).toBe(404);
      expect(errorBody(r).error, path).toBe('not_found');
    }
    const post = await request(port, 'POST', '/kv/x', { body: Buffer.from('x') });
    expect(post.status).toBe(405);
    expect(errorBody(post).error).toBe('method_not_allowed');
    const allow = (post.headers.allow ?? '').split(',').map((m) => m.trim());
    expect(allow).toEqual(expect.arrayContaining(['GET', 'HEAD', 'PUT', 'DELETE']));
  });

  it('serves /stats as JSON counters that move with requests', async () => {
    const before = json(await request(port, 'GET', '/stats')) as Record<string, unknown>;
    for (const name of ['curr_items', 'cmd_get', 'get_hits', 'get_misses']) expect(typeof before[name], name).toBe('number');
    expect(before.storage).toBe(storage);

    expect((await put('stats-key', Buffer.from('x'))).status).toBe(204);
    expect((await get('stats-key')).status).toBe(200);
    expect((await get('stats-missing')).status).toBe(404);
    const after = json(await request(port, 'GET', '/stats')) as Record<string, number>;
    expect(after.cmd_get).toBe((before.cmd_get as number) + 2);
    expect(after.get_hits).toBe((before.get_hits as number) + 1);
    expect(after.get_misses).toBe((before.get_misses as number) + 1);
    expect(after.curr_items).toBe((before.curr_items as number) + 1);
  });

  it('serves /healthz', async () => {
    const r = await request(port, 'GET', '/healthz');
    expect(r.status).toBe(200);
    expect(json(r)).toEqual({ status: 'ok' });
  });
});
