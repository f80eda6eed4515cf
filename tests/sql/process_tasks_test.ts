// The seed's in-database worker, `CALL process_tasks()`, retries by the same
// rule. It runs on a connection of its own and is stopped with pg_cancel_backend.
import assert from "node:assert/strict";
import { client } from "../../lib/db/connect.ts";
import { enqueue, registerProgram } from "../../lib/mod.ts";
import { freshDatabase, TEST_FUNCTIONS, waitFor } from "../harness/mod.ts";

Deno.test("CALL process_tasks() retries failures up to three attempts", async () => {
  const db = await freshDatabase("process_tasks", { install: true });
  const { sql } = db;
  await sql.unsafe(TEST_FUNCTIONS);
  const worker = client(db.url, { max: 1 });
  const call = worker`CALL process_tasks('20 milliseconds')`.catch((error) => error);
  try {
    // first: a failed ASSERT (which OTHERS does not catch) must not stop the loop
    await sql`CREATE FUNCTION asserts(params jsonb) RETURNS text
              LANGUAGE plpgsql AS $$ BEGIN ASSERT false, 'checked'; RETURN 'x'; END $$`;
    const asserted = await enqueue(sql, {
      program: (await registerProgram(sql, "asserts", "asserts")).programId,
    });
    const fails = await enqueue(sql, {
      program: (await registerProgram(sql, "fail", "always_fail")).programId,
    });
    const oks = await enqueue(sql, {
      program: (await registerProgram(sql, "ok", "always_ok")).programId,
    });
    const notes = (await registerProgram(sql, "notes", "note_and_fail")).programId;
    const [kept] = await enqueue(sql, { program: notes, params: [{ note: "kept", fail: false }] });
    const [undone] = await enqueue(sql, {
      program: notes,
      params: [{ note: "undone", fail: true }],
    });
    const lucky = (await registerProgram(sql, "lucky", "retask.lucky")).programId;
    const sure = await enqueue(sql, { program: lucky, params: Array(20).fill({ probability: 1 }) });
    const never = await enqueue(sql, {
      program: lucky,
      params: Array(20).fill({ probability: 0 }),
    });
    const all = [...asserted, ...fails, ...oks, kept, undone, ...sure, ...never];

    await waitFor(
      async () => {
        const [{ pending }] = await sql<{ pending: number }[]>`
        SELECT count(*)::int AS pending FROM tasks
        WHERE task_id = ANY(${all}) AND status IN ('scheduled', 'running')`;
        return pending === 0;
      },
      "process_tasks to finish every task",
      60_000,
    );

    const rows = await sql<
      { task_id: number; status: string; attempt_count: number; result: string; attempts: number }[]
    >`
      SELECT t.task_id, t.status, t.attempt_count, t.result,
             (SELECT count(*)::int FROM retask.task_attempts a WHERE a.task_id = t.task_id) AS attempts
      FROM tasks t WHERE t.task_id = ANY(${all})`;
    const byId = new Map(rows.map((r) => [r.task_id, r]));

    const checked = byId.get(asserted[0])!;
    assert.equal(checked.status, "error");
    assert.equal(checked.attempts, 3);
    assert.match(checked.result, /^attempt 3 of 3\nchecked\n/);

    const failed = byId.get(fails[0])!;
    assert.equal(failed.status, "error");
    assert.equal(failed.attempt_count, 3);
    assert.equal(failed.attempts, 3);
    assert.match(
      failed.result,
      /^attempt 3 of 3\nfailed on purpose\nPL\/pgSQL function always_fail\(jsonb\)/,
    );

    const succeeded = byId.get(oks[0])!;
    assert.deepEqual([succeeded.status, succeeded.attempt_count, succeeded.attempts], [
      "finished",
      1,
      1,
    ]);
    assert.equal(succeeded.result, "attempt 1 of 3\nalways_ok\n---------\nok       \n");

    // a program's effects commit with its finished mark, and roll back with a failure
    const effects = await sql<{ task_note: string }[]>`SELECT task_note FROM side_effects`;
    assert.deepEqual(effects.map((e) => e.task_note), ["kept"]);
    assert.equal(byId.get(undone)!.attempt_count, 3);

    for (const id of sure) {
      const r = byId.get(id)!;
      assert.deepEqual([r.status, r.attempt_count], ["finished", 1]);
      assert.match(r.result, /^attempt 1 of 3\n.*\nМне повезло\s*\n$/s);
    }
    const errors = await sql<{ error: string }[]>`
      SELECT DISTINCT error FROM retask.task_attempts WHERE task_id = ANY(${never})`;
    for (const id of never) {
      const r = byId.get(id)!;
      assert.deepEqual([r.status, r.attempt_count, r.attempts], ["error", 3, 3]);
    }
    assert.ok(errors.length >= 2, `several different errors, got ${errors.map((e) => e.error)}`);
  } finally {
    await sql`SELECT pg_cancel_backend(pid) FROM pg_stat_activity
              WHERE application_name = 'process_tasks' AND datname = current_database()`;
    const stopped = await call;
    await worker.end();
    await db.drop();
    assert.equal((stopped as { code?: string })?.code, "57014", "stopped by the cancel");
  }
});

Deno.test("cancelling process_tasks mid-task ends that attempt as lost, not running", async () => {
  const db = await freshDatabase("process_tasks_cancel", { install: true });
  const { sql } = db;
  await sql.unsafe(`CREATE FUNCTION slow(params jsonb) RETURNS text LANGUAGE sql
                    AS $$ SELECT pg_sleep(30)::text $$`);
  const worker = client(db.url, { max: 1 });
  try {
    const [id] = await enqueue(sql, {
      program: (await registerProgram(sql, "slow", "slow")).programId,
    });
    const call = worker`CALL process_tasks('20 milliseconds')`.catch((error) => error);
    await waitFor(async () => {
      const [row] = await sql<{ status: string }[]>`SELECT status FROM tasks WHERE task_id = ${id}`;
      return row.status === "running";
    }, "the task to start");
    await sql`SELECT pg_cancel_backend(pid) FROM pg_stat_activity
              WHERE application_name = 'process_tasks' AND datname = current_database()`;
    assert.equal(((await call) as { code?: string }).code, "57014");
    // the session is still alive, yet the task is not left running under it
    const [row] = await sql<{ status: string; attempt_count: number; result: string }[]>`
      SELECT status, attempt_count, result FROM tasks WHERE task_id = ${id}`;
    assert.deepEqual([row.status, row.attempt_count], ["scheduled", 1]);
    assert.equal(row.result, "attempt 1 of 3\nprocess_tasks was cancelled during the task");
    const [{ outcome }] = await sql`SELECT outcome FROM retask.task_attempts WHERE task_id = ${id}`;
    assert.equal(outcome, "lost");
    const [{ alive }] = await worker`SELECT 1 AS alive`;
    assert.equal(alive, 1);
  } finally {
    await worker.end();
    await db.drop();
  }
});
