// `ringkv status`: asks the lease master for its view (RPC `view`) and says what the
// cluster looks like: members and their addresses, the share of the key space each one's
// pieces cover, lease generations, pieces on the move, and whether all is well. Given
// several masters (`--master a:7000,b:7000,c:7000`, an HA setup), it asks the one that
// leads for the view and every one for its role (RPC `role`), and shows which leads.
//
// The reading of a view (`parseView`, `summarize`, `formatStatus`) is pure: a view goes
// in, rows and problems come out, so tests feed it plain values. `ringkv start` uses the
// same reading to decide when the cluster it started is ready.
import http from 'node:http';
import { Command, InvalidArgumentError } from 'commander';
import { MasterLink, RpcRemoteError } from '../server/protocol/rpc/index.js';
import { masterList, NOT_LEADER, type MasterRole } from '../server/master/leadership.js';
import { RANGE_MOVE_STATES, type RangeMoveState, type WireRangeMove, type WireTransfer } from '../server/master/core.js';
import { transferProblem } from '../server/master/wire-check.js';

const EXIT_USAGE = 2;
/** The whole ring: tokens are u64, pieces are (start, end] arcs of [0, 2^64). */
export const RING_SIZE = 1n << 64n;
/** Deadline of the `view` call, connect included. */
export const VIEW_TIMEOUT_MS = 5_000;
/** Deadline of each master's `role` call, connect included. */
export const ROLE_TIMEOUT_MS = 2_000;

export interface ViewMember {
  readonly id: string;
  readonly zone?: string;
  readonly addrs: { readonly memcached: string; readonly http: string; readonly rpc: string };
  readonly status: string;
  readonly lastRenewalAgoMs: number;
  readonly pieces: number;
  /** A joining or leaving member's data transfer, as it last reported it. */
  readonly transfer?: ViewTransfer;
  /** A member not moving now: its last finished move, as its final report said. */
  readonly lastTransfer?: ViewTransfer;
}

/** What a moving node reports (server/master/core.ts). */
export type ViewTransfer = WireTransfer;

export interface ViewLease {
  /** Exclusive start token, 16 hex digits; equal to `end` only for a piece covering the whole ring. */
  readonly start: string;
  /** Inclusive end token, 16 hex digits. */
  readonly end: string;
  readonly owner: string;
  readonly generation: number;
  readonly expiresInMs: number;
  readonly movingTo?: string;
  readonly movingForMs?: number;
}

/** What the master's `view` RPC answers (server/master/core.ts, MasterCore.view). */
export interface MasterView {
  readonly lsn: number;
  readonly leaseMs: number;
  readonly members: readonly ViewMember[];
  readonly leases: readonly ViewLease[];
}

export interface MemberSummary extends ViewMember {
  /** Fraction of the ring [0, 1] covered by the pieces this member holds. */
  readonly share: number;
  /** Lowest and highest generation among its pieces; null when it holds none. */
  readonly generations: { readonly min: number; readonly max: number } | null;
}

/** One listed master as `role` found it: its role, or unreachable. */
export interface MasterEntry {
  /** The address as listed in --master. */
  readonly addr: string;
  readonly role: MasterRole['role'] | 'unreachable';
  /** The leader it names (itself when leading), when it knows one. */
  readonly leader?: string;
  readonly store?: MasterRole['store'];
  /** Why it is unreachable. */
  readonly error?: string;
}

export interface StatusSummary extends MasterView {
  readonly members: readonly MemberSummary[];
  /** Every listed master's role (when they were asked). */
  readonly masters?: readonly MasterEntry[];
  readonly health: { readonly healthy: boolean; readonly problems: readonly string[] };
}

// ---- pure: reading a view -------------------------------------------------------------

export class BadViewError extends Error {
  override readonly name = 'BadViewError';
}

const isStr = (v: unknown): v is string => typeof v === 'string';
const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const HEX_TOKEN = /^[0-9a-f]{1,16}$/i;

