/**
 * Real `memcached` processes for tests, on free loopback ports, with a
 * readiness wait and helpers for outages (stop, restart on the same port,
 * pause with SIGSTOP; see `server-process.ts`). Free ports and binary lookup
 * come from `servers.ts`.
 */
import { createConnection } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { ServerProcess } from './server-process.js';
import { findBinary, freePort } from './servers.js';

/** Why memcached tests cannot run here, or undefined when `memcached` exists. */
export function memcachedUnavailable(): string | undefined {
  return findBinary('memcached') === undefined
    ? 'memcached not found on PATH: install it (apt-get install memcached, >= 1.6) to test the memcached backend'
    : undefined;
}

/** One `memcached` process on a fixed loopback port, without UDP, 64 MB. */
export class MemcachedServer extends ServerProcess {
  private constructor(port: number) {
    super(port);
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

  private async startProcess(): Promise<void> {
    const binary = findBinary('memcached');
    if (binary === undefined) throw new Error(memcachedUnavailable());
    const args = ['-l', '127.0.0.1', '-p', String(this.port), '-U', '0', '-m', '64'];
    // memcached refuses to run as root unless told which user to run as.
    if (process.getuid?.() === 0) args.push('-u', 'root');
    // The pid check makes sure it is our server that answers, not one that took the port.
    await this.launch(binary, args, async (child) => (await pidOnPort(this.port)) === child.pid);
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
