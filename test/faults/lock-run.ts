/**
 * Drives one fault run: starts lock worker processes (lock-worker.ts),
 * collects the events they print, finds a worker inside its critical
 * section for a fault to hit, pauses (SIGSTOP / SIGCONT) or kills (SIGKILL)
 * workers, and stops them all at the end.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { stopProcess } from '../harness/server-process.js';
import type { WorkerEvent } from './checker.js';

const workerPath = fileURLToPath(new URL('./lock-worker.ts', import.meta.url));

/** The system-wide monotonic clock in ms, as the workers print it. */
export const monotonicNow = (): number => Number(process.hrtime.bigint() / 1000n) / 1000;

export interface LockRunOptions {
  /** The store URL each worker uses (so one worker can go through a proxy). */
  readonly storeUrl: (worker: number) => string;
  /** The Redis server that holds the record (never faulted). */
  readonly resourceUrl: string;
  readonly namespace: string;
  readonly recordKey: string;
  readonly fenced: boolean;
  readonly workers: number;
  readonly ttl: number;
  readonly maxTtl: number;
  readonly retryInterval: number;
  readonly holdMs: number;
}

interface Worker {
  readonly child: ChildProcessWithoutNullStreams;
  readonly exited: Promise<unknown>;
}

export class LockRun {
  readonly events: WorkerEvent[] = [];
  /** Workers killed with SIGKILL, and when. */
  readonly kills = new Map<number, number>();
  private readonly workers = new Map<number, Worker>();
  private readonly listeners = new Set<(event: WorkerEvent) => void>();
  private readonly stderr: string[] = [];

  private constructor(private readonly options: LockRunOptions) {}

  /** Starts the workers and waits until each is connected. */
  static async start(options: LockRunOptions): Promise<LockRun> {
    const run = new LockRun(options);
    await Promise.all(Array.from({ length: options.workers }, (_, index) => run.spawn(index)));
    return run;
  }

  /** Starts worker `index` and waits for its `ready`. */
  async spawn(index: number): Promise<void> {
    const { options } = this;
    const child = spawn(process.execPath, ['--import', 'tsx', workerPath], {
      env: {
        ...process.env,
        FAULT_WORKER: String(index),
        FAULT_URL: options.storeUrl(index),
        FAULT_RESOURCE_URL: options.resourceUrl,
        FAULT_NAMESPACE: options.namespace,
        FAULT_RECORD_KEY: options.recordKey,
        FAULT_FENCED: options.fenced ? '1' : '0',
        FAULT_TTL: String(options.ttl),
        FAULT_MAX_TTL: String(options.maxTtl),
        FAULT_RETRY_INTERVAL: String(options.retryInterval),
        FAULT_HOLD_MS: String(options.holdMs),
      },
    });
    const ready = this.waitFor((event) => event.worker === index && event.type === 'ready', 30_000);
    createInterface({ input: child.stdout }).on('line', (line) => {
      const event = JSON.parse(line) as WorkerEvent;
      this.events.push(event);
      for (const listener of this.listeners) listener(event);
    });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (text: string) => this.stderr.push(`worker ${String(index)}: ${text}`));
    this.workers.set(index, { child, exited: once(child, 'exit') });
    await ready;
  }

  /** The next event (from now on) that `predicate` accepts. */
  waitFor(predicate: (event: WorkerEvent) => boolean, timeout = 15_000): Promise<WorkerEvent> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.listeners.delete(listener);
        reject(
          new Error(`no matching event within ${String(timeout)} ms; ${this.stderr.join('')}`),
        );
      }, timeout);
      const listener = (event: WorkerEvent): void => {
        if (!predicate(event)) return;
        clearTimeout(timer);
        this.listeners.delete(listener);
        resolve(event);
      };
      this.listeners.add(listener);
    });
  }

  /** Waits until `count` more sections were granted (the lock still works). */
  async progress(count: number, timeout = 15_000): Promise<void> {
    let seen = 0;
    await this.waitFor((event) => event.type === 'acquired' && ++seen >= count, timeout);
  }

  /** Waits for a worker (accepted by `which`) to be inside its critical section, and names it. */
  async holder(which: (worker: number) => boolean = () => true): Promise<number> {
    const event = await this.waitFor(
      (candidate) => candidate.type === 'read' && which(candidate.worker),
    );
    return event.worker;
  }

  /**
   * Names a worker (accepted by `which`) once it has read inside a long
   * section (3 leases): a pause from now on falls between its read and its
   * write, however loaded the machine is, where a 5 ms section may already
   * have written by the time its read is seen here.
   */
  async holderInLongSection(which: (worker: number) => boolean): Promise<number> {
    const worker = await this.holder(which);
    this.holdLongNext(worker);
    await this.waitFor(
      (event) => event.type === 'read' && event.worker === worker && event.long,
      30_000,
    );
    return worker;
  }

  /** Tells `worker` to make its next section long (3 leases, extended). */
  holdLongNext(worker: number): void {
    this.worker(worker).child.stdin.write('long\n');
  }

  /** Freezes `worker` for `ms` (SIGSTOP, then SIGCONT). */
  async pause(worker: number, ms: number): Promise<void> {
    const { child } = this.worker(worker);
    stopProcess(child);
    await sleep(ms);
    child.kill('SIGCONT');
  }

  /** Kills `worker` (SIGKILL) and records when. */
  async kill(worker: number): Promise<void> {
    const { child, exited } = this.worker(worker);
    this.kills.set(worker, monotonicNow());
    child.kill('SIGKILL');
    await exited;
    this.workers.delete(worker);
  }

  /** Asks every worker to finish its section and exit; kills any that will not. */
  async stop(timeout = 20_000): Promise<void> {
    const workers = [...this.workers.values()];
    for (const { child } of workers) child.stdin.write('stop\n');
    const all = Promise.all(workers.map(({ exited }) => exited));
    const raceOver = new AbortController(); // the timer must not outlive the race it lost
    const late = await Promise.race([
      all.then(() => false),
      sleep(timeout, true, { signal: raceOver.signal }).catch(() => false),
    ]);
    raceOver.abort();
    for (const { child } of workers) if (child.exitCode === null) child.kill('SIGKILL');
    this.workers.clear();
    if (late) throw new Error(`workers did not stop within ${String(timeout)} ms`);
    const started = this.events.filter((event) => event.type === 'ready').length;
    const done = this.events.filter((event) => event.type === 'done').length;
    if (done !== started - this.kills.size) {
      throw new Error(`a worker died on its own: ${this.stderr.join('')}`);
    }
  }

  private worker(index: number): Worker {
    const worker = this.workers.get(index);
    if (worker === undefined) throw new Error(`no running worker ${String(index)}`);
    return worker;
  }
}
