/**
 * `retask embedded status|stop`: the PostgreSQL server retask runs when no database URL is
 * given. It keeps running between commands; `stop` ends it, the next command starts it again.
 * @module
 */
import { Command } from "npm:commander@14.0.3";
import {
  embeddedDataDir,
  type EmbeddedStatus,
  embeddedStatus,
  stopEmbedded,
} from "../lib/db/embedded.ts";
import { RetaskError } from "../lib/errors.ts";
import { escapeControl } from "../cli/format.ts";
import { databaseUrl, printJson } from "../cli/common.ts";

/** The lines `embedded status` prints: where the server is and how to reach it, no password. */
function renderEmbeddedStatus(status: EmbeddedStatus): string {
  const dir = escapeControl(status.dataDir);
  const state = status.running
    ? `running (pid ${status.pid}) on 127.0.0.1:${status.port}`
    : status.initialized
    ? "stopped; the next retask command without a database URL starts it"
    : "not set up yet; the next retask command without a database URL creates it";
  const lines = [`embedded PostgreSQL: ${state}`, `data directory: ${dir}`];
  if (status.initialized && !status.passwordRequired) {
    lines.push(
      "warning: set up by an older retask, it lets every local user in as superuser; " +
        "the next retask command without a database URL restarts it with a password",
    );
  }
  const passFile = escapeControl(status.passwordFile);
  if (status.passwordRequired) lines.push(`password file: ${passFile} (readable by you alone)`);
  if (status.running && status.passwordRequired) {
    lines.push(`connect: PGPASSFILE=${passFile} psql -h 127.0.0.1 -p ${status.port} -U postgres`);
  }
  lines.push(`log: ${escapeControl(status.logFile)}`);
  if (status.running) lines.push("stop it: retask embedded stop");
  return lines.join("\n");
}

/** A failure of the embedded server's tools as a retask error (exit 1). */
function embeddedError(error: unknown): RetaskError {
  if (error instanceof RetaskError) return error;
  const reason = error instanceof Error ? error.message : String(error);
  return new RetaskError("embedded", `embedded PostgreSQL: ${reason}`, { cause: error });
}

/** The data directory, checked: RETASK_DATA_DIR must name a directory, if it exists. */
async function dataDir(): Promise<string> {
  let dir: string;
  try {
    dir = embeddedDataDir();
  } catch (error) {
    throw new RetaskError("invalid_input", (error as Error).message, { cause: error });
  }
  const info = await Deno.stat(dir).catch(() => undefined);
  if (info && !info.isDirectory) {
    throw new RetaskError(
      "invalid_input",
      `${escapeControl(dir)} is not a directory; fix RETASK_DATA_DIR`,
    );
  }
  return dir;
}

function embeddedStatusCommand(): Command {
  return new Command("status")
    .description("say whether the embedded server runs, where, and how to connect to it")
    .option("--json", "print JSON: {data_dir, running, pid, port, password_file, ...}")
    .action(async (flags: { json?: boolean }, command: Command) => {
      const status = await embeddedStatus(await dataDir()).catch((e) => {
        throw embeddedError(e);
      });
      // a given database URL means commands do not use this server: say so
      const elsewhere = Boolean(databaseUrl(command) || Deno.env.get("DATABASE_URL"));
      if (flags.json) return printJson({ ...status, usedByCommands: !elsewhere });
      console.log(renderEmbeddedStatus(status));
      if (elsewhere) console.log("note: a database URL is set, so commands do not use this server");
    });
}

function embeddedStopCommand(): Command {
  return new Command("stop")
    .description("stop the embedded server (pg_ctl stop -m fast); fine if it is not running")
    .option("--json", "print JSON: {data_dir, stopped}")
    .action(async (flags: { json?: boolean }) => {
      const dir = await dataDir();
      const stopped = await stopEmbedded(dir).catch((e) => {
        throw embeddedError(e);
      });
      if (flags.json) return printJson({ dataDir: dir, stopped });
      const where = escapeControl(dir);
      console.log(
        stopped
          ? `stopped the embedded PostgreSQL in ${where}`
          : `the embedded PostgreSQL in ${where} was not running`,
      );
    });
}

/** Builds the `embedded` command and its `status` and `stop` subcommands. */
export function embeddedCommand(): Command {
  return new Command("embedded")
    .description("the PostgreSQL retask runs when no database URL is given: status, stop")
    // no subcommand or an unknown one: this action's one-line error, not the whole help
    .argument("[subcommand]", "status or stop")
    // the subcommands report errors as the whole CLI does (set on this command by main.ts)
    .hook("preSubcommand", (parent, sub) => {
      sub.copyInheritedSettings(parent);
    })
    .addCommand(embeddedStatusCommand())
    .addCommand(embeddedStopCommand())
    .action((subcommand?: string) => {
      throw new RetaskError(
        "usage",
        subcommand === undefined
          ? "embedded needs a subcommand: status or stop"
          : `unknown embedded subcommand "${escapeControl(subcommand)}"; use status or stop`,
      );
    });
}
