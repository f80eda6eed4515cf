/**
 * Execution: a lane owns one connection and runs a batch of tasks. SQL programs
 * run in one `run_tasks` statement per batch: the server locks the batch's rows
 * (so a rescuer, which skips locked rows, cannot take them mid-run), runs each
 * program under a savepoint (a failure rolls back only that task) and records
 * every outcome before the statement's transaction commits: a program's effects
 * and its completion commit together or not at all. One round trip and one
 * commit per batch, whatever its size and however many of its tasks fail.
 *
 * Remote tasks run on their own servers while one local transaction keeps
 * their rows locked and then records their outcomes.
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
} from "./recorder.ts";
import {
  errorMessage,
  isConnectionError,
  reconnectDelay,
  STALL_MS,
  withinStall,
} from "../db/pool.ts";
import type { Sql } from "../db/connect.ts";
import type { StatusAfter, TaskOutcome, WorkerLog } from "./outcome.ts";
import { RemoteUnreachableError } from "./remote.ts";
import type { RemotePools } from "./remote.ts";
import { sleep } from "./wake.ts";

/** The reason recorded for attempts cut short by a stopping worker. */
export const STOPPED = "worker stopped before the task finished";

// What a worker reports for a task it took but no longer held when it came to run it.
const TAKEN = "the task was taken from this worker";

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

/** A row of `run_tasks`: what became of one task of the batch. */
interface RunRow {
  task_id: number;
  state: "ran" | "not held" | "cancelled" | "unrun";
  status: StatusAfter;
  error: string | null;
  context: string | null;
  duration_ms: number;
}

type Settled<T> = { ok: true; value: T } | { ok: false; error: unknown };

/** How long a lane keeps trying to record its lost attempts before leaving them to the rescuer. */
const RECORD_LOST_FOR_MS = 30_000;

