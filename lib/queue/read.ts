/**
 * Reading tasks back: a filtered list with a count per status, and one task
 * with every attempt it made (`empapi.task_attempts`).
 * @module
 */
import type { Queryable } from "../db/connect.ts";
import { RetaskError } from "../errors.ts";
import { resolveProgram } from "./programs.ts";

/** The four statuses a task can have, in life-cycle order. */
export const STATUSES = ["scheduled", "running", "finished", "error"] as const;

/** A task's status. */
export type TaskStatus = typeof STATUSES[number];

/** Checks a status given by a person; anything else is an input error listing the four. */
export function parseStatus(text: string): TaskStatus {
  const status = text.trim().toLowerCase();
  if ((STATUSES as readonly string[]).includes(status)) return status as TaskStatus;
  throw new RetaskError(
    "invalid_input",
    `unknown status "${text}"; use one of ${STATUSES.join(", ")}`,
  );
}

/** A task as `status` shows it. Times are the latest attempt's. */
export interface TaskRow {
  task_id: number;
  program_id: number;
  /** The program's name; null when the program row is gone. */
  program: string | null;
  status: TaskStatus;
  /** Attempts started so far (`attempt_count`). */
  attempt: number;
  max_attempts: number;
  params: Record<string, unknown> | null;
  created: Date;
  run_after: Date;
  started: Date | null;
  finished: Date | null;
  /** The latest attempt's run time; for a running task, so far. Null before the first. */
  duration_ms: number | null;
  /** Starts with `attempt n of m`; null until an attempt ends. */
  result: string | null;
  host: string | null;
  port: string | null;
  worker: string | null;
}

/** Tasks per status; every status is present, zero when none. */
export type StatusCounts = Record<TaskStatus, number> & { total: number };

/** Filters for {@link listTasks}. */
export interface TaskFilter {
  status?: TaskStatus;
  /** Program id or name; unknown ones are an input error naming those there are. */
  program?: string | number;
  /** Newest tasks first, at most this many (default 20). */
  limit?: number;
}

/** What {@link listTasks} returns. */
export interface TaskList {
  /** Newest first. */
  tasks: TaskRow[];
  /** Counts for the program filter (not the status filter or the limit). */
  counts: StatusCounts;
  /** Tasks matching all the filters, of which `tasks` are the newest `limit`. */
  matching: number;
}

// The select list and FROM clause both queries share: a task as a TaskRow.
function taskRows(sql: Queryable) {
  return sql`
    SELECT t.task_id, t.program_id, p.name AS program, t.status, t.attempt_count AS attempt,
           t.max_attempts, t.params, t.created, t.run_after, t.started, t.finished,
           (extract(epoch FROM coalesce(t.finished, CASE WHEN t.status = 'running'
                                                          THEN clock_timestamp() END) - t.started)
            * 1000)::float8 AS duration_ms,
           t.result, t.host, t.port, t.worker
    FROM public.tasks t LEFT JOIN public.programs p ON p.program_id = t.program_id`;
}

/** The newest tasks matching `filter`, and how many tasks there are in each status. */
export async function listTasks(sql: Queryable, filter: TaskFilter = {}): Promise<TaskList> {
  const programId = filter.program === undefined ? null : await resolveProgram(sql, filter.program);
  const tasks = await sql<TaskRow[]>`
    ${taskRows(sql)}
    WHERE (${filter.status ?? null}::text IS NULL OR t.status = ${filter.status ?? null}::text)
      AND (${programId}::bigint IS NULL OR t.program_id = ${programId}::bigint)
    ORDER BY t.task_id DESC
    LIMIT ${filter.limit ?? 20}`;
  const rows = await sql<{ status: TaskStatus; n: number }[]>`
    SELECT status, count(*)::int AS n FROM public.tasks
    WHERE ${programId}::bigint IS NULL OR program_id = ${programId}::bigint
    GROUP BY status`;
  const counts = { scheduled: 0, running: 0, finished: 0, error: 0, total: 0 };
  for (const row of rows) {
    counts[row.status] = row.n;
    counts.total += row.n;
  }
  const matching = filter.status ? counts[filter.status] : counts.total;
  return { tasks: [...tasks], counts, matching };
}

/** One ended attempt of a task, from `empapi.task_attempts`. */
export interface AttemptRow {
  attempt: number;
  /** `finished`, `error` (the program raised), or `lost` (the worker vanished). */
  outcome: "finished" | "error" | "lost";
  started: Date | null;
  finished: Date;
  duration_ms: number | null;
  /** The error message; null for a finished attempt. */
  error: string | null;
  /** Where the error happened (PostgreSQL's error context), if known. */
  context: string | null;
  pid: number | null;
  worker: string | null;
}

/** A task and its history. */
export interface TaskDetail {
  task: TaskRow;
  /** Ended attempts, first to last; a running attempt is not in it yet. */
  attempts: AttemptRow[];
}

/** Reads one task and its attempts. An unknown id is an input error. */
export async function getTask(sql: Queryable, taskId: number): Promise<TaskDetail> {
  const [task] = await sql<TaskRow[]>`
    ${taskRows(sql)}
    WHERE t.task_id = ${taskId}::bigint`;
  if (!task) {
    throw new RetaskError(
      "invalid_input",
      `task ${taskId} does not exist; retask status lists the newest tasks`,
    );
  }
  const attempts = await sql<AttemptRow[]>`
    SELECT attempt, outcome, started, finished,
           (extract(epoch FROM finished - started) * 1000)::float8 AS duration_ms,
           error, context, pid, worker
    FROM empapi.task_attempts(${taskId}::bigint)`;
  return { task, attempts: [...attempts] };
}
