/**
 * `retask work`: run a worker until SIGINT/SIGTERM (or, with `--drain`, until
 * nothing is left to do). One line per ended attempt on stdout; the worker's
 * own messages on stderr.
 * @module
 */
import { Command } from "npm:commander@14.0.3";
import type { TaskOutcome, WorkerLog } from "../lib/worker/outcome.ts";
import { outcomeJson, outcomeLine } from "../cli/work_output.ts";
import { escapeControl } from "../cli/format.ts";
import { describeDatabase } from "../lib/db/connect.ts";
import { errorMessage, RetaskError } from "../lib/errors.ts";
import { runWorker } from "../lib/worker/loop.ts";
import { parseWorkFlags, WORKER_DEFAULTS, type WorkFlags } from "../lib/worker/settings.ts";
import { schemaOf, withDatabase } from "../cli/common.ts";

interface Flags extends WorkFlags {
  json?: boolean;
  quiet?: boolean;
}

const encoder = new TextEncoder();

// Lines reported together (a batch) go out in one write.
class LineWriter {
  #lines: string[] = [];
  #scheduled = false;

  constructor(private readonly file: { writeSync(data: Uint8Array): number }) {}

  write(line: string): void {
    this.#lines.push(line);
    if (!this.#scheduled) {
      this.#scheduled = true;
      queueMicrotask(() => this.flush());
    }
  }

  flush(): void {
    this.#scheduled = false;
    if (this.#lines.length === 0) return;
    let data = encoder.encode(this.#lines.join("\n") + "\n");
    this.#lines = [];
    while (data.length > 0) data = data.subarray(this.file.writeSync(data));
  }
}

function ms(value: number): string {
  if (value > 0 && value % 60_000 === 0) return `${value / 60_000}m`;
  return value > 0 && value % 1000 === 0 ? `${value / 1000}s` : `${value}ms`;
}

/** Builds the `work` subcommand. */
export function workCommand(): Command {
  const d = WORKER_DEFAULTS;
  return new Command("work")
    .description(
      "run tasks as they come: claim in batches, execute, retry failures by the rules; " +
        "stop on SIGINT/SIGTERM (a second signal stops at once)",
    )
    .option(
      "--concurrency <n>",
      `execution lanes, each running a batch (default: ${d.concurrency})`,
    )
    .option(
      "--batch-size <n>",
      `most tasks a lane runs in one transaction; fewer when tasks run long (default: ${d.batchSize})`,
    )
    .option(
      "--poll-interval <ms>",
      `look for tasks this often when no notification comes (default: ${ms(d.pollIntervalMs)})`,
    )
    .option(
      "--rescue-interval <ms>",
      `rescue tasks of dead workers this often (default: ${ms(d.rescueIntervalMs)})`,
    )
    .option(
      "--lease <ms>",
      `a taken task is this worker's for this long, renewed every third of it (default: ${
        ms(d.leaseMs)
      })`,
    )
    .option(
      "--task-timeout <ms>",
      `fail an attempt that runs longer; 0 for none (default: ${ms(d.taskTimeoutMs)})`,
    )
    .option(
      "--shutdown-timeout <ms>",
      `after a stop signal, let running tasks finish this long, then count them lost (default: ${
        ms(d.shutdownTimeoutMs)
      })`,
    )
    .option(
      "--max-result-bytes <n>",
      `cut a task's result past this size, saying so in it (default: ${d.maxResultBytes})`,
    )
    .option(
      "--drain",
      "exit 0 once no task is scheduled or running; waits for tasks scheduled later, and " +
        "says on stderr what it waits for",
    )
    .option(
      "--once",
      "run what is runnable now, then exit 0: no waiting for tasks scheduled later or paused",
    )
    .option(
      "--retention <age>",
      "every 5 minutes, delete tasks that ended longer ago than this (30d, 12h), with their " +
        "history; one worker at a time (default: keep them)",
    )
    .option(
      "--remote-host <server>",
      "a server remote tasks may run on: HOST:PORT (this worker's user, no password) or a " +
        "postgres:// URL with its own login; repeatable, else $RETASK_REMOTE_HOSTS " +
        "(comma-separated); a task naming another fails (default: none)",
      (value: string, previous: string[] = []) => [...previous, value],
    )
    .option(
      "--remote-database <name>",
      "database to use on a --remote-host HOST:PORT (default: the main connection's)",
    )
    .option("--json", "print one JSON object per ended attempt")
    .option("--quiet", "print nothing per attempt")
    .addHelpText(
      "after",
      "\nDurations are milliseconds, or take a unit: 500ms, 2s, 1m.\n" +
        "Each line: task <id> <program> attempt <n>/<max> <duration> <outcome>[: <error>],\n" +
        "where the outcome is finished, retry, error (no attempts left), lost or cancelled.\n",
    )
    .action(async (flags: Flags, command: Command) => {
      const fromEnv = (Deno.env.get("RETASK_REMOTE_HOSTS") ?? "").split(",").map((s) => s.trim());
      const settings = parseWorkFlags({
        ...flags,
        remoteHost: flags.remoteHost ?? fromEnv.filter((s) => s !== ""),
      });
      const stdout = new LineWriter(Deno.stdout);
      const stderr = new LineWriter(Deno.stderr);
      const onOutcome = flags.quiet
        ? undefined
        : flags.json
        ? (event: TaskOutcome) => stdout.write(JSON.stringify(outcomeJson(event)))
        : (event: TaskOutcome) => stdout.write(outcomeLine(event));
      const onLog = (entry: WorkerLog) => {
        // its messages carry database text (errors, worker names): no terminal control
        if (entry.level === "warn" || !flags.quiet) {
          stderr.write(`retask: ${escapeControl(entry.message)}`);
        }
      };

      const controller = new AbortController();
      let signals = 0;
      const onSignal = () => {
        signals++;
        if (signals === 1) {
          stderr.write("retask: stopping (send the signal again to stop at once)");
          controller.abort();
          return;
        }
        stdout.flush();
        stderr.write("retask: stopped at once; running tasks will be rescued as lost");
        stderr.flush();
        Deno.exit(130);
      };
      const signalNames = ["SIGINT", "SIGTERM"] as const;
      for (const name of signalNames) Deno.addSignalListener(name, onSignal);
      try {
        await withDatabase(command, (db) => {
          // a forgotten DATABASE_URL means the embedded server: say which database this is
          onLog({ level: "info", message: `database: ${describeDatabase(db)}` });
          return runWorker(db.sql, {
            ...settings,
            schema: schemaOf(command),
            signal: controller.signal,
            onOutcome,
            onLog,
          });
        });
      } catch (error) {
        // the flags were checked above: whatever stops a running worker is a
        // runtime failure (exit 1), even a PostgreSQL error that reads like bad input
        if (error instanceof RetaskError) throw error;
        throw new RetaskError("database", `the worker stopped: ${errorMessage(error)}`, {
          cause: error,
        });
      } finally {
        for (const name of signalNames) Deno.removeSignalListener(name, onSignal);
        stdout.flush();
        stderr.flush();
      }
    });
}
