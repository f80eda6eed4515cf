/**
 * A lane owns one connection and runs one batch at a time: a fast statement
 * that takes, runs and records quick SQL programs (fast.ts), or tasks claimed
 * before: SQL programs (local.ts), remote tasks on their servers (remote.ts). It sizes its next batch from how long its tasks took. What a
 * failed batch left unrecorded, it records as lost when the batch lost its
 * connection, and gives back uncounted when the database would not run or
 * record it (give_back.ts).
 * @module
 */
import type { Sql } from "../db/connect.ts";
import { isConnectionError, reconnectDelay, withinStall } from "../db/pool.ts";
import { errorMessage } from "../errors.ts";
import { type ClaimedTask, renewLeases } from "./claim.ts";
import { GiveBack, releaseTasks } from "./give_back.ts";
import { type FastResult, type ProgramTimes, runFast } from "./fast.ts";
import { runLocal } from "./local.ts";
import type { TaskOutcome, WorkerLog } from "./outcome.ts";
import {
  type AttemptResult,
  lost,
  recordAttempts,
  type RecordTarget,
  STOPPED,
} from "./recorder.ts";
import { type RemotePools, runRemote } from "./remote.ts";
import { sleep } from "./wake.ts";

/**
 * How long a lane's batch should take. A lane sizes its next batch from how
 * long its tasks took: short tasks fill the batch (few commits, high
 * throughput), long ones go one per transaction (no task waits behind a slow
 * one, and other workers get their share of the queue).
 */
const BATCH_BUDGET_MS = 100;

/**
 * How long a lane keeps trying to record or give back its attempts while its
 * connection is down, before leaving them to the rescuer.
 */
const RECORD_LOST_FOR_MS = 30_000;

/** What lanes share with the worker that owns them. */
export interface LaneContext extends RecordTarget {
  /** The most tasks a lane runs in one transaction. */
  batchSize: number;
  /** How long a taken task stays this worker's without a renewal, in ms. */
  leaseMs: number;
  /** A result longer than this is cut, with a note that it was. */
  maxResultBytes: number;
  remote: RemotePools;
  /** How long each program's attempts take: the quick ones go the fast way. */
  times: ProgramTimes;
  report(outcomes: TaskOutcome[]): void;
  log(entry: WorkerLog): void;
  /** Told that the database refused to record outcomes: the worker pauses taking tasks. */
  cannotRecord(error: unknown): void;
  /** Aborted when the worker is asked to stop. */
  stopping: AbortSignal;
  /** Aborted when the worker stops waiting for its lanes: stop retrying. */
  giveUp: AbortSignal;
}

/** What the fast and the remote path use of the lane that runs them. */
export interface LaneHandle {
  /** The lane's connection now (a new one after {@link LaneHandle.reopen}). */
  readonly sql: Sql;
  readonly ctx: LaneContext;
  /** True once the worker asked the lane to cut its batch short. */
  readonly aborting: boolean;
  /**
   * Keeps a running query cancellable by {@link Lane.abort}, and by
   * {@link Lane.cancelTask} of one of `taskIds` (the tasks it runs); returns
   * its release.
   */
  track(query: { cancel(): void }, taskIds: readonly number[]): () => void;
  /** How many queries the lane has cancelled for cancel requests so far. */
  readonly cancelsSent: number;
  /** Replaces a connection that is lost or left in a bad state. */
  reopen(): void;
  /** Calls `handler` with every NOTICE the connection receives, until the returned function is called. */
  onNotice(handler: (message: string) => void): () => void;
  /** The lane now holds `tasks` (taken, their attempts not yet recorded). */
  hold(tasks: readonly ClaimedTask[]): void;
  /** Replaces a lost connection; true if the server answers on the new one. */
  recover(): Promise<boolean>;
  /**
   * Reports the events of recorded attempts; the lane no longer holds the
   * tasks `ended` (recorded, or no longer the database's to record).
   */
  report(events: readonly TaskOutcome[], ended: readonly ClaimedTask[]): void;
}

/** One execution connection and the batch it is running, if any. */
export class Lane implements LaneHandle {
  readonly #open: (onNotice: (message: string) => void) => Sql;
  readonly #noticeHandlers = new Set<(message: string) => void>();
  #sql: Sql;
  readonly ctx: LaneContext;
  #held: readonly ClaimedTask[] = [];
  #running: Promise<void> | null = null;
  #aborting = false;
  // a new lane starts with one task, and learns, for each path apart: the
  // careful path's tasks are slow (or new) ones, which go one at a time
  #capacity = 1;
  #carefulCapacity = 1;
  // running queries, and the tasks each runs
  readonly #inflight = new Map<{ cancel(): void }, readonly number[]>();
  #cancelsSent = 0;
  #careful = false;
  // tasks of the current batch the lane has cancelled a query for
  readonly #cancelledFor = new Set<number>();

