// Prometheus metrics (GET /metrics) of a node and of the master, with prom-client.
//
// Each node and each master owns its Registry (never prom-client's global one), so several
// nodes in one process (tests) keep their numbers apart.
//
// Requests: `ringkv_requests_total{frontend,command,result}` and the histogram
// `ringkv_request_duration_seconds{frontend,command}`. A memcached node serves ~80k
// requests/s on one core, and prom-client's own `inc`/`observe` (even on a child bound
// with `.labels()`) build a label hash per call, about 1.2 µs for the pair, a tenth of a
// request's budget. So the front ends count into plain typed arrays, indexed by a command
// number from a fixed list and a result number (RequestStats: two `performance.now()` and a
// few array writes per request), and the registry reads those arrays only when scraped.
// Labels are bounded: every command name comes from a fixed list, anything else is "other".
//
// Everything else (connections, items, bytes, cache, replication counters) is read from the
// node's `stats()` at scrape time, by prom-client collect() callbacks: one stats() call per
// scrape, shared by every such metric.
import { performance } from 'node:perf_hooks';
import type http from 'node:http';
import { collectDefaultMetrics, Counter, Gauge, Registry, type Metric } from 'prom-client';
import type { Command } from './protocol/memcached/commands.js';
import type { Reply } from './protocol/memcached/execute.js';
import { MC_BUSY } from './overload.js';
import { RANGE_MOVE_STATES, RANGE_MOVE_WAITS, type WireTransfer } from './master/core.js';

// ---- request counting ---------------------------------------------------------------

/** Result numbers, the index into RESULTS. */
export const OK = 0;
/** The key was not there, or the command's condition did not hold (NOT_FOUND, NOT_STORED, EXISTS, 404, 412). */
export const MISS = 1;
export const ERROR = 2;
/** Refused in overload before any work (SERVER_ERROR busy, HTTP 503 busy, RPC OVERLOADED). */
export const BUSY = 3;
export const RESULTS = ['ok', 'miss', 'error', 'busy'] as const;
export type ResultCode = typeof OK | typeof MISS | typeof ERROR | typeof BUSY;

/** Upper bounds of the duration histogram, seconds: 50 µs .. 5 s. */
export const DURATION_BUCKETS_S: readonly number[] = [
  0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
];
const BOUNDS_MS = Float64Array.from(DURATION_BUCKETS_S, (s) => s * 1000);
/** Buckets per command: the bounds, then +Inf. */
const NB = BOUNDS_MS.length + 1;

/** memcached command names: the parser's command kinds, storage commands by mode, get/gets and gat/gats apart. */
export const MC_COMMANDS = [
  'get', 'gets', 'gat', 'gats', 'set', 'add', 'replace', 'append', 'prepend', 'cas', 'delete', 'incr', 'decr', 'touch',
  'flush_all', 'version', 'verbosity', 'stats', 'quit', 'mn', 'mg', 'ms', 'md', 'ma', 'me', 'other',
] as const;
/** HTTP commands: the methods of /kv/:key; every other route (and method) is "other". /metrics itself is not counted. */
export const HTTP_COMMANDS = ['get', 'head', 'put', 'delete', 'other'] as const;
/** A node's internal RPC request types (server/cluster/cluster.ts registers their handlers). */
export const RPC_COMMANDS = [
  'mc', 'mc.get', 'kv', 'kv.many', 'rep.put', 'rep.get', 'ping', 'stream.scan', 'ae.roots', 'ae.leaves', 'ae.keys', 'revoke', 'other',
] as const;
/** The master's RPC request types (server/master/master.ts). */
export const MASTER_RPC_COMMANDS = ['register', 'renew', 'changes', 'view', 'table', 'joined', 'leave', 'left', 'progress', 'other'] as const;

const MC_INDEX = new Map<string, number>(MC_COMMANDS.map((c, i) => [c, i]));
const mcIdx = (name: string): number => MC_INDEX.get(name)!;
const MC = {
  get: mcIdx('get'), gets: mcIdx('gets'), gat: mcIdx('gat'), gats: mcIdx('gats'), delete: mcIdx('delete'), incr: mcIdx('incr'), decr: mcIdx('decr'),
  touch: mcIdx('touch'), flush_all: mcIdx('flush_all'), version: mcIdx('version'), verbosity: mcIdx('verbosity'), stats: mcIdx('stats'),
  quit: mcIdx('quit'), mn: mcIdx('mn'), mg: mcIdx('mg'), ms: mcIdx('ms'), md: mcIdx('md'), ma: mcIdx('ma'), me: mcIdx('me'), other: mcIdx('other'),
};

