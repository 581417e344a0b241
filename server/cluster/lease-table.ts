// A node's or client's copy of the master's lease table (Centrifuge's lookup library):
// a value that applies the master's full tables and change logs, and answers "who owns
// this position, with which generation" in O(log pieces). It is a hint: the owner itself
// decides, and answers not-owner when the hint is stale.
import { successorIndex } from '../../ring/index.js';
import { hexToken, type ChangesReply, type FullTable, type WireLease, type WireMember } from '../master/core.js';

export interface Route {
  readonly lease: WireLease;
  readonly member: WireMember | undefined;
}

export class LeaseTable {
  lsn = 0;
  private readonly leases = new Map<string, WireLease>();
  readonly members = new Map<string, WireMember>();
  private ends: bigint[] = [];
  private sorted: WireLease[] = [];
  private dirty = false;

  /** Applies what `changes` returned; returns true when anything changed. */
  apply(reply: ChangesReply): boolean {
    if ('full' in reply) {
      this.applyFull(reply.full);
      return true;
    }
    if (reply.changes.length === 0) return false;
    for (const c of reply.changes) {
      if (c.lsn <= this.lsn) continue;
      for (const end of c.remove) this.leases.delete(end);
      for (const l of c.upsert) this.leases.set(l.end, l);
      for (const m of c.members) this.members.set(m.id, m);
      this.lsn = c.lsn;
    }
    this.dirty = true;
    return true;
  }

  applyFull(full: FullTable): void {
    this.leases.clear();
    this.members.clear();
    for (const l of full.leases) this.leases.set(l.end, l);
    for (const m of full.members) this.members.set(m.id, m);
    this.lsn = full.lsn;
    this.dirty = true;
  }

  /** The piece containing `pos` (the first end >= pos, wrapping), or undefined when the table is empty. */
  route(pos: bigint): Route | undefined {
    this.index();
    const n = this.ends.length;
    if (n === 0) return undefined;
    const lease = this.sorted[successorIndex(this.ends, pos)]!;
    return { lease, member: this.members.get(lease.owner) };
  }

  all(): readonly WireLease[] {
    this.index();
    return this.sorted;
  }

  get size(): number {
    return this.leases.size;
  }

  private index(): void {
    if (!this.dirty) return;
    this.sorted = [...this.leases.values()].sort((a, b) => (a.end < b.end ? -1 : a.end > b.end ? 1 : 0));
    this.ends = this.sorted.map((l) => hexToken(l.end));
    this.dirty = false;
  }
}
