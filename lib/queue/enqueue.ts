/**
 * Enqueueing: one call queues one or many tasks of a program, through
 * `enqueue_tasks` (sql/programs.sql), which checks them. Pass a transaction as
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
}

/**
 * Queues tasks and returns their ids in order. Pass a transaction (`sql.begin`)
 * as `sql` to enqueue atomically with your own writes.
 */
export async function enqueue(sql: Queryable, options: EnqueueOptions): Promise<number[]> {
  const { programId } = await findProgram(sql, options.program, options);
  // one jsonb array, split in SQL: a JS array parameter would become a PostgreSQL
  // array, and a nested one a two-dimensional array
  const params = sql.json((options.params ?? [{}]) as postgres.JSONValue);
  const port = options.port === undefined ? null : String(options.port);
  const rows = await sql<{ task_id: number }[]>`
    SELECT ${sql(options.schema ?? DEFAULT_SCHEMA)}.enqueue_tasks(
      ${programId}::bigint,
      ARRAY(SELECT e.v FROM jsonb_array_elements(${params}::jsonb) WITH ORDINALITY AS e(v, i)
            ORDER BY e.i),
      ${options.host ?? null}::text, ${port}::text,
      ${options.maxAttempts ?? null}::integer, ${options.retryDelay ?? null}::interval,
      ${options.retryBackoff ?? null}::text, ${options.runAfter ?? null}::timestamptz) AS task_id`;
  return rows.map((r) => r.task_id);
}