/** The command number of a parsed memcached command. */
export function mcCommandIndex(cmd: Command): number {
  switch (cmd.kind) {
    case 'get':
      return cmd.withCas ? MC.gets : MC.get;
    case 'gat':
      return cmd.withCas ? MC.gats : MC.gat;
    case 'store':
    case 'too-large':
      return MC_INDEX.get(cmd.mode) ?? MC.other;
    case 'delete':
      return MC.delete;
    case 'delta':
      return cmd.incr ? MC.incr : MC.decr;
    case 'touch':
      return MC.touch;
    case 'flush_all':
      return MC.flush_all;
    case 'version':
      return MC.version;
    case 'verbosity':
      return MC.verbosity;
    case 'stats':
      return MC.stats;
    case 'quit':
      return MC.quit;
    case 'mn':
      return MC.mn;
    case 'mg':
      return MC.mg;
    case 'ms':
      return MC.ms;
    case 'md':
      return MC.md;
    case 'ma':
      return MC.ma;
    case 'me':
      return MC.me;
    default:
      return MC.other;
  }
}

function textResult(s: string): ResultCode {
  if (s.length === 0) return OK; // noreply / quiet mode: nothing said, nothing wrong
  switch (s.charCodeAt(0)) {
    case 0x53: // S: STORED, STAT, SERVER_ERROR
      if (s.charCodeAt(1) !== 0x45) return OK;
      return s === MC_BUSY ? BUSY : ERROR;
    case 0x43: // C: CLIENT_ERROR
      return ERROR;
    case 0x45: // E: END alone (get miss), EN (mg miss), EXISTS, EX; ERROR
      return s.charCodeAt(1) === 0x52 ? ERROR : MISS;
    case 0x4e: // N: NOT_FOUND, NOT_STORED, NF, NS
      return MISS;
    default:
      return OK;
  }
}

/** What a memcached reply says about its command: ok, miss, error or busy (from its first words). */
export function mcResult(reply: Reply): ResultCode {
  if (typeof reply === 'string') return textResult(reply);
  if (Buffer.isBuffer(reply)) return OK;
  // A retrieval's parts: VALUE lines (and placeholders of keys still being read) then END.
  for (const p of reply as ReadonlyArray<string | Buffer>) {
    if (typeof p === 'string' && p.length > 0) return textResult(p);
  }
  return OK;
}

/**
 * Counts and durations of one front end's requests, in typed arrays indexed by command
 * number (its list's order) and result number. Written per request; read when scraped.
 */
export class RequestStats {
  private readonly index: ReadonlyMap<string, number>;
  readonly other: number;
  /** [command * 4 + result] */
  readonly counts: Float64Array;
  /** Non-cumulative: [command * NB + bucket], the last bucket is +Inf. */
  readonly buckets: Float64Array;
  /** Per command: observations and their sum (ms). */
  readonly observed: Float64Array;
  readonly sumMs: Float64Array;

  constructor(
    readonly frontend: string,
    readonly commands: readonly string[],
  ) {
    this.index = new Map(commands.map((c, i) => [c, i]));
    this.other = this.index.get('other') ?? commands.length - 1;
    this.counts = new Float64Array(commands.length * RESULTS.length);
    this.buckets = new Float64Array(commands.length * NB);
    this.observed = new Float64Array(commands.length);
    this.sumMs = new Float64Array(commands.length);
  }

  /** The number of a command name; "other" for names not in the list. */
  commandIndex(name: string): number {
    return this.index.get(name) ?? this.other;
  }

  /** Count one request, without timing it. */
  count(command: number, result: ResultCode): void {
    this.counts[command * 4 + result]++;
  }

