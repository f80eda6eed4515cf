/**
 * `retask delete <task_id>...`: remove ended tasks and their history.
 * @module
 */
import { Command } from "npm:commander@14.0.3";
import { idsLine, parseTaskIds, skippedJson, skippedLines } from "../cli/operate.ts";
import { printJson, schemaOf, withDatabase } from "../cli/common.ts";
import { requireInstalled } from "../lib/db/schema.ts";
import { deleteTasks } from "../lib/queue/operate.ts";

/** Builds the `delete` subcommand. */
export function deleteCommand(): Command {
  return new Command("delete")
    .description(
      "delete tasks that ended (finished, error or cancelled) and their history; " +
        "a scheduled or running one is skipped: cancel it first",
    )
    .argument("<task_id...>", "tasks to delete: ids, or ranges such as 101-103")
    .option("--json", 'print {"deleted": [ids], "skipped": [{task_id, status, reason}]}')
    .action(async (args: string[], flags: { json?: boolean }, command: Command) => {
      const taskIds = parseTaskIds(args);
      const schema = schemaOf(command);
      const { deleted, skipped } = await withDatabase(command, async (db) => {
        await requireInstalled(db.sql, schema);
        return await deleteTasks(db.sql, taskIds, { schema });
      });
      if (flags.json) return printJson({ deleted, skipped: skippedJson(skipped) });
      const gone = deleted.length === 1 ? " and its history" : " and their history";
      console.log([...idsLine("deleted", deleted, gone), ...skippedLines(skipped)].join("\n"));
    });
}
