/**
 * Firing schedules: every running worker looks for due schedules on its tick
 * and fires each through `retask.fire_schedule`, which enqueues a slot's task
 * once however many workers fire it at the same time (sql/schedules.sql).
 * Due is by the database's clock, so workers whose clocks differ agree. A
 * schedule due for several slots (no worker ran meanwhile) gets one task, for
 * the slot it was waiting for, and moves on to the first slot after now.
 * @module
 */
import type { Sql } from "../db/connect.ts";
import { isConnectionError } from "../db/pool.ts";
import { errorMessage } from "../errors.ts";
import { nextRunAfter } from "../queue/schedules.ts";
import type { WorkerLog } from "./outcome.ts";

/** The most due schedules one tick fires; more are left for the next tick, at once. */
const TICK_BATCH = 100;

interface DueRow {
  name: string;
  cron: string;
  timezone: string;
  /** The slot as the database wrote it, to compare it exactly (a Date keeps only milliseconds). */
  slot: string | null;
  next_run_at: Date | null;
  now: Date;
  due: boolean;
}

/** A slot a tick enqueued. */
export interface FiredSlot {
  schedule: string;
  slot: Date;
  taskId: number;
}

/** What one tick did, and when to tick again. */
export interface TickResult {
  fired: FiredSlot[];
  /** Until the next schedule is due by the database's clock; Infinity when none is planned. */
  untilNextMs: number;
}

/**
 * Fires due schedules for one worker. A schedule it cannot fire (a cron or
 * time zone this runtime cannot read, written in SQL; a refusal from the
 * database) is skipped, and said once per problem; the others go on.
 */
export class Scheduler {
  readonly #schema: string;
  readonly #log: (entry: WorkerLog) => void;
  // schedule name → the problem last said about it
  readonly #said = new Map<string, string>();

  constructor(schema: string, log: (entry: WorkerLog) => void) {
    this.#schema = schema;
    this.#log = log;
  }

  /**
   * Fires every schedule due at `at` (default: the database's now; tests pass
   * a fake clock) on `sql`. Connection errors are thrown, for the worker's
   * loop to wait out.
   */
  async tick(sql: Sql, at?: Date): Promise<TickResult> {
    const schema = sql(this.#schema);
    const rows = await sql<DueRow[]>`
      WITH clock AS (SELECT coalesce(${at ?? null}::timestamptz, now()) AS now)
      SELECT s.name, s.cron, s.timezone, s.next_run_at::text AS slot, s.next_run_at, c.now,
             s.due
      FROM clock c,
           LATERAL ((SELECT d.*, true AS due FROM ${schema}.schedules d
                     WHERE d.next_run_at IS NULL OR d.next_run_at <= c.now
                     ORDER BY d.next_run_at NULLS FIRST LIMIT ${TICK_BATCH})
                    UNION ALL
                    (SELECT u.*, false FROM ${schema}.schedules u WHERE u.next_run_at > c.now
                     ORDER BY u.next_run_at LIMIT 1)) s`;
    const fired: FiredSlot[] = [];
    let untilNextMs = Infinity;
    const due = rows.filter((r) => r.due);
    const until = (next: Date, now: Date) => {
      untilNextMs = Math.min(untilNextMs, Math.max(0, next.getTime() - now.getTime()));
    };
    for (const row of due) {
      const { slot, next } = await this.#fire(sql, row);
      if (slot) fired.push(slot);
      if (next) until(next, row.now);
    }
    const upcoming = rows.find((r) => !r.due);
    if (upcoming?.next_run_at) until(upcoming.next_run_at, upcoming.now);
    // a full batch leaves more due
    if (due.length === TICK_BATCH) untilNextMs = 0;
    return { fired, untilNextMs };
  }

  // Enqueues row's slot if no other worker did, moving it on to the first slot after now
  // (`next`: the slot it set, or another worker's firing will have set).
  async #fire(sql: Sql, row: DueRow): Promise<{ slot?: FiredSlot; next?: Date }> {
    try {
      const next = nextRunAfter(row.cron, row.timezone, row.now);
      if (next === null) {
        this.#say(row.name, `its cron expression "${row.cron}" never runs again`);
        return {};
      }
      const [{ task_id }] = await sql<{ task_id: number | null }[]>`
        SELECT ${sql(this.#schema)}.fire_schedule(${row.name}::text, ${row.slot}::text::timestamptz,
                                                   ${next}::timestamptz) AS task_id`;
      this.#said.delete(row.name);
      if (task_id === null || row.next_run_at === null) return { next };
      this.#log({
        level: "info",
        message: `schedule "${row.name}" enqueued task ${task_id} ` +
          `for ${row.next_run_at.toISOString()}`,
      });
      return { slot: { schedule: row.name, slot: row.next_run_at, taskId: task_id }, next };
    } catch (error) {
      if (isConnectionError(error)) throw error;
      this.#say(row.name, errorMessage(error));
      return {};
    }
  }

  #say(name: string, problem: string): void {
    if (this.#said.get(name) === problem) return;
    this.#said.set(name, problem);
    this.#log({ level: "warn", message: `schedule "${name}" skipped: ${problem}` });
  }
}
