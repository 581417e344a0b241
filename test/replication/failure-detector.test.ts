// The failure detector (server/replication/failure-detector.ts): a peer is down after a
// failed call and up after any answered one; up listeners hear each down -> up transition
// exactly once; a heartbeat pings only peers that are down or quiet for a heartbeat, with at
// most one ping in flight per peer, and a ping's outcome feeds failed/answered. Time moves
// only through a ManualClock and every ping is a promise the test settles by hand.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ManualClock } from '../../server/clock.js';
import { FailureDetector } from '../../server/replication/failure-detector.js';
import { AssertionError } from '../../server/util/assert.js';

const HB = 1000;

interface Ping {
  readonly peer: string;
  answer(): void;
  fail(): void;
}

/** A detector whose pings wait until the test answers or fails them. */
function harness(heartbeatMs = HB) {
  const clock = new ManualClock();
  const pings: Ping[] = [];
  const fd = new FailureDetector({
    now: () => clock.now(),
    heartbeatMs,
    ping: (peer) =>
      new Promise<void>((resolve, reject) => {
        pings.push({ peer, answer: resolve, fail: () => reject(Object.assign(new Error('timeout'), { code: 'TIMEOUT' })) });
      }),
  });
  const ups: string[] = [];
  fd.onUp((p) => ups.push(p));
  /** Pings started since the last call, by peer. */
  let seen = 0;
  const started = () => {
    const fresh = pings.slice(seen).map((p) => p.peer);
    seen = pings.length;
    return fresh.sort();
  };
  /** The newest ping to `peer`. */
  const last = (peer: string) => {
    const p = pings.filter((x) => x.peer === peer).at(-1);
    if (!p) throw new Error(`no ping to ${peer}`);
    return p;
  };
  return { clock, fd, pings, ups, started, last };
}

/** Lets ping outcomes (then/finally chains) run. */
const flush = () => new Promise<void>((r) => setImmediate(r));

describe('failed and answered', () => {
  it('marks a peer down after a failed call and up after an answered one', () => {
    const { fd } = harness();
    expect(fd.isDown('a')).toBe(false);
    fd.failed('b');
    fd.failed('a');
    expect(fd.isDown('a')).toBe(true);
    expect(fd.isDown('b')).toBe(true);
    expect(fd.isDown('c')).toBe(false);
    expect(fd.downPeers()).toEqual(['a', 'b']);
    fd.answered('a');
    expect(fd.isDown('a')).toBe(false);
    expect(fd.downPeers()).toEqual(['b']);
  });

  it('counts down transitions, not failures', () => {
    const { fd } = harness();
    fd.failed('a');
    fd.failed('a');
    fd.failed('a');
    expect(fd.downs).toBe(1);
    fd.answered('a');
    fd.failed('a');
    expect(fd.downs).toBe(2);
  });

  it('tells every up listener exactly once per down -> up transition', () => {
    const { fd, ups } = harness();
    const second: string[] = [];
    fd.onUp((p) => second.push(p));
    fd.answered('a'); // never down: no transition
    expect(ups).toEqual([]);
    fd.failed('a');
    fd.failed('a');
    fd.answered('a');
    fd.answered('a'); // already up
    expect(ups).toEqual(['a']);
    expect(second).toEqual(['a']);
    fd.failed('a');
    fd.failed('b');
    fd.answered('b');
    fd.answered('a');
    expect(ups).toEqual(['a', 'b', 'a']);
    expect(second).toEqual(['a', 'b', 'a']);
  });

  it('a listener sees the peer already up', () => {
    const { fd } = harness();
    const states: boolean[] = [];
    fd.onUp((p) => states.push(fd.isDown(p)));
    fd.failed('a');
    fd.answered('a');
    expect(states).toEqual([false]);
  });

  it('forget drops a peer without an up event', () => {
    const { fd, ups } = harness();
    fd.failed('a');
    fd.forget('a');
    expect(fd.isDown('a')).toBe(false);
    expect(fd.downPeers()).toEqual([]);
    fd.answered('a');
    expect(ups).toEqual([]);
  });

  it('refuses a heartbeat that is not positive', () => {
    expect(() => harness(0)).toThrow(AssertionError);
    expect(() => harness(-5)).toThrow(AssertionError);
  });
});

