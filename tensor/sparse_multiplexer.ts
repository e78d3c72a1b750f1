/**
 * The sender side of a sparse tensor stream: snapshots in, diff chunks out.
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
  checkGap,
  checkLength,
  checkTimeout,
  checkTimestamp,
  checkValues,
  ChunkDelivery,
  DEFAULT_TIMEOUT_MICROS,
  IDENTITY_CLOCK,
  isDirect,
  SnapshotStore,
  SparsePolicy,
} from "./_multiplexer_core.ts";

/** Options for {@linkcode SparseTensorMultiplexer}. */
export interface SparseTensorMultiplexerOptions<D extends DType = DType> {
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
  /**
   * The stream's state before its first snapshot: the first snapshot is
   * diffed against it. The receiver must start from the same vector (the
   * initializer's fill value plus initial chunks). It is copied.
   *
   * @default {all zeros}
   */
  baseline?: TypedArrayByDType[D];
  /**
   * Runs of changed elements separated by at most this many unchanged
   * elements are sent as one chunk (the unchanged ones are resent), trading
   * a few redundant values for fewer chunk headers.
   *
   * @default {0}
   */
  gapMergeThreshold?: number;
}

const WHAT_CREATE = "create the sparse multiplexer";
const WHAT_PROCESS = "process the tensor";

/**
 * Turns a series of full snapshots into the chunks a receiver needs to
 * rebuild every snapshot exactly: for each snapshot, the runs of elements
 * that differ (bit for bit) from the snapshot before it.
 *
 * Snapshots may arrive out of timestamp order or replace an earlier one at
 * the same timestamp; the multiplexer then also emits the few chunks that
 * keep the later snapshot exact on a receiver that stores explicit values
 * per timestamp (the demuxer). Compared with the Python library:
 * - a replaced snapshot also resends the elements that changed from its
 *   previous version, so reverted values reach the receiver (bug 1);
 * - the first snapshot is diffed against `baseline`, the state both ends
 *   start from (bug 2);
 * - input older than the data window is rejected with a
 *   {@linkcode StaleDataError}, and once snapshots are pruned the newest
 *   pruned one becomes the state later diffs start from, not zeros (bug 3);
 * - NaN equals the same NaN, so unchanged NaNs are not resent (bug 9);
 * - chunks own copies of their values (bug 10);
 * - the sink is called without any lock held, so it may call back in (bug
 *   11); the cascade after a late snapshot touches only the next snapshot
 *   and only the changed elements.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SparseTensorMultiplexer, type TensorChunk } from "@tsercom/tsercom/tensor";
 *
 * const chunks: TensorChunk<Float32Array>[] = [];
 * const muxer = new SparseTensorMultiplexer({ onChunk: (c) => void chunks.push(c as TensorChunk<Float32Array>) }, {
 *   dtype: "float32",
 *   length: 5,
 * });
 * await muxer.process(new Float32Array([1, 2, 3, 4, 5]), 1_000);
 * await muxer.process(new Float32Array([10, 2, 30, 40, 5]), 2_000);
 * assert.deepEqual(
 *   chunks.slice(1).map((c) => [c.timestamp, c.startingIndex, Array.from(c.values)]),
 *   [[2_000, 0, [10]], [2_000, 2, [30, 40]]],
 * );
 * assert.deepEqual(Array.from(muxer.getTensorAt(2_000)!), [10, 2, 30, 40, 5]);
 * ```
 *
 * @typeParam D The stream's dtype.
 */
export class SparseTensorMultiplexer<D extends DType = DType> {
  readonly #policy: SparsePolicy;
  readonly #delivery: ChunkDelivery;

  /**
   * Creates a multiplexer that sends its chunks to `sink`.
   *
   * @param sink Receives the chunks, in order.
   * @param options The stream's dtype and length, and the window, clock, baseline and gap policy.
   * @throws {UnsupportedDTypeError} For an unknown dtype.
   * @throws {RangeError} For a length, timeout or gap threshold that is not a positive
   *   (non-negative for the gap) integer, or a baseline of the wrong length.
   * @throws {TypeError} For a baseline of the wrong array class or a clock without `sync`.
   */
  constructor(sink: TensorChunkSink, options: SparseTensorMultiplexerOptions<D>) {
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
    const gap = checkGap(WHAT_CREATE, options.gapMergeThreshold ?? 0);
    const clock = checkClock(WHAT_CREATE, options.clock ?? IDENTITY_CLOCK);
    const baseline = allocate(dtype, length);
    if (options.baseline !== undefined) {
      checkValues(`${WHAT_CREATE} from its baseline`, dtype, length, options.baseline);
      (baseline as { set(a: unknown): void }).set(options.baseline);
    }
    const store = new SnapshotStore(dtype, length, new DataWindow(timeout), clock, baseline);
    this.#policy = new SparsePolicy(store, gap);
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
   * Records the snapshot `values` at `timestamp` and emits the chunks that
   * describe the change. The state is updated before the first chunk is
   * delivered; calls are applied in call order and their chunks delivered in
   * that order.
   *
   * The promise settles once this call's chunks have been delivered. A call
   * made from inside the sink's `onChunk` settles as soon as its chunks are
   * queued (they follow the chunks already queued), so awaiting it there
   * cannot deadlock.
   *
   * @param values The full snapshot, an array of the stream's dtype with `length`
   *   elements. It is copied; the caller may reuse it at once.
   * @param timestamp The snapshot's local time in integer microseconds; the chunks
   *   carry `clock.sync(timestamp)` (fixed when the timestamp is first seen).
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
