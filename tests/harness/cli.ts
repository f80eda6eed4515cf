/**
 * The CLI as a user runs it: `deno run main.ts <args>` in a child process.
 * @module
 */

/** The CLI's entry point in this clone. */
export const MAIN = new URL("../../main.ts", import.meta.url).pathname;

/** What a CLI run printed and how it exited. */
export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * The environment a CLI run gets: this process's without DATABASE_URL (a test
 * says which database it means), with colour off, and `env` on top.
 */
export function cliEnv(env: Record<string, string> = {}): Record<string, string> {
  const all: Record<string, string> = { ...Deno.env.toObject(), NO_COLOR: "1", ...env };
  if (env.DATABASE_URL === undefined) delete all.DATABASE_URL;
  return all;
}

/**
 * Runs `main.ts` in a child process, as a user would: against `database` (a
 * URL, set as DATABASE_URL), or with `database` as extra environment.
 */
export async function runCli(
  args: string[],
  database?: string | Record<string, string>,
): Promise<CliRun> {
  const env = typeof database === "string" ? { DATABASE_URL: database } : database;
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
