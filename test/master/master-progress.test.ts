// The master's `progress` RPC, in-process (ports 0, fake member addresses): a moving
// member's report is its `transfer` in the view; once the move is over, its final report
// (done) is kept as `lastTransfer` (whether it comes before or after joined/left) until
// the member moves again; other reports from a member that is not moving are dropped; a
// report with bad ranges is refused. `ringkv status` reads the result (parseView).
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseView, type MasterView, type ViewMember } from '../../client/status.js';
import type { WireRangeMove, WireTransfer } from '../../server/master/core.js';
import { masterDefaults, startMaster, type RunningMaster } from '../../server/master/master.js';
import { RpcClient } from '../../server/protocol/rpc/index.js';

const range = (over: Partial<WireRangeMove> = {}): WireRangeMove => ({
  start: '0000000000000001',
  end: '0000000000000002',
  source: 'n1',
  target: 'n2',
  state: 'streaming',
  keys: 5,
  bytes: 500,
  rateBytesPerS: 100,
  retries: 0,
  ...over,
});
const moving = (over: Partial<WireTransfer> = {}): WireTransfer => ({ direction: 'in', keys: 5, bytes: 500, fraction: 0.5, rateBytesPerS: 100, done: false, state: 'streaming', retries: 1, ranges: [range({ retries: 1 }), range({ state: 'queued', waiting: 'concurrency' })], ...over });
const finished = (over: Partial<WireTransfer> = {}): WireTransfer => ({ direction: 'in', keys: 9, bytes: 900, fraction: 1, rateBytesPerS: 0, done: true, state: 'done', retries: 1, ranges: [range({ state: 'done', keys: 9, bytes: 900 })], ...over });

describe('master: progress reports, the current move and the last finished one', () => {
  let master: RunningMaster;
  let rpc: RpcClient;
  let dir: string;

  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'ringkv-master-progress-'));
    master = await startMaster({ ...masterDefaults, port: 0, httpPort: 0, data: dir, vnodes: 4, n: 1, r: 1, w: 1, logLevel: 'silent' });
    rpc = new RpcClient({ host: '127.0.0.1', port: master.port });
  });

  afterAll(async () => {
    await rpc?.close();
    await master?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const call = <T = unknown>(type: string, body: unknown) => rpc.call<T>(type, body, { timeoutMs: 5000 });
  // Addresses nobody listens on: recalls sent there go unanswered, which is fine here.
  const register = (id: string, join = false) => call('register', { id, addrs: { memcached: '127.0.0.1:9', http: '127.0.0.1:9', rpc: '127.0.0.1:9' }, join });
  const progress = (id: string, transfer: unknown) => call('progress', { id, transfer });
  const view = async (): Promise<MasterView> => parseView(await call('view', {}));
  const memberOf = async (id: string): Promise<ViewMember> => (await view()).members.find((m) => m.id === id)!;
  const strip = (t: object | undefined) => {
    if (t === undefined) return undefined;
    const { atMs, ...rest } = t as { atMs?: unknown };
    expect(typeof atMs).toBe('number');
    return rest;
  };

  it('follows a join, keeps its final report, drops late ones, forgets it when the member moves again', async () => {
    await register('n1');
    await register('n2', true);
    expect((await memberOf('n2')).status).toBe('joining');

    // A moving member's report is its transfer.
    await progress('n2', moving());
    let n2 = await memberOf('n2');
    expect(strip(n2.transfer)).toEqual(moving());
    expect(n2.lastTransfer).toBeUndefined();

    // A member that is not moving: a report that is not done is dropped.
    await progress('n1', moving({ direction: 'out' }));
    let n1 = await memberOf('n1');
    expect(n1.transfer).toBeUndefined();
    expect(n1.lastTransfer).toBeUndefined();

    // Joined: the move is over; its last report was not done, so there is no last move yet.
    await call('joined', { id: 'n2' });
    n2 = await memberOf('n2');
    expect(n2.status).toBe('up');
    expect(n2.transfer).toBeUndefined();
    expect(n2.lastTransfer).toBeUndefined();

    // The final report, after joined: kept as the last move.
    await progress('n2', finished());
    n2 = await memberOf('n2');
    expect(n2.transfer).toBeUndefined();
    expect(strip(n2.lastTransfer)).toEqual(finished());
    // GET /cluster shows it too.
    const http = (await (await fetch(`http://127.0.0.1:${master.httpPort}/cluster`)).json()) as { members: Array<{ id: string; lastTransfer?: WireTransfer; transfer?: unknown }> };
    const h2 = http.members.find((m) => m.id === 'n2')!;
    expect(h2.transfer).toBeUndefined();
    expect(h2.lastTransfer?.ranges).toEqual(finished().ranges);

    // A late report that is not done changes nothing.
    await progress('n2', moving({ keys: 1 }));
    n2 = await memberOf('n2');
    expect(n2.transfer).toBeUndefined();
    expect(strip(n2.lastTransfer)).toEqual(finished());

    // It moves again (leaves): the last move is history; the new move's reports show.
    await call('leave', { id: 'n2' });
    n2 = await memberOf('n2');
    expect(n2.status).toBe('leaving');
    expect(n2.lastTransfer).toBeUndefined();
    await progress('n2', moving({ direction: 'out' }));
    expect(strip((await memberOf('n2')).transfer)).toEqual(moving({ direction: 'out' }));

    // The final report before left: it becomes the last move when left comes.
    const out = finished({ direction: 'out', keys: 4 });
    await progress('n2', out);
    expect(strip((await memberOf('n2')).transfer)).toEqual(out);
    await call('left', { id: 'n2' });
    n2 = await memberOf('n2');
    expect(n2.status).toBe('left');
    expect(n2.transfer).toBeUndefined();
    expect(strip(n2.lastTransfer)).toEqual(out);
  });

  it('refuses a report whose ranges are not an array, too many, or in an unknown state; and an unknown member', async () => {
    await register('n3');
    const refused = { code: 'BAD_MEMBER' };
    await expect(progress('n3', finished({ ranges: 'all' as never }))).rejects.toMatchObject({ ...refused, message: expect.stringMatching(/ranges must be an array/) });
    await expect(progress('n3', finished({ ranges: Array.from({ length: 100_001 }, () => ({})) as never }))).rejects.toMatchObject({ ...refused, message: expect.stringMatching(/100001 ranges: at most 100000/) });
    await expect(progress('n3', finished({ ranges: [range({ state: 'finished' as never })] }))).rejects.toMatchObject({ ...refused, message: expect.stringMatching(/bad range state/) });
    await expect(progress('n3', finished({ ranges: [range({ state: 'done', waiting: 'coffee' as never })] }))).rejects.toMatchObject(refused);
    await expect(progress('n3', { direction: 'up' })).rejects.toMatchObject(refused);
    await expect(progress('nobody', finished())).rejects.toMatchObject(refused);
    // Nothing refused was kept.
    expect((await memberOf('n3')).lastTransfer).toBeUndefined();
    // Without ranges (an older node): accepted.
    await progress('n3', finished({ ranges: undefined, state: undefined, retries: undefined }));
    expect(strip((await memberOf('n3')).lastTransfer)).toEqual({ direction: 'in', keys: 9, bytes: 900, fraction: 1, rateBytesPerS: 0, done: true });
  });
});
