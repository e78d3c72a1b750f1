/**
 * The UDP transport of the mDNS engine (private): one IPv4 socket on
 * `0.0.0.0:5353`, joined to `224.0.0.251` on each chosen interface.
 *
 * Needs `--unstable-net` (set in `deno.json`), `--allow-net` and, to list the
 * interfaces, `--allow-sys`. IPv4 only: IPv6 (`ff02::fb`) is not joined.
 *
 * Limits of Deno's API, as of Deno 2.9: there is no way to choose the
 * outgoing interface of multicast (`IP_MULTICAST_IF`), so group datagrams
 * leave through the route the kernel picks for 224.0.0.251 (the default route
 * on a multi-homed host); and the unicast TTL cannot be set, so only multicast
 * goes out with TTL 255 (RFC 6762 §11).
 *
 * @module
 */

import type { Datagram, Endpoint, MdnsTransport } from "./_types.ts";
import { MDNS_GROUP_V4, MDNS_PORT } from "./_types.ts";

/** RFC 6762 §11: mDNS packets are sent with IP TTL 255. */
const MULTICAST_TTL = 255;

/** Receive buffer size: the largest UDP payload. */
const RECEIVE_BUFFER_BYTES = 65_536;

/** Consecutive receive errors (other than closing) after which `receive()` gives up. */
const MAX_CONSECUTIVE_RECEIVE_ERRORS = 100;

/** How long `addresses()` keeps a reading of the interfaces, in milliseconds. */
const ADDRESS_CACHE_MS = 1_000;

const LOOPBACK_V4 = "127.0.0.1";

/** Options of {@linkcode UdpMdnsTransport.open}. */
export interface UdpMdnsTransportOptions {
  /**
   * The IPv4 addresses of the interfaces to join the mDNS group on.
   *
   * @default {every non-loopback IPv4 interface of `Deno.networkInterfaces()`, or `["127.0.0.1"]` when there is none}
   */
  interfaces?: string[];
  /**
   * The UDP port to bind and to send group datagrams to (other than 5353 only for tests).
   *
   * @default {5353}
   */
  port?: number;
  /**
   * Whether the socket receives the multicast it sends itself (`IP_MULTICAST_LOOP`); other
   * sockets on the same host receive it only when this is `true`.
   *
   * @default {true}
   */
  loopback?: boolean;
}

/** The transport could not be opened: bad options, the port could not be bound, or no interface joined. */
export class UdpTransportError extends Error {
  /** Creates the error; the message says what failed and for which interface. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "UdpTransportError";
  }
}

const IPV4 = /^(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;

function isLoopbackV4(address: string): boolean {
  return address.startsWith("127.");
}

function ipv4Interfaces(): Deno.NetworkInterfaceInfo[] {
  return Deno.networkInterfaces().filter((info) => info.family === "IPv4");
}

/** The default interfaces: every non-loopback IPv4 address, else loopback. */
function defaultInterfaces(): string[] {
  const addresses = ipv4Interfaces()
    .map((info) => info.address)
    .filter((address) => !isLoopbackV4(address));
  return addresses.length > 0 ? [...new Set(addresses)] : [LOOPBACK_V4];
}

function checkOptions(options: UdpMdnsTransportOptions): void {
  const { interfaces, port } = options;
  if (
    interfaces !== undefined &&
    (!Array.isArray(interfaces) || interfaces.length === 0 ||
      !interfaces.every((address) => typeof address === "string" && IPV4.test(address)))
  ) {
    throw new TypeError(
      `Cannot open the mDNS transport as 'interfaces' must be a non-empty array of IPv4 ` +
        `addresses: current value is ${JSON.stringify(interfaces)}`,
    );
  }
  if (port !== undefined && (!Number.isInteger(port) || port < 1 || port > 65535)) {
    throw new RangeError(
      `Cannot open the mDNS transport as 'port' must be an integer in 1..65535: current value ` +
        `is ${port}`,
    );
  }
}

function checkEndpoint(to: Endpoint): void {
  if (
    typeof to !== "object" || to === null || typeof to.address !== "string" ||
    to.address === "" || !Number.isInteger(to.port) || to.port < 1 || to.port > 65535
  ) {
    throw new TypeError(
      `Cannot send an mDNS datagram as 'to' must be an address and a port in 1..65535: ` +
        `current value is ${JSON.stringify(to)}`,
    );
  }
}

function isClosedError(error: unknown): boolean {
  return error instanceof Deno.errors.BadResource || error instanceof Deno.errors.Interrupted;
}

/**
 * The mDNS engine's link to an IPv4 network: a UDP socket bound to
 * `0.0.0.0:5353` with `reuseAddress` (so that avahi or another responder on
 * the host can share the port), joined to `224.0.0.251` on each chosen
 * interface, sending multicast with TTL 255.
 *
 * @example
 * ```ts ignore
 * await using transport = await UdpMdnsTransport.open();
 * for await (const { data, from } of transport.receive()) {
 *   // decode and handle
 * }
 * ```
 */
export class UdpMdnsTransport implements MdnsTransport {
  /** The IPv4 addresses of the interfaces joined to the group. */
  readonly interfaces: readonly string[];
  /** The bound port. */
  readonly port: number;
  readonly #conn: Deno.DatagramConn;
  readonly #memberships: Deno.MulticastV4Membership[];
  readonly #names: ReadonlySet<string>;
  #addresses: { at: number; list: string[] } | undefined;
  #closed = false;

