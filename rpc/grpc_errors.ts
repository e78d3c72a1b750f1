/**
 * Classifying errors from gRPC calls (`spec/net.md` §3.5): the status code an
 * error carries, and whether it means "the server cannot be reached for now".
 *
 * @module
 */

import { show } from "./_show.ts";
import { GrpcStatus, type GrpcStatusCode, GrpcStatusError } from "./grpc_types.ts";

/** Options of {@linkcode isServerUnavailableError}. */
export interface ServerUnavailableOptions {
  /**
   * Whether `DEADLINE_EXCEEDED` counts as "unavailable". The Python original
   * always counted it (bug B37: a slow answer is not a dead server); turn it
   * off where a deadline means the call itself took too long.
   *
   * @default {true}
   */
  deadlineExceeded?: boolean;
}

/**
 * The gRPC status code of an error: the `code` of a
 * {@linkcode GrpcStatusError} (a `ChannelConnectError` is one, with
 * `UNAVAILABLE`), or of any error object that carries a numeric gRPC `code`
 * and a string `details` (as the errors of gRPC libraries do). `undefined`
 * for anything else, including `OK` and codes outside 1..16.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { GrpcStatus, GrpcStatusError, grpcStatusOf } from "@tsercom/tsercom/rpc";
 *
 * const error = new GrpcStatusError(GrpcStatus.NOT_FOUND, "no such caller");
 * assert.equal(grpcStatusOf(error), GrpcStatus.NOT_FOUND);
 * assert.equal(grpcStatusOf(new Error("plain")), undefined);
 * assert.equal(grpcStatusOf({ code: 14, details: "Connection dropped" }), GrpcStatus.UNAVAILABLE);
 * ```
 *
 * @param error Anything thrown.
 * @returns The status code, or `undefined` when `error` is not a gRPC status error.
 */
export function grpcStatusOf(error: unknown): GrpcStatusCode | undefined {
  if (error instanceof GrpcStatusError) return error.code;
  if (typeof error !== "object" || error === null) return undefined;
  const { code, details } = error as { code?: unknown; details?: unknown };
  if (typeof details !== "string" || !isStatusCode(code)) return undefined;
  return code;
}

/**
 * Whether an error says the server cannot be reached for now, so that
 * reconnecting later may help: a gRPC status error with code `UNAVAILABLE`
 * (a `ChannelConnectError` included) or `DEADLINE_EXCEEDED` (unless
 * `options.deadlineExceeded` is `false`).
 *
 * The Python original also counted its end-of-stream signal
 * (`StopAsyncIteration`). Here a stream that ends is a finished `for await`
 * loop, never an error, and a connection lost in the middle of a stream
 * surfaces as an `UNAVAILABLE` status error, which this counts.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { GrpcStatus, GrpcStatusError, isServerUnavailableError } from "@tsercom/tsercom/rpc";
 *
 * const down = new GrpcStatusError(GrpcStatus.UNAVAILABLE, "Connection dropped");
 * const slow = new GrpcStatusError(GrpcStatus.DEADLINE_EXCEEDED, "Deadline exceeded");
 * assert(isServerUnavailableError(down));
 * assert(isServerUnavailableError(slow));
 * assert(!isServerUnavailableError(slow, { deadlineExceeded: false }));
 * assert(!isServerUnavailableError(new GrpcStatusError(GrpcStatus.INTERNAL, "bug")));
 * assert(!isServerUnavailableError(new Error("down")));
 * ```
 *
 * @param error Anything thrown.
 * @param options Whether `DEADLINE_EXCEEDED` counts.
 * @returns Whether the error means the server is unavailable.
 */
export function isServerUnavailableError(
  error: unknown,
  options: ServerUnavailableOptions = {},
): boolean {
  const { deadlineExceeded = true } = options;
  if (typeof deadlineExceeded !== "boolean") {
    throw new TypeError(
      `Cannot classify the error as 'options.deadlineExceeded' must be a boolean: current value is ${
        show(deadlineExceeded)
      }`,
    );
  }
  const code = grpcStatusOf(error);
  return code === GrpcStatus.UNAVAILABLE ||
    (deadlineExceeded && code === GrpcStatus.DEADLINE_EXCEEDED);
}

function isStatusCode(code: unknown): code is GrpcStatusCode {
  return typeof code === "number" && Number.isInteger(code) && code >= 1 && code <= 16;
}
