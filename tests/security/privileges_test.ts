// Least privilege: a role may do what its group allows and nothing more; a
// program runs with the worker's rights, never the installer's; nothing of
// retask is PUBLIC's. (Issue "Safe to deploy", item 1.)
import assert from "node:assert/strict";
import { enqueue, install, registerProgram } from "../../lib/mod.ts";
import { freshDatabase, installCourse, loginAs, runWork, WORKER_ROLE } from "../harness/mod.ts";

Deno.test("nothing of retask or its course layer may be run by PUBLIC", async () => {
  const db = await freshDatabase("priv_public");
  try {
    await installCourse(db.sql);
    await install(db.sql);
    const open = await db.sql<{ fn: string }[]>`
      SELECT p.oid::regprocedure::text AS fn
      FROM pg_proc p
      WHERE (p.pronamespace = 'retask'::regnamespace
             OR obj_description(p.oid, 'pg_proc') LIKE 'retask compatibility layer:%')
        AND has_function_privilege('public', p.oid, 'EXECUTE')
      ORDER BY 1`;
    assert.deepEqual(open.map((r) => r.fn), []);
    const tables = await db.sql<{ rel: string }[]>`
      SELECT c.oid::regclass::text AS rel FROM pg_class c
      WHERE ((c.relnamespace = 'retask'::regnamespace AND c.relkind IN ('r', 'v'))
             OR obj_description(c.oid, 'pg_class') LIKE 'retask compatibility layer:%')
        AND (has_table_privilege('public', c.oid, 'SELECT')
           OR has_table_privilege('public', c.oid, 'INSERT')
           OR has_table_privilege('public', c.oid, 'UPDATE'))`;
    assert.deepEqual(tables.map((r) => r.rel), []);
  } finally {
    await db.drop();
  }
});

Deno.test("a role that may only enqueue cannot run a program or write a task", async () => {
  const db = await freshDatabase("priv_enqueue", { install: true });
  const { sql } = db;
  const enqueuer = await loginAs(db, "enq", ["retask_enqueue"]);
  try {
    // an admin's function: the enqueuer may not call it
    await sql.unsafe(`
      CREATE TABLE secrets (s text);
      INSERT INTO secrets VALUES ('the admin''s secret');
      CREATE FUNCTION read_secret(params jsonb) RETURNS text LANGUAGE sql
        AS $$ SELECT s FROM secrets $$;
      REVOKE EXECUTE ON FUNCTION read_secret(jsonb) FROM PUBLIC;`);
    const { programId } = await registerProgram(sql, "secret", "read_secret");
    const e = enqueuer.sql;
    const forbidden = [
      // the attack of the issue: the course's run, called directly
      () =>
        e`SELECT empapi.run(jsonb_populate_record(NULL::public.tasks,
                              ${JSON.stringify({ program_id: programId, params: {} })}::jsonb))`,
      () => e`SELECT retask.run_program(${programId}, '{}')`,
      () => e`SELECT * FROM retask.take_tasks(1)`,
      () => e`UPDATE retask.tasks SET status = 'finished'`,
      () => e`INSERT INTO retask.tasks (program_id, status) VALUES (${programId}, 'running')`,
      () => e`SELECT * FROM secrets`,
    ];
    for (const attempt of forbidden) await assert.rejects(attempt(), /permission denied/);
    // what it may do: queue a task, and read the queue
    const [{ id }] = await enqueuer.sql<{ id: number }[]>`
      SELECT retask.enqueue_task(${programId}, '{}') AS id`;
    const [{ status }] = await enqueuer.sql<{ status: string }[]>`
      SELECT status FROM retask.tasks WHERE task_id = ${id}`;
    assert.equal(status, "scheduled");
  } finally {
    await enqueuer.sql.end();
    await db.drop();
    await db.admin(`DROP ROLE IF EXISTS ${enqueuer.role}`);
  }
});

Deno.test("a program runs with the worker's rights, not the installer's", async () => {
  const db = await freshDatabase("priv_worker", { install: true });
  const { sql } = db;
  try {
    // created by the installer (a superuser), as a course's programs are
    await sql.unsafe(`
      CREATE FUNCTION who_runs(params jsonb) RETURNS TABLE (who text, super text)
      LANGUAGE sql AS $$ SELECT current_user::text, current_setting('is_superuser') $$;
      CREATE TABLE admin_only (n int);
      REVOKE ALL ON admin_only FROM ${WORKER_ROLE};
      CREATE FUNCTION touch_admin_table(params jsonb) RETURNS text LANGUAGE sql
        AS $$ INSERT INTO admin_only VALUES (1) RETURNING 'wrote' $$;`);
    const who = (await registerProgram(sql, "who", "who_runs")).programId;
    const touch = (await registerProgram(sql, "touch", "touch_admin_table", { maxAttempts: 1 }))
      .programId;
    const [whoTask] = await enqueue(sql, { program: who });
    const [touchTask] = await enqueue(sql, { program: touch });
    const run = await runWork(db.url, ["--drain", "--poll-interval", "50"]);
    assert.equal(run.code, 0, run.stderr);
    const rows = await sql<{ task_id: number; status: string; result: string }[]>`
      SELECT task_id, status, result FROM retask.tasks ORDER BY task_id`;
    assert.deepEqual(rows.map((r) => [r.task_id, r.status]), [[whoTask, "finished"], [
      touchTask,
      "error",
    ]]);
    assert.match(rows[0].result, new RegExp(`^${WORKER_ROLE}\\s+off\\s*$`, "m"));
    assert.match(rows[1].result, /permission denied for table admin_only/);
    const [{ n }] = await sql<{ n: number }[]>`SELECT count(*)::int AS n FROM admin_only`;
    assert.equal(n, 0);
  } finally {
    await db.drop();
  }
});

