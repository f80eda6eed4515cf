// The worker's settings: work flags and library settings, checked alike. No database.
import assert from "node:assert/strict";
import { RetaskError } from "../errors.ts";
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
    maxResultBytes: "65536",
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
    maxResultBytes: 65_536,
    drain: true,
    once: false,
    remoteDatabase: "replica",
    remoteHosts: [],
  });
  assert.equal(parseWorkFlags({ once: true }).once, true);
  usageError(
    () => parseWorkFlags({ once: true, drain: true }),
    /--once and --drain do not go together/,
  );
  usageError(() => parseWorkFlags({ concurrency: "-1" }), /--concurrency must be .* got "-1"/);
  usageError(() => parseWorkFlags({ concurrency: "0" }), /from 1 to 1000/);
  usageError(() => parseWorkFlags({ concurrency: "2.5" }), /whole number/);
  usageError(() => parseWorkFlags({ batchSize: "many" }), /--batch-size/);
  usageError(() => parseWorkFlags({ pollInterval: "-5" }), /--poll-interval must be a duration/);
  usageError(() => parseWorkFlags({ lease: "100" }), /--lease must be a duration at least 300 ms/);
  usageError(() => parseWorkFlags({ taskTimeout: "5 minutes" }), /--task-timeout/);
  usageError(() => parseWorkFlags({ shutdownTimeout: "" }), /--shutdown-timeout/);
  usageError(() => parseWorkFlags({ remoteDatabase: " " }), /--remote-database/);
  usageError(
    () => parseWorkFlags({ maxResultBytes: "10" }),
    /--max-result-bytes must be .* from 1024/,
  );
  assert.deepEqual(
    parseWorkFlags({ remoteHost: ["db2:5432", "[::1]:5433", "postgres://u:p@db3/x"] }).remoteHosts,
    ["db2:5432", "[::1]:5433", "postgres://u:p@db3/x"],
  );
  for (const bad of ["db2", "db2:0", "db2:70000", "db2:x", "u@db2:5432", "db 2:5432"]) {
    usageError(() => parseWorkFlags({ remoteHost: [bad] }), /--remote-host must be HOST:PORT/);
  }
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
  usageError(() => resolveSettings({ once: true, drain: true }), /--once and --drain/);
});
