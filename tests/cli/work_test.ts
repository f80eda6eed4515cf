// `retask work`'s flags, checked before anything connects.
import assert from "node:assert/strict";
import { runCli } from "../harness/mod.ts";

Deno.test("retask work refuses bad options with exit 2 and one line", async () => {
  for (const args of [["--concurrency", "-1"], ["--poll-interval", "soon"]]) {
    // never reached: flags are checked before anything connects
    const { code, stderr, stdout } = await runCli(
      ["work", ...args],
      "postgres://nobody@127.0.0.1:1/none",
    );
    assert.equal(code, 2, stderr);
    assert.equal(stdout, "");
    assert.match(stderr, /^retask: --(concurrency|poll-interval) must be [^\n]*\n$/);
  }
});
