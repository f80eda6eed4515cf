/**
 * What every subcommand shares: the database option and printing.
 * @module
 */
import type { Command } from "npm:commander@14.0.3";
import { connect, type Database } from "../lib/db/connect.ts";

/** The `--database-url` given anywhere on the command line, if any. */
export function databaseUrl(command: Command): string | undefined {
  return command.optsWithGlobals<{ databaseUrl?: string }>().databaseUrl;
}

/** Connects (embedded server when no URL), runs `fn`, and always closes. */
export async function withDatabase<T>(
  command: Command,
  fn: (db: Database) => Promise<T>,
): Promise<T> {
  const db = await connect({ url: databaseUrl(command) });
  try {
    return await fn(db);
  } finally {
    await db.close();
  }
}

/** Prints a value as one line of JSON (the stable `--json` form). */
export function printJson(value: unknown): void {
  console.log(JSON.stringify(value));
}
