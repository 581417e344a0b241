// Watching a test cluster through its master's GET /cluster: the view, bounded polling
// until a condition holds, and which piece of the table covers a ring position.
import { request } from './http.js';
import type { RunningServer } from '../../bench/lib/servers.js';

export interface ClusterView {
  lsn: number;
  members: Array<{ id: string; status: string; pieces: number; addrs: { memcached: string; http: string; rpc: string } }>;
  leases: Array<{ start: string; end: string; owner: string; generation: number; expiresInMs: number; movingTo?: string }>;
}

export async function view(master: RunningServer): Promise<ClusterView> {
  const r = await request(master.httpPort!, 'GET', '/cluster');
  if (r.status !== 200) throw new Error(`GET /cluster answered ${r.status}: ${r.body.toString('utf8')}`);
  return JSON.parse(r.body.toString('utf8')) as ClusterView;
}

/** Polls until `ok` holds (bounded), returning the last view. */
export async function until(master: RunningServer, ok: (v: ClusterView) => boolean, timeoutMs = 15_000): Promise<ClusterView> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await view(master);
    if (ok(v)) return v;
    if (Date.now() > deadline) throw new Error(`cluster did not settle within ${timeoutMs} ms: ${JSON.stringify(v).slice(0, 2000)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Every piece held by one of `ids`, none moving, every lease renewed. */
export const settled = (ids: string[]) => (v: ClusterView) =>
  v.leases.length > 0 && v.leases.every((l) => ids.includes(l.owner) && l.movingTo === undefined && l.expiresInMs > 0);

/** The piece `(start, end]` containing `pos` (the wrapping piece and the whole ring included). */
export function pieceOf(v: ClusterView, pos: bigint): ClusterView['leases'][number] {
  for (const l of v.leases) {
    const s = BigInt(`0x${l.start}`);
    const e = BigInt(`0x${l.end}`);
    if (s < e ? pos > s && pos <= e : pos > s || pos <= e) return l;
  }
  throw new Error(`no piece covers ${pos}`);
}
