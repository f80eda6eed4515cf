/**
 * Remote execution: a task with `host`/`port` runs on that server (which has
 * retask installed, as a physical replica of the main one would), through one
 * small pool per host:port, while one local transaction keeps the batch's rows
 * locked; their outcomes are recorded on the main server by `record_attempts`
 * before that transaction commits.
 * @module
 */
import {
  type ConnectionTarget,
  connectionTarget,
  isConnectionError,
  openPool,
  retarget,
  withinStall,
} from "../db/pool.ts";
import type { Sql } from "../db/connect.ts";
import { errorMessage } from "../errors.ts";
import type { ClaimedTask } from "./claim.ts";
import type { LaneHandle } from "./lane.ts";
import { settle } from "./local.ts";
import type { TaskOutcome } from "./outcome.ts";
import {
  type AttemptResult,
  cancelled,
  failed,
  finished,
  lost,
  recordStatement,
  reportOf,
  STOPPED,
  unlessStopping,
} from "./recorder.ts";

/** Settings for {@link RemotePools}. */
export interface RemoteOptions {
  /** retask's schema, on the remote servers as here. */
  schema: string;
  /** Per-task statement timeout in ms, 0 for none. */
  taskTimeoutMs: number;
  /** A result longer than this is cut, with a note that it was. */
  maxResultBytes: number;
  /** Connections per remote server. */
  poolSize: number;
  applicationName: string;
  /** The servers tasks may name, by `host:port` (see {@link remoteKey}), and how to log in. */
  allowed: Map<string, ConnectionTarget>;
}

/**
 * The servers a worker may run remote tasks on, from `--remote-host` specs: a
 * `postgres://` URL logs in as it says; `HOST:PORT` as the worker's own user,
 * on `database` (default the worker's), with no password: the main
 * connection's is never sent to another server.
 */
export async function allowedServers(
  main: ConnectionTarget,
  specs: readonly string[],
  database?: string,
): Promise<Map<string, ConnectionTarget>> {
  const allowed = new Map<string, ConnectionTarget>();
  for (const spec of specs) {
    if (/^postgres(ql)?:\/\//.test(spec)) {
      const target = await connectionTarget(spec);
      allowed.set(remoteKey(target.host[0], target.port[0]), target);
    } else {
      const split = spec.lastIndexOf(":");
      const host = spec.slice(0, split).replace(/^\[(.*)\]$/, "$1");
      const port = Number(spec.slice(split + 1));
      allowed.set(remoteKey(host, port), { ...retarget(main, host, port, database), pass: null });
    }
  }
  return allowed;
}

/** How a task's host and port are matched against the servers a worker allows. */
function remoteKey(host: string, port: string | number): string {
  return `${host.toLowerCase()}:${Number(port)}`;
}

// PostgreSQL errors that mean the login itself failed: wrong database, role or password.
const LOGIN_SQLSTATES = /^(3D000|28000|28P01)$/;

/** One lazily opened pool per allowed remote host:port, closed together. */
export class RemotePools {
  readonly #options: RemoteOptions;
  readonly #pools = new Map<string, Sql>();

  constructor(options: RemoteOptions) {
    this.#options = options;
  }

