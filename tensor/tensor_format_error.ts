/**
 * The error for tensor wire data (chunks, updates, initializers) that is not
 * what the format allows.
 *
 * @module
 */

/**
 * What was wrong with the wire data a {@linkcode TensorFormatError} reports:
 *
 * - `"proto"`: the bytes are not a valid protobuf serialisation of the message
 *   (truncated, garbage); the cause is the `ProtoDecodeError`.
 * - `"timestamp"`: a chunk's timestamp is absent, out of range, or not a safe
 *   integer number of microseconds.
 * - `"index"`: a chunk's `starting_index` is negative, beyond
 *   `Number.MAX_SAFE_INTEGER`, or its values run past the end of the tensor.
 * - `"compression"`: a chunk's compression is neither NONE nor LZ4.
 * - `"lz4"`: a chunk's LZ4 frame is corrupt, truncated or decompresses to
 *   more bytes than allowed; the cause is the LZ4 codec's error.
 * - `"byte-length"`: a chunk's byte length is not a multiple of the dtype's
 *   element size.
 * - `"value"`: a bool chunk holds a byte other than 0 or 1.
 * - `"dtype"`: an initializer names a dtype this library does not know and
 *   still carries chunks that would need it.
 * - `"shape"`: an initializer's shape holds a negative dimension, one beyond
 *   `Number.MAX_SAFE_INTEGER`, or dimensions whose product is.
 */
export type TensorFormatErrorReason =
  | "proto"
  | "timestamp"
  | "index"
  | "compression"
  | "lz4"
  | "byte-length"
  | "value"
  | "dtype"
  | "shape";

/**
 * Thrown when tensor wire data received from a peer is malformed. The
 * {@linkcode TensorFormatError.reason | reason} says which rule it broke, for
 * code that counts or handles the kinds separately; the message says what was
 * wrong and what was expected.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeChunk, TensorFormatError } from "@tsercom/tsercom/tensor";
 *
 * try {
 *   decodeChunk(new Uint8Array([0x0a, 0x05]), "float32");
 *   assert.fail("expected a TensorFormatError");
 * } catch (error) {
 *   assert(error instanceof TensorFormatError);
 *   assert.equal(error.reason, "proto");
 * }
 * ```
 */
export class TensorFormatError extends Error {
  /** Which rule of the wire format the data broke. */
  readonly reason: TensorFormatErrorReason;

  /**
   * Creates the error.
   *
   * @param reason Which rule of the wire format the data broke.
   * @param message What was wrong and what was expected.
   * @param options `cause`: the lower-level error, when there is one.
   */
  constructor(reason: TensorFormatErrorReason, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "TensorFormatError";
    this.reason = reason;
  }
}
