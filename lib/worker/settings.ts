/**
 * The worker's settings: their defaults, and parsing them from command-line
 * strings with errors that say what to fix.
 * @module
 */
import { RetaskError } from "../errors.ts";
import { parseAge } from "../queue/operate.ts";

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
  /** A result longer than this is cut, with a note that it was. */
  maxResultBytes: number;
  /** Stop once no task is scheduled or running. */
  drain: boolean;
  /**
   * Run what is runnable now, then stop: tasks scheduled for later, and those
   * of paused programs, are not waited for (`drain` waits for them).
   */
  once: boolean;
  /** Database name on remote servers; default: the main connection's. */
  remoteDatabase?: string;
  /**
   * Delete tasks that ended longer ago than this (ms), with their history,
   * every few minutes, one worker at a time. Default: keep them.
   */
  retentionMs?: number;
  /**
   * The servers remote tasks may run on: `HOST:PORT` (the worker's user, no
   * password: a trust or passfile login), or a `postgres://` URL with that
   * server's own credentials. A task naming any other fails without a
   * connection attempt. None by default.
   */
  remoteHosts: string[];
}

/** The defaults, as `retask work --help` shows them. */
export const WORKER_DEFAULTS: Readonly<WorkerSettings> = {
  concurrency: 4,
  batchSize: 200,
  pollIntervalMs: 1_000,
  rescueIntervalMs: 5_000,
  leaseMs: 30_000,
  taskTimeoutMs: 300_000,
  shutdownTimeoutMs: 10_000,
  maxResultBytes: 1_048_576,
  drain: false,
  once: false,
  remoteHosts: [],
};

// setTimeout's ceiling: about 24.8 days
const MAX_MS = 2 ** 31 - 1;
const UNITS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 };

/** The numeric settings: the flag that sets each, and its bounds. The one list of them. */
const BOUNDS = {
  concurrency: { flag: "--concurrency", kind: "count", min: 1, max: 1000 },
  batchSize: { flag: "--batch-size", kind: "count", min: 1, max: 1000 },
  pollIntervalMs: { flag: "--poll-interval", kind: "duration", min: 10, max: MAX_MS },
  rescueIntervalMs: { flag: "--rescue-interval", kind: "duration", min: 10, max: MAX_MS },
  leaseMs: { flag: "--lease", kind: "duration", min: 300, max: MAX_MS },
  taskTimeoutMs: { flag: "--task-timeout", kind: "duration", min: 0, max: MAX_MS },
  shutdownTimeoutMs: { flag: "--shutdown-timeout", kind: "duration", min: 0, max: MAX_MS },
  maxResultBytes: { flag: "--max-result-bytes", kind: "count", min: 1024, max: 2 ** 31 - 1 },
} as const;

type Numeric = keyof typeof BOUNDS;

// The usage error for a value out of its bounds, naming it as `name`.
function outOfBounds(name: string, key: Numeric, got: string): RetaskError {
  const { kind, min, max } = BOUNDS[key];
  const what = kind === "count"
    ? `a whole number from ${min} to ${max}`
    : `a duration ${min > 0 ? `at least ${min} ms` : "0 or more"} ` +
      "(milliseconds, or with a unit: 500ms, 2s, 1m)";
  return new RetaskError("usage", `${name} must be ${what}, got "${got}"`);
}

function inBounds(key: Numeric, value: number): boolean {
  const { kind, min, max } = BOUNDS[key];
  return (kind === "duration" || Number.isSafeInteger(value)) && value >= min && value <= max;
}

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
  maxResultBytes?: string;
  drain?: boolean;
  once?: boolean;
  remoteDatabase?: string;
  /** Repeatable. */
  remoteHost?: string[];
  /** An age with a unit: 30d. */
  retention?: string;
}

const FLAG_KEYS: Record<Numeric, keyof WorkFlags> = {
  concurrency: "concurrency",
  batchSize: "batchSize",
  pollIntervalMs: "pollInterval",
  rescueIntervalMs: "rescueInterval",
  leaseMs: "lease",
  taskTimeoutMs: "taskTimeout",
  shutdownTimeoutMs: "shutdownTimeout",
  maxResultBytes: "maxResultBytes",
};

/** Turns command-line flags into settings; missing ones take the defaults. */
export function parseWorkFlags(flags: WorkFlags): WorkerSettings {
  const settings: WorkerSettings = {
    ...WORKER_DEFAULTS,
    drain: flags.drain === true,
    once: flags.once === true,
  };
  checkStop(settings);
  for (const key of Object.keys(BOUNDS) as Numeric[]) {
    const text = flags[FLAG_KEYS[key]];
    if (typeof text !== "string") continue;
    const value = BOUNDS[key].kind === "count"
      ? (/^\s*[0-9]+\s*$/.test(text) ? Number(text) : NaN)
      : parseDuration(BOUNDS[key].flag, text, BOUNDS[key].min);
    if (!inBounds(key, value)) throw outOfBounds(BOUNDS[key].flag, key, text);
    settings[key] = value;
  }
  if (flags.remoteDatabase !== undefined) {
    if (flags.remoteDatabase.trim() === "") {
      throw new RetaskError("usage", "--remote-database must name a database, got an empty string");
    }
    settings.remoteDatabase = flags.remoteDatabase;
  }
  settings.remoteHosts = (flags.remoteHost ?? []).map(checkRemoteHost);
  if (flags.retention !== undefined) {
    settings.retentionMs = parseAge("--retention", flags.retention);
  }
  return settings;
}

/**
 * A remote host as `work --remote-host` takes it: `HOST:PORT`, or a
 * `postgres://` URL (checked, without showing it, when the worker connects).
 */
function checkRemoteHost(spec: string): string {
  if (/^postgres(ql)?:\/\//.test(spec)) return spec;
  const match = /^([^\s:/@]+|\[[0-9a-fA-F:]+\]):([0-9]{1,5})$/.exec(spec);
  if (!match || Number(match[2]) < 1 || Number(match[2]) > 65535) {
    throw new RetaskError(
      "usage",
      `--remote-host must be HOST:PORT (a port from 1 to 65535) or a postgres:// URL, got "${spec}"`,
    );
  }
  return spec;
}

/** A worker stops by one rule at most: `once` or `drain`. */
function checkStop(settings: Pick<WorkerSettings, "drain" | "once">): void {
  if (settings.drain && settings.once) {
    throw new RetaskError(
      "usage",
      "--once and --drain do not go together: --once stops when nothing is runnable now, " +
        "--drain also waits for tasks scheduled later",
    );
  }
}

/** Fills in the defaults for settings a library caller left out, and checks them. */
export function resolveSettings(partial: Partial<WorkerSettings>): WorkerSettings {
  const settings = { ...WORKER_DEFAULTS, ...partial };
  for (const key of Object.keys(BOUNDS) as Numeric[]) {
    if (!inBounds(key, settings[key])) throw outOfBounds(key, key, String(settings[key]));
  }
  checkStop(settings);
  const retention = settings.retentionMs;
  if (retention !== undefined && !(Number.isSafeInteger(retention) && retention >= 0)) {
    throw new RetaskError("usage", `retentionMs must be 0 or more milliseconds, got ${retention}`);
  }
  return settings;
}
