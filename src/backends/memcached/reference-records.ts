/**
 * The items that reference counting keeps in memcached, their compact JSON
 * encodings, and strict decoders (an item that is not what disref wrote
 * fails loudly instead of being misread). Which server holds what, and why,
 * is told in `memcached-references.ts`.
 *
 *     process   <ns>:p:<id>       {"e":expiresAt,"b":lastBeat}  (+ "d":1 once declared dead)
 *     held list <ns>:h:<id>       ["resource",...]
 *     resource  <ns>:r:<resource> {"h":[holder ids],"m":timesModified,"a":attempts,
 *                                  "c":[claim token,expiresAt],"q":"pending token"}
 *                                  (+ "o":1 once referenced since the claim)
 *     registry  <ns>:~processes   [["id","host",pid],...]
 *     registry  <ns>:~pending     [["resource","pending token"],...]
 *
 * Times are wall-clock ms (`Date.now()`) of the process that wrote them.
 * @module
 */
import type { ProcessInfo } from '../../backend.js';

/** A process's heartbeat. */
export interface ProcessRecord {
  /** Wall-clock ms (the process's own clock) when its heartbeat runs out. */
  readonly expiresAt: number;
  /** Wall-clock ms of its last heartbeat. */
  readonly lastBeat: number;
  /** Declared dead: it never beats again under this identity. */
  readonly dead: boolean;
}

/** The reference-counting state of one resource. */
export interface ResourceRecord {
  /** Process ids of the holders (dead ones stay until pruned). */
  readonly holders: readonly string[];
  readonly timesModified: number;
  /** Completion runs so far in this lifetime (the next claim gets attempts + 1). */
  readonly attempts: number;
  /** The claim on running the completion, if one was handed out. */
  readonly claim: { readonly token: string; readonly expiresAt: number } | undefined;
  /**
   * Set once no live holder is left (the resource is "completing"): the
   * token of its entry in the pending registry. An entry whose token is not
   * the one here is stale.
   */
  readonly pending: string | undefined;
  /** Referenced since the claim was handed out: a next lifetime began while it ran. */
  readonly reopened: boolean;
}

export const EMPTY_RESOURCE: ResourceRecord = {
  holders: [],
  timesModified: 0,
  attempts: 0,
  claim: undefined,
  pending: undefined,
  reopened: false,
};

export function encodeProcess(record: ProcessRecord): string {
  return JSON.stringify(
    record.dead
      ? { e: record.expiresAt, b: record.lastBeat, d: 1 }
      : { e: record.expiresAt, b: record.lastBeat },
  );
}

export function decodeProcess(data: Buffer): ProcessRecord {
  const { e, b, d } = parseObject(data, 'process record') as {
    e?: unknown;
    b?: unknown;
    d?: unknown;
  };
  if (!isCount(e) || !isCount(b) || (d !== undefined && d !== 1)) {
    throw new SyntaxError('process record lacks e or b');
  }
  return { expiresAt: e, lastBeat: b, dead: d === 1 };
}

export function encodeResource(record: ResourceRecord): string {
  return JSON.stringify({
    h: record.holders,
    m: record.timesModified,
    a: record.attempts,
    ...(record.claim === undefined ? {} : { c: [record.claim.token, record.claim.expiresAt] }),
    ...(record.pending === undefined ? {} : { q: record.pending }),
    ...(record.reopened ? { o: 1 } : {}),
  });
}

export function decodeResource(data: Buffer): ResourceRecord {
  const { h, m, a, c, q, o } = parseObject(data, 'resource record') as Record<string, unknown>;
  if (!isStrings(h) || !isCount(m) || !isCount(a) || (q !== undefined && typeof q !== 'string')) {
    throw new SyntaxError('resource record lacks h, m or a');
  }
  if (o !== undefined && o !== 1) throw new SyntaxError('bad o in resource record');
  let claim: ResourceRecord['claim'];
  if (c !== undefined) {
    const [token, expiresAt] = Array.isArray(c) ? (c as unknown[]) : [];
    if (typeof token !== 'string' || !isCount(expiresAt)) {
      throw new SyntaxError('bad claim in resource record');
    }
    claim = { token, expiresAt };
  }
  return { holders: h, timesModified: m, attempts: a, claim, pending: q, reopened: o === 1 };
}

export function encodeHeld(resources: readonly string[]): string {
  return JSON.stringify(resources);
}

export function decodeHeld(data: Buffer): string[] {
  const raw: unknown = JSON.parse(data.toString('utf8'));
  if (!isStrings(raw)) throw new SyntaxError('held list is not an array of names');
  return raw;
}

/** The process registry: id -> where it runs. */
export function encodeProcesses(entries: ReadonlyMap<string, ProcessInfo>): string {
  return JSON.stringify([...entries].map(([id, info]) => [id, info.host, info.pid]));
}

export function decodeProcesses(data: Buffer): Map<string, ProcessInfo> {
  const raw: unknown = JSON.parse(data.toString('utf8'));
  if (!Array.isArray(raw)) throw new SyntaxError('process registry is not an array');
  return new Map(
    raw.map((entry: unknown): [string, ProcessInfo] => {
      const [id, host, pid] = Array.isArray(entry) ? (entry as unknown[]) : [];
      if (typeof id !== 'string' || typeof host !== 'string' || !isCount(pid)) {
        throw new SyntaxError('bad entry in process registry');
      }
      return [id, { host, pid }];
    }),
  );
}

/** The pending registry: resource -> pending token. */
export function encodePending(entries: ReadonlyMap<string, string>): string {
  return JSON.stringify([...entries]);
}

export function decodePending(data: Buffer): Map<string, string> {
  const raw: unknown = JSON.parse(data.toString('utf8'));
  if (!Array.isArray(raw)) throw new SyntaxError('pending registry is not an array');
  return new Map(
    raw.map((entry: unknown): [string, string] => {
      const [resource, token] = Array.isArray(entry) ? (entry as unknown[]) : [];
      if (typeof resource !== 'string' || typeof token !== 'string') {
        throw new SyntaxError('bad entry in pending registry');
      }
      return [resource, token];
    }),
  );
}

function parseObject(data: Buffer, what: string): object {
  const raw: unknown = JSON.parse(data.toString('utf8'));
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new SyntaxError(`${what} is not an object`);
  }
  return raw;
}

function isCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

function isStrings(value: unknown): value is string[] {
  return Array.isArray(value) && value.every((entry) => typeof entry === 'string');
}