  private constructor(
    conn: Deno.DatagramConn,
    memberships: Deno.MulticastV4Membership[],
    interfaces: string[],
    port: number,
  ) {
    this.#conn = conn;
    this.#memberships = memberships;
    this.interfaces = Object.freeze([...interfaces]);
    this.port = port;
    const chosen = new Set(interfaces);
    this.#names = new Set(
      ipv4Interfaces().filter((info) => chosen.has(info.address)).map((info) => info.name),
    );
  }

  /**
   * Binds the socket and joins the group on each interface. An interface
   * that cannot join (down, gone) is skipped when at least one other joined.
   *
   * @throws {TypeError} or {RangeError} for bad options.
   * @throws {UdpTransportError} when the port cannot be bound or no interface joins.
   */
  static async open(options: UdpMdnsTransportOptions = {}): Promise<UdpMdnsTransport> {
    checkOptions(options);
    const port = options.port ?? MDNS_PORT;
    const interfaces = [...new Set(options.interfaces ?? defaultInterfaces())];
    let conn: Deno.DatagramConn;
    try {
      conn = Deno.listenDatagram({
        transport: "udp",
        hostname: "0.0.0.0",
        port,
        reuseAddress: true,
        loopback: options.loopback ?? true,
      });
    } catch (error) {
      throw new UdpTransportError(
        `Cannot open the mDNS transport as binding 0.0.0.0:${port} failed: ${String(error)}`,
        { cause: error },
      );
    }
    const joined: string[] = [];
    const memberships: Deno.MulticastV4Membership[] = [];
    const failures: string[] = [];
    for (const address of interfaces) {
      try {
        memberships.push(await conn.joinMulticastV4(MDNS_GROUP_V4, address));
        joined.push(address);
      } catch (error) {
        failures.push(`${address}: ${String(error)}`);
      }
    }
    try {
      if (memberships.length === 0) {
        throw new UdpTransportError(
          `Cannot open the mDNS transport as no interface joined ${MDNS_GROUP_V4}: ` +
            failures.join("; "),
        );
      }
      // The TTL is a property of the socket; any membership sets it.
      await memberships[0].setTTL(MULTICAST_TTL);
    } catch (error) {
      conn.close();
      if (error instanceof UdpTransportError) throw error;
      throw new UdpTransportError(
        `Cannot open the mDNS transport as setting the multicast TTL to ${MULTICAST_TTL} ` +
          `failed: ${String(error)}`,
        { cause: error },
      );
    }
    return new UdpMdnsTransport(conn, memberships, joined, port);
  }

