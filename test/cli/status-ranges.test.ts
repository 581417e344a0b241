// `ringkv status` with per-range move reports, as pure functions over plain views: parseView
// checks each range (state and waiting reason from the known lists) and lastTransfer; the
// "moving ranges" table groups ranges by (source, target, state, waiting) with sums, ordered
// by target then state; a failed range is a health problem and a waiting one is not; a
// member's last finished move is one line; the progress line of `ringkv cluster add/remove`
// adds retries and the waiting reason.
import { describe, expect, it } from 'vitest';
import { moveWaiting, progressLine } from '../../client/cluster-cmd.js';
import { BadViewError, formatStatus, parseView, problems, rangeGroups, shorten, summarize, type MasterView, type ViewTransfer } from '../../client/status.js';
import type { WireRangeMove } from '../../server/master/core.js';

const MIB = 1024 * 1024;
const member = (id: string, status: string, extra: object = {}) => ({ id, addrs: { memcached: `h:1${id}`, http: 'h:2', rpc: 'h:3' }, status, lastRenewalAgoMs: 10, pieces: 1, ...extra });
const lease = { start: '0000000000000000', end: '0000000000000000', owner: 'n1', generation: 3, expiresInMs: 1000 };
const range = (over: Partial<WireRangeMove> = {}): WireRangeMove => ({
  start: '0000000000000001',
  end: '0000000000000002',
  source: 'n1',
  target: 'n4',
  state: 'streaming',
  keys: 10,
  bytes: MIB,
  rateBytesPerS: MIB / 2,
  retries: 0,
  ...over,
});
const transfer = (ranges: WireRangeMove[], over: Partial<ViewTransfer> = {}): ViewTransfer => ({
  direction: 'in',
  keys: ranges.reduce((a, r) => a + r.keys, 0),
  bytes: ranges.reduce((a, r) => a + r.bytes, 0),
  fraction: 0.5,
  rateBytesPerS: MIB,
  done: false,
  retries: ranges.reduce((a, r) => a + r.retries, 0),
  ranges,
  ...over,
});
const viewOf = (members: object[]): MasterView => ({ lsn: 7, leaseMs: 3000, members: members as MasterView['members'], leases: [lease] });
/** A view as it comes off the wire: checked by parseView. */
const wire = (members: object[]): unknown => JSON.parse(JSON.stringify(viewOf(members)));

describe('parseView: ranges and lastTransfer', () => {
  it('accepts a transfer with ranges and a lastTransfer', () => {
    const v = parseView(wire([member('n1', 'up', { lastTransfer: transfer([range({ state: 'done' })], { done: true, fraction: 1 }) }), member('n4', 'joining', { transfer: transfer([range({ waiting: 'source-down', error: 'connect ECONNREFUSED' })]) })]));
    expect(v.members[0]!.lastTransfer?.ranges).toHaveLength(1);
    expect(v.members[1]!.transfer?.ranges?.[0]!.waiting).toBe('source-down');
    // Ranges are optional (nodes older than the field).
    expect(() => parseView(wire([member('n4', 'joining', { transfer: transfer([], { ranges: undefined }) })]))).not.toThrow();
  });

  it('rejects a range in an unknown state, an unknown waiting reason, a range without numbers, ranges that are not an array', () => {
    const bad = (t: unknown, field = 'transfer') => () => parseView(wire([member('n4', 'joining', { [field]: t })]));
    expect(bad(transfer([range({ state: 'bogus' as never })]))).toThrow(BadViewError);
    expect(bad(transfer([range({ state: 'bogus' as never })]))).toThrow(/bad transfer of member n4: range 0: bad range state "bogus"/);
    expect(bad(transfer([range(), range({ waiting: 'nap' as never })]))).toThrow(/range 1: bad range waiting reason "nap"/);
    expect(bad(transfer([{ ...range(), keys: 'many' } as never]))).toThrow(BadViewError);
    expect(bad(transfer([{ ...range(), target: undefined } as never]))).toThrow(BadViewError);
    expect(bad(transfer([range({ error: 42 as never })]))).toThrow(BadViewError);
    expect(bad({ ...transfer([]), ranges: { 0: range() } })).toThrow(/ranges must be an array/);
    expect(bad(transfer([], { state: 'sleeping' as never }))).toThrow(/bad transfer state/);
    expect(bad(transfer([], { retries: '2' as never }))).toThrow(BadViewError);
    // lastTransfer is checked the same way.
    expect(bad(transfer([range({ state: 'finished' as never })], { done: true }), 'lastTransfer')).toThrow(/bad lastTransfer of member n4: range 0: bad range state/);
    expect(bad({ direction: 'sideways' }, 'lastTransfer')).toThrow(BadViewError);
    expect(bad(null, 'lastTransfer')).toThrow(BadViewError);
  });
});

