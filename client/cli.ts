#!/usr/bin/env node
// The `ringkv` command line. Every usage error or startup failure is one line on stderr
// and exit code 2; a node stops cleanly on SIGTERM/SIGINT (exit 0).
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { defaults, MIN_ITEM_SIZE, type NodeConfig, type StorageKind } from '../server/config.js';
import { RINGKV_VERSION, startNode, type RunningNode } from '../server/node.js';

const EXIT_USAGE = 2;

function fail(message: string): never {
  process.stderr.write(`ringkv: ${message}\n`);
  process.exit(EXIT_USAGE);
}

function intIn(name: string, min: number, max: number) {
  return (v: string): number => {
    if (!/^[0-9]+$/.test(v)) throw new InvalidArgumentError(`${name} must be a whole number`);
    const n = Number(v);
    if (n < min || n > max) throw new InvalidArgumentError(`${name} must be between ${min} and ${max}`);
    return n;
  };
}

const port = intIn('port', 0, 65535);

/** Node ids name vector-clock entries and ring members: plain words only. */
function nodeId(v: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(v) || v === '__proto__') {
    throw new InvalidArgumentError('node id must be 1-64 letters, digits, ".", "_" or "-", starting with a letter or digit');
  }
  return v;
}

function nodeCommand(): Command {
  return new Command('node')
    .description('run a ringkv node (standalone until a master is given)')
    .option('--id <id>', 'node id (the name in vector clocks and on the ring)', nodeId, defaults.id)
    .option('--host <addr>', 'address to listen on', defaults.host)
    .option('--port <n>', 'memcached text protocol port (0 = any free port)', port, defaults.port)
    .option('--http-port <n>', 'HTTP/JSON port (0 = any free port)', port, defaults.httpPort)
    .option('--data <dir>', 'data directory (LevelDB lives in <dir>/db)', defaults.data)
    .addOption(new Option('--storage <kind>', 'level (durable) or memory (LRU only, like memcached)').choices(['level', 'memory']).default(defaults.storage))
    .option('--cache-mb <n>', 'LRU cache tier in front of LevelDB, MiB', intIn('--cache-mb', 1, 1 << 20), defaults.cacheMb)
    .option('--memory-mb <n>', 'store size in memory mode, MiB', intIn('--memory-mb', 1, 1 << 20), defaults.memoryMb)
    .option('--max-item-size <bytes>', 'largest item (memcached -I)', intIn('--max-item-size', MIN_ITEM_SIZE, 512 * 1024 * 1024), defaults.maxItemSize)
    .option('--max-conns <n>', 'connections accepted at once (memcached -c)', intIn('--max-conns', 1, 1 << 20), defaults.maxConns)
    .option('--sweep-interval-ms <ms>', 'pause between sweeps of expired items', intIn('--sweep-interval-ms', 10, 86_400_000), defaults.sweepIntervalMs)
    .action(async (o: Record<string, unknown>) => {
      const cfg: NodeConfig = {
        ...defaults,
        id: String(o.id),
        host: String(o.host),
        port: o.port as number,
        httpPort: o.httpPort as number,
        data: String(o.data),
        storage: o.storage as StorageKind,
        cacheMb: o.cacheMb as number,
        memoryMb: o.memoryMb as number,
        maxItemSize: o.maxItemSize as number,
        maxConns: o.maxConns as number,
        sweepIntervalMs: o.sweepIntervalMs as number,
      };
      await runNode(cfg);
    });
}

async function runNode(cfg: NodeConfig): Promise<void> {
  let node: RunningNode;
  try {
    node = await startNode(cfg);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'EADDRINUSE') fail(`cannot listen: address ${cfg.host} port in use (${err.message})`);
    if (err.code === 'EACCES') fail(`cannot listen: permission denied (${err.message})`);
    const cause = (err as { cause?: Error }).cause;
    if (err.code === 'LEVEL_DATABASE_NOT_OPEN' && cause) fail(`cannot open data directory ${cfg.data}: ${cause.message.replace(/\s+/g, ' ')}`);
    fail(`cannot start node: ${(err.message ?? String(e)).replace(/\s+/g, ' ')}`);
  }
  process.stdout.write(`ringkv node ready memcached=${cfg.host}:${node.port} http=${cfg.host}:${node.httpPort} pid=${process.pid}\n`);
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    node.close().then(
      () => process.exit(0),
      (e: unknown) => {
        process.stderr.write(`ringkv: error while stopping on ${signal}: ${e instanceof Error ? e.message : String(e)}\n`);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

const output = {
  // Usage errors: one line, no help dump.
  writeErr: (s: string) => {
    const line = s.split('\n').find((l) => l.trim().length > 0) ?? s;
    process.stderr.write(`${line.replace(/^error: /, 'ringkv: ')}\n`);
  },
};

export function program(): Command {
  const p = new Command('ringkv')
    .description('ringkv: a sharded, replicated key-value store that speaks memcached')
    .version(RINGKV_VERSION)
    .showSuggestionAfterError(true)
    .exitOverride()
    .configureOutput(output);
  p.addCommand(nodeCommand());
  for (const c of p.commands) c.exitOverride().configureOutput(output);
  return p;
}

async function main(): Promise<void> {
  try {
    await program().parseAsync(process.argv);
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.code === 'commander.help') process.exit(0);
      process.exit(EXIT_USAGE);
    }
    fail(e instanceof Error ? e.message : String(e));
  }
}

void main();
