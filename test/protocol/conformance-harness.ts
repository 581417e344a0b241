// The differential harness: runs a conformance case on a fresh connection, records the
// reply transcript, and normalises the parts that legitimately differ between two correct
// servers (cas uniques, the version string, stats values) so transcripts compare with `toEqual`.
//
// Invariant: normalisation only rewrites those three things (plus a lossless run-length
// shorthand for long runs of one byte, so a 1 MiB value prints as one short token in a diff);
// every other byte, including error lines and data blocks, is compared as sent.
import { Conn, connect, show, type Bytes } from './mc-client.js';

/** Maps a logical key name to this case's own key (`c<index>_<name>`), so cases never share keys. */
export type KeyOf = (name: string) => string;

export interface ConformanceCase {
  /** Unique, readable; it becomes the vitest test name. */
  readonly name: string;
  /** Drives one fresh connection and returns the replies in order (one entry per exchange). */
  readonly steps: (c: Conn, k: KeyOf) => Promise<string[]>;
}

/** The key prefix of the case at `index`; the same on every server, so transcripts line up. */
export function keyOf(index: number): KeyOf {
  return (name) => `c${index}_${name}`;
}

/** A short printable label for a request, used to pair each reply with what caused it. */
export function label(bytes: Bytes): string {
  const s = typeof bytes === 'string' ? bytes : bytes.toString('latin1');
  const shown = compressRuns(s);
  return JSON.stringify(shown.length > 70 ? shown.slice(0, 70) + '...' : shown);
}

/**
 * Sends one request (plus `mn`) and returns the transcript entry `"<request>" => <reply>`.
 * The label is identical on both servers, so it never causes a difference; it only makes a
 * failing diff readable. `normalise` leaves the label alone and normalises the reply.
 */
export async function exchange(c: Conn, req: Bytes): Promise<string> {
  return entry(req, await c.request(req));
}

/** The transcript entry for a request and the reply it got. */
export function entry(req: Bytes, reply: string): string {
  return `${label(req)} => ${reply}`;
}

/** A case made of plain requests: each one is sent with `request()` (so `mn` follows it). */
export function requests(name: string, build: (k: KeyOf) => readonly Bytes[]): ConformanceCase {
  return {
    name,
    async steps(c, k) {
      const out: string[] = [];
      for (const req of build(k)) out.push(await exchange(c, req));
      return out;
    },
  };
}

/** A case with its own script (split writes, reading until close, using a cas from a reply). */
export function script(name: string, steps: (c: Conn, k: KeyOf) => Promise<string[]>): ConformanceCase {
  return { name, steps };
}

/**
 * The first cas unique in a reply: from `VALUE <k> <f> <n> <cas>` or a meta `c<cas>` flag.
 * Throws (recorded in the transcript) when there is none, so a server that omits the cas
 * fails the case visibly instead of sending a bogus number.
 */
export function casOf(reply: string): bigint {
  const value = /^VALUE \S+ \d+ \d+ (\d+)\r$/m.exec(reply);
  if (value) return BigInt(value[1]!);
  const meta = /^(?:HD|VA \d+|EN|NF|NS|EX)(?: \S+)* c(\d+)(?: |\r)/m.exec(reply);
  if (meta) return BigInt(meta[1]!);
  throw new Error(`no cas unique in reply ${show(reply)}`);
}

/** Runs one case on a fresh connection; a thrown error becomes the last transcript entry. */
export async function runCase(port: number, testCase: ConformanceCase, index: number): Promise<string[]> {
  const conn = await connect(port);
  const out: string[] = [];
  try {
    out.push(...(await testCase.steps(conn, keyOf(index))));
  } catch (e) {
    out.push(`!! ${(e as Error).message}`);
  } finally {
    conn.close();
  }
  return out;
}

/** Replaces runs of >= 32 equal chars by `«c×n»` (lossless for our data; keeps diffs short). */
export function compressRuns(s: string): string {
  return s.replace(/(.)\1{31,}/gs, (run, ch: string) => `«${ch}×${run.length}»`);
}

type CasNamer = (digits: string) => string;

/** Meta return lines whose flags may carry `c<cas>`. */
const metaLine = /^(HD|EN|NF|NS|EX|VA (\d+))((?: \S*)*)$/;
const valueLine = /^VALUE (\S+) (\d+) (\d+)(?: (\d+))?$/;

function renameMetaFlags(flags: string, cas: CasNamer): string {
  return flags.replace(/(^| )c(\d+)(?= |$)/g, (_m, sp: string, digits: string) => `${sp}c${cas(digits)}`);
}

/** Normalises one reply (see module comment); `cas` numbers uniques across a whole transcript. */
function normaliseReply(reply: string, cas: CasNamer): string {
  let out = '';
  let pos = 0;
  while (pos < reply.length) {
    const eol = reply.indexOf('\r\n', pos);
    if (eol < 0) {
      out += reply.slice(pos);
      break;
    }
    const line = reply.slice(pos, eol);
    let next = eol + 2;
    let dataBytes = -1;
    let head = line;
    const value = valueLine.exec(line);
    const meta = value ? null : metaLine.exec(line);
    if (value) {
      dataBytes = Number(value[3]);
      head = `VALUE ${value[1]} ${value[2]} ${value[3]}${value[4] === undefined ? '' : ` ${cas(value[4])}`}`;
    } else if (meta) {
      if (meta[2] !== undefined) dataBytes = Number(meta[2]);
      head = meta[1] + renameMetaFlags(meta[3] ?? '', cas);
    } else if (line.startsWith('VERSION ')) {
      head = 'VERSION <v>';
    } else if (line.startsWith('STAT ')) {
      head = line.replace(/^STAT (\S+) .*$/, 'STAT $1 <v>');
    } else if (line.startsWith('ME ')) {
      head = line.replace(/ cas=(\d+)/, (_m, digits: string) => ` cas=${cas(digits)}`);
    }
    out += head + '\r\n';
    // A data block is copied verbatim when the header announced it and it is all there,
    // so value bytes that look like protocol lines are never rewritten.
    if (dataBytes >= 0 && next + dataBytes + 2 <= reply.length) {
      out += reply.slice(next, next + dataBytes + 2);
      next += dataBytes + 2;
    }
    pos = next;
  }
  return out;
}

/**
 * Normalises a transcript: cas uniques become `<cas1>`, `<cas2>`, ... in order of first
 * appearance (equal stays equal, distinct stays distinct), `VERSION x` becomes `VERSION <v>`,
 * `STAT name value` becomes `STAT name <v>`, and long byte runs are shortened losslessly.
 */
export function normalise(transcript: readonly string[]): string[] {
  const names = new Map<string, string>();
  const cas: CasNamer = (digits) => {
    let name = names.get(digits);
    if (name === undefined) {
      name = `<cas${names.size + 1}>`;
      names.set(digits, name);
    }
    return name;
  };
  return transcript.map((entry) => {
    const labelled = /^("(?:[^"\\]|\\.)*") => /s.exec(entry);
    const head = labelled ? labelled[0] : '';
    return head + compressRuns(normaliseReply(entry.slice(head.length), cas));
  });
}
