/**
 * What every subcommand shares: the database option and printing.
 * @module
 */
import type { Command } from "npm:commander@14.0.3";
import { connect, type Database } from "../lib/db/connect.ts";
import { checkSchemaName, DEFAULT_SCHEMA } from "../lib/db/schema.ts";

/** The `--database-url` given anywhere on the command line, if any. */
export function databaseUrl(command: Command): string | undefined {
  return command.optsWithGlobals<{ databaseUrl?: string }>().databaseUrl;
}

/** retask's schema: `--schema`, else `RETASK_SCHEMA`, else `retask`. */
export function schemaOf(command: Command): string {
  const flag = command.optsWithGlobals<{ schema?: string }>().schema;
  return checkSchemaName(flag ?? (Deno.env.get("RETASK_SCHEMA") || DEFAULT_SCHEMA));
}

/** Connects (embedded server when no URL), runs `fn`, and always closes. */
export async function withDatabase<T>(
  command: Command,
  fn: (db: Database) => Promise<T>,
): Promise<T> {
  const db = await connect({ url: databaseUrl(command), embedded: true });
  try {
    return await fn(db);
  } finally {
    await db.close();
  }
}

/**
 * Prints a value as one line of JSON (the stable `--json` form). Keys are
 * snake_case, as in the database and in `work --json`; the library's camelCase
 * names are turned, except inside `params`, which is the user's own JSON.
 */
export function printJson(value: unknown): void {
  console.log(JSON.stringify(snakeKeys(value)));
}

function snakeKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(snakeKeys);
  if (value === null || typeof value !== "object" || value instanceof Date) return value;
  return Object.fromEntries(
    Object.entries(value).map(([key, v]) => [
      key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`),
      key === "params" ? v : snakeKeys(v),
    ]),
  );
}
