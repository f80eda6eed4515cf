// `install`: migrations applied once, concurrently safe, and the seed's
// database upgraded in place without losing a row.
import assert from "node:assert/strict";
import {
  COMPAT_FILE,
  FUNCTION_FILES,
  install,
  MIGRATIONS,
  requireInstalled,
  SCHEMA_VERSION,
} from "../../lib/db/schema.ts";
import { freshDatabase, installCourse } from "../harness/mod.ts";

Deno.test("MIGRATIONS and the function files list every file in sql/, in order", async () => {
  const list = async (path: string) => {
    const files = [];
    for await (const entry of Deno.readDir(new URL(path, import.meta.url))) {
      if (entry.isFile && entry.name.endsWith(".sql")) files.push(entry.name);
    }
    return files.sort();
  };
  const migrations = await list("../../sql/migrations/");
  assert.deepEqual([...MIGRATIONS], migrations);
  migrations.forEach((file, i) =>
    assert.match(file, new RegExp(`^${String(i + 1).padStart(4, "0")}_`))
  );
  assert.deepEqual([...FUNCTION_FILES, COMPAT_FILE].sort(), await list("../../sql/"));
});

Deno.test("install applies each file once; a second run changes nothing", async () => {
  const db = await freshDatabase("install");
  try {
    const first = await install(db.sql);
    assert.equal(first.version, SCHEMA_VERSION);
    assert.deepEqual(first.migrations, [...MIGRATIONS]);
    assert.deepEqual(first.functions, [...FUNCTION_FILES]);
    assert.ok(first.compat.installed.includes("public.tasks"));
    const schema = () =>
      db.sql<{ oid: number; name: string; definition: string }[]>`
        SELECT p.oid::int AS oid, p.oid::regprocedure::text AS name,
               pg_get_functiondef(p.oid) AS definition
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname IN ('retask', 'public', 'empapi') ORDER BY 2`;
    const before = await schema();
    const second = await install(db.sql);
    assert.deepEqual(second, {
      schema: "retask",
      version: SCHEMA_VERSION,
      migrations: [],
      functions: [],
      compat: { installed: [], skipped: [] },
      warnings: [],
    });
    assert.deepEqual(await schema(), before, "not even re-created");
    const [{ count }] = await db.sql<{ count: number }[]>`
      SELECT count(*)::int AS count FROM retask.migrations`;
    assert.equal(count, MIGRATIONS.length + FUNCTION_FILES.length + 1);
  } finally {
    await db.drop();
  }
});

Deno.test("ten concurrent installs all succeed and apply each migration once", async () => {
  const db = await freshDatabase("install_race");
  try {
    const results = await Promise.all(Array.from({ length: 10 }, () => install(db.sql)));
    assert.ok(results.every((r) => r.version === SCHEMA_VERSION));
    const applied = results.flatMap((r) => r.migrations).sort();
    assert.deepEqual(applied, [...MIGRATIONS].sort(), "each migration applied by exactly one");
  } finally {
    await db.drop();
  }
});

Deno.test("a migration that changed after it was applied is refused", async () => {
  const db = await freshDatabase("install_changed", { install: true });
  try {
    await db.sql`UPDATE retask.migrations SET checksum = 'edited' WHERE version = 1`;
    await assert.rejects(
      install(db.sql),
      /migration 0001_tables.sql differs from the one applied to this database/,
    );
    // nor does a worker or command start on it
    await assert.rejects(
      requireInstalled(db.sql),
      /migration 0001_tables.sql differs from the one applied to this database/,
    );
  } finally {
    await db.drop();
  }
});

