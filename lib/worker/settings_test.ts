// The worker's pure parts: option parsing, reconnect backoff, error
// classification, outcome lines, the wake-up call. No database.
import assert from "node:assert/strict";
import { isConnectionError, reconnectDelay } from "../db/pool.ts";
import { RetaskError } from "../errors.ts";
import { outcomeJson, outcomeLine, outcomeOf, type TaskOutcome } from "./outcome.ts";
import { Wake } from "./wake.ts";
import { parseDuration, parseWorkFlags, resolveSettings, WORKER_DEFAULTS } from "./settings.ts";

function usageError(fn: () => unknown, message: RegExp) {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof RetaskError);
    assert.equal(error.code, "usage");
    assert.equal(error.exitCode, 2);
    assert.match(error.message, message);
    return true;
  });
}

Deno.test("work flags: defaults, units, and what is refused", () => {
  assert.deepEqual(parseWorkFlags({}), { ...WORKER_DEFAULTS });
  const parsed = parseWorkFlags({
    concurrency: "4",
    batchSize: "50",
    pollInterval: "250",
    rescueInterval: "2s",
    lease: "1.5m",
    taskTimeout: "0",
    shutdownTimeout: "500ms",
    drain: true,
    remoteDatabase: "replica",
  });
  assert.deepEqual(parsed, {
    concurrency: 4,
    batchSize: 50,
    pollIntervalMs: 250,
    rescueIntervalMs: 2_000,
    leaseMs: 90_000,
    taskTimeoutMs: 0,
    shutdownTimeoutMs: 500,
    drain: true,
    remoteDatabase: "replica",
  });
  usageError(() => parseWorkFlags({ concurrency: "-1" }), /--concurrency must be .* got "-1"/);
  usageError(() => parseWorkFlags({ concurrency: "0" }), /from 1 to 1000/);
  usageError(() => parseWorkFlags({ concurrency: "2.5" }), /whole number/);
  usageError(() => parseWorkFlags({ batchSize: "many" }), /--batch-size/);
  usageError(() => parseWorkFlags({ pollInterval: "-5" }), /--poll-interval must be a duration/);
  usageError(() => parseWorkFlags({ lease: "100" }), /--lease must be a duration at least 300 ms/);
  usageError(() => parseWorkFlags({ taskTimeout: "5 minutes" }), /--task-timeout/);
  usageError(() => parseWorkFlags({ shutdownTimeout: "" }), /--shutdown-timeout/);
  usageError(() => parseWorkFlags({ remoteDatabase: " " }), /--remote-database/);
  assert.equal(parseDuration("--x", "1h"), 3_600_000);
  usageError(() => parseDuration("--x", "30d"), /--x/);
  usageError(() => parseDuration("--x", "99999999999"), /--x/);
});

Deno.test("library settings are checked like flags", () => {
  assert.equal(resolveSettings({ concurrency: 3 }).concurrency, 3);
  assert.equal(resolveSettings({}).leaseMs, WORKER_DEFAULTS.leaseMs);
  usageError(() => resolveSettings({ concurrency: 0 }), /concurrency/);
  usageError(() => resolveSettings({ batchSize: 1.5 }), /batchSize/);
  usageError(() => resolveSettings({ pollIntervalMs: 0 }), /pollIntervalMs/);
  usageError(() => resolveSettings({ leaseMs: 10 }), /leaseMs/);
  usageError(() => resolveSettings({ taskTimeoutMs: -1 }), /taskTimeoutMs/);
});

Deno.test("reconnect delay doubles, is capped, and is jittered", () => {
  const low = () => 0;
  const high = () => 1;
  assert.equal(reconnectDelay(1, 100, 5_000, low), 50);
  assert.equal(reconnectDelay(1, 100, 5_000, high), 100);
  assert.equal(reconnectDelay(2, 100, 5_000, high), 200);
  assert.equal(reconnectDelay(4, 100, 5_000, high), 800);
  assert.equal(reconnectDelay(10, 100, 5_000, high), 5_000, "capped");
  assert.equal(reconnectDelay(1_000, 100, 5_000, low), 2_500, "half the cap at least");
  assert.equal(reconnectDelay(0, 100, 5_000, high), 100, "failures start at 1");
  const delays = Array.from({ length: 50 }, () => reconnectDelay(6));
  assert.ok(delays.every((d) => d >= 1_600 && d <= 3_200));
  assert.ok(new Set(delays).size > 10, "jittered");
});

Deno.test("connection errors are told apart from statement errors", () => {
  const withCode = (code: string) => Object.assign(new Error("x"), { code });
  for (
    const code of [
      "57P01",
      "57P02",
      "57P03",
      "08006",
      "53300",
      "ECONNREFUSED",
      "CONNECTION_CLOSED",
      "CONNECT_TIMEOUT",
    ]
  ) {
    assert.ok(isConnectionError(withCode(code)), code);
  }
  for (const code of ["P0001", "22012", "57014", "40001", "42883"]) {
    assert.ok(!isConnectionError(withCode(code)), code);
  }
  assert.ok(isConnectionError(new Error("write CONNECTION_CLOSED: connection closed")));
  assert.ok(!isConnectionError(new Error("division by zero")));
  assert.ok(!isConnectionError(null));
});

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
  assert.equal(outcomeOf("finished", "finished"), "finished");
  assert.equal(outcomeOf("error", "scheduled"), "retry");
  assert.equal(outcomeOf("error", "error"), "error");
  assert.equal(outcomeOf("lost", "scheduled"), "lost");
  assert.equal(outcomeOf("lost", "error"), "lost");
  assert.equal(outcomeOf("finished", null), "lost", "the task had been taken away");
});

// True if `sleep` ends before a second passes: the hour-long sleeps below must
// end because of the ring or the abort, never by running out.
function endsEarly(sleep: Promise<void>): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const second = new Promise<boolean>((resolve) => (timer = setTimeout(resolve, 1_000, false)));
  return Promise.race([sleep.then(() => true), second]).finally(() => clearTimeout(timer));
}

Deno.test("a wake-up rung before the sleep is not missed", async () => {
  const HOUR = 3_600_000;
  const wake = new Wake();
  wake.ring();
  assert.ok(await endsEarly(wake.sleep(HOUR)), "a ring before the sleep ends it");
  const later = wake.sleep(HOUR);
  wake.ring();
  assert.ok(await endsEarly(later), "a ring during the sleep ends it");
  const controller = new AbortController();
  const aborted = wake.sleep(HOUR, controller.signal);
  controller.abort();
  assert.ok(await endsEarly(aborted), "an abort ends it");
  const idle = new AbortController();
  assert.equal(await endsEarly(wake.sleep(HOUR, idle.signal)), false, "unrung, it goes on");
  idle.abort();
});

Deno.test("retask work refuses bad options with exit 2 and one line", async () => {
  const main = new URL("../../main.ts", import.meta.url).pathname;
  for (const args of [["--concurrency", "-1"], ["--poll-interval", "soon"]]) {
    const { code, stderr, stdout } = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-all", main, "work", ...args],
      // never reached: flags are checked before anything connects
      env: { DATABASE_URL: "postgres://nobody@127.0.0.1:1/none" },
    }).output();
    const text = new TextDecoder().decode(stderr);
    assert.equal(code, 2, text);
    assert.equal(new TextDecoder().decode(stdout), "");
    assert.match(text, /^retask: --(concurrency|poll-interval) must be [^\n]*\n$/);
  }
});
