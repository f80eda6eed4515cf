// A queue cannot send the worker where it likes: a remote task runs only on a
// server the worker was told of, and fails without a connection otherwise.
// (Issue "Safe to deploy", item 2.)
import assert from "node:assert/strict";
import { enqueue, registerProgram } from "../../lib/mod.ts";
import { freshDatabase, runWork, TEST_FUNCTIONS } from "../harness/mod.ts";

Deno.test("a task naming a server the worker does not allow fails, and nothing connects there", async () => {
  const db = await freshDatabase("security_remote", { install: true });
  const { sql } = db;
  // a listener standing in for whatever server a task might name
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  let connections = 0;
  const accepting = (async () => {
    for await (const conn of listener) {
      connections++;
      conn.close();
    }
  })();
  try {
    await sql.unsafe(TEST_FUNCTIONS);
    const ok = (await registerProgram(sql, "ok", "always_ok", { maxAttempts: 1 })).programId;
    const [here] = await enqueue(sql, { program: ok });
    const refused: number[] = [];
    // without --remote-host, and with one for another server only
    for (const extra of [[], ["--remote-host", "127.0.0.1:1"]]) {
      refused.push(...await enqueue(sql, { program: ok, host: "127.0.0.1", port }));
      const run = await runWork(db.url, ["--drain", "--poll-interval", "50", ...extra]);
      assert.equal(run.code, 0, run.stderr);
    }
    const rows = await sql<{ task_id: number; status: string; result: string }[]>`
      SELECT task_id, status, result FROM retask.tasks ORDER BY task_id`;
    assert.deepEqual(rows.map((r) => [r.task_id, r.status]), [
      [here, "finished"],
      [refused[0], "error"],
      [refused[1], "error"],
    ]);
    for (const row of rows.slice(1)) {
      assert.equal(
        row.result,
        `attempt 1 of 1\n127.0.0.1:${port} is not a server this worker may reach; ` +
          `allow it with retask work --remote-host 127.0.0.1:${port}`,
      );
    }
    assert.equal(connections, 0, "no connection attempt");
  } finally {
    listener.close();
    await accepting.catch(() => {});
    await db.drop();
  }
});