Deno.test("a function file that changed is applied again, keeping what was granted", async () => {
  const db = await freshDatabase("install_refresh", { install: true });
  const role = `${db.name}_w`;
  try {
    await db.admin(`CREATE ROLE ${role}`);
    await db.sql.unsafe(`
      GRANT EXECUTE ON FUNCTION retask.tasks_pending() TO ${role};
      GRANT EXECUTE ON FUNCTION empapi.get_tasks() TO ${role};
      REVOKE EXECUTE ON FUNCTION empapi.get_tasks() FROM PUBLIC;
      -- what an older version left behind: a function the files no longer define
      CREATE FUNCTION retask.dropped_since() RETURNS int LANGUAGE sql AS 'SELECT 1';
      UPDATE retask.migrations SET checksum = 'older' WHERE file = 'state_machine.sql';`);
    await assert.rejects(requireInstalled(db.sql), /from another version .*; run retask install/);
    const result = await install(db.sql);
    assert.deepEqual(result.migrations, []);
    assert.deepEqual(result.functions, [...FUNCTION_FILES]);
    await requireInstalled(db.sql);
    const [row] = await db.sql`
      SELECT to_regproc('retask.dropped_since') IS NULL AS gone,
             has_function_privilege(${role}, 'retask.tasks_pending()', 'EXECUTE') AS pending,
             has_function_privilege(${role}, 'empapi.get_tasks()', 'EXECUTE') AS api,
             has_function_privilege('public', 'empapi.get_tasks()', 'EXECUTE') AS everyone`;
    assert.deepEqual(row, { gone: true, pending: true, api: true, everyone: false });
  } finally {
    await db.drop();
    await db.admin(`DROP ROLE IF EXISTS ${role}`);
  }
});

