// Schedules fired by real `retask work` processes: a run missed while no
// worker ran is enqueued once when workers start; three workers on a
// one-second cron enqueue each slot once; a draining worker fires none.
import assert from "node:assert/strict";
import type { Sql } from "../../lib/db/connect.ts";
import { addSchedule, listSchedules, registerProgram, removeSchedule } from "../../lib/mod.ts";
import { freshDatabase, killWorkers, runWork, spawnWorker, waitFor } from "../harness/mod.ts";

// The slots a program's tasks were enqueued for (a scheduled task runs after its slot), with
// when each was enqueued.
async function tasksOf(sql: Sql, programId: number) {
  return [
    ...await sql<{ slot: Date; created: Date; status: string }[]>`
      SELECT run_after AS slot, created, status FROM retask.tasks
      WHERE program_id = ${programId} ORDER BY run_after, task_id`,
  ];
}

Deno.test("workers fire schedules", async (t) => {
  const db = await freshDatabase("worker_schedule", { install: true });
  const { sql } = db;
  await sql`CREATE FUNCTION always_ok(params jsonb) RETURNS text LANGUAGE sql AS $$ SELECT 'ok' $$`;
  const hourly = (await registerProgram(sql, "hourly", "always_ok")).programId;
  const second = (await registerProgram(sql, "every_second", "always_ok")).programId;
  // a day of hourly slots passed while no worker ran
  await addSchedule(sql, { name: "missed", program: hourly, cron: "0 * * * *" });
  const [{ missed }] = await sql<{ missed: Date }[]>`
    UPDATE retask.schedules SET next_run_at = date_trunc('hour', now()) - interval '1 day'
    WHERE name = 'missed' RETURNING next_run_at AS missed`;
  // the slots before the next one the missed run moved it on to
  const missedRuns = async (before: Date) =>
    (await tasksOf(sql, hourly)).filter((r) => r.slot < before).map((r) => r.slot);

  try {
    await t.step("a draining worker fires no schedule", async () => {
      const run = await runWork(db.url, ["--drain", "--quiet"]);
      assert.equal(run.code, 0, run.stderr);
      assert.deepEqual(await tasksOf(sql, hourly), []);
    });

    await t.step("three workers, a one-second cron: each slot once", async () => {
      const args = ["--poll-interval", "500", "--rescue-interval", "1000"];
      const workers = [1, 2, 3].map(() => spawnWorker(db.url, args));
      await waitFor(
        () => workers.every((w) => /worker \S+ started/.test(w.stderr())),
        "three workers to start",
        60_000,
      );

      // the missed run: one task, for the slot it waited for, then the next hour
      await waitFor(async () => (await tasksOf(sql, hourly)).length > 0, "the missed run");
      const [s] = await listSchedules(sql, { name: "missed" });
      assert.equal(s.lastRunAt?.getTime(), missed.getTime());
      const next = s.nextRunAt!;
      assert.ok(next.getTime() > Date.now() - 1_000, "moved on past now");
      assert.equal(next.getUTCMinutes(), 0);
      assert.deepEqual(await missedRuns(next), [missed]);

      await addSchedule(sql, { name: "tick", program: second, cron: "* * * * * *" });
      await waitFor(
        async () => (await tasksOf(sql, second)).length >= 10,
        "ten slots of the one-second schedule",
        60_000,
      );
      await removeSchedule(sql, "tick");
      // every task it enqueued runs
      await waitFor(
        async () => (await tasksOf(sql, second)).every((r) => r.status === "finished"),
        "the schedule's tasks to finish",
      );
      for (const w of workers) w.kill("SIGTERM");
      const exits = await Promise.all(workers.map((w) => w.done));
      for (const exit of exits) assert.equal(exit.code, 0, exit.stderr);

      const tasks = await tasksOf(sql, second);
      const slots = tasks.map((r) => r.slot.getTime());
      assert.equal(new Set(slots).size, slots.length, `a slot enqueued twice: ${slots}`);
      for (const slot of slots) assert.equal(slot % 1_000, 0, "slots are whole seconds");
      // a slot is left out only when it had already passed as its predecessor was
      // fired (every worker was busy or stalled for a second): then one run, not two
      for (let i = 1; i < tasks.length; i++) {
        const gap = slots[i] - slots[i - 1];
        if (gap === 1_000) continue;
        const late = tasks[i - 1].created.getTime() - slots[i - 1];
        assert.ok(late >= gap - 1_000, `slot ${i} came ${gap} ms after the one before, ${late}`);
      }
      // the missed run stayed one
      assert.deepEqual(await missedRuns(next), [missed]);
      const firing = exits.filter((e) => /schedule "tick" enqueued task/.test(e.stderr)).length;
      console.log(`${tasks.length} slots, fired by ${firing} of the three workers`);
    });
  } finally {
    await killWorkers();
    await db.drop();
  }
});
