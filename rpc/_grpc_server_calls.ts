/**
 * Adapts tsercom handlers (`grpc_types.ts`) to grpc-js server calls
 * (private: grpc-js types never appear in the public API).
 *
 * Messages cross grpc-js as raw bytes (identity serialisers), and the
 * method's codecs run here, so that a request that does not decode is
 * answered with INVALID_ARGUMENT (grpc-js itself would answer INTERNAL).
 *
 * The error interceptor of `spec/net.md` §3.4, with bug B28 fixed, lives in
 * {@linkcode ServerCallEnvironment.statusOf}: a thrown
 * {@linkcode GrpcStatusError} is the answer as it is, undecodable requests
 * are INVALID_ARGUMENT, failures of a call its client already cancelled are
 * dropped, and anything else is reported to the error sink once and answered
 * with INTERNAL `"Exception: <message>"`.
 *
 * @module
 */

import type * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import { parsePeer } from "./_parse_peer.ts";
import {
  type GrpcCallContext,
  type GrpcHandler,
  type GrpcMethod,
  type GrpcPeer,
  GrpcStatus,
  GrpcStatusError,
} from "./grpc_types.ts";

/** What every grpc-js server call offers (grpc-js does not export the type by name). */
type ServerSurfaceCall =
  & Pick<
    grpc.ServerUnaryCall<unknown, unknown>,
    "metadata" | "getPeer" | "getDeadline" | "getAuthContext"
  >
  & { once(event: "cancelled", listener: () => void): unknown };

/** Where unexpected handler failures go. */
export type ErrorSink = (error: unknown, method: string) => void;

/** A status to answer a call with. */
interface StatusAnswer {
  code: number;
  details: string;
}

/** What every adapted call shares: the error sink and the set of live calls. */
export class ServerCallEnvironment {
  readonly #onError: ErrorSink;
  readonly #live = new Set<CallScope>();

  constructor(onError: ErrorSink) {
    this.#onError = onError;
  }

