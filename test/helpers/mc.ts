// A small memcached text-protocol client for multi-process tests: exact bytes out, parsed
// replies back, and every wait bounded so that a missing reply fails the test with the
// bytes that did arrive instead of hanging it.
//
// Values and keys travel as Buffers / latin1 strings (one char per byte), so binary
// values (NUL, \r\n, 0xff) survive the round trip.
import type net from 'node:net';
import { connectSocket } from './connect.js';

/** How long one reply may take before the read fails. */
export const replyTimeoutMs = 5000;
/** Upper bound on bytes buffered from the server; the largest test reads a few MiB. */
const receivedBytesMax = 32 * 1024 * 1024;

export interface McValue {
  key: string;
  flags: number;
  value: Buffer;
}

/** A parse step: the parsed reply and where the next one starts, or undefined for "need more". */
export type ReplyParser<T> = (buf: Buffer) => { value: T; next: number } | undefined;

/** One line, without its \r\n. */
export const lineParser: ReplyParser<string> = (buf) => {
  const eol = buf.indexOf('\r\n');
  return eol < 0 ? undefined : { value: buf.toString('latin1', 0, eol), next: eol + 2 };
};

/** The reply of get/gets: VALUE blocks (which may themselves contain "END\r\n") then END. */
export const getParser: ReplyParser<McValue[]> = (buf) => {
  const items: McValue[] = [];
  let at = 0;
  for (;;) {
    const eol = buf.indexOf('\r\n', at);
    if (eol < 0) return undefined;
    const line = buf.toString('latin1', at, eol);
    if (line === 'END') return { value: items, next: eol + 2 };
    const m = /^VALUE (\S+) (\d+) (\d+)(?: \d+)?$/.exec(line);
    if (!m) throw new Error(`unexpected get reply line ${JSON.stringify(line)}`);
    const start = eol + 2;
    const bytes = Number(m[3]);
    if (buf.length < start + bytes + 2) return undefined;
    items.push({ key: m[1]!, flags: Number(m[2]), value: Buffer.from(buf.subarray(start, start + bytes)) });
    at = start + bytes + 2;
  }
};

/** The reply of stats: STAT name value lines, then END. */
export const statsParser: ReplyParser<Map<string, string>> = (buf) => {
  const end = buf.indexOf('END\r\n');
  if (end < 0) return undefined;
  const stats = new Map<string, string>();
  for (const line of buf.toString('latin1', 0, end).split('\r\n')) {
    const m = /^STAT (\S+) (.*)$/.exec(line);
    if (m) stats.set(m[1]!, m[2]!);
  }
  return { value: stats, next: end + 5 };
};

export class McClient {
  private received: Buffer = Buffer.alloc(0);
  private ended = false;
  private wake: (() => void) | undefined;

  private constructor(
    private readonly socket: net.Socket,
    readonly port: number,
  ) {
    socket.setNoDelay(true);
    socket.on('data', (d: Buffer) => {
      this.received = this.received.length === 0 ? d : Buffer.concat([this.received, d]);
      if (this.received.length > receivedBytesMax) socket.destroy(new Error(`more than ${receivedBytesMax} bytes buffered`));
      this.notify();
    });
    // A reset (RST) ends the stream for the reader just as a FIN does.
    socket.on('error', () => {
      this.ended = true;
      this.notify();
    });
    socket.on('close', () => {
      this.ended = true;
      this.notify();
    });
  }

  static async connect(port: number, host = '127.0.0.1', timeoutMs = replyTimeoutMs): Promise<McClient> {
    return new McClient(await connectSocket(port, host, timeoutMs), port);
  }

  /** Resolves once the bytes are handed to the kernel. */
  write(bytes: string | Buffer): Promise<void> {
    return new Promise((resolve, reject) => {
      this.socket.write(typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes, (e) => (e ? reject(e) : resolve()));
    });
  }

  /** Waits until `parse` finds a complete reply at the head of what was received, and consumes it. */
  async read<T>(parse: ReplyParser<T>, timeoutMs = replyTimeoutMs): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = parse(this.received);
      if (r) {
        this.received = this.received.subarray(r.next);
        return r.value;
      }
      if (this.ended) throw new Error(`connection closed before a complete reply; received ${this.show()}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no complete reply within ${timeoutMs} ms; received ${this.show()}`);
      await this.waitForData(left);
    }
  }

  /** Every byte received until the server closes the connection (bounded by timeoutMs). */
  async readUntilClosed(timeoutMs = replyTimeoutMs): Promise<Buffer> {
    const deadline = Date.now() + timeoutMs;
    while (!this.ended) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`connection still open after ${timeoutMs} ms`);
      await this.waitForData(left);
    }
    const all = this.received;
    this.received = Buffer.alloc(0);
    return all;
  }

  line(timeoutMs?: number): Promise<string> {
    return this.read(lineParser, timeoutMs);
  }

  async set(key: string, value: Buffer | string, flags = 0, exptime = 0): Promise<string> {
    await this.write(setCommand(key, value, flags, exptime));
    return this.line();
  }

  async get(key: string): Promise<McValue | undefined> {
    await this.write(`get ${key}\r\n`);
    const items = await this.read(getParser);
    return items[0];
  }

  async command(line: string): Promise<string> {
    await this.write(`${line}\r\n`);
    return this.line();
  }

  async stats(): Promise<Map<string, string>> {
    await this.write('stats\r\n');
    return this.read(statsParser);
  }

  close(): void {
    this.socket.destroy();
  }

  private waitForData(timeoutMs: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.wake = undefined;
        resolve();
      }, timeoutMs);
      this.wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  private show(charsMax = 300): string {
    const text = this.received.toString('latin1');
    return JSON.stringify(text.length > charsMax ? `${text.slice(0, charsMax)}...(+${text.length - charsMax} bytes)` : text);
  }
}

/** The bytes of one `set` command, data block included. */
export function setCommand(key: string, value: Buffer | string, flags = 0, exptime = 0): Buffer {
  const data = typeof value === 'string' ? Buffer.from(value, 'latin1') : value;
  return Buffer.concat([Buffer.from(`set ${key} ${flags} ${exptime} ${data.length}\r\n`, 'latin1'), data, Buffer.from('\r\n')]);
}
