// Structured logs: one JSON object a line on stderr (stdout is the CLI's own: ready lines
// that scripts and tests parse), with pino.
//
//   {"level":"info","time":"2026-11-25T14:55:51.123Z","pid":4242,"node":"n1","msg":"node started","memcached":"127.0.0.1:11211",...}
//
// Levels fatal > error > warn > info > debug > trace, or silent. Events, never requests:
// a node logs its start and stop, membership and ring changes, peers it finds down,
// failures of background work; per-request logging would cost more than the request.
import pino, { type DestinationStream, type Logger } from 'pino';

export type { Logger } from 'pino';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export function isLogLevel(v: string): v is LogLevel {
  return (LOG_LEVELS as readonly string[]).includes(v);
}

export interface LoggerOptions {
  level: LogLevel;
  /** Fields on every line (`node: "n1"`, `component: "master"`). */
  bindings?: Record<string, unknown>;
  /** Where lines go; default stderr, written synchronously (no line lost on exit). */
  destination?: DestinationStream;
}

let stderrDestination: DestinationStream | undefined;

/** One synchronous writer on fd 2 for every logger of the process. */
function stderr(): DestinationStream {
  stderrDestination ??= pino.destination({ dest: 2, sync: true });
  return stderrDestination;
}

export function createLogger(o: LoggerOptions): Logger {
  return pino(
    {
      level: o.level,
      base: { pid: process.pid, ...o.bindings },
      timestamp: pino.stdTimeFunctions.isoTime,
      // "level":"warn" rather than 40: readable as it is, and what log pipelines expect.
      formatters: { level: (label) => ({ level: label }) },
    },
    o.destination ?? stderr(),
  );
}

/** A logger that writes nothing: the default where no logger is given (library use, tests). */
export const silentLogger: Logger = pino({ level: 'silent' });

/** The message of a thrown value, for an `err` field that stays one short line. */
export function errText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
