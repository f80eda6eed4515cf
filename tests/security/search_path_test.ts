// No object a role may create in public reaches retask's own functions, and
// install says when every role may create there. (Issue "Safe to deploy", item 3.)
import assert from "node:assert/strict";
import { enqueue, registerProgram } from "../../lib/mod.ts";
import { freshDatabase, runCli, TEST_FUNCTIONS } from "../harness/mod.ts";

Deno.test("an operator planted in public does not run in a superuser worker's bookkeeping", async () => {
  const db = await freshDatabase("security_path", { install: true });
  const { sql } = db;
  const role = `${db.name}_evil`;
  try {
    await sql.unsafe(TEST_FUNCTIONS);
    const ok = (await registerProgram(sql, "ok", "always_ok")).programId;
    const fail = (await registerProgram(sql, "fail", "always_fail", { maxAttempts: 2 }))
      .programId;
    await db.admin(`DROP ROLE IF EXISTS ${role}; CREATE ROLE ${role}`);
    // what PostgreSQL 14 allows every role: objects of its own in public, here
    // an exact-match text || bigint and text || integer that make their caller
    // grant it superuser
    await sql.unsafe(`
      GRANT CREATE ON SCHEMA public TO ${role};
      SET ROLE ${role};
      CREATE TABLE public.evil_calls (n int);
      CREATE FUNCTION public.evil_cat(text, bigint) RETURNS text LANGUAGE sql AS
        'INSERT INTO public.evil_calls VALUES (1); SELECT pg_catalog.textcat($1, $2::text)';
      CREATE FUNCTION public.evil_cat(text, integer) RETURNS text LANGUAGE sql AS
        'INSERT INTO public.evil_calls VALUES (1); SELECT pg_catalog.textcat($1, $2::text)';
      CREATE OPERATOR public.|| (LEFTARG = text, RIGHTARG = bigint, FUNCTION = public.evil_cat);
      CREATE OPERATOR public.|| (LEFTARG = text, RIGHTARG = integer, FUNCTION = public.evil_cat);
      GRANT INSERT ON public.evil_calls TO PUBLIC;
      RESET ROLE;`);
    await enqueue(sql, { program: ok, params: Array(20).fill({}) });
    await enqueue(sql, { program: fail, params: Array(5).fill({}) });
    // the worst case: a worker connected as a superuser (not the harness's
    // worker role)
    const run = await runCli(["work", "--drain", "--poll-interval", "50"], db.url);
    assert.equal(run.code, 0, run.stderr);
    const [row] = await sql<{ calls: number; finished: number; failed: number }[]>`
      SELECT (SELECT count(*) FROM public.evil_calls)::int AS calls,
             (SELECT count(*) FROM retask.tasks WHERE status = 'finished')::int AS finished,
             (SELECT count(*) FROM retask.tasks WHERE status = 'error')::int AS failed`;
    assert.deepEqual(row, { calls: 0, finished: 20, failed: 5 });
    // the course's names and the retask schema's functions, called directly
    await sql`SELECT retask.rescue_lost_tasks(), empapi.get_tasks()`;
    const [{ calls }] = await sql<{ calls: number }[]>`
      SELECT count(*)::int AS calls FROM public.evil_calls`;
    assert.equal(calls, 0);
  } finally {
    await db.drop();
    await db.admin(`DROP ROLE IF EXISTS ${role}`);
  }
});

Deno.test("install warns when every role may create objects in public", async () => {
  const db = await freshDatabase("security_public");
  try {
    await db.sql`GRANT CREATE ON SCHEMA public TO PUBLIC`;
    const open = await runCli(["install"], db.url);
    assert.equal(open.code, 0, open.stderr);
    assert.match(
      open.stderr,
      /^retask: warning: every role may create objects in schema public, .*REVOKE CREATE ON SCHEMA public FROM PUBLIC\n$/,
    );
    await db.sql`REVOKE CREATE ON SCHEMA public FROM PUBLIC`;
    const closed = await runCli(["install"], db.url);
    assert.equal(closed.stderr, "");
  } finally {
    await db.drop();
  }
});
