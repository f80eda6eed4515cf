// `status` fetches only what it shows (issue 10, item 9, its status part): the list reads a
// summary of each result computed in SQL, never the whole result, and `status <id>` prints at
// most DETAIL_RESULT_CHARS of it with a note. Before, four tasks with 150 MB results made
// `status` use 5.6 GB and `status --json` die with "Invalid string length".
import assert from "node:assert/strict";
import { enqueue, listTasks, registerProgram } from "../../lib/mod.ts";
import { DETAIL_RESULT_CHARS } from "../../commands/status.ts";
import { freshDatabase, runCli, runWork } from "../harness/mod.ts";

const FUNCTIONS = `
  CREATE FUNCTION huge_result(params jsonb) RETURNS text LANGUAGE sql AS $$
    SELECT repeat('x', 5000000)
  $$;
  CREATE FUNCTION huge_error(params jsonb) RETURNS text LANGUAGE plpgsql AS $$
  BEGIN RAISE EXCEPTION '%', repeat('y', 5000000); END $$;
  CREATE FUNCTION small(params jsonb) RETURNS text LANGUAGE sql AS $$ SELECT 'fine' $$;
`;

Deno.test("status with huge results stays small", async (t) => {
  const db = await freshDatabase("security_output_status_size", { install: true });
  const { sql } = db;
  try {
    await sql.unsafe(FUNCTIONS);
    await registerProgram(sql, "huge_result", "huge_result");
    await registerProgram(sql, "huge_error", "huge_error", { maxAttempts: 1 });
    await registerProgram(sql, "small", "small");
    const [big] = await enqueue(sql, { program: "huge_result" });
    const [failed] = await enqueue(sql, { program: "huge_error" });
    const [fine] = await enqueue(sql, { program: "small" });
    const run = await runWork(db.url, ["--drain", "--quiet"]);
    assert.equal(run.code, 0, run.stderr);
    const [{ n }] = await sql`SELECT count(*)::int AS n FROM retask.tasks
      WHERE status IN ('finished', 'error') AND length(result) > 1000000`;
    assert.equal(n, 2, "both huge results are stored");

    await t.step("status --json gives a summary, not the result", async () => {
      const list = await runCli(["status", "--json"], db.url);
      assert.equal(list.code, 0, list.stderr);
      assert.ok(list.stdout.length < 10_000, `status --json printed ${list.stdout.length} chars`);
      const tasks: Record<string, unknown>[] = JSON.parse(list.stdout).tasks;
      const byId = new Map(tasks.map((task) => [task.task_id, task]));
      for (const task of tasks) {
        assert.ok(!("result" in task), "no whole result in the list");
        assert.equal(typeof task.result_summary, "string");
        assert.ok((task.result_summary as string).length <= 300);
      }
      assert.equal(byId.get(fine)!.result_summary, "fine");
      assert.equal(byId.get(failed)!.result_summary, `${"y".repeat(299)}…`);
      assert.notEqual(byId.get(big)!.result_summary, "");
    });

    await t.step("status (the table) is small too", async () => {
      const list = await runCli(["status"], db.url);
      assert.equal(list.code, 0, list.stderr);
      assert.ok(list.stdout.length < 10_000, `status printed ${list.stdout.length} chars`);
      assert.match(list.stdout, new RegExp(`^ *${failed}  huge_error .* y{299}…$`, "m"));
    });

    await t.step("status <id> prints the start of the result and says it was cut", async () => {
      const one = await runCli(["status", String(big)], db.url);
      assert.equal(one.code, 0, one.stderr);
      assert.ok(one.stdout.length < DETAIL_RESULT_CHARS + 5_000, `${one.stdout.length} chars`);
      assert.match(
        one.stdout,
        new RegExp(
          `^ {2}\\(cut: the first 65,536 of [0-9,]+ characters; ` +
            `retask status ${big} --json has all of it\\)$`,
          "m",
        ),
      );
      const whole = JSON.parse((await runCli(["status", String(big), "--json"], db.url)).stdout);
      assert.ok(whole.task.result.length > 1_000_000, "--json has the whole result");
      const small = await runCli(["status", String(fine)], db.url);
      assert.doesNotMatch(small.stdout, /\(cut:/);
    });
  } finally {
    await db.drop();
  }
});

Deno.test("the result summary: the first line worth showing, in SQL", async () => {
  const db = await freshDatabase("security_output_summary", { install: true });
  const { sql } = db;
  try {
    await sql`CREATE FUNCTION any_program(params jsonb) RETURNS text LANGUAGE sql AS $$
      SELECT 'x' $$`;
    const { programId } = await registerProgram(sql, "p", "any_program");
    const wide = 200_000;
    const cases: [string | null, string | null][] = [
      [null, null],
      ["", ""],
      ["attempt 1 of 3\nretask_lucky\n------------\nМне повезло \n", "Мне повезло"],
      ["attempt 1 of 3\n a  b\n-- --\n", "(no rows)"],
      ["attempt 3 of 3\ndivision by zero\nPL/pgSQL function", "division by zero"],
      ["plain text from an old row", "plain text from an old row"],
      ["attempt 1 of 1\n\n  \t spaced out \t\nnext", "spaced out"],
      // cut to 300 characters, the last one "…"
      [`attempt 1 of 1\n${"z".repeat(1000)}\nnext`, `${"z".repeat(299)}…`],
      // a line the summary reads only the start of ends in "…" however short that start is
      [`attempt 1 of 1\n${" ".repeat(65_518)}abcdefghijkl`, "abc…"],
      // a table wider than what the summary reads: its first row is out of reach
      [
        `attempt 1 of 1\n${" ".repeat(wide / 2)}big${" ".repeat(wide / 2)}\n` +
        `${"-".repeat(wide)}\n${"x".repeat(wide)}\n`,
        "(its first line is too long to show here)",
      ],
    ];
    for (const [result] of cases) {
      await sql`INSERT INTO retask.tasks (program_id, status, params, result)
                VALUES (${programId}::bigint, 'finished', '{}', ${result})`;
    }
    const { tasks } = await listTasks(sql, { limit: cases.length });
    assert.deepEqual(
      tasks.reverse().map((task) => task.resultSummary),
      cases.map(([, summary]) => summary),
    );
  } finally {
    await db.drop();
  }
});
