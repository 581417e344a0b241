// The etcd test helper itself (test/helpers/etcd.ts): a single member answers the etcd3
// client and leaves no process, port or data dir behind once stopped; a three-member
// cluster elects a leader, survives the SIGKILL of that leader (the other two elect
// another), and stops clean.
import { existsSync } from 'node:fs';
import net from 'node:net';
import { Etcd3 } from 'etcd3';
import { afterEach, describe, expect, it } from 'vitest';
import { pollUntil } from '../helpers/async.js';
import { etcdHealthy, etcdLeader, startEtcd, startEtcdCluster, type EtcdMember } from '../helpers/etcd.js';

const started: EtcdMember[] = [];
afterEach(async () => {
  await Promise.all(started.splice(0).map((m) => m.stop()));
});

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('etcd test helper', () => {
  it('a single member: put and get through etcd3, then stop: process gone, port closed, data dir removed', async () => {
    const e = await startEtcd();
    started.push(e);
    expect(e.name).toBe('e0');
    expect(e.clientUrl).toBe(`http://127.0.0.1:${e.port}`);
    expect(existsSync(e.dataDir)).toBe(true);
    expect(await etcdHealthy(e.port)).toBe(true);

    const client = new Etcd3({ hosts: e.clientUrl });
    try {
      await client.put('/ringkv-helper/k').value('v1');
      expect(await client.get('/ringkv-helper/k').string()).toBe('v1');
    } finally {
      client.close();
    }

    await e.stop();
    expect(alive(e.pid)).toBe(false);
    expect(await portOpen(e.port)).toBe(false);
    expect(existsSync(e.dataDir)).toBe(false);
  });

  it('kill() keeps the data dir until stop()', async () => {
    const e = await startEtcd();
    started.push(e);
    await e.kill();
    expect(alive(e.pid)).toBe(false);
    expect(existsSync(e.dataDir)).toBe(true);
    await e.stop();
    expect(existsSync(e.dataDir)).toBe(false);
  });

  it('three members: all healthy, one leader; SIGKILL the leader and the other two elect another', async () => {
    const c = await startEtcdCluster(3);
    started.push(...c.members);
    expect(c.members.map((m) => m.name)).toEqual(['e0', 'e1', 'e2']);
    expect(new Set(c.members.map((m) => m.port)).size).toBe(3);
    expect(c.endpoints).toBe(c.members.map((m) => `127.0.0.1:${m.port}`).join(','));
    const leader = await etcdLeader(c.members);
    expect(leader).toBeDefined();

    const client = new Etcd3({ hosts: c.members.map((m) => m.clientUrl) });
    try {
      await client.put('/ringkv-helper/before').value('1');
      await leader!.kill();
      const rest = c.members.filter((m) => m !== leader);
      let next: EtcdMember | undefined;
      await pollUntil(10_000, async () => (next = await etcdLeader(rest)) !== undefined, () => 'no new etcd leader', 50);
      expect(rest).toContain(next);
      await client.put('/ringkv-helper/after').value('2');
      expect(await client.get('/ringkv-helper/before').string()).toBe('1');
      expect(await client.get('/ringkv-helper/after').string()).toBe('2');
    } finally {
      client.close();
    }
    await c.stop();
    for (const m of c.members) {
      expect(alive(m.pid)).toBe(false);
      expect(existsSync(m.dataDir)).toBe(false);
    }
  });
});
