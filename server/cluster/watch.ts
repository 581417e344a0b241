// What a cluster node logs about the cluster, read once a second from state it keeps
// anyway (the lease table, the failure detector, the replicator's counters), so that no
// request path pays for logging and every kind of event is at most one line a second:
//
//   info  member status changes (joining, up, leaving, left, down, as the master says),
//         the ring's membership changing
//   debug the lease table's version moving on
//   warn  peers this node finds down (and info when they answer again); quorum failures,
//         with how many since the last line
import type { Logger } from '../log.js';
import type { ClusterMembership } from './cluster.js';

export interface ClusterWatch {
  /** Look now (the timer calls this every `everyMs`). */
  check(): void;
  stop(): void;
}

export function watchCluster(m: ClusterMembership, log: Logger, everyMs = 1000): ClusterWatch {
  let statuses = new Map<string, string>();
  let ring = '';
  let lsn = m.table.lsn;
  let down = new Set<string>();
  let downs = m.fd.downs;
  let quorumFailures = m.replicator.counters.quorum_failures;

  const check = (): void => {
    // Membership, as the lease table (from the master) says.
    const now = new Map<string, string>();
    for (const member of m.table.members.values()) now.set(member.id, member.status);
    for (const [id, status] of now) {
      const was = statuses.get(id);
      if (was !== status) log.info({ member: id, from: was ?? null, to: status, self: id === m.selfId }, 'member status changed');
    }
    for (const id of statuses.keys()) if (!now.has(id)) log.info({ member: id, from: statuses.get(id), to: null }, 'member removed from the table');
    statuses = now;
    const inRing = [...now].filter(([, s]) => s === 'up' || s === 'leaving').map(([id]) => id).sort();
    const ringKey = inRing.join(',');
    if (ringKey !== ring) {
      log.info({ members: inRing, lsn: m.table.lsn }, 'ring changed');
      ring = ringKey;
    }
    if (m.table.lsn !== lsn) {
      log.debug({ from: lsn, to: m.table.lsn, pieces: m.table.size, leasesHeld: m.owner.leases().length }, 'lease table changed');
      lsn = m.table.lsn;
    }

    // Peers this node cannot reach (its own failure detector, faster than the master's view).
    const nowDown = new Set(m.fd.downPeers());
    const newlyDown = [...nowDown].filter((id) => !down.has(id));
    const transitions = m.fd.downs - downs;
    if (newlyDown.length > 0 || transitions > newlyDown.length) {
      // transitions beyond the newly down: peers that went down and came back within the second
      log.warn({ peers: newlyDown, downNow: [...nowDown], transitions }, 'peers marked down');
    }
    const back = [...down].filter((id) => !nowDown.has(id));
    if (back.length > 0) log.info({ peers: back }, 'peers answer again');
    down = nowDown;
    downs = m.fd.downs;

    const q = m.replicator.counters.quorum_failures;
    if (q > quorumFailures) log.warn({ count: q - quorumFailures, total: q }, 'quorum failures');
    quorumFailures = q;
  };

  const timer = setInterval(check, everyMs);
  timer.unref();
  return {
    check,
    stop: () => clearInterval(timer),
  };
}
