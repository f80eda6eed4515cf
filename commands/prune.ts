/**
 * `retask prune --older-than 30d`: remove tasks that ended long ago, and their
 * history, in small batches that never wait for a worker.
 * @module
 */
import { Command } from "npm:commander@14.0.3";
import { parseInteger } from "../cli/parse.ts";
import { printJson, schemaOf, withDatabase } from "../cli/common.ts";
import { RetaskError } from "../lib/errors.ts";
import { requireInstalled } from "../lib/db/schema.ts";
import {
  ENDED,
  type EndedStatus,
  parseAge,
  PRUNE_BATCH,
  PRUNE_REST_RATIO,
  pruneTasks,
} from "../lib/queue/operate.ts";
import { parseStatus } from "../lib/queue/read.ts";

interface PruneFlags {
  olderThan: string;
  status?: string[];
  batchSize?: string;
  restRatio?: string;
  json?: boolean;
}

/** `--status finished,error` (repeatable): ended statuses only. */
function parseEnded(values: readonly string[]): EndedStatus[] {
  const statuses = values.flatMap((v) => v.split(",")).map((s) => parseStatus(s));
  for (const status of statuses) {
    if (!(ENDED as readonly string[]).includes(status)) {
      throw new RetaskError(
        "invalid_input",
        `prune removes ${ENDED.join(", ")} tasks, not ${status} ones`,
      );
    }
  }
  return [...new Set(statuses)] as EndedStatus[];
}

/** Builds the `prune` subcommand. */
export function pruneCommand(): Command {
  return new Command("prune")
    .description(
      "delete tasks that ended longer ago than --older-than, and their history, in small " +
        "batches that never wait for a worker",
    )
    .requiredOption("--older-than <age>", "ended more than this long ago: 45s, 90m, 12h, 30d, 2w")
    .option(
      "--status <status>",
      `only tasks that ended so: ${ENDED.join(", ")}; repeatable or comma-separated (default all)`,
      (value: string, previous: string[] = []) => [...previous, value],
    )
    .option("--batch-size <n>", `tasks per transaction, 1 to 100000 (default ${PRUNE_BATCH})`)
    .option(
      "--rest-ratio <n>",
      "after each batch, rest n times as long as it took, leaving the database's CPU to " +
        `the workers; 0 for flat out (default ${PRUNE_REST_RATIO})`,
    )
    .option("--json", 'print {"deleted": n}')
    .action(async (flags: PruneFlags, command: Command) => {
      const olderThan = parseAge("--older-than", flags.olderThan);
      const statuses = flags.status === undefined ? undefined : parseEnded(flags.status);
      const batchSize = flags.batchSize === undefined
        ? undefined
        : parseInteger("--batch-size", flags.batchSize, { min: 1, max: 100_000, code: "usage" });
      const restRatio = flags.restRatio === undefined
        ? PRUNE_REST_RATIO
        : parseInteger("--rest-ratio", flags.restRatio, { min: 0, max: 100, code: "usage" });
      const schema = schemaOf(command);
      const { deleted } = await withDatabase(command, async (db) => {
        await requireInstalled(db.sql, schema);
        return await pruneTasks(db.sql, { olderThan, statuses, batchSize, restRatio, schema });
      });
      if (flags.json) return printJson({ deleted });
      const which = statuses ? ` ${statuses.join(" or ")}` : "";
      console.log(
        `deleted ${deleted}${which} task${deleted === 1 ? "" : "s"} that ended more than ` +
          `${flags.olderThan.trim()} ago, and their history`,
      );
    });
}
