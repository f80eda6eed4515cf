/**
 * Command-line text into checked values, with errors that name the flag and
 * say what to fix (exit 2).
 * @module
 */
import { RetaskError } from "../lib/errors.ts";

/** Options for {@link parseInteger}. */
export interface IntegerRange {
  min?: number;
  max?: number;
  /** The error's code: `invalid_input` (default), or `usage` for a flag's value. Both exit 2. */
  code?: "usage" | "invalid_input";
}

/** Parses a whole number given as `what`; an input error names the flag and the range. */
export function parseInteger(what: string, text: string, range: IntegerRange = {}): number {
  const { min = -Infinity, max = Infinity, code = "invalid_input" } = range;
  const value = /^[+-]?[0-9]+$/.test(text.trim()) ? Number(text) : NaN;
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    const bounds = max === Infinity
      ? (min === 1 ? "a positive whole number" : `a whole number of at least ${min}`)
      : `a whole number from ${min} to ${max}`;
    throw new RetaskError(code, `${what} must be ${bounds}, got "${text}"`);
  }
  return value;
}

/** Parses a probability from 0 to 1 given as `what`. */
export function parseProbability(what: string, text: string): number {
  const value = /^\s*([0-9]*\.)?[0-9]+\s*$/.test(text) ? Number(text) : NaN;
  if (!(value >= 0 && value <= 1)) {
    throw new RetaskError("invalid_input", `${what} must be a number from 0 to 1, got "${text}"`);
  }
  return value;
}

/** The line and column (from 1) of character `position` in `text`. */
function lineColumn(text: string, position: number): string {
  const before = text.slice(0, position).split("\n");
  return `line ${before.length} column ${before[before.length - 1].length + 1}`;
}

/**
 * Where `JSON.parse` fails, for the messages that do not say: the longest prefix
 * that can still begin a valid document ends there (found by bisection).
 */
function jsonErrorPosition(text: string): number {
  const prefixOk = (length: number) => {
    try {
      JSON.parse(text.slice(0, length));
      return true;
    } catch (error) {
      const message = (error as Error).message;
      return message.startsWith("Unexpected end") || message.includes(` at position ${length} `);
    }
  };
  let [lo, hi] = [0, text.length]; // prefixOk(lo) holds, the whole text fails
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (prefixOk(mid)) lo = mid;
    else hi = mid;
  }
  return lo;
}

/**
 * Parses `text` as a JSON object given as `what`. Syntax errors keep the
 * parser's message and give the position; other JSON values are rejected.
 */
export function parseJsonObject(what: string, text: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    let message = (error as Error).message;
    if (!/ at position \d+/.test(message)) {
      const position = jsonErrorPosition(text);
      message = message.replace(/, ".*" is not valid JSON$/s, "");
      if (!message.includes("JSON")) message += " in JSON";
      message += ` at position ${position} (${lineColumn(text, position)})`;
    }
    throw new RetaskError("invalid_input", `${what} is not valid JSON: ${message}`, {
      cause: error,
    });
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    const kind = value === null ? "null" : Array.isArray(value) ? "an array" : typeof value;
    throw new RetaskError(
      "invalid_input",
      `${what} must be a JSON object such as '{"key": "value"}', got ${kind}`,
    );
  }
  return value as Record<string, unknown>;
}

/**
 * A start time: an ISO 8601 date-time (`2030-01-02T03:04:05Z`) or a delay from
 * `now` such as `90s`, `15m`, `2h`, `1d`.
 */
export function parseRunAfter(what: string, text: string, now: Date = new Date()): Date {
  const delay = /^\+?([0-9]+(?:\.[0-9]+)?)\s*(s|m|h|d)$/.exec(text.trim());
  const day = /^([0-9]{4})-([0-9]{2})-([0-9]{2})/.exec(text.trim());
  let date: Date | undefined;
  if (delay) {
    const unit = { s: 1e3, m: 60e3, h: 3600e3, d: 86400e3 }[delay[2] as "s" | "m" | "h" | "d"];
    date = new Date(now.getTime() + Number(delay[1]) * unit);
  } else if (day) {
    date = new Date(text);
    // Date rolls 2030-02-31 over into March; a day that does not exist is a typo
    const [year, month, dayOfMonth] = day.slice(1).map(Number);
    const check = new Date(Date.UTC(year, month - 1, dayOfMonth));
    const real = check.getUTCFullYear() === year && check.getUTCMonth() + 1 === month &&
      check.getUTCDate() === dayOfMonth;
    if (!real) date = undefined;
  }
  if (!date || Number.isNaN(date.getTime())) {
    throw new RetaskError(
      "invalid_input",
      `${what} must be an ISO date-time (2030-01-02T03:04:05Z) or a delay (90s, 15m, 2h, 1d), got "${text}"`,
    );
  }
  return date;
}
