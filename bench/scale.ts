/**
 * retask at scale: a table of a million tasks (mostly finished, some error,
 * each attempt in the history), two `retask work` processes draining a stream
 * that eight enqueuers feed one `enqueue_task` at a time, and `retask status`
 * (the library calls it makes: listTasks and listSchedules) timed while the
 * stream runs and after it has drained.
 * @module
 */
import { client, type Sql } from "../lib/db/connect.ts";
import { listTasks, type TaskFilter } from "../lib/queue/read.ts";
import { listSchedules } from "../lib/queue/schedules.ts";
import { spawnWorker, waitFor } from "../tests/harness/mod.ts";
import { percentile, sleep, verify, wallClockMs, withBenchDatabase } from "./common.ts";
import { prepareRetask, workEnded } from "./retask.ts";

/** How to measure. */
export interface ScaleOptions {
  server: string;
  timeoutMs: number;
  /** Extra `retask work` flags. */
  args: string[];
  /** Ended tasks in the table before the stream starts. */
  rows: number;
  /** Connections enqueueing one task at a time. */
  enqueuers: number;
  /** How long they enqueue. */
  seconds: number;
  /**
   * Status calls of each kind after the stream; during it, at most as many
   * rounds of the three, one a second at most.
   */
  statusCalls: number;
}

/** The `retask status` calls timed: no filter, `--status error`, `--program no-op`. */
export const STATUS_KINDS = {
  all: {},
  error: { status: "error" },
  program: { program: "no-op" },
} as const satisfies Record<string, TaskFilter>;

/** A kind of status call. */
export type StatusKind = keyof typeof STATUS_KINDS;

/** Timings of one kind of status call, in ms. */
export interface StatusTiming {
  calls: number;
  p50: number;
  max: number;
}

/** What the scale measurement found. */
export interface ScaleResult {
  /** Tasks in the table before the stream, and how long filling and vacuuming took. */
  rows: number;
  fillSeconds: number;
  enqueuers: number;
  /** From the enqueuers' start to the last one's last commit. */
  seconds: number;
  enqueued: number;
  enqueuesPerSec: number;
  /** One enqueue_task call, ms. */
  enqueueMs: { p50: number; p99: number; max: number };
  /** Stream tasks the workers ended during the window, per second, and those left queued. */
  drainedPerSec: number;
  backlog: number;
  /** While the stream ran, and after it drained with the workers stopped. */
  statusDuring: Record<StatusKind, StatusTiming>;
  statusAfter: Record<StatusKind, StatusTiming>;
}

// `rows` tasks created over the last weeks, ended as a queue's tasks end: 88%
// finished (most at the first attempt, some after one or two retries), 10%
// error after three attempts, 2% cancelled before they ran; 80% of them the
// no-op program's, the rest lucky's. Every attempt gets its history row.
async function fillEnded(sql: Sql, programs: { noop: number; lucky: number }, rows: number) {
  await sql`
    INSERT INTO retask.tasks (program_id, status, params, attempt_count, created, run_after,
                              started, finished, result, worker)
    SELECT CASE WHEN i % 10 < 8 THEN ${programs.noop}::bigint ELSE ${programs.lucky}::bigint END,
           s.status, jsonb_build_object('i', i), s.attempts, c.created, c.created,
           CASE WHEN s.attempts > 0 THEN c.created + interval '1 second' END,
           c.created + interval '1 second' + s.attempts * interval '5 milliseconds',
           CASE s.status
             WHEN 'finished' THEN format('attempt %s of 3', s.attempts) || E'\nok'
             WHEN 'error' THEN E'attempt 3 of 3\nНе повезло'
           END,
           CASE WHEN s.attempts > 0 THEN 'bench-old' END
    FROM generate_series(1, ${rows}::int) i
    CROSS JOIN LATERAL (
      SELECT CASE WHEN i % 100 < 88 THEN 'finished' WHEN i % 100 < 98 THEN 'error'
                  ELSE 'cancelled' END AS status,
             CASE WHEN i % 100 < 80 THEN 1 WHEN i % 100 < 86 THEN 2 WHEN i % 100 < 98 THEN 3
                  ELSE 0 END AS attempts) s
    CROSS JOIN LATERAL (
      SELECT now() - (${rows}::int - i) * interval '2 seconds' AS created) c`;
  await sql`
    INSERT INTO retask.task_attempts (task_id, attempt, started, finished, outcome, error, worker)
    SELECT t.task_id, n, t.started + (n - 1) * interval '5 milliseconds',
           t.started + n * interval '5 milliseconds',
           CASE WHEN t.status = 'finished' AND n = t.attempt_count THEN 'finished' ELSE 'error' END,
           CASE WHEN t.status = 'finished' AND n = t.attempt_count THEN NULL ELSE 'Не повезло' END,
           t.worker
    FROM retask.tasks t CROSS JOIN generate_series(1, t.attempt_count) n`;
  await sql`VACUUM ANALYZE retask.tasks`;
  await sql`VACUUM ANALYZE retask.task_attempts`;
  // the fill's dirty pages are written now, not in the middle of the measurement
  await sql`CHECKPOINT`;
}

