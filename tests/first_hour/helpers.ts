/**
 * What the first-hour tests share: a database of a test's own, and retask's
 * CLI run in a child process the way a user runs it.
 * @module
 */
import postgres from "npm:postgres@3.4.9";
import { startEmbedded } from "../../lib/db/embedded.ts";

/** The CLI's entry point in this clone. */
export const MAIN = new URL("../../main.ts", import.meta.url).pathname;

/** A postgres.js client that keeps PostgreSQL's notices to itself. */
export function client(url: string): postgres.Sql {
  return postgres(url, { max: 1, onnotice: () => {} });
}

/** A database of a test's own, dropped by `drop`. */
export interface FreshDatabase {
  name: string;
  url: string;
  /** A client for setting the database up; `drop` closes it. */
  sql: postgres.Sql;
  drop(): Promise<void>;
}

/** Creates `retask_test_<label>_<random>` on DATABASE_URL's server, else the embedded one. */
export async function freshDatabase(label: string): Promise<FreshDatabase> {
  const base = Deno.env.get("DATABASE_URL") || (await startEmbedded()).url;
  const name = `retask_test_${label}_${crypto.randomUUID().slice(0, 8)}`;
  const admin = client(base);
  await admin.unsafe(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(base);
  url.pathname = `/${name}`;
  const sql = client(url.toString());
  return {
    name,
    url: url.toString(),
    sql,
    async drop() {
      await sql.end({ timeout: 5 });
      const admin = client(base);
      await admin.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await admin.end();
    },
  };
}

/** What a CLI run printed and how it exited. */
export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * The environment a CLI run gets: this process's, without DATABASE_URL, with colour off, and
 * `env` on top.
 */
export function cliEnv(env: Record<string, string> = {}): Record<string, string> {
  const all: Record<string, string> = { ...Deno.env.toObject(), NO_COLOR: "1", ...env };
  if (env.DATABASE_URL === undefined) delete all.DATABASE_URL;
  return all;
}

/** Runs `deno run main.ts <args>` with {@linkcode cliEnv}`(env)`. */
export async function runCli(args: string[], env: Record<string, string> = {}): Promise<CliRun> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--quiet", "--allow-all", MAIN, ...args],
    env: cliEnv(env),
    clearEnv: true,
    stdin: "null",
  }).output();
  const text = new TextDecoder();
  return {
    code: output.code,
    stdout: text.decode(output.stdout),
    stderr: text.decode(output.stderr),
  };
}

/** Polls `check` until it returns a truthy value; fails after `timeoutMs`. */
export async function waitFor<T>(
  check: () => T | Promise<T>,
  what: string,
  timeoutMs = 30_000,
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
