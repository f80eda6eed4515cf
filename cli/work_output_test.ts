// An attempt's outcome as a log line and as JSON. No database.
import assert from "node:assert/strict";
import type { TaskOutcome } from "../lib/worker/outcome.ts";
import { outcomeJson, outcomeLine } from "./work_output.ts";

Deno.test("outcome lines and JSON", () => {
  const event: TaskOutcome = {
    taskId: 42,
    program: "lucky",
    attempt: 2,
    maxAttempts: 3,
    durationMs: 12.64,
    outcome: "retry",
    status: "scheduled",
    error: "division by zero\nmore",
    worker: "host:1:abcd",
  };
  assert.equal(outcomeLine(event), "task 42 lucky attempt 2/3 13 ms retry: division by zero");
  assert.equal(
    outcomeLine({ ...event, outcome: "finished", status: "finished", error: null }),
    "task 42 lucky attempt 2/3 13 ms finished",
  );
  assert.equal(
    outcomeLine({ ...event, outcome: "lost", error: "worker stopped before the task finished" }),
    "task 42 lucky attempt 2/3 13 ms lost: worker stopped before the task finished " +
      "(task will be retried)",
  );
  assert.deepEqual(outcomeJson(event), {
    task_id: 42,
    program: "lucky",
    attempt: 2,
    max_attempts: 3,
    duration_ms: 12.6,
    outcome: "retry",
    status: "scheduled",
    error: "division by zero\nmore",
    worker: "host:1:abcd",
  });
});

Deno.test("outcome lines escape what came from the database", () => {
  const line = outcomeLine({
    taskId: 7,
    program: "evil\x1b]0;pwned\x07",
    attempt: 1,
    maxAttempts: 1,
    durationMs: 1,
    outcome: "error",
    status: "error",
    error: "boom\x1b[2J\u202e\r\nsecond line",
    worker: "w\x1b[1m",
  });
  assert.equal(
    line,
    "task 7 evil\\x1b]0;pwned\\x07 attempt 1/1 1 ms error: boom\\x1b[2J\\u202e\\r",
  );
});
