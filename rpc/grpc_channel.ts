/**
 * {@linkcode GrpcChannel}: one client connection to a gRPC server, with the
 * four kinds of call; {@linkcode createClient}, a typed client for a
 * {@linkcode GrpcService}; and {@linkcode checkHealth}, the standard health
 * check (`spec/net.md` §3.2).
 *
 * @module
 */

import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import type { Socket } from "node:net";
import {
  checkAddress,
  checkObject,
  checkPort,
  checkScheduler,
  checkSignal,
  formatTarget,
} from "./_channel_args.ts";
import { prepareSecurity } from "./_channel_credentials.ts";
import { show } from "./_show.ts";
import type { ChannelSecurity } from "./channel_factory.ts";
import { GrpcHealthService, GrpcServingStatus } from "./grpc_health_service.ts";
import {
  type GrpcMethod,
  type GrpcMethodKind,
  type GrpcService,
  GrpcStatus,
  type GrpcStatusCode,
  GrpcStatusError,
} from "./grpc_types.ts";
import { MAX_DELAY_MS, type Scheduler, systemScheduler } from "./scheduler.ts";

/**
 * The connectivity state of a {@linkcode GrpcChannel} (the states of the
 * gRPC connectivity protocol).
 *
 * - `"idle"`: not connected, and not trying to (a new channel, or one whose
 *   connection went away); the next call or {@linkcode GrpcChannel.waitForReady}
 *   connects.
 * - `"connecting"`: connecting.
 * - `"ready"`: connected.
 * - `"transient_failure"`: the last attempt failed; it retries with backoff.
 * - `"shutdown"`: closed.
 */
export type ChannelConnectivity =
  | "idle"
  | "connecting"
  | "ready"
  | "transient_failure"
  | "shutdown";

/** Options of {@linkcode GrpcChannel}. */
export interface GrpcChannelOptions {
  /**
   * How to secure the connection and verify the server (see
   * {@linkcode ChannelSecurity}).
   *
   * @default {{ mode: "insecure" }}
   */
  security?: ChannelSecurity;
  /**
   * The largest response message accepted, in bytes; a larger one fails the
   * call with `RESOURCE_EXHAUSTED`.
   *
   * @default {4194304}
   */
  maxReceiveMessageBytes?: number;
}

/** Options of every call of a {@linkcode GrpcChannel}. */
export interface GrpcCallOptions {
  /**
   * The deadline, in milliseconds from the start of the call; when it passes
   * the call fails with `DEADLINE_EXCEEDED` (on both sides).
   *
   * @default {undefined} (no deadline)
   */
  deadlineMs?: number;
  /**
   * Cancels the call: it fails with `CANCELLED`, whose `cause` is
   * `signal.reason`. A signal aborted already fails the call before it starts.
   *
   * @default {undefined}
   */
  signal?: AbortSignal;
  /**
   * Request metadata (headers). Keys are lower-case; the values of keys
   * ending in `-bin` are binary, given in base64.
   *
   * @default {{}}
   */
  metadata?: Readonly<Record<string, string>>;
}

/** Options of {@linkcode GrpcChannel.waitForReady}. */
export interface WaitForReadyOptions {
  /**
   * Fail as soon as a connection attempt fails (the channel reports
   * `"transient_failure"`), with `UNAVAILABLE` and the reason, instead of
   * waiting for the channel's own retries until the timeout.
   *
   * @default {false}
   */
  failFast?: boolean;
  /**
   * Stops waiting: the promise rejects with `signal.reason` (the channel
   * itself is left as it is).
   *
   * @default {undefined}
   */
  signal?: AbortSignal;
  /**
   * The timers for the timeout.
   *
   * @default {systemScheduler}
   */
  scheduler?: Scheduler;
}

/** How many responses a stream buffers before it stops reading from the network. */
const HIGH_WATER = 16;
/** The path of the call that reads why a connection attempt failed (never reaches a server). */
const PROBE_PATH = "/tsercom.ConnectionProbe/Probe";

const CONNECTIVITY: Record<grpc.connectivityState, ChannelConnectivity> = {
  [grpc.connectivityState.IDLE]: "idle",
  [grpc.connectivityState.CONNECTING]: "connecting",
  [grpc.connectivityState.READY]: "ready",
  [grpc.connectivityState.TRANSIENT_FAILURE]: "transient_failure",
  [grpc.connectivityState.SHUTDOWN]: "shutdown",
};

/** Messages cross grpc-js as bytes: the codecs run here. */
function identity(bytes: Buffer): Buffer {
  return bytes;
}

/**
 * One client connection to a gRPC server: a wrapper around a grpc-js channel,
 * with the four kinds of call ({@linkcode GrpcChannel.unary},
 * {@linkcode GrpcChannel.serverStream}, {@linkcode GrpcChannel.clientStream},
 * {@linkcode GrpcChannel.bidiStream}).
 *
 * Creating a channel does not connect: the first call, or
 * {@linkcode GrpcChannel.waitForReady}, does. `connectChannel` creates one
 * and waits until it is ready, trying several addresses at once.
 *
 * Every call fails with a {@linkcode GrpcStatusError}: the status the server
 * sent, or the one the client decided (`DEADLINE_EXCEEDED`, `CANCELLED`,
 * `UNAVAILABLE` when the server cannot be reached, `INTERNAL` when a response
 * does not decode). Two failures come from the caller's own side and are
 * re-thrown unchanged, after cancelling the call: an error thrown by the
 * request codec, and one thrown by a stream of requests.
 *
 * {@linkcode GrpcChannel.close} (or `await using`) cancels the calls still
 * running and closes the connection.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { GrpcChannel } from "@tsercom/tsercom/rpc";
 *
 * await using channel = new GrpcChannel("127.0.0.1", 50051);
 * assert.equal(channel.target, "127.0.0.1:50051");
 * assert.equal(channel.connectivity, "idle"); // nothing is dialled yet
 * ```
 */
