// Fuzzing the HTTP front-end (server/protocol/http.ts) of a node started in-process
// (memory storage, ephemeral ports, 127.0.0.1), over raw loopback sockets so malformed
// bytes reach the server as written:
//   * 10,000 well-formed requests with random methods, paths (percent-encoding, broken
//     escapes, overlong and invalid keys), query parameters r/w/ttl/flags/siblings (negative,
//     huge, non-numeric), conditional headers and bodies: each gets exactly one valid HTTP
//     response, 2xx or 4xx (503 only as an overload answer), the status the API documents,
//     and a JSON `{error, message}` body on every 4xx;
//   * 10,000 malformed byte streams (garbage, mutated requests, Content-Length mismatches,
//     huge/negative/non-numeric/duplicate lengths, broken chunking): whatever comes back is
//     a sequence of valid HTTP responses, never a 5xx, and the server closes the connection;
//   * 2,000 keep-alive round trips (put / get / head / conditional put / delete) with random
//     keys and binary bodies: the bytes and flags come back exactly;
//   * huge declared Content-Length is refused before any body byte is sent, and an endless
//     chunked upload is cut off by the server;
//   * afterwards the node is up and its known keys hold their exact bytes and flags.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaults } from '../../server/config.js';
import { startNode, type RunningNode } from '../../server/node.js';
import { FUZZ_RUNS, fuzzParams, show, splitAt } from './fuzz-support.js';
import { numberText } from './memcached-arbitraries.js';

const MAX_ITEM_SIZE = 4096;
const ROUND_TRIP_RUNS = 2_000;
/** memcached's charge for an item (server/kv/local-kv.ts itemSize): the value limit of a PUT. */
const valueLimit = (keyBytes: number, flags: number) => MAX_ITEM_SIZE - (48 + 8 + keyBytes + 1 + 2 + (flags !== 0 ? 4 : 0));

// ---- responses -----------------------------------------------------------------------------

interface HttpResponse {
  status: number;
  headers: Map<string, string>;
  body: Buffer;
}

/**
 * Splits a response stream into HTTP/1.1 responses, checking the framing: a status line,
 * headers, then a body delimited by Content-Length, chunked encoding, or the end of the
 * stream. `heads` says which final responses answer a HEAD (no body).
 */
function parseResponses(buf: Buffer, heads: readonly boolean[] = []): HttpResponse[] {
  const out: HttpResponse[] = [];
  let at = 0;
  const fail = (why: string): never => {
    throw new Error(`${why} at byte ${at} of ${show(buf, 1500)}`);
  };
  while (at < buf.length) {
    const end = buf.indexOf('\r\n\r\n', at, 'latin1');
    if (end < 0) fail('response head without an empty line');
    const lines = buf.toString('latin1', at, end).split('\r\n');
    const m = /^HTTP\/1\.1 (\d{3}) [^\r\n]*$/.exec(lines[0]!);
    if (!m) fail(`bad status line ${show(lines[0]!)}`);
    const status = Number(m![1]);
    const headers = new Map<string, string>();
    for (const l of lines.slice(1)) {
      const h = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+): ?(.*)$/.exec(l);
      if (!h) fail(`bad header line ${show(l)}`);
      headers.set(h![1]!.toLowerCase(), h![2]!);
    }
    at = end + 4;
    if (status >= 100 && status < 200) continue; // 100 Continue: an interim response
    const head = heads[out.length] ?? false;
    let body: Buffer = Buffer.alloc(0);
    if (head || status === 204 || status === 304) {
      // no body
    } else if (headers.get('transfer-encoding')?.toLowerCase() === 'chunked') {
      const parts: Buffer[] = [];
      for (;;) {
        const eol = buf.indexOf('\r\n', at, 'latin1');
        if (eol < 0) fail('chunk size line without \\r\\n');
        const size = parseInt(buf.toString('latin1', at, eol).split(';')[0]!, 16);
        if (!Number.isSafeInteger(size)) fail('bad chunk size');
        at = eol + 2;
        if (size === 0) {
          const trailerEnd = buf.indexOf('\r\n', at, 'latin1');
          if (trailerEnd !== at) fail('trailers are not expected');
          at += 2;
          break;
        }
        if (buf.length < at + size + 2 || buf.toString('latin1', at + size, at + size + 2) !== '\r\n') fail('chunk not followed by \\r\\n');
        parts.push(buf.subarray(at, at + size));
        at += size + 2;
      }
      body = Buffer.concat(parts);
    } else if (headers.has('content-length')) {
      const n = Number(headers.get('content-length'));
      if (!Number.isSafeInteger(n) || n < 0 || buf.length < at + n) fail(`body shorter than content-length ${n}`);
      body = buf.subarray(at, at + n);
      at += n;
    } else {
      body = buf.subarray(at);
      at = buf.length;
    }
    out.push({ status, headers, body });
  }
  return out;
}

