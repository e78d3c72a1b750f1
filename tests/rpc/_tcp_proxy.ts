/**
 * A loopback TCP proxy for tests that need a server to vanish without an
 * HTTP/2 GOAWAY: {@linkcode TcpProxy.cut} drops every connection at once,
 * as a crashed server or a pulled cable would. (A graceful server stop
 * sends GOAWAY, which can abort a Deno 2.9.6 client process; see the
 * README's known limitations.)
 *
 * @module
 */

const HOST = "127.0.0.1";

/** Forwards connections on `port` to 127.0.0.1:`target`. */
export class TcpProxy {
  readonly #listener: Deno.Listener;
  readonly #connections = new Set<Deno.Conn>();
  readonly #accepting: Promise<void>;
  /** The proxy's port. */
  readonly port: number;

  /**
   * Starts listening.
   *
   * @param target The port to forward to.
   * @param port The port to listen on (0: any free one).
   */
  constructor(target: number, port = 0) {
    this.#listener = Deno.listen({ hostname: HOST, port });
    this.port = (this.#listener.addr as Deno.NetAddr).port;
    this.#accepting = this.#accept(target);
  }

  async #accept(target: number): Promise<void> {
    try {
      for await (const client of this.#listener) {
        this.#connections.add(client);
        Deno.connect({ hostname: HOST, port: target }).then((server) => {
          this.#connections.add(server);
          this.#pipe(client, server);
          this.#pipe(server, client);
        }, () => this.#close(client));
      }
    } catch {
      // the listener was closed
    }
  }

  #pipe(from: Deno.Conn, to: Deno.Conn): void {
    from.readable.pipeTo(to.writable).catch(() => {}).finally(() => {
      this.#close(from);
      this.#close(to);
    });
  }

  #close(conn: Deno.Conn): void {
    if (!this.#connections.delete(conn)) return;
    try {
      conn.close();
    } catch {
      // closed already
    }
  }

  /** Stops listening and drops every connection, both ways, at once. */
  async cut(): Promise<void> {
    this.#listener.close();
    for (const conn of [...this.#connections]) this.#close(conn);
    await this.#accepting;
  }
}
