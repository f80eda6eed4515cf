/**
 * Text for people: colours that honour `NO_COLOR` and pipes, tables, durations,
 * timestamps, progress bars. The reverse, command-line text into checked
 * values, is parse.ts.
 * @module
 */
/** Styles text with ANSI colours, or leaves it alone when colour is off. */
export interface Palette {
  enabled: boolean;
  bold(text: string): string;
  dim(text: string): string;
  red(text: string): string;
  green(text: string): string;
  yellow(text: string): string;
  blue(text: string): string;
  cyan(text: string): string;
}

/** True when output to `stream` should be coloured: a terminal, and `NO_COLOR` unset or empty. */
function colorEnabled(stream: { isTerminal(): boolean } = Deno.stdout): boolean {
  // https://no-color.org: any non-empty value turns colour off
  if (Deno.env.get("NO_COLOR")) return false;
  return stream.isTerminal();
}

/** A palette that colours when `enabled` (default: {@link colorEnabled} for stdout). */
export function palette(enabled: boolean = colorEnabled()): Palette {
  const style = (open: number, close: number) => (text: string) =>
    enabled ? `\x1b[${open}m${text}\x1b[${close}m` : text;
  return {
    enabled,
    bold: style(1, 22),
    dim: style(2, 22),
    red: style(31, 39),
    green: style(32, 39),
    yellow: style(33, 39),
    blue: style(34, 39),
    cyan: style(36, 39),
  };
}

// deno-lint-ignore no-control-regex
const ANSI = /\x1b\[[0-9;]*m/g;

/** `text` without its ANSI colour codes. */
export function stripAnsi(text: string): string {
  return text.replace(ANSI, "");
}

/** Characters a terminal shows for `text`: ANSI codes removed, code points counted. */
export function visibleLength(text: string): number {
  return [...stripAnsi(text)].length;
}

/** Shortens `text` to `max` visible characters, ending in "…" when cut. */
export function truncate(text: string, max: number): string {
  const chars = [...text];
  return chars.length <= max ? text : chars.slice(0, Math.max(0, max - 1)).join("") + "…";
}

/** Column alignment for {@link renderTable}. */
export type Align = "left" | "right";

/** Options for {@link renderTable}. */
export interface TableOptions {
  /** Per column; default left. */
  align?: Align[];
  /** Makes the header bold when colour is on. */
  paint?: Palette;
  /** Cuts the last column (which must be uncoloured) so lines fit this width. */
  maxWidth?: number;
}

/**
 * Lays rows out in columns two spaces apart, padding by visible width so
 * coloured cells line up. Returns the lines, header first.
 */
export function renderTable(
  headers: string[],
  rows: string[][],
  options: TableOptions = {},
): string[] {
  const last = headers.length - 1;
  if (options.maxWidth !== undefined) {
    const others = headers.slice(0, last).reduce(
      (sum, h, c) => sum + 2 + Math.max(visibleLength(h), ...rows.map((r) => visibleLength(r[c]))),
      0,
    );
    const room = Math.max(visibleLength(headers[last]), options.maxWidth - others);
    rows = rows.map((r) => [...r.slice(0, last), truncate(r[last], room)]);
  }
  const widths = headers.map((h, c) =>
    Math.max(visibleLength(h), ...rows.map((r) => visibleLength(r[c] ?? "")))
  );
  const line = (cells: string[]) =>
    cells.map((cell, c) => {
      const pad = " ".repeat(widths[c] - visibleLength(cell));
      if (options.align?.[c] === "right") return pad + cell;
      return c === last ? cell : cell + pad;
    }).join("  ").trimEnd();
  const header = line(headers);
  return [options.paint ? options.paint.bold(header) : header, ...rows.map(line)];
}

/** A duration for people: `850ms`, `1.2s`, `3m 05s`, `2h 07m`, `3d 4h`. */
export function formatDuration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return "";
  if (ms < 0) ms = 0;
  if (ms < 1000) return `${Math.round(ms)}ms`;
  const seconds = ms / 1000;
  if (seconds < 60) return `${seconds < 10 ? seconds.toFixed(1) : Math.round(seconds)}s`;
  const two = (n: number) => String(n).padStart(2, "0");
  const whole = Math.round(seconds);
  if (whole < 3600) return `${Math.floor(whole / 60)}m ${two(whole % 60)}s`;
  if (whole < 86400) return `${Math.floor(whole / 3600)}h ${two(Math.floor(whole / 60) % 60)}m`;
  return `${Math.floor(whole / 86400)}d ${Math.floor(whole / 3600) % 24}h`;
}

