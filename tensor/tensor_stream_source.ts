/**
 * The sending end of a tensor stream: snapshots in, batches of chunks out as
 * an `AsyncIterable`, ready to encode and send.
 *
 * @module
 */

import { AsyncQueue, type OverflowPolicy } from "../rpc/_async.ts";
import type { SynchronizedClock } from "../rpc/synchronized_clock.ts";
import { SystemClock } from "../rpc/system_clock.ts";
import { allocate, type DType, type TypedArrayByDType } from "./dtype.ts";
import { buildInitialVector, describeInitialState } from "./initial_state.ts";
import { CompleteTensorMultiplexer } from "./complete_multiplexer.ts";
import { SparseTensorMultiplexer } from "./sparse_multiplexer.ts";
import type { TensorChunk, TensorInitializer } from "./tensor_chunk.ts";

/** Options for {@linkcode TensorStreamSource}. */
export interface TensorStreamSourceOptions<D extends DType = DType> {
  /** The stream's dtype (it tells bool from uint8, which share `Uint8Array`). */
  dtype: D;
  /**
   * The clock that maps update timestamps to the synchronised timeline, and
   * stamps the initial state.
   *
   * @default {new SystemClock()}
   */
  clock?: SynchronizedClock;
  /**
   * Send only the elements that changed (`true`) or every snapshot whole.
   *
   * @default {true}
   */
  sparse?: boolean;
  /**
   * Snapshots older than the newest timestamp minus this many microseconds
   * are forgotten, and updates older than that are rejected; the receiver
   * should use the same window.
   *
   * @default {60_000_000}
   */
  dataTimeoutMicros?: number;
  /**
   * Sparse mode: changed runs separated by at most this many unchanged
   * elements are sent as one chunk.
   *
   * @default {0}
   */
  gapMergeThreshold?: number;
  /**
   * How many chunks may wait for the consumer.
   *
   * @default {1024}
   */
  capacity?: number;
  /**
   * What happens when `capacity` chunks are waiting. `"block"` makes
   * {@linkcode TensorStreamSource.update} wait for the consumer; `"error"`
   * makes it reject. The drop policies lose chunks, and a receiver that
   * misses chunks no longer rebuilds the sender's state: use them only for
   * streams where that is acceptable.
   *
   * @default {"block"}
   */
  overflow?: OverflowPolicy;
}

/**
 * Turns snapshots of a fixed-length vector into batches of chunks: sparse
 * diffs (or whole snapshots), including the re-sends that late or replaced
 * snapshots need. Iterate it to get each batch of chunks queued since the
 * last one, e.g. to send as one `tsercom.TensorUpdate`.
 *
 * The stream starts from `initial`: {@linkcode TensorStreamSource.initializer}
 * describes it (fill value plus initial chunks) and the first diff is taken
 * against it, so a receiver built from the initializer agrees (the Python
 * library diffed against zeros instead — its bug 2).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { FakeClock } from "@tsercom/tsercom/rpc";
 * import { TensorStreamSource } from "@tsercom/tsercom/tensor";
 *
 * const source = new TensorStreamSource(new Float32Array([1, 2, 3, 4, 5]), {
 *   dtype: "float32",
 *   clock: new FakeClock(),
 * });
 * assert.equal(source.initializer.fillValue, 1);
 * await source.update(new Float32Array([1, 2.5, 3, 4.5, 5]), 1_000);
 * source.close();
 * const batches = await Array.fromAsync(source);
 * assert.deepEqual(
 *   batches.flat().map((c) => [c.startingIndex, Array.from(c.values as Float32Array)]),
 *   [[1, [2.5]], [3, [4.5]]],
 * );
 * ```
 */
