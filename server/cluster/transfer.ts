// Moving data when the ring changes: a joining node copies in the records of the ranges
// it will hold, a leaving node hands out the records of the ranges it gives up (and the
// hints it keeps for others), before the master changes the ring. Reads keep using the
// current ring until then, and writes already go to both rings' replicas (see
// replication/replicator.ts), so nothing written during the copy is missed and no key
// ever has fewer than N copies.
//
// Join: the joiner asks every member of the current ring for `stream.scan` pages: the
// source walks its store in key order and returns the records of keys it replicates now
// and the joiner will replicate in the next ring. Every current replica sends, so a key
// acknowledged on any W of them arrives. Pages are bounded in keys and bytes; the joiner
// merges each page (vector clocks: copies of one key from several sources collapse) and
// keeps to `--stream-mb-per-s`. Both sides name the next ring by its fingerprint: a page
// asked for with another ring (a membership change meanwhile) is refused and the joiner
// starts over with the new one. When every source is through, the joiner calls `joined`.
//
// Leave: the leaver walks its own store and pushes each record it replicates now to the
// nodes of the key's next-ring list that do not replicate it now; replays (or, when the
// target is unreachable, hands to another node) every hint it holds; then calls `left`,
// and the master recalls its leases.
import { IN_RING } from '../master/core.js';
import type { LocalKv } from '../kv/local-kv.js';
import type { WireMember, WireTransfer } from '../master/core.js';
import { decodeRecord, encodeRecord } from '../storage/record.js';
import type { Store } from '../storage/store.js';
import type { HintStore } from '../replication/hints.js';
import { keyPosition } from '../../ring/index.js';
import type { Replicator, WireItem } from '../replication/replicator.js';

export interface TransferOptions {
  selfId: string;
  replicator: Replicator;
  kv: LocalKv;
  store: Store;
  hints: HintStore;
  members(): ReadonlyMap<string, WireMember>;
  /** An RPC to a peer by id (rejects on failure). */
  callPeer<T>(id: string, type: string, body: unknown): Promise<T>;
  /** An RPC to the master. */
  callMaster<T>(type: string, body: unknown): Promise<T>;
  /** Pull the lease table now. */
  refresh(): Promise<void>;
  /** Byte rate of a transfer, both directions. */
  mbPerS: number;
  now(): number;
  sleep(ms: number): Promise<void>;
}

/** The progress this node reports, updated in place as the transfer goes. */
type TransferProgress = { -readonly [K in keyof WireTransfer]: WireTransfer[K] };

/** Records scanned per page (a page's records are also bounded by PAGE_BYTES). */
const PAGE_KEYS = 1000;
const PAGE_BYTES = 4 * 1024 * 1024;
const PUSH_KEYS = 200;

export class TransferError extends Error {
  constructor(
    readonly code: 'RING_MISMATCH' | 'BAD_REQUEST',
    message: string,
  ) {
    super(message);
  }
}

export class Transfers {
  readonly counters = { stream_keys_in: 0, stream_bytes_in: 0, stream_keys_out: 0, stream_bytes_out: 0, stream_pages_served: 0 };
  private progressState: TransferProgress | undefined;
  private startedMs = 0;
  private throttleBytes = 0;
  private throttleSinceMs = 0;

  constructor(private readonly o: TransferOptions) {}

  progress(): WireTransfer | undefined {
    return this.progressState;
  }

  // ---- the source of a join ---------------------------------------------------------

  /** `stream.scan`: one page of the records `target` will replicate and we replicate now. */
  async serveScan(body: unknown): Promise<{ items: WireItem[]; next: string | null; scanned: number; total: number }> {
    const b = (body ?? {}) as { target?: unknown; fingerprint?: unknown; after?: unknown; limit?: unknown; maxBytes?: unknown };
    if (typeof b.target !== 'string' || typeof b.fingerprint !== 'string') throw new TransferError('BAD_REQUEST', 'stream.scan needs target and fingerprint');
    if (b.after !== undefined && b.after !== null && typeof b.after !== 'string') throw new TransferError('BAD_REQUEST', 'after must be a key');
    const limit = typeof b.limit === 'number' && Number.isInteger(b.limit) && b.limit > 0 ? Math.min(b.limit, 10_000) : PAGE_KEYS;
    const maxBytes = typeof b.maxBytes === 'number' && b.maxBytes > 0 ? Math.min(b.maxBytes, 32 * 1024 * 1024) : PAGE_BYTES;
    const rep = this.o.replicator;
    if (b.fingerprint !== rep.nextRingFingerprint()) {
      await this.o.refresh().catch(() => {});
      if (b.fingerprint !== rep.nextRingFingerprint()) throw new TransferError('RING_MISMATCH', 'the next ring differs here: refresh and start over');
    }
    const target = b.target;
    const items: WireItem[] = [];
    let bytes = 0;
    let stopAt: string | undefined;
    let scanned = 0;
    const last = await this.o.store.scan(typeof b.after === 'string' ? b.after : undefined, limit, (key, record) => {
      if (stopAt !== undefined) return;
      scanned++;
      const pos = keyPosition(key);
      if (!rep.nextPreferenceList(pos).includes(target)) return;
      const now = rep.preferenceList(pos);
      if (!now.includes(this.o.selfId) || now.includes(target)) return;
      const enc = encodeRecord(record);
      items.push({ key, record: enc });
      bytes += enc.length;
      if (bytes >= maxBytes) stopAt = key;
    });
    this.counters.stream_pages_served++;
    this.counters.stream_keys_out += items.length;
    this.counters.stream_bytes_out += bytes;
    return { items, next: stopAt ?? last ?? null, scanned, total: this.o.store.stats().items };
  }

