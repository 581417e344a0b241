// Small async helpers for the process tests: sleeping, bounded concurrency, bounded polling.

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Runs `fn` over `items` with at most `limit` calls in flight; results in input order. */
export async function pool<T, R>(items: readonly T[], limit: number, fn: (item: T, i: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      for (let i = next++; i < items.length; i = next++) out[i] = await fn(items[i]!, i);
    }),
  );
  return out;
}

/** Polls `check` every `intervalMs` until it returns true; throws `describe()` after `timeoutMs`. Returns the time it took. */
export async function pollUntil(timeoutMs: number, check: () => Promise<boolean>, describe: () => string, intervalMs = 200): Promise<number> {
  const t0 = Date.now();
  for (;;) {
    if (await check()) return Date.now() - t0;
    if (Date.now() - t0 > timeoutMs) throw new Error(`not within ${timeoutMs} ms: ${describe()}`);
    await sleep(intervalMs);
  }
}

/** What `p` rejects with; throws if it resolves. */
export async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (e) {
    return e;
  }
  throw new Error('expected a rejection');
}

/** SIGCONT to every PID in `frozen` (processes a test SIGSTOPped), then forgets them. */
export function thawAll(frozen: Set<number>): void {
  for (const pid of frozen) {
    try {
      process.kill(pid, 'SIGCONT');
    } catch {
      // already gone
    }
  }
  frozen.clear();
}
