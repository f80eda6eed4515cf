// Remote execution: tasks with host/port run on that server (here a second
// database on the same server, reached through host and port), and their
// results are recorded on the main one.
import assert from "node:assert/strict";
import type { Sql } from "../../lib/db/connect.ts";
import { enqueue, registerProgram } from "../../lib/mod.ts";
import { freshDatabase, killWorkers, runWork, spawnWorker, waitFor } from "../harness/mod.ts";
import { assertInvariants, installWorkerPrograms } from "./helpers.ts";

const PROGRAM = `
  CREATE TABLE notes (note text, written_in text DEFAULT current_database());
  CREATE FUNCTION remote_note(params jsonb) RETURNS TABLE (note text, db text) LANGUAGE plpgsql AS $$
  BEGIN
    INSERT INTO notes (note) VALUES (params ->> 'note');
    IF (params ->> 'fail')::boolean THEN RAISE EXCEPTION 'failed on %', current_database(); END IF;
    RETURN QUERY SELECT params ->> 'note', current_database()::text;
  END $$;
`;

async function setUp(sql: Sql): Promise<number> {
  await sql.unsafe(PROGRAM);
  return (await registerProgram(sql, "remote note", "remote_note")).programId;
}

Deno.test("remote tasks run on their host and are recorded here", async () => {
  const main = await freshDatabase("worker_remote_main", { install: true });
  const replica = await freshDatabase("worker_remote_replica", { install: true });
  try {
    const program = await setUp(main.sql);
    assert.equal(await setUp(replica.sql), program, "same program id on both, as on a replica");
    const { hostname: host, port } = new URL(main.url);
    const there = { host, port: port || "5432" };

    const remote = await enqueue(main.sql, {
      program,
      params: [{ note: "r1" }, { note: "r2" }],
      ...there,
    });
    const [failing] = await enqueue(main.sql, {
      program,
      params: [{ note: "bad", fail: true }],
      maxAttempts: 1,
      ...there,
    });
    const [unreachable] = await enqueue(main.sql, {
      program,
      params: [{ note: "nowhere" }],
      host: "127.0.0.1",
      port: 1,
      maxAttempts: 2,
    });
    const [local] = await enqueue(main.sql, { program, params: [{ note: "here" }] });

    const { code, stdout, stderr } = await runWork(main.url, [
      "--drain",
      "--poll-interval",
      "100",
      // the replica with the worker's own login (a password, on a server that asks)
      "--remote-host",
      replica.workerUrl,
      "--remote-host",
      "127.0.0.1:1",
    ]);
    assert.equal(code, 0, stderr);
    await assertInvariants(main.sql);

    const results = new Map(
      (await main.sql<{ task_id: number; status: string; result: string }[]>`
        SELECT task_id, status, result FROM tasks`).map((r) => [r.task_id, r]),
    );
    for (const id of remote) {
      assert.equal(results.get(id)?.status, "finished");
      assert.match(
        results.get(id)!.result,
        new RegExp(`^attempt 1 of 3\\n.*\\n.*\\nr\\d +${replica.name}`),
      );
    }
    assert.equal(results.get(failing)?.status, "error");
    assert.match(
      results.get(failing)!.result,
      new RegExp(`^attempt 1 of 1\\nfailed on ${replica.name}\\nPL/pgSQL function remote_note`),
    );
    assert.equal(results.get(unreachable)?.status, "error");
    assert.match(
      results.get(unreachable)!.result,
      /^attempt 2 of 2\ncannot reach 127\.0\.0\.1:1: /,
    );
    assert.match(
      stdout,
      new RegExp(`task ${unreachable} remote note attempt 1/2 \\d+ ms retry: cannot reach`),
    );
    assert.match(results.get(local)!.result, new RegExp(`here +${main.name}`));

    const notesThere = await replica.sql<{ note: string }[]>`SELECT note FROM notes ORDER BY note`;
    assert.deepEqual(notesThere.map((n) => n.note), ["r1", "r2"], "the failed one rolled back");
    const notesHere = await main.sql<{ note: string }[]>`SELECT note FROM notes`;
    assert.deepEqual(notesHere.map((n) => n.note), ["here"]);
    assert.equal((await replica.sql`SELECT 1 FROM tasks`).length, 0, "nothing queued there");
  } finally {
    await killWorkers();
    await main.drop();
    await replica.drop();
  }
});

Deno.test("kill -9 during a remote task: retried once the dead worker's run has stopped", async () => {
  const main = await freshDatabase("worker_remote_kill_main", { install: true });
  const replica = await freshDatabase("worker_remote_kill_replica", { install: true });
  try {
    // the flaky program counts clashes: two runs of one key at once
    const program = (await installWorkerPrograms(main.sql)).flaky;
    assert.equal((await installWorkerPrograms(replica.sql)).flaky, program);
    const { hostname: host, port } = new URL(main.url);
    const [id] = await enqueue(main.sql, {
      program,
      params: [{ key: "k", sleep: 3, fail: 0 }],
      host,
      port: port || "5432",
    });
    const args = [
      "--poll-interval",
      "100",
      "--rescue-interval",
      "200",
      "--remote-host",
      replica.workerUrl,
    ];
    const doomed = spawnWorker(main.url, args);
    await waitFor(async () => {
      const rows = await replica.sql`
        SELECT 1 FROM pg_stat_activity WHERE datname = current_database()
          AND state = 'active' AND query LIKE '%run_program%' AND pid <> pg_backend_pid()`;
      return rows.length > 0;
    }, "the task to run on the remote server");
    const rescuer = spawnWorker(main.url, [...args, "--drain"]);
    doomed.kill("SIGKILL");
    const [killed, drained] = await Promise.all([doomed.done, rescuer.done]);
    assert.equal(killed.code, 137);
    assert.equal(drained.code, 0, drained.stderr);
    const history = await main.sql<{ outcome: string }[]>`
      SELECT outcome FROM retask.task_attempts WHERE task_id = ${id} ORDER BY attempt`;
    assert.deepEqual(history.map((h) => h.outcome), ["lost", "finished"]);
    const [{ clashes }] = await replica.sql<{ clashes: number }[]>`
      SELECT CASE WHEN is_called THEN last_value ELSE 0 END::int AS clashes FROM clashes`;
    assert.equal(clashes, 0, "the retry never ran beside the killed worker's run");
  } finally {
    await killWorkers();
    await main.drop();
    await replica.drop();
  }
});