  /** Count one request that started at `startMs` (performance.now()) and is complete now. */
  observe(command: number, result: ResultCode, startMs: number): void {
    const ms = performance.now() - startMs;
    this.counts[command * 4 + result]++;
    this.observed[command]++;
    this.sumMs[command] += ms;
    let b = 0;
    while (b < BOUNDS_MS.length && ms > BOUNDS_MS[b]!) b++;
    this.buckets[command * NB + b]++;
  }

  /** Requests counted for a command and result (tests, stats). */
  total(command: string, result?: (typeof RESULTS)[number]): number {
    const c = this.commandIndex(command);
    if (result !== undefined) return this.counts[c * 4 + RESULTS.indexOf(result)]!;
    let n = 0;
    for (let r = 0; r < RESULTS.length; r++) n += this.counts[c * 4 + r]!;
    return n;
  }
}

type MetricValues = Array<{ value: number; labels: Record<string, string | number>; metricName?: string }>;

/**
 * A metric prom-client's Registry prints, whose values come from RequestStats arrays at
 * scrape time. prom-client's Registry asks a metric only for `name`, `get()` (and `reset()`).
 */
class ArrayMetric {
  readonly aggregator = 'sum';
  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: 'counter' | 'histogram',
    private readonly values: () => MetricValues,
  ) {}

  async get(): Promise<{ name: string; help: string; type: string; aggregator: string; values: MetricValues }> {
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values: this.values() };
  }

  reset(): void {}
}

function register(registry: Registry, m: ArrayMetric): void {
  registry.registerMetric(m as unknown as Metric);
}

/** `<prefix>_total{frontend?,command,result}` over some RequestStats. */
function requestCounter(name: string, help: string, stats: () => readonly RequestStats[], withFrontend: boolean): ArrayMetric {
  return new ArrayMetric(name, help, 'counter', () => {
    const out: MetricValues = [];
    for (const s of stats()) {
      for (let c = 0; c < s.commands.length; c++) {
        for (let r = 0; r < RESULTS.length; r++) {
          const value = s.counts[c * 4 + r]!;
          if (value === 0) continue;
          const command = s.commands[c]!;
          const result = RESULTS[r]!;
          const labels: Record<string, string> = withFrontend ? { frontend: s.frontend, command, result } : { command, result };
          out.push({ value, labels });
        }
      }
    }
    return out;
  });
}

function durationHistogram(name: string, help: string, stats: () => readonly RequestStats[]): ArrayMetric {
  return new ArrayMetric(name, help, 'histogram', () => {
    const out: MetricValues = [];
    for (const s of stats()) {
      for (let c = 0; c < s.commands.length; c++) {
        const count = s.observed[c]!;
        if (count === 0) continue;
        const labels = { frontend: s.frontend, command: s.commands[c]! };
        let acc = 0;
        for (let b = 0; b < NB; b++) {
          acc += s.buckets[c * NB + b]!;
          const le = b < DURATION_BUCKETS_S.length ? DURATION_BUCKETS_S[b]! : '+Inf';
          out.push({ value: acc, labels: { ...labels, le }, metricName: `${name}_bucket` });
        }
        out.push({ value: s.sumMs[c]! / 1000, labels, metricName: `${name}_sum` });
        out.push({ value: count, labels, metricName: `${name}_count` });
      }
    }
    return out;
  });
}

// ---- a node ---------------------------------------------------------------------------

type Stats = Record<string, string | number>;

/** A gauge or counter read from one field of the node's stats(). */
interface StatMetric {
  readonly stat: string;
  readonly name: string;
  readonly type: 'gauge' | 'counter';
  readonly help: string;
}

const g = (stat: string, name: string, help: string): StatMetric => ({ stat, name, type: 'gauge', help });
const c = (stat: string, name: string, help: string): StatMetric => ({ stat, name, type: 'counter', help });

