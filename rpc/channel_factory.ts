/**
 * Opening a {@linkcode GrpcChannel} to a server known by one or more
 * addresses (`spec/net.md` §3.1 and §9.2): {@linkcode connectChannel} tries
 * them in parallel ("happy eyeballs") and returns the first ready channel,
 * secured as {@linkcode ChannelSecurity} says.
 *
 * @module
 */

import {
  checkAddress,
  checkObject,
  checkPort,
  checkScheduler,
  checkSignal,
} from "./_channel_args.ts";
import { show } from "./_show.ts";
import { GrpcChannel, type GrpcChannelOptions } from "./grpc_channel.ts";
import { GrpcStatus, GrpcStatusError } from "./grpc_types.ts";
import { MAX_DELAY_MS, type Scheduler, systemScheduler } from "./scheduler.ts";

/** Certificate material: PEM text (a string, or its bytes) or, for a single certificate, DER bytes. */
export type CertificateSource = string | Uint8Array;

/** Plaintext: no TLS. For loopback, test rigs and trusted networks. */
export interface InsecureChannelSecurity {
  /** No TLS. */
  mode: "insecure";
}

/** TLS; the server's certificate must chain to the given CA and name the server. */
export interface ServerCaChannelSecurity {
  /** TLS with server authentication. */
  mode: "server-ca";
  /** The CA certificate(s) the server's chain must lead to (PEM, several allowed). */
  ca: CertificateSource;
  /**
   * The name the server's certificate must carry, and the one sent in the
   * handshake: needed when the certificate names a host name but the
   * channel dials an IP address.
   *
   * @default {undefined} (the address dialled; an IP address must then be an
   *   IP subjectAltName of the certificate)
   */
  serverName?: string;
}

/**
 * TLS pinned to one server certificate: the server must present exactly that
 * certificate (same SHA-256 fingerprint). A different certificate fails even
 * when a trusted CA signed it, and so does the same server's next
 * certificate after a rotation: pin the new one, or use `server-ca`.
 *
 * The chain is verified too: against `ca` when given, else against the
 * pinned certificate itself, which suits a self-signed pinned certificate. A
 * pinned certificate signed by a CA needs that CA as `ca` (TLS here cannot
 * take a CA-signed leaf as a trust anchor). Host names are not checked: the
 * exact certificate is the identity.
 */
export interface PinnedChannelSecurity {
  /** TLS pinned to one certificate. */
  mode: "pinned";
  /** The one certificate the server must present. */
  certificate: CertificateSource;
  /**
   * The CA certificate(s) that signed the pinned certificate.
   *
   * @default {undefined} (the pinned certificate is its own trust anchor)
   */
  ca?: CertificateSource;
  /**
   * The server name sent in the handshake (not checked, see above).
   *
   * @default {undefined} (the address dialled; `"localhost"` for an IP address)
   */
  serverName?: string;
}

/**
 * Mutual TLS: the client presents its certificate, and verifies the server's
 * against `ca` (unlike the Python original, whose client-auth mode could not
 * be given a CA, bug B30).
 */
export interface MutualChannelSecurity {
  /** TLS with a client certificate. */
  mode: "mutual";
  /** The client's certificate (PEM; intermediates may follow it). */
  certificate: CertificateSource;
  /** The client's private key (PEM, unencrypted). */
  privateKey: string | Uint8Array;
  /**
   * The CA certificate(s) the server's chain must lead to.
   *
   * @default {undefined} (the default public roots: a server with a private
   *   CA is then rejected)
   */
  ca?: CertificateSource;
  /**
   * The name the server's certificate must carry, and the one sent in the
   * handshake.
   *
   * @default {undefined} (the address dialled; an IP address must then be an
   *   IP subjectAltName of the certificate)
   */
  serverName?: string;
}

/**
 * How a channel is secured, and how it verifies the server: the four modes of
 * `spec/net.md` §3.1.
 *
 * When the name to verify is an IP address, the TLS handshake sends
 * `"localhost"` as the server name (TLS cannot carry an IP address there),
 * and the certificate is still checked against the IP address.
 */
export type ChannelSecurity =
  | InsecureChannelSecurity
  | ServerCaChannelSecurity
  | PinnedChannelSecurity
  | MutualChannelSecurity;

