/**
 * Reference counting on Redis Cluster. On one server each operation is one
 * script that reads the process registry (`{ns}` slot) next to the
 * resource's hash (its own slot); a Cluster script may touch one slot only,
 * so the operations that need both are split into a resource step and a
 * registry step, in an order that keeps recovery complete if a process dies
 * between them (the layout and the rules are in
 * `scripts/includes/references.lua`):
 *
 * - add: registry first (liveness, then the resource into the process's
 *   held set), then the resource's hash, so a reaper finds the resource;
 * - remove: the resource's hash first (remove the holder, claim when none
 *   is left), then the registry (held set, pending entry, which remaining
 *   holders are dead); if they all are, the resource step runs again with
 *   their ids and claims;
 * - count: read the holders, ask the registry which are dead, prune those;
 * - claims (extend, finish, abandon, recovery): the resource's hash decides,
 *   the pending set follows.
 *
 * Uncontended add and remove take two round trips (one on a single server).
 * Liveness is judged by the registry node's clock, as on one server.
 * @module
 */
import { randomUUID } from 'node:crypto';
import type { CompletionClaim } from '../../backend.js';
import { heldKey, processesKey, referenceKey } from './keys.js';
import { RedisReferences } from './redis-references.js';

/** What the resource steps answer about a claim attempt (remove-holder-1, claim-resource-1). */
type ClaimOutcome =
  | { readonly state: 'gone' }
  | { readonly state: 'busy'; readonly claimUntil: string }
  | { readonly state: 'held'; readonly holders: readonly string[] }
  | { readonly state: 'claimed'; readonly claim: CompletionClaim; readonly claimUntil: string };

/** The reference operations of a Redis Cluster backend; see the module comment. */
export class RedisClusterReferences extends RedisReferences {
  override async addReference(resource: string, processId: string): Promise<boolean> {
    const live = await this.store.run(
      this.scripts.addHeld,
      [processesKey(this.namespace), heldKey(this.namespace, processId)],
      [processId, resource],
      resource,
    );
    if (Number(live) !== 1) return false;
    await this.store.run(
      this.scripts.addHolder,
      [referenceKey(this.namespace, resource)],
      [resource, processId],
      resource,
    );
    return true;
  }

  override async removeReference(
    resource: string,
    processId: string,
    claimTtl: number,
  ): Promise<{ removed: boolean; claim: CompletionClaim | null }> {
    const reply = this.store.expectArray(
      await this.store.run(
        this.scripts.removeHolder,
        [referenceKey(this.namespace, resource)],
        [resource, processId, String(claimTtl), randomUUID()],
        resource,
      ),
      1,
      resource,
    );
    const removed = Number(reply[0]) === 1;
    const outcome = removed ? parseOutcome(resource, reply.slice(1)) : undefined;
    // Only now leave the held set: had this process died before, a reaper would have queued it.
    const dead = this.store
      .expectArray(
        await this.store.run(
          this.scripts.dropHeld,
          [
            processesKey(this.namespace),
            heldKey(this.namespace, processId),
            this.pendingKey(resource),
          ],
          [
            resource,
            outcome?.state === 'claimed' ? outcome.claimUntil : '',
            ...(outcome?.state === 'held' ? outcome.holders : []),
          ],
          resource,
        ),
        0,
        resource,
      )
      .map(String);
    if (outcome === undefined) return { removed: false, claim: null };
    if (outcome.state === 'claimed') return { removed: true, claim: outcome.claim };
    if (outcome.state === 'held' && dead.length === outcome.holders.length) {
      // Every other holder is dead: this dereference is the last live one.
      return { removed: true, claim: await this.claimWith(resource, claimTtl, dead) };
    }
    return { removed: true, claim: null };
  }

  override async countReferences(resource: string): Promise<number> {
    const reply = await this.store.run(
      this.scripts.readReference,
      [referenceKey(this.namespace, resource)],
      [],
      resource,
    );
    if (!Array.isArray(reply)) return 0;
    const holders = this.store.expectArray(reply, 3, resource).slice(3).map(String);
    const dead =
      holders.length === 0
        ? []
        : this.store
            .expectArray(
              await this.store.run(
                this.scripts.findDead,
                [processesKey(this.namespace)],
                holders,
                resource,
              ),
              0,
              resource,
            )
            .map(String);
    if (holders.length > 0 && dead.length === 0) return holders.length;
    // Prune the dead; a resource left without holders is queued for completion.
    const [left, queue] = this.store.expectArray(
      await this.store.run(
        this.scripts.pruneHolders,
        [referenceKey(this.namespace, resource)],
        [resource, ...dead],
        resource,
      ),
      2,
      resource,
    );
    if (Number(queue) === 1) await this.queue(resource, '0', true);
    return Number(left);
  }

