// The Coalescer: items addressed to one peer in one event-loop turn travel in one call.
import { describe, expect, it } from 'vitest';
import { Coalescer } from '../../server/replication/coalescer.js';

const turn = () => new Promise<void>((r) => setImmediate(r));

function recorder(opts: { maxItems?: number; maxBytes?: number; fail?: (peer: string) => Error | undefined; short?: boolean } = {}) {
  const calls: Array<{ peer: string; items: string[] }> = [];
  const c = new Coalescer<string, string>({
    send: async (peer, items) => {
      calls.push({ peer, items: [...items] });
      const e = opts.fail?.(peer);
      if (e) throw e;
      const out = items.map((i) => `${peer}:${i}`);
      return opts.short ? out.slice(1) : out;
    },
    maxItems: opts.maxItems ?? 100,
    maxBytes: opts.maxBytes ?? 1_000_000,
    bytes: (i) => i.length,
  });
  return { c, calls };
}

describe('Coalescer', () => {
  it('sends what one turn adds for a peer in one call, in order, and settles each item with its own result', async () => {
    const { c, calls } = recorder();
    const ps = [c.add('p1', 'a'), c.add('p2', 'x'), c.add('p1', 'b'), c.add('p1', 'c')];
    expect(calls).toEqual([]); // nothing leaves before the turn's I/O is done
    expect(await Promise.all(ps)).toEqual(['p1:a', 'p2:x', 'p1:b', 'p1:c']);
    expect(calls).toEqual([
      { peer: 'p1', items: ['a', 'b', 'c'] },
      { peer: 'p2', items: ['x'] },
    ]);
    // The next turn is a new batch.
    await c.add('p1', 'd');
    expect(calls.at(-1)).toEqual({ peer: 'p1', items: ['d'] });
    expect(c.counters).toEqual({ calls: 3, items: 5 });
  });

  it('sends a batch at once when it reaches maxItems, and never puts more than maxBytes in one call', async () => {
    const { c, calls } = recorder({ maxItems: 2, maxBytes: 10 });
    const ps = [c.add('p', 'a'), c.add('p', 'b')];
    expect(calls).toEqual([{ peer: 'p', items: ['a', 'b'] }]); // full: sent without waiting for the turn
    ps.push(c.add('p', 'xxxxxx'), c.add('p', 'yyyyyy')); // 6 + 6 > 10: the second starts a new batch
    ps.push(c.add('p', 'z'.repeat(25))); // larger than maxBytes alone: goes alone
    await Promise.all(ps);
    expect(calls.map((k) => k.items)).toEqual([['a', 'b'], ['xxxxxx'], ['yyyyyy'], ['z'.repeat(25)]]);
  });

  it('fails every item of a failed call with its error, and only those', async () => {
    const boom = new Error('peer down');
    const { c } = recorder({ fail: (peer) => (peer === 'bad' ? boom : undefined) });
    const bad = [c.add('bad', 'a'), c.add('bad', 'b')];
    const good = c.add('ok', 'c');
    for (const p of bad) await expect(p).rejects.toBe(boom);
    await expect(good).resolves.toBe('ok:c');
  });

  it('rejects the items a reply has no result for', async () => {
    const { c } = recorder({ short: true });
    const [a, b] = [c.add('p', 'a'), c.add('p', 'b')];
    await expect(a).resolves.toBe('p:b'); // results are taken in order: the reply was short by one
    await expect(b).rejects.toThrow(/1 results for 2 items/);
    await turn();
  });
});
