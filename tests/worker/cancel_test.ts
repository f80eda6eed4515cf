// `retask cancel` of a running task: the worker holding it stops its program
// at once (a local batch, or a remote task), the attempt ends cancelled, and
// the task is not retried; the other tasks of its worker go on.
import assert from "node:assert/strict";
import type { Sql } from "../../lib/db/connect.ts";
import { enqueue, registerProgram } from "../../lib/mod.ts";
import { freshDatabase, killWorkers, runCli, spawnWorker, waitFor } from "../harness/mod.ts";

const QUICK = ["--poll-interval", "100", "--rescue-interval", "300"];

// Sleeps, then leaves a side effect: a program cancelled mid-sleep leaves none.
const PROGRAM = `
  CREATE TABLE effects (note text);
  CREATE FUNCTION nap_then_note(params jsonb) RETURNS text LANGUAGE plpgsql AS $$
  BEGIN
    PERFORM pg_sleep((params ->> 'sleep')::float8);
    INSERT INTO effects VALUES (params ->> 'note');
    RETURN 'noted ' || (params ->> 'note');
  END $$;
`;

async function task(sql: Sql, id: number) {
  const [row] = await sql<{ status: string; attempt_count: number; result: string | null }[]>`
    SELECT status, attempt_count, result FROM retask.tasks WHERE task_id = ${id}`;
  return row;
}

async function history(sql: Sql, id: number) {
  return (await sql<{ attempt: number; outcome: string }[]>`
    SELECT attempt, outcome FROM retask.task_attempts WHERE task_id = ${id} ORDER BY attempt`)
    .map((h) => `${h.attempt} ${h.outcome}`);
}

// The task's program is running: a worker backend is inside the statement that runs it.
function waitExecuting(sql: Sql, fragment: string) {
  return waitFor(async () => {
    const rows = await sql`
      SELECT 1 FROM pg_stat_activity
      WHERE state = 'active' AND pid <> pg_backend_pid()
        AND application_name LIKE 'retask worker %' AND query LIKE ${`%${fragment}%`}`;
    return rows.length > 0;
  }, `a worker to run ${fragment}`);
}

Deno.test("cancelling running tasks", async (t) => {
  const db = await freshDatabase("worker_cancel", { install: true });
  const replica = await freshDatabase("worker_cancel_replica", { install: true });
  const { sql } = db;
  await sql.unsafe(PROGRAM);
  await replica.sql.unsafe(PROGRAM);
  const nap = (await registerProgram(sql, "nap", "nap_then_note")).programId;
  assert.equal((await registerProgram(replica.sql, "nap", "nap_then_note")).programId, nap);

  try {
    await t.step("a running pg_sleep(60) task ends cancelled, its program cut short", async () => {
      const [id] = await enqueue(sql, { program: nap, params: [{ sleep: 60, note: "slept" }] });
      const worker = spawnWorker(db.url, QUICK);
      await waitFor(async () => (await task(sql, id)).status === "running", "the task to run");
      await waitExecuting(sql, "run_tasks");
      const cancel = await runCli(["cancel", String(id)], db.url);
      assert.equal(cancel.code, 0, cancel.stderr);
      assert.equal(cancel.stdout, `asked running task ${id} to stop\n`);
      // well within the minute the program would take
      await waitFor(
        async () => (await task(sql, id)).status === "cancelled",
        "the task to be cancelled",
        10_000,
      );
      const row = await task(sql, id);
      assert.equal(row.attempt_count, 1, "no retry");
      assert.match(row.result!, /^attempt 1 of 3\ncancelled by \w+/);
      assert.deepEqual(await history(sql, id), ["1 cancelled"]);
      const effects = await sql`SELECT count(*)::int AS n FROM effects`;
      assert.equal(effects[0].n, 0, "the program did not complete");

      // the worker goes on with other tasks
      const [next] = await enqueue(sql, { program: nap, params: [{ sleep: 0, note: "next" }] });
      await waitFor(async () => (await task(sql, next)).status === "finished", "the next task");
      worker.kill("SIGTERM");
      const done = await worker.done;
      assert.equal(done.code, 0, done.stderr);
      assert.match(
        done.stdout,
        new RegExp(`^task ${id} nap attempt 1/3 \\d+ ms cancelled: cancelled by`, "m"),
      );
    });

    await t.step("a remote task is cancelled on its server", async () => {
      await sql`DELETE FROM effects`;
      const { hostname: host, port } = new URL(db.url);
      const [id] = await enqueue(sql, {
        program: nap,
        params: [{ sleep: 60, note: "remote" }],
        host,
        port: port || "5432",
      });
      const worker = spawnWorker(db.url, [...QUICK, "--remote-host", replica.workerUrl]);
      await waitExecuting(replica.sql, "run_program");
      const cancel = await runCli(["cancel", String(id), "--json"], db.url);
      assert.equal(cancel.code, 0, cancel.stderr);
      assert.deepEqual(JSON.parse(cancel.stdout), { cancelled: [], requested: [id], skipped: [] });
      await waitFor(
        async () => (await task(sql, id)).status === "cancelled",
        "the remote task to be cancelled",
        10_000,
      );
      assert.deepEqual(await history(sql, id), ["1 cancelled"]);
      const effects = await replica.sql`SELECT count(*)::int AS n FROM effects`;
      assert.equal(effects[0].n, 0, "the remote program did not complete");
      worker.kill("SIGTERM");
      assert.equal((await worker.done).code, 0);
    });
  } finally {
    await killWorkers();
    await db.drop();
    await replica.drop();
  }
});
