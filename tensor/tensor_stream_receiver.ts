/**
 * The receiving end of a tensor stream: chunks in, rebuilt (and optionally
 * smoothed) snapshots out as an `AsyncIterable`.
 *
 * @module
 */

import { AsyncQueue, type OverflowPolicy } from "../rpc/_async.ts";
import type { Scheduler } from "../rpc/scheduler.ts";
import type { SynchronizedClock } from "../rpc/synchronized_clock.ts";
import { type DType, parseDType, type TypedArrayByDType } from "./dtype.ts";
import { buildInitialVector } from "./initial_state.ts";
import { type CatchUpPolicy, SmoothedTensorDemuxer } from "./smoothed_tensor_demuxer.ts";
import type { SmoothingStrategy } from "./smoothing_strategy.ts";
import type { TensorChunk, TensorInitializer } from "./tensor_chunk.ts";
import { TensorDemuxer, type TensorDemuxerCounters } from "./tensor_demuxer.ts";

/** One snapshot a receiver hands out. */
export interface TensorFrame<A = TypedArrayByDType[DType]> {
  /** The snapshot's time, in microseconds since the Unix epoch (synchronised timeline). */
  readonly timestamp: number;
  /** The flat values, row-major; the frame owns them. */
  readonly values: A;
  /** The stream's shape (`values` has the product of its dims elements). */
  readonly shape: readonly number[];
}

/** Resampling to a steady rate (see {@linkcode SmoothedTensorDemuxer}). */
export interface TensorStreamSmoothingOptions {
  /** How values between snapshots are computed. */
  strategy: SmoothingStrategy;
  /** The time between two output frames, in microseconds. */
  outputIntervalMicros: number;
  /**
   * How far behind the clock outputs are rendered, in microseconds.
   *
   * @default {2 * outputIntervalMicros}
   */
  renderDelayMicros?: number;
  /**
   * Whether output timestamps are exact multiples of the interval.
   *
   * @default {false}
   */
  align?: boolean;
  /**
   * What to do with output slots missed while the event loop was busy.
   *
   * @default {"latest"}
   */
  catchUp?: CatchUpPolicy;
  /**
   * The timers that drive the output.
   *
   * @default {systemScheduler}
   */
  scheduler?: Scheduler;
  /**
   * The clock output times are read from.
   *
   * @default {new SystemClock()}
   */
  clock?: SynchronizedClock;
}

/** Options for {@linkcode TensorStreamReceiver}. */
export interface TensorStreamReceiverOptions {
  /**
   * Snapshots older than the newest timestamp seen minus this many
   * microseconds are dropped; the sender should use the same window.
   *
   * @default {60_000_000}
   */
  dataTimeoutMicros?: number;
  /**
   * How many frames may wait for the consumer.
   *
   * @default {256}
   */
  capacity?: number;
  /**
   * What happens when `capacity` frames are waiting: `"block"` makes
   * {@linkcode TensorStreamReceiver.receive} wait (backpressure to the
   * sender), `"drop-oldest"` / `"drop-newest"` drop and count frames, and
   * `"error"` makes `receive` reject.
   *
   * @default {"block"}
   */
  overflow?: OverflowPolicy;
  /**
   * Resample the stream to a steady rate instead of handing out every
   * changed snapshot.
   *
   * @default {undefined (every changed snapshot is handed out)}
   */
  smoothing?: TensorStreamSmoothingOptions;
  /**
   * Whether to hand out frames at all. Without them, the receiver only
   * rebuilds the snapshots (read them with
   * {@linkcode TensorStreamReceiver.getTensorAt}), and no vector is copied
   * for a frame; iteration ends at once.
   *
   * @default {true}
   */
  frames?: boolean;
}

/**
 * Rebuilds a tensor stream from its initializer and chunks that may arrive
 * late and out of order, and hands out frames as an `AsyncIterable`: every
 * snapshot that changed (in the order they changed), or, with `smoothing`,
 * one interpolated frame per output interval.
 *
 * Both ends start from the initializer's state (its fill value plus its
 * initial chunks); the Python library ignored it and started from zeros.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { TensorStreamReceiver } from "@tsercom/tsercom/tensor";
 *
 * const receiver = new TensorStreamReceiver({
 *   shape: [2, 2],
 *   dtype: "float32",
 *   fillValue: 0,
 *   initialState: null,
 * });
 * await receiver.receive({ timestamp: 10, startingIndex: 1, values: new Float32Array([5]) });
 * await receiver.close();
 * const frames = await Array.fromAsync(receiver);
 * assert.deepEqual(frames.map((f) => Array.from(f.values as Float32Array)), [[0, 5, 0, 0]]);
 * assert.deepEqual(frames[0].shape, [2, 2]);
 * ```
 */
