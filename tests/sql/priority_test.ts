// Priorities (sql/programs.sql, sql/state_machine.sql): what a task gets at
// enqueue, the order take_tasks takes in, and that a take of 50 among a
// million scheduled tasks reads the index, a few pages of it, whatever the
// tasks' priorities and times (EXPLAIN through auto_explain: no timings).
import assert from "node:assert/strict";
import postgres from "npm:postgres@3.4.9";
import { enqueue } from "../../lib/queue/enqueue.ts";
import { registerProgram } from "../../lib/queue/programs.ts";
import { freshDatabase, takeTasks, TEST_FUNCTIONS } from "../harness/mod.ts";

/** A plan node as auto_explain prints it in JSON (the fields looked at). */
interface PlanNode {
  "Node Type": string;
  "Relation Name"?: string;
  "Index Name"?: string;
  "Index Cond"?: string;
  "Actual Rows": number;
  "Shared Hit Blocks": number;
  "Shared Read Blocks": number;
  Plans?: PlanNode[];
}

const nodes = (plan: PlanNode): PlanNode[] => [plan, ...(plan.Plans ?? []).flatMap(nodes)];

Deno.test("priorities", async (t) => {
  const db = await freshDatabase("sql_priority", { install: true });
  const { sql } = db;
  await sql.unsafe(TEST_FUNCTIONS);
  const ok = (await registerProgram(sql, "ok", "always_ok")).programId;
  const urgent = (await registerProgram(sql, "urgent", "always_ok", { priority: 7 })).programId;
  const clear = () => sql`DELETE FROM retask.tasks`;
  const priorityOf = async (id: number) =>
    (await sql<{ priority: number }[]>`SELECT priority FROM retask.tasks WHERE task_id = ${id}`)[0]
      .priority;

  try {
    await t.step("a task gets its own priority, else its program's", async () => {
      const [plain] = await enqueue(sql, { program: ok });
      const [own] = await enqueue(sql, { program: ok, priority: -5 });
      const [inherited] = await enqueue(sql, { program: urgent });
      const [overridden] = await enqueue(sql, { program: urgent, priority: 0 });
      assert.deepEqual(
        await Promise.all([plain, own, inherited, overridden].map(priorityOf)),
        [0, -5, 7, 0],
      );
      // the course's empapi.run_program, positional and without a priority, gets the program's
      const [{ id }] = await sql<
        { id: number }[]
      >`SELECT empapi.run_program(${urgent}, '{}') AS id`;
      assert.equal(await priorityOf(id), 7);
      await registerProgram(sql, "urgent", "always_ok", { priority: 3 });
      const [later] = await enqueue(sql, { program: urgent });
      assert.equal(await priorityOf(later), 3, "re-registering changes it for new tasks");
      assert.equal(await priorityOf(inherited), 7, "and not for tasks already queued");
    });

    await t.step("a priority out of range is refused with nothing queued", async () => {
      await clear();
      for (const priority of [1_000_001, -1_000_001]) {
        await assert.rejects(
          enqueue(sql, { program: ok, priority }),
          /priority must be between -1000000 and 1000000, got -?1000001/,
        );
        await assert.rejects(
          registerProgram(sql, "ok", "always_ok", { priority }),
          /priority must be between -1000000 and 1000000/,
        );
      }
      const [{ n }] = await sql<{ n: number }[]>`SELECT count(*)::int AS n FROM retask.tasks`;
      assert.equal(n, 0);
    });

    await t.step("takes by priority, then run_after, then id", async () => {
      await clear();
      const ago = (s: number) => new Date(Date.now() - s * 1000);
      const low = await enqueue(sql, { program: ok, priority: -1, runAfter: ago(60) });
      const midOld = await enqueue(sql, { program: ok, priority: 5, runAfter: ago(30) });
      const midNew = await enqueue(sql, {
        program: ok,
        priority: 5,
        runAfter: ago(10),
        params: [{}, {}],
      });
      const high = await enqueue(sql, { program: ok, priority: 9, runAfter: ago(1) });
      await enqueue(sql, { program: ok, priority: 100, runAfter: new Date(Date.now() + 3600_000) });
      const order = [];
      for (let i = 0; i < 6; i++) order.push(...(await takeTasks(sql, 1)).map((r) => r.task_id));
      assert.deepEqual(order, [...high, ...midOld, ...midNew, ...low], "not the later one at 100");
    });

    await t.step("a take of 2 across priorities takes the highest runnable ones", async () => {
      await clear();
      const ids = [];
      for (const priority of [1, 3, 2, 3]) {
        ids.push(...await enqueue(sql, { program: ok, priority }));
      }
      const taken = (await takeTasks(sql, 3)).map((r) => r.task_id);
      assert.deepEqual(taken, [ids[1], ids[2], ids[3]].sort((a, b) => a - b));
    });

    // A session of its own that sends auto_explain's plans as notices.
    const plans: { text: string; plan: PlanNode }[] = [];
    const explained = postgres(db.url, {
      max: 1,
      onnotice: (notice) => {
        const json = /plan:\s*(\{[\s\S]*\})\s*$/.exec(notice.message ?? "");
        if (!json) return;
        const parsed = JSON.parse(json[1]);
        plans.push({ text: parsed["Query Text"], plan: parsed.Plan });
      },
    });
    // The take as a worker's claim makes it, with every statement's plan; rolled back.
    const explainTake = async () => {
      plans.length = 0;
      const session = await explained.reserve();
      let rows;
      try {
        // a worker takes again and again: past five calls PL/pgSQL may keep a
        // generic plan, so the one explained is the seventh of the session
        await session`BEGIN`;
        for (let i = 0; i < 6; i++) await session`SELECT count(*) FROM retask.take_tasks(50)`;
        await session`ROLLBACK`;
        await session.unsafe(`BEGIN;
          LOAD 'auto_explain';
          SET LOCAL auto_explain.log_min_duration = 0;
          SET LOCAL auto_explain.log_nested_statements = on;
          SET LOCAL auto_explain.log_analyze = on;
          SET LOCAL auto_explain.log_buffers = on;
          SET LOCAL auto_explain.log_timing = off;
          SET LOCAL auto_explain.log_format = json;
          SET LOCAL auto_explain.log_level = notice`);
        rows = await session<{ task_id: number; priority: number }[]>`
          SELECT task_id, priority FROM retask.take_tasks(50, 'explain', interval '30 seconds')`;
      } finally {
        await session`ROLLBACK`;
        session.release();
      }
      const take = plans.find((p) => /take_tasks\(/.test(p.text));
      assert.ok(take, "the take's own plan was sent");
      const inner = plans.filter((p) => p !== take && !/auto_explain|ROLLBACK/i.test(p.text));
      const scans = inner.flatMap((p) => nodes(p.plan))
        .filter((n) => n["Relation Name"] === "tasks" && /Scan/.test(n["Node Type"]));
      return {
        rows,
        scans,
        sorts: inner.flatMap((p) => nodes(p.plan)).filter((n) => n["Node Type"] === "Sort"),
        // pages of the runnable-task index the take read (scans are leaves: their own reads)
        blocks: scans.filter((n) => n["Index Name"] === "tasks_runnable_idx")
          .reduce((sum, n) => sum + n["Shared Hit Blocks"] + n["Shared Read Blocks"], 0),
      };
    };

    await t.step(
      "a take among a million scheduled tasks reads a few pages of the index",
      async () => {
        await clear();
        // a million tasks scheduled for tomorrow at ten priorities, and 60 runnable now at three
        await sql`
        INSERT INTO retask.tasks (program_id, status, params, priority, run_after)
        SELECT ${ok}, 'scheduled', '{}', g % 10, now() + interval '1 day' + g * interval '1 ms'
        FROM generate_series(1, 1000000) g`;
        await sql`
        INSERT INTO retask.tasks (program_id, status, params, priority, run_after)
        SELECT ${ok}, 'scheduled', '{}', g % 3 * 4, now() - g * interval '1 second'
        FROM generate_series(1, 60) g`;
        await sql`ANALYZE retask.tasks`;

        const some = await explainTake();
        assert.equal(some.rows.length, 50);
        assert.deepEqual(
          [...new Set(some.rows.map((r) => r.priority))].sort(),
          [0, 4, 8],
          "the 60 runnable ones' three priorities: the highest 50 of them",
        );
        assert.equal(some.rows.filter((r) => r.priority === 0).length, 10);
        for (const scan of some.scans) {
          assert.match(scan["Node Type"], /^Index (Only )?Scan$/, JSON.stringify(scan));
          assert.ok(
            ["tasks_runnable_idx", "tasks_pkey"].includes(scan["Index Name"]!),
            JSON.stringify(scan),
          );
        }
        assert.ok(
          some.scans.some((s) =>
            s["Index Name"] === "tasks_runnable_idx" && /run_after/.test(s["Index Cond"] ?? "")
          ),
          "run_after bounds the scan of the index",
        );
        assert.deepEqual(some.sorts, [], "the index gives the order: no sort");
        // the whole index is thousands of pages; a take that read past the tasks
        // scheduled for tomorrow would read them all
        assert.ok(some.blocks < 100, `the take read ${some.blocks} pages`);

        // none runnable: the take finds nothing, still without reading past them
        await sql`DELETE FROM retask.tasks WHERE run_after <= now()`;
        const none = await explainTake();
        assert.equal(none.rows.length, 0);
        assert.ok(none.blocks < 100, `the take read ${none.blocks} pages`);

        // a million runnable now: the 50 highest, in order
        await sql`TRUNCATE retask.tasks, retask.task_attempts`;
        await sql`
        INSERT INTO retask.tasks (program_id, status, params, priority, run_after)
        SELECT ${ok}, 'scheduled', '{}', g % 10, now() - g * interval '1 ms'
        FROM generate_series(1, 1000000) g`;
        await sql`ANALYZE retask.tasks`;
        const all = await explainTake();
        assert.equal(all.rows.length, 50);
        assert.ok(all.rows.every((r) => r.priority === 9));
        assert.deepEqual(all.sorts, []);
        assert.ok(all.blocks < 100, `the take read ${all.blocks} pages`);
      },
    );

    await explained.end();
  } finally {
    await db.drop();
  }
});
