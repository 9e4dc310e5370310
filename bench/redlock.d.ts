// redlock 5's package.json "exports" hide its own typings from NodeNext resolution;
// this declares the part the benchmark uses.
declare module 'redlock' {
  import type { Redis } from 'ioredis';
  interface Lock {
    release(): Promise<unknown>;
  }
  export default class Redlock {
    constructor(
      clients: Redis[],
      settings?: { retryCount?: number; retryDelay?: number; retryJitter?: number },
    );
    acquire(resources: string[], duration: number): Promise<Lock>;
    quit(): Promise<void>;
  }
}
