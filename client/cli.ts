#!/usr/bin/env node
// The `ringkv` command line. Every usage error or startup failure is one line on stderr
// and exit code 2; a node stops cleanly on SIGTERM/SIGINT (exit 0).
import { Command, CommanderError, Option } from 'commander';
import { RINGKV_VERSION } from '../server/node.js';
import { masterDefaults, startMaster, type MasterConfig, type RunningMaster } from '../server/master/master.js';
import { clusterCommand } from './cluster-cmd.js';
import { address, EXIT_USAGE, fail, intIn, logLevelOption, nodeCommand, onStop, port } from './node-cmd.js';
import { masterList } from '../server/master/leadership.js';
import type { LogLevel } from '../server/log.js';
import { startCommand } from './start.js';
import { statusCommand } from './status.js';

const output = {
  // Usage errors: one line, no help dump.
  writeErr: (s: string) => {
    const line = s.split('\n').find((l) => l.trim().length > 0) ?? s;
    process.stderr.write(`${line.replace(/^error: /, 'ringkv: ')}\n`);
  },
};

function masterCommand(): Command {
  return new Command('master')
    .description('run the lease master: membership, ring, range leases with generations')
    .option('--host <addr>', 'address to listen on', masterDefaults.host)
    .option('--port <n>', 'internal RPC port for nodes and clients (0 = any free port)', port, masterDefaults.port)
    .option('--http-port <n>', 'HTTP port (GET /cluster, GET /metrics)', port, masterDefaults.httpPort)
    .option('--data <dir>', 'data directory (LevelDB in <dir>/master)', './data/master')
    .option('--lease-ms <ms>', 'how long a lease lasts from its renewal', intIn('--lease-ms', 50, 86_400_000), masterDefaults.leaseMs)
    .option('--renew-ms <ms>', 'how often nodes renew their leases (default: lease / 4)', intIn('--renew-ms', 10, 86_400_000))
    .option('--drift-ms <ms>', 'clock-drift margin: owners stop using a lease this early (default: lease / 60)', intIn('--drift-ms', 0, 86_400_000))
    .option('--vnodes <n>', 'virtual nodes per member', intIn('--vnodes', 1, 4096), masterDefaults.vnodes)
    .option('--n <n>', 'copies of every key (replication factor)', intIn('--n', 1, 16), masterDefaults.n)
    .option('--r <n>', 'replicas a read hears from (read quorum)', intIn('--r', 1, 16), masterDefaults.r)
    .option('--w <n>', 'durable copies before a write is acknowledged (write quorum)', intIn('--w', 1, 16), masterDefaults.w)
    .addOption(new Option('--store <kind>', 'where the state lives: level (one master, in --data) or etcd (several masters, one leads)').choices(['level', 'etcd']).default('level'))
    .option('--etcd <endpoints>', 'etcd endpoints host:port[,host:port...] (with --store etcd)', (v: string) => masterList(v).map((a) => address(a)))
    .option('--etcd-prefix <prefix>', 'key prefix in etcd: the masters of one cluster share it', '/ringkv')
    .option('--master-ttl-ms <ms>', 'with etcd: a leader that stops renewing is replaced this long after (whole seconds, at least 1 s)', intIn('--master-ttl-ms', 1000, 3_600_000), 5000)
    .option('--advertise <host:port>', 'the RPC address nodes and the other masters are told (default: --host and --port)', address)
    .addOption(logLevelOption())
    .action(async (o: Record<string, unknown>) => {
      const cfg: MasterConfig = {
        ...masterDefaults,
        host: String(o.host),
        port: o.port as number,
        httpPort: o.httpPort as number,
        data: String(o.data),
        leaseMs: o.leaseMs as number,
        renewMs: (o.renewMs as number | undefined) ?? Math.max(10, Math.floor((o.leaseMs as number) / 4)),
        driftMs: (o.driftMs as number | undefined) ?? Math.floor((o.leaseMs as number) / 60),
        vnodes: o.vnodes as number,
        n: o.n as number,
        r: o.r as number,
        w: o.w as number,
        tickMs: Math.max(10, Math.min(masterDefaults.tickMs, Math.floor((o.leaseMs as number) / 10))),
        logLevel: o.logLevel as LogLevel,
        store: o.store as 'level' | 'etcd',
        ...(o.etcd !== undefined ? { etcd: o.etcd as string[] } : {}),
        etcdPrefix: String(o.etcdPrefix),
        masterTtlMs: o.masterTtlMs as number,
        ...(o.advertise !== undefined ? { advertise: String(o.advertise) } : {}),
      };
      if (cfg.store === 'etcd' && (cfg.etcd ?? []).length === 0) fail('--store etcd needs --etcd host:port[,host:port...]');
      if (cfg.store === 'level' && cfg.etcd !== undefined) fail('--etcd is for --store etcd');
      if (cfg.renewMs + cfg.driftMs >= cfg.leaseMs) fail('--renew-ms plus --drift-ms must be below --lease-ms');
      if (cfg.r > cfg.n || cfg.w > cfg.n) fail(`--r and --w must be at most --n (${cfg.n})`);
      let m: RunningMaster;
      try {
        m = await startMaster(cfg);
      } catch (e) {
        const err = e as NodeJS.ErrnoException;
        if (err.code === 'EADDRINUSE') fail(`cannot listen: address ${cfg.host} port in use (${err.message})`);
        const cause = (err as { cause?: Error }).cause;
        fail(`cannot start master: ${((cause ?? err).message ?? String(e)).replace(/\s+/g, ' ')}`);
      }
      process.stdout.write(`ringkv master ready rpc=${cfg.host}:${m.port} http=${cfg.host}:${m.httpPort} pid=${process.pid}\n`);
      onStop(() => m.close());
    });
}

export function program(): Command {
  const p = new Command('ringkv')
    .description('ringkv: a sharded, replicated key-value store that speaks memcached')
    .version(RINGKV_VERSION)
    .showSuggestionAfterError(true)
    .exitOverride()
    .configureOutput(output);
  p.addCommand(nodeCommand());
  p.addCommand(masterCommand());
  p.addCommand(startCommand());
  p.addCommand(statusCommand());
  p.addCommand(clusterCommand());
  // Subcommands of subcommands too (cluster add, cluster remove): one-line usage errors everywhere.
  const all = (c: Command): Command[] => c.commands.flatMap((s) => [s, ...all(s)]);
  for (const c of all(p)) c.exitOverride().configureOutput(output);
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
