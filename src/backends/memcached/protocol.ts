/**
 * The memcached meta protocol (memcached >= 1.6), as far as disref needs
 * it: encoding `mg` / `ms` / `md` / `ma` / `mn` (and `version`, `stats`,
 * `flush_all`) requests, and an incremental parser for the replies that
 * copes with any split of the byte stream (a header cut in two, a 1 MB
 * value arriving in many chunks, several replies in one chunk).
 *
 * Every request disref sends gets exactly one reply (no quiet mode), so a
 * connection matches replies to requests in order.
 * @module
 */

/** A meta command on one key. */
export interface MetaRequest {
  readonly command: 'mg' | 'ms' | 'md' | 'ma';
  /** A valid memcached key (see {@link isValidKey}); callers hash anything else. */
  readonly key: string;
  /** Flag tokens such as `v`, `c`, `T30`, `C123`, `ME`. */
  readonly flags?: readonly string[];
  /** The value of an `ms` (binary-safe). */
  readonly value?: Buffer | string;
}

/** A request without a key. */
export interface PlainRequest {
  readonly command: 'mn' | 'version' | 'stats' | 'flush_all';
}

export type Request = MetaRequest | PlainRequest;

/** Status codes of meta replies. */
export type MetaStatus = 'VA' | 'HD' | 'EN' | 'NS' | 'EX' | 'NF' | 'MN';

/** A meta reply: status, returned flags (letter -> token), and the value of a `VA`. */
export interface MetaResponse {
  readonly kind: 'meta';
  readonly status: MetaStatus;
  readonly flags: ReadonlyMap<string, string>;
  readonly value: Buffer | undefined;
}

export interface StatsResponse {
  readonly kind: 'stats';
  readonly stats: ReadonlyMap<string, string>;
}

export interface VersionResponse {
  readonly kind: 'version';
  readonly version: string;
}

/** `OK`, the reply to `flush_all`. */
export interface OkResponse {
  readonly kind: 'ok';
}

/** `ERROR`, `CLIENT_ERROR <message>` or `SERVER_ERROR <message>`. */
export interface ErrorResponse {
  readonly kind: 'error';
  readonly type: 'ERROR' | 'CLIENT_ERROR' | 'SERVER_ERROR';
  readonly message: string;
}

export type Response = MetaResponse | StatsResponse | VersionResponse | OkResponse | ErrorResponse;

/** The stream cannot be parsed: the connection is out of step and must be dropped. */
export class ProtocolError extends Error {
  override readonly name = 'ProtocolError';
}

/** memcached's key limit, in bytes. */
export const MAX_KEY_BYTES = 250;
/** Longest reply line accepted (headers and STAT lines are far shorter). */
const MAX_LINE_BYTES = 8192;
/** Largest value accepted in a reply; memcached's own item limit is at most 1 GB. */
const MAX_VALUE_BYTES = 1024 * 1024 * 1024;
const CRLF = Buffer.from('\r\n');
const META_STATUSES = new Set<string>(['VA', 'HD', 'EN', 'NS', 'EX', 'NF', 'MN']);

/** 1 to 250 bytes of printable ASCII without spaces: what every memcached version accepts. */
export function isValidKey(key: string): boolean {
  return key.length > 0 && key.length <= MAX_KEY_BYTES && /^[\x21-\x7e]+$/.test(key);
}

/** Encodes one request. Throws `TypeError` on a key or flag that would break the stream. */
export function encodeRequest(request: Request): Buffer {
  switch (request.command) {
    case 'mn':
    case 'version':
    case 'stats':
    case 'flush_all':
      return Buffer.from(`${request.command}\r\n`);
    default:
      return encodeMeta(request);
  }
}

function encodeMeta(request: MetaRequest): Buffer {
  // A bad key or flag would make the server read our data as commands and
  // answer twice: refuse it here instead of desynchronising the connection.
  if (!isValidKey(request.key)) {
    throw new TypeError(`memcached key must be 1-250 printable ASCII bytes: ${request.key}`);
  }
  const flags = request.flags ?? [];
  for (const flag of flags) {
    if (!/^[A-Za-z][\x21-\x7e]*$/.test(flag)) throw new TypeError(`bad meta flag: ${flag}`);
  }
  const tail = flags.length === 0 ? '' : ` ${flags.join(' ')}`;
  if (request.command !== 'ms') {
    if (request.value !== undefined) throw new TypeError(`${request.command} takes no value`);
    return Buffer.from(`${request.command} ${request.key}${tail}\r\n`);
  }
  const value =
    typeof request.value === 'string'
      ? Buffer.from(request.value)
      : (request.value ?? Buffer.alloc(0));
  const header = Buffer.from(`ms ${request.key} ${String(value.length)}${tail}\r\n`);
  return Buffer.concat([header, value, CRLF]);
}

/**
 * Incremental reply parser: feed it chunks as they arrive; it returns the
 * replies completed so far and keeps the rest. Throws {@link ProtocolError}
 * on bytes that are not a valid reply (after which it must be discarded).
 */
export class ResponseParser {
  private chunks: Buffer[] = [];
  private buffered = 0;
  /** A `VA` header whose value has not fully arrived. */
  private value: { readonly flags: ReadonlyMap<string, string>; readonly size: number } | undefined;
  /** STAT lines of a `stats` reply until its `END`. */
  private stats: Map<string, string> | undefined;

