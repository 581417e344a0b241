/** Assertions for programmer errors: they stay on in production (TigerBeetle's habit). */
export class AssertionError extends Error {
  override name = 'AssertionError';
}

export function assert(cond: unknown, msg: string): asserts cond {
  if (!cond) throw new AssertionError(msg);
}