  // ---- joining ------------------------------------------------------------------------

  /** Copies in every record this node will replicate, from every current replica; then `joined`. */
  async join(): Promise<void> {
    this.begin('in');
    for (;;) {
      await this.o.refresh().catch(() => {});
      const fingerprint = this.o.replicator.nextRingFingerprint();
      const sources = [...this.o.members().values()].filter((m) => m.id !== this.o.selfId && IN_RING.has(m.status)).map((m) => m.id);
      const scanned = new Map<string, { scanned: number; total: number }>();
      this.fractionOf = () => {
        let s = 0;
        let t = 0;
        for (const v of scanned.values()) {
          s += v.scanned;
          t += v.total;
        }
        return sources.length === 0 ? 1 : t === 0 ? (scanned.size === sources.length ? 1 : 0) : Math.min(1, s / t);
      };
      try {
        await Promise.all(sources.map((id) => this.pullFrom(id, fingerprint, scanned)));
      } catch (e) {
        if ((e as { code?: unknown }).code === 'RING_MISMATCH') continue; // the ring moved: start over with the new one
        throw e;
      }
      if (this.o.replicator.nextRingFingerprint() !== fingerprint) continue;
      break;
    }
    this.finish();
    await this.untilAccepted(() => this.o.callMaster('joined', { id: this.o.selfId }));
  }

  private async pullFrom(source: string, fingerprint: string, scanned: Map<string, { scanned: number; total: number }>): Promise<void> {
    let after: string | undefined;
    let seen = 0;
    let failures = 0;
    for (;;) {
      if (!this.o.members().has(source) || !IN_RING.has(this.o.members().get(source)!.status)) return; // it left the ring: its replicas are elsewhere
      let page: { items: WireItem[]; next: string | null; scanned: number; total: number };
      try {
        page = await this.o.callPeer(source, 'stream.scan', { target: this.o.selfId, fingerprint, after: after ?? null, limit: PAGE_KEYS, maxBytes: PAGE_BYTES });
        failures = 0;
      } catch (e) {
        if ((e as { code?: unknown }).code === 'RING_MISMATCH') throw e;
        // A source that does not answer: try again (it may be restarting), a bounded pause apart.
        failures++;
        await this.o.sleep(Math.min(2000, 50 * 2 ** Math.min(failures, 6)));
        continue;
      }
      let bytes = 0;
      const writes: Array<Promise<boolean> | boolean> = [];
      for (const it of page.items) {
        writes.push(this.o.kv.merge(it.key, decodeRecord(it.record)));
        bytes += it.record.length;
      }
      await Promise.all(writes);
      this.counted(page.items.length, bytes);
      seen += page.scanned;
      scanned.set(source, { scanned: seen, total: Math.max(page.total, seen) });
      await this.throttle(bytes);
      if (page.next === null) return;
      after = page.next;
    }
  }

  // ---- leaving ------------------------------------------------------------------------

  /** Hands out every record whose next-ring replicas lack it, then every hint; then `left`. */
  async leave(): Promise<void> {
    this.begin('out');
    for (;;) {
      await this.o.refresh().catch(() => {});
      const fingerprint = this.o.replicator.nextRingFingerprint();
      const total = Math.max(1, this.o.store.stats().items);
      let seen = 0;
      this.fractionOf = () => Math.min(1, seen / total);
      let after: string | undefined;
      for (;;) {
        const batches = new Map<string, WireItem[]>();
        const last = await this.o.store.scan(after, PAGE_KEYS, (key, record) => {
          seen++;
          const pos = keyPosition(key);
          const now = this.o.replicator.preferenceList(pos);
          if (!now.includes(this.o.selfId)) return;
          for (const id of this.o.replicator.nextPreferenceList(pos)) {
            if (now.includes(id) || id === this.o.selfId) continue;
            const list = batches.get(id) ?? [];
            list.push({ key, record: encodeRecord(record) });
            batches.set(id, list);
          }
        });
        for (const [id, items] of batches) await this.pushTo(id, items);
        if (last === undefined) break;
        after = last;
      }
      if (this.o.replicator.nextRingFingerprint() === fingerprint) break;
    }
    await this.handOnHints();
    this.finish();
    await this.untilAccepted(() => this.o.callMaster('left', { id: this.o.selfId }));
  }

