/**
 * The worker: claims runnable tasks in batches and hands them to execution
 * lanes, wakes on NOTIFY (polling as a fallback), renews the leases of what it
 * holds, rescues tasks of vanished workers, reconnects after losing the
 * database, takes no task (but one now and then, to try) while the database
 * cannot record outcomes, and on a stop request lets running tasks finish
 * within the shutdown timeout. Every change of a task's status is a SQL function call.
 *
 * ```ts
 * const controller = new AbortController();
 * await runWorker(Deno.env.get("DATABASE_URL")!, {
 *   concurrency: 4, drain: true, signal: controller.signal,
 *   onOutcome: (event) => console.log(event.taskId, event.outcome),
 * });
 * ```
 * @module
 */
import {
  cancelRequested,
  type ClaimedTask,
  claimTasks,
  renewLeases,
  rescueLostTasks,
  tasksPending,
  waitingFor,
} from "./claim.ts";
import {
  connectionTarget,
  isConnectionError,
  openPool,
  reconnectDelay,
  withinStall,
} from "../db/pool.ts";
import type { Sql } from "../db/connect.ts";
import { checkSchemaName, DEFAULT_SCHEMA, requireInstalled } from "../db/schema.ts";
import { errorMessage, RetaskError } from "../errors.ts";
import { FAST_MIN_TIMEOUT_MS, type FastResult, ProgramTimes } from "./fast.ts";
import { announceIdle } from "./idle.ts";
import { Lane } from "./lane.ts";
import { Listener } from "./listen.ts";
import type { TaskOutcome, WorkerLog } from "./outcome.ts";
import { TakingPause } from "./pause.ts";
import { allowedServers, RemotePools } from "./remote.ts";
import { Scheduler } from "./schedule.ts";
import { Retention } from "./retention.ts";
import { formatAge } from "../queue/operate.ts";
import { sleep, Wake } from "./wake.ts";
import { resolveSettings, type WorkerSettings } from "./settings.ts";

/**
 * While lanes run fast statements (the worker does not sleep, so no enqueue
 * wakes it), how often it looks for careful work: remote tasks, slow programs.
 */
const CAREFUL_LOOK_MS = 50;

/** Past the shutdown timeout, how long cancelled tasks get to be recorded as lost. */
const ABORT_GRACE_MS = 5_000;

/** Options for {@link runWorker}: settings (defaults in `WORKER_DEFAULTS`) and hooks. */
export interface RunWorkerOptions extends Partial<WorkerSettings> {
  /** Stops the worker: no more tasks are taken, running ones get the shutdown timeout. */
  signal?: AbortSignal;
  /** Called once per ended attempt, as the database recorded it. */
  onOutcome?: (event: TaskOutcome) => void;
  /** Called with what the worker has to say: start, stop, lost and regained connections. */
  onLog?: (entry: WorkerLog) => void;
  /** The name tasks record as their worker (default `<hostname>:<pid>:<4 hex>`). */
  workerId?: string;
  /** The schema retask was installed into (default `retask`). */
  schema?: string;
}

/** What a worker did, returned when it stops. */
export interface WorkerSummary {
  /** The worker's name. */
  worker: string;
  /** Attempts per outcome. */
  finished: number;
  /** Failed attempts followed by a retry. */
  retried: number;
  /** Failed last attempts. */
  errored: number;
  /** Attempts that ended lost. */
  lost: number;
  /** Attempts cancelled on request (`retask cancel`). */
  cancelled: number;
  /**
   * `drained`: nothing was left to do (with `drain`); `once`: nothing was runnable (with
   * `once`); `signal`: it was asked to stop.
   */
  stopped: "drained" | "once" | "signal";
}

/** A fresh worker name: `<hostname>:<pid>:<4 random hex digits>`. */
export function makeWorkerId(): string {
  let host = "localhost";
  try {
    host = Deno.hostname();
  } catch {
    // without --allow-sys the pid and the random part still tell workers apart
  }
  const hex = crypto.getRandomValues(new Uint8Array(2));
  return `${host}:${Deno.pid}:${[...hex].map((b) => b.toString(16).padStart(2, "0")).join("")}`;
}

