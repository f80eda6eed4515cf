/**
 * `retask work` as users run it, through {@link spawnCli}; every worker a test
 * file starts can be killed at its end.
 * @module
 */
import { type CliExit, type CliProcess, spawnCli } from "./cli.ts";
import { workerUrlOf } from "./database.ts";

/** How a `retask work` process ended, and what it printed. */
export type WorkerExit = CliExit;

/** A `retask work` process. */
export type WorkerProcess = CliProcess;

const running = new Set<WorkerProcess>();

/**
 * Starts `retask work <args>` against `url`, as a user would run it: for a
 * fresh database, as its non-superuser worker role ({@link workerUrlOf}). A
 * worker still running after `maxMs` is killed (its exit code is then 137),
 * so whatever waits for one fails instead of hanging.
 */
export function spawnWorker(url: string, args: string[], maxMs = 120_000): WorkerProcess {
  const worker = spawnCli(["work", ...args], workerUrlOf(url), maxMs);
  running.add(worker);
  worker.done.then(() => running.delete(worker), () => running.delete(worker));
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
