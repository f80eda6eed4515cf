// The worker run in-process (as `retask demo` does) and the SQL it adds
// (sql/state_machine.sql, sql/run.sql): batches, savepoints, timeouts, drain, rescue, leases.
import assert from "node:assert/strict";
import { client } from "../../lib/db/connect.ts";
import type { TaskOutcome } from "../../lib/worker/outcome.ts";
import { enqueue, registerProgram } from "../../lib/mod.ts";
import { runWorker } from "../../lib/worker/loop.ts";
import { freshDatabase, takeTasks, TEST_FUNCTIONS, waitFor } from "../harness/mod.ts";
import { assertInvariants, installWorkerPrograms } from "./helpers.ts";

Deno.test("worker in-process", async (t) => {
  const db = await freshDatabase("worker_inprocess", { install: true });
  const { sql } = db;
  await sql.unsafe(TEST_FUNCTIONS);
  const programs = await installWorkerPrograms(sql);
  const note =
    (await sql<{ id: number }[]>`SELECT register_program('note', 'note_and_fail') AS id`)[0]
      .id;
  const fast = { pollIntervalMs: 50, rescueIntervalMs: 100 };

  async function reset() {
    await sql`DELETE FROM tasks`;
    await sql`DELETE FROM side_effects`;
  }

  try {
    await t.step(
      "a batch: failures roll back alone, successes commit with their mark",
      async () => {
        await reset();
        const params = Array.from({ length: 30 }, (_, i) => ({ note: `n${i}`, fail: i % 3 === 0 }));
        const ids = await enqueue(sql, { program: note, params, maxAttempts: 1 });
        const events: TaskOutcome[] = [];
        const summary = await runWorker(db.workerUrl, {
          ...fast,
          concurrency: 1,
          batchSize: 50,
          drain: true,
          onOutcome: (e) => events.push(e),
        });
        assert.equal(summary.stopped, "drained");
        assert.equal(summary.finished, 20);
        assert.equal(summary.errored, 10);
        assert.equal(events.length, 30);
        const notes = await sql<
          { task_note: string }[]
        >`SELECT task_note FROM side_effects ORDER BY 1`;
        assert.deepEqual(
          notes.map((n) => n.task_note),
          params.filter((p) => !p.fail).map((p) => p.note).sort(),
          "only the successes' writes committed",
        );
        const [failed] = await sql<{ result: string; error: string; context: string }[]>`
        SELECT t.result, a.error, a.context FROM tasks t JOIN retask.task_attempts a USING (task_id)
        WHERE t.task_id = ${ids[0]}`;
        assert.equal(failed.error, "failed after writing");
        assert.match(failed.context, /PL\/pgSQL function note_and_fail\(jsonb\) line \d+ at RAISE/);
        assert.doesNotMatch(
          failed.context,
          /run_tasks/,
          "the worker's own frame is left out",
        );
        assert.match(failed.result, /^attempt 1 of 1\nfailed after writing\nPL\/pgSQL function/);
        const event = events.find((e) => e.taskId === ids[1])!;
        assert.equal(event.outcome, "finished");
        assert.equal(event.program, "note");
        assert.equal(event.attempt, 1);
        assert.equal(event.maxAttempts, 1);
        assert.match(event.worker, /^[^:]+:\d+:[0-9a-f]{4}$/);
        await assertInvariants(sql);
      },
    );

    // OTHERS does not catch a failed ASSERT: it must still fail only its own task
    await t.step("a failed ASSERT fails its task, not its batch", async () => {
      await reset();
      await sql`CREATE OR REPLACE FUNCTION asserts(params jsonb) RETURNS text
                LANGUAGE plpgsql AS $$ BEGIN ASSERT false, 'checked'; RETURN 'x'; END $$`;
      const { programId } = await registerProgram(sql, "asserts", "asserts");
      await enqueue(sql, { program: programs.sleepy, params: Array(30).fill({ sleep: 0 }) });
      const [bad] = await enqueue(sql, { program: programId, maxAttempts: 1 });
      await enqueue(sql, { program: programs.sleepy, params: Array(9).fill({ sleep: 0 }) });
      const warnings: string[] = [];
      await runWorker(db.workerUrl, {
        ...fast,
        concurrency: 1,
        drain: true,
        onLog: (e) => e.level === "warn" && warnings.push(e.message),
      });
      const rows = await sql<{ task_id: number; status: string; attempt_count: number }[]>`
        SELECT task_id, status, attempt_count FROM tasks ORDER BY task_id`;
      for (const row of rows.filter((r) => r.task_id !== bad)) {
        assert.deepEqual([row.status, row.attempt_count], ["finished", 1], `task ${row.task_id}`);
      }
      const [history] = await sql<{ outcome: string; error: string }[]>`
        SELECT outcome, error FROM retask.task_attempts WHERE task_id = ${bad}`;
      assert.deepEqual([history.outcome, history.error], ["error", "checked"]);
      assert.deepEqual(warnings, []);
    });

    await t.step("retries follow the rule; the lucky program ends finished or at 3", async () => {
      await reset();
      await enqueue(sql, { program: programs.lucky, params: Array(200).fill({}) });
      const summary = await runWorker(sql, { ...fast, concurrency: 3, drain: true });
      assert.equal(summary.finished + summary.errored, 200);
      assert.ok(summary.retried > 0);
      await assertInvariants(sql);
    });

    await t.step("a task over the timeout is a failed attempt that says so", async () => {
      await reset();
      const [id] = await enqueue(sql, {
        program: programs.sleepy,
        params: [{ sleep: 5 }],
        maxAttempts: 1,
      });
      const [ok] = await enqueue(sql, { program: programs.sleepy, params: [{ sleep: 0 }] });
      await runWorker(db.workerUrl, { ...fast, concurrency: 1, taskTimeoutMs: 200, drain: true });
      const rows = await sql<{ task_id: number; status: string; result: string }[]>`
        SELECT task_id, status, result FROM tasks ORDER BY task_id`;
      assert.equal(rows[0].task_id, id);
      assert.equal(rows[0].status, "error");
      assert.match(rows[0].result, /^attempt 1 of 1\ntimed out after 200 ms\n/);
      assert.equal(rows[1].task_id, ok);
      assert.equal(rows[1].status, "finished", "the batch went on after the timeout");
    });

    // A batch runs in one statement: each task must still get the whole timeout.
    // The quick task first makes the lane's next batch hold the slow ones together.
    await t.step("every task of a batch gets the whole timeout", async () => {
      await reset();
      await enqueue(sql, { program: programs.sleepy, params: [{ sleep: 0 }] });
      const slow = await enqueue(sql, {
        program: programs.sleepy,
        params: [{ sleep: 0.3 }, { sleep: 0.3 }],
        maxAttempts: 1,
      });
      const stuck = await enqueue(sql, {
        program: programs.sleepy,
        params: [{ sleep: 30 }, { sleep: 30 }],
        maxAttempts: 1,
      });
      await runWorker(db.workerUrl, { ...fast, concurrency: 1, taskTimeoutMs: 400, drain: true });
      const rows = await sql<{ task_id: number; status: string; result: string }[]>`
        SELECT task_id, status, result FROM tasks ORDER BY task_id`;
      const status = new Map(rows.map((r) => [r.task_id, r]));
      for (const id of slow) {
        assert.equal(status.get(id)!.status, "finished", "not cut short by the task before it");
      }
      for (const id of stuck) {
        assert.equal(status.get(id)!.status, "error");
        assert.match(status.get(id)!.result, /^attempt 1 of 1\ntimed out after 400 ms/);
      }
    });

    // A batch's statement outlives a short timeout; where the timer fires
    // outside a program (locking, recording), nothing of the statement commits.
    await t.step("a short timeout cuts batches, never quick tasks", async () => {
      await reset();
      await enqueue(sql, { program: programs.sleepy, params: Array(600).fill({ sleep: 0 }) });
      const warnings: string[] = [];
      // 1 ms: most statements are cut, some outside any program (while locking or recording)
      const summary = await runWorker(db.workerUrl, {
        ...fast,
        concurrency: 1,
        taskTimeoutMs: 1,
        drain: true,
        onLog: (e) => e.level === "warn" && warnings.push(e.message),
      });
      // (a task the machine stalls past 1 ms times out, as it should: counted, not lost)
      assert.equal(summary.finished + summary.errored, 600);
      assert.deepEqual(warnings, [], "no batch failed as a whole");
      const lost = await sql<{ n: number }[]>`
        SELECT count(*)::int AS n FROM retask.task_attempts WHERE outcome = 'lost'`;
      assert.equal(lost[0].n, 0);
      await assertInvariants(sql);
    });

    await t.step(
      "with no task timeout, the database's own timeout does not cut batches",
      async () => {
        await reset();
        await enqueue(sql, { program: programs.sleepy, params: Array(20).fill({ sleep: 0 }) });
        await enqueue(sql, {
          program: programs.sleepy,
          params: Array(6).fill({ sleep: 0.3 }),
          maxAttempts: 1,
        });
        const database = new URL(db.url).pathname.slice(1);
        await sql.unsafe(`ALTER DATABASE "${database}" SET statement_timeout = '1s'`);
        try {
          const summary = await runWorker(db.workerUrl, {
            ...fast,
            concurrency: 1,
            taskTimeoutMs: 0,
            drain: true,
          });
          assert.equal(summary.finished, 26);
          assert.equal(summary.errored, 0);
        } finally {
          await sql.unsafe(`ALTER DATABASE "${database}" RESET statement_timeout`);
        }
      },
    );

    await t.step("drain waits for a task scheduled later", async () => {
      await reset();
      const [later] = await enqueue(sql, {
        program: programs.sleepy,
        params: [{ sleep: 0 }],
        runAfter: new Date(Date.now() + 3_600_000),
      });
      let settled = false;
      const events: TaskOutcome[] = [];
      const worker = runWorker(db.workerUrl, {
        ...fast,
        drain: true,
        onOutcome: (e) => events.push(e),
      }).finally(() => (settled = true));
      // two tasks run and end while the later one waits: the worker drained twice and stayed
      for (const n of [1, 2]) {
        await enqueue(sql, { program: programs.sleepy, params: [{ sleep: 0 }] });
        await waitFor(() => events.length === n, `task ${n} to end`);
      }
      assert.equal(settled, false, "still waiting for the scheduled task");
      await sql`UPDATE tasks SET run_after = now() - interval '1 second' WHERE task_id = ${later}`;
      const summary = await worker;
      assert.equal(summary.stopped, "drained");
      assert.equal(events.at(-1)?.taskId, later);
    });

    await t.step("a task of a vanished backend is rescued and run", async () => {
      await reset();
      const [id] = await enqueue(sql, { program: programs.sleepy, params: [{ sleep: 0 }] });
      const gone = client(db.url, { max: 1 });
      await takeTasks(gone, 1, "gone", "1 hour");
      await gone.end();
      await runWorker(db.workerUrl, { ...fast, drain: true });
      const history = await sql<{ outcome: string }[]>`
        SELECT outcome FROM retask.task_attempts WHERE task_id = ${id} ORDER BY attempt`;
      assert.deepEqual(history.map((h) => h.outcome), ["lost", "finished"]);
    });

    await t.step("stop: running tasks finish within the shutdown timeout", async () => {
      await reset();
      const [id] = await enqueue(sql, { program: programs.sleepy, params: [{ sleep: 0.5 }] });
      const controller = new AbortController();
      const worker = runWorker(db.workerUrl, { ...fast, signal: controller.signal });
      await waitFor(
        async () => (await sql`SELECT 1 FROM tasks WHERE status = 'running'`).length,
        "the task to start",
      );
      controller.abort();
      const summary = await worker;
      assert.equal(summary.stopped, "signal");
      const [row] = await sql<{ status: string }[]>`SELECT status FROM tasks WHERE task_id = ${id}`;
      assert.equal(row.status, "finished");
    });
  } finally {
    await db.drop();
  }
});

