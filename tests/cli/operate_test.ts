// `retask retry`, `cancel`, `delete` and `prune` as a user runs them: what they
// print, what they change, and bad input that exits 2 and changes nothing.
import assert from "node:assert/strict";
import { enqueue, registerProgram } from "../../lib/mod.ts";
import { freshDatabase, runCli, takeTasks, TEST_FUNCTIONS } from "../harness/mod.ts";

Deno.test("retask retry, cancel, delete and prune", async (t) => {
  const db = await freshDatabase("cli_operate", { install: true });
  const { sql } = db;
  await sql.unsafe(TEST_FUNCTIONS);
  const ok = (await registerProgram(sql, "ok", "always_ok")).programId;
  const fail = (await registerProgram(sql, "fail", "always_fail")).programId;
  const run = (args: string[]) => runCli(args, db.url);
  const statuses = async () =>
    Object.fromEntries(
      (await sql<{ task_id: number; status: string }[]>`
        SELECT task_id, status FROM retask.tasks ORDER BY task_id`).map((
        r,
      ) => [r.task_id, r.status]),
    );
  // tasks that ended in error after their one attempt
  const failed = async (n: number) => {
    const ids = await enqueue(sql, { program: fail, params: Array(n).fill({}), maxAttempts: 1 });
    await sql`UPDATE retask.tasks SET status = 'error', attempt_count = 1, finished = now(),
              result = 'attempt 1 of 1' || E'\n' || 'failed on purpose'
              WHERE task_id = ANY (${ids}::bigint[])`;
    return ids;
  };

  try {
    await t.step("retry by id and range: one line per outcome", async () => {
      const [a, b, c] = await failed(3);
      const [fine] = await enqueue(sql, { program: ok });
      const out = await run(["retry", `${a}-${b}`, String(c), String(fine)]);
      assert.equal(out.code, 0, out.stderr);
      assert.equal(
        out.stdout,
        `retried 3 tasks: ${a}-${c}\n` +
          `skipped task ${fine}: it is scheduled; only error or cancelled tasks are retried\n`,
      );
      const [row] = await sql`SELECT max_attempts, result FROM retask.tasks WHERE task_id = ${a}`;
      assert.equal(row.max_attempts, 2);
      assert.match(
        row.result,
        /^attempt 1 of 2\nretried by \w+ after attempt 1 \(it had ended error\)$/,
      );
    });

    await t.step("retry --program --status --json, --max-attempts", async () => {
      await sql`DELETE FROM retask.tasks`;
      const ids = await failed(2);
      const out = await run([
        "retry",
        "--program",
        "fail",
        "--status",
        "error",
        "--max-attempts",
        "5",
        "--json",
      ]);
      assert.equal(out.code, 0, out.stderr);
      assert.deepEqual(JSON.parse(out.stdout), { retried: ids, skipped: [] });
      const rows = await sql`SELECT max_attempts FROM retask.tasks ORDER BY task_id`;
      assert.deepEqual(rows.map((r) => r.max_attempts), [6, 6]);
      const none = await run(["retry", "--status", "cancelled"]);
      assert.equal(none.stdout, "no error or cancelled task matches\n");
    });

    await t.step("cancel: scheduled ones end, running ones are asked; --json", async () => {
      await sql`DELETE FROM retask.tasks`;
      const [running, waiting, other] = await enqueue(sql, { program: ok, params: [{}, {}, {}] });
      await takeTasks(sql, 1);
      const out = await run(["cancel", `${running},${waiting}`]);
      assert.equal(out.code, 0, out.stderr);
      assert.equal(
        out.stdout,
        `cancelled task ${waiting}\nasked running task ${running} to stop\n`,
      );
      const again = await run(["cancel", String(waiting), String(other), "--json"]);
      assert.deepEqual(JSON.parse(again.stdout), {
        cancelled: [other],
        requested: [],
        skipped: [{
          task_id: waiting,
          status: "cancelled",
          reason: "it is cancelled; only scheduled or running tasks are cancelled",
        }],
      });
      const status = await run(["status", "--status", "cancelled", "--json"]);
      assert.equal(status.code, 0, status.stderr);
      assert.equal(JSON.parse(status.stdout).counts.cancelled, 2);
    });

    await t.step("delete: ended tasks go, live ones are skipped", async () => {
      await sql`DELETE FROM retask.tasks`;
      const [gone] = await failed(1);
      const [live] = await enqueue(sql, { program: ok });
      const out = await run(["delete", String(gone), String(live)]);
      assert.equal(out.code, 0, out.stderr);
      assert.equal(
        out.stdout,
        `deleted task ${gone} and its history\n` +
          `skipped task ${live}: it is scheduled; cancel it first, or let it end\n`,
      );
      assert.deepEqual(await statuses(), { [live]: "scheduled" });
      const json = await run(["delete", String(live), "--json"]);
      assert.deepEqual(JSON.parse(json.stdout).deleted, []);
    });

    await t.step("prune --older-than, --status, --json", async () => {
      await sql`DELETE FROM retask.tasks`;
      const old = await failed(3);
      const [recent] = await failed(1);
      await sql`UPDATE retask.tasks SET finished = now() - interval '31 days'
                WHERE task_id = ANY (${old}::bigint[])`;
      await sql`UPDATE retask.tasks SET status = 'finished' WHERE task_id = ${old[0]}`;
      const some = await run(["prune", "--older-than", "30d", "--status", "finished"]);
      assert.equal(some.code, 0, some.stderr);
      assert.equal(
        some.stdout,
        "deleted 1 finished task that ended more than 30d ago, and their history\n",
      );
      const rest = await run(["prune", "--older-than", "4w", "--batch-size", "1", "--json"]);
      assert.deepEqual(JSON.parse(rest.stdout), { deleted: 2 });
      assert.deepEqual(await statuses(), { [recent]: "error" });
    });

    await t.step("bad input exits 2 with one line and changes nothing", async () => {
      const [id] = await failed(1);
      const before = await statuses();
      const cases: [string[], RegExp][] = [
        [["retry"], /^retask: retry needs task ids, or --program and\/or --status$/],
        [["retry", "abc"], /^retask: a task id must be a positive whole number or a range/],
        [["retry", "5-2"], /range such as 101-103, got "5-2"/],
        [["retry", String(id), "999999"], /^retask: task 999999 does not exist/],
        [["retry", String(id), "--program", "fail"], /not both/],
        [
          ["retry", "--status", "finished"],
          /retry acts on error or cancelled tasks, not "finished"/,
        ],
        [["retry", "--status", "done"], /unknown status "done"/],
        [["retry", "--program", "nope"], /unknown program "nope"/],
        [
          ["retry", String(id), "--max-attempts", "0"],
          /--max-attempts must be a whole number from 1 to 100/,
        ],
        [["cancel", "--status", "error"], /cancel acts on scheduled or running tasks, not "error"/],
        [["cancel", "999999"], /task 999999 does not exist/],
        [["delete", String(id), "999999"], /task 999999 does not exist/],
        [["prune"], /required option '--older-than <age>' not specified/],
        [["prune", "--older-than", "30"], /--older-than must be an age with a unit/],
        [
          ["prune", "--older-than", "30d", "--status", "running"],
          /prune removes finished, error, cancelled tasks, not running ones/,
        ],
        [
          ["prune", "--older-than", "30d", "--batch-size", "0"],
          /--batch-size must be a whole number from 1 to 100000/,
        ],
      ];
      for (const [args, expected] of cases) {
        const out = await run(args);
        assert.equal(out.code, 2, `${args.join(" ")}: ${out.stderr}`);
        assert.equal(out.stdout, "");
        assert.match(out.stderr.trim(), expected);
        assert.equal(out.stderr.trim().split("\n").length, 1, out.stderr);
      }
      assert.deepEqual(await statuses(), before);
    });
  } finally {
    await db.drop();
  }
});
