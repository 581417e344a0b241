// Electing the active master among several, on etcd (its election recipe: each candidate
// puts a key under the election prefix, attached to an etcd lease of --master-ttl-ms that
// it keeps alive; the oldest key leads). ringkv writes no consensus of its own.
//
// A candidate that wins learns its key and that key's create revision: the fence that
// guards every write it makes (state-store.ts). A leader that stops renewing (killed,
// paused, cut off) loses its key when the etcd lease runs out, and the next candidate
// leads; if the old one wakes up, its first fenced write or check fails and it steps
// down: it resigns and stands again, as a standby.
import type { Campaign, Election, ElectionObserver, Etcd3 } from 'etcd3';
import type { Logger } from '../log.js';
import type { Fence } from './state-store.js';

export interface ElectionEvents {
  /** This master now leads, guarded by `fence`. */
  elected(fence: Fence): Promise<void>;
  /** This master no longer leads (or never got to): stop serving as leader at once. */
  deposed(reason: string): void;
}

export class MasterElection {
  private readonly election: Election;
  private campaign: Campaign | undefined;
  private observer: ElectionObserver | undefined;
  private closed = false;
  private retryTimer: NodeJS.Timeout | undefined;
  /** A failure to reach etcd was logged (once until it answers again). */
  private warned = false;

  constructor(
    private readonly client: Etcd3,
    name: string,
    private readonly ttlMs: number,
    private readonly self: string,
    private readonly events: ElectionEvents,
    private readonly log: Logger,
  ) {
    this.election = client.election(name, Math.max(1, Math.ceil(ttlMs / 1000)));
  }

  /** Starts watching who leads and standing as a candidate (in the background: etcd may not answer yet). */
  start(): void {
    void this.watch();
    this.stand();
  }

  /** The leader's RPC address as etcd says, when there is one. */
  leader(): string | undefined {
    return this.observer?.leader() ?? undefined;
  }

  private async watch(): Promise<void> {
    for (;;) {
      try {
        const observer = await this.election.observe();
        if (this.closed) {
          await observer.cancel().catch(() => {});
          return;
        }
        this.observer = observer;
        this.warned = false;
        observer.on('error', () => {
          if (this.observer === observer) this.observer = undefined;
          if (!this.closed) setTimeout(() => void this.watch(), 500).unref();
        });
        return;
      } catch (e) {
        if (this.closed) return;
        if (!this.warned) this.log.warn({ err: (e as Error).message }, 'cannot watch the master election yet (etcd unreachable?): retrying');
        this.warned = true;
        await new Promise((r) => setTimeout(r, 500));
      }
    }
  }

  private stand(): void {
    if (this.closed) return;
    const campaign = this.election.campaign(this.self);
    this.campaign = campaign;
    campaign.on('elected', () => {
      void (async () => {
        try {
          const key = await campaign.getCampaignKey();
          const got = await this.client.get(key).exec();
          const revision = got.kvs[0]?.create_revision;
          if (revision === undefined || this.campaign !== campaign) throw new Error('the election key is gone');
          await this.events.elected({ key, revision: String(revision), leader: () => this.leader() });
        } catch (e) {
          this.stepDown(`could not take the lead: ${(e as Error).message}`);
        }
      })();
    });
    campaign.on('error', (e: Error) => {
      if (this.campaign !== campaign) return;
      this.campaign = undefined;
      this.events.deposed(`election lease lost: ${e.message}`);
      this.retry();
    });
  }

  /** Leaves the lead (or the candidacy) and stands again a lease period later, so that another may lead. */
  stepDown(reason: string): void {
    const campaign = this.campaign;
    this.campaign = undefined;
    this.events.deposed(reason);
    if (campaign) void campaign.resign().catch(() => {});
    this.retry();
  }

  private retry(): void {
    if (this.closed || this.retryTimer) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.stand();
    }, this.ttlMs);
    this.retryTimer.unref();
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    const campaign = this.campaign;
    this.campaign = undefined;
    await campaign?.resign().catch(() => {});
    await this.observer?.cancel().catch(() => {});
  }
}
