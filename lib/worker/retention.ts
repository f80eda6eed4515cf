/**
 * `retask work --retention <age>`: the worker deletes tasks that ended longer
 * ago than that, with their history, every few minutes. One worker at a time
 * (a session advisory lock, so several workers with the setting do not
 * double the work), on a connection of its own, in small batches
 * (`retask.prune_tasks`, which never waits for a worker) with a rest after
 * each, so the tasks the workers run keep the database's time.
 * @module
 */
import type { Sql } from "../db/connect.ts";
import { type ConnectionTarget, openPool } from "../db/pool.ts";
import { errorMessage } from "../errors.ts";
import { formatAge, PRUNE_REST_RATIO, pruneTasks } from "../queue/operate.ts";
import type { WorkerLog } from "./outcome.ts";
import { sleep } from "./wake.ts";

/** How often a worker prunes. */
export const RETENTION_EVERY_MS = 5 * 60_000;

/** Prunes on a timer until closed. */
export class Retention {
  readonly #sql: Sql;
  readonly #schema: string;
  readonly #retentionMs: number;
  readonly #log: (entry: WorkerLog) => void;
  readonly #stop = new AbortController();
  #running: Promise<void> | null = null;

  constructor(
    target: ConnectionTarget,
    options: {
      applicationName: string;
      schema: string;
      retentionMs: number;
      log: (entry: WorkerLog) => void;
    },
  ) {
    this.#sql = openPool(target, {
      max: 1,
      applicationName: options.applicationName,
      settings: { statement_timeout: "0" },
    });
    this.#schema = options.schema;
    this.#retentionMs = options.retentionMs;
    this.#log = options.log;
  }

  /** Starts pruning now, then every {@link RETENTION_EVERY_MS}. */
  start(): void {
    this.#running ??= this.#loop();
  }

  /** Stops between batches and closes the connection. */
  async close(): Promise<void> {
    this.#stop.abort();
    await this.#running;
    await this.#sql.end({ timeout: 1 });
  }

  async #loop(): Promise<void> {
    const signal = this.#stop.signal;
    while (!signal.aborted) {
      try {
        await this.#pruneOnce(signal);
      } catch (error) {
        if (!signal.aborted) {
          this.#log({ level: "warn", message: `pruning failed: ${errorMessage(error)}` });
        }
      }
      await sleep(RETENTION_EVERY_MS, signal);
    }
  }

  async #pruneOnce(signal: AbortSignal): Promise<void> {
    const sql = this.#sql;
    const key = `retask.prune:${this.#schema}`;
    // a lock of the session: if the connection drops, so does the lock
    const [{ mine }] = await sql<{ mine: boolean }[]>`
      SELECT pg_try_advisory_lock(hashtextextended(${key}, 0)) AS mine`;
    if (!mine) return;
    try {
      const { deleted } = await pruneTasks(sql, {
        schema: this.#schema,
        olderThan: this.#retentionMs,
        restRatio: PRUNE_REST_RATIO,
        signal,
      });
      if (deleted > 0) {
        this.#log({
          level: "info",
          message: `pruned ${deleted} task(s) that ended more than ${
            formatAge(this.#retentionMs)
          } ago`,
        });
      }
    } finally {
      await sql`SELECT pg_advisory_unlock(hashtextextended(${key}, 0))`.catch(() => {});
    }
  }
}
