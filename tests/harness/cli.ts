/**
 * The CLI as a user runs it: `deno run main.ts <args>` in a child process, its
 * output read to the end, killed when it outlives its bound so nothing waiting
 * for it can hang.
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

/** How a CLI process ended: also the signal that ended it, if one did. */
export interface CliExit extends CliRun {
  signal: Deno.Signal | null;
}

/** A running CLI process. */
export interface CliProcess {
  pid: number;
  /** Its end; stdout and stderr are read to the end. */
  done: Promise<CliExit>;
  kill(signal: Deno.Signal): void;
  /** What it printed so far. */
  stdout(): string;
  stderr(): string;
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
 * Starts `main.ts <args>` against `database` (a URL, set as DATABASE_URL, or
 * extra environment). A process still running after `maxMs` is killed (its
 * exit code is then 137).
 */
export function spawnCli(
  args: string[],
  database?: string | Record<string, string>,
  maxMs = 120_000,
): CliProcess {
  const env = typeof database === "string" ? { DATABASE_URL: database } : database;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--quiet", "--allow-all", MAIN, ...args],
    env: cliEnv(env),
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let out = "";
  let err = "";
  const read = async (stream: ReadableStream<Uint8Array>, add: (s: string) => void) => {
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) add(chunk);
  };
  const kill = (signal: Deno.Signal) => {
    try {
      child.kill(signal);
    } catch {
      // already exited
    }
  };
  const limit = setTimeout(() => kill("SIGKILL"), maxMs);
  const done = Promise.all([
    child.status,
    read(child.stdout, (s) => (out += s)),
    read(child.stderr, (s) => (err += s)),
  ]).then(([status]) => {
    clearTimeout(limit);
    return { code: status.code, signal: status.signal, stdout: out, stderr: err };
  });
  return { pid: child.pid, done, kill, stdout: () => out, stderr: () => err };
}

/** Runs `main.ts <args>` to its end, as a user would; see {@link spawnCli}. */
export async function runCli(
  args: string[],
  database?: string | Record<string, string>,
  maxMs?: number,
): Promise<CliRun> {
  const { code, stdout, stderr } = await spawnCli(args, database, maxMs).done;
  return { code, stdout, stderr };
}
