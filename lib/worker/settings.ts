/**
 * The worker's settings: their defaults, and parsing them from command-line
 * strings with errors that say what to fix.
 * @module
 */
import { RetaskError } from "../errors.ts";
import { parseInteger } from "../../cli/format.ts";

/** How a worker runs. Every field has a default ({@link WORKER_DEFAULTS}). */
export interface WorkerSettings {
  /** Execution lanes: tasks (or batches of them) running at the same time. */
  concurrency: number;
  /**
   * Most tasks a lane takes at once and runs in one transaction; a lane whose
   * tasks run long takes fewer (down to one).
   */
  batchSize: number;
  /** How often to look for tasks when no notification came, in ms. */
  pollIntervalMs: number;
  /** How often to rescue tasks of vanished workers, in ms. */
  rescueIntervalMs: number;
  /** How long a taken task stays this worker's without a renewal, in ms. */
  leaseMs: number;
  /** Per-task statement timeout in ms; 0 for none. */
  taskTimeoutMs: number;
  /** After a stop request, how long running tasks may go on, in ms. */
  shutdownTimeoutMs: number;
  /** Stop once no task is scheduled or running. */
  drain: boolean;
  /** Database name on remote servers; default: the main connection's. */
  remoteDatabase?: string;
}

/** The defaults, as `retask work --help` shows them. */
export const WORKER_DEFAULTS: Readonly<WorkerSettings> = {
  concurrency: 4,
  batchSize: 50,
  pollIntervalMs: 1_000,
  rescueIntervalMs: 5_000,
  leaseMs: 30_000,
  taskTimeoutMs: 300_000,
  shutdownTimeoutMs: 10_000,
  drain: false,
};

// setTimeout's ceiling: about 24.8 days
const MAX_MS = 2 ** 31 - 1;
const UNITS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 };

/**
 * Parses a duration: a number of milliseconds (`500`), or a number with a unit
 * (`500ms`, `2s`, `1.5m`, `1h`). Throws a usage error naming `flag`.
 */
export function parseDuration(flag: string, text: string, min = 0): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(text);
  const ms = match ? Math.round(Number(match[1]) * UNITS[match[2] ?? "ms"]) : NaN;
  if (!Number.isFinite(ms) || ms < min || ms > MAX_MS) {
    const floor = min > 0 ? `at least ${min} ms` : "0 or more";
    throw new RetaskError(
      "usage",
      `${flag} must be a duration ${floor} (milliseconds, or with a unit: 500ms, 2s, 1m), got "${text}"`,
    );
  }
  return ms;
}

/** `retask work`'s flags as commander hands them over (strings, or booleans for switches). */
export interface WorkFlags {
  concurrency?: string;
  batchSize?: string;
  pollInterval?: string;
  rescueInterval?: string;
  lease?: string;
  taskTimeout?: string;
  shutdownTimeout?: string;
  drain?: boolean;
  remoteDatabase?: string;
}

/** Turns command-line flags into settings; missing ones take the defaults. */
export function parseWorkFlags(flags: WorkFlags): WorkerSettings {
  const d = WORKER_DEFAULTS;
  const duration = (flag: string, text: string | undefined, fallback: number, min: number) =>
    text === undefined ? fallback : parseDuration(flag, text, min);
  const count = (flag: string, text: string | undefined, fallback: number) =>
    text === undefined ? fallback : parseInteger(flag, text, { min: 1, max: 1000, code: "usage" });
  const settings: WorkerSettings = {
    concurrency: count("--concurrency", flags.concurrency, d.concurrency),
    batchSize: count("--batch-size", flags.batchSize, d.batchSize),
    pollIntervalMs: duration("--poll-interval", flags.pollInterval, d.pollIntervalMs, 10),
    rescueIntervalMs: duration("--rescue-interval", flags.rescueInterval, d.rescueIntervalMs, 10),
    leaseMs: duration("--lease", flags.lease, d.leaseMs, 300),
    taskTimeoutMs: duration("--task-timeout", flags.taskTimeout, d.taskTimeoutMs, 0),
    shutdownTimeoutMs: duration(
      "--shutdown-timeout",
      flags.shutdownTimeout,
      d.shutdownTimeoutMs,
      0,
    ),
    drain: flags.drain === true,
  };
  if (flags.remoteDatabase !== undefined) {
    if (flags.remoteDatabase.trim() === "") {
      throw new RetaskError("usage", "--remote-database must name a database, got an empty string");
    }
    settings.remoteDatabase = flags.remoteDatabase;
  }
  return settings;
}

/** Fills in the defaults for settings a library caller left out, and checks them. */
export function resolveSettings(partial: Partial<WorkerSettings>): WorkerSettings {
  const settings = { ...WORKER_DEFAULTS, ...partial };
  const counts = [["concurrency", settings.concurrency], [
    "batchSize",
    settings.batchSize,
  ]] as const;
  for (const [name, value] of counts) {
    if (!Number.isSafeInteger(value) || value < 1) {
      throw new RetaskError("usage", `${name} must be a whole number ≥ 1, got ${value}`);
    }
  }
  const durations: [string, number, number][] = [
    ["pollIntervalMs", settings.pollIntervalMs, 10],
    ["rescueIntervalMs", settings.rescueIntervalMs, 10],
    ["leaseMs", settings.leaseMs, 300],
    ["taskTimeoutMs", settings.taskTimeoutMs, 0],
    ["shutdownTimeoutMs", settings.shutdownTimeoutMs, 0],
  ];
  for (const [name, value, min] of durations) {
    if (!Number.isFinite(value) || value < min || value > MAX_MS) {
      throw new RetaskError("usage", `${name} must be from ${min} to ${MAX_MS} ms, got ${value}`);
    }
  }
  return settings;
}
