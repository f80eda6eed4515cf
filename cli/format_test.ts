// Text formatting (cli/format.ts): no database.
import assert from "node:assert/strict";
import {
  formatDuration,
  formatIdRanges,
  palette,
  progressBar,
  renderTable,
  resultSummary,
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

Deno.test("resultSummary skips the attempt line and a table's header", () => {
  assert.equal(resultSummary(null), "");
  assert.equal(
    resultSummary("attempt 1 of 3\nretask_lucky\n------------\nМне повезло \n"),
    "Мне повезло",
  );
  assert.equal(resultSummary("attempt 1 of 3\n a  b\n-- --\n"), "(no rows)");
  assert.equal(
    resultSummary("attempt 3 of 3\ndivision by zero\nPL/pgSQL function"),
    "division by zero",
  );
  assert.equal(resultSummary("plain text from an old row"), "plain text from an old row");
});
