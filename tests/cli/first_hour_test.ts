// A new user's first hour with the CLI: which database it uses, durations with
// units, errors on one line that name the option, readable retry rules, a waiting
// retry's last error, and the demo's progress bar.
import assert from "node:assert/strict";
import { stopEmbedded } from "../../lib/db/embedded.ts";
import { cliEnv, freshDatabase, MAIN, runCli, spawnCli, waitFor } from "../harness/mod.ts";

const TIME = String.raw`\d{4}-\d\d-\d\d \d\d:\d\d:\d\d`;
// Flags are checked before connecting: pointing at a closed port shows that none is needed.
const NO_DATABASE = { DATABASE_URL: "postgres://postgres@127.0.0.1:1/none" };

function assertUsageError(run: { code: number; stdout: string; stderr: string }, message: RegExp) {
  assert.equal(run.code, 2, run.stderr);
  assert.equal(run.stdout, "");
  assert.equal(run.stderr.trimEnd().split("\n").length, 1, run.stderr);
  assert.match(run.stderr.trimEnd(), message);
}

Deno.test("a mistyped command or option is one line with the suggestion", async () => {
  assertUsageError(
    await runCli(["stauts"], NO_DATABASE),
    /^retask: error: unknown command 'stauts'; did you mean status\? \(see --help\)$/,
  );
  assertUsageError(
    await runCli(["status", "--limt", "2"], NO_DATABASE),
    /^retask: error: unknown option '--limt'; did you mean --limit\? \(see --help\)$/,
  );
});

Deno.test("status --interval takes a duration with a unit; a bad one names the option", async () => {
  for (const interval of ["soon", "50ms", "5"]) {
    assertUsageError(
      await runCli(["status", "--watch", "--interval", interval], NO_DATABASE),
      new RegExp(`^retask: --interval must be a duration at least 100 ms .*, got "${interval}"$`),
    );
  }
});

Deno.test("with DATABASE_URL", async (t) => {
  const db = await freshDatabase("first_hour_cli");
  // a password in the URL must never be shown (trust authentication ignores it)
  const url = new URL(db.url);
  url.password = "s3cret";
  const env = { DATABASE_URL: url.toString() };
  const where = `${url.hostname}:${url.port || "5432"}/${db.name}`;
  try {
    assert.equal((await runCli(["install"], env)).code, 0);
    await db.sql.unsafe(`
      CREATE FUNCTION fh_ok(params jsonb) RETURNS text LANGUAGE sql AS $$ SELECT 'ok' $$;
      CREATE FUNCTION fh_divide(params jsonb) RETURNS text LANGUAGE plpgsql AS $$
      BEGIN RETURN (1 / (params ->> 'by')::int)::text; END $$;`);

    await t.step("register says the retry rule in words", async () => {
      const cases: [string[], string][] = [
        [[], "no retry delay"],
        [["--retry-delay", "90 seconds"], "retry delay 1 minute 30 seconds"],
        [
          [
            "--retry-delay",
            "2 seconds",
            "--retry-backoff",
            "exponential",
            "--retry-delay-max",
            "1h",
          ],
          "retry delay exponential from 2 seconds up to 1 hour",
        ],
        [["--retry-delay", "0", "--retry-backoff", "exponential"], "no retry delay"],
      ];
      for (const [flags, rule] of cases) {
        const run = await runCli(["register", "ok", "fh_ok", ...flags], env);
        assert.equal(run.code, 0, run.stderr);
        assert.match(run.stdout, new RegExp(`^(registered|updated) program "ok" .*, ${rule}\\n$`));
      }
    });

    await t.step("an interval PostgreSQL cannot read names its option, on one line", async () => {
      const cases: [string, string][] = [["--retry-delay", "soon"], ["--retry-delay-max", "later"]];
      for (const [flag, value] of cases) {
        assertUsageError(
          await runCli(["register", "new", "fh_ok", flag, value], env),
          new RegExp(
            `^retask: ${flag} must be an interval such as '5 seconds' or '2 minutes', got "${value}"$`,
          ),
        );
      }
      const unknown = await runCli(["enqueue", "new"], env);
      assert.equal(unknown.code, 2, "nothing was registered");
    });

    await t.step("work names its database; status shows a waiting retry's last error", async () => {
      assert.equal(
        (await runCli(["register", "divide", "fh_divide", "--retry-delay", "1 hour"], env)).code,
        0,
      );
      const enqueued = await runCli(["enqueue", "divide", "--params", '{"by": 0}', "--quiet"], env);
      assert.equal(enqueued.code, 0, enqueued.stderr);
      const taskId = enqueued.stdout.trim(); // --quiet: the new task's id only

      const worker = spawnCli(["work"], env);
      try {
        await waitFor(
          () => worker.stdout().includes("retry: division by zero"),
          "the first attempt",
        );
      } finally {
        worker.kill("SIGINT");
      }
      const ended = await worker.done;
      assert.equal(ended.code, 0);
      const logged = ended.stderr.split("\n");
      assert.equal(logged[0], `retask: database: ${where}`);

      const status = await runCli(["status"], env);
      assert.equal(status.code, 0, status.stderr);
      const lines = status.stdout.trimEnd().split("\n");
      assert.match(
        lines.find((l) => l.trimStart().startsWith(`${taskId} `)) ?? "",
        new RegExp(`scheduled +1 of 3 .*\\(waits until ${TIME}, last: division by zero\\)$`),
      );
      assert.equal(lines.at(-1), `database: ${where}`);
      assert.ok(!status.stdout.includes("s3cret") && !ended.stderr.includes("s3cret"));
    });

    await t.step("status --interval takes 2s", async () => {
      const run = await runCli(["status", "--interval", "2s"], env);
      assert.equal(run.code, 0, run.stderr);
    });

    await t.step({
      name: "the demo draws its finished progress bar once",
      // util-linux `script` gives the child a terminal, where the bar is drawn
      ignore: Deno.build.os !== "linux",
      fn: async () => {
        const command = [Deno.execPath(), "run", "--quiet", "--allow-all", MAIN, "demo"];
        const out = await new Deno.Command("script", {
          args: ["-qec", [...command, "--runs", "50"].join(" "), "/dev/null"],
          env: cliEnv(env),
          clearEnv: true,
          stdin: "null",
        }).output();
        const text = new TextDecoder().decode(out.stdout);
        assert.equal(out.code, 0, text);
        assert.equal(text.match(/\] +50\/50 +100%/g)?.length, 1, text);
        assert.match(text, new RegExp(`database: ${where}`));
      },
    });
  } finally {
    await db.drop();
  }
});

Deno.test("without DATABASE_URL, status and work say they use the embedded server", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "retask-first-hour-" });
  await Deno.chmod(dataDir, 0o755); // as root the server runs as 'postgres', who must traverse it
  const env = { RETASK_DATA_DIR: dataDir };
  const embedded = /^database: embedded PostgreSQL at 127\.0\.0\.1:\d+\/postgres$/;
  try {
    const install = await runCli(["install"], env);
    assert.equal(install.code, 0, install.stderr);
    const status = await runCli(["status"], env);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout.trimEnd().split("\n").at(-1)!, embedded);
    const work = await runCli(["work", "--drain"], env);
    assert.equal(work.code, 0, work.stderr);
    assert.match(work.stderr.split("\n")[0], new RegExp(`^retask: ${embedded.source.slice(1)}`));
  } finally {
    await stopEmbedded(dataDir);
    await Deno.remove(dataDir, { recursive: true });
  }
});
