/**
 * The CLI as a user runs it: `deno run main.ts <args>` in a child process.
 * @module
 */

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
