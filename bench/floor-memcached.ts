// The "Node floor" for the memcached protocol: the least a Node.js TCP server can do to
// answer `get <key>*` and `set <key> <flags> <exptime> <bytes> [noreply]` from a Map (plus
// `mn`, `version`, `quit`). It stands for the best any Node server could reach on this
// machine, so ringkv's memcached front-end is judged against it rather than against C.
//
// Honest but minimal: framing is exact (a command or data block may be split across reads,
// many may arrive in one read), replies for one read batch leave in one write, limits are
// enforced with memcached's replies. Not done, because it would be work the floor is meant
// to leave out: expiry (exptime is parsed and ignored), cas, eviction, the other commands.
// Items are stored pre-rendered ("VALUE key flags bytes\r\n<data>\r\n"), as memcached keeps
// its suffix, so a hit costs one Map lookup and no formatting.
//
//   node dist/bench/floor-memcached.js --port 11311   ->   floor ready port=11311
import { Command } from 'commander';
import net from 'node:net';
import { assert } from '../server/util/assert.js';
import { intArg, isMain } from './lib/cli.js';

export const floorLimits = {
  keyBytesMax: 250,
  valueBytesMax: 1024 * 1024,
  /** A command line longer than this without a newline closes the connection. */
  lineBytesMax: 2048,
  /** Past this many unsent reply bytes, stop reading from the client until it drains. */
  writeBufferedBytesMax: 16 * 1024 * 1024,
} as const;

const reply = {
  stored: Buffer.from('STORED\r\n'),
  end: Buffer.from('END\r\n'),
  error: Buffer.from('ERROR\r\n'),
  mn: Buffer.from('MN\r\n'),
  version: Buffer.from('VERSION 1.6.0-ringkv-floor\r\n'),
  badFormat: Buffer.from('CLIENT_ERROR bad command line format\r\n'),
  badChunk: Buffer.from('CLIENT_ERROR bad data chunk\r\n'),
  lineTooLong: Buffer.from('CLIENT_ERROR line too long\r\n'),
  tooLarge: Buffer.from('SERVER_ERROR object too large for cache\r\n'),
  outOfMemory: Buffer.from('SERVER_ERROR out of memory storing object\r\n'),
};

export interface FloorStore {
  readonly items: Map<string, Buffer>;
  /** Bytes of stored items; sets fail with SERVER_ERROR past `memoryBytesMax`. */
  bytes: number;
  readonly memoryBytesMax: number;
}

/** Parses an unsigned decimal in buf[start, end); -1 if empty, not digits or > 2^32-1. */
function parseU32(buf: Buffer, start: number, end: number): number {
  if (end <= start || end - start > 10) return -1;
  let n = 0;
  for (let i = start; i < end; i++) {
    const c = buf[i]!;
    if (c < 48 || c > 57) return -1;
    n = n * 10 + (c - 48);
  }
  return n > 0xffffffff ? -1 : n;
}

/** Exptime may be negative (memcached: "expire immediately"); the floor only validates it. */
function isInteger(buf: Buffer, start: number, end: number): boolean {
  if (end > start && buf[start] === 45 /* - */) start++;
  return parseU32(buf, start, end) >= 0;
}

function tokenIs(buf: Buffer, start: number, end: number, word: string): boolean {
  if (end - start !== word.length) return false;
  for (let i = 0; i < word.length; i++) if (buf[start + i] !== word.charCodeAt(i)) return false;
  return true;
}

/** Outcome of parsing at one offset: consumed up to `next`, or wait for `need` more bytes, or close. */
type Step = { kind: 'next'; next: number } | { kind: 'need'; bytes: number } | { kind: 'close' };

const tokensMax = 24; // as memcached's MAX_TOKENS: `get` takes at most 23 keys per line

