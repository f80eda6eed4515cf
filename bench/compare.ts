/**
 * `deno run -A bench/compare.ts`: the same no-op workload on the same
 * PostgreSQL for retask, graphile-worker 0.18, pg-boss 12 and the seed's
 * `process_tasks()`, one system at a time, several runs (interleaved, so a
 * change in the machine's load hits every system alike). Prints throughput
 * and pickup latency per system and retask's ratio to each; `--json` for the
 * raw figures.
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
import { type RunResult, type System, SYSTEMS } from "./compare/systems.ts";

const USAGE = `usage: deno run -A bench/compare.ts [options]
  --runs <n>            repetitions of every system (default 3)
  --jobs <n>            jobs in the pre-filled queue each drain empties (default 20000)
  --latency-jobs <n>    jobs enqueued one at a time to an idle worker (default 200)
  --interval-ms <ms>    between those enqueues (default 20)
  --seed-seconds <s>    window the seed's process_tasks() runs in (default 30)
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
}

function summarize(system: System, runs: RunResult[]): Summary {
  const latencies = runs.flatMap((r) => r.latenciesMs);
  return {
    system: system.name,
    settings: system.settings,
    why: system.why,
    throughputs: runs.map((r) => r.throughput),
    throughput: median(runs.map((r) => r.throughput)),
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    latencySamples: latencies.length,
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

/** Issue 5's targets, checked against this run's figures (when the systems involved ran). */
function targets(summaries: Summary[]): string[] {
  const retask = summaries.find((s) => s.system === "retask");
  if (!retask) return [];
  const rivals = summaries.filter((s) => /^(graphile-worker|pg-boss)/.test(s.system));
  const graphile = summaries.filter((s) => s.system.startsWith("graphile-worker"));
  const mark = (ok: boolean) => (ok ? "met" : "NOT met");
  const lines = [`10,000 jobs/s: ${mark(retask.throughput >= 10_000)} (${fmt(retask.throughput)})`];
  if (rivals.length > 0) {
    const best = rivals.reduce((a, b) => (b.throughput > a.throughput ? b : a));
    lines.push(
      `2x the best of graphile-worker and pg-boss (${best.system}, ${fmt(best.throughput)} → ` +
        `${fmt(2 * best.throughput)}): ${mark(retask.throughput >= 2 * best.throughput)}`,
    );
  }
  if (graphile.length > 0) {
    const p50 = Math.min(...graphile.map((s) => s.p50));
    lines.push(`p50 ≤ graphile-worker's (${fmt(p50, 1)} ms): ${mark(retask.p50 <= p50)}`);
  }
  lines.push(`p99 < 20 ms: ${mark(retask.p99 < 20)} (${fmt(retask.p99, 1)} ms)`);
  return lines;
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      runs: { type: "string", default: "3" },
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
  const runs = countFlag("runs", values.runs, 20);
  const log = (line: string) => console.error(line);

  dropDatabasesOnSignal();
  const server = await serverUrl(values["database-url"]);
  let node: NodeEnv | undefined;
  if (systems.some((s) => s.node)) {
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
  for (let run = 1; run <= runs; run++) {
    for (const system of systems) {
      const result = await system.run(options);
      results.get(system)!.push(result);
      log(
        `run ${run}/${runs} ${system.name}: ${fmt(result.throughput)} jobs/s, ` +
          `p50 ${fmt(percentile(result.latenciesMs, 50), 1)} ms, ` +
          `p99 ${fmt(percentile(result.latenciesMs, 99), 1)} ms`,
      );
    }
  }
  const after = await describeMachine(server);
  const summaries = systems.map((s) => summarize(s, results.get(s)!));

  if (values.json) {
    console.log(JSON.stringify({
      machine: { ...before, loadAverageAfter: after.loadAverage },
      node: node && { version: node.nodeVersion, packages: node.versions },
      options: { ...options, server: undefined, node: undefined, runs },
      summaries,
      targets: targets(summaries),
      runs: systems.map((s) => ({ system: s.name, runs: results.get(s) })),
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
  console.log(
    `${runs} run(s); throughput: drain ${
      fmt(options.jobs)
    } no-op jobs (seed: ${options.seedWorkers} ` +
      `workers for ${options.seedSeconds} s); latency: ${options.latencyJobs} jobs one at a time, ` +
      `${options.intervalMs} ms apart, enqueue to start\n`,
  );
  console.log(table(summaries));
  const goals = targets(summaries);
  if (goals.length > 0) console.log(`\nissue 5 targets for retask:\n  ${goals.join("\n  ")}`);
  console.log("\nsettings:");
  for (const s of summaries) console.log(`  ${s.system}: ${s.settings}\n    why: ${s.why}`);
  if (options.retaskArgs.length > 0) {
    console.log(`  retask work flags: ${options.retaskArgs.join(" ")}`);
  }
  return 0;
}

if (import.meta.main) await runScript("bench/compare", USAGE, main);