export class GrpcChannel implements AsyncDisposable {
  readonly #client: grpc.Client;
  readonly #address: string;
  readonly #port: number;
  readonly #target: string;
  readonly #calls = new Set<LiveCall>();
  readonly #sockets = new Set<Socket>();
  #closed = false;

  /**
   * Creates a channel to `address` and `port`, without connecting.
   *
   * @param address An IP address (IPv6 with or without brackets) or a host name.
   * @param port The server's port, 1..65535.
   * @param options The security settings and limits.
   * @throws {TypeError} When an argument is malformed (including certificates
   *   and keys that do not parse).
   * @throws {RangeError} When `port` or a limit is out of range.
   */
  constructor(address: string, port: number, options: GrpcChannelOptions = {}) {
    const operation = "create a channel";
    const host = checkAddress(operation, address);
    checkPort(operation, port);
    checkObject(operation, "options", options);
    const { security = { mode: "insecure" }, maxReceiveMessageBytes = 4 * 1024 * 1024 } = options;
    if (
      !Number.isSafeInteger(maxReceiveMessageBytes) || maxReceiveMessageBytes < 1 ||
      maxReceiveMessageBytes > 2 ** 31 - 1
    ) {
      throw new RangeError(
        `Cannot ${operation} as 'options.maxReceiveMessageBytes' must be an integer in 1..${
          2 ** 31 - 1
        }: current value is ${show(maxReceiveMessageBytes)}`,
      );
    }
    const prepared = prepareSecurity(operation, security);
    this.#address = host;
    this.#port = port;
    this.#target = formatTarget(host, port);
    const { credentials, options: securityOptions } = prepared.credentialsFor(host);
    trackSockets(credentials, this.#sockets, () => this.#closed);
    this.#client = new grpc.Client(this.#target, credentials, {
      ...securityOptions,
      // One connection per GrpcChannel: closing one never affects another.
      "grpc.use_local_subchannel_pool": 1,
      "grpc.max_receive_message_length": maxReceiveMessageBytes,
    });
  }

  /** The server's address as given (IPv6 without brackets). */
  get address(): string {
    return this.#address;
  }

  /** The server's port. */
  get port(): number {
    return this.#port;
  }

  /** `address:port`, with brackets around an IPv6 address: `"[::1]:50051"`. */
  get target(): string {
    return this.#target;
  }

  /** The connectivity state now (reading it does not start a connection). */
  get connectivity(): ChannelConnectivity {
    if (this.#closed) return "shutdown";
    return CONNECTIVITY[this.#client.getChannel().getConnectivityState(false)];
  }

  /** Whether {@linkcode GrpcChannel.close} was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Connects if needed, and resolves once the channel is ready.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { GrpcChannel, GrpcStatus, GrpcStatusError } from "@tsercom/tsercom/rpc";
   *
   * // Port 1 on the loopback address refuses connections.
   * await using channel = new GrpcChannel("127.0.0.1", 1);
   * await assert.rejects(
   *   channel.waitForReady(5_000, { failFast: true }),
   *   (error) => error instanceof GrpcStatusError && error.code === GrpcStatus.UNAVAILABLE,
   * );
   * ```
   *
   * @param timeoutMs How long to wait, in milliseconds (0..{@linkcode MAX_DELAY_MS}).
   * @param options Whether to fail at the first failed attempt, an abort signal, the timers.
   * @returns A promise that resolves when the channel is ready.
   * @throws {GrpcStatusError} (rejection) `DEADLINE_EXCEEDED` when the time
   *   runs out; `UNAVAILABLE` when an attempt fails and `failFast` is set, or
   *   when the channel is closed.
   * @throws {RangeError} When `timeoutMs` is out of range.
   * @throws {TypeError} When an option is malformed.
   */
  waitForReady(timeoutMs: number, options: WaitForReadyOptions = {}): Promise<void> {
    const operation = "wait for the channel to be ready";
    if (typeof timeoutMs !== "number" || !(timeoutMs >= 0 && timeoutMs <= MAX_DELAY_MS)) {
      throw new RangeError(
        `Cannot ${operation} as 'timeoutMs' must be a number in 0..${MAX_DELAY_MS}: current value is ${
          show(timeoutMs)
        }`,
      );
    }
    checkObject(operation, "options", options);
    const { failFast = false, signal, scheduler = systemScheduler } = options;
    if (typeof failFast !== "boolean") {
      throw new TypeError(
        `Cannot ${operation} as 'options.failFast' must be a boolean: current value is ${
          show(failFast)
        }`,
      );
    }
    checkSignal(operation, signal);
    checkScheduler(operation, scheduler);
    if (this.#closed) return Promise.reject(this.#closedError());
    if (signal?.aborted) return Promise.reject(signal.reason);
    const channel = this.#client.getChannel();
    return new Promise<void>((resolve, reject) => {
      let done = false;
      const finish = (...failure: [] | [unknown]) => {
        if (done) return;
        done = true;
        scheduler.clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        if (failure.length === 0) resolve();
        else reject(failure[0]);
      };
      const onAbort = () => finish(signal?.reason);
      const timer = scheduler.setTimeout(() => {
        finish(
          new GrpcStatusError(
            GrpcStatus.DEADLINE_EXCEEDED,
            `Cannot use the channel to ${this.#target} as it was not ready within ${timeoutMs} ms: it is ${this.connectivity}`,
          ),
        );
      }, timeoutMs);
      signal?.addEventListener("abort", onAbort, { once: true });
      const check = () => {
        if (done) return;
        if (this.#closed) return finish(this.#closedError());
        const state = channel.getConnectivityState(true);
        if (state === grpc.connectivityState.READY) return finish();
        if (state === grpc.connectivityState.SHUTDOWN) return finish(this.#closedError());
        if (state === grpc.connectivityState.TRANSIENT_FAILURE && failFast) {
          this.#lastFailure().then((reason) => {
            if (done) return;
            if (channel.getConnectivityState(false) === grpc.connectivityState.READY) finish();
            else {
              finish(
                new GrpcStatusError(
                  GrpcStatus.UNAVAILABLE,
                  `Cannot connect to ${this.#target}: ${reason}`,
                ),
              );
            }
          });
          return;
        }
        // No deadline here: the timer above owns the timeout, and closing the
        // channel wakes every watcher.
        channel.watchConnectivityState(state, Infinity, check);
      };
      check();
    });
  }

  /**
   * Makes a unary call: one request, one response.
   *
   * @example
   * ```ts ignore
   * const response = await channel.unary(sayHello, { name: "Ada" }, { deadlineMs: 1_000 });
   * ```
   *
   * @typeParam Req The request message.
   * @typeParam Res The response message.
   * @param method The method (its `kind` must be `"unary"`).
   * @param request The request.
   * @param options Deadline, abort signal, metadata.
   * @returns The response.
   * @throws {GrpcStatusError} (rejection) When the call fails.
   * @throws {TypeError} When an argument is malformed (synchronously).
   */
  unary<Req, Res>(
    method: GrpcMethod<Req, Res>,
    request: Req,
    options: GrpcCallOptions = {},
  ): Promise<Res> {
    const call = this.#prepare("unary", "unary", method, options);
    if (this.#closed) return Promise.reject(this.#closedCallError(method));
    if (call.signal?.aborted) return Promise.reject(abortedError(method, call.signal));
    let bytes: Buffer;
    try {
      bytes = serializeRequest(method, request);
    } catch (error) {
      return Promise.reject(error);
    }
    return new Promise<Res>((resolve, reject) => {
      const live = new LiveCall(this.#calls, call.signal);
      try {
        const handle = this.#client.makeUnaryRequest(
          method.path,
          identity,
          identity,
          bytes,
          call.metadata,
          startOptions(call),
          (error, response) => {
            live.end();
            if (error) reject(live.error(error));
            else settleDecoded(method, response, resolve, reject);
          },
        );
        live.attach(() => handle.cancel());
      } catch (error) {
        live.end();
        reject(live.error(error));
      }
    });
  }

  /**
   * Makes a server-streaming call: one request, a stream of responses. The
   * call starts when the iteration starts; leaving the loop early cancels it.
   * Responses that arrived before a failure are yielded before it is thrown.
   *
   * @example
   * ```ts ignore
   * for await (const reading of channel.serverStream(watch, { sensor: "t1" })) {
   *   console.log(reading);
   * }
   * ```
   *
   * @typeParam Req The request message.
   * @typeParam Res The response message.
   * @param method The method (its `kind` must be `"server_streaming"`).
   * @param request The request.
   * @param options Deadline, abort signal, metadata.
   * @returns The responses, to be iterated once.
   * @throws {GrpcStatusError} (from the iteration) When the call fails.
   * @throws {TypeError} When an argument is malformed (synchronously).
   */
  serverStream<Req, Res>(
    method: GrpcMethod<Req, Res>,
    request: Req,
    options: GrpcCallOptions = {},
  ): AsyncIterable<Res> {
    const call = this.#prepare("server_streaming", "serverStream", method, options);
    return this.#serverStream(method, request, call);
  }

  async *#serverStream<Req, Res>(
    method: GrpcMethod<Req, Res>,
    request: Req,
    call: PreparedCall,
  ): AsyncGenerator<Res, void, undefined> {
    if (this.#closed) throw this.#closedCallError(method);
    if (call.signal?.aborted) throw abortedError(method, call.signal);
    const bytes = serializeRequest(method, request);
    const live = new LiveCall(this.#calls, call.signal);
    let stream: grpc.ClientReadableStream<Buffer>;
    try {
      stream = this.#client.makeServerStreamRequest(
        method.path,
        identity,
        identity,
        bytes,
        call.metadata,
        startOptions(call),
      );
    } catch (error) {
      live.end();
      throw live.error(error);
    }
    live.attach(() => stream.cancel());
    yield* readResponses(stream, method, live);
  }

  /**
   * Makes a client-streaming call: a stream of requests, one response. The
   * requests are sent as they come, with flow control; when the server
   * answers before the stream ends, the rest is not read (and the iterator is
   * closed).
   *
   * @example
   * ```ts ignore
   * const summary = await channel.clientStream(record, [{ value: 1 }, { value: 2 }]);
   * ```
   *
   * @typeParam Req The request message.
   * @typeParam Res The response message.
   * @param method The method (its `kind` must be `"client_streaming"`).
   * @param requests The requests (an async or a sync iterable).
   * @param options Deadline, abort signal, metadata.
   * @returns The response.
   * @throws {GrpcStatusError} (rejection) When the call fails.
   * @throws {TypeError} When an argument is malformed (synchronously).
   */
  clientStream<Req, Res>(
    method: GrpcMethod<Req, Res>,
    requests: AsyncIterable<Req> | Iterable<Req>,
    options: GrpcCallOptions = {},
  ): Promise<Res> {
    const call = this.#prepare("client_streaming", "clientStream", method, options);
    checkRequests("clientStream", requests);
    if (this.#closed) return Promise.reject(this.#closedCallError(method));
    if (call.signal?.aborted) return Promise.reject(abortedError(method, call.signal));
    return new Promise<Res>((resolve, reject) => {
      const live = new LiveCall(this.#calls, call.signal);
      let stream: grpc.ClientWritableStream<Buffer>;
      try {
        stream = this.#client.makeClientStreamRequest(
          method.path,
          identity,
          identity,
          call.metadata,
          startOptions(call),
          (error, response) => {
            live.end();
            if (live.requestFailure !== undefined) reject(live.requestFailure.error);
            else if (error) reject(live.error(error));
            else settleDecoded(method, response, resolve, reject);
          },
        );
      } catch (error) {
        live.end();
        reject(live.error(error));
        return;
      }
      // Failures arrive through the callback; this only keeps stray stream
      // errors from being thrown as unhandled events.
      stream.on("error", () => {});
      live.attach(() => stream.cancel());
      sendRequests(stream, requests, method, live);
    });
  }

  /**
   * Makes a bidirectional-streaming call: requests and responses flow
   * independently. The call starts when the iteration of the responses
   * starts; leaving the loop early cancels it.
   *
   * @example
   * ```ts ignore
   * for await (const answer of channel.bidiStream(chat, questions)) console.log(answer);
   * ```
   *
   * @typeParam Req The request message.
   * @typeParam Res The response message.
   * @param method The method (its `kind` must be `"bidi_streaming"`).
   * @param requests The requests (an async or a sync iterable).
   * @param options Deadline, abort signal, metadata.
   * @returns The responses, to be iterated once.
   * @throws {GrpcStatusError} (from the iteration) When the call fails.
   * @throws {TypeError} When an argument is malformed (synchronously).
   */
  bidiStream<Req, Res>(
    method: GrpcMethod<Req, Res>,
    requests: AsyncIterable<Req> | Iterable<Req>,
    options: GrpcCallOptions = {},
  ): AsyncIterable<Res> {
    const call = this.#prepare("bidi_streaming", "bidiStream", method, options);
    checkRequests("bidiStream", requests);
    return this.#bidiStream(method, requests, call);
  }

  async *#bidiStream<Req, Res>(
    method: GrpcMethod<Req, Res>,
    requests: AsyncIterable<Req> | Iterable<Req>,
    call: PreparedCall,
  ): AsyncGenerator<Res, void, undefined> {
    if (this.#closed) throw this.#closedCallError(method);
    if (call.signal?.aborted) throw abortedError(method, call.signal);
    const live = new LiveCall(this.#calls, call.signal);
    let stream: grpc.ClientDuplexStream<Buffer, Buffer>;
    try {
      stream = this.#client.makeBidiStreamRequest(
        method.path,
        identity,
        identity,
        call.metadata,
        startOptions(call),
      );
    } catch (error) {
      live.end();
      throw live.error(error);
    }
    live.attach(() => stream.cancel());
    sendRequests(stream, requests, method, live);
    yield* readResponses(stream, method, live);
  }

  /**
   * Cancels the calls still running (they fail with `CANCELLED`) and closes
   * the connection. Later calls fail with `UNAVAILABLE`. Closing twice does
   * nothing.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const call of [...this.#calls]) {
      call.cancel(`Cancelled as the channel to ${this.#target} was closed`, undefined);
    }
    this.#client.close();
    // grpc-js lets a connection attempt in progress run on after the channel
    // is closed (until the server answers or the socket fails): end it now.
    for (const socket of this.#sockets) socket.destroy();
    this.#sockets.clear();
  }

  /** Closes the channel (see {@linkcode GrpcChannel.close}). */
  [Symbol.asyncDispose](): Promise<void> {
    this.close();
    return Promise.resolve();
  }

  #prepare(
    kind: GrpcMethodKind,
    use: string,
    method: GrpcMethod<unknown, unknown>,
    options: GrpcCallOptions,
  ): PreparedCall {
    const operation = `call ${use}()`;
    checkMethod(operation, kind, use, method);
    checkObject(operation, "options", options);
    const { deadlineMs, signal, metadata = {} } = options;
    if (
      deadlineMs !== undefined &&
      (typeof deadlineMs !== "number" || !(deadlineMs > 0 && deadlineMs <= MAX_DELAY_MS))
    ) {
      throw new RangeError(
        `Cannot ${operation} as 'options.deadlineMs' must be a number in (0, ${MAX_DELAY_MS}]: current value is ${
          show(deadlineMs)
        }`,
      );
    }
    checkSignal(operation, signal);
    return { metadata: toMetadata(operation, metadata), deadlineMs, signal };
  }

  /** Why the last connection attempt failed, read from a call that fails at once. */
  #lastFailure(): Promise<string> {
    return new Promise<string>((resolve) => {
      try {
        this.#client.makeUnaryRequest(
          PROBE_PATH,
          identity,
          identity,
          Buffer.alloc(0),
          new grpc.Metadata(),
          { deadline: Date.now() + 1_000 },
          (error) => resolve(cleanDetails(error?.details ?? "the channel became ready")),
        );
      } catch (error) {
        resolve(messageOf(error));
      }
    });
  }

  #closedError(): GrpcStatusError {
    return new GrpcStatusError(
      GrpcStatus.UNAVAILABLE,
      `Cannot use the channel to ${this.#target} as it is closed`,
    );
  }

  #closedCallError(method: GrpcMethod<unknown, unknown>): GrpcStatusError {
    return new GrpcStatusError(
      GrpcStatus.UNAVAILABLE,
      `Cannot call ${method.path} as the channel to ${this.#target} is closed`,
    );
  }
}

