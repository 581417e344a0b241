// bench/lib/openloop: the reply parser counts each memcached reply once, in order, whatever
// the chunking (replies split anywhere across reads, many in one read), skips VALUE data by
// its byte count (data holding "END\r\n" is data), tells `SERVER_ERROR busy` from other
// errors, and gives up on a malformed stream. Then the generator against a small fake server:
// open loop offers its rate, busy replies are counted apart from goodput.
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ReplyKind, ReplyParser, runOpenLoop } from '../../bench/lib/openloop.js';

const { Hit, Miss, Stored, Busy, Error: Err } = ReplyKind;

const value = (data: string) => `VALUE key:1 0 ${Buffer.byteLength(data, 'latin1')}\r\n${data}\r\nEND\r\n`;

/** A stream of every reply kind, with the kinds and VALUE sizes it must parse to. */
const cases: Array<{ text: string; kind: ReplyKind; bytes?: number }> = [
  { text: value('abcEND\r\nxyz'), kind: Hit, bytes: 11 },
  { text: 'END\r\n', kind: Miss },
  { text: 'STORED\r\n', kind: Stored },
  { text: 'SERVER_ERROR busy\r\n', kind: Busy },
  { text: 'SERVER_ERROR out of memory storing object\r\n', kind: Err },
  { text: 'SERVER_ERROR busyness\r\n', kind: Err },
  { text: 'CLIENT_ERROR bad data chunk\r\n', kind: Err },
  { text: 'ERROR\r\n', kind: Err },
  { text: value('END\r\n'), kind: Hit, bytes: 5 },
  { text: value(''), kind: Hit, bytes: 0 },
  { text: value('VALUE key:2 0 3\r\nEND\r\nSTORED\r\n'), kind: Hit, bytes: 30 },
  { text: 'SERVER_ERROR busy\r\n', kind: Busy },
  { text: value('x'.repeat(1024)), kind: Hit, bytes: 1024 },
  { text: 'STORED\r\n', kind: Stored },
];
const stream = Buffer.from(cases.map((c) => c.text).join(''), 'latin1');

/** Feeds `chunks` in order; returns the kinds and VALUE sizes reported, and the last feed's result. */
function parse(chunks: Buffer[]): { kinds: ReplyKind[]; bytes: number[]; last: number; parser: ReplyParser } {
  const parser = new ReplyParser();
  const kinds: ReplyKind[] = [];
  const bytes: number[] = [];
  let last = 0;
  for (const c of chunks) {
    last = parser.feed(c, (k) => {
      kinds.push(k);
      if (k === Hit) bytes.push(parser.dataBytes);
      return true;
    });
    if (last < 0) break;
  }
  return { kinds, bytes, last, parser };
}

const expectedKinds = cases.map((c) => c.kind);
const expectedBytes = cases.filter((c) => c.kind === Hit).map((c) => c.bytes!);

