// A worker whose URL holds a password does not show it: not in its own lines,
// not in the errors of remote tasks whose server cannot be reached, not in
// what it records for them. (Issue "Safe to deploy", item 6.)
import assert from "node:assert/strict";
import { enqueue, registerProgram } from "../../lib/mod.ts";
import { freshDatabase, runCli, runWork, TEST_FUNCTIONS } from "../harness/mod.ts";

const SECRET = "S3cr3tPw";

Deno.test("work's lines and remote errors never show the password", async () => {
  const db = await freshDatabase("security_url_remote", { install: true });
  const { sql } = db;
  try {
    await sql.unsafe(TEST_FUNCTIONS);
    const { programId } = await registerProgram(sql, "ok", "always_ok");
    // the test server trusts local connections: the password is carried, never checked
    const url = new URL(db.url);
    url.password = SECRET;
    const closed = freePort();
    const tasks = await enqueue(sql, {
      program: programId,
      params: [{}, {}],
      host: "127.0.0.1",
      port: closed,
      maxAttempts: 1,
    });
    const byEnv = await runWork(url.toString(), ["--drain", "--poll-interval", "50"]);
    assert.equal(byEnv.code, 0, byEnv.stderr);
    const byFlag = await runCli(
      ["--database-url", url.toString(), "work", "--drain", "--json"],
      {},
    );
    assert.equal(byFlag.code, 0, byFlag.stderr);
    const status = await runCli(["status", "--json"], url.toString());
    assert.equal(status.code, 0, status.stderr);
    for (const run of [byEnv, byFlag, status]) {
      assert.ok(!run.stdout.includes(SECRET), run.stdout);
      assert.ok(!run.stderr.includes(SECRET), run.stderr);
    }
    const rows = await sql<{ status: string; text: string }[]>`
      SELECT status, t::text AS text FROM retask.tasks AS t WHERE task_id = ANY(${tasks})`;
    assert.equal(rows.length, 2);
    for (const row of rows) {
      assert.equal(row.status, "error", row.text);
      assert.ok(!row.text.includes(SECRET), row.text);
    }
  } finally {
    await db.drop();
  }
});

/** A local port nothing listens on: one the system just handed out and took back. */
function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}
