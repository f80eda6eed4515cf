/**
 * The systems bench/compare.ts puts side by side, each at its best documented
 * settings, and how one run of each is measured: a drain of a pre-filled
 * queue (throughput) and enqueue-to-start times with an idle worker (latency),
 * each phase on a fresh database of its own; for retask and the seed also the
 * `lucky` workload, a drain of tasks that fail 70% of their attempts.
 * @module
 */
import { WORKER_DEFAULTS } from "../../lib/worker/settings.ts";
import { verify, withBenchDatabase } from "../common.ts";
import { drain, fillQueue, pickupLatency, prepareRetask } from "../retask.ts";
import { type NodeEnv, type NodePhaseResult, runNodePhase } from "./node.ts";
import { seedLatency, seedLucky, seedThroughput } from "./seed.ts";

/** What one run measures, and how big it is. */
export interface PhaseOptions {
  server: string;
  jobs: number;
  latencyJobs: number;
  intervalMs: number;
  timeoutMs: number;
  seedWorkers: number;
  seedSeconds: number;
  /** Extra `retask work` flags. */
  retaskArgs: string[];
  node?: NodeEnv;
}

/** One run of one system. */
export interface RunResult {
  /** Jobs per second draining the queue (the seed: over its fixed window). */
  throughput: number;
  /** Enqueue-to-start, per job, in ms. */
  latenciesMs: number[];
}

/**
 * One run of the `lucky` workload: tasks whose program succeeds 30% of the
 * time, at most 3 attempts each, retried at once.
 */
export interface LuckyResult {
  /** Tasks that ended (finished, or error after their last attempt) per second. */
  jobsPerSec: number;
  /** Attempts per second, counted in the system's own history. */
  attemptsPerSec: number;
  /** Tasks that ended, attempts made, and over how many seconds. */
  jobs: number;
  attempts: number;
  seconds: number;
}

/** A system as the comparison runs it. */
export interface System {
  name: string;
  /** The settings, for the report. */
  settings: string;
  /** Why these settings. */
  why: string;
  /** Needs the Node.js environment. */
  node: boolean;
  /** The no-op workload: a drain, then pickup latency. */
  run(options: PhaseOptions): Promise<RunResult>;
  /** The lucky workload; absent where it is not measured. */
  lucky?: (options: PhaseOptions) => Promise<LuckyResult>;
  /** How the lucky workload runs here, for the report. */
  luckySettings?: string;
}

function checkNode(name: string, r: NodePhaseResult, expected: number): void {
  verify(r.calls === expected, `${name}: ${r.calls} handler calls for ${expected} jobs`);
  verify(r.distinct === expected, `${name}: ${r.distinct} distinct jobs ran of ${expected}`);
  verify(r.remaining === 0, `${name}: ${r.remaining} jobs not completed in the database`);
  if (r.completed !== undefined) {
    verify(r.completed === expected, `${name}: ${r.completed} of ${expected} jobs completed`);
  }
}

function nodeSystem(
  name: string,
  script: string,
  variant: Record<string, unknown>,
  settings: string,
  why: string,
): System {
  return {
    name,
    settings,
    why,
    node: true,
    async run(o) {
      const env = o.node!;
      const phase = (mode: string) =>
        withBenchDatabase(o.server, `${name}_${mode}`, (db) =>
          runNodePhase(env, script, {
            mode,
            url: db.url,
            jobs: o.jobs,
            latencyJobs: o.latencyJobs,
            intervalMs: o.intervalMs,
            variant,
          }, o.timeoutMs));
      const drained = await phase("throughput");
      checkNode(name, drained, o.jobs);
      const picked = await phase("latency");
      checkNode(name, picked, o.latencyJobs);
      return { throughput: o.jobs / drained.seconds!, latenciesMs: picked.latenciesMs! };
    },
  };
}