/** Every node. */
export const NODE_STAT_METRICS: readonly StatMetric[] = [
  g('curr_connections', 'ringkv_connections', 'memcached connections open now'),
  c('total_connections', 'ringkv_connections_total', 'memcached connections accepted'),
  c('rejected_connections', 'ringkv_rejected_connections_total', 'memcached connections refused at --max-conns'),
  c('idle_kicks', 'ringkv_timed_out_connections_total', 'memcached connections closed by the idle or request timeout'),
  g('curr_items', 'ringkv_items', 'items stored on this node'),
  g('bytes', 'ringkv_bytes', 'bytes stored on this node (memcached accounting)'),
  g('limit_maxbytes', 'ringkv_limit_bytes', 'the store size bound, bytes'),
  c('total_items', 'ringkv_items_stored_total', 'items stored'),
  c('evictions', 'ringkv_evictions_total', 'items evicted to make room'),
  c('reclaimed', 'ringkv_expired_swept_total', 'expired items removed by the background sweep'),
  c('get_hits', 'ringkv_get_hits_total', 'keys found by retrievals'),
  c('get_misses', 'ringkv_get_misses_total', 'keys not found by retrievals'),
  c('cache_hits', 'ringkv_cache_hits_total', 'lookups answered by the LRU cache tier'),
  c('cache_misses', 'ringkv_cache_misses_total', 'lookups that missed the LRU cache tier'),
  c('bytes_read', 'ringkv_read_bytes_total', 'bytes read from memcached clients'),
  c('bytes_written', 'ringkv_written_bytes_total', 'bytes written to memcached clients'),
  c('tombstones_purged', 'ringkv_tombstones_purged_total', 'tombstones purged after their grace period'),
  c('siblings_collapsed', 'ringkv_siblings_collapsed_total', 'concurrent versions collapsed past --max-siblings'),
  // Overload control: requests refused as busy (all front ends), and the requests in flight.
  c('rejected_requests', 'ringkv_rejected_requests_total', 'client requests refused as busy in overload'),
  c('rejected_inflight', 'ringkv_rejected_inflight_total', 'client requests refused because too many were in flight'),
  c('rejected_lag', 'ringkv_rejected_lag_total', 'client requests refused because the event loop ran late'),
  g('requests_inflight', 'ringkv_requests_inflight', 'client requests admitted and not answered yet'),
];

/** Nodes in a cluster: the replication counters of stats(). */
export const CLUSTER_STAT_METRICS: readonly StatMetric[] = [
  g('cluster_leases_held', 'ringkv_leases_held', 'range leases this node holds'),
  g('cluster_table_lsn', 'ringkv_lease_table_lsn', 'the lease table version this node has'),
  g('cluster_table_pieces', 'ringkv_lease_table_pieces', 'ranges in the lease table'),
  c('replica_writes', 'ringkv_replica_writes_total', 'writes sent to replicas'),
  c('replica_write_failures', 'ringkv_replica_write_failures_total', 'writes to replicas that failed'),
  c('quorum_failures', 'ringkv_quorum_failures_total', 'requests that did not reach their read or write quorum'),
  c('read_repairs', 'ringkv_read_repairs_total', 'stale replicas repaired by reads'),
  c('coordinated_for_down_owner', 'ringkv_coordinated_for_down_owner_total', 'requests coordinated in place of an owner that is down'),
  c('replica_put_calls', 'ringkv_replica_put_calls_total', 'rep.put calls sent (replica writes coalesced per peer per event-loop turn)'),
  c('replica_put_items', 'ringkv_replica_put_items_total', 'replica writes those rep.put calls carried'),
  c('replica_get_calls', 'ringkv_replica_get_calls_total', 'rep.get calls sent by quorum reads (coalesced per peer per turn)'),
  c('replica_get_keys', 'ringkv_replica_get_keys_total', 'keys those rep.get calls asked for'),
  g('hints_held', 'ringkv_hints_held', 'hints held for unreachable replicas'),
  g('hints_bytes', 'ringkv_hints_bytes', 'bytes of hints held'),
  c('hints_stored', 'ringkv_hints_stored_total', 'hints stored'),
  c('hints_sent', 'ringkv_hints_sent_total', 'hints sent to a fallback node'),
  c('hints_kept_locally', 'ringkv_hints_kept_locally_total', 'hints kept on this node'),
  c('hints_replayed', 'ringkv_hints_replayed_total', 'hints delivered to their replica'),
  c('hints_dropped', 'ringkv_hints_dropped_total', 'hints dropped (store full)'),
  c('hints_expired', 'ringkv_hints_expired_total', 'hints dropped past the hint window'),
  c('anti_entropy_rounds', 'ringkv_anti_entropy_rounds_total', 'anti-entropy rounds'),
  c('anti_entropy_keys_exchanged', 'ringkv_anti_entropy_keys_exchanged_total', 'keys exchanged by anti-entropy'),
  c('anti_entropy_ranges_differing', 'ringkv_anti_entropy_ranges_differing_total', 'ranges anti-entropy found differing'),
  c('stream_keys_in', 'ringkv_stream_keys_in_total', 'keys received by joins and leaves'),
  c('stream_bytes_in', 'ringkv_stream_bytes_in_total', 'bytes received by joins and leaves'),
  c('stream_keys_out', 'ringkv_stream_keys_out_total', 'keys sent by joins and leaves'),
  c('stream_bytes_out', 'ringkv_stream_bytes_out_total', 'bytes sent by joins and leaves'),
  c('transfer_retries', 'ringkv_transfer_retries_total', 'failed or stalled range-move calls retried'),
  c('transfer_source_switches', 'ringkv_transfer_source_switches_total', 'range moves switched to another source replica'),
  c('transfer_resumes', 'ringkv_transfer_resumes_total', 'range moves resumed where they stopped'),
  c('transfer_catchup_keys', 'ringkv_transfer_catchup_keys_total', 'keys pulled by the catch-up of moved ranges'),
  c('transfer_catchup_bytes', 'ringkv_transfer_catchup_bytes_total', 'bytes pulled by the catch-up of moved ranges'),
  c('transfer_stalls', 'ringkv_transfer_stalls_total', 'range moves that made no progress for too long'),
];

