// retask.lucky (sql/run.sql) and `retask demo`, end to end on a fresh database.
import assert from "node:assert/strict";
import { enqueue } from "../../lib/mod.ts";
import { freshDatabase, runCli } from "../harness/mod.ts";

// Calls retask.lucky n times, catching its errors: successes and the distinct SQLSTATEs raised.
const LUCKY_CALLS = `
  CREATE FUNCTION lucky_calls(params jsonb, n integer, OUT ok integer, OUT states text[])
  LANGUAGE plpgsql AS $$
  DECLARE s text;
  BEGIN
    ok := 0; states := '{}';
    FOR i IN 1 .. n LOOP
      BEGIN
        IF retask.lucky(params) = 'Мне повезло' THEN ok := ok + 1; END IF;
      EXCEPTION WHEN others THEN
        GET STACKED DIAGNOSTICS s := RETURNED_SQLSTATE;
        IF NOT s = ANY (states) THEN states := states || s; END IF;
      END;
    END LOOP;
  END $$;
`;

Deno.test("retask.lucky", async (t) => {
  const db = await freshDatabase("lucky", { install: true });
  const { sql } = db;
  await sql.unsafe(LUCKY_CALLS);
  const calls = async (params: unknown, n: number) => {
    const [row] = await sql<{ ok: number; states: string[] }[]>`
      SELECT ok, states FROM lucky_calls(${sql.json(params as Record<string, number>)}, ${n})`;
    return { ok: row.ok, states: [...row.states].sort() };
  };
  try {
    await t.step("probability 1 always succeeds, 0 always fails", async () => {
      assert.deepEqual(await calls({ probability: 1 }, 200), { ok: 200, states: [] });
      const never = await calls({ probability: 0 }, 200);
      assert.equal(never.ok, 0);
      // four different errors, each of 200 failures picking one at random
      assert.deepEqual(never.states, ["22012", "22P02", "55P03", "P0001"]);
    });

    await t.step("a probability outside 0..1 is an input error", async () => {
      await assert.rejects(sql`SELECT retask.lucky('{"probability": 2}')`, { code: "22023" });
    });

    await t.step("the default succeeds 30% of the time (±7 standard deviations)", async () => {
      const n = 2000;
      const { ok } = await calls({}, n);
      const sd = Math.sqrt(n * 0.3 * 0.7); // ≈ 20.5: the bounds are 457..743
      assert.ok(Math.abs(ok - n * 0.3) < 7 * sd, `${ok} successes in ${n}`);
    });
  } finally {
    await db.drop();
  }
});

/** The four distribution rows of the demo's text output: outcome → runs. */
function distribution(stdout: string): Map<string, number> {
  const rows = new Map<string, number>();
  for (const line of stdout.split("\n")) {
    const row = /^(finished on attempt [123]|failed after 3 attempts) +(\d+) /.exec(line);
    if (row) rows.set(row[1], Number(row[2]));
  }
  return rows;
}

