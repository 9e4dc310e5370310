/**
 * `disref status`: what the store holds now — locks, references, processes —
 * as a table for people or JSON for scripts.
 * @module
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import type { StoreSnapshot } from '../backend.js';
import { connect } from '../disref.js';
import { InvalidArgumentError } from '../errors.js';
import { DEFAULT_NAMESPACE } from '../options.js';
import { EXIT } from './exit-codes.js';

export const STATUS_HELP = `Usage: disref status [--url URL] [--namespace NS] [--json] [--watch] [PREFIX]

Shows what the store holds now: locks (key, holder process, fence, time
left, waiters), references (resource, live holders, times modified) and
processes (id, host, pid, heartbeat age, alive or dead), and the data-loss
quarantine while one holds grants back. PREFIX keeps only keys and resources
that start with it.

Options:
  --url URL        store URL (default: $DISREF_URL)
  --namespace NS   namespace to show (default: ${DEFAULT_NAMESPACE})
  --json           one JSON document (with --watch: one per line)
  --watch          refresh every second until interrupted
  -h, --help       print this help
`;

/** The snapshot, filtered by prefix, with each lock holder's process id resolved. */
export interface StatusReport {
  readonly address: string;
  readonly namespace: string;
  readonly locks: readonly {
    key: string;
    holders: readonly { process: string; mode: string; fence: number; ttlLeft: number }[];
    waiters: number;
  }[];
  readonly references: readonly {
    resource: string;
    liveHolders: number;
    timesModified: number;
    completing: boolean;
  }[];
  readonly processes: readonly {
    id: string;
    host: string | null;
    pid: number | null;
    heartbeatAge: number | null;
    alive: boolean;
  }[];
  /** What the store could not list, or null. (Missing values are null, so the JSON shows them.) */
  readonly incomplete: string | null;
  /** ms the data-loss quarantine still holds grants back, or null when none does. */
  readonly quarantineLeft: number | null;
}

/** Owner tokens are `<process id>:<random>`: the process is the part before the colon. */
function processOf(owner: string): string {
  const colon = owner.indexOf(':');
  return colon < 0 ? owner : owner.slice(0, colon);
}

export function buildReport(
  snapshot: StoreSnapshot,
  context: { address: string; namespace: string; prefix: string; observer?: string },
): StatusReport {
  const alive = new Set(snapshot.processes.filter((p) => p.ttlLeft > 0).map((p) => p.id));
  const { prefix } = context;
  return {
    address: context.address,
    namespace: context.namespace,
    locks: snapshot.locks
      .filter((lock) => lock.key.startsWith(prefix))
      .map((lock) => ({
        key: lock.key,
        holders: lock.holders.map((holder) => ({
          process: processOf(holder.owner),
          mode: holder.mode,
          fence: holder.fence,
          ttlLeft: holder.ttlLeft,
        })),
        waiters: lock.waiters,
      })),
    references: snapshot.references
      .filter((reference) => reference.resource.startsWith(prefix))
      .map((reference) => ({
        resource: reference.resource,
        liveHolders: reference.holders.filter((holder) => alive.has(holder)).length,
        timesModified: reference.timesModified,
        completing: reference.completing,
      })),
    processes: snapshot.processes
      .filter((process) => process.id !== context.observer)
      .map((process) => ({
        id: process.id,
        host: process.info?.host ?? null,
        pid: process.info?.pid ?? null,
        heartbeatAge: process.heartbeatAge ?? null,
        alive: process.ttlLeft > 0,
      })),
    incomplete: snapshot.incomplete ?? null,
    quarantineLeft: snapshot.quarantineLeft ?? null,
  };
}

function seconds(ms: number | null): string {
  return ms === null ? '?' : `${(ms / 1000).toFixed(1)} s`;
}

function table(title: string, header: string[], rows: string[][]): string {
  if (rows.length === 0) return `${title}: none\n`;
  const all = [header, ...rows];
  const widths = header.map((_, column) =>
    Math.max(...all.map((row) => (row[column] ?? '').length)),
  );
  const lines = all.map((row) =>
    row
      .map((cell, column) => cell.padEnd(widths[column] ?? 0))
      .join('  ')
      .trimEnd(),
  );
  return `${title}\n${lines.map((line) => `  ${line}`).join('\n')}\n`;
}

export function renderReport(report: StatusReport): string {
  const parts = [`${report.address} namespace ${report.namespace}\n`];
  if (report.quarantineLeft !== null) {
    parts.push(
      `QUARANTINE: no lease is granted for ${seconds(report.quarantineLeft)} more: the store ` +
        'may have lost leases that are still running (a restart without persistence, a flush, ' +
        'an eviction), or this namespace is new on a freshly started server. See "Data loss" ' +
        'in the README.\n',
    );
  }
  parts.push(
    table(
      'LOCKS',
      ['key', 'holder process', 'mode', 'fence', 'time left', 'waiters'],
      report.locks.flatMap((lock) =>
        lock.holders.map((holder) => [
          lock.key,
          holder.process,
          holder.mode,
          String(holder.fence),
          seconds(holder.ttlLeft),
          String(lock.waiters),
        ]),
      ),
    ),
  );
  parts.push(
    table(
      'REFERENCES',
      ['resource', 'live holders', 'times modified', 'state'],
      report.references.map((reference) => [
        reference.resource,
        String(reference.liveHolders),
        String(reference.timesModified),
        reference.completing ? 'completing' : 'held',
      ]),
    ),
  );
  parts.push(
    table(
      'PROCESSES',
      ['id', 'host', 'pid', 'heartbeat age', 'state'],
      report.processes.map((process) => [
        process.id,
        process.host ?? '?',
        process.pid === null ? '?' : String(process.pid),
        seconds(process.heartbeatAge),
        process.alive ? 'alive' : 'dead',
      ]),
    ),
  );
  if (report.incomplete !== null) parts.push(`note: ${report.incomplete}\n`);
  return parts.join('\n');
}

export async function statusCommand(args: readonly string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: [...args],
    options: {
      url: { type: 'string' },
      namespace: { type: 'string' },
      json: { type: 'boolean' },
      watch: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    allowPositionals: true,
    strict: true,
  });
  if (values.help === true) {
    process.stdout.write(STATUS_HELP);
    return EXIT.ok;
  }
  if (positionals.length > 1) {
    throw new InvalidArgumentError('PREFIX', 'at most one prefix', positionals.join(' '));
  }
  const url = values.url ?? process.env.DISREF_URL;
  if (url === undefined || url === '' || url.startsWith('memory:')) {
    throw new InvalidArgumentError(
      '--url',
      'a shared store (redis://..., memcached://...): the in-process store of another process cannot be seen',
      url,
    );
  }
  const namespace = values.namespace ?? DEFAULT_NAMESPACE;
  // A short-lived observer: heartbeat rarely, hold nothing.
  const disref = await connect({ url, namespace, heartbeatInterval: 60_000 });
  try {
    const backend = disref.backend;
    const prefix = positionals[0] ?? '';
    for (;;) {
      const report = buildReport(await backend.snapshot(prefix), {
        address: backend.address,
        namespace,
        prefix,
        observer: disref.id,
      });
      process.stdout.write(
        values.json === true
          ? `${JSON.stringify(report, null, values.watch === true ? undefined : 2)}\n`
          : `${values.watch === true ? '\x1b[2J\x1b[H' : ''}${renderReport(report)}`,
      );
      if (values.watch !== true) return EXIT.ok;
      await sleep(1000);
    }
  } finally {
    await disref.close();
  }
}
