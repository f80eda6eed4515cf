// `retask schedule add|list|remove` as a user runs them: what is stored and
// printed, re-adding a name, bad input that exits 2 and stores nothing, and
// the schedules under `retask status`.
import assert from "node:assert/strict";
import { registerProgram } from "../../lib/mod.ts";
import { freshDatabase, runCli } from "../harness/mod.ts";

Deno.test("retask schedule", async (t) => {
  const db = await freshDatabase("cli_schedule", { install: true });
  const { sql } = db;
  const lucky = (await registerProgram(sql, "lucky", "retask.lucky")).programId;
  const stored = () =>
    sql`SELECT name, program_id, cron, timezone, params, next_run_at FROM retask.schedules
        ORDER BY name`;

  try {
    await t.step("add: by program name, in a time zone; prints the next run", async () => {
      const run = await runCli(
        ["schedule", "add", "report", "lucky", "--cron", "0 9 * * 1-5", "--timezone", "Asia/Tokyo"],
        db.url,
      );
      assert.equal(run.code, 0, run.stderr);
      assert.match(
        run.stdout,
        /^added schedule "report": program "lucky" \(id \d+\) at "0 9 \* \* 1-5" Asia\/Tokyo; next run \d{4}-\d\d-\d\d \d\d:\d\d:00\n$/,
      );
      const [row] = await stored();
      assert.equal(row.program_id, lucky);
      assert.deepEqual(row.params, {});
      // 09:00 in Tokyo is 00:00 UTC, on a weekday there
      assert.equal(row.next_run_at.toISOString().slice(11), "00:00:00.000Z");
      const tokyoDay = new Date(row.next_run_at.getTime() + 9 * 3_600_000).getUTCDay();
      assert.ok(tokyoDay >= 1 && tokyoDay <= 5, `day ${tokyoDay}`);
    });

    await t.step("add --json by id, 6 fields with seconds; list and list --json", async () => {
      const run = await runCli([
        "schedule",
        "add",
        "pulse",
        String(lucky),
        "--cron",
        "*/10 * * * * *",
        "--params",
        '{"probability": 0.5}',
        "--json",
      ], db.url);
      assert.equal(run.code, 0, run.stderr);
      const out = JSON.parse(run.stdout);
      assert.deepEqual(Object.keys(out), [
        "name",
        "program_id",
        "program",
        "cron",
        "timezone",
        "params",
        "next_run_at",
        "last_run_at",
        "last_task_id",
        "created",
      ]);
      assert.equal(out.created, true);
      assert.equal(out.timezone, "UTC");
      assert.deepEqual(out.params, { probability: 0.5 });
      assert.equal(new Date(out.next_run_at).getUTCSeconds() % 10, 0);

      const list = await runCli(["schedule", "list"], db.url);
      assert.equal(list.code, 0, list.stderr);
      const lines = list.stdout.trimEnd().split("\n");
      assert.match(lines[0], /^schedule\s+program\s+cron\s+time zone\s+next run\s+last run$/);
      assert.match(lines[1], /^pulse\s+lucky\s+\*\/10 \* \* \* \* \*\s+UTC\s+\S+ \S+\s+never$/);
      assert.match(lines[2], /^report\s+lucky\s+0 9 \* \* 1-5\s+Asia\/Tokyo\s+/);
      const json = JSON.parse((await runCli(["schedule", "list", "--json"], db.url)).stdout);
      assert.deepEqual(json.map((s: { name: string }) => s.name), ["pulse", "report"]);
    });

    await t.step("re-adding a name changes that schedule", async () => {
      const run = await runCli(
        ["schedule", "add", "pulse", "lucky", "--cron", "@hourly", "--json"],
        db.url,
      );
      assert.equal(run.code, 0, run.stderr);
      const out = JSON.parse(run.stdout);
      assert.equal(out.created, false);
      assert.equal(out.cron, "@hourly");
      // what was not given is the default again, as pg-boss's schedule() replaces
      assert.deepEqual(out.params, {});
      assert.equal(new Date(out.next_run_at).getUTCMinutes(), 0);
      assert.equal((await stored()).length, 2);
    });

    await t.step("bad input exits 2 with one line and stores nothing", async () => {
      const before = JSON.stringify(await stored());
      const cases: [string[], RegExp][] = [
        [["x", "lucky"], /required option '--cron <expression>' not specified/],
        [["x", "lucky", "--cron", "* * * *"], /"\* \* \* \*" has 4 fields; give 5 .* or 6 with/],
        [["x", "lucky", "--cron", "* * * * * * *"], /has 7 fields/],
        [["x", "lucky", "--cron", "61 * * * *"], /invalid cron expression .*minute: 61/],
        [["x", "lucky", "--cron", "0 0 31 2 *"], /cron expression "0 0 31 2 \*" never runs/],
        [["x", "lucky", "--cron", "* * * * *", "--timezone", "Mars/Base"], /unknown time zone/],
        [
          ["x", "lucky", "--cron", "* * * * *", "--timezone", "asia/tokyo"],
          /unknown time zone "asia\/tokyo"; did you mean Asia\/Tokyo\?/,
        ],
        [
          ["x", "lucky", "--cron", "* * * * *", "--params", "[1]"],
          /--params must be a JSON object/,
        ],
        [["x", "lucky", "--cron", "* * * * *", "--params", "{"], /--params is not valid JSON/],
        [["x", "nope", "--cron", "* * * * *"], /unknown program "nope"; registered: lucky/],
        [[" ", "lucky", "--cron", "* * * * *"], /schedule name is empty/],
      ];
      for (const [args, message] of cases) {
        const run = await runCli(["schedule", "add", ...args], db.url);
        assert.equal(run.code, 2, `${args.join(" ")}: ${run.stderr}`);
        assert.equal(run.stdout, "");
        const lines = run.stderr.trimEnd().split("\n");
        assert.equal(lines.length, 1, run.stderr);
        assert.match(lines[0], /^retask: /);
        assert.match(lines[0], message);
      }
      for (
        const [args, message] of [
          [["remove", "nope"], /^retask: unknown schedule "nope"; schedules: pulse, report$/],
          [[], /^retask: schedule needs a subcommand: add, list or remove$/],
          [["frob"], /^retask: unknown schedule subcommand "frob"/],
        ] as [string[], RegExp][]
      ) {
        const run = await runCli(["schedule", ...args], db.url);
        assert.equal(run.code, 2, run.stderr);
        assert.match(run.stderr.trimEnd(), message);
      }
      assert.equal(JSON.stringify(await stored()), before);
    });

    await t.step("status shows the schedules", async () => {
      const text = await runCli(["status"], db.url);
      assert.equal(text.code, 0, text.stderr);
      assert.match(text.stdout, /\n\nschedule\s+program\s+cron.*\npulse\s+lucky\s+@hourly/);
      const json = JSON.parse((await runCli(["status", "--json"], db.url)).stdout);
      assert.deepEqual(json.schedules.map((s: { name: string }) => s.name), ["pulse", "report"]);
    });

    await t.step("remove: prints what it removed; the schedule is gone", async () => {
      const run = await runCli(["schedule", "remove", "pulse", "--json"], db.url);
      assert.equal(run.code, 0, run.stderr);
      assert.equal(JSON.parse(run.stdout).cron, "@hourly");
      const text = await runCli(["schedule", "remove", "report"], db.url);
      assert.match(text.stdout, /^removed schedule "report": program "lucky" \(id \d+\)/);
      assert.equal((await stored()).length, 0);
      const list = await runCli(["schedule", "list"], db.url);
      assert.match(list.stdout, /^no schedules/);
      const status = await runCli(["status"], db.url);
      assert.doesNotMatch(status.stdout, /^schedule /m);
    });
  } finally {
    await db.drop();
  }
});
