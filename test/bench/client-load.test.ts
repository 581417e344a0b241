// bench/lib/client-load (the TS-client load generator), its pure parts: settings validation,
// the CLI round trip (the arguments a parent passes reproduce the settings exactly), the
// open-loop schedule, the preload shards and merging the processes' histograms.
import { describe, expect, it } from 'vitest';
import {
  clientLoadArgs,
  clientLoadCommand,
  clientLoadSettingsOf,
  defaultClientLoadSettings,
  dueBy,
  intendedAt,
  mergeSnapshots,
  shardKeys,
  validateClientLoadSettings,
  type ClientLoadSettings,
} from '../../bench/lib/client-load.js';
import { Histogram } from '../../bench/lib/histogram.js';
import { makeRng } from '../../bench/lib/keys.js';

const valid: ClientLoadSettings = { ...defaultClientLoadSettings, master: '127.0.0.1:7000' };

describe('validateClientLoadSettings', () => {
  it('accepts the defaults with a master', () => {
    expect(() => validateClientLoadSettings(valid)).not.toThrow();
    expect(() => validateClientLoadSettings({ ...valid, mode: 'open', rate: 5000 })).not.toThrow();
  });

  it.each<[Partial<ClientLoadSettings>, RegExp]>([
    [{ master: 'localhost' }, /master/],
    [{ master: 'a b:1' }, /master/],
    [{ concurrency: 0 }, /concurrency/],
    [{ concurrency: 1.5 }, /concurrency/],
    [{ rate: 0 }, /rate/],
    [{ rate: Number.NaN }, /rate/],
    [{ tickMs: 0.5 }, /tick/],
    [{ inflightMax: 0 }, /inflight/],
    [{ getRatio: 1.1 }, /get ratio/],
    [{ keys: 0 }, /keys/],
    [{ valueSize: -1 }, /value size/],
    [{ valueSize: 10 * 1024 * 1024 }, /value size/],
    [{ dist: 'normal' as never }, /dist/],
    [{ durationS: 0 }, /duration/],
    [{ warmupS: -1 }, /warm-up/],
    [{ preloadShards: 3, preloadShard: 3 }, /preload shard/],
    [{ preloadShards: 0 }, /preload shards/],
    [{ timeoutMs: 0 }, /timeout/],
    [{ poolSize: 0 }, /pool size/],
    [{ mode: 'burst' as never }, /mode/],
  ])('refuses %o', (bad, message) => {
    expect(() => validateClientLoadSettings({ ...valid, ...bad })).toThrow(message);
  });
});

describe('the CLI', () => {
  const parse = (args: string[]) => clientLoadSettingsOf(clientLoadCommand().exitOverride().configureOutput({ writeErr: () => {} }).parse(args, { from: 'user' }).opts());

  it('reproduces the settings from the arguments a parent passes', () => {
    const s: ClientLoadSettings = {
      ...valid,
      master: '10.0.0.2:7100',
      mode: 'open',
      concurrency: 7,
      rate: 1234.5,
      tickMs: 2,
      inflightMax: 99,
      getRatio: 0.25,
      keys: 777,
      valueSize: 33,
      dist: 'zipf',
      zipfS: 1.2,
      warmupS: 0.5,
      durationS: 3,
      maxRequests: 4242,
      preload: false,
      preloadShard: 2,
      preloadShards: 3,
      seed: 9,
      timeoutMs: 1500,
      poolSize: 4,
    };
    expect(parse(clientLoadArgs(s))).toEqual(s);
    expect(parse(clientLoadArgs(valid))).toEqual(valid);
  });

  it('refuses an out-of-range argument and a missing master', () => {
    expect(() => parse(['--master', '127.0.0.1:1', '--concurrency', '0'])).toThrow();
    expect(() => parse(['--master', '127.0.0.1:1', '--mode', 'burst'])).toThrow();
    expect(() => parse([])).toThrow();
  });
});

describe('the open-loop schedule', () => {
  it('is due at t0 + i x interval', () => {
    expect(dueBy(100, 100, 0.5, 0, 1000)).toBe(1); // request 0 is due at t0
    expect(dueBy(104.9, 100, 0.5, 0, 1000)).toBe(10);
    expect(dueBy(105, 100, 0.5, 0, 1000)).toBe(11);
    expect(dueBy(99, 100, 0.5, 0, 1000)).toBe(0); // before t0
    expect(intendedAt(10, 100, 0.5)).toBe(105);
  });

  it('never goes back and catches up at most perTickMax a tick', () => {
    expect(dueBy(101, 100, 1, 5, 1000)).toBe(5);
    expect(dueBy(1100, 100, 1, 0, 300)).toBe(300);
    expect(dueBy(1100, 100, 1, 300, 300)).toBe(600);
  });

  it('starts every request once, none before it is due, whatever the ticks', () => {
    const rng = makeRng(7);
    const t0 = 1000;
    const interval = 1000 / 3333; // ms
    let now = t0;
    let scheduled = 0;
    const started: number[] = [];
    // Ticks 0..5 ms apart (a late timer), 2000 of them.
    for (let tick = 0; tick < 2000; tick++) {
      now += rng() * 5;
      const due = dueBy(now, t0, interval, scheduled, 50);
      for (let i = scheduled; i < due; i++) {
        expect(intendedAt(i, t0, interval)).toBeLessThanOrEqual(now);
        started.push(i);
      }
      scheduled = due;
    }
    expect(started).toEqual(Array.from({ length: started.length }, (_, i) => i));
    // Caught up by the end: everything due by `now` was started (the cap lets it catch up).
    expect(started.length).toBeGreaterThan(0);
    expect(dueBy(now, t0, interval, scheduled, Number.MAX_SAFE_INTEGER) - scheduled).toBeLessThanOrEqual(50);
  });
});

describe('preload shards', () => {
  it('cover every key exactly once', () => {
    for (const [keys, shards] of [
      [10, 3],
      [10_000, 3],
      [2, 5],
      [1, 1],
      [7, 7],
    ] as const) {
      const counts = Array.from({ length: shards }, (_, s) => shardKeys(keys, s, shards));
      expect(counts.reduce((a, b) => a + b, 0)).toBe(keys);
      for (let s = 0; s < shards; s++) {
        let n = 0;
        for (let k = s; k < keys; k += shards) n++;
        expect(counts[s]).toBe(n);
      }
    }
  });
});

describe('mergeSnapshots', () => {
  it('gives the histogram of every value recorded in any of them', () => {
    const rng = makeRng(3);
    const parts = [new Histogram(), new Histogram(), new Histogram()];
    const all = new Histogram();
    for (let i = 0; i < 30_000; i++) {
      const v = Math.floor(rng() * rng() * 50_000_000);
      parts[i % 3]!.record(v);
      all.record(v);
    }
    const merged = mergeSnapshots(parts.map((h) => h.snapshot()));
    expect(merged.snapshot()).toEqual(all.snapshot());
    for (const q of [0.5, 0.99, 0.999]) expect(merged.quantile(q)).toBe(all.quantile(q));
  });

  it('keeps min and max of non-empty parts only', () => {
    const a = new Histogram();
    a.record(500);
    const merged = mergeSnapshots([new Histogram().snapshot(), a.snapshot()]);
    expect(merged.count).toBe(1);
    expect(merged.min).toBe(500);
    expect(merged.max).toBe(500);
  });
});
