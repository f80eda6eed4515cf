// `retask pause` / `retask resume`: workers take no new task of a paused
// program, its running tasks go on, status shows it, resuming wakes the
// workers; both are idempotent and only retask_admin may call them.
import assert from "node:assert/strict";
import { client } from "../../lib/db/connect.ts";
import { enqueue, registerProgram } from "../../lib/mod.ts";
import {
  freshDatabase,
  killWorkers,
  runCli,
  runWork,
  spawnWorker,
  waitFor,
} from "../harness/mod.ts";

Deno.test("retask pause and resume", async (t) => {
  const db = await freshDatabase("cli_pause", { install: true });
  const { sql } = db;
  await sql`CREATE FUNCTION always_ok(params jsonb) RETURNS text LANGUAGE sql AS $$ SELECT 'ok' $$`;
  await sql`CREATE FUNCTION nap(params jsonb) RETURNS text LANGUAGE plpgsql AS $$
    BEGIN PERFORM pg_sleep((params ->> 'sleep')::float8); RETURN 'rested'; END $$`;
  const mail = (await registerProgram(sql, "mail", "always_ok")).programId;
  const other = (await registerProgram(sql, "other", "always_ok")).programId;
  const nap = (await registerProgram(sql, "nap", "nap")).programId;
  const statusOf = async (id: number) =>
    (await sql<{ status: string }[]>`SELECT status FROM retask.tasks WHERE task_id = ${id}`)[0]
      .status;
  const paused = async () =>
    (await sql<{ name: string }[]>`SELECT name FROM retask.programs WHERE paused ORDER BY name`)
      .map((r) => r.name);

  try {
    await t.step("pause: workers take none of its tasks; others run", async () => {
      const held = await enqueue(sql, { program: mail, params: [{}, {}] });
      const [free] = await enqueue(sql, { program: other });
      const run = await runCli(["pause", "mail"], db.url);
      assert.equal(run.code, 0, run.stderr);
      assert.equal(run.stdout, `paused program "mail" (id ${mail}): 2 scheduled tasks wait\n`);
      const work = await runWork(db.url, ["--once"]);
      assert.equal(work.code, 0, work.stderr);
      assert.equal(await statusOf(free), "finished");
      for (const id of held) assert.equal(await statusOf(id), "scheduled");
    });

    await t.step("status shows paused programs", async () => {
      const text = await runCli(["status"], db.url);
      assert.match(
        text.stdout,
        new RegExp(`^paused: mail \\(id ${mail}\\)  \\(workers take none`, "m"),
      );
      const json = JSON.parse((await runCli(["status", "--json"], db.url)).stdout);
      assert.deepEqual(json.paused_programs, [{ program_id: mail, name: "mail" }]);
      const filtered = JSON.parse(
        (await runCli(["status", "--program", "other", "--json"], db.url)).stdout,
      );
      assert.deepEqual(filtered.paused_programs, [{ program_id: mail, name: "mail" }]);
      const registered = JSON.parse(
        (await runCli(["register", "mail", "always_ok", "--json"], db.url)).stdout,
      );
      assert.equal(registered.paused, true, "registering again keeps it paused");
    });

    await t.step("pausing again changes nothing and says so; --json", async () => {
      const run = await runCli(["pause", String(mail), "--json"], db.url);
      assert.equal(run.code, 0, run.stderr);
      assert.deepEqual(JSON.parse(run.stdout), {
        program_id: mail,
        name: "mail",
        paused: true,
        changed: false,
        scheduled: 2,
        running: 0,
      });
      const text = await runCli(["pause", "mail"], db.url);
      assert.equal(
        text.stdout,
        `program "mail" (id ${mail}) was already paused: 2 scheduled tasks wait\n`,
      );
    });

    await t.step("resume wakes a waiting worker at once", async () => {
      // it polls once a minute: only the notification can wake it in time
      const worker = spawnWorker(db.url, ["--poll-interval", "60s"]);
      await waitFor(
        () => /worker \S+ started/.test(worker.stderr()),
        "the worker to start",
        60_000,
      );
      const run = await runCli(["resume", "mail"], db.url);
      assert.equal(run.code, 0, run.stderr);
      assert.equal(run.stdout, `resumed program "mail" (id ${mail}): 2 scheduled tasks can run\n`);
      await waitFor(
        async () => {
          const [row] = await sql`
          SELECT count(*)::int AS n FROM retask.tasks WHERE program_id = ${mail} AND status = 'finished'`;
          return row.n === 2;
        },
        "the worker to run the resumed program's tasks",
        30_000,
      );
      const again = await runCli(["resume", "mail"], db.url);
      assert.equal(
        again.stdout,
        `program "mail" (id ${mail}) was not paused: 0 scheduled tasks can run\n`,
      );
      await killWorkers();
      assert.deepEqual(await paused(), []);
    });

    await t.step("a paused program's running task goes on", async () => {
      const [id] = await enqueue(sql, { program: nap, params: [{ sleep: 2 }] });
      const worker = spawnWorker(db.url, ["--poll-interval", "100"]);
      await waitFor(async () => (await statusOf(id)) === "running", "the task to start");
      const run = await runCli(["pause", "nap"], db.url);
      assert.match(run.stdout, /: 0 scheduled tasks wait; 1 running task goes on\n$/);
      await waitFor(async () => (await statusOf(id)) === "finished", "the running task to finish");
      const [later] = await enqueue(sql, { program: nap, params: [{ sleep: 0 }] });
      await runWork(db.url, ["--once"]);
      assert.equal(await statusOf(later), "scheduled");
      worker.kill("SIGTERM");
      await worker.done;
      await runCli(["resume", "nap"], db.url);
    });

    await t.step("an unknown program exits 2 and pauses nothing", async () => {
      for (const command of ["pause", "resume"]) {
        const run = await runCli([command, "nope"], db.url);
        assert.equal(run.code, 2);
        assert.equal(run.stdout, "");
        assert.match(run.stderr, /^retask: unknown program "nope"; registered: mail/);
      }
      await assert.rejects(
        sql`SELECT retask.pause_program(999999)`,
        /program 999999 does not exist/,
      );
      assert.deepEqual(await paused(), []);
    });

    await t.step("retask_admin may pause; a role that may only enqueue may not", async () => {
      const url = new URL(db.url);
      const password = url.password ? ` PASSWORD '${decodeURIComponent(url.password)}'` : "";
      const roles = { admin: `${db.name}_admin`, enq: `${db.name}_enq` };
      await db.admin(
        `DROP ROLE IF EXISTS ${roles.admin}; CREATE ROLE ${roles.admin} LOGIN${password};
        GRANT retask_admin TO ${roles.admin};
        DROP ROLE IF EXISTS ${roles.enq}; CREATE ROLE ${roles.enq} LOGIN${password};
        GRANT retask_enqueue TO ${roles.enq}`,
      );
      const as = (role: string) => {
        const u = new URL(db.url);
        u.username = role;
        return u.toString();
      };
      const enq = client(as(roles.enq), { max: 1 });
      try {
        await assert.rejects(enq`SELECT retask.pause_program(${other})`, /permission denied/);
        await assert.rejects(enq`UPDATE retask.programs SET paused = true`, /permission denied/);
        const denied = await runCli(["pause", "other"], as(roles.enq));
        assert.equal(denied.code, 1);
        assert.match(denied.stderr, /permission denied for function pause_program/);
        const allowed = await runCli(["pause", "other"], as(roles.admin));
        assert.equal(allowed.code, 0, allowed.stderr);
        assert.deepEqual(await paused(), ["other"]);
        const back = await runCli(["resume", "other"], as(roles.admin));
        assert.equal(back.code, 0, back.stderr);
      } finally {
        await enq.end();
      }
    });
  } finally {
    await killWorkers();
    await db.drop();
    for (const suffix of ["admin", "enq"]) {
      await db.admin(`DROP ROLE IF EXISTS ${db.name}_${suffix}`).catch(() => {});
    }
  }
});