describe('ReplyParser', () => {
  it('parses a stream of every reply kind in one chunk', () => {
    const r = parse([stream]);
    expect(r.kinds).toEqual(expectedKinds);
    expect(r.bytes).toEqual(expectedBytes);
    expect(r.parser.pendingBytes).toBe(0);
  });

  it('parses the same whatever the split into two chunks', () => {
    for (let at = 1; at < stream.length; at++) {
      const r = parse([stream.subarray(0, at), stream.subarray(at)]);
      expect(r.kinds, `split at ${at}`).toEqual(expectedKinds);
      expect(r.bytes, `split at ${at}`).toEqual(expectedBytes);
    }
  });

  it('parses the same fed one byte at a time, reporting each reply only once it is complete', () => {
    const parser = new ReplyParser();
    const kinds: ReplyKind[] = [];
    const ends: number[] = [];
    for (let i = 0; i < stream.length; i++) {
      parser.feed(stream.subarray(i, i + 1), (k) => {
        kinds.push(k);
        ends.push(i + 1);
        return true;
      });
    }
    expect(kinds).toEqual(expectedKinds);
    // Each reply is reported exactly when its last byte arrives.
    let end = 0;
    expect(ends).toEqual(cases.map((c) => (end += Buffer.byteLength(c.text, 'latin1'))));
  });

  it('counts busy replies as busy, not as errors', () => {
    const r = parse([Buffer.from('SERVER_ERROR busy\r\nSERVER_ERROR busy\r\nSERVER_ERROR other\r\nSERVER_ERROR busy\r\n', 'latin1')]);
    expect(r.kinds).toEqual([Busy, Busy, Err, Busy]);
  });

  it('stops when the callback gives up', () => {
    const parser = new ReplyParser();
    const seen: ReplyKind[] = [];
    const n = parser.feed(Buffer.from('END\r\nSTORED\r\nEND\r\n', 'latin1'), (k) => {
      seen.push(k);
      return seen.length < 2;
    });
    expect(n).toBe(2);
    expect(seen).toEqual([Miss, Stored]);
  });

  it('gives up on VALUE data not followed by END, and on a malformed VALUE line', () => {
    const bad = parse([Buffer.from('END\r\nVALUE key:1 0 3\r\nabcdEND\r\nSTORED\r\n', 'latin1')]);
    expect(bad.kinds).toEqual([Miss]);
    expect(bad.last).toBe(-1);
    expect(bad.parser.broken).toMatch(/not followed/);
    expect(bad.parser.feed(Buffer.from('STORED\r\n'), () => true)).toBe(-1);
    const line = parse([Buffer.from('VALUE key:1 0 x3\r\nabc\r\nEND\r\n', 'latin1')]);
    expect(line.last).toBe(-1);
    expect(line.kinds).toEqual([]);
  });

  it('bounds the bytes it holds for one reply', () => {
    const parser = new ReplyParser(64);
    expect(parser.feed(Buffer.from('VALUE key:1 0 1000\r\n' + 'x'.repeat(100), 'latin1'), () => true)).toBe(-1);
    expect(parser.broken).toMatch(/unparsed/);
  });
});

/**
 * A memcached-ish server for get/set with 8-byte values: every third request (per
 * connection) answered `SERVER_ERROR busy`, gets otherwise END, sets STORED.
 */
function fakeServer(): net.Server {
  return net.createServer((socket) => {
    let buf = Buffer.alloc(0);
    let n = 0;
    socket.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      const out: string[] = [];
      for (let guard = 0; guard < 1_000_000; guard++) {
        const nl = buf.indexOf('\r\n');
        if (nl < 0) break;
        const line = buf.toString('latin1', 0, nl);
        let used = nl + 2;
        if (line.startsWith('set ')) {
          const size = Number(line.split(' ')[4]);
          if (buf.length < used + size + 2) break;
          used += size + 2;
        }
        buf = buf.subarray(used);
        n++;
        out.push(n % 3 === 0 ? 'SERVER_ERROR busy\r\n' : line.startsWith('get ') ? 'END\r\n' : 'STORED\r\n');
      }
      if (out.length) socket.write(out.join(''));
    });
    socket.on('error', () => socket.destroy());
  });
}

describe('runOpenLoop against a fake server', () => {
  let server: net.Server;
  let port = 0;
  beforeAll(async () => {
    server = fakeServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as net.AddressInfo).port;
  });
  afterAll(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  it('offers its rate open loop and counts busy replies apart from goodput', async () => {
    const r = await runOpenLoop({
      host: '127.0.0.1',
      port,
      mode: 'open',
      rate: 2000,
      conns: 3,
      depth: 1,
      getRatio: 0.5,
      keys: 100,
      valueSize: 8,
      dist: 'uniform',
      zipfS: 0.99,
      warmupS: 0.3,
      durationS: 1,
      preload: false,
      seed: 7,
      tickMs: 1,
      backlogMax: 1000,
    });
    expect(r.errors).toBe(0);
    expect(r.offeredPerS).toBeGreaterThan(1800);
    expect(r.offeredPerS).toBeLessThan(2200);
    expect(r.sent).toBeGreaterThanOrEqual(r.offered - 10);
    const replies = r.ok + r.busy;
    expect(Math.abs(replies - r.offered)).toBeLessThan(r.offered * 0.1);
    // Every third reply is busy: about a third, none of them in the goodput.
    expect(r.busy / replies).toBeGreaterThan(0.28);
    expect(r.busy / replies).toBeLessThan(0.39);
    expect(r.ok).toBe(r.misses + r.stored);
    expect(r.admittedMs.count).toBe(r.ok);
    expect(r.busyMs.count).toBe(r.busy);
    expect(r.droppedByGenerator).toBe(0);
  });
});
