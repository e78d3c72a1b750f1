/**
 * One SNTP request and its reply: the clock offset and round-trip delay to a
 * time server.
 *
 * @module
 */

import {
  headerByte,
  isZeroTimestamp,
  MODE_CLIENT,
  MODE_SERVER,
  NTP_PACKET_BYTES,
  OFFSET_ORIGINATE,
  OFFSET_RECEIVE,
  OFFSET_TRANSMIT,
  readHeaderByte,
  readTimestamp,
  referenceIdText,
  sameTimestampBytes,
  serverAddress,
  writeTimestamp,
} from "./_ntp.ts";
import { show } from "./_show.ts";
import { type Scheduler, systemScheduler } from "./scheduler.ts";
import type { SynchronizedClock } from "./synchronized_clock.ts";
import { SystemClock } from "./system_clock.ts";
import { NTP_PORT } from "./time_sync_server.ts";

/** One measurement against a time server (RFC 5905 §8 on-wire protocol). */
export interface NtpSample {
  /**
   * Server time minus local time, in microseconds: positive when this
   * machine is behind. `((T2 - T1) + (T3 - T4)) / 2`.
   */
  offsetMicros: number;
  /** The round-trip network delay, in microseconds: `(T4 - T1) - (T3 - T2)`. */
  delayMicros: number;
  /** The local time the reply arrived (T4), microseconds since the Unix epoch. */
  localMicros: number;
  /** The server's stratum. */
  stratum: number;
  /** The reply's NTP version. */
  version: number;
  /**
   * The server's reference id: ASCII for stratum 1 (e.g. `"LOCL"`, `"GPS"`),
   * the upstream server's IPv4 address for stratum 2 and above (e.g.
   * `"127.127.1.1"`).
   */
  referenceId: string;
  /**
   * True when the reply came from a Python tsercom server, which leaves the
   * originate and transmit fields zero (spec bug B43): the offset is then
   * `T2 - (T1 + T4) / 2` and the delay `T4 - T1`.
   */
  legacy: boolean;
}

/** Why an {@linkcode NtpQueryError} was raised. */
export type NtpQueryErrorReason = "timeout" | "kiss-of-death" | "unsynchronized";

/**
 * A query got no usable reply: none in time (replies that failed validation
 * are dropped and counted in the message), a kiss-o'-death (stratum 0) or a
 * server that says its clock is unsynchronised (leap indicator 3).
 */
export class NtpQueryError extends Error {
  /** Which of the failures it was. */
  readonly reason: NtpQueryErrorReason;

  /**
   * Creates the error.
   *
   * @param reason Which failure.
   * @param message What happened.
   * @param options The cause, if any.
   */
  constructor(reason: NtpQueryErrorReason, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "NtpQueryError";
    this.reason = reason;
  }
}

/** Options of {@linkcode queryNtp}. */
export interface NtpQueryOptions {
  /**
   * The server's UDP port.
   *
   * @default {123}
   */
  port?: number;
  /**
   * How long to wait for a valid reply, in milliseconds.
   *
   * @default {2000}
   */
  timeoutMs?: number;
  /**
   * This machine's clock: stamps T1 and T4. Only `now()` is used.
   *
   * @default {new SystemClock()}
   */
  clock?: Pick<SynchronizedClock, "now">;
  /**
   * The NTP version of the request, 3 or 4.
   *
   * @default {4}
   */
  version?: 3 | 4;
  /**
   * The timers for the timeout.
   *
   * @default {systemScheduler}
   */
  scheduler?: Scheduler;
  /**
   * Cancels the query: it rejects with `signal.reason` and the socket is closed.
   *
   * @default {undefined}
   */
  signal?: AbortSignal;
}

/** Counts of replies {@linkcode queryNtp} dropped while it waited. */
interface Dropped {
  foreign: number;
  truncated: number;
  mode: number;
  version: number;
  originate: number;
}

/**
 * Sends one SNTP request to `hostname` and resolves with the offset and delay
 * it measured. Replies are validated as RFC 5905 asks: they must come from the
 * server's address and port, be at least 48 bytes, have mode 4 and version 3
 * or 4, echo the request's transmit timestamp in their originate field, and
 * carry a receive and a transmit timestamp. Anything else is dropped and the
 * wait goes on until the timeout. A Python tsercom server's reply (originate
 * and transmit both zero) is accepted and computed as the spec's §5.2 says.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { queryNtp, TimeSyncServer } from "@tsercom/tsercom/rpc";
 *
 * await using server = new TimeSyncServer({ hostname: "127.0.0.1", port: 0 });
 * const sample = await queryNtp("127.0.0.1", { port: server.port });
 * assert(Math.abs(sample.offsetMicros) < 50_000 && sample.delayMicros >= 0);
 * ```
 *
 * @param hostname The server's IP address (v4 or v6), or `"localhost"`.
 * @param options Port, timeout, local clock, version, scheduler, signal.
 * @returns The measured sample.
 * @throws {NtpQueryError} When no valid reply came in time, or the server
 *   sent a kiss-o'-death or reported an unsynchronised clock.
 * @throws {RangeError} When an option is out of range.
 */
