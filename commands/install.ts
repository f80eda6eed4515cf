/**
 * `retask install`: apply the migrations the database lacks.
 * @module
 */
import { Command } from "npm:commander@14.0.3";
import { install } from "../lib/db/schema.ts";
import { printJson, withDatabase } from "../cli/common.ts";

/** Builds the `install` subcommand. */
export function installCommand(): Command {
  return new Command("install")
    .description("create or upgrade retask's tables and functions (safe to repeat)")
    .option("--json", "print {version, applied} as JSON")
    .action(async (options: { json?: boolean }, command: Command) => {
      const result = await withDatabase(command, (db) => install(db.sql));
      if (options.json) return printJson(result);
      console.log(
        result.applied.length === 0
          ? `schema version ${result.version}: already up to date`
          : `schema version ${result.version}: applied ${result.applied.join(", ")}`,
      );
    });
}