/**
 * What every response must be: 2xx or 4xx (503 only for overload or missing replicas), and a
 * 4xx from the application carries `{ "error": code, "message": text }` as JSON.
 */
function checkResponse(r: HttpResponse, head: boolean, context: () => string): void {
  const ok = (r.status >= 200 && r.status < 300) || (r.status >= 400 && r.status < 500) || r.status === 503;
  if (!ok) throw new Error(`status ${r.status} ${show(r.body)} for ${context()}`);
  if (r.status >= 400) {
    if (!(r.headers.get('content-type') ?? '').startsWith('application/json')) throw new Error(`${r.status} without a JSON body for ${context()}`);
    if (head) return;
    const body = JSON.parse(r.body.toString('utf8')) as Record<string, unknown>;
    if (Object.keys(body).sort().join() !== 'error,message' || typeof body.error !== 'string' || typeof body.message !== 'string' || body.message === '') {
      throw new Error(`${r.status} body is not {error, message}: ${show(r.body)} for ${context()}`);
    }
    if (r.status === 503 && body.error !== 'busy' && body.error !== 'unavailable') throw new Error(`503 ${body.error} for ${context()}`);
  }
}

const errorOf = (r: HttpResponse): string | undefined => (r.status >= 400 && r.body.length > 0 ? (JSON.parse(r.body.toString('utf8')) as { error: string }).error : undefined);

/**
 * Node's own answer to bytes that are not HTTP (http.ts installs no clientError handler):
 * a bare 400/413/417/431 with `Connection: close` and no JSON body. Reported as a finding;
 * accepted here only for malformed input.
 */
function isNodeCoreRejection(r: HttpResponse): boolean {
  return [400, 413, 417, 431].includes(r.status) && r.headers.get('connection')?.toLowerCase() === 'close' && r.body.length === 0 && !r.headers.has('content-type');
}

// ---- raw connections -----------------------------------------------------------------------

/** Writes chunks on a fresh connection (optionally half-closing), returns everything read until the server closes. */
function exchange(port: number, chunks: readonly Buffer[], fin: boolean, timeoutMs = 5000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.setNoDelay(true);
    const received: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`connection still open after ${timeoutMs} ms; received ${show(Buffer.concat(received))}`));
    }, timeoutMs);
    socket.on('data', (d: Buffer) => received.push(d));
    socket.on('error', () => {}); // a reset after the server answered and closed: what was read counts
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(received));
    });
    socket.on('connect', async () => {
      for (const c of chunks) {
        if (socket.destroyed) return;
        await new Promise<void>((r) => socket.write(c, () => r()));
      }
      if (fin && !socket.destroyed) socket.end();
    });
  });
}

// ---- requests ------------------------------------------------------------------------------

