/**
 * One worker process of the fault runs. It loops, until stdin says `stop`:
 * acquire the lock -> read the shared record -> hold a while -> write the
 * record + 1 -> release, and prints one JSON line per step (see
 * {@link WorkerEvent} in checker.ts) with times on the system-wide monotonic
 * clock (process.hrtime, comparable across processes on one machine).
 *
 * The record (record.ts) lives in a store the faults never touch. With
 * FAULT_FENCED=1 reads and writes present the lease's fence; with
 * FAULT_FENCED=0 every holder presents the same fence, as good as a plain
 * read and write, so the checker can show what a lease alone lets through.
 *
 * On `long` (stdin) its next section lasts 3 leases, extending the lease
 * meanwhile, so that a network fault can take the lease away mid-section.
 *
 * The worker deliberately does not call `lease.check()` before writing: it
 * stands for a process paused right after its last check, whose write then
 * lands late. Only the fence can stop it.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { connect, StaleFenceError } from '../../src/index.js';
import { openRecord } from './record.js';

const env = (name: string): string => {
  const value = process.env[name];
  if (value === undefined) throw new Error(`${name} is not set`);
  return value;
};
const worker = Number(env('FAULT_WORKER'));
const fenced = env('FAULT_FENCED') === '1';
const ttl = Number(env('FAULT_TTL'));
const holdMs = Number(env('FAULT_HOLD_MS'));
const recordKey = env('FAULT_RECORD_KEY');

const now = (): number => Number(process.hrtime.bigint() / 1000n) / 1000; // ms
const emit = (event: Record<string, unknown>): void => {
  process.stdout.write(`${JSON.stringify({ worker, at: now(), ...event })}\n`);
};
const describe = (error: unknown): string =>
  error instanceof Error ? `${error.name}: ${error.message}` : String(error);

const disref = await connect({
  url: env('FAULT_URL'),
  namespace: env('FAULT_NAMESPACE'),
  maxTtl: Number(env('FAULT_MAX_TTL')),
  defaults: { retryInterval: Number(env('FAULT_RETRY_INTERVAL')) },
  heartbeatInterval: 500,
  onError: () => undefined,
});
const { record, close: closeRecord } = await openRecord(env('FAULT_RESOURCE_URL'), recordKey);
const lock = disref.lock('fault:record', { ttl, timeout: 20_000 });

let stopping = false;
let longHolds = 0;
process.stdin.setEncoding('utf8');
process.stdin.on('data', (text: string) => {
  if (text.includes('stop')) stopping = true;
  if (text.includes('long')) longHolds += 1;
});
emit({ type: 'ready' });

while (!stopping) {
  let lease;
  emit({ type: 'acquiring' });
  try {
    lease = await lock.acquire();
  } catch (error) {
    emit({ type: 'unavailable', error: describe(error) });
    await sleep(50);
    continue;
  }
  const { fence } = lease;
  // Unfenced, every holder presents the same fence: the record cannot tell them apart.
  const presented = fenced ? fence : 1;
  emit({ type: 'acquired', fence });
  try {
    let value: number;
    try {
      value = Number((await record.read(presented)) ?? 0);
    } catch (error) {
      if (!(error instanceof StaleFenceError)) throw error;
      emit({ type: 'read-refused', fence });
      continue;
    }
    const long = longHolds > 0;
    if (long) longHolds -= 1;
    emit({ type: 'read', fence, value, long });
    // A long section keeps its lease extended meanwhile, as `using` would.
    const extender = setInterval(() => {
      lease.extend().catch(() => undefined);
    }, ttl / 3);
    await sleep(long ? ttl * 3 : holdMs);
    clearInterval(extender);
    try {
      await record.write(presented, String(value + 1));
      emit({ type: 'wrote', fence, value: value + 1 });
    } catch (error) {
      if (!(error instanceof StaleFenceError)) throw error;
      emit({ type: 'write-refused', fence, value: value + 1 });
    }
  } finally {
    let validAtEnd = true;
    try {
      lease.check();
    } catch {
      validAtEnd = false;
    }
    emit({ type: 'releasing', fence, validAtEnd });
    let freed: boolean | string;
    try {
      freed = await lease.release();
    } catch (error) {
      freed = describe(error);
    }
    emit({ type: 'released', fence, freed });
  }
}
process.stdin.destroy();
await disref.close();
await closeRecord();
emit({ type: 'done' });