export class TensorStreamSource<D extends DType = DType>
  implements AsyncIterable<TensorChunk<TypedArrayByDType[D]>[]>, AsyncDisposable {
  /** The stream's metadata, to send to receivers before any chunk. */
  readonly initializer: TensorInitializer;
  readonly #muxer: SparseTensorMultiplexer<D> | CompleteTensorMultiplexer<D>;
  readonly #queue: AsyncQueue<TensorChunk<TypedArrayByDType[D]>>;

  /**
   * Creates a source whose stream starts at `initial`.
   *
   * @param initial The starting vector (copied); its length is the stream's length.
   * @param options The dtype, clock, mode, window and queue.
   * @throws {TypeError} When `initial` is not the dtype's typed array.
   * @throws {RangeError} When `initial` is empty or an option is out of range.
   */
  constructor(initial: TypedArrayByDType[D], options: TensorStreamSourceOptions<D>) {
    const { dtype } = options;
    const ctor = allocate(dtype, 0).constructor;
    if (!(initial instanceof ctor)) {
      throw new TypeError(
        `Cannot create a tensor stream source as 'initial' must be a ${ctor.name} for dtype ${dtype}: current value is ${
          (initial as object)?.constructor?.name ?? typeof initial
        }`,
      );
    }
    if (initial.length === 0) {
      throw new RangeError(
        "Cannot create a tensor stream source as 'initial' must have at least one element: current length is 0",
      );
    }
    const clock = options.clock ?? new SystemClock();
    const state = describeInitialState(initial, clock.now());
    this.initializer = Object.freeze({
      shape: Object.freeze([initial.length]),
      dtype,
      fillValue: state.fillValue,
      initialState: state.initialState,
    });
    this.#queue = new AsyncQueue({
      capacity: options.capacity ?? 1024,
      overflow: options.overflow ?? "block",
    });
    const sink = {
      onChunk: (chunk: TensorChunk) => this.#enqueue(chunk as TensorChunk<TypedArrayByDType[D]>),
    };
    const common = {
      dtype,
      length: initial.length,
      clock,
      dataTimeoutMicros: options.dataTimeoutMicros,
    };
    this.#muxer = options.sparse === false
      ? new CompleteTensorMultiplexer<D>(sink, common)
      : new SparseTensorMultiplexer<D>(sink, {
        ...common,
        gapMergeThreshold: options.gapMergeThreshold,
        baseline: buildInitialVector(
          dtype,
          initial.length,
          state.fillValue,
          state.initialState,
        ),
      });
  }

  /** Chunks dropped because the queue was full (only with a drop policy). */
  get droppedChunks(): number {
    return this.#queue.dropped;
  }

  /**
   * Records the snapshot at `timestamp` and queues the chunks it needs.
   *
   * @param values The whole vector, of the stream's dtype and length.
   * @param timestamp Local time in microseconds since the Unix epoch.
   * @throws {RangeError} (as a rejection) When the length or timestamp is
   * wrong, or the timestamp is older than the window ({@linkcode StaleDataError}).
   * @throws {QueueClosedError} (as a rejection) After {@linkcode TensorStreamSource.close}.
   */
  update(values: TypedArrayByDType[D], timestamp: number): Promise<void> {
    return this.#muxer.process(values, timestamp);
  }

  /**
   * The snapshot the source holds at exactly `timestamp` (a copy), or `null`.
   *
   * @param timestamp Local time in microseconds since the Unix epoch.
   */
  getTensorAt(timestamp: number): TypedArrayByDType[D] | null {
    return this.#muxer.getTensorAt(timestamp);
  }

  /** Ends iteration once the queued chunks are consumed; later updates reject. */
  close(): void {
    this.#queue.close();
  }

  /** Yields every batch of chunks queued since the previous one, until closed. */
  async *[Symbol.asyncIterator](): AsyncIterator<TensorChunk<TypedArrayByDType[D]>[]> {
    for (;;) {
      const first = await this.#queue.shift();
      if (first.done) return;
      const batch = [first.value];
      while (this.#queue.size > 0) {
        const next = await this.#queue.shift();
        if (next.done) break;
        batch.push(next.value);
      }
      yield batch;
    }
  }

  /** The same as {@linkcode TensorStreamSource.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    this.close();
    return Promise.resolve();
  }

  #enqueue(chunk: TensorChunk<TypedArrayByDType[D]>): Promise<void> | undefined {
    if (this.#queue.overflow === "block") return this.#queue.push(chunk);
    if (!this.#queue.tryPush(chunk) && this.#queue.closed) return this.#queue.push(chunk);
    return undefined;
  }
}
