/**
 * Thin wrappers over the SQL state machine (sql/0002_programs.sql, sql/0003_transitions.sql). Nothing
 * here decides a task's next status: the SQL functions do.
 * @module
 */
import type postgres from "npm:postgres@3.4.9";
import type { Queryable, Sql } from "../db/connect.ts";
import { RetaskError } from "../errors.ts";

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
  /** The program's id. */
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
  /** Its id. */
  program_id: number;
  /** Its name, unique in practice (register updates by name). */
  name: string;
  /** The function it runs, schema-qualified and quoted. */
  func: string;
  /** Attempts in all for its new tasks. */
  max_attempts: number;
  /** Wait before a retry, as PostgreSQL prints an interval. */
  retry_delay: string;
  /** `fixed` or `exponential`. */
  retry_backoff: string;
  /** Cap on an exponential delay. */
  retry_delay_max: string;
}

/** All programs by id, or only the one with id `programId`. */
export function listPrograms(sql: Queryable, programId: number | null = null): Promise<Program[]> {
  return sql<Program[]>`
    SELECT program_id, name, func, max_attempts, retry_delay::text AS retry_delay,
           retry_backoff, retry_delay_max::text AS retry_delay_max
    FROM public.programs WHERE ${programId}::bigint IS NULL OR program_id = ${programId}::bigint
    ORDER BY program_id`;
}

/**
 * A program, found by its id or name. Unknown ones are an input error that
 * names the programs there are.
 */
export async function findProgram(
  sql: Queryable,
  program: string | number,
): Promise<{ programId: number; name: string }> {
  const text = String(program).trim();
  const [row] = /^[0-9]+$/.test(text)
    ? await sql<{ program_id: number; name: string }[]>`
        SELECT program_id, name FROM public.programs WHERE program_id = ${text}::bigint`
    : await sql<{ program_id: number; name: string }[]>`
        SELECT program_id, name FROM public.programs WHERE name = ${text}
        ORDER BY program_id LIMIT 1`;
  if (row) return { programId: row.program_id, name: row.name };
  const programs = await listPrograms(sql);
  const known = programs.length === 0
    ? "none is registered yet (retask register <name> <function>)"
    : `registered: ${programs.map((p) => `${p.name} (${p.program_id})`).join(", ")}`;
  throw new RetaskError("invalid_input", `unknown program "${text}"; ${known}`);
}

/** A program's id from its id or name; see {@link findProgram}. */
export async function resolveProgram(sql: Queryable, program: string | number): Promise<number> {
  return (await findProgram(sql, program)).programId;
}

/** What to enqueue. */
export interface EnqueueOptions extends Omit<RetryPolicy, "retryDelayMax"> {
  /** Program id or name. */
  program: string | number;
  /** One task per element; each must be a JSON object (default one task with `{}`). */
  params?: Record<string, unknown>[];
  /** Run on this server instead (both or neither). */
  host?: string;
  /** Port of `host`. */
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
  /** Its id. */
  task_id: number;
  /** The program it runs. */
  program_id: number;
  /** The seed's four statuses. */
  status: "scheduled" | "running" | "finished" | "error";
  /** The program's argument. */
  params: Record<string, unknown> | null;
  /** Backend that holds it (running) or last held it. */
  pid: number | null;
  /** When its latest attempt started. */
  started: Date | null;
  /** When its latest attempt ended. */
  finished: Date | null;
  /** `attempt n of m`, then the output or the error. */
  result: string | null;
  /** Server to run on, with `port`. */
  host: string | null;
  /** Port of `host`. */
  port: string | null;
  /** Attempts started so far. */
  attempt_count: number;
  /** Attempts allowed in all. */
  max_attempts: number;
  /** Not before this time. */
  run_after: Date;
  /** Worker that holds it or last held it. */
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
