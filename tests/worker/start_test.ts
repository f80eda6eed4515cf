// A worker that cannot open its connections fails at the start, touching no
// task. Also runs retask as an ordinary role, not a superuser.
import assert from "node:assert/strict";
import { enqueue, registerProgram } from "../../lib/mod.ts";
import { freshDatabase, runCli } from "../harness/mod.ts";

Deno.test("work exits 1 when the server refuses its lane connections, taking nothing", async () => {
  const db = await freshDatabase("worker_start", { install: true });
  const role = `${db.name}_user`;
  try {
    const { programId } = await registerProgram(db.sql, "lucky", "retask.lucky");
    await enqueue(db.sql, { program: programId, params: Array(20).fill({}) });
    // superusers are exempt from connection limits: an ordinary role allowed 4
    await db.sql.unsafe(`
      CREATE ROLE ${role} LOGIN CONNECTION LIMIT 4;
      GRANT USAGE ON SCHEMA retask TO ${role};
      GRANT ALL ON ALL TABLES IN SCHEMA retask TO ${role};
      GRANT ALL ON ALL SEQUENCES IN SCHEMA retask TO ${role};
      GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA retask TO ${role};`);
    const url = new URL(db.url);
    url.username = role;
    const run = await runCli(["work", "--drain", "--concurrency", "10", "--quiet"], url.toString());
    assert.equal(run.code, 1, run.stderr);
    assert.match(
      run.stderr,
      /retask: could not open 10 lane connection\(s\): .*too many connections.*; lower --concurrency/,
    );
    const [row] = await db.sql<{ scheduled: number; attempts: number }[]>`
      SELECT count(*) FILTER (WHERE status = 'scheduled')::int AS scheduled,
             sum(attempt_count)::int AS attempts FROM tasks`;
    assert.deepEqual(row, { scheduled: 20, attempts: 0 });

    // within its limit the same role drains the queue
    const enough = await runCli(
      ["work", "--drain", "--concurrency", "1", "--quiet"],
      url.toString(),
    );
    assert.equal(enough.code, 0, enough.stderr);
    const [left] = await db.sql<{ pending: number }[]>`
      SELECT count(*)::int AS pending FROM tasks WHERE status IN ('scheduled', 'running')`;
    assert.equal(left.pending, 0);
  } finally {
    await db.drop();
    await db.admin(`DROP ROLE IF EXISTS ${role}`);
  }
});
