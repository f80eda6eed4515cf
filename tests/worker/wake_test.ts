// Waking workers (sql/wake.sql): an enqueue notifies only while a worker
// sleeps, and a sleeping worker still picks up at once what is enqueued.
import assert from "node:assert/strict";
import { client, type Sql } from "../../lib/db/connect.ts";
import { enqueue, registerProgram } from "../../lib/mod.ts";
import { freshDatabase, killWorkers, spawnWorker, waitFor } from "../harness/mod.ts";

// Counts notifications on retask_tasks, on a connection of its own. `settled`
// sends one more and waits for it: notifications arrive in commit order, so
// every one sent before has arrived too.
async function countNotifications(url: string) {
  const sql: Sql = client(url, { max: 1 });
  let count = 0;
  let marks = 0;
  await sql.listen("retask_tasks", (payload) => {
    if (payload === "mark") marks++;
    else count++;
  });
  return {
    count: () => count,
    async settled(): Promise<number> {
      const want = marks + 1;
      await sql`SELECT pg_notify('retask_tasks', 'mark')`;
      await waitFor(() => marks >= want, "the marking notification");
      return count;
    },
    close: () => sql.end({ timeout: 1 }),
  };
}

const asleep = async (sql: Sql) => (await sql`SELECT asleep FROM retask.wake`)[0].asleep;

Deno.test("worker wake-ups", async (t) => {
  const db = await freshDatabase("worker_wake", { install: true });
  const { sql } = db;
  const notes = await countNotifications(db.url);
  const { programId } = await registerProgram(sql, "lucky", "retask.lucky");
  // lucky fails sometimes; one attempt, and the test looks at pickup only
  const once = { program: programId, params: [{}], maxAttempts: 1 };
  try {
    await t.step("a sleeping worker runs a task enqueued long after it fell asleep", async () => {
      // nothing but a notification wakes it within a minute
      const worker = spawnWorker(db.url, [
        "--poll-interval",
        "60s",
        "--rescue-interval",
        "60s",
        "--lease",
        "10m",
        "--quiet",
      ]);
      await waitFor(() => asleep(sql), "the worker to say it sleeps");
      const sent = await notes.settled();
      for (let i = 0; i < 3; i++) {
        const [id] = await enqueue(sql, once);
        await waitFor(async () => {
          const [row] = await sql`SELECT status FROM retask.tasks WHERE task_id = ${id}`;
          return row.status !== "scheduled" && row.status !== "running";
        }, `task ${id} to be run by the sleeping worker`);
        // asleep again before the next enqueue
        await waitFor(() => asleep(sql), "the worker to say it sleeps again");
      }
      assert.equal(await notes.settled() - sent, 3, "one notification per enqueue to a sleeper");
      worker.kill("SIGTERM");
      assert.equal((await worker.done).code, 0);
    });

    await t.step("enqueues while no worker sleeps send no notification", async () => {
      // the stopped worker said it sleeps: the first enqueue wakes nobody, once
      await enqueue(sql, once);
      assert.equal(await asleep(sql), false);
      const before = await notes.settled();
      for (let i = 0; i < 20; i++) await enqueue(sql, once);
      await enqueue(sql, { ...once, params: Array(20).fill({}) });
      assert.equal(await notes.settled(), before, "no notification");
    });

    await t.step(
      "worker_idle: true while something is runnable, tasks for later aside",
      async () => {
        await sql`DELETE FROM retask.tasks`;
        await enqueue(sql, { ...once, runAfter: new Date(Date.now() + 3_600_000) });
        const idle = async () => (await sql`SELECT retask.worker_idle() AS r`)[0].r;
        assert.equal(await idle(), false, "only a task for later");
        assert.equal(await asleep(sql), true);
        const [id] = await enqueue(sql, once);
        assert.equal(await asleep(sql), false, "the enqueue cleared it");
        assert.equal(await idle(), true, "a runnable task");
        await sql`SELECT retask.pause_program(${programId})`;
        assert.equal(await idle(), false, "its program is paused");
        await sql`SELECT retask.resume_program(${programId})`;
        assert.equal(await asleep(sql), false, "resuming woke the workers");
        // a task another transaction is taking is its taker's
        await sql.begin(async (tx) => {
          await tx`SELECT FROM retask.tasks WHERE task_id = ${id} FOR UPDATE`;
          assert.equal(await idle(), false, "the only runnable task is being taken");
        });
      },
    );

    await t.step("an enqueue early in a long transaction holds up no other", async () => {
      await sql`DELETE FROM retask.tasks`;
      const idle = async () => (await sql`SELECT retask.worker_idle() AS r`)[0].r;
      assert.equal(await idle(), false);
      const before = await notes.settled();
      await sql.begin(async (tx) => {
        await enqueue(tx, once);
        // a worker must not sleep: its look would not see the open enqueue's task
        assert.equal(await idle(), true);
        // another enqueue meanwhile returns, and notifies itself
        await enqueue(sql, once);
        assert.equal(await notes.settled(), before + 1);
      });
      assert.equal(await notes.settled(), before + 2, "the long one notified when it committed");
    });

    await t.step("an enqueue in a repeatable read transaction always notifies", async () => {
      const before = await notes.settled();
      await sql.begin("isolation level repeatable read", (tx) => enqueue(tx, once));
      assert.equal(await notes.settled(), before + 1);
    });
  } finally {
    await killWorkers();
    await notes.close();
    await db.drop();
  }
});
