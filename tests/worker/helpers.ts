/**
 * Support for the worker tests: the programs they run and the invariants every
 * run must end with. `retask work` as a process is the harness's spawnWorker.
 * @module
 */
import assert from "node:assert/strict";
import type { Sql } from "../../lib/db/connect.ts";
import { registerProgram } from "../../lib/mod.ts";
import { waitFor } from "../harness/mod.ts";

/** Programs for worker tests; each writes a row per committed attempt where it matters. */
export const WORKER_FUNCTIONS = `
  CREATE TABLE effects (task_key text NOT NULL, written timestamptz NOT NULL DEFAULT clock_timestamp());
  CREATE INDEX ON effects (task_key);
  -- writes a side effect, then fails with probability params.fail (default 0.7);
  -- a failed attempt's write is rolled back with it
  -- a clash is two transactions running one task at once; a sequence is not
  -- rolled back, so a clash stays counted whatever became of either attempt
  CREATE SEQUENCE clashes;
  CREATE FUNCTION flaky(params jsonb) RETURNS text LANGUAGE plpgsql AS $$
  BEGIN
    IF NOT pg_try_advisory_xact_lock(hashtext('flaky:' || (params ->> 'key'))) THEN
      PERFORM nextval('clashes');
    END IF;
    PERFORM pg_sleep(coalesce((params ->> 'sleep')::float8, 0));
    INSERT INTO effects (task_key) VALUES (params ->> 'key');
    IF random() < coalesce((params ->> 'fail')::float8, 0.7) THEN
      RAISE EXCEPTION 'flaky failed' USING ERRCODE = 'P0001';
    END IF;
    RETURN 'wrote ' || (params ->> 'key');
  END $$;
  -- sleeps params.sleep seconds on the first run ever (a sequence is not rolled
  -- back, so a killed first attempt still counts), returns at once afterwards
  CREATE SEQUENCE sleepy_runs;
  CREATE FUNCTION sleepy_once(params jsonb) RETURNS text LANGUAGE plpgsql AS $$
  BEGIN
    IF nextval('sleepy_runs') = 1 THEN
      PERFORM pg_sleep((params ->> 'sleep')::float8);
    END IF;
    RETURN 'awake';
  END $$;
  CREATE FUNCTION sleepy(params jsonb) RETURNS text LANGUAGE plpgsql AS $$
  BEGIN
    PERFORM pg_sleep((params ->> 'sleep')::float8);
    RETURN 'slept';
  END $$;
`;

/**
 * Creates the test programs in `sql` and registers them under their function
 * names, and the demo's `retask.lucky` as `lucky`.
 */
export async function installWorkerPrograms(sql: Sql): Promise<Record<string, number>> {
  await sql.unsafe(WORKER_FUNCTIONS);
  const ids: Record<string, number> = {};
  const functions = { flaky: "flaky", sleepy_once: "sleepy_once", sleepy: "sleepy" };
  for (const [name, func] of Object.entries({ ...functions, lucky: "retask.lucky" })) {
    ids[name] = (await registerProgram(sql, name, func)).programId;
  }
  return ids;
}

/** Count of rows of a query returning `n`. */
export async function count(sql: Sql, query: string): Promise<number> {
  const [row] = await sql.unsafe<{ n: number }[]>(query);
  return Number(row.n);
}

/** Waits until some attempt of a task is running under a worker whose name contains `pid`. */
export function waitRunning(sql: Sql, pid: number, what: string): Promise<number> {
  return waitFor(async () => {
    const [row] = await sql<{ task_id: number }[]>`
      SELECT task_id FROM retask.tasks WHERE status = 'running' AND worker LIKE ${`%:${pid}:%`} LIMIT 1`;
    return row?.task_id;
  }, what);
}

/** Terminates every backend of this database's workers; returns how many. */
export async function terminateWorkerBackends(sql: Sql): Promise<number> {
  const [row] = await sql<{ n: number }[]>`
    SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))::int AS n
    FROM pg_stat_activity
    WHERE datname = current_database() AND application_name LIKE 'retask worker %'`;
  return row.n;
}

