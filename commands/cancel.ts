/**
 * `retask cancel <task_id>...` (or `--program P --status scheduled`): a
 * scheduled task ends cancelled and never runs; a running one is asked to
 * stop, and its worker cancels its program (no retry).
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
import { formatIdRanges } from "../cli/format.ts";
import { printJson, schemaOf, withDatabase } from "../cli/common.ts";
import { requireInstalled } from "../lib/db/schema.ts";
import { CANCELLABLE, cancelTasks } from "../lib/queue/operate.ts";

interface CancelFlags extends SelectFlags {
  json?: boolean;
}

/** `asked running task 5 to stop`, or `asked 3 running tasks to stop: 5-7`. */
function requestedLine(ids: readonly number[]): string[] {
  if (ids.length === 0) return [];
  return [
    ids.length === 1
      ? `asked running task ${ids[0]} to stop`
      : `asked ${ids.length} running tasks to stop: ${formatIdRanges(ids)}`,
  ];
}

/** Builds the `cancel` subcommand. */
export function cancelCommand(): Command {
  return selectOptions(
    new Command("cancel")
      .description(
        "cancel tasks: a scheduled one never runs; a running one is stopped by its worker " +
          "at once; either ends cancelled, with no retry",
      )
      .argument("[task_id...]", "tasks to cancel: ids, or ranges such as 101-103"),
    CANCELLABLE,
  )
    .option(
      "--json",
      'print {"cancelled": [ids], "requested": [ids], "skipped": [{task_id, status, reason}]}',
    )
    .action(async (args: string[], flags: CancelFlags, command: Command) => {
      const select = parseSelection("cancel", args, flags, CANCELLABLE);
      const schema = schemaOf(command);
      const { cancelled, requested, skipped } = await withDatabase(command, async (db) => {
        await requireInstalled(db.sql, schema);
        return await cancelTasks(db.sql, { ...select, schema });
      });
      if (flags.json) {
        return printJson({ cancelled, requested, skipped: skippedJson(skipped) });
      }
      const lines = [
        ...idsLine("cancelled", cancelled),
        ...requestedLine(requested),
        ...skippedLines(skipped),
      ];
      console.log(lines.length > 0 ? lines.join("\n") : "no scheduled or running task matches");
    });
}