describe('formatStatus: moving ranges', () => {
  const longError = `stream.scan to n2 failed: ${'x'.repeat(100)}`;
  const v = viewOf([
    member('n1', 'up'),
    member('n2', 'up'),
    member('n3', 'up'),
    member('n4', 'joining', {
      pieces: 0,
      transfer: transfer([
        range({ source: 'n1', state: 'streaming', keys: 10, bytes: 1 * MIB, rateBytesPerS: 0.5 * MIB, retries: 1 }),
        range({ source: 'n1', state: 'streaming', keys: 20, bytes: 2 * MIB, rateBytesPerS: 0.25 * MIB, retries: 2 }),
        range({ source: 'n2', state: 'streaming', keys: 5, bytes: 0, rateBytesPerS: 0, retries: 3, waiting: 'source-down', error: longError }),
        range({ source: 'n1', state: 'queued', keys: 0, bytes: 0, rateBytesPerS: 0, waiting: 'concurrency' }),
        range({ source: 'n1', state: 'queued', keys: 0, bytes: 0, rateBytesPerS: 0, waiting: 'concurrency' }),
        range({ source: 'n3', state: 'done', keys: 100, bytes: 3 * MIB, rateBytesPerS: 0 }),
      ]),
    }),
    member('n5', 'leaving', {
      transfer: transfer([range({ source: 'n5', target: 'n2', state: 'catching-up', keys: 7, bytes: 0.1 * MIB, rateBytesPerS: 0.1 * MIB })], { direction: 'out' }),
    }),
  ]);

  it('one row per (source, target, state, waiting), with counts and sums, ordered by target then state', () => {
    const groups = rangeGroups(summarize(v).members);
    expect(groups.map((g) => [g.target, g.state, g.source, g.waiting ?? '-', g.ranges, g.keys, g.retries])).toEqual([
      ['n2', 'catching-up', 'n5', '-', 1, 7, 0],
      ['n4', 'queued', 'n1', 'concurrency', 2, 0, 0],
      ['n4', 'streaming', 'n1', '-', 2, 30, 3],
      ['n4', 'streaming', 'n2', 'source-down', 1, 5, 3],
      ['n4', 'done', 'n3', '-', 1, 100, 0],
    ]);
    expect(groups[2]!.bytes).toBe(3 * MIB);
    expect(groups[2]!.rateBytesPerS).toBe(0.75 * MIB);

    const lines = formatStatus('m:1', summarize(v));
    const at = lines.indexOf('moving ranges:');
    // Right after the member table (header + 5 members).
    expect(at).toBe(7);
    const rows = lines.slice(at + 1, at + 7).map((l) => l.trim().split(/\s{2,}/));
    expect(rows).toEqual([
      ['SOURCE', 'TARGET', 'STATE', 'RANGES', 'KEYS', 'MIB', 'MIB/S', 'RETRIES', 'WAITING', 'LAST ERROR'],
      ['n5', 'n2', 'catching-up', '1', '7', '0.1', '0.1', '0', '-', '-'],
      ['n1', 'n4', 'queued', '2', '0', '0.0', '0.0', '0', 'concurrency', '-'],
      ['n1', 'n4', 'streaming', '2', '30', '3.0', '0.8', '3', '-', '-'],
      ['n2', 'n4', 'streaming', '1', '5', '0.0', '0.0', '3', 'source-down', shorten(longError)],
      ['n3', 'n4', 'done', '1', '100', '3.0', '0.0', '0', '-', '-'],
    ]);
    expect(shorten(longError)).toHaveLength(60);
    expect(shorten(longError).endsWith('...')).toBe(true);
    for (const l of lines.slice(at + 1, at + 7)) expect(l.startsWith('  ')).toBe(true);
  });

  it('leaves the other lines as they were; no section without ranges', () => {
    const lines = formatStatus('m:1', summarize(v));
    expect(lines[0]).toBe('master m:1 lsn=7 lease=3000ms members=5 pieces=1');
    expect(lines[5]).toMatch(/^n4\s+-\s+joining 50% 1\.0 MiB\/s\s+h:1n4\s/);
    expect(lines.at(-2)).toBe('moving: none');
    const plain = viewOf([member('n1', 'up'), member('n4', 'joining', { transfer: transfer([], { ranges: undefined }) })]);
    const out = formatStatus('m:1', summarize(plain));
    expect(out.some((l) => l.startsWith('moving ranges'))).toBe(false);
    expect(out.slice(4)).toEqual(['moving: none', 'health: unhealthy: member not up: n4 (joining)']);
  });

  it('a failed range is a health problem with its last error; a range waiting for a down source is not', () => {
    const waiting = viewOf([member('n1', 'up'), member('n4', 'up', { transfer: transfer([range({ waiting: 'source-down', error: 'ECONNREFUSED' }), range({ state: 'queued', waiting: 'source-busy' })]) })]);
    expect(problems(waiting)).toEqual([]);
    expect(summarize(waiting).health.healthy).toBe(true);

    const failed = viewOf([
      member('n1', 'up'),
      member('n4', 'up', {
        transfer: transfer([range({ state: 'failed', error: 'first' }), range({ state: 'failed', error: `second\n${'y'.repeat(80)}` }), range({ state: 'failed' }), range({ state: 'done' })]),
      }),
    ]);
    const p = problems(failed);
    expect(p).toEqual([`n4: 3 ranges failed (last error: ${shorten(`second ${'y'.repeat(80)}`)})`]);
    const lines = formatStatus('m:1', summarize(failed));
    expect(lines.at(-1)).toBe(`health: unhealthy: ${p[0]}`);
    const one = viewOf([member('n1', 'up'), member('n4', 'up', { transfer: transfer([range({ state: 'failed' })]) })]);
    expect(problems(one)).toEqual(['n4: 1 range failed']);
  });

  it('one line per member with a last finished move, left members included', () => {
    const last = transfer(
      Array.from({ length: 192 }, () => range({ state: 'done', keys: 0 })),
      { done: true, fraction: 1, keys: 75012, bytes: 14.3 * MIB, retries: 2 },
    );
    const s = summarize(
      viewOf([
        member('n1', 'up'),
        member('n4', 'up', { lastTransfer: last }),
        member('n5', 'left', { pieces: 0, lastTransfer: transfer([range({ state: 'done', retries: 1 })], { direction: 'out', done: true, fraction: 1, keys: 3, bytes: 0 }) }),
        member('n6', 'up', { lastTransfer: { direction: 'in', keys: 1, bytes: 0, fraction: 1, rateBytesPerS: 0, done: true } }),
      ]),
    );
    const lines = formatStatus('m:1', s);
    expect(lines.filter((l) => l.startsWith('last move of '))).toEqual([
      'last move of n4: in, done, 192 ranges, 75012 keys, 14.3 MiB, 2 retries',
      'last move of n5: out, done, 1 range, 3 keys, 0.0 MiB, 1 retry',
      'last move of n6: in, done, 1 keys, 0.0 MiB',
    ]);
    // After the member table (header + n1, n4, n6), before the left line; healthy.
    expect(lines[5]).toBe('last move of n4: in, done, 192 ranges, 75012 keys, 14.3 MiB, 2 retries');
    expect(lines[8]).toBe('left: n5');
    expect(lines.at(-1)).toBe('health: healthy');
  });
});

