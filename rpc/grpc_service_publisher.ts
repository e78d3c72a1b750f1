/**
 * A gRPC server for tsercom services: binds its addresses on one port,
 * serves plaintext, server-TLS or mutual-TLS, always answers the standard
 * health service, turns handler crashes into INTERNAL answers reported to an
 * error sink, and stops gracefully.
 *
 * @module
 */

import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import { createPrivateKey, type KeyObject, X509Certificate } from "node:crypto";
import { deadline, DeadlineError } from "./_async.ts";
import {
  adaptHandler,
  GRPC_JS_TYPE,
  identity,
  serializeResponse,
  ServerCallEnvironment,
} from "./_grpc_server_calls.ts";
import { show } from "./_show.ts";
import {
  GrpcHealthService,
  GrpcServingStatus,
  type GrpcServingStatusCode,
  type HealthCheckRequest,
  type HealthCheckResponse,
} from "./grpc_health_service.ts";
import {
  type GrpcCallContext,
  type GrpcHandler,
  type GrpcMethod,
  type GrpcMethodKind,
  type GrpcService,
  GrpcStatus,
  GrpcStatusError,
} from "./grpc_types.ts";

/** The server's own certificate, and the client CA for mutual TLS (all PEM). */
export interface GrpcServerTlsOptions {
  /** The server's certificate chain, PEM: its leaf first, then any intermediates. */
  certChain: string | Uint8Array;
  /** The server's private key, PEM (unencrypted). */
  privateKey: string | Uint8Array;
  /**
   * The CA certificates (PEM) that client certificates must chain to. Giving
   * it turns on mutual TLS: a client without a certificate from this CA
   * fails its TLS handshake, and handlers see the client's common name in
   * {@linkcode GrpcCallContext.clientCommonName}.
   *
   * @default {undefined} (server TLS: clients present no certificate)
   */
  clientCa?: string | Uint8Array;
  /**
   * Whether a client certificate is required. It follows `clientCa` and
   * exists to make the intent explicit: `true` needs a `clientCa`, and
   * `false` with a `clientCa` (optional client certificates) is refused, as
   * grpc-js under Deno cannot request a certificate without requiring it.
   *
   * @default {clientCa !== undefined}
   */
  requireClientCertificate?: boolean;
}

/** Options of {@linkcode GrpcServicePublisher}. */
export interface GrpcServicePublisherOptions {
  /**
   * The addresses to listen on, IPv4 or IPv6 (with or without brackets), all
   * on the same port. Use `"127.0.0.1"` to serve this machine only.
   *
   * When omitted, the server listens on every interface: it binds `::`,
   * which on a dual-stack host serves IPv4 too, and `0.0.0.0` as well when
   * it does not (IPv6 disabled, or `bindv6only` set).
   *
   * @default {undefined} (the IPv6 and IPv4 wildcards)
   */
  addresses?: string | readonly string[];
  /**
   * The TCP port; 0 lets the system pick a free one for the first address,
   * and the other addresses bind that same port.
   *
   * @default {0}
   */
  port?: number;
  /**
   * TLS: the server's certificate and key, and for mutual TLS the client CA.
   *
   * @default {undefined} (plaintext)
   */
  tls?: GrpcServerTlsOptions;
  /**
   * Where a handler's unexpected exception goes (the call is answered with
   * INTERNAL `"Exception: <message>"`). Not called for a thrown
   * {@linkcode GrpcStatusError}, a request that does not decode, or a
   * failure after the client cancelled. `method` is the call's path, e.g.
   * `"/tsercom.IdService/GetId"`. If the sink throws, that is logged and the
   * server keeps serving.
   *
   * @default {console.error}
   */
  onError?: (error: unknown, method: string) => void;
  /**
   * The largest request message accepted, in bytes; a bigger one is answered
   * with RESOURCE_EXHAUSTED.
   *
   * @default {4194304} (4 MiB)
   */
  maxReceiveMessageBytes?: number;
}

