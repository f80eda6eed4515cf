/**
 * The demo's statistics: the shares of runs the retry rule predicts for each
 * attempt, and a chi-square goodness-of-fit test of what was observed.
 * @module
 */
/** Attempts per demo task: the seed's "no more than three times". */
export const DEMO_ATTEMPTS = 3;

/**
 * Shares of runs that finish on attempt 1..n, then the share that fails all n:
 * `p, (1-p)p, (1-p)²p, …, (1-p)ⁿ`.
 */
export function expectedShares(probability: number, attempts = DEMO_ATTEMPTS): number[] {
  const shares = [];
  for (let k = 0; k < attempts; k++) shares.push((1 - probability) ** k * probability);
  shares.push((1 - probability) ** attempts);
  return shares;
}

/** erfc(x) for x ≥ 0, relative error below 1.2e-7 (Numerical Recipes' `erfcc`). */
function erfc(x: number): number {
  const t = 1 / (1 + x / 2);
  const poly = -x * x - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 +
                t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 +
                                t * (-0.82215223 + t * 0.17087277))))))));
  return t * Math.exp(poly);
}

/**
 * P(X ≥ x) for X chi-square distributed with `df` (a whole number ≥ 1) degrees
 * of freedom, in closed form: for df = 3, erfc(√(x/2)) + √(2x/π)·e^(−x/2); each
 * further two degrees add a term (x/2)^(k/2)·e^(−x/2) / Γ(k/2 + 1).
 */
export function chiSquareSurvival(x: number, df: number): number {
  if (!Number.isInteger(df) || df < 1) {
    throw new RangeError(`df must be a whole number ≥ 1, got ${df}`);
  }
  if (!(x > 0)) return 1;
  if (x === Infinity) return 0;
  const half = x / 2;
  const odd = df % 2 === 1;
  let q = odd ? erfc(Math.sqrt(half)) : Math.exp(-half);
  // the term for k: (x/2)^(k/2) e^(-x/2) / Γ(k/2 + 1); the next is this · (x/2) / (k/2 + 1)
  let term = odd
    ? Math.sqrt(half) * Math.exp(-half) / (Math.sqrt(Math.PI) / 2)
    : half * Math.exp(-half);
  for (let k = odd ? 1 : 2; k < df; k += 2) {
    q += term;
    term *= half / (k / 2 + 1);
  }
  return Math.min(1, Math.max(0, q));
}

/** A chi-square goodness-of-fit test of counts against expected shares. */
export interface GoodnessOfFit {
  /** Σ (observed − expected)² / expected over the outcomes that can happen. */
  statistic: number;
  /** Outcomes that can happen, minus one. */
  degreesOfFreedom: number;
  /** P(a fit this bad or worse | the shares are right); null with under two possible outcomes. */
  pValue: number | null;
  /** Some expected count is below 5, where the test is only approximate. */
  approximate: boolean;
}

/** Tests `observed` counts against `shares` (summing to 1), skipping impossible outcomes. */
export function chiSquareTest(
  observed: readonly number[],
  shares: readonly number[],
): GoodnessOfFit {
  const total = observed.reduce((a, b) => a + b, 0);
  let statistic = 0;
  let possible = 0;
  let approximate = false;
  observed.forEach((count, i) => {
    const expected = total * shares[i];
    if (expected === 0) {
      if (count > 0) statistic = Infinity; // an impossible outcome happened
      return;
    }
    possible++;
    if (expected < 5) approximate = true;
    statistic += (count - expected) ** 2 / expected;
  });
  const degreesOfFreedom = Math.max(0, possible - 1);
  const pValue = statistic === Infinity
    ? 0
    : degreesOfFreedom === 0
    ? null
    : chiSquareSurvival(statistic, degreesOfFreedom);
  return { statistic, degreesOfFreedom, pValue, approximate };
}
