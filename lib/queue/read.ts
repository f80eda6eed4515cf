/**
 * Reading tasks back: a filtered list with a count per status, and one task
 * with every attempt it made.
 * @module
 */
import type postgres from "npm:postgres@3.4.9";
import type { Queryable } from "../db/connect.ts";
import { RetaskError } from "../errors.ts";
import { DEFAULT_SCHEMA } from "../db/schema.ts";
import type { AttemptEnd } from "../worker/outcome.ts";
import { findProgram, type InSchema } from "./programs.ts";

/** The statuses a task can have, in life-cycle order. */
export const STATUSES = ["scheduled", "running", "finished", "error", "cancelled"] as const;

/** A task's status. */
export type TaskStatus = typeof STATUSES[number];

/** Checks a status given by a person; anything else is an input error listing them. */
export function parseStatus(text: string): TaskStatus {
  const status = text.trim().toLowerCase();
  if ((STATUSES as readonly string[]).includes(status)) return status as TaskStatus;
  throw new RetaskError(
    "invalid_input",
    `unknown status "${text}"; use one of ${STATUSES.join(", ")}`,
  );
}

/** A task: its row, its program's name, and how long its latest attempt ran. */
export interface Task {
  taskId: number;
  programId: number;
  /** The program's name; null when the program row is gone. */
  program: string | null;
  status: TaskStatus;
  /** Attempts started so far (`attempt_count`). */
  attempt: number;
  maxAttempts: number;
  params: Record<string, unknown> | null;
  created: Date;
  /** Not before this time (a retry waits here for its delay). */
  runAfter: Date;
  /** When the latest attempt started and ended. */
  started: Date | null;
  finished: Date | null;
  /** The latest attempt's run time; for a running task, so far. Null before the first. */
  durationMs: number | null;
  /**
   * Starts with `attempt n of m`; null until an attempt ends. {@link getTask} with
   * `maxResultChars` gives only the start of it.
   */
  result: string | null;
  /** Set (with port) for a task that runs on another server. */
  host: string | null;
  port: string | null;
  /** The worker that holds it or last held it. */
  worker: string | null;
  /** Higher is taken first. */
  priority: number;
  /** Its unique key (`enqueue --key`), if it has one. */
  key: string | null;
}

/** A task as {@link listTasks} gives it: one line of its result instead of the whole. */
export interface TaskSummary extends Omit<Task, "result"> {
  /**
   * The result's first line worth showing, at most {@link SUMMARY_CHARS} characters: without the
   * `attempt n of m` line, a table's first row (or `(no rows)`), else the first non-blank line.
   * Null until an attempt ends.
   */
  resultSummary: string | null;
}

/** Tasks per status; every status is present, zero when none. */
export type StatusCounts = Record<TaskStatus, number> & { total: number };

/** Filters for {@link listTasks}. */
export interface TaskFilter extends InSchema {
  status?: TaskStatus;
  /** Program id or name; unknown ones are an input error naming those there are. */
  program?: string | number;
  /** Newest tasks first, at most this many (default 20). */
  limit?: number;
}

/** What {@link listTasks} returns. */
export interface TaskList {
  /** Newest first. */
  tasks: TaskSummary[];
  /** Counts for the program filter (not the status filter or the limit). */
  counts: StatusCounts;
  /** Tasks matching all the filters, of which `tasks` are the newest `limit`. */
  matching: number;
  /** Programs paused now (`retask pause`), whatever the filters: workers take none of their tasks. */
  pausedPrograms: { programId: number; name: string }[];
}

/** The longest summary {@link listTasks} gives; longer lines end in "…". */
const SUMMARY_CHARS = 300;

// A task row's columns before and after its result, and the FROM clause, both queries share.
function taskColumns(sql: Queryable, result: postgres.Fragment, schema: string) {
  return sql`
    SELECT t.task_id AS "taskId", t.program_id AS "programId", p.name AS program, t.status,
           t.attempt_count AS attempt, t.max_attempts AS "maxAttempts", t.params, t.created,
           t.run_after AS "runAfter", t.started, t.finished,
           (extract(epoch FROM coalesce(t.finished, CASE WHEN t.status = 'running'
                                                          THEN clock_timestamp() END) - t.started)
            * 1000)::float8 AS "durationMs",
           ${result}, t.host, t.port, t.worker, t.priority, t.key
    FROM ${sql(schema)}.tasks t LEFT JOIN ${sql(schema)}.programs p ON p.program_id = t.program_id`;
}

// The line `status` shows of a result (retask.result_summary, sql/render.sql),
// computed in SQL from the result's first characters, so a list never fetches
// whole results.
function resultSummary(sql: Queryable, schema: string) {
  return sql`${sql(schema)}.result_summary(left(t.result, 65537), ${SUMMARY_CHARS}::integer)
             AS "resultSummary"`;
}

