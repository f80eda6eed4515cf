/**
 * Connections. An explicit URL or `DATABASE_URL` wins; without one, the CLI
 * (and a library caller that asks for it) starts retask's embedded PostgreSQL
 * and connects to that.
 * @module
 */
import postgres from "npm:postgres@3.4.9";
import { RetaskError } from "../errors.ts";

/** A postgres.js client with retask's settings: int8 values arrive as numbers. */
export type Sql = postgres.Sql<{ bigint: number }>;

/** A client inside a transaction, as `sql.begin` hands it out. */
export type TransactionSql = postgres.TransactionSql<{ bigint: number }>;

/** Either a client or a transaction: everything that enqueues accepts both. */
export type Queryable = Sql | TransactionSql;

/** Options for {@link connect}. */
export interface ConnectOptions {
  /** A `postgres://` URL; defaults to `DATABASE_URL`. */
  url?: string;
  /**
   * With no URL and no `DATABASE_URL`, start (or reuse) the embedded server
   * instead of failing. Off by default: a library never starts a server unasked.
   */
  embedded?: boolean;
  /** Pool size (default 4). */
  max?: number;
  /** Shown in `pg_stat_activity.application_name`. */
  applicationName?: string;
}

/** An open connection pool and where it points. */
export interface Database {
  /** The pool. */
  sql: Sql;
  /** The URL connected to, password removed. */
  url: string;
  /** True when the URL came from the embedded server. */
  embedded: boolean;
  /** Closes the pool; the embedded server keeps running for the next command. */
  close(): Promise<void>;
}

/** int8 (oid 20) as a JavaScript number: task and program ids stay far below 2^53. */
export const bigintAsNumber = {
  to: 20,
  from: [20],
  serialize: (value: number) => String(value),
  parse: (value: string) => Number(value),
};

/** Creates a client without checking that the server answers. */
export function client(url: string, options: Omit<ConnectOptions, "url"> = {}): Sql {
  return postgres(url, {
    max: options.max ?? 4,
    onnotice: () => {},
    types: { bigint: bigintAsNumber },
    connection: { application_name: options.applicationName ?? "retask" },
  }) as unknown as Sql;
}

/** Removes the password from a connection URL, for messages. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = "****";
    return parsed.toString();
  } catch {
    return "(unparsable URL)";
  }
}

/**
 * Where `db` points, for a line people read: `127.0.0.1:5432/mydb`, or
 * `embedded PostgreSQL at 127.0.0.1:54329/postgres`. Never the user or password.
 */
export function describeDatabase(db: Pick<Database, "url" | "embedded">): string {
  let where = db.url;
  try {
    const url = new URL(db.url);
    const name = decodeURIComponent(url.pathname.slice(1)) || decodeURIComponent(url.username);
    where = `${url.hostname || "localhost"}:${url.port || "5432"}/${name}`;
  } catch {
    // db.url is already redacted: show it as it is
  }
  return db.embedded ? `embedded PostgreSQL at ${where}` : where;
}

/**
 * Resolves the database URL (starting the embedded server if none is given
 * and `embedded` is set) and checks the connection. Throws a
 * {@link RetaskError} saying what to fix.
 */
export async function connect(options: ConnectOptions = {}): Promise<Database> {
  let url = options.url || Deno.env.get("DATABASE_URL") || "";
  const embedded = url === "";
  if (embedded && !options.embedded) {
    throw new RetaskError(
      "usage",
      "no database given: set DATABASE_URL, pass { url }, or { embedded: true } for retask's own server",
    );
  }
  if (embedded) {
    try {
      const { startEmbedded } = await import("./embedded.ts");
      url = (await startEmbedded()).url;
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      throw new RetaskError("embedded", `embedded PostgreSQL: ${reason}`, { cause: error });
    }
  }
  if (!/^postgres(ql)?:\/\//.test(url)) {
    throw new RetaskError(
      "usage",
      `database URL must start with postgres://, got "${redactUrl(url)}"`,
    );
  }
  const sql = client(url, options);
  try {
    await sql`SELECT 1`;
  } catch (error) {
    await sql.end({ timeout: 0 });
    const reason = error instanceof Error ? error.message : String(error);
    throw new RetaskError(
      "database",
      `cannot connect to ${redactUrl(url)}: ${reason}; check DATABASE_URL or --database-url`,
      { cause: error },
    );
  }
  return { sql, url: redactUrl(url), embedded, close: () => sql.end({ timeout: 5 }) };
}
