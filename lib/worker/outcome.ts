/**
 * What a worker reports: one event per finished attempt, and how the CLI
 * prints it (a text line, or one JSON object per line).
 * @module
 */

/**
 * How an attempt ended: `finished`; `retry` (it failed, the task is scheduled
 * again); `error` (it failed and was the last attempt); `lost` (the worker
 * stopped or lost its connection before the attempt ended, or the task was
 * taken from it; `status` says what became of the task).
 */
export type AttemptOutcome = "finished" | "retry" | "error" | "lost";

/** The status a task has after the attempt; null when the worker no longer held it. */
export type StatusAfter = "finished" | "scheduled" | "error" | null;

/** One attempt of one task, as the worker saw it end. */
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
  /** How the attempt ended. */
  outcome: AttemptOutcome;
  /** The task's status after it. */
  status: StatusAfter;
  /** The error message of a failed or lost attempt, else null. */
  error: string | null;
  /** The worker that ran the attempt. */
  worker: string;
}

/** How the worker ended an attempt, before the SQL transition said what follows. */
export type AttemptEnd = "finished" | "error" | "lost";

/** Names the outcome from how the attempt ended and the task's status after it. */
export function outcomeOf(end: AttemptEnd, status: StatusAfter): AttemptOutcome {
  if (status === null || end === "lost") return "lost";
  if (status === "finished") return "finished";
  return status === "scheduled" ? "retry" : "error";
}

/** The text log line: `task 42 lucky attempt 2/3 13 ms retry: division by zero`. */
export function outcomeLine(event: TaskOutcome): string {
  const head =
    `task ${event.taskId} ${event.program} attempt ${event.attempt}/${event.maxAttempts}` +
    ` ${Math.round(event.durationMs)} ms ${event.outcome}`;
  if (event.error === null) return head;
  const firstLine = event.error.split("\n", 1)[0];
  const fate = event.outcome === "lost" && event.status !== null
    ? ` (task ${event.status === "scheduled" ? "will be retried" : "failed"})`
    : "";
  return `${head}: ${firstLine}${fate}`;
}

/** The `--json` form: one flat object per line, snake_case keys. */
export function outcomeJson(event: TaskOutcome): Record<string, unknown> {
  return {
    task_id: event.taskId,
    program: event.program,
    attempt: event.attempt,
    max_attempts: event.maxAttempts,
    duration_ms: Math.round(event.durationMs * 10) / 10,
    outcome: event.outcome,
    status: event.status,
    error: event.error,
    worker: event.worker,
  };
}

/** Something the worker itself has to say (not about one task). */
export interface WorkerLog {
  /** `warn` for trouble, `info` otherwise. */
  level: "info" | "warn";
  /** One line. */
  message: string;
}
