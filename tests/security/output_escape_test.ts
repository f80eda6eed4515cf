// Text from the database cannot write to the terminal: a program's name, its error message and
// context, params, results and worker names reach `work` and `status` with their control
// characters and bidi overrides shown as escapes (issue 10, item 10). --json stays JSON.
import assert from "node:assert/strict";
import { enqueue, registerProgram } from "../../lib/mod.ts";
import { freshDatabase, runCli, runWork, TEST_FUNCTIONS } from "../harness/mod.ts";

// sets the terminal's title, clears the screen, rings the bell, turns the text around
const TITLE = "\x1b]0;pwned\x07";
const CLEAR = "\x1b[2J";
const NAME = `evil${TITLE}name`;
const MESSAGE = `boom${CLEAR}\u202eright to left\x7f\x9b1m`;

const FUNCTIONS = `
  CREATE FUNCTION escape_fail(params jsonb) RETURNS text LANGUAGE plpgsql AS $$
  BEGIN RAISE EXCEPTION '%', params ->> 'message'; END $$;
  CREATE FUNCTION escape_ok(params jsonb) RETURNS TABLE (said text) LANGUAGE sql AS $$
    SELECT params ->> 'say' UNION ALL SELECT 'second' || chr(27) || '[1A row'
  $$;
`;

/** Characters no human output may carry raw: C0 but newline, DEL, C1, bidi controls. */
// deno-lint-ignore no-control-regex
const RAW = /[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;

function assertNoRaw(label: string, text: string) {
  const found = RAW.exec(text);
  assert.equal(found, null, `${label} prints a raw control character: ${JSON.stringify(found)}`);
}

Deno.test("work and status escape control characters from the database", async (t) => {
  const db = await freshDatabase("security_output_escape", { install: true });
  const { sql } = db;
  try {
    await sql.unsafe(TEST_FUNCTIONS + FUNCTIONS);
    await registerProgram(sql, NAME, "escape_fail", { maxAttempts: 1 });
    await registerProgram(sql, "says", "escape_ok");
    const [failing] = await enqueue(sql, { program: NAME, params: [{ message: MESSAGE }] });
    const [saying] = await enqueue(sql, { program: "says", params: [{ say: `hi${TITLE}` }] });

    await t.step("work prints the program's name and the error escaped", async () => {
      const run = await runWork(db.url, ["--drain"]);
      assert.equal(run.code, 0, run.stderr);
      assertNoRaw("work's stdout", run.stdout);
      assertNoRaw("work's stderr", run.stderr);
      assert.match(run.stdout, /task \d+ evil\\x1b\]0;pwned\\x07name attempt 1\/1 /);
      assert.ok(run.stdout.includes("boom\\x1b[2J\\u202eright to left\\x7f\\x9b1m"), run.stdout);
    });

    await t.step("the status list", async () => {
      const run = await runCli(["status"], db.url);
      assert.equal(run.code, 0, run.stderr);
      assertNoRaw("status", run.stdout + run.stderr);
      assert.match(run.stdout, new RegExp(`^ *${failing}  evil\\\\x1b\\]0;pwned\\\\x07name `, "m"));
      assert.ok(run.stdout.includes("boom\\x1b[2J\\u202eright"), run.stdout);
      assert.match(
        run.stdout,
        new RegExp(`^ *${saying}  says .* hi\\\\x1b\\]0;pwned\\\\x07$`, "m"),
      );
    });

    await t.step("one task: result lines kept, everything else escaped", async () => {
      const failed = await runCli(["status", String(failing)], db.url);
      assert.equal(failed.code, 0, failed.stderr);
      assertNoRaw("status <id>", failed.stdout + failed.stderr);
      assert.match(failed.stdout, /^program +evil\\x1b\]0;pwned\\x07name \(id \d+\)$/m);
      // params: JSON escapes ESC itself, not U+202E, DEL or C1
      assert.match(failed.stdout, /^params +\{"message": ?"boom\\u001b\[2J\\u202eright/m);
      assert.match(failed.stdout, /^ {5}boom\\x1b\[2J\\u202eright to left\\x7f\\x9b1m$/m);

      const said = await runCli(["status", String(saying)], db.url);
      assertNoRaw("status <id>", said.stdout + said.stderr);
      // the result table keeps its lines
      assert.match(
        said.stdout,
        /^result\n {2}attempt 1 of 3\n.*\n {2}-+\n {2}hi\\x1b\]0;pwned\\x07/m,
      );
      assert.match(said.stdout, /^ {2}second\\x1b\[1A row/m);
    });

    await t.step("--json stays JSON and holds the text as stored", async () => {
      const list = await runCli(["status", "--json"], db.url);
      // JSON escapes C0 controls (ESC, BEL); DEL, C1 and bidi controls it leaves as they are
      // deno-lint-ignore no-control-regex
      assert.doesNotMatch(list.stdout.trimEnd(), /[\x00-\x1f]/);
      const tasks = JSON.parse(list.stdout).tasks;
      assert.equal(tasks.find((x: { task_id: number }) => x.task_id === failing).program, NAME);
      const one = JSON.parse((await runCli(["status", String(failing), "--json"], db.url)).stdout);
      assert.equal(one.attempts[0].error, MESSAGE);
    });

    await t.step("a worker name from the database", async () => {
      await sql`UPDATE retask.tasks SET status = 'running', worker = ${`w${CLEAR}`},
                started = now(), attempt_count = 1 WHERE task_id = ${saying}::bigint`;
      const run = await runCli(["status", String(saying)], db.url);
      assertNoRaw("status <id>", run.stdout);
      assert.match(run.stdout, /so far on w\\x1b\[2J$/m);
    });
  } finally {
    await db.drop();
  }
});