Deno.test("run_tasks: a batch in one statement, each task under its own savepoint", async () => {
  const db = await freshDatabase("run_tasks", { install: true });
  const { sql } = db;
  try {
    await sql.unsafe(TEST_FUNCTIONS);
    const [{ id: note }] = await sql<{ id: number }[]>`
      SELECT register_program('note', 'note_and_fail') AS id`;
    const ids = await enqueue(sql, {
      program: note,
      params: [{ note: "a" }, { note: "b", fail: true }, { note: "c" }, { note: "d" }],
      maxAttempts: 2,
    });
    await takeTasks(sql, 4, "w", "1 minute");
    // the third was rescued and taken again since: its first attempt is not ours to run
    await sql`UPDATE tasks SET attempt_count = 2 WHERE task_id = ${ids[2]}`;
    const rows = await sql<
      { task_id: number; outcome: string; status: string | null; error: string | null }[]
    >`
      SELECT task_id, outcome, status, error
      FROM retask.run_tasks(${[ids[3], ids[0], ids[1], ids[2]]}::bigint[], '{1,1,1,1}')`;
    assert.deepEqual(rows.map((r) => [r.task_id, r.outcome, r.status, r.error]), [
      [ids[0], "finished", "finished", null],
      [ids[1], "retry", "scheduled", "failed after writing"],
      [ids[2], "taken", null, null],
      [ids[3], "finished", "finished", null],
    ], "in task order, whatever the order asked");
    const notes = await sql<{ task_note: string }[]>`SELECT task_note FROM side_effects ORDER BY 1`;
    assert.deepEqual(notes.map((n) => n.task_note), ["a", "d"], "the failure's write rolled back");
    const tasks = await sql<{ status: string; result: string | null }[]>`
      SELECT status, result FROM tasks ORDER BY task_id`;
    assert.equal(tasks[0].result, "attempt 1 of 2\nnote_and_fail\n-------------\nwrote a      \n");
    assert.match(tasks[1].result!, /^attempt 1 of 2\nfailed after writing\nPL\/pgSQL function/);
    assert.equal(tasks[2].status, "running", "the task it did not hold is left alone");
    const history = await sql<{ task_id: number; outcome: string }[]>`
      SELECT task_id, outcome FROM retask.task_attempts ORDER BY task_id`;
    assert.deepEqual(history.map((h) => [h.task_id, h.outcome]), [
      [ids[0], "finished"],
      [ids[1], "error"],
      [ids[3], "finished"],
    ]);
    await assert.rejects(sql`SELECT * FROM retask.run_tasks('{1,2}', '{1}')`, /as many attempts/);

    // every row of the batch is locked before its first program runs, so no
    // rescuer can take a later one mid-run
    await sql`CREATE FUNCTION pause(params jsonb) RETURNS text
              LANGUAGE sql AS $$ SELECT pg_sleep(0.1)::text $$`;
    const [{ id: sleepy }] = await sql<{ id: number }[]>`
      SELECT register_program('pause', 'pause') AS id`;
    await sql`DELETE FROM tasks`;
    const batch = await enqueue(sql, { program: sleepy, params: Array(12).fill({}) });
    await takeTasks(sql, 12, "w", "1 minute");
    const runner = client(db.url, { max: 1 });
    try {
      const running = runner`SELECT * FROM retask.run_tasks(${batch}::bigint[], ${
        Array(12).fill(1)
      }::integer[])`.then(() => {});
      await waitFor(
        async () =>
          (await sql`SELECT 1 FROM pg_stat_activity
                   WHERE query LIKE '%run_tasks%' AND wait_event = 'PgSleep'`).length > 0,
        "the first program to be running",
      );
      await assert.rejects(
        sql`SELECT 1 FROM tasks WHERE task_id = ${batch[11]} FOR UPDATE NOWAIT`,
        /could not obtain lock/,
      );
      await running;
    } finally {
      await runner.end();
    }
  } finally {
    await db.drop();
  }
});

