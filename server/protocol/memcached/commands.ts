// The typed commands of the memcached text protocol, as the parser returns them.
// Keys are latin1 strings: one character per byte, so any key bytes round-trip.
import type { StoreMode } from '../../kv/local-kv.js';

/** A meta-command flag: its letter and the token glued to it (`T30` -> { letter: 'T', token: '30' }). */
export interface MetaFlag {
  readonly letter: string;
  readonly token: string;
}

export interface MetaBase {
  /** The key as bytes (decoded from base64 when the `b` flag is present). */
  readonly key: string;
  /** The key as the client wrote it (base64 text under `b`), for the `k` return flag. */
  readonly keyToken: string;
  readonly base64: boolean;
  /** All flags, in request order (return flags are echoed in this order). */
  readonly flags: readonly MetaFlag[];
  readonly quiet: boolean;
}

export type Command =
  | { kind: 'get'; keys: string[]; withCas: boolean }
  | { kind: 'gat'; exptime: number; keys: string[]; withCas: boolean }
  | { kind: 'store'; mode: StoreMode; key: string; flags: number; exptime: number; value: Buffer; cas?: bigint; noreply: boolean }
  /** A storage command whose value exceeds the item size: the block is swallowed, not read. */
  | { kind: 'too-large'; mode: StoreMode; key: string; noreply: boolean; meta?: MetaBase }
  | { kind: 'delete'; key: string; noreply: boolean }
  | { kind: 'delta'; incr: boolean; key: string; delta: bigint; noreply: boolean }
  | { kind: 'touch'; key: string; exptime: number; noreply: boolean }
  | { kind: 'flush_all'; delay: number; noreply: boolean }
  | { kind: 'version' }
  | { kind: 'verbosity'; noreply: boolean }
  | { kind: 'stats'; args: string[] }
  | { kind: 'quit' }
  | { kind: 'mn' }
  | ({ kind: 'mg' } & MetaBase)
  | ({ kind: 'ms'; value: Buffer } & MetaBase)
  | ({ kind: 'md' } & MetaBase)
  | ({ kind: 'ma' } & MetaBase)
  | ({ kind: 'me' } & MetaBase);

export type CommandKind = Command['kind'];

/**
 * What the parser returns for the bytes at an offset: not enough bytes yet, a command,
 * an error reply (the connection stays usable), or "close the connection" for input
 * memcached itself refuses to keep reading (an over-long line).
 */
export type ParseResult =
  | { type: 'need-more' }
  | { type: 'command'; command: Command; next: number; swallow?: number }
  | { type: 'error'; reply: string; next: number; swallow?: number }
  | { type: 'close'; reason: string };
