/**
 * The Lua scripts of the Redis backend: loaded from the `.lua` files beside
 * this module (`scripts/<verb>-<numberOfKeys>.lua`, copied to `dist/` by the
 * build) and run through one helper that sends EVALSHA and falls back to EVAL
 * when the server does not have the script cached (after SCRIPT FLUSH or a
 * restart; on Redis Cluster, on each node the first time it runs a script).
 *
 * Scripts come in two variants that differ only in how they wake waiters
 * (`includes/publish.lua`): PUBLISH, and SPUBLISH for Redis Cluster 7+,
 * where `includes/publish-sharded.lua` is included in its place.
 * @module
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { RedisConnection } from './client.js';

/** One script, ready to send. */
export interface LuaScript {
  /** File name without `.lua`, e.g. `acquire-4`; `-n` for a script that takes any number of keys. */
  readonly name: string;
  /** How many keys it takes; undefined when any number (`batch-n`). */
  readonly numberOfKeys: number | undefined;
  /** The script text with its includes expanded. */
  readonly source: string;
  /** SHA1 of `source`, as EVALSHA expects. */
  readonly sha: string;
}

/**
 * How scripts send wake-ups: PUBLISH (one server, or a cluster older than
 * Redis 7, where it is broadcast to every node) or SPUBLISH (sharded pub/sub
 * on Redis Cluster 7+: delivered on the node that owns the lock's slot).
 */
export type PublishCommand = 'PUBLISH' | 'SPUBLISH';

/** Every script the backend runs, by verb. */
export interface LuaScripts {
  readonly acquire: LuaScript;
  readonly extend: LuaScript;
  readonly release: LuaScript;
  readonly leave: LuaScript;
  readonly inspect: LuaScript;
  /** Several lock operations (acquire, extend, release, leave) in one call (single server). */
  readonly batch: LuaScript;
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
  /** `disref status`: the ms a marker's data-loss quarantine still holds grants back. */
  readonly quarantineLeft: LuaScript;
  // Redis Cluster: reference operations split into a registry step (keys of
  // the {ns} slot) and a resource step (the resource's hash only).
  readonly addHeld: LuaScript;
  readonly addHolder: LuaScript;
  readonly removeHolder: LuaScript;
  readonly dropHeld: LuaScript;
  readonly findDead: LuaScript;
  readonly pruneHolders: LuaScript;
  readonly claimResource: LuaScript;
  readonly queuePending: LuaScript;
  readonly unqueuePending: LuaScript;
  readonly extendResourceClaim: LuaScript;
  readonly finishResourceClaim: LuaScript;
  readonly abandonResourceClaim: LuaScript;
}

const SCRIPT_FILES = {
  acquire: 'acquire-4',
  extend: 'extend-1',
  release: 'release-3',
  leave: 'leave-3',
  inspect: 'inspect-2',
  batch: 'batch-n',
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
  quarantineLeft: 'quarantine-left-1',
  addHeld: 'add-held-2',
  addHolder: 'add-holder-1',
  removeHolder: 'remove-holder-1',
  dropHeld: 'drop-held-3',
  findDead: 'find-dead-1',
  pruneHolders: 'prune-holders-1',
  claimResource: 'claim-resource-1',
  queuePending: 'queue-pending-1',
  unqueuePending: 'unqueue-pending-2',
  extendResourceClaim: 'extend-claim-1',
  finishResourceClaim: 'finish-completion-1',
  abandonResourceClaim: 'abandon-completion-1',
} as const satisfies Record<keyof LuaScripts, string>;

// Shared fragments, BullMQ-style: a whole line `--- @include "includes/x.lua"`.
const INCLUDE = /^--- @include "([a-z0-9/-]+\.lua)"$/gm;

/** Includes replaced by another file in a variant (see {@link PublishCommand}). */
const VARIANT_INCLUDES: Record<PublishCommand, Readonly<Record<string, string>>> = {
  PUBLISH: {},
  SPUBLISH: { 'includes/publish.lua': 'includes/publish-sharded.lua' },
};

const loaded = new Map<PublishCommand, { scripts: LuaScripts; byName: Map<string, LuaScript> }>();

/** Reads the scripts (of one variant) from disk once per process. */
export function luaScripts(publish: PublishCommand = 'PUBLISH'): LuaScripts {
  return variant(publish).scripts;
}

/** `script` as the variant that wakes waiters with `publish` (itself for PUBLISH). */
export function scriptVariant(script: LuaScript, publish: PublishCommand): LuaScript {
  if (publish === 'PUBLISH') return script;
  return variant(publish).byName.get(script.name) ?? loadScript(script.name, publish);
}

function variant(publish: PublishCommand): { scripts: LuaScripts; byName: Map<string, LuaScript> } {
  let entry = loaded.get(publish);
  if (entry === undefined) {
    const byName = new Map<string, LuaScript>();
    const scripts = Object.fromEntries(
      Object.entries(SCRIPT_FILES).map(([verb, name]) => {
        const script = loadScript(name, publish);
        byName.set(name, script);
        return [verb, script];
      }),
    ) as unknown as LuaScripts;
    entry = { scripts, byName };
    loaded.set(publish, entry);
  }
  return entry;
}

/** Loads `scripts/<name>.lua`; the number of keys comes from the name (`n`: any). */
export function loadScript(name: string, publish: PublishCommand = 'PUBLISH'): LuaScript {
  const match = /-(\d+|n)$/.exec(name);
  if (match === null) throw new Error(`disref: script ${name} is not named <verb>-<keys>`);
  const replaced = VARIANT_INCLUDES[publish];
  const source = readScriptFile(`${name}.lua`).replace(INCLUDE, (_line, path: string) =>
    readScriptFile(replaced[path] ?? path).trimEnd(),
  );
  return {
    name,
    numberOfKeys: match[1] === 'n' ? undefined : Number(match[1]),
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
  if (script.numberOfKeys !== undefined && keys.length !== script.numberOfKeys) {
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
