// `retask enqueue`: ids printed, options stored, and bad input that inserts nothing.
import assert from "node:assert/strict";
import { registerProgram } from "../../lib/mod.ts";
import { freshDatabase, runCli } from "../harness/mod.ts";

Deno.test("retask enqueue", async (t) => {
  const db = await freshDatabase("cli_enqueue", { install: true });
  const { sql } = db;
  const lucky = (await registerProgram(sql, "lucky", "retask.lucky")).programId;
  const task = async (id: number) => {
    const [row] = await sql`
      SELECT program_id, status, params, max_attempts, host, port, run_after > now() AS later
      FROM tasks WHERE task_id = ${id}`;
    return row;
  };
  const taskCount = async () => (await sql`SELECT count(*)::int AS n FROM tasks`)[0].n;

  try {
    await t.step("by name: prints the task id; the task is scheduled with {}", async () => {
      const run = await runCli(["enqueue", "lucky"], db.url);
      assert.equal(run.code, 0, run.stderr);
      const match = /^queued task (\d+) of program "lucky" \(id (\d+)\)\n$/.exec(run.stdout);
      assert.ok(match, run.stdout);
      assert.equal(Number(match[2]), lucky);
      assert.deepEqual(await task(Number(match[1])), {
        program_id: lucky,
        status: "scheduled",
        params: {},
        max_attempts: 3,
        host: null,
        port: null,
        later: false,
      });
    });

    await t.step("--count, --params, --json; by id", async () => {
      const run = await runCli(
        ["enqueue", String(lucky), "--params", '{"probability": 0.5}', "--count", "3", "--json"],
        db.url,
      );
      assert.equal(run.code, 0, run.stderr);
      const out = JSON.parse(run.stdout);
      assert.deepEqual(Object.keys(out), ["program_id", "task_ids", "existing"]);
      assert.equal(out.existing, false);
      assert.equal(out.program_id, lucky);
      assert.equal(out.task_ids.length, 3);
      for (const id of out.task_ids) {
        assert.deepEqual((await task(id)).params, { probability: 0.5 });
      }
      const text = await runCli(["enqueue", "lucky", "--count", "2"], db.url);
      assert.match(text.stdout, /^queued 2 tasks of program "lucky" \(id \d+\): \d+-\d+\n$/);
    });

    await t.step("--max-attempts, --host/--port, --run-after, --quiet", async () => {
      const run = await runCli([
        "enqueue",
        "lucky",
        "--max-attempts",
        "5",
        "--host",
        "replica.example",
        "--port",
        "5433",
        "--run-after",
        "1h",
        "-q",
      ], db.url);
      assert.equal(run.code, 0, run.stderr);
      assert.match(run.stdout, /^\d+\n$/);
      const row = await task(Number(run.stdout));
      assert.equal(row.max_attempts, 5);
      assert.equal(row.host, "replica.example");
      assert.equal(row.port, "5433");
      assert.equal(row.later, true);
    });

    await t.step("bad input exits 2 with one line and inserts nothing", async () => {
      const before = await taskCount();
      const cases: [string[], RegExp][] = [
        [
          ["--params", '{"probability": 0.5'],
          /--params is not valid JSON: .* at position 19 \(line 1 column 20\)/,
        ],
        [["--params", "{probability: 1}"], /not valid JSON: .* at position 1 /],
        [["--params", "[1, 2]"], /--params must be a JSON object .* got an array/],
        [["--params", '"text"'], /must be a JSON object .* got string/],
        [["--params", "42"], /must be a JSON object .* got number/],
        [["--count", "-1"], /--count must be .* got "-1"/],
        [["--count", "0"], /--count must be/],
        [["--count", "2.5"], /--count must be/],
        // what a task may be is checked by SQL (check_host_port, check_retry_policy)
        [["--port", "5432"], /host and port go together: give both or neither/],
        [["--host", "replica.example"], /host and port go together: give both or neither/],
        [
          ["--host", "replica.example", "--port", "0"],
          /port must be a number from 1 to 65535, got "0"/,
        ],
        [["--max-attempts", "101"], /max attempts must be between 1 and 100, got 101/],
        [["--run-after", "whenever"], /--run-after must be an ISO date-time/],
      ];
      for (const [flags, message] of cases) {
        const run = await runCli(["enqueue", "lucky", ...flags], db.url);
        assert.equal(run.code, 2, `${flags.join(" ")}: ${run.stderr}`);
        assert.equal(run.stdout, "");
        const lines = run.stderr.trimEnd().split("\n");
        assert.equal(lines.length, 1, run.stderr);
        assert.match(lines[0], /^retask: /);
        assert.match(lines[0], message);
      }
      for (const program of ["nope", "999999"]) {
        const run = await runCli(["enqueue", program], db.url);
        assert.equal(run.code, 2);
        assert.equal(
          run.stderr.trim(),
          `retask: unknown program "${program}"; registered: lucky (${lucky})`,
        );
      }
      assert.equal(await taskCount(), before);
    });
  } finally {
    await db.drop();
  }
});
