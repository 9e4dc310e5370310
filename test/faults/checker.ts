/**
 * The checker of the fault runs: from the events every worker printed
 * (lock-worker.ts) and the record's final value, it finds what went wrong.
 * It judges only from the history, like Jepsen's checkers: nothing here
 * trusts the library under test.
 *
 * Times are milliseconds on the system-wide monotonic clock.
 */

/** One line a lock worker prints. */
export type WorkerEvent = { worker: number; at: number } & (
  | { type: 'ready' | 'acquiring' | 'done' }
  | { type: 'unavailable'; error: string }
  | { type: 'acquired' | 'read-refused'; fence: number }
  | { type: 'read'; fence: number; value: number; long: boolean }
  | { type: 'wrote' | 'write-refused'; fence: number; value: number }
  | { type: 'releasing'; fence: number; validAtEnd: boolean }
  | { type: 'released'; fence: number; freed: boolean | string }
);

/** One critical section: from the grant to the release (or the worker's death). */
export interface Section {
  readonly worker: number;
  readonly fence: number;
  /** When the worker asked for the lock: every fence issued before must be lower. */
  readonly requestedAt: number;
  /** When the worker had the lease (the fence was issued before). */
  readonly start: number;
  /**
   * When it sent its release (the store may grant the next holder from then
   * on), or was killed; Infinity when neither was seen.
   */
  readonly end: number;
  /** The value it read, when it read. */
  readonly read?: number;
  /** Whether its write was accepted, refused by the fence, or not made. */
  readonly write: 'accepted' | 'refused' | 'none';
  /** Its lease was still valid (by `lease.check()`) when it released. */
  readonly validAtEnd: boolean;
  /** `true` when the store said the release freed a lock this section held. */
  readonly freed: boolean | string | undefined;
}

/** What the checker found. Every count but the informational ones must be 0. */
export interface Report {
  sections: number;
  acceptedWrites: number;
  refusedWrites: number;
  refusedReads: number;
  finalValue: number;
  /** Accepted writes the final value does not account for. */
  lostUpdates: number;
  /** Accepted writes whose fence was not above the one accepted before them. */
  staleWritesAccepted: number;
  /** Sections of different workers that overlap in time (informational with fencing). */
  overlaps: number;
  /** Overlapping sections whose leases were both valid throughout: mutual exclusion broken. */
  overlapsWhileValid: number;
  /** A lock asked for after another fence was issued got a fence that is not higher. */
  fenceRegressions: number;
  /** A release that the store accepted although a higher fence had been granted since. */
  staleReleasesThatFreed: number;
  /** Longest wait from a holder's SIGKILL to the next grant to another worker. */
  maxUnavailabilityAfterKill: number;
  /** Longest time between two grants, over the whole run. */
  longestGap: number;
}

/** Builds each worker's critical sections from its events; `killedAt` ends a killed worker's last one. */
export function sectionsOf(
  events: readonly WorkerEvent[],
  killedAt: ReadonlyMap<number, number> = new Map(),
): Section[] {
  const sections: Section[] = [];
  const open = new Map<number, { -readonly [K in keyof Section]: Section[K] }>();
  const requested = new Map<number, number>();
  for (const event of events) {
    const current = open.get(event.worker);
    switch (event.type) {
      case 'acquiring':
        requested.set(event.worker, event.at);
        break;
      case 'acquired':
        open.set(event.worker, {
          worker: event.worker,
          fence: event.fence,
          requestedAt: requested.get(event.worker) ?? event.at,
          start: event.at,
          end: Infinity,
          write: 'none',
          validAtEnd: false,
          freed: undefined,
        });
        break;
      case 'read':
        if (current !== undefined) current.read = event.value;
        break;
      case 'wrote':
        if (current !== undefined) current.write = 'accepted';
        break;
      case 'write-refused':
        if (current !== undefined) current.write = 'refused';
        break;
      case 'releasing':
        if (current !== undefined) {
          current.end = event.at;
          current.validAtEnd = event.validAtEnd;
        }
        break;
      case 'released':
        if (current !== undefined) {
          current.freed = event.freed;
          sections.push(current);
          open.delete(event.worker);
        }
        break;
      default:
        break;
    }
  }
  for (const [worker, section] of open) {
    if (section.end === Infinity) section.end = killedAt.get(worker) ?? Infinity;
    sections.push(section);
  }
  return sections.sort((a, b) => a.start - b.start);
}

/** Checks a run's history; `kills` maps each SIGKILLed worker to when it was killed. */
export function check(
  events: readonly WorkerEvent[],
  finalValue: number,
  kills: ReadonlyMap<number, number> = new Map(),
): Report {
  const sections = sectionsOf(events, kills);
  const accepted = events.filter(
    (event): event is WorkerEvent & { type: 'wrote'; fence: number; value: number } =>
      event.type === 'wrote',
  );
  // The record is a counter: each accepted write stored read + 1, so its
  // value tells its place in the record's history.
  const chain = [...accepted].sort((a, b) => a.value - b.value || a.at - b.at);
  let staleWritesAccepted = 0;
  for (let i = 1; i < chain.length; i++) {
    const previous = chain[i - 1];
    const current = chain[i];
    if (previous !== undefined && current !== undefined && current.fence <= previous.fence) {
      staleWritesAccepted += 1;
    }
  }

  let overlaps = 0;
  let overlapsWhileValid = 0;
  let fenceRegressions = 0;
  let staleReleasesThatFreed = 0;
  for (let i = 0; i < sections.length; i++) {
    const a = sections[i];
    if (a === undefined) continue;
    for (let j = 0; j < sections.length; j++) {
      const b = sections[j];
      if (b === undefined || i === j) continue;
      if (j > i && a.worker !== b.worker && b.start < a.end && a.start < b.end) {
        overlaps += 1;
        if (a.validAtEnd && b.validAtEnd) overlapsWhileValid += 1;
      }
      if (a.start < b.requestedAt && b.fence <= a.fence) fenceRegressions += 1;
      if (a.freed === true && b.fence > a.fence && b.start < a.end) staleReleasesThatFreed += 1;
    }
  }

  let maxUnavailabilityAfterKill = 0;
  for (const [worker, killedAt] of kills) {
    const next = sections.find((section) => section.worker !== worker && section.start > killedAt);
    const wait = next === undefined ? Infinity : next.start - killedAt;
    maxUnavailabilityAfterKill = Math.max(maxUnavailabilityAfterKill, wait);
  }
  let longestGap = 0;
  for (let i = 1; i < sections.length; i++) {
    longestGap = Math.max(longestGap, (sections[i]?.start ?? 0) - (sections[i - 1]?.start ?? 0));
  }

  return {
    sections: sections.length,
    acceptedWrites: accepted.length,
    refusedWrites: events.filter((event) => event.type === 'write-refused').length,
    refusedReads: events.filter((event) => event.type === 'read-refused').length,
    finalValue,
    lostUpdates: accepted.length - finalValue,
    staleWritesAccepted,
    overlaps,
    overlapsWhileValid,
    fenceRegressions,
    staleReleasesThatFreed,
    maxUnavailabilityAfterKill,
    longestGap,
  };
}