/** Percent-encoding of a key: every byte, or only what a request line cannot carry raw. */
function encodeKey(key: string, how: 'all' | 'minimal' | 'lower'): string {
  if (how === 'all') return encodeURIComponent(key);
  const minimal = [...key].map((ch) => (/^[!$&'()*+,\-./0-9:;=@A-Z_a-z~]$/.test(ch) ? ch : encodeURIComponent(ch))).join('');
  return how === 'lower' ? minimal.replace(/%[0-9A-F]{2}/g, (e) => e.toLowerCase()) : minimal;
}

/** The key of an encoded path segment as the API defines it, or undefined when the API must refuse it. */
function keyOfSegment(segment: string): string | undefined {
  let decoded: string;
  try {
    decoded = decodeURIComponent(segment);
  } catch {
    return undefined;
  }
  const bytes = Buffer.from(decoded, 'utf8');
  if (bytes.length === 0 || bytes.length > 250 || bytes.includes(0x20) || bytes.includes(0x0a) || bytes.includes(0x00)) return undefined;
  return bytes.toString('latin1');
}

const validKeyText = fc.string({ unit: 'binary', minLength: 1, maxLength: 40 }).filter((k) => keyOfSegment(encodeURIComponent(k)) !== undefined);
/** Encoded key segments: valid keys in three encodings, invalid keys, broken escapes. */
const keySegment: fc.Arbitrary<string> = fc.oneof(
  { weight: 6, arbitrary: fc.tuple(validKeyText, fc.constantFrom('all', 'minimal', 'lower') as fc.Arbitrary<'all' | 'minimal' | 'lower'>).map(([k, how]) => encodeKey(k, how)) },
  { weight: 1, arbitrary: fc.integer({ min: 240, max: 300 }).map((n) => 'k'.repeat(n)) },
  { weight: 1, arbitrary: fc.integer({ min: 80, max: 90 }).map((n) => '%E2%82%AC'.repeat(n)) }, // 3-byte chars: over 250 bytes sooner
  {
    weight: 2,
    arbitrary: fc.constantFrom('', '%', '%4', '%zz', '%C3', '%ED%A0%80', '%C0%AF', '%FF', 'a%20b', 'a%00b', 'a%0Ab', 'a%0Db', '%2F', '..', 'a/b', 'a+b', 'caf%C3%A9', '%F0%9F%92%A9'),
  },
);

const badParam = fc.oneof(numberText, fc.constantFrom('', 'true', '65', '0', '-1', '2147483648', '4294967296', '18446744073709551616', ' 1', '1 ', '0x1', '1e2', '+1', '1.0'));
/** Mostly a value the API accepts (so requests get past validation), else anything. */
const GOOD_PARAM: Record<string, fc.Arbitrary<string>> = {
  r: fc.integer({ min: 1, max: 64 }).map(String),
  w: fc.integer({ min: 1, max: 64 }).map(String),
  ttl: fc.oneof(fc.constant('0'), fc.integer({ min: -1, max: 2 ** 31 - 1 }).map(String)),
  flags: fc.nat({ max: 0xffffffff }).map(String),
  siblings: fc.constantFrom('true', 'false'),
  x: fc.constant('1'),
};
const query: fc.Arbitrary<string> = fc
  .uniqueArray(fc.constantFrom('r', 'w', 'ttl', 'flags', 'siblings', 'x'), { maxLength: 3 })
  .chain((names) => fc.tuple(...names.map((n) => fc.oneof({ weight: 4, arbitrary: GOOD_PARAM[n]! }, { weight: 1, arbitrary: badParam }).map((v) => [n, v] as const))))
  .map((ps) => (ps.length === 0 ? '' : `?${ps.map(([k, v]) => `${k}=${encodeURIComponent(v)}`).join('&')}`));

const METHODS = ['GET', 'GET', 'HEAD', 'PUT', 'PUT', 'PUT', 'DELETE', 'POST', 'PATCH', 'OPTIONS', 'TRACE', 'PROPFIND', 'PURGE', 'MKCOL', 'LOCK'];

interface Req {
  method: string;
  target: string;
  headers: Array<[string, string]>;
  body: Buffer;
  chunked: boolean;
}

const body: fc.Arbitrary<Buffer> = fc.oneof(
  { weight: 6, arbitrary: fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)) },
  { weight: 1, arbitrary: fc.integer({ min: MAX_ITEM_SIZE - 300, max: 2 * MAX_ITEM_SIZE }).map((n) => randomBytes(n)) },
);

const ifMatch = fc.oneof(
  fc.constantFrom('"1"', '1', '"0"', '"18446744073709551615"', '"18446744073709551616"', '"99999999999999999999999"', 'W/"1"', 'abc', '"-1"', '*', '""', ' "7" '),
  fc.bigInt({ min: 0n, max: 1n << 70n }).map((n) => `"${n}"`),
);

/** A request Node's parser accepts, to a route of the API or anywhere else. */
const request: fc.Arbitrary<Req> = fc
  .record({
    method: fc.constantFrom(...METHODS),
    route: fc.oneof(
      { weight: 8, arbitrary: keySegment.map((k) => `/kv/${k}`) },
      { weight: 1, arbitrary: keySegment.map((k) => `/debug/local/${k}`) },
      { weight: 2, arbitrary: fc.constantFrom('/stats', '/healthz', '/metrics', '/debug/partition', '/', '/kv', '/kv/', '/KV/a', '//kv/a', '/kv%2Fa', 'http://h/kv/a') },
    ),
    query,
    ifMatch: fc.oneof({ weight: 6, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: ifMatch }),
    ifNoneMatch: fc.oneof({ weight: 6, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.constantFrom('*', '"1"', 'x') }),
    extra: fc.array(fc.tuple(fc.constantFrom('X-Fuzz', 'Accept', 'Content-Type', 'X-Ringkv-Flags', 'User-Agent'), fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)), maxLength: 40 })), { maxLength: 3 }),
    body: fc.oneof({ weight: 1, arbitrary: fc.constant(Buffer.alloc(0)) }, { weight: 2, arbitrary: body }),
    chunked: fc.boolean(),
  })
  .map(({ method, route, query: q, ifMatch: im, ifNoneMatch: inm, extra, body: b, chunked }) => ({
    method,
    target: route + q,
    headers: [
      ['Host', 'fuzz'],
      ...(im !== undefined ? ([['If-Match', im]] as Array<[string, string]>) : []),
      ...(inm !== undefined ? ([['If-None-Match', inm]] as Array<[string, string]>) : []),
      ...extra.map(([k, v]) => [k, v.trim()] as [string, string]),
    ],
    body: b,
    chunked: chunked && b.length > 0,
  }));

