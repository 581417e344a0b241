// Fuzzing a real node's memcached port over TCP: a node started in-process (memory
// storage, ephemeral ports, 127.0.0.1) holds known keys; then
//   * 10,000 garbage inputs (token soup and random bytes), each on its own connection,
//     written in random chunks: every reply is well-formed memcached (only memcached's own
//     error lines, no SERVER_ERROR from an exception), and the server closes the connection
//     once we send FIN, whatever state the garbage left the parser in;
//   * 10,000 valid pipelined streams, sent once in one write and once split at random
//     points (two connections per case): identical replies, cas uniques and key prefix
//     aside;
//   * lines without \n: the server closes the connection, having read at most the line
//     limit plus one socket read (node's bytes_read counter), never buffering on;
//   * afterwards the node still answers `version`, every known key holds its exact bytes
//     and flags, and no connection is left open.
// Process memory (rss) is deliberately not asserted: too noisy.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaults } from '../../server/config.js';
import { startNode, type RunningNode } from '../../server/node.js';
import { LINE_MAX_BYTES } from '../../server/protocol/memcached/parser.js';
import { FUZZ_RUNS, fuzzParams, show, splitAt } from './fuzz-support.js';
import { COMMAND_WORDS, garbage, latin1 } from './memcached-arbitraries.js';

/** A small item size, so too-large values (whose blocks are swallowed) are cheap to send. */
const MAX_ITEM_SIZE = 4096;
const MAX_GET_LINE_BYTES = 16 * 1024;
/** The most a server socket hands over in one read (libuv's 64 KiB). */
const READ_BYTES_MAX = 64 * 1024;

// ---- replies -------------------------------------------------------------------------------

const CLIENT_ERRORS = new Set([
  'bad command line format', 'bad data chunk', 'invalid exptime argument', 'invalid numeric delta argument',
  'bad command line format.  Usage: delete <key> [noreply]', 'invalid flag', 'duplicate flag', 'invalid or duplicate flag',
  'bad token in command line format', 'incorrect length for M token', 'invalid mode for ms M token', 'invalid mode for ma M token',
  'opaque token too long', 'error decoding key', 'options flags are too long', 'options flags too long',
  'invalid numeric initial value', 'invalid numeric delta value', 'cannot increment or decrement non-numeric value',
]);
/** memcached's SERVER_ERRORs, plus ringkv's overload answer. Any other text is an exception leaking out. */
const SERVER_ERRORS = new Set(['object too large for cache', 'out of memory storing object', 'out of memory', 'busy']);

interface ReplyUnit {
  line: string;
  data?: string;
}

/**
 * Splits a reply stream into memcached replies, checking each is well-formed: a known
 * status line, or a VALUE/VA header followed by exactly its data block and \r\n.
 */
function parseReplies(buf: Buffer): ReplyUnit[] {
  const units: ReplyUnit[] = [];
  let at = 0;
  const fail = (why: string): never => {
    throw new Error(`${why} at byte ${at} of reply ${show(buf, 2000)}`);
  };
  while (at < buf.length) {
    const eol = buf.indexOf('\r\n', at, 'latin1');
    if (eol < 0) fail('reply without \\r\\n');
    const line = buf.toString('latin1', at, eol);
    at = eol + 2;
    const block = /^VALUE [^ ]+ \d+ (\d+)(?: \d+)?$/.exec(line) ?? /^VA (\d+)(?: [^ ]+)*$/.exec(line);
    if (block) {
      const n = Number(block[1]);
      if (buf.length < at + n + 2 || buf[at + n] !== 0x0d || buf[at + n + 1] !== 0x0a) fail(`data block of ${n} bytes not followed by \\r\\n`);
      units.push({ line, data: buf.toString('latin1', at, at + n) });
      at += n + 2;
      continue;
    }
    const clientError = /^CLIENT_ERROR (.*)$/.exec(line);
    if (clientError) {
      if (!CLIENT_ERRORS.has(clientError[1]!)) fail(`unknown CLIENT_ERROR ${show(line)}`);
    } else {
      const serverError = /^SERVER_ERROR (.*)$/.exec(line);
      if (serverError) {
        if (!SERVER_ERRORS.has(serverError[1]!)) fail(`SERVER_ERROR that memcached never sends ${show(line)}`);
      } else if (
        !/^(STORED|NOT_STORED|EXISTS|NOT_FOUND|DELETED|TOUCHED|OK|RESET|END|ERROR|MN|\d+)$/.test(line) &&
        !/^(HD|EN|NF|NS|EX)(?: [^ ]+)*$/.test(line) &&
        !/^(VERSION|ME|STAT) .+$/.test(line)
      ) {
        fail(`not a memcached reply line ${show(line)}`);
      }
    }
    units.push({ line });
  }
  return units;
}

