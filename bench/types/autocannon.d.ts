// The part of autocannon 8's library API that the benchmarks use (the package ships no
// types). Shapes follow node_modules/autocannon/lib/{init,run,aggregateResult}.js.
declare module 'autocannon' {
  import type { EventEmitter } from 'node:events';

  export interface Options {
    url: string;
    connections?: number;
    pipelining?: number;
    /** seconds */
    duration?: number;
    /** seconds before a request counts as a timeout */
    timeout?: number;
    method?: string;
    headers?: Record<string, string>;
    body?: string | Buffer;
    /** stop after this many requests overall */
    maxOverallRequests?: number;
  }

  /** Histogram summary; percentiles are keys like p50, p99, p99_9. */
  export interface Stat {
    average: number;
    mean: number;
    stddev: number;
    min: number;
    max: number;
    total?: number;
    p50: number;
    p90: number;
    p99: number;
    p99_9: number;
  }

  export interface Result {
    url: string;
    connections: number;
    pipelining: number;
    /** seconds, measured by autocannon */
    duration: number;
    errors: number;
    timeouts: number;
    non2xx: number;
    '2xx': number;
    /** per-second request samples; `total` is completed requests */
    requests: Stat & { sent: number };
    /** milliseconds */
    latency: Stat & { totalCount: number };
    throughput: Stat;
  }

  /** Emits 'response' (client, statusCode, resBytes, responseTimeMs) per reply. */
  export interface Instance extends EventEmitter, PromiseLike<Result> {
    stop(): void;
  }

  export default function autocannon(opts: Options): Instance;
}
