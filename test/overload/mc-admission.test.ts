// Admission control on the memcached port of an in-process node with --max-inflight 1:
// while one LevelDB write is pending, every other request of the pipeline is refused with
// `SERVER_ERROR busy` (in order, nothing run), noreply refusals stay silent but count, the
// meta q flag does not hide the refusal, and version/stats/mn are never refused. A memory
// node, whose writes are synchronous, never has two requests in flight and never refuses.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningNode } from '../../server/node.js';
import { getParser, setCommand, statsParser } from '../helpers/mc.js';
import { closeAll, mcClient, mcStats, startTestNode, tracker } from './helpers.js';

const BUSY = 'SERVER_ERROR busy';

describe('memcached admission, level storage, --max-inflight 1', () => {
  const t = tracker();
  let node: RunningNode;

  beforeAll(async () => {
    node = await startTestNode(t, { storage: 'level', maxInflight: 1 });
  });
  afterAll(() => closeAll(t));

  it('admits the first of 20 pipelined sets and refuses the other 19 in order; version and stats are answered', async () => {
    const c = await mcClient(t, node);
    const keys = Array.from({ length: 20 }, (_, i) => `pipe-${i}`);
    // One write: the node reads it in one turn, so the first set's LevelDB write is still pending for the rest.
    await c.write(Buffer.concat([...keys.map((k) => setCommand(k, `value-of-${k}`)), Buffer.from('version\r\nstats\r\n')]));
    const replies: string[] = [];
    for (let i = 0; i < keys.length; i++) replies.push(await c.line());
    expect(replies).toEqual(['STORED', ...Array<string>(19).fill(BUSY)]);
    expect(await c.line()).toMatch(/^VERSION \S+$/);
    // The stats of the same turn: the first set still in flight, 19 refused for that reason.
    const during = await c.read(statsParser);
    expect(during.get('requests_inflight')).toBe('1');
    expect(during.get('rejected_requests')).toBe('19');
    expect(during.get('rejected_inflight')).toBe('19');
    expect(during.get('rejected_lag')).toBe('0');

    // Data intact: the admitted set is there, no refused one ran.
    await c.write(`get ${keys.join(' ')}\r\n`);
    const found = await c.read(getParser);
    expect(found.map((v) => [v.key, v.value.toString('latin1')])).toEqual([['pipe-0', 'value-of-pipe-0']]);

    const after = await mcStats(t, node);
    expect(after.get('rejected_requests')).toBe('19');
    expect(after.get('rejected_inflight')).toBe('19');
    expect(after.get('requests_inflight')).toBe('0');
    expect(after.get('cmd_set')).toBe('1');
  });

  it('refuses a noreply set silently, but counts it', async () => {
    const c = await mcClient(t, node);
    const before = Number((await mcStats(t, node)).get('rejected_requests'));
    await c.write(Buffer.concat([setCommand('nr-a', 'a'), Buffer.from('set nr-b 0 0 1 noreply\r\nb\r\nversion\r\n')]));
    expect(await c.line()).toBe('STORED');
    // Nothing for the refused noreply set: the next line is version's.
    expect(await c.line()).toMatch(/^VERSION /);
    const s = await mcStats(t, node);
    expect(Number(s.get('rejected_requests'))).toBe(before + 1);
    expect(Number(s.get('rejected_inflight'))).toBe(before + 1);
    expect((await c.get('nr-a'))?.value.toString()).toBe('a');
    expect(await c.get('nr-b')).toBeUndefined();
  });

  it('refuses meta ms with SERVER_ERROR busy even with the q flag; mn is never refused', async () => {
    const c = await mcClient(t, node);
    await c.write(Buffer.concat([setCommand('meta-a', 'a'), Buffer.from('ms meta-b 1 q\r\nb\r\nms meta-c 1\r\nc\r\nget meta-a\r\nmn\r\n')]));
    expect(await c.line()).toBe('STORED');
    expect(await c.line()).toBe(BUSY);
    expect(await c.line()).toBe(BUSY);
    // A read is refused like a write.
    expect(await c.line()).toBe(BUSY);
    expect(await c.line()).toBe('MN');
    expect(await c.get('meta-b')).toBeUndefined();
    expect(await c.get('meta-c')).toBeUndefined();
    expect((await c.get('meta-a'))?.value.toString()).toBe('a');
  });

  it('refuses nothing once the pending write is done: sequential requests all succeed', async () => {
    const c = await mcClient(t, node);
    const before = Number((await mcStats(t, node)).get('rejected_requests'));
    for (let i = 0; i < 10; i++) expect(await c.set(`seq-${i}`, `v${i}`)).toBe('STORED');
    for (let i = 0; i < 10; i++) expect((await c.get(`seq-${i}`))?.value.toString()).toBe(`v${i}`);
    expect(Number((await mcStats(t, node)).get('rejected_requests'))).toBe(before);
  });
});

describe('memcached admission, memory storage, --max-inflight 1', () => {
  const t = tracker();
  let node: RunningNode;

  beforeAll(async () => {
    node = await startTestNode(t, { storage: 'memory', maxInflight: 1 });
  });
  afterAll(() => closeAll(t));

  it('never refuses a pipeline of 100 sets: each finishes before the next is admitted', async () => {
    const c = await mcClient(t, node);
    const keys = Array.from({ length: 100 }, (_, i) => `mem-${i}`);
    await c.write(Buffer.concat(keys.map((k) => setCommand(k, `v-${k}`))));
    const replies: string[] = [];
    for (let i = 0; i < keys.length; i++) replies.push(await c.line());
    expect(replies).toEqual(Array<string>(100).fill('STORED'));
    const s = await mcStats(t, node);
    expect(s.get('rejected_requests')).toBe('0');
    expect(s.get('requests_inflight')).toBe('0');
    await c.write(`get ${keys.join(' ')}\r\n`);
    expect((await c.read(getParser)).length).toBe(100);
  });
});
