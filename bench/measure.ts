/**
 * The measurements of `deno task bench` (bench/bench.ts), each on a fresh
 * database: worker throughput, enqueue rates, take and enqueue cost against a
 * table full of finished tasks, and the worker's memory over a long drain.
 * @module
 */
import type { Sql } from "../lib/db/connect.ts";
import type { FreshDatabase } from "../tests/harness/mod.ts";
import { median, verify, wallClockMs, withBenchDatabase } from "./common.ts";
import { drain, type DrainResult, fillQueue, prepareRetask } from "./retask.ts";

/** Where and how long. */
export interface MeasureOptions {
  server: string;
  timeoutMs: number;
  /** Extra `retask work` flags. */
  args: string[];
}

/** What the server did per task during a drain: commits and function calls. */
export interface ServerWork {
  commitsPerTask: number;
  /** Calls per task of the retask functions, e.g. `{ take_tasks: 0.05 }`. */
  callsPerTask: Record<string, number>;
}

/** A drain and what it cost the server. */
export interface Throughput extends DrainResult {
  server: ServerWork;
}

async function serverCounters(sql: Sql) {
  await sql`SELECT pg_stat_clear_snapshot()`;
  const [db] = await sql<{ commits: number }[]>`
    SELECT xact_commit::float8 AS commits FROM pg_stat_database WHERE datname = current_database()`;
  const calls = await sql<{ name: string; calls: number }[]>`
    SELECT funcname AS name, calls::float8 AS calls FROM pg_stat_user_functions`;
  return { commits: db.commits, calls: Object.fromEntries(calls.map((c) => [c.name, c.calls])) };
}

/**
 * Drains `tasks` tasks of `program` (`noop` or `lucky`) with `retask work
 * --drain <flags>`, counting the server's commits and function calls per task
 * (track_functions is turned on for this database only).
 */
export function throughput(
  o: MeasureOptions,
  program: "noop" | "lucky",
  tasks: number,
  flags: string[],
): Promise<Throughput> {
  return withBenchDatabase(o.server, `${program}_throughput`, async (db) => {
    await db.sql.unsafe(`ALTER DATABASE ${db.name} SET track_functions = 'all'`);
    const programs = await prepareRetask(db);
    await fillQueue(db.sql, programs[program], tasks);
    const before = await serverCounters(db.sql);
    const result = await drain(db, [...o.args, ...flags], o.timeoutMs);
    // the worker's backends report their statistics as they exit, a moment
    // after the worker does: read until two readings agree
    let after = await serverCounters(db.sql);
    for (let i = 0; i < 20; i++) {
      await new Promise((resolve) => setTimeout(resolve, 250));
      const again = await serverCounters(db.sql);
      if (JSON.stringify(again.calls) === JSON.stringify(after.calls)) break;
      after = again;
    }
    verify(result.tasks === tasks, `${result.tasks} tasks drained of ${tasks}`);
    if (program === "noop") {
      verify(result.attempts === tasks, `${result.attempts} attempts for ${tasks} no-op tasks`);
    }
    // every function the drain called, so the figure follows the worker as it changes
    const callsPerTask: Record<string, number> = {};
    for (const [name, calls] of Object.entries(after.calls)) {
      const n = calls - (before.calls[name] ?? 0);
      if (n > 0) callsPerTask[name] = n / tasks;
    }
    return {
      ...result,
      server: { commitsPerTask: (after.commits - before.commits) / tasks, callsPerTask },
    };
  });
}

/** Enqueue rates, tasks per second. */
export interface EnqueueRates {
  /** `SELECT enqueue_task(...)`, one statement per task. */
  oneAtATime: number;
  /** `enqueue_tasks` with a jsonb array of `bulkSize` tasks per call. */
  bulk: number;
  bulkSize: number;
}

