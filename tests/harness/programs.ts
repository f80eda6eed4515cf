/**
 * Functions the tests register as programs.
 * @module
 */
import type { Queryable } from "../../lib/db/connect.ts";

/** Programs that always succeed, always fail, or write a row and then fail on request. */
export const TEST_FUNCTIONS = `
  CREATE FUNCTION always_ok(params jsonb) RETURNS text LANGUAGE sql AS $$ SELECT 'ok' $$;
  CREATE FUNCTION always_fail(params jsonb) RETURNS text LANGUAGE plpgsql AS $$
  BEGIN RAISE EXCEPTION 'failed on purpose'; END $$;
  CREATE TABLE side_effects (task_note text);
  CREATE FUNCTION note_and_fail(params jsonb) RETURNS text LANGUAGE plpgsql AS $$
  BEGIN
    INSERT INTO side_effects VALUES (params ->> 'note');
    IF (params ->> 'fail')::boolean THEN RAISE EXCEPTION 'failed after writing'; END IF;
    RETURN 'wrote ' || (params ->> 'note');
  END $$;
`;

/** A task as `retask.take_tasks` returns it (the fields tests look at). */
export interface TakenTask {
  task_id: number;
  status: string;
  attempt_count: number;
  max_attempts: number;
  worker: string | null;
  pid: number | null;
  started: Date | null;
}

/** Takes up to `max` runnable tasks through `retask.take_tasks`, as a worker's claim does. */
export function takeTasks(
  sql: Queryable,
  max: number,
  worker: string | null = null,
  lease: string | null = null,
): Promise<TakenTask[]> {
  return sql<TakenTask[]>`
    SELECT * FROM retask.take_tasks(${max}::integer, ${worker}::text, ${lease}::interval)
    ORDER BY task_id`;
}
