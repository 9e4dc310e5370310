/**
 * Process liveness over several member backends. Each member keeps its own
 * process registry, because each member's reference scripts check liveness
 * in their own store; a heartbeat therefore goes to every member. The
 * members must agree on who is dead: a process refused by one member (it ran
 * out there, or that member lost its registry) is removed from the others
 * too, and takes a new identity, so references it held elsewhere do not
 * outlive the identity that took them.
 * @module
 */
import type { Backend, ProcessInfo } from '../../backend.js';
import { BackendError } from '../../errors.js';
import { describeMemberFailure, gather } from './fan-out.js';

/** A member backend and the address it is named by in errors. */
export interface Member {
  readonly address: string;
  readonly backend: Backend;
}

export interface BeatRequest {
  readonly processId: string;
  readonly ttl: number;
  readonly first: boolean;
  readonly info: ProcessInfo;
}

/**
 * Records a heartbeat on every member. Resolves `false` when any member
 * refused it (after removing the process from the others); throws
 * `BackendError` (named `address`) when fewer than `required` members
 * recorded it. `deadline` bounds the wait for slow members (ms).
 */
export async function beatEveryMember(
  members: readonly Member[],
  address: string,
  beat: BeatRequest,
  { required, deadline }: { required: number; deadline?: number },
): Promise<boolean> {
  const { processId, ttl, first, info } = beat;
  const { outcomes } = await gather(
    members.length,
    (index) => memberAt(members, index).backend.beat(processId, ttl, first, info),
    deadline === undefined ? {} : { deadline },
  );
  const refused = outcomes.some((outcome) => outcome?.ok === true && !outcome.value);
  if (refused) {
    const recordedOn = members.filter((_, index) => {
      const outcome = outcomes[index];
      return outcome?.ok === true && outcome.value;
    });
    // Best effort: where this fails, the old identity simply runs out.
    await gather(recordedOn.length, (index) =>
      memberAt(recordedOn, index).backend.removeProcess(processId),
    );
    return false;
  }
  const recorded = outcomes.filter((outcome) => outcome?.ok === true).length;
  if (recorded < required) {
    const failures = members
      .map((member, index) => ({ member, outcome: outcomes[index] }))
      .filter(({ outcome }) => outcome?.ok !== true)
      .map(({ member, outcome }) => describeMemberFailure(member.address, outcome, deadline ?? 0));
    throw new BackendError(
      address,
      `the heartbeat reached ${String(recorded)} of ${String(members.length)} servers and needs ${String(required)}: ${failures.join('; ')}; check that the servers are up and reachable from this host`,
    );
  }
  return true;
}

/** `members[index]`, which the callers only ask for in range. */
export function memberAt<T>(members: readonly T[], index: number): T {
  const member = members[index];
  if (member === undefined) throw new RangeError(`no member ${String(index)}`);
  return member;
}
