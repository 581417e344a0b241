// What a cluster node logs about the cluster (server/cluster/watch.ts), against a fake
// membership and a logger writing into an array: member status and ring changes at info,
// peers found down at warn, quorum failures at warn at most once per check (one a second)
// however many happened, and nothing when nothing changed.
import { describe, expect, it } from 'vitest';
import type { ClusterMembership } from '../../server/cluster/cluster.js';
import { watchCluster } from '../../server/cluster/watch.js';
import { createLogger } from '../../server/log.js';

interface Line {
  level: string;
  msg: string;
  [k: string]: unknown;
}

function fakeMembership() {
  const state = {
    members: new Map<string, { id: string; status: string }>(),
    lsn: 1,
    down: [] as string[],
    downs: 0,
    quorumFailures: 0,
  };
  const m = {
    selfId: 'a',
    table: {
      get members() {
        return state.members;
      },
      get lsn() {
        return state.lsn;
      },
      size: 8,
    },
    fd: {
      downPeers: () => [...state.down].sort(),
      get downs() {
        return state.downs;
      },
    },
    replicator: {
      counters: {
        get quorum_failures() {
          return state.quorumFailures;
        },
      },
    },
    owner: { leases: () => [] },
  };
  return { state, m: m as unknown as ClusterMembership };
}

function capture(): { lines: Line[]; log: ReturnType<typeof createLogger> } {
  const lines: Line[] = [];
  const log = createLogger({ level: 'debug', destination: { write: (s: string) => void lines.push(JSON.parse(s) as Line) } });
  return { lines, log };
}

describe('watchCluster', () => {
  it('logs membership and ring changes, peers down and back, and quorum failures once per check', () => {
    const { state, m } = fakeMembership();
    const { lines, log } = capture();
    state.members.set('a', { id: 'a', status: 'up' });
    state.members.set('b', { id: 'b', status: 'up' });
    const w = watchCluster(m, log, 3_600_000);
    try {
      w.check();
      expect(lines.filter((l) => l.msg === 'member status changed').map((l) => [l.member, l.to, l.self])).toEqual([
        ['a', 'up', true],
        ['b', 'up', false],
      ]);
      expect(lines.find((l) => l.msg === 'ring changed')).toMatchObject({ level: 'info', members: ['a', 'b'] });

      // Nothing changed: nothing logged.
      lines.length = 0;
      w.check();
      expect(lines).toEqual([]);

      // b stops answering; 250 quorum failures follow before the next check.
      state.down = ['b'];
      state.downs = 1;
      state.quorumFailures = 250;
      w.check();
      expect(lines.filter((l) => l.level === 'warn').map((l) => l.msg).sort()).toEqual(['peers marked down', 'quorum failures']);
      expect(lines.find((l) => l.msg === 'peers marked down')).toMatchObject({ peers: ['b'], downNow: ['b'] });
      expect(lines.find((l) => l.msg === 'quorum failures')).toMatchObject({ count: 250, total: 250 });

      // Still down, more failures: one more quorum line, no second "down" line.
      lines.length = 0;
      state.quorumFailures = 260;
      w.check();
      expect(lines.map((l) => l.msg)).toEqual(['quorum failures']);
      expect(lines[0]).toMatchObject({ count: 10, total: 260 });

      // The master marks b down and a new lease table comes: info and debug lines.
      lines.length = 0;
      state.members.set('b', { id: 'b', status: 'down' });
      state.lsn = 2;
      w.check();
      expect(lines.find((l) => l.msg === 'member status changed')).toMatchObject({ level: 'info', member: 'b', from: 'up', to: 'down' });
      expect(lines.find((l) => l.msg === 'ring changed')).toMatchObject({ members: ['a'] });
      expect(lines.find((l) => l.msg === 'lease table changed')).toMatchObject({ level: 'debug', from: 1, to: 2 });

      // b answers again; a peer that went down and came back between checks still warns.
      lines.length = 0;
      state.down = [];
      state.downs = 3;
      w.check();
      expect(lines.find((l) => l.msg === 'peers answer again')).toMatchObject({ level: 'info', peers: ['b'] });
      expect(lines.find((l) => l.msg === 'peers marked down')).toMatchObject({ level: 'warn', peers: [], transitions: 2 });
    } finally {
      w.stop();
    }
  });
});
