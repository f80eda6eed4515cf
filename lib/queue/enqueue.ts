/**
 * Enqueueing: one call queues one or many tasks of a program, through
 * `enqueue_keyed` (sql/programs.sql), which checks them. Pass a transaction as
 * `sql` to enqueue atomically with your own writes.
 * @module
 */
import type postgres from "npm:postgres@3.4.9";
import type { Queryable } from "../db/connect.ts";
import { DEFAULT_SCHEMA } from "../db/schema.ts";
import { findProgram, type InSchema, type RetryPolicy } from "./programs.ts";

/** What to enqueue. */
export interface EnqueueOptions extends Omit<RetryPolicy, "retryDelayMax">, InSchema {
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
  /** Higher runs first, from -1000000 to 1000000 (default: the program's, else 0). */
  priority?: number;
  /**
   * A unique key: while a task of the program with this key is scheduled or running, enqueueing
   * returns that task instead of a new one. Names one task, so `params` has at most one element.
   */
  key?: string;
}

/** A task {@link enqueueKeyed} gave: a new one, or the one that held the key. */
export interface Enqueued {
  taskId: number;
  /** True when a task with the key was scheduled or running, and no task was queued. */
  existing: boolean;
}

/**
 * Queues tasks and says of each whether it is new or, with a `key`, the task
 * that held it already. Pass a transaction (`sql.begin`) as `sql` to enqueue
 * atomically with your own writes.
 */
export async function enqueueKeyed(sql: Queryable, options: EnqueueOptions): Promise<Enqueued[]> {
  const { programId } = await findProgram(sql, options.program, options);
  // one jsonb array, split in SQL: a JS array parameter would become a PostgreSQL
  // array, and a nested one a two-dimensional array
  const params = sql.json((options.params ?? [{}]) as postgres.JSONValue);
  const port = options.port === undefined ? null : String(options.port);
  const rows = await sql<{ task_id: number; existing: boolean }[]>`
    SELECT task_id, existing FROM ${sql(options.schema ?? DEFAULT_SCHEMA)}.enqueue_keyed(
      ${programId}::bigint,
      ARRAY(SELECT e.v FROM jsonb_array_elements(${params}::jsonb) WITH ORDINALITY AS e(v, i)
            ORDER BY e.i),
      ${options.host ?? null}::text, ${port}::text,
      ${options.maxAttempts ?? null}::integer, ${options.retryDelay ?? null}::interval,
      ${options.retryBackoff ?? null}::text, ${options.runAfter ?? null}::timestamptz,
      ${options.priority ?? null}::integer, ${options.key ?? null}::text)`;
  return rows.map((r) => ({ taskId: r.task_id, existing: r.existing }));
}

/**
 * Queues tasks and returns their ids in order (with a `key`: the id of the
 * task that held it, if one did). Pass a transaction (`sql.begin`) as `sql` to
 * enqueue atomically with your own writes.
 */
export async function enqueue(sql: Queryable, options: EnqueueOptions): Promise<number[]> {
  return (await enqueueKeyed(sql, options)).map((t) => t.taskId);
}
