/**
 * The vocabulary of tsercom's gRPC layer, independent of the gRPC library
 * underneath: status codes and errors, message codecs, method and service
 * definitions, and the signatures of handlers.
 *
 * @module
 */

/** The gRPC status codes (see `grpc/status.proto`). */
export const GrpcStatus = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;

/** One of the {@linkcode GrpcStatus} codes. */
export type GrpcStatusCode = typeof GrpcStatus[keyof typeof GrpcStatus];

/** The name of a status code, e.g. `"INVALID_ARGUMENT"`. */
export function grpcStatusName(code: number): string {
  for (const [name, value] of Object.entries(GrpcStatus)) if (value === code) return name;
  return `STATUS_${code}`;
}

/**
 * A call ended with a non-OK status. Handlers throw it to answer with that
 * status deliberately (it is passed through, not reported as a crash);
 * client calls reject with it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { GrpcStatus, GrpcStatusError } from "@tsercom/tsercom/rpc";
 *
 * const error = new GrpcStatusError(GrpcStatus.INVALID_ARGUMENT, "Missing CallerID");
 * assert.equal(error.message, "INVALID_ARGUMENT: Missing CallerID");
 * ```
 */
export class GrpcStatusError extends Error {
  /** The status code. */
  readonly code: GrpcStatusCode;
  /** The status details (the message the peer sees). */
  readonly details: string;

  /**
   * Creates the error.
   *
   * @param code The status code (not OK).
   * @param details The details sent with it.
   * @param options The cause, if any.
   */
  constructor(code: GrpcStatusCode, details: string, options?: ErrorOptions) {
    super(`${grpcStatusName(code)}: ${details}`, options);
    this.name = "GrpcStatusError";
    this.code = code;
    this.details = details;
  }
}

/** Turns messages of one type into bytes and back. */
export interface MessageCodec<T> {
  /** Encodes a message. */
  serialize(value: T): Uint8Array;
  /**
   * Decodes a message.
   *
   * @throws {Error} When the bytes are not a valid message.
   */
  deserialize(bytes: Uint8Array): T;
  /**
   * Whether `serialize` may return a view of a buffer that its next call
   * overwrites, so that a codec of large messages need not allocate one
   * buffer per message. A server then serializes each streamed response
   * only when grpc-js frames it, which copies the bytes at once (a throw
   * there ends the call with INTERNAL and is reported to the error sink);
   * unary responses and requests are copied before they are sent.
   *
   * @default {false}
   */
  readonly reusesBuffer?: boolean;
}

/** How many messages each side of a method sends. */
export type GrpcMethodKind = "unary" | "server_streaming" | "client_streaming" | "bidi_streaming";

/** One RPC method. */
export interface GrpcMethod<Req = unknown, Res = unknown> {
  /** The method's name, e.g. `"GetId"`. */
  readonly name: string;
  /** The HTTP/2 path, e.g. `"/tsercom.IdService/GetId"`. */
  readonly path: string;
  /** Unary or streaming, on each side. */
  readonly kind: GrpcMethodKind;
  /** The request codec. */
  readonly request: MessageCodec<Req>;
  /** The response codec. */
  readonly response: MessageCodec<Res>;
}

/** A service: its full name and its methods by (local) name. */
export interface GrpcService {
  /** The fully qualified name, e.g. `"tsercom.IdService"`. */
  readonly typeName: string;
  /** The methods, by name. */
  readonly methods: Readonly<Record<string, GrpcMethod>>;
}

/** Where a call came from. */
export interface GrpcPeer {
  /** The peer's IP address (IPv4 dotted, or IPv6 without brackets); `"localhost"` for Unix sockets. */
  readonly address: string;
  /** The peer's port, when known. */
  readonly port: number | undefined;
}

/** What a handler knows about its call. */
export interface GrpcCallContext {
  /** The caller's address. */
  readonly peer: GrpcPeer;
  /** The request metadata (header values as strings; binary headers base64). */
  readonly metadata: Readonly<Record<string, string>>;
  /** Aborted when the call is cancelled by the client or its deadline passes. */
  readonly signal: AbortSignal;
  /** The client certificate's subject common name, when mutual TLS authenticated one. */
  readonly clientCommonName: string | undefined;
}

/** Answers a unary call: throw a {@linkcode GrpcStatusError} to answer with a status. */
export type UnaryHandler<Req, Res> = (
  request: Req,
  context: GrpcCallContext,
) => Res | Promise<Res>;

/** Answers a server-streaming call with a stream of responses. */
export type ServerStreamingHandler<Req, Res> = (
  request: Req,
  context: GrpcCallContext,
) => AsyncIterable<Res>;

/** Answers a client-streaming call once its requests are read. */
export type ClientStreamingHandler<Req, Res> = (
  requests: AsyncIterable<Req>,
  context: GrpcCallContext,
) => Res | Promise<Res>;

/** Answers a bidirectional call. */
export type BidiStreamingHandler<Req, Res> = (
  requests: AsyncIterable<Req>,
  context: GrpcCallContext,
) => AsyncIterable<Res>;

/** Any handler. */
export type GrpcHandler<Req = never, Res = unknown> =
  | UnaryHandler<Req, Res>
  | ServerStreamingHandler<Req, Res>
  | ClientStreamingHandler<Req, Res>
  | BidiStreamingHandler<Req, Res>;
