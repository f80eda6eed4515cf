// The pool's pure parts: reconnect backoff and error classification. No database.
import assert from "node:assert/strict";
import { isConnectionError, reconnectDelay } from "./pool.ts";

Deno.test("reconnect delay doubles, is capped, and is jittered", () => {
  const low = () => 0;
  const high = () => 1;
  assert.equal(reconnectDelay(1, 100, 5_000, low), 50);
  assert.equal(reconnectDelay(1, 100, 5_000, high), 100);
  assert.equal(reconnectDelay(2, 100, 5_000, high), 200);
  assert.equal(reconnectDelay(4, 100, 5_000, high), 800);
  assert.equal(reconnectDelay(10, 100, 5_000, high), 5_000, "capped");
  assert.equal(reconnectDelay(1_000, 100, 5_000, low), 2_500, "half the cap at least");
  assert.equal(reconnectDelay(0, 100, 5_000, high), 100, "failures start at 1");
  const delays = Array.from({ length: 50 }, () => reconnectDelay(6));
  assert.ok(delays.every((d) => d >= 1_600 && d <= 3_200));
  assert.ok(new Set(delays).size > 10, "jittered");
});

Deno.test("connection errors are told apart from statement errors", () => {
  const withCode = (code: string) => Object.assign(new Error("x"), { code });
  for (
    const code of [
      "57P01",
      "57P02",
      "57P03",
      "08006",
      "53300",
      "ECONNREFUSED",
      "CONNECTION_CLOSED",
      "CONNECT_TIMEOUT",
    ]
  ) {
    assert.ok(isConnectionError(withCode(code)), code);
  }
  for (const code of ["P0001", "22012", "57014", "40001", "42883"]) {
    assert.ok(!isConnectionError(withCode(code)), code);
  }
  assert.ok(isConnectionError(new Error("write CONNECTION_CLOSED: connection closed")));
  assert.ok(!isConnectionError(new Error("division by zero")));
  assert.ok(!isConnectionError(null));
});
