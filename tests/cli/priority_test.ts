// `enqueue --priority` and `register --priority`: a task gets its own priority
// or its program's, workers take higher first, and a bad one changes nothing.
import assert from "node:assert/strict";
import { freshDatabase, runCli, takeTasks } from "../harness/mod.ts";

Deno.test("retask enqueue --priority", async () => {
  const db = await freshDatabase("cli_priority", { install: true });
  const { sql } = db;
  try {
    await sql`CREATE FUNCTION always_ok(params jsonb) RETURNS text LANGUAGE sql AS $$ SELECT 'ok' $$`;
    const registered = await runCli(["register", "ok", "always_ok", "--priority", "5"], db.url);
    assert.equal(registered.code, 0, registered.stderr);
    const queue = async (...args: string[]) => {
      const run = await runCli(["enqueue", "ok", "--json", ...args], db.url);
      assert.equal(run.code, 0, run.stderr);
      return JSON.parse(run.stdout).task_ids[0] as number;
    };
    const low = await queue("--priority", "-3");
    const programs = await queue();
    const urgent = await queue("--priority", "9");
    const later = await queue();

    for (const bad of ["abc", "1.5", "2000000"]) {
      const run = await runCli(["enqueue", "ok", "--priority", bad], db.url);
      assert.equal(run.code, 2, `--priority ${bad}: ${run.stderr}`);
      assert.match(run.stderr, /^retask: .*--priority/);
      assert.equal(run.stderr.trim().split("\n").length, 1);
    }
    const rows = await sql<{ task_id: number; priority: number }[]>`
      SELECT task_id, priority FROM retask.tasks ORDER BY task_id`;
    assert.deepEqual(rows.map((r) => [r.task_id, r.priority]), [
      [low, -3],
      [programs, 5],
      [urgent, 9],
      [later, 5],
    ]);
    // one take at a time: higher first, then the longest runnable
    const taken = [];
    for (let i = 0; i < 5; i++) taken.push(...(await takeTasks(sql, 1)).map((t) => t.task_id));
    assert.deepEqual(taken, [urgent, programs, later, low]);
  } finally {
    await db.drop();
  }
});
