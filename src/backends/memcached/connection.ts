/**
 * One TCP connection to one memcached server, pipelined: batches of
 * requests are written as they come, and replies are matched to them in
 * order. A timeout, a parse error or a dropped socket fails every request
 * in flight and closes the connection (replies could no longer be matched);
 * the pool opens a new one for later requests.
 * @module
 */
import { Socket } from 'node:net';
import { DeadlineQueue } from '../../deadlines.js';
import {
  encodeRequest,
  ProtocolError,
  ResponseParser,
  type Request,
  type Response,
} from './protocol.js';

/** A failure talking to one server; the backend turns it into a `BackendError`. */
export class MemcachedServerError extends Error {
  override readonly name = 'MemcachedServerError';
  /** `memcached://host:port` of the server. */
  readonly address: string;
  /** What went wrong, without the address. */
  readonly reason: string;

  constructor(address: string, reason: string, options?: ErrorOptions) {
    super(`${address}: ${reason}`, options);
    this.address = address;
    this.reason = reason;
  }
}

interface InFlight {
  readonly requests: readonly Request[];
  readonly expected: number;
  readonly replies: Response[];
  readonly resolve: (replies: Response[]) => void;
  readonly reject: (error: Error) => void;
  /** Ends the batch's deadline (see {@link DeadlineQueue}). */
  readonly answered: () => void;
}

export interface ConnectionOptions {
  readonly host: string;
  readonly port: number;
  /** `memcached://host:port`, for errors. */
  readonly address: string;
  readonly connectTimeout: number;
  /** ms a batch of requests may wait for its replies before the connection is failed. */
  readonly requestTimeout: number;
}

export class Connection {
  readonly address: string;
  private readonly socket: Socket;
  private readonly parser = new ResponseParser();
  private readonly inFlight: InFlight[] = [];
  /** One timer for every batch in flight, rather than one each. */
  private readonly deadlines: DeadlineQueue;
  private failure: Error | undefined;

  private constructor(socket: Socket, address: string, requestTimeout: number) {
    this.socket = socket;
    this.address = address;
    this.deadlines = new DeadlineQueue(requestTimeout);
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 10_000);
    socket.on('data', (chunk: Buffer) => {
      this.onData(chunk);
    });
    socket.on('error', (error) => {
      this.fail(
        new MemcachedServerError(address, `connection failed: ${error.message}`, { cause: error }),
      );
    });
    // The server's FIN: fail now, not at 'close', so the pool stops handing out a
    // connection whose writes would fail with EPIPE in between.
    socket.on('end', () => {
      this.fail(new MemcachedServerError(address, 'connection closed by the server'));
    });
    socket.on('close', () => {
      this.fail(new MemcachedServerError(address, 'connection closed by the server'));
    });
    // An idle connection must not keep the process alive; one with requests in flight does.
    socket.unref();
  }

  /** Opens a connection; rejects with {@link MemcachedServerError} after `connectTimeout` ms. */
  static open(options: ConnectionOptions): Promise<Connection> {
    return new Promise((resolve, reject) => {
      const socket = new Socket();
      const timer = setTimeout(() => {
        socket.destroy();
        reject(
          new MemcachedServerError(
            options.address,
            `no connection within ${String(options.connectTimeout)} ms`,
          ),
        );
      }, options.connectTimeout);
      timer.unref();
      const onError = (error: Error): void => {
        clearTimeout(timer);
        socket.destroy();
        reject(
          new MemcachedServerError(options.address, `cannot connect: ${error.message}`, {
            cause: error,
          }),
        );
      };
      socket.once('error', onError);
      socket.connect({ host: options.host, port: options.port }, () => {
        clearTimeout(timer);
        socket.off('error', onError);
        resolve(new Connection(socket, options.address, options.requestTimeout));
      });
    });
  }

  /** False once the connection failed or was closed. */
  get usable(): boolean {
    return this.failure === undefined && !this.socket.destroyed;
  }

  /** Replies still expected. */
  get pending(): number {
    let count = 0;
    for (const entry of this.inFlight) count += entry.expected - entry.replies.length;
    return count;
  }

  /**
   * Sends `requests` in one write and resolves their replies in order
   * (error replies included). Rejects, and fails the connection, when no
   * reply came within the request timeout.
   */
  send(requests: readonly Request[]): Promise<Response[]> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    let payload: Buffer;
    try {
      payload = Buffer.concat(requests.map(encodeRequest));
    } catch (error) {
      return Promise.reject(error instanceof Error ? error : new Error(String(error)));
    }
    return new Promise((resolve, reject) => {
      const answered = this.deadlines.set(() => {
        this.fail(
          new MemcachedServerError(this.address, `no reply within ${String(this.deadlines.ms)} ms`),
        );
      });
      this.inFlight.push({
        requests,
        expected: requests.length,
        replies: [],
        resolve,
        reject,
        answered,
      });
      if (this.inFlight.length === 1) this.socket.ref();
      this.socket.write(payload);
    });
  }

  /** Closes the connection; requests still in flight fail. */
  close(): void {
    this.fail(new MemcachedServerError(this.address, 'connection closed by the client'));
  }

  private onData(chunk: Buffer): void {
    let replies: Response[];
    try {
      replies = this.parser.push(chunk);
    } catch (error) {
      const reason = error instanceof ProtocolError ? error.message : String(error);
      this.fail(
        new MemcachedServerError(this.address, `protocol error: ${reason}`, { cause: error }),
      );
      return;
    }
    for (const reply of replies) {
      const head = this.inFlight[0];
      if (head === undefined) {
        this.fail(
          new MemcachedServerError(this.address, 'protocol error: a reply nobody asked for'),
        );
        return;
      }
      const request = head.requests[head.replies.length];
      head.replies.push(reply);
      if (reply.kind === 'error' && reply.type !== 'SERVER_ERROR' && request?.command === 'ms') {
        // A rejected `ms` header makes the server read its value as commands
        // and answer more than once: this stream can no longer be trusted.
        this.fail(new MemcachedServerError(this.address, `${reply.type} ${reply.message}`.trim()));
        return;
      }
      if (head.replies.length === head.expected) {
        this.inFlight.shift();
        head.answered();
        head.resolve(head.replies);
      }
    }
    if (this.inFlight.length === 0) this.socket.unref();
  }

  private fail(error: Error): void {
    this.failure ??= error;
    this.socket.destroy();
    for (const entry of this.inFlight.splice(0)) {
      entry.answered();
      entry.reject(this.failure);
    }
    this.deadlines.stop();
  }
}
