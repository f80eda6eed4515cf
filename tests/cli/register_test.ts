// `retask register`: create, update, --json, and bad input that changes nothing.
import assert from "node:assert/strict";
import { freshDatabase, runCli, TEST_FUNCTIONS } from "../harness/mod.ts";

Deno.test("retask register", async (t) => {
  const db = await freshDatabase("cli_register", { install: true });
  const { sql } = db;
  await sql.unsafe(TEST_FUNCTIONS);
  const programs = () =>
    sql`SELECT program_id, name, func, max_attempts, retry_delay::text, retry_backoff,
               retry_delay_max::text FROM programs ORDER BY program_id`;

  try {
    await t.step("a new name creates a program with the default policy", async () => {
      const run = await runCli(["register", "lucky", "retask.lucky"], db.url);
      assert.equal(run.code, 0, run.stderr);
      assert.equal(run.stderr, "");
      assert.match(
        run.stdout.trim(),
        /^registered program "lucky" \(id \d+\): retask\.lucky, 3 attempts at most, no retry delay$/,
      );
      assert.equal((await programs()).length, 1);
    });

    await t.step("the same name updates it; --json shape", async () => {
      const run = await runCli([
        "register",
        "lucky",
        "retask.lucky",
        "--max-attempts",
        "5",
        "--retry-delay",
        "2 seconds",
        "--retry-backoff",
        "exponential",
        "--retry-delay-max",
        "1 minute",
        "--json",
      ], db.url);
      assert.equal(run.code, 0, run.stderr);
      const [row] = await programs();
      assert.deepEqual(JSON.parse(run.stdout), {
        program_id: row.program_id,
        name: "lucky",
        func: "retask.lucky",
        max_attempts: 5,
        retry_delay: "00:00:02",
        retry_backoff: "exponential",
        retry_delay_max: "00:01:00",
        timeout_ms: null,
        priority: 0,
        paused: false,
        created: false,
      });
      assert.equal((await programs()).length, 1, "updated in place, not added");
      const plain = await runCli(["register", "lucky", "retask.lucky"], db.url);
      assert.match(
        plain.stdout,
        /^updated program "lucky" .*5 attempts at most, retry delay exponential from 2 seconds up to 1 minute$/m,
        "options not given keep their value",
      );
    });

    await t.step("bad input exits 2 with one line and changes nothing", async () => {
      const before = await programs();
      const cases: [string[], RegExp][] = [
        [
          ["register", "x", "no_such_function"],
          /function no_such_function\(jsonb\) does not exist/,
        ],
        [
          ["register", "x", "always_ok", "--max-attempts", "0"],
          /max attempts must be between 1 and 100, got 0/,
        ],
        [["register", "x", "always_ok", "--max-attempts", "three"], /--max-attempts/],
        [["register", "x", "always_ok", "--retry-backoff", "linear"], /fixed or exponential/],
        [
          ["register", "x", "always_ok", "--retry-delay", "soon"],
          /--retry-delay must be an interval such as '5 seconds' or '2 minutes', got "soon"/,
        ],
        [["register", "x", "always_ok", "--retry-delay", "-5 seconds"], /cannot be negative/],
        [["register", "", "always_ok"], /program name is empty/],
      ];
      for (const [args, message] of cases) {
        const run = await runCli(args, db.url);
        assert.equal(run.code, 2, `${args.join(" ")}: ${run.stderr}`);
        assert.equal(run.stdout, "");
        const lines = run.stderr.trimEnd().split("\n");
        assert.equal(lines.length, 1, run.stderr);
        assert.match(lines[0], /^retask: /);
        assert.match(lines[0], message);
      }
      const missing = await runCli(["register", "x"], db.url);
      assert.equal(missing.code, 2);
      assert.match(missing.stderr, /^retask: error: missing required argument 'function'/);
      assert.deepEqual(await programs(), before);
    });

    await t.step("a database without retask says to install it, exit 1", async () => {
      const bare = await freshDatabase("cli_register_bare");
      try {
        const run = await runCli(["register", "lucky", "retask.lucky"], bare.url);
        assert.equal(run.code, 1);
        assert.equal(
          run.stderr.trim(),
          `retask: retask is not installed in database ${bare.name} (schema retask); run retask install`,
        );
      } finally {
        await bare.drop();
      }
    });
  } finally {
    await db.drop();
  }
});
