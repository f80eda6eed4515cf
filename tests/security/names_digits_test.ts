// A program's name cannot be all digits: `enqueue 1` and `status --program 1` read a number as
// a program id, so a program named `1` would be shadowed by the program with id 1 (issue 10,
// item 11). upsert_program refuses it, so the CLI, the library and the course's
// register_program all do.
import assert from "node:assert/strict";
import { isPgError } from "../../lib/errors.ts";
import { registerProgram } from "../../lib/mod.ts";
import { freshDatabase, runCli, TEST_FUNCTIONS } from "../harness/mod.ts";

Deno.test("program names that are all digits are refused, nothing stored", async (t) => {
  const db = await freshDatabase("security_names_digits", { install: true });
  const { sql } = db;
  const programs = () => sql`SELECT program_id, name, func FROM retask.programs ORDER BY 1`;
  try {
    await sql.unsafe(TEST_FUNCTIONS);
    await registerProgram(sql, "ok", "always_ok");
    const before = await programs();

    await t.step("retask register 1 exits 2 with one line", async () => {
      for (const name of ["1", "42", " 7 ", "007"]) {
        const run = await runCli(["register", name, "always_ok"], db.url);
        assert.equal(run.code, 2, `${name}: ${run.stderr}`);
        assert.equal(run.stdout, "");
        assert.match(
          run.stderr,
          new RegExp(`^retask: program name "${name.trim()}" is all digits, [^\\n]*\\n$`),
        );
      }
      assert.deepEqual(await programs(), before);
    });

    await t.step("registerProgram throws invalid_parameter_value", async () => {
      await assert.rejects(
        () => registerProgram(sql, "42", "always_ok"),
        (error) => isPgError(error) && error.code === "22023" && /all digits/.test(error.message),
      );
      assert.deepEqual(await programs(), before);
    });

    await t.step("the course's register_program refuses it too", async () => {
      await assert.rejects(
        () => sql`SELECT register_program('1', 'always_ok')`,
        (error) => isPgError(error) && error.code === "22023",
      );
      assert.deepEqual(await programs(), before);
    });

    await t.step("names with digits and more are fine", async () => {
      for (const name of ["job_1", "1a", "1.5", "-1"]) {
        await registerProgram(sql, name, "always_ok");
      }
      const run = await runCli(["enqueue", "1a"], db.url);
      assert.equal(run.code, 0, run.stderr);
      const [task] = await sql`SELECT p.name FROM retask.tasks JOIN retask.programs p USING
        (program_id)`;
      assert.equal(task.name, "1a");
    });
  } finally {
    await db.drop();
  }
});
