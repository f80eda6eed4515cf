/**
 * `retask demo`: the seed's check in one command. Runs `retask.lucky` many
 * times through the queue and the worker, prints on which attempt the runs
 * ended beside the expected shares, and shows two tasks' attempts.
 * @module
 */
import { Command } from "npm:commander@14.0.3";
import { type DemoResult, runDemo } from "../cli/demo.ts";
import {
  formatDuration,
  formatPercent,
  type Palette,
  palette,
  progressBar,
  renderTable,
} from "../cli/format.ts";
import { parseInteger, parseProbability } from "../cli/parse.ts";
import { describeDatabase } from "../lib/db/connect.ts";
import { getTask } from "../lib/queue/read.ts";
import { printJson, schemaOf, withDatabase } from "../cli/common.ts";
import { DETAIL_RESULT_CHARS, renderTaskDetail } from "./status.ts";

interface DemoFlags {
  runs?: string;
  probability?: string;
  concurrency?: string;
  json?: boolean;
}

/** A progress bar redrawn in place on stderr, when stderr is a terminal. */
interface Progress {
  draw?: (done: number, total: number) => void;
  /** Ends a bar left half-drawn (by an error or Ctrl-C) so the next line starts clean. */
  end(): void;
}

function progressBarOnStderr(): Progress {
  if (!Deno.stderr.isTerminal()) return { end() {} };
  const encoder = new TextEncoder();
  const write = (text: string) => Deno.stderr.writeSync(encoder.encode(text));
  const started = performance.now();
  let drawn = 0;
  let open = false;
  return {
    draw(done, total) {
      // at most 20 redraws a second, and always the last one
      if (done < total && performance.now() - drawn < 50) return;
      drawn = performance.now();
      const line = `${progressBar(done, total)}  ${formatDuration(performance.now() - started)}`;
      open = done < total;
      // carriage return + clear line: the bar overwrites itself
      write(`\r\x1b[2K${line}${open ? "" : "\n"}`);
    },
    end() {
      if (open) write("\n");
      open = false;
    },
  };
}

/** The distribution table, the fit, and what it means. */
function renderResult(result: DemoResult, paint: Palette): string {
  const rows = result.rows.map((row) => [
    row.outcome,
    String(row.observed),
    formatPercent(row.observed / result.runs),
    formatPercent(row.expected_share),
  ]);
  rows.push(["total", String(result.runs), formatPercent(1), formatPercent(1)]);
  const table = renderTable(["outcome", "runs", "share", "expected"], rows, {
    align: ["left", "right", "right", "right"],
    paint,
  });
  const p = result.p_value;
  let verdict: string;
  if (p === null) {
    verdict =
      `only one outcome is possible with probability ${result.probability}: nothing to test`;
  } else {
    const fit = p >= 0.01
      ? paint.green("the counts fit the expected shares")
      : paint.red("the counts do not fit the expected shares: check the retry logic");
    const approximate = result.approximate ? " (few runs: approximate)" : "";
    verdict = `chi-square ${result.chi_square.toFixed(2)} with ${result.degrees_of_freedom} ` +
      `degrees of freedom: p = ${
        p < 0.001 ? p.toExponential(1) : p.toFixed(3)
      }${approximate}; ${fit}`;
  }
  return [...table, "", verdict].join("\n");
}

/** Builds the `demo` subcommand. */
export function demoCommand(): Command {
  return new Command("demo")
    .description(
      "run retask.lucky (succeeds with probability P) many times, retrying up to 3 attempts, " +
        "and compare on which attempt the runs ended with the expected shares",
    )
    .option("--runs <n>", "tasks to run, 1 to 100000 (default 100)")
    .option("--probability <p>", "chance that one attempt succeeds, 0 to 1 (default 0.3)")
    .option("--concurrency <n>", "tasks the in-process worker runs at once, 1 to 64 (default 4)")
    .option("--json", "print the result as one JSON object (no progress bar, no task details)")
    .action(async (flags: DemoFlags, command: Command) => {
      const schema = schemaOf(command);
      const runs = parseInteger("--runs", flags.runs ?? "100", { min: 1, max: 100_000 });
      const probability = parseProbability("--probability", flags.probability ?? "0.3");
      const concurrency = parseInteger("--concurrency", flags.concurrency ?? "4", {
        min: 1,
        max: 64,
      });
      const paint = palette();
      const stop = new AbortController();
      const progress = flags.json ? { end() {} } as Progress : progressBarOnStderr();
      const interrupt = () => stop.abort();
      Deno.addSignalListener("SIGINT", interrupt);
      try {
        await withDatabase(command, async (db) => {
          if (!flags.json) {
            console.log(
              `retask demo: ${runs} runs of retask.lucky (succeeds with probability ` +
                `${probability}), at most 3 attempts each, ${concurrency} at a time`,
            );
            console.log(paint.dim(`database: ${describeDatabase(db)}`));
          }
          const result = await runDemo(db.sql, {
            schema,
            runs,
            probability,
            concurrency,
            signal: stop.signal,
            onProgress: progress.draw,
          });
          if (flags.json) return printJson(result);
          console.log(
            `\n${runs} runs (tasks ${result.first_task_id}-${result.last_task_id}) ended in ` +
              `${formatDuration(result.elapsed_ms)}\n`,
          );
          console.log(renderResult(result, paint));
          const examples = [
            ["two", result.examples.two_attempts, probability === 0 || probability === 1],
            ["three", result.examples.three_attempts, probability === 1],
          ] as const;
          for (const [count, taskId, impossible] of examples) {
            console.log(`\n${paint.bold(`A task that needed ${count} attempts:`)}`);
            const why = impossible ? "impossible with this probability" : "by chance";
            console.log(
              taskId === null
                ? `  none in this run (${why})`
                : `${paint.dim(`$ retask status ${taskId}`)}\n` +
                  renderTaskDetail(
                    await getTask(db.sql, taskId, { schema, maxResultChars: DETAIL_RESULT_CHARS }),
                    paint,
                  ),
            );
          }
        });
      } finally {
        progress.end();
        Deno.removeSignalListener("SIGINT", interrupt);
      }
    });
}