  override async extendClaim(claim: CompletionClaim, ttl: number): Promise<boolean> {
    const claimUntil = await this.store.run(
      this.scripts.extendResourceClaim,
      [referenceKey(this.namespace, claim.resource)],
      [claim.resource, claim.token, String(ttl)],
      claim.resource,
    );
    if (Number(claimUntil) === 0) return false;
    await this.queue(claim.resource, String(claimUntil), false);
    return true;
  }

  override async finishCompletion(claim: CompletionClaim, seenModified: number): Promise<boolean> {
    const reply = await this.store.run(
      this.scripts.finishResourceClaim,
      [referenceKey(this.namespace, claim.resource)],
      [claim.resource, claim.token, String(seenModified)],
      claim.resource,
    );
    if (!Array.isArray(reply)) return false;
    const [claimUntil, due] = this.store.expectArray(reply, 2, claim.resource);
    if (Number(due) === 1) {
      // A next lifetime began and ended while the completion ran: its completion is due.
      await this.queue(claim.resource, '0', false);
    } else {
      // Drop the entry this claim wrote; one a newer lifetime wrote has a later score and stays.
      await this.unqueue(claim.resource, String(claimUntil), []);
    }
    return true;
  }

  override async abandonCompletion(claim: CompletionClaim): Promise<void> {
    const held = await this.store.run(
      this.scripts.abandonResourceClaim,
      [referenceKey(this.namespace, claim.resource)],
      [claim.resource, claim.token],
      claim.resource,
    );
    if (Number(held) === 1) await this.queue(claim.resource, '0', false);
  }

  /** Recovery's claim on one queued resource: the resource decides, the pending set follows. */
  protected override claimPending(
    resource: string,
    claimTtl: number,
  ): Promise<CompletionClaim | null> {
    return this.claimWith(resource, claimTtl, []);
  }

  /**
   * Runs claim-resource-1 (pruning `dead`) and brings the pending entry in
   * line with the outcome; when the holders it reports are all dead, prunes
   * them and tries once more.
   */
  private async claimWith(
    resource: string,
    claimTtl: number,
    dead: readonly string[],
  ): Promise<CompletionClaim | null> {
    let reported = dead;
    for (let round = 0; round < 2; round++) {
      const outcome = parseOutcome(
        resource,
        this.store.expectArray(
          await this.store.run(
            this.scripts.claimResource,
            [referenceKey(this.namespace, resource)],
            [resource, randomUUID(), String(claimTtl), ...reported],
            resource,
          ),
          1,
          resource,
        ),
      );
      switch (outcome.state) {
        case 'claimed':
          // Still pending: if this process dies, the entry comes due when the claim lapses.
          await this.queue(resource, outcome.claimUntil, false);
          return outcome.claim;
        case 'busy':
          // Due again when the running claim lapses.
          await this.queue(resource, outcome.claimUntil, false);
          return null;
        case 'gone':
          await this.unqueue(resource, '', []);
          return null;
        case 'held':
          // Dropped from the pending set if one of them is live; else they are all dead: prune and claim.
          reported = await this.unqueue(resource, '', outcome.holders);
          if (reported.length === 0) return null;
      }
    }
    return null;
  }

  /** Adds (or, without `nx`, moves) the resource's pending entry to `score`. */
  private async queue(resource: string, score: string, nx: boolean): Promise<void> {
    await this.store.run(
      this.scripts.queuePending,
      [this.pendingKey(resource)],
      [resource, score, nx ? 'NX' : ''],
      resource,
    );
  }

  /** unqueue-pending-2: drops the entry unless every one of `holders` is dead (then returns them). */
  private async unqueue(
    resource: string,
    maxScore: string,
    holders: readonly string[],
  ): Promise<string[]> {
    const reply = await this.store.run(
      this.scripts.unqueuePending,
      [processesKey(this.namespace), this.pendingKey(resource)],
      [resource, maxScore, ...holders],
      resource,
    );
    return this.store.expectArray(reply, 0, resource).map(String);
  }
}

/** The claim outcome from the tail of a remove-holder-1 reply or a claim-resource-1 reply. */
function parseOutcome(resource: string, reply: readonly unknown[]): ClaimOutcome {
  const [state, ...rest] = reply.map(String);
  switch (state) {
    case 'claimed': {
      const [token = '', attempt = '0', claimUntil = '0'] = rest;
      return {
        state,
        claim: { resource, token, attempt: Number(attempt) },
        claimUntil,
      };
    }
    case 'busy':
      return { state, claimUntil: rest[0] ?? '0' };
    case 'held':
      return { state, holders: rest };
    default:
      return { state: 'gone' };
  }
}