/** Checks the shape of a `view` reply at the boundary: what is not a view is an error, not a guess. */
export function parseView(body: unknown): MasterView {
  const v = body as Partial<Record<keyof MasterView, unknown>> | null;
  if (!v || typeof v !== 'object' || !isNum(v.lsn) || !isNum(v.leaseMs) || !Array.isArray(v.members) || !Array.isArray(v.leases)) {
    throw new BadViewError('reply is not a view (want lsn, leaseMs, members[], leases[])');
  }
  for (const m of v.members as unknown[]) {
    const x = m as Partial<Record<keyof ViewMember, unknown>> | null;
    const a = (x?.addrs ?? null) as Record<string, unknown> | null;
    if (!x || !isStr(x.id) || !isStr(x.status) || !isNum(x.lastRenewalAgoMs) || !isNum(x.pieces) || !a || !isStr(a.memcached) || !isStr(a.http) || !isStr(a.rpc)) {
      throw new BadViewError(`bad member in view: ${JSON.stringify(m).slice(0, 200)}`);
    }
    if (x.zone !== undefined && !isStr(x.zone)) throw new BadViewError(`bad zone of member ${x.id}`);
    for (const field of ['transfer', 'lastTransfer'] as const) {
      if (x[field] === undefined) continue;
      const problem = transferProblem(x[field]);
      if (problem !== undefined) throw new BadViewError(`bad ${field} of member ${x.id}: ${problem}: ${JSON.stringify(x[field]).slice(0, 200)}`);
    }
  }
  for (const l of v.leases as unknown[]) {
    const x = l as Partial<Record<keyof ViewLease, unknown>> | null;
    if (!x || !isStr(x.start) || !isStr(x.end) || !HEX_TOKEN.test(x.start) || !HEX_TOKEN.test(x.end) || !isStr(x.owner) || !isNum(x.generation) || !isNum(x.expiresInMs)) {
      throw new BadViewError(`bad lease in view: ${JSON.stringify(l).slice(0, 200)}`);
    }
    if (x.movingTo !== undefined && !isStr(x.movingTo)) throw new BadViewError(`bad movingTo of piece ending ${x.end}`);
  }
  return body as MasterView;
}

/** Ring positions in the piece (start, end]: the piece may wrap past 2^64 - 1, and start === end is the whole ring. */
export function pieceSize(startHex: string, endHex: string): bigint {
  const start = BigInt(`0x${startHex}`);
  const end = BigInt(`0x${endHex}`);
  if (start === end) return RING_SIZE;
  return start < end ? end - start : RING_SIZE - start + end;
}

/** Share of the ring held by each owner named in `leases` (fractions of 2^64, summed exactly first). */
export function keyShares(leases: readonly Pick<ViewLease, 'start' | 'end' | 'owner'>[]): Map<string, number> {
  const positions = new Map<string, bigint>();
  for (const l of leases) positions.set(l.owner, (positions.get(l.owner) ?? 0n) + pieceSize(l.start, l.end));
  const shares = new Map<string, number>();
  for (const [owner, n] of positions) shares.set(owner, Number(n) / Number(RING_SIZE));
  return shares;
}

