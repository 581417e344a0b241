/** Assertions for programmer errors: they stay on in production (TigerBeetle's habit). One class for the whole code base. */
export { AssertionError } from '../../ring/assert.js';
import { AssertionError } from '../../ring/assert.js';

export function assert(cond: unknown, msg: string): asserts cond {
  if (!cond) throw new AssertionError(msg);
}
