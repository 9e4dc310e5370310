/**
 * Reference worker processes for the cross-process reference tests: each
 * runs test/fixtures/redis-reference-worker.ts (it takes any store URL) and
 * is driven command by command over stdin; completions append to a log file.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';

const workerFile = fileURLToPath(new URL('../fixtures/redis-reference-worker.ts', import.meta.url));

/** A child process running test/fixtures/redis-reference-worker.ts (any store URL), driven over stdin. */
export class ReferenceWorker {
  readonly child: ChildProcessByStdio<Writable, Readable, null>;
  readonly exited: Promise<unknown>;
  /** The process identity it reported when it connected. */
  id = '';
  readonly #lines: string[] = [];
  readonly #readers: ((line: string) => void)[] = [];

  private constructor(env: Record<string, string>) {
    this.child = spawn(process.execPath, ['--import', 'tsx', workerFile], {
      env: { ...process.env, ...env },
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    this.exited = once(this.child, 'exit');
    createInterface({ input: this.child.stdout }).on('line', (line) => {
      const reader = this.#readers.shift();
      if (reader === undefined) this.#lines.push(line);
      else reader(line);
    });
  }

  static async start(options: {
    url: string;
    namespace: string;
    log: string;
    heartbeatInterval: number;
    processTtl: number;
  }): Promise<ReferenceWorker> {
    const worker = new ReferenceWorker({
      DISREF_TEST_URL: options.url,
      DISREF_TEST_NAMESPACE: options.namespace,
      DISREF_TEST_LOG: options.log,
      DISREF_TEST_HEARTBEAT: String(options.heartbeatInterval),
      DISREF_TEST_PROCESS_TTL: String(options.processTtl),
    });
    const ready = await worker.#next();
    assert.match(ready, /^ready \S+$/);
    worker.id = ready.slice('ready '.length);
    return worker;
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  /** Sends one command; resolves its result (the reply without `ok <command> `). */
  async send(command: string): Promise<string> {
    this.child.stdin.write(`${command}\n`);
    const reply = await this.#next();
    const verb = command.split(' ')[0] ?? '';
    assert.ok(reply.startsWith(`ok ${verb} `), `${command}: ${reply}`);
    return reply.slice(`ok ${verb} `.length);
  }

  /** Kills the process (unless it already exited) and waits for it to go. */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    await this.exited;
  }

  #next(): Promise<string> {
    const line = this.#lines.shift();
    if (line !== undefined) return Promise.resolve(line);
    return new Promise((resolve, reject) => {
      this.#readers.push(resolve);
      this.exited.then(
        () => {
          reject(new Error(`worker ${String(this.pid)} exited before replying`));
        },
        () => undefined,
      );
    });
  }
}

/** Lines of a completion log: `<resource> <attempt> <pid>`, and `start ...` for kind `hang`. */
export function readLog(file: string): string[] {
  return readFileSync(file, 'utf8').split('\n').filter(Boolean);
}
