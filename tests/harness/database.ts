/**
 * A database of one's own for every test file and every benchmark measurement:
 * created on `DATABASE_URL`'s server (else the embedded one), named with a
 * prefix (`retask_test_`, `retask_bench_`) so leftovers are easy to find, and
 * dropped after, ending any backend still in it.
 * @module
 */
import { client, type Sql } from "../../lib/db/connect.ts";
import { startEmbedded } from "../../lib/db/embedded.ts";
import { install } from "../../lib/db/schema.ts";

/**
 * The server to create databases on: `flag` (a `--database-url`), else
 * `DATABASE_URL`, else the embedded one.
 */
export async function serverUrl(flag?: string): Promise<string> {
  return flag || Deno.env.get("DATABASE_URL") || (await startEmbedded()).url;
}

/**
 * The login role workers of a fresh database connect as: not a superuser, a
 * member of the `retask_worker` group only (SECURITY.md), and granted what
 * the tests' own tables need (any table or sequence created in `public`).
 */
export const WORKER_ROLE = "retask_test_worker";

/** A database of one test file's or one measurement's own. */
export interface FreshDatabase {
  name: string;
  url: string;
  /** `url` as {@link WORKER_ROLE}: what `retask work` runs as in tests. */
  workerUrl: string;
  sql: Sql;
  /** Closes `sql` and drops the database, ending any backend still in it. */
  drop(): Promise<void>;
  /** Runs a statement on the server's admin database (for roles, which are cluster-wide). */
  admin(statement: string): Promise<void>;
}

/** Where and how {@link freshDatabase} creates a database. */
export interface FreshDatabaseOptions {
  /** Start of the name: `retask_test_` (the default) or `retask_bench_`. */
  prefix?: string;
  /** The server; else {@link serverUrl}'s. */
  server?: string;
  /** Install retask into it. */
  install?: boolean;
  /** Connections of `sql` (default 8). */
  max?: number;
  /** application_name of `sql`'s connections. */
  applicationName?: string;
}

// Databases created and not yet dropped, so an interrupted run can drop them.
const live = new Map<string, string>();

// A fresh database's URL → the same database as WORKER_ROLE.
const workerUrls = new Map<string, string>();

/**
 * The URL a worker of `url`'s database connects with: as {@link WORKER_ROLE}
 * for a fresh database, else `url` itself (say, an embedded server's).
 */
export function workerUrlOf(url: string): string {
  return workerUrls.get(url) ?? url;
}

// Roles are cluster-wide, and test runs may share a server: each may create them.
const WORKER_ROLE_SQL = `
  DO $$
  DECLARE
      role_ text;
  BEGIN
      FOREACH role_ IN ARRAY ARRAY['retask_worker', '${WORKER_ROLE}'] LOOP
          CONTINUE WHEN EXISTS (SELECT FROM pg_roles WHERE rolname = role_);
          BEGIN
              EXECUTE format('CREATE ROLE %I %s', role_,
                             CASE WHEN role_ = 'retask_worker' THEN 'NOLOGIN' ELSE 'LOGIN' END);
          EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
          END;
      END LOOP;
  END $$;
  GRANT retask_worker TO ${WORKER_ROLE};`;

async function adminStatement(server: string, statement: string): Promise<void> {
  const admin = client(server, { max: 1 });
  try {
    await admin.unsafe(statement);
  } finally {
    await admin.end();
  }
}

async function dropDatabase(server: string, name: string): Promise<void> {
  await adminStatement(server, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  live.delete(name);
}

/**
 * Creates an empty database named `<prefix><label>_<random>`, so no two test
 * files, measurements or people running them at once share state.
 */
export async function freshDatabase(
  label: string,
  options: FreshDatabaseOptions = {},
): Promise<FreshDatabase> {
  const server = options.server ?? await serverUrl();
  const name = `${options.prefix ?? "retask_test_"}${label.replace(/[^a-z0-9]+/gi, "_")}_${
    crypto.randomUUID().slice(0, 8)
  }`.toLowerCase();
  await adminStatement(server, `CREATE DATABASE ${name}`);
  live.set(name, server);
  const url = new URL(server);
  url.pathname = `/${name}`;
  // the server's password, where it asks for one (the embedded server does)
  const worker = new URL(url);
  worker.username = WORKER_ROLE;
  workerUrls.set(url.toString(), worker.toString());
  const sql = client(url.toString(), {
    max: options.max ?? 8,
    applicationName: options.applicationName,
  });
  await sql.unsafe(`${WORKER_ROLE_SQL}
    ${
    url.password
      ? `ALTER ROLE ${WORKER_ROLE} PASSWORD '${
        decodeURIComponent(url.password).replaceAll("'", "''")
      }';`
      : ""
  }
    ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON TABLES TO ${WORKER_ROLE};
    ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON SEQUENCES TO ${WORKER_ROLE};`);
  if (options.install) await install(sql);
  return {
    name,
    url: url.toString(),
    workerUrl: worker.toString(),
    sql,
    admin: (statement) => adminStatement(server, statement),
    async drop() {
      await sql.end({ timeout: 5 });
      await dropDatabase(server, name);
      workerUrls.delete(url.toString());
    },
  };
}

/**
 * A login role of `db`'s own, `<db name>_<suffix>`, member of `groups` (with
 * the server's password, where it asks for one), and a client as it. Drop
 * the role after the database: `db.admin(\`DROP ROLE IF EXISTS ${role}\`)`.
 */
export async function loginAs(
  db: FreshDatabase,
  suffix: string,
  groups: string[],
): Promise<{ role: string; sql: Sql }> {
  const role = `${db.name}_${suffix}`;
  const url = new URL(db.url);
  const password = url.password ? ` PASSWORD '${decodeURIComponent(url.password)}'` : "";
  await db.admin(`DROP ROLE IF EXISTS ${role}; CREATE ROLE ${role} LOGIN${password}`);
  for (const group of groups) await db.admin(`GRANT ${group} TO ${role}`);
  url.username = role;
  return { role, sql: client(url.toString(), { max: 1 }) };
}

/**
 * Runs `fn` on a fresh database and always drops it, so an interrupted or
 * failed run leaves nothing behind.
 */
export async function withFreshDatabase<T>(
  label: string,
  options: FreshDatabaseOptions,
  fn: (db: FreshDatabase) => Promise<T>,
): Promise<T> {
  const db = await freshDatabase(label, options);
  try {
    return await fn(db);
  } finally {
    await db.drop();
  }
}

/**
 * On SIGINT or SIGTERM, drops every database {@link freshDatabase} created and
 * has not dropped yet, then exits (130), so an interrupted run leaves none behind.
 */
export function dropDatabasesOnSignal(): void {
  const onSignal = async () => {
    console.error("interrupted: dropping the databases this run created");
    await Promise.allSettled([...live].map(([name, server]) => dropDatabase(server, name)));
    Deno.exit(130);
  };
  for (const signal of ["SIGINT", "SIGTERM"] as const) Deno.addSignalListener(signal, onSignal);
}