export class TensorStreamReceiver<D extends DType = DType>
  implements AsyncIterable<TensorFrame<TypedArrayByDType[D]>>, AsyncDisposable {
  /** The stream's dtype. */
  readonly dtype: D;
  /** The stream's shape. */
  readonly shape: readonly number[];
  /** The flat vector length. */
  readonly length: number;
  /** The fill value from the initializer. */
  readonly fillValue: number;
  readonly #demuxer: TensorDemuxer<D>;
  readonly #smoother: SmoothedTensorDemuxer<D> | undefined;
  readonly #queue: AsyncQueue<TensorFrame<TypedArrayByDType[D]>>;

  /**
   * Creates a receiver for the stream `initializer` describes.
   *
   * @param initializer The stream's metadata, as the sender published it.
   * @param options The data window, the frame queue and optional smoothing.
   * @throws {UnsupportedDTypeError} When the initializer's dtype is not one of the nine.
   * @throws {RangeError} When the shape is not non-negative integers, or the
   * initial chunks do not fit it.
   */
  constructor(initializer: TensorInitializer, options: TensorStreamReceiverOptions = {}) {
    const dtype = parseDType(initializer.dtype) as D;
    const shape = [...initializer.shape];
    if (!shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new RangeError(
        `Cannot receive the stream as its shape must be non-negative integers: current value is [${
          shape.join(", ")
        }]`,
      );
    }
    const length = shape.reduce((a, b) => a * b, 1);
    this.dtype = dtype;
    this.shape = Object.freeze(shape);
    this.length = length;
    this.fillValue = initializer.fillValue;
    this.#queue = new AsyncQueue({
      capacity: options.capacity ?? 256,
      overflow: options.overflow ?? "block",
    });
    const baseline = buildInitialVector(
      dtype,
      length,
      initializer.fillValue,
      initializer.initialState,
    );
    const smoothing = options.smoothing;
    const frames = options.frames ?? true;
    if (!frames) this.#queue.close();
    this.#demuxer = new TensorDemuxer<D>(
      {
        onTensorChanged: (timestamp, values) => {
          if (smoothing === undefined && frames) {
            return this.#push(timestamp, values.slice() as TypedArrayByDType[D]);
          }
        },
      },
      {
        dtype,
        length,
        dataTimeoutMicros: options.dataTimeoutMicros ?? 60_000_000,
        baseline,
      },
    );
    if (smoothing !== undefined) {
      this.#smoother = new SmoothedTensorDemuxer<D>(
        {
          onSmoothedTensor: (timestamp, values) =>
            this.#push(timestamp, values.slice() as TypedArrayByDType[D]),
        },
        {
          reader: this.#demuxer,
          dtype,
          shape,
          strategy: smoothing.strategy,
          outputIntervalMicros: smoothing.outputIntervalMicros,
          renderDelayMicros: smoothing.renderDelayMicros,
          align: smoothing.align,
          catchUp: smoothing.catchUp,
          scheduler: smoothing.scheduler,
          clock: smoothing.clock,
          fillValue: initializer.fillValue,
        },
      );
      this.#smoother.start();
    }
  }

  /** Frames dropped because the queue was full (only with a drop policy). */
  get droppedFrames(): number {
    return this.#queue.dropped;
  }

  /** The demuxer's counters: stale chunks, out-of-range elements, rejected chunks. */
  get counters(): TensorDemuxerCounters {
    return this.#demuxer.counters;
  }

  /**
   * Applies one chunk. Resolves once the frames it produced are queued
   * (with the `"block"` policy, that waits for the consumer).
   *
   * @param chunk A chunk of the stream, e.g. from {@linkcode decodeChunk}.
   * @throws {TensorDemuxerChunkError} (as a rejection) When the chunk is malformed.
   */
  receive(chunk: TensorChunk): Promise<void> {
    return this.#demuxer.receive(chunk);
  }

  /**
   * Applies the chunks of one update as a batch: each snapshot they create
   * or change yields one frame, in timestamp order, with its final values.
   * Every chunk is validated first, so a malformed one rejects the whole
   * update and changes nothing.
   *
   * @param chunks The chunks, e.g. from {@linkcode decodeUpdate}.
   * @throws {TensorDemuxerChunkError} (as a rejection) When a chunk is malformed.
   */
  receiveUpdate(chunks: readonly TensorChunk[]): Promise<void> {
    return this.#demuxer.receiveAll(chunks);
  }

  /**
   * The rebuilt snapshot at exactly `timestamp` (a copy), or `null`.
   *
   * @param timestamp Microseconds since the Unix epoch.
   */
  getTensorAt(timestamp: number): TypedArrayByDType[D] | null {
    return this.#demuxer.getTensorAt(timestamp);
  }

  /**
   * Stops smoothing and ends iteration once the queued frames are consumed.
   * Idempotent.
   */
  async close(): Promise<void> {
    await this.#smoother?.stop();
    this.#queue.close();
  }

  /** Iterates the frames until {@linkcode TensorStreamReceiver.close}. */
  [Symbol.asyncIterator](): AsyncIterator<TensorFrame<TypedArrayByDType[D]>> {
    return this.#queue[Symbol.asyncIterator]();
  }

  /** The same as {@linkcode TensorStreamReceiver.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  #push(timestamp: number, values: TypedArrayByDType[D]): Promise<void> | undefined {
    if (this.#queue.closed) return undefined;
    const frame = { timestamp, values, shape: this.shape };
    if (this.#queue.overflow === "block") return this.#queue.push(frame);
    this.#queue.tryPush(frame);
    return undefined;
  }
}
