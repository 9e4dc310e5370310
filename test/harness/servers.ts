/**
 * Real store servers for tests: `redis-server` processes on free loopback
 * ports, without persistence, in a temporary directory, with a readiness
 * wait, and helpers for outages (stop, restart on the same port, pause with
 * SIGSTOP; see `server-process.ts`), plus binary lookup, free ports and TLS
 * files for every harness.
 */
import { execFileSync } from 'node:child_process';
import { accessSync, constants, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { ServerProcess } from './server-process.js';

/** Path of `name` on PATH (or in /usr/bin, /usr/local/bin), or undefined. */
export function findBinary(name: string): string | undefined {
  const directories = [...(process.env.PATH ?? '').split(delimiter), '/usr/local/bin', '/usr/bin'];
  for (const directory of directories) {
    if (directory === '') continue;
    const path = join(directory, name);
    try {
      accessSync(path, constants.X_OK);
      return path;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** Why Redis tests cannot run here, or undefined when `redis-server` exists. */
export function redisUnavailable(): string | undefined {
  return findBinary('redis-server') === undefined
    ? 'redis-server not found on PATH: install it (apt-get install redis-server) to test the Redis backend'
    : undefined;
}

/** A port that was free a moment ago on 127.0.0.1. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => {
        resolve(port);
      });
    });
  });
}

/** PEM files for a TLS test server: a throw-away CA and a certificate for 127.0.0.1 / localhost. */
export interface TlsFiles {
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
}

/** Makes a CA and a server certificate with openssl in `directory`; undefined without openssl. */
export function makeTlsFiles(directory: string): TlsFiles | undefined {
  const openssl = findBinary('openssl');
  if (openssl === undefined) return undefined;
  const file = (name: string): string => join(directory, name);
  const run = (...args: string[]): void => {
    execFileSync(openssl, args, { stdio: 'ignore' });
  };
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  run(
    'req',
    '-x509',
    ...ec,
    '-keyout',
    file('ca.key'),
    '-out',
    file('ca.pem'),
    '-days',
    '2',
    '-subj',
    '/CN=disref test CA',
  );
  run(
    'req',
    ...ec,
    '-keyout',
    file('server.key'),
    '-out',
    file('server.csr'),
    '-subj',
    '/CN=localhost',
  );
  writeFileSync(file('server.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  run(
    'x509',
    '-req',
    '-in',
    file('server.csr'),
    '-CA',
    file('ca.pem'),
    '-CAkey',
    file('ca.key'),
    '-CAcreateserial',
    '-out',
    file('server.pem'),
    '-days',
    '2',
    '-extfile',
    file('server.ext'),
  );
  return { ca: file('ca.pem'), cert: file('server.pem'), key: file('server.key') };
}

/** One `redis-server` process on a fixed loopback port. */
export class RedisServer extends ServerProcess {
  /** Set when the server speaks TLS only (its port is then a `--tls-port`). */
  readonly tls: TlsFiles | undefined;
  /** Extra `redis-server` arguments, kept for restarts (e.g. `--cluster-enabled yes`). */
  private readonly args: readonly string[];
  private readonly directory: string;

  private constructor(port: number, tls: TlsFiles | undefined, args: readonly string[]) {
    super(port);
    this.tls = tls;
    this.args = args;
    this.directory = mkdtempSync(join(tmpdir(), 'disref-redis-'));
  }

  /**
   * Starts a server on a free port (TLS only when `tls` is given, with the
   * extra `args`; relative file names land in its own directory) and waits
   * until it answers PING.
   */
  static async start(
    options: { tls?: TlsFiles; args?: readonly string[] } = {},
  ): Promise<RedisServer> {
    const server = new RedisServer(await freePort(), options.tls, options.args ?? []);
    await server.startProcess();
    return server;
  }

  get url(): string {
    return `${this.tls === undefined ? 'redis' : 'rediss'}://127.0.0.1:${String(this.port)}`;
  }

  /** Starts the server again on the same port, with no data (no persistence). */
  async restart(): Promise<void> {
    await this.stop();
    await this.startProcess();
  }

  /** Stops the server and removes its directory. */
  async dispose(): Promise<void> {
    await this.stop();
    rmSync(this.directory, { recursive: true, force: true });
  }

  private async startProcess(): Promise<void> {
    const binary = findBinary('redis-server');
    if (binary === undefined) throw new Error(redisUnavailable());
    const listen =
      this.tls === undefined
        ? ['--port', String(this.port)]
        : [
            ...['--port', '0', '--tls-port', String(this.port), '--tls-auth-clients', 'no'],
            ...['--tls-cert-file', this.tls.cert, '--tls-key-file', this.tls.key],
            ...['--tls-ca-cert-file', this.tls.ca],
          ];
    await this.launch(
      binary,
      [
        ...listen,
        ...['--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
        ...['--dir', this.directory, '--loglevel', 'warning'],
        ...this.args,
      ],
      () => ping(this.port, this.tls),
    );
  }
}

/** Sends PING over a raw (or TLS) socket; true on +PONG. */
function ping(port: number, tls: TlsFiles | undefined): Promise<boolean> {
  return new Promise((resolve) => {
    const socket: Socket =
      tls === undefined
        ? createConnection({ host: '127.0.0.1', port })
        : tlsConnect({ host: '127.0.0.1', port, ca: readFileSync(tls.ca) });
    const done = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(500, () => {
      done(false);
    });
    socket.on('error', () => {
      done(false);
    });
    socket.on(tls === undefined ? 'connect' : 'secureConnect', () => {
      socket.write('PING\r\n');
    });
    socket.on('data', (data) => {
      done(data.toString().startsWith('+PONG'));
    });
  });
}
