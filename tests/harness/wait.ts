/**
 * Waiting for an event with a deadline, never for a fixed time.
 * @module
 */
import { sleep } from "../../lib/worker/wake.ts";

/**
 * Polls `check` every `everyMs` until it returns a truthy value, and returns
 * that value; throws after `timeoutMs` saying `what` did not happen.
 */
export async function waitFor<T>(
  check: () => T | Promise<T>,
  what: string,
  timeoutMs = 20_000,
  everyMs = 50,
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  while (true) {
    const value = await check();
    if (value) return value as NonNullable<T>;
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    }
    await sleep(everyMs);
  }
}
