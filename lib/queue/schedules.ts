/**
 * Schedules: a program enqueued on a cron expression, in a time zone. Cron is
 * read here, with croner; the schedules and the once-per-slot enqueueing are
 * SQL's (sql/schedules.sql). Every running worker fires due schedules
 * (lib/worker/schedule.ts).
 * @module
 */
import { Cron } from "npm:croner@11.0.1";
import type postgres from "npm:postgres@3.4.9";
import type { Queryable } from "../db/connect.ts";
import { DEFAULT_SCHEMA } from "../db/schema.ts";
import { isPgError, RetaskError } from "../errors.ts";
import { findProgram, type InSchema } from "./programs.ts";

/** What to schedule. */
export interface ScheduleOptions extends InSchema {
  /** The schedule's name; adding a name that exists changes that schedule. */
  name: string;
  /** Program id or name. */
  program: string | number;
  /**
   * A cron expression: 5 fields (minute hour day-of-month month day-of-week), or 6 with
   * seconds first (`* * * * * *` is every second); `@hourly`, `@daily` and the like too.
   */
  cron: string;
  /** The IANA time zone the expression is read in (default `UTC`). */
  timezone?: string;
  /** The argument of every task it enqueues, a JSON object (default `{}`). */
  params?: Record<string, unknown>;
}

/** A schedule as stored. */
export interface Schedule {
  name: string;
  programId: number;
  /** The program's name; null when the program row is gone. */
  program: string | null;
  cron: string;
  timezone: string;
  params: Record<string, unknown>;
  /**
   * The next slot to enqueue: a task is enqueued for it once, by the first worker to find it
   * due. Null until a worker reads the cron of a schedule written in SQL without one.
   */
  nextRunAt: Date | null;
  /** The slot last enqueued, and its task (which runs after that slot). */
  lastRunAt: Date | null;
  lastTaskId: number | null;
}

// Seconds-first 6-field expressions are croner's; its 7th field (years) is not offered.
const CRON_OPTIONS = { mode: "5-or-6-parts", paused: true } as const;

/** What is wrong with `cron`'s field count, or null: 5 or 6 fields, or a nickname. */
function fieldCountProblem(cron: string): string | null {
  const text = cron.trim();
  if (text.startsWith("@")) return null;
  const fields = text === "" ? 0 : text.split(/\s+/).length;
  if (fields === 5 || fields === 6) return null;
  return `cron expression "${cron}" has ${fields} field${fields === 1 ? "" : "s"}; ` +
    "give 5 (minute hour day-of-month month day-of-week), or 6 with seconds first";
}

/**
 * Reads `cron` in `timezone`; a bad expression or time zone is an input
 * error saying what is wrong.
 */
export function parseCron(cron: string, timezone = "UTC"): Cron {
  const problem = fieldCountProblem(cron);
  if (problem) throw new RetaskError("invalid_input", problem);
  try {
    // croner checks the zone only when it computes a date
    new Intl.DateTimeFormat("en-US", { timeZone: timezone });
  } catch (error) {
    throw new RetaskError(
      "invalid_input",
      `unknown time zone "${timezone}" (Use an IANA time zone name, such as UTC or Europe/Moscow.)`,
      { cause: error },
    );
  }
  try {
    return new Cron(cron.trim(), { ...CRON_OPTIONS, timezone });
  } catch (error) {
    const reason = (error as Error).message.replace(/^CronPattern: /, "").replace(/\.$/, "");
    throw new RetaskError(
      "invalid_input",
      `invalid cron expression "${cron}": ${reason.charAt(0).toLowerCase()}${reason.slice(1)}`,
      { cause: error },
    );
  }
}

/** The first slot of `cron` in `timezone` strictly after `after`; null if none comes. */
export function nextRunAfter(cron: string, timezone: string, after: Date): Date | null {
  return parseCron(cron, timezone).nextRun(after);
}

interface ScheduleRow {
  name: string;
  program_id: number;
  program: string | null;
  cron: string;
  timezone: string;
  params: Record<string, unknown>;
  next_run_at: Date | null;
  last_run_at: Date | null;
  last_task_id: number | null;
}

