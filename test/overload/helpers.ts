// Shared by the overload tests: nodes started in-process (ports 0, a temp data dir each,
// closed and removed by `closeAll`), and a raw TCP connection that records every byte it
// receives and when the peer closed it, for tests that must send partial requests or
// never read.
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { defaults, type NodeConfig } from '../../server/config.js';
import { startNode, type RunningNode } from '../../server/node.js';
import { connectSocket } from '../helpers/connect.js';
import { sleep } from '../helpers/async.js';
import { McClient, statsParser } from '../helpers/mc.js';

export interface Tracked {
  nodes: RunningNode[];
  dirs: string[];
  sockets: net.Socket[];
  clients: McClient[];
}

export function tracker(): Tracked {
  return { nodes: [], dirs: [], sockets: [], clients: [] };
}

/** Starts a standalone node on ephemeral ports with a fresh data dir; `t` closes it later. */
export async function startTestNode(t: Tracked, over: Partial<NodeConfig>): Promise<RunningNode> {
  const data = mkdtempSync(path.join(os.tmpdir(), 'ringkv-overload-'));
  t.dirs.push(data);
  const node = await startNode({ ...defaults, port: 0, httpPort: 0, rpcPort: 0, data, shutdownGraceMs: 500, ...over });
  t.nodes.push(node);
  return node;
}

export async function closeAll(t: Tracked): Promise<void> {
  for (const s of t.sockets.splice(0)) s.destroy();
  for (const c of t.clients.splice(0)) c.close();
  for (const n of t.nodes.splice(0)) await n.close();
  for (const d of t.dirs.splice(0)) rmSync(d, { recursive: true, force: true });
}

export async function mcClient(t: Tracked, node: RunningNode): Promise<McClient> {
  const c = await McClient.connect(node.port);
  t.clients.push(c);
  return c;
}

/** A node's memcached `stats`, asked on a connection of its own. */
export async function mcStats(t: Tracked, node: RunningNode): Promise<Map<string, string>> {
  const c = await mcClient(t, node);
  try {
    await c.write('stats\r\n');
    return await c.read(statsParser);
  } finally {
    c.close();
  }
}

/** A raw connection: every byte received, whether and when the peer closed it. */
export class RawConn {
  received: Buffer = Buffer.alloc(0);
  closed = false;
  closedAt = 0;
  error: Error | undefined;

  private constructor(readonly socket: net.Socket) {
    socket.on('error', (e) => {
      this.error = e;
    });
    socket.on('close', () => {
      this.closed = true;
      this.closedAt = Date.now();
    });
  }

  /** Connected; with `read` false the socket is paused before any byte arrives (a client that never reads). */
  static async connect(t: Tracked, port: number, read = true): Promise<RawConn> {
    const socket = await connectSocket(port, '127.0.0.1', 5000);
    t.sockets.push(socket);
    if (!read) socket.pause();
    const c = new RawConn(socket);
    if (read) c.startReading();
    return c;
  }

  startReading(): void {
    this.socket.on('data', (d: Buffer) => {
      this.received = Buffer.concat([this.received, d]);
    });
    this.socket.resume();
  }

  write(bytes: string | Buffer): void {
    if (!this.closed && !this.socket.destroyed) this.socket.write(bytes);
  }

  text(): string {
    return this.received.toString('latin1');
  }

  /** Waits (bounded) until the peer has closed the connection. */
  async waitClosed(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed) {
      if (Date.now() > deadline) throw new Error(`connection still open after ${timeoutMs} ms; received ${JSON.stringify(this.text().slice(0, 200))}`);
      await sleep(20);
    }
  }

  /** Waits (bounded) until what was received satisfies `ok`. */
  async waitFor(ok: (text: string) => boolean, timeoutMs: number): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    while (!ok(this.text())) {
      if (Date.now() > deadline) throw new Error(`not received within ${timeoutMs} ms; received ${JSON.stringify(this.text().slice(0, 300))}, closed=${this.closed}`);
      await sleep(10);
    }
    return this.text();
  }
}
