/**
 * Reference counting state of one namespace in the in-memory store: process
 * liveness, holders per resource, and the completion queue. Every method is
 * synchronous, so each is atomic.
 * @module
 */
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import {
  kindOf,
  type CompletionClaim,
  type ProcessInfo,
  type ProcessState,
  type ResourceState as ResourceView,
} from '../../backend.js';

interface ResourceState {
  readonly holders: Set<string>;
  timesModified: number;
  /** Completion runs so far (the next claim gets attempt + 1). */
  attempts: number;
  claim: { token: string; expiresAt: number } | undefined;
  /** No live holder is left: the completion must run (or is running). */
  completing: boolean;
  /** Referenced since the claim was handed out: a next lifetime began while it ran. */
  reopened: boolean;
}

export class ReferenceSpace {
  /** Live processes and when their heartbeat runs out (monotonic ms). */
  private readonly processes = new Map<string, number>();
  private readonly infos = new Map<string, ProcessInfo>();
  private readonly lastBeats = new Map<string, number>();
  /** Processes declared dead whose references are not pruned yet. */
  private readonly dead = new Set<string>();
  private readonly heldBy = new Map<string, Set<string>>();
  private readonly resources = new Map<string, ResourceState>();

  beat(processId: string, ttl: number, first: boolean, info: ProcessInfo): boolean {
    const now = performance.now();
    if (!first && !this.isLive(processId, now)) return false;
    this.processes.set(processId, now + ttl);
    this.lastBeats.set(processId, now);
    if (first) this.infos.set(processId, info);
    return true;
  }

  /**
   * For `disref status`: every process (live, or dead and not yet reaped), and
   * the resources whose name starts with `prefix`.
   */
  snapshot(prefix = ''): { references: ResourceView[]; processes: ProcessState[] } {
    const now = performance.now();
    const processes: ProcessState[] = [];
    const age = (id: string): number | undefined => {
      const last = this.lastBeats.get(id);
      return last === undefined ? undefined : Math.round(now - last);
    };
    for (const [id, expiresAt] of this.processes) {
      const ttlLeft = Math.round(expiresAt - now);
      processes.push({ id, info: this.infos.get(id), ttlLeft, heartbeatAge: age(id) });
    }
    for (const id of this.dead) {
      processes.push({ id, info: this.infos.get(id), ttlLeft: 0, heartbeatAge: age(id) });
    }
    const references = [...this.resources]
      .filter(([resource]) => resource.startsWith(prefix))
      .map(([resource, state]) => ({
        resource,
        holders: [...state.holders],
        timesModified: state.timesModified,
        completing: state.completing,
      }));
    return { references, processes };
  }

  /** A process that closed cleanly: no longer live (holders it still had are pruned as dead). */
  remove(processId: string): void {
    this.infos.delete(processId);
    this.lastBeats.delete(processId);
    if (this.processes.delete(processId) && this.heldBy.has(processId)) this.dead.add(processId);
  }

  addReference(resource: string, processId: string): boolean {
    if (!this.isLive(processId, performance.now())) return false;
    const state = this.state(resource);
    state.holders.add(processId);
    if (state.claim !== undefined) state.reopened = true;
    let held = this.heldBy.get(processId);
    if (held === undefined) {
      held = new Set();
      this.heldBy.set(processId, held);
    }
    held.add(resource);
    return true;
  }

  removeReference(
    resource: string,
    processId: string,
    claimTtl: number,
  ): { removed: boolean; claim: CompletionClaim | null } {
    const state = this.resources.get(resource);
    const removed = state?.holders.delete(processId) ?? false;
    this.heldBy.get(processId)?.delete(resource);
    if (state === undefined || !removed) return { removed, claim: null };
    const now = performance.now();
    this.prune(state, now);
    if (state.holders.size > 0 || (state.claim !== undefined && state.claim.expiresAt > now)) {
      return { removed, claim: null };
    }
    return { removed, claim: this.claim(resource, state, now, claimTtl) };
  }

