/**
 * Installs and upgrades the schema: the numbered files in `sql/`, each applied
 * once, in order, all pending ones in one transaction, under an advisory lock,
 * and recorded in `retask_migrations`.
 * @module
 */
import type { Queryable, Sql } from "./connect.ts";
import { RetaskError } from "../errors.ts";

/**
 * The migrations, in order. Listed rather than read from the directory so a
 * `deno compile`d binary (built with `--include sql/`) finds them too.
 */
export const MIGRATIONS: readonly string[] = [
  "0001_tasks.sql",
  "0002_programs.sql",
  "0003_transitions.sql",
  "0004_run.sql",
  "0005_batches.sql",
];

/** The schema version this code installs. */
export const SCHEMA_VERSION: number = MIGRATIONS.length;

/** What {@link install} did. */
export interface InstallResult {
  /** Schema version after the install. */
  version: number;
  /** Migrations this call applied (empty when the schema was current). */
  applied: string[];
}

function versionOf(file: string): number {
  return Number(file.slice(0, 4));
}

async function sha256(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

function readMigration(file: string): Promise<string> {
  return Deno.readTextFile(new URL(`../../sql/${file}`, import.meta.url));
}

async function migrationFiles() {
  return await Promise.all(MIGRATIONS.map(async (file) => {
    const text = await readMigration(file);
    return { file, text, version: versionOf(file), checksum: await sha256(text) };
  }));
}

type MigrationFile = Awaited<ReturnType<typeof migrationFiles>>[number];

/** The migrations applied to a database (version → checksum); empty when none. */
async function appliedMigrations(sql: Queryable): Promise<Map<number, string | null>> {
  try {
    const rows = await sql<{ version: number; checksum: string | null }[]>`
      SELECT version, checksum FROM public.retask_migrations`;
    return new Map(rows.map((r) => [r.version, r.checksum]));
  } catch (error) {
    if ((error as { code?: string }).code === "42P01") return new Map(); // no such table
    throw error;
  }
}

function versionIn(applied: Map<number, unknown>): number {
  return Math.max(0, ...applied.keys());
}

// What this code cannot run against: a newer schema (it may have replaced what
// this code calls), or a migration that changed after it was applied (forward
// only: the change would never reach this database).
function checkApplied(applied: Map<number, string | null>, files: MigrationFile[]): void {
  const version = versionIn(applied);
  if (version > SCHEMA_VERSION) {
    throw new RetaskError(
      "database",
      `the database has schema version ${version}, newer than this retask's ${SCHEMA_VERSION}: upgrade retask`,
    );
  }
  for (const { file, version, checksum } of files) {
    if (applied.has(version) && applied.get(version) !== checksum) {
      throw new RetaskError(
        "database",
        `migration ${file} differs from the one applied to this database; ` +
          "applied migrations must not change: add a new numbered file instead",
      );
    }
  }
}

/**
 * Applies every migration the database lacks, all in one transaction: an
 * install that fails part-way (say, on a view of the user's that depends on a
 * function a migration replaces) changes nothing. Safe to run concurrently:
 * the advisory lock serialises installers, and each re-checks what is applied.
 */
export async function install(sql: Sql): Promise<InstallResult> {
  const files = await migrationFiles();
  const result = await sql.begin(async (tx) => {
    await tx`SELECT pg_advisory_xact_lock(hashtextextended('retask.migrate', 0))`;
    await tx`SET LOCAL search_path = public`;
    await tx`CREATE TABLE IF NOT EXISTS retask_migrations (
      version integer PRIMARY KEY,
      name text NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT now(),
      checksum text)`;
    const done = await appliedMigrations(tx);
    checkApplied(done, files);
    const applying: string[] = [];
    for (const { file, text, version, checksum } of files) {
      if (done.has(version)) continue;
      try {
        await tx.unsafe(text);
      } catch (error) {
        const { message = String(error), detail } = error as { message?: string; detail?: string };
        throw new RetaskError(
          "database",
          `migration ${file} failed: ${message}${
            detail ? ` (${detail})` : ""
          }; nothing was changed`,
          { cause: error },
        );
      }
      await tx`INSERT INTO retask_migrations (version, name, checksum)
               VALUES (${version}, ${file}, ${checksum})`;
      done.set(version, checksum);
      applying.push(file);
    }
    return { version: versionIn(done), applying };
  });
  return { version: result.version, applied: result.applying };
}

/**
 * Checks that retask's schema is installed and is the version this code was
 * written for, so a command on a bare database says "run retask install"
 * instead of "relation does not exist", and an old worker does not run against
 * functions a newer schema replaced, nor any worker against migrations that
 * differ from its own.
 */
export async function requireInstalled(sql: Sql): Promise<void> {
  const applied = await appliedMigrations(sql);
  checkApplied(applied, await migrationFiles());
  const version = versionIn(applied);
  if (version === SCHEMA_VERSION) return;
  throw new RetaskError(
    "database",
    version === 0
      ? "retask is not installed in this database; run retask install"
      : `the database has schema version ${version}, older than ${SCHEMA_VERSION}; run retask install`,
  );
}