function requestBytes(r: Req, connectionClose: boolean): Buffer {
  const head = [`${r.method} ${r.target} HTTP/1.1`, ...r.headers.map(([k, v]) => `${k}: ${v}`)];
  if (r.chunked) head.push('Transfer-Encoding: chunked');
  else if (r.body.length > 0 || r.method === 'PUT' || r.method === 'POST') head.push(`Content-Length: ${r.body.length}`);
  if (connectionClose) head.push('Connection: close');
  const start = Buffer.from(`${head.join('\r\n')}\r\n\r\n`, 'latin1');
  if (!r.chunked) return Buffer.concat([start, r.body]);
  const mid = Math.floor(r.body.length / 2);
  const chunk = (b: Buffer) => (b.length === 0 ? [] : [Buffer.from(`${b.length.toString(16)}\r\n`), b, Buffer.from('\r\n')]);
  return Buffer.concat([start, ...chunk(r.body.subarray(0, mid)), ...chunk(r.body.subarray(mid)), Buffer.from('0\r\n\r\n')]);
}

const intParam = (v: string | null, min: number, max: number) => v === null || (/^-?[0-9]+$/.test(v) && Number(v) >= min && Number(v) <= max);

/**
 * The statuses (and error codes) the API documents for a request, in the order http.ts
 * checks: the key, r, w, the method; for PUT ttl, flags, the declared or received length,
 * If-Match; then what the store says.
 */
