/**
 * An SNTP server (RFC 5905 / RFC 4330): the time authority that clients
 * synchronise to.
 *
 * @module
 */

import {
  headerByte,
  MODE_CLIENT,
  MODE_SERVER,
  NTP_PACKET_BYTES,
  OFFSET_ORIGINATE,
  OFFSET_RECEIVE,
  OFFSET_REFERENCE,
  OFFSET_REFERENCE_ID,
  OFFSET_TRANSMIT,
  readHeaderByte,
  referenceIdBytes,
  writeTimestamp,
} from "./_ntp.ts";
import { show } from "./_show.ts";
import type { SynchronizedClock } from "./synchronized_clock.ts";
import { SystemClock } from "./system_clock.ts";

/** The well-known NTP port, which Python tsercom peers use. */
export const NTP_PORT = 123;

/** Options of {@linkcode TimeSyncServer}. */
export interface TimeSyncServerOptions {
  /**
   * The address to listen on. Use `"127.0.0.1"` to serve this machine only.
   *
   * @default {"0.0.0.0"}
   */
  hostname?: string;
  /**
   * The UDP port; 0 picks a free ephemeral port (read it from
   * {@linkcode TimeSyncServer.port}). Port 123 needs privileges on most
   * systems; when it cannot be bound, the constructor throws a
   * {@linkcode TimeSyncBindError} that says so.
   *
   * @default {123}
   */
  port?: number;
  /**
   * The clock the server tells: its `now()` stamps each reply. It is the
   * timeline every client converges on.
   *
   * @default {new SystemClock()}
   */
  clock?: Pick<SynchronizedClock, "now">;
  /**
   * The stratum the server reports, 1..15 (1: a primary reference).
   *
   * @default {1}
   */
  stratum?: number;
  /**
   * The reference id, up to 4 ASCII characters (for stratum 1, the kind of
   * reference clock).
   *
   * @default {"LOCL"}
   */
  referenceId?: string;
}

/** The counts of what a {@linkcode TimeSyncServer} received, answered and dropped. */
export interface TimeSyncServerCounters {
  /** Datagrams received. */
  received: number;
  /** Replies sent. */
  answered: number;
  /** Datagrams dropped as shorter than an NTP header (48 bytes). */
  truncated: number;
  /** Datagrams dropped as not a client request (mode other than 3). */
  notClient: number;
  /** Requests dropped for a version other than 3 or 4. */
  badVersion: number;
  /** Replies that could not be sent. */
  sendErrors: number;
  /** Socket errors while receiving (the server stops after 100 in a row). */
  receiveErrors: number;
}

/**
 * Thrown by the {@linkcode TimeSyncServer} constructor when its UDP port
 * cannot be bound: the port is in use or needs privileges.
 */
export class TimeSyncBindError extends Error {
  /** The address that could not be bound. */
  readonly hostname: string;
  /** The port that could not be bound. */
  readonly port: number;

  /**
   * Creates the error.
   *
   * @param hostname The address.
   * @param port The port.
   * @param options The underlying error as `cause`.
   */
  constructor(hostname: string, port: number, options?: ErrorOptions) {
    const cause = options?.cause;
    const why = cause instanceof Deno.errors.AddrInUse
      ? "the address is in use"
      : cause instanceof Deno.errors.PermissionDenied
      ? "permission was denied (ports below 1024 need privileges)"
      : `of ${cause instanceof Error ? cause.message : String(cause)}`;
    super(
      `Cannot start the time server on ${hostname}:${port} as ${why}: ` +
        `pass 'port: 0' for an ephemeral port, or another free port`,
      options,
    );
    this.name = "TimeSyncBindError";
    this.hostname = hostname;
    this.port = port;
  }
}

/**
 * An SNTP server that answers NTP version 3 and 4 client requests as RFC 5905
 * prescribes: mode 4 with the request's version, originate = the request's
 * transmit timestamp copied verbatim, receive stamped on arrival and transmit
 * just before sending, both from the injected clock.
 *
 * Unlike the Python original (spec bugs B43-B47), the originate and transmit
 * fields are right, so standard clients see the full offset; version 3
 * requests are answered; a bind failure throws instead of returning false;
 * and closing needs no datagram to itself. Malformed datagrams and anything
 * but client requests are dropped, counted and never answered.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { queryNtp, SystemClock, TimeSyncServer } from "@tsercom/tsercom/rpc";
 *
 * const local = new SystemClock();
 * // A server whose clock is 2.5 s ahead of this machine's.
 * await using server = new TimeSyncServer({
 *   hostname: "127.0.0.1",
 *   port: 0,
 *   clock: { now: () => local.now() + 2_500_000 },
 * });
 * const sample = await queryNtp("127.0.0.1", { port: server.port });
 * assert(Math.abs(sample.offsetMicros - 2_500_000) < 50_000);
 * ```
 */
export class TimeSyncServer implements AsyncDisposable {
  /** The address the server listens on. */
  readonly hostname: string;
  /** The UDP port the server listens on (the one chosen, when 0 was asked). */
  readonly port: number;

