// Bad input to the cluster's internal RPC: an unknown node id, a malformed frame, an
// oversized frame. Each gets a clear error; a bad frame closes that one connection; the
// rest of the cluster does not notice.
import net from 'node:net';
import { decode } from '@msgpack/msgpack';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startMaster, startRingkv, type RunningServer } from '../../bench/lib/servers.js';
import { RpcClient, RpcRemoteError } from '../../server/protocol/rpc/index.js';
import { McClient } from '../helpers/mc.js';
import { request } from '../helpers/http.js';
import { view } from '../helpers/cluster.js';



/** Sends raw bytes; resolves with every frame the server sent before it closed the connection. */
function rawExchange(port: number, bytes: Buffer, timeoutMs = 5000): Promise<{ frames: unknown[]; closed: boolean }> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    let got = Buffer.alloc(0);
    const timer = setTimeout(() => {
      s.destroy();
      resolve({ frames: parse(got), closed: false });
    }, timeoutMs);
    s.on('connect', () => s.write(bytes));
    s.on('data', (d: Buffer) => {
      got = Buffer.concat([got, d]);
    });
    s.on('error', () => {});
    s.on('close', () => {
      clearTimeout(timer);
      resolve({ frames: parse(got), closed: true });
    });
    s.on('timeout', () => reject(new Error('socket timeout')));
  });
}

function parse(buf: Buffer): unknown[] {
  const frames: unknown[] = [];
  let at = 0;
  while (buf.length - at >= 4) {
    const n = buf.readUInt32BE(at);
    if (buf.length - at - 4 < n) break;
    frames.push(decode(buf.subarray(at + 4, at + 4 + n)));
    at += 4 + n;
  }
  return frames;
}

function errorCodeOf(frames: unknown[]): string | undefined {
  const f = frames.find((x) => (x as { ok?: unknown }).ok === false) as { error?: { code?: string } } | undefined;
  return f?.error?.code;
}

describe('bad input on the internal RPC', () => {
  let master: RunningServer;
  let node: RunningServer;
  let nodeRpcPort: number;
  let client: RpcClient;

  beforeAll(async () => {
    // One node: one copy (the default N=3, W=2 would rightly refuse every write).
    master = await startMaster({ args: ['--lease-ms', '1500', '--vnodes', '8', '--n', '1', '--r', '1', '--w', '1'] });
    node = await startRingkv({ storage: 'memory', args: ['--master', `127.0.0.1:${master.port}`, '--id', 'n1', '--rpc-port', '0', '--renew-ms', '200', '--drift-ms', '100'] });
    const stats = JSON.parse((await request(node.httpPort!, 'GET', '/stats')).body.toString('utf8')) as Record<string, unknown>;
    expect(stats.cluster_leases_held).toBeGreaterThan(0);
    const v = await view(master);
    nodeRpcPort = Number(String((v.members[0] as unknown as { addrs: { rpc: string } }).addrs.rpc).split(':')[1]);
    client = new RpcClient({ host: '127.0.0.1', port: master.port });
  }, 30_000);

  afterAll(async () => {
    client?.close();
    await node?.stop();
    await master?.stop();
  });

  it('answers a renewal from an unknown node id with UNKNOWN_NODE, and the connection keeps working', async () => {
    const err = await client.call('renew', { id: 'ghost' }, { timeoutMs: 3000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RpcRemoteError);
    expect((err as RpcRemoteError).code).toBe('UNKNOWN_NODE');
    const table = await client.call<{ leases: unknown[] }>('table', {}, { timeoutMs: 3000 });
    expect(table.leases.length).toBeGreaterThan(0);
  });

  it('refuses a registration with a bad id or address with BAD_MEMBER', async () => {
    for (const body of [
      { id: 'bad id', addrs: { memcached: '127.0.0.1:1', http: '127.0.0.1:2', rpc: '127.0.0.1:3' } },
      { id: 'n9', addrs: { memcached: 'nowhere', http: '127.0.0.1:2', rpc: '127.0.0.1:3' } },
    ]) {
      const err = await client.call('register', body, { timeoutMs: 3000 }).catch((e: unknown) => e);
      expect((err as RpcRemoteError).code).toBe('BAD_MEMBER');
    }
    expect((await view(master)).members.map((m) => m.id)).toEqual(['n1']);
  });

  it('closes a connection that declares an oversized frame, with FRAME_TOO_LARGE', async () => {
    const header = Buffer.alloc(4);
    header.writeUInt32BE(0x7fffffff);
    for (const port of [master.port, nodeRpcPort]) {
      const r = await rawExchange(port, header);
      expect(r.closed).toBe(true);
      expect(errorCodeOf(r.frames)).toBe('FRAME_TOO_LARGE');
    }
  });

  it('closes a connection that sends a malformed frame, with FRAME_MALFORMED', async () => {
    const garbage = Buffer.from([0, 0, 0, 3, 0xc1, 0xc1, 0xc1]);
    const notAMap = Buffer.concat([Buffer.from([0, 0, 0, 1]), Buffer.from([0x2a])]);
    for (const port of [master.port, nodeRpcPort]) {
      for (const bytes of [garbage, notAMap]) {
        const r = await rawExchange(port, bytes);
        expect(r.closed).toBe(true);
        expect(errorCodeOf(r.frames)).toBe('FRAME_MALFORMED');
      }
    }
  });

  it('leaves the rest of the cluster untouched', async () => {
    const v = await view(master);
    expect(v.members.every((m) => m.status === 'up')).toBe(true);
    expect(v.leases.every((l) => l.owner === 'n1' && l.expiresInMs > 0)).toBe(true);
    const c = await McClient.connect(node.port);
    expect(await c.set('still', 'fine')).toBe('STORED');
    expect((await c.get('still'))?.value.toString()).toBe('fine');
    c.close();
  });
});
