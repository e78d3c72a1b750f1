/**
 * {@linkcode routeTensorStreams}: one handler of the built-in
 * `tsercom.TensorStream/Subscribe` method that serves several
 * {@linkcode TensorStreamServer}s on one port. A publisher registers one
 * handler per method, so without it a process serves one tensor stream per
 * port; with it, each call goes to the server whose name its subscriber asks
 * for.
 *
 * @module
 */

import { GrpcStatus, GrpcStatusError } from "../rpc/grpc_types.ts";
import type { BidiStreamingHandler, GrpcCallContext } from "../rpc/grpc_types.ts";
import { show } from "../rpc/_show.ts";
import { TensorStreamServer } from "./tensor_stream_server.ts";
import type { TensorStreamRequest, TensorStreamResponse } from "./_tensor_stream_wire.ts";

export type { BidiStreamingHandler, GrpcCallContext, TensorStreamRequest, TensorStreamResponse };

/** Options for {@linkcode routeTensorStreams}. */
export interface TensorStreamRouterOptions {
  /**
   * Whether the `NOT_FOUND` answer to a subscriber that asks for an unknown
   * stream lists the names served here. Turn it off to keep the names from
   * callers that do not know them already.
   *
   * @default {true}
   */
  listStreams?: boolean;
}

type SubscribeHandler = BidiStreamingHandler<TensorStreamRequest, TensorStreamResponse>;

const WHAT = "route tensor streams";

/**
 * One handler of `tsercom.TensorStream/Subscribe` for several streams: it
 * reads a call's first request, picks the server whose
 * {@linkcode TensorStreamServer.name} equals the stream asked for (`""`, the
 * default stream, when none is), and hands that server's handler the call
 * as it came: the first request again, then the rest, and the same context,
 * so that cancelling the call (its `signal`) ends the server's side of it.
 *
 * The chosen server makes its own checks (a missing caller id is answered
 * `INVALID_ARGUMENT`, a closed stream `UNAVAILABLE`) and counts them. A
 * stream that no server has is answered `NOT_FOUND` before the caller id is
 * looked at, its details listing the names served (unless `listStreams` is
 * `false`), and no server counts it; a call whose requests end before the
 * first one is answered with no responses, as a server does.
 *
 * The servers are read once, when the router is made: to serve a different
 * set of streams, make a new router.
 *
 * @example
 * ```ts ignore
 * import { CallerId, connectChannel, GrpcServicePublisher } from "@tsercom/tsercom/rpc";
 * import {
 *   routeTensorStreams,
 *   TensorStreamServer,
 *   TensorStreamSubscription,
 * } from "@tsercom/tsercom/tensor";
 *
 * const imu = new TensorStreamServer(new Float32Array(6), { dtype: "float32", name: "imu" });
 * const depth = new TensorStreamServer(new Int16Array(4096), { dtype: "int16", name: "depth" });
 * await using publisher = new GrpcServicePublisher({ addresses: "127.0.0.1", port: 50051 });
 * publisher.addService(TensorStreamServer.service, { Subscribe: routeTensorStreams([imu, depth]) });
 * await publisher.start();
 *
 * // A subscriber picks its stream by name.
 * const channel = await connectChannel("127.0.0.1", 50051);
 * await using subscription = await TensorStreamSubscription.open(channel, {
 *   callerId: CallerId.random(),
 *   stream: "depth",
 * });
 * ```
 *
 * @param servers The streams to serve, with distinct names.
 * @param options Whether refusals list the names.
 * @returns The handler, for `GrpcServicePublisher.addService`.
 * @throws {TypeError} When `servers` is not an iterable of
 * {@linkcode TensorStreamServer}, or `listStreams` is not a boolean.
 * @throws {RangeError} When `servers` is empty or two servers share a name.
 */
