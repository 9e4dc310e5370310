/**
 * The backends the conformance suite runs against. Memory always runs; a
 * backend whose server binary is missing is skipped loudly, and with
 * DISREF_REQUIRE_SERVERS=1 (CI) a missing server fails the run.
 */
import type { ConnectOptions, Disref } from '../../src/index.js';
import { connect } from '../../src/index.js';
import { MemoryBackend } from '../../src/backends/memory/memory-backend.js';

export interface BackendTarget {
  /** Shown in test names, e.g. `memory`, `redis (ioredis)`. */
  readonly name: string;
  /** Why the target cannot run here (missing binary), or undefined when it can. */
  readonly unavailable?: string;
  /** Starts servers; called once before the suite. */
  setup(): Promise<void>;
  /** A new `Disref`, as a separate process would have; each test uses its own namespace. */
  connect(options: ConnectOptions & { namespace: string }): Promise<Disref>;
  /** Makes the store lose every key (restart without persistence, FLUSHALL). */
  loseAllData(disref: Disref): Promise<void>;
  /** Stops servers. */
  teardown(): Promise<void>;
}

export const memoryTarget: BackendTarget = {
  name: 'memory',
  setup: () => Promise.resolve(),
  connect: (options) => connect({ ...options, url: 'memory://conformance' }),
  loseAllData: (disref) => {
    (disref.backend as MemoryBackend).store.loseAllData();
    return Promise.resolve();
  },
  teardown: () => Promise.resolve(),
};

/** Every target the conformance suite runs against. */
export function allTargets(): BackendTarget[] {
  return [memoryTarget];
}
