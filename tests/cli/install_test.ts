// `retask install` and the CLI's frame: help, version, usage errors, exit codes.
import assert from "node:assert/strict";
import denoJson from "../../deno.json" with { type: "json" };
import { SCHEMA_VERSION } from "../../lib/db/schema.ts";
import { freshDatabase, runCli } from "../harness/mod.ts";

Deno.test("retask install twice exits 0, the second run changing nothing", async () => {
  const db = await freshDatabase("cli_install");
  try {
    const first = await runCli(["install"], db.url);
    assert.equal(first.code, 0, first.stderr);
    assert.match(
      first.stdout,
      new RegExp(`^retask retask \\(schema version ${SCHEMA_VERSION}\\): applied 0001_tables.sql`),
    );
    assert.match(first.stdout, /\ncourse names: public\.programs, public\.tasks, /);
    const second = await runCli(["install", "--json"], db.url);
    assert.equal(second.code, 0, second.stderr);
    assert.deepEqual(JSON.parse(second.stdout), {
      schema: "retask",
      version: SCHEMA_VERSION,
      migrations: [],
      functions: [],
      compat: { installed: [], skipped: [] },
      warnings: [],
    });
  } finally {
    await db.drop();
  }
});

Deno.test("help and version exit 0", async () => {
  const help = await runCli(["--help"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /Usage: retask/);
  assert.match(help.stdout, /install/);
  const version = await runCli(["--version"]);
  assert.equal(version.code, 0);
  assert.equal(version.stdout.trim(), denoJson.version);
});

Deno.test("usage errors exit 2 with a one-line error", async () => {
  for (const args of [["bogus"], ["install", "--nope"]]) {
    const run = await runCli(args);
    assert.equal(run.code, 2, args.join(" "));
    assert.match(run.stderr, /^retask: error: unknown (command|option) .* \(see --help\)\n$/);
  }
  const notUrl = await runCli(["--database-url", "mysql://x", "install"]);
  assert.equal(notUrl.code, 2);
  assert.equal(
    notUrl.stderr.trim(),
    'retask: database URL must start with postgres://, got "mysql://x"',
  );
});

Deno.test("an unreachable database exits 1 and says what to check", async () => {
  const run = await runCli(["--database-url", "postgres://nobody:secret@127.0.0.1:1/x", "install"]);
  assert.equal(run.code, 1);
  assert.match(
    run.stderr,
    /^retask: cannot connect to postgres:\/\/nobody:\*\*\*\*@127\.0\.0\.1:1\/x: .*check DATABASE_URL/,
  );
  assert.doesNotMatch(run.stderr, /secret/, "the password is not printed");
});
