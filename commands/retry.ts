/**
 * `retask retry <task_id>...` (or `--program P --status error`): schedule
 * again tasks that ended in error or were cancelled, each with a fresh budget
 * of attempts numbered on from those it used.
 * @module
 */
import { Command } from "npm:commander@14.0.3";
import {
  idsLine,
  parseSelection,
  type SelectFlags,
  selectOptions,
  skippedJson,
  skippedLines,
} from "../cli/operate.ts";
import { parseInteger } from "../cli/parse.ts";
import { printJson, schemaOf, withDatabase } from "../cli/common.ts";
import { requireInstalled } from "../lib/db/schema.ts";
import { RETRYABLE, retryTasks } from "../lib/queue/operate.ts";

interface RetryFlags extends SelectFlags {
  maxAttempts?: string;
  json?: boolean;
}

/** Builds the `retry` subcommand. */
export function retryCommand(): Command {
  return selectOptions(
    new Command("retry")
      .description(
        "schedule again tasks that ended in error or were cancelled, with a fresh budget of " +
          "attempts (attempt 4 of 6 after 3 of 3); their history stays",
      )
      .argument("[task_id...]", "tasks to retry: ids, or ranges such as 101-103"),
    RETRYABLE,
  )
    .option("--max-attempts <n>", "attempts to give each, 1 to 100 (default: the budget it had)")
    .option("--json", 'print {"retried": [ids], "skipped": [{task_id, status, reason}]}')
    .action(async (args: string[], flags: RetryFlags, command: Command) => {
      const select = parseSelection("retry", args, flags, RETRYABLE);
      const maxAttempts = flags.maxAttempts === undefined
        ? undefined
        : parseInteger("--max-attempts", flags.maxAttempts, { min: 1, max: 100 });
      const schema = schemaOf(command);
      const { retried, skipped } = await withDatabase(command, async (db) => {
        await requireInstalled(db.sql, schema);
        return await retryTasks(db.sql, { ...select, maxAttempts, schema });
      });
      if (flags.json) return printJson({ retried, skipped: skippedJson(skipped) });
      const lines = [...idsLine("retried", retried), ...skippedLines(skipped)];
      console.log(lines.length > 0 ? lines.join("\n") : "no error or cancelled task matches");
    });
}
