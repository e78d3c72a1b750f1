/**
 * The error a multiplexer throws for a snapshot older than its data window.
 *
 * @module
 */

/**
 * Thrown when a snapshot's timestamp is older than the data window allows
 * (`timestamp < newest timestamp seen - dataTimeoutMicros`). The snapshot is
 * rejected and nothing changes. The Python library accepted and emitted such
 * data, which the receiver then dropped (its bug 3); both ends now apply the
 * same window.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SparseTensorMultiplexer, StaleDataError } from "@tsercom/tsercom/tensor";
 *
 * const muxer = new SparseTensorMultiplexer({ onChunk() {} }, {
 *   dtype: "float32",
 *   length: 2,
 *   dataTimeoutMicros: 1_000,
 * });
 * await muxer.process(new Float32Array([1, 2]), 10_000);
 * await assert.rejects(muxer.process(new Float32Array([3, 4]), 8_000), StaleDataError);
 * ```
 */
export class StaleDataError extends RangeError {
  /** The rejected timestamp, in microseconds. */
  readonly timestamp: number;
  /** The oldest timestamp the window accepted at the time, in microseconds. */
  readonly cutoff: number;

  /**
   * Creates the error.
   *
   * @param timestamp The rejected timestamp, in microseconds.
   * @param cutoff The oldest timestamp the window accepted, in microseconds.
   */
  constructor(timestamp: number, cutoff: number) {
    super(
      `Cannot process the tensor as its timestamp must be at or after the data window's cutoff ${cutoff}: current value is ${timestamp}`,
    );
    this.name = "StaleDataError";
    this.timestamp = timestamp;
    this.cutoff = cutoff;
  }
}
