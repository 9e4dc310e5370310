/**
 * Real `memcached` processes for tests, on free loopback ports, with a
 * readiness wait and helpers for outages (stop, restart on the same port,
 * pause with SIGSTOP). Every server started here is killed when the test
 * process exits. Free ports and binary lookup come from `servers.ts`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createConnection } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { findBinary, freePort, stopProcess } from './servers.js';

/** Why memcached tests cannot run here, or undefined when `memcached` exists. */
export function memcachedUnavailable(): string | undefined {
  return findBinary('memcached') === undefined
    ? 'memcached not found on PATH: install it (apt-get install memcached, >= 1.6) to test the memcached backend'
    : undefined;
}

const running = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/** One `memcached` process on a fixed loopback port, without UDP, 64 MB. */
export class MemcachedServer {
  readonly port: number;
  private child: ChildProcess | undefined;
  private paused = false;

  private constructor(port: number) {
    this.port = port;
  }

  /** Starts a server on a free port and waits until it answers `version`. */
  static async start(): Promise<MemcachedServer> {
    for (let attempt = 0; ; attempt++) {
      const server = new MemcachedServer(await freePort());
      try {
        await server.startProcess();
        return server;
      } catch (error) {
        // Another test may have taken the port between the probe and the bind.
        if (attempt >= 3) throw error;
      }
    }
  }

  /** Starts `count` servers at once. */
  static startMany(count: number): Promise<MemcachedServer[]> {
    return Promise.all(Array.from({ length: count }, () => MemcachedServer.start()));
  }

  /** `127.0.0.1:port`, as in a memcached:// URL. */
  get hostPort(): string {
    return `127.0.0.1:${String(this.port)}`;
  }

  /** The address disref names in errors. */
  get address(): string {
    return `memcached://${this.hostPort}`;
  }

  /** PID of the running process (for tests that signal it), or undefined. */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Stops the server (SIGKILL: it loses every item, like a crash). */
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

  /** Starts the server again on the same port, empty. */
  async restart(): Promise<void> {
    await this.stop();
    // The port is ours until someone else binds it; retry briefly if it is in TIME_WAIT.
    for (let attempt = 0; ; attempt++) {
      try {
        await this.startProcess();
        return;
      } catch (error) {
        if (attempt >= 20) throw error;
        await sleep(100);
      }
    }
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

  private async startProcess(): Promise<void> {
    const binary = findBinary('memcached');
    if (binary === undefined) throw new Error(memcachedUnavailable());
    const args = ['-l', '127.0.0.1', '-p', String(this.port), '-U', '0', '-m', '64'];
    // memcached refuses to run as root unless told which user to run as.
    if (process.getuid?.() === 0) args.push('-u', 'root');
    const child = spawn(binary, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    running.add(child);
    let stderr = '';
    child.stderr?.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    this.child = child;
    const deadline = performance.now() + 10_000;
    // The pid check makes sure it is our server that answers, not one that took the port.
    while ((await pidOnPort(this.port)) !== child.pid) {
      if (child.exitCode !== null || performance.now() > deadline) {
        await this.stop();
        throw new Error(`memcached on port ${String(this.port)} did not start: ${stderr}`);
      }
      await sleep(20);
    }
  }
}

/** Sends `stats` over a raw socket; resolves the pid of the server that answers, if any. */
function pidOnPort(port: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    let received = '';
    const done = (pid: number | undefined): void => {
      socket.destroy();
      resolve(pid);
    };
    socket.setTimeout(500, () => {
      done(undefined);
    });
    socket.on('error', () => {
      done(undefined);
    });
    socket.on('connect', () => {
      socket.write('stats\r\n');
    });
    socket.on('data', (data: Buffer) => {
      received += data.toString('latin1');
      if (!received.includes('END\r\n')) return;
      const match = /STAT pid (\d+)/.exec(received);
      done(match === null ? undefined : Number(match[1]));
    });
  });
}
