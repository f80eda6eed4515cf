// Passwords never leave a database URL: the redaction works on any text, and
// the library's URL errors, causes included, do not carry them. No database.
// (Issue "Safe to deploy", item 6.)
import assert from "node:assert/strict";
import { client, connect, redactUrl } from "../../lib/db/connect.ts";
import { connectionTarget } from "../../lib/db/pool.ts";
import { RetaskError } from "../../lib/errors.ts";

const SECRET = "S3cr3tPw";

Deno.test("redactUrl hides the password of URLs new URL cannot parse", () => {
  const cases: [string, string][] = [
    [`postgres://u:${SECRET}@h:5432/db`, "postgres://u:****@h:5432/db"],
    [`postgres://u:${SECRET}@host:99999/db`, "postgres://u:****@host:99999/db"],
    [`postgres://u:${SECRET}@host:5432:1/db`, "postgres://u:****@host:5432:1/db"],
    [`postgres://u:${SECRET}@[::1/db`, "postgres://u:****@[::1/db"],
    [`postgres://u:${SECRET}@ho st:5432/db`, "postgres://u:****@ho st:5432/db"],
    [`postgres://u:${SECRET}/x@h/db`, "postgres://u:****@h/db"],
    [`postgres://u:${SECRET}#x@h/db`, "postgres://u:****@h/db"],
    [`postgres://u:${SECRET}@x@h1,h2/db`, "postgres://u:****@h1,h2/db"],
    [`postgres://us@er:${SECRET}@h/db`, "postgres://us@er:****@h/db"],
    [
      `postgresql://u:${SECRET}@h1:1,h2:2/db?sslmode=require`,
      "postgresql://u:****@h1:1,h2:2/db?sslmode=require",
    ],
    ["postgres://u@h:5432/db", "postgres://u@h:5432/db"],
    ["postgres://h/db", "postgres://h/db"],
    ["connect ECONNREFUSED 127.0.0.1:5432", "connect ECONNREFUSED 127.0.0.1:5432"],
    [
      `Invalid URL: 'postgres://u:${SECRET}@h:99999/db'`,
      "Invalid URL: 'postgres://u:****@h:99999/db'",
    ],
    [
      `from postgres://a:${SECRET}@h1/db to mysql://b:${SECRET}@h2/db`,
      "from postgres://a:****@h1/db to mysql://b:****@h2/db",
    ],
  ];
  for (const [text, redacted] of cases) assert.equal(redactUrl(text), redacted, text);
});

const MALFORMED = [
  `postgres://u:${SECRET}@host:99999/db`,
  `postgres://u:${SECRET}@host:5432:1/db`,
  `postgres://u:${SECRET}@[::1/db`,
  `postgres://u:${SECRET}@ho st:5432/db`,
  `postgres://u:${SECRET}@host:0/db`,
  `postgres://u:${SECRET}/x@host/db`,
  `postgres://u:%zz${SECRET}@host/db`,
  `postgres://u:${SECRET}@x@h1,h2/db`,
  `postgres://u:${SECRET}@h1:5432:1,h2/db`,
  `postgres://u:${SECRET}@h1:abc,h2/db`,
  `postgres://u:${SECRET}@h1,,h2/db`,
  `postgres://u:${SECRET}@/db`,
  `postgres:/u:${SECRET}@h/db`,
  `mysql://u:${SECRET}@h/db`,
];

/** Everything a log line could show of `error`: message, stack and causes. */
function shown(error: unknown): string {
  return Deno.inspect(error, { depth: 10 }) + String(error);
}

Deno.test("a malformed URL is a usage error without its password, cause and all", async () => {
  for (const url of MALFORMED) {
    for (
      const attempt of [
        () => client(url),
        () => connect({ url }),
        () => connectionTarget(url),
      ]
    ) {
      let caught: unknown;
      try {
        await attempt();
      } catch (error) {
        caught = error;
      }
      assert.ok(caught instanceof RetaskError, `${url}: ${caught}`);
      assert.equal(caught.code, "usage", url);
      assert.doesNotMatch(caught.message, /\n/, url);
      assert.ok(!shown(caught).includes(SECRET), `${url}: ${shown(caught)}`);
    }
  }
});

Deno.test("a refused connection is a database error without the password", async () => {
  const port = freePort();
  for (
    const url of [
      `postgres://u:${SECRET}@127.0.0.1:${port}/db`,
      `postgres://u:${SECRET}@x@127.0.0.1:${port}/db`,
    ]
  ) {
    let caught: unknown;
    try {
      await connect({ url });
    } catch (error) {
      caught = error;
    }
    assert.ok(caught instanceof RetaskError, String(caught));
    assert.equal(caught.code, "database");
    assert.match(caught.message, /^cannot connect to postgres:\/\/u:\*\*\*\*@127\.0\.0\.1:/);
    assert.ok(!shown(caught).includes(SECRET), shown(caught));
  }
});

/** A local port nothing listens on: one the system just handed out and took back. */
function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}