  /** Bytes received but not yet part of a complete reply. */
  get pendingBytes(): number {
    return this.buffered;
  }

  push(chunk: Buffer): Response[] {
    if (chunk.length > 0) {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
    }
    const replies: Response[] = [];
    for (;;) {
      if (this.value !== undefined) {
        // Wait for the whole value before joining chunks: a 1 MB value in
        // 64 KB reads is copied once, not once per read.
        const needed = this.value.size + 2;
        if (this.buffered < needed) break;
        const data = this.take(needed);
        if (data[needed - 2] !== 0x0d || data[needed - 1] !== 0x0a) {
          throw new ProtocolError('value not followed by \\r\\n');
        }
        replies.push({
          kind: 'meta',
          status: 'VA',
          flags: this.value.flags,
          value: data.subarray(0, this.value.size),
        });
        this.value = undefined;
        continue;
      }
      const line = this.takeLine();
      if (line === undefined) break;
      const reply = this.parseLine(line);
      if (reply !== undefined) replies.push(reply);
    }
    return replies;
  }

  private parseLine(line: string): Response | undefined {
    if (this.stats !== undefined) {
      if (line === 'END') {
        const stats = this.stats;
        this.stats = undefined;
        return { kind: 'stats', stats };
      }
      this.addStat(line);
      return undefined;
    }
    const space = line.indexOf(' ');
    const head = space < 0 ? line : line.slice(0, space);
    const rest = space < 0 ? '' : line.slice(space + 1);
    if (META_STATUSES.has(head)) return this.parseMeta(head as MetaStatus, rest);
    switch (head) {
      case 'STAT':
        this.stats = new Map();
        this.addStat(line);
        return undefined;
      case 'END':
        // A `stats` reply without STAT lines.
        return { kind: 'stats', stats: new Map() };
      case 'OK':
        return { kind: 'ok' };
      case 'VERSION':
        return { kind: 'version', version: rest };
      case 'ERROR':
      case 'CLIENT_ERROR':
      case 'SERVER_ERROR':
        return { kind: 'error', type: head, message: rest };
      default:
        throw new ProtocolError(`unexpected reply line: ${JSON.stringify(line.slice(0, 80))}`);
    }
  }

  private parseMeta(status: MetaStatus, rest: string): Response | undefined {
    const tokens = rest === '' ? [] : rest.split(' ');
    if (status === 'VA') {
      const sizeToken = tokens.shift() ?? '';
      const size = /^\d{1,10}$/.test(sizeToken) ? Number(sizeToken) : NaN;
      if (!(size <= MAX_VALUE_BYTES)) throw new ProtocolError(`bad VA size: ${sizeToken}`);
      this.value = { flags: parseFlags(tokens), size };
      return undefined;
    }
    return { kind: 'meta', status, flags: parseFlags(tokens), value: undefined };
  }

  private addStat(line: string): void {
    const match = /^STAT (\S+) ?(.*)$/.exec(line);
    if (match === null)
      throw new ProtocolError(`bad STAT line: ${JSON.stringify(line.slice(0, 80))}`);
    this.stats?.set(match[1] ?? '', match[2] ?? '');
  }

  /** The next line without its \r\n, or undefined when it has not fully arrived. */
  private takeLine(): string | undefined {
    if (this.buffered === 0) return undefined;
    const joined = this.join();
    const end = joined.indexOf(CRLF);
    if (end < 0) {
      if (joined.length > MAX_LINE_BYTES) throw new ProtocolError('reply line too long');
      return undefined;
    }
    const line = joined.toString('latin1', 0, end);
    this.consume(joined, end + 2);
    return line;
  }

  private take(length: number): Buffer {
    const joined = this.join();
    const taken = joined.subarray(0, length);
    this.consume(joined, length);
    return taken;
  }

  private join(): Buffer {
    if (this.chunks.length > 1) this.chunks = [Buffer.concat(this.chunks, this.buffered)];
    return this.chunks[0] ?? Buffer.alloc(0);
  }

  private consume(joined: Buffer, length: number): void {
    const rest = joined.subarray(length);
    this.chunks = rest.length > 0 ? [rest] : [];
    this.buffered = rest.length;
  }
}

/** `c123 t-1 k` -> { c: '123', t: '-1', k: '' }. */
function parseFlags(tokens: readonly string[]): ReadonlyMap<string, string> {
  const flags = new Map<string, string>();
  for (const token of tokens) {
    if (token !== '') flags.set(token.charAt(0), token.slice(1));
  }
  return flags;
}

/** memcached reads an exptime above 30 days as an absolute Unix time. */
const MAX_RELATIVE_EXPTIME = 30 * 24 * 3600;

/**
 * The relative exptime, in whole seconds, that keeps an item for at least
 * `ms`: memcached counts expiry on a clock that ticks once a second, so an
 * item set with exptime N lives between N - 1 and N + 1 seconds. One extra
 * second makes it never shorter than asked, and at most 2 s (plus the
 * rounding up) longer.
 */
export function exptimeFor(ms: number): number {
  const seconds = Math.ceil(ms / 1000) + 1;
  if (!(seconds >= 2 && seconds <= MAX_RELATIVE_EXPTIME)) {
    throw new RangeError(`memcached cannot keep an item for ${String(ms)} ms (30 days at most)`);
  }
  return seconds;
}
