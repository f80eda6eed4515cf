// The task state machine (sql/state_machine.sql): take_tasks, record_attempts,
// rescue_lost_tasks, called as SQL.
import assert from "node:assert/strict";
import { client, type Queryable } from "../../lib/db/connect.ts";
import { enqueue } from "../../lib/queue/enqueue.ts";
import { registerProgram } from "../../lib/queue/programs.ts";
import { freshDatabase, takeTasks, TEST_FUNCTIONS, waitFor } from "../harness/mod.ts";

// Ends an attempt through record_attempts: the task's status after it and the
// outcome reported for it, or null when the task was not running that attempt.
async function endAttempt(
  sql: Queryable,
  id: number,
  attempt: number,
  outcome: "finished" | "error" | "lost",
  text: string,
  context: string | null = null,
) {
  const [row] = await sql<{ status: string; outcome: string }[]>`
    SELECT status, outcome FROM retask.record_attempts(
      ARRAY[${id}]::bigint[], ARRAY[${attempt}]::integer[], ARRAY[${outcome}]::text[],
      results => ARRAY[${outcome === "finished" ? text : null}]::text[],
      errors => ARRAY[${outcome === "finished" ? null : text}]::text[],
      contexts => ARRAY[${context}]::text[])`;
  return row ?? null;
}

const finishTask = async (sql: Queryable, id: number, attempt: number, result: string) =>
  (await endAttempt(sql, id, attempt, "finished", result))?.status ?? null;

const failTask = async (
  sql: Queryable,
  id: number,
  attempt: number,
  error: string,
  context: string | null = null,
  outcome: "error" | "lost" = "error",
) => (await endAttempt(sql, id, attempt, outcome, error, context))?.status ?? null;

async function rescueLostTasks(sql: Queryable): Promise<number> {
  const [row] = await sql<{ n: number }[]>`SELECT retask.rescue_lost_tasks() AS n`;
  return row.n;
}

