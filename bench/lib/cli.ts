// Small helpers shared by the bench CLIs: the options they all have, strict number parsing for commander options
// (a typo fails loudly instead of becoming NaN) and "is this module the entry point".
import { Command, InvalidArgumentError } from 'commander';
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export function intArg(min: number, max: number): (value: string) => number {
  return (value: string) => {
    const n = Number(value);
    if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
      throw new InvalidArgumentError(`expected an integer in [${min}, ${max}], got "${value}"`);
    }
    return n;
  };
}

export function numberArg(min: number, max: number): (value: string) => number {
  return (value: string) => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n) || n < min || n > max) {
      throw new InvalidArgumentError(`expected a number in [${min}, ${max}], got "${value}"`);
    }
    return n;
  };
}

/** True when the module at `metaUrl` is the script node was started with. */
export function isMain(metaUrl: string): boolean {
  const entry = process.argv[1];
  if (!entry) return false;
  try {
    return realpathSync(entry) === realpathSync(fileURLToPath(metaUrl));
  } catch {
    return false;
  }
}

/** The options every bench CLI has. */
export interface BenchOptions {
  quick: boolean;
  durationS?: number;
  warmupS?: number;
  write: boolean;
}

/** A seconds option's help and range. */
export interface SecondsOption {
  help: string;
  min: number;
  max: number;
}

/** A bench CLI with its first options: --quick, --duration-s, --warmup-s (its own options follow). */
export function benchCommand(name: string, description: string, o: { quick: string; durationS: SecondsOption; warmupS: SecondsOption }): Command {
  return new Command(name)
    .description(description)
    .option('--quick', o.quick, false)
    .option('--duration-s <s>', o.durationS.help, numberArg(o.durationS.min, o.durationS.max))
    .option('--warmup-s <s>', o.warmupS.help, numberArg(o.warmupS.min, o.warmupS.max));
}

/** Adds the last option, --no-write, parses the command line and returns the options. */
export function parseBenchOptions<T extends BenchOptions>(program: Command): T {
  return program.option('--no-write', 'do not write bench/results/').parse().opts<T>();
}

/**
 * Runs a bench's `main` as the process's work: its result is the exit code; an error is
 * printed (with `errorDetail`) as exit code 1; on SIGINT/SIGTERM everything is stopped and
 * the process exits 130; at the end whatever is still running is stopped.
 */
export async function runBench(
  prog: string,
  main: () => Promise<number>,
  o: { stopAll: () => Promise<void>; stopping: () => string; errorDetail?: () => string },
): Promise<void> {
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      console.error(`${prog}: ${signal}: stopping ${o.stopping()}`);
      void o.stopAll().finally(() => process.exit(130));
    });
  }
  try {
    process.exitCode = await main();
  } catch (e) {
    console.error(`${prog}: ${(e as Error).stack ?? String(e)}${o.errorDetail?.() ?? ''}`);
    process.exitCode = 1;
  } finally {
    await o.stopAll();
  }
}
