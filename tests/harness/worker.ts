/**
 * `retask work` as users run it: a child process (`deno run main.ts work`),
 * its output read to the end, killed when it outlives its bound so nothing
 * waiting for it can hang.
 * @module
 */

const MAIN = new URL("../../main.ts", import.meta.url).pathname;

/** How a `retask work` process ended, and what it printed. */
export interface WorkerExit {
  code: number;
  /** The signal that ended it, if one did. */
  signal: Deno.Signal | null;
  stdout: string;
  stderr: string;
}

/** A `retask work` process. */
export interface WorkerProcess {
  pid: number;
  /** Its end; stdout and stderr are read to the end. */
  done: Promise<WorkerExit>;
  kill(signal: Deno.Signal): void;
  /** What it printed so far. */
  stdout(): string;
  stderr(): string;
}

const running = new Set<WorkerProcess>();

/**
 * Starts `deno run main.ts work <args>` against `url`. A worker still running
 * after `maxMs` is killed (its exit code is then 137), so whatever waits for
 * one fails instead of hanging.
 */
export function spawnWorker(url: string, args: string[], maxMs = 120_000): WorkerProcess {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--quiet", "--allow-all", MAIN, "work", ...args],
    env: { DATABASE_URL: url, NO_COLOR: "1" },
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
    running.delete(worker);
    return { code: status.code, signal: status.signal, stdout: out, stderr: err };
  });
  const worker: WorkerProcess = {
    pid: child.pid,
    done,
    kill,
    stdout: () => out,
    stderr: () => err,
  };
  running.add(worker);
  return worker;
}

/** Runs `retask work` to its end and returns what it printed. */
export function runWork(url: string, args: string[]): Promise<WorkerExit> {
  return spawnWorker(url, args).done;
}

/** Kills every worker started here that is still running, and waits for them. */
export async function killWorkers(): Promise<void> {
  const left = [...running];
  for (const worker of left) worker.kill("SIGKILL");
  await Promise.all(left.map((worker) => worker.done));
}
