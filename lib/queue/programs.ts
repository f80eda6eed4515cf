/**
 * Programs: register a SQL function taking one jsonb as a program (with its
 * retry policy), list them, find one by name or id. The checks are SQL's
 * (sql/programs.sql); this file only calls it.
 * @module
 */
import type { Queryable } from "../db/connect.ts";
import { DEFAULT_SCHEMA } from "../db/schema.ts";
import { RetaskError } from "../errors.ts";

/** Which installation of retask to use: its schema (default `retask`). */
export interface InSchema {
  /** The schema retask was installed into (`retask install --schema`). */
  schema?: string;
}

/** A program's retry policy; unset fields keep their current value (or the default). */
export interface RetryPolicy {
  /** Attempts in all, 1 to 100 (default 3). */
  maxAttempts?: number;
  /** Wait before a retry, a PostgreSQL interval such as `"5 seconds"` (default 0). */
  retryDelay?: string;
  /** `fixed` waits `retryDelay`; `exponential` doubles it per attempt, with jitter. */
  retryBackoff?: "fixed" | "exponential";
  /** Cap on an exponential delay (default 1 hour). */
  retryDelayMax?: string;
}

/** What registering a program did. */
export interface Registered {
  /** The program's id. */
  programId: number;
  /** False when a program of that name existed and was updated. */
  created: boolean;
}

/**
 * Registers `func` (a function taking one jsonb, looked up on the connection's
 * search_path) as program `name`, or updates the program of that name.
 */
export async function registerProgram(
  sql: Queryable,
  name: string,
  func: string,
  policy: RetryPolicy & InSchema = {},
): Promise<Registered> {
  const [row] = await sql<{ program_id: number; created: boolean }[]>`
    SELECT program_id, created FROM ${sql(policy.schema ?? DEFAULT_SCHEMA)}.upsert_program(
      ${name}, ${func}, ${policy.maxAttempts ?? null}::integer,
      ${policy.retryDelay ?? null}::interval, ${policy.retryBackoff ?? null}::text,
      ${policy.retryDelayMax ?? null}::interval)`;
  return { programId: row.program_id, created: row.created };
}

/** A registered program. */
export interface Program {
  /** Its id. */
  programId: number;
  /** Its name, unique in practice (register updates by name). */
  name: string;
  /** The function it runs, schema-qualified and quoted. */
  func: string;
  /** Attempts in all for its new tasks. */
  maxAttempts: number;
  /** Wait before a retry, as PostgreSQL prints an interval. */
  retryDelay: string;
  /** `fixed` or `exponential`. */
  retryBackoff: string;
  /** Cap on an exponential delay. */
  retryDelayMax: string;
}

/** All programs by id, or only the one with id `programId`. */
export function listPrograms(
  sql: Queryable,
  options: InSchema & { programId?: number } = {},
): Promise<Program[]> {
  const programId = options.programId ?? null;
  return sql<Program[]>`
    SELECT program_id AS "programId", name, func, max_attempts AS "maxAttempts",
           retry_delay::text AS "retryDelay", retry_backoff AS "retryBackoff",
           retry_delay_max::text AS "retryDelayMax"
    FROM ${sql(options.schema ?? DEFAULT_SCHEMA)}.programs
    WHERE ${programId}::bigint IS NULL OR program_id = ${programId}::bigint
    ORDER BY program_id`;
}

/**
 * A program, found by its id or name. Unknown ones are an input error that
 * names the programs there are.
 */
export async function findProgram(
  sql: Queryable,
  program: string | number,
  options: InSchema = {},
): Promise<{ programId: number; name: string }> {
  const schema = sql(options.schema ?? DEFAULT_SCHEMA);
  const text = String(program).trim();
  const [row] = /^[0-9]+$/.test(text)
    ? await sql<{ program_id: number; name: string }[]>`
        SELECT program_id, name FROM ${schema}.programs WHERE program_id = ${text}::bigint`
    : await sql<{ program_id: number; name: string }[]>`
        SELECT program_id, name FROM ${schema}.programs WHERE name = ${text}
        ORDER BY program_id LIMIT 1`;
  if (row) return { programId: row.program_id, name: row.name };
  const programs = await listPrograms(sql, options);
  const known = programs.length === 0
    ? "none is registered yet (retask register <name> <function>)"
    : `registered: ${programs.map((p) => `${p.name} (${p.programId})`).join(", ")}`;
  throw new RetaskError("invalid_input", `unknown program "${text}"; ${known}`);
}
