/**
 * A real PostgreSQL for tests: `initdb` into a temporary directory, then
 * `postgres` on a free loopback port with its unix socket in that
 * directory, trust authentication, no fsync; stopped (fast shutdown) and
 * removed afterwards, and killed when the test process exits.
 *
 * Binaries: `initdb` and `postgres` on PATH (or /usr/local/bin, /usr/bin),
 * else the newest /usr/lib/postgresql/<version>/bin, where Debian's
 * `postgresql` package puts them. PostgreSQL refuses to run as root: as
 * root, both run as the `postgres` user (else `nobody`), which owns the
 * temporary directory.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { accessSync, chownSync, constants, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findBinary, freePort } from './servers.js';

/** Where Debian installs PostgreSQL's server binaries. */
const DEBIAN_ROOT = '/usr/lib/postgresql';

interface Binaries {
  readonly initdb: string;
  readonly postgres: string;
}

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** `initdb` and `postgres` from PATH, else from the newest Debian version directory. */
function findPostgres(): Binaries | undefined {
  const initdb = findBinary('initdb');
  const postgres = findBinary('postgres');
  if (initdb !== undefined && postgres !== undefined) return { initdb, postgres };
  let versions: string[];
  try {
    versions = readdirSync(DEBIAN_ROOT).filter((name) => /^\d+(\.\d+)?$/.test(name));
  } catch {
    return undefined;
  }
  versions.sort((a, b) => Number(b) - Number(a));
  for (const version of versions) {
    const bin = join(DEBIAN_ROOT, version, 'bin');
    const found = { initdb: join(bin, 'initdb'), postgres: join(bin, 'postgres') };
    if (executable(found.initdb) && executable(found.postgres)) return found;
  }
  return undefined;
}

/** Why PostgreSQL tests cannot run here, or undefined when its binaries exist. */
export function postgresUnavailable(): string | undefined {
  return findPostgres() === undefined
    ? `initdb/postgres not found on PATH nor in ${DEBIAN_ROOT}/<version>/bin: install PostgreSQL (apt-get install postgresql) to test the SQL fenced rows`
    : undefined;
}

/** The unprivileged user to run PostgreSQL as when we are root. */
function serverUser(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  for (const name of ['postgres', 'nobody']) {
    try {
      const id = (flag: string): number =>
        Number(execFileSync('id', [flag, name], { encoding: 'utf8' }).trim());
      return { uid: id('-u'), gid: id('-g') };
    } catch {
      // no such user
    }
  }
  throw new Error(
    'running as root and neither a postgres nor a nobody user exists to run PostgreSQL',
  );
}

const running = new Set<PostgresServer>();
process.on('exit', () => {
  for (const server of running) server.kill();
});

/** One PostgreSQL cluster in a temporary directory, served on 127.0.0.1. */
export class PostgresServer {
  /** Superuser, trusted without a password. */
  readonly user = 'postgres';
  readonly database = 'postgres';
  readonly host = '127.0.0.1';
  private child: ChildProcess | undefined;

  private constructor(
    readonly port: number,
    private readonly directory: string,
  ) {}

  /** Connection settings for node-postgres. */
  get connection(): { host: string; port: number; user: string; database: string } {
    return { host: this.host, port: this.port, user: this.user, database: this.database };
  }

  /** Creates a cluster and starts it on a free port; resolves once it accepts connections. */
  static async start(): Promise<PostgresServer> {
    const binaries = findPostgres();
    if (binaries === undefined) throw new Error(postgresUnavailable());
    const owner = serverUser();
    const directory = mkdtempSync(join(tmpdir(), 'disref-pg-'));
    try {
      if (owner !== undefined) chownSync(directory, owner.uid, owner.gid);
      const data = join(directory, 'data');
      const init = spawnSync(
        binaries.initdb,
        ['-D', data, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--locale=C', '--no-sync'],
        { cwd: directory, encoding: 'utf8', ...owner },
      );
      if (init.status !== 0) {
        throw new Error(`initdb failed (${String(init.status)}): ${init.stderr}${init.stdout}`);
      }
      for (let attempt = 0; ; attempt++) {
        const server = new PostgresServer(await freePort(), directory);
        try {
          await server.run(binaries.postgres, data, owner);
          return server;
        } catch (error) {
          // Another test may have taken the port between the probe and the bind.
          if (attempt >= 3) throw error;
        }
      }
    } catch (error) {
      rmSync(directory, { recursive: true, force: true });
      throw error;
    }
  }

  /** Fast shutdown (SIGINT), then the directory is removed. */
  async stop(): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (child !== undefined && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGINT');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    }
    running.delete(this);
    rmSync(this.directory, { recursive: true, force: true });
  }

  /** At exit: kill at once and remove the directory (synchronous). */
  kill(): void {
    this.child?.kill('SIGKILL');
    this.child = undefined;
    rmSync(this.directory, { recursive: true, force: true });
  }

  private async run(
    binary: string,
    data: string,
    owner: { uid: number; gid: number } | undefined,
  ): Promise<void> {
    const args = ['-D', data, '-p', String(this.port), '-k', this.directory];
    for (const setting of [
      'listen_addresses=127.0.0.1',
      'fsync=off',
      'synchronous_commit=off',
      'full_page_writes=off',
      'max_connections=60',
    ]) {
      args.push('-c', setting);
    }
    const child = spawn(binary, args, {
      cwd: this.directory,
      stdio: ['ignore', 'ignore', 'pipe'],
      ...owner,
    });
    this.child = child;
    running.add(this);
    let log = '';
    await new Promise<void>((resolve, reject) => {
      let settled = false;
      const settle = (error?: Error): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        child.stderr?.removeAllListeners('data');
        child.stderr?.resume(); // keep draining the log so the server never blocks on it
        if (error === undefined) {
          resolve();
          return;
        }
        child.kill('SIGKILL');
        this.child = undefined;
        running.delete(this);
        reject(new Error(`postgres on port ${String(this.port)}: ${error.message}\n${log}`));
      };
      const timer = setTimeout(() => {
        settle(new Error('did not accept connections within 30 s'));
      }, 30_000);
      child.stderr?.setEncoding('utf8');
      child.stderr?.on('data', (chunk: string) => {
        log += chunk;
        if (log.includes('database system is ready to accept connections')) settle();
      });
      child.once('exit', (code, signal) => {
        settle(new Error(`exited (${String(code ?? signal)})`));
      });
      child.once('error', settle);
    });
  }
}
