/**
 * `retask status [task_id]`: the newest tasks and a count per status, or one
 * task with every attempt it made; `--watch` redraws until interrupted.
 * @module
 */
import { Command } from "npm:commander@14.0.3";
import { type Database, describeDatabase } from "../lib/db/connect.ts";
import { RetaskError } from "../lib/errors.ts";
import {
  type Align,
  escapeControl,
  formatDuration,
  formatTimestamp,
  type Palette,
  palette,
  renderTable,
  truncate,
} from "../cli/format.ts";
import { parseInteger } from "../cli/parse.ts";
import {
  getTask,
  listTasks,
  parseStatus,
  STATUSES,
  type TaskDetail,
  type TaskFilter,
  type TaskList,
  type TaskStatus,
} from "../lib/queue/read.ts";
import { requireInstalled } from "../lib/db/schema.ts";
import { listSchedules } from "../lib/queue/schedules.ts";
import { scheduleSection } from "./schedule.ts";
import { parseDuration } from "../lib/worker/settings.ts";
import { sleep } from "../lib/worker/wake.ts";
import { printJson, schemaOf, withDatabase } from "../cli/common.ts";

interface StatusFlags {
  status?: string;
  program?: string;
  limit?: string;
  json?: boolean;
  watch?: boolean;
  interval?: string;
}

function paintStatus(status: TaskStatus | string, paint: Palette): string {
  switch (status) {
    case "finished":
      return paint.green(status);
    case "error":
    case "lost":
      return paint.red(status);
    case "running":
      return paint.yellow(status);
    case "cancelled":
      return paint.dim(status);
    default:
      return paint.cyan(status);
  }
}

/** `(waits until …)`; for a retry, with what the failed attempt said (`last`). */
function waitsUntil(runAfter: Date, last: string): string {
  return `(waits until ${formatTimestamp(runAfter)}${last ? `, last: ${last}` : ""})`;
}

/** The most of a key the task list shows; `status <task_id>` shows it whole. */
const KEY_CHARS = 40;

/** What `status <task_id>` prints of a result at most; `--json` gives all of it. */
export const DETAIL_RESULT_CHARS = 65_536;

// Everything printed from the database goes through these: a task cannot write to the terminal.
const oneLine = (text: string) => escapeControl(text);
const lines = (text: string) => escapeControl(text, { keepNewlines: true }).split("\n");

/** The task table and the counts line, as `retask status` prints them. */
function renderTaskList(list: TaskList, paint: Palette = palette()): string {
  // on a terminal the result column is cut to fit; piped, lines stay whole for grep
  const maxWidth = Deno.stdout.isTerminal() ? Math.max(Deno.consoleSize().columns, 60) : undefined;
  // priority and key columns only when a task shown has one
  const withPriority = list.tasks.some((t) => t.priority !== 0);
  const withKey = list.tasks.some((t) => t.key !== null);
  const rows = list.tasks.map((t) => {
    const summary = oneLine(t.resultSummary ?? "");
    return [
      String(t.taskId),
      t.program === null ? `#${t.programId}` : oneLine(t.program),
      paintStatus(t.status, paint),
      `${t.attempt} of ${t.maxAttempts}`,
      formatTimestamp(t.started),
      formatDuration(t.durationMs),
      ...(withPriority ? [String(t.priority)] : []),
      ...(withKey ? [truncate(oneLine(t.key ?? ""), KEY_CHARS)] : []),
      t.status === "scheduled" && t.runAfter.getTime() > Date.now()
        ? waitsUntil(t.runAfter, summary)
        : summary,
    ];
  });
  const headers = [
    "id",
    "program",
    "status",
    "attempt",
    "started",
    "duration",
    ...(withPriority ? ["priority"] : []),
    ...(withKey ? ["key"] : []),
    "result",
  ];
  const align = headers.map((h): Align => h === "id" || h === "priority" ? "right" : "left");
  const lines = renderTable(headers, rows, { align, paint, maxWidth });
  const counts = STATUSES.map((s) => `${paintStatus(s, paint)} ${list.counts[s]}`).join("  ");
  const shown = list.tasks.length < list.matching
    ? paint.dim(`  (showing the newest ${list.tasks.length} of ${list.matching})`)
    : "";
  if (list.tasks.length === 0) lines.splice(0, lines.length, "no tasks match");
  const paused = list.pausedPrograms.length === 0 ? [] : [
    `${paint.yellow("paused")}: ` +
    list.pausedPrograms.map((p) => `${oneLine(p.name)} (id ${p.programId})`).join(", ") +
    paint.dim("  (workers take none of their tasks; retask resume <program>)"),
  ];
  return [...lines, "", `${counts}${shown}`, ...paused].join("\n");
}

/** The note under a result `getTask` cut at `maxResultChars`; empty when it is whole. */
function cutNote(detail: TaskDetail): string {
  const shown = detail.task.result?.length ?? 0;
  const whole = detail.resultChars ?? shown;
  if (whole <= shown) return "";
  const count = (n: number) => n.toLocaleString("en-US");
  return `(cut: the first ${count(shown)} of ${count(whole)} characters; ` +
    `retask status ${detail.task.taskId} --json has all of it)`;
}

/**
 * One task, its result and every attempt, as `retask status <task_id>` prints it. The result is
 * whole unless {@link getTask} cut it (`maxResultChars`), which a note under it then says.
 */
