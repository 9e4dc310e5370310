/**
 * A quorum backend: the Redlock algorithm over N independent stores (the
 * members). Generic over {@link Backend}; `redis-quorum://` builds it over
 * single-server Redis backends (`redis-quorum.ts`).
 *
 * - Acquire asks every member at once with the same owner token. The lock is
 *   held when a majority granted it and the attempt took less than the
 *   validity time, `ttl − drift` (drift: 1 % of the ttl + 2 ms, as for every
 *   backend); the lease then counts from before the attempt was sent. Without
 *   a majority, every member that granted (or did not answer) is released at
 *   once and the attempt is denied; a majority that cannot answer at all is a
 *   `BackendError` listing the members that failed.
 * - Fences: each member hands out `max(last + 1, its clock in ms × 1000)`.
 *   The lease's fence is the largest among the members that granted, and the
 *   fence key of the other granting members is raised to it before the lease
 *   is handed out (a {@link FenceFloor}), so that a majority stores at least
 *   that fence. Any later conflicting grant needs a majority too, which
 *   shares a member with that one, and that member can only hand out more.
 *   Taking the largest alone is not enough: with the members' clocks apart,
 *   the next majority may not include the member whose clock ran ahead.
 * - Extend needs a majority; release goes to every member (the minority
 *   too, to clean up). A member that misses a wait (`memberTimeout`) is not
 *   waited for again until it answers, so a frozen member costs one wait,
 *   not one per operation.
 * - No waiter queue (`fifo: false`): a queue kept separately on each member
 *   would order waiters differently on each, and a waiter first in line on
 *   one and second on another could block everyone. `fair: true` is refused.
 * - No reference counting: a reference needs one agreed view of which
 *   processes are alive, and members that vote per operation cannot give it
 *   (a member that missed a heartbeat declares a process dead alone, for
 *   good). `disref.reference()` fails with `InvalidArgumentError`.
 * @module
 */
import { performance } from 'node:perf_hooks';
import type {
  AcquireRequest,
  AcquireResult,
  Backend,
  Capabilities,
  CompletionClaim,
  HolderState,
  LockState,
  ProcessInfo,
  ReleaseListener,
  StoreSnapshot,
} from '../../backend.js';
import { BackendError, InvalidArgumentError } from '../../errors.js';
import { driftMargin } from '../../locks/lease.js';
import {
  describeMemberFailure,
  firstFailure,
  gather,
  majority,
  type Gathered,
  type Outcome,
} from '../composite/fan-out.js';
import { beatEveryMember, memberAt, type Member } from '../composite/liveness.js';
import { mergeProcesses, quarantineLeftOf, snapshotEveryMember } from '../composite/snapshots.js';

/** Raises a member's stored fence for a key, so the member's next grant for it is above. */
export interface FenceFloor {
  /** After this resolves, the member hands out fences greater than `fence` for `key`. */
  raise(key: string, fence: number): Promise<void>;
  /** Frees what it opened. */
  close(): Promise<void>;
}

/** One member: a backend, its address for errors, and its fence floor. */
export interface QuorumMember extends Member {
  readonly fences: FenceFloor;
}

/** Options of {@link QuorumBackend}. */
export interface QuorumBackendOptions {
  /** Short name for errors and status, e.g. `redis-quorum`. */
  readonly name: string;
  /** Address for errors, e.g. `redis-quorum://h1:6379,h2:6379,h3:6379` (no credentials). */
  readonly address: string;
  /** The members, each store listed once. The backend closes them on `close()`. */
  readonly members: readonly QuorumMember[];
  /**
   * Longest wait, in ms, for a member that has not answered when the
   * outcome depends on it; it then counts as failed for that operation and
   * is not waited for again until it answers. An acquire never waits longer
   * than its validity time either. Shorter makes a frozen member cheaper;
   * too short fails healthy members on a busy machine (a member that misses
   * it is as good as down for that operation).
   * @default 2_000
   */
  readonly memberTimeout?: number;
  /**
   * How long to gather wake-ups before passing one on, in ms: a release
   * reaches every member, and each publishes, so one release makes up to N
   * messages; waking on the first would send the waiter in while the other
   * members still hold the lock.
   * @default 2
   */
  readonly wakeupWindow?: number;
}

