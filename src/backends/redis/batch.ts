/**
 * Lock operations that fall due at the same moment go to the server as one
 * call of `scripts/batch-n.lua`. With many callers on one connection, most of
 * the cost of an operation is per command (a socket write, parsing, a reply,
 * the script call itself on the server), not the script's own work, so one
 * command for many operations is what lets one connection keep up.
 *
 * "The same moment" is the current turn of the event loop: the first
 * operation schedules a flush with `process.nextTick`, which runs once the
 * code (and promise callbacks) of this turn are done and before any I/O. A
 * single caller therefore sends each operation at once, as its own script,
 * with nothing added but that tick. Operations keep their order: a batch
 * runs them one after the other, and batches are sent in order on the one
 * connection.
 * @module
 */
import type { LuaScript } from './scripts.js';

/** Sends one script with its keys and arguments (EVALSHA, with the EVAL fallback). */
export type ScriptSender = (
  script: LuaScript,
  keys: readonly string[],
  args: readonly string[],
) => Promise<unknown>;

/**
 * At most this many operations per call; more go as several calls, so the
 * server runs one while the client still writes or reads the others (a call
 * also blocks the server while it runs). With 64 callers on one connection,
 * 32 did best of 16, 32 and 64 (64 leaves nothing to overlap; 16 pays a
 * socket write and a script start per 16).
 */
const MAX_BATCH = 32;

interface Queued {
  readonly script: LuaScript;
  readonly keys: readonly string[];
  readonly args: readonly string[];
  readonly resolve: (reply: unknown) => void;
  readonly reject: (error: unknown) => void;
}

/** Collects the lock operations of one turn of the event loop and sends them together. */
export class ScriptBatcher {
  private queued: Queued[] = [];

  /**
   * @param send sends one script on the connection
   * @param batch `batch-n.lua`; every script given to {@link run} must be one it can run
   */
  constructor(
    private readonly send: ScriptSender,
    private readonly batch: LuaScript,
  ) {}

  /** Runs `script` with the other operations of this turn; resolves its own reply. */
  run(script: LuaScript, keys: readonly string[], args: readonly string[]): Promise<unknown> {
    return new Promise((resolve, reject) => {
      this.queued.push({ script, keys, args, resolve, reject });
      if (this.queued.length === 1) {
        process.nextTick(() => {
          this.flush();
        });
      }
    });
  }

  private flush(): void {
    const queued = this.queued;
    this.queued = [];
    let batch: Queued[] = [];
    for (const operation of queued) {
      // batch-n.lua separates arguments by newlines. Validated keys and tokens never hold
      // one; if anything did, it would go alone (in its turn) rather than be misread.
      if (operation.args.some((arg) => arg.includes('\n'))) {
        this.sendBatch(batch);
        this.sendBatch([operation]);
        batch = [];
        continue;
      }
      batch.push(operation);
      if (batch.length === MAX_BATCH) {
        this.sendBatch(batch);
        batch = [];
      }
    }
    this.sendBatch(batch);
  }

  private sendBatch(operations: readonly Queued[]): void {
    if (operations.length === 0) return;
    const [only] = operations;
    if (operations.length === 1 && only !== undefined) {
      this.send(only.script, only.keys, only.args).then(only.resolve, only.reject);
      return;
    }
    const keys: string[] = [];
    const args: string[] = [];
    for (const operation of operations) {
      keys.push(...operation.keys);
      args.push(`${operation.script.name}\n${operation.args.join('\n')}\n`);
    }
    this.send(this.batch, keys, args).then(
      (replies) => {
        if (!Array.isArray(replies) || replies.length !== operations.length) {
          const error = new Error(
            `disref: ${this.batch.name}.lua replied ${JSON.stringify(replies)} to ${String(operations.length)} operations`,
          );
          for (const operation of operations) operation.reject(error);
          return;
        }
        operations.forEach((operation, i) => {
          const reply: unknown = replies[i];
          // A failed operation's error comes back as its message (see batch-n.lua).
          if (typeof reply === 'string') operation.reject(new Error(reply));
          else operation.resolve(reply);
        });
      },
      (error: unknown) => {
        for (const operation of operations) operation.reject(error);
      },
    );
  }
}
