/**
 * How `retask work` prints an ended attempt: a text line, or one JSON object
 * per line.
 * @module
 */
import type { TaskOutcome } from "../lib/worker/outcome.ts";
import { escapeControl } from "./format.ts";

/**
 * The text log line: `task 42 lucky attempt 2/3 13 ms retry: division by zero`. The program's
 * name and the error come from the database: their control characters are shown escaped.
 */
export function outcomeLine(event: TaskOutcome): string {
  const head = `task ${event.taskId} ${escapeControl(event.program)} ` +
    `attempt ${event.attempt}/${event.maxAttempts} ${Math.round(event.durationMs)} ms ` +
    event.outcome;
  if (event.error === null) return head;
  const firstLine = escapeControl(event.error.split("\n", 1)[0]);
  const fate = event.outcome === "lost"
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
