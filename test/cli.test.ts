/** The CLI, run as a user runs it: the built binary in a child process. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const bin = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'cli', 'main.js');

function run(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [bin, ...args], {
    encoding: 'utf8',
    timeout: 30_000,
    env: { ...process.env, NO_COLOR: '1', DISREF_URL: '' },
  });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe('disref demo', () => {
  it('completes the record with exactly one database write and a readable trace', () => {
    const { status, stdout } = run('demo');
    assert.equal(status, 0, stdout);
    assert.equal(stdout.match(/last one out: wrote record:user-42 to the database/g)?.length, 1);
    assert.equal(stdout.match(/dereferenced: was the last holder/g)?.length, 1);
    assert.equal(stdout.match(/dereferenced: others still hold it/g)?.length, 1);
    assert.match(stdout, /holds a reference to record:user-42/);
    assert.equal(stdout.match(/^database: record written by/gm)?.length, 1);
    assert.match(stdout, /email-lookup +holds the lock \(fence \d+\)/);
    assert.match(stdout, /address-check +holds the lock \(fence \d+\)/);
    assert.match(stdout, /2 holder\(s\); waiting for the lock/);
    assert.match(stdout, /"email":"ada@example.com"/);
    assert.match(stdout, /"address":"12 Analytical St, London"/);
    assert.match(stdout, /ok: exactly one write/);
  });

  it('prints help', () => {
    const { status, stdout } = run('demo', '--help');
    assert.equal(status, 0);
    assert.match(stdout, /Usage: disref demo/);
  });
});

describe('disref bench', () => {
  it('measures the embedded store and prints a table', () => {
    const { status, stdout } = run('bench', '--quick');
    assert.equal(status, 0);
    assert.match(stdout, /disref bench: memory:\/\//);
    assert.match(stdout, /^uncontended acquire\+release +200 +\d+/m);
    assert.match(stdout, /^contended, 4 connections on one key +100 +\d+/m);
  });

  it('rejects a bad worker count', () => {
    const { status, stderr } = run('bench', '--workers', '1');
    assert.equal(status, 2);
    assert.match(stderr, /--workers: expected a whole number in \[2, 64\]/);
  });
});

describe('disref', () => {
  it('prints help and version', () => {
    const help = run('--help');
    assert.equal(help.status, 0);
    assert.match(help.stdout, /Usage:/);
    const version = run('--version');
    assert.equal(version.status, 0);
    assert.match(version.stdout, /^\d+\.\d+\.\d+\n$/);
  });

  it('exits 2 with a hint on an unknown command or option', () => {
    const unknown = run('frobnicate');
    assert.equal(unknown.status, 2);
    assert.match(unknown.stderr, /unknown command "frobnicate"; see disref --help/);
    const badOption = run('demo', '--nope');
    assert.equal(badOption.status, 2);
    assert.match(badOption.stderr, /--nope/);
  });
});
