// The "done when", with real `retask work` processes: a program that
// fails 70% of the time, drained by one worker, by four at once, by two of
// which one is killed with kill -9 midway, and by one whose backends are
// terminated midway. Every run must end with the same invariants.
import assert from "node:assert/strict";
import type { Sql } from "../../lib/db/connect.ts";
import { enqueue } from "../../lib/mod.ts";
import { freshDatabase, killWorkers, runWork, spawnWorker, waitFor } from "../harness/mod.ts";
import {
  assertEffectsExactlyOnce,
  assertInvariants,
  count,
  installWorkerPrograms,
  keyed,
  terminateWorkerBackends,
} from "./helpers.ts";

const QUICK = ["--poll-interval", "100", "--rescue-interval", "300", "--quiet"];

function attemptsAtLeast(sql: Sql, n: number) {
  return waitFor(
    async () => (await count(sql, "SELECT count(*) AS n FROM retask.task_attempts")) >= n,
    `${n} attempts`,
    60_000,
  );
}

Deno.test("workers under load and failure", async (t) => {
  const db = await freshDatabase("worker_chaos", { install: true });
  const { sql } = db;
  const programs = await installWorkerPrograms(sql);
  async function reset() {
    await sql`DELETE FROM tasks`;
    await sql`DELETE FROM effects`;
  }

  try {
    await t.step("1,000 lucky tasks drained by one worker", async () => {
      await reset();
      await enqueue(sql, { program: programs.lucky, params: Array(1000).fill({}) });
      const { code, stderr } = await runWork(db.url, [...QUICK, "--drain", "--concurrency", "4"]);
      assert.equal(code, 0, stderr);
      await assertInvariants(sql);
      const retried = await count(sql, "SELECT count(*) AS n FROM tasks WHERE attempt_count > 1");
      assert.ok(retried > 500, `most tasks needed a retry (${retried})`);
    });

    await t.step("four workers, 3,000 tasks: each successful attempt ran once", async () => {
      await reset();
      await enqueue(sql, { program: programs.flaky, params: keyed(3000) });
      const results = await Promise.all(
        [1, 2, 3, 4].map(() => runWork(db.url, [...QUICK, "--drain", "--concurrency", "3"])),
      );
      for (const r of results) assert.equal(r.code, 0, r.stderr);
      await assertInvariants(sql);
      await assertEffectsExactlyOnce(sql);
      const workers = await count(
        sql,
        "SELECT count(DISTINCT worker) AS n FROM retask.task_attempts",
      );
      // (one that starts late may find the queue already drained by the others)
      assert.ok(workers >= 3, `the workers shared the queue (${workers} took part)`);
    });

    await t.step("two workers, one killed with kill -9 midway", async () => {
      await reset();
      await enqueue(sql, { program: programs.flaky, params: keyed(1000, { sleep: 0.005 }) });
      const args = [...QUICK, "--drain", "--concurrency", "4", "--batch-size", "10"];
      const doomed = spawnWorker(db.url, args);
      const survivor = spawnWorker(db.url, args);
      await attemptsAtLeast(sql, 400);
      doomed.kill("SIGKILL");
      const [killed, drained] = await Promise.all([doomed.done, survivor.done]);
      assert.equal(killed.code, 137);
      assert.equal(drained.code, 0, drained.stderr);
      await assertInvariants(sql);
      await assertEffectsExactlyOnce(sql);
      // a batch the server was running when its worker died still commits (the
      // backend notices a dead client within a second), so nothing need be lost
      const workers = await count(
        sql,
        "SELECT count(DISTINCT worker) AS n FROM retask.task_attempts",
      );
      assert.equal(workers, 2, "the killed worker's attempts are recorded beside the survivor's");
    });

    await t.step("backends terminated midway: the worker reconnects and finishes", async () => {
      await reset();
      await enqueue(sql, { program: programs.flaky, params: keyed(1000, { sleep: 0.005 }) });
      const worker = spawnWorker(db.url, [...QUICK, "--drain", "--concurrency", "4"]);
      await attemptsAtLeast(sql, 300);
      let terminated = await terminateWorkerBackends(sql);
      assert.ok(terminated >= 2);
      await attemptsAtLeast(sql, 1000);
      terminated += await terminateWorkerBackends(sql);
      const { code, stderr } = await worker.done;
      assert.equal(code, 0, stderr);
      assert.match(stderr, /lost (the|its) database connection/);
      await assertInvariants(sql);
      await assertEffectsExactlyOnce(sql);
      // a batch cut by its connection runs again, one task per statement, and
      // the worker does not rescue what it still holds: a termination costs
      // at most the attempt its connection was running alone
      const lost = await count(
        sql,
        "SELECT count(*) AS n FROM retask.task_attempts WHERE outcome = 'lost'",
      );
      assert.ok(lost <= terminated, `${lost} attempt(s) lost to ${terminated} terminations`);
    });
  } finally {
    await killWorkers();
    await db.drop();
  }
});