const MEMBER_TIMEOUT = 2_000;
const WAKEUP_WINDOW = 2;
/** After a split vote, contenders retry within this many ms, at random, so that they stop colliding. */
const SPLIT_VOTE_RETRY = 50;

/** What the members said to one operation, with the count that decides it. */
interface Votes<T> extends Gathered<T> {
  /** Members that answered yes, and no. */
  readonly yes: number;
  readonly no: number;
  /**
   * Members still running, not waited for because the answer was already
   * known, and not known to be slow: they may well be up. The rest of the
   * members failed, missed the deadline, or are slow.
   */
  readonly awaited: number;
}

export class QuorumBackend implements Backend {
  readonly name: string;
  readonly address: string;
  readonly capabilities: Capabilities;
  /** How many members make a majority. */
  readonly quorum: number;
  private readonly members: readonly QuorumMember[];
  private readonly memberTimeout: number;
  private readonly wakeupWindow: number;
  /** Members that missed a wait; not waited for until they answer again. */
  private readonly slow = new Set<number>();

  constructor(options: QuorumBackendOptions) {
    const { members } = options;
    const addresses = new Set(members.map((member) => member.address));
    if (members.length === 0 || addresses.size !== members.length) {
      throw new InvalidArgumentError(
        'members',
        'at least one member, each store listed once (a store listed twice would vote twice)',
        members.map((member) => member.address).join(','),
      );
    }
    this.name = options.name;
    this.address = options.address;
    this.members = members;
    this.quorum = majority(members.length);
    this.memberTimeout = options.memberTimeout ?? MEMBER_TIMEOUT;
    this.wakeupWindow = options.wakeupWindow ?? WAKEUP_WINDOW;
    const all = (feature: keyof Capabilities): boolean =>
      members.every((member) => member.backend.capabilities[feature]);
    this.capabilities = {
      notify: all('notify'),
      fifo: false,
      sharedLocks: all('sharedLocks'),
      listKeys: all('listKeys'),
      crossProcess: all('crossProcess'),
      // Hand-offs go to queued waiters, and there is no queue.
      handOff: false,
    };
  }

  async acquire(request: AcquireRequest): Promise<AcquireResult> {
    const start = performance.now();
    const validity = request.ttl - driftMargin(request.ttl);
    if (validity <= 0) {
      throw new InvalidArgumentError(
        'ttl',
        `more than ${String(request.ttl - validity)} ms on the ${this.name} backend (a lease must outlast its clock-drift margin)`,
        request.ttl,
      );
    }
    const votes = await this.vote(
      (member) => member.backend.acquire(request),
      (result) => result.granted,
      Math.min(this.memberTimeout, validity),
    );
    if (votes.yes >= this.quorum) {
      let fence: number | undefined;
      try {
        fence = await this.settleFence(request.key, votes, validity - (performance.now() - start));
      } catch (error) {
        this.giveBack(request, votes);
        throw error;
      }
      if (fence !== undefined && performance.now() - start < validity) {
        return { granted: true, fence };
      }
      // The attempt outlasted its validity: the lease may be running out on the members already.
      this.giveBack(request, votes);
      return { granted: false, retryAfter: 1 };
    }
    this.giveBack(request, votes);
    if (this.failedMajority(votes)) {
      throw this.unreachable('acquire', request.key, votes, this.memberTimeout);
    }
    const retryAfter = this.retryAfter(votes);
    return this.quarantineBlocks(votes)
      ? { granted: false, retryAfter, quarantined: true }
      : { granted: false, retryAfter };
  }

