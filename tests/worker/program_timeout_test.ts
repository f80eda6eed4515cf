// A program's own timeout (`register --timeout`) in place of the worker's
// `--task-timeout`: its tasks run in statements with that timeout, also when
// a batch holds tasks of other programs.
import assert from "node:assert/strict";
import { enqueue, registerProgram } from "../../lib/mod.ts";
import { freshDatabase, runCli, runWork } from "../harness/mod.ts";

Deno.test("a program's own timeout", async (t) => {
  const db = await freshDatabase("worker_program_timeout", { install: true });
  const { sql } = db;
  await sql`CREATE FUNCTION always_ok(params jsonb) RETURNS text LANGUAGE sql AS $$ SELECT 'ok' $$`;
  await sql`CREATE FUNCTION nap(params jsonb) RETURNS text LANGUAGE plpgsql AS $$
    BEGIN PERFORM pg_sleep((params ->> 'sleep')::float8); RETURN 'rested'; END $$`;
  const task = async (id: number) =>
    (await sql<{ status: string; result: string }[]>`
      SELECT status, result FROM retask.tasks WHERE task_id = ${id}`)[0];

  try {
    await t.step("register --timeout sets it, --timeout none clears it", async () => {
      const set = await runCli(["register", "short", "nap", "--timeout", "1s", "--json"], db.url);
      assert.equal(set.code, 0, set.stderr);
      assert.equal(JSON.parse(set.stdout).timeout_ms, 1000);
      const text = await runCli(["register", "short", "nap"], db.url);
      assert.match(text.stdout, /^updated program "short" .*, timeout 1\.0s$/m, "kept");
      const cleared = await runCli(
        ["register", "short", "nap", "--timeout", "none", "--json"],
        db.url,
      );
      assert.equal(JSON.parse(cleared.stdout).timeout_ms, null);
      for (
        const [value, message] of [
          ["25h", /--timeout must be at most a day \(24h\), or none/],
          ["soon", /--timeout must be a duration/],
        ]
      ) {
        const bad = await runCli(
          ["register", "short", "nap", "--timeout", value as string],
          db.url,
        );
        assert.equal(bad.code, 2, bad.stderr);
        assert.match(bad.stderr, message as RegExp);
      }
      const [{ timeout }] = await sql`SELECT timeout FROM retask.programs WHERE name = 'short'`;
      assert.equal(timeout, null, "a refused --timeout changed nothing");
      const again = await runCli(["register", "short", "nap", "--timeout", "1s"], db.url);
      assert.equal(again.code, 0, again.stderr);
    });

    await t.step(
      "pg_sleep(5) of a 1s program times out after 1000 ms under a long --task-timeout",
      async () => {
        const short = (await registerProgram(sql, "short", "nap", { maxAttempts: 1 })).programId;
        const plain = (await registerProgram(sql, "plain", "nap", { maxAttempts: 1 })).programId;
        const quick = (await registerProgram(sql, "quick", "always_ok")).programId;
        // quick tasks first (higher priority) teach the lane to take big batches,
        // so the slow ones come in one batch of mixed timeouts
        await enqueue(sql, { program: quick, params: Array(30).fill({}), priority: 1 });
        const [slow] = await enqueue(sql, { program: short, params: [{ sleep: 5 }] });
        const [longer] = await enqueue(sql, { program: plain, params: [{ sleep: 2 }] });
        const run = await runWork(db.url, [
          "--drain",
          "--concurrency",
          "1",
          "--task-timeout",
          "60s",
        ]);
        assert.equal(run.code, 0, run.stderr);
        assert.match((await task(slow)).result, /^attempt 1 of 1\ntimed out after 1000 ms\n/);
        assert.equal((await task(slow)).status, "error");
        assert.match(
          run.stdout,
          new RegExp(`^task ${slow} short attempt 1/1 .* error: timed out after 1000 ms$`, "m"),
        );
        // the other program's task in that batch had the worker's minute, and used 2 seconds of it
        assert.deepEqual(await task(longer), {
          status: "finished",
          result: "attempt 1 of 1\n nap  \n------\nrested\n",
        });
      },
    );
  } finally {
    await db.drop();
  }
});
