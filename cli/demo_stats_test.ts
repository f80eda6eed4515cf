// The demo's statistics (cli/demo_stats.ts): no database.
import assert from "node:assert/strict";
import { chiSquareSurvival, chiSquareTest, expectedShares } from "./demo_stats.ts";

const close = (actual: number, expected: number, tolerance = 1e-4) =>
  assert.ok(
    Math.abs(actual - expected) <= tolerance,
    `${actual} is not within ${tolerance} of ${expected}`,
  );

Deno.test("expected shares for 3 attempts", () => {
  const shares = expectedShares(0.3);
  [0.3, 0.21, 0.147, 0.343].forEach((share, i) => close(shares[i], share, 1e-12));
  close(shares.reduce((a, b) => a + b), 1, 1e-12);
  assert.deepEqual(expectedShares(1), [1, 0, 0, 0]);
  assert.deepEqual(expectedShares(0), [0, 0, 0, 1]);
});

Deno.test("chi-square survival matches the textbook critical values", () => {
  // (x, df, P(X >= x)) from standard tables
  const table: [number, number, number][] = [
    [0.584, 3, 0.90],
    [7.815, 3, 0.05],
    [11.345, 3, 0.01],
    [16.266, 3, 0.001],
    [3.841, 1, 0.05],
    [5.991, 2, 0.05],
    [9.488, 4, 0.05],
  ];
  for (const [x, df, p] of table) close(chiSquareSurvival(x, df), p, p * 2e-3);
  close(chiSquareSurvival(50, 3), 7.98918e-11, 1e-15);
  assert.equal(chiSquareSurvival(0, 3), 1);
  assert.equal(chiSquareSurvival(Infinity, 3), 0);
  assert.throws(() => chiSquareSurvival(1, 0), RangeError);
});

Deno.test("goodness of fit", () => {
  const exact = chiSquareTest([300, 210, 147, 343], expectedShares(0.3));
  assert.equal(exact.degreesOfFreedom, 3);
  close(exact.statistic, 0, 1e-9);
  close(exact.pValue!, 1, 1e-9);
  assert.equal(exact.approximate, false);

  const skewed = chiSquareTest([500, 100, 100, 300], expectedShares(0.3));
  assert.ok(skewed.pValue! < 1e-10, "far off the expected shares");

  // p = 1: only "attempt 1" can happen, so there is nothing to test
  const certain = chiSquareTest([20, 0, 0, 0], expectedShares(1));
  assert.deepEqual(certain, {
    statistic: 0,
    degreesOfFreedom: 0,
    pValue: null,
    approximate: false,
  });
  const impossible = chiSquareTest([19, 1, 0, 0], expectedShares(1));
  assert.equal(impossible.pValue, 0);

  assert.equal(chiSquareTest([3, 2, 1, 4], expectedShares(0.3)).approximate, true);
});
