// `retask enqueue --key`: while a task with the program and key is scheduled
// or running, enqueueing again gives that task; two workers and 20 concurrent
// `enqueue --key` calls give one task; bad keys change nothing.
import assert from "node:assert/strict";
import { enqueueKeyed, registerProgram } from "../../lib/mod.ts";
import { freshDatabase, killWorkers, runCli, spawnWorker, waitFor } from "../harness/mod.ts";

Deno.test("retask enqueue --key", async (t) => {
  const db = await freshDatabase("cli_keys", { install: true });
  const { sql } = db;
  await sql`CREATE FUNCTION always_ok(params jsonb) RETURNS text LANGUAGE sql AS $$ SELECT 'ok' $$`;
  // long enough to stay running while everything below enqueues
  await sql`CREATE FUNCTION nap(params jsonb) RETURNS text LANGUAGE plpgsql AS $$
    BEGIN PERFORM pg_sleep((params ->> 'sleep')::float8); RETURN 'rested'; END $$`;
  const ok = (await registerProgram(sql, "ok", "always_ok")).programId;
  const nap = (await registerProgram(sql, "nap", "nap", { maxAttempts: 1 })).programId;
  const withKey = async (key: string, program = ok) => [
    ...await sql<{ task_id: number; status: string; params: unknown }[]>`
      SELECT task_id, status, params FROM retask.tasks
      WHERE key = ${key} AND program_id = ${program} ORDER BY task_id`,
  ];
  const taskCount = async () => (await sql`SELECT count(*)::int AS n FROM retask.tasks`)[0].n;

  try {
    await t.step("again while scheduled: the same task, said so", async () => {
      const first = await runCli(["enqueue", "ok", "--key", "invoice-42", "--json"], db.url);
      assert.equal(first.code, 0, first.stderr);
      const { task_ids: [id], existing } = JSON.parse(first.stdout);
      assert.equal(existing, false);
      const again = await runCli(
        ["enqueue", "ok", "--key", "invoice-42", "--params", '{"other": true}'],
        db.url,
      );
      assert.equal(again.code, 0, again.stderr);
      assert.equal(
        again.stdout,
        `task ${id} of program "ok" (id ${ok}) already has key "invoice-42" and is scheduled ` +
          "or running: queued nothing\n",
      );
      const json = await runCli(["enqueue", "ok", "--key", "invoice-42", "--json"], db.url);
      assert.deepEqual(JSON.parse(json.stdout), {
        program_id: ok,
        task_ids: [id],
        existing: true,
      });
      const quiet = await runCli(["enqueue", "ok", "--key", "invoice-42", "-q"], db.url);
      assert.equal(quiet.stdout, `${id}\n`);
      assert.deepEqual(await withKey("invoice-42"), [{
        task_id: id,
        status: "scheduled",
        params: {},
      }]);
    });

    await t.step("a key is per program; an ended task's key is free again", async () => {
      const [other] = await enqueueKeyed(sql, { program: nap, key: "invoice-42" });
      assert.equal(other.existing, false, "another program's key");
      const [held] = await withKey("invoice-42");
      for (const status of ["finished", "error", "cancelled"]) {
        await sql`UPDATE retask.tasks SET status = ${status} WHERE task_id = ${held.task_id}`;
        const run = await runCli(["enqueue", "ok", "--key", "invoice-42", "--json"], db.url);
        const out = JSON.parse(run.stdout);
        assert.equal(out.existing, false, `after ${status}`);
        assert.notEqual(out.task_ids[0], held.task_id);
        await sql`DELETE FROM retask.tasks WHERE task_id = ${out.task_ids[0]}`;
      }
    });

    await t.step("an enqueue waits for a concurrent one with its key to commit", async () => {
      const enqueueIn = (tx: typeof sql) =>
        tx<{ task_id: number; existing: boolean }[]>`
          SELECT task_id, existing FROM retask.enqueue_keyed(
            ${ok}, ARRAY['{}']::jsonb[], key => 'race')`;
      for (const end of ["COMMIT", "ROLLBACK"]) {
        const [a, b] = [await sql.reserve(), await sql.reserve()];
        try {
          await a`BEGIN`;
          const [first] = await enqueueIn(a);
          // b's insert meets a's uncommitted row in the unique index, and waits
          const second = enqueueIn(b).execute();
          await waitFor(async () => {
            const [row] = await sql`
              SELECT count(*)::int AS n FROM pg_stat_activity
              WHERE datname = current_database() AND wait_event_type = 'Lock'`;
            return row.n > 0;
          }, "the second enqueue to wait");
          await a.unsafe(end);
          const [got] = await second;
          if (end === "COMMIT") assert.deepEqual(got, { task_id: first.task_id, existing: true });
          else assert.equal(got.existing, false, "a rolled-back task holds no key");
          assert.equal((await withKey("race")).length, 1);
        } finally {
          a.release();
          b.release();
        }
        await sql`DELETE FROM retask.tasks WHERE key = 'race'`;
      }
    });

    await t.step("two workers and 20 concurrent enqueue --key calls give one task", async () => {
      const args = ["--poll-interval", "100", "--task-timeout", "60s", "--shutdown-timeout", "0"];
      const workers = [spawnWorker(db.url, args), spawnWorker(db.url, args)];
      await waitFor(
        () => workers.every((w) => /worker \S+ started/.test(w.stderr())),
        "two workers to start",
        60_000,
      );
      const runs = await Promise.all(Array.from(
        { length: 20 },
        () =>
          runCli(
            ["enqueue", "nap", "--key", "nightly", "--params", '{"sleep": 60}', "--json"],
            db.url,
          ),
      ));
      for (const run of runs) assert.equal(run.code, 0, run.stderr);
      const outs = runs.map((r) => JSON.parse(r.stdout));
      const ids = new Set(outs.map((o) => o.task_ids[0]));
      assert.equal(ids.size, 1, `one task id: ${[...ids]}`);
      assert.equal(outs.filter((o) => !o.existing).length, 1, "one call queued it");
      const tasks = await withKey("nightly", nap);
      assert.equal(tasks.length, 1);
      // a worker took it; while it runs, the key still gives it
      await waitFor(
        async () => (await withKey("nightly", nap))[0].status === "running",
        "a worker to take the task",
      );
      const [running] = await enqueueKeyed(sql, { program: "nap", key: "nightly" });
      assert.deepEqual(running, { taskId: tasks[0].task_id, existing: true });
      await killWorkers();
    });

    await t.step("bad keys exit 2 with one line and queue nothing", async () => {
      const before = await taskCount();
      const cases: [string[], RegExp][] = [
        [["--key", "k", "--count", "2"], /--key names one task, so it cannot go with --count 2/],
        [["--key", ""], /a key is 1 to 1000 characters, got 0/],
        [["--key", "x".repeat(1001)], /a key is 1 to 1000 characters, got 1001/],
      ];
      for (const [flags, message] of cases) {
        const run = await runCli(["enqueue", "ok", ...flags], db.url);
        assert.equal(run.code, 2, `${flags.join(" ")}: ${run.stderr}`);
        assert.equal(run.stdout, "");
        const lines = run.stderr.trimEnd().split("\n");
        assert.equal(lines.length, 1, run.stderr);
        assert.match(lines[0], message);
      }
      // in SQL, several tasks with one key are refused too
      await assert.rejects(
        sql`SELECT retask.enqueue_tasks(${ok}, ARRAY['{}', '{}']::jsonb[], key => 'two')`,
        /a key names one task, and 2 were given with key "two"/,
      );
      assert.equal(await taskCount(), before);
    });
  } finally {
    await killWorkers();
    await db.drop();
  }
});