Deno.test("task transitions", async (t) => {
  const db = await freshDatabase("transitions", { install: true });
  const { sql } = db;
  await sql.unsafe(TEST_FUNCTIONS);
  const ok = (await registerProgram(sql, "ok", "always_ok")).programId;

  async function task(id: number) {
    const [row] = await sql<
      { status: string; attempt_count: number; result: string | null; run_after: Date }[]
    >`SELECT status, attempt_count, result, run_after FROM tasks WHERE task_id = ${id}`;
    return row;
  }
  async function history(id: number) {
    return [
      ...await sql<{ attempt: number; outcome: string; error: string | null }[]>`
      SELECT attempt, outcome, error FROM retask.task_attempts WHERE task_id = ${id} ORDER BY attempt`,
    ];
  }
  // Each step starts from an empty queue, so takes see only its own tasks.
  async function clearQueue() {
    await sql`DELETE FROM tasks`;
  }

  try {
    await t.step("take starts attempt 1 and records who holds it", async () => {
      await clearQueue();
      const [id] = await enqueue(sql, { program: ok });
      const taken = await takeTasks(sql, 10, "w1");
      assert.equal(taken.length, 1);
      assert.equal(taken[0].task_id, id);
      assert.equal(taken[0].status, "running");
      assert.equal(taken[0].attempt_count, 1);
      assert.equal(taken[0].worker, "w1");
      assert.ok(taken[0].pid && taken[0].started);
      assert.equal((await takeTasks(sql, 10)).length, 0, "a running task is not taken again");
    });

    await t.step("finish records the attempt in the result and the history", async () => {
      await clearQueue();
      const [id] = await enqueue(sql, { program: ok });
      const [taken] = await takeTasks(sql, 1);
      assert.equal(await finishTask(sql, id, taken.attempt_count, "done"), "finished");
      const row = await task(id);
      assert.equal(row.status, "finished");
      assert.equal(row.result, "attempt 1 of 3\ndone");
      assert.deepEqual(await history(id), [{ attempt: 1, outcome: "finished", error: null }]);
    });

    await t.step("a failure retries until the third attempt, then ends in error", async () => {
      await clearQueue();
      const [id] = await enqueue(sql, { program: ok });
      const ends = [];
      for (let attempt = 1; attempt <= 3; attempt++) {
        const [taken] = await takeTasks(sql, 1);
        assert.equal(taken?.task_id, id, `attempt ${attempt} is runnable at once`);
        assert.equal(taken.attempt_count, attempt);
        ends.push(await endAttempt(sql, id, attempt, "error", `boom ${attempt}`, "at line 1"));
      }
      assert.deepEqual(ends, [
        { status: "scheduled", outcome: "retry" },
        { status: "scheduled", outcome: "retry" },
        { status: "error", outcome: "error" },
      ]);
      const row = await task(id);
      assert.equal(row.attempt_count, 3);
      assert.equal(row.result, "attempt 3 of 3\nboom 3\nat line 1");
      assert.deepEqual((await history(id)).map((h) => [h.attempt, h.outcome, h.error]), [
        [1, "error", "boom 1"],
        [2, "error", "boom 2"],
        [3, "error", "boom 3"],
      ]);
      assert.equal((await takeTasks(sql, 1)).length, 0, "an errored task is never taken");
    });

    await t.step("max attempts from the program, overridden per task", async () => {
      await clearQueue();
      const once = (await registerProgram(sql, "once", "always_ok", { maxAttempts: 1 }))
        .programId;
      const [a] = await enqueue(sql, { program: once });
      const [b] = await enqueue(sql, { program: once, maxAttempts: 2 });
      const taken = await takeTasks(sql, 2);
      assert.deepEqual(taken.map((x) => x.max_attempts), [1, 2]);
      assert.equal(await failTask(sql, a, 1, "x"), "error");
      assert.equal(await failTask(sql, b, 1, "x"), "scheduled");
      assert.match((await task(a)).result ?? "", /^attempt 1 of 1\n/);
    });

    await t.step("a late completion of a rescued attempt changes nothing", async () => {
      await clearQueue();
      const [id] = await enqueue(sql, { program: ok });
      await takeTasks(sql, 1);
      assert.deepEqual(await endAttempt(sql, id, 1, "lost", "lost it"), {
        status: "scheduled",
        outcome: "lost",
      });
      assert.equal(await finishTask(sql, id, 1, "too late"), null, "stale while scheduled");
      await takeTasks(sql, 1);
      assert.equal(await finishTask(sql, id, 1, "too late"), null, "stale after a retake");
      assert.equal(await failTask(sql, id, 1, "too late"), null);
      const before = await task(id);
      assert.equal(before.status, "running");
      assert.equal(before.attempt_count, 2);
      assert.equal(await finishTask(sql, id, 2, "on time"), "finished");
      assert.equal((await task(id)).result, "attempt 2 of 3\non time");
      assert.deepEqual((await history(id)).map((h) => h.outcome), ["lost", "finished"]);
    });

    await t.step("two connections racing never take the same task", async () => {
      await clearQueue();
      const ids = await enqueue(sql, {
        program: ok,
        params: Array.from({ length: 300 }, (_, i) => ({ i })),
      });
      const a = client(db.url, { max: 1 });
      const b = client(db.url, { max: 1 });
      try {
        // one holds a task in an open transaction: the other skips it, without waiting
        await a.begin(async (tx) => {
          const [held] = await takeTasks(tx, 1, "a");
          const [other] = await takeTasks(b, 1, "b");
          assert.notEqual(other.task_id, held.task_id);
          await tx`SELECT pg_sleep(0)`;
        });
        const drain = async (conn: typeof a, name: string) => {
          const got: number[] = [];
          while (true) {
            const batch = await takeTasks(conn, 7, name);
            if (batch.length === 0) return got;
            got.push(...batch.map((x) => x.task_id));
          }
        };
        const [fromA, fromB] = await Promise.all([drain(a, "a"), drain(b, "b")]);
        const all = [...fromA, ...fromB].sort((x, y) => x - y);
        // the two taken in the first part plus what each drained: every task once
        const [{ running }] = await sql<{ running: number }[]>`
          SELECT count(*)::int AS running FROM tasks WHERE status = 'running'`;
        assert.equal(running, ids.length);
        assert.equal(new Set(all).size, all.length, "no task taken twice");
        assert.equal(all.length, ids.length - 2);
      } finally {
        await a.end();
        await b.end();
      }
    });

    await t.step("a task whose backend is gone is rescued as a lost attempt", async () => {
      await clearQueue();
      const [id] = await enqueue(sql, { program: ok });
      const worker = client(db.url, { max: 1 });
      const [taken] = await takeTasks(worker, 1, "doomed");
      await worker.end();
      await waitFor(async () => (await rescueLostTasks(sql)) === 1, "the rescue");
      const row = await task(id);
      assert.equal(row.status, "scheduled");
      assert.equal(row.result, `attempt 1 of 3\nworker lost: backend ${taken.pid} is gone`);
      assert.deepEqual((await history(id)).map((h) => h.outcome), ["lost"]);
      assert.equal(await rescueLostTasks(sql), 0, "a live backend's task is left alone");
    });

    await t.step(
      "a task whose lease ran out is rescued; on its last attempt it errors",
      async () => {
        await clearQueue();
        const [id] = await enqueue(sql, { program: ok, maxAttempts: 1 });
        await takeTasks(sql, 1, "slow", "1 minute");
        assert.equal(await rescueLostTasks(sql), 0, "lease still valid");
        await sql`UPDATE retask.tasks SET lease_expires_at = now() - interval '1 second' WHERE task_id = ${id}`;
        assert.equal(await rescueLostTasks(sql), 1);
        const row = await task(id);
        assert.equal(row.status, "error");
        assert.equal(row.result, "attempt 1 of 1\nworker lost: slow did not renew its lease");
      },
    );

    await t.step("a retry delay holds the task back until it passes", async () => {
      await clearQueue();
      const slow = (await registerProgram(sql, "slow", "always_ok", { retryDelay: "1 hour" }))
        .programId;
      const [id] = await enqueue(sql, { program: slow });
      await takeTasks(sql, 1);
      await failTask(sql, id, 1, "x");
      const row = await task(id);
      const waitMs = row.run_after.getTime() - Date.now();
      assert.ok(waitMs > 59 * 60_000 && waitMs <= 3600_000, `waits an hour, not ${waitMs} ms`);
      assert.equal((await takeTasks(sql, 1)).length, 0);
      await sql`UPDATE tasks SET run_after = now() - interval '1 second' WHERE task_id = ${id}`;
      assert.equal((await takeTasks(sql, 1))[0]?.task_id, id);
    });

    await t.step("exponential backoff doubles per attempt, jittered, capped", async () => {
      const [row] = await sql<{ first: number[]; third: number[]; capped: number[] }[]>`
        SELECT
          array_agg(extract(epoch FROM retask.retry_delay_after(1, 'exponential', '10 s', '1 h'))) AS first,
          array_agg(extract(epoch FROM retask.retry_delay_after(3, 'exponential', '10 s', '1 h'))) AS third,
          array_agg(extract(epoch FROM retask.retry_delay_after(40, 'exponential', '10 s', '1 h'))) AS capped
        FROM generate_series(1, 200)`;
      const within = (xs: number[], lo: number, hi: number) =>
        xs.every((x) => Number(x) >= lo && Number(x) <= hi);
      assert.ok(within(row.first, 5, 10), "attempt 1: 5-10 s");
      assert.ok(within(row.third, 20, 40), "attempt 3: 20-40 s");
      assert.ok(within(row.capped, 1800, 3600), "capped at an hour");
      assert.ok(new Set(row.first.map(Number)).size > 100, "jittered");
    });

    await t.step("complete_task, the seed's completion, follows the same rule", async () => {
      await clearQueue();
      const [id] = await enqueue(sql, { program: ok, maxAttempts: 2 });
      await sql`SELECT complete_task(t, 'error', 'first try failed') FROM take_task() t`;
      assert.equal((await task(id)).status, "scheduled");
      await sql`SELECT complete_task(t, 'finished', 'second try worked') FROM take_task() t`;
      assert.deepEqual(await task(id).then((r) => [r.status, r.result]), [
        "finished",
        "attempt 2 of 2\nsecond try worked",
      ]);
      await assert.rejects(
        sql`SELECT complete_task(t, 'done', 'x') FROM public.tasks t WHERE task_id = ${id}`,
        /a task completes as finished or error, not done/,
      );
      // a late completion of an attempt that was rescued changes nothing, and says so
      await assert.rejects(
        sql`SELECT complete_task(t, 'finished', 'late') FROM public.tasks t WHERE task_id = ${id}`,
        /attempt 2 of task \d+ is not running any more/,
      );
      assert.equal((await task(id)).result, "attempt 2 of 2\nsecond try worked");
    });

    await t.step("take_task leaves tasks for another host to the retask worker", async () => {
      await clearQueue();
      const [remote] = await enqueue(sql, { program: ok, host: "db2", port: 5432 });
      const [local] = await enqueue(sql, { program: ok });
      const [row] = await sql<{ task_id: number }[]>`SELECT (take_task()).task_id`;
      assert.equal(row.task_id, local);
      assert.equal((await takeTasks(sql, 5))[0]?.task_id, remote);
    });

    await t.step("enqueue and an immediate retry notify a sleeping listener", async () => {
      await clearQueue();
      let heard = 0;
      const listener = await sql.listen("retask_tasks", () => heard++);
      // a worker about to sleep says so (sql/wake.sql); only then do they notify
      const sleep = async () =>
        assert.equal((await sql`SELECT retask.worker_idle() AS r`)[0].r, false);
      try {
        await sleep();
        const [id] = await enqueue(sql, { program: ok });
        await waitFor(() => heard >= 1, "the enqueue notification");
        await takeTasks(sql, 1);
        await sleep();
        await failTask(sql, id, 1, "x");
        await waitFor(() => heard >= 2, "the retry notification");
      } finally {
        await listener.unlisten();
      }
    });
  } finally {
    await db.drop();
  }
});