function expectedOutcome(r: Req): { statuses: number[]; error?: string } {
  const q = r.target.indexOf('?');
  const pathPart = q === -1 ? r.target : r.target.slice(0, q);
  const params = new URLSearchParams(q === -1 ? '' : r.target.slice(q + 1));
  const header = (name: string) => r.headers.find(([k]) => k.toLowerCase() === name)?.[1];
  if (pathPart.startsWith('/debug/local/') && r.method === 'GET') {
    return keyOfSegment(pathPart.slice('/debug/local/'.length)) === undefined ? { statuses: [400], error: 'bad_key' } : { statuses: [200, 404] };
  }
  if (!pathPart.startsWith('/kv/')) {
    if (r.method === 'GET' && ['/stats', '/healthz'].includes(pathPart)) return { statuses: [200] };
    if (r.method === 'GET' && pathPart === '/metrics') return { statuses: [200, 404] }; // only with metrics
    return { statuses: [404], error: 'not_found' };
  }
  const key = keyOfSegment(pathPart.slice('/kv/'.length));
  if (key === undefined) return { statuses: [400], error: 'bad_key' };
  if (!intParam(params.get('r'), 1, 64)) return { statuses: [400], error: 'bad_r' };
  if (!intParam(params.get('w'), 1, 64)) return { statuses: [400], error: 'bad_w' };
  switch (r.method) {
    case 'GET':
    case 'HEAD':
      return { statuses: [200, 404] };
    case 'DELETE':
      return { statuses: [204, 404] };
    case 'PUT': {
      if (!intParam(params.get('ttl'), -1, 2 ** 31 - 1)) return { statuses: [400], error: 'bad_ttl' };
      if (!intParam(params.get('flags'), 0, 0xffffffff)) return { statuses: [400], error: 'bad_flags' };
      const flags = Number(params.get('flags') ?? 0);
      if (r.body.length > valueLimit(key.length, flags)) return { statuses: [413], error: 'too_large' };
      const im = header('if-match');
      if (im !== undefined) {
        const m = /^"?([0-9]{1,20})"?$/.exec(im.trim());
        if (!m || BigInt(m[1]!) >= 1n << 64n) return { statuses: [400], error: 'bad_if_match' };
        return { statuses: [404, 412] }; // a random cas unique: absent, or not the item's
      }
      return header('if-none-match') === '*' ? { statuses: [204, 412] } : { statuses: [204] };
    }
    default:
      return { statuses: [405], error: 'method_not_allowed' };
  }
}

// Malformed streams: garbage, and valid requests broken in one of many ways.
const mutation = fc.constantFrom(
  'truncate', 'flip', 'insert', 'cl-short', 'cl-long', 'cl-huge', 'cl-negative', 'cl-text', 'cl-duplicate', 'cl-and-te',
  'bad-chunk', 'bare-lf', 'bad-version', 'space-in-target', 'header-no-colon', 'big-header', 'raw-high-byte', 'pipeline',
);
const malformed: fc.Arbitrary<Buffer> = fc.oneof(
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 600 }).map((a) => Buffer.from(a)) },
  {
    weight: 1,
    arbitrary: fc
      .array(fc.constantFrom('GET', 'PUT', ' ', '/kv/a', 'HTTP/1.1', '\r\n', '\n', 'Content-Length: ', '5', '-1', 'Transfer-Encoding: chunked', 'Host: h', ':', '0\r\n\r\n', 'abc'), { maxLength: 30 })
      .map((ts) => Buffer.from(ts.join(''), 'latin1')),
  },
  {
    weight: 6,
    arbitrary: fc
      .tuple(request.filter((r) => r.method !== 'HEAD'), mutation, fc.nat(), fc.uint8Array({ minLength: 1, maxLength: 8 }))
      .map(([r, how, n, noise]) => {
        const plain = { ...r, chunked: false };
        const ok = requestBytes(plain, true);
        const headEnd = ok.indexOf('\r\n\r\n');
        const withHeaders = (extra: string, bodyBytes: Buffer = r.body) => {
          const lines = requestBytes({ ...plain, body: Buffer.alloc(0) }, true).subarray(0, headEnd).toString('latin1').split('\r\n').filter((l) => !l.startsWith('Content-Length'));
          return Buffer.concat([Buffer.from(`${[...lines, extra].join('\r\n')}\r\n\r\n`, 'latin1'), bodyBytes]);
        };
        switch (how) {
          case 'truncate': return ok.subarray(0, n % (ok.length + 1));
          case 'flip': { const b = Buffer.from(ok); b[n % b.length] = noise[0]!; return b; }
          case 'insert': { const at = n % (ok.length + 1); return Buffer.concat([ok.subarray(0, at), Buffer.from(noise), ok.subarray(at)]); }
          case 'cl-short': return withHeaders(`Content-Length: ${r.body.length + 1 + (n % 1000)}`);
          case 'cl-long': return withHeaders(`Content-Length: ${Math.max(0, r.body.length - 1 - (n % 10))}`);
          case 'cl-huge': return withHeaders(`Content-Length: ${['99999999999999999999', '18446744073709551616', '9007199254740993', '1' + '0'.repeat(40)][n % 4]}`);
          case 'cl-negative': return withHeaders(`Content-Length: -${1 + (n % 100)}`);
          case 'cl-text': return withHeaders(`Content-Length: ${['abc', '1x', '0x10', '1.5', '', ' ', '+5', '1,2'][n % 8]}`);
          case 'cl-duplicate': return withHeaders(`Content-Length: ${r.body.length}\r\nContent-Length: ${r.body.length + 1}`);
          case 'cl-and-te': return withHeaders(`Content-Length: ${r.body.length}\r\nTransfer-Encoding: chunked`);
          case 'bad-chunk': return withHeaders('Transfer-Encoding: chunked', Buffer.from(['zz\r\nabc\r\n0\r\n\r\n', '5\r\nab\r\n0\r\n\r\n', 'fffffffffffffffffff\r\n', '-1\r\n', '3\r\nabc0\r\n\r\n'][n % 5]!, 'latin1'));
          case 'bare-lf': return Buffer.from(ok.toString('latin1').replace(/\r\n/g, '\n'), 'latin1');
          case 'bad-version': return Buffer.from(ok.toString('latin1').replace('HTTP/1.1', ['HTTP/9.9', 'HTTP/1', 'HTTPS/1.1', 'http/1.1', 'HTTP/1.1 x'][n % 5]!), 'latin1');
          case 'space-in-target': return Buffer.from(ok.toString('latin1').replace(' HTTP/1.1', ' x HTTP/1.1'), 'latin1');
          case 'header-no-colon': return withHeaders('X-Broken header');
          case 'big-header': return withHeaders(`X-Big: ${'b'.repeat(20_000 + (n % 50_000))}`);
          case 'raw-high-byte': return Buffer.concat([Buffer.from(`GET /kv/`), Buffer.from(noise.map((x) => x | 0x80)), Buffer.from(' HTTP/1.1\r\nHost: h\r\n\r\n')]);
          default: return Buffer.concat([requestBytes({ ...plain, method: 'GET' }, false), ok]); // two requests in one write
        }
      }),
  },
);

