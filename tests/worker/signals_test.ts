// `retask work` as a real process: kill -9 mid-task, SIGTERM inside and past
// the shutdown timeout, and a second signal.
import assert from "node:assert/strict";
import type { Sql } from "../../lib/db/connect.ts";
import { enqueue } from "../../lib/mod.ts";
import { freshDatabase, killWorkers, runWork, spawnWorker, waitFor } from "../harness/mod.ts";
import { installWorkerPrograms, waitRunning } from "./helpers.ts";

const QUICK = ["--poll-interval", "100", "--rescue-interval", "300"];

async function history(sql: Sql, id: number) {
  return [
    ...await sql<{ attempt: number; outcome: string; error: string | null; worker: string }[]>`
      SELECT attempt, outcome, error, worker FROM retask.task_attempts WHERE task_id = ${id} ORDER BY attempt`,
  ];
}

// The program is running (not just taken): a lane's backend is inside run_tasks.
function waitExecuting(sql: Sql) {
  return waitFor(async () => {
    const rows = await sql`
      SELECT 1 FROM pg_stat_activity
      WHERE datname = current_database() AND state = 'active' AND pid <> pg_backend_pid()
        AND application_name LIKE 'retask worker %' AND query LIKE '%run_tasks%'`;
    return rows.length > 0;
  }, "the program to be running");
}

Deno.test("worker processes and signals", async (t) => {
  const db = await freshDatabase("worker_signals", { install: true });
  const { sql } = db;
  const programs = await installWorkerPrograms(sql);
  async function reset() {
    await sql`DELETE FROM tasks`;
    await sql`ALTER SEQUENCE sleepy_runs RESTART`;
  }

  try {
    await t.step("kill -9 mid-task: another worker rescues and retries it", async () => {
      await reset();
      const [id] = await enqueue(sql, { program: programs.sleepy_once, params: [{ sleep: 60 }] });
      const doomed = spawnWorker(db.url, QUICK);
      await waitRunning(sql, doomed.pid, "the first worker to take the task");
      await waitExecuting(sql);
      const rescuer = spawnWorker(db.url, [...QUICK, "--drain"]);
      doomed.kill("SIGKILL");
      const [killed, drained] = await Promise.all([doomed.done, rescuer.done]);
      assert.equal(killed.code, 137);
      assert.equal(drained.code, 0, drained.stderr);
      const h = await history(sql, id);
      assert.deepEqual(h.map((a) => a.outcome), ["lost", "finished"]);
      assert.match(h[0].error ?? "", /^worker lost: backend \d+ is gone$/);
      assert.match(h[0].worker, new RegExp(`:${doomed.pid}:`));
      assert.match(h[1].worker, new RegExp(`:${rescuer.pid}:`));
      assert.match(
        drained.stdout,
        new RegExp(`task ${id} sleepy_once attempt 2/3 \\d+ ms finished`),
      );
    });

    await t.step("SIGTERM within the shutdown timeout: the task finishes, exit 0", async () => {
      await reset();
      const [id] = await enqueue(sql, { program: programs.sleepy, params: [{ sleep: 1 }] });
      const worker = spawnWorker(db.url, [...QUICK, "--shutdown-timeout", "30s"]);
      await waitRunning(sql, worker.pid, "the worker to take the task");
      await waitExecuting(sql);
      worker.kill("SIGTERM");
      const { code, stdout, stderr } = await worker.done;
      assert.equal(code, 0, stderr);
      assert.match(stderr, /stopping/);
      assert.match(stdout, new RegExp(`task ${id} sleepy attempt 1/3 \\d+ ms finished`));
      assert.deepEqual((await history(sql, id)).map((a) => a.outcome), ["finished"]);
    });

    await t.step(
      "SIGTERM past the shutdown timeout: the attempt is lost, retried later",
      async () => {
        await reset();
        const [id] = await enqueue(sql, { program: programs.sleepy_once, params: [{ sleep: 60 }] });
        const worker = spawnWorker(db.url, [...QUICK, "--shutdown-timeout", "300ms"]);
        await waitRunning(sql, worker.pid, "the worker to take the task");
        await waitExecuting(sql);
        worker.kill("SIGTERM");
        const { code, stdout, stderr } = await worker.done;
        assert.equal(code, 0, stderr);
        assert.match(
          stdout,
          new RegExp(`task ${id} sleepy_once attempt 1/3 \\d+ ms lost: worker stopped`),
        );
        const [row] = await sql<{ status: string; attempt_count: number }[]>`
        SELECT status, attempt_count FROM tasks WHERE task_id = ${id}`;
        assert.deepEqual(row, { status: "scheduled", attempt_count: 1 });
        assert.deepEqual(await history(sql, id).then((h) => h.map((a) => [a.outcome, a.error])), [
          ["lost", "worker stopped before the task finished"],
        ]);
        const again = await runWork(db.url, [...QUICK, "--drain"]);
        assert.equal(again.code, 0, again.stderr);
        assert.deepEqual((await history(sql, id)).map((a) => a.outcome), ["lost", "finished"]);
      },
    );

    await t.step("a second signal stops at once; the task is rescued later", async () => {
      await reset();
      const [id] = await enqueue(sql, { program: programs.sleepy_once, params: [{ sleep: 60 }] });
      const worker = spawnWorker(db.url, [...QUICK, "--shutdown-timeout", "60s"]);
      await waitRunning(sql, worker.pid, "the worker to take the task");
      await waitExecuting(sql);
      worker.kill("SIGTERM");
      await waitFor(() => /stopping/.test(worker.stderr()), "the first signal to be handled");
      worker.kill("SIGINT");
      const { code, stderr } = await worker.done;
      assert.equal(code, 130, stderr);
      assert.match(stderr, /stopped at once/);
      const again = await runWork(db.url, [...QUICK, "--drain"]);
      assert.equal(again.code, 0, again.stderr);
      assert.deepEqual((await history(sql, id)).map((a) => a.outcome), ["lost", "finished"]);
    });
  } finally {
    await killWorkers();
    await db.drop();
  }
});
