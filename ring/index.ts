// ring/: placement as a pure library (no I/O, no clocks). Hashing, virtual-node tokens,
// ranges, owners, preference lists and ring diffs. Call `await initHash()` once before
// building rings or hashing keys.
export { AssertionError } from './assert.js';
export { HashNotInitializedError, hash64, initHash, keyPosition } from './hash.js';
export {
  Ring,
  diff,
  diffPreference,
  membersMax,
  positionCount,
  positionMax,
  successorIndex,
  vnodesDefault,
  vnodesMax,
} from './ring.js';
export type { Member, PreferenceMove, RangeMove, RingOptions, RingRange } from './ring.js';
