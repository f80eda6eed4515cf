/**
 * Installs and upgrades retask's schema. Two kinds of SQL file, as Flyway has:
 * numbered migrations (`sql/migrations/`, table changes, each applied once and
 * never edited) and function files (`sql/*.sql`, the current definition of
 * every function, applied again whenever their content changes). Everything
 * is recorded with its checksum in `<schema>.migrations`; one install runs in
 * one transaction under an advisory lock.
 * @module
 */
import type { Queryable, Sql } from "./connect.ts";
import denoJson from "../../deno.json" with { type: "json" };
import { installCompat } from "./compat.ts";
import { dropRoutines, restoreAcls, saveAcls } from "./refresh.ts";
import { RetaskError } from "../errors.ts";

/** The schema retask installs into unless told otherwise. */
export const DEFAULT_SCHEMA = "retask";

/**
 * Table changes, in order. Listed rather than read from the directory so a
 * `deno compile`d binary (built with `--include sql/`) finds them too.
 */
export const MIGRATIONS: readonly string[] = [
  "0001_tables.sql",
  "0002_attempt_bounds.sql",
  "0003_operate.sql",
  "0004_counts.sql",
  "0005_wake.sql",
];

/** Function files, in the order they are applied (a later one may call an earlier one). */
export const FUNCTION_FILES: readonly string[] = [
  "wake.sql",
  "programs.sql",
  "state_machine.sql",
  "render.sql",
  "run.sql",
  "schedules.sql",
  "operate.sql",
  "counts.sql",
  "privileges.sql",
];

/**
 * The group roles install creates (sql/privileges.sql), as `<schema>_<group>`:
 * `retask_read`, `retask_enqueue`, `retask_register`, `retask_worker`, `retask_admin`.
 */
export const GROUPS = ["read", "enqueue", "register", "worker", "admin"] as const;

/** The course application's names over retask's schema (see the file's header). */
export const COMPAT_FILE = "compat.sql";

/** The schema version this code installs: the number of its last migration. */
export const SCHEMA_VERSION: number = Number(MIGRATIONS[MIGRATIONS.length - 1].slice(0, 4));

/** Options for {@link install}. */
export interface InstallOptions {
  /** The schema to install into (default `retask`): a lowercase identifier. */
  schema?: string;
  /** Install the course application's names (default true). */
  compat?: boolean;
}

/** What {@link install} did. */
export interface InstallResult {
  /** The schema retask lives in. */
  schema: string;
  /** Schema version after the install. */
  version: number;
  /** Migrations this call applied (empty when the tables were current). */
  migrations: string[];
  /** Function files this call applied (all of them when any had changed). */
  functions: string[];
  /** The course layer's objects created, and those skipped because the name is taken. */
  compat: { installed: string[]; skipped: { name: string; reason: string; instead: string }[] };
  /** What the installer noticed that an administrator should fix, one line each. */
  warnings: string[];
}

/** The release whose function files this code installs; a database's newer one is refused. */
const RELEASE: string = denoJson.version;

/**
 * Checks a schema name; retask's names are spliced into SQL, so only plain
 * identifiers, and none of PostgreSQL's own schemas or the course layer's.
 */
export function checkSchemaName(schema: string): string {
  // its group roles are <schema>_register and the like: 63 characters at most
  if (!/^[a-z_][a-z0-9_]{0,53}$/.test(schema)) {
    throw new RetaskError(
      "usage",
      `schema must be a lowercase identifier (letters, digits, _) of at most 54 characters, got "${schema}"`,
    );
  }
  if (/^(public|empapi|information_schema|pg_.*)$/.test(schema)) {
    throw new RetaskError("usage", `schema ${schema} is not retask's to use; choose another name`);
  }
  return schema;
}

// x.y.z compared as numbers: -1, 0 or 1.
function compareReleases(a: string, b: string): number {
  const [x, y] = [a, b].map((v) => v.split(/[.-]/).map((n) => Number(n) || 0));
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    if ((x[i] ?? 0) !== (y[i] ?? 0)) return (x[i] ?? 0) < (y[i] ?? 0) ? -1 : 1;
  }
  return 0;
}

/** A SQL file read for install, with its checksum. */
export interface SqlFile {
  file: string;
  text: string;
  checksum: string;
}

