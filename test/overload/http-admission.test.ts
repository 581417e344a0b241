// Admission control on the HTTP port of an in-process node (level storage, --max-inflight 1):
// a PUT whose body has not arrived yet holds the one slot; every other /kv/ request is a
// 503 {"error":"busy"} with Retry-After: 1 and does nothing; /stats and /healthz are never
// refused; once the PUT completes it is stored and the node admits again.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningNode } from '../../server/node.js';
import { pollUntil } from '../helpers/async.js';
import { json, request } from '../helpers/http.js';
import { closeAll, RawConn, startTestNode, tracker } from './helpers.js';

interface Stats {
  requests_inflight: number;
  rejected_requests: number;
  rejected_inflight: number;
}

describe('HTTP admission, level storage, --max-inflight 1', () => {
  const t = tracker();
  let node: RunningNode;
  const stats = async (): Promise<Stats> => {
    const r = await request(node.httpPort, 'GET', '/stats');
    expect(r.status).toBe(200);
    return json(r) as Stats;
  };

  beforeAll(async () => {
    node = await startTestNode(t, { storage: 'level', maxInflight: 1 });
  });
  afterAll(() => closeAll(t));

  it('refuses /kv/ requests with 503 busy while a PUT holds the slot, and stores that PUT once its body arrives', async () => {
    const put = await RawConn.connect(t, node.httpPort);
    put.write('PUT /kv/a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n');
    // The PUT is admitted once its headers are read; its body is still to come.
    await pollUntil(5000, async () => (await stats()).requests_inflight === 1, () => 'the PUT never became in flight', 20);

    const get = await request(node.httpPort, 'GET', '/kv/b');
    expect(get.status).toBe(503);
    expect(get.headers['retry-after']).toBe('1');
    const body = json(get) as { error: string; message: string };
    expect(Object.keys(body).sort()).toEqual(['error', 'message']);
    expect(body.error).toBe('busy');
    expect(body.message.length).toBeGreaterThan(0);

    // A refused DELETE does nothing either (checked below: the PUT's value survives).
    const del = await request(node.httpPort, 'DELETE', '/kv/a');
    expect(del.status).toBe(503);
    expect(del.headers['retry-after']).toBe('1');

    // The operator's routes are never refused.
    expect((await request(node.httpPort, 'GET', '/healthz')).status).toBe(200);
    const during = await stats();
    expect(during.requests_inflight).toBe(1);
    expect(during.rejected_requests).toBe(2);
    expect(during.rejected_inflight).toBe(2);

    put.write('hello');
    await put.waitFor((s) => s.includes('\r\n\r\n'), 5000);
    expect(put.text()).toMatch(/^HTTP\/1\.1 204 /);

    const a = await request(node.httpPort, 'GET', '/kv/a');
    expect(a.status).toBe(200);
    expect(a.body.toString()).toBe('hello');
    const b = await request(node.httpPort, 'GET', '/kv/b');
    expect(b.status).toBe(404);
    const after = await stats();
    expect(after.requests_inflight).toBe(0);
    expect(after.rejected_requests).toBe(2);
  });

  it('refuses a PUT with a body while busy and closes its connection; the key is not written', async () => {
    const hold = await RawConn.connect(t, node.httpPort);
    hold.write('PUT /kv/held HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n');
    await pollUntil(5000, async () => (await stats()).requests_inflight === 1, () => 'the held PUT never became in flight', 20);

    const refused = await RawConn.connect(t, node.httpPort);
    refused.write('PUT /kv/refused HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc');
    await refused.waitClosed(5000);
    expect(refused.text()).toMatch(/^HTTP\/1\.1 503 /);
    expect(refused.text()).toMatch(/\r\nretry-after: 1\r\n/i);
    expect(refused.text()).toMatch(/\r\nconnection: close\r\n/i);
    expect(refused.text()).toContain('"error":"busy"');

    hold.write('xyz');
    await hold.waitFor((s) => s.includes('\r\n\r\n'), 5000);
    expect(hold.text()).toMatch(/^HTTP\/1\.1 204 /);
    expect((await request(node.httpPort, 'GET', '/kv/refused')).status).toBe(404);
    expect((await request(node.httpPort, 'GET', '/kv/held')).body.toString()).toBe('xyz');
  });
});
