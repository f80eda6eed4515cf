/**
 * `retask register <name> <function>`: make a SQL function a program, or update
 * the program of that name.
 * @module
 */
import { Command } from "npm:commander@14.0.3";
import { formatDuration, formatInterval } from "../cli/format.ts";
import { parseInteger } from "../cli/parse.ts";
import type { Sql } from "../lib/db/connect.ts";
import { isPgError, RetaskError } from "../lib/errors.ts";
import {
  listPrograms,
  type Program,
  type ProgramSettings,
  registerProgram,
  type RetryPolicy,
} from "../lib/queue/programs.ts";
import { requireInstalled } from "../lib/db/schema.ts";
import { parseDuration } from "../lib/worker/settings.ts";
import { printJson, schemaOf, withDatabase } from "../cli/common.ts";

interface RegisterFlags {
  maxAttempts?: string;
  retryDelay?: string;
  retryBackoff?: string;
  retryDelayMax?: string;
  timeout?: string;
  priority?: string;
  json?: boolean;
}

/** A program's timeout is at most a day (the tables' bound). */
const MAX_TIMEOUT_MS = 86_400_000;

/**
 * The flags as settings. What a retry policy may be is SQL's to check
 * (check_retry_policy): a bad one exits 2 and registers nothing.
 */
function programSettings(flags: RegisterFlags): ProgramSettings {
  const policy: ProgramSettings = {};
  if (flags.maxAttempts !== undefined) {
    policy.maxAttempts = parseInteger("--max-attempts", flags.maxAttempts);
  }
  if (flags.retryBackoff !== undefined) {
    policy.retryBackoff = flags.retryBackoff as RetryPolicy["retryBackoff"];
  }
  if (flags.retryDelay !== undefined) policy.retryDelay = flags.retryDelay;
  if (flags.retryDelayMax !== undefined) policy.retryDelayMax = flags.retryDelayMax;
  if (flags.timeout !== undefined) policy.timeout = `${parseTimeout(flags.timeout)} milliseconds`;
  if (flags.priority !== undefined) {
    policy.priority = parseInteger("--priority", flags.priority, { min: -1e6, max: 1e6 });
  }
  return policy;
}

/** `--timeout`: a duration up to a day in ms, or 0 (`none`) for the worker's `--task-timeout`. */
function parseTimeout(text: string): number {
  if (text.trim().toLowerCase() === "none") return 0;
  const ms = parseDuration("--timeout", text);
  if (ms > MAX_TIMEOUT_MS) {
    throw new RetaskError(
      "usage",
      `--timeout must be at most a day (24h), or none for the worker's --task-timeout, got "${text}"`,
    );
  }
  return ms;
}

/**
 * Has PostgreSQL read the intervals given, so that one it cannot read is an error naming its
 * option rather than the parser's message alone.
 */
async function checkIntervals(sql: Sql, flags: RegisterFlags): Promise<void> {
  const given = [["--retry-delay", flags.retryDelay], ["--retry-delay-max", flags.retryDelayMax]];
  for (const [flag, text] of given) {
    if (text === undefined) continue;
    try {
      await sql`SELECT ${text}::interval`;
    } catch (error) {
      // SQLSTATE class 22: not an interval, or one out of range
      if (!isPgError(error) || !error.code.startsWith("22")) throw error;
      throw new RetaskError(
        "invalid_input",
        `${flag} must be an interval such as '5 seconds' or '2 minutes', got "${text}"`,
        { cause: error },
      );
    }
  }
}

/** The settings a program has beside the default: `, timeout 30s, priority 5, paused`. */
function describeSettings(program: Program): string {
  return (program.timeoutMs === null ? "" : `, timeout ${formatDuration(program.timeoutMs)}`) +
    (program.priority === 0 ? "" : `, priority ${program.priority}`) +
    (program.paused ? ", paused (retask resume)" : "");
}

/** The retry rule in words: `no retry delay`, `retry delay 5 seconds`, … */
function describeRetry(program: Program): string {
  if (!/[1-9]/.test(program.retryDelay)) return "no retry delay";
  const delay = formatInterval(program.retryDelay);
  return program.retryBackoff === "exponential"
    ? `retry delay exponential from ${delay} up to ${formatInterval(program.retryDelayMax)}`
    : `retry delay ${delay}`;
}

/** Builds the `register` subcommand. */
export function registerCommand(): Command {
  return new Command("register")
    .description(
      "register a SQL function taking one jsonb as a program (updates the program of that name)",
    )
    .argument("<name>", "the program's name, used by enqueue and status")
    .argument("<function>", "a function f(params jsonb), optionally schema-qualified")
    .option("--max-attempts <n>", "attempts in all, 1 to 100 (new programs: 3)")
    .option("--retry-delay <interval>", "wait before a retry, e.g. '5 seconds' (new programs: 0)")
    .option("--retry-backoff <kind>", "fixed, or exponential (doubling, with jitter)")
    .option("--retry-delay-max <interval>", "cap on an exponential delay (new programs: 1 hour)")
    .option(
      "--timeout <duration>",
      "fail an attempt of this program that runs longer, in place of the worker's " +
        "--task-timeout: 500ms, 30s, 5m, up to 24h; none for the worker's (new programs: none)",
    )
    .option(
      "--priority <n>",
      "its tasks' priority unless enqueued with one; higher runs first, -1000000 to 1000000 " +
        "(new programs: 0)",
    )
    .option("--json", "print the program and whether it was created as one JSON object")
    .action(async (name: string, func: string, flags: RegisterFlags, command: Command) => {
      const schema = schemaOf(command);
      const policy = programSettings(flags);
      const { registered, program } = await withDatabase(command, async (db) => {
        await requireInstalled(db.sql, schema);
        await checkIntervals(db.sql, flags);
        const registered = await registerProgram(db.sql, name, func, { ...policy, schema });
        const [program] = await listPrograms(db.sql, { schema, programId: registered.programId });
        return { registered, program };
      });
      if (flags.json) return printJson({ ...program, created: registered.created });
      const verb = registered.created ? "registered" : "updated";
      console.log(
        `${verb} program "${program.name}" (id ${program.programId}): ${program.func}, ` +
          `${program.maxAttempts} attempts at most, ${describeRetry(program)}${
            describeSettings(program)
          }`,
      );
    });
}
