/**
 * Fenced resources: a SQL row guarded by a fence column, against a real
 * PostgreSQL (READ COMMITTED, node-postgres): stale reads and writes,
 * creation of missing rows under contention, identifiers, transactions
 * that hold a row, and a query function that answers nonsense.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import {
  BackendError,
  connect,
  fencedSqlRow,
  InvalidArgumentError,
  StaleFenceError,
  type FencedSqlRowOptions,
  type SqlQuery,
} from '../src/index.js';
import { appendWithFences, checkAppendLog } from './harness/fenced-appenders.js';
import { PostgresServer, postgresUnavailable } from './harness/postgres-server.js';

const unavailable = postgresUnavailable();
const skip = unavailable !== undefined && process.env.DISREF_REQUIRE_SERVERS !== '1';
if (skip) console.warn(`\n*** SKIPPING the fenced SQL row tests: ${unavailable ?? ''} ***\n`);

/** Whether `promise` is still pending after `ms`. */
async function pendingAfter(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let settled = false;
  promise.then(
    () => (settled = true),
    () => (settled = true),
  );
  await sleep(ms);
  return !settled;
}

describe('fencedSqlRow on PostgreSQL', { skip: skip ? (unavailable ?? true) : false }, () => {
  let server: PostgresServer;
  let pool: pg.Pool;
  let query: SqlQuery;
  const rowOf = (
    table: string,
    key: FencedSqlRowOptions['key'],
    options: Partial<FencedSqlRowOptions> = {},
  ) => fencedSqlRow({ query, table, keyColumn: 'id', valueColumn: 'balance', key, ...options });
  const raw = async (text: string, params: unknown[] = []): Promise<Record<string, unknown>[]> =>
    (await pool.query(text, params)).rows as Record<string, unknown>[];

  before(async () => {
    if (unavailable !== undefined) assert.fail(`${unavailable} (DISREF_REQUIRE_SERVERS=1)`);
    server = await PostgresServer.start();
    pool = new pg.Pool({ ...server.connection, max: 12 });
    query = (text, params) => pool.query(text, params);
    await pool.query(`
      CREATE TABLE accounts (
        id integer PRIMARY KEY,
        owner text NOT NULL DEFAULT 'nobody',
        balance text,
        fence bigint NOT NULL DEFAULT 0
      );
      CREATE TABLE members (
        id integer PRIMARY KEY,
        name text NOT NULL,
        balance text,
        fence bigint NOT NULL DEFAULT 0
      );
      CREATE TABLE logs (name text PRIMARY KEY, log text, fence bigint NOT NULL DEFAULT 0);
      CREATE SCHEMA billing;
      CREATE TABLE billing."order" ("user" text PRIMARY KEY, "value" numeric, "Fence" bigint);
    `);
  });
  after(async () => {
    // pool.end() resolves before its connections are closed: wait for every
    // 'remove', or the shutdown would reach connections still open.
    let open = pool.totalCount;
    const closed = new Promise<void>((resolve) => {
      if (open === 0) resolve();
      pool.on('remove', () => {
        open -= 1;
        if (open === 0) resolve();
      });
    });
    await pool.end();
    await closed;
    await server.stop();
  });

  it('refuses a write with a fence older than one already written, and writes nothing', async () => {
    const balance = rowOf('accounts', 1);
    assert.equal(balance.key, 'accounts:1');
    assert.equal(await balance.read(10), undefined);
    await balance.write(10, '100');
    await balance.write(10, '110'); // the same holder may write again
    await assert.rejects(balance.write(9, '0'), (error: unknown) => {
      assert.ok(error instanceof StaleFenceError);
      assert.equal(error.key, 'accounts:1');
      assert.equal(error.fence, 9);
      assert.equal(error.highest, 10);
      return true;
    });
    assert.deepEqual(await raw('SELECT balance, fence FROM accounts WHERE id = 1'), [
      { balance: '110', fence: '10' },
    ]);
  });

  it('refuses a stale read; a read records its fence, so an older holder cannot write any more', async () => {
    const balance = rowOf('accounts', 2);
    await balance.write(5, 'a');
    assert.equal(await balance.read(7), 'a'); // the newer holder only read
    await assert.rejects(balance.read(6), (error: unknown) => {
      assert.ok(error instanceof StaleFenceError);
      assert.equal(error.highest, 7);
      return true;
    });
    await assert.rejects(balance.write(6, 'stale'), StaleFenceError);
    assert.equal(await balance.read(7), 'a');
    await balance.write(7, 'b');
    assert.equal(await balance.read(8), 'b');
  });

  it('creates a missing row on read with the fence and the column defaults', async () => {
    const balance = rowOf('accounts', 3);
    assert.equal(await balance.read(3), undefined);
    assert.deepEqual(await raw('SELECT owner, balance, fence FROM accounts WHERE id = 3'), [
      { owner: 'nobody', balance: null, fence: '3' },
    ]);
    await assert.rejects(balance.write(2, 'late'), StaleFenceError);
    await balance.write(3, '');
    assert.equal(await balance.read(3), '');
  });

  it('only updates rows that exist, so other required columns need no default', async () => {
    await raw(`INSERT INTO members (id, name, balance) VALUES (1, 'ada', '5')`);
    const balance = rowOf('members', 1);
    assert.equal(await balance.read(4), '5');
    await balance.write(4, '6');
    await assert.rejects(balance.write(3, '0'), StaleFenceError);
    assert.deepEqual(await raw('SELECT name, balance, fence FROM members'), [
      { name: 'ada', balance: '6', fence: '4' },
    ]);
    // A missing row cannot be created without a name: the driver's error comes through as is.
    await assert.rejects(rowOf('members', 2).write(1, 'x'), (error: unknown) => {
      assert.ok(error instanceof pg.DatabaseError);
      assert.equal(error.code, '23502'); // not_null_violation
      return true;
    });
  });

  it('quotes identifiers: a schema, reserved words, mixed case; a NULL fence counts as 0; values cast to and from text', async () => {
    await raw(`INSERT INTO billing."order" ("user", "value") VALUES ('ada', 1.5)`);
    const total = fencedSqlRow({
      query,
      table: 'billing.order',
      keyColumn: 'user',
      valueColumn: 'value',
      fenceColumn: 'Fence',
      key: 'ada',
    });
    assert.equal(await total.read(1), '1.5');
    await total.write(2, '10.50');
    assert.equal(await total.read(2), '10.50');
    await assert.rejects(total.write(1, '0'), StaleFenceError);
    assert.deepEqual(await raw(`SELECT "value", "Fence" FROM billing."order"`), [
      { value: '10.50', Fence: '2' },
    ]);
  });

  it('rejects unsafe identifiers and bad keys before any statement runs', async () => {
    let statements = 0;
    const counting: SqlQuery = (text, params) => {
      statements += 1;
      return query(text, params);
    };
    const base = {
      query: counting,
      table: 'accounts',
      keyColumn: 'id',
      valueColumn: 'balance',
      key: 9,
    };
    for (const [option, bad] of [
      ['table', 'accounts; DROP TABLE accounts'],
      ['table', 'a.b.c'],
      ['table', ''],
      ['keyColumn', 'id"--'],
      ['keyColumn', '1id'],
      ['valueColumn', 'balance '],
      ['valueColumn', 'x'.repeat(64)],
      ['fenceColumn', 'schema.fence'],
      ['fenceColumn', 42],
    ] as const) {
      assert.throws(
        () => fencedSqlRow({ ...base, [option]: bad }),
        (error: unknown) => error instanceof InvalidArgumentError && error.argument === option,
      );
    }
    for (const key of ['', 1.5, NaN, null, {}]) {
      assert.throws(
        () => fencedSqlRow({ ...base, key } as unknown as FencedSqlRowOptions),
        InvalidArgumentError,
      );
    }
    assert.throws(
      () => fencedSqlRow({ ...base, query: 'SELECT 1' } as unknown as FencedSqlRowOptions),
      InvalidArgumentError,
    );
    const row = fencedSqlRow(base);
    await assert.rejects(row.write(0, 'x'), InvalidArgumentError);
    await assert.rejects(row.read(1.5), InvalidArgumentError);
    await assert.rejects(row.write(1, 7 as unknown as string), InvalidArgumentError);
    assert.equal(statements, 0);
  });

  it('fails with a BackendError when query() answers something that is not { rows }', async () => {
    for (const answer of [undefined, { rowCount: 1 }, { rows: 'x' }, { rows: [5] }]) {
      const row = rowOf('accounts', 4, {
        query: () => Promise.resolve(answer as unknown as pg.QueryResult),
      });
      await assert.rejects(row.read(1), (error: unknown) => {
        assert.ok(error instanceof BackendError, String(error));
        assert.match(error.message, /query\(\) returned .*it must resolve \{ rows \}/);
        return true;
      });
    }
  });

  it('keeps every read-modify-write and never lets a lower fence write after a higher one (24 holders on 12 connections, row created under contention)', async () => {
    const log = fencedSqlRow({
      query,
      table: 'logs',
      keyColumn: 'name',
      valueColumn: 'log',
      key: 'contended',
    });
    const workers = 24;
    const results = await Promise.all(
      Array.from({ length: workers }, (_, worker) =>
        appendWithFences(log, { worker, workers, iterations: 15 }),
      ),
    );
    checkAppendLog(await log.read(Number.MAX_SAFE_INTEGER), results);
  });

  it('inside a transaction: an older holder waits for the row, then is refused once the newer one commits', async () => {
    await rowOf('accounts', 5).write(1, '0');
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      const inTransaction = rowOf('accounts', 5, {
        query: (text, params) => client.query(text, params),
      });
      assert.equal(await inTransaction.read(8), '0');
      const older = rowOf('accounts', 5).write(7, 'older');
      assert.ok(await pendingAfter(older, 200), 'the older write waits for the transaction');
      await inTransaction.write(8, '8');
      await client.query('COMMIT');
      await assert.rejects(older, StaleFenceError);
      assert.equal(await rowOf('accounts', 5).read(8), '8');
    } finally {
      client.release();
    }
  });

  it('inside a transaction that rolls back, the recorded fence is undone with it', async () => {
    await rowOf('accounts', 6).write(1, '0');
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      const inTransaction = rowOf('accounts', 6, {
        query: (text, params) => client.query(text, params),
      });
      assert.equal(await inTransaction.read(9), '0');
      const older = rowOf('accounts', 6).write(8, 'older');
      assert.ok(await pendingAfter(older, 200), 'the older write waits for the transaction');
      await client.query('ROLLBACK');
      await older; // nothing newer committed: fence 8 is the highest
      assert.equal(await rowOf('accounts', 6).read(8), 'older');
    } finally {
      client.release();
    }
  });

  it('stops a paused holder from writing late: its lease ran out and a newer holder took over', async () => {
    const disref = await connect('memory://fenced-sql-test');
    try {
      const counter = rowOf('accounts', 7);
      await counter.write(1, '0');
      const old = await disref.lock('account:7', { ttl: 100 }).acquire();
      const seen = Number(await counter.read(old.fence));
      await sleep(150); // the holder "pauses" past its lease
      await disref.lock('account:7').using(async (lease) => {
        const value = Number(await counter.read(lease.fence));
        await counter.write(lease.fence, String(value + 1));
      });
      await assert.rejects(counter.write(old.fence, String(seen + 1)), StaleFenceError);
      assert.equal(await counter.read(Number.MAX_SAFE_INTEGER), '1', 'only the newer holder wrote');
    } finally {
      await disref.close();
    }
  });
});