// ---- the node ----------------------------------------------------------------------------------

let node: RunningNode | undefined;
let dataDir: string | undefined;
const tag = randomBytes(6).toString('hex');
const known: Array<{ key: string; flags: number; value: Buffer }> = [
  { key: `known-${tag}-bin`, flags: 4294967295, value: randomBytes(500) },
  { key: `known-${tag}-empty`, flags: 0, value: Buffer.alloc(0) },
  { key: `known-${tag}-caf\u00e9-\u{1f4a9}`, flags: 9, value: Buffer.from('{"json": "looking"}\r\n') },
];

function httpPort(): number {
  if (!node) throw new Error('node not started');
  return node.httpPort;
}

/** One request with Connection: close on its own connection: exactly one response. */
async function roundTrip(r: Req): Promise<HttpResponse> {
  const bytes = await exchange(httpPort(), [requestBytes(r, true)], false);
  const responses = parseResponses(bytes, [r.method === 'HEAD']);
  if (responses.length !== 1) throw new Error(`${responses.length} responses to ${show(requestBytes(r, true), 500)}: ${show(bytes, 1500)}`);
  return responses[0]!;
}

beforeAll(async () => {
  dataDir = mkdtempSync(path.join(os.tmpdir(), 'ringkv-fuzz-http-'));
  node = await startNode({ ...defaults, id: 'fuzz-http', host: '127.0.0.1', port: 0, httpPort: 0, storage: 'memory', data: dataDir, maxItemSize: MAX_ITEM_SIZE });
  for (const k of known) {
    const r = await roundTrip({ method: 'PUT', target: `/kv/${encodeURIComponent(k.key)}?flags=${k.flags}`, headers: [['Host', 'h']], body: k.value, chunked: false });
    expect(r.status).toBe(204);
  }
});