export function renderTaskDetail(detail: TaskDetail, paint: Palette = palette()): string {
  const { task, attempts } = detail;
  const field = (name: string, value: string) => `${paint.bold(name.padEnd(9))} ${value}`;
  const out = [
    field("task", String(task.taskId)),
    field("program", `${oneLine(task.program ?? "(deleted)")} (id ${task.programId})`),
    field(
      "status",
      `${paintStatus(task.status, paint)}, attempt ${task.attempt} of ${task.maxAttempts}`,
    ),
    field("params", oneLine(JSON.stringify(task.params))),
    field("created", formatTimestamp(task.created)),
  ];
  if (task.status === "scheduled" && task.runAfter.getTime() > Date.now()) {
    out.push(field("run after", formatTimestamp(task.runAfter)));
  }
  if (task.host) out.push(field("runs on", oneLine(`${task.host}:${task.port}`)));
  if (task.priority !== 0) out.push(field("priority", String(task.priority)));
  if (task.key !== null) out.push(field("key", oneLine(task.key)));
  out.push(paint.bold("result"));
  out.push(...lines((task.result ?? "(none yet)").trimEnd()).map((l) => `  ${l}`));
  const note = cutNote(detail);
  if (note) out.push(paint.dim(`  ${note}`));
  out.push(paint.bold(`attempts (${attempts.length})`));
  for (const a of attempts) {
    out.push(
      `  ${a.attempt}. ${paintStatus(a.outcome, paint)}  ${formatTimestamp(a.started)}  ` +
        formatDuration(a.durationMs),
    );
    if (a.error) out.push(`     ${oneLine(a.error)}`);
    if (a.context) out.push(...lines(a.context).map((l) => paint.dim(`     ${l}`)));
  }
  if (task.status === "running") {
    const on = task.worker ? ` on ${oneLine(task.worker)}` : "";
    out.push(
      `  ${task.attempt}. ${paintStatus("running", paint)}  ${formatTimestamp(task.started)}  ` +
        `${formatDuration(task.durationMs)} so far${on}`,
    );
  }
  if (attempts.length === 0 && task.status !== "running") out.push("  none yet");
  return out.join("\n");
}

/** Flags checked before connecting: a task id, or filters. */
function parseQuery(taskId: string | undefined, flags: StatusFlags) {
  if (taskId !== undefined) {
    if (flags.status !== undefined || flags.program !== undefined || flags.limit !== undefined) {
      throw new RetaskError("usage", "status <task_id> takes no --status, --program or --limit");
    }
    return { taskId: parseInteger("task id", taskId, { min: 1 }) };
  }
  const filter: TaskFilter = {};
  if (flags.status !== undefined) filter.status = parseStatus(flags.status);
  if (flags.program !== undefined) filter.program = flags.program;
  if (flags.limit !== undefined) filter.limit = parseInteger("--limit", flags.limit, { min: 1 });
  return { filter };
}

/** Runs `draw` now and every `intervalMs` until SIGINT (Ctrl-C), which ends it normally. */
async function watch(intervalMs: number, draw: () => Promise<void>): Promise<void> {
  const stop = new AbortController();
  const onInterrupt = () => stop.abort();
  Deno.addSignalListener("SIGINT", onInterrupt);
  try {
    while (!stop.signal.aborted) {
      await draw();
      await sleep(intervalMs, stop.signal);
    }
  } finally {
    Deno.removeSignalListener("SIGINT", onInterrupt);
  }
}

/** Builds the `status` subcommand. */
export function statusCommand(): Command {
  return new Command("status")
    .description("list the newest tasks and a count per status, or show one task's attempts")
    .argument("[task_id]", "show this task: its full result and every attempt")
    .option("--status <status>", `only tasks in this status: ${STATUSES.join(", ")}`)
    .option("--program <program>", "only tasks of this program (name or id)")
    .option("--limit <n>", "show the newest n tasks (default 20)")
    .option(
      "--json",
      "print JSON: {tasks, counts, matching, schedules}, or {task, attempts} for one task",
    )
    .option("--watch", "redraw until interrupted (Ctrl-C)")
    .option("--interval <duration>", "time between redraws with --watch, e.g. 2s (default 1s)")
    .action(async (taskId: string | undefined, flags: StatusFlags, command: Command) => {
      const query = parseQuery(taskId, flags);
      const schema = schemaOf(command);
      const intervalMs = flags.interval === undefined
        ? 1000
        : parseDuration("--interval", flags.interval, 100);
      const clear = flags.watch && !flags.json && Deno.stdout.isTerminal();
      const show = async (db: Database) => {
        const data = query.taskId !== undefined
          ? await getTask(db.sql, query.taskId, {
            schema,
            // --json gives the whole result; people get its start and a note
            maxResultChars: flags.json ? undefined : DETAIL_RESULT_CHARS,
          })
          : {
            ...await listTasks(db.sql, { ...query.filter, schema }),
            // what will enqueue more: every schedule, whatever the filters
            schedules: await listSchedules(db.sql, { schema }),
          };
        if (flags.json) return printJson(data);
        const paint = palette();
        const text = "task" in data
          ? renderTaskDetail(data, paint)
          : renderTaskList(data, paint) + scheduleSection(data.schedules, paint);
        // home + clear screen: redraw in place instead of scrolling
        if (clear) console.log(`\x1b[H\x1b[2J${formatTimestamp(new Date())}\n`);
        // a forgotten DATABASE_URL means the embedded server: say which database this is
        console.log(`${text}\n${paint.dim(`database: ${describeDatabase(db)}`)}`);
        if (flags.watch && !clear) console.log("");
      };
      await withDatabase(command, async (db) => {
        await requireInstalled(db.sql, schema);
        if (flags.watch) await watch(intervalMs, () => show(db));
        else await show(db);
      });
    });
}
