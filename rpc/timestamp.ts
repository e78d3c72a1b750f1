/**
 * Exact conversions between tsercom time (integer microseconds since the Unix
 * epoch, UTC) and the wire types `google.protobuf.Timestamp` and
 * `tsercom.ServerTimestamp`.
 *
 * @module
 */

import { create } from "@bufbuild/protobuf";
import { TimestampSchema } from "@bufbuild/protobuf/wkt";
import { ServerTimestampSchema } from "./proto/gen/time_pb.ts";

/**
 * The fields of a `google.protobuf.Timestamp` message: whole seconds since the
 * Unix epoch and a non-negative nanosecond part.
 */
export interface TimestampFields {
  /** Whole seconds since the Unix epoch; negative before 1970. */
  seconds: bigint;
  /** Nanoseconds after `seconds`, in 0..999999999. */
  nanos: number;
}

/** The fields of a `tsercom.ServerTimestamp` message. */
export interface ServerTimestampFields {
  /** The instant; absent when the sender did not set it. */
  timestamp?: TimestampFields | undefined;
}

/** Microseconds in one second. */
export const MICROS_PER_SECOND: number = 1_000_000;

/**
 * The smallest `seconds` a `google.protobuf.Timestamp` may hold:
 * 0001-01-01T00:00:00Z.
 */
export const MIN_TIMESTAMP_SECONDS: number = -62_135_596_800;

/**
 * The largest `seconds` a `google.protobuf.Timestamp` may hold:
 * 9999-12-31T23:59:59Z.
 */
export const MAX_TIMESTAMP_SECONDS: number = 253_402_300_799;

const MAX_NANOS = 999_999_999;
const NANOS_PER_MICRO = 1_000;
// Beyond this many whole seconds the product with 1e6 may leave the safe-integer range.
const SAFE_SECONDS = Math.floor(Number.MAX_SAFE_INTEGER / MICROS_PER_SECOND);

/**
 * Thrown when a timestamp cannot be converted: a `Timestamp` whose fields are
 * out of range, a missing timestamp, or an instant that does not fit in a safe
 * integer number of microseconds (after the year 2255 or before 1685).
 */
export class InvalidTimestampError extends Error {
  /** Creates the error with a message saying what was wrong. */
  constructor(message: string) {
    super(message);
    this.name = "InvalidTimestampError";
  }
}

/**
 * Converts integer microseconds since the Unix epoch to a
 * `google.protobuf.Timestamp`. The conversion is exact; an instant before the
 * epoch gets negative `seconds` and non-negative `nanos`, as the protobuf
 * specification requires (−1 µs is `{ seconds: -1, nanos: 999_999_000 }`).
 *
 * @example Converting the current time
 * ```ts
 * import assert from "node:assert/strict";
 * import { timestampFromMicros } from "@tsercom/tsercom/rpc";
 *
 * const ts = timestampFromMicros(1_732_406_400_123_456);
 * assert(ts.seconds === 1_732_406_400n && ts.nanos === 123_456_000);
 * ```
 *
 * @param micros Microseconds since the Unix epoch; a safe integer.
 * @returns The equivalent `google.protobuf.Timestamp` message.
 * @throws {InvalidTimestampError} When `micros` is not a safe integer.
 */
export function timestampFromMicros(micros: number): TimestampFields {
  if (!Number.isSafeInteger(micros)) {
    throw new InvalidTimestampError(
      `Cannot convert to a Timestamp as 'micros' must be a safe integer: current value is ${micros}`,
    );
  }
  const { seconds, nanos } = splitMicros(micros);
  return create(TimestampSchema, { seconds: BigInt(seconds), nanos });
}

/**
 * Converts a `google.protobuf.Timestamp` to integer microseconds since the Unix
 * epoch. Nanoseconds below a whole microsecond are truncated (towards the
 * past), as the Python library does, so a timestamp made by
 * {@linkcode timestampFromMicros} converts back exactly.
 *
 * @example Round trip
 * ```ts
 * import assert from "node:assert/strict";
 * import { microsFromTimestamp, timestampFromMicros } from "@tsercom/tsercom/rpc";
 *
 * assert(microsFromTimestamp(timestampFromMicros(-1)) === -1);
 * ```
 *
 * @param timestamp The timestamp message.
 * @returns Microseconds since the Unix epoch.
 * @throws {InvalidTimestampError} When `nanos` is outside 0..999999999, when
 * `seconds` is outside the range the protobuf specification allows, or when
 * the instant does not fit in a safe integer number of microseconds.
 */
