/**
 * The server side of the caller-id handshake: issuing ids through
 * `tsercom.IdService/GetId` ({@linkcode getIdHandler}) and checking the id a
 * caller puts in its messages ({@linkcode extractIdFromCall},
 * {@linkcode extractIdFromFirstMessage}).
 *
 * Rejections are {@linkcode GrpcStatusError}s with the status codes and
 * details of the Python library, so a handler can let them propagate as the
 * call's status (the publisher passes status errors through untouched):
 *
 * | Problem | Code | Details |
 * |---|---|---|
 * | no id at all | `INVALID_ARGUMENT` | `Missing CallerID` |
 * | the id has no non-empty `id` string | `INVALID_ARGUMENT` | `Malformed or missing CallerID string` |
 * | the string is too long | `INVALID_ARGUMENT` | `CallerID string exceeds maximum length of 256.` |
 * | not a UUID, or not the expected id | `INVALID_ARGUMENT` | `Invalid CallerID received` |
 * | the stream ended before its first message | `CANCELLED` | `First call never received!` |
 * | reading the first message failed | `CANCELLED` | `Error processing first call!` |
 * | the first message could not be decoded | `INVALID_ARGUMENT` | the stream's own `INVALID_ARGUMENT` error, as it is (what `GrpcServicePublisher` streams throw), or `Malformed first call: <why>` for a {@linkcode ProtoDecodeError} |
 *
 * @module
 */

import { create } from "@bufbuild/protobuf";
import { CallerId, type CallerIdFields, InvalidCallerIdError } from "./caller_id.ts";
import { serviceFromDescriptor } from "./grpc_service_definition.ts";
import { type GrpcMethod, GrpcStatus, GrpcStatusError, type UnaryHandler } from "./grpc_types.ts";
import { ProtoDecodeError } from "./proto_decode_error.ts";
import { GetIdResponseSchema, IdService } from "./proto/gen/caller_id_pb.ts";
import { show } from "./_show.ts";

// ---------------------------------------------------------------------------
// GetId
// ---------------------------------------------------------------------------

/** The fields of a `tsercom.GetIdRequest` message: there are none. */
export type GetIdRequestFields = Record<never, never>;

/** The fields of a `tsercom.GetIdResponse` message. */
export interface GetIdResponseFields {
  /** The issued caller id; absent when the sender did not set it. */
  id?: CallerIdFields | undefined;
}

/** The definition of `tsercom.IdService`, with its typed method. */
export interface GrpcIdServiceDefinition {
  /** `"tsercom.IdService"`. */
  readonly typeName: "tsercom.IdService";
  /** The service's one method. */
  readonly methods: {
    /** Issues a fresh caller id (unary, `/tsercom.IdService/GetId`). */
    readonly GetId: GrpcMethod<GetIdRequestFields, GetIdResponseFields>;
  };
}

/**
 * `tsercom.IdService` as a service definition: serve it with
 * {@linkcode getIdHandler}, call it with a `GrpcChannel` (or let
 * {@linkcode ClientIdFetcher.fromChannel} do so). Python peers have no such
 * service (their `GetId` lived inside application services), but its
 * messages are theirs.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { getIdHandler, GrpcIdService, GrpcServicePublisher } from "@tsercom/tsercom/rpc";
 *
 * assert.equal(GrpcIdService.methods.GetId.path, "/tsercom.IdService/GetId");
 * const publisher = new GrpcServicePublisher({ addresses: "127.0.0.1" });
 * publisher.addService(GrpcIdService, { GetId: getIdHandler() });
 * ```
 */
export const GrpcIdService: GrpcIdServiceDefinition = serviceFromDescriptor(
  IdService,
) as unknown as GrpcIdServiceDefinition;

/** Options for {@linkcode getIdHandler}. */
export interface GetIdHandlerOptions {
  /**
   * Called with each id as it is issued, before the response is sent. If it
   * throws, the call fails (the publisher reports the error as a crash) and
   * the id is not sent.
   *
   * @default {undefined}
   */
  onIdCreated?: (id: CallerId) => void;
  /**
   * Makes each new id. Inject a fixed sequence in tests.
   *
   * @default {CallerId.random}
   */
  createId?: () => CallerId;
}