async function sha256(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

// The files name retask's objects `retask.x` and its group roles `retask_<group>`;
// another schema replaces that prefix.
async function readSql(path: string, schema: string): Promise<SqlFile> {
  const url = new URL(`../../sql/${path}`, import.meta.url);
  // read from disk (also inside a `deno compile`d binary), or over the network
  // when the library itself was imported by URL
  const text = url.protocol === "file:"
    ? await Deno.readTextFile(url)
    : await fetch(url).then((r) =>
      r.ok ? r.text() : Promise.reject(new Error(`${url}: ${r.status}`))
    );
  return {
    file: path.replace(/^migrations\//, ""),
    text: schema === DEFAULT_SCHEMA ? text : text.replace(/\bretask\./g, `${schema}.`)
      .replace(/\b(SCHEMA(?: IF NOT EXISTS)?) retask\b/g, `$1 ${schema}`)
      .replace(new RegExp(`\\bretask_(${GROUPS.join("|")})\\b`, "g"), `${schema}_$1`),
    checksum: await sha256(text),
  };
}

const versionOf = (file: string) => Number(file.slice(0, 4));

async function sources(schema: string) {
  const [migrations, functions, compat] = await Promise.all([
    Promise.all(MIGRATIONS.map((f) => readSql(`migrations/${f}`, schema))),
    Promise.all(FUNCTION_FILES.map((f) => readSql(f, schema))),
    readSql(COMPAT_FILE, schema),
  ]);
  return { migrations, functions, compat };
}

/** What is recorded as applied: file → checksum, and the version. */
async function applied(sql: Queryable, schema: string) {
  const rows = await sql<
    { file: string; version: number | null; checksum: string; release: string | null }[]
  >`SELECT file, version, checksum, release FROM ${sql(schema)}.migrations`.catch((error) => {
    if ((error as { code?: string }).code === "42P01") return []; // not installed
    throw error;
  });
  const checksums = new Map(rows.map((r) => [r.file, r.checksum]));
  const version = Math.max(0, ...rows.map((r) => r.version ?? 0));
  const releases = rows.map((r) => r.release).filter((r): r is string => r !== null);
  const release = releases.reduce((a, b) => compareReleases(a, b) >= 0 ? a : b, "0");
  return { checksums, version, release };
}

type Applied = Awaited<ReturnType<typeof applied>>;

// What this code cannot run against: a newer schema (it may have replaced what
// this code calls), or a migration that changed after it was applied (forward
// only: the change would never reach this database).
function checkMigrations(done: Applied, migrations: SqlFile[]): void {
  if (done.version > SCHEMA_VERSION) {
    throw new RetaskError(
      "database",
      `the database has schema version ${done.version}, newer than this retask's ${SCHEMA_VERSION}: upgrade retask`,
    );
  }
  // the function files of a later release must not be replaced by this one's
  if (compareReleases(done.release, RELEASE) > 0) {
    throw new RetaskError(
      "database",
      `the database has retask ${done.release}'s functions, newer than this retask's ${RELEASE}: upgrade retask`,
    );
  }
  for (const { file, checksum } of migrations) {
    const was = done.checksums.get(file);
    if (was !== undefined && was !== checksum) {
      throw new RetaskError(
        "database",
        `migration ${file} differs from the one applied to this database; ` +
          "applied migrations must not change: add a new numbered file instead",
      );
    }
  }
}

/** Runs one file's SQL; a failure says which file and that nothing was changed. */
export async function run(tx: Queryable, file: string, text: string): Promise<void> {
  try {
    await tx.unsafe(text);
  } catch (error) {
    const { message = String(error), detail } = error as { message?: string; detail?: string };
    throw new RetaskError(
      "database",
      `${file} failed: ${message}${detail ? ` (${detail})` : ""}; nothing was changed`,
      { cause: error },
    );
  }
}

// retask's own functions name everything with its schema, but programs run
// under their caller's path: where every role may create objects in public, one
// can put an operator or function there that a program of a more privileged
// worker then calls.
async function warnings(tx: Queryable): Promise<string[]> {
  const [{ open }] = await tx<{ open: boolean }[]>`
    SELECT coalesce(has_schema_privilege('public', to_regnamespace('public'), 'CREATE'), false)
      AS open`;
  return open
    ? [
      "every role may create objects in schema public, where programs look up names; " +
      "unless that is meant, run: REVOKE CREATE ON SCHEMA public FROM PUBLIC",
    ]
    : [];
}

// Creates the schema, or checks that the one there is retask's: an install
// replaces every function in it, so a schema holding anything else is refused.
async function claimSchema(tx: Queryable, schema: string): Promise<void> {
  const [row] = await tx<{ keyword: boolean; foreign: boolean }[]>`
    SELECT EXISTS (SELECT FROM pg_get_keywords() WHERE word = ${schema} AND catcode <> 'U')
             AS keyword,
           to_regnamespace(${schema}) IS NOT NULL
             AND to_regclass(${schema + ".migrations"}) IS NULL
             AND (EXISTS (SELECT FROM pg_class WHERE relnamespace = to_regnamespace(${schema}))
                  OR EXISTS (SELECT FROM pg_proc WHERE pronamespace = to_regnamespace(${schema})))
             AS foreign`;
  if (row.keyword) {
    throw new RetaskError("usage", `schema ${schema} is an SQL keyword; choose another name`);
  }
  if (row.foreign) {
    throw new RetaskError(
      "usage",
      `schema ${schema} already holds objects that are not retask's; choose another with --schema`,
    );
  }
  await tx`CREATE SCHEMA IF NOT EXISTS ${tx(schema)}`;
}

/**
 * Creates or upgrades retask in a database, all in one transaction: an
 * install that fails part-way (say, on a view of the user's that depends on a
 * function it replaces) changes nothing. Takes over a course-era database or
 * one installed into `public` by retask's schema version 5 in place. Safe to
 * run concurrently: an advisory lock serialises installers.
 */
export async function install(sql: Sql, options: InstallOptions = {}): Promise<InstallResult> {
  const schema = checkSchemaName(options.schema ?? DEFAULT_SCHEMA);
  const withCompat = options.compat ?? true;
  const files = await sources(schema);
  return await sql.begin(async (tx) => {
    await tx`SELECT pg_advisory_xact_lock(hashtextextended(${`retask.install:${schema}`}, 0))`;
    // no object of the installer's path may stand in for one of PostgreSQL's
    await tx`SET LOCAL search_path = pg_catalog, pg_temp`;
    await claimSchema(tx, schema);
    await tx`CREATE TABLE IF NOT EXISTS ${tx(schema)}.migrations (
      file text PRIMARY KEY,
      version integer UNIQUE,
      checksum text NOT NULL,
      release text,
      applied_at timestamptz NOT NULL DEFAULT now())`;
    const done = await applied(tx, schema);
    checkMigrations(done, files.migrations);
    const record = (file: string, version: number | null, checksum: string) =>
      tx`INSERT INTO ${tx(schema)}.migrations (file, version, checksum, release)
         VALUES (${file}, ${version}, ${checksum}, ${RELEASE})
         ON CONFLICT (file) DO UPDATE
         SET checksum = excluded.checksum, release = excluded.release, applied_at = now()`;

    const migrations: string[] = [];
    for (const { file, text, checksum } of files.migrations) {
      if (done.checksums.has(file)) continue;
      await run(tx, `migration ${file}`, text);
      await record(file, versionOf(file), checksum);
      migrations.push(file);
    }

    const changed = (f: SqlFile) => done.checksums.get(f.file) !== f.checksum;
    const refresh = migrations.length > 0 || files.functions.some(changed) ||
      (withCompat && changed(files.compat));
    let compat: InstallResult["compat"] = { installed: [], skipped: [] };
    if (refresh) {
      await saveAcls(tx, schema, withCompat);
      await dropRoutines(tx, schema, withCompat);
      for (const { file, text, checksum } of files.functions) {
        await run(tx, file, text);
        await record(file, null, checksum);
      }
      if (withCompat) {
        compat = await installCompat(tx, schema, files.compat);
        await record(files.compat.file, null, files.compat.checksum);
      }
      await restoreAcls(tx, schema);
    }
    return {
      schema,
      version: Math.max(done.version, ...migrations.map(versionOf)),
      migrations,
      functions: refresh ? files.functions.map((f) => f.file) : [],
      compat,
      warnings: await warnings(tx),
    };
  });
}

/** True when some version of retask is installed in `schema`. */
export async function isInstalled(
  sql: Queryable,
  schema: string = DEFAULT_SCHEMA,
): Promise<boolean> {
  return (await applied(sql, checkSchemaName(schema))).version > 0;
}

/**
 * Checks that retask is installed in `schema` and matches this code: the same
 * migrations and the same function files. A command on a bare database then
 * says "run retask install" instead of "relation does not exist", and no
 * worker runs against functions another version installed.
 */
export async function requireInstalled(sql: Sql, schema: string = DEFAULT_SCHEMA): Promise<void> {
  const files = await sources(checkSchemaName(schema));
  const done = await applied(sql, schema);
  checkMigrations(done, files.migrations);
  if (done.version === 0) {
    const [{ legacy, database }] = await sql<{ legacy: boolean; database: string }[]>`
      SELECT to_regclass('public.retask_migrations') IS NOT NULL AS legacy,
             current_database() AS database`;
    throw new RetaskError(
      "database",
      legacy
        ? `retask is installed in schema public of database ${database} by an older version; ` +
          "run retask install to move it into its own schema"
        : `retask is not installed in database ${database} (schema ${schema}); run retask install`,
    );
  }
  const stale = done.version < SCHEMA_VERSION ||
    files.functions.some((f) => done.checksums.get(f.file) !== f.checksum);
  if (stale) {
    throw new RetaskError(
      "database",
      `retask's schema in this database is from another version (schema version ${done.version}); run retask install`,
    );
  }
}
