/**
 * The fast path: one `run_next_tasks` statement takes a batch of runnable
 * tasks whose programs run in this database, runs each under its own savepoint
 * and records every outcome, and commits once. An attempt counts in the same
 * commit as its outcome: a statement that dies leaves its tasks as they were.
 * Before it runs any program, the statement names the tasks it took in a
 * NOTICE; if it then dies through a task's fault (a program that kills its
 * backend, an error no savepoint caught), those tasks go the careful way, one
 * per statement with a committed take, so only the guilty one is charged.
 * @module
 */
import { isConnectionError, withinStall } from "../db/pool.ts";
import { errorMessage } from "../errors.ts";
import { type ClaimedTask, claimTasks } from "./claim.ts";
import { faultOf } from "./give_back.ts";
import type { LaneHandle } from "./lane.ts";
import { runLocal, underTimeout } from "./local.ts";
import { type RecordedRow, reportOf } from "./recorder.ts";

/** How long a fast batch may start programs for (the server stops starting them past it). */
export const FAST_BUDGET_MS = 100;

/**
 * A fast statement still running after this is cut short: a program that
 * turned slow holds its batch's other tasks locked, unseen by other workers.
 * The program is stopped uncharged (its task stays scheduled), the tasks it
 * ran are recorded, and its time marks its program slow.
 */
export const FAST_WATCHDOG_MS = 1_000;

/** A program whose attempts typically take longer than this runs the careful way. */
export const SLOW_PROGRAM_MS = 50;

/**
 * Below this task timeout the fast path is not used: a fast statement runs
 * under the task timeout as a whole, and one this short would cut it while it
 * takes or records tasks.
 */
export const FAST_MIN_TIMEOUT_MS = 1_000;

/** The prefix of the NOTICE that names a fast batch's tasks. */
const BATCH_NOTICE = "retask batch: ";

/** A row of `run_next_tasks`. */
interface FastRow {
  task_id: number;
  attempt: number;
  max_attempts: number;
  program_id: number;
  program: string | null;
  outcome: RecordedRow["outcome"] | "interrupted" | "unrun";
  status: RecordedRow["status"];
  error: string | null;
  duration_ms: number | null;
}

/** What one fast statement did. */
export interface FastResult {
  /** Tasks it took (ran, or left as they were). */
  taken: number;
  /** Some tasks it took were left for another statement, or retried: run again. */
  more: boolean;
  /** Tasks it took the careful way (a dead batch's) and, the lane stopping, did not run. */
  unrun?: ClaimedTask[];
}

/**
 * Each program's typical attempt duration (a moving average), and so which
 * programs run the fast way: those seen to be quick. A program not seen yet
 * runs the careful way first (a task of a long program shows `running` from
 * its first attempt).
 */
export class ProgramTimes {
  readonly #ms = new Map<number, number>();
  #quick: number[] = [];
  #version = 0;