// ---- a client connection ----------------------------------------------------------------------

/** Opens a connection, writes the chunks one write at a time, half-closes, reads until the server closes. */
function exchange(port: number, chunks: readonly Buffer[], timeoutMs = 5000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.setNoDelay(true);
    const received: Buffer[] = [];
    let closed = false;
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`server did not close the connection within ${timeoutMs} ms after FIN; got ${show(Buffer.concat(received))}`));
    }, timeoutMs);
    socket.on('data', (d: Buffer) => received.push(d));
    // The server may close first (quit, a line too long): later writes then fail, which is fine.
    socket.on('error', () => {});
    socket.on('close', () => {
      closed = true;
      clearTimeout(timer);
      resolve(Buffer.concat(received));
    });
    socket.on('connect', async () => {
      for (const chunk of chunks) {
        if (closed || socket.destroyed) return;
        // One write per chunk, each handed to the kernel before the next: real TCP splits.
        await new Promise<void>((r) => socket.write(chunk, () => r()));
      }
      if (!socket.destroyed) socket.end();
    });
  });
}

// ---- valid streams ------------------------------------------------------------------------------

/** One command of a valid stream; `{K}` in the line is replaced by the case's key prefix. */
interface Piece {
  line: string;
  value?: Buffer;
}

const key = fc.constantFrom('{K}a', '{K}b', '{K}c');
const value = fc.oneof(
  { weight: 4, arbitrary: fc.uint8Array({ maxLength: 100 }).map((a) => Buffer.from(a)) },
  { weight: 2, arbitrary: fc.constantFrom('0', '5', '18446744073709551615', '12a', '', '\r\n', 'END\r\nMN\r\n').map(latin1) },
  { weight: 1, arbitrary: fc.integer({ min: MAX_ITEM_SIZE, max: 3 * MAX_ITEM_SIZE }).map((n) => Buffer.alloc(n, 'L')) },
);
const nr = fc.constantFrom('', '', ' noreply');
const flagsOf = (letters: readonly string[]) => fc.subarray([...letters]).chain((ls) => fc.shuffledSubarray(ls, { minLength: ls.length }));
const mode = (modes: readonly string[]) => fc.option(fc.constantFrom(...modes), { nil: undefined });

const piece: fc.Arbitrary<Piece> = fc.oneof(
  { weight: 4, arbitrary: fc.tuple(fc.constantFrom('set', 'add', 'replace', 'append', 'prepend'), key, fc.nat({ max: 0xffffffff }), value, nr).map(([c, k, f, v, n]) => ({ line: `${c} ${k} ${f} 0 ${v.length}${n}\r\n`, value: v })) },
  { weight: 2, arbitrary: fc.tuple(fc.constantFrom('get', 'gets'), fc.array(key, { minLength: 1, maxLength: 3 })).map(([c, ks]) => ({ line: `${c} ${ks.join(' ')}\r\n` })) },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom('gat', 'gats'), key).map(([c, k]) => ({ line: `${c} 0 ${k}\r\n` })) },
  { weight: 1, arbitrary: fc.tuple(key, nr).map(([k, n]) => ({ line: `delete ${k}${n}\r\n` })) },
  { weight: 2, arbitrary: fc.tuple(fc.constantFrom('incr', 'decr'), key, fc.oneof(fc.nat({ max: 9 }).map(BigInt), fc.bigInt({ min: 0n, max: (1n << 64n) - 1n })), nr).map(([c, k, d, n]) => ({ line: `${c} ${k} ${d}${n}\r\n` })) },
  { weight: 1, arbitrary: fc.tuple(key, nr).map(([k, n]) => ({ line: `touch ${k} 0${n}\r\n` })) },
  { weight: 3, arbitrary: fc.tuple(key, flagsOf(['v', 'k', 'f', 's', 'c', 'q', 'h', 't', 'Oo1'])).map(([k, fl]) => ({ line: `mg ${k}${fl.map((f) => ` ${f}`).join('')}\r\n` })) },
  {
    weight: 3,
    arbitrary: fc
      .tuple(key, value, flagsOf(['F7', 'c', 'k', 'q', 'Oo2', 'I']), mode(['MS', 'ME', 'MA', 'MP', 'MR']))
      .map(([k, v, fl, m]) => ({ line: `ms ${k} ${v.length}${[...fl, ...(m ? [m] : [])].map((f) => ` ${f}`).join('')}\r\n`, value: v })),
  },
  { weight: 1, arbitrary: fc.tuple(key, flagsOf(['q', 'k', 'I', 'Oo3'])).map(([k, fl]) => ({ line: `md ${k}${fl.map((f) => ` ${f}`).join('')}\r\n` })) },
  {
    weight: 2,
    arbitrary: fc
      .tuple(key, flagsOf(['v', 'q', 'N0', 'J7', 'D3', 'k', 't', 'c']), mode(['MI', 'MD', 'M+', 'M-']))
      .map(([k, fl, m]) => ({ line: `ma ${k}${[...fl, ...(m ? [m] : [])].map((f) => ` ${f}`).join('')}\r\n` })),
  },
  { weight: 1, arbitrary: fc.constantFrom('mn\r\n', 'version\r\n', 'verbosity 1\r\n').map((line) => ({ line })) },
  // Refused lines keep the stream in sync too.
  {
    weight: 1,
    arbitrary: fc
      .constantFrom('bogus\r\n', 'set {K}a 0 0 -1\r\n', 'incr {K}a abc\r\n', 'mg {K}a zz\r\n', `get ${'x'.repeat(251)}\r\n`, 'ms {K}a 2 MX\r\nzz\r\n', 'set {K}a 0 0 1\r\nxy\r\n', '\r\n')
      .map((line) => ({ line })),
  },
);

