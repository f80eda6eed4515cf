// Operating the queue in SQL (sql/operate.sql): retry_tasks, cancel_tasks,
// delete_tasks, prune_tasks, and permanent errors (RT001) as record_attempts
// and run_tasks treat them.
import assert from "node:assert/strict";
import { client, type Sql } from "../../lib/db/connect.ts";
import { enqueue } from "../../lib/queue/enqueue.ts";
import { registerProgram } from "../../lib/queue/programs.ts";
import { freshDatabase, loginAs, takeTasks, TEST_FUNCTIONS, waitFor } from "../harness/mod.ts";

interface Row {
  task_id: number;
  status: string;
  outcome: string;
  reason: string | null;
}

// Ends attempt `attempt` of task `id` as `outcome`, as a worker would.
async function endAttempt(
  sql: Sql,
  id: number,
  attempt: number,
  outcome: string,
  error: string | null = null,
  code: string | null = null,
) {
  const [row] = await sql<{ status: string; outcome: string }[]>`
    SELECT status, outcome FROM retask.record_attempts(
      ARRAY[${id}]::bigint[], ARRAY[${attempt}]::integer[], ARRAY[${outcome}]::text[],
      errors => ARRAY[${error}]::text[], codes => ARRAY[${code}]::text[])`;
  return row ?? null;
}

async function runTasks(sql: Sql, ids: number[], attempts: number[]) {
  return [
    ...await sql<{ task_id: number; outcome: string; status: string; error: string | null }[]>`
    SELECT task_id, outcome, status, error FROM retask.run_tasks(${ids}::bigint[], ${attempts}::integer[])`,
  ];
}

