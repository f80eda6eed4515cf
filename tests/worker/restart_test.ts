// PostgreSQL restarts under a running worker: it reconnects with backoff and
// finishes the queue. Uses a private embedded server (the shared one must not
// be restarted), so this test needs no DATABASE_URL.
import assert from "node:assert/strict";
import { client } from "../../lib/db/connect.ts";
import { startEmbedded, stopEmbedded } from "../../lib/db/embedded.ts";
import { enqueue } from "../../lib/mod.ts";
import { install } from "../../lib/db/schema.ts";
import { killWorkers, spawnWorker, waitFor } from "../harness/mod.ts";
import {
  assertEffectsExactlyOnce,
  assertInvariants,
  count,
  installWorkerPrograms,
  keyed,
} from "./helpers.ts";

Deno.test("a PostgreSQL restart: the worker reconnects and finishes the queue", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "retask-restart-" });
  // as root the server runs as 'postgres', which must be able to traverse the directory
  await Deno.chmod(dataDir, 0o755);
  try {
    const server = await startEmbedded({ dataDir });
    let sql = client(server.url, { max: 2 });
    await install(sql);
    const programs = await installWorkerPrograms(sql);
    await enqueue(sql, { program: programs.flaky, params: keyed(500, { sleep: 0.005 }) });
    const worker = spawnWorker(server.url, [
      "--drain",
      "--quiet",
      "--concurrency",
      "4",
      "--poll-interval",
      "100",
      "--rescue-interval",
      "300",
    ]);
    await waitFor(
      async () => (await count(sql, "SELECT count(*) AS n FROM retask.task_attempts")) >= 200,
      "some progress",
      60_000,
    );
    await sql.end({ timeout: 1 });
    assert.ok(await stopEmbedded(dataDir), "the server stopped");
    const again = await startEmbedded({ dataDir });
    assert.equal(again.url, server.url, "same port after the restart");
    sql = client(again.url, { max: 2 });
    try {
      const { code, stderr } = await worker.done;
      assert.equal(code, 0, stderr);
      assert.match(stderr, /database connection/);
      await assertInvariants(sql);
      await assertEffectsExactlyOnce(sql);
    } finally {
      await sql.end({ timeout: 1 });
    }
  } finally {
    await killWorkers();
    await stopEmbedded(dataDir);
    await Deno.remove(dataDir, { recursive: true });
  }
});