function num(v: string | number | undefined): number {
  if (v === undefined) return 0;
  const n = typeof v === 'number' ? v : Number(v);
  return Number.isFinite(n) ? n : 0;
}

export interface NodeMetricsOptions {
  /** The node's stats() (the memcached `stats` fields), read at scrape time. */
  stats(): Stats;
  /** A cluster member: export the replication counters too. */
  cluster: boolean;
  /** A cluster member's current or last range move (Transfers.progress()), read at scrape time. */
  transfer?(): WireTransfer | undefined;
  /** Process metrics (CPU, memory, GC, event-loop lag); default on. */
  defaultMetrics?: boolean;
}

/** What an HTTP server needs to answer GET /metrics. */
export interface MetricsEndpoint {
  readonly contentType: string;
  render(): Promise<string>;
}

/**
 * Process metrics (CPU, memory, GC, event-loop lag) describe the process, not a node: one
 * registry per process, made on first use, so that a test process running many nodes
 * does not start a GC observer and a loop monitor per node that nothing ever stops.
 */
let processRegistry: Registry | undefined;
function processMetrics(): Registry {
  if (processRegistry === undefined) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry });
  }
  return processRegistry;
}

/** The text of a registry (and, unless turned off, the process metrics), with its content type. */
abstract class RegistryEndpoint implements MetricsEndpoint {
  readonly registry = new Registry();
  private process: Registry | undefined;

  constructor(defaultMetrics: boolean | undefined) {
    if (defaultMetrics !== false) this.process = processMetrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  async render(): Promise<string> {
    const own = await this.registry.metrics();
    return this.process === undefined ? own : `${await this.process.metrics()}\n${own}`;
  }
}

export class NodeMetrics extends RegistryEndpoint {
  readonly memcached = new RequestStats('memcached', MC_COMMANDS);
  readonly http = new RequestStats('http', HTTP_COMMANDS);
  /** Counted only (no durations): by request type. */
  readonly rpc = new RequestStats('rpc', RPC_COMMANDS);
  private snapshot: Stats | undefined;

