// empapi.run renders a program's result as the seed's text table.
import assert from "node:assert/strict";
import { client } from "../../lib/db/connect.ts";
import { enqueue, registerProgram } from "../../lib/mod.ts";
import { freshDatabase } from "../harness/mod.ts";

Deno.test("empapi.run renders the seed's text table", async (t) => {
  const db = await freshDatabase("render", { install: true });
  const { sql } = db;
  await sql.unsafe(`
    CREATE FUNCTION stock(params jsonb) RETURNS TABLE (book_id bigint, cost numeric)
    LANGUAGE sql AS $$ VALUES (1::bigint, 10.50), (1234567, 3) $$;
    CREATE FUNCTION greeting(params jsonb) RETURNS text
    LANGUAGE sql AS $$ SELECT 'Мне повезло' $$;
    CREATE FUNCTION nothing(params jsonb) RETURNS TABLE (a text, bb int)
    LANGUAGE sql AS $$ SELECT 'x', 1 WHERE false $$;
    CREATE FUNCTION holes(params jsonb) RETURNS TABLE (title text, price numeric)
    LANGUAGE sql AS $$ VALUES ('Идиот', NULL::numeric), (NULL, 7) $$;
    CREATE TYPE pair AS (left_side text, right_side text);
    CREATE FUNCTION pairs(params jsonb) RETURNS SETOF pair
    LANGUAGE sql AS $$ SELECT ROW(params ->> 'l', params ->> 'r')::pair $$;
    CREATE FUNCTION outs(params jsonb, OUT n integer, OUT word text)
    LANGUAGE sql AS $$ SELECT 42, 'ок' $$;
  `);

  async function run(func: string, params: Record<string, unknown> = {}): Promise<string> {
    const { programId } = await registerProgram(sql, func, func);
    const [id] = await enqueue(sql, { program: programId, params: [params] });
    const [row] = await sql<{ result: string }[]>`
      SELECT empapi.run(t) AS result FROM tasks t WHERE task_id = ${id}`;
    return row.result;
  }

  try {
    await t.step("a set of rows: names centred, dashes, values left-justified", async () => {
      assert.equal(
        await run("stock"),
        "book_id  cost\n------- -----\n1       10.50\n1234567 3    \n",
      );
    });

    await t.step("a scalar result is one column named after the function", async () => {
      assert.equal(await run("greeting"), "  greeting \n-----------\nМне повезло\n");
    });

    await t.step("widths count characters, not bytes", async () => {
      const [line] = (await run("greeting")).split("\n").slice(2);
      assert.equal(line.length, 11);
    });

    await t.step("zero rows print the header alone", async () => {
      assert.equal(await run("nothing"), "a bb\n- --\n");
    });

    await t.step("NULL prints as an empty cell", async () => {
      assert.equal(await run("holes"), "title price\n----- -----\nИдиот      \n      7    \n");
    });

    await t.step("composite and OUT-parameter results use their column names", async () => {
      assert.equal(
        await run("pairs", { l: "a", r: "bcd" }),
        "left_side right_side\n--------- ----------\na         bcd       \n",
      );
      assert.equal(await run("outs"), "n  word\n-- ----\n42 ок  \n");
    });

    await t.step("odd margins put the extra space where Python's str.center does", async () => {
      const [row] = await sql<{ table: string }[]>`
        SELECT retask.render_table(ARRAY['ab', 'abc', 'x'], ARRAY[['12345', '123456', '1234']]) AS table`;
      // 'ab'.center(5) == '  ab ', 'abc'.center(6) == ' abc  ', 'x'.center(4) == ' x  '
      assert.equal(row.table.split("\n")[0], "  ab   abc    x  ");
    });

    await t.step(
      "a name is first read as one identifier, as the seed's quote_ident did",
      async () => {
        await sql.unsafe(`CREATE FUNCTION "StockTask"(params jsonb) RETURNS text
                        LANGUAGE sql AS $$ SELECT 'mixed case' $$`);
        assert.equal(await run("StockTask"), "StockTask \n----------\nmixed case\n");
        const [row] = await sql`SELECT func FROM programs WHERE name = 'StockTask'`;
        assert.equal(row.func, 'public."StockTask"');
      },
    );

    await t.step("a function dropped, renamed or replaced is run as it is now", async () => {
      // one session: the query built for a function is kept per session
      const session = client(db.url, { max: 1 });
      try {
        await session.unsafe(`CREATE FUNCTION shape(params jsonb) RETURNS text
                              LANGUAGE sql AS $$ SELECT 'v1' $$`);
        const { programId } = await registerProgram(session, "shape", "shape");
        const [id] = await enqueue(session, { program: programId });
        const runIt = async () =>
          (await session`SELECT empapi.run(t) AS r FROM tasks t WHERE task_id = ${id}`)[0].r;
        assert.equal(await runIt(), "shape\n-----\nv1   \n");
        await session.unsafe(`DROP FUNCTION shape(jsonb);
          CREATE FUNCTION shape(params jsonb) RETURNS TABLE (version int, note text)
          LANGUAGE sql AS $$ SELECT 2, 'new' $$`);
        assert.equal(await runIt(), "version note\n------- ----\n2       new \n");
        // renamed: the program names a function that no longer exists
        await session.unsafe(`ALTER FUNCTION shape(jsonb) RENAME TO shape_renamed`);
        await assert.rejects(runIt(), /function public\.shape\(jsonb\) does not exist/);
        // registered again under another function: the next run uses it
        await registerProgram(session, "shape", "greeting");
        assert.equal(await runIt(), "  greeting \n-----------\nМне повезло\n");
      } finally {
        await session.end();
      }
    });

    await t.step("the session's cache cannot change what runs, only stays current", async () => {
      const session = client(db.url, { max: 1 });
      try {
        await session.unsafe(`
          CREATE TABLE shape_row (a int, b text);
          CREATE FUNCTION rows_of(params jsonb) RETURNS SETOF shape_row
          LANGUAGE sql AS $$ SELECT 1, 'x' $$;
          CREATE TABLE canary (n int);
          CREATE FUNCTION other(params jsonb) RETURNS text
          LANGUAGE sql AS $$ INSERT INTO canary VALUES (1) RETURNING 'other ran' $$;`);
        const { programId } = await registerProgram(session, "rows_of", "rows_of");
        const [id] = await enqueue(session, { program: programId });
        const runIt = async () =>
          (await session`SELECT empapi.run(t) AS r FROM tasks t WHERE task_id = ${id}`)[0].r;
        assert.equal(await runIt(), "a b\n- -\n1 x\n");
        // the result's table changes under the same function
        await session.unsafe(`ALTER TABLE shape_row ADD COLUMN c int`);
        await session.unsafe(
          `CREATE OR REPLACE FUNCTION rows_of(params jsonb) RETURNS SETOF shape_row
                              LANGUAGE sql AS $$ SELECT 1, 'x', 3 $$`,
        );
        assert.equal(await runIt(), "a b c\n- - -\n1 x 3\n");
        await session.unsafe(`ALTER TABLE shape_row DROP COLUMN b;
          CREATE OR REPLACE FUNCTION rows_of(params jsonb) RETURNS SETOF shape_row
          LANGUAGE sql AS $$ SELECT 1, 3 $$`);
        assert.equal(await runIt(), "a c\n- -\n1 3\n");
        // a session writes retask's setting itself: pointing it at another
        // function, or at SQL of its own (as an earlier cache format held), runs neither
        const [{ oid, ns }] = await session<{ oid: number; ns: number }[]>`
          SELECT oid, pronamespace AS ns FROM pg_proc WHERE oid = 'other(jsonb)'::regprocedure`;
        const [{ func }] = await session<{ func: string }[]>`
          SELECT func FROM programs WHERE program_id = ${programId}`;
        const callOther = "SELECT array_agg(ARRAY[r.c1::text]) FROM public.other($1) AS r(c1)";
        for (
          const forged of [
            [func, String(oid), "{r}", "0"],
            [func, String(oid), "other", String(ns), "{r}", callOther],
          ]
        ) {
          await session`SELECT set_config(${
            "retask.run_" + programId
          }, ${forged}::text[]::text, false)`;
          assert.equal(await runIt(), "a c\n- -\n1 3\n");
        }
        const [{ n }] = await session<{ n: number }[]>`SELECT count(*)::int AS n FROM canary`;
        assert.equal(n, 0, "the other function never ran");
      } finally {
        await session.end();
      }
    });

    await t.step("a program's function is resolved, never spliced", async () => {
      // tampering with programs.func directly is refused, and where triggers
      // are off (a superuser's replica session) does not turn it into SQL text
      const { programId } = await registerProgram(sql, "victim", "greeting");
      const tamper = (tx: typeof sql) =>
        tx`UPDATE programs SET func = 'greeting(NULL); DROP TABLE tasks; --'
           WHERE program_id = ${programId}`;
      await assert.rejects(
        tamper(sql),
        /function greeting\(NULL\); DROP TABLE tasks; --\(jsonb\) does not exist/,
      );
      await sql.begin(async (tx) => {
        await tx`SET LOCAL session_replication_role = replica`;
        await tamper(tx as unknown as typeof sql);
      });
      const [id] = await enqueue(sql, { program: programId });
      await assert.rejects(
        sql`SELECT empapi.run(t) FROM tasks t WHERE task_id = ${id}`,
        /function greeting\(NULL\); DROP TABLE tasks; --\(jsonb\) does not exist/,
      );
      const [{ exists }] = await sql<{ exists: boolean }[]>`
        SELECT to_regclass('tasks') IS NOT NULL AS exists`;
      assert.ok(exists);
    });
  } finally {
    await db.drop();
  }
});
