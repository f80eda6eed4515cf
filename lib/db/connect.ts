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
  /**
   * Seconds to wait for each host to answer (default {@link CONNECT_TIMEOUT_S});
   * a `connect_timeout` in the URL wins.
   */
  connectTimeout?: number;
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

/** Seconds to wait for each host of a URL to answer, unless the URL sets `connect_timeout`. */
export const CONNECT_TIMEOUT_S = 10;

/**
 * Creates a client without checking that the server answers. A URL that cannot
 * be parsed is a `usage` {@link RetaskError} whose message shows it with `****`
 * for the password.
 */
export function client(url: string, options: Omit<ConnectOptions, "url"> = {}): Sql {
  checkUrlShape(url);
  let sql: Sql;
  try {
    sql = postgres(url, {
      max: options.max ?? 4,
      onnotice: () => {},
      types: { bigint: bigintAsNumber },
      connection: { application_name: options.applicationName ?? "retask" },
      // the URL's own connect_timeout wins, as in libpq
      ...(/[?&]connect_timeout=/.test(url)
        ? {}
        : { connect_timeout: options.connectTimeout ?? CONNECT_TIMEOUT_S }),
    }) as unknown as Sql;
  } catch (error) {
    // new URL's message repeats the whole URL, password included
    throw invalidUrl(url, "it is not a valid URL (percent-encode / ? # @ in a password)", error);
  }
  return sql;
}

/**
 * Replaces the password of every `scheme://user:password@` in `text` with
 * `****`. Works on any text, also a URL that `new URL` rejects or an error
 * message that quotes one: everything between the first `:` after `://` and
 * the last `@` before the next URL goes, so a password holding `@`, `/` or
 * `#` is hidden whole (and a query holding `@` hides more than needed).
 */
export function redactUrl(text: string): string {
  const parts = text.split(/([A-Za-z][A-Za-z0-9+.-]*:\/\/)/);
  // parts alternate: text before a scheme, the scheme, the rest up to the next scheme
  return parts.map((part, i) => i > 0 && i % 2 === 0 ? hideUserinfoPassword(part) : part).join(
    "",
  );
}

/** `user:secret@host...` as `user:****@host...`; text without `:` before its last `@` as it is. */
function hideUserinfoPassword(text: string): string {
  const at = text.lastIndexOf("@");
  const colon = text.indexOf(":");
  return colon >= 0 && colon < at ? `${text.slice(0, colon + 1)}****${text.slice(at)}` : text;
}

/**
 * A database URL as a message may quote it: redacted, or, without a `scheme://`
 * to find its password by, not at all (`""`).
 */
function shownUrl(url: string): string {
  return url.includes("://") ? `"${redactUrl(url)}"` : "";
}

/** A `usage` error for `url`; `cause`, if any, keeps its code but loses the password. */
function invalidUrl(url: string, reason: string, cause?: unknown): RetaskError {
  const hidden = cause === undefined ? undefined : withoutPassword(cause);
  const shown = shownUrl(url);
  return new RetaskError(
    "usage",
    `invalid database URL${shown && ` ${shown}`}: ${reason}; check DATABASE_URL or --database-url`,
    hidden === undefined ? undefined : { cause: hidden },
  );
}

/** `error` with {@link redactUrl} applied to its message (and stack), keeping its class and code. */
function withoutPassword(error: unknown): unknown {
  if (!(error instanceof Error)) return redactUrl(String(error));
  const message = redactUrl(error.message);
  if (message === error.message) return error;
  const copy = new Error(message);
  copy.name = error.name;
  const code = (error as { code?: unknown }).code;
  if (code !== undefined) Object.assign(copy, { code });
  copy.stack = redactUrl(error.stack ?? message);
  return copy;
}

/**
 * The scheme, hosts and ports of a URL, checked before postgres.js 3.4.9 sees
 * it, for a message that says what is wrong. Most of all the hosts of a
 * multi-host URL (`host1:port1,host2:port2`), which postgres.js splits itself
 * after the first `@` and does not check: it would read `5432:1` as 5432, or,
 * where the password holds an unencoded `@`, take part of the password for a
 * host name (and print it in its connection errors).
 */
function checkUrlShape(url: string): void {
  if (!/^postgres(ql)?:\/\//.test(url)) {
    const got = shownUrl(url) && `, got ${shownUrl(url)}`;
    throw new RetaskError("usage", `database URL must start with postgres://${got}`);
  }
  // as postgres.js's parseUrl: up to the first / or ?, after the first @
  const authority = url.slice(url.indexOf("://") + 3).split(/[?/]/)[0];
  let hosts: string;
  try {
    hosts = decodeURIComponent(authority.slice(authority.indexOf("@") + 1));
  } catch (error) {
    throw invalidUrl(url, "it has a malformed %-escape", error);
  }
  // an @ past the host: most likely a password with an unencoded / ? or #
  const badHost = url.includes("@", url.indexOf("://") + 3 + authority.length)
    ? "percent-encode / ? # @ in a password"
    : "a host must read name, name:port or [address]:port";
  const multi = hosts.includes(",");
  // one host: as new URL reads it, after the last @
  for (
    const entry of multi ? hosts.split(",") : [authority.slice(authority.lastIndexOf("@") + 1)]
  ) {
    if (multi && entry.includes("@")) throw invalidUrl(url, "write @ in the password as %40");
    const match = multi
      ? /^([^\s:[\]]+)(?::(\d*))?$/.exec(entry)
      : /^(\[[^\]]*\]|[^\s:[\]]*)(?::(\d*))?$/.exec(entry);
    if (!match) throw invalidUrl(url, badHost);
    const port = match[2] ? Number(match[2]) : 5432;
    if (port < 1 || port > 65_535) throw invalidUrl(url, "a port must be a number from 1 to 65535");
  }
}

/**
 * Rejects with a `CONNECT_TIMEOUT` error if `work` has not settled within
 * `seconds`: postgres.js 3.4.9 tries the hosts of a multi-host URL over and
 * over while all refuse, and starts `connect_timeout` afresh for each try.
 */
async function withinConnectTimeout<T>(work: Promise<T>, seconds: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    const error = new Error(`no server answered within ${seconds} s`);
    // a second more, so that postgres.js's own, more precise, timeout comes first
    timer = setTimeout(
      () => reject(Object.assign(error, { code: "CONNECT_TIMEOUT" })),
      (seconds + 1) * 1000,
    );
  });
  try {
    return await Promise.race([work, late]);
  } finally {
    clearTimeout(timer);
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
  const sql = client(url, options);
  // postgres.js waits connect_timeout for each host it tries: bound the whole
  // attempt to one such wait per host, as libpq does
  const perHost = Number(sql.options.connect_timeout) > 0
    ? Number(sql.options.connect_timeout)
    : CONNECT_TIMEOUT_S;
  const hosts = (sql.options.host as unknown as string[]).length;
  try {
    await withinConnectTimeout(sql`SELECT 1`, perHost * hosts);
  } catch (error) {
    await sql.end({ timeout: 0 });
    const reason = redactUrl(error instanceof Error ? error.message : String(error));
    throw new RetaskError(
      "database",
      `cannot connect to ${redactUrl(url)}: ${reason}; check DATABASE_URL or --database-url`,
      { cause: withoutPassword(error) },
    );
  }
  return { sql, url: redactUrl(url), embedded, close: () => sql.end({ timeout: 5 }) };
}
