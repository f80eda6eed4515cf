// The worker's wake-up call. No database.
import assert from "node:assert/strict";
import { Wake } from "./wake.ts";

// True if `sleep` ends before a second passes: the hour-long sleeps below must
// end because of the ring or the abort, never by running out.
function endsEarly(sleep: Promise<void>): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const second = new Promise<boolean>((resolve) => (timer = setTimeout(resolve, 1_000, false)));
  return Promise.race([sleep.then(() => true), second]).finally(() => clearTimeout(timer));
}

Deno.test("a wake-up rung before the sleep is not missed", async () => {
  const HOUR = 3_600_000;
  const wake = new Wake();
  wake.ring();
  assert.ok(await endsEarly(wake.sleep(HOUR)), "a ring before the sleep ends it");
  const later = wake.sleep(HOUR);
  wake.ring();
  assert.ok(await endsEarly(later), "a ring during the sleep ends it");
  const controller = new AbortController();
  const aborted = wake.sleep(HOUR, controller.signal);
  controller.abort();
  assert.ok(await endsEarly(aborted), "an abort ends it");
  const idle = new AbortController();
  assert.equal(await endsEarly(wake.sleep(HOUR, idle.signal)), false, "unrung, it goes on");
  idle.abort();
});