// One `retask status` without a task id: what commands/status.ts calls, on an open connection.
async function statusCall(sql: Sql, kind: StatusKind): Promise<number> {
  const t0 = wallClockMs();
  await listTasks(sql, { ...STATUS_KINDS[kind] });
  await listSchedules(sql);
  return wallClockMs() - t0;
}

function timing(ms: number[]): StatusTiming {
  return { calls: ms.length, p50: percentile(ms, 50), max: ms.length ? Math.max(...ms) : NaN };
}

// Status calls of every kind in turn, at most `most` of each, until `until()`
// says stop; a round starts every `everyMs` at most (spread over a window).
async function statusRounds(sql: Sql, most: number, until: () => boolean, everyMs = 0) {
  const kinds = Object.keys(STATUS_KINDS) as StatusKind[];
  const ms = Object.fromEntries(kinds.map((k) => [k, [] as number[]])) as Record<
    StatusKind,
    number[]
  >;
  for (let round = 0; round < most && !until(); round++) {
    const next = wallClockMs() + everyMs;
    for (const kind of kinds) {
      if (until()) break;
      ms[kind].push(await statusCall(sql, kind));
    }
    await sleep(Math.max(0, next - wallClockMs()));
  }
  return Object.fromEntries(kinds.map((k) => [k, timing(ms[k])])) as Record<
    StatusKind,
    StatusTiming
  >;
}

async function countStream(sql: Sql, after: number) {
  const [row] = await sql<{ ended: number; queued: number; total: number; history: number }[]>`
    SELECT count(*) FILTER (WHERE status IN ('finished', 'error'))::int AS ended,
           count(*) FILTER (WHERE status IN ('scheduled', 'running'))::int AS queued,
           count(*)::int AS total,
           (SELECT count(*)::int FROM retask.task_attempts WHERE task_id > ${after}::bigint)
             AS history
    FROM retask.tasks WHERE task_id > ${after}::bigint`;
  return row;
}

/**
 * Fills the table with `rows` ended tasks, starts two `retask work`, then for
 * `seconds` runs `enqueuers` connections each calling `retask.enqueue_task`
 * one at a time (no-op tasks, which the workers drain) beside one connection
 * calling what `retask status` calls; then waits for the stream to drain,
 * stops the workers and times the status calls again.
 */