  async extend(key: string, owner: string, ttl: number): Promise<boolean> {
    const votes = await this.vote(
      (member) => member.backend.extend(key, owner, ttl),
      (extended) => extended,
      // An extension that takes longer than the new lease is lost anyway.
      Math.max(1, Math.min(this.memberTimeout, ttl - driftMargin(ttl))),
    );
    if (votes.yes >= this.quorum) return true;
    if (votes.no > this.members.length - this.quorum) {
      // Lost for good: free what is left of it at once instead of at its expiry.
      this.releaseEverywhere(key, owner);
      return false;
    }
    throw this.unreachable('extend', key, votes, this.memberTimeout);
  }

  async release(key: string, owner: string): Promise<boolean> {
    const votes = await this.vote(
      (member) => member.backend.release(key, owner),
      (released) => released,
      this.memberTimeout,
    );
    if (votes.yes >= this.quorum) return true;
    if (this.failedMajority(votes)) {
      throw this.unreachable('release', key, votes, this.memberTimeout);
    }
    return false;
  }

  /** Done on a majority; a registration left on a slow member expires by itself. */
  async leave(key: string, owner: string): Promise<void> {
    const votes = await this.vote(
      (member) => member.backend.leave(key, owner),
      () => true,
      this.memberTimeout,
    );
    if (votes.yes < this.quorum) throw this.unreachable('leave', key, votes, this.memberTimeout);
  }

  /**
   * Subscribes on every member; resolves once a majority listens (a lock
   * held on a majority is released on at least one of them), and the rest
   * join when they answer. Messages within `wakeupWindow` ms make one call.
   */
  async onRelease(key: string, listener: ReleaseListener): Promise<() => void> {
    let stopped = false;
    let timer: NodeJS.Timeout | undefined;
    const wake = (): void => {
      if (stopped || timer !== undefined) return;
      timer = setTimeout(() => {
        timer = undefined;
        if (!stopped) listener();
      }, this.wakeupWindow);
      timer.unref();
    };
    const stops: (() => void)[] = [];
    const stop = (): void => {
      stopped = true;
      clearTimeout(timer);
      for (const unsubscribe of stops.splice(0)) unsubscribe();
    };
    // The members bound their own subscription time; a majority that listens decides.
    const votes = await this.vote(
      (member) => member.backend.onRelease(key, wake),
      () => true,
      undefined,
    );
    for (const late of votes.settled) {
      void late.then((outcome) => {
        if (!outcome.ok) return;
        if (stopped) outcome.value();
        else stops.push(outcome.value);
      });
    }
    if (votes.yes < this.quorum) {
      stop();
      throw this.unreachable('subscribing to wake-ups', key, votes, 0);
    }
    return stop;
  }

  /** The holders a majority agrees on (largest fence, the ttl a majority still grants), or null. */
  async inspect(key: string): Promise<LockState | null> {
    const votes = await this.vote(
      (member) => member.backend.inspect(key),
      () => true,
      this.memberTimeout,
      false,
    );
    if (votes.yes < this.quorum) throw this.unreachable('inspect', key, votes, this.memberTimeout);
    const states = votes.outcomes.map((outcome) => (outcome?.ok === true ? outcome.value : null));
    return mergeLockStates(key, states, this.quorum);
  }

  /** Locks a majority holds, and every member's processes; unreachable members named in `incomplete`. */
  async snapshot(prefix = ''): Promise<StoreSnapshot> {
    const { taken, incomplete } = await snapshotEveryMember(this.members, this.address, prefix);
    const byKey = new Map<string, LockState[]>();
    for (const { snapshot } of taken) {
      for (const lock of snapshot.locks)
        byKey.set(lock.key, [...(byKey.get(lock.key) ?? []), lock]);
    }
    const locks = [...byKey].flatMap(([key, states]) => {
      const merged = mergeLockStates(key, states, this.quorum);
      return merged === null ? [] : [merged];
    });
    return {
      locks,
      references: [],
      processes: mergeProcesses(taken.map(({ snapshot }) => snapshot.processes)),
      incomplete,
      quarantineLeft: quarantineLeftOf(taken, this.quorum),
    };
  }

