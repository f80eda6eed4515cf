/**
 * The course application's database as it stands before retask: the seed's
 * background-task mechanism and admin API (fixtures/course.sql), and on
 * request a history of tasks it ran (fixtures/course_history.sql). The
 * install tests upgrade it in place; bench/compare runs its `process_tasks()`.
 * @module
 */
import type { Sql } from "../../lib/db/connect.ts";

/** Creates the course application's objects in `sql`'s database; `history` adds its tasks. */
export async function installCourse(
  sql: Sql,
  options: { history?: boolean } = {},
): Promise<void> {
  const files = options.history ? ["course.sql", "course_history.sql"] : ["course.sql"];
  for (const file of files) {
    await sql.unsafe(await Deno.readTextFile(new URL(`./fixtures/${file}`, import.meta.url)));
  }
}
