// `retask work --once` runs what is runnable now and exits; `--drain` says
// on stderr, once, what it is waiting for.
import assert from "node:assert/strict";
import { enqueue, registerProgram, setProgramPaused } from "../../lib/mod.ts";
import {
  freshDatabase,
  killWorkers,
  runCli,
  runWork,
  spawnWorker,
  waitFor,
} from "../harness/mod.ts";

Deno.test("work --once and --drain", async (t) => {
  const db = await freshDatabase("worker_once", { install: true });
  const { sql } = db;
  await sql`CREATE FUNCTION always_ok(params jsonb) RETURNS text LANGUAGE sql AS $$ SELECT 'ok' $$`;
  await sql`CREATE FUNCTION always_fail(params jsonb) RETURNS text LANGUAGE plpgsql AS $$
    BEGIN RAISE EXCEPTION 'failed on purpose'; END $$`;
  const ok = (await registerProgram(sql, "ok", "always_ok")).programId;
  const fail = (await registerProgram(sql, "fail", "always_fail")).programId;
  const held = (await registerProgram(sql, "held", "always_ok")).programId;
  const statuses = async () =>
    Object.fromEntries(
      (await sql<{ task_id: number; status: string }[]>`
        SELECT task_id, status FROM retask.tasks ORDER BY task_id`).map((
        r,
      ) => [r.task_id, r.status]),
    );

  try {
    await t.step("--once runs what is runnable now, retries included, and exits 0", async () => {
      const now = await enqueue(sql, { program: ok, params: [{}, {}, {}] });
      const [failing] = await enqueue(sql, { program: fail, maxAttempts: 3 });
      const [later] = await enqueue(sql, {
        program: ok,
        runAfter: new Date(Date.now() + 3600_000),
      });
      const [paused] = await enqueue(sql, { program: held });
      await setProgramPaused(sql, held, true);
      const run = await runWork(db.url, ["--once", "--poll-interval", "60s"]);
      assert.equal(run.code, 0, run.stderr);
      assert.match(run.stderr, /worker \S+ stopped \(once\)/);
      assert.deepEqual(await statuses(), {
        [now[0]]: "finished",
        [now[1]]: "finished",
        [now[2]]: "finished",
        [failing]: "error",
        [later]: "scheduled",
        [paused]: "scheduled",
      });
      // its retries were runnable at once: all three attempts ran
      assert.equal(run.stdout.match(new RegExp(`^task ${failing} `, "gm"))?.length, 3);
      await sql`DELETE FROM retask.tasks`;
      await setProgramPaused(sql, held, false);
    });

    await t.step("--once with nothing runnable exits at once", async () => {
      await enqueue(sql, { program: ok, runAfter: new Date(Date.now() + 3600_000) });
      const run = await runWork(db.url, ["--once", "--poll-interval", "60s"]);
      assert.equal(run.code, 0, run.stderr);
      assert.equal(run.stdout, "");
      await sql`DELETE FROM retask.tasks`;
    });

    await t.step("--once and --drain together exit 2", async () => {
      const run = await runCli(["work", "--once", "--drain"], db.url);
      assert.equal(run.code, 2);
      assert.equal(
        run.stderr,
        "retask: --once and --drain do not go together: --once stops " +
          "when nothing is runnable now, --drain also waits for tasks scheduled later\n",
      );
    });

    await t.step("--drain says once what it waits for, then runs it when due", async () => {
      const due = new Date(Date.now() + 4_000);
      const [id] = await enqueue(sql, { program: ok, runAfter: due });
      // a poll every 100 ms: some 40 polls while it waits
      const run = await runWork(db.url, ["--drain", "--poll-interval", "100"]);
      assert.equal(run.code, 0, run.stderr);
      const said = run.stderr.match(/^retask: draining: waiting for .*$/gm) ?? [];
      assert.deepEqual(said, [
        `retask: draining: waiting for 1 task scheduled later, the next at ${due.toISOString()}`,
      ]);
      assert.match(run.stderr, /stopped \(drained\)/);
      assert.deepEqual(await statuses(), { [id]: "finished" });
      await sql`DELETE FROM retask.tasks`;
    });

    await t.step("--drain waits for a paused program's tasks, and says so", async () => {
      const [id] = await enqueue(sql, { program: held });
      await setProgramPaused(sql, held, true);
      // a long poll: resuming wakes it
      const worker = spawnWorker(db.url, ["--drain", "--poll-interval", "60s"]);
      await waitFor(
        () =>
          /draining: waiting for 1 task of paused programs \(retask resume\)$/m.test(
            worker.stderr(),
          ),
        "the worker to say what it waits for",
        60_000,
      );
      const resumed = await runCli(["resume", "held"], db.url);
      assert.equal(resumed.code, 0, resumed.stderr);
      const end = await worker.done;
      assert.equal(end.code, 0, end.stderr);
      assert.match(end.stdout, new RegExp(`^task ${id} held attempt 1/3 .* finished$`, "m"));
    });
  } finally {
    await killWorkers();
    await db.drop();
  }
});