/** Options of {@linkcode GrpcServicePublisher.stop}. */
export interface GrpcServicePublisherStopOptions {
  /**
   * How long calls in flight may go on, in milliseconds, before they are
   * cancelled and the connections closed. New calls are refused at once.
   *
   * @default {1000}
   */
  graceMs?: number;
}

/** One address that could not be bound. */
export interface GrpcBindFailure {
  /** The address, as given (without brackets). */
  readonly address: string;
  /** The port that was asked for. */
  readonly port: number;
  /** What the system reported. */
  readonly error: unknown;
}

/**
 * Thrown by {@linkcode GrpcServicePublisher.start} when no address could be
 * bound (unlike the Python original, bug B24, which started anyway).
 */
export class GrpcBindError extends Error {
  /** Every address that was tried and why it failed. */
  readonly failures: readonly GrpcBindFailure[];

  /**
   * Creates the error.
   *
   * @param failures The addresses tried and their errors (at least one).
   */
  constructor(failures: readonly GrpcBindFailure[]) {
    const list = failures
      .map((f) => `${bindTarget(f.address, f.port)} (${bindReason(f.error)})`)
      .join(", ");
    super(
      `Cannot start the gRPC server as at least one address must be bound: none could be: ${list}`,
      { cause: failures[0]?.error },
    );
    this.name = "GrpcBindError";
    this.failures = Object.freeze([...failures]);
  }
}

/**
 * Thrown by {@linkcode GrpcServicePublisher.addService} when the handlers do
 * not match the service: a method without a handler, a handler for no
 * method, a handler that is not a function or cannot be of the method's kind
 * (an async generator for a single response, an async function for a
 * stream), or a service that is malformed or already added.
 */
export class GrpcHandlerError extends TypeError {
  /** The service's full name. */
  readonly typeName: string;
  /** The method concerned, if the problem is about one. */
  readonly method: string | undefined;

  /**
   * Creates the error.
   *
   * @param typeName The service's full name.
   * @param method The method concerned, if any.
   * @param message What was wrong and what was expected.
   */
  constructor(typeName: string, method: string | undefined, message: string) {
    super(message);
    this.name = "GrpcHandlerError";
    this.typeName = typeName;
    this.method = method;
  }
}

const HEALTH_TYPE_NAME = GrpcHealthService.typeName;
const KINDS: readonly GrpcMethodKind[] = [
  "unary",
  "server_streaming",
  "client_streaming",
  "bidi_streaming",
];
const SETTABLE_STATUSES: readonly number[] = [
  GrpcServingStatus.UNKNOWN,
  GrpcServingStatus.SERVING,
  GrpcServingStatus.NOT_SERVING,
];
const AsyncFunction = Object.getPrototypeOf(async function () {}).constructor;
const AsyncGeneratorFunction = Object.getPrototypeOf(async function* () {}).constructor;
const GeneratorFunction = Object.getPrototypeOf(function* () {}).constructor;

type State = "new" | "starting" | "running" | "stopping" | "stopped";

interface Registration {
  readonly service: GrpcService;
  readonly handlers: Readonly<Record<string, GrpcHandler>>;
}

