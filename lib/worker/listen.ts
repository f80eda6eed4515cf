/**
 * Wake-ups by LISTEN/NOTIFY: enqueue_tasks and record_attempts notify channel
 * `retask_tasks` when a task becomes runnable while a worker sleeps (it said
 * so first: announceIdle, sql/wake.sql); cancel_tasks notifies
 * `retask_cancel` with the id of a running task someone asked to cancel. The
 * listening connection is re-established whenever it drops; notifications
 * sent meanwhile are lost, so the worker polls as well (and looks for cancel
 * requests of the tasks it holds when it renews their leases), and rings once
 * more when listening again.
 * @module
 */
import { type ConnectionTarget, openPool } from "../db/pool.ts";
import type { Sql } from "../db/connect.ts";

/** The channel the SQL notifies on when a task becomes runnable. */
const TASKS_CHANNEL = "retask_tasks";

/** The channel cancel_tasks notifies on, with a task id. */
const CANCEL_CHANNEL = "retask_cancel";

/** What a {@link Listener} calls on notifications. */
export interface ListenerHandlers {
  /** A task may have become runnable. */
  onWake: () => void;
  /** Someone asked to cancel this task, of retask's schema `schema`. */
  onCancel?: (taskId: number) => void;
  /** retask's schema: cancel requests name their task as `<schema>.tasks:<id>`. */
  schema?: string;
}

/**
 * A connection that listens on {@link TASKS_CHANNEL}, calling `onWake` on each
 * notification, and on {@link CANCEL_CHANNEL}, calling `onCancel` with the id
 * of a task of its schema.
 */
export class Listener {
  readonly #sql: Sql;
  readonly #onWake: () => void;
  #listening = false;
  #starting = false;
  #closed = false;

  constructor(target: ConnectionTarget, applicationName: string, handlers: ListenerHandlers) {
    const { onWake, onCancel = () => {}, schema = "retask" } = handlers;
    const prefix = `${schema}.tasks:`;
    this.#onWake = onWake;
    this.#sql = openPool(target, {
      max: 1,
      applicationName,
      onNotify: (channel, payload) => {
        if (channel !== CANCEL_CHANNEL) return onWake();
        const taskId = payload.startsWith(prefix) ? Number(payload.slice(prefix.length)) : NaN;
        if (Number.isSafeInteger(taskId)) onCancel(taskId);
      },
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
    this.#sql.unsafe(`LISTEN ${TASKS_CHANNEL}; LISTEN ${CANCEL_CHANNEL}`).then(
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
