import assert from "node:assert/strict";
import type { ClaimedTask } from "./claim.ts";
import { reportOf } from "./recorder.ts";

function task(taskId: number, attempt = 1): ClaimedTask {
  return {
    taskId,
    attempt,
    maxAttempts: 3,
    program: "p",
    host: null,
    port: null,
    programId: 1,
    params: null,
    problem: null,
  };
}

Deno.test("events report only the attempts the database recorded", () => {
  const events = reportOf(
    [{ task: task(1), durationMs: 2 }, { task: task(2), durationMs: 3 }, {
      task: task(3, 2),
      durationMs: 4,
    }],
    [
      { task_id: 3, status: "scheduled", outcome: "retry", error: "boom" },
      { task_id: 1, status: "finished", outcome: "finished", error: null },
    ],
    "w",
  );
  assert.deepEqual(events, [
    {
      taskId: 1,
      program: "p",
      attempt: 1,
      maxAttempts: 3,
      durationMs: 2,
      outcome: "finished",
      status: "finished",
      error: null,
      worker: "w",
    },
    {
      taskId: 3,
      program: "p",
      attempt: 2,
      maxAttempts: 3,
      durationMs: 4,
      outcome: "retry",
      status: "scheduled",
      error: "boom",
      worker: "w",
    },
  ]);
  assert.deepEqual(reportOf([{ task: task(4), durationMs: 0 }], [], "w"), []);
});
