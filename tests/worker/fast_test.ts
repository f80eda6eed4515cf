// The fast path (issue "Lock, run and record a batch in one statement"): a
// batch taken, run and recorded in one statement counts its attempts in the
// same commit as their outcomes, so a statement that dies costs no task an
// attempt; and a program that kills its backend is the only one charged.
import assert from "node:assert/strict";
import { enqueue, registerProgram } from "../../lib/mod.ts";
import { freshDatabase, killWorkers, spawnWorker, waitFor } from "../harness/mod.ts";
import {
  assertEffectsExactlyOnce,
  assertInvariants,
  count,
  installWorkerPrograms,
  keyed,
} from "./helpers.ts";

Deno.test("the fast path", async (t) => {
  const db = await freshDatabase("worker_fast", { install: true });
  const { sql } = db;
  try {
    const programs = await installWorkerPrograms(sql);
    await sql.unsafe(`
      -- the flaky program's effect, and on params.kill its backend's end
      CREATE FUNCTION flaky_killer(params jsonb) RETURNS text LANGUAGE plpgsql AS $$
      BEGIN
        IF (params ->> 'kill')::boolean THEN
          PERFORM pg_terminate_backend(pg_backend_pid());
          PERFORM pg_sleep(10);
        END IF;
        RETURN flaky(params);
      END $$`);
    const killer = await registerProgram(sql, "flaky_killer", "flaky_killer");
    const reset = async () => {
      await sql`DELETE FROM tasks`;
      await sql`DELETE FROM effects`;
    };

    await t.step(
      "a quick program's tasks run in one statement a batch, uncounted while running",
      async () => {
        await reset();
        await enqueue(sql, { program: programs.flaky, params: keyed(2000, { fail: 0 }) });
        const worker = spawnWorker(db.url, ["--drain", "--concurrency", "2"]);
        // a fast batch locks its tasks without taking them: none shows running,
        // and none is charged an attempt before its outcome is recorded
        let sawFast = false;
        await waitFor(async () => {
          const [row] = await sql<{ fast: number; mid: number }[]>`
          SELECT count(*) FILTER (WHERE query LIKE '%run_next_tasks%')::int AS fast,
                 (SELECT count(*) FROM retask.tasks
                  WHERE attempt_count > 0 AND status = 'scheduled')::int AS mid
          FROM pg_stat_activity WHERE state = 'active' AND datname = current_database()`;
          assert.equal(row.mid, 0, "no task scheduled with an attempt counted");
          sawFast ||= row.fast > 0;
          return sawFast;
        }, "a fast statement");
        const { code, stderr } = await worker.done;
        assert.equal(code, 0, stderr);
        await assertInvariants(sql);
        await assertEffectsExactlyOnce(sql);
        assert.equal(
          await count(sql, "SELECT count(*) AS n FROM tasks WHERE attempt_count <> 1"),
          0,
        );
      },
    );

    await t.step(
      "a worker backend killed in the middle of a fast batch: no attempt lost or doubled",
      async () => {
        await reset();
        await enqueue(sql, {
          program: programs.flaky,
          params: keyed(600, { fail: 0, sleep: 0.002 }),
        });
        const worker = spawnWorker(db.url, ["--drain", "--concurrency", "1"]);
        // the fast statement's backend, once it has run part of its batch
        let terminated = 0;
        await waitFor(async () => {
          const [row] = await sql<{ n: number }[]>`
          SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))::int AS n
          FROM pg_stat_activity
          WHERE datname = current_database() AND state = 'active'
            AND query LIKE '%run_next_tasks%'
            AND clock_timestamp() - query_start > interval '30 milliseconds'`;
          terminated += row.n;
          return terminated > 0;
        }, "a fast batch to terminate");
        const { code, stderr } = await worker.done;
        assert.equal(code, 0, stderr);
        assert.match(stderr, /a batch of \d+ lost its database connection/);
        await assertInvariants(sql);
        await assertEffectsExactlyOnce(sql);
        // what the dead statement ran never counted; each task ran once after
        assert.equal(
          await count(sql, "SELECT count(*) AS n FROM tasks WHERE attempt_count <> 1"),
          0,
        );
        assert.equal(
          await count(
            sql,
            "SELECT count(*) AS n FROM retask.task_attempts WHERE outcome <> 'finished'",
          ),
          0,
        );
      },
    );

    await t.step(
      "a quick program that turns slow is stopped uncharged and goes the careful way",
      async () => {
        await reset();
        await enqueue(sql, { program: programs.sleepy, params: Array(100).fill({ sleep: 0 }) });
        const [slow] = await enqueue(sql, { program: programs.sleepy, params: [{ sleep: 60 }] });
        await enqueue(sql, { program: programs.sleepy, params: Array(300).fill({ sleep: 0 }) });
        const worker = spawnWorker(db.url, ["--concurrency", "2"]);
        // the quick ones do not wait behind it, locked in its fast batch (a
        // few may share its careful batch once its program is taken for slow)
        await waitFor(
          async () =>
            (await count(sql, "SELECT count(*) AS n FROM tasks WHERE status = 'finished'")) >= 350,
          "the quick tasks to finish",
        );
        // cut short in its fast batch, uncharged, it is now taken the careful way
        await waitFor(async () => {
          const [row] = await sql<{ status: string; attempt_count: number }[]>`
            SELECT status, attempt_count FROM retask.tasks WHERE task_id = ${slow}`;
          return row.status === "running" && row.attempt_count === 1;
        }, "the slow task to run the careful way");
        assert.equal(
          await count(
            sql,
            `SELECT count(*) AS n FROM retask.task_attempts WHERE task_id = ${slow}`,
          ),
          0,
          "its stopped fast attempt left no history",
        );
        worker.kill("SIGTERM");
        await worker.done;
      },
    );

    await t.step(
      "a quick program's task that kills its backend in a fast batch costs only itself",
      async () => {
        await reset();
        await enqueue(sql, { program: killer.programId, params: keyed(200, { fail: 0 }) });
        const [bad] = await enqueue(sql, {
          program: killer.programId,
          params: [{ key: "bad", kill: true }],
        });
        await enqueue(sql, {
          program: killer.programId,
          params: keyed(200, { fail: 0 }).map((p, i) => ({ ...p, key: `late${i}` })),
        });
        const worker = spawnWorker(db.url, ["--drain", "--concurrency", "2"]);
        const { code, stderr } = await worker.done;
        assert.equal(code, 0, stderr);
        // it met the task in a fast batch, and ran that batch again one by one
        assert.match(stderr, /running its tasks again one per statement/);
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
        assert.equal(
          await count(
            sql,
            `SELECT count(*) AS n FROM tasks WHERE task_id <> ${bad}
                          AND (status <> 'finished' OR attempt_count <> 1)`,
          ),
          0,
          "every other task finished at its first attempt",
        );
        await assertInvariants(sql);
      },
    );
  } finally {
    await killWorkers();
    await db.drop();
  }
});
