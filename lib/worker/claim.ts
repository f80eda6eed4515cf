/**
 * Claiming work: take a batch of runnable tasks for this worker, keep the
 * leases of the tasks it holds, rescue those of vanished workers, and ask
 * whether anything is left to do. All on
 * the worker's home connection, whose backend the taken tasks record as their
 * holder.
 * @module
 */
import type { Sql } from "../db/connect.ts";

/** A task this worker took: what running it and reporting on it need. */
export interface ClaimedTask {
  taskId: number;
  /** The attempt this worker started; every completion names it. */
  attempt: number;
  maxAttempts: number;
  program: string;
  /** Set (with port) for a task that runs on another server. */
  host: string | null;
  port: string | null;
  programId: number;
  /** The program's argument, only for a remote task (its server runs the program with it). */
  params: unknown;
  /** What is wrong with the task's host and port, if anything: it fails without running. */
  problem: string | null;
  /** Its program's own statement timeout in ms (`register --timeout`); null: the worker's. */
  timeoutMs?: number | null;
}

/** The statement timeout `task` runs under, in ms (0: none): its program's, else `workerMs`. */
export function taskTimeoutMs(task: ClaimedTask, workerMs: number): number {
  // at least 1: PostgreSQL rounds a fraction of a millisecond to 0, which is no timeout
  const own = task.timeoutMs ?? null;
  return own === null ? workerMs : Math.max(1, Math.round(own));
}

interface ClaimedRow {
  task_id: number;
  attempt_count: number;
  max_attempts: number;
  program: string | null;
  program_id: number;
  host: string | null;
  port: string | null;
  params: unknown;
  problem: string | null;
  timeout_ms: number | null;
}

/**
 * Takes up to `max` runnable tasks (highest priority, then longest runnable first, skipping
 * those other workers are taking and those of paused programs) and starts an attempt of each,
 * leased for `leaseMs`. Each comes with its program's timeout. With `quick` (the programs the
 * worker found quick), only what the fast path leaves: remote tasks, and those of other programs
 * or of programs with a timeout of their own. With `taskIds`, only those still runnable.
 */
export async function claimTasks(
  home: Sql,
  schema: string,
  max: number,
  worker: string,
  leaseMs: number,
  which: { quick?: readonly number[]; taskIds?: readonly number[] } = {},
): Promise<ClaimedTask[]> {
  const rows = await home<ClaimedRow[]>`
    SELECT t.task_id, t.attempt_count, t.max_attempts, t.program_id, p.name AS program,
           t.host, t.port, CASE WHEN t.host IS NOT NULL THEN t.params END AS params,
           CASE WHEN t.host IS NOT NULL
                THEN ${home(schema)}.host_port_problem(t.host, t.port) END AS problem,
           (extract(epoch FROM p.timeout) * 1000)::float8 AS timeout_ms
    FROM ${home(schema)}.take_tasks(${max}::integer, ${worker}::text,
                                    ${leaseMs}::integer * interval '1 millisecond', true,
                                    ${(which.quick as number[] | undefined) ?? null}::bigint[],
                                    ${(which.taskIds as number[] | undefined) ?? null}::bigint[]) t
    LEFT JOIN ${home(schema)}.programs p ON p.program_id = t.program_id
    ORDER BY t.task_id`;
  return rows.map((r) => ({
    taskId: r.task_id,
    attempt: r.attempt_count,
    maxAttempts: r.max_attempts,
    program: r.program ?? `program ${r.program_id}`,
    programId: r.program_id,
    host: r.host,
    port: r.port,
    params: r.params,
    problem: r.problem,
    timeoutMs: r.timeout_ms,
  }));
}

/**
 * Extends the leases of the attempts this worker holds (those its lanes have
 * locked are skipped: they cannot be rescued while locked). Returns how many
 * were renewed.
 */
export async function renewLeases(
  home: Sql,
  schema: string,
  held: readonly ClaimedTask[],
  leaseMs: number,
): Promise<number> {
  if (held.length === 0) return 0;
  const [row] = await home<{ renewed: number }[]>`
    SELECT ${home(schema)}.renew_leases(${held.map((t) => t.taskId)}::bigint[],
                               ${held.map((t) => t.attempt)}::integer[],
                               ${leaseMs}::integer * interval '1 millisecond') AS renewed`;
  return row.renewed;
}

/**
 * What a draining worker with nothing to run waits for, in words: `draining: waiting for 3
 * tasks scheduled later, the next at 2030-01-02T03:04:05.000Z; 2 running on other workers`.
 */
export async function waitingFor(home: Sql, schema: string): Promise<string> {
  const [w] = await home<
    { scheduled: number; next_at: Date | null; paused: number; running: number }[]
  >`
    SELECT scheduled::int, next_at, paused::int, running::int FROM ${home(schema)}.tasks_waiting()`;
  const tasks = (n: number) => `${n} ${n === 1 ? "task" : "tasks"}`;
  const parts = [];
  if (w.scheduled > 0) {
    const next = w.next_at && w.next_at.getTime() > Date.now()
      ? `, the next at ${w.next_at.toISOString()}`
      : "";
    parts.push(`${tasks(w.scheduled)} scheduled later${next}`);
  }
  if (w.paused > 0) parts.push(`${tasks(w.paused)} of paused programs (retask resume)`);
  if (w.running > 0) parts.push(`${tasks(w.running)} running on other workers`);
  return `draining: waiting for ${parts.length > 0 ? parts.join("; ") : "tasks being taken"}`;
}

/** True while some task is scheduled (now or later) or running anywhere. */
export async function tasksPending(home: Sql, schema: string): Promise<boolean> {
  const [row] = await home<{ pending: boolean }[]>`
    SELECT ${home(schema)}.tasks_pending() AS pending`;
  return row.pending;
}

/**
 * Ends, as lost, the running attempts whose backend is gone or whose lease ran
 * out; of the attempts this worker holds (`held`), only those whose lease ran
 * out: the worker is alive, whatever became of the backend that took them.
 */
export async function rescueLostTasks(
  home: Sql,
  schema: string,
  held: readonly ClaimedTask[] = [],
): Promise<number> {
  const [row] = await home<{ rescued: number }[]>`
    SELECT ${home(schema)}.rescue_lost_tasks(${held.map((t) => t.taskId)}::bigint[],
                                             ${held.map((t) => t.attempt)}::integer[]) AS rescued`;
  return row.rescued;
}

/**
 * Of the attempts this worker holds, the tasks someone asked to cancel
 * (`retask cancel`): the worker is told of each by a notification, and asks
 * here too, in case one was sent while it was not listening.
 */
export async function cancelRequested(
  home: Sql,
  schema: string,
  held: readonly ClaimedTask[],
): Promise<number[]> {
  if (held.length === 0) return [];
  const rows = await home<{ task_id: number }[]>`
    SELECT task_id FROM ${home(schema)}.cancel_requests
    WHERE task_id = ANY (${held.map((t) => t.taskId)}::bigint[])`;
  return rows.map((r) => r.task_id);
}