/** What keeps the cluster from being healthy; empty when every member is up, nothing moves, every piece is held. */
export function problems(view: MasterView): string[] {
  const out: string[] = [];
  if (view.members.length === 0) out.push('no member has registered');
  // A member that left (decommissioned) is history, not a problem.
  const notUp = view.members.filter((m) => m.status !== 'up' && m.status !== 'left');
  if (notUp.length > 0) out.push(`${notUp.length === 1 ? 'member' : 'members'} not up: ${notUp.map((m) => `${m.id} (${m.status})`).join(', ')}`);
  if (view.members.length > 0 && view.leases.length === 0) out.push('no pieces: the ring is not assigned');
  const moving = view.leases.filter((l) => l.movingTo !== undefined);
  if (moving.length > 0) out.push(`${moving.length} ${moving.length === 1 ? 'piece' : 'pieces'} moving`);
  // Granted but not yet renewed by its new owner (or its owner stopped renewing): nobody serves it.
  const unheld = view.leases.filter((l) => l.movingTo === undefined && l.expiresInMs <= 0);
  if (unheld.length > 0) out.push(`${unheld.length} ${unheld.length === 1 ? 'piece' : 'pieces'} not held by a live lease`);
  // A range whose move failed (it starts again). One that waits (a source down, a throttle)
  // is not a problem by itself: the move goes on around it.
  for (const m of view.members) {
    const failed = (m.transfer?.ranges ?? []).filter((r) => r.state === 'failed');
    if (failed.length === 0) continue;
    const error = failed.filter((r) => r.error !== undefined && r.error !== '').at(-1)?.error;
    out.push(`${m.id}: ${failed.length} ${failed.length === 1 ? 'range' : 'ranges'} failed${error !== undefined ? ` (last error: ${shorten(error)})` : ''}`);
  }
  return out;
}

/** What the masters' roles say is wrong: no leader among the masters that answered. */
export function masterProblems(masters: readonly MasterEntry[]): string[] {
  if (masters.length === 0 || masters.some((m) => m.role === 'leader')) return [];
  const answering = masters.filter((m) => m.role !== 'unreachable');
  if (answering.length === 0) return [`no master answered role (${masters.map((m) => m.addr).join(', ')})`];
  return [`no master leads (standby: ${answering.map((m) => m.addr).join(', ')})`];
}

/** The masters line: "masters: 127.0.0.1:7000 leader, 127.0.0.1:7001 standby, 127.0.0.1:7002 unreachable". */
export function formatMasters(masters: readonly MasterEntry[]): string {
  return `masters: ${masters.map((m) => `${m.addr} ${m.role}`).join(', ')}`;
}

/** Checks a `role` reply at the boundary: a MasterRole, or undefined when it is not one. */
export function parseRole(body: unknown): MasterRole | undefined {
  const r = body as Partial<Record<keyof MasterRole, unknown>> | null;
  if (!r || typeof r !== 'object' || (r.role !== 'leader' && r.role !== 'standby')) return undefined;
  if (r.leader !== undefined && !isStr(r.leader)) return undefined;
  if (r.store !== undefined && r.store !== 'level' && r.store !== 'etcd') return undefined;
  return body as MasterRole;
}

/**
 * The entry of one master from how its `role` call ended: its reply, or the error. A
 * master older than the `role` RPC (UNKNOWN_TYPE) is a lone master on the level store,
 * which always leads.
 */
export function masterEntry(addr: string, outcome: { reply: unknown } | { error: unknown }): MasterEntry {
  if ('reply' in outcome) {
    const r = parseRole(outcome.reply);
    if (r === undefined) return { addr, role: 'unreachable', error: `bad role reply: ${JSON.stringify(outcome.reply)?.slice(0, 120)}` };
    return { addr, role: r.role, ...(r.leader !== undefined ? { leader: r.leader } : {}), ...(r.store !== undefined ? { store: r.store } : {}) };
  }
  const e = outcome.error;
  if (e instanceof RpcRemoteError && e.code === 'UNKNOWN_TYPE') return { addr, role: 'leader', leader: addr, store: 'level' };
  return { addr, role: 'unreachable', error: e instanceof RpcRemoteError ? `${e.code}: ${e.message}` : e instanceof Error ? e.message : String(e) };
}

