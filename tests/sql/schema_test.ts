// retask's schema: one of its own, every function defined once in sql/ and
// pinned to a search_path, upgrades of a course-era database and of one that
// retask 5623551 installed into public, and an application's own names left alone.
import assert from "node:assert/strict";
import { client } from "../../lib/db/connect.ts";
import { install, MIGRATIONS, requireInstalled } from "../../lib/db/schema.ts";
import { freshDatabase, runCli } from "../harness/mod.ts";

const SQL_DIR = new URL("../../sql/", import.meta.url);

async function sqlFiles(): Promise<Map<string, string>> {
  const files = new Map<string, string>();
  for (const dir of [SQL_DIR, new URL("migrations/", SQL_DIR)]) {
    for await (const entry of Deno.readDir(dir)) {
      if (entry.isFile && entry.name.endsWith(".sql")) {
        files.set(entry.name, await Deno.readTextFile(new URL(entry.name, dir)));
      }
    }
  }
  return files;
}

Deno.test("every function and procedure is defined exactly once in sql/", async () => {
  const seen = new Map<string, string[]>();
  for (const [file, text] of await sqlFiles()) {
    for (
      const [, name] of text.matchAll(/CREATE (?:OR REPLACE )?(?:FUNCTION|PROCEDURE) ([\w.]+)/g)
    ) {
      seen.set(name, [...(seen.get(name) ?? []), file]);
    }
  }
  assert.ok(seen.size > 20, "the files define the functions");
  const twice = [...seen].filter(([, files]) => files.length > 1);
  assert.deepEqual(twice, [], "no name is created twice");
});

Deno.test("retask's functions live in its schema and pin a search_path", async () => {
  const db = await freshDatabase("schema_pinned", { install: true });
  try {
    const rows = await db.sql<{ fn: string; kind: string; config: string[] | null }[]>`
      SELECT p.oid::regprocedure::text AS fn, p.prokind AS kind, p.proconfig AS config
      FROM pg_proc p WHERE p.pronamespace = 'retask'::regnamespace ORDER BY 1`;
    assert.ok(rows.length > 15);
    const unpinned = rows.filter((r) =>
      !(r.config ?? []).some((c) => /^search_path=pg_catalog, pg_temp$/.test(c))
    );
    // those that cannot pin one qualify every name instead: a procedure that
    // commits, and the lookups whose job is the caller's path
    assert.deepEqual(unpinned.map((r) => r.fn), [
      "retask.check_program()",
      "retask.lookup_function(text)",
      "retask.process_tasks(interval)",
    ]);
    // nothing of retask's in public but the course's names
    const [{ stray }] = await db.sql<{ stray: string[] }[]>`
      SELECT coalesce(array_agg(p.proname::text ORDER BY 1), '{}') AS stray
      FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace
        AND p.proname NOT IN ('register_program', 'take_task', 'complete_task', 'process_tasks')`;
    assert.deepEqual(stray, []);
    // only the owner creates objects in it
    await db.admin(`DROP ROLE IF EXISTS ${db.name}_u; CREATE ROLE ${db.name}_u`);
    const [{ create }] = await db.sql<{ create: boolean }[]>`
      SELECT has_schema_privilege(${db.name + "_u"}, 'retask', 'CREATE') AS create`;
    assert.equal(create, false);
  } finally {
    await db.drop();
    await db.admin(`DROP ROLE IF EXISTS ${db.name}_u`);
  }
});

Deno.test("a program sees its caller's search_path; a caller's objects never reach retask's", async () => {
  const db = await freshDatabase("schema_paths", { install: true });
  try {
    await db.sql.unsafe(`
      SET search_path = shop, public;
      CREATE SCHEMA shop;
      CREATE TABLE shop.books (title text);
      INSERT INTO shop.books VALUES ('Dune');
      CREATE FUNCTION shop.first_book(params jsonb) RETURNS text LANGUAGE sql
        AS 'SELECT title FROM books';
      ALTER DATABASE ${db.name} SET search_path = shop, public;`);
    // a new session, on the database's path; one connection, so its temp table stays
    const sql = client(db.url, { max: 1 });
    try {
      // registered by its unqualified name, as the caller's path resolves it
      const [{ program_id }] = await sql`
        SELECT program_id FROM retask.upsert_program('first', 'first_book')`;
      const [{ func }] =
        await sql`SELECT func FROM retask.programs WHERE program_id = ${program_id}`;
      assert.equal(func, "shop.first_book");
      // a temporary table of the caller's named like retask's does not replace it
      await sql`CREATE TEMP TABLE tasks (task_id bigint, status text)`;
      const [{ id }] = await sql`SELECT retask.enqueue_task(${program_id}) AS id`;
      await sql`SELECT count(*) FROM retask.take_tasks(1, 'w')`;
      const [run] = await sql`SELECT * FROM retask.run_tasks(ARRAY[${id}]::bigint[], ARRAY[1])`;
      assert.equal(run.outcome, "finished");
      const [row] = await sql`SELECT status, result FROM retask.tasks WHERE task_id = ${id}`;
      assert.equal(row.status, "finished");
      // the program's unqualified `books` resolved on the session's own path
      assert.match(row.result, /^attempt 1 of 3\nfirst_book\n----------\nDune/);
    } finally {
      await sql.end();
    }
  } finally {
    await db.drop();
  }
});

