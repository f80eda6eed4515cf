/**
 * The demo of the seed's check: run `retask.lucky` many times through the real
 * queue and worker, count on which attempt each run ended, and compare the
 * counts with what the retry rule predicts (a chi-square goodness-of-fit test).
 * @module
 */
import type { Sql } from "../lib/db/connect.ts";
import { RetaskError } from "../lib/errors.ts";
import { enqueue } from "../lib/queue/enqueue.ts";
import { registerProgram } from "../lib/queue/programs.ts";
import { DEFAULT_SCHEMA, install, isInstalled } from "../lib/db/schema.ts";
import { runWorker } from "../lib/worker/loop.ts";
import { chiSquareTest, DEMO_ATTEMPTS, expectedShares } from "./demo_stats.ts";

/** The program name the demo registers `retask.lucky` under. */
const DEMO_PROGRAM = "lucky";

/** What {@link runDemo} runs. */
export interface DemoOptions {
  /** Tasks to enqueue (one run each). */
  runs: number;
  /** Chance that one call of retask.lucky succeeds. */
  probability: number;
  /** Tasks the in-process worker runs at once. */
  concurrency: number;
  /** Stops the worker; the demo then fails with "interrupted". */
  signal?: AbortSignal;
  /** Called as runs end (finished, or failed for good), with how many have. */
  onProgress?: (done: number, total: number) => void;
  /** retask's schema (default `retask`). */
  schema?: string;
}

/** One row of the distribution. */
export interface DemoRow {
  /** `finished on attempt k`, or `failed after 3 attempts`. */
  outcome: string;
  /** k for the finished rows, null for the failed row. */
  attempt: number | null;
  observed: number;
  expected_share: number;
}

/** What the demo found. Field names are the `demo --json` output. */
export interface DemoResult {
  program_id: number;
  runs: number;
  probability: number;
  concurrency: number;
  max_attempts: number;
  /** The demo's own tasks run from the first to the last id (others may be in between). */
  first_task_id: number;
  last_task_id: number;
  /** From enqueueing to the last run's end. */
  elapsed_ms: number;
  rows: DemoRow[];
  chi_square: number;
  degrees_of_freedom: number;
  p_value: number | null;
  /** Some expected count is below 5: the p-value is approximate. */
  approximate: boolean;
  /** Task ids worth showing: one that finished on attempt 2, one that needed all 3. */
  examples: { two_attempts: number | null; three_attempts: number | null };
}

/** Counts of this run's tasks by how they ended; `done` is how many ended for good. */
async function tally(sql: Sql, schema: string, ids: number[]) {
  const rows = await sql<{ status: string; attempt: number; n: number }[]>`
    SELECT status, attempt_count AS attempt, count(*)::int AS n FROM ${sql(schema)}.tasks
    WHERE task_id = ANY(${ids}::bigint[]) AND status IN ('finished', 'error')
    GROUP BY 1, 2`;
  const observed = Array<number>(DEMO_ATTEMPTS + 1).fill(0);
  for (const r of rows) {
    observed[r.status === "error" ? DEMO_ATTEMPTS : r.attempt - 1] += r.n;
  }
  return { observed, done: observed.reduce((a, b) => a + b, 0) };
}

/**
 * Installs the schema if needed, registers `retask.lucky` as program "lucky",
 * enqueues `runs` tasks, processes them with the in-process worker, and tests
 * the distribution of attempts against the expected shares. Only this run's
 * tasks are counted, whatever earlier demos left behind.
 */
