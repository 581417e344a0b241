// The "Node floor" for the HTTP front-end: node:http answering `GET /kv/:key` (200 with the
// value bytes, 404) and `PUT /kv/:key` (body = value, 204) from a Map. Nothing else: it is
// the ceiling a Node HTTP server can reach on this machine, the peer of ringkv's HTTP API.
//
//   node dist/bench/floor-http.js --port 18080   ->   floor-http ready port=18080
import { Command } from 'commander';
import http from 'node:http';
import { intArg, isMain } from './lib/cli.js';

export const floorHttpLimits = {
  keyBytesMax: 250,
  valueBytesMax: 1024 * 1024,
} as const;

const prefix = '/kv/';

function send(res: http.ServerResponse, status: number, body?: Buffer): void {
  if (body) {
    res.writeHead(status, { 'content-type': 'application/octet-stream', 'content-length': body.length });
    res.end(body);
  } else {
    res.writeHead(status, { 'content-length': 0 });
    res.end();
  }
}

export function createFloorHttpServer(): { server: http.Server; items: Map<string, Buffer> } {
  const items = new Map<string, Buffer>();
  const server = http.createServer((req, res) => {
    const url = req.url ?? '';
    let key = '';
    try {
      key = url.startsWith(prefix) ? decodeURIComponent(url.slice(prefix.length)) : '';
    } catch {
      key = '';
    }
    if (key.length === 0 || Buffer.byteLength(key) > floorHttpLimits.keyBytesMax || /[\s\x00-\x1f\x7f]/.test(key)) {
      req.resume();
      send(res, 400);
      return;
    }
    if (req.method === 'GET') {
      const value = items.get(key);
      send(res, value ? 200 : 404, value);
      return;
    }
    if (req.method !== 'PUT') {
      req.resume();
      send(res, 405);
      return;
    }
    const chunks: Buffer[] = [];
    let bytes = 0;
    req.on('data', (d: Buffer) => {
      bytes += d.length;
      if (bytes <= floorHttpLimits.valueBytesMax) chunks.push(d);
    });
    req.on('end', () => {
      if (bytes > floorHttpLimits.valueBytesMax) {
        send(res, 413);
        return;
      }
      items.set(key, Buffer.concat(chunks, bytes));
      send(res, 204);
    });
  });
  return { server, items };
}

if (isMain(import.meta.url)) {
  const o = new Command('floor-http')
    .description('minimal Node.js HTTP GET/PUT /kv/:key server: the HTTP floor')
    .option('--host <host>', 'listen address', '127.0.0.1')
    .option('--port <port>', 'listen port (0 = any free port)', intArg(0, 65535), 18080)
    .parse()
    .opts<{ host: string; port: number }>();
  const { server } = createFloorHttpServer();
  server.listen(o.port, o.host, () => {
    const addr = server.address();
    const port = typeof addr === 'object' && addr ? addr.port : o.port;
    console.log(`floor-http ready port=${port}`);
  });
  const shutdown = () => process.exit(0);
  process.once('SIGTERM', shutdown);
  process.once('SIGINT', shutdown);
}
