// Command-line parsing (cli/parse.ts): no database.
import assert from "node:assert/strict";
import { parseInteger, parseJsonObject, parseProbability, parseRunAfter } from "./parse.ts";
import { RetaskError } from "../lib/errors.ts";

function inputError(fn: () => unknown, pattern: RegExp) {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof RetaskError);
    assert.equal(error.exitCode, 2);
    assert.match(error.message, pattern);
    return true;
  });
}

Deno.test("parseInteger accepts whole numbers in range only", () => {
  assert.equal(parseInteger("--count", "12", { min: 1 }), 12);
  inputError(
    () => parseInteger("--count", "-1", { min: 1 }),
    /--count must be a positive whole number, got "-1"/,
  );
  inputError(() => parseInteger("--count", "0", { min: 1 }), /positive/);
  inputError(() => parseInteger("--count", "1.5", { min: 1 }), /got "1.5"/);
  inputError(() => parseInteger("--count", "1e3", { min: 1 }), /got "1e3"/);
  inputError(() => parseInteger("--port", "70000", { min: 1, max: 65535 }), /from 1 to 65535/);
});

Deno.test("parseProbability", () => {
  assert.equal(parseProbability("-p", "0.25"), 0.25);
  assert.equal(parseProbability("-p", "1"), 1);
  assert.equal(parseProbability("-p", "0"), 0);
  inputError(() => parseProbability("--probability", "1.5"), /from 0 to 1, got "1.5"/);
  inputError(() => parseProbability("--probability", "-0.1"), /from 0 to 1/);
  inputError(() => parseProbability("--probability", "lots"), /from 0 to 1/);
});

Deno.test("parseJsonObject gives the parser's message and the position", () => {
  assert.deepEqual(parseJsonObject("--params", '{"probability": 0.5}'), { probability: 0.5 });
  inputError(
    () => parseJsonObject("--params", "{x"),
    /not valid JSON: .* at position 1 \(line 1 column 2\)/,
  );
  inputError(
    () => parseJsonObject("--params", '{"a": tru}'),
    /Unexpected token '}' in JSON at position 9 \(line 1 column 10\)$/,
  );
  inputError(
    () => parseJsonObject("--params", "abc"),
    /Unexpected token 'a' in JSON at position 0/,
  );
  inputError(() => parseJsonObject("--params", ""), /Unexpected end of JSON input at position 0/);
  inputError(
    () => parseJsonObject("--params", '{"a":\n 1 x}'),
    /at position 9 \(line 2 column 4\)/,
  );
  inputError(() => parseJsonObject("--params", "[1]"), /must be a JSON object .* got an array/);
  inputError(() => parseJsonObject("--params", "null"), /got null/);
  inputError(() => parseJsonObject("--params", '"s"'), /got string/);
});

Deno.test("parseRunAfter takes ISO times and delays", () => {
  const now = new Date("2030-01-01T00:00:00Z");
  assert.equal(parseRunAfter("--run-after", "90s", now).toISOString(), "2030-01-01T00:01:30.000Z");
  assert.equal(parseRunAfter("--run-after", "2h", now).toISOString(), "2030-01-01T02:00:00.000Z");
  assert.equal(
    parseRunAfter("--run-after", "2031-05-06T07:08:09Z", now).toISOString(),
    "2031-05-06T07:08:09.000Z",
  );
  inputError(() => parseRunAfter("--run-after", "soon", now), /ISO date-time/);
  inputError(() => parseRunAfter("--run-after", "2031-13-45", now), /ISO date-time/);
  // a day that does not exist is a typo, not the 3rd of March
  inputError(() => parseRunAfter("--run-after", "2030-02-31", now), /ISO date-time/);
  inputError(() => parseRunAfter("--run-after", "2030-02-31T10:00:00Z", now), /ISO date-time/);
  // a delay past what a date holds
  inputError(() => parseRunAfter("--run-after", "99999999d", now), /ISO date-time/);
});