/**
 * Makes `credentials` record in `sockets` every socket its connections use,
 * until the socket closes, so that closing the channel can end them all; a
 * connection whose TCP handshake completes after the close is ended at once.
 */
function trackSockets(
  credentials: grpc.ChannelCredentials,
  sockets: Set<Socket>,
  isClosed: () => boolean,
): void {
  const createConnector = credentials._createSecureConnector.bind(credentials);
  const track = (socket: Socket) => {
    if (isClosed()) {
      socket.destroy();
      throw new Error("The channel was closed while connecting");
    }
    if (sockets.has(socket)) return;
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  };
  credentials._createSecureConnector = (target, options, callCredentials) => {
    const connector = createConnector(target, options, callCredentials);
    return {
      connect(socket) {
        try {
          track(socket);
        } catch (error) {
          return Promise.reject(error);
        }
        return connector.connect(socket).then((result) => {
          track(result.socket);
          return result;
        });
      },
      waitForReady: () => connector.waitForReady(),
      getCallCredentials: () => connector.getCallCredentials(),
      destroy: () => connector.destroy(),
    };
  };
}

// ---------------------------------------------------------------------------
// createClient
// ---------------------------------------------------------------------------

/**
 * The function {@linkcode createClient} makes for one method: its kind
 * decides the shape, as with the methods of {@linkcode GrpcChannel}. When the
 * method's `kind` is not a literal type, the shape is the loose union of all
 * four.
 *
 * @typeParam M The method.
 */
