/**
 * `disref lock NAME -- COMMAND [ARGS...]`: runs a command while holding a
 * lock, like `flock` or `etcdctl lock`, across machines.
 * @module
 */
import { spawn } from 'node:child_process';
import { constants } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { connect } from '../disref.js';
import { BackendError, InvalidArgumentError, LockLostError, LockTimeoutError } from '../errors.js';
import type { Lease } from '../locks/lease.js';
import { EXIT } from './exit-codes.js';

export const LOCK_HELP = `Usage: disref lock NAME [options] -- COMMAND [ARGS...]

Waits for the lock NAME, runs COMMAND while holding it (the lease is kept
extended), and releases it when COMMAND exits. The child gets DISREF_LOCK_KEY
and DISREF_FENCE (the fencing token) in its environment; SIGINT and SIGTERM
are forwarded to it.

Options:
  --url URL        store URL (default: $DISREF_URL); must be shared, not memory://
  --ttl MS         lease length in ms (default 30000)
  --timeout MS     give up waiting after MS ms (default: wait forever)
  --no-wait        try once; do not wait
  -h, --help       print this help

Exit status: the command's own status (128 + signal number if it was killed);
${String(EXIT.lockNotAcquired)} lock not acquired in time; ${String(EXIT.leaseLost)} lease lost while the command ran (the
command was sent SIGTERM); ${String(EXIT.storeUnavailable)} store unreachable; ${String(EXIT.usage)} bad usage.
`;

/** Longest wait for a clean close (release, deregistration) once the command is done. */
const CLOSE_GRACE_MS = 2_000;

/** Grace period between SIGTERM and SIGKILL for a child whose lease was lost. */
const KILL_GRACE_MS = 5_000;

export async function lockCommand(args: readonly string[]): Promise<number> {
  const { values, tokens } = parseArgs({
    args: [...args],
    options: {
      url: { type: 'string' },
      ttl: { type: 'string' },
      timeout: { type: 'string' },
      'no-wait': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    allowPositionals: true,
    strict: true,
    tokens: true,
  });
  if (values.help === true) {
    process.stdout.write(LOCK_HELP);
    return EXIT.ok;
  }
  // parseArgs' tokens give the position of `--`: what follows is the command, untouched.
  const end = tokens.find((token) => token.kind === 'option-terminator')?.index ?? args.length;
  const command = args.slice(end + 1);
  const [name, ...extra] = tokens.flatMap((token) =>
    token.kind === 'positional' && token.index < end ? [token.value] : [],
  );
  if (name === undefined || extra.length > 0 || command.length === 0 || command[0] === undefined) {
    return usage('expected: disref lock NAME [options] -- COMMAND [ARGS...]');
  }
  const url = values.url ?? process.env.DISREF_URL;
  if (url === undefined || url === '' || url.startsWith('memory:')) {
    return usage(
      'disref lock coordinates separate processes, so it needs a shared store: pass --url redis://... or set DISREF_URL',
    );
  }
  const ttl = values.ttl === undefined ? undefined : Number(values.ttl);
  const timeout =
    values['no-wait'] === true
      ? 0
      : values.timeout === undefined
        ? undefined
        : Number(values.timeout);

  let disref;
  try {
    disref = await connect(url);
  } catch (error) {
    return failure(error);
  }
  try {
    const lock = disref.lock(name, {
      ...(ttl === undefined ? {} : { ttl }),
      ...(timeout === undefined ? {} : { timeout }),
    });
    return await lock.using((lease) => runChild(command[0] ?? '', command.slice(1), lease));
  } catch (error) {
    return failure(error);
  } finally {
    // The command is done: do not keep the user waiting on an unreachable store to say goodbye.
    await Promise.race([disref.close(), sleep(CLOSE_GRACE_MS, undefined, { ref: false })]);
  }
}

/** Runs the child while the lease holds; resolves the exit status to report. */
function runChild(file: string, args: readonly string[], lease: Lease): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(file, args, {
      stdio: 'inherit',
      env: { ...process.env, DISREF_LOCK_KEY: lease.key, DISREF_FENCE: String(lease.fence) },
    });
    const forward = (signal: NodeJS.Signals) => () => {
      child.kill(signal);
    };
    const onInt = forward('SIGINT');
    const onTerm = forward('SIGTERM');
    process.on('SIGINT', onInt);
    process.on('SIGTERM', onTerm);
    let lost = false;
    let killTimer: NodeJS.Timeout | undefined;
    const onLost = (): void => {
      lost = true;
      process.stderr.write(
        `disref: ${(lease.signal.reason as Error).message}; stopping the command\n`,
      );
      child.kill('SIGTERM');
      killTimer = setTimeout(() => child.kill('SIGKILL'), KILL_GRACE_MS);
      killTimer.unref();
    };
    lease.signal.addEventListener('abort', onLost, { once: true });
    const finish = (status: number): void => {
      clearTimeout(killTimer);
      process.off('SIGINT', onInt);
      process.off('SIGTERM', onTerm);
      lease.signal.removeEventListener('abort', onLost);
      resolve(lost ? EXIT.leaseLost : status);
    };
    child.on('error', (error) => {
      process.stderr.write(`disref: cannot run ${file}: ${error.message}\n`);
      finish(EXIT.commandNotRunnable);
    });
    child.on('exit', (code, signal) => {
      finish(code ?? 128 + (signal === null ? 0 : constants.signals[signal]));
    });
  });
}

function usage(message: string): number {
  process.stderr.write(`disref lock: ${message}; see disref lock --help\n`);
  return EXIT.usage;
}

function failure(error: unknown): number {
  const message = error instanceof Error ? error.message : String(error);
  process.stderr.write(`disref lock: ${message}\n`);
  if (error instanceof LockTimeoutError) return EXIT.lockNotAcquired;
  if (error instanceof LockLostError) return EXIT.leaseLost;
  if (error instanceof BackendError) return EXIT.storeUnavailable;
  if (error instanceof InvalidArgumentError) return EXIT.usage;
  return EXIT.failure;
}
