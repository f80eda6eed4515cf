/**
 * `deno run -A bench/profile.ts`: where a no-op task's time goes in
 * `retask work --drain`. Drains a filled queue through a counting proxy
 * (bench/proxy.ts) and reports per task: round trips and statements on the
 * wire, commits and row writes, server time per SQL function
 * (track_functions, set on the benchmark's own database only), and CPU time
 * of the worker process and of its PostgreSQL backends (from /proc).
 *
 * Flags: `--tasks <n>` (default 10000), `--program noop|lucky`,
 * `--worker-args="--batch-size 50"`, `--database-url <url>`, `--json`, and
 * `--no-proxy` for the true speed and CPU figures without the wire counts (the
 * proxy takes CPU and adds latency of its own).
 * @module
 */
import { parseArgs } from "node:util";
import { countFlag, fmt, numberTable, runScript, sleep, withBenchDatabase } from "./common.ts";
import { dropDatabasesOnSignal, serverUrl } from "../tests/harness/mod.ts";
import { startCountingProxy } from "./proxy.ts";
import { drain, fillQueue, prepareRetask } from "./retask.ts";
import type { Sql } from "../lib/db/connect.ts";

const TICKS_PER_SECOND = 100; // Linux's USER_HZ, what /proc/<pid>/stat counts in

