/**
 * Wake-ups for waiters: one subscriber connection per backend, shared by
 * every waiter of this process, with SUBSCRIBE / UNSUBSCRIBE reference-counted
 * per channel. A channel stays subscribed for {@link LINGER} ms after its last
 * listener left: a lock that is waited for again soon (a hot lock) then needs
 * no SUBSCRIBE / UNSUBSCRIBE round trips, and a waiter can listen before its
 * first attempt (see {@link Wakeups.isListening}).
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

/** ms a channel stays subscribed after its last listener left. */
export const LINGER = 1_000;

interface Channel {
  readonly listeners: Set<ReleaseListener>;
  /** Settles when the server acknowledged SUBSCRIBE. */
  readonly ready: Promise<void>;
  /** True once the server acknowledged SUBSCRIBE. */
  live: boolean;
  /** Sends UNSUBSCRIBE when it fires: set while nobody listens. */
  linger: NodeJS.Timeout | undefined;
}

export class Wakeups {
  private readonly open: () => RedisSubscriber;
  private subscriber: RedisSubscriber | undefined;
  private readonly channels = new Map<string, Channel>();
  /** Per channel, the last SUBSCRIBE / UNSUBSCRIBE sent, so they reach the server in order. */
  private readonly tails = new Map<string, Promise<void>>();
  private closed = false;

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
        live: false,
        linger: undefined,
      };
      created.ready.then(
        () => {
          created.live = true;
        },
        () => undefined,
      );
      this.channels.set(channel, created);
      entry = created;
    }
    const current = entry;
    clearTimeout(current.linger);
    current.linger = undefined;
    current.listeners.add(listener);
    try {
      if (!current.live) await current.ready;
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

  /**
   * Whether `channel` is subscribed already (the server acknowledged it), so
   * that `listen` resolves without a round trip and misses no later message.
   */
  isListening(channel: string): boolean {
    return this.channels.get(channel)?.live === true;
  }

  /**
   * Closes the subscriber connection for good: a subscription still queued
   * fails instead of opening a new connection that nobody would close.
   */
  async close(): Promise<void> {
    this.closed = true;
    const subscriber = this.subscriber;
    this.subscriber = undefined;
    for (const entry of this.channels.values()) clearTimeout(entry.linger);
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
    if (!subscribed) {
      this.channels.delete(channel);
      return;
    }
    clearTimeout(entry.linger);
    entry.linger = setTimeout(() => {
      entry.linger = undefined;
      if (entry.listeners.size > 0 || this.channels.get(channel) !== entry) return;
      this.channels.delete(channel);
      // Best effort: if it fails, stray messages find no listener and are dropped.
      this.enqueue(channel, (subscriber) => subscriber.unsubscribe(channel)).catch(() => undefined);
    }, LINGER);
    entry.linger.unref();
  }

  /** `granted <owner> <fence>` reports a store-side hand-off; anything else is a plain wake-up. */
  private dispatch(channel: string, message: string): void {
    const entry = this.channels.get(channel);
    if (entry === undefined || entry.listeners.size === 0) return;
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
    if (this.closed) throw new Error('wake-ups are closed');
    this.subscriber ??= this.open();
    return this.subscriber;
  }
}
