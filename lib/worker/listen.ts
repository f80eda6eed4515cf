/**
 * Wake-ups by LISTEN/NOTIFY: enqueue_tasks and record_attempts notify channel
 * `retask_tasks` when a task becomes runnable. The listening connection is
 * re-established whenever it drops; notifications sent meanwhile are lost, so
 * the worker polls as well, and rings once more when listening again.
 * @module
 */
import { type ConnectionTarget, openPool } from "../db/pool.ts";
import type { Sql } from "../db/connect.ts";

/** The channel the SQL notifies on. */
const TASKS_CHANNEL = "retask_tasks";

/** A connection that listens on {@link TASKS_CHANNEL} and calls `onWake` on each notification. */
export class Listener {
  readonly #sql: Sql;
  readonly #onWake: () => void;
  #listening = false;
  #starting = false;
  #closed = false;

  constructor(target: ConnectionTarget, applicationName: string, onWake: () => void) {
    this.#onWake = onWake;
    this.#sql = openPool(target, {
      max: 1,
      applicationName,
      onNotify: () => onWake(),
      onClose: () => {
        this.#listening = false;
      },
    });
  }

  /** True while notifications arrive. */
  get listening(): boolean {
    return this.#listening;
  }

  /**
   * Starts listening if not already (or not already trying); never waits and
   * never throws: a failure leaves polling in charge until the next call.
   */
  ensure(): void {
    if (this.#listening || this.#starting || this.#closed) return;
    this.#starting = true;
    this.#sql.unsafe(`LISTEN ${TASKS_CHANNEL}`).then(
      () => {
        this.#listening = true;
        // anything enqueued while not listening went unannounced: look now
        this.#onWake();
      },
      () => {},
    ).finally(() => {
      this.#starting = false;
    });
  }

  /** Stops listening and closes the connection. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#sql.end({ timeout: 1 });
  }
}
