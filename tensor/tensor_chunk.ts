/**
 * The unit a tensor stream moves: one contiguous slice of a snapshot.
 *
 * @module
 */

import type { DType, TensorArray } from "./dtype.ts";

/**
 * One contiguous slice of a snapshot: at `timestamp`, positions
 * `startingIndex … startingIndex + values.length - 1` hold `values`.
 *
 * Chunks that a multiplexer emits own their `values` (they never alias the
 * caller's arrays). Chunks that a decoder returns may view the received bytes
 * in place.
 */
export interface TensorChunk<A extends TensorArray = TensorArray> {
  /** The snapshot's time: integer microseconds since the Unix epoch, on the synchronised timeline. */
  readonly timestamp: number;
  /** The position of `values[0]` in the stream's flat vector. */
  readonly startingIndex: number;
  /** The slice's elements, in the stream's dtype. */
  readonly values: A;
}

/** Stream metadata, sent once before the chunks (`tsercom.TensorInitializer`). */
export interface TensorInitializer {
  /** The shape of the stream's tensor; the flat vector has the product of its dims elements. */
  readonly shape: readonly number[];
  /**
   * The dtype name. A Python peer may send a name this library does not know;
   * decoding keeps it as it came.
   */
  readonly dtype: DType | string;
  /** The value of every element that no chunk has set. */
  readonly fillValue: number;
  /**
   * The chunks that turn a vector full of `fillValue` into the stream's
   * starting state, or `null` when it has none.
   */
  readonly initialState: readonly TensorChunk[] | null;
}

/** Receives the chunks a multiplexer emits. */
export interface TensorChunkSink {
  /**
   * Called once per emitted chunk, in order. It may call back into the
   * multiplexer: the multiplexer's state is already updated and no lock is
   * held.
   *
   * @param chunk The chunk; it owns its values.
   */
  onChunk(chunk: TensorChunk): void | Promise<void>;
}
