/**
 * Running the Node.js queues: graphile-worker and pg-boss need Node.js 22
 * (`npx -y node@22` brings it; the system's node may be older) and their npm
 * packages, installed at run time into a cache directory outside the
 * repository, with the scripts of this folder copied next to them so Node
 * resolves the packages from there.
 * @module
 */
import { join } from "node:path";

/** The npm packages compared, as version ranges: the latest of each range is installed. */
export const NODE_PACKAGES: Record<string, string> = {
  "graphile-worker": "0.18",
  "pg-boss": "12",
};

/** An installed Node.js environment for the comparison scripts. */
export interface NodeEnv {
  /** Absolute path of the Node.js 22 binary. */
  node: string;
  /** Directory holding node_modules and the copied scripts. */
  dir: string;
  /** Exact installed version per package, e.g. `{ "pg-boss": "12.38.0" }`. */
  versions: Record<string, string>;
  nodeVersion: string;
}

/** `$XDG_CACHE_HOME/retask-bench`, else `~/.cache/retask-bench`, else a temp dir. */
export function cacheDir(): string {
  const xdg = Deno.env.get("XDG_CACHE_HOME");
  if (xdg) return join(xdg, "retask-bench");
  const home = Deno.env.get("HOME");
  if (home) return join(home, ".cache", "retask-bench");
  return join(Deno.makeTempDirSync({ prefix: "retask-bench-" }));
}

async function run(cmd: string, args: string[], cwd?: string, timeoutMs = 300_000) {
  const out = await new Deno.Command(cmd, {
    args,
    cwd,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(timeoutMs),
  }).output();
  const text = new TextDecoder();
  if (!out.success) {
    throw new Error(`${cmd} ${args.join(" ")} failed: ${text.decode(out.stderr).trim()}`);
  }
  return text.decode(out.stdout).trim();
}

/**
 * Installs (or refreshes to the latest in range) the packages into `dir`, finds
 * Node.js 22 and copies the scripts. Each call asks npm again, so a run always
 * measures the newest 0.18.x and 12.x.
 */
export async function prepareNode(dir: string = cacheDir()): Promise<NodeEnv> {
  await Deno.mkdir(dir, { recursive: true });
  // a package.json of its own keeps npm from walking up into a parent project
  const pkg = join(dir, "package.json");
  try {
    await Deno.stat(pkg);
  } catch {
    await Deno.writeTextFile(pkg, JSON.stringify({ name: "retask-bench-node", private: true }));
  }
  const specs = Object.entries(NODE_PACKAGES).map(([name, range]) => `${name}@${range}`);
  await run("npm", [
    "install",
    "--prefix",
    dir,
    "--no-audit",
    "--no-fund",
    "--loglevel=error",
    ...specs,
  ]);
  const node = await run("npx", ["-y", "node@22", "-p", "process.execPath"]);
  const nodeVersion = await run(node, ["--version"]);
  for (const entry of Deno.readDirSync(new URL("./", import.meta.url))) {
    if (entry.name.endsWith(".mjs")) {
      await Deno.copyFile(new URL(entry.name, import.meta.url), join(dir, entry.name));
    }
  }
  const versions: Record<string, string> = {};
  for (const name of Object.keys(NODE_PACKAGES)) {
    const meta = JSON.parse(
      await Deno.readTextFile(join(dir, "node_modules", name, "package.json")),
    );
    versions[name] = meta.version;
  }
  return { node, dir, versions, nodeVersion };
}

/** What a Node script reports for one phase (see harness.mjs). */
export interface NodePhaseResult {
  jobs: number;
  /** Handler calls, and distinct job ids among them. */
  calls: number;
  distinct: number;
  /** Jobs not completed in the database at the end. */
  remaining: number;
  /** Drain time, first handler start to the last completion committed. */
  seconds?: number;
  /** Enqueue-to-start per job, for the latency phase. */
  latenciesMs?: number[];
  /** pg-boss only: jobs in state `completed`. */
  completed?: number;
}

/** Runs `script` (e.g. `pg_boss.mjs`) for one phase with `config`; kills it after `timeoutMs`. */
export async function runNodePhase(
  env: NodeEnv,
  script: string,
  config: Record<string, unknown>,
  timeoutMs: number,
): Promise<NodePhaseResult> {
  const out = await new Deno.Command(env.node, {
    args: [script],
    cwd: env.dir,
    env: { BENCH_CONFIG: JSON.stringify({ ...config, timeoutMs }) },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(timeoutMs + 30_000),
  }).output();
  const text = new TextDecoder();
  const stderr = text.decode(out.stderr).trim();
  if (!out.success) {
    throw new Error(`${script} (${config.mode}) exited ${out.code}: ${stderr.slice(-2000)}`);
  }
  if (stderr) console.error(stderr.split("\n").map((l) => `  ${script}: ${l}`).join("\n"));
  const lines = text.decode(out.stdout).trim().split("\n");
  return JSON.parse(lines[lines.length - 1]) as NodePhaseResult;
}