  /**
   * Runs `task` on its server and returns the rendered result, or the attempt's
   * failure (the program's error, or a server that cannot be reached).
   * `onStart` receives the query, so the caller can cancel it.
   */
  async run(
    task: ClaimedTask,
    onStart: (query: { cancel(): void }) => void,
  ): Promise<AttemptResult> {
    const started = performance.now();
    const took = () => performance.now() - started;
    const host = task.host!;
    const port = task.port!;
    // a row written past enqueue's checks fails alone, and reaches no server
    if (task.problem !== null) return failed(task, task.problem, null, null, took());
    // only a server the worker was told of, with its own login for it: a queue
    // cannot send the worker's connections (and password) where it likes
    const target = this.#options.allowed.get(remoteKey(host, port));
    if (!target) {
      return failed(
        task,
        `${host}:${port} is not a server this worker may reach; ` +
          `allow it with retask work --remote-host ${host}:${port}`,
        null,
        null,
        took(),
      );
    }
    let connection: Awaited<ReturnType<Sql["reserve"]>> | undefined;
    try {
      const pool = this.#pool(remoteKey(host, port), target);
      // one connection for the run and the reset after it, as on a lane: the
      // next task on it starts from a clean session
      connection = await pool.reserve();
      const sql = connection;
      // one run of a task at a time on the remote server too: a retry after this
      // worker's kill -9 waits until the dead worker's backend has stopped
      const query = sql<{ result: string }[]>`
        SELECT ${sql(this.#options.schema)}.run_program(
                 ${task.programId}::bigint, ${sql.json(task.params as never)}::jsonb,
                 max_result_bytes => ${this.#options.maxResultBytes}::integer) AS result
        FROM (SELECT pg_advisory_xact_lock(hashtextextended('retask.task:' || ${task.taskId}, 0)))
             AS one_at_a_time`;
      onStart(query);
      const [row] = await query.finally(() =>
        sql`SELECT ${sql(this.#options.schema)}.reset_session()`.catch(() => {})
      );
      return finished(task, row.result, took());
    } catch (error) {
      const { code = null, where = null } = error as { code?: string; where?: string | null };
      if (isConnectionError(error) || LOGIN_SQLSTATES.test(code ?? "")) {
        return failed(
          task,
          `cannot reach ${host}:${port}: ${errorMessage(error)}`,
          null,
          null,
          took(),
        );
      }
      return failed(task, errorMessage(error), code, where, took());
    } finally {
      connection?.release();
    }
  }

  #pool(key: string, target: ConnectionTarget): Sql {
    let pool = this.#pools.get(key);
    if (!pool) {
      // as on the lanes: if this worker dies (kill -9), the remote backend stops
      // its program within a second instead of running on beside the retry
      const settings: Record<string, string> = { client_connection_check_interval: "1000" };
      if (this.#options.taskTimeoutMs > 0) {
        settings.statement_timeout = String(this.#options.taskTimeoutMs);
      }
      pool = openPool(target, {
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

/**
 * Runs remote tasks side by side while one local transaction keeps their rows
 * locked (`lock_tasks`), and records their outcomes before it commits. Throws
 * when the transaction as a whole failed (nothing of it committed).
 */
export async function runRemote(
  lane: LaneHandle,
  tasks: readonly ClaimedTask[],
): Promise<TaskOutcome[]> {
  const { sql, ctx } = lane;
  const [begun, locking] = await withinStall(Promise.all([
    settle(sql`BEGIN`),
    settle(sql<{ task_id: number; cancel: boolean }[]>`
      SELECT l.task_id, EXISTS (SELECT FROM ${sql(ctx.schema)}.cancel_requests r
                                WHERE r.task_id = l.task_id) AS cancel
      FROM ${sql(ctx.schema)}.lock_tasks(${tasks.map((t) => t.taskId)}::bigint[],
                                         ${tasks.map((t) => t.attempt)}::integer[]) l`),
  ]));
  if (!begun.ok) throw begun.error;
  if (!locking.ok) throw locking.error;
  const locked = new Set(locking.value.map((r) => r.task_id));
  // someone asked to cancel these meanwhile: they are not run
  const asked = new Set(locking.value.filter((r) => r.cancel).map((r) => r.task_id));
  // a task not locked was rescued (and maybe retaken) since it was taken: not ours to run
  const mine = tasks.filter((t) => locked.has(t.taskId));
  const taken = tasks.filter((t) => !locked.has(t.taskId)).map((task) => ({ task, durationMs: 0 }));
  const results = await Promise.all(mine.map(async (task) => {
    if (asked.has(task.taskId)) return cancelled(task);
    if (lane.aborting) return lost(task, STOPPED);
    let untrack = () => {};
    const result = await ctx.remote.run(
      task,
      (query) => (untrack = lane.track(query, [task.taskId])),
    );
    untrack();
    return unlessStopping(result, lane.aborting);
  }));
  const [recorded, committed] = await withinStall(Promise.all([
    results.length > 0 ? settle(recordStatement(sql, results, ctx)) : null,
    settle(sql`COMMIT`),
  ]));
  // after a failed record_attempts the COMMIT rolled back: the batch failed as a whole
  if (recorded && !recorded.ok) throw recorded.error;
  if (!committed.ok) throw committed.error;
  return reportOf([...results, ...taken], recorded?.ok ? recorded.value : [], ctx.worker);
}
