/**
 * The careful path's run: a lane's SQL programs, taken before, run in one
 * `run_tasks` statement per batch. The server locks the batch's rows (so a rescuer, which skips locked
 * rows, cannot take them mid-run), runs each program under a savepoint (a
 * failure rolls back only that task) and records every outcome before the
 * statement's transaction commits: a program's effects and its ending commit
 * together or not at all. One round trip and one commit per batch.
 * @module
 */
import { isConnectionError, STALL_MS, withinStall } from "../db/pool.ts";
import { errorMessage } from "../errors.ts";
import { type ClaimedTask, taskTimeoutMs } from "./claim.ts";
import { faultOf, GiveBack } from "./give_back.ts";
import type { LaneHandle } from "./lane.ts";
import {
  type AttemptResult,
  failed,
  lost,
  recordAttempts,
  type RecordedRow,
  reportOf,
  unlessStopping,
} from "./recorder.ts";

/** A row of `run_tasks`: what became of one task of the batch. */
interface RunRow {
  task_id: number;
  outcome: RecordedRow["outcome"] | "taken" | "interrupted" | "unrun";
  status: RecordedRow["status"];
  error: string | null;
  context: string | null;
  duration_ms: number;
}

/**
 * Runs `tasks` and records them. A statement timeout that cut a later task
 * short, before it had its full time, leaves it and those after it unrun: they
 * go again in a new statement. A statement that failed as a whole (a timeout
 * outside any program, an error no savepoint caught) committed nothing: its
 * tasks then go one per statement, where such a failure is that task's own, so
 * one bad task cannot cost the others of its batch an attempt. That holds when
 * the statement lost its connection too (a program may kill its own backend),
 * as long as the server answers on a new one; a task that loses its connection
 * alone is charged, as lost. A failure that is not the task's (the database
 * cannot record, say) throws {@link GiveBack}. Returns the tasks left unrun
 * because the lane is stopping. With `oneByOne`, every task has a statement of
 * its own from the start (the tasks of a fast batch that died).
 */
export async function runLocal(
  lane: LaneHandle,
  tasks: readonly ClaimedTask[],
  { oneByOne = false } = {},
): Promise<ClaimedTask[]> {
  const { ctx } = lane;
  // a statement has one timeout: a program's own needs statements of its own
  const timeoutOf = (task: ClaimedTask) => taskTimeoutMs(task, ctx.taskTimeoutMs);
  const timeouts = new Set(tasks.map(timeoutOf));
  if (timeouts.size > 1) {
    const left: ClaimedTask[] = [];
    for (const ms of timeouts) {
      left.push(
        ...await runLocal(lane, tasks.filter((task) => timeoutOf(task) === ms), { oneByOne }),
      );
    }
    return left;
  }
  let pending = tasks;
  let single = oneByOne;
  while (pending.length > 0) {
    if (lane.aborting) return [...pending];
    const batch = single ? pending.slice(0, 1) : pending;
    const started = performance.now();
    // a cancel the lane sent for a cancel request may stop another task
    // than the one asked for: that one goes again, uncharged
    const cancelsBefore = lane.cancelsSent;
    let rows: RunRow[];
    try {
      rows = await runStatement(lane, batch);
    } catch (error) {
      if (lane.aborting) throw error;
      const { code: sqlstate } = error as { code?: string };
      if (sqlstate === "57014" && lane.cancelsSent !== cancelsBefore) continue;
      const connectionLost = isConnectionError(error);
      // a server that does not answer: the lane records the batch as lost
      if (connectionLost && (ctx.stopping.aborted || !(await lane.recover()))) throw error;
      if (batch.length > 1) {
        if (connectionLost) {
          ctx.log({
            level: "warn",
            message: `a batch of ${batch.length} lost its database connection ` +
              `(${errorMessage(error)}); running its tasks again one per statement`,
          });
        }
        single = true;
        continue;
      }
      const { code = null } = error as { code?: string };
      const fault = connectionLost ? "task" : faultOf(code);
      if (fault !== "task") throw new GiveBack(error, fault === "database");
      const ended = connectionLost
        ? lost(batch[0], `worker lost its database connection: ${errorMessage(error)}`)
        : failed(batch[0], errorMessage(error), code, null, performance.now() - started);
      await record(lane, [ended]);
      pending = pending.slice(1);
      continue;
    }
    const byId = new Map(batch.map((t) => [t.taskId, t]));
    const ran: { task: ClaimedTask; durationMs: number }[] = [];
    const cut = [];
    const unrun: ClaimedTask[] = [];
    for (const row of rows) {
      const task = byId.get(row.task_id)!;
      if (row.outcome === "interrupted" && !lane.aborting && lane.cancelsSent !== cancelsBefore) {
        unrun.push(task);
      } else if (row.outcome === "interrupted") {
        // a cancel the worker did not send is the attempt's failure
        const stopped = failed(task, row.error ?? "", "57014", row.context, row.duration_ms);
        cut.push(unlessStopping(stopped, lane.aborting));
      } else if (row.outcome === "unrun") {
        unrun.push(task);
      } else {
        ran.push({ task, durationMs: row.duration_ms ?? 0 });
      }
    }
    const recorded = rows.filter((r): r is RunRow & RecordedRow =>
      r.outcome !== "taken" && r.outcome !== "interrupted" && r.outcome !== "unrun"
    );
    lane.report(reportOf(ran, recorded, ctx.worker), ran.map((r) => r.task));
    ctx.times.learn(ran.map((r) => [r.task.programId, r.durationMs] as const));
    if (cut.length > 0) await record(lane, cut);
    pending = [...unrun, ...pending.slice(batch.length)];
  }
  return [];
}

