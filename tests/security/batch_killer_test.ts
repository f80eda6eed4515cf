// One task that kills its own backend fails only itself: the batch it cut
// runs again, one task per statement, and only the task that loses its
// connection alone is charged. (Issue "Safe to deploy", item 7.)
import assert from "node:assert/strict";
import { enqueue, registerProgram } from "../../lib/mod.ts";
import { freshDatabase, runWork, TEST_FUNCTIONS } from "../harness/mod.ts";

Deno.test("a task that kills its own backend costs no other task an attempt", async () => {
  const db = await freshDatabase("security_killer", { install: true });
  const { sql } = db;
  try {
    await sql.unsafe(TEST_FUNCTIONS);
    // what any role may do: terminate its own backend
    await sql.unsafe(`
      CREATE FUNCTION kill_own_backend(params jsonb) RETURNS text LANGUAGE plpgsql AS $$
      BEGIN
        PERFORM pg_terminate_backend(pg_backend_pid());
        PERFORM pg_sleep(10);
        RETURN 'still here';
      END $$`);
    const ok = await registerProgram(sql, "ok", "always_ok");
    const killer = await registerProgram(sql, "killer", "kill_own_backend");
    // in the middle of the queue, so it shares the batches of lanes at full size
    await enqueue(sql, { program: ok.programId, params: Array(200).fill({}) });
    const [bad] = await enqueue(sql, { program: killer.programId, maxAttempts: 3 });
    await enqueue(sql, { program: ok.programId, params: Array(200).fill({}) });

    const run = await runWork(db.url, ["--drain"]);
    assert.equal(run.code, 0, run.stderr);

    const [killed] = await sql<{ status: string; attempt_count: number; outcomes: string[] }[]>`
      SELECT t.status, t.attempt_count,
             array(SELECT a.outcome FROM retask.task_attempts a
                   WHERE a.task_id = t.task_id ORDER BY a.attempt) AS outcomes
      FROM retask.tasks t WHERE t.task_id = ${bad}`;
    assert.deepEqual(killed, {
      status: "error",
      attempt_count: 3,
      outcomes: ["lost", "lost", "lost"],
    });
    const [others] = await sql<
      { tasks: number; finished_once: number; history: number; not_finished: number }[]
    >`
      SELECT count(*)::int AS tasks,
             count(*) FILTER (WHERE t.status = 'finished' AND t.attempt_count = 1)::int
               AS finished_once,
             count(*) FILTER (WHERE t.status <> 'finished')::int AS not_finished,
             (SELECT count(*) FROM retask.task_attempts a
              WHERE a.task_id <> ${bad})::int AS history
      FROM retask.tasks t WHERE t.task_id <> ${bad}`;
    assert.deepEqual(others, { tasks: 400, finished_once: 400, not_finished: 0, history: 400 });
    const [wrong] = await sql<{ n: number }[]>`
      SELECT count(*)::int AS n FROM retask.task_attempts
      WHERE task_id <> ${bad} AND (attempt <> 1 OR outcome <> 'finished')`;
    assert.equal(wrong.n, 0, "every other task's one history row is its finished first attempt");
  } finally {
    await db.drop();
  }
});