  /** Beats on every member; a majority must record it (processes are shown by `status`). */
  beat(processId: string, ttl: number, first: boolean, info: ProcessInfo): Promise<boolean> {
    return beatEveryMember(
      this.members,
      this.address,
      { processId, ttl, first, info },
      { required: this.quorum, deadline: this.memberTimeout },
    );
  }

  /** Done on a majority; an entry left on a slow member runs out by itself. */
  async removeProcess(processId: string): Promise<void> {
    const votes = await this.vote(
      (member) => member.backend.removeProcess(processId),
      () => true,
      this.memberTimeout,
    );
    if (votes.yes < this.quorum) {
      throw this.unreachable('removing a process', undefined, votes, this.memberTimeout);
    }
  }

  /** Forgets dead processes on every member (for `status`); there are no references to recover. */
  async reapDeadProcesses(): Promise<number> {
    const votes = await this.vote(
      (member) => member.backend.reapDeadProcesses(),
      () => true,
      this.memberTimeout,
    );
    if (votes.yes === 0) throw this.unreachable('reaping', undefined, votes, this.memberTimeout);
    let reaped = 0;
    for (const outcome of votes.outcomes) {
      if (outcome?.ok === true) reaped = Math.max(reaped, outcome.value);
    }
    return reaped;
  }

  /** Nothing is ever pending: references are refused. */
  claimPendingCompletion(): Promise<CompletionClaim | null> {
    return Promise.resolve(null);
  }

  addReference(resource: string): Promise<boolean> {
    return this.refuseReferences(resource);
  }

  removeReference(resource: string): Promise<{ removed: boolean; claim: CompletionClaim | null }> {
    return this.refuseReferences(resource);
  }

  countReferences(resource: string): Promise<number> {
    return this.refuseReferences(resource);
  }

  incrementTimesModified(resource: string): Promise<number> {
    return this.refuseReferences(resource);
  }

  timesModified(resource: string): Promise<number> {
    return this.refuseReferences(resource);
  }

  extendClaim(claim: CompletionClaim): Promise<boolean> {
    return this.refuseReferences(claim.resource);
  }

  finishCompletion(claim: CompletionClaim): Promise<boolean> {
    return this.refuseReferences(claim.resource);
  }

  abandonCompletion(claim: CompletionClaim): Promise<void> {
    return this.refuseReferences(claim.resource);
  }

  async close(): Promise<void> {
    await Promise.all(
      this.members.flatMap((member) => [
        member.backend.close().catch(() => undefined),
        member.fences.close().catch(() => undefined),
      ]),
    );
  }

  /**
   * Runs `operation` on every member at once. With `decideEarly`, stops
   * waiting once `isYes` answers make (or can no longer make) a majority;
   * members that are slow (missed an earlier wait) count as failed for that,
   * as long as they are a minority.
   * `deadline` bounds the wait; members still running then become slow.
   */
  private async vote<T>(
    operation: (member: QuorumMember) => Promise<T>,
    isYes: (value: T) => boolean,
    deadline: number | undefined,
    decideEarly = true,
  ): Promise<Votes<T>> {
    // Skipping slow members only pays while they are a minority: without them, no majority.
    const skipSlow = this.slow.size <= this.members.length - this.quorum;
    const count = (outcomes: readonly (Outcome<T> | undefined)[]) => {
      let yes = 0;
      let no = 0;
      let awaited = 0;
      outcomes.forEach((outcome, index) => {
        if (outcome === undefined) {
          if (!skipSlow || !this.slow.has(index)) awaited += 1;
        } else if (outcome.ok) {
          if (isYes(outcome.value)) yes += 1;
          else no += 1;
        }
      });
      return { yes, no, awaited };
    };
    const gathered = await gather<T>(
      this.members.length,
      (index) => operation(memberAt(this.members, index)),
      {
        ...(decideEarly
          ? {
              decided: (outcomes) => {
                const { yes, awaited } = count(outcomes);
                return yes >= this.quorum || yes + awaited < this.quorum;
              },
            }
          : {}),
        ...(deadline === undefined ? {} : { deadline }),
      },
    );
    gathered.settled.forEach((settled, index) => {
      void settled.then((outcome) => {
        if (outcome.ok) this.slow.delete(index);
      });
    });
    if (gathered.timedOut) {
      gathered.outcomes.forEach((outcome, index) => {
        if (outcome === undefined) this.slow.add(index);
      });
    }
    const { yes, no, awaited } = count(gathered.outcomes);
    return { ...gathered, yes, no, awaited: gathered.timedOut ? 0 : awaited };
  }

