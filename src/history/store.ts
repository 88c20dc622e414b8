/**
 * The history tables in PostgreSQL: migrations (numbered SQL files under an advisory lock, so replicas starting
 * together apply each once), day partitions, retention, and the batched insert. The client (`postgres`) is made and
 * closed by plugins/history.ts.
 */
import { readdirSync, readFileSync } from 'node:fs';
import type { Sql } from 'postgres';
import { HISTORY_KINDS, type HistoryKind, type HistoryRow, TABLES } from './rows.ts';

const MIGRATIONS_DIR = new URL('./migrations/', import.meta.url);
/** The advisory lock every hub takes to migrate: a constant of this project ("dashhist" in ASCII, as a bigint). */
const MIGRATION_LOCK = 0x6461736868697374n;
const DAY_MS = 86_400_000;
/** Rows per INSERT: PostgreSQL takes at most 65535 parameters, and the widest table has 10 columns. */
export const INSERT_BATCH = 5000;

/** The migration files, in order: `0001_tables.sql` is version 1. */
export function migrations(): { version: number; name: string; sql: string }[] {
  return readdirSync(MIGRATIONS_DIR)
    .filter((name) => /^[0-9]{4}_[a-z0-9_]+\.sql$/.test(name))
    .sort()
    .map((name) => ({
      version: Number(name.slice(0, 4)),
      name,
      sql: readFileSync(new URL(name, MIGRATIONS_DIR), 'utf8'),
    }));
}

/**
 * Applies the migrations not applied yet, in one transaction holding a transaction-level advisory lock: a second hub
 * starting at the same moment waits, then finds them applied. Returns the names applied.
 */
export async function migrate(sql: Sql): Promise<string[]> {
  return sql.begin(async (transaction) => {
    await transaction`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK.toString()}::bigint)`;
    await transaction`
      CREATE TABLE IF NOT EXISTS history_migrations (
        version integer PRIMARY KEY,
        name text NOT NULL,
        applied_at timestamptz NOT NULL DEFAULT now()
      )`;
    const done = new Set(
      (await transaction<{ version: number }[]>`SELECT version FROM history_migrations`).map(
        (row) => row.version,
      ),
    );
    const applied: string[] = [];
    for (const migration of migrations()) {
      if (done.has(migration.version)) continue;
      await transaction.unsafe(migration.sql);
      await transaction`INSERT INTO history_migrations (version, name) VALUES (${migration.version}, ${migration.name})`;
      applied.push(migration.name);
    }
    return applied;
  });
}

/** The UTC day a time falls in, as its first millisecond. */
export function dayOf(ms: number): number {
  return Math.floor(ms / DAY_MS) * DAY_MS;
}

/** `history_trades_p20261203`: the partition of `kind` holding the UTC day starting at `day`. */
export function partitionName(kind: HistoryKind, day: number): string {
  return `${TABLES[kind].table}_p${new Date(day).toISOString().slice(0, 10).replaceAll('-', '')}`;
}

/** Creates the day partition of `kind` starting at `day` if it does not exist. */
export async function ensurePartition(sql: Sql, kind: HistoryKind, day: number): Promise<void> {
  const from = new Date(day).toISOString();
  const to = new Date(day + DAY_MS).toISOString();
  // Names come from this code only (partitionName); the bounds are ISO times it made.
  await sql.unsafe(
    `CREATE TABLE IF NOT EXISTS ${partitionName(kind, day)} PARTITION OF ${TABLES[kind].table} FOR VALUES FROM ('${from}') TO ('${to}')`,
  );
}

/** Drops every day partition that ends before `before` (ms); returns the names dropped. */
export async function dropPartitionsBefore(sql: Sql, before: number): Promise<string[]> {
  const dropped: string[] = [];
  for (const kind of HISTORY_KINDS) {
    const parent = TABLES[kind].table;
    const children = await sql<{ name: string }[]>`
      SELECT c.relname AS name FROM pg_inherits i
      JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
      WHERE p.relname = ${parent}`;
    for (const { name } of children) {
      const match = /_p([0-9]{4})([0-9]{2})([0-9]{2})$/.exec(name);
      if (!match) continue;
      const end = Date.UTC(Number(match[1]), Number(match[2]) - 1, Number(match[3])) + DAY_MS;
      if (end > before) continue;
      await sql.unsafe(`DROP TABLE IF EXISTS ${name}`);
      dropped.push(name);
    }
  }
  return dropped;
}

/** Inserts `rows` of `kind` (a row already there, e.g. written before a restart, is left as it is). */
export async function insertRows(sql: Sql, kind: HistoryKind, rows: HistoryRow[]): Promise<void> {
  const { table, columns } = TABLES[kind];
  for (let start = 0; start < rows.length; start += INSERT_BATCH) {
    const batch = rows.slice(start, start + INSERT_BATCH);
    await sql`INSERT INTO ${sql(table)} ${sql(batch, columns as string[])} ON CONFLICT DO NOTHING`;
  }
}