function toSchedule(r: ScheduleRow): Schedule {
  return {
    name: r.name,
    programId: r.program_id,
    program: r.program,
    cron: r.cron,
    timezone: r.timezone,
    params: r.params,
    nextRunAt: r.next_run_at,
    lastRunAt: r.last_run_at,
    lastTaskId: r.last_task_id,
  };
}

/**
 * Adds a schedule, or changes the one of that name (pg-boss's `schedule()`
 * does the same). Its first slot is the first after the database's clock
 * reads now; a change that keeps the cron and time zone keeps the slot that
 * is due. Checks everything before it writes: a bad expression, time zone,
 * name, params or program is an input error and changes nothing. Pass a
 * transaction as `sql` to add it atomically with your own writes.
 */
export async function addSchedule(
  sql: Queryable,
  options: ScheduleOptions,
): Promise<Schedule & { created: boolean }> {
  const schema = options.schema ?? DEFAULT_SCHEMA;
  const timezone = options.timezone ?? "UTC";
  const cron = parseCron(options.cron, timezone);
  const { programId } = await findProgram(sql, options.program, options);
  const [{ now }] = await sql<{ now: Date }[]>`SELECT now()`;
  const next = cron.nextRun(now);
  if (next === null) {
    throw new RetaskError("invalid_input", `cron expression "${options.cron}" never runs`);
  }
  const params = sql.json((options.params ?? {}) as postgres.JSONValue);
  const [{ created }] = await sql<{ created: boolean }[]>`
    SELECT created FROM ${sql(schema)}.upsert_schedule(
      ${options.name}::text, ${programId}::bigint, ${options.cron}::text, ${timezone}::text,
      ${params}::jsonb, ${next}::timestamptz)`;
  const [schedule] = await listSchedules(sql, { schema, name: options.name });
  return { ...schedule, created };
}

/** Every schedule by name, or only the one named `name`. */
export async function listSchedules(
  sql: Queryable,
  options: InSchema & { name?: string } = {},
): Promise<Schedule[]> {
  const schema = sql(options.schema ?? DEFAULT_SCHEMA);
  const name = options.name ?? null;
  const rows = await sql<ScheduleRow[]>`
    SELECT s.name, s.program_id, p.name AS program, s.cron, s.timezone, s.params,
           s.next_run_at, s.last_run_at, s.last_task_id
    FROM ${schema}.schedules s LEFT JOIN ${schema}.programs p ON p.program_id = s.program_id
    WHERE ${name}::text IS NULL OR s.name = ${name}::text
    ORDER BY s.name`;
  return rows.map(toSchedule);
}

/**
 * Deletes the schedule named `name` and returns it; the tasks it enqueued
 * stay. An unknown name is an input error naming the schedules there are.
 */
export async function removeSchedule(
  sql: Queryable,
  name: string,
  options: InSchema = {},
): Promise<Schedule> {
  const schema = sql(options.schema ?? DEFAULT_SCHEMA);
  try {
    const [row] = await sql<ScheduleRow[]>`
      SELECT s.name, s.program_id, p.name AS program, s.cron, s.timezone, s.params,
             s.next_run_at, s.last_run_at, s.last_task_id
      FROM ${schema}.remove_schedule(${name}::text) s
      LEFT JOIN ${schema}.programs p ON p.program_id = s.program_id`;
    return toSchedule(row);
  } catch (error) {
    if (!isPgError(error) || error.code !== "P0002") throw error;
    // (not inside a transaction the error aborted: the list is read only outside one)
    if ("savepoint" in sql) throw new RetaskError("invalid_input", `unknown schedule "${name}"`);
    const names = (await listSchedules(sql, options)).map((s) => s.name);
    const known = names.length === 0 ? "there are none" : `schedules: ${names.join(", ")}`;
    throw new RetaskError("invalid_input", `unknown schedule "${name}"; ${known}`, {
      cause: error,
    });
  }
}