afterAll(async () => {
  await node?.close();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

describe('HTTP front-end under fuzzing', () => {
  it(`answers ${FUZZ_RUNS} random well-formed requests with one valid response of the documented status`, async () => {
    await fc.assert(
      fc.asyncProperty(request, fc.boolean(), fc.nat({ max: known.length - 1 }), async (generated, readKnown, which) => {
        // Some reads go to a known key, whose exact bytes must come back.
        const k = known[which]!;
        const r = readKnown && generated.method === 'GET' ? { ...generated, target: `/kv/${encodeURIComponent(k.key)}`, headers: [['Host', 'h']] as Array<[string, string]> } : generated;
        const res = await roundTrip(r);
        const context = () => `${show(requestBytes(r, true), 600)} -> ${res.status} ${show(res.body, 300)}`;
        checkResponse(res, r.method === 'HEAD', context);
        if (res.status === 503) return; // overload: nothing was done, nothing else to check
        const want = expectedOutcome(r);
        expect(want.statuses, context()).toContain(res.status);
        if (want.error !== undefined && r.method !== 'HEAD') expect(errorOf(res), context()).toBe(want.error);
        if (r !== generated) {
          expect(res.status).toBe(200);
          expect(res.body.equals(k.value), context()).toBe(true);
          expect(res.headers.get('x-ringkv-flags')).toBe(String(k.flags));
        }
        if (res.status === 405) expect(res.headers.get('allow')).toBe('GET, HEAD, PUT, DELETE');
      }),
      fuzzParams(FUZZ_RUNS),
    );
  });

  it(`answers ${FUZZ_RUNS} malformed byte streams with valid HTTP responses only, never 5xx, and closes`, async () => {
    await fc.assert(
      fc.asyncProperty(malformed, fc.array(fc.nat(), { maxLength: 4 }), async (bytes, cuts) => {
        // FIN after the bytes: a request left incomplete cannot keep the connection open.
        const reply = await exchange(httpPort(), splitAt(bytes, cuts), true);
        for (const res of parseResponses(reply)) {
          // Node's own bare 400/413/417/431 for bytes that are not HTTP; anything else is the API's.
          if (!isNodeCoreRejection(res)) checkResponse(res, false, () => `${show(bytes, 600)} -> ${show(reply, 600)}`);
        }
      }),
      fuzzParams(FUZZ_RUNS),
    );
  });

  it(`keeps the exact bytes and flags of ${ROUND_TRIP_RUNS} random keys across put, get, head, conditional put and delete`, async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const call = (method: string, target: string, headers: http.OutgoingHttpHeaders = {}, payload?: Buffer) =>
      new Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }>((resolve, reject) => {
        const req = http.request({ host: '127.0.0.1', port: httpPort(), method, path: target, agent, headers: { ...headers, ...(payload ? { 'content-length': payload.length } : {}) } }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
        });
        req.on('error', reject);
        req.end(payload);
      });
    let n = 0;
    try {
      await fc.assert(
        fc.asyncProperty(validKeyText, fc.constantFrom('all', 'minimal', 'lower') as fc.Arbitrary<'all' | 'minimal' | 'lower'>, fc.uint8Array({ maxLength: 1000 }), fc.nat({ max: 0xffffffff }), async (k, how, v, flags) => {
          n++;
          // A fresh key per run (shrinking included): the generated text under a unique prefix.
          const key = `rt${n}-${tag}-${k}`;
          const target = `/kv/${encodeKey(key, how)}`;
          const value = Buffer.from(v);
          const put = await call('PUT', `${target}?flags=${flags}`, {}, value);
          expect(put.status, `PUT ${target}: ${show(put.body)}`).toBe(204);
          const etag = put.headers.etag!;
          expect(etag).toMatch(/^"[0-9]+"$/);
          const get = await call('GET', target);
          expect(get.status).toBe(200);
          expect(get.body.equals(value), `GET ${target} returned other bytes`).toBe(true);
          expect(get.headers['x-ringkv-flags']).toBe(String(flags));
          expect(get.headers.etag).toBe(etag);
          const head = await call('HEAD', target);
          expect([head.status, head.headers['content-length'], head.body.length]).toEqual([200, String(value.length), 0]);
          // Conditional writes: If-None-Match * on an existing key, a stale If-Match, the current one.
          expect((await call('PUT', target, { 'if-none-match': '*' }, Buffer.from('no'))).status).toBe(412);
          const bumped = BigInt(etag.slice(1, -1)) + 1n;
          expect((await call('PUT', target, { 'if-match': `"${bumped}"` }, Buffer.from('no'))).status).toBe(412);
          const cas = await call('PUT', `${target}?flags=${flags}`, { 'if-match': etag }, value);
          expect(cas.status).toBe(204);
          expect(cas.headers.etag).not.toBe(etag);
          const again = await call('GET', target);
          expect(again.body.equals(value)).toBe(true);
          expect((await call('DELETE', target)).status).toBe(204);
          expect((await call('GET', target)).status).toBe(404);
        }),
        fuzzParams(ROUND_TRIP_RUNS),
      );
    } finally {
      agent.destroy();
    }
  });

  it('refuses a huge declared Content-Length before any body byte is sent', async () => {
    await fc.assert(
      fc.asyncProperty(fc.oneof(fc.integer({ min: MAX_ITEM_SIZE, max: Number.MAX_SAFE_INTEGER }), fc.constantFrom(MAX_ITEM_SIZE, 2 ** 31, 2 ** 32 + 1, 99999999999)), async (declared) => {
        // Headers only, and no FIN: the answer must not wait for the body.
        const head = Buffer.from(`PUT /kv/huge-${tag} HTTP/1.1\r\nHost: h\r\nContent-Length: ${declared}\r\n\r\n`);
        const reply = await exchange(httpPort(), [head], false);
        const [res, ...more] = parseResponses(reply);
        expect(more).toHaveLength(0);
        checkResponse(res!, false, () => `Content-Length ${declared}`);
        expect([res!.status, errorOf(res!)]).toEqual([413, 'too_large']);
      }),
      fuzzParams(200),
    );
  });

  it('cuts off an endless chunked upload instead of buffering it', async () => {
    const socket = net.connect(httpPort(), '127.0.0.1');
    const received: Buffer[] = [];
    socket.on('data', (d: Buffer) => received.push(d));
    socket.on('error', () => {});
    const closed = new Promise<void>((r) => socket.on('close', () => r()));
    await new Promise<void>((r) => socket.once('connect', () => r()));
    socket.write(`PUT /kv/endless-${tag} HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n`);
    const chunk = Buffer.concat([Buffer.from('10000\r\n'), Buffer.alloc(0x10000, 'e'), Buffer.from('\r\n')]);
    let sent = 0;
    const cap = 64 * 1024 * 1024; // far beyond every kernel buffer: the server must cut first
    while (!socket.destroyed && sent < cap) {
      await new Promise<void>((r) => socket.write(chunk, () => r()));
      sent += chunk.length;
    }
    await Promise.race([closed, new Promise((r) => setTimeout(r, 5000))]);
    socket.destroy();
    expect(sent, 'the server read a 64 MiB upload to a 4 KiB item').toBeLessThan(cap);
    const [res] = parseResponses(Buffer.concat(received));
    expect([res?.status, res && errorOf(res)]).toEqual([413, 'too_large']);
  });

  it('is still up afterwards, with every known key intact', async () => {
    const health = await roundTrip({ method: 'GET', target: '/healthz', headers: [['Host', 'h']], body: Buffer.alloc(0), chunked: false });
    expect([health.status, health.body.toString()]).toEqual([200, '{"status":"ok"}']);
    for (const k of known) {
      const res = await roundTrip({ method: 'GET', target: `/kv/${encodeURIComponent(k.key)}`, headers: [['Host', 'h']], body: Buffer.alloc(0), chunked: false });
      expect(res.status).toBe(200);
      expect(res.body.equals(k.value), k.key).toBe(true);
      expect(res.headers.get('x-ringkv-flags')).toBe(String(k.flags));
    }
  });
});

// Gaps the fuzzing above found in http.ts, now closed: CONNECT used to get no response,
// and Node's own parser errors a bare 400 without the documented JSON body.
describe('HTTP front-end: requests Node itself refuses', () => {
  it('answers a CONNECT request with an HTTP response', async () => {
    const reply = await exchange(httpPort(), [Buffer.from('CONNECT h:80 HTTP/1.1\r\nHost: h\r\n\r\n')], false);
    expect(parseResponses(reply)).toHaveLength(1);
  });

  it('answers malformed HTTP with a JSON {error, message} body', async () => {
    const reply = await exchange(httpPort(), [Buffer.from('PUT /kv/a HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n')], true);
    const [res] = parseResponses(reply);
    checkResponse(res!, false, () => 'Content-Length: -1');
  });
});
