/**
 * graphile-worker 0.18 on one phase of the comparison (see harness.mjs). Run
 * by bench/compare.ts with Node.js 22 from the directory graphile-worker was
 * installed into.
 *
 * variant: `{ concurrency, maxPoolSize, localQueueSize, completeJobBatchDelay,
 * failJobBatchDelay }`; a size or delay of -1 leaves that feature off (the
 * library's default).
 * @module
 */
import {
  config,
  emit,
  importPackage,
  prefill,
  runMain,
  Tally,
  timeDrain,
  timePickup,
} from "./harness.mjs";

const { Logger, makeWorkerUtils, run } = await importPackage("graphile-worker");

// The default logger prints a line per completed job; a no-op benchmark would
// mostly measure console.log. Warnings and errors still reach stderr.
const quietLogger = new Logger(() => (level, message) => {
  if (level === "error" || level === "warning") console.error(`graphile-worker: ${message}`);
});

const variant = config.variant ?? {};

/** The worker's preset: the documented performance settings of the variant. */
function preset() {
  const worker = {
    connectionString: config.url,
    concurrentJobs: variant.concurrency ?? 24,
    maxPoolSize: variant.maxPoolSize ?? (variant.concurrency ?? 24) + 1,
    pollInterval: 2000,
    completeJobBatchDelay: variant.completeJobBatchDelay ?? -1,
    failJobBatchDelay: variant.failJobBatchDelay ?? -1,
  };
  if ((variant.localQueueSize ?? -1) > 0) worker.localQueue = { size: variant.localQueueSize };
  return { worker };
}

async function main() {
  const utils = await makeWorkerUtils({ connectionString: config.url, logger: quietLogger });
  await utils.migrate();
  const tally = new Tally();
  const start = async () => {
    const runner = await run({
      preset: preset(),
      logger: quietLogger,
      noHandleSignals: true,
      taskList: {
        noop: (payload) => {
          tally.started(payload);
        },
      },
    });
    return () => runner.stop();
  };
  // completed jobs are deleted; failed ones stay with their error
  const remaining = () =>
    utils.withPgClient(async (client) => {
      const { rows } = await client.query(
        "SELECT count(*)::int AS n FROM graphile_worker._private_jobs",
      );
      return rows[0].n;
    });

  try {
    if (config.mode === "throughput") {
      await prefill(
        config.jobs,
        (payloads) => utils.addJobs(payloads.map((payload) => ({ identifier: "noop", payload }))),
      );
      await utils.withPgClient((client) => client.query("ANALYZE"));
      emit(await timeDrain({ tally, start, remaining }));
    } else {
      const enqueue = (payload) => utils.addJob("noop", payload);
      emit(await timePickup({ tally, start, enqueue, remaining }));
    }
  } finally {
    await utils.release();
  }
}

runMain(main);
