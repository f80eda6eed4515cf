/**
 * pg-boss 12 on one phase of the comparison (see harness.mjs). Run by
 * bench/compare.ts with Node.js 22 from the directory pg-boss was installed into.
 *
 * variant: `{ batchSize, localConcurrency, burstWhenBatchFull, notify,
 * pollingIntervalSeconds }`.
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

const { PgBoss } = await importPackage("pg-boss");

const QUEUE = "noop";
const variant = config.variant ?? {};

async function main() {
  const boss = new PgBoss({
    connectionString: config.url,
    max: (variant.localConcurrency ?? 1) + 4,
    // LISTEN/NOTIFY wake-ups (12.x): a worker starts a new job without waiting
    // for its next poll, the documented way to low latency
    useListenNotify: variant.notify ?? true,
    // cron and maintenance are not part of the workload
    schedule: false,
  });
  boss.on("error", (error) => console.error(`pg-boss: ${error.message ?? error}`));
  await boss.start();
  await boss.createQueue(QUEUE, { notify: variant.notify ?? true });

  const tally = new Tally();
  const start = async () => {
    await boss.work(QUEUE, {
      batchSize: variant.batchSize ?? 50,
      localConcurrency: variant.localConcurrency ?? 1,
      burstWhenBatchFull: variant.burstWhenBatchFull ?? true,
      pollingIntervalSeconds: variant.pollingIntervalSeconds ?? 0.5,
    }, (jobs) => {
      for (const job of jobs) tally.started(job.data);
    });
    return () => boss.offWork(QUEUE);
  };
  // completed jobs stay in the table (deleted after 7 days by default)
  const remaining = async () => {
    const { rows } = await boss.getDb().executeSql(
      "SELECT count(*)::int AS n FROM pgboss.job WHERE name = $1 AND state <> 'completed'",
      [QUEUE],
    );
    return rows[0].n;
  };

  try {
    if (config.mode === "throughput") {
      await prefill(
        config.jobs,
        (payloads) => boss.insert(QUEUE, payloads.map((data) => ({ data }))),
      );
      await boss.getDb().executeSql("ANALYZE");
      const result = await timeDrain({ tally, start, remaining });
      const { rows } = await boss.getDb().executeSql(
        "SELECT count(*)::int AS n FROM pgboss.job WHERE name = $1 AND state = 'completed'",
        [QUEUE],
      );
      emit({ ...result, completed: rows[0].n });
    } else {
      const enqueue = (data) => boss.send(QUEUE, data);
      emit(await timePickup({ tally, start, enqueue, remaining }));
    }
  } finally {
    await boss.stop({ graceful: false });
  }
}

runMain(main);