describe('beat', () => {
  it('pings peers never heard from, then only those quiet for a full heartbeat', async () => {
    const { clock, fd, started, last } = harness();
    fd.beat(['a', 'b', 'c']);
    expect(started()).toEqual(['a', 'b', 'c']);
    last('a').answer();
    last('b').answer();
    last('c').answer();
    await flush();

    clock.advance(HB - 1);
    fd.answered('c'); // ordinary traffic counts as hearing from c
    fd.beat(['a', 'b', 'c']);
    expect(started()).toEqual([]);

    clock.advance(1); // a and b now quiet for exactly a heartbeat; c heard 1 ms ago
    fd.beat(['a', 'b', 'c']);
    expect(started()).toEqual(['a', 'b']);
    for (const p of ['a', 'b']) last(p).answer();
    await flush();

    clock.advance(HB - 1);
    fd.beat(['a', 'b', 'c']);
    expect(started()).toEqual(['c']);
  });

  it('pings only the peers it is given', () => {
    const { fd, started } = harness();
    fd.beat(['b']);
    expect(started()).toEqual(['b']);
    fd.beat([]);
    expect(started()).toEqual([]);
  });

  it('never has two pings in flight for one peer', async () => {
    const { clock, fd, pings, started, last } = harness();
    fd.beat(['a', 'b']);
    expect(started()).toEqual(['a', 'b']);
    for (let i = 0; i < 5; i++) {
      clock.advance(10 * HB);
      fd.beat(['a', 'b']);
    }
    expect(started()).toEqual([]);
    fd.failed('a'); // down peers are pinged every beat, but still one at a time
    fd.beat(['a', 'b']);
    expect(started()).toEqual([]);

    // Once a's ping settles, the next beat may ping it again (it is still quiet).
    last('a').answer();
    await flush();
    expect(fd.isDown('a')).toBe(false);
    clock.advance(HB);
    fd.beat(['a', 'b']);
    expect(started()).toEqual(['a']);
    expect(pings.filter((p) => p.peer === 'b')).toHaveLength(1);
  });

  it('marks a peer down when its ping fails, and keeps pinging it every beat until one answers', async () => {
    const { fd, ups, started, last } = harness();
    fd.beat(['a']);
    expect(started()).toEqual(['a']);
    last('a').fail();
    await flush();
    expect(fd.isDown('a')).toBe(true);
    expect(fd.downs).toBe(1);

    // No time passes: a down peer is pinged anyway.
    fd.beat(['a']);
    expect(started()).toEqual(['a']);
    last('a').fail();
    await flush();
    expect(fd.isDown('a')).toBe(true);
    expect(fd.downs).toBe(1);
    expect(ups).toEqual([]);

    fd.beat(['a']);
    expect(started()).toEqual(['a']);
    last('a').answer();
    await flush();
    expect(fd.isDown('a')).toBe(false);
    expect(ups).toEqual(['a']);

    // Up and just heard from: left alone.
    fd.beat(['a']);
    expect(started()).toEqual([]);

    // A call fails right after a: down now, so pinged at once though heard 0 ms ago.
    fd.failed('a');
    fd.beat(['a']);
    expect(started()).toEqual(['a']);
  });

  it('a ping failing after a call answered marks the peer down again (the latest outcome wins)', async () => {
    const { clock, fd, started, last } = harness();
    fd.beat(['a']);
    expect(started()).toEqual(['a']);
    clock.advance(5);
    fd.answered('a');
    last('a').fail();
    await flush();
    expect(fd.isDown('a')).toBe(true);
  });
});

describe('start and stop', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('beats every heartbeat over the peers read at each beat, until stopped', async () => {
    vi.useFakeTimers();
    const { fd, started, last } = harness();
    let peers = ['a'];
    fd.start(() => peers);
    expect(() => fd.start(() => peers)).toThrow(AssertionError);
    expect(started()).toEqual([]);
    vi.advanceTimersByTime(HB);
    expect(started()).toEqual(['a']);
    last('a').fail();
    await vi.advanceTimersByTimeAsync(0);
    expect(fd.isDown('a')).toBe(true);
    peers = ['a', 'b'];
    vi.advanceTimersByTime(HB);
    expect(started()).toEqual(['a', 'b']);
    fd.stop();
    last('a').fail();
    last('b').fail();
    await vi.advanceTimersByTimeAsync(10 * HB);
    expect(started()).toEqual([]);
  });
});
