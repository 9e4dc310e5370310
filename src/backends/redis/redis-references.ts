/**
 * Reference counting on Redis: holders, counters and completion claims, one
 * Lua script per operation (layout and liveness rules in
 * `scripts/includes/references.lua`). Process heartbeats themselves live in
 * {@link RedisBackend}, with the namespace marker they check.
 *
 * Recovery is split in steps so that every script is handed the keys it
 * touches: `reap-1` forgets dead processes and queues what they held (all
 * in the namespace's slot); `find-pending-1` lists due resources of a kind;
 * `claim-pending-3` claims one of them atomically, after pruning its dead
 * holders. A race between two recovering processes is settled by the last
 * step: one claim wins, the other moves on to the next candidate.
 * @module
 */
import { randomUUID } from 'node:crypto';
import { kindOf, type CompletionClaim, type ReferenceOperations } from '../../backend.js';
import {
  heldKey,
  namespacePrefix,
  pendingKey,
  processesKey,
  processKey,
  referenceKey,
} from './keys.js';
import type { LuaScript, LuaScripts } from './scripts.js';

/** How {@link RedisReferences} reaches the store: the backend's bounded script runner. */
export interface ScriptRunner {
  /** Runs one script; failures become `BackendError` naming the address (and `key`). */
  run(
    script: LuaScript,
    keys: readonly string[],
    args: readonly string[],
    key: string | undefined,
  ): Promise<unknown>;
  /** The reply as an array of at least `minLength` items, else a `BackendError`. */
  expectArray(reply: unknown, minLength: number, key: string): unknown[];
}

/** Most dead processes one `reap-1` call forgets, so that one script stays short. */
const REAP_BATCH = 50;
/** Most `reap-1` calls per recovery round; the rest waits for the next heartbeat. */
const REAP_ROUNDS = 10;
/** Candidates `find-pending-1` lists per kind; more than one recovery round claims. */
const FIND_BATCH = 16;

/**
 * The reference operations of {@link RedisBackend}, and `removeProcess`;
 * `beat` stays in the backend, which owns the namespace marker it checks.
 */
export class RedisReferences implements Omit<ReferenceOperations, 'beat'> {
  protected readonly namespace: string;
  protected readonly scripts: LuaScripts;
  protected readonly store: ScriptRunner;

  constructor(options: { namespace: string; scripts: LuaScripts; store: ScriptRunner }) {
    this.namespace = options.namespace;
    this.scripts = options.scripts;
    this.store = options.store;
  }

  /** Forgets a process that closed; one still holding references is declared dead instead. */
  async removeProcess(processId: string): Promise<void> {
    await this.store.run(
      this.scripts.removeProcess,
      [
        processesKey(this.namespace),
        processKey(this.namespace, processId),
        heldKey(this.namespace, processId),
      ],
      [processId],
      undefined,
    );
  }

  async addReference(resource: string, processId: string): Promise<boolean> {
    const reply = await this.store.run(
      this.scripts.addReference,
      [
        referenceKey(this.namespace, resource),
        processesKey(this.namespace),
        heldKey(this.namespace, processId),
      ],
      [resource, processId],
      resource,
    );
    return Number(reply) === 1;
  }

  async removeReference(
    resource: string,
    processId: string,
    claimTtl: number,
  ): Promise<{ removed: boolean; claim: CompletionClaim | null }> {
    const reply = await this.store.run(
      this.scripts.removeReference,
      [
        referenceKey(this.namespace, resource),
        processesKey(this.namespace),
        heldKey(this.namespace, processId),
        this.pendingKey(resource),
      ],
      [resource, processId, String(claimTtl), randomUUID()],
      resource,
    );
    const [removed, token, attempt] = this.store.expectArray(reply, 1, resource);
    return {
      removed: Number(removed) === 1,
      claim: typeof token === 'string' ? { resource, token, attempt: Number(attempt) } : null,
    };
  }

