/**
 * `disref demo`: the seed scenario on the embedded store. Two services (email
 * lookup, address verification) each add their part of the same user record,
 * concurrently; the last one to finish writes the whole record to the
 * "database", exactly once. Each service has its own `Disref`, as separate
 * processes would, holds a reference to the record while it works, adds its
 * part under the record's lock, and dereferences; the completion of the last
 * one out writes the record.
 * @module
 */
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect } from '../disref.js';

export interface DemoResult {
  /** Rows the "database" received; exactly one when all went well. */
  readonly writes: readonly { by: string; fence: number; record: Record<string, string> }[];
  readonly trace: readonly string[];
}

interface Service {
  readonly name: string;
  readonly field: string;
  /** Simulated time the service needs to produce its part, in ms. */
  readonly workMs: number;
  readonly produce: () => string;
}

const SERVICES: readonly Service[] = [
  { name: 'email-lookup', field: 'email', workMs: 40, produce: () => 'ada@example.com' },
  {
    name: 'address-check',
    field: 'address',
    workMs: 50,
    produce: () => '12 Analytical St, London',
  },
];

/** Runs the scenario; `print` receives each trace line as it happens. */
export async function runDemo(
  print: (line: string) => void = () => undefined,
): Promise<DemoResult> {
  const resource = 'record:user-42';
  const started = performance.now();
  const trace: string[] = [];
  const log = (who: string, message: string): void => {
    const line = `${(performance.now() - started).toFixed(0).padStart(5)} ms  ${who.padEnd(14)} ${message}`;
    trace.push(line);
    print(line);
  };
  // The parts of the record in progress (in a real system: a Redis hash, a row)...
  const parts: Record<string, string> = { id: 'user-42', name: 'Ada' };
  // ...and the database that must receive the finished record exactly once.
  const database: { by: string; fence: number; record: Record<string, string> }[] = [];

  const run = async (service: Service): Promise<void> => {
    await using disref = await connect({ url: 'memory://demo', namespace: 'demo' });
    // The completion: whichever service is last out writes the whole record.
    disref.onComplete('record', async (done, { attempt, timesModified }) => {
      await disref.lock(done).using((lease) => {
        lease.check();
        database.push({ by: service.name, fence: lease.fence, record: { ...parts } });
        log(
          service.name,
          `last one out: wrote ${done} to the database (fence ${String(lease.fence)}, ${String(timesModified)} modifications, attempt ${String(attempt)})`,
        );
      });
    });
    const reference = await disref.reference(resource);
    log(
      service.name,
      `started as process ${disref.id.slice(0, 8)}; holds a reference to ${resource}`,
    );
    await sleep(service.workMs);
    const value = service.produce();
    log(
      service.name,
      `has ${service.field}; ${String(await reference.count())} holder(s); waiting for the lock`,
    );
    const askedAt = performance.now();
    await reference.lock({ ttl: 5_000 }).using(async (lease) => {
      const waited = performance.now() - askedAt;
      log(
        service.name,
        `holds the lock (fence ${String(lease.fence)}) after waiting ${waited.toFixed(0)} ms`,
      );
      // Simulated slow write of the part, so the other service has to wait.
      await sleep(30);
      lease.check();
      parts[service.field] = value;
      await reference.incrementTimesModified();
      log(service.name, `added ${service.field}`);
    });
    const wasLast = await reference.dereference();
    log(
      service.name,
      wasLast ? 'dereferenced: was the last holder' : 'dereferenced: others still hold it',
    );
  };

  await Promise.all(SERVICES.map((service) => run(service)));
  return { writes: database, trace };
}
