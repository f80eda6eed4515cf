/**
 * Programs: register a SQL function taking one jsonb as a program (with its
 * retry policy, timeout and priority), list them, find one by name or id,
 * pause and resume one. The checks are SQL's (sql/programs.sql); this file
 * only calls it.
 * @module
 */
import type { Queryable } from "../db/connect.ts";
import { DEFAULT_SCHEMA } from "../db/schema.ts";
import { RetaskError } from "../errors.ts";

/** Which installation of retask to use: its schema (default `retask`). */
export interface InSchema {
  /** The schema retask was installed into (`retask install --schema`). */
  schema?: string;
}

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

/** A program's own settings beside its retry policy; unset fields keep their current value. */
export interface ProgramSettings extends RetryPolicy {
  /**
   * The statement timeout of its tasks, a PostgreSQL interval such as `"30 seconds"` (up to a
   * day), in place of the worker's `taskTimeout`; `"0"` clears it (the worker's again).
   */
  timeout?: string;
  /** What its tasks get unless enqueued with their own; higher runs first (default 0). */
  priority?: number;
}

/** What registering a program did. */
export interface Registered {
  /** The program's id. */
  programId: number;
  /** False when a program of that name existed and was updated. */
  created: boolean;
}

/**
 * Registers `func` (a function taking one jsonb, looked up on the connection's
 * search_path) as program `name`, or updates the program of that name.
 */
export async function registerProgram(
  sql: Queryable,
  name: string,
  func: string,
  policy: ProgramSettings & InSchema = {},
): Promise<Registered> {
  const [row] = await sql<{ program_id: number; created: boolean }[]>`
    SELECT program_id, created FROM ${sql(policy.schema ?? DEFAULT_SCHEMA)}.upsert_program(
      ${name}, ${func}, ${policy.maxAttempts ?? null}::integer,
      ${policy.retryDelay ?? null}::interval, ${policy.retryBackoff ?? null}::text,
      ${policy.retryDelayMax ?? null}::interval,
      timeout => ${policy.timeout ?? null}::interval, priority => ${
    policy.priority ?? null
  }::integer)`;
  return { programId: row.program_id, created: row.created };
}

/** A registered program. */
export interface Program {
  /** Its id. */
  programId: number;
  /** Its name, unique in practice (register updates by name). */
  name: string;
  /** The function it runs, schema-qualified and quoted. */
  func: string;
  /** Attempts in all for its new tasks. */
  maxAttempts: number;
  /** Wait before a retry, as PostgreSQL prints an interval. */
  retryDelay: string;
  /** `fixed` or `exponential`. */
  retryBackoff: string;
  /** Cap on an exponential delay. */
  retryDelayMax: string;
  /** Its tasks' statement timeout in ms; null: the worker's `taskTimeout`. */
  timeoutMs: number | null;
  /** What its tasks get unless enqueued with their own; higher runs first. */
  priority: number;
  /** True while paused: workers take none of its tasks. */
  paused: boolean;
}

/** All programs by id, or only the one with id `programId`. */
export function listPrograms(
  sql: Queryable,
  options: InSchema & { programId?: number } = {},
): Promise<Program[]> {
  const programId = options.programId ?? null;
  return sql<Program[]>`
    SELECT program_id AS "programId", name, func, max_attempts AS "maxAttempts",
           retry_delay::text AS "retryDelay", retry_backoff AS "retryBackoff",
           retry_delay_max::text AS "retryDelayMax",
           (extract(epoch FROM timeout) * 1000)::float8 AS "timeoutMs", priority, paused
    FROM ${sql(options.schema ?? DEFAULT_SCHEMA)}.programs
    WHERE ${programId}::bigint IS NULL OR program_id = ${programId}::bigint
    ORDER BY program_id`;
}

/**
 * A program, found by its id or name. Unknown ones are an input error that
 * names the programs there are.
 */
export async function findProgram(
  sql: Queryable,
  program: string | number,
  options: InSchema = {},
): Promise<{ programId: number; name: string }> {
  const schema = sql(options.schema ?? DEFAULT_SCHEMA);
  const text = String(program).trim();
  const [row] = /^[0-9]+$/.test(text)
    ? await sql<{ program_id: number; name: string }[]>`
        SELECT program_id, name FROM ${schema}.programs WHERE program_id = ${text}::bigint`
    : await sql<{ program_id: number; name: string }[]>`
        SELECT program_id, name FROM ${schema}.programs WHERE name = ${text}
        ORDER BY program_id LIMIT 1`;
  if (row) return { programId: row.program_id, name: row.name };
  const programs = await listPrograms(sql, options);
  const known = programs.length === 0
    ? "none is registered yet (retask register <name> <function>)"
    : `registered: ${programs.map((p) => `${p.name} (${p.programId})`).join(", ")}`;
  throw new RetaskError("invalid_input", `unknown program "${text}"; ${known}`);
}

/** What pausing or resuming a program did, and what it holds. */
export interface PauseResult {
  programId: number;
  name: string;
  /** Whether it is paused now. */
  paused: boolean;
  /** False when it already was paused (or running): nothing changed. */
  changed: boolean;
  /** Its tasks waiting to be taken. */
  scheduled: number;
  /** Its tasks running now: a pause lets them finish. */
  running: number;
}

/**
 * Pauses (`paused` true) or resumes a program, given by id or name: workers take no new task of a
 * paused program; running ones go on. Idempotent; resuming wakes the workers.
 */
export async function setProgramPaused(
  sql: Queryable,
  program: string | number,
  paused: boolean,
  options: InSchema = {},
): Promise<PauseResult> {
  const schema = sql(options.schema ?? DEFAULT_SCHEMA);
  const { programId, name } = await findProgram(sql, program, options);
  // from the counts kept as tasks change (sql/counts.sql): a backlog of a
  // million is not counted task by task
  const count = async () =>
    (await sql<{ scheduled: number; running: number }[]>`
      SELECT coalesce(sum(n) FILTER (WHERE status = 'scheduled'), 0)::int AS scheduled,
             coalesce(sum(n) FILTER (WHERE status = 'running'), 0)::int AS running
      FROM ${schema}.task_counts
      WHERE program_id = ${programId}::bigint AND status IN ('scheduled', 'running')`)[0];
  // counted while no worker takes its tasks: after a pause, before a resume
  const before = paused ? null : await count();
  const [{ changed }] = paused
    ? await sql<{ changed: boolean }[]>`
        SELECT ${schema}.pause_program(${programId}::bigint) AS changed`
    : await sql<{ changed: boolean }[]>`
        SELECT ${schema}.resume_program(${programId}::bigint) AS changed`;
  const counts = before ?? await count();
  return { programId, name, paused, changed, ...counts };
}

/** Pauses a program (id or name): workers take none of its tasks until it is resumed. */
export function pauseProgram(
  sql: Queryable,
  program: string | number,
  options: InSchema = {},
): Promise<PauseResult> {
  return setProgramPaused(sql, program, true, options);
}

/** Resumes a paused program (id or name) and wakes the workers. */
export function resumeProgram(
  sql: Queryable,
  program: string | number,
  options: InSchema = {},
): Promise<PauseResult> {
  return setProgramPaused(sql, program, false, options);
}