  constructor(private readonly o: NodeMetricsOptions) {
    super(o.defaultMetrics);
    const registry = this.registry;
    const all = [this.memcached, this.http, this.rpc];
    register(registry, requestCounter('ringkv_requests_total', 'requests by front end, command and result', () => all, true));
    register(registry, durationHistogram('ringkv_request_duration_seconds', 'time from a request parsed to its reply ready, by front end and command', () => [this.memcached, this.http]));
    for (const m of [...NODE_STAT_METRICS, ...(o.cluster ? CLUSTER_STAT_METRICS : [])]) this.statMetric(m);
    const stats = () => this.stats();
    new Gauge({
      name: 'ringkv_cache_hit_ratio',
      help: 'cache_hits / (cache_hits + cache_misses) since start (0 before any lookup)',
      registers: [registry],
      collect() {
        const s = stats();
        const hits = num(s.cache_hits);
        const total = hits + num(s.cache_misses);
        this.set(total === 0 ? 0 : hits / total);
      },
    });
    if (o.cluster) {
      new Gauge({
        name: 'ringkv_peers_down',
        help: 'peers this node currently considers down',
        registers: [registry],
        collect() {
          const v = String(stats().peers_down ?? '-');
          this.set(v === '-' || v === '' ? 0 : v.split(',').length);
        },
      });
      // The ranges of the current (or last) move by state and by waiting reason: every
      // label value always present, 0 when no range is there (or no move ever ran).
      const ranges = () => this.o.transfer?.()?.ranges ?? [];
      new Gauge({
        name: 'ringkv_transfer_ranges',
        help: 'ranges of the current or last move, by state',
        labelNames: ['state'],
        registers: [registry],
        collect() {
          const n = new Map<string, number>(RANGE_MOVE_STATES.map((s) => [s, 0]));
          for (const r of ranges()) if (n.has(r.state)) n.set(r.state, n.get(r.state)! + 1);
          for (const [state, count] of n) this.set({ state }, count);
        },
      });
      new Gauge({
        name: 'ringkv_transfer_ranges_waiting',
        help: 'ranges of the current or last move not moving now, by waiting reason',
        labelNames: ['reason'],
        registers: [registry],
        collect() {
          const n = new Map<string, number>(RANGE_MOVE_WAITS.map((w) => [w, 0]));
          for (const r of ranges()) if (r.waiting !== undefined && n.has(r.waiting)) n.set(r.waiting, n.get(r.waiting)! + 1);
          for (const [reason, count] of n) this.set({ reason }, count);
        },
      });
    }
  }

  /** One stats() per scrape, however many metrics read it. */
  private stats(): Stats {
    if (this.snapshot === undefined) {
      this.snapshot = this.o.stats();
      process.nextTick(() => (this.snapshot = undefined));
    }
    return this.snapshot;
  }

  private statMetric(m: StatMetric): void {
    const stats = () => this.stats();
    if (m.type === 'gauge') {
      new Gauge({ name: m.name, help: m.help, registers: [this.registry], collect() { this.set(num(stats()[m.stat])); } });
    } else {
      // Counters the node keeps itself: the value is theirs (`stats reset` may lower it, which
      // Prometheus treats as a counter reset).
      new Counter({ name: m.name, help: m.help, registers: [this.registry], collect() { this.reset(); this.inc(Math.max(0, num(stats()[m.stat]))); } });
    }
  }

  // -- memcached: called by the connection for every command ----------------------------

  /** A command's reply is ready (`startMs`: performance.now() when it was parsed). */
  mcDone(cmd: Command, startMs: number, reply: Reply): void {
    this.memcached.observe(mcCommandIndex(cmd), mcResult(reply), startMs);
  }

  /** A command whose reply failed (a rejected promise: SERVER_ERROR). */
  mcFailed(cmd: Command, startMs: number): void {
    this.memcached.observe(mcCommandIndex(cmd), ERROR, startMs);
  }

  /** A command refused in overload before any work (its reply: SERVER_ERROR busy, or nothing under noreply). */
  mcBusy(cmd: Command, startMs: number): void {
    this.memcached.observe(mcCommandIndex(cmd), BUSY, startMs);
  }

  /** A command refused in overload unparsed (skimmed): known only by its command word. */
  mcShed(command: string): void {
    this.memcached.count(MC_INDEX.get(command) ?? MC.other, BUSY);
  }

  /** A line the parser refused (ERROR, CLIENT_ERROR): counted as command "other". */
  mcBadLine(): void {
    this.memcached.count(this.memcached.other, ERROR);
  }

  // -- HTTP -------------------------------------------------------------------------------

