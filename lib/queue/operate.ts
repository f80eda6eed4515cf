/**
 * Operating the queue by hand: retry tasks that ended in error or were
 * cancelled, cancel scheduled or running ones, delete ended ones, prune those
 * that ended long ago. Each calls one function of sql/operate.sql, which
 * decides and checks everything; pass a transaction (`sql.begin`) as `sql` to
 * do it together with your own writes. Unknown task ids or programs are an
 * input error, and nothing changes.
 *
 * ```ts
 * const { retried, skipped } = await retryTasks(db.sql, { program: "lucky", status: "error" });
 * await cancelTasks(db.sql, { taskIds: [42] });
 * await pruneTasks(db.sql, { olderThan: "30 days" });
 * ```
 * @module
 */
import type { Queryable } from "../db/connect.ts";
import { DEFAULT_SCHEMA } from "../db/schema.ts";
import { RetaskError } from "../errors.ts";
import { sleep } from "../worker/wake.ts";
import { findProgram, type InSchema } from "./programs.ts";
import type { TaskStatus } from "./read.ts";

/** Which tasks: by id, or every task of a program and/or in a status. */
export interface TaskSelection extends InSchema {
  /** These tasks (each must exist); not with `program` or `status`. */
  taskIds?: readonly number[];
  /** Every task of this program (id or name) in the operation's statuses, or in `status`. */
  program?: string | number;
  /** Only tasks in this status (one the operation acts on). */
  status?: TaskStatus;
}

/** A task an operation left alone, and why. */
export interface SkippedTask {
  taskId: number;
  /** Its status, which the operation does not act on. */
  status: TaskStatus;
  /** Why, in words: `it is finished; only error or cancelled tasks are retried`. */
  reason: string;
}

/** What {@link retryTasks} did. */
export interface RetryResult {
  /** Scheduled again, in id order. */
  retried: number[];
  skipped: SkippedTask[];
}

/** What {@link cancelTasks} did. */
export interface CancelResult {
  /** Were scheduled; now `cancelled`, never to run. */
  cancelled: number[];
  /** Are running; asked to stop (their attempts end `cancelled`, no retry). */
  requested: number[];
  skipped: SkippedTask[];
}

/** What {@link deleteTasks} did. */
export interface DeleteResult {
  /** Removed with their history. */
  deleted: number[];
  skipped: SkippedTask[];
}

/** Options for {@link retryTasks}. */
export interface RetryOptions extends TaskSelection {
  /**
   * Attempts to give each task, 1 to 100, numbered on from those it used
   * (default: the budget it had, from its program or its enqueue).
   */
  maxAttempts?: number;
}

interface OutcomeRow {
  task_id: number;
  status: TaskStatus;
  outcome: string;
  reason: string | null;
}

/** The statuses each operation acts on. */
export const RETRYABLE = ["error", "cancelled"] as const;
export const CANCELLABLE = ["scheduled", "running"] as const;
export const ENDED = ["finished", "error", "cancelled"] as const;

/** A status that has ended: what delete and prune remove. */
export type EndedStatus = typeof ENDED[number];

/**
 * Refuses a selection `verb` cannot act on, before anything connects: ids and
 * a filter together, neither, no ids, or a status not among `statuses`.
 */
export function checkSelection(
  select: TaskSelection,
  verb: string,
  statuses: readonly string[],
): void {
  const filtered = select.program !== undefined || select.status !== undefined;
  if (select.taskIds !== undefined && filtered) {
    throw new RetaskError("usage", `${verb} takes task ids, or --program and --status, not both`);
  }
  if (select.taskIds !== undefined && select.taskIds.length === 0) {
    throw new RetaskError("usage", `${verb} needs at least one task id`);
  }
  if (select.taskIds === undefined && !filtered) {
    throw new RetaskError("usage", `${verb} needs task ids, or --program and/or --status`);
  }
  if (select.status !== undefined && !statuses.includes(select.status)) {
    throw new RetaskError(
      "invalid_input",
      `${verb} acts on ${statuses.join(" or ")} tasks, not "${select.status}"`,
    );
  }
}

// The selection as SQL arguments: ids, or program id and status.
async function selection(
  sql: Queryable,
  select: TaskSelection,
  verb: string,
  statuses: readonly string[],
): Promise<{ ids: number[] | null; programId: number | null; status: string | null }> {
  checkSelection(select, verb, statuses);
  if (select.taskIds !== undefined) {
    return { ids: [...select.taskIds], programId: null, status: null };
  }
  const programId = select.program === undefined
    ? null
    : (await findProgram(sql, select.program, select)).programId;
  return { ids: null, programId, status: select.status ?? null };
}

function skippedOf(rows: readonly OutcomeRow[]): SkippedTask[] {
  return rows.filter((r) => r.outcome === "skipped").map((r) => ({
    taskId: r.task_id,
    status: r.status,
    reason: r.reason ?? "",
  }));
}

const idsOf = (rows: readonly OutcomeRow[], outcome: string) =>
  rows.filter((r) => r.outcome === outcome).map((r) => r.task_id);

/**
 * Schedules again tasks that ended `error` or `cancelled`, each with a fresh
 * budget of attempts numbered on from those it used (`attempt 4 of 6` after 3
 * of 3), its history kept and its result saying it was retried. Others are
 * skipped, with the reason.
 */
export async function retryTasks(sql: Queryable, options: RetryOptions): Promise<RetryResult> {
  const { ids, programId, status } = await selection(sql, options, "retry", RETRYABLE);
  const rows = await sql<OutcomeRow[]>`
    SELECT task_id, status, outcome, reason FROM ${
    sql(options.schema ?? DEFAULT_SCHEMA)
  }.retry_tasks(
      ${ids}::bigint[], ${programId}::bigint, ${status}::text, ${
    options.maxAttempts ?? null
  }::integer)`;
  return { retried: idsOf(rows, "retried"), skipped: skippedOf(rows) };
}

