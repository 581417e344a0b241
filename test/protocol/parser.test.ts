// The memcached parser is a pure function over (buffer, offset): these tests drive it
// with valid streams split at random points, with random bytes, and with the edge cases
// whose exact error memcached 1.6.18 gives.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { ParseResult } from '../../server/protocol/memcached/commands.js';
import { keyIsValid, parseCommand, parseFlags, parseI32, parseU64 } from '../../server/protocol/memcached/parser.js';

const limits = { maxGetLineBytes: 1 << 20, maxValueBytes: 1 << 20 };

type Outcome = Exclude<ParseResult, { type: 'need-more' }>;

/** Parse a stream delivered in the given chunks, as a connection does (swallowing refused blocks). */
function parseChunks(chunks: Buffer[]): Array<Outcome | 'closed'> {
  const out: Array<Outcome | 'closed'> = [];
  let buf = Buffer.alloc(0);
  let swallow = 0;
  for (let chunk of chunks) {
    if (swallow > 0) {
      const n = Math.min(swallow, chunk.length);
      swallow -= n;
      chunk = chunk.subarray(n);
    }
    buf = Buffer.concat([buf, chunk]);
    let off = 0;
    for (;;) {
      if (off >= buf.length) break;
      const r = parseCommand(buf, off, limits);
      if (r.type === 'need-more') break;
      if (r.type === 'close') {
        out.push('closed');
        return out;
      }
      off = r.next;
      if (r.swallow !== undefined) {
        const n = Math.min(buf.length - off, r.swallow);
        off += n;
        swallow = r.swallow - n;
      }
      out.push(r);
    }
    buf = buf.subarray(off);
  }
  return out;
}

/** Comparable form: `next` offsets differ between splits, so drop them. */
function shape(results: Array<Outcome | 'closed'>): unknown[] {
  return results.map((r) => {
    if (r === 'closed') return r;
    if (r.type === 'command') return { command: r.command };
    if (r.type === 'error') return { error: r.reply };
    return r;
  });
}

function splitAt(buf: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (buf.length + 1)))].sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let prev = 0;
  for (const p of points) {
    chunks.push(buf.subarray(prev, p));
    prev = p;
  }
  chunks.push(buf.subarray(prev));
  return chunks;
}

const keyArb = fc.stringMatching(/^[!-~]{1,40}$/);
const valueArb = fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a));

/** A valid command, as bytes. */
const commandArb = fc.oneof(
  fc.tuple(keyArb, valueArb, fc.nat({ max: 0xffffffff }), fc.boolean()).map(([k, v, f, noreply]) =>
    Buffer.concat([Buffer.from(`set ${k} ${f} 0 ${v.length}${noreply ? ' noreply' : ''}\r\n`), v, Buffer.from('\r\n')]),
  ),
  fc.array(keyArb, { minLength: 1, maxLength: 5 }).map((ks) => Buffer.from(`get ${ks.join(' ')}\r\n`)),
  fc.tuple(keyArb, fc.bigInt({ min: 0n, max: (1n << 64n) - 1n })).map(([k, d]) => Buffer.from(`incr ${k} ${d}\r\n`)),
  keyArb.map((k) => Buffer.from(`delete ${k}\r\n`)),
  fc.tuple(keyArb, valueArb).map(([k, v]) => Buffer.concat([Buffer.from(`ms ${k} ${v.length} T30 F5 c\r\n`), v, Buffer.from('\r\n')])),
  keyArb.map((k) => Buffer.from(`mg ${k} v k c f s t\r\n`)),
  fc.constant(Buffer.from('mn\r\n')),
  fc.constant(Buffer.from('version\n')),
);

