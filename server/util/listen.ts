import type { Server } from 'node:net';

/** Binds a server and resolves with the port it got (port 0 = any free port); rejects on EADDRINUSE and friends. */
export function listen(server: Server, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      const addr = server.address();
      resolve(typeof addr === 'object' && addr ? addr.port : port);
    });
  });
}
