/**
 * The worker's connections: where to connect (from a URL or an existing
 * client), dedicated pools with per-connection settings, which errors mean "the
 * connection is gone" rather than "the query failed", and the backoff between
 * reconnection attempts.
 * @module
 */
import postgres from "npm:postgres@3.4.9";
import { bigintAsNumber, client, CONNECT_TIMEOUT_S, type Sql } from "./connect.ts";

/** Where a server is and who to log in as; what {@link openPool} needs. */
export interface ConnectionTarget {
  host: string[];
  port: number[];
  path?: string | false;
  database: string;
  user: string;
  pass: string | null;
  ssl: unknown;
  /** Seconds to wait for a connection to open, from the URL or the client. */
  connectTimeout?: number;
}

/** Options for {@link openPool}. */
export interface PoolOptions {
  /** Connections in the pool. */
  max: number;
  /** Shown in `pg_stat_activity.application_name` (cut to PostgreSQL's 63 bytes). */
  applicationName: string;
  /** Run-time parameters every connection starts with, e.g. `synchronous_commit`. */
  settings?: Record<string, string>;
  /** Seconds to wait for a connection to open (default: the target's, else 10). */
  connectTimeout?: number;
  /** Called on every NOTIFY the connection receives. */
  onNotify?: (channel: string, payload: string) => void;
  /** Called when a connection of the pool closes. */
  onClose?: () => void;
  /** Called with the message of every NOTICE (or warning) the server sends; ignored without. */
  onNotice?: (message: string) => void;
}

/**
 * The connection target of a URL or of an existing postgres.js client. Parsing
 * goes through `client()`, so a URL means exactly what it means to `connect()`
 * and a malformed one is a `usage` error that does not show its password.
 */
export async function connectionTarget(database: string | Sql): Promise<ConnectionTarget> {
  const parsed = typeof database === "string" ? client(database, { max: 1 }) : database;
  const o = parsed.options as unknown as ConnectionTarget & { connect_timeout?: unknown };
  const timeout = Number(o.connect_timeout);
  const target = {
    host: [...o.host],
    port: [...o.port],
    path: o.path,
    database: o.database,
    user: o.user,
    pass: o.pass,
    ssl: o.ssl,
    connectTimeout: timeout > 0 ? timeout : undefined,
  };
  // a client made here never connected; ending it only drops its bookkeeping
  if (typeof database === "string") await parsed.end({ timeout: 0 });
  return target;
}

/** The same server and login, on another host, port and (optionally) database. */
export function retarget(
  target: ConnectionTarget,
  host: string,
  port: number,
  database?: string,
): ConnectionTarget {
  return {
    ...target,
    host: [host],
    port: [port],
    path: false,
    database: database || target.database,
  };
}

/**
 * A pool whose connections live as long as the worker: no idle timeout and no
 * maximum lifetime, because a worker's tasks record the backend that took them
 * and a recycled connection would make them look abandoned.
 */
export function openPool(target: ConnectionTarget, options: PoolOptions): Sql {
  const applicationName = new TextEncoder().encode(options.applicationName).length > 63
    ? options.applicationName.slice(0, 40)
    : options.applicationName;
  // max_pipeline is a real postgres.js option its types leave out
  const settings = {
    host: target.host as unknown as string,
    port: target.port as unknown as number,
    ...(target.path ? { path: target.path } : {}),
    database: target.database,
    user: target.user,
    pass: target.pass ?? undefined,
    ssl: target.ssl as postgres.Options<Record<string, never>>["ssl"],
    max: options.max,
    max_lifetime: null,
    connect_timeout: options.connectTimeout ?? target.connectTimeout ?? CONNECT_TIMEOUT_S,
    max_pipeline: 1000,
    onnotice: (notice: { message?: string }) => options.onNotice?.(notice.message ?? ""),
    onnotify: options.onNotify
      ? (channel: string, payload: string) => options.onNotify!(channel, payload)
      : undefined,
    onclose: options.onClose ? () => options.onClose!() : undefined,
    types: { bigint: bigintAsNumber },
    connection: { application_name: applicationName, ...options.settings },
  };
  return postgres(settings) as unknown as Sql;
}

/** Error codes postgres.js and the socket layer use when a connection is gone. */
const CONNECTION_CODES = new Set([
  "CONNECTION_STALLED",
  "CONNECTION_CLOSED",
  "CONNECTION_DESTROYED",
  "CONNECTION_ENDED",
  "CONNECT_TIMEOUT",
  "ECONNREFUSED",
  "ECONNRESET",
  "ECONNABORTED",
  "EPIPE",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
  "NotConnected",
  "ConnectionReset",
  "ConnectionRefused",
  "BrokenPipe",
]);

/**
 * True when `error` says the connection (not the statement) failed: the socket
 * broke, the server is shutting down or starting up, it terminated the backend
 * (`pg_terminate_backend`), or it refuses more connections. Such errors are
 * worth reconnecting for; the statement's outcome is unknown.
 */
export function isConnectionError(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code !== "string") {
    return error instanceof Error && /connection (closed|reset|refused)|broken pipe/i.test(
      error.message,
    );
  }
  if (CONNECTION_CODES.has(code)) return true;
  // 08: connection exception; 57P01-03: admin/crash shutdown, cannot connect now;
  // 53300: too many connections
  return code.startsWith("08") || /^57P0[1-3]$/.test(code) || code === "53300";
}

/**
 * The wait before reconnection attempt `failures` (1, 2, ...): doubling from
 * `baseMs`, capped at `capMs`, with "equal jitter" (between half and all of it)
 * so workers that lost the same server do not return in lockstep.
 */
export function reconnectDelay(
  failures: number,
  baseMs = 100,
  capMs = 5_000,
  random: () => number = Math.random,
): number {
  const exponent = Math.min(Math.max(failures, 1) - 1, 30);
  const ceiling = Math.min(capMs, baseMs * 2 ** exponent);
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}

/**
 * How long a short statement (a claim, a renewal, a rescue, a batch's begin or
 * completion) may take before its connection is given up as stalled.
 */
export const STALL_MS = 20_000;

/** A statement did not settle in time; the connection is treated as lost. */
class ConnectionStalledError extends Error {
  /** A connection error code, so {@link isConnectionError} recognises it. */
  readonly code = "CONNECTION_STALLED";

  constructor(ms: number) {
    super(`no answer from the database within ${ms} ms`);
    this.name = "ConnectionStalledError";
  }
}

/**
 * Rejects with {@link ConnectionStalledError} if `work` has not settled within
 * `ms`. postgres.js 3.4.9 can leave a query pending forever when it is sent
 * while the server restarts (a connection closed during startup); the caller
 * then replaces the pool instead of waiting for ever.
 */
export async function withinStall<T>(work: Promise<T>, ms = STALL_MS): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const stalled = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new ConnectionStalledError(ms)), ms);
  });
  try {
    return await Promise.race([work, stalled]);
  } finally {
    clearTimeout(timer);
  }
}