export function summarize(view: MasterView, masters?: readonly MasterEntry[]): StatusSummary {
  const shares = keyShares(view.leases);
  const generations = new Map<string, { min: number; max: number }>();
  for (const l of view.leases) {
    const g = generations.get(l.owner);
    generations.set(l.owner, g ? { min: Math.min(g.min, l.generation), max: Math.max(g.max, l.generation) } : { min: l.generation, max: l.generation });
  }
  // By id, n2 before n10: the master lists members in the order they first registered.
  const members = view.members
    .map((m) => ({ ...m, share: shares.get(m.id) ?? 0, generations: generations.get(m.id) ?? null }))
    .sort((a, b) => a.id.localeCompare(b.id, 'en', { numeric: true }));
  const found = [...(masters ? masterProblems(masters) : []), ...problems(view)];
  return { ...view, members, ...(masters ? { masters } : {}), health: { healthy: found.length === 0, problems: found } };
}

const seconds = (ms: number): string => `${(ms / 1000).toFixed(1)}s`;

const MIB = 1024 * 1024;
/** Bytes as MiB with one decimal, e.g. "5.1". */
export const mib = (bytes: number): string => (bytes / MIB).toFixed(1);
/** A fraction 0..1 as a whole percentage, never 100 before it is done. */
export const percent = (fraction: number, done = fraction >= 1): string => `${done ? 100 : Math.min(99, Math.floor(Math.max(0, fraction) * 100))}%`;

/** A transfer in full: "52% 1234 keys 5.1 MiB 3.2 MiB/s eta 4s" (eta only while known). */
export function formatTransfer(t: Pick<ViewTransfer, 'keys' | 'bytes' | 'fraction' | 'rateBytesPerS' | 'etaS' | 'done'>): string {
  const eta = t.etaS !== undefined && !t.done ? ` eta ${Math.round(t.etaS)}s` : '';
  return `${percent(t.fraction, t.done)} ${t.keys} keys ${mib(t.bytes)} MiB ${mib(t.rateBytesPerS)} MiB/s${eta}`;
}

/** The STATUS cell: the status, and for a moving member its progress, e.g. "joining 37% 2.1 MiB/s". */
export function statusCell(m: Pick<ViewMember, 'status' | 'transfer'>): string {
  if (!m.transfer || (m.status !== 'joining' && m.status !== 'leaving')) return m.status;
  return `${m.status} ${percent(m.transfer.fraction, m.transfer.done)} ${mib(m.transfer.rateBytesPerS)} MiB/s`;
}

/** Text on one line, at most `max` characters ("..." at the end when cut). */
export function shorten(text: string, max = 60): string {
  const one = text.replace(/\s+/g, ' ').trim();
  return one.length <= max ? one : `${one.slice(0, max - 3)}...`;
}

/** One row of the moving-ranges table: the ranges of one (source, target, state, waiting). */
export interface RangeGroup {
  readonly source: string;
  readonly target: string;
  readonly state: RangeMoveState;
  readonly waiting?: string;
  readonly ranges: number;
  readonly keys: number;
  readonly bytes: number;
  readonly rateBytesPerS: number;
  readonly retries: number;
  /** The last error among its ranges (in report order). */
  readonly error?: string;
}

const byId = (a: string, b: string): number => a.localeCompare(b, 'en', { numeric: true });

/**
 * The moving ranges of every member's current transfer, grouped by (source, target, state,
 * waiting) and summed; ordered by target, then state (RANGE_MOVE_STATES order), source, waiting.
 */
export function rangeGroups(members: readonly Pick<ViewMember, 'transfer'>[]): RangeGroup[] {
  type Acc = { -readonly [K in keyof RangeGroup]: RangeGroup[K] };
  const groups = new Map<string, Acc>();
  for (const m of members) {
    for (const r of m.transfer?.ranges ?? ([] as readonly WireRangeMove[])) {
      const key = JSON.stringify([r.source, r.target, r.state, r.waiting ?? null]);
      let g = groups.get(key);
      if (g === undefined) {
        g = { source: r.source, target: r.target, state: r.state, ...(r.waiting !== undefined ? { waiting: r.waiting } : {}), ranges: 0, keys: 0, bytes: 0, rateBytesPerS: 0, retries: 0 };
        groups.set(key, g);
      }
      g.ranges++;
      g.keys += r.keys;
      g.bytes += r.bytes;
      g.rateBytesPerS += r.rateBytesPerS;
      g.retries += r.retries;
      if (r.error !== undefined && r.error !== '') g.error = r.error;
    }
  }
  const stateRank = (s: RangeMoveState) => RANGE_MOVE_STATES.indexOf(s);
  return [...groups.values()].sort(
    (a, b) => byId(a.target, b.target) || stateRank(a.state) - stateRank(b.state) || byId(a.source, b.source) || (a.waiting ?? '').localeCompare(b.waiting ?? ''),
  );
}