/**
 * Hosts gRPC services on a grpc-js server.
 *
 * - **Binding**: every address on one port (0 picks a free one, read it from
 *   the result of {@linkcode GrpcServicePublisher.start} or from
 *   {@linkcode GrpcServicePublisher.port}). IPv6 addresses are bracketed in
 *   bind strings (bug B25 fixed). Addresses that fail are skipped; if none
 *   binds, `start` throws a {@linkcode GrpcBindError} (bug B24 fixed).
 * - **Security**: plaintext, server TLS, or mutual TLS
 *   ({@linkcode GrpcServerTlsOptions}).
 * - **Health**: `grpc.health.v1.Health` (`Check` and `Watch`) is always
 *   served. At start the server as a whole (`""`) and every added service is
 *   SERVING unless set otherwise before; `Check` for an unknown service
 *   answers NOT_FOUND. {@linkcode GrpcServicePublisher.setServingStatus}
 *   changes a status at once (no sleep, bug B27 fixed); stopping sets every
 *   status to NOT_SERVING.
 * - **Errors** (`spec/net.md` §3.4, bug B28 fixed): a thrown
 *   {@linkcode GrpcStatusError} is answered as it is and not reported; a
 *   request that does not decode is answered INVALID_ARGUMENT and not
 *   reported; any other exception is reported to `onError` and answered
 *   INTERNAL `"Exception: <message>"` (the original answered UNKNOWN). The
 *   server keeps serving either way.
 * - **Handlers** get their requests decoded (streams as `AsyncIterable`),
 *   the caller's address, metadata and TLS common name, and an `AbortSignal`
 *   that aborts when the client cancels, the deadline passes or the server is
 *   stopped.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { GrpcServicePublisher, type GrpcService } from "@tsercom/tsercom/rpc";
 *
 * const text = {
 *   serialize: (value: string) => new TextEncoder().encode(value),
 *   deserialize: (bytes: Uint8Array) => new TextDecoder().decode(bytes),
 * };
 * const greeter: GrpcService = {
 *   typeName: "example.Greeter",
 *   methods: {
 *     Greet: { name: "Greet", path: "/example.Greeter/Greet", kind: "unary", request: text, response: text },
 *   },
 * };
 *
 * await using publisher = new GrpcServicePublisher({ addresses: "127.0.0.1" });
 * publisher.addService(greeter, { Greet: (name: string) => `Hello, ${name}` });
 * const { port } = await publisher.start();
 * assert(port > 0 && publisher.port === port);
 * ```
 */
export class GrpcServicePublisher implements AsyncDisposable {
  readonly #addresses: readonly string[] | undefined;
  readonly #requestedPort: number;
  readonly #credentials: () => grpc.ServerCredentials;
  readonly #maxReceiveMessageBytes: number;
  readonly #environment: ServerCallEnvironment;
  readonly #registrations: Registration[] = [];
  readonly #health = new Map<string, GrpcServingStatusCode>();
  readonly #healthWaiters = new Set<() => void>();
  #state: State = "new";
  #server: grpc.Server | undefined;
  #port: number | undefined;
  #bound: string[] = [];
  #starting: Promise<unknown> | undefined;
  #stopping: Promise<void> | undefined;

  /**
   * Checks the options; nothing is bound until
   * {@linkcode GrpcServicePublisher.start}.
   *
   * @param options Addresses, port, TLS, error sink and message size limit.
   * @throws {TypeError} When an option has the wrong type, or a TLS
   * certificate or key cannot be parsed, or the key is not the certificate's.
   * @throws {RangeError} When the port or the message size is out of range.
   */
  constructor(options: GrpcServicePublisherOptions = {}) {
    const {
      addresses,
      port = 0,
      tls,
      onError = defaultErrorSink,
      maxReceiveMessageBytes = 4 * 1024 * 1024,
    } = options;
    this.#addresses = addresses === undefined ? undefined : checkAddresses(addresses);
    if (!Number.isInteger(port) || port < 0 || port > 65_535) {
      throw new RangeError(
        `Cannot create the gRPC server as 'port' must be an integer in 0..65535: current value is ${
          show(port)
        }`,
      );
    }
    this.#requestedPort = port;
    if (typeof onError !== "function") {
      throw new TypeError(
        `Cannot create the gRPC server as 'onError' must be a function: current value is ${
          show(onError)
        }`,
      );
    }
    if (
      !Number.isInteger(maxReceiveMessageBytes) || maxReceiveMessageBytes < 1 ||
      maxReceiveMessageBytes > 2 ** 31 - 1
    ) {
      throw new RangeError(
        `Cannot create the gRPC server as 'maxReceiveMessageBytes' must be an integer in 1..2147483647: current value is ${
          show(maxReceiveMessageBytes)
        }`,
      );
    }
    this.#maxReceiveMessageBytes = maxReceiveMessageBytes;
    this.#credentials = credentialsFactory(tls);
    this.#environment = new ServerCallEnvironment(onError);
  }