export function scale(o: ScaleOptions): Promise<ScaleResult> {
  return withBenchDatabase(o.server, "scale", async (db) => {
    const programs = await prepareRetask(db);
    const t0 = wallClockMs();
    await fillEnded(db.sql, programs, o.rows);
    const fillSeconds = (wallClockMs() - t0) / 1000;
    const [{ n, last }] = await db.sql<{ n: number; last: number }[]>`
      SELECT count(*)::int AS n, coalesce(max(task_id), 0)::int8 AS last FROM retask.tasks`;
    verify(n === o.rows, `${n} tasks after filling ${o.rows}`);
    // counts by status must be the table's, however status comes by them
    const filled = await listTasks(db.sql);
    verify(filled.counts.total === n, `status counts ${filled.counts.total} tasks of ${n}`);

    const workers = [0, 1].map(() => spawnWorker(db.url, ["--quiet", ...o.args], o.timeoutMs));
    const pools: Sql[] = [];
    const open = (name: string) => {
      const sql = client(db.url, { max: 1, applicationName: `retask-bench-${name}` });
      pools.push(sql);
      return sql;
    };
    let exited = false;
    for (const work of workers) work.done.finally(() => (exited = true)).catch(() => {});
    try {
      await waitFor(
        async () => {
          if (exited) await Promise.race(workers.map(workEnded)); // throws with its stderr
          const [{ up }] = await db.sql<{ up: number }[]>`
            SELECT count(DISTINCT application_name)::int AS up FROM pg_stat_activity
            WHERE datname = current_database() AND application_name LIKE 'retask worker %'`;
          return up >= 2;
        },
        "two retask work processes to connect",
        60_000,
      );
      await sleep(1000);
      const enqueuers = Array.from({ length: o.enqueuers }, (_, e) => open(`enqueue-${e}`));
      const status = open("status");
      // connected before the clock starts
      await Promise.all([...enqueuers, status].map((sql) => sql`SELECT 1`));

      const start = wallClockMs();
      const end = start + o.seconds * 1000;
      const callMs: number[] = [];
      let lastCommit = start;
      const enqueueing = enqueuers.map(async (sql, e) => {
        let i = 0;
        while (wallClockMs() < end) {
          const t = wallClockMs();
          await sql`SELECT retask.enqueue_task(${programs.noop}::bigint, ${sql.json({ e, i })})`;
          lastCommit = Math.max(lastCommit, wallClockMs());
          callMs.push(wallClockMs() - t);
          i++;
        }
        return i;
      });
      const statusDuring = await statusRounds(
        status,
        o.statusCalls,
        () => wallClockMs() >= end,
        // like `retask status --watch` (a round a second), or spread thinner
        Math.max(1000, (o.seconds * 1000) / o.statusCalls),
      );
      const enqueued = (await Promise.all(enqueueing)).reduce((a, b) => a + b, 0);
      const seconds = (lastCommit - start) / 1000;
      const atEnd = await countStream(db.sql, last);
      verify(atEnd.total === enqueued, `${atEnd.total} stream tasks for ${enqueued} enqueued`);

      await waitFor(
        async () => (await countStream(db.sql, last)).queued === 0,
        "the workers to drain the stream",
        o.timeoutMs,
        200,
      );
      for (const work of workers) work.kill("SIGTERM");
      await Promise.all(workers.map(workEnded));
      const drained = await countStream(db.sql, last);
      verify(drained.ended === enqueued, `${drained.ended} of ${enqueued} stream tasks ended`);
      verify(drained.history === enqueued, `${drained.history} attempts for ${enqueued} no-ops`);

      const statusAfter = await statusRounds(status, o.statusCalls, () => false);
      const after = await listTasks(db.sql);
      verify(
        after.counts.total === n + enqueued,
        `status counts ${after.counts.total} tasks of ${n + enqueued}`,
      );
      return {
        rows: n,
        fillSeconds,
        enqueuers: o.enqueuers,
        seconds,
        enqueued,
        enqueuesPerSec: enqueued / seconds,
        enqueueMs: {
          p50: percentile(callMs, 50),
          p99: percentile(callMs, 99),
          max: Math.max(...callMs),
        },
        drainedPerSec: atEnd.ended / seconds,
        backlog: atEnd.queued,
        statusDuring,
        statusAfter,
      };
    } finally {
      for (const work of workers) work.kill("SIGTERM");
      await Promise.allSettled(workers.map((w) => w.done));
      await Promise.all(pools.map((sql) => sql.end({ timeout: 1 })));
    }
  });
}
