// RingClient against a real cluster of child processes on loopback (a lease master and
// three memory-storage nodes with short lease timings, started as test/cluster does):
// keys land on the owner ring/ computes and read back through the client and through any
// node's memcached port; the memcached semantics hold through the client; local checks
// fail typed; a 10 s 90/10 get/set loop measures ops/s (printed, not asserted); and a
// SIGKILLed node costs only typed errors until its ranges move, after which its keys work.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initHash, Ring } from '../../ring/index.js';
import type { RunningServer } from '../../bench/lib/servers.js';
import { McClient, getParser } from '../helpers/mc.js';
import { request } from '../helpers/http.js';
import { InvalidKey, KeyTooLong, RingClient, RingkvError, ValueTooLarge } from '../../client/index.js';
// Routing and leases alone: one copy per key (N = 1), so each node holds exactly its
// share of the ring. Replication has its own tests (test/replication/*.process.test.ts).
const ONE_COPY = { n: 1, r: 1, w: 1 };
import { settled, until, view, startTestCluster } from '../helpers/cluster.js';

const leaseMs = 1500;
const renewMs = 200;
const vnodes = 16;





/** Runs `fn` over `items` with at most `inFlight` calls at once. */
async function eachLimited<T>(items: readonly T[], inFlight: number, fn: (t: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (next < items.length) await fn(items[next++]!);
    }),
  );
}

async function currItems(node: RunningServer): Promise<number> {
  const c = await McClient.connect(node.port);
  try {
    return Number((await c.stats()).get('curr_items'));
  } finally {
    c.close();
  }
}