export async function runDemo(sql: Sql, options: DemoOptions): Promise<DemoResult> {
  const { runs, probability, concurrency, signal, schema = DEFAULT_SCHEMA } = options;
  const tasks = sql`${sql(schema)}.tasks`;
  const lucky = `${schema}.lucky`;
  // the course layer on a first install only: one left out (--no-compat) stays out
  await install(sql, { schema, compat: !(await isInstalled(sql, schema)) });
  // never repoint a program of the user's that happens to be called "lucky"
  const [taken] = await sql<{ func: string }[]>`
    SELECT func FROM ${sql(schema)}.programs WHERE name = ${DEMO_PROGRAM}
      AND to_regprocedure(func || '(jsonb)') IS DISTINCT FROM to_regprocedure(${lucky} || '(jsonb)')
    LIMIT 1`;
  if (taken) {
    throw new RetaskError(
      "invalid_input",
      `program "${DEMO_PROGRAM}" already runs ${taken.func}; run the demo on a database of its own`,
    );
  }
  const { programId } = await registerProgram(sql, DEMO_PROGRAM, lucky, { schema });
  const started = performance.now();
  // the attempts and an immediate retry are set per task, so a program policy
  // changed since (say, a retry delay) cannot change what the demo measures
  const ids = await enqueue(sql, {
    program: programId,
    params: Array(runs).fill({ probability }),
    maxAttempts: DEMO_ATTEMPTS,
    retryDelay: "0",
    retryBackoff: "fixed",
    schema,
  });
  options.onProgress?.(0, runs);

  // The worker stops once this run's tasks have all ended, not when the queue
  // drains: a task scheduled for later would keep a drain waiting until then.
  const allEnded = new AbortController();
  const stop = signal ? AbortSignal.any([signal, allEnded.signal]) : allEnded.signal;
  const mine = new Set(ids);
  let done = 0;
  // another worker may run some of them: its outcomes never reach onOutcome
  const look = setInterval(() => {
    tally(sql, schema, ids).then((t) => t.done === runs && allEnded.abort(), () => {});
  }, 500);
  try {
    await runWorker(sql, {
      concurrency,
      schema,
      drain: true,
      signal: stop,
      onOutcome(event) {
        if (mine.has(event.taskId) && (event.status === "finished" || event.status === "error")) {
          options.onProgress?.(++done, runs);
          if (done === runs) allEnded.abort();
        }
      },
    });
  } catch (error) {
    if (!stop.aborted) throw error;
  } finally {
    clearInterval(look);
  }
  const { observed, done: ended } = await tally(sql, schema, ids);
  if (ended < runs) {
    // unstarted demo runs would otherwise wait for the next worker (or demo) to drain them
    const removed = await sql`
      DELETE FROM ${tasks} WHERE task_id = ANY(${ids}::bigint[]) AND status = 'scheduled'`;
    const why = signal?.aborted ? "interrupted" : "another worker still holds some of its runs";
    throw new RetaskError(
      "internal",
      `demo ${why}: ${ended} of ${runs} runs ended; removed the ${removed.count} not yet run`,
    );
  }
  // runs another worker ended never reached onOutcome: end the bar (drawn once) here
  if (done < runs) options.onProgress?.(runs, runs);
  const elapsed = performance.now() - started;

  const shares = expectedShares(probability);
  const fit = chiSquareTest(observed, shares);
  const [examples] = await sql<{ two_attempts: number | null; three_attempts: number | null }[]>`
    SELECT (SELECT min(task_id) FROM ${tasks} WHERE task_id = ANY(${ids}::bigint[])
              AND status = 'finished' AND attempt_count = 2) AS two_attempts,
           (SELECT task_id FROM ${tasks} WHERE task_id = ANY(${ids}::bigint[])
              AND attempt_count = ${DEMO_ATTEMPTS}
            ORDER BY status <> 'finished', task_id LIMIT 1) AS three_attempts`;
  return {
    program_id: programId,
    runs,
    probability,
    concurrency,
    max_attempts: DEMO_ATTEMPTS,
    first_task_id: ids.reduce((a, b) => Math.min(a, b)),
    last_task_id: ids.reduce((a, b) => Math.max(a, b)),
    elapsed_ms: Math.round(elapsed),
    rows: observed.map((count, i) => ({
      outcome: i < DEMO_ATTEMPTS
        ? `finished on attempt ${i + 1}`
        : `failed after ${DEMO_ATTEMPTS} attempts`,
      attempt: i < DEMO_ATTEMPTS ? i + 1 : null,
      observed: count,
      expected_share: shares[i],
    })),
    chi_square: fit.statistic,
    degrees_of_freedom: fit.degreesOfFreedom,
    p_value: fit.pValue,
    approximate: fit.approximate,
    examples: { two_attempts: examples.two_attempts, three_attempts: examples.three_attempts },
  };
}
