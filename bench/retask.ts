/**
 * Measuring retask's worker as users run it: `retask work` in a process of its
 * own (`deno run main.ts work`), against a database the benchmark filled.
 * Timings come from the tasks' own records, so the process's start-up is not
 * counted: from the first attempt's start to the last attempt's end.
 * @module
 */
import type { Sql } from "../lib/db/connect.ts";
import { install } from "../lib/db/schema.ts";
import {
  type FreshDatabase,
  spawnWorker,
  waitFor,
  type WorkerProcess,
} from "../tests/harness/mod.ts";
import { sleep, verify, wallClockMs } from "./common.ts";

/** The benchmark's programs, registered in a retask database. */
export interface Programs {
  noop: number;
  started: number;
  lucky: number;
}

/** Installs retask and the benchmark's programs (bench/programs.sql) into `db`. */
export async function prepareRetask(db: FreshDatabase): Promise<Programs> {
  await install(db.sql);
  await db.sql.unsafe(await Deno.readTextFile(new URL("./programs.sql", import.meta.url)));
  const id = async (name: string, func: string) => {
    const [row] = await db.sql<
      { id: number }[]
    >`SELECT program_id AS id FROM retask.upsert_program(${name}, ${func})`;
    return row.id;
  };
  return {
    noop: await id("no-op", "bench_noop"),
    started: await id("started", "bench_started"),
    lucky: await id("lucky", "retask.lucky"),
  };
}

/**
 * Queues `count` tasks of `program` with params `{ "i": n }`, in bulk
 * (enqueue_tasks, 10,000 a call), then ANALYZEs so the planner knows the table.
 */
export async function fillQueue(sql: Sql, program: number, count: number): Promise<void> {
  for (let from = 1; from <= count; from += 10_000) {
    const to = Math.min(count, from + 9_999);
    await sql`
      SELECT count(*) FROM retask.enqueue_tasks(${program}::bigint,
        ARRAY(SELECT jsonb_build_object('i', i) FROM generate_series(${from}::int, ${to}::int) i))`;
  }
  await sql`ANALYZE`;
}

/** Waits for `work` to end; throws with what it printed on stderr unless it ended well. */
export async function workEnded(work: WorkerProcess): Promise<void> {
  const exit = await work.done;
  if (exit.code !== 0 && exit.signal !== "SIGTERM") {
    throw new Error(
      `retask work exited ${exit.code} (${exit.signal ?? "no signal"}): ${exit.stderr.trim()}`,
    );
  }
}

/** What a drain measured. */
export interface DrainResult {
  tasks: number;
  attempts: number;
  /** First attempt's start to last attempt's end, in seconds. */
  seconds: number;
  tasksPerSec: number;
  attemptsPerSec: number;
  /** The `work` process from spawn to exit, start-up included. */
  wallSeconds: number;
}

/**
 * Drains a filled queue with `retask work --drain <args>` and checks that every
 * task ended (finished, or error after its last attempt) with one history row
 * per attempt. `onPid` sees the process while it runs (for RSS sampling).
 */
export async function drain(
  db: FreshDatabase,
  args: string[],
  timeoutMs: number,
  onPid?: (pid: number, done: Promise<unknown>) => void,
): Promise<DrainResult> {
  const began = wallClockMs();
  // --quiet: a line per task is not what is measured; killed after timeoutMs, so no
  // loop can outlive the benchmark
  const work = spawnWorker(db.url, ["--quiet", "--drain", ...args], timeoutMs);
  const status = workEnded(work);
  onPid?.(work.pid, status);
  await status;
  const wallSeconds = (wallClockMs() - began) / 1000;
  const [row] = await db.sql<{
    tasks: number;
    unended: number;
    attempts: number;
    history: number;
    early_errors: number;
    seconds: number;
  }[]>`
    SELECT count(*)::int AS tasks,
           count(*) FILTER (WHERE status NOT IN ('finished', 'error'))::int AS unended,
           sum(attempt_count)::int AS attempts,
           (SELECT count(*)::int FROM retask.task_attempts) AS history,
           count(*) FILTER (WHERE status = 'error' AND attempt_count < max_attempts)::int
             AS early_errors,
           (SELECT extract(epoch FROM max(finished) - min(started))::float8
            FROM retask.task_attempts) AS seconds
    FROM retask.tasks`;
  verify(row.tasks > 0, "no task in the queue");
  verify(row.unended === 0, `${row.unended} of ${row.tasks} tasks did not end`);
  verify(row.attempts === row.history, `${row.attempts} attempts but ${row.history} history rows`);
  verify(row.early_errors === 0, `${row.early_errors} tasks ended in error with attempts left`);
  return {
    tasks: row.tasks,
    attempts: row.attempts,
    seconds: row.seconds,
    tasksPerSec: row.tasks / row.seconds,
    attemptsPerSec: row.attempts / row.seconds,
    wallSeconds,
  };
}