  countReferences(resource: string): number {
    const state = this.resources.get(resource);
    if (state === undefined) return 0;
    this.prune(state, performance.now());
    return state.holders.size;
  }

  incrementTimesModified(resource: string, by: number): number {
    const state = this.state(resource);
    state.timesModified += by;
    return state.timesModified;
  }

  timesModified(resource: string): number {
    return this.resources.get(resource)?.timesModified ?? 0;
  }

  extendClaim(claim: CompletionClaim, ttl: number): boolean {
    const state = this.resources.get(claim.resource);
    if (state?.claim?.token !== claim.token) return false;
    state.claim.expiresAt = performance.now() + ttl;
    return true;
  }

  finishCompletion(claim: CompletionClaim, seenModified: number): boolean {
    const state = this.resources.get(claim.resource);
    if (state?.claim?.token !== claim.token) return false;
    if (!state.reopened) {
      this.resources.delete(claim.resource);
      return true;
    }
    // Referenced while the completion ran: that next lifetime keeps its holders and what
    // was modified beyond what the completion saw; ended already, it is due at once.
    this.prune(state, performance.now());
    state.timesModified = Math.max(0, state.timesModified - seenModified);
    state.attempts = 0;
    state.claim = undefined;
    state.reopened = false;
    state.completing = state.holders.size === 0;
    return true;
  }

  abandonCompletion(claim: CompletionClaim): void {
    const state = this.resources.get(claim.resource);
    if (state?.claim?.token === claim.token) state.claim = undefined;
  }

  reapDeadProcesses(): number {
    const now = performance.now();
    for (const [processId, expiresAt] of this.processes) {
      if (expiresAt <= now) this.declareDead(processId);
    }
    let reaped = 0;
    for (const processId of this.dead) {
      for (const resource of this.heldBy.get(processId) ?? []) {
        const state = this.resources.get(resource);
        if (state !== undefined) this.prune(state, now);
      }
      this.heldBy.delete(processId);
      this.dead.delete(processId);
      this.infos.delete(processId);
      this.lastBeats.delete(processId);
      reaped += 1;
    }
    return reaped;
  }

  claimPendingCompletion(kinds: readonly string[], claimTtl: number): CompletionClaim | null {
    const now = performance.now();
    for (const [resource, state] of this.resources) {
      if (!state.completing || !kinds.includes(kindOf(resource))) continue;
      if (state.claim !== undefined && state.claim.expiresAt > now) continue;
      this.prune(state, now);
      if (state.holders.size > 0) continue;
      return this.claim(resource, state, now, claimTtl);
    }
    return null;
  }

  private claim(
    resource: string,
    state: ResourceState,
    now: number,
    claimTtl: number,
  ): CompletionClaim {
    state.attempts += 1;
    state.completing = true;
    // A claim is handed out only once no live holder is left: it covers all so far.
    state.reopened = false;
    const token = randomUUID();
    state.claim = { token, expiresAt: now + claimTtl };
    return { resource, token, attempt: state.attempts };
  }

  private isLive(processId: string, now: number): boolean {
    const expiresAt = this.processes.get(processId);
    if (expiresAt === undefined) return false;
    if (expiresAt > now) return true;
    this.declareDead(processId);
    return false;
  }

  private declareDead(processId: string): void {
    this.processes.delete(processId);
    this.dead.add(processId);
  }

  /** Drops dead holders; a resource left with none awaits its completion. */
  private prune(state: ResourceState, now: number): void {
    for (const holder of state.holders) {
      if (!this.isLive(holder, now)) state.holders.delete(holder);
    }
    if (state.holders.size === 0) state.completing = true;
  }

  private state(resource: string): ResourceState {
    let state = this.resources.get(resource);
    if (state === undefined) {
      state = {
        holders: new Set(),
        timesModified: 0,
        attempts: 0,
        claim: undefined,
        completing: false,
        reopened: false,
      };
      this.resources.set(resource, state);
    }
    return state;
  }
}
