// Registering programs and queueing tasks: bad input gets a clear error and
// changes nothing.
import assert from "node:assert/strict";
import { toRetaskError } from "../../lib/errors.ts";
import { enqueue, registerProgram } from "../../lib/mod.ts";
import { freshDatabase, TEST_FUNCTIONS } from "../harness/mod.ts";

Deno.test("programs and enqueue", async (t) => {
  const db = await freshDatabase("programs", { install: true });
  const { sql } = db;
  await sql.unsafe(TEST_FUNCTIONS);
  await sql.unsafe(`
    CREATE FUNCTION takes_text(params text) RETURNS text LANGUAGE sql AS $$ SELECT params $$;
    CREATE FUNCTION takes_two(params jsonb, extra int) RETURNS text LANGUAGE sql AS $$ SELECT 'x' $$;
    CREATE PROCEDURE a_procedure(params jsonb) LANGUAGE sql AS $$ SELECT 1 $$;
    CREATE FUNCTION untyped(params jsonb) RETURNS SETOF record LANGUAGE sql AS $$ SELECT 1, 2 $$;
    CREATE SCHEMA "odd schema";
    CREATE FUNCTION "odd schema"."semi;colon"(params jsonb) RETURNS text LANGUAGE sql AS $$ SELECT 'odd' $$;
  `);
  const ok = (await registerProgram(sql, "ok", "always_ok")).programId;

  const snapshot = async () => [
    ...await sql`SELECT * FROM programs ORDER BY program_id`,
    ...await sql`SELECT * FROM tasks ORDER BY task_id`,
  ];
  /** Asserts `action` fails with `message` as an input error (exit 2) and changes nothing. */
  async function rejected(action: () => Promise<unknown>, message: RegExp) {
    const before = await snapshot();
    const error = await action().then(() => null, (e) => e);
    assert.ok(error, `expected a failure matching ${message}`);
    const failure = toRetaskError(error);
    assert.match(failure.message, message);
    assert.equal(failure.exitCode, 2, `input error, not a crash: ${failure.message}`);
    assert.deepEqual(await snapshot(), before);
  }

  try {
    await t.step("register returns the id; the same name again updates it", async () => {
      const first = await registerProgram(sql, "report", "always_ok");
      assert.equal(first.created, true);
      const again = await registerProgram(sql, "report", "always_fail", { maxAttempts: 5 });
      assert.deepEqual(again, { programId: first.programId, created: false });
      const [row] = await sql`SELECT func, max_attempts FROM programs
                              WHERE program_id = ${first.programId}`;
      assert.deepEqual({ ...row }, { func: "public.always_fail", max_attempts: 5 });
    });

    await t.step("quoted schema and function names are stored quoted", async () => {
      const { programId } = await registerProgram(sql, "odd", '"odd schema"."semi;colon"');
      const [row] = await sql`SELECT func FROM programs WHERE program_id = ${programId}`;
      assert.equal(row.func, '"odd schema"."semi;colon"');
      const [id] = await enqueue(sql, { program: programId });
      const [run] = await sql`SELECT empapi.run(t) AS result FROM tasks t WHERE task_id = ${id}`;
      assert.equal(run.result, "semi;colon\n----------\nodd       \n");
    });

    await t.step("a function that is not a program is refused", async () => {
      await rejected(
        () => registerProgram(sql, "x", "no_such_function"),
        /no_such_function\(jsonb\) does not exist/,
      );
      await rejected(
        () => registerProgram(sql, "x", "takes_text"),
        /takes_text\(jsonb\) does not exist/,
      );
      await rejected(
        () => registerProgram(sql, "x", "takes_two"),
        /takes_two\(jsonb\) does not exist/,
      );
      await rejected(() => registerProgram(sql, "x", "a_procedure"), /is not a plain function/);
      await rejected(() => registerProgram(sql, "x", "untyped"), /returns an untyped record/);
      await rejected(() => registerProgram(sql, "x", ""), /function name is empty/);
      await rejected(() => registerProgram(sql, "", "always_ok"), /program name is empty/);
    });

    await t.step("quotes and semicolons in names are data, never SQL", async () => {
      for (
        const func of [
          "always_ok; DROP TABLE tasks",
          "always_ok'); DROP TABLE tasks; --",
          '"always_ok',
        ]
      ) {
        await rejected(() => registerProgram(sql, "x", func), /does not exist/);
      }
      // as a program *name* they are just text
      const { programId } = await registerProgram(sql, "it's; DROP TABLE tasks; --", "always_ok");
      const [row] = await sql`SELECT name FROM programs WHERE program_id = ${programId}`;
      assert.equal(row.name, "it's; DROP TABLE tasks; --");
    });

    await t.step("bad retry policies are refused", async () => {
      await rejected(
        () => registerProgram(sql, "ok", "always_ok", { maxAttempts: 0 }),
        /between 1 and 100/,
      );
      await rejected(
        () => registerProgram(sql, "ok", "always_ok", { retryBackoff: "linear" as "fixed" }),
        /fixed or exponential/,
      );
      await rejected(
        () => registerProgram(sql, "ok", "always_ok", { retryDelay: "soon" }),
        /interval/,
      );
      await rejected(
        () => registerProgram(sql, "ok", "always_ok", { retryDelay: "-1 s" }),
        /negative/,
      );
      // a delay no timestamp can hold would leave the task stuck in running
      await rejected(
        () => registerProgram(sql, "ok", "always_ok", { retryDelay: "300000 years" }),
        /at most 1 year/,
      );
      const [{ longest }] = await sql`
        SELECT extract(epoch FROM retask.retry_delay_after(30, 'exponential', '1 year', '1 year'))
               <= extract(epoch FROM interval '1 year') AS longest`;
      assert.equal(longest, true, "exponential backoff stays under its cap without overflowing");
    });

    await t.step("enqueue refuses an unknown program, naming those there are", async () => {
      await rejected(
        () => enqueue(sql, { program: 9999 }),
        /unknown program "9999"; registered: ok \(1\)/,
      );
      await rejected(() => enqueue(sql, { program: "nope" }), /unknown program "nope"/);
      await rejected(
        () => sql`SELECT empapi.run_program(9999, '{}')`,
        /program 9999 does not exist/,
      );
    });

    await t.step("params must be a JSON object", async () => {
      await rejected(
        () => enqueue(sql, { program: ok, params: [[1, 2] as unknown as Record<string, unknown>] }),
        /must be a JSON object, got array/,
      );
      await rejected(
        () => enqueue(sql, { program: ok, params: [{}, 7 as unknown as Record<string, unknown>] }),
        /got number/,
      );
      await rejected(() => sql`SELECT empapi.run_program(${ok}, '"text"')`, /got string/);
      await rejected(
        () => sql`SELECT empapi.run_program(${ok}, '{broken')`,
        /invalid input syntax for type json/,
      );
    });

    await t.step("host and port go together, and port is a port", async () => {
      await rejected(() => enqueue(sql, { program: ok, port: 5432 }), /host and port go together/);
      await rejected(() => enqueue(sql, { program: ok, host: "db2" }), /host and port go together/);
      await rejected(
        () => enqueue(sql, { program: ok, host: "db2", port: "54x" }),
        /port must be a number/,
      );
      await rejected(
        () => enqueue(sql, { program: ok, host: "db2", port: 70000 }),
        /port must be a number/,
      );
      await rejected(() => enqueue(sql, { program: ok, maxAttempts: 101 }), /between 1 and 100/);
    });

    await t.step("a batch is all or nothing, in order", async () => {
      const ids = await enqueue(sql, { program: "ok", params: [{ n: 1 }, { n: 2 }, { n: 3 }] });
      assert.deepEqual(ids, [ids[0], ids[0] + 1, ids[0] + 2]);
      const rows = await sql`SELECT params FROM tasks WHERE task_id = ANY(${ids}) ORDER BY task_id`;
      assert.deepEqual(rows.map((r) => r.params), [{ n: 1 }, { n: 2 }, { n: 3 }]);
    });

    await t.step("enqueue inside the caller's transaction rolls back with it", async () => {
      const before = await snapshot();
      await sql.begin(async (tx) => {
        await enqueue(tx, { program: ok });
        throw new Error("the caller changed its mind");
      }).catch(() => {});
      assert.deepEqual(await snapshot(), before);
    });
  } finally {
    await db.drop();
  }
});
