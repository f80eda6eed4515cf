/**
 * Execution: a lane owns one connection and runs a batch of tasks in one
 * transaction. It locks the batch's rows (so a rescuer, which skips locked
 * rows, cannot take them mid-run), runs each SQL program under a savepoint
 * (`attempt_task`: a failure rolls back only that task), runs remote tasks on
 * their servers, and records every outcome with one `complete_tasks` call
 * before it commits: a program's effects and its completion commit together or
 * not at all.
 *
 * Statements are pipelined: a batch costs three round trips whatever its size
 * and however many of its tasks fail (begin and lock; one `attempt_task` per
 * task; complete and commit).
 * @module
 */
import type { ClaimedTask } from "./claim.ts";
import {
  type AttemptResult,
  completeStatement,
  completeTasks,
  failed,
  finished,
  lost,
  outcomes,
} from "./complete.ts";
import { errorMessage, isConnectionError, reconnectDelay, withinStall } from "./connections.ts";
import type { Sql } from "./db.ts";
import type { TaskOutcome, WorkerLog } from "./outcome.ts";
import { RemoteUnreachableError } from "./remote.ts";
import type { RemotePools } from "./remote.ts";
import { sleep } from "./wake.ts";

/** The reason recorded for attempts cut short by a stopping worker. */
export const STOPPED = "worker stopped before the task finished";

/**
 * How long a lane's batch should take. A lane sizes its next batch from how
 * long its tasks took: short tasks fill the batch (few commits, high
 * throughput), long ones go one per transaction (no task waits behind a slow
 * one, and other workers get their share of the queue).
 */
export const BATCH_BUDGET_MS = 100;

/** What lanes share with the worker that owns them. */
export interface LaneContext {
  worker: string;
  /** The most tasks a lane runs in one transaction. */
  batchSize: number;
  /** Per-task statement timeout in ms, 0 for none. */
  taskTimeoutMs: number;
  remote: RemotePools;
  report(outcomes: TaskOutcome[]): void;
  log(entry: WorkerLog): void;
  /** Aborted when the worker stops waiting for its lanes: stop retrying. */
  giveUp: AbortSignal;
}

interface Attempted {
  result: string | null;
  error: string | null;
  context: string | null;
  error_code: string | null;
  started: Date;
  finished: Date;
}

type Settled<T> =
  | { ok: true; value: T; at: number }
  | { ok: false; error: unknown; at: number };

/** How long a lane keeps trying to record its lost attempts before leaving them to the rescuer. */
const RECORD_LOST_FOR_MS = 30_000;

// Starts a query (postgres.js sends it when first awaited) and never rejects, so
// a pipelined statement that fails is never an unhandled rejection.
function settle<T>(query: PromiseLike<T>): Promise<Settled<T>> {
  return Promise.resolve(query).then(
    (value) => ({ ok: true as const, value, at: performance.now() }),
    (error) => ({ ok: false as const, error, at: performance.now() }),
  );
}

function firstError(steps: Settled<unknown>[]): unknown {
  for (const step of steps) if (!step.ok) return step.error;
  return undefined;
}

/** One execution connection and the batch it is running, if any. */
export class Lane {
  readonly #open: () => Sql;
  #sql: Sql;
  readonly #ctx: LaneContext;
  #held: readonly ClaimedTask[] = [];
  #running: Promise<void> | null = null;
  #aborting = false;
  // a new lane starts with one task, and learns
  #capacity = 1;
  readonly #inflight = new Set<{ cancel(): void }>();

  /** `open` makes the lane's connection pool (again, if one stalls). */
  constructor(open: () => Sql, ctx: LaneContext) {
    this.#open = open;
    this.#sql = open();
    this.#ctx = ctx;
  }

  /** True when the lane can take a batch. */
  get idle(): boolean {
    return this.#running === null;
  }

  /** How many tasks the lane's next batch should have (1 to the batch size). */
  get capacity(): number {
    return this.#capacity;
  }

  /** The attempts this lane holds: taken, not yet recorded. */
  get held(): readonly ClaimedTask[] {
    return this.#held;
  }

