// The embedded server lets in only the OS user who started it: no Unix socket,
// TCP on 127.0.0.1 with a random password kept in a file only that user can
// read, in a directory only that user (and, as root, the server's group) can
// enter. Another OS user (nobody) gets in neither way; a data directory an
// older retask set up to trust every local user is upgraded on the next
// start; `retask embedded status|stop` report and stop it. Each test has a
// data directory and a free port of its own. (Issue 10, item 5.)
import assert from "node:assert/strict";
import { join } from "node:path";
import { embeddedStatus, startEmbedded, stopEmbedded } from "../../lib/db/embedded.ts";
import { client } from "../../lib/db/connect.ts";
import { runCli } from "../harness/mod.ts";

const ROOT = Deno.uid() === 0;
/** Switching to another OS user needs root; as anyone else these tests cannot show it. */
const ignore = !ROOT;

interface Run {
  code: number;
  out: string;
}

/** Runs `cmd` as `user` (as root through setpriv), from `/`, without this process's env. */
async function runAs(user: "nobody" | "postgres" | null, cmd: string[], env = {}): Promise<Run> {
  const group = user === "nobody" ? "nogroup" : user;
  const prefix = user && ROOT
    ? ["setpriv", `--reuid=${user}`, `--regid=${group}`, "--clear-groups", "--"]
    : [];
  const [bin, ...args] = [...prefix, ...cmd];
  const out = await new Deno.Command(bin, {
    args,
    cwd: "/",
    clearEnv: true,
    env: { PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin", LC_ALL: "C", ...env },
    stdin: "null",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, out: dec.decode(out.stdout) + dec.decode(out.stderr) };
}

/** psql as nobody against `conninfo`, never prompting for a password. */
function psqlAsNobody(conninfo: string, env = {}): Promise<Run> {
  const args = ["psql", `user=postgres dbname=postgres connect_timeout=5 ${conninfo}`];
  return runAs("nobody", [...args, "-w", "-Atc", "SELECT 'in as ' || current_user"], env);
}

const mode = async (path: string) => (await Deno.stat(path)).mode! & 0o777;

/** A data directory of the test's own, stopped and removed after. */
async function withDataDir(fn: (dataDir: string) => Promise<void>): Promise<void> {
  const dataDir = await Deno.makeTempDir({ prefix: "retask-embedded-auth-" });
  try {
    await fn(dataDir);
  } finally {
    await stopEmbedded(dataDir).catch(() => {});
    await Deno.remove(dataDir, { recursive: true });
  }
}

/** No Unix socket for the port anywhere PostgreSQL or psql would put or look for one. */
async function assertNoSocket(dataDir: string, port: number): Promise<void> {
  for (const dir of [dataDir, join(dataDir, "data"), "/tmp", "/var/run/postgresql"]) {
    const socket = join(dir, `.s.PGSQL.${port}`);
    assert.equal(await Deno.lstat(socket).then(() => true, () => false), false, socket);
  }
}

Deno.test({
  name: "another OS user cannot reach the embedded server, by TCP or a socket",
  ignore,
  fn: () =>
    withDataDir(async (dataDir) => {
      const server = await startEmbedded({ dataDir, port: 0 });
      const password = new URL(server.url).password;
      const tcp = `host=127.0.0.1 port=${server.port}`;

      // the starting user gets in with the URL, or psql with the password file
      const sql = client(server.url, { max: 1 });
      try {
        assert.equal((await sql`SELECT current_user AS who`)[0].who, "postgres");
      } finally {
        await sql.end();
      }
      const own = await runAs(null, [
        "psql",
        `${tcp} user=postgres dbname=postgres`,
        "-w",
        "-Atc",
        "SELECT 'in as ' || current_user",
      ], { PGPASSFILE: server.passwordFile });
      assert.equal(own.out.trim(), "in as postgres", own.out);

      // nobody: no password, a guessed one, another role name: all refused
      const none = await psqlAsNobody(tcp);
      assert.notEqual(none.code, 0, none.out);
      assert.match(none.out, /no password supplied/);
      const guessed = await psqlAsNobody(tcp, { PGPASSWORD: "postgres" });
      assert.match(guessed.out, /password authentication failed for user "postgres"/);
      assert.doesNotMatch(guessed.out, /in as/);
      const other = await psqlAsNobody(`${tcp} user=nobody dbname=template1`);
      assert.match(other.out, /no password supplied/);

      // nobody cannot read the password file, nor look into the directory
      for (const cmd of [["cat", server.passwordFile], ["ls", dataDir]]) {
        const r = await runAs("nobody", cmd);
        assert.notEqual(r.code, 0, r.out);
        assert.match(r.out, /Permission denied/);
      }
      assert.doesNotMatch((await runAs("nobody", ["ls", join(dataDir, "data")])).out, /PG_VERSION/);

      // no socket at all, so none in the directory nor where psql looks by default
      await assertNoSocket(dataDir, server.port);
      for (const host of [dataDir, join(dataDir, "data"), "/tmp", "/var/run/postgresql"]) {
        const r = await psqlAsNobody(`host=${host} port=${server.port}`);
        assert.notEqual(r.code, 0, `${host}: ${r.out}`);
        assert.doesNotMatch(r.out, /in as/);
      }
      assert.ok(!(await Deno.readTextFile(server.logFile)).includes(password), "log");
    }),
});

Deno.test("the password file is 0600 and the data directories private", () =>
  withDataDir(async (dataDir) => {
    await Deno.chmod(dataDir, 0o755); // as an older retask's tests left it
    const server = await startEmbedded({ dataDir, port: 0 });
    assert.equal(await mode(server.passwordFile), 0o600);
    assert.equal((await Deno.stat(server.passwordFile)).uid, Deno.uid());
    assert.equal(await mode(join(dataDir, "data")), 0o700);
    // as root the server (user postgres) must enter it: its group may, nobody else
    assert.equal(await mode(dataDir), ROOT ? 0o750 : 0o700);
    const line = (await Deno.readTextFile(server.passwordFile)).trim();
    assert.equal(line, `127.0.0.1:*:*:postgres:${new URL(server.url).password}`);
  }));

Deno.test("retask embedded status and stop: what they print, and their exit codes", () =>
  withDataDir(async (dataDir) => {
    const env = { RETASK_DATA_DIR: dataDir };
    const server = await startEmbedded({ dataDir, port: 0 });
    const password = new URL(server.url).password;
    const noSecret = (run: { stdout: string; stderr: string }) =>
      assert.ok(!(run.stdout + run.stderr).includes(password), run.stdout + run.stderr);

    const status = await runCli(["embedded", "status"], env);
    assert.equal(status.code, 0, status.stderr);
    noSecret(status);
    const pid = (await embeddedStatus(dataDir)).pid;
    assert.match(
      status.stdout,
      new RegExp(`running \\(pid ${pid}\\) on 127\\.0\\.0\\.1:${server.port}`),
    );
    assert.match(status.stdout, new RegExp(`password file: ${server.passwordFile} `));
    assert.match(status.stdout, new RegExp(`PGPASSFILE=${server.passwordFile} psql -h 127`));

    const json = await runCli(["embedded", "status", "--json"], env);
    assert.equal(json.code, 0, json.stderr);
    noSecret(json);
    const shown = JSON.parse(json.stdout);
    assert.deepEqual(
      [shown.data_dir, shown.running, shown.pid, shown.port, shown.password_required],
      [dataDir, true, pid, server.port, true],
    );
    assert.equal(shown.password_file, server.passwordFile);

    // the other commands use it without printing the password
    for (const args of [["install"], ["status"]]) {
      const run = await runCli(args, env);
      assert.equal(run.code, 0, run.stderr);
      noSecret(run);
      if (args[0] === "status") {
        assert.match(
          run.stdout,
          new RegExp(`embedded PostgreSQL at 127\\.0\\.0\\.1:${server.port}/`),
        );
      }
    }

    const stop = await runCli(["embedded", "stop"], env);
    assert.equal(stop.code, 0, stop.stderr);
    assert.equal(stop.stdout, `stopped the embedded PostgreSQL in ${dataDir}\n`);
    const again = await runCli(["embedded", "stop"], env);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(again.stdout, `the embedded PostgreSQL in ${dataDir} was not running\n`);
    const stopped = await runCli(["embedded", "status", "--json"], env);
    assert.equal(stopped.code, 0, stopped.stderr);
    assert.equal(JSON.parse(stopped.stdout).running, false);
    const fresh = await runCli(["embedded", "status"], { RETASK_DATA_DIR: join(dataDir, "none") });
    assert.equal(fresh.code, 0, fresh.stderr);
    assert.match(fresh.stdout, /not set up yet/);

    // bad input: one line, exit 2
    for (
      const args of [
        ["embedded"],
        ["embedded", "restart"],
        ["embedded", "status", "extra"],
        ["embedded", "stop", "--force"],
        ["embedded", "--json"],
      ]
    ) {
      const run = await runCli(args, env);
      assert.equal(run.code, 2, `${args.join(" ")}: ${run.stderr}`);
      assert.match(run.stderr, /^retask: [^\n]+\n$/, args.join(" "));
    }
    const notDir = await runCli(["embedded", "status"], { RETASK_DATA_DIR: server.passwordFile });
    assert.equal(notDir.code, 2, notDir.stderr);
    assert.match(notDir.stderr, /^retask: .* is not a directory; fix RETASK_DATA_DIR\n$/);
  }));

Deno.test({
  name: "a data directory set up to trust every local user is upgraded on the next start",
  ignore,
  fn: () =>
    withDataDir(async (dataDir) => {
      const first = await startEmbedded({ dataDir, port: 0 });
      assert.ok(await stopEmbedded(dataDir));
      // what an older retask left: initdb --auth=trust's pg_hba.conf, no password, no file
      const data = join(dataDir, "data");
      await Deno.writeTextFile(
        join(data, "pg_hba.conf"),
        "local all all trust\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n",
      );
      await Deno.remove(first.passwordFile);
      const pgCtl = join(dataDir, "pg17", "bin", "pg_ctl");
      const log = join(dataDir, "postgres.log");
      const start = ["start", "-w", "-D", data, "-l", log, "-o", `-p ${first.port}`];
      const started = await runAs("postgres", [pgCtl, ...start]);
      assert.equal(started.code, 0, started.out);
      const tcp = `host=127.0.0.1 port=${first.port}`;
      const reset = await runAs(null, [
        "psql",
        `${tcp} user=postgres dbname=postgres`,
        "-w",
        "-c",
        "ALTER ROLE postgres PASSWORD NULL",
      ]);
      assert.equal(reset.code, 0, reset.out);
      // the hole: nobody gets in as superuser
      assert.equal((await psqlAsNobody(tcp)).out.trim(), "in as postgres");
      const before = await embeddedStatus(dataDir);
      assert.deepEqual([before.running, before.passwordRequired], [true, false]);
      const warned = await runCli(["embedded", "status"], { RETASK_DATA_DIR: dataDir });
      assert.match(warned.stdout, /warning: set up by an older retask, it lets every local user/);

      const server = await startEmbedded({ dataDir });
      assert.equal(server.port, first.port);
      const after = await embeddedStatus(dataDir);
      assert.deepEqual([after.running, after.passwordRequired], [true, true]);
      assert.notEqual(after.pid, before.pid, "restarted to take the new pg_hba.conf");
      const refused = await psqlAsNobody(tcp);
      assert.match(refused.out, /no password supplied/);
      assert.doesNotMatch(await Deno.readTextFile(join(data, "pg_hba.conf")), /trust/);
      assert.equal(await mode(server.passwordFile), 0o600);
      const sql = client(server.url, { max: 1 });
      try {
        const [row] = await sql`
          SELECT rolpassword LIKE 'SCRAM-SHA-256$%' AS scram FROM pg_authid
          WHERE rolname = 'postgres'`;
        assert.equal(row.scram, true);
      } finally {
        await sql.end();
      }
    }),
});