describe('memcached parser', () => {
  it('parses a stream the same whatever the TCP segmentation', () => {
    fc.assert(
      fc.property(fc.array(commandArb, { minLength: 1, maxLength: 12 }), fc.array(fc.nat(), { maxLength: 20 }), (cmds, cuts) => {
        const stream = Buffer.concat(cmds);
        const whole = shape(parseChunks([stream]));
        expect(whole).toHaveLength(cmds.length);
        expect(shape(parseChunks(splitAt(stream, cuts)))).toEqual(whole);
      }),
      { numRuns: 300 },
    );
  });

  it('parses a stream delivered one byte at a time', () => {
    const stream = Buffer.from('set a 0 0 4\r\na\r\nb\r\nget a b\r\nmg a v\r\n');
    const bytes = [...stream].map((b) => Buffer.from([b]));
    expect(shape(parseChunks(bytes))).toEqual(shape(parseChunks([stream])));
  });

  it('never throws on random bytes and always makes progress', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 3000 }), (bytes) => {
        const buf = Buffer.from(bytes);
        let off = 0;
        for (let i = 0; i < 10_000 && off < buf.length; i++) {
          const r = parseCommand(buf, off, limits);
          if (r.type === 'need-more' || r.type === 'close') return;
          expect(r.next).toBeGreaterThan(off);
          off = r.next;
        }
      }),
      { numRuns: 500 },
    );
  });

  it('keeps data blocks binary-safe: a value may contain \\r\\n and NUL', () => {
    const value = Buffer.from('a\r\nb\0c\r\n');
    const r = parseCommand(Buffer.concat([Buffer.from(`set k 0 0 ${value.length}\r\n`), value, Buffer.from('\r\n')]), 0, limits);
    expect(r.type).toBe('command');
    if (r.type === 'command' && r.command.kind === 'store') expect(r.command.value.equals(value)).toBe(true);
  });

  it('waits for the whole data block', () => {
    expect(parseCommand(Buffer.from('set k 0 0 5\r\nabc'), 0, limits)).toEqual({ type: 'need-more' });
  });

  it('answers a bad data chunk and resumes after <bytes>+2', () => {
    const buf = Buffer.from('set k 0 0 1\r\nxy\r\nmn\r\n');
    const r = parseCommand(buf, 0, limits);
    expect(r).toMatchObject({ type: 'error', reply: 'CLIENT_ERROR bad data chunk\r\n' });
    // "xy\r" consumed, then "\n" is an empty line.
    expect(r.type === 'error' && buf.subarray(r.next).toString()).toBe('\nmn\r\n');
  });

  it('does not swallow the data block after a bad command line', () => {
    const r = parseCommand(Buffer.from('set k abc 0 1\r\nx\r\n'), 0, limits);
    expect(r).toMatchObject({ type: 'error', reply: 'CLIENT_ERROR bad command line format\r\n', next: 15 });
  });

  it('swallows, without buffering, the block of a value larger than an item', () => {
    const r = parseCommand(Buffer.from('set k 0 0 2000000\r\nabc'), 0, limits);
    expect(r).toMatchObject({ type: 'command', swallow: 2000002, command: { kind: 'too-large', mode: 'set', key: 'k' } });
  });

  it('closes on a 2 KiB line without a newline unless it is a get', () => {
    expect(parseCommand(Buffer.from('x'.repeat(2049)), 0, limits)).toMatchObject({ type: 'close' });
    expect(parseCommand(Buffer.from('get ' + 'k '.repeat(2000)), 0, limits)).toEqual({ type: 'need-more' });
    expect(parseCommand(Buffer.from('get ' + 'k '.repeat(2000)), 0, { ...limits, maxGetLineBytes: 3000 })).toMatchObject({ type: 'close' });
  });

  it('suppresses error replies under noreply and reports them otherwise', () => {
    expect(parseCommand(Buffer.from('incr k abc noreply\r\n'), 0, limits)).toMatchObject({ type: 'error', reply: '' });
    expect(parseCommand(Buffer.from('incr k abc\r\n'), 0, limits)).toMatchObject({ reply: 'CLIENT_ERROR invalid numeric delta argument\r\n' });
  });

  it('answers ERROR for unknown commands, upper case and wrong token counts', () => {
    for (const line of ['GET k', 'bogus', '', 'set k 0 0', 'incr k', 'touch k', 'delete', 'get']) {
      expect(parseCommand(Buffer.from(`${line}\r\n`), 0, limits)).toMatchObject({ type: 'error', reply: 'ERROR\r\n' });
    }
  });

  it('refuses keys over 250 bytes in any position of a multi-get', () => {
    const r = parseCommand(Buffer.from(`get a ${'k'.repeat(251)} b\r\n`), 0, limits);
    expect(r).toMatchObject({ type: 'error', reply: 'CLIENT_ERROR bad command line format\r\n' });
  });

  it('parses meta flags in request order and rejects bad ones', () => {
    const r = parseCommand(Buffer.from('mg k v Oabc T30 k\r\n'), 0, limits);
    expect(r.type === 'command' && r.command.kind === 'mg' && r.command.flags.map((f) => f.letter).join('')).toBe('vOTk');
    expect(parseCommand(Buffer.from('mg k v v\r\n'), 0, limits)).toMatchObject({ reply: 'CLIENT_ERROR duplicate flag\r\n' });
    expect(parseCommand(Buffer.from('mg k !\r\n'), 0, limits)).toMatchObject({ reply: 'CLIENT_ERROR invalid flag\r\n' });
    expect(parseCommand(Buffer.from('ms k 1 MX\r\nx\r\n'), 0, limits)).toMatchObject({ reply: 'CLIENT_ERROR invalid mode for ms M token\r\n', next: 14 });
  });

  it('decodes base64 keys under the b flag', () => {
    const r = parseCommand(Buffer.from(`mg ${Buffer.from('a b').toString('base64')} b v\r\n`), 0, limits);
    expect(r.type === 'command' && r.command.kind === 'mg' && r.command.key).toBe(false); // 'a b' has a space: refused
    const ok = parseCommand(Buffer.from(`mg ${Buffer.from('k\u00e9').toString('base64')} b v\r\n`), 0, limits);
    expect(ok.type === 'command' && ok.command.kind === 'mg' && ok.command.key).toBe(Buffer.from('k\u00e9').toString('latin1'));
  });
});

