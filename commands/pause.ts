/**
 * `retask pause <program>` and `retask resume <program>`: workers take no new
 * task of a paused program until it is resumed; its running tasks go on.
 * @module
 */
import { Command } from "npm:commander@14.0.3";
import { escapeControl } from "../cli/format.ts";
import { type PauseResult, setProgramPaused } from "../lib/queue/programs.ts";
import { requireInstalled } from "../lib/db/schema.ts";
import { printJson, schemaOf, withDatabase } from "../cli/common.ts";

interface PauseFlags {
  json?: boolean;
}

// `3 scheduled tasks wait`, `1 running task goes on`
const tasks = (n: number, what: string, verb: [string, string]) =>
  `${n} ${what} ${n === 1 ? `task ${verb[0]}` : `tasks ${verb[1]}`}`;

/** What `pause` or `resume` says it did. */
function describe(result: PauseResult): string {
  const program = `program "${escapeControl(result.name)}" (id ${result.programId})`;
  const running = result.running > 0
    ? `; ${tasks(result.running, "running", ["goes on", "go on"])}`
    : "";
  if (result.paused) {
    const wait = tasks(result.scheduled, "scheduled", ["waits", "wait"]);
    return result.changed
      ? `paused ${program}: ${wait}${running}`
      : `${program} was already paused: ${wait}${running}`;
  }
  const can = tasks(result.scheduled, "scheduled", ["can run", "can run"]);
  return result.changed ? `resumed ${program}: ${can}` : `${program} was not paused: ${can}`;
}

function pauseLike(name: "pause" | "resume", paused: boolean, description: string): Command {
  return new Command(name)
    .description(description)
    .argument("<program>", "program name or id")
    .option("--json", "print {program_id, name, paused, changed, scheduled, running}")
    .action(async (program: string, flags: PauseFlags, command: Command) => {
      const schema = schemaOf(command);
      const result = await withDatabase(command, async (db) => {
        await requireInstalled(db.sql, schema);
        return await setProgramPaused(db.sql, program, paused, { schema });
      });
      if (flags.json) return printJson(result);
      console.log(describe(result));
    });
}

/** Builds the `pause` subcommand. */
export function pauseCommand(): Command {
  return pauseLike(
    "pause",
    true,
    "pause a program: workers take none of its tasks until it is resumed; running ones go on",
  );
}

/** Builds the `resume` subcommand. */
export function resumeCommand(): Command {
  return pauseLike("resume", false, "resume a paused program: workers take its tasks again");
}
