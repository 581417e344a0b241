// A TCP proxy for tests that cuts connections hard, mid-message: every connection accepted
// on 127.0.0.1 is piped to 127.0.0.1:<target>, and once it has carried `cutEveryBytes`
// bytes (both directions summed) both of its sockets are reset. Put it in front of a
// node's RPC port (the node advertises the proxy with --rpc-advertise) to see how peers
// live with connections that die in the middle of a reply.
//
// Loopback only. The target may be set after start: a connection that arrives while no
// target is set is destroyed at once. Each connection forwards exactly up to the cut
// threshold (the chunk that crosses it is truncated), so a cut never lets more than
// `cutEveryBytes` bytes through. Changing the threshold restarts every live connection's
// count, so "every N bytes" is counted from the last setCutEveryBytes.
import net from 'node:net';

export interface CutProxyOptions {
  /** Port on 127.0.0.1 to forward to (may be set later with setTarget). */
  target?: number;
  /** Bytes a connection may carry (both directions summed) before it is cut; undefined: never cut. */
  cutEveryBytes?: number;
}

export interface CutProxy {
  /** The port the proxy listens on (127.0.0.1). */
  readonly port: number;
  /** Connections cut so far. */
  readonly cuts: number;
  /** Bytes forwarded so far, both directions, every connection. */
  readonly bytes: number;
  /** Connections accepted so far (those destroyed for want of a target included). */
  readonly connections: number;
  /** Connections open now. */
  readonly live: number;
  setTarget(port: number): void;
  /** A positive byte count, or undefined to stop cutting. Restarts the count of every live connection. */
  setCutEveryBytes(n: number | undefined): void;
  /** Destroys every live connection and closes the listening socket. */
  close(): Promise<void>;
}

interface Conn {
  client: net.Socket;
  upstream: net.Socket;
  /** Bytes carried since the connection opened or the threshold last changed. */
  carried: number;
  dead: boolean;
}

/** A hard cut: an RST where the platform can send one, a plain destroy otherwise. */
function reset(s: net.Socket): void {
  if (s.destroyed) return;
  try {
    if (typeof s.resetAndDestroy === 'function' && !s.connecting && s.readyState !== 'closed') s.resetAndDestroy();
    else s.destroy();
  } catch {
    s.destroy();
  }
}

export async function startCutProxy(opts: CutProxyOptions = {}): Promise<CutProxy> {
  let target = opts.target;
  let cutEvery = checkThreshold(opts.cutEveryBytes);
  let cuts = 0;
  let bytes = 0;
  let connections = 0;
  const conns = new Set<Conn>();

  const kill = (c: Conn, cut: boolean) => {
    if (c.dead) return;
    c.dead = true;
    if (cut) cuts++;
    conns.delete(c);
    reset(c.client);
    reset(c.upstream);
  };

  /** Forwards `d` from `from` to `to`, cutting the connection once the threshold is reached. */
  const forward = (c: Conn, from: net.Socket, to: net.Socket, d: Buffer) => {
    if (c.dead) return;
    let chunk = d;
    let cutNow = false;
    if (cutEvery !== undefined && c.carried + chunk.length >= cutEvery) {
      chunk = chunk.subarray(0, Math.max(0, cutEvery - c.carried));
      cutNow = true;
    }
    c.carried += chunk.length;
    bytes += chunk.length;
    if (cutNow) {
      // The part under the threshold goes out, then both sides are reset: whatever the
      // receiver gets ends mid-message.
      from.pause();
      if (chunk.length === 0) return kill(c, true);
      to.write(chunk, () => kill(c, true));
      // Should the write never complete (the peer stopped reading), cut anyway.
      setTimeout(() => kill(c, true), 50).unref();
      return;
    }
    if (!to.write(chunk)) {
      from.pause();
      to.once('drain', () => {
        if (!c.dead) from.resume();
      });
    }
  };

  const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (client) => {
    connections++;
    client.on('error', () => {});
    if (target === undefined) {
      client.destroy();
      return;
    }
    const upstream = net.connect({ host: '127.0.0.1', port: target, allowHalfOpen: true });
    upstream.on('error', () => {});
    const c: Conn = { client, upstream, carried: 0, dead: false };
    conns.add(c);
    client.on('data', (d: Buffer) => forward(c, client, upstream, d));
    upstream.on('data', (d: Buffer) => forward(c, upstream, client, d));
    // A FIN is passed on; once either socket is gone, so is the other.
    client.on('end', () => upstream.end());
    upstream.on('end', () => client.end());
    client.on('close', () => kill(c, false));
    upstream.on('close', () => kill(c, false));
    upstream.once('connect', () => client.resume());
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address();
  if (typeof addr !== 'object' || addr === null) throw new Error('cut proxy: no listening address');
  const port = addr.port;

  return {
    port,
    get cuts() {
      return cuts;
    },
    get bytes() {
      return bytes;
    },
    get connections() {
      return connections;
    },
    get live() {
      return conns.size;
    },
    setTarget(p: number) {
      if (!Number.isInteger(p) || p < 1 || p > 65535) throw new Error(`cut proxy: bad target port ${p}`);
      target = p;
    },
    setCutEveryBytes(n: number | undefined) {
      cutEvery = checkThreshold(n);
      for (const c of conns) c.carried = 0;
    },
    close() {
      for (const c of [...conns]) kill(c, false);
      return new Promise<void>((resolve) => {
        if (!server.listening) return resolve();
        server.close(() => resolve());
      });
    },
  };
}

function checkThreshold(n: number | undefined): number | undefined {
  if (n !== undefined && (!Number.isInteger(n) || n < 1)) throw new Error(`cut proxy: cutEveryBytes must be a positive integer, got ${n}`);
  return n;
}
