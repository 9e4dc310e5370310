/**
 * The Lua scripts of the Redis backend: loaded from the `.lua` files beside
 * this module (`scripts/<verb>-<numberOfKeys>.lua`, copied to `dist/` by the
 * build) and run through one helper that sends EVALSHA and falls back to EVAL
 * when the server does not have the script cached (after SCRIPT FLUSH or a
 * restart).
 * @module
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { RedisConnection } from './client.js';

/** One script, ready to send. */
export interface LuaScript {
  /** File name without `.lua`, e.g. `acquire-4`. */
  readonly name: string;
  readonly numberOfKeys: number;
  /** The script text with its includes expanded. */
  readonly source: string;
  /** SHA1 of `source`, as EVALSHA expects. */
  readonly sha: string;
}

/** Every script the backend runs, by verb. */
export interface LuaScripts {
  readonly acquire: LuaScript;
  readonly extend: LuaScript;
  readonly release: LuaScript;
  readonly leave: LuaScript;
  readonly inspect: LuaScript;
  readonly beat: LuaScript;
  readonly removeProcess: LuaScript;
  readonly addReference: LuaScript;
  readonly removeReference: LuaScript;
  readonly countReferences: LuaScript;
  readonly incrementTimesModified: LuaScript;
  readonly timesModified: LuaScript;
  readonly extendClaim: LuaScript;
  readonly finishCompletion: LuaScript;
  readonly abandonCompletion: LuaScript;
  readonly reap: LuaScript;
  readonly findPending: LuaScript;
  readonly claimPending: LuaScript;
  readonly readReference: LuaScript;
  readonly readProcesses: LuaScript;
}

const SCRIPT_FILES = {
  acquire: 'acquire-4',
  extend: 'extend-1',
  release: 'release-1',
  leave: 'leave-2',
  inspect: 'inspect-2',
  beat: 'beat-3',
  removeProcess: 'remove-process-3',
  addReference: 'add-reference-3',
  removeReference: 'remove-reference-4',
  countReferences: 'count-references-3',
  incrementTimesModified: 'increment-times-modified-1',
  timesModified: 'times-modified-1',
  extendClaim: 'extend-claim-2',
  finishCompletion: 'finish-completion-2',
  abandonCompletion: 'abandon-completion-2',
  reap: 'reap-1',
  findPending: 'find-pending-1',
  claimPending: 'claim-pending-3',
  readReference: 'read-reference-1',
  readProcesses: 'read-processes-1',
} as const satisfies Record<keyof LuaScripts, string>;

// Shared fragments, BullMQ-style: a whole line `--- @include "includes/x.lua"`.
const INCLUDE = /^--- @include "([a-z0-9/-]+\.lua)"$/gm;

let loaded: LuaScripts | undefined;

/** Reads the scripts from disk once per process. */
export function luaScripts(): LuaScripts {
  loaded ??= Object.fromEntries(
    Object.entries(SCRIPT_FILES).map(([verb, name]) => [verb, loadScript(name)]),
  ) as unknown as LuaScripts;
  return loaded;
}

/** Loads `scripts/<name>.lua`; the number of keys comes from the name. */
export function loadScript(name: string): LuaScript {
  const match = /-(\d+)$/.exec(name);
  if (match === null) throw new Error(`disref: script ${name} is not named <verb>-<keys>`);
  const source = readScriptFile(`${name}.lua`).replace(INCLUDE, (_line, path: string) =>
    readScriptFile(path).trimEnd(),
  );
  return {
    name,
    numberOfKeys: Number(match[1]),
    source,
    sha: createHash('sha1').update(source).digest('hex'),
  };
}

function readScriptFile(path: string): string {
  return readFileSync(new URL(`./scripts/${path}`, import.meta.url), 'utf8');
}

/**
 * Runs `script` by EVALSHA, falling back to EVAL (which also caches it) when
 * the server answers NOSCRIPT. Other errors pass through unchanged.
 */
export async function runScript(
  connection: RedisConnection,
  script: LuaScript,
  keys: readonly string[],
  args: readonly string[],
): Promise<unknown> {
  if (keys.length !== script.numberOfKeys) {
    throw new Error(
      `disref: script ${script.name} takes ${String(script.numberOfKeys)} keys, got ${String(keys.length)}`,
    );
  }
  try {
    return await connection.evalsha(script.sha, keys, args);
  } catch (error) {
    if (!isNoScript(error)) throw error;
    return connection.eval(script.source, keys, args);
  }
}

function isNoScript(error: unknown): boolean {
  return error instanceof Error && error.message.startsWith('NOSCRIPT');
}