export function routeTensorStreams(
  servers: Iterable<TensorStreamServer>,
  options: TensorStreamRouterOptions = {},
): BidiStreamingHandler<TensorStreamRequest, TensorStreamResponse> {
  const handlers = collect(servers);
  const listStreams = options.listStreams ?? true;
  if (typeof listStreams !== "boolean") {
    throw new TypeError(
      `Cannot ${WHAT} as 'listStreams' must be a boolean: current value is ${show(listStreams)}`,
    );
  }
  const wanted = listStreams
    ? `one of ${[...handlers.keys()].map((name) => JSON.stringify(name)).join(", ")}`
    : "one served here";
  return (requests, context) => route(handlers, wanted, requests, context);
}

/** Each server's handler by name, checked. */
function collect(servers: Iterable<TensorStreamServer>): Map<string, SubscribeHandler> {
  if (
    servers === null || typeof servers !== "object" ||
    typeof (servers as Iterable<unknown>)[Symbol.iterator] !== "function"
  ) {
    throw new TypeError(
      `Cannot ${WHAT} as 'servers' must be an iterable of TensorStreamServer: current value is ${
        describe(servers)
      }`,
    );
  }
  const handlers = new Map<string, SubscribeHandler>();
  const positions = new Map<string, number>();
  let index = 0;
  for (const server of servers as Iterable<unknown>) {
    if (!(server instanceof TensorStreamServer)) {
      throw new TypeError(
        `Cannot ${WHAT} as 'servers[${index}]' must be a TensorStreamServer: current value is ${
          describe(server)
        }`,
      );
    }
    const earlier = positions.get(server.name);
    if (earlier !== undefined) {
      throw new RangeError(
        `Cannot ${WHAT} as 'servers[${index}].name' must be distinct: current value is ${
          JSON.stringify(server.name)
        }, the name of servers[${earlier}] too`,
      );
    }
    positions.set(server.name, index);
    handlers.set(server.name, server.handler());
    index++;
  }
  if (handlers.size === 0) {
    throw new RangeError(
      `Cannot ${WHAT} as 'servers' must hold at least one TensorStreamServer: current length is 0`,
    );
  }
  return handlers;
}

async function* route(
  handlers: ReadonlyMap<string, SubscribeHandler>,
  wanted: string,
  requests: AsyncIterable<TensorStreamRequest>,
  context: GrpcCallContext,
): AsyncGenerator<TensorStreamResponse, void, undefined> {
  const iterator = requests[Symbol.asyncIterator]();
  const first = await iterator.next();
  if (first.done) return;
  const stream = first.value.stream ?? "";
  const handler = handlers.get(stream);
  if (handler === undefined) {
    throw new GrpcStatusError(
      GrpcStatus.NOT_FOUND,
      `Cannot subscribe to stream ${
        JSON.stringify(stream)
      } as it must be ${wanted}: no such stream here`,
    );
  }
  // The server's responses, passed through: returning early (the call ends)
  // returns the server's generator too, which lets go of the subscriber.
  yield* handler(new Replay(first.value, iterator), context);
}

/**
 * A call's requests once more, the first one (already read) included:
 * `next` and `return` go straight to the call's own iterator after it.
 * Iterable once, as the call's requests are.
 */
class Replay<T> implements AsyncIterableIterator<T> {
  #first: { value: T } | undefined;
  readonly #rest: AsyncIterator<T>;
  #started = false;

  constructor(first: T, rest: AsyncIterator<T>) {
    this.#first = { value: first };
    this.#rest = rest;
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<T> {
    if (this.#started) {
      throw new TypeError("Cannot iterate the requests of a routed tensor stream call twice");
    }
    this.#started = true;
    return this;
  }

  next(): Promise<IteratorResult<T>> {
    const first = this.#first;
    if (first === undefined) return this.#rest.next();
    this.#first = undefined;
    return Promise.resolve({ done: false, value: first.value });
  }

  return(value?: unknown): Promise<IteratorResult<T>> {
    this.#first = undefined;
    return this.#rest.return?.(value) ?? Promise.resolve({ done: true, value: undefined });
  }
}

/** A value for an error message: objects by their class, the rest as {@linkcode show} does. */
function describe(value: unknown): string {
  if (value !== null && typeof value === "object") {
    const name = (value as { constructor?: { name?: unknown } }).constructor?.name;
    return typeof name === "string" && name !== "" ? `an instance of ${name}` : "an object";
  }
  return show(value);
}
