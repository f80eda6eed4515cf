/**
 * What `retry`, `cancel` and `delete` share: task ids as people type them, and
 * one line per outcome.
 * @module
 */
import type { Command } from "npm:commander@14.0.3";
import { RetaskError } from "../lib/errors.ts";
import { checkSelection, type SkippedTask } from "../lib/queue/operate.ts";
import { parseStatus, type TaskStatus } from "../lib/queue/read.ts";
import { escapeControl, formatIdRanges } from "./format.ts";

/** The most task ids one command names. */
export const MAX_TASK_IDS = 100_000;

/**
 * Task ids from the command line: `42`, and ranges as `enqueue` prints them,
 * `101-103`; commas separate too (`5,7,9-12`). Input errors (exit 2) name the
 * bad one.
 */
export function parseTaskIds(args: readonly string[]): number[] {
  const ids = new Set<number>();
  for (const part of args.flatMap((a) => a.split(",")).map((p) => p.trim())) {
    const match = /^([0-9]+)(?:-([0-9]+))?$/.exec(part);
    const from = match ? Number(match[1]) : NaN;
    const to = match?.[2] !== undefined ? Number(match[2]) : from;
    if (!Number.isSafeInteger(from) || !Number.isSafeInteger(to) || from < 1 || to < from) {
      throw new RetaskError(
        "invalid_input",
        `a task id must be a positive whole number or a range such as 101-103, got "${part}"`,
      );
    }
    if (ids.size + (to - from + 1) > MAX_TASK_IDS) {
      throw new RetaskError("invalid_input", `name at most ${MAX_TASK_IDS} task ids at once`);
    }
    for (let id = from; id <= to; id++) ids.add(id);
  }
  return [...ids].sort((a, b) => a - b);
}

/** Flags of the commands that take ids or a filter. */
export interface SelectFlags {
  program?: string;
  status?: string;
}

/**
 * The selection the arguments make: ids, or `--program`/`--status`; both or
 * neither is a usage error, as is a status the command does not act on.
 */
export function parseSelection(
  verb: string,
  args: readonly string[],
  flags: SelectFlags,
  statuses: readonly TaskStatus[],
): { taskIds: number[] } | { program?: string; status?: TaskStatus } {
  const select = args.length > 0 && flags.program === undefined && flags.status === undefined
    ? { taskIds: parseTaskIds(args) }
    : {
      taskIds: args.length > 0 ? [] : undefined,
      program: flags.program,
      status: flags.status === undefined ? undefined : parseStatus(flags.status),
    };
  checkSelection(select, verb, statuses);
  return select;
}

/** Adds `--program` and `--status` (one of `statuses`, default all of them) to a command. */
export function selectOptions(command: Command, statuses: readonly string[]): Command {
  return command
    .option("--program <program>", "every task of this program (name or id) in --status")
    .option(
      "--status <status>",
      `only tasks in this status: ${statuses.join(" or ")} (default both)`,
    );
}

/** `retried 3 tasks: 5-7`, or `retried task 5`; nothing for none. */
export function idsLine(verb: string, ids: readonly number[], tail = ""): string[] {
  if (ids.length === 0) return [];
  return [
    ids.length === 1
      ? `${verb} task ${ids[0]}${tail}`
      : `${verb} ${ids.length} tasks${tail}: ${formatIdRanges(ids)}`,
  ];
}

/** One line per reason: `skipped task 8: it is finished; only error or cancelled tasks are retried`. */
export function skippedLines(skipped: readonly SkippedTask[]): string[] {
  const byReason = new Map<string, number[]>();
  for (const s of skipped) byReason.set(s.reason, [...(byReason.get(s.reason) ?? []), s.taskId]);
  return [...byReason].map(([reason, ids]) =>
    (ids.length === 1
      ? `skipped task ${ids[0]}`
      : `skipped ${ids.length} tasks (${formatIdRanges(ids)})`) + `: ${escapeControl(reason)}`
  );
}

/** The `--json` form of skipped tasks: `[{"task_id", "status", "reason"}]`. */
export function skippedJson(skipped: readonly SkippedTask[]) {
  return skipped.map((s) => ({ task_id: s.taskId, status: s.status, reason: s.reason }));
}
