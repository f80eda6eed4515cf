import assert from "node:assert/strict";
import type { WorkerLog } from "./outcome.ts";
import { TakingPause } from "./pause.ts";

function pauseAt() {
  const clock = { now: 0 };
  const logs: WorkerLog[] = [];
  // no jitter: try n waits n seconds
  const pause = new TakingPause((e) => logs.push(e), () => clock.now, (n) => n * 1000);
  return { clock, logs, pause };
}

Deno.test("takes all it wants until outcomes cannot be recorded", () => {
  const { pause, logs } = pauseAt();
  assert.equal(pause.allow(50), 50);
  assert.equal(pause.untilNextTry(), Infinity);
  pause.recorded();
  assert.deepEqual(logs, []);
});

Deno.test("paused: takes nothing but one task per try, says so once each way", () => {
  const { clock, pause, logs } = pauseAt();
  pause.refused(new Error("could not extend file: No space left on device"));
  pause.refused(new Error("another lane's refusal"));
  assert.deepEqual(logs, [{
    level: "warn",
    message: "cannot record outcomes: could not extend file: No space left on device; " +
      "not taking tasks until it can",
  }]);
  assert.equal(pause.allow(50), 0);
  assert.equal(pause.untilNextTry(), 1000);
  clock.now = 1000;
  assert.equal(pause.allow(50), 1, "the first try");
  assert.equal(pause.allow(50), 0, "one task per try");
  assert.equal(pause.untilNextTry(), 2000, "the wait doubles");
  clock.now = 3000;
  assert.equal(pause.allow(0), 0, "no lane free: the try waits");
  assert.equal(pause.allow(4), 1);
  pause.recorded();
  pause.recorded();
  assert.equal(pause.allow(50), 50);
  assert.deepEqual(logs.map((l) => l.level), ["warn", "info"]);
  assert.equal(logs[1].message, "outcomes can be recorded again; taking tasks");
});

Deno.test("the default wait between tries grows from about 1 s to at most 30 s", () => {
  const waits: number[] = [];
  let now = 0;
  const pause = new TakingPause(() => {}, () => now);
  pause.refused(new Error("full"));
  for (let i = 0; i < 10; i++) {
    waits.push(pause.untilNextTry());
    now += pause.untilNextTry();
    assert.equal(pause.allow(1), 1);
  }
  assert.ok(waits[0] >= 500 && waits[0] <= 1000, `first wait ${waits[0]}`);
  assert.ok(waits.every((w) => w <= 30_000), `${waits}`);
  assert.ok(waits[9] >= 15_000, `last wait ${waits[9]}`);
});