/**
 * Runs a worker against `database` (a URL, or a postgres.js client whose
 * server and login to use; the worker opens connections of its own) until
 * `signal` aborts, or with `drain` until nothing is scheduled or running, or
 * with `once` until nothing is runnable now.
 */
export async function runWorker(
  database: string | Sql,
  options: RunWorkerOptions = {},
): Promise<WorkerSummary> {
  const {
    signal = new AbortController().signal,
    onOutcome,
    onLog,
    workerId,
    schema = DEFAULT_SCHEMA,
    ...partial
  } = options;
  checkSchemaName(schema);
  const settings = resolveSettings(partial);
  const worker = workerId ?? makeWorkerId();
  const applicationName = `retask worker ${worker}`;
  const target = await connectionTarget(database);
  const allowed = await allowedServers(target, settings.remoteHosts, settings.remoteDatabase);
  const summary: WorkerSummary = {
    worker,
    finished: 0,
    retried: 0,
    errored: 0,
    lost: 0,
    cancelled: 0,
    stopped: "signal",
  };
  const log = (entry: WorkerLog) => onLog?.(entry);
  // while outcomes cannot be recorded, the worker takes only a task now and then
  const pause = new TakingPause(log);
  // every worker fires due schedules, but not one that drains (it would never
  // run out of tasks) or runs once
  const scheduler = settings.drain || settings.once ? null : new Scheduler(schema, log);
  // with --retention, tasks that ended long ago are deleted now and then
  const retention = settings.retentionMs === undefined
    ? null
    : new Retention(target, { applicationName, schema, retentionMs: settings.retentionMs, log });
  const report = (events: TaskOutcome[]) => {
    if (events.length > 0) pause.recorded();
    for (const event of events) {
      if (event.outcome === "finished") summary.finished++;
      else if (event.outcome === "retry") summary.retried++;
      else if (event.outcome === "error") summary.errored++;
      else if (event.outcome === "cancelled") summary.cancelled++;
      else summary.lost++;
      try {
        onOutcome?.(event);
      } catch (error) {
        log({ level: "warn", message: `onOutcome threw: ${errorMessage(error)}` });
      }
    }
  };

  const wake = new Wake();
  const giveUp = new AbortController();
  // What may be runnable. Fast: tasks the fast path runs (a fast statement that
  // took none says there are none); careful: remote tasks, and those of programs not
  // found quick or with a timeout of their own (a careful take that came
  // up short says there are none). A notification, a poll, a change in which
  // programs are quick and every batch that recorded attempts say there may be.
  let fastDue = true;
  let lastCarefulTake = 0;
  // whether every idle lane runs a fast statement, or one (nothing was left last time)
  let fastWide = true;
  let carefulDue = true;
  let nextPoll = 0;
  const times = new ProgramTimes();
  let quickVersion = times.version;
  // takes are committed asynchronously: the completion's synchronous commit comes
  // later in the WAL, so a completed attempt's take is always durable
  const openHome = () =>
    openPool(target, { max: 1, applicationName, settings: { synchronous_commit: "off" } });
  let home = openHome();
  const listener = new Listener(target, applicationName, {
    onWake: () => {
      nextPoll = 0;
      wake.ring();
    },
    // the lane running that task (if any here) cancels its program
    onCancel: (taskId) => lanes.forEach((lane) => lane.cancelTask(taskId)),
    schema,
  });
  const remote = new RemotePools({
    schema,
    allowed,
    taskTimeoutMs: settings.taskTimeoutMs,
    maxResultBytes: settings.maxResultBytes,
    poolSize: Math.min(settings.concurrency, 4),
    applicationName,
  });
  const context = {
    schema,
    worker,
    batchSize: settings.batchSize,
    leaseMs: settings.leaseMs,
    maxResultBytes: settings.maxResultBytes,
    taskTimeoutMs: settings.taskTimeoutMs,
    remote,
    times,
    report,
    log,
    cannotRecord: (error: unknown) => pause.refused(error),
    stopping: signal,
    giveUp: giveUp.signal,
  };
  // a backend running a program notices within a second that its worker died
  // (kill -9) and rolls back, releasing the task's row for the rescuer. A
  // role's or database's own timeouts must not cut the lane's bookkeeping, nor
  // the transaction that holds remote tasks while they run; the task timeout
  // is set around each run_tasks alone.
  const openLane = (onNotice: (message: string) => void) =>
    openPool(target, {
      max: 1,
      applicationName,
      onNotice,
      settings: {
        client_connection_check_interval: "1000",
        statement_timeout: "0",
        idle_in_transaction_session_timeout: "0",
      },
    });
  const lanes = Array.from({ length: settings.concurrency }, () => new Lane(openLane, context));

  let started = false;
  try {
    await withinStall(requireInstalled(home, schema));
    // allSettled: every attempt must have ended before the pools are closed
    const opened = await withinStall(Promise.allSettled(lanes.map((lane) => lane.connect())));
    const refused = opened.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (refused) {
      const error = refused.reason;
      throw new RetaskError(
        "database",
        `could not open ${settings.concurrency} lane connection(s): ${errorMessage(error)}; ` +
          "lower --concurrency or raise the server's max_connections",
        { cause: error },
      );
    }
    log({ level: "info", message: `worker ${worker} started (${describe(settings)})` });
    started = true;
    retention?.start();
    summary.stopped = await loop();
  } finally {
    await stopLanes();
    await Promise.all([
      home.end({ timeout: 1 }),
      listener.close(),
      remote.close(),
      retention?.close(),
    ]);
    await Promise.all(lanes.map((lane) => lane.close()));
    // a worker that never started has only its error to say
    if (started) log({ level: "info", message: `worker ${worker} stopped (${summary.stopped})` });
  }
  return summary;

  // The loop: claim for free lanes, then sleep until a notification, a free lane or a timer.
  // Whatever fails here (a lost connection, a statement refused during an
  // install, a full disk) is waited out with capped backoff: no task is taken
  // meanwhile, and the worker says so once, and again when it works again.
  async function loop(): Promise<WorkerSummary["stopped"]> {
    let failures = 0;
    let trouble = "";
    // with drain: what it said it waits for, and whether it asked during this wait
    let waitingSaid = "";
    let waitingAsked = false;
    let nextRenewal = performance.now() + settings.leaseMs / 3;
    let nextRescue = 0;
    let nextTick = scheduler ? 0 : Infinity;
    while (!signal.aborted) {
      try {
        listener.ensure();
        if (performance.now() >= nextRenewal) {
          const held = lanes.flatMap((lane) => lane.held);
          await withinStall(renewLeases(home, schema, held, settings.leaseMs));
          // a cancel notification sent while not listening is not lost for long
          for (const id of await withinStall(cancelRequested(home, schema, held))) {
            lanes.forEach((lane) => lane.cancelTask(id));
          }
          nextRenewal = performance.now() + settings.leaseMs / 3;
        }
        if (performance.now() >= nextRescue) {
          const held = lanes.flatMap((lane) => lane.held);
          await withinStall(rescueLostTasks(home, schema, held));
          nextRescue = performance.now() + settings.rescueIntervalMs;
        }
        if (scheduler && performance.now() >= nextTick) {
          const { untilNextMs } = await withinStall(scheduler.tick(home));
          // woken when the next slot is due; a schedule added meanwhile is seen within a poll
          nextTick = performance.now() + Math.min(untilNextMs, settings.pollIntervalMs);
        }
        if (performance.now() >= nextPoll) {
          fastDue = true;
          carefulDue = true;
          nextPoll = performance.now() + settings.pollIntervalMs;
        }
        // enqueues wake only a sleeping worker: while the fast path keeps
        // this one busy, it looks for careful work now and then itself
        const fastBusy = lanes.some((lane) => !lane.idle && !lane.careful);
        if (fastBusy && performance.now() - lastCarefulTake >= CAREFUL_LOOK_MS) carefulDue = true;
        if (times.version !== quickVersion) {
          quickVersion = times.version;
          carefulDue = true;
          fastDue = true;
        }
        let started = 0;
        // with one lane, a due careful take goes first (the fast path would
        // keep the lane); with more, the fast path starts at once on all idle
        // lanes but one kept for it
        if (carefulDue && lanes.length === 1) started += await takeCareful();
        if (fastDue && quick().length > 0) {
          const idle = lanes.filter((lane) => lane.idle);
          const use = idle.length - (carefulDue && carefulRoom(true).length > 0 ? 1 : 0);
          // after a quiet spell one lane, until a statement finds more than it takes
          for (const lane of idle.slice(0, fastWide ? use : Math.min(use, 1))) {
            const max = pause.allow(lane.capacity);
            if (max === 0) break;
            lane.startFast(max, quick(), fastDone);
            started++;
          }
        } else {
          fastDue = false;
        }
        if (carefulDue && lanes.length > 1) {
          started += await takeCareful();
          // the lane kept for it found nothing: it runs fast statements
          const spare = lanes.some((lane) => lane.idle);
          if (!carefulDue && fastDue && spare && quick().length > 0 && !pause.paused) continue;
        }
        if (failures > 0) {
          log({ level: "info", message: trouble });
          failures = 0;
        }
        if (started > 0) waitingAsked = false;
        const quiet = !fastDue && !carefulDue && lanes.every((lane) => lane.idle);
        // every lane is idle, and since their last batch recorded its attempts
        // (retries included), a fast statement and a careful take found nothing
        if (settings.once && quiet) return "once";
        if (settings.drain && quiet) {
          if (!(await withinStall(tasksPending(home, schema)))) return "drained";
          if (!waitingAsked) {
            waitingAsked = true;
            const waiting = await withinStall(waitingFor(home, schema));
            if (waiting !== waitingSaid) log({ level: "info", message: waiting });
            waitingSaid = waiting;
          }
        }
        // nothing found to run: from this commit on, a task made runnable
        // notifies; one made runnable before it is seen now
        if (!fastDue && !carefulDue && listener.listening) {
          if (await withinStall(announceIdle(home, schema))) {
            fastDue = carefulDue = true;
            continue;
          }
        }
        const now = performance.now();
        await wake.sleep(
          Math.max(
            0,
            Math.min(
              settings.pollIntervalMs,
              nextRenewal - now,
              nextRescue - now,
              pause.untilNextTry(),
              nextTick - now,
              nextPoll - now,
            ),
          ),
          signal,
        );
      } catch (error) {
        const connectionLost = isConnectionError(error);
        if (connectionLost) {
          // start over with a new pool rather than the driver's own reconnection:
          // postgres.js 3.4.9 can leave a query sent during a server restart
          // pending for ever (hence also withinStall)
          const broken = home;
          home = openHome();
          broken.end({ timeout: 0 }).catch(() => {});
        }
        failures++;
        if (failures === 1) {
          log({
            level: "warn",
            message: connectionLost
              ? `lost the database connection (${errorMessage(error)}); reconnecting`
              : `the database refused the worker's bookkeeping (${errorMessage(error)}); ` +
                "retrying, taking no task meanwhile",
          });
          trouble = connectionLost
            ? "database connection regained"
            : "the worker's bookkeeping works again";
        }
        // once back, first renew (re-pointing held tasks at the new backend), then rescue
        nextRenewal = 0;
        nextRescue = 0;
        await sleep(reconnectDelay(failures), signal);
      }
    }
    return "signal";
  }

  // The programs the fast path runs: none under a very short task timeout.
  function quick(): readonly number[] {
    const timeout = settings.taskTimeoutMs;
    return timeout > 0 && timeout < FAST_MIN_TIMEOUT_MS ? [] : times.quick;
  }

  // Takes careful tasks for the lanes that may have them; returns how many.
  async function takeCareful(): Promise<number> {
    lastCarefulTake = performance.now();
    const room = carefulRoom();
    const wanted = pause.allow(room.reduce((n, lane) => n + lane.carefulCapacity, 0));
    if (wanted === 0) return 0;
    const tasks = await withinStall(
      claimTasks(home, schema, wanted, worker, settings.leaseMs, { quick: quick() }),
    );
    carefulDue = tasks.length === wanted;
    distribute(tasks, room);
    return tasks.length;
  }

  // Idle lanes a careful batch may have: while the fast path has work, one
  // lane of several is kept for it, so slow tasks never hold up fast ones.
  // (`fast`: as if the fast path had work)
  function carefulRoom(fast = fastDue): Lane[] {
    const idle = lanes.filter((lane) => lane.idle);
    if (!fast || lanes.length === 1) return idle;
    const careful = lanes.filter((lane) => !lane.idle && lane.careful).length;
    return idle.slice(0, Math.max(0, lanes.length - 1 - careful));
  }

  // A fast statement that took nothing says the fast path has no work now;
  // one that left work, or retried tasks, that it has.
  function fastDone(result: FastResult): void {
    fastWide = result.more;
    if (result.more) fastDue = true;
    else if (result.taken === 0) fastDue = false;
    wake.ring();
  }

  // Round-robin within each lane's capacity: a short queue runs one task per
  // lane, in parallel; a long one fills every lane's batch.
  function distribute(tasks: ClaimedTask[], idle: Lane[]): void {
    const shares: ClaimedTask[][] = idle.map(() => []);
    let lane = 0;
    for (const task of tasks) {
      while (shares[lane].length >= idle[lane].carefulCapacity) lane = (lane + 1) % idle.length;
      shares[lane].push(task);
      lane = (lane + 1) % idle.length;
    }
    shares.forEach((share, i) => {
      if (share.length > 0) {
        idle[i].start(share, () => {
          // its retries, and what else is careful, may be runnable
          carefulDue = true;
          wake.ring();
        });
      }
    });
  }

  // Running batches get the shutdown timeout; past it they are cancelled and
  // recorded as lost; past a further grace the worker gives up on them.
  async function stopLanes(): Promise<void> {
    const busy = lanes.filter((lane) => !lane.idle).length;
    if (busy === 0) return;
    const all = Promise.all(lanes.map((lane) => lane.whenIdle()));
    log({
      level: "info",
      message:
        `stopping: waiting up to ${settings.shutdownTimeoutMs} ms for ${busy} running batch(es)`,
    });
    if (await within(all, settings.shutdownTimeoutMs)) return;
    const held = lanes.reduce((n, lane) => n + lane.held.length, 0);
    log({
      level: "warn",
      message: `shutdown timeout passed: cancelling ${held} task(s); their attempts end as lost`,
    });
    for (const lane of lanes) lane.abort();
    if (await within(all, ABORT_GRACE_MS)) return;
    giveUp.abort();
    await within(all, 1_000);
  }
}

// True if `promise` settles within `ms`.
async function within(promise: Promise<unknown>, ms: number): Promise<boolean> {
  const timer = new AbortController();
  let done = false;
  await Promise.race([
    promise.then(() => (done = true), () => (done = true)),
    sleep(ms, timer.signal),
  ]);
  timer.abort();
  return done;
}

function describe(s: WorkerSettings): string {
  return `concurrency ${s.concurrency}, batch size ${s.batchSize}, lease ${s.leaseMs} ms, ` +
    `task timeout ${s.taskTimeoutMs === 0 ? "none" : `${s.taskTimeoutMs} ms`}` +
    (s.drain ? ", draining" : "") + (s.once ? ", once" : "") +
    (s.retentionMs !== undefined ? `, retention ${formatAge(s.retentionMs)}` : "");
}
