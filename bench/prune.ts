/**
 * What pruning costs a drain: `retask work --drain` of no-op tasks in a table
 * that also holds `oldRows` tasks ended 40 days ago (each with its attempt in
 * the history), measured once alone and once while `pruneTasks` (what `retask
 * prune` and `work --retention` run) deletes those old rows. Each on a fresh
 * database. The figure is the drain's throughput while the prune ran, against
 * the drain alone.
 * @module
 */
import { client, type Sql } from "../lib/db/connect.ts";
import { pruneTasks } from "../lib/queue/operate.ts";
import { spawnWorker, waitFor } from "../tests/harness/mod.ts";
import { verify, withBenchDatabase } from "./common.ts";
import { fillQueue, prepareRetask } from "./retask.ts";

/** How to measure. */
export interface PruneOptions {
  server: string;
  timeoutMs: number;
  /** Extra `retask work` flags. */
  args: string[];
  /** Old ended tasks to prune. */
  oldRows: number;
  /** No-op tasks the worker drains meanwhile. */
  tasks: number;
  batchSize: number;
  /** pruneTasks' rest after each batch, as a multiple of the batch's time. */
  restRatio?: number;
}

/** One drain, with or without a prune beside it. */
export interface PruneRun {
  /** The drain alone, from its first attempt's start to its last attempt's end. */
  tasksPerSec: number;
  /** The drain while the prune ran (the whole drain when none ran). */
  whilePruningPerSec: number;
  /** Old rows deleted, and how long it took (0 when none ran). */
  pruned: number;
  pruneSeconds: number;
  /** The prune ended before the drain did, so the window is its whole run. */
  pruneWithinDrain: boolean;
}

/** The drain alone and beside a prune at each rest ratio. */
export interface PruneCost {
  /** Drains alone: one before the prunes and one after, so a drift shows. */
  alone: PruneRun[];
  pruning: (PruneRun & { restRatio: number; cost: number })[];
}

// `n` tasks that ended 40 days ago, each with its one attempt in the history.
async function oldTasks(sql: Sql, programId: number, n: number): Promise<void> {
  for (let from = 0; from < n; from += 100_000) {
    const count = Math.min(100_000, n - from);
    await sql`
      WITH t AS (
        INSERT INTO retask.tasks (program_id, status, params, attempt_count, started, finished,
                                  result, created, run_after)
        SELECT ${programId}, 'finished', '{}', 1, now() - interval '40 days',
               now() - interval '40 days', 'attempt 1 of 3' || E'\\n' || ' ok',
               now() - interval '40 days', now() - interval '40 days'
        FROM generate_series(1, ${count})
        RETURNING task_id, started, finished
      )
      INSERT INTO retask.task_attempts (task_id, attempt, started, finished, outcome)
      SELECT task_id, 1, started, finished, 'finished' FROM t`;
  }
}

async function measure(o: PruneOptions, prune: boolean): Promise<PruneRun> {
  return await withBenchDatabase(o.server, prune ? "prune_beside" : "prune_alone", async (db) => {
    const programs = await prepareRetask(db);
    await oldTasks(db.sql, programs.noop, o.oldRows);
    await fillQueue(db.sql, programs.noop, o.tasks);
    await db.sql`VACUUM ANALYZE retask.tasks`;
    await db.sql`VACUUM ANALYZE retask.task_attempts`;
    await db.sql`CHECKPOINT`;
    const work = spawnWorker(db.url, ["--quiet", "--drain", ...o.args], o.timeoutMs);
    let window: { start: Date; end: Date } | null = null;
    let pruned = 0;
    if (prune) {
      await waitFor(
        async () =>
          (await db.sql`SELECT 1 FROM retask.tasks WHERE status = 'running' LIMIT 1`).length > 0,
        "the drain to start",
        o.timeoutMs,
      );
      const own = client(db.url, { max: 1 });
      try {
        const [{ start }] = await own<{ start: Date }[]>`SELECT clock_timestamp() AS start`;
        pruned = (await pruneTasks(own, {
          olderThan: "30 days",
          batchSize: o.batchSize,
          restRatio: o.restRatio,
        })).deleted;
        const [{ end }] = await own<{ end: Date }[]>`SELECT clock_timestamp() AS end`;
        window = { start, end };
      } finally {
        await own.end();
      }
    }
    const exit = await work.done;
    verify(exit.code === 0, `retask work exited ${exit.code}: ${exit.stderr.trim()}`);
    const [row] = await db.sql<
      { tasks: number; seconds: number; ended_at: Date; in_window: number; window_s: number }[]
    >`
      WITH drained AS (
        SELECT started, finished FROM retask.task_attempts WHERE finished > now() - interval '1 day'
      ), edges AS (
        SELECT min(started) AS first, max(finished) AS last, count(*)::int AS tasks FROM drained
      )
      SELECT e.tasks, extract(epoch FROM e.last - e.first)::float8 AS seconds, e.last AS ended_at,
             (SELECT count(*)::int FROM drained d
              WHERE d.finished BETWEEN ${window?.start ?? null}::timestamptz
                                   AND least(${
      window?.end ?? null
    }::timestamptz, e.last)) AS in_window,
             extract(epoch FROM least(${window?.end ?? null}::timestamptz, e.last)
                                - ${window?.start ?? null}::timestamptz)::float8 AS window_s
      FROM edges e`;
    verify(row.tasks === o.tasks, `${row.tasks} of ${o.tasks} tasks drained`);
    if (prune) verify(pruned === o.oldRows, `pruned ${pruned} of ${o.oldRows}`);
    const tasksPerSec = row.tasks / row.seconds;
    return {
      tasksPerSec,
      whilePruningPerSec: window ? row.in_window / row.window_s : tasksPerSec,
      pruned,
      pruneSeconds: window ? (window.end.getTime() - window.start.getTime()) / 1000 : 0,
      pruneWithinDrain: window !== null && window.end <= row.ended_at,
    };
  });
}

/**
 * The drain alone, beside a prune of `oldRows` old tasks at each of
 * `restRatios`, and alone again. A prune's cost is 1 - the drain's throughput
 * while it ran / the mean of the drains alone.
 */
export async function pruneCost(o: PruneOptions, restRatios: number[]): Promise<PruneCost> {
  const first = await measure(o, false);
  const runs = [];
  for (const restRatio of restRatios) {
    runs.push({ restRatio, ...await measure({ ...o, restRatio }, true) });
  }
  const last = await measure(o, false);
  const alone = (first.tasksPerSec + last.tasksPerSec) / 2;
  return {
    alone: [first, last],
    pruning: runs.map((r) => ({ ...r, cost: 1 - r.whilePruningPerSec / alone })),
  };
}