export type GrpcClientMethod<M> = M extends GrpcMethod<infer Req, infer Res>
  ? M["kind"] extends "unary" ? (request: Req, options?: GrpcCallOptions) => Promise<Res>
  : M["kind"] extends "server_streaming"
    ? (request: Req, options?: GrpcCallOptions) => AsyncIterable<Res>
  : M["kind"] extends "client_streaming"
    ? (requests: AsyncIterable<Req> | Iterable<Req>, options?: GrpcCallOptions) => Promise<Res>
  : M["kind"] extends "bidi_streaming" ? (
      requests: AsyncIterable<Req> | Iterable<Req>,
      options?: GrpcCallOptions,
    ) => AsyncIterable<Res>
  : (
    input: Req | AsyncIterable<Req> | Iterable<Req>,
    options?: GrpcCallOptions,
  ) => Promise<Res> | AsyncIterable<Res>
  : never;

/**
 * A client for a service: one function per method, named after the method
 * with a lower-case first letter (`GetId` → `getId`).
 *
 * @typeParam S The service.
 */
export type GrpcClient<S extends GrpcService> = {
  readonly [K in keyof S["methods"] & string as Uncapitalize<K>]: GrpcClientMethod<
    S["methods"][K]
  >;
};

/**
 * Makes a client for `service` over `channel`: one function per method,
 * named after the method with a lower-case first letter, that makes the
 * method's kind of call. The methods' types follow the service's when its
 * methods' `kind`s are literal types (declare the service `as const` or with
 * `satisfies GrpcService`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { createClient, GrpcChannel, type GrpcService } from "@tsercom/tsercom/rpc";
 *
 * const bytes = { serialize: (b: Uint8Array) => b, deserialize: (b: Uint8Array) => b };
 * const Echo = {
 *   typeName: "demo.Echo",
 *   methods: {
 *     Say: { name: "Say", path: "/demo.Echo/Say", kind: "unary", request: bytes, response: bytes },
 *   },
 * } as const satisfies GrpcService;
 *
 * await using channel = new GrpcChannel("127.0.0.1", 50051);
 * const echo = createClient(channel, Echo);
 * assert.equal(typeof echo.say, "function"); // (request: Uint8Array, options?) => Promise<Uint8Array>
 * ```
 *
 * @typeParam S The service.
 * @param channel The channel the calls go through.
 * @param service The service.
 * @returns The client.
 * @throws {TypeError} When `channel` is not a {@linkcode GrpcChannel}, a
 *   method is malformed, or two method names differ only in their first letter's case.
 */
