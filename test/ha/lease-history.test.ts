// The failover tests' lease-history checker (lease-history.ts) on made-up histories: it
// passes a clean one and names each kind of violation.
import { describe, expect, it } from 'vitest';
import { LeaseHistory, replayChangeLog } from './lease-history.js';

const A = '0000000000000000';
const B = '8000000000000000';
const whole = (owner: string, generation: number, expiresInMs = 3000, movingTo?: string) => [
  { start: A, end: B, owner, generation, expiresInMs, ...(movingTo ? { movingTo } : {}) },
  { start: B, end: A, owner: 'n2', generation: 1, expiresInMs },
];

describe('lease history checker', () => {
  it('passes a history where a dead owner is replaced after its lease ran out', () => {
    const h = new LeaseHistory();
    h.add({ source: 'm1', sentAt: 0, receivedAt: 5, lsn: 3, leases: whole('n1', 2, 3000) });
    h.add({ source: 'm2', sentAt: 100, receivedAt: 105, lsn: 3, leases: whole('n1', 2, 2900) });
    h.add({ source: 'm2', sentAt: 3200, receivedAt: 3205, lsn: 4, leases: whole('n3', 5) });
    expect(h.problems()).toEqual([]);
    expect(h.handovers()).toEqual([{ position: B, from: 'n1', to: 'n3', fromGeneration: 2, toGeneration: 5, recall: false }]);
  });

  it('names a generation going down, one generation with two owners, two tables under one LSN, and an overlap', () => {
    const h = new LeaseHistory();
    h.add({ source: 'm1', sentAt: 0, receivedAt: 5, lsn: 3, leases: whole('n1', 4, 3000) });
    h.add({ source: 'm2', sentAt: 500, receivedAt: 505, lsn: 3, leases: whole('n3', 4) });
    h.add({ source: 'm2', sentAt: 600, receivedAt: 605, lsn: 5, leases: whole('n3', 6) });
    h.add({ source: 'm2', sentAt: 700, receivedAt: 705, lsn: 6, leases: whole('n3', 5) });
    const p = h.problems().join('\n');
    expect(p).toMatch(/lsn 3: m1 and m2 showed different tables/);
    expect(p).toMatch(/generation 4 held by n1 .* and by n3/);
    expect(p).toMatch(/generation went down from 6 .* to 5/);
    expect(p).toMatch(/n3 \(generation \d\) shown at \+\d+ ms while n1's lease \(generation 4\) ran until at least/);
  });

  it('names an overlap: a new owner shown before the dead one\'s lease ran out', () => {
    const h = new LeaseHistory();
    h.add({ source: 'm1', sentAt: 0, receivedAt: 5, lsn: 3, leases: whole('n1', 2, 3000) });
    h.add({ source: 'm2', sentAt: 2000, receivedAt: 2005, lsn: 4, leases: whole('n3', 5) });
    expect(h.problems()).toEqual([`position ${B}: n3 (generation 5) shown at +2005 ms while n1's lease (generation 2) ran until at least +3000 ms (995 ms of overlap)`]);
    // Unless the caller knows it may be a recall.
    expect(h.problems({ recall: (from, to) => from === 'n1' && to === 'n3' })).toEqual([]);
  });

  it('does not judge a recall on expiry', () => {
    const h = new LeaseHistory();
    h.add({ source: 'm1', sentAt: 0, receivedAt: 5, lsn: 3, leases: whole('n1', 2, 3000, 'n3') });
    h.add({ source: 'm1', sentAt: 100, receivedAt: 105, lsn: 4, leases: whole('n3', 7) });
    expect(h.problems()).toEqual([]);
    expect(h.handovers()[0]!.recall).toBe(true);
  });

  it('replays a change log from LSN 0', () => {
    const ok = replayChangeLog({
      lsn: 3,
      changes: [
        { lsn: 1, upsert: [{ start: A, end: A, owner: 'n1', generation: 1 }], remove: [], members: [] },
        { lsn: 2, upsert: [{ start: A, end: B, owner: 'n1', generation: 1 }, { start: B, end: A, owner: 'n2', generation: 2 }], remove: [], members: [] },
        { lsn: 3, upsert: [{ start: A, end: B, owner: 'n3', generation: 3 }], remove: [], members: [] },
      ],
    });
    expect(ok.complete).toBe(true);
    expect(ok.problems).toEqual([]);
    expect(ok.table.map((l) => `${l.owner}@${l.generation}`).sort()).toEqual(['n2@2', 'n3@3']);
    const bad = replayChangeLog({
      lsn: 2,
      changes: [
        { lsn: 1, upsert: [{ start: A, end: A, owner: 'n1', generation: 4 }], remove: [], members: [] },
        { lsn: 2, upsert: [{ start: A, end: A, owner: 'n2', generation: 4 }], remove: [], members: [] },
        { lsn: 2, upsert: [{ start: A, end: A, owner: 'n2', generation: 3 }], remove: [], members: [] },
      ],
    });
    expect(bad.problems.join('\n')).toMatch(/generation 4 held by n1 and by n2/);
    expect(bad.problems.join('\n')).toMatch(/lsn 2 after 2/);
    expect(bad.problems.join('\n')).toMatch(/generation 4 \(lsn 2\) then 3/);
    expect(replayChangeLog({ lsn: 9, full: {} }).complete).toBe(false);
  });
});
