/**
 * The seed's original `process_tasks()` (the course application's schema,
 * tests/harness/fixtures/course.sql): each worker sleeps one
 * second per loop, so it runs at most one task a second. Throughput is
 * measured over a fixed window with a few workers instead of draining the
 * whole queue, which would take hours. The same window with `bench_lucky`
 * tasks measures the lucky workload: the seed never retries, so each task it
 * takes is one attempt, and ends finished or error.
 * @module
 */
import { client } from "../../lib/db/connect.ts";
import { type FreshDatabase, installCourse, waitFor } from "../../tests/harness/mod.ts";
import { sleep, verify, wallClockMs } from "../common.ts";

/** How to run the seed. */
export interface SeedOptions {
  /** Backends each running `CALL process_tasks()`. */
  workers: number;
  /** Length of the throughput window in seconds. */
  windowSeconds: number;
  /** Tasks for the latency phase, enqueued one at a time `intervalMs` apart. */
  latencyJobs: number;
  intervalMs: number;
}

/** The seed's programs, by id. */
interface SeedPrograms {
  noop: number;
  started: number;
  lucky: number;
}

/** Installs the seed's schema and the benchmark's programs; returns the programs' ids. */
async function installSeed(db: FreshDatabase): Promise<SeedPrograms> {
  await installCourse(db.sql);
  await db.sql.unsafe(await Deno.readTextFile(new URL("../programs.sql", import.meta.url)));
  const id = async (name: string, func: string) => {
    const [row] = await db.sql<{ program_id: number }[]>`
      INSERT INTO programs (name, func) VALUES (${name}, ${func}) RETURNING program_id`;
    return row.program_id;
  };
  return {
    noop: await id("no-op", "bench_noop"),
    started: await id("started", "bench_started"),
    lucky: await id("lucky", "bench_lucky"),
  };
}

/**
 * Starts `n` backends running `CALL process_tasks()` (an endless loop) and
 * returns a function that ends them with pg_terminate_backend.
 */
async function startWorkers(db: FreshDatabase, n: number): Promise<() => Promise<void>> {
  const pool = client(db.url, { max: n, applicationName: "retask-bench-seed" });
  const calls = Array.from(
    { length: n },
    () => pool.unsafe("CALL process_tasks()").catch(() => {}),
  );
  await waitFor(
    async () => {
      const [{ count }] = await db.sql<{ count: number }[]>`
      SELECT count(*)::int AS count FROM pg_stat_activity
      WHERE datname = current_database() AND application_name = 'process_tasks'`;
      return count === n;
    },
    `${n} process_tasks() backends`,
    10_000,
  );
  return async () => {
    await db.sql`
      SELECT pg_terminate_backend(pid) FROM pg_stat_activity
      WHERE datname = current_database() AND application_name = 'process_tasks'`;
    await Promise.all(calls);
    await pool.end({ timeout: 1 });
  };
}

/** What the seed's workers did over a window on a full queue. */
interface Window {
  finished: number;
  error: number;
  seconds: number;
}

// `workers` backends run process_tasks() for the window on a queue of `program`'s tasks
async function runWindow(
  db: FreshDatabase,
  options: SeedOptions,
  program: keyof SeedPrograms,
): Promise<Window> {
  const programs = await installSeed(db);
  // more than the workers can possibly take in the window, so none ever idles
  const tasks = options.workers * options.windowSeconds * 4;
  await db.sql`
    INSERT INTO tasks (program_id, status, params)
    SELECT ${programs[program]}, 'scheduled', jsonb_build_object('i', i)
    FROM generate_series(1, ${tasks}) i`;
  const stop = await startWorkers(db, options.workers);
  const started = wallClockMs();
  await sleep(options.windowSeconds * 1000);
  await stop();
  const seconds = (wallClockMs() - started) / 1000;
  const [row] = await db.sql<{ finished: number; error: number }[]>`
    SELECT count(*) FILTER (WHERE status = 'finished')::int AS finished,
           count(*) FILTER (WHERE status = 'error')::int AS error
    FROM tasks`;
  return { ...row, seconds };
}

/** Tasks finished per second by `workers` backends over the window, on a full queue. */
export async function seedThroughput(db: FreshDatabase, options: SeedOptions): Promise<number> {
  const w = await runWindow(db, options, "noop");
  verify(w.finished > 0, "the seed's workers finished no task");
  verify(w.error === 0, `${w.error} seed tasks ended in error`);
  return w.finished / w.seconds;
}

/**
 * The lucky workload for the seed: `workers` backends over the window on a
 * queue of bench_lucky tasks. Its history is the task row itself (no retries,
 * no attempt count): each task that ended, finished or error, is one attempt.
 */
export async function seedLucky(db: FreshDatabase, options: SeedOptions) {
  const w = await runWindow(db, options, "lucky");
  const ended = w.finished + w.error;
  verify(ended > 0, "the seed's workers ended no lucky task");
  return {
    jobsPerSec: ended / w.seconds,
    attemptsPerSec: ended / w.seconds,
    jobs: ended,
    attempts: ended,
    seconds: w.seconds,
  };
}

/** Enqueue-to-start latencies (ms) of tasks enqueued one at a time to idle workers. */
export async function seedLatency(db: FreshDatabase, options: SeedOptions): Promise<number[]> {
  const { started } = await installSeed(db);
  const stop = await startWorkers(db, options.workers);
  const sentAt: number[] = [];
  try {
    await sleep(1000);
    for (let i = 0; i < options.latencyJobs; i++) {
      const t0 = wallClockMs();
      sentAt.push(t0);
      // the seed's own enqueue is a plain INSERT (empapi.run_program)
      await db.sql`
        INSERT INTO tasks (program_id, status, params)
        VALUES (${started}, 'scheduled', ${db.sql.json({ i })})`;
      await sleep(Math.max(0, t0 + options.intervalMs - wallClockMs()));
    }
    await waitFor(
      async () => {
        const [{ n }] = await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM bench_starts`;
        return n === options.latencyJobs;
      },
      "the seed's workers to start every latency task",
      10_000 + options.latencyJobs * 2_000,
    );
  } finally {
    await stop();
  }
  const rows = await db.sql<{ i: number; at: number }[]>`
    SELECT i, extract(epoch FROM started)::float8 * 1000 AS at FROM bench_starts ORDER BY i`;
  return rows.map((r) => r.at - sentAt[r.i]);
}