// Starts a query (postgres.js sends it when first awaited) and never rejects, so
// a pipelined statement that fails is never an unhandled rejection.
function settle<T>(query: PromiseLike<T>): Promise<Settled<T>> {
  return Promise.resolve(query).then(
    (value) => ({ ok: true as const, value }),
    (error) => ({ ok: false as const, error }),
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
      const local = tasks.filter((t) => t.host === null);
      const remote = tasks.filter((t) => t.host !== null);
      if (local.length > 0) await this.#runLocal(local);
      if (remote.length > 0) this.#record(await this.#transaction(remote));
      const perTask = Math.max((performance.now() - started) / tasks.length, 0.01);
      this.#capacity = Math.max(
        1,
        Math.min(this.#ctx.batchSize, Math.floor(BATCH_BUDGET_MS / perTask)),
      );
    } catch (error) {
      const connectionLost = isConnectionError(error);
      if (connectionLost) this.#reopen();
      else await settle(this.#sql`ROLLBACK`);
      const left = this.#held;
      if (!this.#aborting) {
        this.#ctx.log({
          level: "warn",
          message: connectionLost
            ? `a batch of ${left.length} lost its database connection (${errorMessage(error)}); ` +
              "recording its attempts as lost"
            : `a batch of ${left.length} failed: ${errorMessage(error)}`,
        });
      }
      const reason = this.#aborting
        ? STOPPED
        : connectionLost
        ? `worker lost its database connection: ${errorMessage(error)}`
        : `worker could not run the batch: ${errorMessage(error)}`;
      await this.#recordLost(left.map((t) => lost(t, reason)));
    }
  }

  // Reports outcomes; the lane no longer holds their tasks.
  #record(ended: readonly TaskOutcome[]): void {
    this.#ctx.report([...ended]);
    const done = new Set(ended.map((o) => o.taskId));
    this.#held = this.#held.filter((t) => !done.has(t.taskId));
  }

  // SQL programs: one run_tasks statement runs the batch and records every
  // outcome (its own transaction). A statement timeout that cut a later task
  // short, before it had its full time, leaves it and those after it unrun;
  // they go again in a new statement. A statement that failed as a whole (a
  // timeout outside any program, an error no savepoint caught) committed
  // nothing: its tasks then go one per statement, where such a failure is that
  // task's own, so one bad task cannot fail the others of its batch.
  async #runLocal(tasks: readonly ClaimedTask[]): Promise<void> {
    let pending = tasks;
    let single = false;
    while (pending.length > 0) {
      if (this.#aborting) {
        await this.#recordLost(pending.map((task) => lost(task, STOPPED)));
        return;
      }
      const batch = single ? pending.slice(0, 1) : pending;
      const started = performance.now();
      let rows: RunRow[];
      try {
        rows = await this.#runStatement(batch);
      } catch (error) {
        if (this.#aborting || isConnectionError(error)) throw error;
        pending = pending.slice(batch.length);
        if (batch.length > 1) {
          single = true;
          pending = [...batch, ...pending];
          continue;
        }
        const { code = "" } = error as { code?: string };
        const failure = this.#failure(
          batch[0],
          errorMessage(error),
          code,
          null,
          performance.now() - started,
        );
        this.#record(await withinStall(completeTasks(this.#sql, [failure], this.#ctx.worker)));
        continue;
      }
      const byId = new Map(batch.map((t) => [t.taskId, t]));
      const ran: AttemptResult[] = [];
      const statuses: StatusAfter[] = [];
      const cut: AttemptResult[] = [];
      const unrun: ClaimedTask[] = [];
      for (const row of rows) {
        const task = byId.get(row.task_id)!;
        if (row.state === "ran") {
          ran.push(
            row.error === null
              ? finished(task, "", row.duration_ms)
              : failed(task, row.error, null, row.duration_ms),
          );
          statuses.push(row.status);
        } else if (row.state === "not held") {
          ran.push(lost(task, TAKEN));
          statuses.push(null);
        } else if (row.state === "cancelled") {
          // a timeout, or a cancel the worker did not send, is the attempt's failure
          cut.push(
            this.#aborting
              ? lost(task, STOPPED, row.duration_ms)
              : failed(task, row.error ?? "", row.context, row.duration_ms),
          );
        } else {
          unrun.push(task);
        }
      }
      this.#record(outcomes(ran, statuses, this.#ctx.worker));
      if (cut.length > 0) {
        this.#record(await withinStall(completeTasks(this.#sql, cut, this.#ctx.worker)));
      }
      pending = [...unrun, ...pending.slice(batch.length)];
    }
  }

  // One run_tasks statement, between two that set the session's
  // statement_timeout: the task timeout for it alone, none for the lane's
  // bookkeeping (a role's or database's own timeout must not cut batches or
  // their recording either). The three are pipelined, one round trip. The
  // first, bounded by the stall timeout, also catches a connection that went
  // dead without a word (run_tasks itself may rightly run as long as its
  // programs take).
  async #runStatement(batch: readonly ClaimedTask[]): Promise<RunRow[]> {
    const sql = this.#sql;
    const timeout = this.#ctx.taskTimeoutMs;
    const armed = settle(sql`SELECT set_config('statement_timeout', ${String(timeout)}, false)`);
    const query = sql<RunRow[]>`
      SELECT task_id, state, status, error, context, duration_ms
      FROM public.run_tasks(${batch.map((t) => t.taskId)}::bigint[],
                            ${batch.map((t) => t.attempt)}::integer[])`;
    this.#inflight.add(query);
    try {
      const ran = settle(query);
      const disarmed = settle(sql`SELECT set_config('statement_timeout', '0', false)`);
      // only a stall is fatal here: if setting the timeout failed, run_tasks still
      // ran (and may have committed), and its own result says how
      await withinStall(armed);
      // the statement cannot outlast its timeout by much; with none, it runs as
      // long as its programs take
      const result = await (timeout > 0 ? withinStall(ran, timeout + STALL_MS) : ran);
      if (!result.ok) throw result.error;
      // the batch is committed: its outcomes are reported whatever happens to the
      // connection now. A session left with the task timeout (the reset failed or
      // was cancelled) would cut the lane's bookkeeping: start a new one.
      const unset = await withinStall(disarmed).catch((error) => ({ ok: false as const, error }));
      if (!unset.ok) this.#reopen();
      return result.value;
    } finally {
      this.#inflight.delete(query);
    }
  }

  // Remote tasks: one transaction keeps their rows locked while they run on
  // their servers, and records their outcomes before it commits. Throws when
  // the transaction as a whole failed (nothing of it committed).
  async #transaction(tasks: readonly ClaimedTask[]): Promise<TaskOutcome[]> {
    const sql = this.#sql;
    const begun = await withinStall(Promise.all([
      settle(sql`BEGIN`),
      settle(sql<{ task_id: number }[]>`
        SELECT task_id FROM public.tasks
        WHERE task_id = ANY (${tasks.map((t) => t.taskId)}::bigint[]) AND status = 'running'
          AND (task_id, attempt_count) IN (
            SELECT * FROM unnest(${tasks.map((t) => t.taskId)}::bigint[],
                                 ${tasks.map((t) => t.attempt)}::integer[]))
        ORDER BY task_id
        FOR UPDATE`),
    ]));
    if (firstError(begun) !== undefined) throw firstError(begun);
    const locked = new Set(
      (begun[1] as { value: { task_id: number }[] }).value.map((r) => r.task_id),
    );
    // a task not locked was rescued (and maybe retaken) since it was taken: not ours to run
    const mine = tasks.filter((t) => locked.has(t.taskId));
    const taken = tasks.filter((t) => !locked.has(t.taskId));

    const results = await this.#runRemote(mine);
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
        taken.map((t) => lost(t, TAKEN)),
        [],
        this.#ctx.worker,
      ),
    ];
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

  // A program's failure as an attempt result; 57014 is a timeout unless the
  // worker is stopping (for local tasks, only from a one-task statement that
  // failed as a whole: run_tasks reports its programs' timeouts itself).
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
        this.#record(await withinStall(completeTasks(this.#sql, results, this.#ctx.worker)));
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