  readonly #conn: Deno.DatagramConn;
  readonly #clock: Pick<SynchronizedClock, "now">;
  readonly #stratum: number;
  readonly #referenceId: Uint8Array;
  readonly #reply = new Uint8Array(NTP_PACKET_BYTES);
  readonly #replyView = new DataView(this.#reply.buffer);
  readonly #loop: Promise<void>;
  readonly #counters: TimeSyncServerCounters = {
    received: 0,
    answered: 0,
    truncated: 0,
    notClient: 0,
    badVersion: 0,
    sendErrors: 0,
    receiveErrors: 0,
  };
  #referenceMicros: number;
  #closed = false;

  /**
   * Binds the UDP socket and starts answering.
   *
   * @param options Address, port, clock, stratum and reference id.
   * @throws {TimeSyncBindError} When the port cannot be bound.
   * @throws {RangeError} When the port or stratum is out of range.
   * @throws {TypeError} When the clock or reference id is not what it should be.
   */
  constructor(options: TimeSyncServerOptions = {}) {
    const {
      hostname = "0.0.0.0",
      port = NTP_PORT,
      clock = new SystemClock(),
      stratum = 1,
      referenceId = "LOCL",
    } = options;
    if (typeof hostname !== "string" || hostname === "") {
      throw new TypeError(
        `Cannot start the time server as 'hostname' must be a non-empty string: current value is ${
          show(hostname)
        }`,
      );
    }
    if (!Number.isInteger(port) || port < 0 || port > 65_535) {
      throw new RangeError(
        `Cannot start the time server as 'port' must be an integer in 0..65535: current value is ${
          show(port)
        }`,
      );
    }
    if (!Number.isInteger(stratum) || stratum < 1 || stratum > 15) {
      throw new RangeError(
        `Cannot start the time server as 'stratum' must be an integer in 1..15: current value is ${
          show(stratum)
        }`,
      );
    }
    if (clock === null || typeof clock !== "object" || typeof clock.now !== "function") {
      throw new TypeError(
        `Cannot start the time server as 'clock' must have a now() method: current value is ${
          show(clock)
        }`,
      );
    }
    if (typeof referenceId !== "string" || !/^[\x20-\x7e]{0,4}$/.test(referenceId)) {
      throw new TypeError(
        `Cannot start the time server as 'referenceId' must be at most 4 ASCII characters: current value is ${
          show(referenceId)
        }`,
      );
    }
    this.#clock = clock;
    this.#stratum = stratum;
    this.#referenceId = referenceIdBytes(referenceId);
    try {
      this.#conn = Deno.listenDatagram({ transport: "udp", hostname, port });
    } catch (error) {
      throw new TimeSyncBindError(hostname, port, { cause: error });
    }
    const addr = this.#conn.addr as Deno.NetAddr;
    this.hostname = addr.hostname;
    this.port = addr.port;
    this.#referenceMicros = clock.now();
    this.#loop = this.#serve();
  }

  /**
   * The server's side of synchronised time: the clock it serves, as a
   * {@linkcode SynchronizedClock} that maps local time one to one (on the
   * time authority, local time is synchronised time).
   */
  get clock(): SynchronizedClock {
    const clock = this.#clock;
    return {
      now: () => clock.now(),
      sync: (localMicros: number) => localMicros,
      desync: (syncedMicros: number) => syncedMicros,
    };
  }

  /** The counts of datagrams received, answered and dropped (a fresh object). */
  get counters(): TimeSyncServerCounters {
    return { ...this.#counters };
  }

  /** Whether {@linkcode TimeSyncServer.close} was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Stops answering and releases the port. Resolves once the receive loop
   * has ended. Calling it again does nothing.
   */
  async close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      try {
        this.#conn.close();
      } catch {
        // Already closed by a failed receive.
      }
    }
    await this.#loop;
  }

  /** The same as {@linkcode TimeSyncServer.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async #serve(): Promise<void> {
    const buffer = new Uint8Array(2048);
    let failures = 0;
    while (!this.#closed) {
      let packet: Uint8Array;
      let from: Deno.Addr;
      try {
        [packet, from] = await this.#conn.receive(buffer);
        failures = 0;
      } catch (error) {
        if (this.#closed || error instanceof Deno.errors.BadResource) return;
        // A transient socket error (e.g. an ICMP report on some systems):
        // keep serving, but not in a tight loop on a socket that is broken.
        this.#counters.receiveErrors++;
        if (++failures >= 100) return;
        continue;
      }
      const t2 = this.#clock.now();
      this.#counters.received++;
      if (this.#answer(packet, t2)) {
        try {
          // T3 as late as possible: stamped inside #answer's caller, right before send.
          writeTimestamp(this.#replyView, OFFSET_TRANSMIT, this.#clock.now());
          await this.#conn.send(this.#reply, from);
          this.#counters.answered++;
        } catch {
          if (this.#closed) return;
          this.#counters.sendErrors++;
        }
      }
    }
  }

  /** Validates a request and fills the reply buffer except T3; returns whether to answer. */
  #answer(packet: Uint8Array, t2: number): boolean {
    if (packet.length < NTP_PACKET_BYTES) {
      this.#counters.truncated++;
      return false;
    }
    const { version, mode } = readHeaderByte(packet);
    if (mode !== MODE_CLIENT) {
      this.#counters.notClient++;
      return false;
    }
    if (version !== 3 && version !== 4) {
      this.#counters.badVersion++;
      return false;
    }
    const reply = this.#reply;
    const view = this.#replyView;
    reply[0] = headerByte(0, version, MODE_SERVER);
    reply[1] = this.#stratum;
    reply[2] = packet[2]; // poll: echo the client's
    reply[3] = 0xec; // precision: 2^-20 s, about a microsecond
    view.setUint32(4, 0); // root delay
    view.setUint32(8, 0x0000_0010); // root dispersion: 16/65536 s, about 0.24 ms
    reply.set(this.#referenceId, OFFSET_REFERENCE_ID);
    writeTimestamp(view, OFFSET_REFERENCE, this.#referenceMicros);
    // Originate: the request's transmit timestamp, verbatim (RFC 5905 §8).
    reply.set(packet.subarray(OFFSET_TRANSMIT, OFFSET_TRANSMIT + 8), OFFSET_ORIGINATE);
    writeTimestamp(view, OFFSET_RECEIVE, t2);
    return true;
  }
}