Deno.test("retask demo", async (t) => {
  // not installed: the demo installs retask itself
  const db = await freshDatabase("demo");
  const { sql } = db;
  try {
    await t.step("bad flags exit 2 before touching the database", async () => {
      for (
        const flags of [["--runs", "0"], ["--runs", "-5"], ["--probability", "1.5"], [
          "--concurrency",
          "0",
        ]]
      ) {
        const run = await runCli(["demo", ...flags], db.url);
        assert.equal(run.code, 2, `${flags.join(" ")}: ${run.stderr}`);
        assert.equal(run.stderr.trimEnd().split("\n").length, 1);
        assert.match(run.stderr, new RegExp(`^retask: ${flags[0]} must be`));
      }
      const [{ installed }] =
        await sql`SELECT to_regclass('public.tasks') IS NOT NULL AS installed`;
      assert.equal(installed, false);
    });

    await t.step(
      "--runs 200: all four rows, adding up to 200, and two tasks' attempts",
      async () => {
        const run = await runCli(["demo", "--runs", "200"], db.url);
        assert.equal(run.code, 0, run.stderr);
        const rows = distribution(run.stdout);
        assert.deepEqual([...rows.keys()], [
          "finished on attempt 1",
          "finished on attempt 2",
          "finished on attempt 3",
          "failed after 3 attempts",
        ]);
        assert.equal([...rows.values()].reduce((a, b) => a + b), 200);
        assert.match(run.stdout, /^finished on attempt 1 +\d+ +\d+\.\d% +30\.0%$/m);
        assert.match(run.stdout, /^finished on attempt 2 +\d+ +\d+\.\d% +21\.0%$/m);
        assert.match(run.stdout, /^finished on attempt 3 +\d+ +\d+\.\d% +14\.7%$/m);
        assert.match(run.stdout, /^failed after 3 attempts +\d+ +\d+\.\d% +34\.3%$/m);
        assert.match(run.stdout, /^chi-square \d+\.\d\d with 3 degrees of freedom: p = /m);
        // with 200 runs, P(no task finished on attempt 2) = 0.79^200 ≈ 3e-21
        assert.match(run.stdout, /A task that needed two attempts:\n.*\$ retask status \d+\n/);
        assert.match(run.stdout, /^attempts \(2\)\n {2}1\. error .*\n/m);
        assert.match(run.stdout, /A task that needed three attempts:\n.*\$ retask status \d+\n/);
        assert.match(run.stdout, /^attempts \(3\)\n {2}1\. error /m);
        const [{ n }] = await sql`SELECT count(*)::int AS n FROM tasks
        JOIN programs USING (program_id) WHERE name = 'lucky' AND status IN ('finished', 'error')`;
        assert.equal(n, 200);
      },
    );

    await t.step("a second demo counts only its own runs; certain outcomes; --json", async () => {
      // a task due in an hour must neither hold the demo up nor be run by it
      const [later] = await enqueue(sql, {
        program: "lucky",
        runAfter: new Date(Date.now() + 3600e3),
      });
      const always = await runCli(["demo", "--runs", "20", "--probability", "1", "--json"], db.url);
      assert.equal(always.code, 0, always.stderr);
      const result = JSON.parse(always.stdout);
      assert.deepEqual(Object.keys(result), [
        "program_id",
        "runs",
        "probability",
        "concurrency",
        "max_attempts",
        "first_task_id",
        "last_task_id",
        "elapsed_ms",
        "rows",
        "chi_square",
        "degrees_of_freedom",
        "p_value",
        "approximate",
        "examples",
      ]);
      assert.deepEqual(result.rows, [
        { outcome: "finished on attempt 1", attempt: 1, observed: 20, expected_share: 1 },
        { outcome: "finished on attempt 2", attempt: 2, observed: 0, expected_share: 0 },
        { outcome: "finished on attempt 3", attempt: 3, observed: 0, expected_share: 0 },
        { outcome: "failed after 3 attempts", attempt: null, observed: 0, expected_share: 0 },
      ]);
      assert.equal(result.p_value, null);
      assert.deepEqual(result.examples, { two_attempts: null, three_attempts: null });

      const never = await runCli(["demo", "--runs", "20", "--probability", "0"], db.url);
      assert.equal(never.code, 0, never.stderr);
      assert.deepEqual([...distribution(never.stdout).values()], [0, 0, 0, 20]);
      assert.match(
        never.stdout,
        /A task that needed two attempts:\n {2}none in this run \(impossible/,
      );
      assert.match(never.stdout, /^status +error, attempt 3 of 3$/m);
      const [row] = await sql`SELECT status, attempt_count FROM tasks WHERE task_id = ${later}`;
      assert.deepEqual(row, { status: "scheduled", attempt_count: 0 });
    });
  } finally {
    await db.drop();
  }
});

Deno.test("retask demo leaves a user's own program called lucky alone", async () => {
  const db = await freshDatabase("demo_foreign", { install: true });
  try {
    await db.sql.unsafe(`CREATE FUNCTION charge(params jsonb) RETURNS text
                         LANGUAGE sql AS $$ SELECT 'charged' $$`);
    await db.sql`SELECT register_program('lucky', 'charge')`;
    const before = [...await db.sql`SELECT * FROM programs`, ...await db.sql`SELECT * FROM tasks`];
    const run = await runCli(["demo", "--runs", "5"], db.url);
    assert.equal(run.code, 2);
    assert.equal(
      run.stderr.trim(),
      'retask: program "lucky" already runs public.charge; run the demo on a database of its own',
    );
    assert.deepEqual(
      [...await db.sql`SELECT * FROM programs`, ...await db.sql`SELECT * FROM tasks`],
      before,
    );
  } finally {
    await db.drop();
  }
});
