/**
 * What a worker reports: one event per ended attempt, and its own messages.
 * @module
 */

/**
 * How an attempt ended, as its history records it: finished, error, lost (its
 * worker went), or cancelled (someone asked: `retask cancel`).
 */
export type AttemptEnd = "finished" | "error" | "lost" | "cancelled";

/**
 * What an ended attempt means for its task, as `record_attempts` says it:
 * `finished`; `retry` (it failed, the task is scheduled again); `error` (it
 * failed and was the last attempt, or failed permanently: SQLSTATE RT001);
 * `lost` (the worker stopped or lost its connection before the attempt ended;
 * `status` says what became of the task); `cancelled` (someone asked to cancel
 * the task: it ends with no retry).
 */
export type Outcome = "finished" | "retry" | "error" | "lost" | "cancelled";

/**
 * The status a task has after the attempt, as the database recorded it. (An
 * attempt the database no longer held when the worker came to record it, such
 * as one whose take a crash undid, is reported by no event at all.)
 */
export type StatusAfter = "finished" | "scheduled" | "error" | "cancelled";

/** One attempt of one task, as the worker saw it end and the database recorded it. */
export interface TaskOutcome {
  /** The task. */
  taskId: number;
  /** The program's name (its id when the program row is gone). */
  program: string;
  /** This attempt's number, 1-based. */
  attempt: number;
  /** Attempts allowed in all. */
  maxAttempts: number;
  /** Time the attempt ran, in milliseconds. */
  durationMs: number;
  /** What the attempt's end means for the task. */
  outcome: Outcome;
  /** The task's status after it. */
  status: StatusAfter;
  /** The error message of a failed or lost attempt, else null. */
  error: string | null;
  /** The worker that ran the attempt. */
  worker: string;
}

/** Something the worker itself has to say (not about one task). */
export interface WorkerLog {
  /** `warn` for trouble, `info` otherwise. */
  level: "info" | "warn";
  /** One line. */
  message: string;
}