export function createClient<S extends GrpcService>(
  channel: GrpcChannel,
  service: S,
): GrpcClient<S> {
  const operation = "create a client";
  if (!(channel instanceof GrpcChannel)) {
    throw new TypeError(
      `Cannot ${operation} as 'channel' must be a GrpcChannel: current value is ${show(channel)}`,
    );
  }
  checkService(operation, service);
  const client: Record<string, unknown> = {};
  for (const [name, method] of Object.entries(service.methods)) {
    const key = name.charAt(0).toLowerCase() + name.slice(1);
    if (Object.hasOwn(client, key)) {
      throw new TypeError(
        `Cannot ${operation} for ${service.typeName} as two methods would both be named '${key}'`,
      );
    }
    const m = method as GrpcMethod<unknown, unknown>;
    switch (m.kind) {
      case "unary":
        client[key] = (request: unknown, options?: GrpcCallOptions) =>
          channel.unary(m, request, options);
        break;
      case "server_streaming":
        client[key] = (request: unknown, options?: GrpcCallOptions) =>
          channel.serverStream(m, request, options);
        break;
      case "client_streaming":
        client[key] = (requests: AsyncIterable<unknown>, options?: GrpcCallOptions) =>
          channel.clientStream(m, requests, options);
        break;
      case "bidi_streaming":
        client[key] = (requests: AsyncIterable<unknown>, options?: GrpcCallOptions) =>
          channel.bidiStream(m, requests, options);
        break;
      default:
        throw new TypeError(
          `Cannot ${operation} as method '${name}' of ${service.typeName} must have a 'kind' of "unary", "server_streaming", "client_streaming" or "bidi_streaming": current value is ${
            show(m.kind)
          }`,
        );
    }
  }
  return Object.freeze(client) as GrpcClient<S>;
}