/** The "moving ranges" section: a heading and one row per group; nothing when no transfer reports ranges. */
export function formatRangeGroups(groups: readonly RangeGroup[]): string[] {
  if (groups.length === 0) return [];
  const rows: string[][] = [['SOURCE', 'TARGET', 'STATE', 'RANGES', 'KEYS', 'MIB', 'MIB/S', 'RETRIES', 'WAITING', 'LAST ERROR']];
  for (const g of groups) {
    rows.push([g.source, g.target, g.state, String(g.ranges), String(g.keys), mib(g.bytes), mib(g.rateBytesPerS), String(g.retries), g.waiting ?? '-', g.error !== undefined ? shorten(g.error) : '-']);
  }
  return ['moving ranges:', ...table(rows).map((l) => `  ${l}`)];
}

/** A member's last finished move: "last move of n4: in, done, 192 ranges, 75012 keys, 14.3 MiB, 2 retries". */
export function lastMoveLine(id: string, t: ViewTransfer): string {
  const parts = [t.direction, t.done ? 'done' : (t.state ?? 'not done')];
  if (t.ranges !== undefined) parts.push(`${t.ranges.length} ${t.ranges.length === 1 ? 'range' : 'ranges'}`);
  parts.push(`${t.keys} keys`, `${mib(t.bytes)} MiB`);
  if (t.retries !== undefined) parts.push(`${t.retries} ${t.retries === 1 ? 'retry' : 'retries'}`);
  return `last move of ${id}: ${parts.join(', ')}`;
}

/** Columns padded to their widest cell; the last column is not padded. */
function table(rows: readonly (readonly string[])[]): string[] {
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  '));
}

/**
 * The human form: a header line, the masters' roles (when asked), a member table (a moving member's STATUS with its
 * progress), the moving ranges of the transfers that report them (grouped by source,
 * target, state and waiting reason), each member's last finished move (one line each),
 * the members that left (one line, not in the table), the moving pieces, and the health
 * line last. `members=` counts the members still in the cluster.
 */
export function formatStatus(master: string, s: StatusSummary): string[] {
  const current = s.members.filter((m) => m.status !== 'left');
  const gone = s.members.filter((m) => m.status === 'left');
  const lines = [`master ${master} lsn=${s.lsn} lease=${s.leaseMs}ms members=${current.length} pieces=${s.leases.length}`];
  if (s.masters) lines.push(formatMasters(s.masters));
  const rows = [['ID', 'ZONE', 'STATUS', 'MEMCACHED', 'HTTP', 'RPC', 'PIECES', 'SHARE', 'GENERATIONS', 'RENEWED']];
  for (const m of current) {
    rows.push([
      m.id,
      m.zone ?? '-',
      statusCell(m),
      m.addrs.memcached,
      m.addrs.http,
      m.addrs.rpc,
      String(m.pieces),
      `${(m.share * 100).toFixed(2)}%`,
      m.generations ? `${m.generations.min}-${m.generations.max}` : '-',
      `${seconds(m.lastRenewalAgoMs)} ago`,
    ]);
  }
  lines.push(...table(rows));
  lines.push(...formatRangeGroups(rangeGroups(s.members)));
  for (const m of s.members) if (m.lastTransfer) lines.push(lastMoveLine(m.id, m.lastTransfer));
  // A member that left still holds pieces until they are recalled: say so.
  if (gone.length > 0) lines.push(`left: ${gone.map((m) => (m.pieces > 0 ? `${m.id} (handing over ${m.pieces} ${m.pieces === 1 ? 'piece' : 'pieces'})` : m.id)).join(', ')}`);
  const moving = s.leases.filter((l) => l.movingTo !== undefined);
  if (moving.length === 0) lines.push('moving: none');
  else {
    lines.push(`moving: ${moving.length}`);
    for (const l of moving) lines.push(`  (${l.start}, ${l.end}] ${l.owner} -> ${l.movingTo} for ${seconds(l.movingForMs ?? 0)} (generation ${l.generation})`);
  }
  lines.push(s.health.healthy ? 'health: healthy' : `health: unhealthy: ${s.health.problems.join('; ')}`);
  return lines;
}

