// Removing ended tasks while workers run: `work --retention` prunes what ended
// long ago and nothing else, and `retask prune` during a drain removes its
// tasks without costing the drain a task or an attempt.
import assert from "node:assert/strict";
import type { Sql } from "../../lib/db/connect.ts";
import { enqueue, registerProgram } from "../../lib/mod.ts";
import {
  freshDatabase,
  killWorkers,
  runCli,
  runWork,
  spawnWorker,
  TEST_FUNCTIONS,
  waitFor,
} from "../harness/mod.ts";

const QUICK = ["--poll-interval", "100", "--rescue-interval", "300"];

// `n` tasks that ended `ago`, each with its one attempt in the history.
async function endedTasks(
  sql: Sql,
  programId: number,
  n: number,
  ago: string,
  status = "finished",
) {
  const rows = await sql<{ task_id: number }[]>`
    WITH t AS (
      INSERT INTO retask.tasks (program_id, status, params, attempt_count, started, finished, result)
      SELECT ${programId}, ${status}, '{}', 1, now() - ${ago}::interval, now() - ${ago}::interval,
             'attempt 1 of 3'
      FROM generate_series(1, ${n})
      RETURNING task_id, started, finished, status
    ), h AS (
      INSERT INTO retask.task_attempts (task_id, attempt, started, finished, outcome)
      SELECT task_id, 1, started, finished, CASE WHEN status = 'finished' THEN 'finished' ELSE 'error' END
      FROM t
    )
    SELECT task_id FROM t ORDER BY task_id`;
  return rows.map((r) => r.task_id);
}

const count = async (sql: Sql, table: string) =>
  (await sql.unsafe<{ n: number }[]>(`SELECT count(*)::int AS n FROM ${table}`))[0].n;

Deno.test("pruning while workers run", async (t) => {
  const db = await freshDatabase("worker_retention", { install: true });
  const { sql } = db;
  await sql.unsafe(TEST_FUNCTIONS);
  const ok = (await registerProgram(sql, "ok", "always_ok")).programId;

  try {
    await t.step("work --retention removes what ended longer ago, and only that", async () => {
      const old = [
        ...await endedTasks(sql, ok, 20, "3 days"),
        ...await endedTasks(sql, ok, 5, "3 days", "error"),
      ];
      const recent = await endedTasks(sql, ok, 10, "1 hour");
      // a retried task: scheduled again (for later), its last end long ago
      const [waiting] = await enqueue(sql, {
        program: ok,
        runAfter: new Date(Date.now() + 3600e3),
      });
      await sql`UPDATE retask.tasks SET finished = now() - interval '3 days' WHERE task_id = ${waiting}`;
      const worker = spawnWorker(db.url, [...QUICK, "--retention", "1d"]);
      await waitFor(async () => (await count(sql, "retask.tasks")) === 11, "the old tasks to go");
      const left = await sql`SELECT task_id FROM retask.tasks ORDER BY task_id`;
      assert.deepEqual(left.map((r) => r.task_id), [...recent, waiting]);
      const history = await sql`
        SELECT count(*)::int AS n FROM retask.task_attempts WHERE task_id = ANY (${old}::bigint[])`;
      assert.equal(history[0].n, 0, "their history went with them");
      worker.kill("SIGTERM");
      const done = await worker.done;
      assert.equal(done.code, 0, done.stderr);
      assert.match(done.stderr, /retention 1d/);
      assert.match(done.stderr, /pruned 25 task\(s\) that ended more than 1d ago/);
    });

    await t.step("work --retention takes an age with a unit", async () => {
      const out = await runWork(db.url, ["--retention", "30"]);
      assert.equal(out.code, 2);
      assert.match(out.stderr, /--retention must be an age with a unit: 45s, 90m, 12h, 30d or 2w/);
    });

    await t.step("prune during a drain: the drain loses nothing", async () => {
      await sql`DELETE FROM retask.tasks`;
      const old = 30_000;
      await endedTasks(sql, ok, old, "40 days");
      const fresh = await enqueue(sql, { program: ok, params: Array(3000).fill({}) });
      const [drained, pruned] = await Promise.all([
        runWork(db.url, [...QUICK, "--quiet", "--drain", "--concurrency", "4"]),
        runCli(["prune", "--older-than", "30d", "--batch-size", "500", "--json"], db.url),
      ]);
      assert.equal(drained.code, 0, drained.stderr);
      assert.equal(pruned.code, 0, pruned.stderr);
      assert.deepEqual(JSON.parse(pruned.stdout), { deleted: old });
      const [row] = await sql<{ tasks: number; finished: number; attempts: number }[]>`
        SELECT (SELECT count(*) FROM retask.tasks)::int AS tasks,
               (SELECT count(*) FROM retask.tasks
                WHERE status = 'finished' AND attempt_count = 1
                  AND task_id = ANY (${fresh}::bigint[]))::int AS finished,
               (SELECT count(*) FROM retask.task_attempts)::int AS attempts`;
      assert.deepEqual(row, { tasks: 3000, finished: 3000, attempts: 3000 });
    });
  } finally {
    await killWorkers();
    await db.drop();
  }
});
