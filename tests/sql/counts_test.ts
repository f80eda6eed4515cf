// Tasks counted per program and status as they change (sql/counts.sql): what
// `status` shows is the table's own count(*) after every kind of change,
// whoever made it, and no group may write the counts.
import assert from "node:assert/strict";
import { client, type Sql } from "../../lib/db/connect.ts";
import {
  cancelTasks,
  deleteTasks,
  enqueue,
  install,
  listTasks,
  pruneTasks,
  registerProgram,
  retryTasks,
  type StatusCounts,
} from "../../lib/mod.ts";
import {
  freshDatabase,
  installCourse,
  loginAs,
  runWork,
  takeTasks,
  TEST_FUNCTIONS,
} from "../harness/mod.ts";

const none = (): StatusCounts => ({
  scheduled: 0,
  running: 0,
  finished: 0,
  error: 0,
  cancelled: 0,
  total: 0,
});

// The counts `status` shows, for every task and for each program, are those
// of a count(*) of the table.
async function assertCounts(sql: Sql, schema = "retask"): Promise<StatusCounts> {
  const real = await sql<{ program_id: number; status: keyof StatusCounts; n: number }[]>`
    SELECT program_id::int, status, count(*)::int AS n FROM ${sql(schema)}.tasks GROUP BY 1, 2`;
  const expected = (programId?: number) => {
    const counts = none();
    for (const r of real.filter((r) => programId === undefined || r.program_id === programId)) {
      counts[r.status] += r.n;
      counts.total += r.n;
    }
    return counts;
  };
  const all = (await listTasks(sql, { schema })).counts;
  assert.deepEqual(all, expected());
  const programs = await sql<{ id: number }[]>`
    SELECT program_id::int AS id FROM ${sql(schema)}.programs ORDER BY 1`;
  for (const { id } of programs) {
    assert.deepEqual((await listTasks(sql, { program: id, schema })).counts, expected(id));
  }
  return all;
}

Deno.test("the counts status shows follow every change to the tasks", async (t) => {
  const db = await freshDatabase("sql_counts", { install: true });
  const { sql } = db;
  // sessions of their own: each keeps its own counts
  const sessions = [0, 1, 2].map(() => client(db.url, { max: 1 }));
  try {
    await sql.unsafe(TEST_FUNCTIONS);
    await registerProgram(sql, "ok", "always_ok");
    await registerProgram(sql, "fail", "always_fail", { maxAttempts: 2 });
    await registerProgram(sql, "note", "note_and_fail");

    await t.step(
      "enqueues from several sessions at once; a rolled-back one counts nothing",
      async () => {
        await Promise.all(sessions.map(async (s, i) => {
          for (let n = 0; n < 10; n++) {
            await enqueue(s, { program: ["ok", "fail", "note"][(i + n) % 3], params: [{ n }] });
          }
          await enqueue(s, { program: "ok", params: Array.from({ length: 20 }, () => ({})) });
        }));
        await assert.rejects(
          sql.begin(async (tx) => {
            await enqueue(tx, { program: "ok", params: [{}, {}, {}] });
            throw new Error("changed my mind");
          }),
          /changed my mind/,
        );
        const counts = await assertCounts(sql);
        assert.equal(counts.scheduled, 90);
      },
    );

    await t.step("REPEATABLE READ enqueuers never meet each other's counts", async () => {
      const [a, b] = sessions;
      await a.begin("isolation level repeatable read", async (tx) => {
        await tx`SELECT 1`; // the snapshot is taken
        await enqueue(b, { program: "ok" });
        await b.begin("isolation level repeatable read", async (tb) => {
          await enqueue(tb, { program: "ok" });
          await enqueue(tx, { program: "ok" });
          await enqueue(tb, { program: "fail" });
        });
        await enqueue(tx, { program: "fail" });
      });
      assert.equal((await assertCounts(sql)).scheduled, 95);
    });

    await t.step("taken, then failed with attempts left", async () => {
      const taken = await takeTasks(sessions[0], 5);
      assert.equal((await assertCounts(sql)).running, 5);
      await sessions[0]`
        SELECT * FROM retask.record_attempts(
          ${taken.map((r) => r.task_id)}::bigint[], ${taken.map((r) => r.attempt_count)}::integer[],
          ${taken.map(() => "error")}::text[], errors => ${taken.map(() => "no")}::text[])`;
      const counts = await assertCounts(sql);
      assert.deepEqual([counts.running, counts.scheduled], [0, 95]);
    });

    await t.step("a worker runs them all: finished, and error after the last attempt", async () => {
      const run = await runWork(db.url, ["--drain", "--poll-interval", "50"]);
      assert.equal(run.code, 0, run.stderr);
      const counts = await assertCounts(sql);
      assert.equal(counts.scheduled + counts.running, 0);
      assert.ok(counts.finished > 0 && counts.error > 0, JSON.stringify(counts));
    });

    await t.step("retried, cancelled, deleted and pruned", async () => {
      const retried = await retryTasks(sql, { program: "fail" });
      assert.ok(retried.retried.length > 0);
      await assertCounts(sql);
      const cancelled = await cancelTasks(sql, { program: "fail", status: "scheduled" });
      assert.equal(cancelled.cancelled.length, retried.retried.length);
      await assertCounts(sql);
      const finished = await sql<{ id: number }[]>`
        SELECT task_id::int AS id FROM retask.tasks WHERE status = 'finished' ORDER BY 1 LIMIT 7`;
      await deleteTasks(sql, finished.map((r) => r.id));
      await assertCounts(sql);
      const { deleted } = await pruneTasks(sql, { olderThan: 0, statuses: ["cancelled"] });
      assert.ok(deleted > 0);
      await assertCounts(sql);
    });

    await t.step(
      "rows written past retask's functions: bulk, by hand, through the course's view",
      async () => {
        await sql`
        INSERT INTO retask.tasks (program_id, status, attempt_count, finished)
        SELECT p.program_id, s.status, 1, now()
        FROM retask.programs p, unnest(ARRAY['finished', 'error', 'cancelled']) s(status),
             generate_series(1, 100)`;
        await assertCounts(sql);
        await sql`UPDATE retask.tasks SET status = 'cancelled' WHERE status = 'error'`;
        await sql`UPDATE retask.tasks SET finished = now()`; // no status changes
        await sql`DELETE FROM retask.tasks WHERE task_id % 3 = 0 AND status <> 'scheduled'`;
        await sql`INSERT INTO public.tasks (program_id, status) VALUES (1, 'scheduled')`;
        await assertCounts(sql);
      },
    );

    await t.step("rows of sessions that ended are folded into a live one's", async () => {
      await Promise.all(sessions.map((s) => s.end()));
      const before = await assertCounts(sql);
      const [{ folded }] = await sql<{ folded: number }[]>`
        SELECT retask.fold_task_counts() AS folded`;
      assert.ok(folded > 0);
      const [{ dead }] = await sql<{ dead: number }[]>`
        SELECT count(*)::int AS dead FROM retask.task_counts
        WHERE pid NOT IN (SELECT pid FROM pg_stat_activity)`;
      assert.equal(dead, 0);
      assert.deepEqual(await assertCounts(sql), before);
      // in a transaction that cannot take them safely, it takes none
      const [{ skipped }] = await sql.begin(
        "isolation level repeatable read",
        (tx) => tx<{ skipped: number }[]>`SELECT retask.fold_task_counts() AS skipped`,
      );
      assert.equal(skipped, 0);
    });

    await t.step("TRUNCATE empties them; rolled back, it does not", async () => {
      await assert.rejects(
        sql.begin(async (tx) => {
          await tx`TRUNCATE retask.tasks, retask.task_attempts`;
          throw new Error("not really");
        }),
        /not really/,
      );
      assert.ok((await assertCounts(sql)).total > 0);
      await sql`TRUNCATE retask.tasks, retask.task_attempts`;
      assert.deepEqual(await assertCounts(sql), none());
      await enqueue(sql, { program: "ok" });
      assert.equal((await assertCounts(sql)).scheduled, 1);
    });
  } finally {
    await Promise.all(sessions.map((s) => s.end()));
    await db.drop();
  }
});