  /** So many members failed (or are slow) that the others could not have made a majority. */
  private failedMajority(votes: Votes<unknown>): boolean {
    return votes.yes + votes.no + votes.awaited < this.quorum;
  }

  /**
   * The fence of a majority grant: the largest the members handed out,
   * after raising enough of the other granting members to it that a
   * majority stores it (see the module comment). Resolves `undefined` when
   * that takes longer than `within` ms (the attempt is then too late);
   * throws `BackendError` when too many members fail to be raised.
   */
  private async settleFence(
    key: string,
    votes: Votes<AcquireResult>,
    within: number,
  ): Promise<number | undefined> {
    const grants: { index: number; fence: number }[] = [];
    votes.outcomes.forEach((outcome, index) => {
      if (outcome?.ok === true && outcome.value.granted) {
        grants.push({ index, fence: outcome.value.fence });
      }
    });
    const fence = Math.max(...grants.map((grant) => grant.fence));
    const lower = grants.filter((grant) => grant.fence < fence);
    const needed = this.quorum - (grants.length - lower.length);
    const started = performance.now();
    let done = 0;
    let next = 0;
    const failures: string[] = [];
    // Only as many as needed, and more only if some of those fail: each is a round trip.
    while (done < needed && next < lower.length) {
      const batch = lower.slice(next, next + needed - done);
      next += batch.length;
      const raised = await gather(
        batch.length,
        (index) => {
          const member = memberAt(this.members, memberAt(batch, index).index);
          return member.fences.raise(key, fence);
        },
        { deadline: Math.max(0, within - (performance.now() - started)) },
      );
      if (raised.timedOut) return undefined;
      raised.outcomes.forEach((outcome, index) => {
        if (outcome?.ok === true) {
          done += 1;
        } else {
          const member = memberAt(this.members, memberAt(batch, index).index);
          failures.push(describeMemberFailure(member.address, outcome, within));
        }
      });
    }
    if (done >= needed) return fence;
    throw new BackendError(
      this.address,
      `a majority granted the lock, but its fence could not be recorded on a majority: ${failures.join('; ')}; the lock was given back`,
      { key },
    );
  }

  /**
   * Releases a failed attempt on every member that granted it or has not
   * said no, at once: a member still working on the attempt gets the
   * release after it on the same connection, so a late grant is undone too.
   */
  private giveBack(request: AcquireRequest, votes: Votes<AcquireResult>): void {
    votes.outcomes.forEach((outcome, index) => {
      if (outcome?.ok === true && !outcome.value.granted) return;
      this.releaseQuietly(memberAt(this.members, index), request.key, request.owner);
    });
  }

  private releaseEverywhere(key: string, owner: string): void {
    for (const member of this.members) this.releaseQuietly(member, key, owner);
  }

  private releaseQuietly(member: QuorumMember, key: string, owner: string): void {
    // Unreachable member: the lease runs out there by itself.
    member.backend.release(key, owner).catch(() => undefined);
  }