/** Times `single` one-at-a-time enqueues and `bulkCalls` bulk calls of `bulkSize` tasks. */
export function enqueueRates(
  o: MeasureOptions,
  single: number,
  bulkCalls: number,
  bulkSize: number,
): Promise<EnqueueRates> {
  return withBenchDatabase(o.server, "enqueue", async (db) => {
    const { noop } = await prepareRetask(db);
    let t0 = wallClockMs();
    for (let i = 0; i < single; i++) {
      await db.sql`SELECT retask.enqueue_task(${noop}::bigint, ${db.sql.json({ i })})`;
    }
    const oneAtATime = single / ((wallClockMs() - t0) / 1000);
    const params = Array.from({ length: bulkSize }, (_, i) => ({ i }));
    t0 = wallClockMs();
    for (let c = 0; c < bulkCalls; c++) {
      // the shape lib/queue/enqueue.ts enqueue() sends: one jsonb array, split in SQL
      await db.sql`
        SELECT count(*) FROM retask.enqueue_tasks(${noop}::bigint,
          ARRAY(SELECT e.v FROM jsonb_array_elements(${db.sql.json(params)}::jsonb)
                WITH ORDINALITY AS e(v, i) ORDER BY e.i))`;
    }
    const bulk = (bulkCalls * bulkSize) / ((wallClockMs() - t0) / 1000);
    const [{ n }] = await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM retask.tasks`;
    verify(n === single + bulkCalls * bulkSize, `${n} tasks after enqueueing`);
    return { oneAtATime, bulk, bulkSize };
  });
}

/** Per-operation cost in microseconds (median of `ops` sequential calls). */
export interface OpCost {
  enqueueUs: number;
  takeUs: number;
}

/** Take and enqueue cost before and after `rows` finished tasks were added. */
export interface FinishedRowsCost {
  rows: number;
  before: OpCost;
  after: OpCost;
  /** How long filling (and vacuuming) took, in seconds. */
  fillSeconds: number;
}

// Without synchronous commit: each op's cost is then the server's work on the
// table and its indexes, which is what grows with the table if anything does,
// not the disk's flush time, which does not (and which a checkpoint after the
// bulk fill would inflate).
async function opCost(db: FreshDatabase, program: number, ops: number): Promise<OpCost> {
  const sql = await db.sql.reserve();
  try {
    await sql`SET synchronous_commit = off`;
    const enqueue: number[] = [];
    for (let i = 0; i < ops; i++) {
      const t0 = wallClockMs();
      await sql`SELECT retask.enqueue_task(${program}::bigint, ${sql.json({ i })})`;
      enqueue.push(wallClockMs() - t0);
    }
    const take: number[] = [];
    const taken: { task_id: number; attempt_count: number }[] = [];
    for (let i = 0; i < ops; i++) {
      const t0 = wallClockMs();
      const rows = await sql<{ task_id: number; attempt_count: number }[]>`
        SELECT task_id, attempt_count FROM retask.take_tasks(1, 'bench', interval '1 minute')`;
      take.push(wallClockMs() - t0);
      taken.push(...rows);
    }
    verify(taken.length === ops, `took ${taken.length} of ${ops} tasks`);
    // finish them, so the next round starts from the same queue: empty
    await sql`
      SELECT count(*) FROM retask.record_attempts(${taken.map((t) => t.task_id)}::bigint[],
                                                  ${taken.map((t) => t.attempt_count)}::integer[],
                                                  ${taken.map(() => "finished")}::text[])`;
    return { enqueueUs: median(enqueue) * 1000, takeUs: median(take) * 1000 };
  } finally {
    sql.release();
  }
}

// The lowest of `rounds` medians: other load on the machine only ever adds time,
// so the minimum is the figure least disturbed by it.
async function bestOf(rounds: number, measure: () => Promise<OpCost>): Promise<OpCost> {
  const all: OpCost[] = [];
  for (let i = 0; i < rounds; i++) all.push(await measure());
  return {
    enqueueUs: Math.min(...all.map((c) => c.enqueueUs)),
    takeUs: Math.min(...all.map((c) => c.takeUs)),
  };
}

/**
 * Measures take and enqueue one at a time (synchronous commit off; the best
 * median of three rounds), adds `rows` finished tasks (one
 * INSERT ... SELECT generate_series, plus their history rows, then VACUUM
 * ANALYZE as autovacuum eventually would) and measures again: both should stay
 * flat, since the partial index on runnable tasks never holds finished ones.
 */
export function finishedRowsCost(
  o: MeasureOptions,
  rows: number,
  ops: number,
): Promise<FinishedRowsCost> {
  return withBenchDatabase(o.server, "finished_rows", async (db) => {
    const { noop } = await prepareRetask(db);
    await opCost(db, noop, ops); // warm caches and plans
    const before = await bestOf(3, () => opCost(db, noop, ops));
    const t0 = wallClockMs();
    await db.sql`
      INSERT INTO retask.tasks (program_id, status, params, started, finished, result,
                                attempt_count, created, run_after)
      SELECT ${noop}, 'finished', jsonb_build_object('i', i), now(), now(),
             E'attempt 1 of 3\nok', 1, now(), now()
      FROM generate_series(1, ${rows}::int) i`;
    await db.sql`
      INSERT INTO retask.task_attempts (task_id, attempt, started, finished, outcome)
      SELECT task_id, 1, started, finished, 'finished' FROM retask.tasks
      WHERE status = 'finished' AND NOT EXISTS (
        SELECT FROM retask.task_attempts a WHERE a.task_id = tasks.task_id)`;
    await db.sql`VACUUM ANALYZE retask.tasks, retask.task_attempts`;
    const fillSeconds = (wallClockMs() - t0) / 1000;
    const [{ n }] = await db.sql<{ n: number }[]>`
      SELECT count(*)::int AS n FROM retask.tasks WHERE status = 'finished'`;
    verify(n >= rows, `${n} finished rows, wanted ${rows}`);
    const after = await bestOf(3, () => opCost(db, noop, ops));
    return { rows: n, before, after, fillSeconds };
  });
}

/** The worker's resident memory over a long drain. */
export interface MemoryRun {
  tasks: number;
  tasksPerSec: number;
  /** RSS samples in MiB, in time order, one per `everyMs`. */
  samplesMiB: number[];
  everyMs: number;
  /** Median of the first and of the last fifth of the samples. */
  earlyMiB: number;
  lateMiB: number;
  maxMiB: number;
}

async function rssMiB(pid: number): Promise<number | null> {
  try {
    const status = await Deno.readTextFile(`/proc/${pid}/status`);
    const kb = /VmRSS:\s+(\d+) kB/.exec(status);
    return kb ? Number(kb[1]) / 1024 : null;
  } catch {
    return null; // exited, or not Linux
  }
}

/**
 * Drains `tasks` no-op tasks with one `retask work` process, sampling its RSS
 * every `everyMs` from `warmupMs` on (before that Deno is still loading).
 */
export function memoryRun(
  o: MeasureOptions,
  tasks: number,
  everyMs = 500,
  warmupMs = 3000,
): Promise<MemoryRun> {
  return withBenchDatabase(o.server, "memory", async (db) => {
    const { noop } = await prepareRetask(db);
    await fillQueue(db.sql, noop, tasks);
    const samples: number[] = [];
    let sampling: Promise<void> = Promise.resolve();
    const result = await drain(db, o.args, o.timeoutMs, (pid, done) => {
      let over = false;
      done.finally(() => (over = true)).catch(() => {});
      sampling = (async () => {
        await new Promise((resolve) => setTimeout(resolve, warmupMs));
        while (!over) {
          const mib = await rssMiB(pid);
          if (mib !== null && !over) samples.push(mib);
          await new Promise((resolve) => setTimeout(resolve, everyMs));
        }
      })();
    });
    await sampling;
    verify(samples.length >= 5, `only ${samples.length} RSS samples (is /proc there?)`);
    const fifth = Math.max(1, Math.floor(samples.length / 5));
    return {
      tasks: result.tasks,
      tasksPerSec: result.tasksPerSec,
      samplesMiB: samples.map((s) => Math.round(s * 10) / 10),
      everyMs,
      earlyMiB: median(samples.slice(0, fifth)),
      lateMiB: median(samples.slice(-fifth)),
      maxMiB: Math.max(...samples),
    };
  });
}
