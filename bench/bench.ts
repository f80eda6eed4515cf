/**
 * `deno task bench`: retask's own figures on this machine, each measured on a
 * fresh database of its own: worker throughput on no-op and on "lucky" tasks
 * (retries included) at several concurrencies, enqueue rates, pickup latency
 * with an idle worker, take and enqueue cost with a million finished tasks in
 * the table, the worker's memory over a long drain, what pruning a million
 * old tasks costs a drain beside it (bench/prune.ts), and enqueue and status
 * with a million tasks in the table while two workers drain a stream
 * (bench/scale.ts). A table, or `--json`.
 *
 * Uses `--database-url` or `DATABASE_URL` (else the embedded server) to create
 * and drop databases named `retask_bench_*`.
 * @module
 */
import { parseArgs } from "node:util";
import {
  countFlag,
  describeMachine,
  fmt,
  machineLine,
  numberTable,
  percentile,
  runScript,
  usageError,
  withBenchDatabase,
} from "./common.ts";
import { dropDatabasesOnSignal, serverUrl } from "../tests/harness/mod.ts";
import { enqueueRates, finishedRowsCost, memoryRun, throughput } from "./measure.ts";
import { pickupLatency, prepareRetask } from "./retask.ts";
import { pruneCost } from "./prune.ts";
import { scale, STATUS_KINDS, type StatusKind, type StatusTiming } from "./scale.ts";
import { parseInteger } from "../cli/parse.ts";

const SECTIONS = [
  "throughput",
  "lucky",
  "enqueue",
  "latency",
  "finished",
  "memory",
  "prune",
  "scale",
] as const;
type Section = typeof SECTIONS[number];

const USAGE = `usage: deno task bench [options]
  --only <list>          sections to run (default all but prune, which takes ~10 minutes):
                         ${SECTIONS.join(", ")}
  --tasks <n>            no-op tasks per throughput run (default 20000)
  --concurrency <list>   worker concurrencies to measure (default 1,4,16)
  --lucky-tasks <n>      retask.lucky tasks per run, 30% success per attempt (default 5000)
  --enqueue-single <n>   one-at-a-time enqueues (default 2000)
  --bulk-size <n>        tasks per bulk enqueue call (default 1000), --bulk-calls <n> (default 100)
  --latency-jobs <n>     tasks enqueued one at a time to an idle worker (default 200)
  --interval-ms <ms>     between those enqueues (default 20)
  --finished-rows <n>    finished tasks added before measuring take/enqueue again (default 1000000)
  --ops <n>              takes and enqueues timed before and after (default 1000)
  --memory-tasks <n>     tasks of the long drain whose RSS is sampled (default 1000000)
  --prune-rows <n>       old ended tasks pruned beside a drain (default 1000000)
  --prune-tasks <n>      no-op tasks of that drain (default 100000)
  --rest-ratios <list>   prune's rest after each batch, per measurement (default 0,4)
  --scale-rows <n>       scale (about a minute): ended tasks in the table (default 1000000)
  --enqueuers <n>        scale: connections calling enqueue_task one at a time (default 8)
  --scale-seconds <s>    scale: how long they enqueue while two retask work drain (default 10)
  --status-calls <n>     scale: retask status calls of each kind timed after (default 20)
  --worker-args=<flags> extra flags for every retask work (e.g. --worker-args="--batch-size 50")
  --timeout <s>          bound on each measurement (default 900)
  --database-url <url>   server to create the benchmark databases on
  --json                 print the figures as JSON`;

