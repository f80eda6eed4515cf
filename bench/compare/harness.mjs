/**
 * Shared by the Node.js comparison scripts (graphile_worker.mjs, pg_boss.mjs).
 * bench/compare.ts copies these files next to the node_modules it installed,
 * runs one script per phase with its settings in BENCH_CONFIG, and reads the
 * single JSON line the script prints last. Measuring happens in here so every
 * system is timed the same way.
 * @module
 */

/**
 * The phase's settings, as bench/compare.ts sends them:
 * `{ mode: "throughput" | "latency", url, jobs, latencyJobs, intervalMs,
 *    timeoutMs, variant: {...} }`.
 */
export const config = JSON.parse(process.env.BENCH_CONFIG ?? "{}");

/**
 * Wall-clock milliseconds with sub-millisecond resolution. Date.now() has only
 * whole milliseconds, too coarse for a pickup latency of a few.
 */
export function now() {
  return performance.timeOrigin + performance.now();
}

/**
 * Imports an npm package from the node_modules next to this file. The name
 * goes through a variable so `deno check bench/` (which type-checks the
 * repository and has no such package) does not try to resolve it.
 */
export function importPackage(name) {
  return import(name);
}

/** Resolves after `ms` milliseconds. */
export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `check` every `everyMs` until it is truthy; throws after `timeoutMs`. */
export async function waitUntil(check, what, timeoutMs, everyMs = 10) {
  const deadline = Date.now() + timeoutMs;
  while (true) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms: ${what}`);
    await sleep(everyMs);
  }
}

/**
 * Counts handler calls. A benchmark that silently runs nothing is worse than
 * none, so the scripts report calls and distinct ids and the caller compares
 * both with the number of jobs enqueued.
 */
export class Tally {
  calls = 0;
  firstStart = null;
  seen = new Set();
  /** Pickup time per job id, for the latency phase. */
  startedAt = new Map();

  /** Records one handler call for job payload `{ i }`. */
  started(payload) {
    const t = now();
    this.calls++;
    if (this.firstStart === null) this.firstStart = t;
    const id = payload?.i;
    if (id !== undefined) {
      this.seen.add(id);
      if (!this.startedAt.has(id)) this.startedAt.set(id, t);
    }
  }
}

/**
 * Fills the queue through `addBatch(payloads)` in chunks, outside the timed part.
 */
export async function prefill(jobs, addBatch, chunk = 1000) {
  for (let from = 0; from < jobs; from += chunk) {
    const payloads = [];
    for (let i = from; i < Math.min(jobs, from + chunk); i++) payloads.push({ i });
    await addBatch(payloads);
  }
}

/**
 * Drain phase: `start()` starts the worker on a pre-filled queue; the clock runs
 * from the first handler call until `remaining()` (a database count) reaches 0
 * after every job was handled, so batched completions are counted in.
 */
export async function timeDrain({ tally, start, remaining }) {
  const { jobs, timeoutMs } = config;
  const stop = await start();
  await waitUntil(() => tally.calls >= jobs, `${tally.calls} of ${jobs} jobs handled`, timeoutMs);
  await waitUntil(async () => (await remaining()) === 0, "completions to commit", timeoutMs, 5);
  const end = now();
  const left = await remaining();
  await stop();
  return {
    jobs,
    calls: tally.calls,
    distinct: tally.seen.size,
    remaining: left,
    seconds: (end - tally.firstStart) / 1000,
  };
}

/**
 * Latency phase: with the worker started and idle, enqueue `latencyJobs` jobs
 * one at a time, `intervalMs` apart, each through `enqueue(payload)`; a job's
 * latency is from just before its enqueue call to its handler's start.
 */
export async function timePickup({ tally, start, enqueue, remaining }) {
  const { latencyJobs, intervalMs, timeoutMs } = config;
  const stop = await start();
  await sleep(1000); // let the worker settle into its idle state (LISTEN, first empty poll)
  const sentAt = new Map();
  const deadline = Date.now() + timeoutMs;
  for (let i = 0; i < latencyJobs && Date.now() < deadline; i++) {
    const t0 = now();
    sentAt.set(i, t0);
    await enqueue({ i });
    const wait = t0 + intervalMs - now();
    if (wait > 0) await sleep(wait);
  }
  await waitUntil(() => tally.seen.size >= latencyJobs, "all latency jobs to start", timeoutMs);
  await waitUntil(async () => (await remaining()) === 0, "completions to commit", timeoutMs, 5);
  const left = await remaining();
  await stop();
  const latenciesMs = [...sentAt].map(([i, t0]) => tally.startedAt.get(i) - t0);
  return {
    jobs: latencyJobs,
    calls: tally.calls,
    distinct: tally.seen.size,
    remaining: left,
    latenciesMs,
  };
}

/** Prints the result as the script's last line, the one bench/compare.ts reads. */
export function emit(result) {
  process.stdout.write(JSON.stringify(result) + "\n");
}

/** Runs `main` and maps a failure to exit code 1 with a one-line message. */
export function runMain(main) {
  main().then(
    () => process.exit(0),
    (error) => {
      console.error(`bench: ${error?.stack ?? error}`);
      process.exit(1);
    },
  );
}