  /**
   * `open` makes the lane's connection pool (again, if one stalls), passing the
   * server's notices to `onNotice`.
   */
  constructor(open: (onNotice: (message: string) => void) => Sql, ctx: LaneContext) {
    this.#open = open;
    this.#sql = open(this.#notice);
    this.ctx = ctx;
  }

  readonly #notice = (message: string) => {
    for (const handler of this.#noticeHandlers) handler(message);
  };

  onNotice(handler: (message: string) => void): () => void {
    this.#noticeHandlers.add(handler);
    return () => this.#noticeHandlers.delete(handler);
  }

  hold(tasks: readonly ClaimedTask[]): void {
    this.#held = tasks;
  }

  get sql(): Sql {
    return this.#sql;
  }

  get aborting(): boolean {
    return this.#aborting;
  }

  /** True while the lane runs (or last ran) a careful batch, not a fast statement. */
  get careful(): boolean {
    return this.#careful;
  }

  /** True when the lane can take a batch. */
  get idle(): boolean {
    return this.#running === null;
  }

  /** How many tasks the lane's next fast statement should take (1 to the batch size). */
  get capacity(): number {
    return this.#capacity;
  }

  /** How many tasks taken the careful way the lane's next batch should have. */
  get carefulCapacity(): number {
    return this.#carefulCapacity;
  }

  /** The attempts this lane holds: taken, not yet recorded. */
  get held(): readonly ClaimedTask[] {
    return this.#held;
  }

  /**
   * Starts running `tasks`, taken before (the careful path); `onDone` is
   * called when the lane is idle again.
   */
  start(tasks: readonly ClaimedTask[], onDone: () => void): void {
    this.#held = tasks;
    this.#careful = true;
    this.#begin(this.#run(tasks), onDone);
  }

  /**
   * Starts one fast statement of up to `max` tasks of the programs `quick`;
   * `onDone` gets what it did when the lane is idle again.
   */
  startFast(max: number, quick: readonly number[], onDone: (result: FastResult) => void): void {
    let result: FastResult = { taken: 0, more: false };
    this.#careful = false;
    const started = performance.now();
    const run = async () => {
      try {
        result = await runFast(this, max, quick);
        // what it took the careful way and, stopping, did not run ends lost
        const unrun = result.unrun ?? [];
        if (unrun.length > 0) await this.#recordLost(unrun.map((task) => lost(task, STOPPED)));
        this.#learn(performance.now() - started, Math.max(result.taken, 1));
      } catch (error) {
        await this.#fail(error);
      }
    };
    this.#begin(run(), () => onDone(result));
  }