describe('progress lines: retries and the waiting reason', () => {
  const t = transfer([range({ state: 'streaming', waiting: 'throttle' }), range({ state: 'queued', waiting: 'source-down' }), range({ state: 'queued' }), range({ state: 'done', waiting: 'lease-pending' })], {
    keys: 1234,
    bytes: 5.1 * MIB,
    fraction: 0.523,
    rateBytesPerS: 3.2 * MIB,
    etaS: 4,
    retries: 3,
  });

  it('adds " retries N" when any and the waiting reason of the least advanced waiting range', () => {
    expect(moveWaiting(t)).toBe('source-down');
    expect(moveWaiting({ ...t, ranges: [...t.ranges!, range({ state: 'failed', waiting: 'receiver-busy' })] })).toBe('receiver-busy');
    expect(moveWaiting({ ...t, ranges: [range({ state: 'queued' })] })).toBeUndefined();
    expect(moveWaiting({ ...t, done: true })).toBeUndefined();
    expect(progressLine({ id: 'n4', status: 'joining', pieces: 0, transfer: t })).toBe('n4 joining: 52% 1234 keys 5.1 MiB 3.2 MiB/s eta 4s retries 3 waiting source-down');
    expect(progressLine({ id: 'n4', status: 'joining', pieces: 0, transfer: { ...t, retries: 0 } })).toBe('n4 joining: 52% 1234 keys 5.1 MiB 3.2 MiB/s eta 4s waiting source-down');
    expect(progressLine({ id: 'n4', status: 'joining', pieces: 0, transfer: { ...t, retries: undefined, ranges: undefined } })).toBe('n4 joining: 52% 1234 keys 5.1 MiB 3.2 MiB/s eta 4s');
    // Over: no waiting reason; retries stay.
    expect(progressLine({ id: 'n4', status: 'left', pieces: 2, transfer: { ...t, direction: 'out' } })).toBe('n4 left: 100% 1234 keys 5.1 MiB 3.2 MiB/s (2 pieces to hand over) retries 3');
  });
});