/** The newest tasks matching `filter`, and how many tasks there are in each status. */
export async function listTasks(sql: Queryable, filter: TaskFilter = {}): Promise<TaskList> {
  const schema = filter.schema ?? DEFAULT_SCHEMA;
  const programId = filter.program === undefined
    ? null
    : (await findProgram(sql, filter.program, filter)).programId;
  const limit = filter.limit ?? 20;
  const columns = taskColumns(sql, resultSummary(sql, schema), schema);
  // Unfiltered, the newest are the primary key's last. Filtered, the newest of
  // each program and status come from the end of tasks_program_status_idx, at
  // most `limit` each: scanning the primary key backwards for rare ones would
  // read the whole table. Without --program, the programs with tasks in those
  // statuses come from the counts (sql/counts.sql), not from the table.
  let tasks;
  if (filter.status === undefined && programId === null) {
    tasks = await sql<TaskSummary[]>`${columns} ORDER BY t.task_id DESC LIMIT ${limit}`;
  } else {
    const statuses = filter.status ? [filter.status] : [...STATUSES];
    const owners = programId !== null ? sql`SELECT ${programId}::bigint AS program_id` : sql`
      SELECT c.program_id FROM ${sql(schema)}.task_counts c
      WHERE c.status = ANY (${statuses}::text[])
      GROUP BY c.program_id HAVING sum(c.n) > 0`;
    const newest = await sql<{ task_id: number }[]>`
      SELECT n.task_id
      FROM (${owners}) w
      CROSS JOIN unnest(${statuses}::text[]) AS s(status)
      CROSS JOIN LATERAL (
        SELECT o.task_id FROM ${sql(schema)}.tasks o
        WHERE o.program_id = w.program_id AND o.status = s.status
        ORDER BY o.task_id DESC LIMIT ${limit}) n
      ORDER BY n.task_id DESC LIMIT ${limit}`;
    // by id, a second statement: joined to the first, a generic plan may read every task
    tasks = await sql<TaskSummary[]>`
      ${columns} WHERE t.task_id = ANY (${newest.map((r) => r.task_id)}::bigint[])
      ORDER BY t.task_id DESC`;
  }
  // kept as tasks change, a few rows per program and status: never a count of the table
  const rows = await sql<{ status: TaskStatus; n: number }[]>`
    SELECT c.status, sum(c.n)::int AS n FROM ${sql(schema)}.task_counts c
    WHERE ${programId}::bigint IS NULL OR c.program_id = ${programId}::bigint
    GROUP BY c.status`;
  const counts = { scheduled: 0, running: 0, finished: 0, error: 0, cancelled: 0, total: 0 };
  for (const row of rows) {
    counts[row.status] = row.n;
    counts.total += row.n;
  }
  const matching = filter.status ? counts[filter.status] : counts.total;
  const pausedPrograms = await sql<{ programId: number; name: string }[]>`
    SELECT program_id AS "programId", name FROM ${sql(schema)}.programs
    WHERE paused ORDER BY program_id`;
  return { tasks: [...tasks], counts, matching, pausedPrograms: [...pausedPrograms] };
}

/** One ended attempt of a task, from its history. */
export interface Attempt {
  attempt: number;
  /**
   * `finished`, `error` (the program raised), `lost` (the worker vanished), or
   * `cancelled` (someone asked to cancel the task).
   */
  outcome: AttemptEnd;
  started: Date | null;
  finished: Date;
  durationMs: number | null;
  /** The error message; null for a finished attempt. */
  error: string | null;
  /** Where the error happened (PostgreSQL's error context), if known. */
  context: string | null;
  pid: number | null;
  worker: string | null;
}

/** A task and its history. */
export interface TaskDetail {
  task: Task;
  /** Ended attempts, first to last; a running attempt is not in it yet. */
  attempts: Attempt[];
  /** With `maxResultChars`: the whole result's length in characters (null when none). */
  resultChars?: number | null;
}

/** Options for {@link getTask}. */
export interface GetTaskOptions extends InSchema {
  /** Fetch at most this many characters of the result; `resultChars` then says how many it has. */
  maxResultChars?: number;
}

/** Reads one task and its attempts. An unknown id is an input error. */
export async function getTask(
  sql: Queryable,
  taskId: number,
  options: GetTaskOptions = {},
): Promise<TaskDetail> {
  const schema = options.schema ?? DEFAULT_SCHEMA;
  const limit = options.maxResultChars;
  const result = limit === undefined
    ? sql`t.result`
    : sql`left(t.result, ${limit}::int) AS result, length(t.result) AS "resultChars"`;
  const [row] = await sql<(Task & { resultChars?: number | null })[]>`
    ${taskColumns(sql, result, schema)}
    WHERE t.task_id = ${taskId}::bigint`;
  if (!row) {
    throw new RetaskError(
      "invalid_input",
      `task ${taskId} does not exist; retask status lists the newest tasks`,
    );
  }
  const attempts = await sql<Attempt[]>`
    SELECT attempt, outcome, started, finished,
           (extract(epoch FROM finished - started) * 1000)::float8 AS "durationMs",
           error, context, pid, worker
    FROM ${sql(schema)}.task_attempts WHERE task_id = ${taskId}::bigint
    ORDER BY attempt`;
  if (limit === undefined) return { task: row, attempts: [...attempts] };
  const { resultChars, ...task } = row;
  return { task, attempts: [...attempts], resultChars: resultChars ?? null };
}