  /** A response is complete. /metrics itself is not counted. */
  httpDone(req: http.IncomingMessage, res: http.ServerResponse, startMs: number): void {
    const url = req.url ?? '/';
    if (url.startsWith('/metrics') && (url.length === 8 || url.charCodeAt(8) === 0x3f)) return;
    const kv = url.startsWith('/kv/');
    let command = this.http.other;
    if (kv) {
      switch (req.method) {
        case 'GET': command = 0; break;
        case 'HEAD': command = 1; break;
        case 'PUT': command = 2; break;
        case 'DELETE': command = 3; break;
      }
    }
    const status = res.statusCode;
    let result: ResultCode = OK;
    if (status >= 400) {
      if (status === 503 && res.getHeader('retry-after') !== undefined) result = BUSY;
      else if (kv && (status === 404 || status === 412)) result = MISS;
      else result = ERROR;
    }
    this.http.observe(command, result, startMs);
  }

  // -- RPC ----------------------------------------------------------------------------------

  /** An RPC request answered (or its handler finished after the caller left). */
  rpcDone(type: string, ok: boolean, error?: unknown): void {
    this.rpc.count(this.rpc.commandIndex(type), rpcResult(ok, error));
  }
}

function rpcResult(ok: boolean, error: unknown): ResultCode {
  if (ok) return OK;
  const code = (error as { code?: unknown } | null)?.code;
  return code === 'OVERLOADED' ? BUSY : ERROR;
}

// ---- the master -------------------------------------------------------------------------

/** What the master's state looks like now (MasterCore.gauges). */
export interface MasterGauges {
  members: Record<string, number>;
  /** Ranges (pieces) of the lease table. */
  ranges: number;
  /** Leases by state: held (renewed, not expired), recalling (moving to another owner), unheld. */
  leases: { held: number; recalling: number; unheld: number };
  lsn: number;
  changeLogEntries: number;
  /** Generations handed out so far. */
  generations: number;
}

export class MasterMetrics extends RegistryEndpoint {
  readonly rpc = new RequestStats('rpc', MASTER_RPC_COMMANDS);
  private recalls = 0;
  private snapshot: MasterGauges | undefined;

  constructor(gauges: () => MasterGauges, opts: { defaultMetrics?: boolean } = {}) {
    super(opts.defaultMetrics);
    const registry = this.registry;
    const now = (): MasterGauges => {
      if (this.snapshot === undefined) {
        this.snapshot = gauges();
        process.nextTick(() => (this.snapshot = undefined));
      }
      return this.snapshot;
    };
    new Gauge({
      name: 'ringkv_master_members',
      help: 'members by status',
      labelNames: ['status'],
      registers: [registry],
      collect() {
        this.reset();
        for (const [status, n] of Object.entries(now().members)) this.set({ status }, n);
      },
    });
    new Gauge({
      name: 'ringkv_master_leases',
      help: 'range leases by state: held (renewed and valid), recalling (moving to a new owner), unheld (expired or not renewed yet)',
      labelNames: ['state'],
      registers: [registry],
      collect() {
        const l = now().leases;
        this.set({ state: 'held' }, l.held);
        this.set({ state: 'recalling' }, l.recalling);
        this.set({ state: 'unheld' }, l.unheld);
      },
    });
    const scalar = (name: string, help: string, read: (g: MasterGauges) => number) =>
      new Gauge({ name, help, registers: [registry], collect() { this.set(read(now())); } });
    scalar('ringkv_master_ranges', 'ranges (pieces) in the lease table', (x) => x.ranges);
    scalar('ringkv_master_table_lsn', 'lease table version (log sequence number)', (x) => x.lsn);
    scalar('ringkv_master_change_log_entries', 'table changes kept for nodes that pull deltas', (x) => x.changeLogEntries);
    scalar('ringkv_master_generations', 'lease generations handed out', (x) => x.generations);
    const recalls = () => this.recalls;
    new Counter({ name: 'ringkv_master_recalls_sent_total', help: 'recall messages sent to lease owners', registers: [registry], collect() { this.reset(); this.inc(recalls()); } });
    register(registry, requestCounter('ringkv_master_rpc_requests_total', 'master RPC requests by type and result', () => [this.rpc], false));
  }

  rpcDone(type: string, ok: boolean, error?: unknown): void {
    this.rpc.count(this.rpc.commandIndex(type), rpcResult(ok, error));
  }

  recallSent(): void {
    this.recalls++;
  }
}
