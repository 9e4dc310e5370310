/**
 * `Disref` instances for a conformance test: each call makes new instances
 * (as separate processes would have) in a namespace of the test's own, and
 * every instance is closed after the suite.
 */
import assert from 'node:assert/strict';
import { after } from 'node:test';
import type { ConnectOptions, Disref } from '../../src/index.js';
import type { BackendTarget } from '../harness/targets.js';

let namespaceCounter = 0;

export class Instances {
  private readonly open: Disref[] = [];

  /** Registers the suite's cleanup; call inside the suite's describe. */
  constructor(
    private readonly target: BackendTarget,
    private readonly prefix: string,
  ) {
    after(async () => {
      await Promise.all(this.open.map((disref) => disref.close()));
    });
  }

  /** `count` instances sharing one fresh namespace. */
  async many(count: number, options: Partial<ConnectOptions> = {}): Promise<Disref[]> {
    namespaceCounter += 1;
    const namespace = `${this.prefix}${String(process.pid)}-${String(namespaceCounter)}`;
    const made = await Promise.all(
      Array.from({ length: count }, () => this.target.connect({ ...options, namespace })),
    );
    this.open.push(...made);
    return made;
  }

  async one(options: Partial<ConnectOptions> = {}): Promise<Disref> {
    const [disref] = await this.many(1, options);
    assert.ok(disref !== undefined);
    return disref;
  }

  async pair(options: Partial<ConnectOptions> = {}): Promise<[Disref, Disref]> {
    const [a, b] = await this.many(2, options);
    assert.ok(a !== undefined && b !== undefined);
    return [a, b];
  }
}