Deno.test("no group may write the counts; a worker's writes are counted all the same", async () => {
  const db = await freshDatabase("sql_counts_rights", { install: true });
  const { sql } = db;
  const worker = await loginAs(db, "wrk", ["retask_worker"]);
  const reader = await loginAs(db, "read", ["retask_read"]);
  try {
    await sql.unsafe(TEST_FUNCTIONS);
    const { programId } = await registerProgram(sql, "ok", "always_ok");
    await enqueue(sql, { program: "ok", params: [{}, {}, {}] });
    for (const s of [worker.sql, reader.sql]) {
      await assert.rejects(
        s`INSERT INTO retask.task_counts VALUES (${programId}, 'finished', 1, 1000)`,
        /permission denied/,
      );
      await assert.rejects(s`UPDATE retask.task_counts SET n = n + 1`, /permission denied/);
      await assert.rejects(s`DELETE FROM retask.task_counts`, /permission denied/);
    }
    await assert.rejects(
      worker.sql`SELECT retask.count_task_changes()`,
      /trigger functions can only be called as triggers/,
    );
    await assert.rejects(reader.sql`SELECT retask.fold_task_counts()`, /permission denied/);
    // what a program running as the worker may do to tasks, the counts follow
    await worker.sql`UPDATE retask.tasks SET status = 'finished' WHERE task_id = (
                       SELECT min(task_id) FROM retask.tasks)`;
    const counts = await assertCounts(sql);
    assert.deepEqual([counts.scheduled, counts.finished], [2, 1]);
    assert.deepEqual((await listTasks(reader.sql)).counts, counts);
  } finally {
    await worker.sql.end();
    await reader.sql.end();
    await db.drop();
    await db.admin(`DROP ROLE IF EXISTS ${worker.role}; DROP ROLE IF EXISTS ${reader.role}`);
  }
});

Deno.test("an upgrade counts the tasks already there, and a refresh keeps counting", async () => {
  const db = await freshDatabase("sql_counts_upgrade");
  const { sql } = db;
  try {
    await installCourse(sql, { history: true });
    await sql`
      INSERT INTO tasks (program_id, status, params)
      SELECT 1, CASE WHEN g % 10 = 0 THEN 'error' ELSE 'finished' END, '{}'
      FROM generate_series(1, 5000) g`;
    await install(sql);
    const counts = await assertCounts(sql);
    assert.equal(counts.total, 5005);
    // the functions applied again (as an upgrade does): the triggers with them
    await sql`UPDATE retask.migrations SET checksum = 'older' WHERE file = 'counts.sql'`;
    await install(sql);
    await sql`INSERT INTO public.tasks (program_id, status) VALUES (1, 'scheduled')`;
    assert.equal((await assertCounts(sql)).scheduled, counts.scheduled + 1);
    // and in a schema of another name
    await install(sql, { schema: "jobs" });
    await sql.unsafe(TEST_FUNCTIONS);
    await registerProgram(sql, "ok", "always_ok", { schema: "jobs" });
    await enqueue(sql, { program: "ok", params: [{}, {}], schema: "jobs" });
    assert.equal((await assertCounts(sql, "jobs")).scheduled, 2);
    assert.equal((await assertCounts(sql)).scheduled, counts.scheduled + 1);
  } finally {
    await db.drop();
  }
});