class FloorConn {
  private chunks: Buffer[] = [];
  private buffered = 0;
  /** Bytes that must be buffered before parsing again can make progress. */
  private need = 1;
  /** Bytes of an oversized data block still to discard. */
  private swallow = 0;
  private readonly starts = new Int32Array(tokensMax);
  private readonly ends = new Int32Array(tokensMax);

  constructor(
    private readonly socket: net.Socket,
    private readonly store: FloorStore,
  ) {
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', () => socket.destroy());
  }

  private onData(chunk: Buffer): void {
    if (this.swallow > 0) {
      const n = Math.min(this.swallow, chunk.length);
      this.swallow -= n;
      if (n === chunk.length) return;
      chunk = chunk.subarray(n);
    }
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    if (this.buffered < this.need) return;
    const buf = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.buffered);
    this.chunks = [];
    this.buffered = 0;
    this.need = 1;
    const out: Buffer[] = [];
    let off = 0;
    let close = false;
    while (off < buf.length) {
      const step = this.parse(buf, off, out);
      if (step.kind === 'next') {
        assert(step.next > off, 'parser made no progress');
        off = step.next;
      } else if (step.kind === 'need') {
        this.need = step.bytes;
        break;
      } else {
        close = true;
        break;
      }
    }
    if (!close && off < buf.length) {
      this.chunks.push(buf.subarray(off));
      this.buffered = buf.length - off;
    }
    if (out.length > 0) this.socket.write(out.length === 1 ? out[0]! : Buffer.concat(out));
    if (close) {
      this.socket.end();
      return;
    }
    if (this.socket.writableLength > floorLimits.writeBufferedBytesMax && !this.socket.isPaused()) {
      this.socket.pause();
      this.socket.once('drain', () => this.socket.resume());
    }
  }

  /** Parses and executes one command at `off`, appending its reply to `out`. */
  private parse(buf: Buffer, off: number, out: Buffer[]): Step {
    const nl = buf.indexOf(10, off);
    if (nl < 0) {
      if (buf.length - off > floorLimits.lineBytesMax) {
        out.push(reply.lineTooLong);
        return { kind: 'close' };
      }
      return { kind: 'need', bytes: buf.length - off + 1 };
    }
    const lineEnd = nl > off && buf[nl - 1] === 13 ? nl - 1 : nl;
    // Tokenize in place: [starts[i], ends[i]) for each space-separated token.
    let n = 0;
    let i = off;
    while (i < lineEnd && n < tokensMax) {
      while (i < lineEnd && buf[i] === 32) i++;
      if (i >= lineEnd) break;
      const s = i;
      while (i < lineEnd && buf[i] !== 32) i++;
      this.starts[n] = s;
      this.ends[n] = i;
      n++;
    }
    while (i < lineEnd && buf[i] === 32) i++;
    const next = nl + 1;
    if (n === 0) {
      out.push(reply.error);
      return { kind: 'next', next };
    }
    if (i < lineEnd) {
      out.push(reply.badFormat); // more tokens than memcached accepts on one line
      return { kind: 'next', next };
    }
    const c0 = this.starts[0]!;
    const c1 = this.ends[0]!;
    if (tokenIs(buf, c0, c1, 'get')) return this.get(buf, n, next, out);
    if (tokenIs(buf, c0, c1, 'set')) return this.set(buf, n, off, next, out);
    if (tokenIs(buf, c0, c1, 'mn')) out.push(reply.mn);
    else if (tokenIs(buf, c0, c1, 'version')) out.push(reply.version);
    else if (tokenIs(buf, c0, c1, 'quit')) return { kind: 'close' };
    else out.push(reply.error);
    return { kind: 'next', next };
  }

  private get(buf: Buffer, n: number, next: number, out: Buffer[]): Step {
    if (n < 2) {
      out.push(reply.error);
      return { kind: 'next', next };
    }
    for (let t = 1; t < n; t++) {
      if (this.ends[t]! - this.starts[t]! > floorLimits.keyBytesMax) {
        out.push(reply.badFormat);
        return { kind: 'next', next };
      }
    }
    for (let t = 1; t < n; t++) {
      const item = this.store.items.get(buf.toString('latin1', this.starts[t], this.ends[t]));
      if (item) out.push(item);
    }
    out.push(reply.end);
    return { kind: 'next', next };
  }

  private set(buf: Buffer, n: number, off: number, next: number, out: Buffer[]): Step {
    const s = this.starts;
    const e = this.ends;
    const noreply = n === 6 && tokenIs(buf, s[5]!, e[5]!, 'noreply');
    const keyBytes = e[1]! - s[1]!;
    const flags = n >= 5 ? parseU32(buf, s[2]!, e[2]!) : -1;
    const bytes = n >= 5 ? parseU32(buf, s[4]!, e[4]!) : -1;
    if ((n !== 5 && !noreply) || keyBytes > floorLimits.keyBytesMax || flags < 0 || bytes < 0 || !isInteger(buf, s[3]!, e[3]!)) {
      out.push(reply.badFormat);
      return { kind: 'next', next };
    }
    if (bytes > floorLimits.valueBytesMax) {
      out.push(reply.tooLarge);
      const available = buf.length - next;
      const skip = bytes + 2;
      if (available >= skip) return { kind: 'next', next: next + skip };
      this.swallow = skip - available;
      return { kind: 'next', next: buf.length };
    }
    const dataEnd = next + bytes;
    if (dataEnd + 2 > buf.length) return { kind: 'need', bytes: dataEnd + 2 - off };
    if (buf[dataEnd] !== 13 || buf[dataEnd + 1] !== 10) {
      out.push(reply.badChunk);
      return { kind: 'next', next: dataEnd + 2 };
    }
    const key = buf.toString('latin1', s[1], e[1]);
    const old = this.store.items.get(key);
    const header = `VALUE ${key} ${flags} ${bytes}\r\n`;
    const size = header.length + bytes + 2;
    if (this.store.bytes - (old?.length ?? 0) + size > this.store.memoryBytesMax) {
      if (!noreply) out.push(reply.outOfMemory);
      return { kind: 'next', next: dataEnd + 2 };
    }
    const item = Buffer.allocUnsafe(size);
    item.write(header, 0, 'latin1');
    buf.copy(item, header.length, next, dataEnd + 2); // data and its \r\n
    this.store.items.set(key, item);
    this.store.bytes += size - (old?.length ?? 0);
    if (!noreply) out.push(reply.stored);
    return { kind: 'next', next: dataEnd + 2 };
  }
}

export function createFloorServer(memoryBytesMax = 1024 * 1024 * 1024): { server: net.Server; store: FloorStore } {
  const store: FloorStore = { items: new Map(), bytes: 0, memoryBytesMax };
  const server = net.createServer((socket) => new FloorConn(socket, store));
  return { server, store };
}

if (isMain(import.meta.url)) {
  const o = new Command('floor-memcached')
    .description('minimal Node.js memcached (get/set/mn/version) server: the Node floor')
    .option('--host <host>', 'listen address', '127.0.0.1')
    .option('--port <port>', 'listen port (0 = any free port)', intArg(0, 65535), 11311)
    .option('--memory-mb <mb>', 'bytes of items stored before sets fail', intArg(1, 1 << 20), 1024)
    .parse()
    .opts<{ host: string; port: number; memoryMb: number }>();
  const { server } = createFloorServer(o.memoryMb * 1024 * 1024);
  server.listen(o.port, o.host, () => {
    const addr = server.address();
    const port = typeof addr === 'object' && addr ? addr.port : o.port;
    console.log(`floor ready port=${port}`);
  });
  const shutdown = () => process.exit(0); // open client connections would hold server.close() open
  process.once('SIGTERM', shutdown);
  process.once('SIGINT', shutdown);
}