/** How to measure pickup latency. */
export interface LatencyOptions {
  jobs: number;
  intervalMs: number;
  /** Extra `retask work` flags. */
  args: string[];
  timeoutMs: number;
}

/** Pickup latencies in ms, per task, and the two legs of each. */
export interface Pickup {
  /** Enqueue call to program start. */
  latenciesMs: number[];
  /** Enqueue call to the start of the transaction that took the task. */
  toTakeMs: number[];
  /** That take to program start: the worker's own path. */
  takeToStartMs: number[];
}

/**
 * Starts an idle `retask work`, then enqueues `jobs` tasks one at a time,
 * `intervalMs` apart; a task's latency is from just before its enqueue call
 * to the moment its program starts (clock_timestamp() in bench_started).
 */
export async function pickupLatency(
  db: FreshDatabase,
  programs: Programs,
  options: LatencyOptions,
): Promise<Pickup> {
  const work = spawnWorker(db.url, ["--quiet", ...options.args], options.timeoutMs);
  const sentAt: number[] = [];
  try {
    // a first task proves the worker is up and listening before the clock starts
    await db.sql`SELECT retask.enqueue_task(${programs.noop}::bigint)`;
    await waitFor(
      async () => {
        const [{ n }] = await db.sql<{ n: number }[]>`
        SELECT count(*)::int AS n FROM retask.tasks WHERE status = 'finished'`;
        return n === 1;
      },
      "retask work to run a first task",
      30_000,
    );
    await sleep(1000);
    for (let i = 0; i < options.jobs; i++) {
      const t0 = wallClockMs();
      sentAt.push(t0);
      await db.sql`SELECT retask.enqueue_task(${programs.started}::bigint, ${db.sql.json({ i })})`;
      await sleep(Math.max(0, t0 + options.intervalMs - wallClockMs()));
    }
    await waitFor(
      async () => {
        const [{ n }] = await db.sql<{ n: number }[]>`
        SELECT count(*)::int AS n FROM retask.tasks WHERE status = 'finished'`;
        return n === options.jobs + 1;
      },
      "retask work to finish every latency task",
      options.timeoutMs,
    );
  } finally {
    work.kill("SIGTERM");
    await workEnded(work);
  }
  // the take's time is the start of the transaction that took the task (now())
  const rows = await db.sql<{ i: number; at: number; taken: number }[]>`
    SELECT s.i, extract(epoch FROM s.started)::float8 * 1000 AS at,
           extract(epoch FROM a.started)::float8 * 1000 AS taken
    FROM bench_starts s
    JOIN retask.tasks t ON t.params ->> 'i' = s.i::text AND t.program_id = ${programs.started}
    JOIN retask.task_attempts a ON a.task_id = t.task_id AND a.attempt = 1
    ORDER BY s.i`;
  verify(rows.length === options.jobs, `${rows.length} of ${options.jobs} latency tasks started`);
  return {
    latenciesMs: rows.map((r) => r.at - sentAt[r.i]),
    toTakeMs: rows.map((r) => r.taken - sentAt[r.i]),
    takeToStartMs: rows.map((r) => r.at - r.taken),
  };
}