function options() {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      only: { type: "string" },
      tasks: { type: "string", default: "20000" },
      concurrency: { type: "string", default: "1,4,16" },
      "lucky-tasks": { type: "string", default: "5000" },
      "enqueue-single": { type: "string", default: "2000" },
      "bulk-size": { type: "string", default: "1000" },
      "bulk-calls": { type: "string", default: "100" },
      "latency-jobs": { type: "string", default: "200" },
      "interval-ms": { type: "string", default: "20" },
      "finished-rows": { type: "string", default: "1000000" },
      ops: { type: "string", default: "1000" },
      "memory-tasks": { type: "string", default: "1000000" },
      "prune-rows": { type: "string", default: "1000000" },
      "prune-tasks": { type: "string", default: "100000" },
      "rest-ratios": { type: "string", default: "0,4" },
      "scale-rows": { type: "string", default: "1000000" },
      enqueuers: { type: "string", default: "8" },
      "scale-seconds": { type: "string", default: "10" },
      "status-calls": { type: "string", default: "20" },
      "worker-args": { type: "string", default: "" },
      timeout: { type: "string", default: "900" },
      "database-url": { type: "string" },
      json: { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
  });
  const only = values.only?.split(",").map((s) => s.trim()).filter(Boolean) ??
    SECTIONS.filter((s) => s !== "prune");
  const unknown = only.filter((s) => !SECTIONS.includes(s as Section));
  if (unknown.length > 0) throw usageError(`unknown section(s): ${unknown.join(", ")}`);
  return {
    help: values.help,
    json: values.json,
    databaseUrl: values["database-url"],
    only: new Set(only as Section[]),
    tasks: countFlag("tasks", values.tasks),
    concurrencies: values.concurrency.split(",").map((c) =>
      countFlag("concurrency", c.trim(), 1000)
    ),
    luckyTasks: countFlag("lucky-tasks", values["lucky-tasks"]),
    single: countFlag("enqueue-single", values["enqueue-single"]),
    bulkSize: countFlag("bulk-size", values["bulk-size"], 100_000),
    bulkCalls: countFlag("bulk-calls", values["bulk-calls"]),
    latencyJobs: countFlag("latency-jobs", values["latency-jobs"]),
    intervalMs: countFlag("interval-ms", values["interval-ms"], 60_000),
    finishedRows: countFlag("finished-rows", values["finished-rows"]),
    ops: countFlag("ops", values.ops, 100_000),
    memoryTasks: countFlag("memory-tasks", values["memory-tasks"]),
    pruneRows: countFlag("prune-rows", values["prune-rows"]),
    pruneTasks: countFlag("prune-tasks", values["prune-tasks"]),
    restRatios: values["rest-ratios"].split(",").map((r) =>
      parseInteger("--rest-ratios", r, { min: 0, max: 100, code: "usage" })
    ),
    scaleRows: countFlag("scale-rows", values["scale-rows"]),
    enqueuers: countFlag("enqueuers", values.enqueuers, 64),
    scaleSeconds: countFlag("scale-seconds", values["scale-seconds"], 3_600),
    statusCalls: countFlag("status-calls", values["status-calls"], 10_000),
    workerArgs: values["worker-args"].split(/\s+/).filter(Boolean),
    timeoutMs: countFlag("timeout", values.timeout, 86_400) * 1000,
  };
}

