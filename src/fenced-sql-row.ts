/**
 * A SQL row guarded by fences: a `fence` column beside the value, and every
 * read and write a conditional `UPDATE ... WHERE fence <= $fence`, so the
 * database compares fences atomically, row by row. disref needs no SQL
 * driver: the caller passes a `query` function (node-postgres' `pool.query`
 * or a client in a transaction, or an adapter for another driver).
 *
 * Statements are PostgreSQL's (`$n` parameters, `RETURNING`, `ON CONFLICT`);
 * databases that speak that dialect (CockroachDB, YugabyteDB...) work too.
 *
 * Why it is correct under READ COMMITTED: an `UPDATE` whose row another
 * transaction is changing waits for it, then evaluates its `WHERE` again on
 * the row as committed, so a fence check never passes on a value that is
 * already stale. A missing row is created by `INSERT ... ON CONFLICT DO
 * NOTHING`; when two holders create it at once one insert wins and the
 * other goes back to the conditional `UPDATE`, which now sees the row.
 * Existing rows are only ever updated, never re-inserted, so tables with
 * other required columns work as long as their rows exist.
 * @module
 */
import { BackendError, InvalidArgumentError, StaleFenceError } from './errors.js';
import { checkFence, checkValue, type FencedResource } from './fenced.js';

/**
 * What `query` resolves: the rows of the statement (`RETURNING` rows here).
 * node-postgres' `QueryResult` fits as is.
 */
export interface SqlResult {
  readonly rows: readonly Readonly<Record<string, unknown>>[];
}

/** Runs one parameterised statement (`$1`, `$2`...) and resolves its rows. */
export type SqlQuery = (text: string, params: unknown[]) => Promise<SqlResult>;

/** Options of {@link fencedSqlRow}. */
export interface FencedSqlRowOptions {
  /**
   * Runs one statement. Errors it throws (connection lost, constraint
   * violated) reach the caller unchanged. Pass a client inside a
   * transaction to make the fenced write part of it.
   * @example (text, params) => pool.query(text, params) // node-postgres
   */
  readonly query: SqlQuery;
  /**
   * The table, optionally schema-qualified (`billing.accounts`). Names are
   * plain identifiers (letters, digits, `_`, `$`, at most 63 characters),
   * quoted as given: pass them as the catalog stores them (lower case
   * unless they were created quoted). Reserved words are fine.
   * @example 'accounts'
   */
  readonly table: string;
  /** The column identifying the row; it must have a unique index (e.g. the primary key). */
  readonly keyColumn: string;
  /**
   * The column holding the value, read as text and written from a string
   * parameter (any type PostgreSQL can cast from and to text).
   */
  readonly valueColumn: string;
  /**
   * The column holding the highest fence seen: `bigint` (fences exceed 32
   * bits), best `NOT NULL DEFAULT 0`; NULL counts as 0, so the column can be
   * added to an existing table as is.
   * @default 'fence'
   */
  readonly fenceColumn?: string;
  /** The row's key: the value of `keyColumn`. */
  readonly key: string | number | bigint;
}

/** How many times a missing row is looked for again when a concurrent holder created it. */
const MAX_ROUNDS = 4;
const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_$]{0,62}$/;

function quoteIdentifier(name: unknown, option: string, allowSchema = false): string {
  const parts = typeof name === 'string' ? name.split('.') : [];
  const valid =
    parts.length >= 1 &&
    parts.length <= (allowSchema ? 2 : 1) &&
    parts.every((part) => IDENTIFIER.test(part));
  if (!valid) {
    throw new InvalidArgumentError(
      option,
      `a SQL identifier (letters, digits, _ and $, not starting with a digit, at most 63 characters${
        allowSchema ? '; optionally schema.table' : ''
      })`,
      name,
    );
  }
  return parts.map((part) => `"${part}"`).join('.');
}

/**
 * A fenced resource stored in one row of a SQL table (PostgreSQL dialect).
 *
 * - `read(fence)`: `UPDATE t SET fence = $2 WHERE key = $1 AND fence <= $2
 *   RETURNING value`; the value as text, or `undefined` when it is NULL. A
 *   missing row is created with the fence (its value gets the column's
 *   default), so the read is recorded even before the first write.
 * - `write(fence, value)`: `UPDATE t SET value = $3, fence = $2 WHERE
 *   key = $1 AND fence <= $2`, or an insert when the row is missing.
 * - Both throw `StaleFenceError` (with the row's fence as `highest`) when
 *   the row has seen a higher fence; nothing is changed then.
 *
 * A row created here gets only the key, the fence and (on write) the value:
 * other columns need defaults, or create rows yourself beforehand.
 *
 * @throws InvalidArgumentError on an unsafe identifier or a bad key.
 * @example
 * import pg from 'pg';
 * const pool = new pg.Pool();
 * const balance = fencedSqlRow({
 *   query: (text, params) => pool.query(text, params),
 *   table: 'accounts', keyColumn: 'id', valueColumn: 'balance', key: 7,
 * });
 * await disref.lock('account:7').using(async (lease) => {
 *   const current = Number((await balance.read(lease.fence)) ?? '0');
 *   await balance.write(lease.fence, String(current + 10));
 * });
 */
