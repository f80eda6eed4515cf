// Schedules in SQL and the worker's tick: each slot is enqueued once however
// many workers fire it at once; ten minutes of a fake clock with three
// workers enqueue every slot once; a run missed while no worker ran is
// enqueued once; who may add, remove and fire them.
import assert from "node:assert/strict";
import { client, type Sql, type TransactionSql } from "../../lib/db/connect.ts";
import { addSchedule, listSchedules, registerProgram } from "../../lib/mod.ts";
import { nextRunAfter } from "../../lib/queue/schedules.ts";
import { Scheduler } from "../../lib/worker/schedule.ts";
import type { WorkerLog } from "../../lib/worker/outcome.ts";
import { freshDatabase, loginAs, waitFor, WORKER_ROLE } from "../harness/mod.ts";

// The tasks schedule `name`'s program got, by slot (a task runs after its slot).
async function slots(sql: Sql, programId: number): Promise<number[]> {
  const rows = await sql<{ run_after: Date }[]>`
    SELECT run_after FROM retask.tasks WHERE program_id = ${programId} ORDER BY run_after`;
  return rows.map((r) => r.run_after.getTime());
}

Deno.test("schedules", async (t) => {
  const db = await freshDatabase("sql_schedules", { install: true });
  const { sql } = db;
  const workers: Sql[] = [];
  const logs: WorkerLog[] = [];
  const log = (entry: WorkerLog) => logs.push(entry);
  let programs = 0;
  // a program of its own per step, so each step counts only its own tasks
  const program = async () =>
    (await registerProgram(sql, `noop_${++programs}`, "always_ok")).programId;
  try {
    await sql`CREATE FUNCTION always_ok(params jsonb) RETURNS text LANGUAGE sql AS $$ SELECT 'ok' $$`;
    for (let i = 0; i < 3; i++) workers.push(client(db.workerUrl, { max: 1 }));

    await t.step(
      "upsert_schedule refuses what a worker could not run; nothing stored",
      async () => {
        const id = await program();
        const cases: [string, string, string, unknown, RegExp][] = [
          ["", "* * * * *", "UTC", {}, /schedule name is empty/],
          ["x".repeat(201), "* * * * *", "UTC", {}, /longer than 200 characters/],
          ["s", "* * * *", "UTC", {}, /must have 5 fields .* or 6 with seconds first/],
          ["s", "* * * * * * *", "UTC", {}, /must have 5 fields/],
          ["s", "* * * * *", "Mars/Base", {}, /unknown time zone "Mars\/Base"/],
          ["s", "* * * * *", "europe/moscow", {}, /did you mean Europe\/Moscow\?/],
          ["s", "* * * * *", "UTC", [1], /params must be a JSON object, got array/],
        ];
        for (const [name, cron, zone, params, message] of cases) {
          await assert.rejects(
            sql`SELECT retask.upsert_schedule(${name}, ${id}, ${cron}, ${zone},
                                           ${sql.json(params as never)}::jsonb)`,
            message,
          );
        }
        await assert.rejects(
          sql`SELECT retask.upsert_schedule('s', 999999, '* * * * *')`,
          /program 999999 does not exist/,
        );
        await assert.rejects(sql`SELECT retask.remove_schedule('nope')`, /"nope" does not exist/);
        assert.deepEqual(await listSchedules(sql), []);
      },
    );

    await t.step("one slot, eight workers at once: one task", async () => {
      const id = await program();
      const slot = new Date(Date.now() - 60_000);
      await sql`SELECT retask.upsert_schedule('race', ${id}, '* * * * *', 'UTC', '{"n": 1}',
                                              ${slot}::timestamptz)`;
      const next = nextRunAfter("* * * * *", "UTC", new Date());
      // the first holds the row while seven others come for the same slot
      const racers = Array.from({ length: 7 }, () => client(db.workerUrl, { max: 1 }));
      const fire = (q: Sql | TransactionSql) =>
        q<{ task: number | null }[]>`
          SELECT retask.fire_schedule('race', ${slot}::timestamptz, ${next}::timestamptz) AS task`;
      try {
        let late: Promise<{ task: number | null }[]>[] = [];
        const [won] = await sql.begin(async (tx) => {
          const won = await fire(tx);
          // (postgres.js sends a query when it is awaited, or told to now)
          late = racers.map((r) => fire(r).execute());
          await waitFor(
            async () =>
              (await sql`SELECT count(*)::int AS n FROM pg_stat_activity
                         WHERE datname = current_database() AND wait_event_type = 'Lock'`)[0]
                .n === racers.length,
            "seven workers waiting for the schedule's row",
          );
          return won;
        });
        const losers = await Promise.all(late);
        assert.ok(won.task !== null);
        assert.deepEqual(losers.map(([r]) => r.task), Array(7).fill(null));
      } finally {
        await Promise.all(racers.map((r) => r.end({ timeout: 1 })));
      }
      assert.deepEqual(await slots(sql, id), [slot.getTime()]);
      const [s] = await listSchedules(sql, { name: "race" });
      assert.equal(s.nextRunAt?.getTime(), next?.getTime());
      assert.equal(s.lastRunAt?.getTime(), slot.getTime());
      const [task] = await sql`SELECT task_id, params FROM retask.tasks WHERE program_id = ${id}`;
      assert.equal(s.lastTaskId, task.task_id);
      assert.deepEqual(task.params, { n: 1 });
      // a slot already fired, or a next run not after the slot: nothing
      const [{ again }] = await sql`
        SELECT retask.fire_schedule('race', ${slot}::timestamptz, ${next}::timestamptz) AS again`;
      assert.equal(again, null);
      await assert.rejects(
        sql`SELECT retask.fire_schedule('race', ${next}::timestamptz, ${next}::timestamptz)`,
        /must come after/,
      );
      await sql`SELECT retask.remove_schedule('race')`;
    });

    await t.step("three workers, ten minutes of a fake clock: every slot once", async () => {
      const id = await program();
      // every 5 seconds, read in a zone with an offset; the fake clock starts tomorrow
      const start = new Date(Math.ceil(Date.now() / 60_000) * 60_000 + 86_400_000);
      await addSchedule(sql, {
        name: "fake",
        program: id,
        cron: "*/5 * * * * *",
        timezone: "Asia/Kolkata",
      });
      const first = nextRunAfter("*/5 * * * * *", "Asia/Kolkata", start)!;
      await sql`UPDATE retask.schedules SET next_run_at = ${first} WHERE name = 'fake'`;
      const schedulers = workers.map(() => new Scheduler("retask", log));
      let now = start.getTime();
      const end = now + 10 * 60_000;
      let ticks = 0;
      while (now < end) {
        // steps of up to one slot, in milliseconds: no slot passes unseen
        now += 1 + Math.floor(Math.random() * 5_000);
        const at = new Date(now);
        // all three at once on their own connections, now and then only some,
        // but never none: a slot no worker saw is rightly merged into the next
        const some = schedulers.map((s, i) => ({ s, sql: workers[i] }))
          .filter(() => Math.random() < 0.8);
        const ticking = some.length > 0 ? some : [{ s: schedulers[0], sql: workers[0] }];
        await Promise.all(ticking.map(({ s, sql }) => s.tick(sql, at)));
        ticks += ticking.length;
      }
      const fired = await slots(sql, id);
      const expected: number[] = [];
      for (let slot = first.getTime(); slot <= now; slot += 5_000) expected.push(slot);
      assert.equal(expected.length >= 119, true, `${expected.length} slots`);
      assert.deepEqual(fired, expected, `${ticks} ticks`);
      assert.deepEqual(logs.filter((l) => l.level === "warn"), []);
      await sql`SELECT retask.remove_schedule('fake')`;
    });

    await t.step("a run missed while no worker ran is enqueued once", async () => {
      const id = await program();
      await addSchedule(sql, { name: "missed", program: id, cron: "* * * * *" });
      // sixty slots passed while no worker ran
      const missed = new Date(Math.floor(Date.now() / 60_000) * 60_000 - 3_600_000);
      await sql`UPDATE retask.schedules SET next_run_at = ${missed} WHERE name = 'missed'`;
      const scheduler = new Scheduler("retask", log);
      const { fired } = await scheduler.tick(workers[0]);
      assert.deepEqual(fired.map((f) => [f.schedule, f.slot.getTime()]), [[
        "missed",
        missed.getTime(),
      ]]);
      await scheduler.tick(workers[1]);
      assert.deepEqual(await slots(sql, id), [missed.getTime()]);
      const [s] = await listSchedules(sql, { name: "missed" });
      assert.ok(s.nextRunAt && s.nextRunAt.getTime() > Date.now(), "moved on past now");
      await sql`SELECT retask.remove_schedule('missed')`;
    });

    await t.step("a schedule added in SQL without a slot: the next tick sets it", async () => {
      const id = await program();
      await sql`SELECT retask.upsert_schedule('plain', ${id}, '0 3 * * *', 'Europe/Moscow')`;
      const scheduler = new Scheduler("retask", log);
      const { fired, untilNextMs } = await scheduler.tick(workers[0]);
      assert.deepEqual(fired, []);
      assert.ok(untilNextMs <= 86_400_000, `${untilNextMs}`);
      const [s] = await listSchedules(sql, { name: "plain" });
      // 03:00 in Moscow is 00:00 UTC
      assert.equal(s.nextRunAt?.toISOString().slice(11), "00:00:00.000Z");
      assert.deepEqual(await slots(sql, id), []);
      await sql`SELECT retask.remove_schedule('plain')`;
    });

    await t.step("re-adding keeps the due slot unless the cron or zone changed", async () => {
      const id = await program();
      const first = await addSchedule(sql, { name: "re", program: id, cron: "0 * * * *" });
      assert.equal(first.created, true);
      const due = new Date(Date.now() - 3_600_000);
      await sql`UPDATE retask.schedules SET next_run_at = ${due} WHERE name = 're'`;
      const same = await addSchedule(sql, {
        name: "re",
        program: id,
        cron: "0 * * * *",
        params: { v: 2 },
      });
      assert.equal(same.created, false);
      assert.equal(same.nextRunAt?.getTime(), due.getTime());
      assert.deepEqual(same.params, { v: 2 });
      const changed = await addSchedule(sql, { name: "re", program: id, cron: "30 * * * *" });
      assert.ok(changed.nextRunAt && changed.nextRunAt.getTime() > Date.now());
      assert.equal(changed.nextRunAt.getUTCMinutes(), 30);
      await sql`SELECT retask.remove_schedule('re')`;
    });

    await t.step("a cron this runtime cannot read is skipped and said once", async () => {
      const id = await program();
      // the SQL checks only the shape; 61 is no minute
      await sql`INSERT INTO retask.schedules (name, program_id, cron, next_run_at)
                VALUES ('bad', ${id}, '61 * * * *', now() - interval '1 minute'),
                       ('good', ${id}, '* * * * *', now() - interval '1 minute')`;
      const said: WorkerLog[] = [];
      const scheduler = new Scheduler("retask", (entry) => said.push(entry));
      await scheduler.tick(workers[0]);
      await sql`UPDATE retask.schedules SET next_run_at = now() - interval '1 minute'
                WHERE name = 'good'`;
      await scheduler.tick(workers[0]);
      const warnings = said.filter((l) => l.level === "warn").map((l) => l.message);
      assert.equal(warnings.length, 1, warnings.join("\n"));
      assert.match(warnings[0], /^schedule "bad" skipped: invalid cron expression .*minute/);
      assert.equal((await slots(sql, id)).length, 2, "the good one fired twice");
      await sql`DELETE FROM retask.schedules`;
    });

    await t.step("enqueuers add and remove, readers read, workers fire", async () => {
      const id = await program();
      const enqueuer = await loginAs(db, "enq", ["retask_enqueue"]);
      const reader = await loginAs(db, "read", ["retask_read"]);
      try {
        await addSchedule(enqueuer.sql, { name: "mine", program: id, cron: "* * * * *" });
        assert.equal((await listSchedules(reader.sql)).length, 1);
        await assert.rejects(
          addSchedule(reader.sql, { name: "theirs", program: id, cron: "* * * * *" }),
          /permission denied/,
        );
        await assert.rejects(
          reader.sql`SELECT retask.remove_schedule('mine')`,
          /permission denied/,
        );
        // a worker moves a due slot on and enqueues, and may change nothing else
        const worker = workers[0];
        await assert.rejects(
          worker`SELECT retask.upsert_schedule('w', ${id}, '* * * * *')`,
          /permission denied/,
        );
        await assert.rejects(
          worker`UPDATE retask.schedules SET params = '{"evil": true}'`,
          /permission denied/,
        );
        await sql`UPDATE retask.schedules SET next_run_at = now() - interval '1 minute'`;
        const { fired } = await new Scheduler("retask", log).tick(worker);
        assert.equal(fired.length, 1);
        const [{ role }] = await worker<{ role: string }[]>`SELECT current_user AS role`;
        assert.equal(role, WORKER_ROLE);
        await enqueuer.sql`SELECT retask.remove_schedule('mine')`;
        assert.deepEqual(await listSchedules(sql), []);
      } finally {
        await Promise.all([enqueuer.sql.end(), reader.sql.end()]);
        await db.admin(`DROP ROLE IF EXISTS ${enqueuer.role}; DROP ROLE IF EXISTS ${reader.role}`);
      }
    });
  } finally {
    await Promise.all(workers.map((w) => w.end()));
    await db.drop();
  }
});
