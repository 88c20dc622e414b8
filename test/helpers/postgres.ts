/**
 * A PostgreSQL database of its own for each test file or suite, on the server at 127.0.0.1:5432 (`.ci/run` starts
 * it; trust auth, user `postgres`), and the few things the history tests do to it: read its tables, cut the hub's
 * connections and refuse new ones (an outage), let them in again.
 */
import { randomBytes } from 'node:crypto';
import postgres, { type Sql } from 'postgres';

const SERVER = process.env.TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432';

export interface TestDatabase {
  /** `postgres://postgres@127.0.0.1:5432/dashboard_test_…`, for `history.database_url`. */
  url: string;
  name: string;
  /** A client on the test database, for the tests' own queries (reconnects by itself after an outage). */
  sql: Sql;
  /**
   * Ends every connection to the test database but the test's own admin one (the hub's, and the test's own
   * client, which reconnects at its next query); returns how many were ended.
   */
  terminateConnections(): Promise<number>;
  /** `ALTER DATABASE … ALLOW_CONNECTIONS`: false refuses every new connection (the existing ones stay). */
  allowConnections(allowed: boolean): Promise<void>;
  /** The names of the partitions of `table` (a partitioned parent), sorted. */
  partitions(table: string): Promise<string[]>;
  /** Closes the clients and drops the database, connections and all. */
  drop(): Promise<void>;
}

function connect(url: string): Sql {
  return postgres(url, { max: 1, onnotice: () => {}, connection: { application_name: 'dashboard-test' } });
}

/** Creates `dashboard_test_<random>` and returns it with its helpers. */
export async function createTestDatabase(): Promise<TestDatabase> {
  const admin = connect(`${SERVER}/postgres`);
  const name = `dashboard_test_${randomBytes(6).toString('hex')}`;
  try {
    // The name is made here of hex digits only: safe as an identifier.
    await admin.unsafe(`CREATE DATABASE ${name}`);
  } catch (error) {
    await admin.end({ timeout: 1 });
    throw new Error(
      `cannot create a test database on ${SERVER} (is PostgreSQL running? .ci/run starts it): ${(error as Error).message}`,
    );
  }
  const url = `${SERVER}/${name}`;
  const sql = connect(url);
  return {
    url,
    name,
    sql,
    async terminateConnections() {
      // Two statements: in one, PostgreSQL may evaluate pg_terminate_backend(pid) before the datname filter
      // (it filters the activity scan before the join with pg_database), ending every backend of the server.
      const pids = (
        await admin<{ pid: number }[]>`
          SELECT pid FROM pg_stat_activity WHERE datname = ${name} AND pid <> pg_backend_pid()`
      ).map((row) => row.pid);
      if (pids.length === 0) return 0;
      const ended = await admin<{ ended: boolean }[]>`
        SELECT pg_terminate_backend(pid) AS ended FROM unnest(${pids}::int[]) AS pid`;
      return ended.filter((row) => row.ended).length;
    },
    async allowConnections(allowed: boolean) {
      await admin.unsafe(`ALTER DATABASE ${name} ALLOW_CONNECTIONS ${allowed ? 'true' : 'false'}`);
    },
    async partitions(table: string) {
      const rows = await sql<{ name: string }[]>`
        SELECT c.relname AS name FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
        WHERE p.relname = ${table} ORDER BY 1`;
      return rows.map((row) => row.name);
    },
    async drop() {
      await sql.end({ timeout: 1 });
      try {
        await admin.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await admin.end({ timeout: 1 });
      }
    },
  };
}

/** `YYYYMMDD` of the UTC day `ms` falls in, as partition names carry it. */
export function daySuffix(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10).replaceAll('-', '');
}
