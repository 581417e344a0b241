// HTTP load with autocannon's library API: `GET /kv/:key` on one preloaded key (or, with
// `method: 'PUT'`, `PUT /kv/:key` of a `valueSize`-byte body to that key), an unrecorded
// warm-up run, then the measured run. autocannon's own latency histogram has 1 ms
// resolution (it records integer milliseconds), too coarse for sub-millisecond loopback
// replies, so latencies are also taken from its per-response event into our log-linear
// histogram; throughput is autocannon's completed-request count over its measured duration.
import autocannon from 'autocannon';
import http from 'node:http';
import { assert } from '../../server/util/assert.js';
import { Histogram } from './histogram.js';

export interface HttpLoadSettings {
  host: string;
  port: number;
  key: string;
  valueSize: number;
  conns: number;
  pipelining: number;
  warmupS: number;
  durationS: number;
  /** GET (default) reads the preloaded key; PUT writes a valueSize-byte body to it. */
  method?: 'GET' | 'PUT';
}

export interface HttpLoadReport {
  url: string;
  opsPerS: number;
  requests: number;
  measuredS: number;
  errors: number;
  timeouts: number;
  non2xx: number;
  latencyMs: { p50: number; p99: number; p999: number; max: number; mean: number };
}

/** PUTs the value that the GETs will read; throws unless the server answers 2xx. */
export async function putKey(host: string, port: number, key: string, value: Buffer): Promise<void> {
  const status = await new Promise<number>((resolve, reject) => {
    const req = http.request(
      { host, port, method: 'PUT', path: `/kv/${encodeURIComponent(key)}`, headers: { 'content-length': value.length }, timeout: 5000 },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('timeout', () => req.destroy(new Error('PUT timed out after 5000 ms')));
    req.on('error', reject);
    req.end(value);
  });
  assert(status >= 200 && status < 300, `PUT /kv/${key} answered ${status}`);
}

export async function runHttpLoad(s: HttpLoadSettings): Promise<HttpLoadReport> {
  const url = `http://${s.host}:${s.port}/kv/${encodeURIComponent(s.key)}`;
  await putKey(s.host, s.port, s.key, Buffer.alloc(s.valueSize, 'v'));
  const method = s.method ?? 'GET';
  const common = {
    url,
    connections: s.conns,
    pipelining: s.pipelining,
    timeout: 10,
    ...(method === 'PUT' ? { method, body: Buffer.alloc(s.valueSize, 'w'), headers: { 'content-type': 'application/octet-stream' } } : {}),
  };
  if (s.warmupS > 0) await autocannon({ ...common, duration: s.warmupS });
  const hist = new Histogram();
  const instance = autocannon({ ...common, duration: s.durationS });
  instance.on('response', (_client: unknown, statusCode: number, _bytes: number, responseTimeMs: number) => {
    if (statusCode >= 200 && statusCode < 300) hist.record(responseTimeMs * 1e6);
  });
  const r = await instance;
  const completed = r.requests.total ?? hist.count;
  const ms = (ns: number) => ns / 1e6;
  return {
    url,
    opsPerS: completed / r.duration,
    requests: completed,
    measuredS: r.duration,
    errors: r.errors,
    timeouts: r.timeouts,
    non2xx: r.non2xx,
    latencyMs: {
      p50: ms(hist.quantile(0.5)),
      p99: ms(hist.quantile(0.99)),
      p999: ms(hist.quantile(0.999)),
      max: ms(hist.max),
      mean: ms(hist.mean()),
    },
  };
}
