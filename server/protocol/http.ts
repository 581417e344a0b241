// HTTP/JSON front-end: the same store as the memcached port, for clients that speak HTTP.
//
//   PUT    /kv/:key[?ttl=S&flags=N]   body = value bytes -> 204, ETag = cas unique
//          If-Match: "<cas>" makes it a cas (412 on mismatch, 404 when absent);
//          If-None-Match: * makes it an add (412 when present).
//   GET    /kv/:key   -> 200 value bytes (ETag, X-Ringkv-Flags, X-Ringkv-Ttl) | 404
//   DELETE /kv/:key   -> 204 | 404
//   GET    /stats     -> JSON counters          GET /healthz -> {"status":"ok"}
//   GET    /metrics   -> Prometheus text exposition (server/metrics.ts)
//   In a cluster: ?r=N and ?w=N set the read / write quorum of one request; GET
//   /kv/:key?siblings=true answers JSON `{ siblings: [{ value, encoding, flags, cas,
//   expiresAtMs }] }` with every concurrent version; too few replicas answering is a 503.
//   GET    /debug/local/:key -> this node's own record of key (JSON), 404 when it has none
//   PUT    /debug/partition {"unreachable": [ids]} -> 204 (only with --debug-faults)
//
// Errors are JSON bodies `{ "error": code, "message": text }` with a 4xx status: a bad
// key (memcached's rule: 1..250 bytes, no space; no NUL or line feed either) is 400, a
// body over the item size is 413 (refused before it is read when Content-Length says so).
import http from 'node:http';
import type { Duplex } from 'node:stream';
import { performance } from 'node:perf_hooks';
import { itemSize, type Maybe } from '../kv/local-kv.js';
import type { KvRequest, KvResult } from '../kv/api.js';

type Quorum = { r?: number; w?: number };
import { keyIsValid } from './memcached/parser.js';
import { listen } from '../util/listen.js';
import type { Admission } from '../overload.js';
import type { NodeMetrics } from '../metrics.js';

export interface HttpServerOptions {
  host: string;
  port: number;
  maxItemSize: number;
  /** Connections accepted at once; more are closed at once. Absent = no bound. */
  maxConns?: number;
  /** A request (headers and body) must arrive whole within this long (ms); 0 = never. */
  requestTimeoutMs?: number;
  /** A keep-alive connection silent this long (ms) is closed. */
  idleTimeoutMs?: number;
}

export interface HttpContext {
  /** Runs a request where its key lives: on this node, or (in a cluster) on the owner. */
  run(req: KvRequest): Maybe<KvResult>;
  now(): number;
  stats(): Record<string, string | number>;
  /** What this node itself holds for key (its record, or a hint), as /debug/local shows it. */
  debugLocal?(key: string): Promise<unknown>;
  /** Fault injection (node flag --debug-faults): the peers this node can no longer reach. */
  partition?(ids: string[]): void;
  /** Overload control shared by every front end; absent = admit everything. */
  admission?: Admission;
  /** GET /metrics, and request counts and durations; absent = no /metrics route, nothing measured. */
  metrics?: NodeMetrics;
}

/** Seconds a refused client should wait before trying again (Retry-After). */
const BUSY_RETRY_AFTER_S = '1';

