// Results are capped, and rendering a large one does not pad every line to its
// widest value. (Issue "Safe to deploy", item 9.)
import assert from "node:assert/strict";
import { enqueue, registerProgram } from "../../lib/mod.ts";
import { freshDatabase, runWork } from "../harness/mod.ts";

Deno.test("a result past --max-result-bytes is cut, and says so", async () => {
  const db = await freshDatabase("security_results", { install: true });
  const { sql } = db;
  try {
    await sql.unsafe(`
      CREATE FUNCTION huge(params jsonb) RETURNS text LANGUAGE sql
        AS $$ SELECT repeat('x', (params ->> 'n')::int) $$;
      CREATE FUNCTION many(params jsonb) RETURNS TABLE (n int, word text) LANGUAGE sql
        AS $$ SELECT i, 'word ' || i FROM generate_series(1, (params ->> 'n')::int) i $$;`);
    const huge = (await registerProgram(sql, "huge", "huge")).programId;
    const many = (await registerProgram(sql, "many", "many")).programId;
    const [big] = await enqueue(sql, { program: huge, params: [{ n: 5_000_000 }] });
    const [rows] = await enqueue(sql, { program: many, params: [{ n: 200_000 }] });
    const [small] = await enqueue(sql, { program: many, params: [{ n: 2 }] });
    const run = await runWork(db.url, ["--drain", "--quiet", "--max-result-bytes", "65536"]);
    assert.equal(run.code, 0, run.stderr);
    const results = new Map(
      (await sql<{ task_id: number; status: string; bytes: number; result: string }[]>`
        SELECT task_id, status, octet_length(result) AS bytes, right(result, 60) AS result
        FROM retask.tasks`).map((r) => [r.task_id, r]),
    );
    for (const id of [big, rows]) {
      const r = results.get(id)!;
      assert.equal(r.status, "finished");
      assert.ok(r.bytes < 65536 + 200, `task ${id}: ${r.bytes} bytes`);
      assert.match(r.result, /… cut: the result is larger than 65536 bytes\n$/);
    }
    const [whole] = await sql<{ result: string }[]>`
      SELECT result FROM retask.tasks WHERE task_id = ${small}`;
    assert.equal(whole.result, "attempt 1 of 3\nn  word \n- ------\n1 word 1\n2 word 2\n");
    // the default is 1 MiB, in SQL as for the worker
    const [{ bytes }] = await sql<{ bytes: number }[]>`
      SELECT octet_length(retask.run_program(${huge}, '{"n": 3000000}')) AS bytes`;
    assert.ok(bytes <= 1_048_576 + 100, `${bytes} bytes`);
  } finally {
    await db.drop();
  }
});