/**
 * Makes the handler of `tsercom.IdService/GetId`: every call issues a fresh
 * caller id and answers `{ id: { id: "<uuid>" } }`. The request (an empty
 * `tsercom.GetIdRequest`) is ignored.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { CallerId, getIdHandler, type GrpcCallContext } from "@tsercom/tsercom/rpc";
 *
 * const issued: CallerId[] = [];
 * const handler = getIdHandler({ onIdCreated: (id) => issued.push(id) });
 * const response = await handler({}, {} as GrpcCallContext);
 * assert.equal(response.id?.id, issued[0].toString());
 * ```
 *
 * @param options What to do with each issued id, and how to make ids.
 * @returns The unary handler, for a server's `tsercom.IdService/GetId` method.
 * @throws {TypeError} When `onIdCreated` or `createId` is not a function.
 */
export function getIdHandler(
  options: GetIdHandlerOptions = {},
): UnaryHandler<unknown, GetIdResponseFields> {
  const { onIdCreated, createId = CallerId.random } = options ?? {};
  checkOptionalFunction("make the GetId handler", "onIdCreated", onIdCreated);
  checkOptionalFunction("make the GetId handler", "createId", createId);
  return function getId(): GetIdResponseFields {
    const id = createId();
    if (!(id instanceof CallerId)) {
      throw new TypeError(
        `Cannot issue a caller id as 'createId' must return a CallerId: current value is ${
          show(id)
        }`,
      );
    }
    onIdCreated?.(id);
    return create(GetIdResponseSchema, { id: { id: id.toString() } });
  };
}

// ---------------------------------------------------------------------------
// Extraction
// ---------------------------------------------------------------------------

/** `Missing CallerID`: the message carries no caller id at all. */
const MISSING = "Missing CallerID";
/** The caller id has no non-empty `id` string. */
const MALFORMED = "Malformed or missing CallerID string";
/** The caller id string is too long. */
const TOO_LONG = "CallerID string exceeds maximum length of 256.";
/** Not a UUID, or not the expected caller. */
const INVALID = "Invalid CallerID received";
/** The stream ended before its first message. */
const NEVER_RECEIVED = "First call never received!";
/** Reading the first message failed. */
const READ_FAILED = "Error processing first call!";

/**
 * Takes the caller id out of a message: returns the `tsercom.CallerId`
 * message (anything with an `id` field) or its string form, or `null` /
 * `undefined` when there is none.
 *
 * @typeParam T The messages.
 */
export type CallerIdExtractor<T> = (message: T) => unknown;

/** Options for {@linkcode extractIdFromCall} and {@linkcode extractIdFromFirstMessage}. */
export interface ExtractIdOptions<T> {
  /**
   * Takes the caller id out of a message. If it throws a
   * {@linkcode GrpcStatusError}, that error is passed on; any other error
   * means the message carries no usable id (`INVALID_ARGUMENT`,
   * `Missing CallerID`, with the error as `cause`).
   *
   * @default {(message) => message?.id}
   */
  extractor?: CallerIdExtractor<T>;
  /**
   * The caller the message must come from; another valid id is rejected
   * with `INVALID_ARGUMENT`, `Invalid CallerID received`.
   *
   * @default {undefined} (any valid id is accepted)
   */
  expected?: CallerId;
}

/**
 * Reads and checks the caller id a message carries (by default its `id`
 * field, a `tsercom.CallerId`).
 *
 * With protobuf-es messages an unset `CallerId` field is `undefined`, so it
 * is rejected as `Missing CallerID`, where the Python library (whose unset
 * message fields read as empty messages) said `Malformed or missing CallerID
 * string`; both are `INVALID_ARGUMENT`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { CallerId, extractIdFromCall, GrpcStatusError } from "@tsercom/tsercom/rpc";
 *
 * const id = CallerId.random();
 * assert(extractIdFromCall({ id: id.toProto() }).equals(id));
 * assert.throws(() => extractIdFromCall({ id: { id: "nope" } }), {
 *   name: "GrpcStatusError",
 *   details: "Invalid CallerID received",
 * });
 * assert.throws(() => extractIdFromCall({ id: undefined }), GrpcStatusError);
 * ```
 *
 * @typeParam T The message.
 * @param message The message from the caller.
 * @param options A custom extractor, and the id the caller must have.
 * @returns The caller id.
 * @throws {GrpcStatusError} `INVALID_ARGUMENT` when the id is missing,
 * malformed, too long, not a UUID or not the expected one (see the module
 * documentation for the exact details); a `cause` says more when there is more.
 * @throws {TypeError} When `extractor` is not a function or `expected` is
 * not a {@linkcode CallerId}.
 */
export function extractIdFromCall<T>(message: T, options: ExtractIdOptions<T> = {}): CallerId {
  const { extractor, expected } = checkExtractOptions("extract a caller id", options);
  return extract(message, extractor, expected);
}

