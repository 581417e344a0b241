// What every master answers about leadership, and how a standby refuses. With
// `--store etcd` several masters run and one leads (an etcd election); the others stand
// by and answer every request but `role` with NOT_LEADER, naming the leader when they know
// it, so that nodes and clients given the list of masters find the active one. With
// `--store level` the one master always leads.

/** The reply of the `role` RPC (any master, leader or standby) and of GET /role. */
export interface MasterRole {
  readonly role: 'leader' | 'standby';
  /** This master's RPC address, as nodes reach it. */
  readonly self: string;
  /** The leader's RPC address, when known (itself when leading). */
  readonly leader?: string;
  /** Where the state lives. */
  readonly store: 'level' | 'etcd';
  /** Terms led so far by this process (each election won is one). */
  readonly terms: number;
}

/** The error code a standby (or a master that just lost its leadership) answers with. */
export const NOT_LEADER = 'NOT_LEADER';

/** A standby's refusal: code NOT_LEADER, and `leader` (host:port) when it knows who leads. */
export class NotLeaderError extends Error {
  readonly code = NOT_LEADER;
  readonly leader?: string;
  constructor(leader: string | undefined) {
    super(leader ? `not the leader: the leader is ${leader}` : 'not the leader, and no leader is known yet');
    if (leader) this.leader = leader;
    this.name = 'NotLeaderError';
  }
}

/** The leader an RPC error names, when it is a NOT_LEADER refusal that names one. */
export function leaderHint(e: unknown): string | undefined {
  const x = e as { code?: unknown; details?: { leader?: unknown }; leader?: unknown } | null;
  if (x?.code !== NOT_LEADER) return undefined;
  const v = x.details?.leader ?? x.leader;
  return typeof v === 'string' && /^[^\s:]+:\d{1,5}$/.test(v) ? v : undefined;
}

/** `a:7000,b:7000` as a list of host:port (the --master flag of nodes, clients and tools). */
export function masterList(v: string): string[] {
  const list = v
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  return list;
}
