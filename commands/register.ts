/**
 * `retask register <name> <function>`: make a SQL function a program, or update
 * the program of that name.
 * @module
 */
import { Command } from "npm:commander@14.0.3";
import { formatInterval } from "../cli/format.ts";
import { parseInteger } from "../cli/parse.ts";
import type { Sql } from "../lib/db/connect.ts";
import { isPgError, RetaskError } from "../lib/errors.ts";
import {
  listPrograms,
  type Program,
  registerProgram,
  type RetryPolicy,
} from "../lib/queue/programs.ts";
import { requireInstalled } from "../lib/db/schema.ts";
import { printJson, schemaOf, withDatabase } from "../cli/common.ts";

interface RegisterFlags {
  maxAttempts?: string;
  retryDelay?: string;
  retryBackoff?: string;
  retryDelayMax?: string;
  json?: boolean;
}

/**
 * The flags as a policy. What a policy may be is SQL's to check
 * (check_retry_policy): a bad one exits 2 and registers nothing.
 */
function retryPolicy(flags: RegisterFlags): RetryPolicy {
  const policy: RetryPolicy = {};
  if (flags.maxAttempts !== undefined) {
    policy.maxAttempts = parseInteger("--max-attempts", flags.maxAttempts);
  }
  if (flags.retryBackoff !== undefined) {
    policy.retryBackoff = flags.retryBackoff as RetryPolicy["retryBackoff"];
  }
  if (flags.retryDelay !== undefined) policy.retryDelay = flags.retryDelay;
  if (flags.retryDelayMax !== undefined) policy.retryDelayMax = flags.retryDelayMax;
  return policy;
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
    .option("--json", "print the program and whether it was created as one JSON object")
    .action(async (name: string, func: string, flags: RegisterFlags, command: Command) => {
      const schema = schemaOf(command);
      const policy = retryPolicy(flags);
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
          `${program.maxAttempts} attempts at most, ${describeRetry(program)}`,
      );
    });
}
