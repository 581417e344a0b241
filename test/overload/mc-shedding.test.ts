// The memcached listener while its Admission says "shedding" (a standing event-loop queue,
// this turn already late): every command it can frame without parsing is refused with
// `SERVER_ERROR busy` (silent under noreply), nothing runs, the stream stays in step
// across data blocks split anywhere, and commands it cannot skim go through the parser
// (refused all the same; version is answered, a malformed line gets its own error). The
// Admission is a stub that always sheds: the listener is the unit under test.
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemClock } from '../../server/clock.js';
import { LocalKv } from '../../server/kv/local-kv.js';
import { Admission } from '../../server/overload.js';
import { McServer } from '../../server/protocol/memcached/server.js';
import { MemoryStore } from '../../server/storage/memory-store.js';

class AlwaysShedding extends Admission {
  constructor() {
    super({ maxInflight: 0, maxLagMs: 0 });
  }
  override shedding(): boolean {
    return true;
  }
  // What a real Admission does while shedding, for the commands that are parsed.
  override admit(): boolean {
    this.counters.rejected_lag++;
    return false;
  }
}

const BUSY = 'SERVER_ERROR busy\r\n';

describe('memcached listener while shedding', () => {
  let kv: LocalKv;
  let server: McServer;
  let port: number;
  const admission = new AlwaysShedding();

  beforeAll(async () => {
    kv = new LocalKv({ nodeId: 'n1', store: new MemoryStore({ memoryBytes: 64 << 20, clock: systemClock }), clock: systemClock, maxItemSize: 1 << 20, tombstoneGraceMs: 60_000 });
    await kv.open();
    await kv.storeItem('set', 'kept', Buffer.from('old'), 0, 0);
    server = new McServer(
      { kv, version: 'test', stats: () => [['rejected_lag', admission.counters.rejected_lag]] },
      { host: '127.0.0.1', port: 0, limits: { maxGetLineBytes: 1 << 20, maxValueBytes: 1 << 20 }, maxConns: 16, maxConnReplyBytes: 1 << 20, admission },
    );
    port = await server.listen();
  });
  afterAll(async () => {
    await server.close(0);
    admission.close();
  });

  /** Sends `chunks` (one write each, a few ms apart) and collects the replies until `until` appears. */
  async function exchange(chunks: string[], until: string): Promise<string> {
    const socket = net.connect(port, '127.0.0.1');
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    let got = '';
    const done = new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ${JSON.stringify(until)} in ${JSON.stringify(got)}`)), 5_000);
      socket.on('data', (d: Buffer) => {
        got += d.toString('latin1');
        if (got.includes(until)) {
          clearTimeout(timer);
          resolve(got);
        }
      });
    });
    for (const c of chunks) {
      socket.write(Buffer.from(c, 'latin1'));
      await new Promise((r) => setTimeout(r, 5));
    }
    try {
      return await done;
    } finally {
      socket.destroy();
    }
  }

  it('refuses skimmable commands unrun, keeps noreply silent, and parses the rest', async () => {
    const before = admission.counters.rejected_lag;
    const stream =
      'set a 0 0 5\r\nhello\r\n' + // refused
      'get kept\r\n' + // refused: even a hit
      'set b 0 0 1 noreply\r\nx\r\n' + // refused silently
      'ms c 2 T0\r\nhi\r\n' + // meta set: parsed, then refused
      'incr kept 1\r\n' +
      'bogus\r\n' + // not skimmable: the parser's ERROR
      'version\r\n'; // never refused
    const replies = await exchange([stream], 'VERSION test\r\n');
    expect(replies).toBe(`${BUSY}${BUSY}${BUSY}${BUSY}ERROR\r\nVERSION test\r\n`);
    expect(admission.counters.rejected_lag - before).toBe(5);
    expect(kv.raw('a')).toBeUndefined();
    expect(kv.raw('b')).toBeUndefined();
    expect(kv.raw('c')).toBeUndefined();
    expect(kv.raw('kept')?.value.toString()).toBe('old');
  });

  it('stays in step when data blocks arrive in pieces (the rest of a refused block is swallowed)', async () => {
    const value = 'v'.repeat(3000);
    const stream = `set big 0 0 ${value.length}\r\n${value}\r\nget kept\r\nversion\r\n`;
    // Split inside the line, inside the block, and between \r and \n.
    const cuts = [5, 20, 1500, 3019, 3020, stream.length - 3];
    const chunks: string[] = [];
    let at = 0;
    for (const c of cuts) {
      chunks.push(stream.slice(at, c));
      at = c;
    }
    chunks.push(stream.slice(at));
    expect(await exchange(chunks, 'VERSION test\r\n')).toBe(`${BUSY}${BUSY}VERSION test\r\n`);
    expect(kv.raw('big')).toBeUndefined();
  });
});