  /** Starts running `tasks`; `onDone` is called when the lane is idle again. */
  start(tasks: readonly ClaimedTask[], onDone: () => void): void {
    this.#held = tasks;
    this.#running = this.#run(tasks).catch((error) => {
      this.#ctx.log({ level: "warn", message: `a lane failed: ${errorMessage(error)}` });
    }).finally(() => {
      this.#held = [];
      this.#running = null;
      onDone();
    });
  }

  /** Resolves when the current batch (if any) is recorded. */
  async whenIdle(): Promise<void> {
    await this.#running;
  }

  /** Cuts the batch short: cancels running programs; their attempts end lost. */
  abort(): void {
    this.#aborting = true;
    for (const query of this.#inflight) query.cancel();
  }

  /** Opens the lane's connection now, so a server that refuses it fails the start, not a batch. */
  async connect(): Promise<void> {
    await this.#sql`SELECT 1`;
  }

  /** Closes the connection. */
  close(): Promise<void> {
    return this.#sql.end({ timeout: 1 });
  }

  async #run(tasks: readonly ClaimedTask[]): Promise<void> {
    const started = performance.now();
    try {
      this.#ctx.report(await this.#transaction(tasks));
      const perTask = Math.max((performance.now() - started) / tasks.length, 0.01);
      this.#capacity = Math.max(
        1,
        Math.min(this.#ctx.batchSize, Math.floor(BATCH_BUDGET_MS / perTask)),
      );
    } catch (error) {
      const connectionLost = isConnectionError(error);
      if (connectionLost) this.#reopen();
      else await settle(this.#sql`ROLLBACK`);
      if (!this.#aborting) {
        this.#ctx.log({
          level: "warn",
          message: connectionLost
            ? `a batch of ${tasks.length} lost its database connection (${errorMessage(error)}); ` +
              "recording its attempts as lost"
            : `a batch of ${tasks.length} failed: ${errorMessage(error)}`,
        });
      }
      const reason = this.#aborting
        ? STOPPED
        : connectionLost
        ? `worker lost its database connection: ${errorMessage(error)}`
        : `worker could not run the batch: ${errorMessage(error)}`;
      await this.#recordLost(tasks.map((t) => lost(t, reason)));
    }
  }

  // The batch's transaction; throws when the batch as a whole failed (nothing of it committed).
  async #transaction(tasks: readonly ClaimedTask[]): Promise<TaskOutcome[]> {
    const sql = this.#sql;
    const steps = [
      settle(sql`BEGIN`),
      settle(sql<{ task_id: number }[]>`
        SELECT task_id FROM public.tasks
        WHERE status = 'running'
          AND (task_id, attempt_count) IN (
            SELECT * FROM unnest(${tasks.map((t) => t.taskId)}::bigint[],
                                 ${tasks.map((t) => t.attempt)}::integer[]))
        ORDER BY task_id
        FOR UPDATE`),
    ];
    if (this.#ctx.taskTimeoutMs > 0) {
      // SET LOCAL takes no parameters; set_config(..., true) is the same thing
      steps.push(
        settle(
          sql`SELECT set_config('statement_timeout', ${String(this.#ctx.taskTimeoutMs)}, true)`,
        ),
      );
    }
    const begun = await withinStall(Promise.all(steps));
    if (firstError(begun) !== undefined) throw firstError(begun);
    const locked = new Set(
      (begun[1] as { value: { task_id: number }[] }).value.map((r) => r.task_id),
    );
    // a task not locked was rescued (and maybe retaken) since it was taken: not ours to run
    const mine = tasks.filter((t) => locked.has(t.taskId));
    const taken = tasks.filter((t) => !locked.has(t.taskId));

    const results = [
      ...await this.#runLocal(mine.filter((t) => t.host === null)),
      ...await this.#runRemote(mine.filter((t) => t.host !== null)),
    ];
    const [completed, committed] = await withinStall(Promise.all([
      results.length > 0 ? settle(completeStatement(sql, results)) : null,
      settle(sql`COMMIT`),
    ]));
    // after a failed complete_tasks the COMMIT rolled back: the batch failed as a whole
    if (completed && !completed.ok) throw completed.error;
    if (!committed.ok) throw committed.error;
    const statuses = completed?.ok ? completed.value[0].statuses : [];
    return [
      ...outcomes(results, statuses, this.#ctx.worker),
      ...outcomes(
        taken.map((t) => lost(t, "the task was taken from this worker")),
        [],
        this.#ctx.worker,
      ),
    ];
  }

  // Runs SQL programs, one attempt_task statement each, all pipelined: the
  // function runs the program under a savepoint and returns its error instead
  // of raising, so one failure does not stop the rest.
  async #runLocal(tasks: readonly ClaimedTask[]): Promise<AttemptResult[]> {
    if (this.#aborting) return tasks.map((task) => lost(task, STOPPED));
    const sql = this.#sql;
    const runs = tasks.map((task) => {
      const query = sql<Attempted[]>`
        SELECT result, error, context, error_code, started, finished
        FROM public.attempt_task(${task.taskId})`;
      this.#inflight.add(query);
      return { task, query, settled: settle(query) };
    });
    const results: AttemptResult[] = [];
    let previous = performance.now();
    let broken: unknown;
    for (const { task, query, settled } of runs) {
      const ran = await settled;
      this.#inflight.delete(query);
      const duration = ran.at - previous;
      previous = ran.at;
      if (!ran.ok) {
        broken ??= ran.error;
        continue;
      }
      const [row] = ran.value;
      const attempt = row.error_code === null
        ? finished(task, row.result ?? "", duration)
        : this.#failure(task, row.error ?? "unknown error", row.error_code, row.context, duration);
      if (row.started && row.finished) {
        attempt.ranAt = { started: row.started, finished: row.finished };
      }
      results.push(attempt);
    }
    // a statement that failed (rather than reporting its task's failure) aborted the transaction
    if (broken !== undefined) throw broken;
    return results;
  }

  // Remote tasks run side by side; the local transaction keeps their rows locked meanwhile.
  #runRemote(tasks: readonly ClaimedTask[]): Promise<AttemptResult[]> {
    return Promise.all(tasks.map(async (task) => {
      if (this.#aborting) return lost(task, STOPPED);
      const started = performance.now();
      let query: { cancel(): void } | null = null;
      try {
        const result = await this.#ctx.remote.run(task, (q) => {
          query = q;
          this.#inflight.add(q);
        });
        return finished(task, result, performance.now() - started);
      } catch (error) {
        if (error instanceof RemoteUnreachableError) {
          return failed(task, error.message, null, performance.now() - started);
        }
        const { code = "", where = null } = error as { code?: string; where?: string | null };
        return this.#failure(task, errorMessage(error), code, where, performance.now() - started);
      } finally {
        if (query) this.#inflight.delete(query);
      }
    }));
  }

  // A program's failure as an attempt result; 57014 is a timeout unless the worker is stopping.
  #failure(
    task: ClaimedTask,
    message: string,
    code: string,
    context: string | null,
    durationMs: number,
  ): AttemptResult {
    if (code === "57014") {
      if (this.#aborting) return lost(task, STOPPED, durationMs);
      const timeout = this.#ctx.taskTimeoutMs;
      if (timeout > 0 && (/statement timeout/.test(message) || durationMs >= timeout)) {
        return failed(task, `timed out after ${timeout} ms`, context, durationMs);
      }
    }
    return failed(task, message, context, durationMs);
  }

  // A new pool after a lost or stalled connection (see the worker loop for why
  // not the driver's own reconnection); the old one is torn down unwaited.
  #reopen(): void {
    const stalled = this.#sql;
    this.#sql = this.#open();
    stalled.end({ timeout: 0 }).catch(() => {});
  }

  // Records attempts whose transaction failed, retrying while the connection is
  // down, for about a lease: past that the lane stops holding them (their leases
  // are no longer renewed), so the rescuer records them instead.
  async #recordLost(results: AttemptResult[]): Promise<void> {
    const deadline = performance.now() + RECORD_LOST_FOR_MS;
    for (let failures = 1;; failures++) {
      try {
        this.#ctx.report(
          await withinStall(completeTasks(this.#sql, results, this.#ctx.worker)),
        );
        return;
      } catch (error) {
        if (isConnectionError(error)) this.#reopen();
        if (
          !isConnectionError(error) || this.#ctx.giveUp.aborted || performance.now() > deadline
        ) {
          this.#ctx.log({
            level: "warn",
            message: `could not record ${results.length} lost attempt(s), ` +
              `left to the rescuer: ${errorMessage(error)}`,
          });
          return;
        }
        await sleep(reconnectDelay(failures), this.#ctx.giveUp);
      }
    }
  }
}
