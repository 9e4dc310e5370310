/**
 * The CLI against a real redis-server started for the test, run as a user
 * runs it: the built binary, in (parallel) child processes.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { EXIT } from '../src/cli/exit-codes.js';
import { RedisServer, redisUnavailable } from './harness/servers.js';
import { markNamespaceFresh } from './harness/targets.js';

const bin = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'cli', 'main.js');
const unavailable = redisUnavailable();
const requireServers = process.env.DISREF_REQUIRE_SERVERS === '1';

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

function run(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [bin, ...args], {
      env: { ...process.env, NO_COLOR: '1', DISREF_URL: '', ...env },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('close', (status) => {
      resolve({ status, stdout, stderr });
    });
  });
}

describe(
  'disref lock',
  { skip: !requireServers && unavailable !== undefined ? unavailable : false },
  () => {
    let server: RedisServer;
    let admin: Redis;
    before(async () => {
      if (unavailable !== undefined) assert.fail(`${unavailable} (DISREF_REQUIRE_SERVERS=1)`);
      server = await RedisServer.start();
      admin = new Redis(server.port, '127.0.0.1');
      // A new test server has served no leases: skip the start-up quarantine.
      await markNamespaceFresh(admin, 'disref');
      await markNamespaceFresh(admin, 'disref-bench');
    });
    after(async () => {
      admin.disconnect();
      await server.dispose();
    });

    it('never lets five parallel invocations overlap, and all exit 0', async () => {
      const file = join(mkdtempSync(join(tmpdir(), 'disref-cli-')), 'log');
      const script = `echo "start $$ $DISREF_FENCE" >> ${file}; sleep 0.2; echo "end $$" >> ${file}`;
      const results = await Promise.all(
        Array.from({ length: 5 }, () =>
          run(['lock', 'jobs', '--url', server.url, '--', 'sh', '-c', script]),
        ),
      );
      assert.deepEqual(
        results.map((result) => result.status),
        [0, 0, 0, 0, 0],
        results.map((result) => result.stderr).join('\n'),
      );
      const lines = readFileSync(file, 'utf8').trim().split('\n');
      assert.equal(lines.length, 10);
      const fences: number[] = [];
      for (let i = 0; i < lines.length; i += 2) {
        const [kind, pid, fence] = (lines[i] ?? '').split(' ');
        assert.equal(kind, 'start', `line ${String(i)}: ${lines[i] ?? ''}`);
        assert.equal(
          lines[i + 1],
          `end ${pid ?? ''}`,
          'another command started before this one ended',
        );
        fences.push(Number(fence));
      }
      for (let i = 1; i < fences.length; i++) {
        assert.ok(
          (fences[i] ?? 0) > (fences[i - 1] ?? Infinity),
          `fences increase: ${fences.join(', ')}`,
        );
      }
    });

    it("passes the command's exit status through", async () => {
      const result = await run(['lock', 'status', '--url', server.url, '--', 'sh', '-c', 'exit 7']);
      assert.equal(result.status, 7);
      const killed = await run([
        'lock',
        'status',
        '--url',
        server.url,
        '--',
        'sh',
        '-c',
        'kill -9 $$',
      ]);
      assert.equal(killed.status, 128 + 9);
    });

    it('exits with the not-acquired code when the lock stays held', async () => {
      const holder = run(['lock', 'held', '--url', server.url, '--', 'sleep', '2']);
      await new Promise((resolve) => setTimeout(resolve, 700));
      const waiting = await run([
        'lock',
        'held',
        '--url',
        server.url,
        '--timeout',
        '100',
        '--',
        'true',
      ]);
      assert.equal(waiting.status, EXIT.lockNotAcquired, waiting.stderr);
      assert.match(waiting.stderr, /lock held: not acquired within 100 ms/);
      const once = await run(['lock', 'held', '--url', server.url, '--no-wait', '--', 'true']);
      assert.equal(once.status, EXIT.lockNotAcquired);
      assert.equal((await holder).status, 0);
    });

    it('signals the command and exits with the lease-lost code when the lease is lost', async () => {
      const started = Date.now();
      const marker = join(mkdtempSync(join(tmpdir(), 'disref-cli-')), 'running');
      const running = run([
        'lock',
        'lost',
        '--url',
        server.url,
        '--ttl',
        '600',
        '--',
        'sh',
        '-c',
        `touch ${marker}; exec sleep 20`,
      ]);
      // Only once the command runs under the lock (not while the CLI connects).
      while (!existsSync(marker)) {
        assert.ok(Date.now() - started < 15_000, 'the command never started');
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      await new Promise((resolve) => setTimeout(resolve, 300)); // extended at least once
      server.pause(); // extensions cannot reach the store: the lease runs out
      let result: Run;
      try {
        result = await running;
      } finally {
        server.resume();
      }
      assert.equal(result.status, EXIT.leaseLost, result.stderr);
      assert.match(result.stderr, /lock lost: lease with fence \d+ lost/);
      assert.ok(Date.now() - started < 15_000, 'the command was stopped, not waited for');
    });

    it('exits with the store-unavailable code when the store cannot be reached', async () => {
      const result = await run(['lock', 'x', '--url', 'redis://127.0.0.1:1', '--', 'true']);
      assert.equal(result.status, EXIT.storeUnavailable);
      assert.match(result.stderr, /127\.0\.0\.1:1/);
    });

    it('takes the URL from DISREF_URL and refuses the in-process store', async () => {
      const fromEnv = await run(['lock', 'env', '--', 'sh', '-c', 'test -n "$DISREF_FENCE"'], {
        DISREF_URL: server.url,
      });
      assert.equal(fromEnv.status, 0, fromEnv.stderr);
      const memory = await run(['lock', 'x', '--url', 'memory://', '--', 'true']);
      assert.equal(memory.status, EXIT.usage);
      assert.match(memory.stderr, /shared store/);
      const noCommand = await run(['lock', 'x', '--url', server.url]);
      assert.equal(noCommand.status, EXIT.usage);
    });

    it('disref bench --quick measures the store and prints a table', async () => {
      const svg = join(mkdtempSync(join(tmpdir(), 'disref-bench-')), 'chart.svg');
      const result = await run(['bench', '--quick', '--url', server.url, '--svg', svg]);
      assert.equal(result.status, 0, result.stderr);
      assert.match(result.stdout, /disref bench: redis:\/\/127\.0\.0\.1:\d+/);
      assert.match(result.stdout, /^round trip +200 +\d+ +[\d.]+ +[\d.]+/m);
      assert.match(result.stdout, /^uncontended acquire\+release +200 +\d+/m);
      assert.match(result.stdout, /^contended, 4 connections on one key +100 +\d+/m);
      assert.match(readFileSync(svg, 'utf8'), /^<svg /);
    });
  },
);
