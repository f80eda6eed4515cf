import assert from "node:assert/strict";
import postgres from "npm:postgres@3.4.9";
import { startEmbedded, stopEmbedded } from "../../lib/db/embedded.ts";

async function query(url: string) {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    const [row] = await sql`
      SELECT length('Мне повезло') AS len, current_setting('server_encoding') AS enc
    `;
    return row;
  } finally {
    await sql.end();
  }
}

Deno.test("embedded postgres: start, reuse, stop", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "retask-embedded-" });
  try {
    // Two concurrent starts must serialize on the lock and yield one server.
    const [server, concurrent] = await Promise.all([
      startEmbedded({ dataDir, port: 0 }), // any free port: other test files run servers too
      startEmbedded({ dataDir, port: 0 }),
    ]);
    assert.equal(concurrent.url, server.url);
    assert.match(server.url, /^postgres:\/\/postgres:[0-9a-f]{48}@127\.0\.0\.1:\d+\/postgres$/);
    assert.equal(server.dataDir, dataDir);
    // the URL holds the password: printing the server must not show it
    const password = new URL(server.url).password;
    assert.ok(!JSON.stringify(server).includes(password));
    assert.ok(!Deno.inspect(server).includes(password));

    const row = await query(server.url);
    assert.equal(row.len, 11);
    assert.equal(row.enc, "UTF8");

    const again = await startEmbedded({ dataDir });
    assert.equal(again.url, server.url);
    assert.equal(again.port, server.port);
    assert.equal((await query(again.url)).len, 11);

    assert.equal(await stopEmbedded(dataDir), true);
    assert.equal(await stopEmbedded(dataDir), false);
  } finally {
    await stopEmbedded(dataDir).catch(() => {});
    await Deno.remove(dataDir, { recursive: true });
  }
});
