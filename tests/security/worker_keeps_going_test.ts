// A worker keeps going through errors that are not about a task, and says only
// what happened. (Issue "Safe to deploy", items 13 and 16.)
import assert from "node:assert/strict";
import { enqueue, registerProgram } from "../../lib/mod.ts";
import { freshDatabase, runWork, spawnWorker, TEST_FUNCTIONS, waitFor } from "../harness/mod.ts";

Deno.test("a refused claim is waited out, not the end of the worker", async () => {
  const db = await freshDatabase("security_going", { install: true });
  const { sql } = db;
  try {
    await sql.unsafe(TEST_FUNCTIONS);
    const { programId } = await registerProgram(sql, "ok", "always_ok");
    await enqueue(sql, { program: programId, params: Array(5).fill({}) });
    // as during an install that replaces the functions a worker calls
    await sql`ALTER FUNCTION retask.take_tasks(integer, text, interval, boolean, bigint[], bigint[]) RENAME TO off`;
    const worker = spawnWorker(db.url, ["--drain", "--poll-interval", "50"]);
    await waitFor(() => /refused the worker's bookkeeping/.test(worker.stderr()), "the warning");
    await sql`ALTER FUNCTION retask.off(integer, text, interval, boolean, bigint[], bigint[]) RENAME TO take_tasks`;
    const { code, stderr } = await worker.done;
    assert.equal(code, 0, stderr);
    assert.equal(stderr.match(/refused the worker's bookkeeping/g)?.length, 1, "said once");
    assert.match(stderr, /the worker's bookkeeping works again/);
    const [{ finished }] = await sql<{ finished: number }[]>`
      SELECT count(*)::int AS finished FROM retask.tasks WHERE status = 'finished'`;
    assert.equal(finished, 5);
  } finally {
    await db.drop();
  }
});

Deno.test("a worker that cannot start says why, and not that a signal stopped it", async () => {
  const db = await freshDatabase("security_nostart");
  try {
    const run = await runWork(db.url, ["--drain"]);
    assert.equal(run.code, 1);
    assert.match(run.stderr, /retask is not installed in database/);
    assert.doesNotMatch(run.stderr, /stopped \(signal\)/);
  } finally {
    await db.drop();
  }
});
