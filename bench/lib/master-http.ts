// The lease master's HTTP admin API as the benchmarks use it: GET /cluster (the view,
// with each moving member's transfer progress) and POST /cluster/members/<id>/leave
// (decommission). Every request is on a fresh connection and bounded by a timeout.
import http from 'node:http';
import type { WireTransfer } from '../../server/master/core.js';

/** A moving member's transfer as the view shows it (with when the master got it). */
export type MemberTransfer = WireTransfer & { atMs?: number };

export interface ClusterView {
  lsn: number;
  members: Array<{
    id: string;
    status: string;
    pieces: number;
    addrs: { memcached: string; http: string; rpc: string };
    transfer?: MemberTransfer;
  }>;
  leases: Array<{ start: string; end: string; owner: string; generation: number; expiresInMs: number; movingTo?: string }>;
}

export interface HttpReply {
  status: number;
  body: string;
}

/** One request on a fresh connection; rejects on a socket error or after `timeoutMs`. */
export function httpRequest(host: string, port: number, method: string, urlPath: string, timeoutMs: number): Promise<HttpReply> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host, port, method, path: urlPath, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        clearTimeout(timer);
        resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') });
      });
      res.on('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
    });
    const timer = setTimeout(() => req.destroy(new Error(`${method} ${urlPath} got no reply within ${timeoutMs} ms`)), timeoutMs);
    req.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    req.end();
  });
}

/** GET /cluster from the master's HTTP port. */
export async function getClusterView(host: string, httpPort: number, timeoutMs: number): Promise<ClusterView> {
  const r = await httpRequest(host, httpPort, 'GET', '/cluster', timeoutMs);
  if (r.status !== 200) throw new Error(`GET /cluster answered ${r.status}: ${r.body.slice(0, 300)}`);
  return JSON.parse(r.body) as ClusterView;
}

/** POST /cluster/members/<id>/leave: the master answers 202 once the member is leaving. */
export async function requestLeave(host: string, httpPort: number, id: string, timeoutMs: number): Promise<HttpReply> {
  const r = await httpRequest(host, httpPort, 'POST', `/cluster/members/${encodeURIComponent(id)}/leave`, timeoutMs);
  if (r.status !== 202) throw new Error(`POST /cluster/members/${id}/leave answered ${r.status}: ${r.body.slice(0, 300)}`);
  return r;
}

/**
 * Every member in `ids` up and holding pieces, no other member up, every piece leased to
 * one of `ids`, none moving, none expired: the ring has settled on exactly these nodes.
 */
export function settledOn(ids: readonly string[], v: ClusterView): boolean {
  const up = v.members.filter((m) => m.status === 'up');
  return (
    up.length === ids.length &&
    up.every((m) => ids.includes(m.id) && m.pieces > 0) &&
    v.leases.length > 0 &&
    v.leases.every((l) => ids.includes(l.owner) && l.movingTo === undefined && l.expiresInMs > 0)
  );
}
