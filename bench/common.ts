/**
 * What bench/bench.ts and bench/compare.ts share: a fresh database per
 * measurement (from the harness in tests/harness/, which the tests use too), a
 * wall clock that PostgreSQL agrees with, percentiles, the machine's
 * description, and the scripts' flags and exit codes.
 * @module
 */
import { client } from "../lib/db/connect.ts";
import { RetaskError } from "../lib/errors.ts";
import { type Align, renderTable } from "../cli/format.ts";
import { parseInteger } from "../cli/parse.ts";
import { sleep } from "../lib/worker/wake.ts";
import { type FreshDatabase, withFreshDatabase } from "../tests/harness/mod.ts";

/**
 * Runs `fn` on a database of its own, `retask_bench_<label>_<random>` on
 * `server`, and always drops it, so no two measurements (or two people
 * benchmarking at once) share state and a failed one leaves nothing behind.
 */
export function withBenchDatabase<T>(
  server: string,
  label: string,
  fn: (db: FreshDatabase) => Promise<T>,
): Promise<T> {
  const options = { server, prefix: "retask_bench_", max: 4, applicationName: "retask-bench" };
  return withFreshDatabase(label, options, fn);
}

/**
 * Wall-clock milliseconds with sub-millisecond resolution, comparable with
 * PostgreSQL's clock_timestamp() on the same machine (both read the system
 * clock). Date.now() rounds to whole milliseconds, too coarse for latencies.
 */
export function wallClockMs(): number {
  return performance.timeOrigin + performance.now();
}

/** Nearest-rank percentile `p` (0-100) of `values`; NaN when empty. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1];
}

/** Median of `values`. */
export function median(values: readonly number[]): number {
  return percentile(values, 50);
}

export { sleep };

/** Throws with `message` unless `ok`: a benchmark that silently ran nothing is worse than none. */
export function verify(ok: boolean, message: string): void {
  if (!ok) throw new Error(`validation failed: ${message}`);
}

/** The machine and server a run was measured on. */
export interface Machine {
  cpus: number;
  loadAverage: number[];
  postgres: string;
  settings: Record<string, string>;
}

const SETTINGS = [
  "shared_buffers",
  "synchronous_commit",
  "max_connections",
  "fsync",
  "wal_level",
  "shared_preload_libraries",
];

/** Describes the machine (cores, load) and the server (version, settings that matter here). */
export async function describeMachine(server: string): Promise<Machine> {
  const sql = client(server, { max: 1 });
  try {
    const [{ version }] = await sql<{ version: string }[]>`SELECT version()`;
    const rows = await sql<{ name: string; setting: string }[]>`
      SELECT name, current_setting(name) AS setting FROM pg_settings WHERE name = ANY(${SETTINGS})`;
    return {
      cpus: navigator.hardwareConcurrency,
      loadAverage: Deno.loadavg().map((l) => Math.round(l * 100) / 100),
      postgres: version.replace(/ on .*/, ""),
      settings: Object.fromEntries(rows.map((r) => [r.name, r.setting])),
    };
  } finally {
    await sql.end();
  }
}

/** One line about the machine, for the top of a printed report. */
export function machineLine(m: Machine): string {
  const s = Object.entries(m.settings).filter(([, v]) => v !== "").map(([k, v]) => `${k}=${v}`);
  return `${m.cpus} CPUs, load ${m.loadAverage.join(" ")}; ${m.postgres}; ${s.join(", ")}`;
}

/** A table of numbers: right-aligned except the first column, unless `align` says otherwise. */
export function numberTable(
  headers: string[],
  rows: string[][],
  align: Align[] = headers.map((_, i) => i === 0 ? "left" : "right"),
): string {
  return renderTable(headers, rows, { align }).join("\n");
}

/** A number for a table: thousands separated, `digits` decimals; `—` for NaN. */
export function fmt(value: number | null | undefined, digits = 0): string {
  if (value === null || value === undefined || Number.isNaN(value)) return "—";
  return value.toLocaleString("en-US", {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
}

/** A flag's whole number from 1 to `max`; anything else is a usage error. */
export function countFlag(flag: string, text: string, max = 100_000_000): number {
  return parseInteger(`--${flag}`, text, { min: 1, max, code: "usage" });
}

/** A usage error of a benchmark script: bad flags (exit 2, with the usage). */
export function usageError(message: string): RetaskError {
  return new RetaskError("usage", message);
}

/**
 * Runs a benchmark script's `main` and exits with its code: 2 with the usage
 * after a usage error (from {@link countFlag}, {@link usageError} or parseArgs),
 * 1 after any other error.
 */
export async function runScript(
  name: string,
  usage: string,
  main: () => Promise<number>,
): Promise<never> {
  try {
    Deno.exit(await main());
  } catch (error) {
    const bad = (error instanceof RetaskError && error.code === "usage") ||
      String((error as { code?: string }).code).startsWith("ERR_PARSE_ARGS");
    console.error(`${name}: ${error instanceof Error ? error.message : String(error)}`);
    if (bad) console.error(usage);
    Deno.exit(bad ? 2 : 1);
  }
}
