/**
 * `retask enqueue <program>`: queue one or more tasks of a program.
 * @module
 */
import { Command } from "npm:commander@14.0.3";
import { escapeControl, formatIdRanges } from "../cli/format.ts";
import { parseInteger, parseJsonObject, parseRunAfter } from "../cli/parse.ts";
import { enqueueKeyed, type EnqueueOptions } from "../lib/queue/enqueue.ts";
import { RetaskError } from "../lib/errors.ts";
import { findProgram } from "../lib/queue/programs.ts";
import { requireInstalled } from "../lib/db/schema.ts";
import { printJson, schemaOf, withDatabase } from "../cli/common.ts";

interface EnqueueFlags {
  params?: string;
  maxAttempts?: string;
  host?: string;
  port?: string;
  count?: string;
  runAfter?: string;
  priority?: string;
  key?: string;
  json?: boolean;
  quiet?: boolean;
}

/** The most tasks one command queues (one INSERT). */
const MAX_COUNT = 100_000;

/** Priorities run from -MAX_PRIORITY to MAX_PRIORITY (the tables' bounds). */
const MAX_PRIORITY = 1_000_000;

/**
 * Flags parsed before anything connects. What a task may be (attempts, host
 * and port) is SQL's to check: it refuses with exit 2 and writes nothing.
 */
function enqueueOptions(program: string, flags: EnqueueFlags): EnqueueOptions {
  const params = flags.params === undefined ? {} : parseJsonObject("--params", flags.params);
  const count = flags.count === undefined
    ? 1
    : parseInteger("--count", flags.count, { min: 1, max: MAX_COUNT });
  const options: EnqueueOptions = { program, params: Array(count).fill(params) };
  if (flags.host !== undefined) options.host = flags.host;
  if (flags.port !== undefined) options.port = flags.port;
  if (flags.maxAttempts !== undefined) {
    options.maxAttempts = parseInteger("--max-attempts", flags.maxAttempts);
  }
  if (flags.runAfter !== undefined) options.runAfter = parseRunAfter("--run-after", flags.runAfter);
  if (flags.priority !== undefined) {
    options.priority = parseInteger("--priority", flags.priority, {
      min: -MAX_PRIORITY,
      max: MAX_PRIORITY,
    });
  }
  if (flags.key !== undefined) {
    if (count > 1) {
      throw new RetaskError(
        "usage",
        `--key names one task, so it cannot go with --count ${count}; enqueue one task per key`,
      );
    }
    // what a key may be (1 to 1000 characters) is SQL's to check
    options.key = flags.key;
  }
  return options;
}

/** Builds the `enqueue` subcommand. */
export function enqueueCommand(): Command {
  return new Command("enqueue")
    .description("queue tasks of a program; prints the new task ids")
    .argument("<program>", "program name or id (see retask register)")
    .option("--params <json>", "the program's argument, a JSON object (default {})")
    .option("--count <n>", "queue n identical tasks (default 1)")
    .option("--max-attempts <n>", "attempts in all for these tasks, 1 to 100 (default: program's)")
    .option("--host <host>", "run on this server instead (needs --port)")
    .option("--port <port>", "port of --host")
    .option("--run-after <time>", "not before this ISO time, or after a delay: 90s, 15m, 2h, 1d")
    .option(
      "--priority <n>",
      "higher runs first, -1000000 to 1000000 (default: the program's, else 0)",
    )
    .option(
      "--key <text>",
      "a unique key: while a task of this program with this key is scheduled or running, " +
        "print that task's id instead of queueing another",
    )
    .option("--json", "print {program_id, task_ids, existing} as JSON")
    .option("-q, --quiet", "print only the task ids, one per line")
    .action(async (program: string, flags: EnqueueFlags, command: Command) => {
      const schema = schemaOf(command);
      const options = { ...enqueueOptions(program, flags), schema };
      const { programId, name, tasks } = await withDatabase(command, async (db) => {
        await requireInstalled(db.sql, schema);
        return await db.sql.begin(async (tx) => {
          const { programId, name } = await findProgram(tx, program, { schema });
          const tasks = await enqueueKeyed(tx, { ...options, program: programId });
          return { programId, name, tasks };
        });
      });
      const taskIds = tasks.map((t) => t.taskId);
      const existing = tasks.some((t) => t.existing);
      if (flags.json) return printJson({ program_id: programId, task_ids: taskIds, existing });
      if (flags.quiet) return console.log(taskIds.join("\n"));
      const of = `of program "${escapeControl(name)}" (id ${programId})`;
      if (existing) {
        return console.log(
          `task ${taskIds[0]} ${of} already has key "${escapeControl(options.key ?? "")}" ` +
            "and is scheduled or running: queued nothing",
        );
      }
      console.log(
        taskIds.length === 1
          ? `queued task ${taskIds[0]} ${of}`
          : `queued ${taskIds.length} tasks ${of}: ${formatIdRanges(taskIds)}`,
      );
    });
}
