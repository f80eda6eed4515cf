// A bad database URL, through DATABASE_URL or --database-url, ends status,
// work and install with one line that holds no password: exit 2 when the URL
// is malformed, exit 1 when no server answers, and in bounded time when every
// host of a multi-host URL refuses. No database. (Issue "Safe to deploy",
// items 6 and 12.)
import assert from "node:assert/strict";
import { type CliRun, runCli } from "../harness/mod.ts";

const SECRET = "S3cr3tPw";

const COMMANDS = [["status"], ["work", "--drain"], ["install"]];

/** The ways a user hands retask a URL: the environment, or the flag before or after the command. */
const WAYS: [string, (url: string, command: string[]) => Promise<CliRun>][] = [
  ["DATABASE_URL", (url, command) => runCli(command, url)],
  ["--database-url first", (url, command) => runCli(["--database-url", url, ...command])],
  ["--database-url last", (url, command) => runCli([...command, "--database-url", url])],
];

const MALFORMED = [
  `postgres://u:${SECRET}@host:99999/db`,
  `postgres://u:${SECRET}@host:5432:1/db`,
  `postgres://u:${SECRET}@[::1/db`,
  `postgres://u:${SECRET}@ho st:5432/db`,
  `postgres://u:${SECRET}/x@host/db`,
  `postgres://u:${SECRET}@x@h1,h2/db`,
  `postgres://u:${SECRET}@h1:99999,h2/db`,
  `postgres:/u:${SECRET}@host/db`,
];

function assertOneSafeLine(run: CliRun, code: number, what: string): void {
  const context = `${what}: exit ${run.code}, stderr ${JSON.stringify(run.stderr)}`;
  assert.equal(run.code, code, context);
  assert.match(run.stderr, /^retask: [^\n]+\n$/, context);
  assert.ok(!run.stdout.includes(SECRET), `${what}: stdout ${run.stdout}`);
  assert.ok(!run.stderr.includes(SECRET), context);
}

/** Runs `jobs` with at most `limit` at a time: each is a CLI child process. */
async function inBatches<T>(jobs: (() => Promise<T>)[], limit = 6): Promise<T[]> {
  const results: T[] = [];
  for (let i = 0; i < jobs.length; i += limit) {
    results.push(...await Promise.all(jobs.slice(i, i + limit).map((job) => job())));
  }
  return results;
}

Deno.test("a malformed URL is bad usage, shown without its password", async () => {
  const jobs = MALFORMED.flatMap((url) =>
    COMMANDS.flatMap((command) =>
      WAYS.map(([way, run]) => async () => {
        assertOneSafeLine(await run(url, command), 2, `${command.join(" ")} ${way} ${url}`);
      })
    )
  );
  await inBatches(jobs);
});

Deno.test("the message shows the URL with **** for the password", async () => {
  const run = await runCli(["status"], `postgres://u:${SECRET}@host:99999/db`);
  assert.equal(
    run.stderr,
    'retask: invalid database URL "postgres://u:****@host:99999/db": a port must be a number ' +
      "from 1 to 65535; check DATABASE_URL or --database-url\n",
  );
});

Deno.test("a server that refuses is a runtime failure, shown without the password", async () => {
  const port = freePort();
  const urls = [
    `postgres://u:${SECRET}@127.0.0.1:${port}/db`,
    `postgres://u:${SECRET}@x@127.0.0.1:${port}/db`,
  ];
  const jobs = urls.flatMap((url) =>
    COMMANDS.flatMap((command) =>
      WAYS.map(([way, run]) => async () => {
        const result = await run(url, command);
        assertOneSafeLine(result, 1, `${command.join(" ")} ${way} ${url}`);
        assert.match(
          result.stderr,
          /^retask: cannot connect to postgres:\/\/u:\*\*\*\*@127\.0\.0\.1/,
        );
      })
    )
  );
  await inBatches(jobs);
});

Deno.test("a multi-host URL whose hosts all refuse fails in bounded time", async () => {
  const [a, b] = [freePort(), freePort()];
  const url = `postgres://u:${SECRET}@127.0.0.1:${a},127.0.0.1:${b}/db`;
  const runs = await Promise.all([
    runCli(["status"], { DATABASE_URL: url }),
    runCli(["--database-url", url, "work", "--drain"], {}),
    runCli(["install"], { DATABASE_URL: url }),
  ]);
  for (const run of runs) {
    assertOneSafeLine(run, 1, "multi-host");
    assert.match(run.stderr, /^retask: cannot connect to postgres:\/\/u:\*\*\*\*@127\.0\.0\.1:/);
  }
});

/** A local port nothing listens on: one the system just handed out and took back. */
function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}