Deno.test("operating the queue in SQL", async (t) => {
  const db = await freshDatabase("sql_operate", { install: true });
  const { sql } = db;
  await sql.unsafe(TEST_FUNCTIONS);
  await sql.unsafe(`
    CREATE FUNCTION give_up(params jsonb) RETURNS text LANGUAGE plpgsql AS $$
    BEGIN PERFORM retask.fail_permanently('the order does not exist'); RETURN 'unreachable'; END $$;
    CREATE FUNCTION give_up_code(params jsonb) RETURNS text LANGUAGE plpgsql AS $$
    BEGIN RAISE EXCEPTION 'bad input' USING ERRCODE = 'RT001'; END $$;`);
  const ok = (await registerProgram(sql, "ok", "always_ok")).programId;
  const fail = (await registerProgram(sql, "fail", "always_fail")).programId;
  const note = (await registerProgram(sql, "note", "note_and_fail")).programId;
  const giveUp = (await registerProgram(sql, "give_up", "give_up")).programId;
  const giveUpCode = (await registerProgram(sql, "give_up_code", "give_up_code")).programId;

  const task = async (id: number) => {
    const [row] = await sql<
      { status: string; attempt_count: number; max_attempts: number; result: string | null }[]
    >`SELECT status, attempt_count, max_attempts, result FROM retask.tasks WHERE task_id = ${id}`;
    return row;
  };
  const history = async (id: number) =>
    (await sql<{ attempt: number; outcome: string; error: string | null }[]>`
      SELECT attempt, outcome, error FROM retask.task_attempts WHERE task_id = ${id} ORDER BY attempt`)
      .map((h) => `${h.attempt} ${h.outcome}${h.error ? `: ${h.error}` : ""}`);
  // runs `id` until it ends (each attempt through run_tasks, as a lane would)
  const runToEnd = async (id: number) => {
    for (let i = 0; i < 200; i++) {
      const [taken] = await takeTasks(sql, 1);
      if (!taken) break;
      await runTasks(sql, [taken.task_id], [taken.attempt_count]);
    }
    return await task(id);
  };
  const clearQueue = () => sql`DELETE FROM retask.tasks`;
  const retry = (
    ids: number[] | null,
    programId: number | null = null,
    status: string | null = null,
    max: number | null = null,
  ) =>
    sql<Row[]>`SELECT * FROM retask.retry_tasks(${ids}::bigint[], ${programId}::bigint,
                                                 ${status}::text, ${max}::integer)`;
  const cancel = (
    ids: number[] | null,
    programId: number | null = null,
    status: string | null = null,
  ) =>
    sql<
      Row[]
    >`SELECT * FROM retask.cancel_tasks(${ids}::bigint[], ${programId}::bigint, ${status}::text)`;

  try {
    await t.step("retry: a fresh budget, attempts numbered on, history kept", async () => {
      await clearQueue();
      const [id] = await enqueue(sql, { program: fail });
      assert.equal((await runToEnd(id)).status, "error");
      const rows = await retry([id]);
      assert.deepEqual([...rows], [{
        task_id: id,
        status: "scheduled",
        outcome: "retried",
        reason: null,
      }]);
      const after = await task(id);
      assert.equal(after.status, "scheduled");
      assert.equal(after.max_attempts, 6);
      assert.match(
        after.result!,
        /^attempt 3 of 6\nretried by \w+ after attempt 3 \(it had ended error\)$/,
      );
      const [taken] = await takeTasks(sql, 1);
      assert.equal(taken.attempt_count, 4, "attempt 4 of 6");
      await runTasks(sql, [id], [4]);
      const ended = await runToEnd(id);
      assert.equal(ended.status, "error");
      assert.equal(ended.attempt_count, 6);
      assert.match(ended.result!, /^attempt 6 of 6\nfailed on purpose/);
      assert.equal((await history(id)).length, 6, "every attempt's history is kept");
      // the budget stays the task's own: 3 more, not 6
      await retry([id]);
      assert.equal((await task(id)).max_attempts, 9);
      await sql`UPDATE retask.tasks SET status = 'error' WHERE task_id = ${id}`;
      // or the one given
      await retry([id], null, null, 1);
      assert.equal((await task(id)).max_attempts, 7);
    });

    await t.step("retry: a task's own budget from enqueue; past 100 attempts in all", async () => {
      await clearQueue();
      const [id] = await enqueue(sql, { program: fail, maxAttempts: 100 });
      await sql`UPDATE retask.tasks SET status = 'error', attempt_count = 100 WHERE task_id = ${id}`;
      await retry([id]);
      assert.equal((await task(id)).max_attempts, 200);
      assert.equal((await task(id)).status, "scheduled");
    });

    await t.step("retry: other statuses are skipped, saying why", async () => {
      await clearQueue();
      const [done, waiting] = await enqueue(sql, { program: ok, params: [{}, {}] });
      await takeTasks(sql, 1);
      await runTasks(sql, [done], [1]);
      const rows = await retry([done, waiting]);
      assert.deepEqual(rows.map((r) => [r.task_id, r.status, r.outcome, r.reason]), [
        [done, "finished", "skipped", "it is finished; only error or cancelled tasks are retried"],
        [
          waiting,
          "scheduled",
          "skipped",
          "it is scheduled; only error or cancelled tasks are retried",
        ],
      ]);
      assert.equal((await task(done)).status, "finished");
    });

    await t.step(
      "retry, cancel, delete: an unknown id refuses them all, nothing changes",
      async () => {
        await clearQueue();
        const [id] = await enqueue(sql, { program: fail, maxAttempts: 1 });
        await runToEnd(id);
        for (const call of [() => retry([id, 999999]), () => cancel([id, 999999, 999998])]) {
          await assert.rejects(call(), (e: { code: string; message: string }) => {
            assert.equal(e.code, "P0002");
            assert.match(e.message, /^tasks? 999\d+(, 999999)? do(es)? not exist$/);
            return true;
          });
        }
        await assert.rejects(
          sql`SELECT * FROM retask.delete_tasks(ARRAY[${id}, 999999]::bigint[])`,
          /task 999999 does not exist/,
        );
        assert.equal((await task(id)).status, "error");
        await assert.rejects(retry(null), /retry needs task ids, or a program or a status/);
        await assert.rejects(retry([id], fail), /not both/);
        await assert.rejects(
          retry(null, fail, "finished"),
          /retry acts on error or cancelled tasks, not finished/,
        );
        await assert.rejects(retry([id], null, null, 0), /max attempts must be between 1 and 100/);
        assert.equal((await task(id)).status, "error");
      },
    );

    await t.step("retry by program and status", async () => {
      await clearQueue();
      const ids = await enqueue(sql, { program: fail, params: [{}, {}, {}], maxAttempts: 1 });
      const [other] = await enqueue(sql, {
        program: note,
        params: [{ fail: true }],
        maxAttempts: 1,
      });
      for (const id of [...ids, other]) await runToEnd(id);
      await cancel([ids[2]]).catch(() => {}); // already ended: skipped
      const rows = await retry(null, fail, "error");
      assert.deepEqual(rows.map((r) => r.task_id), ids);
      assert.ok(rows.every((r) => r.outcome === "retried"));
      assert.equal((await task(other)).status, "error", "another program's task is left alone");
    });

    await t.step("retry: one task per key may be live", async () => {
      await clearQueue();
      const [a, b, c] = await enqueue(sql, { program: fail, params: [{}, {}, {}], maxAttempts: 1 });
      await sql`UPDATE retask.tasks SET status = 'error', key = 'k' WHERE task_id IN (${a}, ${b})`;
      await sql`UPDATE retask.tasks SET key = 'k2' WHERE task_id = ${c}`;
      const rows = await retry([a, b]);
      assert.deepEqual(rows.map((r) => [r.task_id, r.outcome]), [[a, "retried"], [b, "skipped"]]);
      assert.equal(rows[1].reason, "another task with key k is scheduled or running");
    });

    await t.step("cancel a scheduled task: it never runs", async () => {
      await clearQueue();
      const [id] = await enqueue(sql, { program: note, params: [{ note: "never" }] });
      assert.deepEqual([...await cancel([id])], [{
        task_id: id,
        status: "cancelled",
        outcome: "cancelled",
        reason: null,
      }]);
      const row = await task(id);
      assert.match(row.result!, /^attempt 0 of 3\ncancelled by \w+ while scheduled$/);
      assert.equal((await takeTasks(sql, 10)).length, 0, "a cancelled task is never taken");
      const ended =
        await sql`SELECT finished IS NOT NULL AS ended FROM retask.tasks WHERE task_id = ${id}`;
      assert.equal(ended[0].ended, true, "it has an end time, so prune finds it");
      // and it may be retried
      assert.equal((await retry([id]))[0].outcome, "retried");
      assert.equal((await task(id)).max_attempts, 3);
    });

    await t.step(
      "cancel a running task: a request, a notification, and its end is cancelled",
      async () => {
        await clearQueue();
        const [id] = await enqueue(sql, { program: fail });
        const [taken] = await takeTasks(sql, 1);
        const heard: string[] = [];
        const listener = await sql.listen("retask_cancel", (payload) => heard.push(payload));
        try {
          const rows = await cancel([id]);
          assert.deepEqual(rows.map((r) => [r.status, r.outcome]), [["running", "requested"]]);
          for (let i = 0; i < 100 && heard.length === 0; i++) {
            await new Promise((r) => setTimeout(r, 20));
          }
          assert.deepEqual(heard, [`retask.tasks:${id}`]);
        } finally {
          await listener.unlisten();
        }
        // the attempt ends as it may (here a failure with attempts left): no retry
        const ended = await endAttempt(
          sql,
          id,
          taken.attempt_count,
          "error",
          "canceling statement due to user request",
          "57014",
        );
        assert.deepEqual(ended, { status: "cancelled", outcome: "cancelled" });
        assert.deepEqual(await history(id), [
          `1 cancelled: cancelled by ${(await sql`SELECT session_user AS u`)[0].u}`,
        ]);
        const left = await sql`SELECT count(*)::int AS n FROM retask.cancel_requests`;
        assert.equal(left[0].n, 0, "the request goes when the task ends");
      },
    );

    await t.step(
      "a running task that finishes before the cancel reaches it stays finished",
      async () => {
        await clearQueue();
        const [id] = await enqueue(sql, { program: ok });
        const [taken] = await takeTasks(sql, 1);
        await cancel([id]);
        assert.deepEqual(await endAttempt(sql, id, taken.attempt_count, "finished"), {
          status: "finished",
          outcome: "finished",
        });
        const left = await sql`SELECT count(*)::int AS n FROM retask.cancel_requests`;
        assert.equal(left[0].n, 0);
      },
    );

    await t.step("run_tasks does not run a task someone asked to cancel", async () => {
      await clearQueue();
      const [asked, other] = await enqueue(sql, {
        program: note,
        params: [{ note: "asked" }, { note: "other" }],
      });
      const taken = await takeTasks(sql, 2);
      await cancel([asked]);
      const rows = await runTasks(
        sql,
        taken.map((t) => t.task_id),
        taken.map((t) => t.attempt_count),
      );
      assert.deepEqual(rows.map((r) => [r.task_id, r.outcome, r.status]), [
        [asked, "cancelled", "cancelled"],
        [other, "finished", "finished"],
      ]);
      const notes = await sql`SELECT task_note FROM side_effects ORDER BY 1`;
      assert.deepEqual(notes.map((n) => n.task_note), ["other"], "the cancelled program never ran");
      await sql`DELETE FROM side_effects`;
    });

    await t.step(
      "CALL process_tasks() skips a task asked to cancel; the course sees it",
      async () => {
        await clearQueue();
        const [asked] = await enqueue(sql, { program: note, params: [{ note: "asked" }] });
        // as when the cancel came while the task was being taken
        await sql`INSERT INTO retask.cancel_requests (task_id) VALUES (${asked})`;
        const worker = client(db.url, { max: 1 });
        const call = worker`CALL process_tasks('20 milliseconds')`.catch((error) => error);
        try {
          await waitFor(async () => (await task(asked)).status === "cancelled", "process_tasks");
        } finally {
          await sql`SELECT pg_cancel_backend(pid) FROM pg_stat_activity
                  WHERE application_name = 'process_tasks' AND datname = current_database()`;
          await call;
          await worker.end();
        }
        const [{ me }] = await sql`SELECT session_user AS me`;
        assert.deepEqual(await history(asked), [`1 cancelled: cancelled by ${me}`]);
        const notes = await sql`SELECT count(*)::int AS n FROM side_effects`;
        assert.equal(notes[0].n, 0, "its program never ran");
        const [course] = await sql`SELECT status FROM empapi.get_tasks() WHERE task_id = ${asked}`;
        assert.equal(course.status, "cancelled");
      },
    );

    await t.step("cancel never waits for the worker holding a running task's row", async () => {
      await clearQueue();
      const [id] = await enqueue(sql, { program: ok });
      await takeTasks(sql, 1);
      const holder = await sql.reserve();
      try {
        // as run_tasks holds it while the program runs
        await holder`BEGIN`;
        await holder`SELECT 1 FROM retask.tasks WHERE task_id = ${id} FOR UPDATE`;
        const rows = await sql.begin(async (tx) => {
          await tx`SET LOCAL statement_timeout = '5s'`;
          return await tx<Row[]>`SELECT * FROM retask.cancel_tasks(ARRAY[${id}]::bigint[])`;
        });
        assert.equal(rows[0].outcome, "requested");
      } finally {
        await holder`ROLLBACK`;
        holder.release();
      }
    });

    await t.step("cancel by program and status; ended tasks are skipped", async () => {
      await clearQueue();
      const [done] = await enqueue(sql, { program: fail, maxAttempts: 1 });
      await runToEnd(done);
      const [a, b, c] = await enqueue(sql, { program: ok, params: [{}, {}, {}] });
      const [running] = await takeTasks(sql, 1);
      assert.equal(running.task_id, a);
      const rows = await cancel(null, ok, "scheduled");
      assert.deepEqual(rows.map((r) => [r.task_id, r.outcome]), [[b, "cancelled"], [
        c,
        "cancelled",
      ]]);
      const skipped = await cancel([done]);
      assert.deepEqual(skipped.map((r) => [r.outcome, r.reason]), [
        ["skipped", "it is error; only scheduled or running tasks are cancelled"],
      ]);
      await assert.rejects(
        cancel(null, ok, "finished"),
        /cancel acts on scheduled or running tasks, not finished/,
      );
    });

    await t.step("permanent errors: RT001 ends the task at once", async () => {
      await clearQueue();
      const [byFunction] = await enqueue(sql, { program: giveUp });
      const [byCode] = await enqueue(sql, { program: giveUpCode });
      const taken = await takeTasks(sql, 2);
      const rows = await runTasks(
        sql,
        taken.map((t) => t.task_id),
        taken.map((t) => t.attempt_count),
      );
      assert.deepEqual(rows.map((r) => [r.outcome, r.status, r.error]), [
        ["error", "error", "the order does not exist"],
        ["error", "error", "bad input"],
      ]);
      assert.match((await task(byFunction)).result!, /^attempt 1 of 3\nthe order does not exist/);
      assert.equal((await task(byCode)).attempt_count, 1);
      // an ordinary error still retries
      const [id] = await enqueue(sql, { program: fail });
      const [t1] = await takeTasks(sql, 1);
      assert.equal(
        (await endAttempt(sql, id, t1.attempt_count, "error", "x", "P0001"))?.status,
        "scheduled",
      );
      // a lost attempt is never permanent
      const [t2] = await takeTasks(sql, 1);
      assert.equal(
        (await endAttempt(sql, id, t2.attempt_count, "lost", "gone", "RT001"))?.status,
        "scheduled",
      );
    });

    await t.step("delete: ended tasks and their history; live ones are skipped", async () => {
      await clearQueue();
      const [done] = await enqueue(sql, { program: fail, maxAttempts: 1 });
      await runToEnd(done);
      const [live] = await enqueue(sql, { program: fail });
      const rows = await sql<
        Row[]
      >`SELECT * FROM retask.delete_tasks(ARRAY[${done}, ${live}]::bigint[])`;
      assert.deepEqual(rows.map((r) => [r.task_id, r.outcome, r.reason]), [
        [done, "deleted", null],
        [live, "skipped", "it is scheduled; cancel it first, or let it end"],
      ]);
      const left =
        await sql`SELECT count(*)::int AS n FROM retask.task_attempts WHERE task_id = ${done}`;
      assert.equal(left[0].n, 0, "its history went with it");
      assert.equal((await task(live)).status, "scheduled");
    });

    await t.step("prune: tasks ended longer ago, in batches, by status", async () => {
      await clearQueue();
      const ids = await enqueue(sql, { program: ok, params: Array(7).fill({}) });
      await sql`UPDATE retask.tasks SET status = 'finished', finished = now() - interval '40 days'
                WHERE task_id = ANY (${ids.slice(0, 5)}::bigint[])`;
      await sql`UPDATE retask.tasks SET status = 'error', finished = now() - interval '40 days'
                WHERE task_id = ${ids[5]}`;
      await sql`UPDATE retask.tasks SET status = 'finished', finished = now() - interval '1 day'
                WHERE task_id = ${ids[6]}`;
      const prune = async (statuses: string[] | null, batch: number) =>
        (await sql`SELECT retask.prune_tasks('30 days', ${statuses}::text[], ${batch}) AS n`)[0].n;
      assert.equal(await prune(["error"], 10), 1);
      assert.equal(await prune(null, 2), 2);
      assert.equal(await prune(null, 2), 2);
      assert.equal(await prune(null, 2), 1);
      assert.equal(await prune(null, 2), 0);
      const left = await sql`SELECT task_id FROM retask.tasks ORDER BY 1`;
      assert.deepEqual(left.map((r) => r.task_id), [ids[6]]);
      await assert.rejects(
        prune(["running"], 10),
        /prune removes finished, error or cancelled tasks, not running/,
      );
      await assert.rejects(sql`SELECT retask.prune_tasks('-1 day')`, /an age of 0 or more/);
      await assert.rejects(prune(null, 0), /batch size must be 1 to 100000/);
    });

    await t.step("prune uses the ended-tasks index", async () => {
      const plan = await sql.begin(async (tx) => {
        await tx`SET LOCAL enable_seqscan = off`;
        return await tx`EXPLAIN SELECT t.task_id FROM retask.tasks t
          WHERE t.status IN ('finished', 'error', 'cancelled') AND t.status = ANY ('{finished}'::text[])
            AND t.finished < now() - interval '30 days'
          ORDER BY t.finished LIMIT 1000 FOR UPDATE SKIP LOCKED`;
      });
      assert.match(plan.map((line) => Object.values(line)[0]).join("\n"), /tasks_ended_idx/);
    });

    await t.step(
      "privileges: retask_admin operates without writing any table; readers may not",
      async () => {
        await clearQueue();
        const [id] = await enqueue(sql, { program: fail, maxAttempts: 1 });
        await runToEnd(id);
        const admin = await loginAs(db, "admin", ["retask_admin"]);
        const reader = await loginAs(db, "reader", ["retask_read"]);
        try {
          const [row] = await admin.sql<
            Row[]
          >`SELECT * FROM retask.retry_tasks(ARRAY[${id}]::bigint[])`;
          assert.equal(row.outcome, "retried");
          const [cancelled] = await admin.sql<
            Row[]
          >`SELECT * FROM retask.cancel_tasks(ARRAY[${id}]::bigint[])`;
          assert.equal(cancelled.outcome, "cancelled");
          assert.match(
            (await task(id)).result!,
            new RegExp(`cancelled by ${admin.role} while scheduled`),
          );
          await admin.sql`SELECT retask.prune_tasks('0 days')`;
          await assert.rejects(
            admin.sql`UPDATE retask.tasks SET status = 'scheduled'`,
            /permission denied/,
          );
          await assert.rejects(
            reader.sql`SELECT * FROM retask.retry_tasks(ARRAY[1]::bigint[])`,
            /permission denied/,
          );
          await assert.rejects(
            reader.sql`SELECT retask.prune_tasks('0 days')`,
            /permission denied/,
          );
          await assert.rejects(
            admin.sql`SELECT retask.cancel_scheduled(ARRAY[1]::bigint[], 'x')`,
            /permission denied/,
          );
        } finally {
          await admin.sql.end();
          await reader.sql.end();
          await db.admin(`DROP ROLE IF EXISTS ${admin.role}; DROP ROLE IF EXISTS ${reader.role}`)
            .catch(() => {});
        }
      },
    );
  } finally {
    await db.drop();
  }
});
