// versionTag, the digest a quorum read sends with rep.get: a replica answers `true` instead
// of its record when the tags match, so a match must mean the very same versions.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { versionTag } from '../../server/replication/replicator.js';
import { mergeRecords, sameVersions } from '../../server/replication/versions.js';
import { decodeRecord, encodeRecord, type Hlc, type StoredRecord, type VectorClock } from '../../server/storage/record.js';

const NODES = ['a', 'b', 'c', 'n-1', 'n.2'] as const;
const clockArb: fc.Arbitrary<VectorClock> = fc
  .array(fc.tuple(fc.constantFrom(...NODES), fc.integer({ min: 1, max: 3 })), { maxLength: 4 })
  .map((entries) => Object.fromEntries(entries));
const hlcArb: fc.Arbitrary<Hlc> = fc.record({ wallMs: fc.nat({ max: 3 }), logical: fc.nat({ max: 1 }) });

function rec(value: string | null, clock: VectorClock, ts: Hlc): StoredRecord {
  return { value: Buffer.from(value ?? ''), flags: 0, expiresAtMs: 0, version: { clock, ts }, tombstone: value === null, fetched: false, accessedMs: ts.wallMs };
}
const versionArb = fc.record({ value: fc.constantFrom(null, 'x', 'y'), clock: clockArb, ts: hlcArb }).map((f) => rec(f.value, f.clock, f.ts));
// Records as replicas hold them: one version, or the merge of a few (siblings when concurrent).
const recordArb = fc.array(versionArb, { minLength: 1, maxLength: 3 }).map((vs) => mergeRecords(vs, 8).record);

describe('versionTag', () => {
  it('equal tags mean the same versions, and the same versions (as a replica decodes them) give equal tags', () => {
    fc.assert(
      fc.property(recordArb, recordArb, (a, b) => {
        if (versionTag(a) === versionTag(b)) expect(sameVersions(a, b)).toBe(true);
        expect(versionTag(decodeRecord(encodeRecord(a)))).toBe(versionTag(a));
      }),
      { numRuns: 1000 },
    );
  });

  it('tells apart what a read must not take for equal: another timestamp, a tombstone, another clock', () => {
    const base = rec('x', { a: 2, b: 1 }, { wallMs: 5, logical: 0 });
    expect(versionTag({ ...base })).toBe(versionTag(base));
    expect(versionTag({ ...base, value: Buffer.from('other') })).toBe(versionTag(base)); // one version, one value
    expect(versionTag({ ...base, version: { ...base.version, ts: { wallMs: 5, logical: 1 } } })).not.toBe(versionTag(base));
    expect(versionTag({ ...base, tombstone: true })).not.toBe(versionTag(base));
    expect(versionTag({ ...base, version: { ...base.version, clock: { a: 2, b: 2 } } })).not.toBe(versionTag(base));
    // Ids outside the node-id alphabet cannot forge another clock's tag.
    const forged = rec('x', { 'a:2|b': 1 }, { wallMs: 5, logical: 0 });
    expect(versionTag(forged)).not.toBe(versionTag(rec('x', { a: 2, b: 1 }, { wallMs: 5, logical: 0 })));
  });
});