describe('numeric tokens follow strtol/strtoul', () => {
  it('parses int32 exptimes and refuses overflow', () => {
    expect(parseI32('-1')).toBe(-1);
    expect(parseI32('+5')).toBe(5);
    expect(parseI32('2147483647')).toBe(2147483647);
    expect(parseI32('2147483648')).toBeUndefined();
    expect(parseI32('1x')).toBeUndefined();
    expect(parseI32('')).toBeUndefined();
  });

  it('truncates client flags to 32 bits as 1.6.18 stores them, refuses negatives', () => {
    expect(parseFlags('4294967295')).toBe(4294967295);
    expect(parseFlags('4294967296')).toBe(0);
    expect(parseFlags('-1')).toBeUndefined();
  });

  it('parses u64 deltas in range only', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), (n) => {
        expect(parseU64(n.toString())).toBe(n);
      }),
    );
    expect(parseU64('18446744073709551616')).toBeUndefined();
    expect(parseU64('-1')).toBeUndefined();
  });

  it('accepts keys of 1..250 bytes without space, NUL or line feed, as memcached does', () => {
    expect(keyIsValid('k'.repeat(250))).toBe(true);
    expect(keyIsValid('k'.repeat(251))).toBe(false);
    expect(keyIsValid('')).toBe(false);
    // memcached 1.6.18 splits on spaces only: tabs and other control bytes are key bytes.
    expect(keyIsValid('a\tb')).toBe(true);
    expect(keyIsValid('\x10\x18memcaslap')).toBe(true);
    expect(keyIsValid('a b')).toBe(false);
    expect(keyIsValid('a\0b')).toBe(false);
    expect(keyIsValid('a\nb')).toBe(false);
    expect(keyIsValid('\u00e9')).toBe(true);
  });
});
