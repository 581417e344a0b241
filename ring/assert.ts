// Assertions for programmer errors in ring/: they stay on in production (TigerBeetle's
// habit), because a ring that violates its invariants places data on the wrong nodes
// silently, which is far worse than a crash. ring/ depends on nothing of ours, so it
// carries its own copy of the helper rather than importing server/util/assert.ts (which re-exports this class, so one AssertionError serves everywhere).

/** Thrown when a ring invariant or a precondition of a ring function does not hold. */
export class AssertionError extends Error {
  override name = 'AssertionError';
}

export function assert(cond: unknown, msg: string): asserts cond {
  if (!cond) throw new AssertionError(msg);
}