// Records attempts that ended outside run_tasks. A refusal other than a lost
// connection means the database cannot record them now: they are given back.
async function record(lane: LaneHandle, results: AttemptResult[]): Promise<void> {
  // one statement's attempts, under one timeout: what a statement timeout means
  const target = {
    ...lane.ctx,
    taskTimeoutMs: taskTimeoutMs(results[0].task, lane.ctx.taskTimeoutMs),
  };
  try {
    lane.report(
      await withinStall(recordAttempts(lane.sql, results, target)),
      results.map((r) => r.task),
    );
  } catch (error) {
    throw isConnectionError(error) ? error : new GiveBack(error, true);
  }
}

// One run_tasks statement under the batch's task timeout.
function runStatement(lane: LaneHandle, batch: readonly ClaimedTask[]): Promise<RunRow[]> {
  const sql = lane.sql;
  const query = sql<RunRow[]>`
    SELECT task_id, outcome, status, error, context, duration_ms
    FROM ${sql(lane.ctx.schema)}.run_tasks(${batch.map((t) => t.taskId)}::bigint[],
                                           ${batch.map((t) => t.attempt)}::integer[],
                                           max_result_bytes => ${lane.ctx.maxResultBytes}::integer)`;
  return underTimeout(
    lane,
    taskTimeoutMs(batch[0], lane.ctx.taskTimeoutMs),
    query,
    batch.map((t) => t.taskId),
  );
}

/**
 * Runs `query`, a statement that runs programs, between two that set the
 * session's statement_timeout: `timeoutMs` for it alone, none for the lane's
 * bookkeeping (a role's or database's own timeout must not cut batches or
 * their recording either). The three are pipelined, one round trip. The first,
 * bounded by the stall timeout, also catches a connection that went dead
 * without a word (the statement itself may rightly run as long as its
 * programs take). While it runs, a cancel request for one of `taskIds` (which
 * may still grow) cancels it.
 */
export async function underTimeout<T>(
  lane: LaneHandle,
  timeoutMs: number,
  query: PromiseLike<T> & { cancel(): void },
  taskIds: readonly number[],
): Promise<T> {
  const sql = lane.sql;
  const armed = settle(sql`SELECT set_config('statement_timeout', ${String(timeoutMs)}, false)`);
  const untrack = lane.track(query, taskIds);
  try {
    // not cancellable once it has ended: a cancel would hit the next statement
    const ran = settle(query).finally(untrack);
    const disarmed = settle(sql`SELECT set_config('statement_timeout', '0', false)`);
    // only a stall is fatal here: if setting the timeout failed, the statement
    // still ran (and may have committed), and its own result says how
    await withinStall(armed);
    // the statement cannot outlast its timeout by much; with none, it runs as
    // long as its programs take
    const result = await (timeoutMs > 0 ? withinStall(ran, timeoutMs + STALL_MS) : ran);
    if (!result.ok && isConnectionError(result.error)) throw result.error;
    // what committed is reported whatever happens to the connection now. A
    // session left with the task timeout (a reset failed, or the timeout cut
    // the statement that ends it) would cut the lane's bookkeeping: start a new one.
    const unset = await withinStall(disarmed).catch((error) => ({ ok: false as const, error }));
    if (!unset.ok) lane.reopen();
    if (!result.ok) throw result.error;
    return result.value;
  } finally {
    untrack();
  }
}

type Settled<T> = { ok: true; value: T } | { ok: false; error: unknown };

/**
 * Starts a query (postgres.js sends it when first awaited) and never rejects,
 * so a pipelined statement that fails is never an unhandled rejection.
 */
export function settle<T>(query: PromiseLike<T>): Promise<Settled<T>> {
  return Promise.resolve(query).then(
    (value) => ({ ok: true as const, value }),
    (error) => ({ ok: false as const, error }),
  );
}