  async countReferences(resource: string): Promise<number> {
    const reply = await this.store.run(
      this.scripts.countReferences,
      [
        referenceKey(this.namespace, resource),
        processesKey(this.namespace),
        this.pendingKey(resource),
      ],
      [resource],
      resource,
    );
    return Number(reply);
  }

  async incrementTimesModified(resource: string, by: number): Promise<number> {
    const reply = await this.store.run(
      this.scripts.incrementTimesModified,
      [referenceKey(this.namespace, resource)],
      [resource, String(by)],
      resource,
    );
    return Number(reply);
  }

  async timesModified(resource: string): Promise<number> {
    const reply = await this.store.run(
      this.scripts.timesModified,
      [referenceKey(this.namespace, resource)],
      [],
      resource,
    );
    return Number(reply);
  }

  async extendClaim(claim: CompletionClaim, ttl: number): Promise<boolean> {
    return this.onClaim(this.scripts.extendClaim, claim, [String(ttl)]);
  }

  async finishCompletion(claim: CompletionClaim, seenModified: number): Promise<boolean> {
    return this.onClaim(this.scripts.finishCompletion, claim, [String(seenModified)]);
  }

  async abandonCompletion(claim: CompletionClaim): Promise<void> {
    await this.onClaim(this.scripts.abandonCompletion, claim, []);
  }

  async reapDeadProcesses(): Promise<number> {
    let reaped = 0;
    for (let round = 0; round < REAP_ROUNDS; round++) {
      const reply = await this.store.run(
        this.scripts.reap,
        [processesKey(this.namespace)],
        [namespacePrefix(this.namespace), String(REAP_BATCH)],
        undefined,
      );
      reaped += Number(reply);
      if (Number(reply) < REAP_BATCH) break;
    }
    return reaped;
  }

  async claimPendingCompletion(
    kinds: readonly string[],
    claimTtl: number,
  ): Promise<CompletionClaim | null> {
    for (const kind of kinds) {
      const reply = await this.store.run(
        this.scripts.findPending,
        [pendingKey(this.namespace, kind)],
        [String(FIND_BATCH)],
        undefined,
      );
      // Shuffled so that processes recovering at the same time spread over the work.
      const candidates = shuffle(this.store.expectArray(reply, 0, kind).map(String));
      for (const resource of candidates) {
        const claim = await this.claimPending(resource, claimTtl);
        if (claim !== null) return claim;
      }
    }
    return null;
  }

  /** Claims the completion of one queued resource, or null (see claim-pending-3.lua). */
  protected async claimPending(
    resource: string,
    claimTtl: number,
  ): Promise<CompletionClaim | null> {
    const reply = await this.store.run(
      this.scripts.claimPending,
      [
        referenceKey(this.namespace, resource),
        processesKey(this.namespace),
        this.pendingKey(resource),
      ],
      [resource, randomUUID(), String(claimTtl)],
      resource,
    );
    if (!Array.isArray(reply)) return null;
    const [token, attempt] = this.store.expectArray(reply, 2, resource);
    return { resource, token: String(token), attempt: Number(attempt) };
  }

  /** Runs one of the claim scripts (KEYS ref, pending; ARGV resource, token, ...extra). */
  private async onClaim(
    script: LuaScript,
    claim: CompletionClaim,
    extra: readonly string[],
  ): Promise<boolean> {
    const reply = await this.store.run(
      script,
      [referenceKey(this.namespace, claim.resource), this.pendingKey(claim.resource)],
      [claim.resource, claim.token, ...extra],
      claim.resource,
    );
    return Number(reply) === 1;
  }

  protected pendingKey(resource: string): string {
    return pendingKey(this.namespace, kindOf(resource));
  }
}

/** Fisher–Yates, in place. */
function shuffle<T>(items: T[]): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [items[i], items[j]] = [items[j] as T, items[i] as T];
  }
  return items;
}