// ---- replication, as each node counts it -----------------------------------------------

/** The replication counters of one node's /stats (server/node.ts clusterStats). */
export const REPLICATION_STATS = [
  ['HINTS', 'hints_held'],
  ['HINTS-REPLAYED', 'hints_replayed'],
  ['HINTS-DROPPED', 'hints_dropped'],
  ['READ-REPAIRS', 'read_repairs'],
  ['AE-ROUNDS', 'anti_entropy_rounds'],
  ['AE-KEYS', 'anti_entropy_keys_exchanged'],
  ['QUORUM-FAILURES', 'quorum_failures'],
  ['PEERS-DOWN', 'peers_down'],
] as const;

export type NodeStats = Readonly<Record<string, string | number>> | { readonly error: string };

/** One row per member: its replication counters, or why they could not be read. */
export function formatReplication(stats: ReadonlyMap<string, NodeStats>): string[] {
  const rows: string[][] = [['ID', ...REPLICATION_STATS.map(([h]) => h)]];
  for (const [id, st] of stats) {
    if ('error' in st && typeof st.error === 'string') rows.push([id, `unreachable: ${st.error}`]);
    else rows.push([id, ...REPLICATION_STATS.map(([, k]) => String((st as Record<string, unknown>)[k] ?? '-'))]);
  }
  return ['replication:', ...table(rows).map((l) => `  ${l}`)];
}

/** GET http://<addr>/stats of a node, within timeoutMs. */
export function fetchNodeStats(addr: string, timeoutMs = 2_000): Promise<NodeStats> {
  return new Promise((resolve) => {
    const req = http.get(`http://${addr}/stats`, { timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        try {
          resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, string | number>);
        } catch {
          resolve({ error: 'bad /stats reply' });
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error(`no answer in ${timeoutMs} ms`)));
    req.on('error', (e) => resolve({ error: e.message }));
  });
}

// ---- the shell: one RPC to the master -------------------------------------------------

export class MasterUnreachable extends Error {
  override readonly name = 'MasterUnreachable';
}

/**
 * One `view` call to the master at host:port. Rejects with MasterUnreachable (no
 * connection, no reply in time), RpcRemoteError (the master said no) or BadViewError.
 */
export async function fetchView(host: string, port: number, timeoutMs = VIEW_TIMEOUT_MS): Promise<MasterView> {
  return (await fetchLeaderView(`${host}:${port}`, timeoutMs)).view;
}

/**
 * The view of the master that leads among `masters` (a list, or host:port[,host:port...]),
 * and its address. Rejects as fetchView; RpcRemoteError NOT_LEADER when none led in time.
 */