export function fencedSqlRow(options: FencedSqlRowOptions): FencedResource {
  const given: unknown = options;
  if (typeof given !== 'object' || given === null) {
    throw new InvalidArgumentError('options', 'an object', given);
  }
  if (typeof options.query !== 'function') {
    throw new InvalidArgumentError(
      'query',
      'a function (text, params) => Promise<{ rows }>',
      options.query,
    );
  }
  const { key } = options;
  if (
    !(typeof key === 'string' && key.length > 0) &&
    !(typeof key === 'number' && Number.isSafeInteger(key)) &&
    typeof key !== 'bigint'
  ) {
    throw new InvalidArgumentError('key', 'a non-empty string, a safe integer or a bigint', key);
  }
  return new FencedSqlRow(options.query, options.table, key, {
    table: quoteIdentifier(options.table, 'table', true),
    key: quoteIdentifier(options.keyColumn, 'keyColumn'),
    value: quoteIdentifier(options.valueColumn, 'valueColumn'),
    fence: quoteIdentifier(options.fenceColumn ?? 'fence', 'fenceColumn'),
  });
}

interface Names {
  readonly table: string;
  readonly key: string;
  readonly value: string;
  readonly fence: string;
}

interface Statements {
  readonly read: string;
  readonly write: string;
  readonly fence: string;
  readonly createRead: string;
  readonly createWrite: string;
}

function statements({ table, key, value, fence }: Names): Statements {
  const fresh = `${key} = $1 AND COALESCE(${fence}, 0) <= $2`;
  return {
    read: `UPDATE ${table} SET ${fence} = $2 WHERE ${fresh} RETURNING CAST(${value} AS text) AS value`,
    write: `UPDATE ${table} SET ${value} = $3, ${fence} = $2 WHERE ${fresh} RETURNING 1 AS written`,
    fence: `SELECT COALESCE(${fence}, 0) AS fence FROM ${table} WHERE ${key} = $1`,
    createRead:
      `INSERT INTO ${table} (${key}, ${fence}) VALUES ($1, $2) ` +
      `ON CONFLICT DO NOTHING RETURNING CAST(${value} AS text) AS value`,
    createWrite:
      `INSERT INTO ${table} (${key}, ${value}, ${fence}) VALUES ($1, $3, $2) ` +
      `ON CONFLICT DO NOTHING RETURNING 1 AS written`,
  };
}

class FencedSqlRow implements FencedResource {
  readonly key: string;
  private readonly sql: Statements;

  constructor(
    private readonly query: SqlQuery,
    private readonly table: string,
    private readonly rowKey: string | number | bigint,
    names: Names,
  ) {
    this.key = `${table}:${String(rowKey)}`;
    this.sql = statements(names);
  }

  async read(fence: number): Promise<string | undefined> {
    const seen = checkFence(fence);
    const row = await this.change(this.sql.read, this.sql.createRead, [this.rowKey, seen], seen);
    const value = row.value;
    if (value === null || value === undefined) return undefined;
    if (typeof value !== 'string') throw this.unusable(`a value of type ${typeof value}`);
    return value;
  }

  async write(fence: number, value: string): Promise<void> {
    const seen = checkFence(fence);
    const params = [this.rowKey, seen, checkValue(value)];
    await this.change(this.sql.write, this.sql.createWrite, params, seen);
  }

  /**
   * The conditional update; when it matched no row, either the row has a
   * higher fence (stale) or it is missing (create it, unless a concurrent
   * holder just did: then update again).
   */
  private async change(
    update: string,
    create: string,
    params: unknown[],
    fence: number,
  ): Promise<Readonly<Record<string, unknown>>> {
    for (let round = 0; round < MAX_ROUNDS; round++) {
      const updated = await this.run(update, params);
      if (updated !== undefined) return updated;
      const current = await this.run(this.sql.fence, [this.rowKey]);
      if (current === undefined) {
        const created = await this.run(create, params);
        if (created !== undefined) return created;
        continue; // created meanwhile by another holder
      }
      const highest = Number(current.fence);
      if (!Number.isFinite(highest)) throw this.unusable(`a fence of ${String(current.fence)}`);
      if (highest > fence) throw new StaleFenceError(this.key, fence, highest);
      // Committed by another holder after our update looked: look again.
    }
    throw new BackendError(
      `sql table ${this.table}`,
      `row ${this.key} kept appearing and disappearing over ${String(MAX_ROUNDS)} attempts; is something deleting it?`,
      { key: this.key },
    );
  }

  /** Runs one statement; resolves its first row, or undefined when there is none. */
  private async run(
    text: string,
    params: unknown[],
  ): Promise<Readonly<Record<string, unknown>> | undefined> {
    const result: unknown = await this.query(text, params);
    const rows = (result as Partial<SqlResult> | null | undefined)?.rows;
    if (!Array.isArray(rows)) throw this.unusable('a result without a rows array');
    const [row] = rows as unknown[];
    if (row === undefined) return undefined;
    if (typeof row !== 'object' || row === null) throw this.unusable('a row that is not an object');
    return row as Readonly<Record<string, unknown>>;
  }

  private unusable(what: string): BackendError {
    return new BackendError(
      `sql table ${this.table}`,
      `query() returned ${what}; it must resolve { rows } with rows as objects (node-postgres does)`,
      { key: this.key },
    );
  }
}