/** Options of {@linkcode connectChannel} and {@linkcode tryConnectChannel}. */
export interface ConnectChannelOptions extends GrpcChannelOptions {
  /**
   * How long one address may take to become ready, in milliseconds.
   *
   * @default {5000}
   */
  attemptTimeoutMs?: number;
  /**
   * How long to wait after starting an attempt before starting the next
   * address too (a failed attempt starts the next one at once), in
   * milliseconds.
   *
   * @default {250}
   */
  staggerMs?: number;
  /**
   * Stops connecting: every attempt is closed and the promise rejects with
   * `signal.reason`.
   *
   * @default {undefined}
   */
  signal?: AbortSignal;
  /**
   * The timers for the stagger and the attempt timeouts.
   *
   * @default {systemScheduler}
   */
  scheduler?: Scheduler;
}

/** Why one address of a {@linkcode ChannelConnectError} failed. */
export interface ChannelConnectFailure {
  /** The address, as given. */
  readonly address: string;
  /** What was dialled: `address:port`. */
  readonly target: string;
  /**
   * `UNAVAILABLE` with the reason when the attempt failed (refused, TLS
   * handshake or verification failure, ...), `DEADLINE_EXCEEDED` when it
   * was not ready in time.
   */
  readonly error: GrpcStatusError;
}

/**
 * No address could be connected to. A {@linkcode GrpcStatusError} with code
 * `UNAVAILABLE` (so retry logic treats it as "server unavailable"), that
 * lists every address's failure. The Python original returned `null`
 * instead; {@linkcode tryConnectChannel} still does.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ChannelConnectError, connectChannel, GrpcStatus } from "@tsercom/tsercom/rpc";
 *
 * // Nothing listens on port 1 of the loopback addresses.
 * const error = await connectChannel(["127.0.0.1", "127.0.0.2"], 1).catch((e) => e);
 * assert(error instanceof ChannelConnectError);
 * assert.equal(error.code, GrpcStatus.UNAVAILABLE);
 * assert.deepEqual(error.failures.map((f) => f.target), ["127.0.0.1:1", "127.0.0.2:1"]);
 * ```
 */
export class ChannelConnectError extends GrpcStatusError {
  /** The port that was dialled. */
  readonly port: number;
  /** Each address's failure, in the order the addresses were given. */
  readonly failures: readonly ChannelConnectFailure[];

  /**
   * Creates the error.
   *
   * @param port The port that was dialled.
   * @param failures Each address's failure.
   */
  constructor(port: number, failures: readonly ChannelConnectFailure[]) {
    const what = failures.length === 1
      ? failures[0].target
      : `any of ${failures.length} addresses on port ${port}`;
    super(
      GrpcStatus.UNAVAILABLE,
      `Cannot connect to ${what}: ${failures.map((f) => f.error.details).join("; ")}`,
    );
    this.name = "ChannelConnectError";
    this.port = port;
    this.failures = Object.freeze([...failures]);
  }
}

/**
 * Connects to a server known by one or more addresses, and resolves with the
 * first channel that is ready ("happy eyeballs", RFC 8305 style):
 *
 * - the first address is tried at once; each further one `staggerMs` after
 *   the previous start, or as soon as an attempt fails, whichever is first;
 * - attempts run in parallel, each with its own `attemptTimeoutMs`; an
 *   attempt fails at its first failed connection (refused, TLS failure), it
 *   does not wait for the timeout;
 * - the first ready channel wins, and every other attempt is closed;
 * - when all fail, the promise rejects with a {@linkcode ChannelConnectError}
 *   listing each address's failure.
 *
 * Fixes over the Python factories (bug B29): parallel instead of strictly
 * sequential, a configurable timeout, failed attempts always closed, and a
 * pinned mode that compares the exact certificate.
 *
 * @example
 * ```ts ignore
 * const channel = await connectChannel(["192.168.1.20", "fe80::1"], 50051, {
 *   security: { mode: "server-ca", ca: await Deno.readTextFile("ca.pem"), serverName: "sensor-1" },
 * });
 * ```
 *
 * @param addresses The server's addresses (IP addresses, IPv6 with or
 *   without brackets, or host names), in order of preference.
 * @param port The server's port, 1..65535.
 * @param options Security, timeouts, stagger, abort signal.
 * @returns The ready channel; the caller closes it.
 * @throws {ChannelConnectError} (rejection) When no address worked.
 * @throws {TypeError} When an argument is malformed (synchronously; this
 *   includes certificates and keys that do not parse).
 * @throws {RangeError} When a number is out of range (synchronously).
 */