Deno.test("a role registers only functions it may execute, and never a temporary one", async () => {
  const db = await freshDatabase("priv_register", { install: true });
  const { sql } = db;
  const registrar = await loginAs(db, "reg", ["retask_register"]);
  try {
    await sql.unsafe(`
      CREATE FUNCTION admin_job(params jsonb) RETURNS text LANGUAGE sql AS $$ SELECT 'admin' $$;
      REVOKE EXECUTE ON FUNCTION admin_job(jsonb) FROM PUBLIC;
      CREATE FUNCTION open_job(params jsonb) RETURNS text LANGUAGE sql AS $$ SELECT 'open' $$;`);
    await assert.rejects(
      registrar.sql`SELECT * FROM retask.upsert_program('admin', 'admin_job')`,
      /permission denied for function public\.admin_job\(jsonb\)/,
    );
    // nor by writing the row itself
    await assert.rejects(
      registrar.sql`INSERT INTO retask.programs (name, func) VALUES ('admin', 'public.admin_job')`,
      /permission denied for function public\.admin_job\(jsonb\)/,
    );
    await assert.rejects(
      registrar.sql.begin(async (tx) => {
        await tx`CREATE FUNCTION pg_temp.nightly(params jsonb) RETURNS text
                 LANGUAGE sql AS $$ SELECT 'temp' $$`;
        await tx`SELECT * FROM retask.upsert_program('nightly', 'pg_temp.nightly')`;
      }),
      /is a temporary function/,
    );
    const [ok] = await registrar.sql<{ program_id: number }[]>`
      SELECT program_id FROM retask.upsert_program('open', 'open_job')`;
    assert.ok(ok.program_id > 0);
    // the course's register_program, with the same rule
    await assert.rejects(
      registrar.sql`SELECT register_program('admin2', 'admin_job')`,
      /permission denied for function public\.admin_job\(jsonb\)/,
    );
    const [{ names }] = await sql<{ names: string[] }[]>`
      SELECT array_agg(name ORDER BY name) AS names FROM retask.programs`;
    assert.deepEqual(names, ["open"]);
  } finally {
    await registrar.sql.end();
    await db.drop();
    await db.admin(`DROP ROLE IF EXISTS ${registrar.role}`);
  }
});

Deno.test("the course's API keeps working for the role the course granted it to", async () => {
  const db = await freshDatabase("priv_course");
  const app = await loginAs(db, "app", []);
  try {
    await installCourse(db.sql, { history: true });
    // the course's grants: the admin API to its application's role
    await db.sql.unsafe(`
      GRANT USAGE ON SCHEMA empapi TO ${app.role};
      GRANT EXECUTE ON FUNCTION empapi.run_program(bigint, jsonb), empapi.get_tasks()
        TO ${app.role};`);
    await install(db.sql);
    const [{ id }] = await app.sql<{ id: number }[]>`SELECT empapi.run_program(1, '{}') AS id`;
    const tasks = await app.sql<{ task_id: number }[]>`SELECT task_id FROM empapi.get_tasks()`;
    assert.ok(tasks.some((t) => t.task_id === id));
    // what it was never granted it still may not do: run a program itself
    await assert.rejects(
      app.sql`SELECT empapi.run(t) FROM public.tasks t WHERE task_id = ${id}`,
      /permission denied/,
    );
  } finally {
    await app.sql.end();
    await db.drop();
    await db.admin(`DROP ROLE IF EXISTS ${app.role}`);
  }
});

Deno.test("a worker may not operate the queue, and a grant of a function makes no worker", async () => {
  const db = await freshDatabase("priv_operate", { install: true });
  const { sql } = db;
  const caller = await loginAs(db, "caller", []);
  try {
    // what a program (running with the worker's rights) must not reach
    const [rights] = await sql<Record<string, boolean>[]>`
      SELECT has_function_privilege(${WORKER_ROLE}, 'retask.delete_tasks(bigint[])', 'EXECUTE')
               AS delete,
             has_function_privilege(${WORKER_ROLE},
               'retask.retry_tasks(bigint[], bigint, text, integer)', 'EXECUTE') AS retry,
             has_function_privilege(${WORKER_ROLE},
               'retask.cancel_tasks(bigint[], bigint, text)', 'EXECUTE') AS cancel,
             has_function_privilege(${WORKER_ROLE}, 'retask.pause_program(bigint)', 'EXECUTE')
               AS pause,
             has_function_privilege(${WORKER_ROLE},
               'retask.prune_tasks(interval, text[], integer)', 'EXECUTE') AS prune`;
    assert.deepEqual(rights, {
      delete: false,
      retry: false,
      cancel: false,
      pause: false,
      prune: true,
    });
    // an administrator's grant of one retask function, kept across a refresh,
    // does not make its grantee a member of any group
    await sql.unsafe(`GRANT EXECUTE ON FUNCTION retask.tasks_pending() TO ${caller.role};
      UPDATE retask.migrations SET checksum = 'older' WHERE file = 'run.sql';`);
    await install(sql);
    const [{ member, pending }] = await sql<{ member: boolean; pending: boolean }[]>`
      SELECT pg_has_role(${caller.role}, 'retask_worker', 'MEMBER') AS member,
             has_function_privilege(${caller.role}, 'retask.tasks_pending()', 'EXECUTE') AS pending`;
    assert.deepEqual({ member, pending }, { member: false, pending: true });
  } finally {
    await caller.sql.end();
    await db.drop();
    await db.admin(`DROP ROLE IF EXISTS ${caller.role}`);
  }
});