function materialise(pieces: readonly Piece[], prefix: string): Buffer {
  return Buffer.concat(pieces.flatMap((p) => [latin1(p.line.replaceAll('{K}', prefix)), ...(p.value ? [p.value, latin1('\r\n')] : [])]));
}

/** Replies comparable across two runs: the key prefix hidden, cas uniques numbered by first appearance. */
function normalise(units: readonly ReplyUnit[], prefix: string): string[] {
  const cas = new Map<string, number>();
  const casId = (n: string) => {
    if (!cas.has(n)) cas.set(n, cas.size + 1);
    return `<cas${cas.get(n)}>`;
  };
  return units.map((u) => {
    let line = u.line.replaceAll(prefix, '<K>');
    line = line.replace(/^(VALUE [^ ]+ \d+ \d+) (\d+)$/, (_, head: string, c: string) => `${head} ${casId(c)}`);
    if (/^(HD|VA|EN|NF|NS|EX)\b/.test(line)) line = line.replace(/ c(\d+)(?= |$)/g, (_, c: string) => ` c${casId(c)}`);
    return u.data === undefined ? line : `${line}\n${u.data}`;
  });
}

// ---- the node ------------------------------------------------------------------------------------

let node: RunningNode | undefined;
let dataDir: string | undefined;
const tag = randomBytes(6).toString('hex');
/** Keys no generated input can name (a random tag), with values that must survive it all. */
const known: Array<{ key: string; flags: number; value: Buffer }> = [
  { key: `known-${tag}-bin`, flags: 4294967295, value: randomBytes(300) },
  { key: `known-${tag}-crlf`, flags: 7, value: latin1('END\r\nVALUE x 0 1\r\nx\r\n\r\n') },
  { key: `known-${tag}-empty`, flags: 0, value: Buffer.alloc(0) },
  { key: `known-${tag}-number`, flags: 0, value: latin1('42') },
  { key: `known-${tag}-large`, flags: 1, value: Buffer.alloc(MAX_ITEM_SIZE - 200, 'q') },
  { key: `known-${tag}-\t\u0001\u00ff`, flags: 12345, value: latin1('control bytes in the key') },
];

function port(): number {
  if (!node) throw new Error('node not started');
  return node.port;
}

beforeAll(async () => {
  dataDir = mkdtempSync(path.join(os.tmpdir(), 'ringkv-fuzz-mc-'));
  node = await startNode({
    ...defaults,
    id: 'fuzz-mc',
    host: '127.0.0.1',
    port: 0,
    httpPort: 0,
    storage: 'memory',
    data: dataDir,
    maxItemSize: MAX_ITEM_SIZE,
    maxGetLineBytes: MAX_GET_LINE_BYTES,
  });
  const sets = known.map((k) => Buffer.concat([latin1(`set ${k.key} ${k.flags} 0 ${k.value.length}\r\n`), k.value, latin1('\r\n')]));
  const reply = await exchange(port(), [Buffer.concat(sets)]);
  expect(reply.toString('latin1')).toBe('STORED\r\n'.repeat(known.length));
});