/** A value as JSON: UTF-8 text when it is valid UTF-8, else base64. */
export function jsonValue(v: Buffer): { value: string; encoding: 'utf8' | 'base64' } {
  const text = new TextDecoder('utf-8', { fatal: false }).decode(v);
  return Buffer.from(text, 'utf8').equals(v) ? { value: text, encoding: 'utf8' } : { value: v.toString('base64'), encoding: 'base64' };
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

function sendJson(res: http.ServerResponse, status: number, body: unknown, headers: http.OutgoingHttpHeaders = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

function sendError(res: http.ServerResponse, e: HttpError, headers: http.OutgoingHttpHeaders = {}): void {
  sendJson(res, e.status, { error: e.code, message: e.message }, headers);
}

/** 1 to 250 printable ASCII characters, no space and no '%': a key as it stands. */
const PLAIN_KEY = /^[\x21-\x24\x26-\x7e]{1,250}$/;

/** The key of /kv/<key>: percent-decoded to UTF-8 bytes, held as a latin1 string like every key. */
function parseKey(rawPath: string): string {
  const encoded = rawPath.slice('/kv/'.length);
  // Printable ASCII without escapes: the path is the key (UTF-8 and latin1 agree on ASCII).
  if (PLAIN_KEY.test(encoded)) return encoded;
  let decoded: string;
  try {
    decoded = decodeURIComponent(encoded);
  } catch {
    throw new HttpError(400, 'bad_key', 'key is not valid percent-encoding');
  }
  const key = Buffer.from(decoded, 'utf8').toString('latin1');
  if (!keyIsValid(key)) {
    throw new HttpError(400, 'bad_key', 'key must be 1 to 250 bytes with no space, NUL or line feed');
  }
  return key;
}

function parseIntParam(params: URLSearchParams, name: string, min: number, max: number): number | undefined {
  const v = params.get(name);
  if (v === null) return undefined;
  if (!/^-?[0-9]+$/.test(v)) throw new HttpError(400, `bad_${name}`, `${name} must be an integer`);
  const n = Number(v);
  if (n < min || n > max) throw new HttpError(400, `bad_${name}`, `${name} must be between ${min} and ${max}`);
  return n;
}

function readBody(req: http.IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        reject(new HttpError(413, 'too_large', `value larger than the item size limit (${limit} bytes)`));
        req.removeAllListeners('data');
        req.resume();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

/** Node's parser errors, as statuses: a slow or oversized request is not a malformed one. */
const CLIENT_ERRORS: Readonly<Record<string, readonly [number, string]>> = {
  ERR_HTTP_REQUEST_TIMEOUT: [408, 'request_timeout'],
  HPE_HEADER_OVERFLOW: [431, 'headers_too_large'],
};

/** A JSON error written straight to a socket that has no ServerResponse, then closed. */
function rawError(socket: Duplex, status: number, code: string, message: string): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const body = JSON.stringify({ error: code, message });
  socket.end(
    `HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? 'Error'}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
  );
}

/** The query of a URL that has none (read only). */
const NO_PARAMS = new URLSearchParams();

/** What the store or the cluster threw, as the HTTP error a client gets. */
function httpErrorOf(e: unknown): unknown {
  const err = e as { code?: unknown; detail?: unknown; message?: unknown };
  if (err.code === 'UNAVAILABLE') {
    return new HttpError(503, 'unavailable', typeof err.detail === 'string' ? `too few replicas answered: ${err.detail}` : 'no owner answers for this key right now');
  }
  if (err.code === 'BAD_REQUEST') return new HttpError(400, 'bad_request', String(err.message));
  if (err.code === 'OVERLOADED') return busyError();
  return e;
}

/** The node refused the request in overload (503 with Retry-After): nothing was done. */
function busyError(): HttpError {
  return new HttpError(503, 'busy', 'the node is overloaded; nothing was done, retry later');
}

export class HttpServer {
  private readonly server: http.Server;

  constructor(
    private readonly ctx: HttpContext,
    private readonly opts: HttpServerOptions,
  ) {
    const requestTimeoutMs = opts.requestTimeoutMs ?? 60_000;
    // Node checks the request and header timeouts only this often (30 s by default).
    const connectionsCheckingInterval = Math.min(30_000, Math.max(50, requestTimeoutMs / 4 || 30_000));
    const fail = (res: http.ServerResponse, e: unknown): void => {
      const err = e instanceof HttpError ? e : new HttpError(500, 'internal', e instanceof Error ? e.message : String(e));
      const headers: http.OutgoingHttpHeaders = err.status === 413 ? { connection: 'close' } : err.code === 'busy' ? { 'retry-after': BUSY_RETRY_AFTER_S } : {};
      if (!res.headersSent) sendError(res, err, headers);
      else res.destroy();
    };
    this.server = http.createServer({ connectionsCheckingInterval }, (req, res) => {
      const metrics = this.ctx.metrics;
      const startMs = metrics === undefined ? 0 : performance.now();
      // A GET served from this node's store answers in this call, as the Node floor does:
      // no promise, no microtask between the request and its response.
      let handled: Maybe<void> = undefined;
      try {
        handled = this.handle(req, res);
      } catch (e) {
        fail(res, e);
      }
      if (handled instanceof Promise) {
        const done = handled.catch((e: unknown) => fail(res, e));
        if (metrics !== undefined) void done.then(() => metrics.httpDone(req, res, startMs));
      } else if (metrics !== undefined) metrics.httpDone(req, res, startMs);
    });
    // Slow senders (a header a byte a second) and vanished peers are cut by Node's own
    // timers: the whole request within requestTimeout, the headers within the same.
    this.server.requestTimeout = requestTimeoutMs;
    this.server.headersTimeout = requestTimeoutMs === 0 ? 60_000 : Math.min(60_000, requestTimeoutMs);
    this.server.keepAliveTimeout = opts.idleTimeoutMs || 65_000;
    if (opts.maxConns !== undefined) this.server.maxConnections = opts.maxConns;
    // Requests Node's parser refuses still get the documented JSON error body.
    this.server.on('clientError', (err: Error & { code?: string }, socket: Duplex) => {
      const [status, code] = CLIENT_ERRORS[err.code ?? ''] ?? [400, 'bad_request'];
      rawError(socket, status, code, `malformed HTTP request (${err.code ?? err.message})`);
    });
    this.server.on('checkExpectation', (req: http.IncomingMessage, res: http.ServerResponse) => {
      sendError(res, new HttpError(417, 'expectation_failed', `Expect: ${String(req.headers.expect)} is not supported`), { connection: 'close' });
    });
    this.server.on('connect', (_req: http.IncomingMessage, socket: Duplex) => {
      rawError(socket, 405, 'method_not_allowed', 'CONNECT is not supported');
    });
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): Maybe<void> {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q === -1 ? url : url.slice(0, q);
    const params = q === -1 ? NO_PARAMS : new URLSearchParams(url.slice(q + 1));
    const method = req.method ?? 'GET';
    if (path.startsWith('/kv/')) {
      const admission = this.ctx.admission;
      if (admission === undefined) return this.kv(path, params, method, req, res);
      if (!admission.admit()) {
        // Refused before reading the body; the connection closes so an unread body cannot desync it.
        return sendError(res, busyError(), { 'retry-after': BUSY_RETRY_AFTER_S, ...(method === 'PUT' ? { connection: 'close' } : {}) });
      }
      let out: Maybe<void>;
      try {
        out = this.kv(path, params, method, req, res);
      } catch (e) {
        admission.done();
        throw e;
      }
      if (out instanceof Promise) return out.finally(() => admission.done());
      admission.done();
      return;
    }
    return this.other(req, res, path, method);
  }

  /** Every route but /kv/. */
  private async other(req: http.IncomingMessage, res: http.ServerResponse, path: string, method: string): Promise<void> {
    if (path === '/debug/partition' && method === 'PUT' && this.ctx.partition) {
      const body = await readBody(req, 64 * 1024);
      let ids: unknown;
      try {
        ids = (JSON.parse(body.toString('utf8')) as { unreachable?: unknown }).unreachable;
      } catch {
        throw new HttpError(400, 'bad_json', 'body must be JSON {"unreachable": [node ids]}');
      }
      if (!Array.isArray(ids) || !ids.every((x) => typeof x === 'string')) throw new HttpError(400, 'bad_json', 'unreachable must be an array of node ids');
      this.ctx.partition(ids as string[]);
      res.writeHead(204);
      res.end();
      return;
    }
    if (path.startsWith('/debug/local/') && method === 'GET' && this.ctx.debugLocal) {
      const key = parseKey(`/kv/${path.slice('/debug/local/'.length)}`);
      const body = await this.ctx.debugLocal(key);
      if (body === undefined) throw new HttpError(404, 'not_found', 'this node holds nothing for the key');
      return sendJson(res, 200, body);
    }
    if (path === '/metrics' && method === 'GET' && this.ctx.metrics) {
      const text = await this.ctx.metrics.render();
      res.writeHead(200, { 'content-type': this.ctx.metrics.contentType, 'content-length': Buffer.byteLength(text) });
      res.end(text);
      return;
    }
    if (path === '/healthz' && method === 'GET') return sendJson(res, 200, { status: 'ok' });
    if (path === '/stats' && method === 'GET') return sendJson(res, 200, this.ctx.stats());
    sendError(res, new HttpError(404, 'not_found', `no route for ${method} ${path}`));
  }

  private kv(path: string, params: URLSearchParams, method: string, req: http.IncomingMessage, res: http.ServerResponse): Maybe<void> {
    const key = parseKey(path);
    const quorum = {
      ...(params.has('r') ? { r: parseIntParam(params, 'r', 1, 64)! } : {}),
      ...(params.has('w') ? { w: parseIntParam(params, 'w', 1, 64)! } : {}),
    };
    switch (method) {
      case 'GET':
      case 'HEAD':
        if (params.get('siblings') === 'true') return this.siblings(key, quorum, res);
        return this.get(key, res, method === 'HEAD', quorum);
      case 'PUT':
        return this.put(key, params, req, res, quorum);
      case 'DELETE':
        return this.del(key, res, quorum);
      default:
        return sendError(res, new HttpError(405, 'method_not_allowed', `${method} is not supported on /kv/:key`), { allow: 'GET, HEAD, PUT, DELETE' });
    }
  }

  /** Runs a request; an owner that cannot be reached is a 503 the client may retry. */
  private run(req: KvRequest): Maybe<KvResult> {
    let r: Maybe<KvResult>;
    try {
      r = this.ctx.run(req);
    } catch (e) {
      throw httpErrorOf(e);
    }
    return r instanceof Promise ? r.catch((e: unknown) => Promise.reject(httpErrorOf(e))) : r;
  }

  private async siblings(key: string, quorum: Quorum, res: http.ServerResponse): Promise<void> {
    const r = await this.run({ op: 'get', key, siblings: true, ...quorum });
    if (!r.item) throw new HttpError(404, 'not_found', 'no such key');
    const siblings = (r.siblings ?? [r.item]).map((s) => ({ ...jsonValue(s.value), flags: s.flags, cas: s.cas, expiresAtMs: s.expiresAtMs }));
    sendJson(res, 200, { siblings });
  }

  private get(key: string, res: http.ServerResponse, head: boolean, quorum: Quorum): Maybe<void> {
    const r = this.run(quorum.r === undefined && quorum.w === undefined ? { op: 'get', key } : { op: 'get', key, ...quorum });
    if (r instanceof Promise) return r.then((x) => this.sendItem(x, res, head));
    this.sendItem(r, res, head);
  }

  private sendItem(r: KvResult, res: http.ServerResponse, head: boolean): void {
    if (!r.item) throw new HttpError(404, 'not_found', 'no such key');
    const headers: http.OutgoingHttpHeaders = {
      'content-type': 'application/octet-stream',
      'content-length': r.item.value.length,
      etag: `"${r.item.cas}"`,
      'x-ringkv-flags': r.item.flags,
    };
    if (r.item.expiresAtMs !== 0) headers['x-ringkv-ttl'] = Math.max(0, Math.ceil((r.item.expiresAtMs - this.ctx.now()) / 1000));
    res.writeHead(200, headers);
    res.end(head ? undefined : r.item.value);
  }

  private async put(key: string, params: URLSearchParams, req: http.IncomingMessage, res: http.ServerResponse, quorum: Quorum): Promise<void> {
    const ttl = parseIntParam(params, 'ttl', -1, 2 ** 31 - 1) ?? 0;
    const flags = parseIntParam(params, 'flags', 0, 0xffffffff) ?? 0;
    const limit = this.opts.maxItemSize - itemSize(key.length, 0, flags);
    const declared = req.headers['content-length'];
    if (declared !== undefined && Number(declared) > limit) {
      req.resume();
      throw new HttpError(413, 'too_large', `value larger than the item size limit (${limit} bytes for this key)`);
    }
    const body = await readBody(req, limit);
    let mode: 'set' | 'add' | 'cas' = 'set';
    let cas: string | undefined;
    const ifMatch = req.headers['if-match'];
    if (ifMatch !== undefined) {
      const m = /^"?([0-9]{1,20})"?$/.exec(ifMatch.trim());
      if (!m || BigInt(m[1]!) >= 1n << 64n) throw new HttpError(400, 'bad_if_match', 'If-Match must be a cas unique from an ETag');
      mode = 'cas';
      cas = m[1]!;
    } else if (req.headers['if-none-match'] === '*') mode = 'add';
    // ?ttl= is always seconds from now (memcached's 30-day absolute rule is a protocol quirk).
    const ttlMs = ttl === 0 ? 0 : ttl < 0 ? -1 : ttl * 1000;
    const result = await this.run({ op: mode, key, value: body, flags, ttlMs, ...(cas !== undefined ? { cas } : {}), ...quorum });
    switch (result.status) {
      case 'OK':
        res.writeHead(204, { etag: `"${result.item!.cas}"` });
        res.end();
        return;
      case 'TOO_LARGE':
        throw new HttpError(413, 'too_large', 'value larger than the item size limit');
      case 'NOT_FOUND':
        throw new HttpError(404, 'not_found', 'no such key');
      default:
        throw new HttpError(412, 'precondition_failed', mode === 'add' ? 'key already exists' : 'cas unique does not match');
    }
  }

  private async del(key: string, res: http.ServerResponse, quorum: Quorum): Promise<void> {
    const r = await this.run({ op: 'delete', key, ...quorum });
    if (r.status !== 'OK') throw new HttpError(404, 'not_found', 'no such key');
    res.writeHead(204);
    res.end();
  }

  listen(): Promise<number> {
    return listen(this.server, this.opts.port, this.opts.host);
  }

  async close(graceMs: number): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeIdleConnections();
    const timer = setTimeout(() => this.server.closeAllConnections(), graceMs);
    await closed;
    clearTimeout(timer);
  }
}