// ---------------------------------------------------------------------------
// checkHealth
// ---------------------------------------------------------------------------

/** Options of {@linkcode checkHealth}. */
export interface CheckHealthOptions {
  /**
   * The deadline of the check, in milliseconds.
   *
   * @default {1000}
   */
  timeoutMs?: number;
  /**
   * Cancels the check: the promise rejects with `signal.reason`.
   *
   * @default {undefined}
   */
  signal?: AbortSignal;
}

/**
 * Asks the standard health service (`grpc.health.v1.Health/Check`) whether
 * `service` is serving: `true` if and only if the answer is `SERVING`;
 * `false` for any other answer and any failure (an unknown service, a server
 * that is down, a closed channel, the deadline passing).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkHealth, GrpcChannel } from "@tsercom/tsercom/rpc";
 *
 * await using channel = new GrpcChannel("127.0.0.1", 1); // nothing listens there
 * assert.equal(await checkHealth(channel), false);
 * ```
 *
 * @param channel The channel to the server.
 * @param service The service asked about; `""` is the server as a whole.
 * @param options The deadline and an abort signal.
 * @returns Whether the service is serving.
 * @throws {TypeError} When an argument is malformed (synchronously).
 */
export function checkHealth(
  channel: GrpcChannel,
  service = "",
  options: CheckHealthOptions = {},
): Promise<boolean> {
  const operation = "check health";
  if (!(channel instanceof GrpcChannel)) {
    throw new TypeError(
      `Cannot ${operation} as 'channel' must be a GrpcChannel: current value is ${show(channel)}`,
    );
  }
  if (typeof service !== "string") {
    throw new TypeError(
      `Cannot ${operation} as 'service' must be a string: current value is ${show(service)}`,
    );
  }
  checkObject(operation, "options", options);
  const { timeoutMs = 1_000, signal } = options;
  if (typeof timeoutMs !== "number" || !(timeoutMs > 0 && timeoutMs <= MAX_DELAY_MS)) {
    throw new RangeError(
      `Cannot ${operation} as 'options.timeoutMs' must be a number in (0, ${MAX_DELAY_MS}]: current value is ${
        show(timeoutMs)
      }`,
    );
  }
  checkSignal(operation, signal);
  if (signal?.aborted) return Promise.reject(signal.reason);
  return channel.unary(GrpcHealthService.methods.Check, { service }, {
    deadlineMs: timeoutMs,
    signal,
  }).then(
    (response) => response.status === GrpcServingStatus.SERVING,
    () => {
      if (signal?.aborted) throw signal.reason;
      return false;
    },
  );
}

// ---------------------------------------------------------------------------
// Calls
// ---------------------------------------------------------------------------

/** A call's validated options, in grpc-js terms. */
interface PreparedCall {
  metadata: grpc.Metadata;
  deadlineMs: number | undefined;
  signal: AbortSignal | undefined;
}

/** The grpc-js options of a call starting now. */
function startOptions(call: PreparedCall): grpc.CallOptions {
  return call.deadlineMs === undefined ? {} : { deadline: Date.now() + call.deadlineMs };
}

/** What the response reader needs of a grpc-js readable call. */
type ResponseStream = grpc.ClientReadableStream<Buffer> | grpc.ClientDuplexStream<Buffer, Buffer>;
/** What the request sender needs of a grpc-js writable call. */
type RequestStream = grpc.ClientWritableStream<Buffer> | grpc.ClientDuplexStream<Buffer, Buffer>;

/**
 * One running call: cancels it on abort or on close, remembers why it was
 * cancelled, and leaves the channel's set of live calls when it ends.
 */