/**
 * The issue's "done when": every task finished or error, none above its
 * maximum, every error at exactly its maximum, nothing left running, and one
 * history row per started attempt (numbered 1..attempt_count).
 */
export async function assertInvariants(sql: Sql): Promise<void> {
  const [row] = await sql<{
    tasks: number;
    unfinished: number;
    above_max: number;
    error_below_max: number;
    attempts: number;
    history: number;
    gaps: number;
    finished_wrong: number;
  }[]>`
    SELECT
      (SELECT count(*) FROM tasks)::int AS tasks,
      (SELECT count(*) FROM tasks WHERE status NOT IN ('finished', 'error'))::int AS unfinished,
      (SELECT count(*) FROM tasks WHERE attempt_count > max_attempts)::int AS above_max,
      (SELECT count(*) FROM tasks WHERE status = 'error' AND attempt_count <> max_attempts)::int
        AS error_below_max,
      (SELECT coalesce(sum(attempt_count), 0) FROM tasks)::int AS attempts,
      (SELECT count(*) FROM retask.task_attempts)::int AS history,
      (SELECT count(*) FROM tasks t
       WHERE (SELECT count(*) FROM retask.task_attempts a
              WHERE a.task_id = t.task_id AND a.attempt BETWEEN 1 AND t.attempt_count)
             <> t.attempt_count)::int AS gaps,
      (SELECT count(*) FROM tasks t
       WHERE (t.status = 'finished') <> EXISTS (
         SELECT FROM retask.task_attempts a
         WHERE a.task_id = t.task_id AND a.attempt = t.attempt_count AND a.outcome = 'finished'))::int
        AS finished_wrong`;
  assert.ok(row.tasks > 0, "there are tasks");
  assert.equal(row.unfinished, 0, "every task ends finished or error");
  assert.equal(row.above_max, 0, "no task above its maximum attempts");
  assert.equal(row.error_below_max, 0, "every error is at exactly its maximum");
  assert.equal(row.history, row.attempts, "history rows = sum(attempt_count)");
  assert.equal(row.gaps, 0, "each task's history is attempts 1..attempt_count");
  assert.equal(row.finished_wrong, 0, "finished exactly when the last attempt finished");
}

/**
 * For the flaky program: a side-effect row per committed attempt. Every
 * finished task wrote exactly one row, every errored task none, and there are
 * as many rows as finished attempts: each successful attempt ran exactly once.
 * And no attempt of a task ever overlapped another (the clash counter).
 */
export async function assertEffectsExactlyOnce(sql: Sql): Promise<void> {
  const [row] = await sql<{ finished: number; effects: number; wrong: number }[]>`
    SELECT
      (SELECT count(*) FROM retask.task_attempts WHERE outcome = 'finished')::int AS finished,
      (SELECT count(*) FROM effects)::int AS effects,
      (SELECT count(*) FROM tasks t
       WHERE (SELECT count(*) FROM effects e WHERE e.task_key = t.params ->> 'key')
             <> CASE t.status WHEN 'finished' THEN 1 ELSE 0 END)::int AS wrong`;
  assert.equal(row.effects, row.finished, "one effect per finished attempt");
  assert.equal(row.wrong, 0, "finished tasks wrote once, errored ones not at all");
  const [clashes] = await sql<{ count: number }[]>`
    SELECT CASE WHEN is_called THEN last_value ELSE 0 END::int AS count FROM clashes`;
  assert.equal(clashes.count, 0, "no task ran in two transactions at once");
}

/** `n` param objects with distinct keys, merged with `extra`. */
export function keyed(n: number, extra: Record<string, unknown> = {}): Record<string, unknown>[] {
  return Array.from({ length: n }, (_, i) => ({ key: `k${i}`, ...extra }));
}
