// Text formatting (cli/format.ts): no database.
import assert from "node:assert/strict";
import {
  escapeControl,
  formatDuration,
  formatIdRanges,
  palette,
  progressBar,
  renderTable,
  stripAnsi,
  truncate,
  visibleLength,
} from "./format.ts";

Deno.test("palette colours only when enabled", () => {
  assert.equal(palette(false).red("x"), "x");
  assert.equal(palette(true).red("x"), "\x1b[31mx\x1b[39m");
  assert.equal(visibleLength(palette(true).bold("Мне повезло")), 11);
});

Deno.test("renderTable pads by visible width and cuts the last column", () => {
  const paint = palette(true);
  const lines = renderTable(["id", "status", "result"], [
    ["7", paint.green("finished"), "Мне повезло"],
    ["12", paint.red("error"), "division by zero"],
  ], { align: ["right"] });
  assert.deepEqual(lines.map(stripAnsi), [
    "id  status    result",
    " 7  finished  Мне повезло",
    "12  error     division by zero",
  ]);
  const cut = renderTable(["id", "result"], [["1", "a long result that will not fit"]], {
    maxWidth: 16,
  });
  assert.deepEqual(cut, ["id  result", "1   a long resu…"]);
});

Deno.test("durations, id ranges, progress bar, truncation", () => {
  assert.equal(formatDuration(null), "");
  assert.equal(formatDuration(850.4), "850ms");
  assert.equal(formatDuration(1234), "1.2s");
  assert.equal(formatDuration(42_000), "42s");
  assert.equal(formatDuration(185_000), "3m 05s");
  assert.equal(formatDuration(2 * 3600e3 + 7 * 60e3), "2h 07m");
  assert.equal(formatDuration(3 * 86400e3 + 4 * 3600e3), "3d 4h");
  assert.equal(formatIdRanges([5, 1, 2, 3, 7, 8]), "1-3, 5, 7-8");
  assert.equal(progressBar(0, 10, 10), "[..........]  0/10   0%");
  assert.equal(progressBar(5, 10, 10), "[#####.....]  5/10  50%");
  assert.equal(progressBar(10, 10, 10), "[##########] 10/10 100%");
  assert.equal(truncate("abcdef", 4), "abc…");
  assert.equal(truncate("abc", 4), "abc");
});

Deno.test("escapeControl shows control characters and bidi overrides as escapes", () => {
  assert.equal(escapeControl("plain Мне повезло \\x1b"), "plain Мне повезло \\x1b");
  assert.equal(
    escapeControl("\x1b]0;pwned\x07\x1b[2J\bback\x7f\x9b1m\u202eevil"),
    "\\x1b]0;pwned\\x07\\x1b[2J\\x08back\\x7f\\x9b1m\\u202eevil",
  );
  assert.equal(escapeControl("a\nb\r\tc\u2066\u200f"), "a\\nb\\r\\tc\\u2066\\u200f");
  assert.equal(escapeControl("a\nb\r\x1b", { keepNewlines: true }), "a\nb\\r\\x1b");
});
