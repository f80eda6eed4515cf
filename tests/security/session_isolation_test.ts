// Each task starts from a clean session: what a program leaves behind on its
// worker's connection (settings, temporary tables, advisory locks, prepared
// statements, a read-only transaction) never reaches the next task, in the
// same batch or the next. (Issue "Safe to deploy", item 4.)
import assert from "node:assert/strict";
import { enqueue, registerProgram } from "../../lib/mod.ts";
import { freshDatabase, runWork } from "../harness/mod.ts";

const PROGRAMS = `
  CREATE TABLE books (title text);
  INSERT INTO books VALUES ('a real book');
  -- what a task sees of its session
  CREATE FUNCTION observe(params jsonb) RETURNS TABLE (
      time_zone text, read_only text, path text, book text, locks bigint, prepared bigint,
      cursors bigint)
  LANGUAGE sql AS $$
    SELECT current_setting('TimeZone'), current_setting('default_transaction_read_only'),
           current_setting('search_path'), (SELECT title FROM books LIMIT 1),
           (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()),
           (SELECT count(*) FROM pg_prepared_statements WHERE from_sql),
           (SELECT count(*) FROM pg_cursors WHERE name = 'leftover')
  $$;
  CREATE FUNCTION leave_settings(params jsonb) RETURNS text LANGUAGE plpgsql AS $$
  BEGIN
    PERFORM set_config('TimeZone', 'Asia/Tokyo', false);
    PERFORM set_config('default_transaction_read_only', 'on', false);
    SET search_path = pg_temp, public;
    RETURN 'settings left';
  END $$;
  -- the issue's case: a temporary table named like retask's, and one that
  -- would shadow the next program's table
  CREATE FUNCTION leave_temp(params jsonb) RETURNS text LANGUAGE plpgsql AS $$
  BEGIN
    CREATE TEMP TABLE tasks (task_id bigint, status text);
    CREATE TEMP TABLE books (title text);
    INSERT INTO books VALUES ('a temporary book');
    RETURN 'temp left';
  END $$;
  CREATE FUNCTION leave_lock(params jsonb) RETURNS text LANGUAGE sql AS $$
    SELECT 'lock left' FROM pg_advisory_lock(4242)
  $$;
  CREATE FUNCTION leave_prepared(params jsonb) RETURNS text LANGUAGE plpgsql AS $$
  BEGIN
    EXECUTE 'PREPARE leftover AS SELECT 1';
    RETURN 'prepared left';
  END $$;
  -- a cursor left open on a temporary table (DISCARD TEMP alone would fail)
  CREATE FUNCTION leave_cursor(params jsonb) RETURNS text LANGUAGE plpgsql AS $$
  DECLARE
    c refcursor := 'leftover';
  BEGIN
    CREATE TEMP TABLE scratch AS SELECT 1 AS n;
    OPEN c FOR SELECT * FROM scratch;
    RETURN 'cursor left';
  END $$;
  CREATE FUNCTION make_read_only(params jsonb) RETURNS text LANGUAGE plpgsql AS $$
  BEGIN
    SET TRANSACTION READ ONLY;
    RETURN 'read only';
  END $$;
`;

Deno.test("what a program leaves in its session never reaches the next task", async () => {
  const db = await freshDatabase("security_session", { install: true });
  const { sql } = db;
  try {
    await sql.unsafe(PROGRAMS);
    const ids: Record<string, number> = {};
    for (
      const name of [
        "observe",
        "leave_settings",
        "leave_temp",
        "leave_lock",
        "leave_prepared",
        "leave_cursor",
      ]
    ) {
      ids[name] = (await registerProgram(sql, name, name)).programId;
    }
    ids.make_read_only =
      (await registerProgram(sql, "make_read_only", "make_read_only", { maxAttempts: 1 }))
        .programId;
    // an observer first, for what a clean session looks like; then each leaver
    // followed by an observer, twice over (the worker's first batch is one
    // task, later ones hold many)
    const order = ["observe"];
    for (let round = 0; round < 2; round++) {
      for (const leaver of Object.keys(ids).filter((n) => n !== "observe")) {
        order.push(leaver, "observe");
      }
    }
    for (const name of order) await enqueue(sql, { program: ids[name] });

    const run = await runWork(db.url, [
      "--drain",
      "--concurrency",
      "1",
      "--poll-interval",
      "50",
    ]);
    assert.equal(run.code, 0, run.stderr);

    const rows = await sql<{ program: string; status: string; result: string }[]>`
      SELECT p.name AS program, t.status, t.result
      FROM retask.tasks t JOIN retask.programs p USING (program_id) ORDER BY t.task_id`;
    const observed = rows.filter((r) => r.program === "observe");
    assert.equal(observed.length, order.filter((n) => n === "observe").length);
    const [clean] = observed;
    assert.equal(clean.status, "finished");
    assert.match(clean.result, /a real book/);
    for (const row of observed) assert.deepEqual(row, clean);
    // the read-only trick fails only its own task, which says why
    for (const row of rows.filter((r) => r.program === "make_read_only")) {
      assert.equal(row.status, "error");
      assert.match(row.result, /the program made its transaction read-only/);
    }
    const others = rows.filter((r) => r.program !== "make_read_only");
    assert.deepEqual(others.filter((r) => r.status !== "finished"), []);
  } finally {
    await db.drop();
  }
});
