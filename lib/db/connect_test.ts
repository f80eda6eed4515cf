// connect() without a URL: an error that says what to give, never a server started unasked.
import assert from "node:assert/strict";

Deno.test("connect starts no embedded server unless asked", async () => {
  const mod = new URL("./connect.ts", import.meta.url).href;
  const script = `
    import { connect } from ${JSON.stringify(mod)};
    try { await connect(); console.log("connected"); }
    catch (error) { console.log(error.code + ": " + error.message); }`;
  const env = Deno.env.toObject();
  delete env.DATABASE_URL;
  const run = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--quiet", script],
    env,
    clearEnv: true,
  }).output();
  assert.equal(
    new TextDecoder().decode(run.stdout).trim(),
    "usage: no database given: set DATABASE_URL, pass { url }, or { embedded: true } for retask's own server",
  );
});