/** retask: `retask work --drain` on the pre-filled queue, an idle `retask work` for latency. */
export const retask: System = {
  name: "retask",
  settings: `retask work --quiet (--drain for throughput); unless --retask-args says otherwise, ` +
    `its defaults: concurrency ${WORKER_DEFAULTS.concurrency}, batch size ${WORKER_DEFAULTS.batchSize}`,
  why: "the CLI as users run it; --quiet so per-task log lines are not what is measured",
  node: false,
  async run(o) {
    const throughput = await withBenchDatabase(o.server, "retask_throughput", async (db) => {
      const programs = await prepareRetask(db);
      await fillQueue(db.sql, programs.noop, o.jobs);
      const result = await drain(db, o.retaskArgs, o.timeoutMs);
      verify(result.tasks === o.jobs, `retask: ${result.tasks} tasks for ${o.jobs} jobs`);
      verify(
        result.attempts === o.jobs,
        `retask: ${result.attempts} attempts for ${o.jobs} no-ops`,
      );
      return result.tasksPerSec;
    });
    const latenciesMs = await withBenchDatabase(o.server, "retask_latency", async (db) => {
      const programs = await prepareRetask(db);
      return (await pickupLatency(db, programs, {
        jobs: o.latencyJobs,
        intervalMs: o.intervalMs,
        args: o.retaskArgs,
        timeoutMs: o.timeoutMs,
      })).latenciesMs;
    });
    return { throughput, latenciesMs };
  },
  luckySettings: "retask.lucky, 3 attempts, retry delay 0; retask work --drain; attempts from " +
    "retask.task_attempts",
  lucky(o) {
    return withBenchDatabase(o.server, "retask_lucky", async (db) => {
      const programs = await prepareRetask(db);
      await fillQueue(db.sql, programs.lucky, o.jobs);
      // drain() checks that every task ended and that the history holds every attempt
      const result = await drain(db, o.retaskArgs, o.timeoutMs);
      verify(result.tasks === o.jobs, `retask lucky: ${result.tasks} tasks for ${o.jobs} jobs`);
      // 0.3^20: a queue of 20 or more where no task failed is a broken program
      verify(o.jobs < 20 || result.attempts > result.tasks, "retask lucky: no task was retried");
      return {
        jobsPerSec: result.tasksPerSec,
        attemptsPerSec: result.attemptsPerSec,
        jobs: result.tasks,
        attempts: result.attempts,
        seconds: result.seconds,
      };
    });
  },
};

/** graphile-worker with its defaults but the documented concurrency (24, pool 25). */
export const graphileWorker = nodeSystem(
  "graphile-worker",
  "graphile_worker.mjs",
  { concurrency: 24, maxPoolSize: 25 },
  "concurrentJobs 24, maxPoolSize 25, no batching",
  "the concurrency and pool of the documented performance run, batching off (the default)",
);

/** graphile-worker with its local queue at the size the docs recommend (concurrency + 1). */
export const graphileLocalQueue = nodeSystem(
  "graphile-worker+lq",
  "graphile_worker.mjs",
  { concurrency: 24, maxPoolSize: 25, localQueueSize: 25 },
  "concurrentJobs 24, maxPoolSize 25, localQueue.size 25",
  "localQueue.size = concurrency + 1, the starting point the 0.18 docs recommend",
);

/** graphile-worker exactly as in its documented performance run. */
export const graphileBatched = nodeSystem(
  "graphile-worker+batch",
  "graphile_worker.mjs",
  {
    concurrency: 24,
    maxPoolSize: 25,
    localQueueSize: 500,
    completeJobBatchDelay: 0,
    failJobBatchDelay: 0,
  },
  "concurrentJobs 24, maxPoolSize 25, localQueue.size 500, complete/failJobBatchDelay 0",
  "the configuration of the docs' performance page (worker.graphile.org/docs/performance)",
);

/** pg-boss with batch fetches, several fetch loops, bursts and LISTEN/NOTIFY. */
export const pgBoss = nodeSystem(
  "pg-boss",
  "pg_boss.mjs",
  {
    batchSize: 50,
    localConcurrency: 4,
    burstWhenBatchFull: true,
    notify: true,
    pollingIntervalSeconds: 0.5,
  },
  "work() batchSize 50, localConcurrency 4, burstWhenBatchFull, useListenNotify + queue notify, " +
    "pollingIntervalSeconds 0.5",
  "batch fetch (the documented way to throughput), fetch loops in parallel, NOTIFY wake-ups " +
    "and the shortest allowed poll (the documented ways to low latency)",
);

function seedOptions(o: PhaseOptions) {
  return {
    workers: o.seedWorkers,
    windowSeconds: o.seedSeconds,
    // its capacity is one task a second per worker: stay well below it
    latencyJobs: Math.min(o.latencyJobs, 20),
    intervalMs: Math.max(o.intervalMs, 2000 / o.seedWorkers),
  };
}

/** The seed's `process_tasks()`: one task per second per worker, by construction. */
export const seed: System = {
  name: "seed",
  settings: "CALL process_tasks() in N backends, measured over a fixed window",
  why: "the assignment's loop as given (pg_sleep(1) per task); draining 20,000 would take hours",
  node: false,
  async run(o) {
    const options = seedOptions(o);
    const throughput = await withBenchDatabase(
      o.server,
      "seed_throughput",
      (db) => seedThroughput(db, options),
    );
    const latenciesMs = await withBenchDatabase(
      o.server,
      "seed_latency",
      (db) => seedLatency(db, options),
    );
    return { throughput, latenciesMs };
  },
  luckySettings: "bench_lucky (30% success, as retask.lucky) in N backends over the same window; " +
    "the seed never retries, so each task is one attempt",
  lucky(o) {
    return withBenchDatabase(
      o.server,
      "seed_lucky",
      (db) => seedLucky(db, { ...seedOptions(o), latencyJobs: 0 }),
    );
  },
};

/** Every system, in the order they run and print. */
export const SYSTEMS: readonly System[] = [
  retask,
  graphileWorker,
  graphileLocalQueue,
  graphileBatched,
  pgBoss,
  seed,
];