export async function queryNtp(
  hostname: string,
  options: NtpQueryOptions = {},
): Promise<NtpSample> {
  const {
    port = NTP_PORT,
    timeoutMs = 2_000,
    clock = new SystemClock(),
    version = 4,
    scheduler = systemScheduler,
    signal,
  } = options;
  const server = serverAddress(hostname, "query the time server");
  if (!Number.isInteger(port) || port < 1 || port > 65_535) {
    throw new RangeError(
      `Cannot query the time server as 'port' must be an integer in 1..65535: current value is ${
        show(port)
      }`,
    );
  }
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) {
    throw new RangeError(
      `Cannot query the time server as 'timeoutMs' must be a positive number: current value is ${
        show(timeoutMs)
      }`,
    );
  }
  if (version !== 3 && version !== 4) {
    throw new RangeError(
      `Cannot query the time server as 'version' must be 3 or 4: current value is ${show(version)}`,
    );
  }
  signal?.throwIfAborted();

  const loopback = server === "::1" || server.startsWith("127.");
  const local = server.includes(":")
    ? (loopback ? "::1" : "::")
    : (loopback ? "127.0.0.1" : "0.0.0.0");
  const conn = Deno.listenDatagram({ transport: "udp", hostname: local, port: 0 });
  const dropped: Dropped = { foreign: 0, truncated: 0, mode: 0, version: 0, originate: 0 };
  let timedOut = false;
  let open = true;
  const close = () => {
    if (open) {
      open = false;
      conn.close();
    }
  };
  const timer = scheduler.setTimeout(() => {
    timedOut = true;
    close();
  }, timeoutMs);
  const onAbort = () => close();
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    const request = new Uint8Array(NTP_PACKET_BYTES);
    request[0] = headerByte(0, version, MODE_CLIENT);
    const t1 = clock.now();
    writeTimestamp(new DataView(request.buffer), OFFSET_TRANSMIT, t1);
    await conn.send(request, { transport: "udp", hostname: server, port });
    const buffer = new Uint8Array(1024);
    for (;;) {
      let packet: Uint8Array;
      let from: Deno.Addr;
      try {
        [packet, from] = await conn.receive(buffer);
      } catch (error) {
        if (signal?.aborted) throw signal.reason;
        if (timedOut) {
          throw new NtpQueryError(
            "timeout",
            `Cannot measure the offset to ${server}:${port} as no valid reply came within ${timeoutMs} ms${
              describeDropped(dropped)
            }`,
          );
        }
        throw error;
      }
      const t4 = clock.now();
      const sample = check(packet, from, request, t1, t4, server, port, dropped);
      if (sample !== undefined) return sample;
    }
  } finally {
    scheduler.clearTimeout(timer);
    signal?.removeEventListener("abort", onAbort);
    close();
  }
}

/** Validates a reply; returns its sample, or undefined when it is dropped. */
function check(
  packet: Uint8Array,
  from: Deno.Addr,
  request: Uint8Array,
  t1: number,
  t4: number,
  server: string,
  port: number,
  dropped: Dropped,
): NtpSample | undefined {
  const addr = from as Deno.NetAddr;
  if (addr.port !== port || normalizeHost(addr.hostname) !== normalizeHost(server)) {
    dropped.foreign++;
    return undefined;
  }
  if (packet.length < NTP_PACKET_BYTES) {
    dropped.truncated++;
    return undefined;
  }
  const { leap, version, mode } = readHeaderByte(packet);
  if (mode !== MODE_SERVER) {
    dropped.mode++;
    return undefined;
  }
  if (version !== 3 && version !== 4) {
    dropped.version++;
    return undefined;
  }
  const legacy = isZeroTimestamp(packet, OFFSET_ORIGINATE) &&
    isZeroTimestamp(packet, OFFSET_TRANSMIT) && !isZeroTimestamp(packet, OFFSET_RECEIVE);
  if (!legacy && !sameTimestampBytes(packet, OFFSET_ORIGINATE, request, OFFSET_TRANSMIT)) {
    dropped.originate++;
    return undefined;
  }
  const stratum = packet[1];
  const referenceId = referenceIdText(packet);
  if (stratum === 0) {
    throw new NtpQueryError(
      "kiss-of-death",
      `Cannot measure the offset to ${server}:${port} as it sent a kiss-o'-death (${
        JSON.stringify(referenceId)
      }): back off`,
    );
  }
  if (leap === 3) {
    throw new NtpQueryError(
      "unsynchronized",
      `Cannot measure the offset to ${server}:${port} as its clock is unsynchronised (leap indicator 3)`,
    );
  }
  const view = new DataView(packet.buffer, packet.byteOffset, packet.byteLength);
  const t2 = readTimestamp(view, OFFSET_RECEIVE);
  if (t2 === undefined) {
    dropped.originate++;
    return undefined;
  }
  if (legacy) {
    return {
      offsetMicros: Math.round(t2 - (t1 + t4) / 2),
      delayMicros: Math.max(0, t4 - t1),
      localMicros: t4,
      stratum,
      version,
      referenceId,
      legacy,
    };
  }
  const t3 = readTimestamp(view, OFFSET_TRANSMIT)!;
  return {
    offsetMicros: Math.round(((t2 - t1) + (t3 - t4)) / 2),
    // Clock granularity can make a loopback delay come out a microsecond below 0.
    delayMicros: Math.max(0, (t4 - t1) - (t3 - t2)),
    localMicros: t4,
    stratum,
    version,
    referenceId,
    legacy,
  };
}

function normalizeHost(hostname: string): string {
  const h = hostname.toLowerCase();
  return h.startsWith("::ffff:") && h.includes(".") ? h.slice(7) : h;
}

function describeDropped(d: Dropped): string {
  const parts: string[] = [];
  if (d.foreign > 0) parts.push(`${d.foreign} from another address`);
  if (d.truncated > 0) parts.push(`${d.truncated} truncated`);
  if (d.mode > 0) parts.push(`${d.mode} not in server mode`);
  if (d.version > 0) parts.push(`${d.version} of an unknown version`);
  if (d.originate > 0) parts.push(`${d.originate} not answering this request`);
  return parts.length === 0 ? "" : ` (dropped: ${parts.join(", ")})`;
}