async function main(): Promise<number> {
  const opts = options();
  if (opts.help) {
    console.log(USAGE);
    return 0;
  }
  dropDatabasesOnSignal();
  const server = await serverUrl(opts.databaseUrl);
  const machine = await describeMachine(server);
  const log = (line: string) => console.error(line);
  log(`machine: ${machineLine(machine)}`);
  const o = { server, timeoutMs: opts.timeoutMs, args: opts.workerArgs };
  const figures: Record<string, unknown> = {};
  const rows: string[][] = [];
  const row = (what: string, value: string, note = "") => {
    rows.push([what, value, note]);
    log(`  ${what}: ${value} ${note}`);
  };

  for (const program of ["noop", "lucky"] as const) {
    if (!opts.only.has(program === "noop" ? "throughput" : "lucky")) continue;
    const tasks = program === "noop" ? opts.tasks : opts.luckyTasks;
    const runs = [];
    for (const c of opts.concurrencies) {
      const r = await throughput(o, program, tasks, ["--concurrency", String(c)]);
      runs.push({ concurrency: c, ...r });
      // function calls per task go to --json; bench/profile.ts explains them
      const takes = r.server.callsPerTask.take_tasks;
      row(
        `${program === "noop" ? "no-op" : "retask.lucky"} tasks/s, concurrency ${c}`,
        fmt(r.tasksPerSec),
        `${fmt(tasks)} tasks, ${fmt(r.attemptsPerSec)} attempts/s; ` +
          `${fmt(r.server.commitsPerTask, 3)} commits and ${fmt(takes, 3)} takes per task`,
      );
    }
    figures[program === "noop" ? "throughput" : "lucky"] = runs;
  }
  if (opts.only.has("enqueue")) {
    const r = await enqueueRates(o, opts.single, opts.bulkCalls, opts.bulkSize);
    figures.enqueue = r;
    row(
      "enqueue tasks/s, one at a time",
      fmt(r.oneAtATime),
      `SELECT enqueue_task(), ${opts.single} calls`,
    );
    row(
      "enqueue tasks/s, bulk",
      fmt(r.bulk),
      `enqueue_tasks() with a jsonb array of ${fmt(r.bulkSize)}, ${opts.bulkCalls} calls`,
    );
  }
  if (opts.only.has("latency")) {
    const pickup = await withBenchDatabase(
      server,
      "latency",
      async (db) =>
        pickupLatency(db, await prepareRetask(db), {
          jobs: opts.latencyJobs,
          intervalMs: opts.intervalMs,
          args: opts.workerArgs,
          timeoutMs: opts.timeoutMs,
        }),
    );
    const latencies = pickup.latenciesMs;
    const [p50, p99] = [percentile(latencies, 50), percentile(latencies, 99)];
    const legs = (ms: number[]) => `${fmt(percentile(ms, 50), 1)} / ${fmt(percentile(ms, 99), 1)}`;
    figures.latency = {
      p50,
      p99,
      max: Math.max(...latencies),
      samples: latencies.length,
      toTake: { p50: percentile(pickup.toTakeMs, 50), p99: percentile(pickup.toTakeMs, 99) },
      takeToStart: {
        p50: percentile(pickup.takeToStartMs, 50),
        p99: percentile(pickup.takeToStartMs, 99),
      },
    };
    const note = `${opts.latencyJobs} tasks, ${opts.intervalMs} ms apart, enqueue to program start`;
    row("pickup latency p50 / p99 ms", `${fmt(p50, 1)} / ${fmt(p99, 1)}`, note);
    row(
      "  of which enqueue → taken",
      legs(pickup.toTakeMs),
      "to the start of the take's transaction",
    );
    row("  of which taken → program start", legs(pickup.takeToStartMs), "the worker's own path");
  }
  if (opts.only.has("finished")) {
    const r = await finishedRowsCost(o, opts.finishedRows, opts.ops);
    figures.finishedRows = r;
    const note = (b: number, a: number) => `${fmt(b)} → ${fmt(a)} µs (${fmt(a / b, 2)}x)`;
    row(
      `enqueue_task µs, 0 → ${fmt(r.rows)} finished`,
      note(r.before.enqueueUs, r.after.enqueueUs),
      `best of 3 medians of ${opts.ops}`,
    );
    row(
      `take_tasks(1) µs, 0 → ${fmt(r.rows)} finished`,
      note(r.before.takeUs, r.after.takeUs),
      `best of 3 medians of ${opts.ops}`,
    );
  }
  if (opts.only.has("memory")) {
    const r = await memoryRun(o, opts.memoryTasks);
    figures.memory = r;
    row(
      "worker RSS MiB, first → last fifth (max)",
      `${fmt(r.earlyMiB, 1)} → ${fmt(r.lateMiB, 1)} (${fmt(r.maxMiB, 1)})`,
      `${fmt(r.tasks)} tasks at ${fmt(r.tasksPerSec)}/s, ${r.samplesMiB.length} samples`,
    );
  }
  if (opts.only.has("prune")) {
    const r = await pruneCost({
      ...o,
      oldRows: opts.pruneRows,
      tasks: opts.pruneTasks,
      batchSize: 1000,
    }, opts.restRatios);
    figures.prune = r;
    row(
      "drain tasks/s alone, before → after",
      `${fmt(r.alone[0].tasksPerSec)} → ${fmt(r.alone[1].tasksPerSec)}`,
      `${fmt(opts.pruneTasks)} no-op tasks, ${fmt(opts.pruneRows)} old ones in the table`,
    );
    for (const p of r.pruning) {
      row(
        `  while pruning them, rest ratio ${p.restRatio}`,
        `${fmt(p.whilePruningPerSec)} (${fmt(p.cost * 100)}%)`,
        `${fmt(p.pruned)} pruned in ${fmt(p.pruneSeconds, 1)} s, batches of 1000`,
      );
    }
  }
  if (opts.only.has("scale")) {
    const r = await scale({
      ...o,
      rows: opts.scaleRows,
      enqueuers: opts.enqueuers,
      seconds: opts.scaleSeconds,
      statusCalls: opts.statusCalls,
    });
    figures.scale = r;
    const mark = (ok: boolean) => (ok ? "met" : "NOT met");
    row(
      `enqueue/s, ${r.enqueuers} enqueuers, 2 workers draining, ${fmt(r.rows)} tasks`,
      fmt(r.enqueuesPerSec),
      `target ≥ 6,000: ${mark(r.enqueuesPerSec >= 6000)}; ${fmt(r.enqueued)} in ` +
        `${fmt(r.seconds, 1)} s, enqueue_task p50 / p99 ${fmt(r.enqueueMs.p50, 1)} / ` +
        `${fmt(r.enqueueMs.p99, 1)} ms; drained ${fmt(r.drainedPerSec)}/s, ` +
        `${fmt(r.backlog)} left queued; fill ${fmt(r.fillSeconds)} s`,
    );
    const flags: Record<StatusKind, string> = {
      all: "",
      error: " --status error",
      program: ` --program ${STATUS_KINDS.program.program}`,
    };
    const when = (label: string, timings: Record<StatusKind, StatusTiming>) => {
      for (const kind of Object.keys(flags) as StatusKind[]) {
        const t = timings[kind];
        row(
          `status${flags[kind]} ms p50 / max, ${label}`,
          `${fmt(t.p50, 1)} / ${fmt(t.max, 1)}`,
          `target < 20 ms: ${mark(t.p50 < 20)}; ${t.calls} calls`,
        );
      }
    };
    when("while enqueueing", r.statusDuring);
    when("after", r.statusAfter);
  }

  const loadAfter = Deno.loadavg().map((l) => Math.round(l * 100) / 100);
  if (opts.json) {
    console.log(
      JSON.stringify({
        machine: { ...machine, loadAverageAfter: loadAfter },
        options: { ...opts, only: [...opts.only] },
        figures,
      }),
    );
    return 0;
  }
  console.log(`machine: ${machineLine(machine)}; load after ${loadAfter.join(" ")}`);
  if (opts.workerArgs.length > 0) console.log(`retask work flags: ${opts.workerArgs.join(" ")}`);
  console.log("");
  console.log(numberTable(["measure", "value", "notes"], rows, ["left", "right", "left"]));
  return 0;
}

if (import.meta.main) await runScript("bench", USAGE, main);