class LiveCall {
  readonly #calls: Set<LiveCall>;
  readonly #signal: AbortSignal | undefined;
  readonly #onAbort = () =>
    this.cancel("Cancelled by the caller's abort signal", this.#signal?.reason);
  #cancel: (() => void) | undefined;
  #cancelled: { details: string; cause: unknown } | undefined;
  #ended = false;
  #endWaiters: (() => void)[] = [];
  /** Set when the stream of requests (or its codec) threw. */
  requestFailure: { error: unknown } | undefined;

  constructor(calls: Set<LiveCall>, signal: AbortSignal | undefined) {
    this.#calls = calls;
    this.#signal = signal;
    calls.add(this);
    signal?.addEventListener("abort", this.#onAbort, { once: true });
  }

  get ended(): boolean {
    return this.#ended;
  }

  /** Connects the call's cancel function (the call may have ended already). */
  attach(cancel: () => void): void {
    this.#cancel = cancel;
    if (this.#ended) return;
    if (this.#cancelled !== undefined) cancel();
  }

  cancel(details: string, cause: unknown): void {
    if (this.#ended || this.#cancelled !== undefined) return;
    this.#cancelled = { details, cause };
    this.#cancel?.();
  }

  /** Records a failure of the requests and cancels the call. */
  failRequests(error: unknown): void {
    if (this.#ended || this.requestFailure !== undefined) return;
    this.requestFailure = { error };
    this.cancel("Cancelled as the stream of requests failed", error);
  }

  end(): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#calls.delete(this);
    this.#signal?.removeEventListener("abort", this.#onAbort);
    for (const wake of this.#endWaiters.splice(0)) wake();
  }

  /** Resolves when the call ends. */
  whenEnded(): Promise<void> {
    if (this.#ended) return Promise.resolve();
    return new Promise((resolve) => this.#endWaiters.push(resolve));
  }

  /** The status error for a grpc-js failure of this call. */
  error(raw: unknown): GrpcStatusError {
    const code = grpcCodeOf(raw);
    if (code === GrpcStatus.CANCELLED && this.#cancelled !== undefined) {
      return new GrpcStatusError(GrpcStatus.CANCELLED, this.#cancelled.details, {
        cause: this.#cancelled.cause ?? raw,
      });
    }
    const details = typeof (raw as { details?: unknown })?.details === "string"
      ? (raw as { details: string }).details
      : messageOf(raw);
    return new GrpcStatusError(code, details, { cause: raw });
  }
}

/** Yields the decoded responses of a readable call, with flow control. */
async function* readResponses<Res>(
  stream: ResponseStream,
  method: GrpcMethod<unknown, Res>,
  live: LiveCall,
): AsyncGenerator<Res, void, undefined> {
  const queue: Buffer[] = [];
  let failure: { error: unknown } | undefined;
  let ended = false;
  let statusSeen = false;
  let wake: (() => void) | undefined;
  const notify = () => {
    const resume = wake;
    wake = undefined;
    resume?.();
  };
  stream.on("data", (chunk: Buffer) => {
    queue.push(chunk);
    if (queue.length >= HIGH_WATER) stream.pause();
    notify();
  });
  stream.on("error", (error: unknown) => {
    failure ??= { error };
    notify();
  });
  stream.on("end", () => {
    ended = true;
    notify();
  });
  stream.on("status", () => {
    statusSeen = true;
    live.end();
    notify();
  });
  let complete = false;
  try {
    for (;;) {
      const chunk = queue.shift();
      if (chunk !== undefined) {
        if (stream.isPaused() && queue.length < HIGH_WATER) stream.resume();
        yield decode(method, chunk);
        continue;
      }
      if (ended || (statusSeen && stream.readableLength === 0)) {
        complete = true;
        live.end();
        if (live.requestFailure !== undefined) throw live.requestFailure.error;
        if (failure !== undefined) throw live.error(failure.error);
        return;
      }
      if (stream.isPaused()) stream.resume();
      await new Promise<void>((resolve) => (wake = resolve));
    }
  } finally {
    if (!complete) {
      live.cancel("Cancelled as the caller stopped reading the responses", undefined);
    }
  }
}

/** What `sendRequests` gets instead of a request once the call ended. */
const ENDED: unique symbol = Symbol("ended");

/** Sends `requests` on a writable call, with flow control, then half-closes it. */
async function sendRequests<Req>(
  stream: RequestStream,
  requests: AsyncIterable<Req> | Iterable<Req>,
  method: GrpcMethod<Req, unknown>,
  live: LiveCall,
): Promise<void> {
  const iterator: AsyncIterator<Req> | Iterator<Req> = Symbol.asyncIterator in requests
    ? (requests as AsyncIterable<Req>)[Symbol.asyncIterator]()
    : (requests as Iterable<Req>)[Symbol.iterator]();
  const ended = live.whenEnded().then((): typeof ENDED => ENDED);
  let exhausted = false;
  try {
    for (;;) {
      const step = await Promise.race([iterator.next(), ended]);
      if (step === ENDED) return;
      if (step.done) {
        exhausted = true;
        break;
      }
      const bytes = serializeRequest(method, step.value);
      if (live.ended) return;
      if (!stream.write(bytes)) await drained(stream, ended);
    }
    if (!live.ended) stream.end();
  } catch (error) {
    exhausted = true; // an iterator that threw is finished
    live.failRequests(error);
  } finally {
    if (!exhausted) {
      // Not awaited: an async generator answers return() only after its pending next().
      Promise.resolve(iterator.return?.()).catch(() => {});
    }
  }
}

function drained(stream: RequestStream, ended: Promise<typeof ENDED>): Promise<unknown> {
  let onDrain: (() => void) | undefined;
  const drain = new Promise<void>((resolve) => {
    onDrain = resolve;
    stream.once("drain", resolve);
  });
  return Promise.race([drain, ended]).finally(() => stream.off("drain", onDrain!));
}

function settleDecoded<Res>(
  method: GrpcMethod<unknown, Res>,
  response: Buffer | undefined,
  resolve: (value: Res) => void,
  reject: (error: unknown) => void,
): void {
  try {
    resolve(decode(method, response ?? Buffer.alloc(0)));
  } catch (error) {
    reject(error);
  }
}

function decode<Res>(method: GrpcMethod<unknown, Res>, chunk: Buffer): Res {
  try {
    return method.response.deserialize(
      new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength),
    );
  } catch (error) {
    throw new GrpcStatusError(
      GrpcStatus.INTERNAL,
      `Cannot decode a response of ${method.path}: ${messageOf(error)}`,
      { cause: error },
    );
  }
}

/** A request's bytes, copied when the codec reuses its buffer (grpc-js may send them later). */
function serializeRequest<Req>(method: GrpcMethod<Req, unknown>, request: Req): Buffer {
  const bytes = toBuffer(method.request.serialize(request));
  return method.request.reusesBuffer === true ? Buffer.from(bytes) : bytes;
}

function toBuffer(bytes: Uint8Array): Buffer {
  if (!(bytes instanceof Uint8Array)) {
    throw new TypeError(
      `Cannot send a request as the request codec must return a Uint8Array: it returned ${
        show(bytes)
      }`,
    );
  }
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function abortedError(method: GrpcMethod<unknown, unknown>, signal: AbortSignal): GrpcStatusError {
  return new GrpcStatusError(
    GrpcStatus.CANCELLED,
    `Cancelled ${method.path} before it started: the caller's abort signal was aborted`,
    { cause: signal.reason },
  );
}

function grpcCodeOf(raw: unknown): GrpcStatusCode {
  const code = (raw as { code?: unknown })?.code;
  return typeof code === "number" && Number.isInteger(code) && code >= 1 && code <= 16
    ? code as GrpcStatusCode
    : GrpcStatus.UNKNOWN;
}

/**
 * The reason inside grpc-js's connection failure text: without its
 * "No connection established. Last error: " prefix, its empty "Resolution
 * note" and its time stamp.
 */
function cleanDetails(details: string): string {
  return details
    .replace(/\s*Resolution note:\s*$/, "")
    .replace(/^No connection established\. Last error: (Error: )?/, "")
    .replace(/\.$/, "")
    .replace(/ \(\d{4}-\d\d-\d\dT[\d:.]+Z\)$/, "");
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function toMetadata(operation: string, record: unknown): grpc.Metadata {
  checkObject(operation, "options.metadata", record);
  const metadata = new grpc.Metadata();
  for (const [key, value] of Object.entries(record as Record<string, unknown>)) {
    if (typeof value !== "string") {
      throw new TypeError(
        `Cannot ${operation} as metadata value '${key}' must be a string: current value is ${
          show(value)
        }`,
      );
    }
    try {
      metadata.add(key, key.endsWith("-bin") ? Buffer.from(value, "base64") : value);
    } catch (error) {
      throw new TypeError(
        `Cannot ${operation} as metadata '${key}' is not valid: ${messageOf(error)}`,
        { cause: error },
      );
    }
  }
  return metadata;
}

// ---------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------

function checkRequests(use: string, requests: unknown): void {
  const r = requests as { [Symbol.asyncIterator]?: unknown; [Symbol.iterator]?: unknown } | null;
  if (
    typeof r !== "object" || r === null ||
    (typeof r[Symbol.asyncIterator] !== "function" && typeof r[Symbol.iterator] !== "function")
  ) {
    throw new TypeError(
      `Cannot call ${use}() as 'requests' must be an async or sync iterable: current value is ${
        show(requests)
      }`,
    );
  }
}

function checkMethod(operation: string, kind: GrpcMethodKind, use: string, method: unknown): void {
  const m = method as Partial<GrpcMethod<unknown, unknown>> | null;
  if (
    typeof m !== "object" || m === null || typeof m.path !== "string" || !m.path.startsWith("/") ||
    typeof m.request?.serialize !== "function" || typeof m.response?.deserialize !== "function"
  ) {
    throw new TypeError(
      `Cannot ${operation} as 'method' must be a GrpcMethod with a '/'-rooted path and codecs: current value is ${
        show(method)
      }`,
    );
  }
  if (m.kind !== kind) {
    throw new TypeError(
      `Cannot ${operation} for ${m.path} as it is a ${
        show(m.kind)
      } method: ${use}() makes ${kind} calls`,
    );
  }
}

function checkService(operation: string, service: unknown): void {
  const s = service as Partial<GrpcService> | null;
  if (
    typeof s !== "object" || s === null || typeof s.typeName !== "string" ||
    typeof s.methods !== "object" || s.methods === null
  ) {
    throw new TypeError(
      `Cannot ${operation} as 'service' must be a GrpcService (typeName and methods): current value is ${
        show(service)
      }`,
    );
  }
}
