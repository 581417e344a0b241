// server/overload.ts on its own: the in-flight bound counts admit/done exactly, the lag
// bound refuses while the event loop is held (and only then), and close() stops the timer.
import { afterEach, describe, expect, it } from 'vitest';
import { Admission } from '../../server/overload.js';
import { sleep } from '../helpers/async.js';

const opened: Admission[] = [];
afterEach(() => {
  for (const a of opened.splice(0)) a.close();
});

function admission(maxInflight: number, maxLagMs: number): Admission {
  const a = new Admission({ maxInflight, maxLagMs });
  opened.push(a);
  return a;
}

/** Holds the event loop for `ms` without yielding. */
function busyWait(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    // spin
  }
}

describe('Admission: the in-flight bound', () => {
  it('admits up to maxInflight, refuses the next, and admits again after done()', () => {
    const a = admission(3, 0);
    expect([a.admit(), a.admit(), a.admit()]).toEqual([true, true, true]);
    expect(a.inflight).toBe(3);
    expect(a.admit()).toBe(false);
    expect(a.admit()).toBe(false);
    // A refusal is not in flight.
    expect(a.inflight).toBe(3);
    expect(a.counters).toEqual({ rejected_inflight: 2, rejected_lag: 0 });
    expect(a.rejected).toBe(2);
    a.done();
    expect(a.inflight).toBe(2);
    expect(a.admit()).toBe(true);
    expect(a.admit()).toBe(false);
    a.done();
    a.done();
    a.done();
    expect(a.inflight).toBe(0);
    expect(a.rejected).toBe(3);
  });

  it('maxInflight 0 is no bound', () => {
    const a = admission(0, 0);
    for (let i = 0; i < 10_000; i++) expect(a.admit()).toBe(true);
    expect(a.inflight).toBe(10_000);
    expect(a.rejected).toBe(0);
  });
});

describe('Admission: the event-loop lag bound', () => {
  it('absorbs one long pause, refuses once every tick has been late past maxLagMs for the standing interval, and admits again once timers run on time', async () => {
    const a = admission(0, 100);
    // Let the timer tick once on time.
    await sleep(20);
    expect(a.admit()).toBe(true);
    a.done();
    // One long pause (a GC, a stolen CPU) is absorbed: no standing queue yet.
    busyWait(300);
    expect(a.lagMs()).toBeGreaterThan(100);
    expect(a.admit()).toBe(true);
    a.done();
    // The loop stays behind: every tick late for longer than the standing interval...
    await sleep(1);
    busyWait(150);
    await sleep(1);
    busyWait(300);
    // ...and now the tail of a long turn is refused.
    expect(a.admit()).toBe(false);
    expect(a.admit()).toBe(false);
    expect(a.counters).toEqual({ rejected_inflight: 0, rejected_lag: 2 });
    expect(a.inflight).toBe(0);
    // Yield for a couple of timer ticks: the loop is on time again.
    await sleep(20);
    await sleep(20);
    expect(a.admit()).toBe(true);
    expect(a.inflight).toBe(1);
    expect(a.counters.rejected_lag).toBe(2);
    expect(a.lagMs()).toBeLessThan(100);
  });

  it('checks the in-flight bound first: a refusal counts once, for one reason', async () => {
    const a = admission(1, 100);
    await sleep(20);
    expect(a.admit()).toBe(true);
    busyWait(300);
    expect(a.admit()).toBe(false);
    expect(a.counters).toEqual({ rejected_inflight: 1, rejected_lag: 0 });
  });

  it('maxLagMs 0 never refuses on lag (and runs no timer)', () => {
    const a = admission(0, 0);
    busyWait(300);
    expect(a.admit()).toBe(true);
    expect(a.lagMs()).toBe(0);
    expect(a.counters.rejected_lag).toBe(0);
  });

  it('close() stops the timer: a held loop is no longer measured', async () => {
    const a = admission(0, 100);
    await sleep(20);
    // While open, a held loop shows as lag.
    busyWait(150);
    expect(a.lagMs()).toBeGreaterThan(100);
    await sleep(20);
    a.close();
    busyWait(150);
    await sleep(20);
    expect(a.lagMs()).toBe(0);
    // ...and never refuses: a closed admission does not hold a stale lag against requests.
    expect(a.admit()).toBe(true);
    expect(a.counters.rejected_lag).toBe(0);
  });
});