export function microsFromTimestamp(timestamp: TimestampFields): number {
  const { seconds, nanos } = timestamp;
  if (!Number.isInteger(nanos) || nanos < 0 || nanos > MAX_NANOS) {
    throw new InvalidTimestampError(
      `Cannot convert a Timestamp as 'nanos' must be an integer in 0..${MAX_NANOS}: current value is ${nanos}`,
    );
  }
  if (seconds < MIN_TIMESTAMP_SECONDS || seconds > MAX_TIMESTAMP_SECONDS) {
    throw new InvalidTimestampError(
      `Cannot convert a Timestamp as 'seconds' must be in ${MIN_TIMESTAMP_SECONDS}..${MAX_TIMESTAMP_SECONDS}: current value is ${seconds}`,
    );
  }
  const wholeSeconds = Number(seconds);
  const micros = Math.floor(nanos / NANOS_PER_MICRO);
  if (wholeSeconds > SAFE_SECONDS || wholeSeconds < -SAFE_SECONDS - 1) {
    throw new InvalidTimestampError(
      `Cannot convert a Timestamp as it must fit in a safe integer number of microseconds: current value is ${seconds} s ${nanos} ns`,
    );
  }
  const result = wholeSeconds * MICROS_PER_SECOND + micros;
  if (!Number.isSafeInteger(result)) {
    throw new InvalidTimestampError(
      `Cannot convert a Timestamp as it must fit in a safe integer number of microseconds: current value is ${seconds} s ${nanos} ns`,
    );
  }
  return result;
}

/**
 * Converts integer microseconds since the Unix epoch to a
 * `tsercom.ServerTimestamp`, the wrapper the Python library sends.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { serverTimestampFromMicros } from "@tsercom/tsercom/rpc";
 *
 * const message = serverTimestampFromMicros(0);
 * assert(message.timestamp?.seconds === 0n);
 * ```
 *
 * @param micros Microseconds since the Unix epoch; a safe integer.
 * @returns The equivalent `ServerTimestamp` message.
 * @throws {InvalidTimestampError} When `micros` is not a safe integer.
 */
export function serverTimestampFromMicros(micros: number): ServerTimestampFields {
  return create(ServerTimestampSchema, { timestamp: timestampFromMicros(micros) });
}

/**
 * Converts a `tsercom.ServerTimestamp` to integer microseconds since the Unix
 * epoch.
 *
 * Unlike the Python library, which reads an absent `timestamp` field as the
 * epoch, an absent field is an error here: it cannot be told apart from a
 * sender that forgot to set it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { microsFromServerTimestamp, serverTimestampFromMicros } from "@tsercom/tsercom/rpc";
 *
 * assert(microsFromServerTimestamp(serverTimestampFromMicros(42)) === 42);
 * ```
 *
 * @param message The message.
 * @returns Microseconds since the Unix epoch.
 * @throws {InvalidTimestampError} When the `timestamp` field is absent or invalid.
 */
export function microsFromServerTimestamp(message: ServerTimestampFields): number {
  if (message.timestamp === undefined) {
    throw new InvalidTimestampError(
      "Cannot convert a ServerTimestamp as its 'timestamp' field must be set: current value is absent",
    );
  }
  return microsFromTimestamp(message.timestamp);
}

/**
 * Like {@linkcode microsFromServerTimestamp}, but returns `null` instead of
 * throwing when the message is absent or invalid.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { tryMicrosFromServerTimestamp } from "@tsercom/tsercom/rpc";
 *
 * assert(tryMicrosFromServerTimestamp(undefined) === null);
 * ```
 *
 * @param message The message, or `null`/`undefined`.
 * @returns Microseconds since the Unix epoch, or `null`.
 */
export function tryMicrosFromServerTimestamp(
  message: ServerTimestampFields | null | undefined,
): number | null {
  if (message === null || message === undefined) return null;
  try {
    return microsFromServerTimestamp(message);
  } catch (error) {
    if (error instanceof InvalidTimestampError) return null;
    throw error;
  }
}

/** Splits safe-integer microseconds into whole seconds and non-negative nanos, exactly. */
function splitMicros(micros: number): { seconds: number; nanos: number } {
  const remainder = ((micros % MICROS_PER_SECOND) + MICROS_PER_SECOND) % MICROS_PER_SECOND;
  // micros - remainder is an exact multiple of 1e6, so the division is exact.
  return { seconds: (micros - remainder) / MICROS_PER_SECOND, nanos: remainder * NANOS_PER_MICRO };
}