Deno.test("the worker's SQL: record_attempts and renew_leases", async () => {
  const db = await freshDatabase("worker_sql", { install: true });
  const { sql } = db;
  try {
    await sql.unsafe(TEST_FUNCTIONS);
    const ok =
      (await sql<{ id: number }[]>`SELECT register_program('ok', 'always_ok') AS id`)[0].id;
    const ids = await enqueue(sql, { program: ok, params: Array(4).fill({}), maxAttempts: 2 });
    const taken = await takeTasks(sql, 4, "w", "1 minute");
    assert.equal(taken.length, 4);
    const rows = await sql<{ task_id: number; status: string; outcome: string }[]>`
      SELECT task_id, status, outcome FROM retask.record_attempts(
        ${ids}::bigint[], ${[1, 1, 1, 2]}::integer[], '{finished,error,lost,finished}',
        results => '{r1,NULL,NULL,r4}', errors => '{NULL,boom,gone,NULL}',
        contexts => '{NULL,ctx,NULL,NULL}')
      ORDER BY task_id`;
    assert.deepEqual(rows.map((r) => [r.task_id, r.status, r.outcome]), [
      [ids[0], "finished", "finished"],
      [ids[1], "scheduled", "retry"],
      [ids[2], "scheduled", "lost"],
    ], "the fourth was not running attempt 2: left alone, not returned");
    const history = await sql<
      { task_id: number; outcome: string; error: string | null; context: string | null }[]
    >`
      SELECT task_id, outcome, error, context FROM retask.task_attempts ORDER BY task_id`;
    assert.deepEqual(history.map((h) => [h.task_id, h.outcome, h.error, h.context]), [
      [ids[0], "finished", null, null],
      [ids[1], "error", "boom", "ctx"],
      [ids[2], "lost", "gone", null],
    ]);
    const [first] = await sql<{ result: string }[]>`SELECT result FROM tasks WHERE task_id = ${
      ids[0]
    }`;
    assert.equal(first.result, "attempt 1 of 2\nr1");
    const again = await sql`
      SELECT * FROM retask.record_attempts(${[ids[0]]}::bigint[], '{1}', '{finished}', '{again}')`;
    assert.equal(again.length, 0, "an attempt already ended is not ended again");
    const late = await sql`
      SELECT outcome FROM retask.record_attempts(${[
      ids[3],
    ]}::bigint[], '{1}', '{finished}', '{late}')`;
    assert.deepEqual([...late], [{ outcome: "finished" }]);
    await assert.rejects(
      sql`SELECT * FROM retask.record_attempts('{1}', '{}', '{finished}')`,
      /as many attempts and outcomes as task_ids/,
    );
    await assert.rejects(
      sql`SELECT * FROM retask.record_attempts('{1}', '{1}', '{done}')`,
      /an attempt ends as finished, error, lost or cancelled/,
    );

    // renew_leases: extends and re-points held attempts, skips stale and locked ones
    const retaken = await takeTasks(sql, 2, "w", "1 second");
    assert.deepEqual(retaken.map((t) => t.attempt_count), [2, 2]);
    const other = client(db.url, { max: 1 });
    try {
      const renewedBy = await other.begin(async (tx) => {
        await tx`SELECT 1 FROM tasks WHERE task_id = ${retaken[1].task_id} FOR UPDATE`;
        const [r] = await sql<{ n: number }[]>`
          SELECT retask.renew_leases(${
          retaken.map((t) => t.task_id)
        }::bigint[], '{2,2}', '1 hour') AS n`;
        const [stale] = await sql<{ n: number }[]>`
          SELECT retask.renew_leases(${[retaken[0].task_id]}::bigint[], '{1}', '1 hour') AS n`;
        assert.equal(stale.n, 0, "a stale attempt is not renewed");
        return r.n;
      });
      assert.equal(renewedBy, 1, "the locked one is skipped");
      const [lease] = await sql<{ left: number }[]>`
        SELECT extract(epoch FROM lease_expires_at - now()) AS left
        FROM retask.tasks WHERE task_id = ${retaken[0].task_id}`;
      assert.ok(Number(lease.left) > 3000);
    } finally {
      await other.end();
    }
  } finally {
    await db.drop();
  }
});
