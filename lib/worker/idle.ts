/**
 * Announcing sleep: enqueues notify only while a worker sleeps (sql/wake.sql),
 * so a worker about to sleep says so first, on its home connection.
 * @module
 */
import type { Sql } from "../db/connect.ts";

/**
 * Marks a worker of retask's schema `schema` as sleeping: from then on, the
 * next task made runnable notifies channel `retask_tasks`. Returns true if a
 * task is runnable already (committed before the mark): then the worker must
 * look again instead of sleeping.
 */
export async function announceIdle(home: Sql, schema: string): Promise<boolean> {
  const [{ runnable }] = await home<{ runnable: boolean }[]>`
    SELECT ${home(schema)}.worker_idle() AS runnable`;
  return runnable;
}
