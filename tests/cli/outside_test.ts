// Using retask from outside the clone: a program that imports lib/mod.ts by path, and
// `deno install -g` of main.ts. Neither may depend on the clone's deno.json.
import assert from "node:assert/strict";
import { freshDatabase, MAIN } from "../harness/mod.ts";

const MOD = new URL("../../lib/mod.ts", import.meta.url).pathname;

async function deno(args: string[], cwd: string, env: Record<string, string> = {}) {
  const out = await new Deno.Command(Deno.execPath(), { args, cwd, env, stdin: "null" }).output();
  const text = new TextDecoder();
  return { code: out.code, stdout: text.decode(out.stdout), stderr: text.decode(out.stderr) };
}

Deno.test("a program outside the clone imports lib/mod.ts and enqueues a task", async () => {
  const db = await freshDatabase("outside");
  const dir = await Deno.makeTempDir({ prefix: "retask-outside-" });
  try {
    await Deno.writeTextFile(
      `${dir}/app.ts`,
      `import { connect, enqueue, install, registerProgram } from ${JSON.stringify(MOD)};
const db = await connect(); // DATABASE_URL
try {
  await install(db.sql);
  await db.sql\`CREATE FUNCTION outside_ok(params jsonb) RETURNS text LANGUAGE sql AS $$ SELECT 'ok' $$\`;
  await registerProgram(db.sql, "ok", "outside_ok");
  console.log(JSON.stringify(await enqueue(db.sql, { program: "ok" })));
} finally {
  await db.close();
}
`,
    );
    const run = await deno(["run", "--quiet", "--allow-all", "app.ts"], dir, {
      DATABASE_URL: db.url,
    });
    assert.equal(run.code, 0, run.stderr);
    const ids: number[] = JSON.parse(run.stdout);
    assert.equal(ids.length, 1);
    // wherever the tables live now: find the schema that holds retask's tasks
    const [{ schema }] = await db.sql<{ schema: string }[]>`
      SELECT n.nspname AS schema FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relname = 'tasks' AND c.relkind IN ('r', 'p') LIMIT 1`;
    const rows = await db.sql`
      SELECT task_id FROM ${db.sql(schema)}.tasks WHERE task_id = ${ids[0]}::bigint`;
    assert.equal(rows.length, 1, "the task row exists");
  } finally {
    await Deno.remove(dir, { recursive: true });
    await db.drop();
  }
});

Deno.test("deno install -g of main.ts gives a working retask command", async () => {
  const root = await Deno.makeTempDir({ prefix: "retask-install-" });
  try {
    const install = await deno(
      ["install", "--quiet", "-g", "-A", "-n", "retask", "--root", root, MAIN],
      root,
    );
    assert.equal(install.code, 0, install.stderr);
    const help = await new Deno.Command(`${root}/bin/retask`, { args: ["--help"], cwd: root })
      .output();
    assert.equal(help.code, 0, new TextDecoder().decode(help.stderr));
    assert.match(new TextDecoder().decode(help.stdout), /^Usage: retask /);
    const version = await new Deno.Command(`${root}/bin/retask`, { args: ["--version"], cwd: root })
      .output();
    const { version: expected } = JSON.parse(
      await Deno.readTextFile(new URL("../../deno.json", import.meta.url)),
    );
    assert.equal(new TextDecoder().decode(version.stdout).trim(), expected);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