Deno.test("a newer schema than this code knows is refused", async () => {
  const db = await freshDatabase("install_newer", { install: true });
  try {
    await db.sql`INSERT INTO retask.migrations (file, version, checksum)
                 VALUES ('0999_future.sql', 999, 'x')`;
    await assert.rejects(install(db.sql), /schema version 999, newer than this retask's/);
    // nor does a worker or command start against it: it may call what the newer one replaced
    await assert.rejects(
      requireInstalled(db.sql),
      /schema version 999, newer than this retask's \d+: upgrade retask/,
    );
  } finally {
    await db.drop();
  }
});

Deno.test("an install that fails part-way changes nothing", async () => {
  const db = await freshDatabase("install_fails");
  try {
    await installCourse(db.sql, { history: true });
    // the user's own view on a course function that install replaces
    await db.sql`CREATE VIEW my_tasks AS SELECT * FROM empapi.get_tasks()`;
    const columns = () =>
      db.sql<{ column_name: string }[]>`
        SELECT table_schema, column_name FROM information_schema.columns
        WHERE table_name = 'tasks' ORDER BY ordinal_position`;
    const before = [...await columns()];
    await assert.rejects(
      install(db.sql),
      /^RetaskError: migration 0001_tables\.sql failed: cannot drop function empapi\.get_tasks\(\) because other objects depend on it \(view public\.my_tasks depends on function empapi\.get_tasks\(\)\); nothing was changed$/,
    );
    assert.deepEqual([...await columns()], before, "the tables were not moved nor changed");
    const [{ schema }] = await db.sql<{ schema: string | null }[]>`
      SELECT to_regnamespace('retask')::text AS schema`;
    assert.equal(schema, null);
    await db.sql`DROP VIEW my_tasks`;
    assert.equal((await install(db.sql)).version, SCHEMA_VERSION);
  } finally {
    await db.drop();
  }
});

Deno.test("the seed's database is upgraded in place, keeping every row", async () => {
  const db = await freshDatabase("install_seed");
  const role = `${db.name}_api`;
  try {
    await installCourse(db.sql, { history: true });
    // the course database's privileges: the API for one role, not for everyone
    await db.admin(`CREATE ROLE ${role}`);
    await db.sql.unsafe(`
      REVOKE EXECUTE ON FUNCTION empapi.get_tasks(), empapi.run_program(bigint, jsonb) FROM PUBLIC;
      GRANT EXECUTE ON FUNCTION empapi.get_tasks(), empapi.run_program(bigint, jsonb) TO ${role};
      GRANT USAGE ON SCHEMA empapi TO ${role};`);
    const seedColumns = () =>
      db.sql<Record<string, unknown>[]>`
        SELECT task_id, program_id, status, params, pid, started, finished, result, host, port
        FROM tasks ORDER BY task_id`;
    const tasksBefore = [...await seedColumns()];
    const programsBefore = [...await db.sql`SELECT program_id, name, func FROM programs`];

    await install(db.sql);

    assert.deepEqual([...await seedColumns()], tasksBefore);
    assert.deepEqual(
      [...await db.sql`SELECT program_id, name, func FROM programs`],
      programsBefore,
    );
    const counts = await db.sql<{ status: string; attempt_count: number }[]>`
      SELECT status, attempt_count FROM tasks ORDER BY task_id`;
    assert.deepEqual(
      counts.map((r) => [r.status, r.attempt_count]),
      [["finished", 1], ["error", 1], ["running", 1], ["scheduled", 0], ["scheduled", 0]],
      "a row that left 'scheduled' before retask counts as one attempt",
    );
    const history = await db.sql<{ task_id: number; outcome: string }[]>`
      SELECT task_id, outcome FROM retask.task_attempts ORDER BY task_id`;
    assert.deepEqual(
      history.map((h) => [h.task_id, h.outcome]),
      [[1, "finished"], [2, "error"]],
      "and that attempt has its history row, once it has ended",
    );
    // the course application's columns keep their names and order
    const [first] = await db.sql`SELECT * FROM empapi.get_tasks() LIMIT 1`;
    assert.deepEqual(
      Object.keys(first).slice(0, 6),
      ["task_id", "name", "status", "params", "started", "finished"],
    );

    // The old rows now go through the new mechanism: the running one's backend
    // is long gone, and the seed's program runs with the new renderer.
    const [{ rescued }] = await db.sql<{ rescued: number }[]>`
      SELECT retask.rescue_lost_tasks() AS rescued`;
    assert.equal(rescued, 1);
    const [taken] = await db.sql<{ task_id: number; result: string }[]>`
      SELECT t.task_id, empapi.run(t) AS result FROM take_task() t`;
    // runnable longest first: the old scheduled row before the one rescued just now
    assert.equal(taken.task_id, 4);
    assert.equal(taken.result, "book_id  cost\n------- -----\n1       10.50\n");
    // the seed's names still answer with the seed's arguments
    const [{ id }] = await db.sql<{ id: number }[]>`
      SELECT empapi.run_program(1, '{"a": 6}') AS id`;
    assert.equal(id, 6);
    const [{ program }] = await db.sql<{ program: number }[]>`
      SELECT register_program('Another report', 'stock_task') AS program`;
    assert.equal(program, 2);
    // the replaced functions keep the privileges the seed's had, but not
    // PUBLIC's: the role granted them joined the groups they are granted to
    // (read for get_tasks, enqueue for run_program), and reads task_results too
    const privileges = await db.sql<{ fn: string; api: boolean; everyone: boolean }[]>`
      SELECT p.oid::regprocedure::text AS fn,
             has_function_privilege(${role}, p.oid, 'EXECUTE') AS api,
             coalesce(p.proacl::text[] && ARRAY['=X/' || pg_get_userbyid(p.proowner)], true) AS everyone
      FROM pg_proc p WHERE p.pronamespace = 'empapi'::regnamespace
        AND p.proname IN ('get_tasks', 'run_program', 'task_results')
      ORDER BY 1`;
    assert.deepEqual(privileges.map((p) => [p.fn, p.api, p.everyone]), [
      ["empapi.get_tasks()", true, false],
      ["empapi.run_program(bigint,jsonb,text,text)", true, false],
      ["empapi.task_results(bigint)", true, false],
    ]);
    // and the course's role can still use them, as it could before
    const asRole = await db.sql.begin(async (tx) => {
      await tx.unsafe(`SET LOCAL ROLE ${role}`);
      const [{ queued }] = await tx`SELECT empapi.run_program(1, '{"b": 1}') AS queued`;
      const tasks = await tx`SELECT task_id FROM empapi.get_tasks()`;
      return { queued, seen: tasks.some((t) => t.task_id === queued) };
    });
    assert.deepEqual(asRole, { queued: 7, seen: true });
  } finally {
    await db.drop();
    await db.admin(`DROP ROLE IF EXISTS ${role}`);
  }
});
