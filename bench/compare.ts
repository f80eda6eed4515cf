/**
 * `deno run -A bench/compare.ts`: the same no-op workload on the same
 * PostgreSQL for retask, graphile-worker 0.18, pg-boss 12 and the seed's
 * `process_tasks()`, one system at a time, several runs (interleaved, so a
 * change in the machine's load hits every system alike). Prints throughput
 * and pickup latency per system and retask's ratio to each; `--json` for the
 * raw figures. The `lucky` workload (70% of attempts fail, 3 attempts, retried
 * at once) runs for retask and the seed: tasks and attempts per second.
 *
 * Uses `--database-url` or `DATABASE_URL` (else the embedded server) to create
 * and drop databases named `retask_bench_*`. graphile-worker and pg-boss are
 * installed into a cache directory outside the repository on each run.
 * @module
 */
import { parseArgs } from "node:util";
import {
  countFlag,
  describeMachine,
  fmt,
  type Machine,
  machineLine,
  median,
  numberTable,
  percentile,
  runScript,
  usageError,
} from "./common.ts";
import { dropDatabasesOnSignal, serverUrl } from "../tests/harness/mod.ts";
import { type NodeEnv, prepareNode } from "./compare/node.ts";
import { type LuckyResult, type RunResult, type System, SYSTEMS } from "./compare/systems.ts";

const WORKLOADS = ["noop", "lucky"] as const;
type Workload = typeof WORKLOADS[number];

const USAGE = `usage: deno run -A bench/compare.ts [options]
  --runs <n>            repetitions of every system (default 3)
  --workloads <list>    noop (a drain of no-op jobs, and pickup latency), lucky (a drain of
                        retask.lucky jobs: 70% of attempts fail, 3 attempts, no retry delay;
                        retask and the seed only), or both (default noop,lucky)
  --jobs <n>            jobs in the pre-filled queue each drain empties (default 20000)
  --latency-jobs <n>    jobs enqueued one at a time to an idle worker (default 200)
  --interval-ms <ms>    between those enqueues (default 20)
  --seed-seconds <s>    window the seed's process_tasks() runs in, per workload (default 30)
  --seed-workers <n>    process_tasks() backends (default 4)
  --systems <list>      comma-separated subset of: ${SYSTEMS.map((s) => s.name).join(", ")}
  --retask-args=<flags> extra flags for retask work, e.g. --retask-args="--batch-size 50"
                        (default none: its defaults)
  --timeout <s>         bound on each phase (default 300)
  --database-url <url>  server to create the benchmark databases on
  --json                print the figures as JSON`;

/** One system's figures over all runs. */
export interface Summary {
  system: string;
  settings: string;
  why: string;
  /** Jobs per second, per run. */
  throughputs: number[];
  throughput: number;
  /** Over every run's latencies taken together, ms. */
  p50: number;
  p99: number;
  latencySamples: number;
  /** The lucky workload, when it ran for this system. */
  lucky?: {
    settings: string;
    /** Per run. */
    jobsPerSec: number[];
    attemptsPerSec: number[];
    /** Medians. */
    jobs: number;
    attempts: number;
  };
}

function summarize(system: System, runs: RunResult[], lucky: LuckyResult[]): Summary {
  const latencies = runs.flatMap((r) => r.latenciesMs);
  const jobsPerSec = lucky.map((r) => r.jobsPerSec);
  const attemptsPerSec = lucky.map((r) => r.attemptsPerSec);
  return {
    system: system.name,
    settings: system.settings,
    why: system.why,
    throughputs: runs.map((r) => r.throughput),
    throughput: median(runs.map((r) => r.throughput)),
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    latencySamples: latencies.length,
    lucky: lucky.length === 0 ? undefined : {
      settings: system.luckySettings ?? "",
      jobsPerSec,
      attemptsPerSec,
      jobs: median(jobsPerSec),
      attempts: median(attemptsPerSec),
    },
  };
}

// A ratio with three significant digits or so: 0.000412x, 0.41x, 4.1x, 412x.
function ratio(x: number): string {
  return `${fmt(x, x >= 100 ? 0 : x >= 1 ? 2 : Math.min(6, 2 - Math.floor(Math.log10(x))))}x`;
}

function table(summaries: Summary[]): string {
  const retask = summaries.find((s) => s.system === "retask");
  const rows = summaries.map((s) => {
    const own = s === retask || !retask;
    return [
      s.system,
      fmt(s.throughput),
      `${fmt(Math.min(...s.throughputs))}–${fmt(Math.max(...s.throughputs))}`,
      fmt(s.p50, 1),
      fmt(s.p99, 1),
      own ? "" : ratio(retask.throughput / s.throughput),
      own ? "" : ratio(retask.p50 / s.p50),
    ];
  });
  return numberTable(
    ["system", "jobs/s (median)", "range", "p50 ms", "p99 ms", "retask÷it jobs/s", "retask÷it p50"],
    rows,
  );
}

