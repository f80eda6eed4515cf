/**
 * Re-applying the function files: every routine of retask's schema (and of
 * this install's course layer) is dropped and created again from the files,
 * and what was granted on them is granted again.
 * @module
 */
import type { Queryable } from "./connect.ts";
import { compatMark } from "./compat.ts";
import { GROUPS, run } from "./schema.ts";

/**
 * Saves, by name, what is granted on every routine about to be dropped (beside
 * what migration 0001 saved of a course-era database), for {@link restoreAcls}.
 */
export async function saveAcls(tx: Queryable, schema: string, compat: boolean): Promise<void> {
  await tx`
    INSERT INTO ${tx(schema)}.saved_acl (object, kind, acl)
    SELECT DISTINCT ON (1) n.nspname || '.' || p.proname, 'routine', p.proacl
    FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
    WHERE p.proacl IS NOT NULL
      AND (n.nspname = ${schema} OR (${compat} AND n.nspname IN ('public', 'empapi')
           AND obj_description(p.oid, 'pg_proc') LIKE ${compatMark(schema) + "%"}))
    ON CONFLICT (object) DO UPDATE SET acl = excluded.acl`;
}

/**
 * Drops every routine of retask's schema, and (with `compat`) of this install's
 * course layer; first the triggers on retask's tables that call them.
 */
export async function dropRoutines(tx: Queryable, schema: string, compat: boolean): Promise<void> {
  const triggers = await tx<{ name: string; relation: string }[]>`
    SELECT t.tgname AS name, t.tgrelid::regclass::text AS relation
    FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid
    WHERE c.relnamespace = to_regnamespace(${schema}) AND NOT t.tgisinternal`;
  for (const { name, relation } of triggers) {
    await tx`DROP TRIGGER ${tx(name)} ON ${tx.unsafe(relation)}`;
  }
  const routines = await tx<{ signature: string; kind: string }[]>`
    SELECT p.oid::regprocedure::text AS signature,
           CASE p.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END AS kind
    FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname = ${schema} OR (${compat} AND n.nspname IN ('public', 'empapi')
          AND obj_description(p.oid, 'pg_proc') LIKE ${compatMark(schema) + "%"})`;
  for (const { signature, kind } of routines) {
    await run(tx, "dropping the previous functions", `DROP ${kind} ${signature}`);
  }
}

/**
 * Grants the saved privileges again, only onto retask's own routines and this
 * install's course layer, never onto an application's object of the same
 * name, and never to PUBLIC (SECURITY.md). A role granted one of the course
 * layer's objects also becomes a member of the group it is granted to
 * (compat.sql): the course's register_program, say, runs with its caller's
 * rights, which must include what retask_register may do.
 */
export async function restoreAcls(tx: Queryable, schema: string): Promise<void> {
  const mark = compatMark(schema).replaceAll("'", "''");
  const groups = GROUPS.map((g) => `'${schema}_${g}'`).join(", ");
  await tx.unsafe(`
    DO $$
    DECLARE
        saved record;
        target record;
        grant_ record;
        groups text[];
        group_ text;
    BEGIN
        FOR saved IN SELECT * FROM ${schema}.saved_acl LOOP
            FOR target IN
                SELECT CASE p.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END AS kind,
                       p.oid::regprocedure::text AS name, p.proacl AS acl, p.proowner AS owner,
                       n.nspname <> '${schema}' AS compat
                FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
                WHERE saved.kind = 'routine' AND n.nspname || '.' || p.proname = saved.object
                  AND (n.nspname = '${schema}'
                       OR obj_description(p.oid, 'pg_proc') LIKE '${mark}%')
                UNION ALL
                SELECT 'TABLE', c.oid::regclass::text, c.relacl, c.relowner, true
                FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                WHERE saved.kind = 'relation' AND n.nspname || '.' || c.relname = saved.object
                  AND obj_description(c.oid, 'pg_class') LIKE '${mark}%'
            LOOP
                EXECUTE format('REVOKE ALL ON %s %s FROM PUBLIC', target.kind, target.name);
                -- a course name stands for one group's work; retask's own
                -- functions are all the worker's, and a grant of one must not
                -- make its grantee a worker
                groups := ARRAY(
                    SELECT DISTINCT pg_get_userbyid(g.grantee)
                    FROM aclexplode(coalesce(target.acl, '{}')) g
                    WHERE target.compat AND pg_get_userbyid(g.grantee) = ANY (ARRAY[${groups}]));
                FOR grant_ IN SELECT * FROM aclexplode(saved.acl) a
                              WHERE a.grantee <> 0 AND a.grantee <> target.owner LOOP
                    EXECUTE format('GRANT %s ON %s %s TO %I%s', grant_.privilege_type, target.kind,
                        target.name, pg_get_userbyid(grant_.grantee),
                        CASE WHEN grant_.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
                    EXECUTE format('GRANT USAGE ON SCHEMA ${schema} TO %I',
                                   pg_get_userbyid(grant_.grantee));
                    CONTINUE WHEN pg_get_userbyid(grant_.grantee) = ANY (ARRAY[${groups}]);
                    FOREACH group_ IN ARRAY groups LOOP
                        EXECUTE format('GRANT %I TO %I', group_, pg_get_userbyid(grant_.grantee));
                    END LOOP;
                END LOOP;
                DELETE FROM ${schema}.saved_acl WHERE object = saved.object;
            END LOOP;
        END LOOP;
    END $$`);
}
