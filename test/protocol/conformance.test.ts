// Differential conformance: every case in conformance-cases.ts runs on Debian's memcached
// 1.6.18 (the reference) and on a ringkv node, and the normalised reply transcripts must be
// equal, case by case. The same cases run against a node with memory storage and one with
// LevelDB storage; both must answer exactly like memcached.
//
// Validating the cases themselves: `RINGKV_CONFORMANCE_PEER=memcached npx vitest run
// test/protocol/conformance.test.ts` compares memcached with a second memcached process
// instead of ringkv. Every case must pass that way (it proves a case is deterministic and
// that its normalisation is sound) before its ringkv result means anything.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startMemcached, startRingkv, type RunningServer } from '../../bench/lib/servers.js';
import { conformanceCases } from './conformance-cases.js';
import { normalise, runCase } from './conformance-harness.js';

interface Peer {
  readonly label: string;
  readonly start: () => Promise<RunningServer>;
}

const peerKind = process.env.RINGKV_CONFORMANCE_PEER ?? 'ringkv';
if (peerKind !== 'ringkv' && peerKind !== 'memcached') {
  throw new Error(`RINGKV_CONFORMANCE_PEER must be 'ringkv' or 'memcached', not '${peerKind}'`);
}
const peers: readonly Peer[] =
  peerKind === 'memcached'
    ? [{ label: 'second memcached (self-check)', start: () => startMemcached() }]
    : [
        { label: 'ringkv (memory storage)', start: () => startRingkv({ storage: 'memory' }) },
        { label: 'ringkv (level storage)', start: () => startRingkv({ storage: 'level' }) },
      ];

describe('conformance case list', () => {
  it('has at least 80 cases', () => {
    expect(conformanceCases.length).toBeGreaterThanOrEqual(80);
  });

  it('has unique case names', () => {
    const names = conformanceCases.map((c) => c.name);
    expect(names.filter((n, i) => names.indexOf(n) !== i)).toEqual([]);
  });
});

describe('transcript normalisation', () => {
  it('numbers cas uniques by first appearance across the transcript', () => {
    const got = normalise([
      'VALUE k 0 1 77\r\na\r\nEND\r\n',
      'HD c77 kk\r\nVA 2 s2 c90\r\nhi\r\n',
      'ME k exp=-1 la=0 cas=90 fetch=no cls=1 size=62\r\n',
    ]);
    expect(got).toEqual([
      'VALUE k 0 1 <cas1>\r\na\r\nEND\r\n',
      'HD c<cas1> kk\r\nVA 2 s2 c<cas2>\r\nhi\r\n',
      'ME k exp=-1 la=0 cas=<cas2> fetch=no cls=1 size=62\r\n',
    ]);
  });

  it('leaves data blocks, flags and error lines alone', () => {
    const reply = 'VALUE k 1 9\r\nHD c12\r\n\r\nEND\r\nCLIENT_ERROR bad data chunk\r\nEN kc9\r\n';
    expect(normalise([reply])).toEqual([reply]);
  });

  it('hides version and stats values, keeps the request label', () => {
    expect(normalise(['"version\\r\\n" => VERSION 1.6.18\r\nSTAT pid 42\r\nEND\r\n'])).toEqual([
      '"version\\r\\n" => VERSION <v>\r\nSTAT pid <v>\r\nEND\r\n',
    ]);
  });

  it('shortens long runs losslessly', () => {
    expect(normalise([`VALUE k 0 40\r\n${'a'.repeat(40)}\r\nEND\r\n`])).toEqual(['VALUE k 0 40\r\n«a×40»\r\nEND\r\n']);
  });
});

describe.each(peers)('memcached text protocol: $label vs memcached 1.6.18', (peer) => {
  let reference: RunningServer | undefined;
  let subject: RunningServer | undefined;

  beforeAll(async () => {
    [reference, subject] = await Promise.all([startMemcached(), peer.start()]);
  });

  afterAll(async () => {
    await Promise.all([reference?.stop(), subject?.stop()]);
  });

  it.each(conformanceCases.map((testCase, index) => ({ name: testCase.name, testCase, index })))('$name', async ({ testCase, index }) => {
    if (!reference || !subject) throw new Error('servers did not start');
    // Cases run one at a time on each server (keys are per case, flush_all cases come last);
    // the two servers run the same case concurrently.
    const [expected, actual] = await Promise.all([
      runCase(reference.port, testCase, index),
      runCase(subject.port, testCase, index),
    ]);
    expect(normalise(actual), `${peer.label} differs from memcached`).toEqual(normalise(expected));
  });
});
