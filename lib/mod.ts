/**
 * retask's public API for Deno applications: connect, install the schema,
 * register programs, enqueue tasks (also inside your own transaction), run a
 * worker in-process, and read tasks back.
 *
 * ```ts
 * import { connect, enqueue, install, registerProgram } from "./lib/mod.ts";
 * const db = await connect(); // DATABASE_URL
 * await install(db.sql);
 * await registerProgram(db.sql, "lucky", "retask.lucky");
 * await db.sql.begin((tx) => enqueue(tx, { program: "lucky", params: [{ probability: 0.3 }] }));
 * await db.close();
 * ```
 *
 * The embedded server (`lib/db/embedded.ts`) and the worker's internals are
 * not part of this surface.
 * @module
 */
export {
  connect,
  type ConnectOptions,
  type Database,
  type Queryable,
  type Sql,
  type TransactionSql,
} from "./db/connect.ts";
export { type ErrorCode, RetaskError } from "./errors.ts";
export {
  DEFAULT_SCHEMA,
  install,
  type InstallOptions,
  type InstallResult,
  SCHEMA_VERSION,
} from "./db/schema.ts";
export {
  type InSchema,
  listPrograms,
  pauseProgram,
  type PauseResult,
  type Program,
  type ProgramSettings,
  type Registered,
  registerProgram,
  resumeProgram,
  type RetryPolicy,
  setProgramPaused,
} from "./queue/programs.ts";
export { enqueue, type Enqueued, enqueueKeyed, type EnqueueOptions } from "./queue/enqueue.ts";
export {
  type CancelResult,
  cancelTasks,
  type DeleteResult,
  deleteTasks,
  type EndedStatus,
  type PruneOptions,
  pruneTasks,
  type RetryOptions,
  type RetryResult,
  retryTasks,
  type SkippedTask,
  type TaskSelection,
} from "./queue/operate.ts";
export {
  addSchedule,
  listSchedules,
  removeSchedule,
  type Schedule,
  type ScheduleOptions,
} from "./queue/schedules.ts";
export {
  type Attempt,
  getTask,
  type GetTaskOptions,
  listTasks,
  type StatusCounts,
  type Task,
  type TaskDetail,
  type TaskFilter,
  type TaskList,
  type TaskStatus,
  type TaskSummary,
} from "./queue/read.ts";
export {
  makeWorkerId,
  runWorker,
  type RunWorkerOptions,
  type WorkerSummary,
} from "./worker/loop.ts";
export { WORKER_DEFAULTS, type WorkerSettings } from "./worker/settings.ts";
export type { AttemptEnd, Outcome, StatusAfter, TaskOutcome, WorkerLog } from "./worker/outcome.ts";
