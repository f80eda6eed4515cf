/**
 * Installs and upgrades the schema: the numbered files in `sql/`, each applied
 * once, in order, all pending ones in one transaction, under an advisory lock,
 * and recorded in `retask_migrations`.
 * @module
 */
import type { Sql } from "./db.ts";
import { RetaskError } from "./errors.ts";

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

/** Reads a migration's SQL, next to this module in the source tree. */
export function readMigration(file: string): Promise<string> {
  return Deno.readTextFile(new URL(`../sql/${file}`, import.meta.url));
}

/** The schema version installed in the database, 0 when none. */
export async function installedVersion(sql: Sql): Promise<number> {
  const [row] = await sql<{ version: number | null }[]>`
    SELECT CASE WHEN to_regclass('public.retask_migrations') IS NULL THEN 0 END AS version`;
  if (row.version === 0) return 0;
  const [{ max }] = await sql<{ max: number | null }[]>`
    SELECT max(version) AS max FROM public.retask_migrations`;
  return max ?? 0;
}

async function migrationFiles() {
  return await Promise.all(MIGRATIONS.map(async (file) => {
    const text = await readMigration(file);
    return { file, text, version: versionOf(file), checksum: await sha256(text) };
  }));
}

// Forward-only: a file changed after it was applied would never reach this
// database, and the code would call SQL that is not there.
function changedMigration(file: string): RetaskError {
  return new RetaskError(
    "database",
    `migration ${file} differs from the one applied to this database; ` +
      "applied migrations must not change: add a new numbered file instead",
  );
}

/**
 * Applies every migration the database lacks, all in one transaction: an
 * install that fails part-way (say, on a view of the user's that depends on a
 * function a migration replaces) changes nothing. Safe to run concurrently:
 * the advisory lock serialises installers, and each re-checks what is applied.
 */
export async function install(sql: Sql): Promise<InstallResult> {
  const files = await migrationFiles();
  const applied = await sql.begin(async (tx) => {
    await tx`SELECT pg_advisory_xact_lock(hashtextextended('retask.migrate', 0))`;
    await tx`SET LOCAL search_path = public`;
    await tx`CREATE TABLE IF NOT EXISTS retask_migrations (
      version integer PRIMARY KEY,
      name text NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT now(),
      checksum text)`;
    const [newest] = await tx<{ max: number | null }[]>`
      SELECT max(version) AS max FROM retask_migrations`;
    if ((newest.max ?? 0) > SCHEMA_VERSION) {
      throw new RetaskError(
        "database",
        `the database has schema version ${newest.max}, newer than this retask's ${SCHEMA_VERSION}: upgrade retask`,
      );
    }
    const done = new Map(
      (await tx<{ version: number; checksum: string | null }[]>`
        SELECT version, checksum FROM retask_migrations`).map((r) => [r.version, r.checksum]),
    );
    const applying: string[] = [];
    for (const { file, text, version, checksum } of files) {
      if (done.has(version)) {
        if (done.get(version) !== checksum) throw changedMigration(file);
        continue;
      }
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
      applying.push(file);
    }
    return applying;
  });
  return { version: await installedVersion(sql), applied };
}

/**
 * Checks that retask's schema is installed and is the version this code was
 * written for, so a command on a bare database says "run retask install"
 * instead of "relation does not exist", and an old worker does not run against
 * functions a newer schema replaced, nor any worker against migrations that
 * differ from its own.
 */
export async function requireInstalled(sql: Sql): Promise<void> {
  const version = await installedVersion(sql);
  if (version === SCHEMA_VERSION) {
    const applied = await sql<{ version: number; checksum: string | null }[]>`
      SELECT version, checksum FROM public.retask_migrations`;
    const files = new Map((await migrationFiles()).map((f) => [f.version, f]));
    for (const row of applied) {
      const file = files.get(row.version);
      if (file && row.checksum !== file.checksum) throw changedMigration(file.file);
    }
    return;
  }
  if (version > SCHEMA_VERSION) {
    // a newer schema may have replaced what this code calls
    throw new RetaskError(
      "database",
      `the database has schema version ${version}, newer than this retask's ${SCHEMA_VERSION}: upgrade retask`,
    );
  }
  throw new RetaskError(
    "database",
    version === 0
      ? "retask is not installed in this database; run retask install"
      : `the database has schema version ${version}, older than ${SCHEMA_VERSION}; run retask install`,
  );
}