  /**
   * How long a denied attempt should wait at most: until a majority of
   * members could be free (the members that granted count as free now).
   * After a split vote (some granted, no majority), a short random wait
   * instead, so that contenders stop colliding.
   */
  private retryAfter(votes: Votes<AcquireResult>): number {
    const freeIn = votes.outcomes
      .map((outcome) => {
        if (outcome?.ok !== true) return Infinity;
        return outcome.value.granted ? 0 : outcome.value.retryAfter;
      })
      .sort((a, b) => a - b);
    let wait = freeIn[this.quorum - 1] ?? Infinity;
    if (votes.yes > 0) wait = Math.min(wait, 1 + Math.random() * SPLIT_VOTE_RETRY);
    return Number.isFinite(wait) ? Math.max(1, Math.ceil(wait)) : SPLIT_VOTE_RETRY;
  }

  /**
   * Whether the members' data-loss quarantines are what denied the quorum: the
   * members that granted and those that only a quarantine held back would make
   * a majority.
   */
  private quarantineBlocks(votes: Votes<AcquireResult>): boolean {
    const quarantined = votes.outcomes.filter(
      (outcome) =>
        outcome?.ok === true && !outcome.value.granted && outcome.value.quarantined === true,
    ).length;
    return quarantined > 0 && votes.yes + quarantined >= this.quorum;
  }

  private unreachable(
    what: string,
    key: string | undefined,
    votes: Gathered<unknown>,
    waited: number,
  ): BackendError {
    const failed = this.members
      .map((member, index) => ({ member, outcome: votes.outcomes[index] }))
      .filter(({ outcome }) => outcome?.ok !== true)
      .map(({ member, outcome }) => describeMemberFailure(member.address, outcome, waited));
    const needs = `${String(this.quorum)} of ${String(this.members.length)} servers`;
    const cause = firstFailure(votes.outcomes);
    return new BackendError(
      this.address,
      `${what} needs ${needs}, but ${String(failed.length)} failed: ${failed.join('; ')}; ` +
        `check that at least ${String(this.quorum)} servers are up and reachable from this host`,
      {
        ...(key === undefined ? {} : { key }),
        ...(cause === undefined ? {} : { cause: cause.error }),
      },
    );
  }

  private refuseReferences(resource: string): Promise<never> {
    return Promise.reject(
      new InvalidArgumentError(
        'resource',
        `a backend with reference counting; the ${this.name} backend has none (a reference needs one agreed view of which processes are alive, which independent servers voting per operation cannot give): use redis:// or redis-sharded:// for references`,
        resource,
      ),
    );
  }
}

/**
 * One lock's state from the members' views: the holders listed by at least
 * `quorum` members, with the largest fence they recorded (the lease's own,
 * or more when a member granted it after a majority had) and the ttl that
 * `quorum` of them still grant; the most waiters any member counts. Null
 * when free.
 */
export function mergeLockStates(
  key: string,
  states: readonly (LockState | null)[],
  quorum: number,
): LockState | null {
  const seen = new Map<string, HolderState[]>();
  let waiters = 0;
  for (const state of states) {
    if (state === null) continue;
    waiters = Math.max(waiters, state.waiters);
    for (const holder of state.holders) {
      seen.set(holder.owner, [...(seen.get(holder.owner) ?? []), holder]);
    }
  }
  const holders: HolderState[] = [];
  for (const [owner, views] of seen) {
    if (views.length < quorum) continue;
    const ttls = views.map((view) => view.ttlLeft).sort((a, b) => b - a);
    holders.push({
      owner,
      mode: views[0]?.mode ?? 'exclusive',
      fence: Math.max(...views.map((view) => view.fence)),
      ttlLeft: ttls[quorum - 1] ?? 0,
    });
  }
  return holders.length === 0 && waiters === 0 ? null : { key, holders, waiters };
}
