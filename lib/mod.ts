/**
 * retask's public API for Deno applications: connect, install the schema,
 * register programs, enqueue tasks (also inside your own transaction).
 *
 * ```ts
 * import { connect, enqueue, install, registerProgram } from "./lib/mod.ts";
 * const db = await connect(); // DATABASE_URL, else the embedded server
 * await install(db.sql);
 * await registerProgram(db.sql, "lucky", "retask_lucky");
 * await db.sql.begin((tx) => enqueue(tx, { program: "lucky", params: [{ probability: 0.3 }] }));
 * await db.close();
 * ```
 * @module
 */
export {
  client,
  connect,
  type ConnectOptions,
  type Database,
  type Queryable,
  type Sql,
  type TransactionSql,
} from "./db/connect.ts";
export { type ErrorCode, RetaskError } from "./errors.ts";
export { install, type InstallResult, SCHEMA_VERSION } from "./db/schema.ts";
export {
  enqueue,
  type EnqueueOptions,
  failTask,
  finishTask,
  listPrograms,
  type Program,
  type Registered,
  registerProgram,
  rescueLostTasks,
  type RetryPolicy,
  takeTasks,
  type Task,
} from "./queue/programs.ts";
export {
  embeddedDataDir,
  type EmbeddedServer,
  startEmbedded,
  type StartEmbeddedOptions,
  stopEmbedded,
} from "./db/embedded.ts";
export {
  makeWorkerId,
  runWorker,
  type RunWorkerOptions,
  type WorkerSummary,
} from "./worker/loop.ts";
export { WORKER_DEFAULTS, type WorkerSettings } from "./worker/settings.ts";
export type { AttemptOutcome, StatusAfter, TaskOutcome, WorkerLog } from "./worker/outcome.ts";
