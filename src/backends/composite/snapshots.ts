/**
 * `disref status` over several member backends: every member's snapshot,
 * taken at once, and the parts that every kind of composite merges the same
 * way (processes, and what could not be read).
 * @module
 */
import { longestQuarantine, type ProcessState, type StoreSnapshot } from '../../backend.js';
import { BackendError } from '../../errors.js';
import { describeMemberFailure, gather } from './fan-out.js';
import { memberAt, type Member } from './liveness.js';

/** The snapshots the members gave, and what could not be read (undefined: nothing missing). */
export interface MemberSnapshots {
  readonly taken: readonly { readonly address: string; readonly snapshot: StoreSnapshot }[];
  readonly incomplete: string | undefined;
}

/**
 * Takes every member's snapshot. An unreachable member is listed in
 * `incomplete` instead of failing the whole status; when none answers, the
 * first failure is thrown as a `BackendError` named `address`.
 */
export async function snapshotEveryMember(
  members: readonly Member[],
  address: string,
  prefix: string,
): Promise<MemberSnapshots> {
  const { outcomes } = await gather(members.length, (index) =>
    memberAt(members, index).backend.snapshot(prefix),
  );
  const taken: { address: string; snapshot: StoreSnapshot }[] = [];
  const missing: string[] = [];
  outcomes.forEach((outcome, index) => {
    const member = memberAt(members, index);
    if (outcome?.ok === true) {
      taken.push({ address: member.address, snapshot: outcome.value });
      if (outcome.value.incomplete !== undefined) {
        missing.push(`${member.address}: ${outcome.value.incomplete}`);
      }
    } else {
      missing.push(`${describeMemberFailure(member.address, outcome, 0)} could not be read`);
    }
  });
  if (taken.length === 0) {
    throw new BackendError(address, `no server could be read: ${missing.join('; ')}`);
  }
  return { taken, incomplete: missing.length === 0 ? undefined : missing.join('; ') };
}

/**
 * One entry per process id across members. A process is live only while it
 * is live on every member that knows it (each member's references check
 * their own registry), so the shortest `ttlLeft` and the oldest heartbeat
 * are shown.
 */
export function mergeProcesses(lists: readonly (readonly ProcessState[])[]): ProcessState[] {
  const merged = new Map<string, ProcessState>();
  for (const list of lists) {
    for (const process of list) {
      const seen = merged.get(process.id);
      if (seen === undefined) {
        merged.set(process.id, process);
        continue;
      }
      const ages = [seen.heartbeatAge, process.heartbeatAge].filter(
        (age): age is number => age !== undefined,
      );
      merged.set(process.id, {
        id: process.id,
        info: seen.info ?? process.info,
        ttlLeft: Math.min(seen.ttlLeft, process.ttlLeft),
        heartbeatAge: ages.length === 0 ? undefined : Math.max(...ages),
      });
    }
  }
  return [...merged.values()];
}

/**
 * ms until the members' data-loss quarantines (see `StoreSnapshot.quarantineLeft`)
 * let `needed` of them grant: the longest for sharding, where every shard
 * serves keys of its own (`needed` = all), the quorum-th shortest for a
 * quorum. Undefined when none holds grants back.
 */
export function quarantineLeftOf(
  taken: MemberSnapshots['taken'],
  needed: number = taken.length,
): number | undefined {
  const lefts = taken.map(({ snapshot }) => snapshot.quarantineLeft ?? 0).sort((a, b) => a - b);
  return longestQuarantine(lefts.slice(0, needed));
}
