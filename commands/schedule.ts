/**
 * `retask schedule add|list|remove`: enqueue a program on a cron expression.
 * Every running `retask work` fires due schedules; each slot is enqueued once.
 * @module
 */
import { Command } from "npm:commander@14.0.3";
import { escapeControl, formatTimestamp, type Palette, renderTable } from "../cli/format.ts";
import { parseJsonObject } from "../cli/parse.ts";
import { requireInstalled } from "../lib/db/schema.ts";
import { RetaskError } from "../lib/errors.ts";
import {
  addSchedule,
  listSchedules,
  parseCron,
  removeSchedule,
  type Schedule,
} from "../lib/queue/schedules.ts";
import { printJson, schemaOf, withDatabase } from "../cli/common.ts";

interface AddFlags {
  cron: string;
  params?: string;
  timezone?: string;
  json?: boolean;
}

/** The schedules as a table, as `schedule list` and `status` print them. */
export function renderScheduleTable(schedules: readonly Schedule[], paint?: Palette): string[] {
  const rows = schedules.map((s) => [
    escapeControl(s.name),
    s.program === null ? `#${s.programId}` : escapeControl(s.program),
    escapeControl(s.cron),
    escapeControl(s.timezone),
    s.nextRunAt ? formatTimestamp(s.nextRunAt) : "(the next worker sets it)",
    s.lastRunAt ? `${formatTimestamp(s.lastRunAt)} (task ${s.lastTaskId})` : "never",
  ]);
  const headers = ["schedule", "program", "cron", "time zone", "next run", "last run"];
  return renderTable(headers, rows, { paint });
}

/** The schedules under `status`'s task list: a blank line and their table; nothing for none. */
export function scheduleSection(schedules: readonly Schedule[], paint?: Palette): string {
  if (schedules.length === 0) return "";
  return ["", "", ...renderScheduleTable(schedules, paint)].join("\n");
}

/** One schedule in words, for `add` and `remove`. */
function describe(s: Schedule): string {
  const program = s.program === null ? `#${s.programId}` : `"${escapeControl(s.program)}"`;
  return `"${escapeControl(s.name)}": program ${program} (id ${s.programId}) ` +
    `at "${escapeControl(s.cron)}" ${escapeControl(s.timezone)}`;
}

function addCommand(): Command {
  return new Command("add")
    .description("enqueue a program on a cron expression (changes the schedule of that name)")
    .argument("<name>", "the schedule's name")
    .argument("<program>", "program name or id (see retask register)")
    .requiredOption(
      "--cron <expression>",
      'minute hour day-of-month month day-of-week ("*/5 * * * *"), or 6 fields with seconds first',
    )
    .option("--params <json>", "every task's argument, a JSON object (default {})")
    .option("--timezone <zone>", "the IANA time zone the expression is read in (default UTC)")
    .option("--json", "print the schedule and whether it was created as one JSON object")
    .action(async (name: string, program: string, flags: AddFlags, command: Command) => {
      const schema = schemaOf(command);
      const params = flags.params === undefined ? {} : parseJsonObject("--params", flags.params);
      const timezone = flags.timezone ?? "UTC";
      // a bad expression or zone is refused before connecting
      parseCron(flags.cron, timezone);
      const added = await withDatabase(command, async (db) => {
        await requireInstalled(db.sql, schema);
        return await db.sql.begin((tx) =>
          addSchedule(tx, { name, program, cron: flags.cron, timezone, params, schema })
        );
      });
      if (flags.json) return printJson(added);
      console.log(
        `${added.created ? "added" : "updated"} schedule ${describe(added)}; ` +
          `next run ${formatTimestamp(added.nextRunAt)}`,
      );
    });
}

function listCommand(): Command {
  return new Command("list")
    .description("list the schedules: program, cron, time zone, next and last run")
    .option("--json", "print the schedules as a JSON array")
    .action(async (flags: { json?: boolean }, command: Command) => {
      const schema = schemaOf(command);
      const schedules = await withDatabase(command, async (db) => {
        await requireInstalled(db.sql, schema);
        return await listSchedules(db.sql, { schema });
      });
      if (flags.json) return printJson(schedules);
      if (schedules.length === 0) {
        return console.log("no schedules (retask schedule add <name> <program> --cron EXPR)");
      }
      console.log(renderScheduleTable(schedules).join("\n"));
    });
}

function removeCommand(): Command {
  return new Command("remove")
    .description("delete a schedule; the tasks it enqueued stay")
    .argument("<name>", "the schedule's name")
    .option("--json", "print the removed schedule as one JSON object")
    .action(async (name: string, flags: { json?: boolean }, command: Command) => {
      const schema = schemaOf(command);
      const removed = await withDatabase(command, async (db) => {
        await requireInstalled(db.sql, schema);
        return await removeSchedule(db.sql, name, { schema });
      });
      if (flags.json) return printJson(removed);
      console.log(`removed schedule ${describe(removed)}`);
    });
}

/** Builds the `schedule` command and its subcommands. */
export function scheduleCommand(): Command {
  return new Command("schedule")
    .description("enqueue programs on cron expressions: add, list, remove")
    // no subcommand or an unknown one: this action's one-line error, not the whole help
    .argument("[subcommand]", "add, list or remove")
    // the subcommands report errors as the whole CLI does (set on this command by main.ts)
    .hook("preSubcommand", (parent, sub) => {
      sub.copyInheritedSettings(parent);
    })
    .addCommand(addCommand())
    .addCommand(listCommand())
    .addCommand(removeCommand())
    .action((subcommand?: string) => {
      throw new RetaskError(
        "usage",
        subcommand === undefined
          ? "schedule needs a subcommand: add, list or remove"
          : `unknown schedule subcommand "${escapeControl(subcommand)}"; use add, list or remove`,
      );
    });
}
