// `retask status`: the task list, one task's attempts, filters, --json, colours, --watch.
import assert from "node:assert/strict";
import { client } from "../../lib/db/connect.ts";
import { enqueue, registerProgram } from "../../lib/mod.ts";
import { freshDatabase, runCli, TEST_FUNCTIONS, waitFor } from "../harness/mod.ts";

// Fails attempts 1 and 2 and succeeds on 3, whatever the random numbers: the
// attempt is read from the task row the worker is running (matched by `key`).
const FAIL_UNTIL_THIRD = `
  CREATE FUNCTION fail_until_third(params jsonb) RETURNS text LANGUAGE plpgsql AS $$
  DECLARE n integer;
  BEGIN
    SELECT attempt_count INTO n FROM tasks
    WHERE status = 'running' AND tasks.params ->> 'key' = $1 ->> 'key';
    IF n < 3 THEN RAISE EXCEPTION 'attempt % failed on purpose', n; END IF;
    RETURN 'third time lucky';
  END $$;
`;

const TIME = String.raw`\d{4}-\d\d-\d\d \d\d:\d\d:\d\d`;

Deno.test("retask status", async (t) => {
  const db = await freshDatabase("cli_status", { install: true });
  const { sql } = db;
  await sql.unsafe(TEST_FUNCTIONS + FAIL_UNTIL_THIRD);
  const ids: Record<string, number> = {};
  for (
    const [name, func] of [["ok", "always_ok"], ["third", "fail_until_third"], [
      "fail",
      "always_fail",
    ]]
  ) {
    await registerProgram(sql, name, func);
    [ids[name]] = await enqueue(sql, { program: name, params: [{ key: name }] });
  }
  [ids.later] = await enqueue(sql, { program: "ok", runAfter: new Date(Date.now() + 3600e3) });

  // The seed's in-database worker runs them; stopped once nothing runnable is left.
  const worker = client(db.url, { max: 1 });
  const [{ pid }] = await worker`SELECT pg_backend_pid() AS pid`;
  const working = worker`CALL process_tasks('10 milliseconds')`.catch(() => {});
  await waitFor(async () => {
    const [{ n }] = await sql`SELECT count(*)::int AS n FROM tasks
      WHERE status = 'running' OR (status = 'scheduled' AND run_after <= now())`;
    return n === 0;
  }, "the worker to run every due task");
  await sql`SELECT pg_terminate_backend(${pid}::int)`;
  await working;
  await worker.end({ timeout: 0 });

  try {
    await t.step("the list: newest first, attempt n of m, result line, counts", async () => {
      const run = await runCli(["status"], db.url);
      assert.equal(run.code, 0, run.stderr);
      const lines = run.stdout.trimEnd().split("\n");
      assert.match(lines[0], /^id {2}program {2}status +attempt {2}started +duration {2}result$/);
      const ended = (
        id: number,
        program: string,
        status: string,
        attempt: string,
        result: string,
      ) => new RegExp(`^ *${id}  ${program} +${status} +${attempt} +${TIME} +\\S+ +${result}$`);
      assert.match(
        lines[1],
        new RegExp(`^ *${ids.later}  ok +scheduled +0 of 3 +\\(waits until ${TIME}\\)$`),
      );
      assert.match(lines[2], ended(ids.fail, "fail", "error", "3 of 3", "failed on purpose"));
      assert.match(lines[3], ended(ids.third, "third", "finished", "3 of 3", "third time lucky"));
      assert.match(lines[4], ended(ids.ok, "ok", "finished", "1 of 3", "ok"));
      assert.equal(lines[5], "");
      assert.equal(lines[6], "scheduled 1  running 0  finished 2  error 1  cancelled 0");
      assert.ok(!run.stdout.includes("\x1b["), "no colours when piped");
    });

    await t.step("filters and --limit", async () => {
      const errors = await runCli(["status", "--status", "error"], db.url);
      // the task, a blank line, the counts, and which database this is
      const errorLines = errors.stdout.trimEnd().split("\n");
      assert.equal(errorLines.length, 5);
      assert.match(errorLines[4], /^database: 127\.0\.0\.1:\d+\/retask_test_/);
      assert.match(errors.stdout, new RegExp(`^ *${ids.fail}  fail +error`, "m"));
      const ok = await runCli(["status", "--program", "ok", "--limit", "1"], db.url);
      const lines = ok.stdout.trimEnd().split("\n");
      assert.match(lines[1], new RegExp(`^ *${ids.later}  ok `));
      assert.equal(
        lines[3],
        "scheduled 1  running 0  finished 1  error 0  cancelled 0  (showing the newest 1 of 2)",
      );
      const none = await runCli(["status", "--status", "running"], db.url);
      assert.match(none.stdout, /^no tasks match\n/);
    });

    await t.step("--json: {tasks, counts, matching, paused_programs, schedules}", async () => {
      const run = await runCli(["status", "--json", "--limit", "2"], db.url);
      const out = JSON.parse(run.stdout);
      assert.deepEqual(Object.keys(out), [
        "tasks",
        "counts",
        "matching",
        "paused_programs",
        "schedules",
      ]);
      assert.deepEqual(out.paused_programs, []);
      assert.deepEqual(out.schedules, []);
      assert.deepEqual(out.counts, {
        scheduled: 1,
        running: 0,
        finished: 2,
        error: 1,
        cancelled: 0,
        total: 4,
      });
      assert.equal(out.matching, 4);
      assert.equal(out.tasks.length, 2);
      assert.deepEqual(Object.keys(out.tasks[1]), [
        "task_id",
        "program_id",
        "program",
        "status",
        "attempt",
        "max_attempts",
        "params",
        "created",
        "run_after",
        "started",
        "finished",
        "duration_ms",
        "result_summary",
        "host",
        "port",
        "worker",
        "priority",
        "key",
      ]);
      assert.equal(out.tasks[1].task_id, ids.fail);
      assert.equal(out.tasks[1].attempt, 3);
      assert.equal(out.tasks[1].result_summary, "failed on purpose");
      assert.equal(typeof out.tasks[1].duration_ms, "number");
    });

    await t.step("one task that needed three attempts shows all three", async () => {
      const run = await runCli(["status", String(ids.third)], db.url);
      assert.equal(run.code, 0, run.stderr);
      const text = run.stdout;
      assert.match(text, /^status +finished, attempt 3 of 3$/m);
      assert.match(
        text,
        /^result\n {2}attempt 3 of 3\n {2}fail_until_third\n {2}-+\n {2}third time lucky/m,
      );
      assert.match(text, /^attempts \(3\)$/m);
      assert.match(text, /^ {2}1\. error .*\n {5}attempt 1 failed on purpose\n/m);
      assert.match(text, /^ {2}2\. error .*\n {5}attempt 2 failed on purpose\n/m);
      assert.match(text, /^ {2}3\. finished /m);
      const json = JSON.parse(
        (await runCli(["status", String(ids.third), "--json"], db.url)).stdout,
      );
      assert.deepEqual(Object.keys(json), ["task", "attempts"]);
      assert.deepEqual(
        json.attempts.map((
          a: { attempt: number; outcome: string; error: string | null },
        ) => [a.attempt, a.outcome, a.error]),
        [[1, "error", "attempt 1 failed on purpose"], [2, "error", "attempt 2 failed on purpose"], [
          3,
          "finished",
          null,
        ]],
      );
      assert.deepEqual(Object.keys(json.attempts[0]), [
        "attempt",
        "outcome",
        "started",
        "finished",
        "duration_ms",
        "error",
        "context",
        "pid",
        "worker",
      ]);
    });

    await t.step("bad input exits 2 with one line", async () => {
      const before = await sql`SELECT task_id, status, attempt_count FROM tasks ORDER BY 1`;
      const cases: [string[], RegExp][] = [
        [["status", "999999"], /^retask: task 999999 does not exist/],
        [["status", "abc"], /^retask: task id must be a positive whole number, got "abc"/],
        [["status", "0"], /^retask: task id must be/],
        [
          ["status", "--status", "done"],
          /^retask: unknown status "done"; use one of scheduled, running, finished, error, cancelled$/,
        ],
        [["status", "--program", "nope"], /^retask: unknown program "nope"; registered: ok/],
        [["status", "--limit", "0"], /^retask: --limit must be a positive whole number/],
        [["status", String(ids.ok), "--status", "error"], /^retask: status <task_id> takes no/],
      ];
      for (const [args, message] of cases) {
        const run = await runCli(args, db.url);
        assert.equal(run.code, 2, `${args.join(" ")}: ${run.stderr}`);
        assert.equal(run.stderr.trimEnd().split("\n").length, 1, run.stderr);
        assert.match(run.stderr.trimEnd(), message);
      }
      assert.deepEqual(
        await sql`SELECT task_id, status, attempt_count FROM tasks ORDER BY 1`,
        before,
      );
    });

    await t.step({
      name: "colours on a terminal, none with NO_COLOR",
      // util-linux `script` gives the child a terminal
      ignore: Deno.build.os !== "linux",
      fn: async () => {
        const onTerminal = async (noColor: boolean) => {
          const cmd = [Deno.execPath(), "run", "--quiet", "--allow-all", "main.ts", "status"];
          const env: Record<string, string> = {
            PATH: Deno.env.get("PATH") ?? "",
            DATABASE_URL: db.url,
          };
          if (noColor) env.NO_COLOR = "1";
          const out = await new Deno.Command("script", {
            args: ["-qec", cmd.join(" "), "/dev/null"],
            cwd: new URL("../..", import.meta.url).pathname,
            env,
            clearEnv: true,
            stdin: "null",
          }).output();
          return new TextDecoder().decode(out.stdout);
        };
        assert.ok((await onTerminal(false)).includes("\x1b[32mfinished\x1b[39m"));
        assert.ok(!(await onTerminal(true)).includes("\x1b[3"));
      },
    });

    await t.step("--watch redraws until SIGINT, then exits 0", async () => {
      const child = new Deno.Command(Deno.execPath(), {
        args: ["run", "--quiet", "--allow-all", "main.ts", "status", "--watch"],
        cwd: new URL("../..", import.meta.url).pathname,
        env: { DATABASE_URL: db.url, NO_COLOR: "1" },
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
      let seen = "";
      await waitFor(async () => {
        const { value } = await reader.read();
        seen += value ?? "";
        return seen.includes("error 1");
      }, "the first frame");
      child.kill("SIGINT");
      const status = await child.status;
      reader.releaseLock();
      await child.stdout.cancel().catch(() => {});
      await child.stderr.cancel();
      assert.equal(status.code, 0);
      assert.match(seen, /^id {2}program {2}status/);
    });
  } finally {
    await db.drop();
  }
});
