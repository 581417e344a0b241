// A raw memcached text-protocol client for differential tests: it sends exact bytes and
// returns exact bytes, with no parsing of its own, so the same script can be replayed
// against memcached and ringkv and the two byte streams compared.
//
// Bytes travel as latin1 strings (one char per byte, 0..255), so binary values (NUL, \r\n,
// 0xff) survive the round trip and diffs stay readable.
//
// `request()` appends `mn\r\n` and reads until the reply ends with `MN\r\n`: both servers
// answer the meta no-op in order, so noreply commands, quiet meta commands and error
// replies become observable without sleeping.
import type net from 'node:net';
import { connectSocket } from '../helpers/connect.js';

/** How long any single read may wait for the bytes it needs before failing the case. */
export const readTimeoutMs = 3000;
/** Upper bound on buffered reply bytes per read (the largest case reads ~1 MiB). */
const replyBytesMax = 8 * 1024 * 1024;
const terminator = 'MN\r\n';

export type Bytes = string | Buffer;

function toBuffer(bytes: Bytes): Buffer {
  return typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes;
}

/** Shows received bytes with control characters escaped, trimmed to a readable length. */
export function show(bytes: string, charsMax = 400): string {
  const cut = bytes.length > charsMax ? bytes.slice(0, charsMax) + `...(+${bytes.length - charsMax} bytes)` : bytes;
  return JSON.stringify(cut);
}

export class Conn {
  private received = '';
  private closed = false;
  private closeReason = '';
  private wake: (() => void) | undefined;

  private constructor(
    private readonly socket: net.Socket,
    readonly port: number,
  ) {
    socket.setNoDelay(true);
    socket.on('data', (d: Buffer) => {
      this.received += d.toString('latin1');
      this.notify();
    });
    // A server that closes with unread bytes in its buffer sends RST instead of FIN; for the
    // comparison both are "the connection closed", so an error ends the stream like `end`.
    socket.on('error', (e: Error) => {
      this.closeReason = e.message;
      this.closed = true;
      this.notify();
    });
    socket.on('close', () => {
      this.closed = true;
      this.notify();
    });
  }

  static async connect(port: number, host = '127.0.0.1'): Promise<Conn> {
    return new Conn(await connectSocket(port, host, readTimeoutMs), port);
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  /** Writes bytes as one `write()` and waits until they are handed to the kernel. */
  send(bytes: Bytes): Promise<void> {
    // Writing to a connection the server closed is not an error for a test script: the
    // server's behaviour (it closed) is what the transcript records, via the next read.
    return new Promise<void>((resolve) => {
      if (this.closed) {
        resolve();
        return;
      }
      this.socket.write(toBuffer(bytes), () => resolve());
    });
  }

  /**
   * Writes each byte separately, with a short pause between writes, so the server almost
   * certainly sees the command in many TCP segments (Nagle is off).
   */
  async sendBytewise(bytes: Bytes, pauseMs = 1): Promise<void> {
    const buf = toBuffer(bytes);
    for (let i = 0; i < buf.length; i++) {
      await this.send(buf.subarray(i, i + 1));
      await new Promise((r) => setTimeout(r, pauseMs));
    }
  }

  /** Waits until `done(received)` returns the length to consume, or fails after the timeout. */
  private async readWhile(what: string, done: (received: string) => number | undefined): Promise<string> {
    const deadline = Date.now() + readTimeoutMs;
    for (;;) {
      const n = done(this.received);
      if (n !== undefined) {
        const out = this.received.slice(0, n);
        this.received = this.received.slice(n);
        return out;
      }
      if (this.received.length > replyBytesMax) {
        throw new Error(`${what}: reply exceeds ${replyBytesMax} bytes; received ${show(this.received)}`);
      }
      if (this.closed) {
        throw new Error(`${what}: connection closed${this.closeReason ? ` (${this.closeReason})` : ''}; received ${show(this.received)}`);
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`${what}: timed out after ${readTimeoutMs} ms; received ${show(this.received)}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }

  /**
   * Sends `bytes` + `mn\r\n` in one write and returns every reply byte before the `MN\r\n`.
   * The MN must start a line (start of reply or after `\n`), so a value ending in "MN" does
   * not end the read early unless it also follows a newline (cases avoid such values).
   */
  async request(bytes: Bytes): Promise<string> {
    await this.send(Buffer.concat([toBuffer(bytes), Buffer.from('mn\r\n', 'latin1')]));
    return this.readMn();
  }

  /** Reads up to and including the next line-initial `MN\r\n`, returning what came before it. */
  async readMn(): Promise<string> {
    const out = await this.readWhile('waiting for MN', (r) => {
      if (!r.endsWith(terminator)) return undefined;
      const at = r.length - terminator.length;
      return at === 0 || r[at - 1] === '\n' ? r.length : undefined;
    });
    return out.slice(0, out.length - terminator.length);
  }

  /** Reads everything until the server closes the connection (FIN or RST). */
  async readUntilClose(): Promise<string> {
    return this.readWhile('waiting for the server to close', (r) => (this.closed ? r.length : undefined));
  }

  /** Closes our side; safe to call twice. */
  close(): void {
    this.socket.destroy();
  }
}

export function connect(port: number, host = '127.0.0.1'): Promise<Conn> {
  return Conn.connect(port, host);
}