  /** Learns from attempts that took `durations` ([program id, ms]). */
  learn(durations: readonly (readonly [number, number])[]): void {
    if (durations.length === 0) return;
    for (const [program, ms] of durations) {
      const before = this.#ms.get(program);
      // a new program is judged by its first attempt; then 1/4 weight per attempt
      this.#ms.set(program, before === undefined ? ms : before * 0.75 + ms * 0.25);
    }
    const quick = [...this.#ms].filter(([, ms]) => ms <= SLOW_PROGRAM_MS).map(([id]) => id)
      .sort((a, b) => a - b);
    if (quick.join() !== this.#quick.join()) this.#version++;
    this.#quick = quick;
  }

  /** Programs whose attempts typically take {@link SLOW_PROGRAM_MS} or less. */
  get quick(): readonly number[] {
    return this.#quick;
  }

  /** Changes whenever the set of quick programs does. */
  get version(): number {
    return this.#version;
  }
}

/**
 * Runs one fast statement of up to `max` tasks of the programs `quick` (but
 * those with a timeout of their own), and reports what it recorded.
 */
export async function runFast(
  lane: LaneHandle,
  max: number,
  quick: readonly number[],
): Promise<FastResult> {
  const { ctx } = lane;
  // the tasks the statement took, from its NOTICE
  const took: number[] = [];
  const cancelsBefore = lane.cancelsSent;
  const watchdog = { fired: false };
  let rows: FastRow[];
  try {
    rows = await fastStatement(lane, max, quick, took, watchdog);
  } catch (error) {
    // nothing it did counted; the tasks are as they were
    if (watchdog.fired && isCancel(error) && !lane.aborting) {
      // cut between two programs: nothing recorded, nothing lost
      return { taken: took.length, more: true };
    }
    if (lane.aborting || took.length === 0) {
      if (!lane.aborting) await refused(lane, error);
      return { taken: 0, more: false };
    }
    const { code } = error as { code?: string };
    // a cancel the lane sent for one task stopped the statement, or a
    // deadlock or serialization failure: run them again
    if ((isCancel(error) && lane.cancelsSent !== cancelsBefore) || faultOf(code) === "transient") {
      return { taken: took.length, more: true };
    }
    const connectionLost = isConnectionError(error);
    if (connectionLost && (ctx.stopping.aborted || !(await lane.recover()))) {
      return { taken: 0, more: false };
    }
    if (!connectionLost && faultOf(code) !== "task") {
      await refused(lane, error);
      return { taken: 0, more: false };
    }
    ctx.log({
      level: "warn",
      message: `a batch of ${took.length} ${
        connectionLost ? "lost its database connection" : "failed as a whole"
      } (${errorMessage(error)}); running its tasks again one per statement`,
    });
    return { taken: took.length, more: true, unrun: await runCarefully(lane, took) };
  }
  const ran = rows.filter((r): r is FastRow & RecordedRow =>
    r.outcome !== "interrupted" && r.outcome !== "unrun"
  );
  const tasks = ran.map((r) => ({ task: claimedOf(r), durationMs: r.duration_ms ?? 0 }));
  lane.report(reportOf(tasks, ran, ctx.worker), []);
  // a program cut short by the budget or a timeout took at least that long
  ctx.times.learn(
    rows.filter((r) => r.duration_ms !== null).map((r) => [r.program_id, r.duration_ms!] as const),
  );
  return {
    taken: rows.length,
    more: rows.length >= max || rows.some((r) => r.outcome === "unrun" || r.status === "scheduled"),
  };
}

// The tasks of a fast statement that died through a task's fault: taken for
// this lane (committed), then one run_tasks statement each. Returns those left
// unrun because the lane is stopping.
async function runCarefully(
  lane: LaneHandle,
  taskIds: readonly number[],
): Promise<ClaimedTask[]> {
  const { ctx } = lane;
  const tasks = await withinStall(
    claimTasks(lane.sql, ctx.schema, taskIds.length, ctx.worker, ctx.leaseMs, { taskIds }),
  );
  lane.hold(tasks);
  // until their careful runs say otherwise, these programs go the careful
  // way: another fast batch of the same killer would die the same way
  ctx.times.learn(tasks.map((t) => [t.programId, FAST_WATCHDOG_MS] as const));
  const unrun = await runLocal(lane, tasks, { oneByOne: true });
  lane.hold(unrun);
  return unrun;
}

function isCancel(error: unknown): boolean {
  return (error as { code?: string }).code === "57014";
}

// The statement failed before it ran anything, or the database would not
// record: nothing was taken. The worker pauses taking if the database is at fault.
async function refused(lane: LaneHandle, error: unknown): Promise<void> {
  if (isConnectionError(error)) {
    if (!lane.ctx.stopping.aborted) await lane.recover();
    return;
  }
  if (faultOf((error as { code?: string }).code) === "database") lane.ctx.cannotRecord(error);
}

function claimedOf(row: FastRow): ClaimedTask {
  return {
    taskId: row.task_id,
    attempt: row.attempt,
    maxAttempts: row.max_attempts,
    program: row.program ?? `program ${row.program_id}`,
    programId: row.program_id,
    host: null,
    port: null,
    params: null,
    problem: null,
  };
}

// run_next_tasks under the worker's task timeout (see underTimeout). `took`
// is filled from the statement's NOTICE as soon as the server has taken the
// tasks, and lets a cancel request for one of them reach the statement.
async function fastStatement(
  lane: LaneHandle,
  max: number,
  quick: readonly number[],
  took: number[],
  watchdog: { fired: boolean },
): Promise<FastRow[]> {
  const sql = lane.sql;
  // the statement's own NOTICE comes first, before any program runs: one a
  // program raises after it is not taken for it
  const stopListening = lane.onNotice((message) => {
    if (!message.startsWith(BATCH_NOTICE) || took.length > 0) return;
    const list = message.slice(BATCH_NOTICE.length).replace(/[{}]/g, "");
    for (const id of list.split(",")) if (id !== "") took.push(Number(id));
  });
  const query = sql<FastRow[]>`
    SELECT task_id, attempt, max_attempts, program_id, program, outcome, status, error, duration_ms
    FROM ${sql(lane.ctx.schema)}.run_next_tasks(
      ${max}::integer, ${lane.ctx.worker}::text, ${quick as number[]}::bigint[],
      ${FAST_BUDGET_MS}::integer * interval '1 millisecond',
      max_result_bytes => ${lane.ctx.maxResultBytes}::integer)`;
  // sends the statement (and the two around it) before anything else awaits
  const running = underTimeout(lane, lane.ctx.taskTimeoutMs, query, took);
  let ended = false;
  query.then(() => (ended = true), () => (ended = true));
  const timer = setTimeout(() => {
    if (ended) return;
    watchdog.fired = true;
    query.cancel();
  }, FAST_WATCHDOG_MS);
  try {
    return await running;
  } finally {
    clearTimeout(timer);
    stopListening();
  }
}
