// Events report only what the database holds: an attempt whose take did not
// survive (a crash undid it, or the task was rescued and taken again) is no
// event, neither from `record_attempts` nor from a batch run. (Issue "Safe to
// deploy", item 15.)
import assert from "node:assert/strict";
import type { ClaimedTask } from "../../lib/worker/claim.ts";
import { failed, finished, lost, recordAttempts } from "../../lib/worker/recorder.ts";
import { enqueue, registerProgram } from "../../lib/mod.ts";
import { freshDatabase, runWork, takeTasks, TEST_FUNCTIONS } from "../harness/mod.ts";

function claimed(taskId: number, attempt: number): ClaimedTask {
  return {
    taskId,
    attempt,
    maxAttempts: 3,
    program: "ok",
    host: null,
    port: null,
    programId: 0,
    params: null,
    problem: null,
  };
}

Deno.test("recording an attempt the database does not hold reports nothing for it", async () => {
  const db = await freshDatabase("security_crash_record", { install: true });
  const { sql } = db;
  try {
    await sql.unsafe(TEST_FUNCTIONS);
    const { programId } = await registerProgram(sql, "ok", "always_ok");
    const [held, undone, retaken] = await enqueue(sql, {
      program: programId,
      params: [{}, {}, {}],
    });
    await takeTasks(sql, 3, "test-worker", "1 minute");
    // a crash lost this take: the task is scheduled again, its attempt uncounted
    await sql`
      UPDATE retask.tasks SET status = 'scheduled', attempt_count = 0, pid = NULL, worker = NULL,
                              lease_expires_at = NULL, started = NULL
      WHERE task_id = ${undone}`;
    // this one was rescued and taken again: it runs attempt 2, not the 1 we hold
    await sql`UPDATE retask.tasks SET attempt_count = 2 WHERE task_id = ${retaken}`;
    const target = { schema: "retask", worker: "test-worker", taskTimeoutMs: 0 };
    const events = await recordAttempts(sql, [
      finished(claimed(held, 1), "done", 1),
      lost(claimed(undone, 1), "worker lost its database connection: test"),
      failed(claimed(retaken, 1), "late", null, null, 1),
    ], target);
    assert.deepEqual(
      events.map((e) => [e.taskId, e.attempt, e.outcome, e.status]),
      [[held, 1, "finished", "finished"]],
    );
    const rows = await sql<{ task_id: number; status: string; attempt_count: number }[]>`
      SELECT task_id, status, attempt_count FROM retask.tasks ORDER BY task_id`;
    assert.deepEqual(rows.map((r) => [r.task_id, r.status, r.attempt_count]), [
      [held, "finished", 1],
      [undone, "scheduled", 0],
      [retaken, "running", 2],
    ]);
    // nothing at all held: no event
    assert.deepEqual(await recordAttempts(sql, [lost(claimed(undone, 1), "gone")], target), []);
  } finally {
    await db.drop();
  }
});

Deno.test("work --json reports each attempt once, as the database holds it", async () => {
  const db = await freshDatabase("security_crash_json", { install: true });
  const { sql } = db;
  try {
    // The first run of each task undoes its own take, as a crash that lost the
    // take's commit would (the test's function, a superuser's: the worker
    // needs no right to the table). The batch's record then finds the task
    // no longer running that attempt; it is taken again and finishes.
    await sql.unsafe(`
      CREATE TABLE undo_once (key text PRIMARY KEY);
      INSERT INTO undo_once VALUES ('a'), ('b');
      CREATE FUNCTION undo_own_take(params jsonb) RETURNS text LANGUAGE plpgsql SECURITY DEFINER
      SET search_path = pg_catalog, pg_temp AS $$
      BEGIN
        DELETE FROM public.undo_once WHERE key = params ->> 'key';
        IF FOUND THEN
          UPDATE retask.tasks t
          SET status = 'scheduled', attempt_count = t.attempt_count - 1, pid = NULL,
              worker = NULL, lease_expires_at = NULL, started = NULL
          WHERE t.status = 'running' AND t.params ->> 'key' = undo_own_take.params ->> 'key';
        END IF;
        RETURN 'ran';
      END $$;
    `);
    const { programId } = await registerProgram(sql, "undo", "undo_own_take");
    const ids = await enqueue(sql, { program: programId, params: [{ key: "a" }, { key: "b" }] });
    const run = await runWork(db.url, ["--drain", "--json", "--poll-interval", "50"]);
    assert.equal(run.code, 0, run.stderr);
    const events = run.stdout.trim().split("\n").map((line) => JSON.parse(line));
    assert.deepEqual(
      events.map((e) => [e.task_id, e.attempt, e.outcome, e.status]).sort(),
      ids.map((id) => [id, 1, "finished", "finished"]),
      run.stdout,
    );
    const history = await sql<{ task_id: number; attempt: number; outcome: string }[]>`
      SELECT task_id, attempt, outcome FROM retask.task_attempts ORDER BY task_id`;
    assert.deepEqual(
      history.map((h) => [h.task_id, h.attempt, h.outcome]),
      ids.map((id) => [id, 1, "finished"]),
    );
  } finally {
    await db.drop();
  }
});
