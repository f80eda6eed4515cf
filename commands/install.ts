/**
 * `retask install`: create retask's schema, or upgrade it in place (a
 * course-era database, or one of an older retask, included).
 * @module
 */
import { Command } from "npm:commander@14.0.3";
import { install, type InstallResult } from "../lib/db/schema.ts";
import { printJson, schemaOf, withDatabase } from "../cli/common.ts";

/** What install did, in at most three lines. */
function describeInstall(result: InstallResult): string {
  const lines: string[] = [];
  const changed = [...result.migrations, ...result.functions];
  lines.push(
    changed.length === 0
      ? `retask ${result.schema} (schema version ${result.version}): already up to date`
      : `retask ${result.schema} (schema version ${result.version}): applied ${changed.join(", ")}`,
  );
  if (result.compat.installed.length > 0) {
    lines.push(`course names: ${result.compat.installed.join(", ")}`);
  }
  const { skipped } = result.compat;
  if (skipped.length > 0) {
    lines.push(
      `skipped course names that are taken: ${
        skipped.map((s) => `${s.name} (${s.reason})`).join(", ")
      }; use retask's own instead: ${[...new Set(skipped.map((s) => s.instead))].join(", ")}`,
    );
  }
  return lines.join("\n");
}

/** Builds the `install` subcommand. */
export function installCommand(): Command {
  return new Command("install")
    .description(
      "create or upgrade retask's schema and the course application's names (safe to repeat)",
    )
    .option("--no-compat", "leave out the course application's names (tasks, empapi.*, ...)")
    .option("--json", "print {schema, version, migrations, functions, compat} as JSON")
    .action(async (options: { json?: boolean; compat: boolean }, command: Command) => {
      const schema = schemaOf(command);
      const result = await withDatabase(
        command,
        (db) => install(db.sql, { schema, compat: options.compat }),
      );
      for (const warning of result.warnings) console.error(`retask: warning: ${warning}`);
      if (options.json) return printJson(result);
      console.log(describeInstall(result));
    });
}