  private async pushTo(id: string, items: WireItem[]): Promise<void> {
    for (let i = 0; i < items.length; i += PUSH_KEYS) {
      const chunk = items.slice(i, i + PUSH_KEYS);
      const bytes = chunk.reduce((n, it) => n + it.record.length, 0);
      for (let failures = 0; ; failures++) {
        try {
          await this.o.callPeer(id, 'rep.put', { items: chunk });
          break;
        } catch {
          // The new replica does not answer: keep the copies as hints for it, which replay
          // when it is back (and go with the other hints below).
          if (failures >= 3) {
            for (const it of chunk) await this.o.hints.add(id, it.key, decodeRecord(it.record)).catch(() => {});
            break;
          }
          await this.o.sleep(200 * (failures + 1));
        }
      }
      this.counted(chunk.length, bytes);
      await this.throttle(bytes);
    }
  }

  /**
   * After `left`, before the process ends: hints added since the hand-on (a copy for a
   * next-ring replica that did not answer) go the same way, until none is left.
   */
  async handOnRemainingHints(): Promise<void> {
    for (let round = 0; this.o.hints.targets().length > 0; round++) {
      await this.handOnHints();
      if (this.o.hints.targets().length > 0) await this.o.sleep(Math.min(2000, 100 * 2 ** Math.min(round, 5)));
    }
  }

  /** The hints this node keeps for others must outlive it: replayed to their targets, or handed to another node. */
  private async handOnHints(): Promise<void> {
    const rep = this.o.replicator;
    for (const target of this.o.hints.targets()) {
      if (rep.reachable(target)) {
        await rep.replay(target);
        if (this.o.hints.pending(target).entries === 0) continue;
      }
      const heirs = [...this.o.members().values()].filter((m) => m.id !== this.o.selfId && m.id !== target && rep.reachable(m.id) && rep.keepsHints(m.id));
      for (let failures = 0; heirs.length > 0; ) {
        const batch = await this.o.hints.batch(target, undefined, 200, PAGE_BYTES);
        if (batch.length === 0) break;
        const heir = heirs[failures % heirs.length]!;
        try {
          await this.o.callPeer(heir.id, 'rep.put', { items: batch.map((e) => ({ key: e.key, record: encodeRecord(e.record), hintFor: target })) });
        } catch {
          // Another heir next time, a bounded pause apart; the caller tries again later.
          if (++failures >= 3 * heirs.length) return;
          await this.o.sleep(Math.min(2000, 100 * 2 ** Math.min(failures, 5)));
          continue;
        }
        await this.o.hints.acknowledge(target, batch.map((e) => ({ key: e.key, ts: e.record.version.ts })));
        this.counted(batch.length, 0);
      }
    }
  }

  // ---- progress and pacing ------------------------------------------------------------

  private fractionOf: () => number = () => 0;

  private begin(direction: 'in' | 'out'): void {
    this.startedMs = this.o.now();
    this.throttleSinceMs = this.startedMs;
    this.throttleBytes = 0;
    this.progressState = { direction, keys: 0, bytes: 0, fraction: 0, rateBytesPerS: 0, done: false };
  }

  private counted(keys: number, bytes: number): void {
    const p = this.progressState!;
    p.keys += keys;
    p.bytes += bytes;
    if (p.direction === 'in') {
      this.counters.stream_keys_in += keys;
      this.counters.stream_bytes_in += bytes;
    }
    const elapsedS = Math.max(0.001, (this.o.now() - this.startedMs) / 1000);
    p.fraction = this.fractionOf();
    p.rateBytesPerS = Math.round(p.bytes / elapsedS);
    if (p.fraction > 0 && p.fraction < 1) p.etaS = Math.round((elapsedS * (1 - p.fraction)) / p.fraction);
    else delete p.etaS;
  }

  private finish(): void {
    const p = this.progressState!;
    p.fraction = 1;
    p.done = true;
    delete p.etaS;
  }

  /** Keeps the transfer at or under --stream-mb-per-s. */
  private async throttle(bytes: number): Promise<void> {
    this.throttleBytes += bytes;
    const allowedMs = (this.throttleBytes / (this.o.mbPerS * 1024 * 1024)) * 1000;
    const elapsedMs = this.o.now() - this.throttleSinceMs;
    if (allowedMs > elapsedMs) await this.o.sleep(allowedMs - elapsedMs);
  }

  /** Calls the master until it answers (it may be restarting). */
  private async untilAccepted(call: () => Promise<unknown>): Promise<void> {
    for (let failures = 0; ; failures++) {
      try {
        await call();
        return;
      } catch (e) {
        if ((e as { code?: unknown }).code === 'BAD_MEMBER' || (e as { code?: unknown }).code === 'UNKNOWN_NODE') throw e;
        await this.o.sleep(Math.min(2000, 100 * 2 ** Math.min(failures, 5)));
      }
    }
  }
}