const INTERVAL = /^(?:[+-]?\d+ (?:years?|mons?|days?) ?)*(?:[+-]?\d+:\d\d:\d\d(?:\.\d+)?)?$/;

/**
 * A PostgreSQL interval as it prints (`1 day 02:30:00`) in words: `1 day 2 hours 30 minutes`,
 * `0 seconds` for none. Text in another interval style comes back as it is.
 */
export function formatInterval(text: string): string {
  const trimmed = text.trim();
  if (!INTERVAL.test(trimmed)) return text;
  const words = (n: number, unit: string) => `${n} ${unit}${n === 1 ? "" : "s"}`;
  const parts: string[] = [];
  for (const [, n, unit] of trimmed.matchAll(/([+-]?\d+) (year|mon|day)s?/g)) {
    parts.push(words(Number(n), unit === "mon" ? "month" : unit));
  }
  const time = /([+-]?)(\d+):(\d\d):(\d\d(?:\.\d+)?)$/.exec(trimmed);
  if (time) {
    const [h, m, s] = time.slice(2).map((v) => Number(`${time[1]}${v}`));
    if (h) parts.push(words(h, "hour"));
    if (m) parts.push(words(m, "minute"));
    if (s) parts.push(words(s, "second"));
  }
  return parts.length > 0 ? parts.join(" ") : "0 seconds";
}

/** A timestamp in local time, `YYYY-MM-DD HH:MM:SS`; empty for none. */
export function formatTimestamp(date: Date | null | undefined): string {
  if (!date) return "";
  const two = (n: number) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${two(date.getMonth() + 1)}-${two(date.getDate())} ` +
    `${two(date.getHours())}:${two(date.getMinutes())}:${two(date.getSeconds())}`;
}

/** A share as a percentage with one decimal: `0.147` → `14.7%`. */
export function formatPercent(share: number): string {
  return `${(share * 100).toFixed(1)}%`;
}

/** Ids as ranges: `[1, 2, 3, 7]` → `1-3, 7`. */
export function formatIdRanges(ids: readonly number[]): string {
  const sorted = [...ids].sort((a, b) => a - b);
  const parts: string[] = [];
  for (let i = 0; i < sorted.length; i++) {
    const start = sorted[i];
    while (i + 1 < sorted.length && sorted[i + 1] === sorted[i] + 1) i++;
    parts.push(start === sorted[i] ? String(start) : `${start}-${sorted[i]}`);
  }
  return parts.join(", ");
}

/** `[#######.......]  412/1000  41%`, `width` characters of bar. */
export function progressBar(done: number, total: number, width = 30): string {
  const share = total > 0 ? Math.min(1, done / total) : 1;
  const filled = Math.round(share * width);
  return `[${"#".repeat(filled)}${".".repeat(width - filled)}] ` +
    `${String(done).padStart(String(total).length)}/${total} ${
      String(Math.floor(share * 100)).padStart(3)
    }%`;
}

// C0 controls, DEL and C1 controls; bidi marks, embeddings, overrides and isolates; the
// Unicode line and paragraph separators. Any of them lets text from the database move the
// cursor, clear the screen, set the title, or show something other than what is stored.
// deno-lint-ignore no-control-regex
const CONTROL = /[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
const NAMED: Record<string, string> = { "\n": "\\n", "\r": "\\r", "\t": "\\t" };

function visibleEscape(char: string): string {
  const code = char.charCodeAt(0);
  return NAMED[char] ??
    (code <= 0xff ? `\\x${code.toString(16).padStart(2, "0")}` : `\\u${code.toString(16)}`);
}

/**
 * `text` (anything that came from the database: names, params, results, errors) made safe for a
 * terminal: control characters and bidi overrides as visible escapes (`\x1b`, `\n`, `\u202e`).
 * With `keepNewlines`, for text shown as several lines on purpose, newlines stay.
 * Backslashes are left alone, so `\x1b` may also be text that was stored as it; `--json` tells.
 */
export function escapeControl(text: string, options: { keepNewlines?: boolean } = {}): string {
  return text.replace(
    CONTROL,
    (char) => char === "\n" && options.keepNewlines ? char : visibleEscape(char),
  );
}
