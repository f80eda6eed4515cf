/**
 * Thin wrappers over the SQL state machine (sql/0002_transitions.sql). Nothing
 * here decides a task's next status: the SQL functions do.
 * @module
 */
import type postgres from "postgres";
import type { Queryable, Sql } from "./db.ts";
import { RetaskError } from "./errors.ts";

/** A program's retry policy; unset fields keep their current value (or the default). */
export interface RetryPolicy {
  /** Attempts in all, 1 to 100 (default 3). */
  maxAttempts?: number;
  /** Wait before a retry, a PostgreSQL interval such as `"5 seconds"` (default 0). */
  retryDelay?: string;
  /** `fixed` waits `retryDelay`; `exponential` doubles it per attempt, with jitter. */
  retryBackoff?: "fixed" | "exponential";
  /** Cap on an exponential delay (default 1 hour). */
  retryDelayMax?: string;
}

/** What registering a program did. */
export interface Registered {
  programId: number;
  /** False when a program of that name existed and was updated. */
  created: boolean;
}

/** Registers `func` (a function taking one jsonb) as program `name`, or updates it. */
export async function registerProgram(
  sql: Queryable,
  name: string,
  func: string,
  policy: RetryPolicy = {},
): Promise<Registered> {
  const [row] = await sql<{ program_id: number; created: boolean }[]>`
    SELECT program_id, created FROM public.upsert_program(
      ${name}, ${func}, ${policy.maxAttempts ?? null}::integer, ${
    policy.retryDelay ?? null
  }::interval,
      ${policy.retryBackoff ?? null}::text, ${policy.retryDelayMax ?? null}::interval)`;
  return { programId: row.program_id, created: row.created };
}

/** A registered program. */
export interface Program {
  program_id: number;
  name: string;
  func: string;
  max_attempts: number;
  retry_delay: string;
  retry_backoff: string;
  retry_delay_max: string;
}

/** All programs, by id. */
export function listPrograms(sql: Queryable): Promise<Program[]> {
  return sql<Program[]>`
    SELECT program_id, name, func, max_attempts, retry_delay::text AS retry_delay,
           retry_backoff, retry_delay_max::text AS retry_delay_max
    FROM public.programs ORDER BY program_id`;
}

/**
 * A program's id from its id or name. Unknown ones are an input error that
 * names the programs there are.
 */
export async function resolveProgram(sql: Queryable, program: string | number): Promise<number> {
  const text = String(program).trim();
  const [row] = /^[0-9]+$/.test(text)
    ? await sql<{ program_id: number }[]>`
        SELECT program_id FROM public.programs WHERE program_id = ${text}::bigint`
    : await sql<{ program_id: number }[]>`
        SELECT min(program_id) AS program_id FROM public.programs WHERE name = ${text}
        HAVING min(program_id) IS NOT NULL`;
  if (row) return row.program_id;
  const programs = await listPrograms(sql);
  const known = programs.length === 0
    ? "none is registered yet (retask register <name> <function>)"
    : `registered: ${programs.map((p) => `${p.name} (${p.program_id})`).join(", ")}`;
  throw new RetaskError("invalid_input", `unknown program "${text}"; ${known}`);
}

/** What to enqueue. */
export interface EnqueueOptions extends Omit<RetryPolicy, "retryDelayMax"> {
  /** Program id or name. */
  program: string | number;
  /** One task per element; each must be a JSON object (default one task with `{}`). */
  params?: Record<string, unknown>[];
  /** Run on this server instead (both or neither). */
  host?: string;
  port?: string | number;
  /** Not before this time. */
  runAfter?: Date;
}

/**
 * Queues tasks and returns their ids in order. Pass a transaction (`sql.begin`)
 * as `sql` to enqueue atomically with your own writes.
 */
export async function enqueue(sql: Queryable, options: EnqueueOptions): Promise<number[]> {
  const programId = await resolveProgram(sql, options.program);
  // one jsonb array, split in SQL: a JS array parameter would become a PostgreSQL
  // array, and a nested one a two-dimensional array
  const params = sql.json((options.params ?? [{}]) as postgres.JSONValue);
  const rows = await sql<{ task_id: number }[]>`
    SELECT public.enqueue_tasks(
      ${programId}::bigint,
      ARRAY(SELECT e.v FROM jsonb_array_elements(${params}::jsonb) WITH ORDINALITY AS e(v, i) ORDER BY e.i),
      ${options.host ?? null}::text, ${
    options.port === undefined ? null : String(options.port)
  }::text,
      ${options.maxAttempts ?? null}::integer, ${options.retryDelay ?? null}::interval,
      ${options.retryBackoff ?? null}::text, ${options.runAfter ?? null}::timestamptz) AS task_id`;
  return rows.map((r) => r.task_id);
}

/** A task row as the SQL functions return it. */
export interface Task {
  task_id: number;
  program_id: number;
  status: "scheduled" | "running" | "finished" | "error";
  params: Record<string, unknown> | null;
  pid: number | null;
  started: Date | null;
  finished: Date | null;
  result: string | null;
  host: string | null;
  port: string | null;
  attempt_count: number;
  max_attempts: number;
  run_after: Date;
  worker: string | null;
}

/** Takes up to `max` runnable tasks and starts an attempt of each. */
export function takeTasks(
  sql: Queryable,
  max: number,
  worker: string | null = null,
  lease: string | null = null,
): Promise<Task[]> {
  return sql<Task[]>`
    SELECT task_id, program_id, status, params, pid, started, finished, result, host, port,
           attempt_count, max_attempts, run_after, worker
    FROM public.take_tasks(${max}::integer, ${worker}::text, ${lease}::interval) ORDER BY task_id`;
}

/** Ends an attempt as finished; returns null if the task is no longer running that attempt. */
export async function finishTask(
  sql: Queryable,
  taskId: number,
  attempt: number,
  result: string,
): Promise<"finished" | null> {
  const [row] = await sql<{ status: "finished" | null }[]>`
    SELECT public.finish_task(${taskId}::bigint, ${attempt}::integer, ${result}::text) AS status`;
  return row.status;
}

/** Ends an attempt as failed; returns the new status, or null if it was stale. */
export async function failTask(
  sql: Queryable,
  taskId: number,
  attempt: number,
  error: string,
  context: string | null = null,
  outcome: "error" | "lost" = "error",
): Promise<"scheduled" | "error" | null> {
  const [row] = await sql<{ status: "scheduled" | "error" | null }[]>`
    SELECT public.fail_task(${taskId}::bigint, ${attempt}::integer, ${error}::text,
                            ${context}::text, ${outcome}::text) AS status`;
  return row.status;
}

/** Fails, as lost, the running attempts whose backend is gone or whose lease ran out. */
export async function rescueLostTasks(sql: Sql): Promise<number> {
  const [row] = await sql<{ rescued: number }[]>`SELECT public.rescue_lost_tasks() AS rescued`;
  return row.rescued;
}
