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
}

/**
 * Takes up to `max` runnable tasks (longest runnable first, skipping those other workers
 * are taking) and starts an attempt of each, leased for `leaseMs`.
 */
export async function claimTasks(
  home: Sql,
  schema: string,
  max: number,
  worker: string,
  leaseMs: number,
): Promise<ClaimedTask[]> {
  const rows = await home<ClaimedRow[]>`
    SELECT t.task_id, t.attempt_count, t.max_attempts, t.program_id, p.name AS program,
           t.host, t.port, CASE WHEN t.host IS NOT NULL THEN t.params END AS params,
           CASE WHEN t.host IS NOT NULL
                THEN ${home(schema)}.host_port_problem(t.host, t.port) END AS problem
    FROM ${home(schema)}.take_tasks(${max}::integer, ${worker}::text,
                                    ${leaseMs}::integer * interval '1 millisecond', true) t
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