// The lucky workload's table: "n/a" for a system that does not run it.
function luckyTable(summaries: Summary[]): string {
  const retask = summaries.find((s) => s.system === "retask")?.lucky;
  const rows = summaries.map((s) => {
    const l = s.lucky;
    if (!l) return [s.system, "n/a", "n/a", "n/a", ""];
    return [
      s.system,
      fmt(l.jobs),
      fmt(l.attempts),
      `${fmt(Math.min(...l.attemptsPerSec))}–${fmt(Math.max(...l.attemptsPerSec))}`,
      !retask || l === retask ? "" : ratio(retask.attempts / l.attempts),
    ];
  });
  return numberTable(
    ["system", "jobs/s (median)", "attempts/s (median)", "range", "retask÷it attempts/s"],
    rows,
  );
}

/** Issue 11's targets, checked against this run's figures (when the systems involved ran). */
function targets(summaries: Summary[], workloads: Set<Workload>): string[] {
  const retask = summaries.find((s) => s.system === "retask");
  if (!retask) return [];
  const named = (name: string) => summaries.find((s) => s.system === name);
  const mark = (ok: boolean) => (ok ? "met" : "NOT met");
  const lines = [];
  if (workloads.has("noop")) {
    const batched = named("graphile-worker+batch");
    if (batched) {
      lines.push(
        `no-op jobs/s ≥ graphile-worker+batch's (${fmt(batched.throughput)}): ` +
          `${mark(retask.throughput >= batched.throughput)} (${fmt(retask.throughput)})`,
      );
    }
    const boss = named("pg-boss");
    if (boss) {
      lines.push(
        `no-op jobs/s ≥ 2x pg-boss's (${fmt(2 * boss.throughput)}): ` +
          `${mark(retask.throughput >= 2 * boss.throughput)} (${fmt(retask.throughput)})`,
      );
    }
    const graphile = named("graphile-worker");
    if (graphile) {
      lines.push(
        `p50 ≤ graphile-worker defaults' (${fmt(graphile.p50, 1)} ms): ` +
          `${mark(retask.p50 <= graphile.p50)} (${fmt(retask.p50, 1)} ms)`,
      );
    }
    lines.push(`p99 < 20 ms: ${mark(retask.p99 < 20)} (${fmt(retask.p99, 1)} ms)`);
  }
  if (retask.lucky) {
    lines.push(
      `lucky ≥ 25,000 attempts/s: ${mark(retask.lucky.attempts >= 25_000)} ` +
        `(${fmt(retask.lucky.attempts)})`,
    );
  }
  return lines;
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      runs: { type: "string", default: "3" },
      workloads: { type: "string", default: WORKLOADS.join(",") },
      jobs: { type: "string", default: "20000" },
      "latency-jobs": { type: "string", default: "200" },
      "interval-ms": { type: "string", default: "20" },
      "seed-seconds": { type: "string", default: "30" },
      "seed-workers": { type: "string", default: "4" },
      systems: { type: "string" },
      "retask-args": { type: "string", default: "" },
      timeout: { type: "string", default: "300" },
      "database-url": { type: "string" },
      json: { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }

  const names = values.systems?.split(",").map((s) => s.trim()).filter(Boolean);
  const unknown = names?.filter((n) => !SYSTEMS.some((s) => s.name === n)) ?? [];
  if (unknown.length > 0) throw usageError(`unknown system(s): ${unknown.join(", ")}`);
  const systems = names ? SYSTEMS.filter((s) => names.includes(s.name)) : [...SYSTEMS];
  const workloadNames = values.workloads.split(",").map((s) => s.trim()).filter(Boolean);
  const badWorkloads = workloadNames.filter((w) => !WORKLOADS.includes(w as Workload));
  if (badWorkloads.length > 0 || workloadNames.length === 0) {
    throw usageError(`unknown workload(s): ${badWorkloads.join(", ") || "(none given)"}`);
  }
  const workloads = new Set(workloadNames as Workload[]);
  const runs = countFlag("runs", values.runs, 20);
  const log = (line: string) => console.error(line);

  dropDatabasesOnSignal();
  const server = await serverUrl(values["database-url"]);
  let node: NodeEnv | undefined;
  // a Node.js system runs only the no-op workload
  if (workloads.has("noop") && systems.some((s) => s.node)) {
    log("installing graphile-worker@0.18 and pg-boss@12 (npm), finding Node.js 22 (npx)…");
    node = await prepareNode();
    log(
      `  ${node.nodeVersion}, ${
        Object.entries(node.versions).map(([k, v]) => `${k} ${v}`).join(", ")
      }`,
    );
  }
  const options = {
    server,
    jobs: countFlag("jobs", values.jobs, 10_000_000),
    latencyJobs: countFlag("latency-jobs", values["latency-jobs"], 100_000),
    intervalMs: countFlag("interval-ms", values["interval-ms"], 60_000),
    seedSeconds: countFlag("seed-seconds", values["seed-seconds"], 3_600),
    seedWorkers: countFlag("seed-workers", values["seed-workers"], 64),
    timeoutMs: countFlag("timeout", values.timeout, 86_400) * 1000,
    retaskArgs: values["retask-args"].split(/\s+/).filter(Boolean),
    node,
  };
  const before: Machine = await describeMachine(server);
  log(`machine: ${machineLine(before)}`);

  const results = new Map<System, RunResult[]>(systems.map((s) => [s, []]));
  const lucky = new Map<System, LuckyResult[]>(systems.map((s) => [s, []]));
  for (let run = 1; run <= runs; run++) {
    for (const system of systems) {
      if (workloads.has("noop")) {
        const result = await system.run(options);
        results.get(system)!.push(result);
        log(
          `run ${run}/${runs} ${system.name}: ${fmt(result.throughput)} jobs/s, ` +
            `p50 ${fmt(percentile(result.latenciesMs, 50), 1)} ms, ` +
            `p99 ${fmt(percentile(result.latenciesMs, 99), 1)} ms`,
        );
      }
      if (workloads.has("lucky") && system.lucky) {
        const result = await system.lucky(options);
        lucky.get(system)!.push(result);
        log(
          `run ${run}/${runs} ${system.name} lucky: ${fmt(result.jobsPerSec)} jobs/s, ` +
            `${fmt(result.attemptsPerSec)} attempts/s (${fmt(result.attempts)} attempts, ` +
            `${fmt(result.jobs)} jobs in ${fmt(result.seconds, 2)} s)`,
        );
      }
    }
  }
  const after = await describeMachine(server);
  const summaries = systems.map((s) => summarize(s, results.get(s)!, lucky.get(s)!));

  if (values.json) {
    console.log(JSON.stringify({
      machine: { ...before, loadAverageAfter: after.loadAverage },
      node: node && { version: node.nodeVersion, packages: node.versions },
      options: { ...options, server: undefined, node: undefined, runs, workloads: [...workloads] },
      summaries,
      targets: targets(summaries, workloads),
      runs: systems.map((s) => ({ system: s.name, runs: results.get(s), lucky: lucky.get(s) })),
    }));
    return 0;
  }
  console.log(`machine: ${machineLine(before)}; load after ${after.loadAverage.join(" ")}`);
  if (node) {
    console.log(
      `node ${node.nodeVersion}; ${
        Object.entries(node.versions).map(([k, v]) => `${k} ${v}`).join(", ")
      }`,
    );
  }
  const seedWindow = `seed: ${options.seedWorkers} workers for ${options.seedSeconds} s`;
  if (workloads.has("noop")) {
    console.log(
      `${runs} run(s); throughput: drain ${fmt(options.jobs)} no-op jobs (${seedWindow}); ` +
        `latency: ${options.latencyJobs} jobs one at a time, ${options.intervalMs} ms apart, ` +
        `enqueue to start\n`,
    );
    console.log(table(summaries));
  }
  if (workloads.has("lucky")) {
    console.log(
      `\nlucky, ${runs} run(s): drain ${fmt(options.jobs)} jobs that fail 70% of their attempts, ` +
        `3 attempts each, retried at once (${seedWindow}; it never retries)\n`,
    );
    console.log(luckyTable(summaries));
  }
  const goals = targets(summaries, workloads);
  if (goals.length > 0) console.log(`\nissue 11 targets for retask:\n  ${goals.join("\n  ")}`);
  console.log("\nsettings:");
  for (const s of summaries) {
    console.log(`  ${s.system}: ${s.settings}\n    why: ${s.why}`);
    if (s.lucky) console.log(`    lucky: ${s.lucky.settings}`);
  }
  if (options.retaskArgs.length > 0) {
    console.log(`  retask work flags: ${options.retaskArgs.join(" ")}`);
  }
  return 0;
}

if (import.meta.main) await runScript("bench/compare", USAGE, main);
