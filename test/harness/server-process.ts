/**
 * The life cycle the test servers (`redis-server`, `memcached`) share: one
 * child process on a fixed loopback port, started and waited for until it
 * serves, stopped like a crash (SIGKILL), frozen and resumed (SIGSTOP /
 * SIGCONT). Every server started here is killed when the test process exits.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

/** Longest wait for a started server to serve. */
const START_TIMEOUT = 10_000;

/**
 * Sends SIGSTOP to `child` and returns once the kernel reports it stopped
 * (state T in /proc), at most about 1 s later: a request sent right after
 * must not be answered by a server that has not stopped yet.
 */
export function stopProcess(child: ChildProcess): void {
  child.kill('SIGSTOP');
  const pid = child.pid;
  if (pid === undefined) return;
  const pause = new Int32Array(new SharedArrayBuffer(4));
  for (let i = 0; i < 200; i++) {
    let state: string | undefined;
    try {
      // /proc/PID/stat: "pid (name) STATE ..."; the name may hold spaces, so read after ')'.
      const stat = readFileSync(`/proc/${String(pid)}/stat`, 'utf8');
      state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    } catch {
      return; // no /proc here: nothing better to wait for
    }
    if (state === 'T' || state === 't') return;
    Atomics.wait(pause, 0, 0, 5);
  }
}

const running = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/** A server process on `port`: subclasses say how to start it and how to tell it serves. */
export abstract class ServerProcess {
  readonly port: number;
  private child: ChildProcess | undefined;
  private paused = false;

  protected constructor(port: number) {
    this.port = port;
  }

  /** Whether the process runs (started and not stopped). */
  get running(): boolean {
    return this.child !== undefined;
  }

  /** PID of the running process (for tests that signal it), or undefined. */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Stops the server (SIGKILL: no chance to save anything, like a crash). */
  async stop(): Promise<void> {
    const child = this.child;
    if (child === undefined) return;
    this.child = undefined;
    const exited = new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) resolve();
      else child.once('exit', () => resolve());
    });
    child.kill('SIGKILL');
    this.paused = false;
    await exited;
    running.delete(child);
  }

  /** Freezes the server (SIGSTOP): connections stay open but nothing answers. */
  pause(): void {
    if (this.child === undefined || this.paused) return;
    stopProcess(this.child);
    this.paused = true;
  }

  /** Resumes a paused server (SIGCONT). */
  resume(): void {
    if (this.child === undefined || !this.paused) return;
    this.child.kill('SIGCONT');
    this.paused = false;
  }

  /**
   * Spawns `binary` with `args` and waits until `serves(child)` says it
   * serves on the port; fails, stopping it, when it exits or takes longer
   * than {@link START_TIMEOUT}, with what it printed on stderr.
   */
  protected async launch(
    binary: string,
    args: readonly string[],
    serves: (child: ChildProcess) => Promise<boolean>,
  ): Promise<void> {
    const child = spawn(binary, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    running.add(child);
    let stderr = '';
    child.stderr?.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    this.child = child;
    const deadline = performance.now() + START_TIMEOUT;
    while (!(await serves(child))) {
      if (child.exitCode !== null || performance.now() > deadline) {
        await this.stop();
        const name = binary.slice(binary.lastIndexOf('/') + 1);
        throw new Error(`${name} on port ${String(this.port)} did not start: ${stderr}`);
      }
      await sleep(20);
    }
  }
}