/** A stream's first message, the caller id it carries, and the rest of the stream. */
export interface FirstMessage<T> {
  /** The caller id the first message carries. */
  readonly id: CallerId;
  /** The first message. */
  readonly first: T;
  /**
   * The messages after the first, read from the same iterator. Iterate it
   * once; leaving the loop early closes the stream, as it would have with
   * the original iterable.
   */
  readonly rest: AsyncIterable<T>;
}

/** Options for {@linkcode extractIdFromFirstMessage}. */
export interface ExtractIdFromFirstMessageOptions<T> extends ExtractIdOptions<T> {
  /**
   * Stops waiting for the first message (pass the call's `context.signal`):
   * the promise rejects with `signal.reason` and the stream is closed.
   *
   * @default {undefined}
   */
  signal?: AbortSignal;
}

/**
 * Reads exactly one message from a client stream, checks the caller id it
 * carries like {@linkcode extractIdFromCall}, and hands back the id, that
 * message and the rest of the stream, unread.
 *
 * Every failure is a {@linkcode GrpcStatusError} that a handler can let
 * propagate as the call's status:
 * - the stream ends before its first message: `CANCELLED`,
 *   `First call never received!`;
 * - the first message cannot be decoded (a {@linkcode ProtoDecodeError}, or
 *   an `INVALID_ARGUMENT` status error from the stream): `INVALID_ARGUMENT`,
 *   `Malformed first call: <why>` (or that status error itself);
 * - reading fails otherwise: `CANCELLED`, `Error processing first call!`,
 *   with the error as `cause`;
 * - the id is bad: the `INVALID_ARGUMENT` errors of
 *   {@linkcode extractIdFromCall}; the stream is then closed.
 *
 * Unlike the Python library, which returned `(None, message)` for a bad id
 * and left the handler to notice, this throws, so a bad caller can never be
 * served by mistake.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { CallerId, extractIdFromFirstMessage } from "@tsercom/tsercom/rpc";
 *
 * const id = CallerId.random();
 * async function* requests() {
 *   yield { id: id.toProto(), value: 1 };
 *   yield { id: undefined, value: 2 };
 * }
 * const { id: caller, first, rest } = await extractIdFromFirstMessage(requests());
 * assert(caller.equals(id));
 * assert.equal(first.value, 1);
 * const values: number[] = [];
 * for await (const message of rest) values.push(message.value);
 * assert.deepEqual(values, [2]);
 * ```
 *
 * @typeParam T The messages.
 * @param requests The client's messages (a handler's `requests`).
 * @param options A custom extractor, the id the caller must have, and a signal.
 * @returns The caller id, the first message and the rest of the stream.
 * @throws {GrpcStatusError} As listed above (the promise rejects).
 * @throws {TypeError} When an argument is not what it should be (at once,
 * not through the promise).
 */
export function extractIdFromFirstMessage<T>(
  requests: AsyncIterable<T>,
  options: ExtractIdFromFirstMessageOptions<T> = {},
): Promise<FirstMessage<T>> {
  const operation = "extract a caller id from the first message";
  if (
    typeof (requests as Partial<AsyncIterable<T>> | null | undefined)?.[Symbol.asyncIterator] !==
      "function"
  ) {
    throw new TypeError(
      `Cannot ${operation} as 'requests' must be an AsyncIterable: current value is ${
        show(requests)
      }`,
    );
  }
  const { extractor, expected } = checkExtractOptions(operation, options);
  const signal = options?.signal;
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    throw new TypeError(
      `Cannot ${operation} as 'signal' must be an AbortSignal: current value is ${show(signal)}`,
    );
  }
  if (signal?.aborted) return Promise.reject(signal.reason);
  return readFirst(requests, extractor, expected, signal);
}

// ---------------------------------------------------------------------------
// Internals
// ---------------------------------------------------------------------------

async function readFirst<T>(
  requests: AsyncIterable<T>,
  extractor: CallerIdExtractor<T> | undefined,
  expected: CallerId | undefined,
  signal: AbortSignal | undefined,
): Promise<FirstMessage<T>> {
  const iterator = requests[Symbol.asyncIterator]();
  let result: IteratorResult<T>;
  try {
    result = await nextOrAbort(iterator, signal);
  } catch (error) {
    if (signal?.aborted && error === signal.reason) {
      close(iterator);
      throw error;
    }
    throw readFailure(error);
  }
  if (result.done) throw new GrpcStatusError(GrpcStatus.CANCELLED, NEVER_RECEIVED);
  const first = result.value;
  let id: CallerId;
  try {
    id = extract(first, extractor, expected);
  } catch (error) {
    close(iterator);
    throw error;
  }
  return { id, first, rest: remainder(iterator) };
}