export function connectChannel(
  addresses: string | readonly string[],
  port: number,
  options: ConnectChannelOptions = {},
): Promise<GrpcChannel> {
  const operation = "connect";
  const list = typeof addresses === "string" ? [addresses] : addresses;
  if (!Array.isArray(list) || list.length === 0) {
    throw new TypeError(
      `Cannot ${operation} as 'addresses' must be an address or a non-empty array of addresses: current value is ${
        show(addresses)
      }`,
    );
  }
  for (const address of list) checkAddress(operation, address);
  checkPort(operation, port);
  checkObject(operation, "options", options);
  const {
    attemptTimeoutMs = 5_000,
    staggerMs = 250,
    signal,
    scheduler = systemScheduler,
    ...channelOptions
  } = options;
  if (
    typeof attemptTimeoutMs !== "number" ||
    !(attemptTimeoutMs > 0 && attemptTimeoutMs <= MAX_DELAY_MS)
  ) {
    throw new RangeError(
      `Cannot ${operation} as 'options.attemptTimeoutMs' must be a number in (0, ${MAX_DELAY_MS}]: current value is ${
        show(attemptTimeoutMs)
      }`,
    );
  }
  if (typeof staggerMs !== "number" || !(staggerMs >= 0 && staggerMs <= MAX_DELAY_MS)) {
    throw new RangeError(
      `Cannot ${operation} as 'options.staggerMs' must be a number in 0..${MAX_DELAY_MS}: current value is ${
        show(staggerMs)
      }`,
    );
  }
  checkSignal(operation, signal);
  checkScheduler(operation, scheduler);
  // Made now, so that malformed security settings throw here (it does not dial yet).
  const first = new GrpcChannel(list[0], port, channelOptions);
  if (signal?.aborted) {
    first.close();
    return Promise.reject(signal.reason);
  }

  return new Promise<GrpcChannel>((resolve, reject) => {
    const channels: GrpcChannel[] = [];
    const failures: ChannelConnectFailure[] = [];
    const attempts = new AbortController();
    let started = 0;
    let failed = 0;
    let settled = false;
    let staggerTimer: unknown;
    let staggerSet = false;

    const settle = (action: () => void) => {
      settled = true;
      if (staggerSet) scheduler.clearTimeout(staggerTimer);
      staggerSet = false;
      signal?.removeEventListener("abort", onAbort);
      attempts.abort();
      action();
    };
    const onAbort = () => {
      if (settled) return;
      settle(() => {
        for (const channel of channels) channel.close();
        reject(signal?.reason);
      });
    };
    const startNext = () => {
      if (settled || started >= list.length) return;
      if (staggerSet) scheduler.clearTimeout(staggerTimer);
      staggerSet = false;
      const index = started++;
      const channel = index === 0 ? first : new GrpcChannel(list[index], port, channelOptions);
      channels[index] = channel;
      channel.waitForReady(attemptTimeoutMs, {
        failFast: true,
        signal: attempts.signal,
        scheduler,
      }).then(
        () => {
          if (settled) {
            channel.close();
            return;
          }
          settle(() => {
            for (const other of channels) if (other !== channel) other.close();
            resolve(channel);
          });
        },
        (error: unknown) => {
          channel.close();
          if (settled) return;
          failures[index] = {
            address: list[index],
            target: channel.target,
            error: error instanceof GrpcStatusError
              ? error
              : new GrpcStatusError(GrpcStatus.UNKNOWN, String(error), { cause: error }),
          };
          failed++;
          if (failed === list.length) {
            settle(() => reject(new ChannelConnectError(port, failures)));
          } else {
            startNext();
          }
        },
      );
      if (started < list.length) {
        staggerTimer = scheduler.setTimeout(startNext, staggerMs);
        staggerSet = true;
      }
    };

    signal?.addEventListener("abort", onAbort, { once: true });
    startNext();
  });
}

/**
 * {@linkcode connectChannel}, resolving with `null` instead of rejecting with
 * a {@linkcode ChannelConnectError} when no address worked, as the Python
 * factories did. Malformed arguments and aborts still throw.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { tryConnectChannel } from "@tsercom/tsercom/rpc";
 *
 * assert.equal(await tryConnectChannel("127.0.0.1", 1), null); // nothing listens on port 1
 * ```
 *
 * @param addresses The server's addresses, in order of preference.
 * @param port The server's port, 1..65535.
 * @param options Security, timeouts, stagger, abort signal.
 * @returns The ready channel, or `null`.
 * @throws {TypeError} When an argument is malformed (synchronously).
 * @throws {RangeError} When a number is out of range (synchronously).
 */
export function tryConnectChannel(
  addresses: string | readonly string[],
  port: number,
  options: ConnectChannelOptions = {},
): Promise<GrpcChannel | null> {
  return connectChannel(addresses, port, options).catch((error: unknown) => {
    if (error instanceof ChannelConnectError) return null;
    throw error;
  });
}