  #begin(run: Promise<void>, onDone: () => void): void {
    this.#cancelledFor.clear();
    this.#running = run.catch((error) => {
      this.ctx.log({ level: "warn", message: `a lane failed: ${errorMessage(error)}` });
    }).finally(() => {
      this.#held = [];
      this.#running = null;
      onDone();
    });
  }

  // The next batch's size, from how long this one's tasks took.
  #learn(ms: number, tasks: number, careful = false): void {
    const perTask = Math.max(ms / tasks, 0.01);
    const size = Math.max(1, Math.min(this.ctx.batchSize, Math.floor(BATCH_BUDGET_MS / perTask)));
    if (careful) this.#carefulCapacity = size;
    else this.#capacity = size;
  }

  /** Resolves when the current batch (if any) is recorded. */
  async whenIdle(): Promise<void> {
    await this.#running;
  }

  /**
   * Cuts the batch short: cancels running programs. Attempts taken before end
   * lost; a fast statement's tasks stay as they were (nothing of it counted).
   */
  abort(): void {
    this.#aborting = true;
    for (const query of this.#inflight.keys()) query.cancel();
  }

  /**
   * Someone asked to cancel task `taskId` (`retask cancel`): if a query of
   * this lane is running it, that query is cancelled. The program stops, and
   * the database records the attempt cancelled; other tasks of its batch go
   * again uncharged.
   */
  cancelTask(taskId: number): void {
    // once per task: a cancel that stopped another task of the batch, which
    // goes again, must not stop it again (the statement skips the task asked
    // for when it comes to it)
    if (this.#cancelledFor.has(taskId)) return;
    for (const [query, taskIds] of this.#inflight) {
      if (!taskIds.includes(taskId)) continue;
      this.#cancelledFor.add(taskId);
      this.#cancelsSent++;
      // postgres.js sends the cancel on a connection of its own: if that
      // fails, the request still stands, and the attempt's end honours it
      Promise.resolve(query.cancel() as unknown).catch(() => {});
    }
  }

  get cancelsSent(): number {
    return this.#cancelsSent;
  }

  /** Opens the lane's connection now, so a server that refuses it fails the start, not a batch. */
  async connect(): Promise<void> {
    await this.#sql`SELECT 1`;
  }

  /** Closes the connection. */
  close(): Promise<void> {
    return this.#sql.end({ timeout: 1 });
  }

  track(query: { cancel(): void }, taskIds: readonly number[]): () => void {
    this.#inflight.set(query, taskIds);
    return () => this.#inflight.delete(query);
  }

  // A new pool after a lost or stalled connection (see the worker loop for why
  // not the driver's own reconnection); the old one is torn down unwaited.
  reopen(): void {
    const stalled = this.#sql;
    this.#sql = this.#open(this.#notice);
    stalled.end({ timeout: 0 }).catch(() => {});
  }

  async recover(): Promise<boolean> {
    this.reopen();
    try {
      // the batch's rows name the dead backend: point them at the new one at
      // once, before another worker's rescuer takes them for lost
      await withinStall(renewLeases(this.#sql, this.ctx.schema, this.#held, this.ctx.leaseMs));
      return true;
    } catch {
      return false;
    }
  }

  report(events: readonly TaskOutcome[], ended: readonly ClaimedTask[]): void {
    if (events.length > 0) this.ctx.report([...events]);
    this.#drop(ended);
  }

  #drop(ended: readonly ClaimedTask[]): void {
    const done = new Set(ended.map((t) => t.taskId));
    this.#held = this.#held.filter((t) => !done.has(t.taskId));
  }

  async #run(tasks: readonly ClaimedTask[]): Promise<void> {
    const started = performance.now();
    try {
      const unrun = await runLocal(this, tasks.filter((t) => t.host === null));
      const remote = tasks.filter((t) => t.host !== null);
      if (remote.length > 0) this.report(await runRemote(this, remote), remote);
      if (unrun.length > 0) await this.#recordLost(unrun.map((task) => lost(task, STOPPED)));
      this.#learn(performance.now() - started, tasks.length, true);
    } catch (error) {
      await this.#fail(error);
    }
  }

  // What a batch that failed left unrecorded: lost if the connection was lost
  // (or the lane is stopping), else given back uncounted.
  async #fail(error: unknown): Promise<void> {
    const connectionLost = isConnectionError(error);
    if (connectionLost) this.reopen();
    else await this.#sql`ROLLBACK`.catch(() => {});
    const left = this.#held;
    if (!connectionLost && !this.#aborting) {
      // the database would not run or record the batch: not its tasks' fault
      await this.#giveBack(left, error instanceof GiveBack ? error : new GiveBack(error, true));
      return;
    }
    if (!this.#aborting) {
      this.ctx.log({
        level: "warn",
        message: `a batch of ${left.length} lost its database connection ` +
          `(${errorMessage(error)}); recording its attempts as lost`,
      });
    }
    const reason = this.#aborting
      ? STOPPED
      : `worker lost its database connection: ${errorMessage(error)}`;
    await this.#recordLost(left.map((t) => lost(t, reason)));
  }

  // Records attempts whose transaction failed. If the database refuses (not a
  // lost connection), they are given back instead.
  async #recordLost(results: AttemptResult[]): Promise<void> {
    const tasks = results.map((r) => r.task);
    const refused = await this.#persist(`record ${results.length} lost attempt(s)`, async () => {
      this.report(await withinStall(recordAttempts(this.#sql, results, this.ctx)), tasks);
    });
    if (refused !== undefined) await this.#giveBack(tasks, new GiveBack(refused, true));
  }

  // Gives back attempts uncounted; with `why.pause`, first tells the worker to
  // stop taking tasks.
  async #giveBack(tasks: readonly ClaimedTask[], why: GiveBack): Promise<void> {
    if (why.pause) this.ctx.cannotRecord(why.cause);
    const refused = await this.#persist(`give back ${tasks.length} attempt(s)`, async () => {
      await withinStall(releaseTasks(this.#sql, this.ctx.schema, tasks));
      this.#drop(tasks);
    });
    if (refused !== undefined) {
      this.ctx.log({
        level: "warn",
        message: `could not give back ${tasks.length} attempt(s), ` +
          `left to the rescuer: ${errorMessage(refused)}`,
      });
    }
  }

  // Runs `write`, a short bookkeeping statement, retrying while the connection
  // is down, for about a lease: past that the lane stops holding its tasks
  // (their leases are no longer renewed), so the rescuer records them instead.
  // Returns the error if the database refused it otherwise.
  async #persist(what: string, write: () => Promise<void>): Promise<unknown> {
    const deadline = performance.now() + RECORD_LOST_FOR_MS;
    for (let failures = 1;; failures++) {
      try {
        await write();
        return undefined;
      } catch (error) {
        if (!isConnectionError(error)) return error;
        this.reopen();
        if (this.ctx.giveUp.aborted || performance.now() > deadline) {
          this.ctx.log({
            level: "warn",
            message: `could not ${what}, left to the rescuer: ${errorMessage(error)}`,
          });
          return undefined;
        }
        await sleep(reconnectDelay(failures), this.ctx.giveUp);
      }
    }
  }
}
