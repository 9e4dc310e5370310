/**
 * Wake-ups for waiters: one subscriber connection per backend, shared by
 * every waiter of this process, with SUBSCRIBE / UNSUBSCRIBE reference-counted
 * per channel.
 *
 * Why pub/sub on a per-lock channel: the release script publishes in the same
 * atomic step that frees the lock, so a waiter subscribed before its attempt
 * cannot miss it; only processes waiting on that lock receive it (keyspace
 * notifications would need server configuration and fire on every write; a
 * blocking pop would need a connection per waiter). Messages sent while the
 * subscriber is reconnecting are lost, so waiters keep a slow safety-net poll.
 * @module
 */
import type { ReleaseListener } from '../../backend.js';
import type { RedisSubscriber } from './client.js';

interface Channel {
  readonly listeners: Set<ReleaseListener>;
  /** Settles when the server acknowledged SUBSCRIBE. */
  readonly ready: Promise<void>;
}

export class Wakeups {
  private readonly open: () => RedisSubscriber;
  private subscriber: RedisSubscriber | undefined;
  private readonly channels = new Map<string, Channel>();
  /** Per channel, the last SUBSCRIBE / UNSUBSCRIBE sent, so they reach the server in order. */
  private readonly tails = new Map<string, Promise<void>>();

  /** `open` makes the subscriber connection, on first use. */
  constructor(open: () => RedisSubscriber) {
    this.open = open;
  }

  /**
   * Calls `listener` on every message on `channel` until the returned
   * function is called. Resolves once the subscription is live.
   */
  async listen(channel: string, listener: ReleaseListener): Promise<() => void> {
    let entry = this.channels.get(channel);
    if (entry === undefined) {
      const created: Channel = {
        listeners: new Set(),
        ready: this.enqueue(channel, (subscriber) =>
          subscriber.subscribe(channel, (message) => {
            this.dispatch(channel, message);
          }),
        ),
      };
      this.channels.set(channel, created);
      entry = created;
    }
    const current = entry;
    current.listeners.add(listener);
    try {
      await current.ready;
    } catch (error) {
      this.remove(channel, current, listener, false);
      throw error;
    }
    let removed = false;
    return () => {
      if (removed) return;
      removed = true;
      this.remove(channel, current, listener, true);
    };
  }

  /** Closes the subscriber connection; later calls to `listen` open a new one. */
  async close(): Promise<void> {
    const subscriber = this.subscriber;
    this.subscriber = undefined;
    this.channels.clear();
    this.tails.clear();
    await subscriber?.close();
  }

  private remove(
    channel: string,
    entry: Channel,
    listener: ReleaseListener,
    subscribed: boolean,
  ): void {
    entry.listeners.delete(listener);
    if (entry.listeners.size > 0 || this.channels.get(channel) !== entry) return;
    this.channels.delete(channel);
    if (subscribed) {
      // Best effort: if it fails, stray messages find no listener and are dropped.
      this.enqueue(channel, (subscriber) => subscriber.unsubscribe(channel)).catch(() => undefined);
    }
  }

  /** `granted <owner> <fence>` reports a store-side hand-off; anything else is a plain wake-up. */
  private dispatch(channel: string, message: string): void {
    const entry = this.channels.get(channel);
    if (entry === undefined) return;
    const granted = /^granted (\S+) (\d+)$/.exec(message);
    const handOff =
      granted === null ? undefined : { owner: granted[1] ?? '', fence: Number(granted[2]) };
    for (const listener of [...entry.listeners]) listener(handOff);
  }

  private enqueue(
    channel: string,
    step: (subscriber: RedisSubscriber) => Promise<void>,
  ): Promise<void> {
    const previous = this.tails.get(channel) ?? Promise.resolve();
    const result = previous.then(() => step(this.connection()));
    const tail = result.catch(() => undefined);
    this.tails.set(channel, tail);
    void tail.then(() => {
      if (this.tails.get(channel) === tail) this.tails.delete(channel);
    });
    return result;
  }

  private connection(): RedisSubscriber {
    this.subscriber ??= this.open();
    return this.subscriber;
  }
}
