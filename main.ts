/**
 * The retask command line: `deno run -A main.ts <command>`.
 * @module
 */
import { Command, CommanderError } from "npm:commander@14.0.3";
import denoJson from "./deno.json" with { type: "json" };
import { installCommand } from "./commands/install.ts";
import { workCommand } from "./commands/work.ts";
import { registerCommand } from "./commands/register.ts";
import { enqueueCommand } from "./commands/enqueue.ts";
import { statusCommand } from "./commands/status.ts";
import { demoCommand } from "./commands/demo.ts";
import { embeddedCommand } from "./commands/embedded.ts";
import { scheduleCommand } from "./commands/schedule.ts";
import { retryCommand } from "./commands/retry.ts";
import { cancelCommand } from "./commands/cancel.ts";
import { deleteCommand } from "./commands/delete.ts";
import { pruneCommand } from "./commands/prune.ts";
import { pauseCommand, resumeCommand } from "./commands/pause.ts";
import { toRetaskError } from "./lib/errors.ts";
import { escapeControl } from "./cli/format.ts";

/** A commander error on one line: its "(Did you mean …?)" line joins the message. */
function oneLine(text: string): string {
  return text.trim()
    .replace(/\s*\n\(Did you mean (.*)\)$/s, "; did you mean $1")
    .replace(/\s*\n\s*/g, " ");
}

/** Builds the whole command tree; exported for tests. */
export function buildCli(): Command {
  const cli = new Command("retask")
    .description("background tasks in PostgreSQL that retry when they fail")
    .version(denoJson.version, "-V, --version")
    .option(
      "--database-url <url>",
      "PostgreSQL to use (default: $DATABASE_URL, else an embedded server)",
    )
    .option(
      "--schema <name>",
      "the schema retask is installed in (default: $RETASK_SCHEMA, else retask)",
    )
    .exitOverride()
    // one line, as every retask error: commander's own, with the pointer to --help
    .configureOutput({
      outputError: (text, write) => write(`retask: ${oneLine(text)} (see --help)\n`),
    });
  const commands = [
    installCommand(),
    workCommand(),
    registerCommand(),
    enqueueCommand(),
    statusCommand(),
    retryCommand(),
    cancelCommand(),
    deleteCommand(),
    pruneCommand(),
    pauseCommand(),
    resumeCommand(),
    scheduleCommand(),
    demoCommand(),
    embeddedCommand(),
  ];
  for (const sub of commands) {
    // addCommand does not pass on exitOverride and the error output; copy them
    cli.addCommand(sub.copyInheritedSettings(cli));
  }
  return cli;
}

/** Runs the CLI and returns the exit code: 0 ok, 1 runtime failure, 2 bad usage or input. */
export async function main(args: string[]): Promise<number> {
  try {
    await buildCli().parseAsync(args, { from: "user" });
    return 0;
  } catch (error) {
    if (error instanceof CommanderError) {
      // help and --version "fail" with exit code 0; commander already printed the usage error
      return error.exitCode === 0 ? 0 : 2;
    }
    const failure = toRetaskError(error);
    // an error can carry the database's text (program names, messages): no terminal control
    console.error(`retask: ${escapeControl(failure.message)}`);
    return failure.exitCode;
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