function extract<T>(
  message: T,
  extractor: CallerIdExtractor<T> | undefined,
  expected: CallerId | undefined,
): CallerId {
  let value: unknown;
  try {
    value = extractor === undefined ? defaultExtractor(message) : extractor(message);
  } catch (error) {
    if (error instanceof GrpcStatusError) throw error;
    throw new GrpcStatusError(GrpcStatus.INVALID_ARGUMENT, MISSING, { cause: error });
  }
  let id: CallerId;
  try {
    // A string is the id itself; anything else must be a CallerId message.
    id = CallerId.parse(
      typeof value === "string" || value === null || value === undefined
        ? value
        : typeof value === "object"
        ? value as { readonly id?: unknown }
        : { id: value },
    );
  } catch (error) {
    if (!(error instanceof InvalidCallerIdError)) throw error;
    throw new GrpcStatusError(GrpcStatus.INVALID_ARGUMENT, DETAILS[error.reason], {
      cause: error,
    });
  }
  if (expected !== undefined && !expected.equals(id)) {
    throw new GrpcStatusError(GrpcStatus.INVALID_ARGUMENT, INVALID, {
      cause: new Error(
        `Cannot accept the caller id as it must be ${expected}: current value is ${id}`,
      ),
    });
  }
  return id;
}

const DETAILS: Readonly<Record<InvalidCallerIdError["reason"], string>> = {
  "missing": MISSING,
  "malformed": MALFORMED,
  "too-long": TOO_LONG,
  "not-uuid": INVALID,
};

function defaultExtractor(message: unknown): unknown {
  return typeof message === "object" && message !== null
    ? (message as { readonly id?: unknown }).id
    : undefined;
}

/** The status for a stream that failed before delivering its first message. */
function readFailure(error: unknown): GrpcStatusError {
  if (error instanceof GrpcStatusError && error.code === GrpcStatus.INVALID_ARGUMENT) return error;
  if (error instanceof ProtoDecodeError) {
    return new GrpcStatusError(
      GrpcStatus.INVALID_ARGUMENT,
      `Malformed first call: ${error.message}`,
      { cause: error },
    );
  }
  return new GrpcStatusError(GrpcStatus.CANCELLED, READ_FAILED, { cause: error });
}

function nextOrAbort<T>(
  iterator: AsyncIterator<T>,
  signal: AbortSignal | undefined,
): Promise<IteratorResult<T>> {
  const next = iterator.next();
  if (signal === undefined) return next;
  return new Promise<IteratorResult<T>>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    next.then(
      (result) => {
        signal.removeEventListener("abort", onAbort);
        resolve(result);
      },
      (error) => {
        signal.removeEventListener("abort", onAbort);
        reject(error);
      },
    );
  });
}

/** Closes an iterator we stop reading, ignoring what closing it says. */
function close(iterator: AsyncIterator<unknown>): void {
  try {
    iterator.return?.()?.then(undefined, () => {});
  } catch {
    // Nothing more to do for a stream we are abandoning.
  }
}

/** The rest of a stream whose first message has been read. */
function remainder<T>(iterator: AsyncIterator<T>): AsyncIterable<T> {
  return {
    [Symbol.asyncIterator](): AsyncIterator<T> {
      return {
        next: () => iterator.next(),
        return: (value?: unknown) =>
          iterator.return?.(value) ??
            Promise.resolve({ done: true, value: value as T } as IteratorResult<T>),
        throw: iterator.throw === undefined
          ? undefined
          : (error?: unknown) => iterator.throw!(error),
      };
    },
  };
}

function checkExtractOptions<T>(
  operation: string,
  options: ExtractIdOptions<T> | undefined,
): ExtractIdOptions<T> {
  const { extractor, expected } = options ?? {};
  checkOptionalFunction(operation, "extractor", extractor);
  if (expected !== undefined && !(expected instanceof CallerId)) {
    throw new TypeError(
      `Cannot ${operation} as 'expected' must be a CallerId: current value is ${show(expected)}`,
    );
  }
  return { extractor, expected };
}

function checkOptionalFunction(operation: string, name: string, value: unknown): void {
  if (value !== undefined && typeof value !== "function") {
    throw new TypeError(
      `Cannot ${operation} as '${name}' must be a function: current value is ${show(value)}`,
    );
  }
}
