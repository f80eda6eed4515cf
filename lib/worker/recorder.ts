/**
 * Recording attempts that did not end inside `run_tasks` (remote runs, a
 * statement that failed as a whole, a stopping or disconnected worker): one
 * `record_attempts` call per group, the same SQL function `run_tasks`, the
 * rescuer and process_tasks record through. SQL decides what follows each
 * attempt; this file only pairs its answer with the tasks.
 * @module
 */
import type { Sql, TransactionSql } from "../db/connect.ts";
import type { ClaimedTask } from "./claim.ts";
import type { AttemptEnd, Outcome, StatusAfter, TaskOutcome } from "./outcome.ts";

/** How one attempt ended, as the lane that ran it saw it. */
export interface AttemptResult {
  task: ClaimedTask;
  end: AttemptEnd;
  /** The rendered result of a finished attempt. */
  result: string | null;
  /** The error message of a failed or lost attempt. */
  error: string | null;
  /** The SQLSTATE of a failed attempt, if PostgreSQL raised it. */
  code: string | null;
  /** Where the error happened (PostgreSQL's context), if known. */
  context: string | null;
  durationMs: number;
}

/** A row of `record_attempts`, or of `run_tasks` for a task it ran. */
export interface RecordedRow {
  task_id: number;
  status: StatusAfter;
  outcome: Outcome;
  error: string | null;
}

/** The reason recorded for attempts cut short by a stopping worker. */
export const STOPPED = "worker stopped before the task finished";

/** A finished attempt. */
export function finished(task: ClaimedTask, result: string, durationMs: number): AttemptResult {
  return { task, end: "finished", result, error: null, code: null, context: null, durationMs };
}

/** A failed attempt: the program raised (`code` is its SQLSTATE), or it timed out. */
export function failed(
  task: ClaimedTask,
  error: string,
  code: string | null,
  context: string | null,
  durationMs: number,
): AttemptResult {
  return { task, end: "error", result: null, error, code, context, durationMs };
}

/** A lost attempt: the worker stopped or lost its connection before it ended. */
export function lost(task: ClaimedTask, reason: string, durationMs = 0): AttemptResult {
  return { task, end: "lost", result: null, error: reason, code: null, context: null, durationMs };
}

/** An attempt not run, or stopped, because someone asked to cancel its task. */
export function cancelled(task: ClaimedTask, durationMs = 0): AttemptResult {
  return {
    task,
    end: "cancelled",
    result: null,
    error: null,
    code: null,
    context: null,
    durationMs,
  };
}

/**
 * A program cancelled (57014) while its worker is stopping did not fail: the
 * worker cut it short, so its attempt is lost, not an error.
 */
export function unlessStopping(result: AttemptResult, stopping: boolean): AttemptResult {
  return stopping && result.code === "57014"
    ? lost(result.task, STOPPED, result.durationMs)
    : result;
}

/** Where and how to record: the schema, and the task timeout a 57014 means. */
export interface RecordTarget {
  schema: string;
  worker: string;
  taskTimeoutMs: number;
}

/** The `record_attempts` statement for `results`, not yet sent (it can be pipelined). */
export function recordStatement(
  sql: Sql | TransactionSql,
  results: readonly AttemptResult[],
  target: RecordTarget,
) {
  // text[] parameters as JSON: postgres.js reads a NULL element of a text[] as "NULL"
  const texts = (pick: (r: AttemptResult) => string | null) =>
    sql.json(results.map(pick)) as unknown as string;
  const timeout = target.taskTimeoutMs > 0 ? target.taskTimeoutMs : null;
  return sql<RecordedRow[]>`
    SELECT task_id, status, outcome, error FROM ${sql(target.schema)}.record_attempts(
      ${results.map((r) => r.task.taskId)}::bigint[],
      ${results.map((r) => r.task.attempt)}::integer[],
      ${results.map((r) => r.end)}::text[],
      ARRAY(SELECT jsonb_array_elements_text(${texts((r) => r.result)}::jsonb)),
      ARRAY(SELECT jsonb_array_elements_text(${texts((r) => r.error)}::jsonb)),
      ARRAY(SELECT jsonb_array_elements_text(${texts((r) => r.code)}::jsonb)),
      ARRAY(SELECT jsonb_array_elements_text(${texts((r) => r.context)}::jsonb)),
      timeout => ${timeout}::integer * interval '1 millisecond')`;
}

/**
 * Records `results` in one statement (its own transaction) and says how each
 * ended: one event per attempt the database recorded, none for an attempt it
 * no longer held.
 */
export async function recordAttempts(
  sql: Sql,
  results: readonly AttemptResult[],
  target: RecordTarget,
): Promise<TaskOutcome[]> {
  if (results.length === 0) return [];
  return reportOf(results, await recordStatement(sql, results, target), target.worker);
}

/**
 * The worker's events for `results`, from the rows SQL returned for them. A
 * result with no row was not recorded: the database no longer held that
 * attempt (it was rescued, or a crash undid its take), so it is no event. The
 * events report only what the database holds.
 */
export function reportOf(
  results: readonly { task: ClaimedTask; durationMs: number }[],
  rows: readonly RecordedRow[],
  worker: string,
): TaskOutcome[] {
  const byId = new Map(rows.map((row) => [row.task_id, row]));
  return results.flatMap(({ task, durationMs }) => {
    const row = byId.get(task.taskId);
    if (!row) return [];
    return [{
      taskId: task.taskId,
      program: task.program,
      attempt: task.attempt,
      maxAttempts: task.maxAttempts,
      durationMs,
      outcome: row.outcome,
      status: row.status,
      error: row.error,
      worker,
    }];
  });
}
