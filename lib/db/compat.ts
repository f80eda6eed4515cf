/**
 * The course application's names over retask's schema (sql/compat.sql):
 * created section by section, so that a name an application already owns is
 * left alone and reported rather than failing the install.
 * @module
 */
import type { Queryable } from "./connect.ts";
import { COMPAT_FILE, type InstallResult, run, type SqlFile } from "./schema.ts";

/** The comment that marks an object as this layer's. */
const COMPAT_MARK = "retask compatibility layer";

/** One object of the course layer: its section of compat.sql. */
interface CompatSection {
  name: string;
  needs: string | null;
  kind: "relation" | "routine";
  /** The retask object it stands for, from its comment. */
  instead: string;
  text: string;
}

function compatSections(text: string): CompatSection[] {
  const parts = text.split(/^(?=-- compat: )/m).slice(1);
  return parts.map((part) => {
    const [, name, needs] = /^-- compat: (\S+)(?: needs (\S+))?/.exec(part)!;
    const instead = new RegExp(`IS '${COMPAT_MARK}: (\\S+)'`).exec(part)?.[1] ?? "";
    const kind = /^CREATE OR REPLACE VIEW/m.test(part) ? "relation" : "routine";
    return { name, needs: needs ?? null, kind, instead, text: part };
  });
}

/**
 * The comment prefix of this layer's objects over retask in `schema`: an
 * object marked for another schema's retask is not this install's to replace.
 */
export function compatMark(schema: string): string {
  return `${COMPAT_MARK}: ${schema}.`;
}

// Why `section` cannot be created, or null when it can: its name belongs to
// something that is not this layer's, or the installer may not create there.
async function obstacle(
  tx: Queryable,
  section: CompatSection,
  mark: string,
): Promise<string | null> {
  const [schema, object] = section.name.split(".");
  const [row] = await tx<{ taken: boolean; creatable: boolean }[]>`
    SELECT CASE ${section.kind}
             WHEN 'relation' THEN EXISTS (
               SELECT FROM pg_catalog.pg_type t
               LEFT JOIN pg_catalog.pg_class c ON c.oid = t.typrelid
               WHERE t.typnamespace = to_regnamespace(${schema}) AND t.typname = ${object}
                 AND coalesce(obj_description(c.oid, 'pg_class'), '') NOT LIKE ${mark + "%"})
             ELSE EXISTS (
               SELECT FROM pg_catalog.pg_proc p
               WHERE p.pronamespace = to_regnamespace(${schema}) AND p.proname = ${object}
                 AND coalesce(obj_description(p.oid, 'pg_proc'), '') NOT LIKE ${mark + "%"})
           END AS taken,
           coalesce(has_schema_privilege(to_regnamespace(${schema}), 'CREATE'), false) AS creatable`;
  if (row.taken) return "the name is taken";
  return row.creatable ? null : `no CREATE privilege on schema ${schema}`;
}

/**
 * Creates each section of compat.sql whose name is free or already this
 * layer's; says which it created and which it skipped, and why.
 */
export async function installCompat(
  tx: Queryable,
  schema: string,
  compat: SqlFile,
): Promise<InstallResult["compat"]> {
  // empapi only if it may be created; its sections are skipped otherwise
  const [{ create }] = await tx<{ create: boolean }[]>`
    SELECT to_regnamespace('empapi') IS NULL
           AND has_database_privilege(current_database(), 'CREATE') AS create`;
  if (create) await tx`CREATE SCHEMA empapi`;
  const installed: string[] = [];
  const skipped: InstallResult["compat"]["skipped"] = [];
  for (const section of compatSections(compat.text)) {
    const reason = section.needs && !installed.includes(section.needs)
      ? `needs ${section.needs}`
      : await obstacle(tx, section, compatMark(schema));
    if (reason) {
      skipped.push({ name: section.name, reason, instead: section.instead });
      continue;
    }
    await run(tx, `${COMPAT_FILE} (${section.name})`, section.text);
    installed.push(section.name);
  }
  // every group is a member of <schema>_read: each may reach what it is granted there
  if (installed.some((name) => name.startsWith("empapi."))) {
    await tx`GRANT USAGE ON SCHEMA empapi TO ${tx(`${schema}_read`)}`;
  }
  return { installed, skipped };
}