describe('RingClient against a master and three nodes', () => {
  let master: RunningServer;
  const nodes: RunningServer[] = [];
  const ids = ['n1', 'n2', 'n3'];
  const started: RunningServer[] = [];
  const track = (s: RunningServer) => (started.push(s), s);
  let kv: RingClient;
  const valueOf = (i: number) => `v:${i}:${'x'.repeat(i % 37)}`;
  const keys = Array.from({ length: 10_000 }, (_, i) => `ck:${i}`);

  beforeAll(async () => {
    await initHash();
    const c = await startTestCluster({ ids, leaseMs, renewMs, vnodes, replication: ONE_COPY }, track);
    master = c.master;
    nodes.push(...c.nodes);
    kv = await RingClient.connect({ master: `127.0.0.1:${master.port}` });
  }, 60_000);

  afterAll(async () => {
    await kv?.close();
    await Promise.all(started.filter((s) => s.name === 'ringkv').map((s) => s.stop()));
    for (const s of started.filter((s) => s.name !== 'ringkv')) await s.stop();
  });

  it('stores 10,000 keys on the owners ring/ computes, readable via getMany and any node', async () => {
    const before = await Promise.all(nodes.map(currItems));
    await eachLimited(keys.map((k, i) => [k, i] as const), 200, async ([k, i]) => kv.set(k, valueOf(i)));

    const got = await kv.getMany(keys);
    expect(got.size).toBe(keys.length);
    keys.forEach((k, i) => expect(got.get(k)?.value.toString('utf8'), k).toBe(valueOf(i)));

    // Through one node's memcached port (it forwards to the owners).
    const mc = await McClient.connect(nodes[1]!.port);
    for (let i = 0; i < keys.length; i += 100) {
      await mc.write(`get ${keys.slice(i, i + 100).join(' ')}\r\n`);
      const items = await mc.read(getParser, 20_000);
      expect(items.map((it) => it.key)).toEqual(keys.slice(i, i + 100));
      for (const it of items) expect(it.value.toString('latin1')).toBe(valueOf(Number(it.key.slice(3))));
    }
    mc.close();

    // Each key is stored on its owner, and only there.
    const ring = Ring.build(ids.map((id) => ({ id })), { vnodes });
    const expected = new Map(ids.map((id) => [id, 0]));
    for (const k of keys) {
      const owner = ring.ownerOf(ring.position(k));
      expected.set(owner, expected.get(owner)! + 1);
    }
    const after = await Promise.all(nodes.map(currItems));
    ids.forEach((id, i) => expect(after[i]! - before[i]!, id).toBe(expected.get(id)));
  }, 60_000);

  it('keeps memcached semantics: cas, incr/decr, add/replace/append/prepend/touch, delete, flags, binary', async () => {
    await kv.set('sem:cas', 'one');
    const first = (await kv.get('sem:cas'))!;
    expect(await kv.cas('sem:cas', 'two', first.cas)).toBe(true);
    expect(await kv.cas('sem:cas', 'three', first.cas)).toBe(false); // EXISTS: written in between
    expect((await kv.get('sem:cas'))!.value.toString()).toBe('two');
    expect(await kv.cas('sem:missing', 'x', first.cas)).toBe(false);

    expect(await kv.incr('sem:ctr', 1)).toBeUndefined();
    expect(await kv.decr('sem:ctr', 1)).toBeUndefined();
    expect(await kv.incr('sem:ctr', 5, { initial: 0n })).toBe(0n); // created with the initial value
    expect(await kv.incr('sem:ctr', 5)).toBe(5n);
    expect(await kv.decr('sem:ctr', 2n)).toBe(3n);
    expect(await kv.decr('sem:ctr', 10)).toBe(0n); // floors at 0
    await kv.set('sem:wrap', '18446744073709551615');
    expect(await kv.incr('sem:wrap', 2)).toBe(1n); // wraps at 2^64

    expect(await kv.add('sem:a', 'first')).toBe(true);
    expect(await kv.add('sem:a', 'second')).toBe(false);
    expect(await kv.replace('sem:a', 'third')).toBe(true);
    expect(await kv.replace('sem:none', 'x')).toBe(false);
    expect(await kv.append('sem:a', '>')).toBe(true);
    expect(await kv.prepend('sem:a', '<')).toBe(true);
    expect(await kv.append('sem:none', 'x')).toBe(false);
    expect(await kv.prepend('sem:none', 'x')).toBe(false);
    expect((await kv.get('sem:a'))!.value.toString()).toBe('<third>');
    expect(await kv.touch('sem:a', 60)).toBe(true);
    expect((await kv.get('sem:a'))!.expiresAtMs).toBeGreaterThan(0);
    expect(await kv.touch('sem:none', 60)).toBe(false);

    expect(await kv.delete('sem:a')).toBe(true);
    expect(await kv.delete('sem:a')).toBe(false);
    expect(await kv.get('sem:a')).toBeUndefined();

    const binKey = new Uint8Array([0x01, 0xff, 0x80, 0x7f, 0x0d, 0x09]);
    const binValue = Uint8Array.from({ length: 256 }, (_, i) => i);
    await kv.set(binKey, binValue, { flags: 0xffffffff, ttl: 60 });
    const bin = (await kv.get(binKey))!;
    expect(Buffer.compare(bin.value, binValue)).toBe(0);
    expect(bin.flags).toBe(0xffffffff);
    expect(bin.expiresAtMs).toBeGreaterThan(0);
    expect(Buffer.compare((await kv.getMany([binKey])).get(binKey)!.value, binValue)).toBe(0);
    await kv.set('ключ:é', 'значение', { flags: 42 });
    const utf8 = (await kv.get(Buffer.from('ключ:é', 'utf8')))!;
    expect(utf8.value.toString('utf8')).toBe('значение');
    expect(utf8.flags).toBe(42);
  });

  it('fails typed, without I/O, on bad keys and values', async () => {
    await expect(kv.get('a b')).rejects.toBeInstanceOf(InvalidKey);
    await expect(kv.get('k'.repeat(251))).rejects.toBeInstanceOf(KeyTooLong);
    await expect(kv.set('big', new Uint8Array(2 * 1024 * 1024))).rejects.toBeInstanceOf(ValueTooLarge);
  });

  it('measures ops/s of a 10 s 90/10 get/set loop with 64 requests in flight', async () => {
    const inFlight = 64;
    const durationMs = 10_000;
    const stopAt = Date.now() + durationMs;
    let gets = 0;
    let sets = 0;
    const errors: unknown[] = [];
    const started = Date.now();
    const before = { ...kv.counters };
    await Promise.all(
      Array.from({ length: inFlight }, async () => {
        while (Date.now() < stopAt) {
          const i = Math.floor(Math.random() * keys.length);
          try {
            if (Math.random() < 0.1) {
              await kv.set(keys[i]!, valueOf(i));
              sets++;
            } else {
              await kv.get(keys[i]!);
              gets++;
            }
          } catch (e) {
            errors.push(e);
            if (errors.length > 100) return;
          }
        }
      }),
    );
    const elapsedS = (Date.now() - started) / 1000;
    console.log(
      `ringkv client: ${Math.round((gets + sets) / elapsedS)} ops/s (${gets} gets, ${sets} sets in ${elapsedS.toFixed(1)} s, ` +
        `${inFlight} in flight, 3 nodes, poolSize 2) retries=${kv.counters.retries - before.retries} notOwner=${kv.counters.notOwner - before.notOwner}`,
    );
    expect(errors).toEqual([]);
  }, 30_000);

  it("fails only with typed errors while a SIGKILLed node's ranges move, then serves its keys again", async () => {
    const ring = Ring.build(ids.map((id) => ({ id })), { vnodes });
    const victimKeys = Array.from({ length: 2000 }, (_, i) => `victim:${i}`).filter((k) => ring.ownerOf(ring.position(k)) === 'n3').slice(0, 100);
    expect(victimKeys.length).toBe(100);
    const failures: unknown[] = [];
    let stop = false;
    // A workload on every node's keys, across the kill.
    const load = Promise.all(
      Array.from({ length: 16 }, async (_, w) => {
        for (let i = 0; !stop; i++) {
          const k = `kill:${(w * 997 + i) % 2000}`;
          try {
            if (i % 2 === 0) await kv.set(k, `w${w}`, { timeoutMs: 2000 });
            else await kv.get(k, { timeoutMs: 2000 });
          } catch (e) {
            failures.push(e);
            await new Promise((r) => setTimeout(r, 20));
          }
        }
      }),
    );
    await new Promise((r) => setTimeout(r, 300));
    await nodes[2]!.kill();
    await until(master, settled(['n1', 'n2']), leaseMs + 10 * renewMs + 10_000);
    // Every key of the dead node's ranges (keys the load does not touch) is writable and
    // readable again.
    for (const k of victimKeys) {
      await kv.set(k, `after:${k}`, { timeoutMs: 10_000 });
      expect((await kv.get(k))?.value.toString()).toBe(`after:${k}`);
    }
    stop = true;
    await load;
    for (const e of failures) {
      expect(e, String(e)).toBeInstanceOf(RingkvError);
      expect(['UNAVAILABLE', 'TIMEOUT']).toContain((e as RingkvError).code);
    }
    console.log(`ringkv client across a SIGKILL: ${failures.length} typed failures (${[...new Set(failures.map((e) => (e as RingkvError).code))].join(', ') || 'none'})`);
  }, 40_000);
});