/**
 * Cancels tasks: a scheduled one ends `cancelled` at once and never runs; a
 * running one is asked to stop, and its worker cancels its program (the
 * attempt ends `cancelled`, with no retry). Ended ones are skipped.
 */
export async function cancelTasks(sql: Queryable, options: TaskSelection): Promise<CancelResult> {
  const { ids, programId, status } = await selection(sql, options, "cancel", CANCELLABLE);
  const rows = await sql<OutcomeRow[]>`
    SELECT task_id, status, outcome, reason FROM ${
    sql(options.schema ?? DEFAULT_SCHEMA)
  }.cancel_tasks(
      ${ids}::bigint[], ${programId}::bigint, ${status}::text)`;
  return {
    cancelled: idsOf(rows, "cancelled"),
    requested: idsOf(rows, "requested"),
    skipped: skippedOf(rows),
  };
}

/**
 * Deletes ended tasks (finished, error or cancelled) and their history. A
 * scheduled or running one is skipped: cancel it first.
 */
export async function deleteTasks(
  sql: Queryable,
  taskIds: readonly number[],
  options: InSchema = {},
): Promise<DeleteResult> {
  await selection(sql, { taskIds }, "delete", ENDED);
  const rows = await sql<OutcomeRow[]>`
    SELECT task_id, status, outcome, reason FROM ${
    sql(options.schema ?? DEFAULT_SCHEMA)
  }.delete_tasks(
      ${[...taskIds]}::bigint[])`;
  return { deleted: idsOf(rows, "deleted"), skipped: skippedOf(rows) };
}

/** Options for {@link pruneTasks}. */
export interface PruneOptions extends InSchema {
  /** Tasks that ended longer ago than this: milliseconds, or a PostgreSQL interval (`"30 days"`). */
  olderThan: number | string;
  /** Only tasks that ended in these statuses (default all three). */
  statuses?: readonly EndedStatus[];
  /** Tasks per batch, 1 to 100000 (default 1000); each batch is one short transaction. */
  batchSize?: number;
  /**
   * After each batch, rest this many times as long as the batch took, to leave
   * the database's CPU to the workers (default 0: flat out; the CLI and
   * `work --retention` use {@link PRUNE_REST_RATIO}).
   */
  restRatio?: number;
  /** Stops between batches. */
  signal?: AbortSignal;
  /** Told how many each batch removed. */
  onBatch?: (deleted: number) => void;
}

/** The batch size {@link pruneTasks} uses by default. */
export const PRUNE_BATCH = 1000;

/**
 * The rest `retask prune` and `work --retention` take after each batch, as a
 * multiple of the batch's time: beside a drain that keeps the database's CPU
 * busy, a prune of a million tasks then cost it no measurable throughput
 * (flat out, 39%), and took about a minute (docs/benchmarks.md).
 */
export const PRUNE_REST_RATIO = 4;

/**
 * Deletes, with their history, the tasks that ended longer ago than
 * `olderThan`, oldest first, in batches of `batchSize` until none is left (or
 * `signal` aborts). Rows a worker holds are skipped, never waited for. Given a
 * transaction, every batch runs in it; given a pool, each batch is a
 * transaction of its own. Returns how many it removed.
 */
export async function pruneTasks(
  sql: Queryable,
  options: PruneOptions,
): Promise<{ deleted: number }> {
  const batchSize = options.batchSize ?? PRUNE_BATCH;
  const ms = typeof options.olderThan === "number" ? options.olderThan : null;
  const text = typeof options.olderThan === "string" ? options.olderThan : null;
  if (ms !== null && !(ms >= 0)) {
    throw new RetaskError("invalid_input", `an age must be 0 or more milliseconds, got ${ms}`);
  }
  const statuses = options.statuses ? [...options.statuses] : null;
  let deleted = 0;
  while (!options.signal?.aborted) {
    const started = performance.now();
    const [row] = await sql<{ n: number }[]>`
      SELECT ${sql(options.schema ?? DEFAULT_SCHEMA)}.prune_tasks(
        coalesce(${text}::interval, ${ms}::float8 * interval '1 millisecond'),
        ${statuses}::text[], ${batchSize}::integer) AS n`;
    deleted += row.n;
    options.onBatch?.(row.n);
    if (row.n < batchSize) break;
    const rest = (performance.now() - started) * (options.restRatio ?? 0);
    if (rest > 0) await sleep(rest, options.signal);
  }
  return { deleted };
}

const AGE_UNITS: Record<string, number> = {
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 604_800_000,
};

/**
 * An age as people write it, in milliseconds: a number with a unit, `45s`,
 * `90m`, `12h`, `30d`, `2w` (`1.5d` too). A usage error names `what`.
 */
export function parseAge(what: string, text: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$/.exec(text);
  const ms = match ? Math.round(Number(match[1]) * AGE_UNITS[match[2]]) : NaN;
  // a century at most: older ends nothing, and the arithmetic stays exact
  if (!Number.isSafeInteger(ms) || ms > 100 * 365 * AGE_UNITS.d) {
    throw new RetaskError(
      "usage",
      `${what} must be an age with a unit: 45s, 90m, 12h, 30d or 2w, got "${text}"`,
    );
  }
  return ms;
}

/** An age in the largest unit {@link parseAge} reads that divides it: `30d`, `90m`; else ms. */
export function formatAge(ms: number): string {
  for (const unit of ["w", "d", "h", "m", "s"]) {
    if (ms > 0 && ms % AGE_UNITS[unit] === 0) return `${ms / AGE_UNITS[unit]}${unit}`;
  }
  return `${ms}ms`;
}
