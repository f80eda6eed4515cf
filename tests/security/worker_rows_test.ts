// Rows written past retask's functions fail only their own task: the worker
// lives, and every other task runs. (Issue "Safe to deploy", items 8 and 13.)
import assert from "node:assert/strict";
import { enqueue, registerProgram } from "../../lib/mod.ts";
import { freshDatabase, runWork, TEST_FUNCTIONS } from "../harness/mod.ts";

Deno.test("a remote row with a port that is no port fails alone, reaching no server", async () => {
  const db = await freshDatabase("security_rows", { install: true });
  const { sql } = db;
  try {
    await sql.unsafe(TEST_FUNCTIONS);
    const { programId } = await registerProgram(sql, "ok", "always_ok");
    const good = await enqueue(sql, { program: programId, params: Array(5).fill({}) });
    // written directly, as an old course row or a careless INSERT would be
    const [bad] = await sql<{ task_id: number; port: string }[]>`
      INSERT INTO retask.tasks (program_id, status, params, host, port, max_attempts)
      VALUES (${programId}, 'scheduled', '{}', '127.0.0.1', 'abc', 1), (${programId}, 'scheduled', '{}', '127.0.0.1', '99999', 1)
      RETURNING task_id, port`;
    const run = await runWork(db.url, ["--drain", "--poll-interval", "50"]);
    assert.equal(run.code, 0, run.stderr);
    const rows = await sql<{ task_id: number; status: string; result: string }[]>`
      SELECT task_id, status, result FROM retask.tasks ORDER BY task_id`;
    const byId = new Map(rows.map((r) => [r.task_id, r]));
    for (const id of good) assert.equal(byId.get(id)?.status, "finished");
    assert.equal(byId.get(bad.task_id)?.status, "error");
    assert.equal(
      byId.get(bad.task_id)?.result,
      'attempt 1 of 1\nport must be a number from 1 to 65535, got "abc"',
    );
    assert.match(byId.get(bad.task_id + 1)?.result ?? "", /got "99999"$/);
  } finally {
    await db.drop();
  }
});

Deno.test("attempt counts past their maximum cannot be written, and old ones end in error", async () => {
  const db = await freshDatabase("security_counts", { install: true });
  const { sql } = db;
  try {
    await sql.unsafe(TEST_FUNCTIONS);
    const { programId } = await registerProgram(sql, "ok", "always_ok");
    const [id] = await enqueue(sql, { program: programId });
    await assert.rejects(
      sql`UPDATE retask.tasks SET attempt_count = 2147483647 WHERE task_id = ${id}`,
      /violates check constraint "tasks_attempt_count_check"/,
    );
    // a database where such a row got in before: the upgrade ends it, the worker runs the rest
    await sql`ALTER TABLE retask.tasks DROP CONSTRAINT tasks_attempt_count_check`;
    await sql`UPDATE retask.tasks SET attempt_count = 2147483647 WHERE task_id = ${id}`;
    const [other] = await enqueue(sql, { program: programId });
    await sql.unsafe(
      await Deno.readTextFile(
        new URL("../../sql/migrations/0002_attempt_bounds.sql", import.meta.url),
      ),
    );
    const run = await runWork(db.url, ["--drain", "--poll-interval", "50"]);
    assert.equal(run.code, 0, run.stderr);
    const rows = await sql<{ task_id: number; status: string; result: string }[]>`
      SELECT task_id, status, result FROM retask.tasks ORDER BY task_id`;
    assert.deepEqual(rows.map((r) => [r.task_id, r.status]), [[id, "error"], [other, "finished"]]);
    assert.match(rows[0].result, /^attempt 2147483647 of 3\nno attempt left: /);
  } finally {
    await db.drop();
  }
});
