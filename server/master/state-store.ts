// Where the master keeps its state across restarts and failovers: the snapshot (members,
// pieces with owners and generations, the generation counter, the LSN) and the change log
// (the table changes by LSN, so nodes keep pulling only what changed across a failover).
//
// `level` (the default, one master): a LevelDB file beside the master. `etcd` (several
// masters, one leading): keys under a prefix in etcd; every write is one transaction
// guarded by the leader's election key (its create revision), so a master deposed
// without knowing it yet (paused, partitioned) cannot change anything: its transaction
// fails, and it steps down (NotLeaderError).
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { Level } from 'level';
import { Range, type Etcd3 } from 'etcd3';
import type { MasterSnapshot, TableChange } from './core.js';
import { NotLeaderError } from './leadership.js';

export interface SavedState {
  readonly snapshot?: MasterSnapshot;
  readonly log: TableChange[];
}

export interface MasterStateStore {
  readonly kind: 'level' | 'etcd';
  load(): Promise<SavedState>;
  /**
   * Saves the snapshot and the change-log entries added since the last save, and drops
   * saved entries older than `keepFromLsn`. With etcd: only while this master leads
   * (else NotLeaderError, and nothing is written).
   */
  save(snapshot: MasterSnapshot, added: readonly TableChange[], keepFromLsn: number): Promise<void>;
  close(): Promise<void>;
}

/** LSNs as fixed-width text, so that keys sort as numbers. */
const lsnKey = (lsn: number): string => String(lsn).padStart(16, '0');

function parseLog(values: Iterable<string>): TableChange[] {
  const out: TableChange[] = [];
  for (const v of values) out.push(...(JSON.parse(v) as TableChange[]));
  return out.sort((a, b) => a.lsn - b.lsn);
}

/**
 * One LevelDB under `<data>/master`: `snapshot`, and `log/<last lsn>` holding the entries
 * of one save (a save is one batch, so a crash keeps both or neither).
 */
export class LevelStateStore implements MasterStateStore {
  readonly kind = 'level';
  private readonly db: Level<string, string>;

  constructor(data: string) {
    const dir = path.join(data, 'master');
    mkdirSync(dir, { recursive: true });
    this.db = new Level<string, string>(dir, { valueEncoding: 'utf8' });
  }

  async load(): Promise<SavedState> {
    await this.db.open();
    const saved = await this.db.get('snapshot');
    const values: string[] = [];
    for await (const v of this.db.values({ gt: 'log/', lt: 'log0' })) values.push(v);
    return { ...(saved ? { snapshot: JSON.parse(saved) as MasterSnapshot } : {}), log: parseLog(values) };
  }

  async save(snapshot: MasterSnapshot, added: readonly TableChange[], keepFromLsn: number): Promise<void> {
    const ops: Array<{ type: 'put'; key: string; value: string }> = [{ type: 'put', key: 'snapshot', value: JSON.stringify(snapshot) }];
    if (added.length > 0) ops.push({ type: 'put', key: `log/${lsnKey(added[added.length - 1]!.lsn)}`, value: JSON.stringify(added) });
    await this.db.batch(ops);
    await this.db.clear({ gt: 'log/', lt: `log/${lsnKey(keepFromLsn)}` });
  }

  async close(): Promise<void> {
    await this.db.close();
  }
}

/** The leader's election key and its create revision: what every write is guarded by. */
export interface Fence {
  readonly key: string;
  readonly revision: string;
  /** Who leads otherwise, for the NOT_LEADER reply when the fence fails. */
  leader(): string | undefined;
}

/**
 * The state in etcd under `prefix`: `<prefix>/state/snapshot` and
 * `<prefix>/state/log/<last lsn>` (the entries of one save). Writes need a fence.
 */
export class EtcdStateStore implements MasterStateStore {
  readonly kind = 'etcd';
  private fence: Fence | undefined;

  constructor(
    private readonly client: Etcd3,
    private readonly prefix: string,
  ) {}

  /** Writes from now on are guarded by `fence` (undefined: this master does not lead; writes fail). */
  setFence(fence: Fence | undefined): void {
    this.fence = fence;
  }

  private key(name: string): string {
    return `${this.prefix}/state/${name}`;
  }

  async load(): Promise<SavedState> {
    const snap = await this.client.get(this.key('snapshot')).string();
    const log = await this.client.getAll().prefix(this.key('log/')).strings();
    return { ...(snap ? { snapshot: JSON.parse(snap) as MasterSnapshot } : {}), log: parseLog(Object.values(log)) };
  }

  async save(snapshot: MasterSnapshot, added: readonly TableChange[], keepFromLsn: number): Promise<void> {
    const fence = this.fence;
    if (!fence) throw new NotLeaderError(undefined);
    const ops = [this.client.put(this.key('snapshot')).value(JSON.stringify(snapshot))];
    if (added.length > 0) ops.push(this.client.put(this.key(`log/${lsnKey(added[added.length - 1]!.lsn)}`)).value(JSON.stringify(added)));
    const r = await this.client.if(fence.key, 'Create', '==', fence.revision).then(...ops).commit();
    if (!r.succeeded) throw new NotLeaderError(fence.leader());
    // Old entries go in a transaction of their own (a range delete), guarded the same way.
    await this.client
      .if(fence.key, 'Create', '==', fence.revision)
      .then(this.client.delete().range(new Range(this.key('log/'), this.key(`log/${lsnKey(keepFromLsn)}`))))
      .commit();
  }

  /** Is `fence` still the leader's key? One read-only transaction; NotLeaderError when not. */
  async confirm(): Promise<void> {
    const fence = this.fence;
    if (!fence) throw new NotLeaderError(undefined);
    const r = await this.client.if(fence.key, 'Create', '==', fence.revision).commit();
    if (!r.succeeded) throw new NotLeaderError(fence.leader());
  }

  async close(): Promise<void> {
    // The client belongs to the master, which closes it.
  }
}
