/**
 * A counting TCP proxy for the PostgreSQL wire protocol, used by
 * bench/profile.ts to see what the worker asks of the server without any
 * server-wide setting (pg_stat_statements needs a restart to load; statement
 * logging is server-wide or per database and lands in a log file whose place
 * depends on the installation). It forwards bytes unchanged and counts, per
 * connection, the client's messages by type and its "flights": each time the
 * client sends after the server has answered, which is one round trip however
 * many statements the flight pipelines.
 * @module
 */

/** What one direction of traffic held. */
export interface WireCounts {
  connections: number;
  /** Client messages by type letter: P parse, B bind, E execute, S sync, Q simple query. */
  messages: Record<string, number>;
  /** Client sends that followed a server reply: round trips. */
  flights: number;
  bytesUp: number;
  bytesDown: number;
}

/** A running proxy. */
export interface CountingProxy {
  /** Port on 127.0.0.1 to connect to instead of the server's. */
  port: number;
  counts: WireCounts;
  close(): void;
}

// Reads the client's stream as frames: after the startup packet (length only),
// each message is a type byte and a length that counts itself.
class FrontendParser {
  #buffer = new Uint8Array(0);
  #startup = true;

  constructor(private readonly onMessage: (type: string) => void) {}

  push(chunk: Uint8Array): void {
    const joined = new Uint8Array(this.#buffer.length + chunk.length);
    joined.set(this.#buffer);
    joined.set(chunk, this.#buffer.length);
    let at = 0;
    while (true) {
      const header = this.#startup ? 4 : 5;
      if (joined.length - at < header) break;
      const view = new DataView(joined.buffer, joined.byteOffset + at);
      const length = this.#startup ? view.getInt32(0) : view.getInt32(1) + 1;
      if (joined.length - at < length) break;
      if (this.#startup) {
        // an SSLRequest (80877103) is answered by one byte; the real startup follows
        const code = view.getInt32(4);
        if (code !== 80877103) this.#startup = false;
      } else {
        this.onMessage(String.fromCharCode(joined[at]));
      }
      at += length;
    }
    this.#buffer = joined.slice(at);
  }
}

/** Starts a proxy to `host:port`; every byte passes through unchanged. */
export function startCountingProxy(host: string, port: number): CountingProxy {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const counts: WireCounts = { connections: 0, messages: {}, flights: 0, bytesUp: 0, bytesDown: 0 };
  const open = new Set<Deno.Conn>();

  async function serve(client: Deno.Conn): Promise<void> {
    const server = await Deno.connect({ hostname: host, port });
    open.add(client).add(server);
    counts.connections++;
    let answered = true; // the first send is a flight too
    const parser = new FrontendParser((type) => {
      counts.messages[type] = (counts.messages[type] ?? 0) + 1;
    });
    const up = (async () => {
      for await (const chunk of client.readable.values({ preventCancel: true })) {
        if (answered) counts.flights++;
        answered = false;
        counts.bytesUp += chunk.length;
        parser.push(chunk);
        await write(server, chunk);
      }
    })();
    const down = (async () => {
      for await (const chunk of server.readable.values({ preventCancel: true })) {
        answered = true;
        counts.bytesDown += chunk.length;
        await write(client, chunk);
      }
    })();
    await Promise.race([up, down]).catch(() => {});
    for (const conn of [client, server]) {
      open.delete(conn);
      try {
        conn.close();
      } catch {
        // already closed by the other side
      }
    }
    await Promise.allSettled([up, down]);
  }

  (async () => {
    for await (const conn of listener) serve(conn).catch(() => {});
  })().catch(() => {});

  return {
    port: (listener.addr as Deno.NetAddr).port,
    counts,
    close() {
      listener.close();
      for (const conn of open) {
        try {
          conn.close();
        } catch {
          // already closed
        }
      }
    },
  };
}

async function write(conn: Deno.Conn, chunk: Uint8Array): Promise<void> {
  let rest = chunk;
  while (rest.length > 0) rest = rest.subarray(await conn.write(rest));
}
