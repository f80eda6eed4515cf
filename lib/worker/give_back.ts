/**
 * Giving back attempts that failed through no fault of their tasks: the
 * database could not run or record them (a full disk, a function or right
 * missing while retask is installed, a read-only server). Such an attempt is
 * not charged: `release_tasks` puts its task back to `scheduled` as it was
 * before the take, and the worker stops taking tasks until it can record
 * again (pause.ts).
 * @module
 */
import type { Sql } from "../db/connect.ts";
import type { ClaimedTask } from "./claim.ts";

/**
 * Whose fault a failure is that escaped `run_tasks` or `record_attempts`
 * (which catch every program's own errors), from its SQLSTATE:
 * - `database`: the server cannot do retask's bookkeeping now. Classes 42
 *   (a function or right missing, or a result that no longer fits, during an
 *   install), 53 (disk full, out of memory), 58 and XX (system and internal
 *   errors), 55 (an object in use), 57P (an operator's intervention, the
 *   connection ones aside), 25 (a read-only server after a failover), 3D and
 *   3F (a database or schema gone);
 * - `transient`: trying again is enough (class 40, a serialization failure
 *   or a deadlock);
 * - `task`: anything else (a timeout, bad data in the task's row).
 */
export function faultOf(code: string | null | undefined): "task" | "database" | "transient" {
  if (!code) return "task";
  if (code.startsWith("40")) return "transient";
  return /^(42|53|58|XX|55|57P|25|3D|3F)/.test(code) ? "database" : "task";
}

/**
 * Thrown through a lane when its attempts must be given back uncounted.
 * `pause`: the database cannot record outcomes, so the worker stops taking
 * tasks for a while; without it (a transient failure) they are simply
 * taken again.
 */
export class GiveBack extends Error {
  readonly pause: boolean;

  constructor(cause: unknown, pause: boolean) {
    super(cause instanceof Error ? cause.message : String(cause), { cause });
    this.name = "GiveBack";
    this.pause = pause;
  }
}

/**
 * Puts the tasks still running these attempts back to `scheduled`, their
 * attempts uncounted and unrecorded. Returns how many it gave back.
 */
export async function releaseTasks(
  sql: Sql,
  schema: string,
  tasks: readonly ClaimedTask[],
): Promise<number> {
  if (tasks.length === 0) return 0;
  const [row] = await sql<{ released: number }[]>`
    SELECT ${sql(schema)}.release_tasks(${tasks.map((t) => t.taskId)}::bigint[],
                                        ${tasks.map((t) => t.attempt)}::integer[]) AS released`;
  return row.released;
}
