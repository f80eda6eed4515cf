/**
 * Remote execution: a task with `host`/`port` runs on that server (which has
 * retask installed, as a physical replica of the main one would), through one
 * small pool per host:port; its result comes back to be recorded on the main
 * server by the normal transitions.
 * @module
 */
import type { ClaimedTask } from "./claim.ts";
import {
  type ConnectionTarget,
  errorMessage,
  isConnectionError,
  openPool,
  retarget,
} from "../db/pool.ts";
import type { Sql } from "../db/connect.ts";

/** A remote server could not be reached: the attempt fails with this message. */
export class RemoteUnreachableError extends Error {
  constructor(host: string, port: string, cause: unknown) {
    super(`cannot reach ${host}:${port}: ${errorMessage(cause)}`, { cause });
    this.name = "RemoteUnreachableError";
  }
}

/** Settings for {@link RemotePools}. */
export interface RemoteOptions {
  /** Database name on remote servers (default: the main connection's). */
  database?: string;
  /** Per-task statement timeout in ms, 0 for none. */
  taskTimeoutMs: number;
  /** Connections per remote server. */
  poolSize: number;
  applicationName: string;
}

// PostgreSQL errors that mean the login itself failed: wrong database, role or password.
const LOGIN_SQLSTATES = /^(3D000|28000|28P01)$/;

/** One lazily opened pool per remote host:port, closed together. */
export class RemotePools {
  readonly #target: ConnectionTarget;
  readonly #options: RemoteOptions;
  readonly #pools = new Map<string, Sql>();

  constructor(target: ConnectionTarget, options: RemoteOptions) {
    this.#target = target;
    this.#options = options;
  }

  /**
   * Runs `task` on its server and returns the rendered result. Throws the
   * server's error when the program fails, {@link RemoteUnreachableError} when
   * the server cannot be reached. `onStart` receives the query, so the caller
   * can cancel it.
   */
  async run(task: ClaimedTask, onStart?: (query: { cancel(): void }) => void): Promise<string> {
    const host = task.host!;
    const port = task.port!;
    const pool = this.#pool(host, port);
    try {
      // one run of a task at a time on the remote server too: a retry after this
      // worker's kill -9 waits until the dead worker's backend has stopped
      const query = pool<{ result: string }[]>`
        SELECT empapi.run(t) AS result
        FROM (SELECT pg_advisory_xact_lock(hashtextextended('retask.task:' || ${task.taskId}, 0)))
             AS one_at_a_time,
             jsonb_populate_record(NULL::public.tasks, ${pool.json(task.row as never)}::jsonb) t`;
      onStart?.(query);
      const [row] = await query;
      return row.result;
    } catch (error) {
      const code = (error as { code?: string }).code ?? "";
      if (isConnectionError(error) || LOGIN_SQLSTATES.test(code)) {
        throw new RemoteUnreachableError(host, port, error);
      }
      throw error;
    }
  }

  #pool(host: string, port: string): Sql {
    const key = `${host}:${port}`;
    let pool = this.#pools.get(key);
    if (!pool) {
      // as on the lanes: if this worker dies (kill -9), the remote backend stops
      // its program within a second instead of running on beside the retry
      const settings: Record<string, string> = { client_connection_check_interval: "1000" };
      if (this.#options.taskTimeoutMs > 0) {
        settings.statement_timeout = String(this.#options.taskTimeoutMs);
      }
      pool = openPool(retarget(this.#target, host, Number(port), this.#options.database), {
        max: this.#options.poolSize,
        applicationName: this.#options.applicationName,
        settings,
        connectTimeout: 5,
      });
      this.#pools.set(key, pool);
    }
    return pool;
  }

  /** Closes every pool. */
  async close(): Promise<void> {
    const pools = [...this.#pools.values()];
    this.#pools.clear();
    await Promise.all(pools.map((p) => p.end({ timeout: 1 })));
  }
}
