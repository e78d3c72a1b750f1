/**
 * The sender side of a complete tensor stream: every snapshot goes out whole.
 *
 * @module
 */

import type { SynchronizedClock } from "../rpc/synchronized_clock.ts";
import { allocate, type DType, type TypedArrayByDType } from "./dtype.ts";
import type { TensorChunk, TensorChunkSink } from "./tensor_chunk.ts";
import { DataWindow } from "./_timeline.ts";
import {
  checkClock,
  checkDType,
  checkLength,
  checkTimeout,
  checkTimestamp,
  ChunkDelivery,
  CompletePolicy,
  DEFAULT_TIMEOUT_MICROS,
  IDENTITY_CLOCK,
  isDirect,
  SnapshotStore,
} from "./_multiplexer_core.ts";

/** Options for {@linkcode CompleteTensorMultiplexer}. */
export interface CompleteTensorMultiplexerOptions<D extends DType = DType> {
  /** The stream's dtype; every snapshot must be its typed array. */
  dtype: D;
  /** The number of elements of every snapshot (a positive integer). */
  length: number;
  /**
   * Maps the local timestamps given to `process` to the synchronised
   * timestamps the chunks carry.
   *
   * @default {an identity clock: chunks carry the local timestamps}
   */
  clock?: SynchronizedClock;
  /**
   * The data window in microseconds: snapshots older than the newest
   * timestamp seen minus this are pruned, and input older than that is
   * rejected with a {@linkcode StaleDataError}.
   *
   * @default {60_000_000}
   */
  dataTimeoutMicros?: number;
}

const WHAT_CREATE = "create the complete multiplexer";
const WHAT_PROCESS = "process the tensor";

/**
 * Sends every accepted snapshot as one chunk holding all of it (a copy).
 * A snapshot equal to the one already stored at the same timestamp emits
 * nothing; an equal snapshot at a new timestamp is still sent. A late
 * snapshot emits only itself: whole chunks need no cascade.
 *
 * Compared with the Python library: input older than the data window is
 * rejected with a {@linkcode StaleDataError} (bug 3), the chunk owns a copy
 * rather than the caller's array (bug 10), NaN equals the same NaN when
 * comparing with the stored snapshot (bug 9), and no lock is held while the
 * sink runs (bugs 11 and 12).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { CompleteTensorMultiplexer, type TensorChunk } from "@tsercom/tsercom/tensor";
 *
 * const chunks: TensorChunk<Int32Array>[] = [];
 * const muxer = new CompleteTensorMultiplexer({ onChunk: (c) => void chunks.push(c as TensorChunk<Int32Array>) }, {
 *   dtype: "int32",
 *   length: 3,
 * });
 * await muxer.process(new Int32Array([1, 2, 3]), 1_000);
 * await muxer.process(new Int32Array([1, 2, 3]), 2_000);
 * assert.deepEqual(
 *   chunks.map((c) => [c.timestamp, c.startingIndex, Array.from(c.values)]),
 *   [[1_000, 0, [1, 2, 3]], [2_000, 0, [1, 2, 3]]],
 * );
 * ```
 *
 * @typeParam D The stream's dtype.
 */
export class CompleteTensorMultiplexer<D extends DType = DType> {
  readonly #policy: CompletePolicy;
  readonly #delivery: ChunkDelivery;

  /**
   * Creates a multiplexer that sends its chunks to `sink`.
   *
   * @param sink Receives the chunks, in order.
   * @param options The stream's dtype and length, and the window and clock.
   * @throws {UnsupportedDTypeError} For an unknown dtype.
   * @throws {RangeError} For a length or timeout that is not a positive integer.
   * @throws {TypeError} For a sink without `onChunk` or a clock without `sync`.
   */
  constructor(sink: TensorChunkSink, options: CompleteTensorMultiplexerOptions<D>) {
    if (typeof sink?.onChunk !== "function") {
      throw new TypeError(
        `Cannot ${WHAT_CREATE} as 'sink' must have an onChunk method: current value is ${
          String(sink)
        }`,
      );
    }
    const dtype = checkDType(WHAT_CREATE, options?.dtype);
    const length = checkLength(WHAT_CREATE, options.length);
    const timeout = checkTimeout(
      WHAT_CREATE,
      options.dataTimeoutMicros ?? DEFAULT_TIMEOUT_MICROS,
    );
    const clock = checkClock(WHAT_CREATE, options.clock ?? IDENTITY_CLOCK);
    const store = new SnapshotStore(
      dtype,
      length,
      new DataWindow(timeout),
      clock,
      allocate(dtype, length),
    );
    this.#policy = new CompletePolicy(store);
    this.#delivery = new ChunkDelivery(sink, isDirect(options));
  }

  /** The stream's dtype. */
  get dtype(): D {
    return this.#policy.store.dtype as D;
  }

  /** The number of elements of every snapshot. */
  get length(): number {
    return this.#policy.store.length;
  }

  /**
   * Records the snapshot `values` at `timestamp` and emits it as one chunk
   * (unless the same snapshot is already stored at that timestamp). Calls
   * are applied in call order and their chunks delivered in that order.
   *
   * The promise settles once this call's chunk has been delivered. A call
   * made from inside the sink's `onChunk` settles as soon as its chunk is
   * queued, so awaiting it there cannot deadlock.
   *
   * @param values The full snapshot, an array of the stream's dtype with `length`
   *   elements. It is copied; the caller may reuse it at once.
   * @param timestamp The snapshot's local time in integer microseconds; the chunk
   *   carries `clock.sync(timestamp)` (fixed when the timestamp is first seen).
   * @throws {TypeError} (as a rejection) When `values` is not the dtype's typed array.
   * @throws {RangeError} (as a rejection) When `values` has the wrong length or
   *   `timestamp` is not a safe integer.
   * @throws {StaleDataError} (as a rejection) When `timestamp` is older than the
   *   data window. Nothing changes on any of these errors.
   */
  process(values: TypedArrayByDType[D], timestamp: number): Promise<void> {
    let chunks;
    try {
      const synced = this.#policy.check(WHAT_PROCESS, values, timestamp);
      chunks = this.#policy.commit(values, timestamp, synced);
    } catch (error) {
      return Promise.reject(error);
    }
    return this.#delivery.deliver(chunks);
  }

  /**
   * A copy of the snapshot stored at exactly `timestamp` (local time), or
   * `null` when there is none (never stored, or pruned).
   *
   * @param timestamp Local time in integer microseconds.
   * @throws {RangeError} When `timestamp` is not a safe integer.
   */
  getTensorAt(timestamp: number): TypedArrayByDType[D] | null {
    checkTimestamp("get the tensor", "timestamp", timestamp);
    const snapshot = this.#policy.store.at(timestamp);
    return snapshot === undefined ? null : snapshot.values.slice() as TypedArrayByDType[D];
  }

  /**
   * The newest `count` stored snapshots, oldest first, each as one chunk of
   * the whole vector (a copy) at its synchronised time: keyframes that bring
   * a receiver that joined late, or restarted, to the newest state.
   *
   * @param count How many snapshots (an integer >= 0).
   * @returns The chunks.
   * @throws {RangeError} When `count` is not an integer >= 0.
   */
  newestChunks(count: number): TensorChunk<TypedArrayByDType[D]>[] {
    if (!Number.isSafeInteger(count) || count < 0) {
      throw new RangeError(
        `Cannot get the newest snapshots as 'count' must be an integer >= 0: current value is ${count}`,
      );
    }
    return this.#policy.store.newestChunks(count) as TensorChunk<TypedArrayByDType[D]>[];
  }
}