afterAll(async () => {
  await node?.close();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

describe('memcached port under fuzzing', () => {
  it(`answers ${FUZZ_RUNS} garbage inputs with well-formed replies and closes after FIN`, async () => {
    // No flush_all: it would rightly wipe the known keys. Everything else may appear.
    const words = COMMAND_WORDS.filter((w) => w !== 'flush_all');
    await fc.assert(
      fc.asyncProperty(garbage(words), fc.array(fc.nat(), { maxLength: 8 }), async (bytes, cuts) => {
        const reply = await exchange(port(), splitAt(bytes, cuts));
        parseReplies(reply);
      }),
      fuzzParams(FUZZ_RUNS),
    );
  });

  it(`answers ${FUZZ_RUNS} valid streams split at random points exactly as when sent whole`, async () => {
    let n = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(piece, { minLength: 1, maxLength: 12 }), fc.array(fc.nat(), { maxLength: 16 }), async (pieces, cuts) => {
        // Fresh keys for every run (shrinking included), the same length for both sends.
        n++;
        const whole = `A${tag}${String(n).padStart(7, '0')}-`;
        const split = `B${tag}${String(n).padStart(7, '0')}-`;
        const a = normalise(parseReplies(await exchange(port(), [materialise(pieces, whole)])), whole);
        const b = normalise(parseReplies(await exchange(port(), splitAt(materialise(pieces, split), cuts))), split);
        expect(b).toEqual(a);
      }),
      fuzzParams(FUZZ_RUNS),
    );
  });

  it('closes a connection whose line never ends, after reading at most the limit plus one read', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom('', 'x', 'set k 0 0 ', 'get ', 'gets ', 'mg ', ' get '),
        fc.constantFrom('x', 'k ', ' ', '\r'),
        fc.integer({ min: 1, max: 8192 }),
        async (prefix, fill, chunkBytes) => {
          const limit = /^ *gets? /.test(prefix) ? MAX_GET_LINE_BYTES : LINE_MAX_BYTES;
          const before = Number(node!.stats().bytes_read);
          const chunk = latin1(fill.repeat(Math.ceil(chunkBytes / fill.length)).slice(0, chunkBytes));
          // Endless: far more than any limit, unless the server closes first (it must).
          const chunks = [latin1(prefix), ...Array.from({ length: Math.ceil((4 * MAX_GET_LINE_BYTES) / chunkBytes) + 1 }, () => chunk)];
          const socket = net.connect(port(), '127.0.0.1');
          const closed = new Promise<boolean>((resolve) => {
            const timer = setTimeout(() => resolve(false), 5000);
            socket.on('close', () => {
              clearTimeout(timer);
              resolve(true);
            });
          });
          socket.on('error', () => {});
          const replies: Buffer[] = [];
          socket.on('data', (d: Buffer) => replies.push(d));
          await new Promise<void>((r) => socket.once('connect', () => r()));
          for (const c of chunks) {
            if (socket.destroyed) break;
            await new Promise<void>((r) => socket.write(c, () => r()));
          }
          const wasClosed = await closed;
          socket.destroy();
          expect(wasClosed, `${show(prefix)} + endless ${show(fill)} in ${chunkBytes}-byte writes: still open`).toBe(true);
          // memcached closes silently: nothing was answered to an unfinished line.
          expect(Buffer.concat(replies).toString('latin1')).toBe('');
          const read = Number(node!.stats().bytes_read) - before;
          expect(read).toBeGreaterThan(limit);
          expect(read).toBeLessThanOrEqual(limit + READ_BYTES_MAX);
        },
      ),
      fuzzParams(40),
    );
  });

  it('is still up afterwards: version answers, known keys intact, no connection left open', async () => {
    const reply = await exchange(port(), [latin1(`version\r\nget ${known.map((k) => k.key).join(' ')}\r\n`)]);
    const units = parseReplies(reply);
    expect(units[0]!.line).toMatch(/^VERSION /);
    const values = units.slice(1, -1);
    expect(units.at(-1)!.line).toBe('END');
    expect(values.map((u) => [u.line, u.data])).toEqual(known.map((k) => [`VALUE ${k.key} ${k.flags} ${k.value.length}`, k.value.toString('latin1')]));
    // Every fuzz connection was closed by the server; none lingers.
    const deadline = Date.now() + 2000;
    while (Number(node!.stats().curr_connections) > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(Number(node!.stats().curr_connections)).toBe(0);
  });
});
