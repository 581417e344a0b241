// One HTTP request to a node on 127.0.0.1, with the exact path given (no URL normalisation,
// so malformed percent-encoding reaches the server as written) and a bounded wait. Each
// request uses its own connection (`agent: false`), so nothing stays open after a test.
import http from 'node:http';

export const requestTimeoutMs = 10_000;

export interface HttpReply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

export interface RequestOptions {
  headers?: http.OutgoingHttpHeaders;
  /** Sent with Content-Length. */
  body?: Buffer;
  /** Sent with Transfer-Encoding: chunked, one chunk per element. */
  chunks?: Buffer[];
  timeoutMs?: number;
  /** A keep-alive agent for many requests in a row (default: a fresh connection per request). */
  agent?: http.Agent;
}

export function request(port: number, method: string, path: string, opts: RequestOptions = {}): Promise<HttpReply> {
  const timeoutMs = opts.timeoutMs ?? requestTimeoutMs;
  return new Promise((resolve, reject) => {
    const headers: http.OutgoingHttpHeaders = { ...opts.headers };
    if (opts.body) headers['content-length'] = opts.body.length;
    const req = http.request({ host: '127.0.0.1', port, method, path, headers, agent: opts.agent ?? false });
    const timer = setTimeout(() => req.destroy(new Error(`${method} ${path} got no complete reply within ${timeoutMs} ms`)), timeoutMs);
    let responded = false;
    req.on('response', (res) => {
      responded = true;
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        clearTimeout(timer);
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) });
      });
      res.on('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
    });
    req.on('error', (e) => {
      // A server that answers early (413) and closes may reset the rest of our upload;
      // the answer already received is what counts.
      if (responded) return;
      clearTimeout(timer);
      reject(e);
    });
    if (opts.chunks) {
      for (const c of opts.chunks) req.write(c);
      req.end();
    } else {
      req.end(opts.body);
    }
  });
}

/** The JSON body of a reply, with its content type checked. */
export function json(reply: HttpReply): unknown {
  const type = reply.headers['content-type'] ?? '';
  if (!type.startsWith('application/json')) throw new Error(`expected a JSON reply, got ${JSON.stringify(type)}: ${reply.body.toString('utf8').slice(0, 200)}`);
  return JSON.parse(reply.body.toString('utf8')) as unknown;
}
