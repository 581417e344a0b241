// Frames written in one event-loop turn leave in one socket write (or one corked writev
// when large): the coalescing both RPC ends rely on, checked against a fake socket.
import type net from 'node:net';
import { describe, expect, it } from 'vitest';
import { FrameWriter } from '../../server/protocol/rpc/envelope.js';

function fakeSocket() {
  const log: string[] = [];
  const socket = {
    destroyed: false,
    writableEnded: false,
    writableLength: 0,
    write(b: Buffer) {
      log.push(`write ${b.length}`);
      return true;
    },
    cork() {
      log.push('cork');
    },
    uncork() {
      log.push('uncork');
    },
  };
  return { log, socket: socket as unknown as net.Socket & typeof socket };
}

const tick = () => new Promise<void>((r) => process.nextTick(r));

describe('FrameWriter', () => {
  it('hands small frames of one turn to the socket as one buffer', async () => {
    const { log, socket } = fakeSocket();
    let flushes = 0;
    const w = new FrameWriter(socket, () => flushes++);
    for (let i = 0; i < 100; i++) w.write(Buffer.alloc(10));
    expect(w.queuedBytes).toBe(1000);
    expect(log).toEqual([]);
    await tick();
    expect(log).toEqual(['write 1000']);
    expect(flushes).toBe(1);
  });

  it('corks large batches into one writev instead of copying them', async () => {
    const { log, socket } = fakeSocket();
    const w = new FrameWriter(socket);
    w.write(Buffer.alloc(100_000));
    w.write(Buffer.alloc(10));
    await tick();
    expect(log).toEqual(['cork', 'write 100000', 'write 10', 'uncork']);
  });

  it('includes replies settled by promises in the same turn', async () => {
    const { log, socket } = fakeSocket();
    const w = new FrameWriter(socket);
    // Handlers finishing at different promise depths within one turn, as replies do.
    const settled = [1, 2, 3].map(async (depth) => {
      for (let i = 0; i < depth * 10; i++) await null;
      w.write(Buffer.alloc(5));
    });
    await Promise.all(settled);
    await tick();
    expect(log).toEqual(['write 15']);
  });

  it('drops frames once the socket has ended, and after stop()', async () => {
    const { log, socket } = fakeSocket();
    const w = new FrameWriter(socket);
    w.write(Buffer.alloc(5));
    socket.writableEnded = true;
    await tick();
    w.write(Buffer.alloc(5));
    await tick();
    expect(log).toEqual([]);
    expect(w.queuedBytes).toBe(0);
  });
});
