// One RpcClient per peer address (host:port), made on first use: how the master reaches
// nodes and how nodes reach each other. Each client multiplexes and reconnects itself.
import { RpcClient } from './client.js';

export function splitAddr(addr: string): [string, number] {
  const i = addr.lastIndexOf(':');
  const port = Number(addr.slice(i + 1));
  if (i <= 0 || !Number.isInteger(port) || port <= 0 || port > 65535) throw new Error(`bad address ${JSON.stringify(addr)}: want host:port`);
  return [addr.slice(0, i), port];
}

export class RpcPeers {
  private readonly clients = new Map<string, RpcClient>();

  get(addr: string): RpcClient {
    let c = this.clients.get(addr);
    if (!c) {
      const [host, port] = splitAddr(addr);
      c = new RpcClient({ host, port });
      this.clients.set(addr, c);
    }
    return c;
  }

  async close(): Promise<void> {
    await Promise.all([...this.clients.values()].map((c) => c.close()));
    this.clients.clear();
  }
}