  /** The bound port, once started (the one chosen, when 0 was asked); `undefined` before. */
  get port(): number | undefined {
    return this.#port;
  }

  /** The addresses bound by {@linkcode GrpcServicePublisher.start} (without brackets); empty before. */
  get addresses(): readonly string[] {
    return [...this.#bound];
  }

  /** Whether the server is serving: started, and not stopping or stopped. */
  get running(): boolean {
    return this.#state === "running";
  }

  /**
   * Registers a service and its handlers, one per method, keyed like
   * `service.methods`. Must be called before
   * {@linkcode GrpcServicePublisher.start}.
   *
   * @param service The service definition (e.g. from
   * {@linkcode serviceFromDescriptor}).
   * @param handlers The handlers, by method name.
   * @throws {GrpcHandlerError} When the service is malformed or already
   * added, or the handlers do not match its methods.
   * @throws {Error} When the server has been started.
   */
  addService(service: GrpcService, handlers: Record<string, GrpcHandler>): void {
    if (this.#state !== "new") {
      throw new Error(
        `Cannot add a service as the server must not have been started: it is ${this.#state}`,
      );
    }
    this.#register(service, handlers, false);
  }

  /**
   * Sets the health status of a service (`""`: the server as a whole), as
   * `Check` answers and `Watch` streams it. Takes effect at once. Before
   * start it overrides the SERVING that start would set; after stop it
   * changes nothing (everything is NOT_SERVING).
   *
   * @param service The service's full name, or `""`.
   * @param status UNKNOWN, SERVING or NOT_SERVING.
   * @throws {TypeError} When `service` is not a string.
   * @throws {RangeError} When `status` is not one of the three.
   */
  setServingStatus(service: string, status: GrpcServingStatusCode): void {
    if (typeof service !== "string") {
      throw new TypeError(
        `Cannot set a serving status as 'service' must be a string: current value is ${
          show(service)
        }`,
      );
    }
    if (!SETTABLE_STATUSES.includes(status)) {
      throw new RangeError(
        `Cannot set a serving status as 'status' must be UNKNOWN (0), SERVING (1) or NOT_SERVING (2): current value is ${
          show(status)
        }`,
      );
    }
    if (this.#state === "stopping" || this.#state === "stopped") return;
    this.#setHealth(service, status);
  }

  /**
   * The health status of a service as `Check` would answer it, or
   * `undefined` for a service that has none (NOT_FOUND).
   *
   * @param service The service's full name, or `""`.
   * @returns The status.
   */
  servingStatus(service: string): GrpcServingStatusCode | undefined {
    return this.#health.get(service);
  }

  /**
   * Binds the addresses and starts serving. Each address is tried in order
   * on the port of the first that bound; failures are skipped.
   *
   * @returns The bound port.
   * @throws {GrpcBindError} When no address could be bound (nothing is left
   * running).
   * @throws {Error} When called twice, or after stop.
   */
  start(): Promise<{ port: number }> {
    if (this.#state !== "new") {
      return Promise.reject(
        new Error(
          `Cannot start the gRPC server as it must be new: it is ${this.#state} (a publisher starts once)`,
        ),
      );
    }
    this.#state = "starting";
    const starting = this.#start();
    this.#starting = starting.catch(() => {});
    return starting;
  }

  /**
   * Stops serving: every health status becomes NOT_SERVING and `Watch`
   * streams end, new calls are refused, and calls in flight get `graceMs` to
   * finish. Then their signals abort (handlers that stop on them answer
   * UNAVAILABLE "The server was stopped"), and 100 ms later whatever is left
   * is cut off and the connections closed. Resolves once the server is down. Idempotent; a no-op if the
   * server was never started (it cannot be started afterwards).
   *
   * @param options The grace period.
   * @returns A promise that resolves when the server is down.
   * @throws {RangeError} When `graceMs` is not a non-negative integer
   * (synchronously).
   */
  stop(options: GrpcServicePublisherStopOptions = {}): Promise<void> {
    const { graceMs = 1000 } = options;
    if (!Number.isInteger(graceMs) || graceMs < 0 || graceMs > 2_147_483_647) {
      throw new RangeError(
        `Cannot stop the gRPC server as 'graceMs' must be a non-negative integer: current value is ${
          show(graceMs)
        }`,
      );
    }
    if (this.#state === "new") {
      this.#state = "stopped";
      return Promise.resolve();
    }
    this.#stopping ??= this.#stop(graceMs);
    return this.#stopping;
  }

  /** Stops the server with the default grace period. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }

  async #start(): Promise<{ port: number }> {
    const server = new grpc.Server({
      "grpc.max_receive_message_length": this.#maxReceiveMessageBytes,
    });
    this.#registerHealth();
    for (const { service, handlers } of this.#registrations) {
      for (const [key, method] of Object.entries(service.methods)) {
        server.register(
          method.path,
          adaptHandler(method, handlers[key], this.#environment),
          serializeResponse,
          identity,
          GRPC_JS_TYPE[method.kind],
        );
      }
    }
    const credentials = this.#credentials();
    const failures: GrpcBindFailure[] = [];
    let port = this.#requestedPort;
    const bindOne = async (address: string) => {
      try {
        port = await bind(server, bindTarget(address, port), credentials);
        this.#bound.push(address);
      } catch (error) {
        failures.push({ address, port, error });
      }
    };
    if (this.#addresses === undefined) {
      // `::` is dual-stack on most hosts: then 0.0.0.0 is already served and
      // binding it would fail (and grpc-js would log that failure).
      await bindOne("::");
      if (this.#bound.length === 0 || ipv4WildcardFree(port)) await bindOne("0.0.0.0");
    } else {
      for (const address of this.#addresses) await bindOne(address);
    }
    if (this.#bound.length === 0) {
      server.forceShutdown();
      this.#state = "stopped";
      throw new GrpcBindError(failures);
    }
    this.#server = server;
    this.#port = port;
    if (!this.#health.has("")) this.#setHealth("", GrpcServingStatus.SERVING);
    for (const { service } of this.#registrations) {
      if (service.typeName === HEALTH_TYPE_NAME) continue;
      if (!this.#health.has(service.typeName)) {
        this.#setHealth(service.typeName, GrpcServingStatus.SERVING);
      }
    }
    if (this.#state === "starting") this.#state = "running";
    return { port };
  }

  async #stop(graceMs: number): Promise<void> {
    await this.#starting;
    const server = this.#server;
    this.#state = "stopping";
    for (const service of this.#health.keys()) {
      this.#health.set(service, GrpcServingStatus.NOT_SERVING);
    }
    this.#wakeHealthWatchers();
    if (server !== undefined) {
      const shutdown = new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
      // The grace period, then the calls' signals abort and handlers that
      // stop on them answer UNAVAILABLE; then what is left is cut off.
      if (!(await settlesWithin(shutdown, graceMs))) {
        this.#environment.abortAll(
          new GrpcStatusError(GrpcStatus.UNAVAILABLE, "The server was stopped"),
        );
        if (!(await settlesWithin(shutdown, ABORT_GRACE_MS))) server.forceShutdown();
      }
    }
    this.#state = "stopped";
  }

  #register(
    service: GrpcService,
    handlers: Record<string, GrpcHandler>,
    internal: boolean,
  ): void {
    checkService(service);
    const { typeName } = service;
    if (!internal && typeName === HEALTH_TYPE_NAME) {
      throw new GrpcHandlerError(
        typeName,
        undefined,
        `Cannot add ${typeName} as it must not be the health service: every server already serves it (use setServingStatus)`,
      );
    }
    if (this.#registrations.some((r) => r.service.typeName === typeName)) {
      throw new GrpcHandlerError(
        typeName,
        undefined,
        `Cannot add ${typeName} as a service can be added once: it already is`,
      );
    }
    const paths = new Set(
      this.#registrations.flatMap((r) => Object.values(r.service.methods).map((m) => m.path)),
    );
    for (const method of Object.values(service.methods)) {
      if (paths.has(method.path)) {
        throw new GrpcHandlerError(
          typeName,
          method.name,
          `Cannot add ${typeName} as its method paths must be new: ${method.path} is already served`,
        );
      }
      paths.add(method.path);
    }
    checkHandlers(service, handlers);
    this.#registrations.push({ service, handlers: { ...handlers } });
  }

  #registerHealth(): void {
    const check = (request: HealthCheckRequest): HealthCheckResponse => {
      const status = this.#health.get(request.service);
      if (status === undefined) {
        throw new GrpcStatusError(
          GrpcStatus.NOT_FOUND,
          `Unknown service ${JSON.stringify(request.service)}`,
        );
      }
      return { status };
    };
    const watch = this.#watch.bind(this);
    this.#register(GrpcHealthService, { Check: check, Watch: watch }, true);
  }

  async *#watch(
    request: HealthCheckRequest,
    context: GrpcCallContext,
  ): AsyncGenerator<HealthCheckResponse> {
    let last: number | undefined;
    for (;;) {
      const status = this.#health.get(request.service) ?? GrpcServingStatus.SERVICE_UNKNOWN;
      if (status !== last) {
        last = status;
        yield { status };
      }
      if (this.#state === "stopping" || this.#state === "stopped" || context.signal.aborted) {
        return;
      }
      await new Promise<void>((resolve) => {
        const done = () => {
          context.signal.removeEventListener("abort", done);
          this.#healthWaiters.delete(done);
          resolve();
        };
        context.signal.addEventListener("abort", done, { once: true });
        this.#healthWaiters.add(done);
      });
    }
  }

  #setHealth(service: string, status: GrpcServingStatusCode): void {
    if (this.#health.get(service) === status) return;
    this.#health.set(service, status);
    this.#wakeHealthWatchers();
  }

  #wakeHealthWatchers(): void {
    for (const wake of [...this.#healthWaiters]) wake();
  }
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/** How long handlers get to answer once their signals aborted at stop, in milliseconds. */
const ABORT_GRACE_MS = 100;

/** Whether `promise` settles within `ms` milliseconds (0: only if it already has). */
async function settlesWithin(promise: Promise<void>, ms: number): Promise<boolean> {
  try {
    await deadline(promise, ms);
    return true;
  } catch (error) {
    if (error instanceof DeadlineError) return false;
    throw error;
  }
}

function defaultErrorSink(error: unknown, method: string): void {
  console.error(`gRPC handler for ${method} failed:`, error);
}

function checkAddresses(addresses: string | readonly string[]): readonly string[] {
  const list = typeof addresses === "string" ? [addresses] : addresses;
  if (!Array.isArray(list) || list.length === 0) {
    throw new TypeError(
      `Cannot create the gRPC server as 'addresses' must be a string or a non-empty array of strings: current value is ${
        show(addresses)
      }`,
    );
  }
  return Object.freeze(list.map((address: unknown) => {
    if (typeof address !== "string" || address.trim() === "") {
      throw new TypeError(
        `Cannot create the gRPC server as every address must be a non-empty string: current value is ${
          show(address)
        }`,
      );
    }
    const trimmed = address.trim();
    return trimmed.startsWith("[") && trimmed.endsWith("]") ? trimmed.slice(1, -1) : trimmed;
  }));
}

/** `host:port`, with IPv6 hosts bracketed (bug B25). */
function bindTarget(address: string, port: number): string {
  return address.includes(":") ? `[${address}]:${port}` : `${address}:${port}`;
}

function bindReason(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  const inner = /errors: \[(.*)\]$/.exec(message);
  return inner?.[1] ?? message;
}

function bind(
  server: grpc.Server,
  target: string,
  credentials: grpc.ServerCredentials,
): Promise<number> {
  return new Promise((resolve, reject) => {
    server.bindAsync(target, credentials, (error, port) => {
      if (error !== null) reject(error);
      else resolve(port);
    });
  });
}

/** Whether 0.0.0.0:`port` can still be bound (the `::` listener is IPv6-only). */
function ipv4WildcardFree(port: number): boolean {
  try {
    Deno.listen({ hostname: "0.0.0.0", port }).close();
    return true;
  } catch {
    return false;
  }
}

function pemText(what: string, value: unknown): string {
  let text: string;
  if (typeof value === "string") {
    text = value;
  } else if (value instanceof Uint8Array) {
    text = new TextDecoder().decode(value);
  } else {
    throw new TypeError(
      `Cannot create the gRPC server as 'tls.${what}' must be a PEM string or bytes: current value is ${
        show(value)
      }`,
    );
  }
  if (!/-----BEGIN [A-Z0-9 ]+-----/.test(text)) {
    throw new TypeError(
      `Cannot create the gRPC server as 'tls.${what}' must be PEM (a '-----BEGIN ...-----' block): it is not`,
    );
  }
  return text;
}

/** Parses every certificate of a PEM bundle, so that a bad one fails here rather than at handshake time. */
function certificates(what: string, text: string): X509Certificate[] {
  const blocks = text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) {
    throw new TypeError(
      `Cannot create the gRPC server as 'tls.${what}' must hold at least one PEM certificate: it holds none`,
    );
  }
  return blocks.map((block, k) => {
    try {
      return new X509Certificate(block);
    } catch (error) {
      throw new TypeError(
        `Cannot create the gRPC server as 'tls.${what}' must hold valid certificates: certificate ${
          k + 1
        } cannot be parsed: ${error instanceof Error ? error.message : String(error)}`,
        { cause: error },
      );
    }
  });
}

function credentialsFactory(
  tls: GrpcServerTlsOptions | undefined,
): () => grpc.ServerCredentials {
  if (tls === undefined) return () => grpc.ServerCredentials.createInsecure();
  if (tls === null || typeof tls !== "object") {
    throw new TypeError(
      `Cannot create the gRPC server as 'tls' must be an object: current value is ${show(tls)}`,
    );
  }
  const certText = pemText("certChain", tls.certChain);
  const keyText = pemText("privateKey", tls.privateKey);
  const caText = tls.clientCa === undefined ? undefined : pemText("clientCa", tls.clientCa);
  const [leaf] = certificates("certChain", certText);
  let key: KeyObject;
  try {
    key = createPrivateKey(keyText);
  } catch (error) {
    throw new TypeError(
      `Cannot create the gRPC server as 'tls.privateKey' must be a valid unencrypted PEM private key: ${
        error instanceof Error ? error.message : String(error)
      }`,
      { cause: error },
    );
  }
  if (!leaf.checkPrivateKey(key)) {
    throw new TypeError(
      `Cannot create the gRPC server as 'tls.privateKey' must be the key of the first certificate of 'tls.certChain' (${leaf.subject}): it is another key`,
    );
  }
  if (caText !== undefined) certificates("clientCa", caText);
  const certChain = Buffer.from(certText);
  const privateKey = Buffer.from(keyText);
  const clientCa = caText === undefined ? undefined : Buffer.from(caText);
  const requireCert = tls.requireClientCertificate ?? clientCa !== undefined;
  if (typeof requireCert !== "boolean") {
    throw new TypeError(
      `Cannot create the gRPC server as 'tls.requireClientCertificate' must be a boolean: current value is ${
        show(requireCert)
      }`,
    );
  }
  if (requireCert && clientCa === undefined) {
    throw new TypeError(
      "Cannot create the gRPC server as 'tls.requireClientCertificate' needs 'tls.clientCa' to check client certificates against: it is missing",
    );
  }
  if (!requireCert && clientCa !== undefined) {
    throw new TypeError(
      "Cannot create the gRPC server as 'tls.clientCa' must come with required client certificates: 'tls.requireClientCertificate' is false, and optional client certificates are not supported",
    );
  }
  // grpc-js loads the system root bundle when rootCerts is null, which breaks
  // the handshake under Deno: without a client CA, pass the server's own
  // chain (no client certificate is requested, so it is never used).
  const rootCerts = clientCa ?? certChain;
  const pairs = [{ cert_chain: certChain, private_key: privateKey }];
  return () => grpc.ServerCredentials.createSsl(rootCerts, pairs, requireCert);
}

function checkService(service: GrpcService): void {
  const typeName = (service as { typeName?: unknown } | null)?.typeName;
  if (typeof typeName !== "string" || typeName === "") {
    throw new GrpcHandlerError(
      String(typeName),
      undefined,
      `Cannot add the service as its 'typeName' must be a non-empty string: current value is ${
        show(typeName)
      }`,
    );
  }
  const methods = service.methods;
  if (methods === null || typeof methods !== "object") {
    throw new GrpcHandlerError(
      typeName,
      undefined,
      `Cannot add ${typeName} as its 'methods' must be an object: current value is ${
        show(methods)
      }`,
    );
  }
  for (const [key, method] of Object.entries(methods) as [string, GrpcMethod | null][]) {
    const problem = method === null || typeof method !== "object"
      ? `must be an object: current value is ${show(method)}`
      : typeof method.path !== "string" || !method.path.startsWith("/")
      ? `must have a 'path' starting with '/': current value is ${show(method.path)}`
      : !KINDS.includes(method.kind)
      ? `must have a 'kind' among ${KINDS.join(", ")}: current value is ${show(method.kind)}`
      : !isCodec(method.request)
      ? "must have a 'request' codec with serialize and deserialize functions: it has not"
      : !isCodec(method.response)
      ? "must have a 'response' codec with serialize and deserialize functions: it has not"
      : undefined;
    if (problem !== undefined) {
      throw new GrpcHandlerError(
        typeName,
        key,
        `Cannot add ${typeName} as its method ${key} ${problem}`,
      );
    }
  }
}

function isCodec(codec: unknown): boolean {
  return codec !== null && typeof codec === "object" &&
    typeof (codec as { serialize?: unknown }).serialize === "function" &&
    typeof (codec as { deserialize?: unknown }).deserialize === "function";
}

function checkHandlers(service: GrpcService, handlers: Record<string, GrpcHandler>): void {
  const { typeName, methods } = service;
  if (handlers === null || typeof handlers !== "object") {
    throw new GrpcHandlerError(
      typeName,
      undefined,
      `Cannot add ${typeName} as its handlers must be an object keyed by method name: current value is ${
        show(handlers)
      }`,
    );
  }
  for (const key of Object.keys(handlers)) {
    if (!Object.hasOwn(methods, key)) {
      throw new GrpcHandlerError(
        typeName,
        key,
        `Cannot add ${typeName} as every handler must be for one of its methods (${
          Object.keys(methods).join(", ")
        }): ${key} is not`,
      );
    }
  }
  for (const [key, method] of Object.entries(methods)) {
    const handler: unknown = handlers[key];
    if (typeof handler !== "function") {
      throw new GrpcHandlerError(
        typeName,
        key,
        `Cannot add ${typeName} as every method must have a handler function: ${key} has ${
          show(handler)
        }`,
      );
    }
    const streamsOut = method.kind === "server_streaming" || method.kind === "bidi_streaming";
    const kind = method.kind.replace("_", "-");
    if (handler instanceof GeneratorFunction) {
      throw new GrpcHandlerError(
        typeName,
        key,
        `Cannot add ${typeName} as the handler of ${key} must not be a (synchronous) generator function: use ${
          streamsOut ? "an async generator" : "a function"
        } for a ${kind} method`,
      );
    }
    if (!streamsOut && handler instanceof AsyncGeneratorFunction) {
      throw new GrpcHandlerError(
        typeName,
        key,
        `Cannot add ${typeName} as the handler of ${key} must return one response (${kind} method): it is an async generator function`,
      );
    }
    if (streamsOut && handler instanceof AsyncFunction) {
      throw new GrpcHandlerError(
        typeName,
        key,
        `Cannot add ${typeName} as the handler of ${key} must return an AsyncIterable of responses (${kind} method): it is an async function`,
      );
    }
  }
}
