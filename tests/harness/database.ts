/**
 * Test support: every test file works in a database of its own, created here
 * and dropped after, on `DATABASE_URL`'s server or else the embedded one.
 * @module
 */
import { client, type Sql } from "../../lib/db/connect.ts";
import { startEmbedded } from "../../lib/db/embedded.ts";
import { install } from "../../lib/db/schema.ts";

/** The server tests create their databases on. */
export async function adminUrl(): Promise<string> {
  return Deno.env.get("DATABASE_URL") || (await startEmbedded()).url;
}

/** A database of a test's own. */
export interface TestDatabase {
  name: string;
  url: string;
  sql: Sql;
  /** Closes `sql` and drops the database (terminating leftover backends). */
  drop(): Promise<void>;
  /** Runs a statement on the server's admin database (for roles, which are cluster-wide). */
  admin(statement: string): Promise<void>;
}

/** Creates an empty database named after `label`; `install` also installs retask. */
export async function testDatabase(
  label: string,
  options: { install?: boolean } = {},
): Promise<TestDatabase> {
  const base = await adminUrl();
  const name = `retask_test_${label}_${crypto.randomUUID().slice(0, 8)}`;
  const admin = client(base, { max: 1 });
  await admin.unsafe(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(base);
  url.pathname = `/${name}`;
  const sql = client(url.toString(), { max: 8 });
  if (options.install) await install(sql);
  return {
    name,
    url: url.toString(),
    sql,
    async admin(statement: string) {
      const admin = client(base, { max: 1 });
      try {
        await admin.unsafe(statement);
      } finally {
        await admin.end();
      }
    },
    async drop() {
      await sql.end({ timeout: 5 });
      const admin = client(base, { max: 1 });
      await admin.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await admin.end();
    },
  };
}

/** Polls `check` until it returns a truthy value or `timeoutMs` passes. */
export async function waitFor<T>(
  check: () => T | Promise<T>,
  what: string,
  timeoutMs = 20_000,
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  while (true) {
    const value = await check();
    if (value) return value as NonNullable<T>;
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Functions the tests register as programs. */
export const TEST_FUNCTIONS = `
  CREATE FUNCTION always_ok(params jsonb) RETURNS text LANGUAGE sql AS $$ SELECT 'ok' $$;
  CREATE FUNCTION always_fail(params jsonb) RETURNS text LANGUAGE plpgsql AS $$
  BEGIN RAISE EXCEPTION 'failed on purpose'; END $$;
  CREATE TABLE side_effects (task_note text);
  CREATE FUNCTION note_and_fail(params jsonb) RETURNS text LANGUAGE plpgsql AS $$
  BEGIN
    INSERT INTO side_effects VALUES (params ->> 'note');
    IF (params ->> 'fail')::boolean THEN RAISE EXCEPTION 'failed after writing'; END IF;
    RETURN 'wrote ' || (params ->> 'note');
  END $$;
`;

/** What a CLI run printed and how it exited. */
export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `main.ts` in a child process, as a user would, against `databaseUrl`. */
export async function runCli(args: string[], databaseUrl?: string): Promise<CliRun> {
  const env: Record<string, string> = { NO_COLOR: "1" };
  if (databaseUrl) env.DATABASE_URL = databaseUrl;
  const output = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--quiet",
      "--allow-all",
      new URL("../../main.ts", import.meta.url).pathname,
      ...args,
    ],
    env,
    stdin: "null",
  }).output();
  const text = new TextDecoder();
  return {
    code: output.code,
    stdout: text.decode(output.stdout),
    stderr: text.decode(output.stderr),
  };
}
