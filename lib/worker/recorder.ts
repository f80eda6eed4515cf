/**
 * Completing attempts: one `complete_tasks` call records a whole batch's
 * outcomes, and the SQL (finish_task / fail_task) decides what follows each.
 * @module
 */
import type { ClaimedTask } from "./claim.ts";
import type { Sql, TransactionSql } from "../db/connect.ts";
import { type AttemptEnd, outcomeOf, type StatusAfter, type TaskOutcome } from "./outcome.ts";

/** How one attempt ended, as the lane that ran it saw it. */
export interface AttemptResult {
  task: ClaimedTask;
  end: AttemptEnd;
  /** The rendered result of a finished attempt. */
  result: string | null;
  /** The error message of a failed or lost attempt. */
  error: string | null;
  /** Where the error happened (PostgreSQL's context), if known. */
  context: string | null;
  durationMs: number;
  /** When the attempt really ran, if known: in a batch, not when it was taken or completed. */
  ranAt?: { started: Date; finished: Date };
}

/** A finished attempt. */
export function finished(task: ClaimedTask, result: string, durationMs: number): AttemptResult {
  return { task, end: "finished", result, error: null, context: null, durationMs };
}

/** A failed attempt: the program raised, or it timed out. */
export function failed(
  task: ClaimedTask,
  error: string,
  context: string | null,
  durationMs: number,
): AttemptResult {
  return { task, end: "error", result: null, error, context, durationMs };
}

/** A lost attempt: the worker stopped or lost its connection before it ended. */
export function lost(task: ClaimedTask, reason: string, durationMs = 0): AttemptResult {
  return { task, end: "lost", result: null, error: reason, context: null, durationMs };
}

/** The `complete_tasks` statement for `results`, not yet sent. */
export function completeStatement(sql: Sql | TransactionSql, results: readonly AttemptResult[]) {
  // as JSON: postgres.js reads a NULL element of a text[] as the string "NULL"
  return sql<{ statuses: StatusAfter[] }[]>`
    SELECT to_json(public.complete_tasks(
      ${results.map((r) => r.task.taskId)}::bigint[],
      ${results.map((r) => r.task.attempt)}::integer[],
      ${results.map((r) => r.result)}::text[],
      ${results.map((r) => r.error)}::text[],
      ${results.map((r) => r.context)}::text[],
      ${results.map((r) => r.end)}::text[],
      ${results.map((r) => r.ranAt?.started.toISOString() ?? null)}::timestamptz[],
      ${results.map((r) => r.ranAt?.finished.toISOString() ?? null)}::timestamptz[])) AS statuses`;
}

/** Records `results` in one statement (its own transaction) and says how each ended. */
export async function completeTasks(
  sql: Sql,
  results: readonly AttemptResult[],
  worker: string,
): Promise<TaskOutcome[]> {
  if (results.length === 0) return [];
  const [row] = await completeStatement(sql, results);
  return outcomes(results, row.statuses, worker);
}

/** Pairs each result with the status `complete_tasks` returned for it. */
export function outcomes(
  results: readonly AttemptResult[],
  statuses: readonly StatusAfter[],
  worker: string,
): TaskOutcome[] {
  return results.map((r, i) => ({
    taskId: r.task.taskId,
    program: r.task.program,
    attempt: r.task.attempt,
    maxAttempts: r.task.maxAttempts,
    durationMs: r.durationMs,
    outcome: outcomeOf(r.end, statuses[i] ?? null),
    status: statuses[i] ?? null,
    error: statuses[i] === null && r.end === "finished"
      ? "the task had been taken from this worker; its result was dropped"
      : r.error,
    worker,
  }));
}