  /** Whether {@linkcode UdpMdnsTransport.close} was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Sends one datagram: to `224.0.0.251` on the transport's port when `to` is
   * omitted, else unicast to `to`.
   *
   * @throws {Deno.errors.BadResource} once the transport is closed; other
   * socket errors as Deno reports them.
   */
  async send(data: Uint8Array, to?: Endpoint): Promise<void> {
    if (to !== undefined) checkEndpoint(to);
    if (this.#closed) {
      throw new Deno.errors.BadResource("Cannot send an mDNS datagram as the transport is closed");
    }
    await this.#conn.send(data, {
      transport: "udp",
      hostname: to?.address ?? MDNS_GROUP_V4,
      port: to?.port ?? this.port,
    });
  }

  /**
   * The datagrams received (each a fresh copy), until
   * {@linkcode UdpMdnsTransport.close}; the iteration ends then. One reader at
   * a time. A socket error other than closing is skipped; after 100 in a row
   * it is thrown.
   */
  async *receive(): AsyncIterable<Datagram> {
    const buffer = new Uint8Array(RECEIVE_BUFFER_BYTES);
    let errors = 0;
    while (!this.#closed) {
      let received: [Uint8Array, Deno.Addr];
      try {
        received = await this.#conn.receive(buffer);
      } catch (error) {
        if (this.#closed || isClosedError(error)) return;
        if (++errors >= MAX_CONSECUTIVE_RECEIVE_ERRORS) throw error;
        continue;
      }
      errors = 0;
      const [data, addr] = received;
      const from = addr as Deno.NetAddr;
      yield { data: data.slice(), from: { address: from.hostname, port: from.port } };
    }
  }

  /**
   * The IPv4 addresses this host advertises: the current addresses of the
   * chosen interfaces, without loopback unless loopback is all there is
   * (read again at most once a second, so that address changes show).
   */
  addresses(): string[] {
    const now = performance.now();
    if (this.#addresses === undefined || now - this.#addresses.at >= ADDRESS_CACHE_MS) {
      this.#addresses = { at: now, list: this.#readAddresses() };
    }
    return [...this.#addresses.list];
  }

  /**
   * A fingerprint of the chosen interfaces' links: on Linux, each one's
   * carrier change counter (`/sys/class/net/<if>/carrier_changes`, which
   * moves on every cable pull and plug, however short), plus every address
   * of any family (IPv6 link-local addresses leave while a link is down).
   */
  linkState(): string {
    const parts: string[] = [];
    for (const name of [...this.#names].sort()) {
      try {
        parts.push(
          `${name}#${Deno.readTextFileSync(`/sys/class/net/${name}/carrier_changes`).trim()}`,
        );
      } catch {
        // Not Linux, or not allowed to read: the addresses alone.
      }
    }
    try {
      parts.push(
        ...Deno.networkInterfaces()
          .filter((info) => this.#names.has(info.name))
          .map((info) => `${info.name}/${info.address}`)
          .sort(),
      );
    } catch {
      // No interface list: what the counters said.
    }
    return parts.join(",");
  }

  #readAddresses(): string[] {
    let current: string[];
    try {
      current = ipv4Interfaces()
        .filter((info) => this.#names.has(info.name))
        .map((info) => info.address);
    } catch {
      current = [];
    }
    if (current.length === 0) current = [...this.interfaces];
    const routable = [...new Set(current.filter((address) => !isLoopbackV4(address)))];
    return routable.length > 0 ? routable : [...new Set(current)];
  }

  /** Leaves the group and closes the socket; `receive()` ends. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.allSettled(this.#memberships.map((membership) => membership.leave()));
    try {
      this.#conn.close();
    } catch {
      // Already closed.
    }
  }

  /** Closes the transport. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