Deno.test("install --schema and --no-compat", async () => {
  const db = await freshDatabase("schema_other");
  try {
    const run = await runCli(["install", "--schema", "jobs", "--no-compat"], db.url);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /^retask jobs \(schema version \d+\): applied 0001_tables\.sql/);
    const [row] = await db.sql<
      { jobs: boolean; retask: boolean; tasks: boolean; empapi: boolean }[]
    >`
      SELECT to_regnamespace('jobs') IS NOT NULL AS jobs, to_regnamespace('retask') IS NOT NULL AS retask,
             to_regclass('public.tasks') IS NOT NULL AS tasks,
             to_regnamespace('empapi') IS NOT NULL AS empapi`;
    assert.deepEqual(row, { jobs: true, retask: false, tasks: false, empapi: false });
    await requireInstalled(db.sql, "jobs");
    await assert.rejects(
      requireInstalled(db.sql),
      /not installed in database retask_test_schema_other_\w+ \(schema retask\)/,
    );
    const bad = await runCli(["install", "--schema", "Bad Name"], db.url);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /^retask: schema must be a lowercase identifier/);
  } finally {
    await db.drop();
  }
});

Deno.test("an application's own public.tasks is left alone, and the demo still runs", async () => {
  const db = await freshDatabase("schema_taken");
  try {
    await db.sql.unsafe(`
      CREATE TABLE public.tasks (id serial PRIMARY KEY, title text NOT NULL);
      INSERT INTO public.tasks (title) VALUES ('write the report');`);
    const run = await runCli(["install"], db.url);
    assert.equal(run.code, 0, run.stderr);
    const skipped = run.stdout.split("\n").filter((l) => l.startsWith("skipped"));
    assert.equal(skipped.length, 1, run.stdout);
    assert.match(skipped[0], /public\.tasks \(the name is taken\)/);
    assert.match(skipped[0], /public\.take_task \(needs public\.tasks\)/);
    assert.match(skipped[0], /use retask's own instead: retask\.tasks, /);
    const demo = await runCli(["demo", "--runs", "20", "--probability", "1"], db.url);
    assert.equal(demo.code, 0, demo.stderr);
    assert.deepEqual([...await db.sql`SELECT id, title FROM public.tasks`], [
      { id: 1, title: "write the report" },
    ]);
    const [{ n }] = await db
      .sql`SELECT count(*)::int AS n FROM retask.tasks WHERE status = 'finished'`;
    assert.equal(n, 20);
  } finally {
    await db.drop();
  }
});

Deno.test("a database installed by retask 5623551 is upgraded in place", async () => {
  const db = await freshDatabase("schema_v5");
  const role = `${db.name}_app`;
  try {
    await db.sql.unsafe(
      await Deno.readTextFile(new URL("../harness/fixtures/retask_v5.sql", import.meta.url)),
    );
    await db.admin(`DROP ROLE IF EXISTS ${role}; CREATE ROLE ${role}`);
    await db.sql.unsafe(`
      SELECT upsert_program('lucky', 'retask_lucky');
      SELECT enqueue_tasks(1, ARRAY['{"probability": 1}'::jsonb, '{"probability": 0}', '{}']);
      SELECT count(*) FROM run_tasks(ARRAY(SELECT task_id FROM take_tasks(2, 'w')), ARRAY[1, 1]);
      GRANT SELECT ON tasks TO ${role};
      REVOKE EXECUTE ON FUNCTION take_tasks(integer, text, interval, boolean) FROM PUBLIC;
      GRANT EXECUTE ON FUNCTION take_tasks(integer, text, interval, boolean) TO ${role};
      REVOKE EXECUTE ON FUNCTION empapi.get_tasks() FROM PUBLIC;
      GRANT EXECUTE ON FUNCTION empapi.get_tasks() TO ${role};`);
    const before = [
      ...await db.sql`
      SELECT task_id, program_id, status, attempt_count, result FROM tasks ORDER BY task_id`,
    ];
    const history = [...await db.sql`SELECT * FROM task_attempts ORDER BY task_id, attempt`];

    const result = await install(db.sql);
    assert.deepEqual(result.migrations, [...MIGRATIONS]);
    assert.deepEqual(result.compat.skipped, []);

    assert.deepEqual([
      ...await db.sql`
      SELECT task_id, program_id, status, attempt_count, result FROM retask.tasks ORDER BY task_id`,
    ], before);
    assert.deepEqual([
      ...await db.sql`SELECT * FROM retask.task_attempts ORDER BY task_id, attempt`,
    ], history);
    const [program] = await db.sql`SELECT program_id, name, func FROM retask.programs`;
    assert.deepEqual(program, { program_id: 1, name: "lucky", func: "retask.lucky" });
    const [gone] = await db.sql`
      SELECT to_regclass('public.retask_migrations') AS migrations, to_regproc('public.take_tasks') AS take`;
    assert.deepEqual(gone, { migrations: null, take: null });
    const [privileges] = await db.sql`
      SELECT has_table_privilege(${role}, 'public.tasks', 'SELECT') AS tasks,
             has_function_privilege(${role}, 'empapi.get_tasks()', 'EXECUTE') AS api,
             has_function_privilege('public', 'empapi.get_tasks()', 'EXECUTE') AS everyone,
             has_function_privilege(${role}, 'retask.take_tasks(integer,text,interval,boolean,bigint[],bigint[])',
                                    'EXECUTE') AS take,
             has_schema_privilege(${role}, 'retask', 'USAGE') AS usage`;
    assert.deepEqual(privileges, {
      tasks: true,
      api: true,
      everyone: false,
      take: true,
      usage: true,
    });
    // new ids go on from the old ones
    const [{ id }] = await db.sql`SELECT retask.enqueue_task(1) AS id`;
    assert.equal(id, 4);
  } finally {
    await db.drop();
    await db.admin(`DROP ROLE IF EXISTS ${role}`);
  }
});

Deno.test("install refuses a schema that is not retask's, and never takes another's course names", async () => {
  const db = await freshDatabase("schema_refused");
  try {
    await db.sql`CREATE SCHEMA shop`;
    await db.sql`CREATE FUNCTION shop.price(jsonb) RETURNS int LANGUAGE sql AS 'SELECT 1'`;
    for (
      const [schema, message] of [
        [
          "shop",
          /^retask: schema shop already holds objects that are not retask's; choose another/,
        ],
        ["public", /^retask: schema public is not retask's to use; choose another name/],
        ["user", /^retask: schema user is an SQL keyword; choose another name/],
      ] as const
    ) {
      const run = await runCli(["install", "--schema", schema], db.url);
      assert.equal(run.code, 2, run.stderr);
      assert.match(run.stderr, message);
    }
    const [{ kept }] = await db.sql`SELECT to_regproc('shop.price') IS NOT NULL AS kept`;
    assert.equal(kept, true);

    // a second retask in the same database leaves the first one's course names alone
    assert.equal((await runCli(["install"], db.url)).code, 0);
    const second = await runCli(["install", "--schema", "jobs"], db.url);
    assert.equal(second.code, 0, second.stderr);
    assert.match(
      second.stdout,
      /skipped course names that are taken: public\.programs \(the name is taken\)/,
    );
    const [{ comment }] = await db.sql`SELECT obj_description('public.tasks'::regclass) AS comment`;
    assert.equal(comment, "retask compatibility layer: retask.tasks");
    // and the demo, on a retask installed without the course names, adds none
    const bare = await runCli(["install", "--schema", "bare", "--no-compat"], db.url);
    assert.equal(bare.code, 0, bare.stderr);
    await db.sql`DROP VIEW public.tasks, public.programs CASCADE`;
    assert.equal((await runCli(["--schema", "bare", "demo", "--runs", "3"], db.url)).code, 0);
    const [{ tasks }] = await db.sql`SELECT to_regclass('public.tasks') AS tasks`;
    assert.equal(tasks, null);
  } finally {
    await db.drop();
  }
});

Deno.test("a database whose functions come from a newer retask is refused, not downgraded", async () => {
  const db = await freshDatabase("schema_release", { install: true });
  try {
    await db.sql`UPDATE retask.migrations SET release = '99.0.0' WHERE file = 'run.sql'`;
    await assert.rejects(install(db.sql), /retask 99\.0\.0's functions, newer than this retask's/);
    await assert.rejects(requireInstalled(db.sql), /newer than this retask's .*: upgrade retask/);
  } finally {
    await db.drop();
  }
});