  /** Opens the scope of a new call. */
  open(call: ServerSurfaceCall): CallScope {
    const scope = new CallScope(call, this.#live);
    this.#live.add(scope);
    return scope;
  }

  /**
   * Aborts every live call's signal because the server is stopping: a
   * handler that stops on it gets `reason` (a status) sent to its client.
   */
  abortAll(reason: GrpcStatusError): void {
    for (const scope of [...this.#live]) scope.abort(reason, true);
  }

  /**
   * The status that answers a failed call, reporting the failure to the sink
   * when it was unexpected.
   */
  statusOf(error: unknown, scope: CallScope, method: GrpcMethod): StatusAnswer {
    const deliberate = asStatusError(error);
    if (deliberate !== undefined) return deliberate;
    if (scope.decodeError !== undefined) return scope.decodeError;
    if (scope.signal.aborted) {
      // The client cancelled, the deadline passed or the server is stopping:
      // a handler that fails because it stops on its signal did not crash.
      // (Only a stopping server's answer still reaches the client.)
      return asStatusError(scope.signal.reason) ??
        { code: GrpcStatus.CANCELLED, details: "The call was cancelled" };
    }
    this.report(error, method.path);
    return { code: GrpcStatus.INTERNAL, details: `Exception: ${messageOf(error)}` };
  }

  /** Reports an unexpected failure; a throwing sink is logged, never propagated. */
  report(error: unknown, method: string): void {
    try {
      this.#onError(error, method);
    } catch (sinkError) {
      console.error(`The gRPC error sink threw while reporting a failure of ${method}:`, sinkError);
      console.error(error);
    }
  }
}

/** The life of one call: its context, abort signal and request decoding state. */
export class CallScope {
  readonly #controller = new AbortController();
  readonly #call: ServerSurfaceCall;
  readonly #live: Set<CallScope>;
  #context: GrpcCallContext | undefined;
  #closed = false;
  #abortedByServer = false;
  /** Set when a request failed to decode: the call is answered INVALID_ARGUMENT. */
  decodeError: StatusAnswer | undefined;
  /** Called once when the call is aborted (one slot, reused by the waits below). */
  onAbort: (() => void) | undefined;

  constructor(call: ServerSurfaceCall, live: Set<CallScope>) {
    this.#call = call;
    this.#live = live;
    call.once("cancelled", () => {
      if (!this.#closed) this.abort(cancelReason(call));
    });
  }

  /** Aborted when the client cancels, the deadline passes, or the server is shut down. */
  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  /** The handler's view of the call. */
  get context(): GrpcCallContext {
    return this.#context ??= new ServerCallContext(this.#call, this.#controller.signal);
  }

  /** Whether the server (not the client) aborted the call: its answer still goes out. */
  get abortedByServer(): boolean {
    return this.#abortedByServer;
  }

  abort(reason: unknown, byServer = false): void {
    if (this.#controller.signal.aborted) return;
    this.#abortedByServer = byServer;
    this.#controller.abort(reason);
    const onAbort = this.onAbort;
    this.onAbort = undefined;
    onAbort?.();
  }

  /**
   * The call is being answered: later cancel notices (grpc-js also sends one
   * when a call ends normally) no longer abort the signal.
   */
  close(): void {
    this.#closed = true;
    this.#live.delete(this);
  }

  /** Records a request decoding failure and returns the error to throw at the handler. */
  failDecode(method: GrpcMethod, error: unknown): GrpcStatusError {
    const details = `Cannot decode the request of ${method.path}: ${messageOf(error)}`;
    this.decodeError = { code: GrpcStatus.INVALID_ARGUMENT, details };
    return new GrpcStatusError(GrpcStatus.INVALID_ARGUMENT, details, { cause: error });
  }
}

/** A lazily computed {@linkcode GrpcCallContext} over a grpc-js call. */
class ServerCallContext implements GrpcCallContext {
  readonly signal: AbortSignal;
  readonly #call: ServerSurfaceCall;
  #peer: GrpcPeer | undefined;
  #metadata: Readonly<Record<string, string>> | undefined;
  #commonName: { value: string | undefined } | undefined;

  constructor(call: ServerSurfaceCall, signal: AbortSignal) {
    this.#call = call;
    this.signal = signal;
  }

  get peer(): GrpcPeer {
    if (this.#peer === undefined) {
      const text = this.#call.getPeer();
      this.#peer = Object.freeze(parsePeer(text) ?? { address: text, port: undefined });
    }
    return this.#peer;
  }

  get metadata(): Readonly<Record<string, string>> {
    return this.#metadata ??= flattenMetadata(this.#call.metadata);
  }

  get clientCommonName(): string | undefined {
    this.#commonName ??= { value: commonNameOf(this.#call) };
    return this.#commonName.value;
  }
}

function flattenMetadata(metadata: grpc.Metadata): Readonly<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const [key, values] of Object.entries(metadata.toJSON())) {
    out[key] = values
      .map((value) => typeof value === "string" ? value : Buffer.from(value).toString("base64"))
      .join(key.endsWith("-bin") ? "," : ", ");
  }
  return Object.freeze(out);
}

function commonNameOf(call: ServerSurfaceCall): string | undefined {
  let subject: unknown;
  try {
    subject = call.getAuthContext().sslPeerCertificate?.subject;
  } catch {
    return undefined;
  }
  const cn = (subject as { CN?: unknown } | undefined)?.CN;
  if (typeof cn === "string") return cn;
  if (Array.isArray(cn) && typeof cn[0] === "string") return cn[0];
  return undefined;
}

function cancelReason(call: ServerSurfaceCall): GrpcStatusError {
  let deadline: number;
  try {
    const value = call.getDeadline();
    deadline = value instanceof Date ? value.getTime() : value;
  } catch {
    deadline = Infinity;
  }
  return Number.isFinite(deadline) && deadline <= Date.now()
    ? new GrpcStatusError(GrpcStatus.DEADLINE_EXCEEDED, "The call's deadline passed")
    : new GrpcStatusError(GrpcStatus.CANCELLED, "The call was cancelled by the client");
}

/** A deliberate status: a {@linkcode GrpcStatusError} (or one from another copy of this module). */
function asStatusError(error: unknown): StatusAnswer | undefined {
  if (error === null || typeof error !== "object") return undefined;
  if (!(error instanceof GrpcStatusError) && (error as Error).name !== "GrpcStatusError") {
    return undefined;
  }
  const { code, details } = error as { code?: unknown; details?: unknown };
  if (typeof code !== "number" || !Number.isInteger(code) || code < 1 || code > 16) {
    return undefined;
  }
  return { code, details: typeof details === "string" ? details : "" };
}

function messageOf(error: unknown): string {
  if (error instanceof Error) return error.message;
  try {
    return String(error);
  } catch {
    return Object.prototype.toString.call(error);
  }
}

function toBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes)
    ? bytes
    : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function isAsyncIterable(value: unknown): value is AsyncIterable<unknown> {
  return value !== null && (typeof value === "object" || typeof value === "function") &&
    typeof (value as AsyncIterable<unknown>)[Symbol.asyncIterator] === "function";
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (typeof value === "object") return value.constructor?.name ?? "an object";
  return typeof value;
}

// ---------------------------------------------------------------------------
// Requests in
// ---------------------------------------------------------------------------

/** Buffered requests at which the stream is paused (flow control reaches the client). */
const HIGH_WATER = 32;

/**
 * The requests of a streaming call as an async iterable, decoded one by one.
 * Iterable once. Ends with the client's half-close; throws the signal's
 * reason when the call is aborted, and an INVALID_ARGUMENT
 * {@linkcode GrpcStatusError} for a request that does not decode. Leaving the
 * loop early leaves the call open (the responses may go on).
 */
class RequestReader<T> implements AsyncIterableIterator<T> {
  readonly #stream:
    | grpc.ServerReadableStream<Buffer, Buffer>
    | grpc.ServerDuplexStream<Buffer, Buffer>;
  readonly #method: GrpcMethod<T, unknown>;
  readonly #scope: CallScope;
  readonly #buffer: Buffer[] = [];
  #head = 0;
  #paused = false;
  #ended = false;
  #done = false;
  #started = false;
  #wake: (() => void) | undefined;

  constructor(
    stream: grpc.ServerReadableStream<Buffer, Buffer> | grpc.ServerDuplexStream<Buffer, Buffer>,
    method: GrpcMethod<T, unknown>,
    scope: CallScope,
  ) {
    this.#stream = stream;
    this.#method = method;
    this.#scope = scope;
    stream.on("data", (chunk: Buffer) => {
      this.#buffer.push(chunk);
      if (this.#buffer.length - this.#head >= HIGH_WATER && !this.#paused) {
        this.#paused = true;
        stream.pause();
      }
      this.#notify();
    });
    stream.once("end", () => {
      this.#ended = true;
      this.#notify();
    });
    stream.on("error", () => this.#notify());
    stream.once("close", () => this.#notify());
    scope.signal.addEventListener("abort", () => this.#notify(), { once: true });
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<T> {
    if (this.#started) {
      throw new TypeError(`Cannot iterate the requests of ${this.#method.path} twice`);
    }
    this.#started = true;
    return this;
  }

  async next(): Promise<IteratorResult<T>> {
    for (;;) {
      if (this.#done) return { done: true, value: undefined };
      if (this.#head < this.#buffer.length) {
        const chunk = this.#buffer[this.#head];
        this.#buffer[this.#head++] = undefined as unknown as Buffer;
        if (this.#head === this.#buffer.length) {
          this.#buffer.length = 0;
          this.#head = 0;
        }
        if (this.#paused && this.#buffer.length - this.#head < HIGH_WATER / 2) {
          this.#paused = false;
          this.#stream.resume();
        }
        try {
          return { done: false, value: this.#method.request.deserialize(chunk) };
        } catch (error) {
          this.#done = true;
          throw this.#scope.failDecode(this.#method, error);
        }
      }
      if (this.#ended) {
        this.#done = true;
        return { done: true, value: undefined };
      }
      if (this.#scope.signal.aborted) {
        this.#done = true;
        throw this.#scope.signal.reason;
      }
      if (this.#stream.destroyed) {
        this.#done = true;
        throw new GrpcStatusError(GrpcStatus.CANCELLED, "The request stream closed early");
      }
      await new Promise<void>((resolve) => this.#wake = resolve);
    }
  }

  return(): Promise<IteratorResult<T>> {
    this.#done = true;
    this.#buffer.length = 0;
    this.#head = 0;
    if (this.#paused) {
      this.#paused = false;
      this.#stream.resume();
    }
    return Promise.resolve({ done: true, value: undefined });
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }
}

// ---------------------------------------------------------------------------
// Responses out
// ---------------------------------------------------------------------------

const ABORTED: unique symbol = Symbol("aborted");

/** Waits for `promise`, or for the call to be aborted (one listener slot, no leak per message). */
function unlessAborted<T>(promise: Promise<T>, scope: CallScope): Promise<T | typeof ABORTED> {
  if (scope.signal.aborted) {
    promise.catch(() => {});
    return Promise.resolve(ABORTED);
  }
  return new Promise((resolve, reject) => {
    scope.onAbort = () => resolve(ABORTED);
    promise.then(
      (value) => {
        scope.onAbort = undefined;
        resolve(value);
      },
      (error) => {
        scope.onAbort = undefined;
        reject(error);
      },
    );
  });
}

/** Writes a handler's responses; resolves when they are all written or the call was aborted. */
async function writeResponses(
  call: grpc.ServerWritableStream<Buffer, Buffer> | grpc.ServerDuplexStream<Buffer, Buffer>,
  method: GrpcMethod,
  responses: unknown,
  scope: CallScope,
  environment: ServerCallEnvironment,
): Promise<void> {
  if (!isAsyncIterable(responses)) {
    throw new TypeError(
      `Cannot answer ${method.path} as its handler must return an AsyncIterable of responses: it returned ${
        describe(responses)
      }`,
    );
  }
  const iterator = responses[Symbol.asyncIterator]();
  let finished = false;
  try {
    for (;;) {
      const next = await unlessAborted(iterator.next(), scope);
      if (next === ABORTED) return;
      if (next.done) {
        finished = true;
        return;
      }
      const ok = call.write(
        method.response.reusesBuffer === true
          ? new DeferredResponse(method, next.value, environment) as unknown as Buffer
          : toBuffer(method.response.serialize(next.value)),
      );
      if (!ok && !call.destroyed) {
        const drained = new Promise<void>((resolve) => {
          const done = () => {
            call.off("drain", done);
            call.off("close", done);
            resolve();
          };
          call.on("drain", done);
          call.on("close", done);
        });
        if (await unlessAborted(drained, scope) === ABORTED) return;
      }
    }
  } catch (error) {
    finished = true;
    throw error;
  } finally {
    if (!finished) iterator.return?.()?.catch?.(() => {});
  }
}

// ---------------------------------------------------------------------------
// The four kinds
// ---------------------------------------------------------------------------

/** The grpc-js method type for each kind. */
export const GRPC_JS_TYPE = {
  unary: "unary",
  server_streaming: "serverStream",
  client_streaming: "clientStream",
  bidi_streaming: "bidi",
} as const;

/**
 * A streamed response whose codec reuses its buffer: serialized only when
 * grpc-js frames it ({@linkcode serializeResponse}), which copies the bytes
 * before anything else can serialize.
 */
class DeferredResponse {
  readonly #method: GrpcMethod;
  readonly #value: unknown;
  readonly #environment: ServerCallEnvironment;

  constructor(method: GrpcMethod, value: unknown, environment: ServerCallEnvironment) {
    this.#method = method;
    this.#value = value;
    this.#environment = environment;
  }

  serialize(): Buffer {
    try {
      return toBuffer(this.#method.response.serialize(this.#value));
    } catch (error) {
      // grpc-js answers INTERNAL and ends the call; the sink still hears of it.
      this.#environment.report(error, this.#method.path);
      throw error;
    }
  }
}

/**
 * The response serializer given to grpc-js: bytes pass as they are, a
 * {@linkcode DeferredResponse} is serialized now.
 */
export function serializeResponse(value: Buffer): Buffer {
  return value instanceof DeferredResponse ? value.serialize() : value;
}

/** Raw bytes pass through grpc-js untouched; the method's codecs run in the adapter. */
export function identity(bytes: Buffer): Buffer {
  return bytes;
}

type AnyHandler = (input: unknown, context: GrpcCallContext) => unknown;

/**
 * The grpc-js handler that runs `handler` for `method`.
 *
 * @param method The method (its kind picks the adaptation).
 * @param handler The tsercom handler.
 * @param environment The error sink and live-call set.
 */
export function adaptHandler(
  method: GrpcMethod,
  handler: GrpcHandler,
  environment: ServerCallEnvironment,
): grpc.UntypedHandleCall {
  const run = handler as unknown as AnyHandler;
  switch (method.kind) {
    case "unary":
      return (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
        const scope = environment.open(call);
        let request: unknown;
        try {
          request = method.request.deserialize(call.request);
        } catch (error) {
          scope.close();
          scope.failDecode(method, error);
          callback(scope.decodeError!);
          return;
        }
        answerOnce(run, request, scope, method, environment, callback);
      };
    case "client_streaming":
      return (
        call: grpc.ServerReadableStream<Buffer, Buffer>,
        callback: grpc.sendUnaryData<Buffer>,
      ) => {
        const scope = environment.open(call);
        answerOnce(
          run,
          new RequestReader(call, method, scope),
          scope,
          method,
          environment,
          callback,
        );
      };
    case "server_streaming":
      return (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
        const scope = environment.open(call);
        let request: unknown;
        try {
          request = method.request.deserialize(call.request);
        } catch (error) {
          scope.close();
          scope.failDecode(method, error);
          call.emit("error", scope.decodeError);
          return;
        }
        answerStream(run, request, call, scope, method, environment);
      };
    case "bidi_streaming":
      return (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
        const scope = environment.open(call);
        answerStream(run, new RequestReader(call, method, scope), call, scope, method, environment);
      };
  }
}

async function answerOnce(
  run: AnyHandler,
  input: unknown,
  scope: CallScope,
  method: GrpcMethod,
  environment: ServerCallEnvironment,
  callback: grpc.sendUnaryData<Buffer>,
): Promise<void> {
  let bytes: Buffer;
  try {
    const response = await run(input, scope.context);
    if (isAsyncIterable(response)) {
      throw new TypeError(
        `Cannot answer ${method.path} as its handler must return one response: it returned an AsyncIterable`,
      );
    }
    bytes = toBuffer(method.response.serialize(response));
    // grpc-js may frame it later: a buffer the codec reuses is copied now.
    if (method.response.reusesBuffer === true) bytes = Buffer.from(bytes);
  } catch (error) {
    const status = environment.statusOf(error, scope, method);
    scope.close();
    callback(status);
    return;
  }
  scope.close();
  callback(null, bytes);
}

async function answerStream(
  run: AnyHandler,
  input: unknown,
  call: grpc.ServerWritableStream<Buffer, Buffer> | grpc.ServerDuplexStream<Buffer, Buffer>,
  scope: CallScope,
  method: GrpcMethod,
  environment: ServerCallEnvironment,
): Promise<void> {
  let status: StatusAnswer | undefined;
  try {
    await writeResponses(call, method, run(input, scope.context), scope, environment);
  } catch (error) {
    status = environment.statusOf(error, scope, method);
  }
  const { aborted } = scope.signal;
  if (aborted && status === undefined) {
    status = asStatusError(scope.signal.reason) ??
      { code: GrpcStatus.CANCELLED, details: "The call was cancelled" };
  }
  scope.close();
  if (aborted && !scope.abortedByServer) return; // the client is gone
  if (status === undefined) call.end();
  else call.emit("error", status);
}