async function cpuMs(pid: number): Promise<number | null> {
  try {
    const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
    // fields after the command name (which may hold spaces) start at ")"
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return ((Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND) * 1000;
  } catch {
    return null; // gone
  }
}

async function serverStats(sql: Sql) {
  await sql`SELECT pg_stat_clear_snapshot()`;
  const [db] = await sql<{ commits: number; inserted: number; updated: number; hit: number }[]>`
    SELECT xact_commit::float8 AS commits, tup_inserted::float8 AS inserted,
           tup_updated::float8 AS updated, blks_hit::float8 AS hit
    FROM pg_stat_database WHERE datname = current_database()`;
  const functions = await sql<{ name: string; calls: number; self: number; total: number }[]>`
    SELECT funcname AS name, calls::float8 AS calls, self_time AS self, total_time AS total
    FROM pg_stat_user_functions`;
  return { db, functions: new Map(functions.map((f) => [f.name, f])) };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      tasks: { type: "string", default: "10000" },
      "worker-args": { type: "string", default: "" },
      program: { type: "string", default: "noop" },
      "database-url": { type: "string" },
      json: { type: "boolean", default: false },
      "no-proxy": { type: "boolean", default: false },
    },
  });
  const tasks = countFlag("tasks", values.tasks, 10_000_000);
  const program = values.program === "lucky" ? "lucky" : "noop";
  const args = values["worker-args"].split(/\s+/).filter(Boolean);
  dropDatabasesOnSignal();
  const server = await serverUrl(values["database-url"]);
  const report = await withBenchDatabase(server, "profile", async (db) => {
    await db.sql.unsafe(`ALTER DATABASE ${db.name} SET track_functions = 'all'`);
    const programs = await prepareRetask(db);
    await fillQueue(db.sql, programs[program], tasks);
    // the proxy costs CPU and latency of its own: --no-proxy for true speed and CPU figures
    const target = new URL(db.url);
    const proxy = values["no-proxy"]
      ? null
      : startCountingProxy(target.hostname, Number(target.port || 5432));
    const viaProxy = new URL(db.url);
    if (proxy) viaProxy.host = `127.0.0.1:${proxy.port}`;
    const before = await serverStats(db.sql);
    const cpu = new Map<number, number>();
    let done = false;
    let sampler: Promise<void> = Promise.resolve();
    const result = await drain({ ...db, url: viaProxy.toString() }, args, 900_000, (pid, end) => {
      end.finally(() => (done = true)).catch(() => {});
      sampler = (async () => {
        while (!done) {
          const backends = await db.sql<{ pid: number }[]>`
            SELECT pid FROM pg_stat_activity
            WHERE datname = current_database() AND pid <> pg_backend_pid()`;
          for (const p of [pid, ...backends.map((b) => b.pid)]) {
            const ms = await cpuMs(p);
            if (ms !== null) cpu.set(p, Math.max(ms, cpu.get(p) ?? 0));
          }
          await sleep(100);
        }
      })();
    });
    await sampler;
    proxy?.close();
    let after = await serverStats(db.sql);
    for (let i = 0; i < 20; i++) { // backends report their statistics as they exit
      await sleep(250);
      const again = await serverStats(db.sql);
      if (again.db.commits === after.db.commits) break;
      after = again;
    }
    const workerPid = [...cpu.keys()][0];
    const backendCpu = [...cpu].filter(([p]) => p !== workerPid).reduce((s, [, ms]) => s + ms, 0);
    const per = (n: number) => n / tasks;
    const functions = [...after.functions.values()].map((f) => {
      const b = before.functions.get(f.name);
      return {
        name: f.name,
        calls: per(f.calls - (b?.calls ?? 0)),
        selfUs: per(f.self - (b?.self ?? 0)) * 1000,
        totalUs: per(f.total - (b?.total ?? 0)) * 1000,
      };
    }).filter((f) => f.calls > 0).sort((a, b) => b.selfUs - a.selfUs);
    const c = proxy?.counts ??
      { connections: NaN, messages: {}, flights: NaN, bytesUp: NaN, bytesDown: NaN };
    return {
      tasks,
      program,
      args,
      tasksPerSec: result.tasksPerSec,
      throughProxy: proxy !== null,
      perTask: {
        roundTrips: per(c.flights),
        statements: proxy ? per((c.messages.E ?? 0) + (c.messages.Q ?? 0)) : NaN,
        syncs: proxy ? per(c.messages.S ?? 0) : NaN,
        bytes: per(c.bytesUp + c.bytesDown),
        commits: per(after.db.commits - before.db.commits),
        rowsInserted: per(after.db.inserted - before.db.inserted),
        rowsUpdated: per(after.db.updated - before.db.updated),
        bufferHits: per(after.db.hit - before.db.hit),
        workerCpuUs: per(cpu.get(workerPid) ?? 0) * 1000,
        postgresCpuUs: per(backendCpu) * 1000,
      },
      connections: c.connections,
      functions,
    };
  });
  if (values.json) {
    console.log(JSON.stringify(report));
    return;
  }
  const p = report.perTask;
  console.log(
    `${fmt(report.tasks)} ${report.program} tasks at ${fmt(report.tasksPerSec)}/s` +
      ` (retask work --drain ${report.args.join(" ")})` +
      (report.throughProxy
        ? `, ${report.connections} connections, through the counting proxy (slower)\n`
        : "\n"),
  );
  console.log(numberTable(["per task", "value"], [
    ["round trips (client flights)", fmt(p.roundTrips, 3)],
    ["statements", fmt(p.statements, 3)],
    ["commits", fmt(p.commits, 3)],
    ["rows inserted / updated", `${fmt(p.rowsInserted, 2)} / ${fmt(p.rowsUpdated, 2)}`],
    ["shared buffer hits", fmt(p.bufferHits, 1)],
    ["bytes on the wire", fmt(p.bytes)],
    ["worker CPU µs", fmt(p.workerCpuUs)],
    ["PostgreSQL backends' CPU µs", fmt(p.postgresCpuUs)],
  ]));
  console.log("");
  console.log(numberTable(
    ["function", "calls/task", "self µs/task", "total µs/task"],
    report.functions.map((f) => [f.name, fmt(f.calls, 3), fmt(f.selfUs, 1), fmt(f.totalUs, 1)]),
  ));
}

const USAGE = "usage: deno task bench:profile [--tasks <n>] [--program noop|lucky] " +
  '[--worker-args="<flags>"] [--database-url <url>] [--json] [--no-proxy]';

if (import.meta.main) {
  await runScript("bench/profile", USAGE, async () => {
    await main();
    return 0;
  });
}
