/**
 * The course application's names over retask's schema (sql/compat.sql):
 * created section by section, so that a name an application already owns is
 * left alone and reported rather than failing the install.
 * @module
 */
import type { Queryable } from "./connect.ts";
import { COMPAT_FILE, type InstallResult, run, type SqlFile } from "./schema.ts";

/** The comment that marks an object as this layer's. */
export const COMPAT_MARK = "retask compatibility layer";

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

// True when `name` belongs to something that is not this layer's.
async function taken(tx: Queryable, section: CompatSection): Promise<boolean> {
  const [schema, object] = section.name.split(".");
  const [row] = section.kind === "relation"
    ? await tx<{ taken: boolean }[]>`
        SELECT EXISTS (
          SELECT FROM pg_catalog.pg_type t
          LEFT JOIN pg_catalog.pg_class c ON c.oid = t.typrelid
          WHERE t.typnamespace = to_regnamespace(${schema}) AND t.typname = ${object}
            AND coalesce(obj_description(c.oid, 'pg_class'), '') NOT LIKE ${COMPAT_MARK + "%"})
          AS taken`
    : await tx<{ taken: boolean }[]>`
        SELECT EXISTS (
          SELECT FROM pg_catalog.pg_proc p
          WHERE p.pronamespace = to_regnamespace(${schema}) AND p.proname = ${object}
            AND coalesce(obj_description(p.oid, 'pg_proc'), '') NOT LIKE ${COMPAT_MARK + "%"})
          AS taken`;
  return row.taken;
}

/**
 * Creates each section of compat.sql whose name is free or already this
 * layer's; says which it created and which it skipped, and why.
 */
export async function installCompat(
  tx: Queryable,
  compat: SqlFile,
): Promise<InstallResult["compat"]> {
  await tx`CREATE SCHEMA IF NOT EXISTS empapi`;
  const installed: string[] = [];
  const skipped: InstallResult["compat"]["skipped"] = [];
  for (const section of compatSections(compat.text)) {
    const missing = section.needs && !installed.includes(section.needs);
    if (missing || await taken(tx, section)) {
      const reason = missing ? `needs ${section.needs}` : "the name is taken";
      skipped.push({ name: section.name, reason, instead: section.instead });
      continue;
    }
    await run(tx, `${COMPAT_FILE} (${section.name})`, section.text);
    installed.push(section.name);
  }
  return { installed, skipped };
}