export async function fetchLeaderView(masters: string | readonly string[], timeoutMs = VIEW_TIMEOUT_MS): Promise<{ view: MasterView; leader: string }> {
  const link = new MasterLink(masters, { connectTimeoutMs: timeoutMs, maxPending: 1 });
  try {
    const body = await link.call<unknown>('view', {}, { timeoutMs });
    return { view: parseView(body), leader: link.leader() };
  } catch (e) {
    if (e instanceof RpcRemoteError || e instanceof BadViewError) throw e;
    throw new MasterUnreachable(e instanceof Error ? e.message : String(e));
  } finally {
    await link.close();
  }
}

/** Every listed master's role, asked at once; one that does not answer within timeoutMs is unreachable. */
export async function fetchRoles(masters: readonly string[], timeoutMs = ROLE_TIMEOUT_MS): Promise<MasterEntry[]> {
  return Promise.all(
    masters.map(async (addr) => {
      const link = new MasterLink([addr], { connectTimeoutMs: timeoutMs, maxPending: 1 });
      try {
        return masterEntry(addr, { reply: await link.call<unknown>('role', {}, { timeoutMs }) });
      } catch (error) {
        return masterEntry(addr, { error });
      } finally {
        await link.close();
      }
    }),
  );
}

export function splitHostPort(v: string): { host: string; port: number } {
  const i = v.lastIndexOf(':');
  const port = Number(v.slice(i + 1));
  if (i <= 0 || !/^[0-9]+$/.test(v.slice(i + 1)) || port < 1 || port > 65535) throw new InvalidArgumentError('want host:port');
  return { host: v.slice(0, i), port };
}

/** --master: `host:port[,host:port...]`, each checked; the list, comma-joined. */
export function masterAddrs(v: string): string {
  const list = masterList(v);
  if (list.length === 0) throw new InvalidArgumentError('want host:port[,host:port...]');
  for (const a of list) splitHostPort(a);
  return list.join(',');
}

function fail(message: string): never {
  process.stderr.write(`ringkv: ${message.replace(/\s+/g, ' ')}\n`);
  process.exit(EXIT_USAGE);
}

export function statusCommand(): Command {
  return new Command('status')
    .description("show the cluster as the lease master sees it: members, key-space shares, moving pieces, health")
    .option('--master <host:port,...>', "the lease master's RPC address, or every master's (one leads)", masterAddrs, '127.0.0.1:7000')
    .option('--json', 'print the view, the masters, and the computed shares and health as JSON')
    .action(async (o: { master: string; json?: boolean }) => {
      const addrs = masterList(o.master);
      const roles = fetchRoles(addrs);
      let view: MasterView;
      let leader: string;
      try {
        ({ view, leader } = await fetchLeaderView(addrs));
      } catch (e) {
        if (e instanceof MasterUnreachable) fail(`cannot reach master at ${o.master}: ${e.message}`);
        if (e instanceof RpcRemoteError && e.code === NOT_LEADER) fail(`no master leads among ${o.master}: ${e.message}`);
        if (e instanceof RpcRemoteError) fail(`master at ${o.master} refused view: ${e.code}: ${e.message}`);
        fail(`bad reply from master at ${o.master}: ${e instanceof Error ? e.message : String(e)}`);
      }
      // A leader found through a standby's hint but not listed is shown too, after the listed ones.
      const masters = [...(await roles), ...(addrs.includes(leader) ? [] : await fetchRoles([leader]))];
      const summary = summarize(view, masters);
      const up = summary.members.filter((m) => m.status === 'up');
      const stats = new Map(await Promise.all(up.map(async (m) => [m.id, await fetchNodeStats(m.addrs.http)] as const)));
      if (o.json) {
        const replication = Object.fromEntries(
          [...stats].map(([id, st]) => [id, 'error' in st ? st : Object.fromEntries(REPLICATION_STATS.map(([, k]) => [k, (st as Record<string, unknown>)[k] ?? null]))]),
        );
        process.stdout.write(`${JSON.stringify({ ...summary, replication }, null, 2)}\n`);
      } else {
        process.stdout.write(`${[...formatStatus(leader, summary), ...formatReplication(stats)].join('\n')}\n`);
      }
    });
}
