/**
 * {@linkcode TensorStreamServer}: the source end of the built-in
 * `tsercom.TensorStream` gRPC service. Snapshots go in; every subscriber
 * gets the initializer, keyframes of the newest snapshots, then the chunks,
 * batched by size and time, LZ4-compressed above a size, under
 * backpressure from its gRPC stream (spec tensor.md §4.5, §5.5).
 *
 * @module
 */

import { CallerId } from "../rpc/caller_id.ts";
import { GrpcStatus, GrpcStatusError } from "../rpc/grpc_types.ts";
import type { BidiStreamingHandler, GrpcCallContext } from "../rpc/grpc_types.ts";
import { type Scheduler, systemScheduler } from "../rpc/scheduler.ts";
import type { SynchronizedClock } from "../rpc/synchronized_clock.ts";
import { SystemClock } from "../rpc/system_clock.ts";
import { show } from "../rpc/_show.ts";
import { encodeInitializer } from "./chunk_codec.ts";
import { CompleteTensorMultiplexer } from "./complete_multiplexer.ts";
import { allocate, type DType, type TypedArrayByDType } from "./dtype.ts";
import { buildInitialVector, describeInitialState } from "./initial_state.ts";
import { SparseTensorMultiplexer } from "./sparse_multiplexer.ts";
import { DIRECT_DELIVERY } from "./_multiplexer_core.ts";
import type { TensorChunk, TensorInitializer } from "./tensor_chunk.ts";
import {
  TENSOR_STREAM_SERVICE,
  type TensorStreamMessageParts,
  type TensorStreamRequest,
  type TensorStreamResponse,
  type TensorStreamService,
} from "./_tensor_stream_wire.ts";

export type {
  BidiStreamingHandler,
  GrpcCallContext,
  TensorChunk,
  TensorInitializer,
  TensorStreamMessageParts,
  TensorStreamResponse,
};

/** What a subscriber's full queue does to new chunks. */
export type TensorStreamOverflow = "block" | "resync";

/** Options for {@linkcode TensorStreamServer}. */
export interface TensorStreamServerOptions<D extends DType = DType> {
  /** The stream's dtype. */
  dtype: D;
  /**
   * The stream's name, which subscribers ask for ("" is the default stream).
   *
   * @default {""}
   */
  name?: string;
  /**
   * The clock that maps update timestamps to the synchronised timeline.
   *
   * @default {new SystemClock()}
   */
  clock?: SynchronizedClock;
  /**
   * Send only the elements that changed (`true`), or every snapshot whole.
   *
   * @default {true}
   */
  sparse?: boolean;
  /**
   * Snapshots older than the newest minus this many microseconds are
   * forgotten; updates older than that are rejected.
   *
   * @default {60000000}
   */
  dataTimeoutMicros?: number;
  /**
   * Sparse mode: changed runs at most this many elements apart are sent as
   * one chunk.
   *
   * @default {0}
   */
  gapMergeThreshold?: number;
  /**
   * How many bytes of chunk values may wait for one subscriber.
   *
   * @default {16777216} (16 MiB)
   */
  subscriberCapacityBytes?: number;
  /**
   * What happens when a subscriber's queue is full: `"block"` makes
   * {@linkcode TensorStreamServer.update} wait for it (the slowest
   * subscriber sets the pace); `"resync"` drops that subscriber's queued
   * chunks and sends it keyframes of the newest snapshots instead, so it
   * converges again without slowing the others.
   *
   * @default {"block"}
   */
  overflow?: TensorStreamOverflow;
  /**
   * The most bytes one message carries, about: chunks are batched up to it,
   * and a larger chunk is split into consecutive pieces. Keep it under the
   * subscriber's maximum receive size (4 MiB by default in gRPC).
   *
   * @default {1048576} (1 MiB)
   */
  maxBatchBytes?: number;
  /**
   * How long a message may wait for more chunks before it is sent,
   * milliseconds; 0 sends what is queued at once.
   *
   * @default {0}
   */
  maxBatchDelayMs?: number;
  /**
   * Chunks whose values take at least this many bytes are LZ4-compressed;
   * `null` never compresses.
   *
   * @default {null}
   */
  lz4MinBytes?: number | null;
  /**
   * How often every subscriber gets keyframes of the newest snapshots,
   * milliseconds; `null` only on connect and on request.
   *
   * @default {1000}
   */
  keyframeIntervalMs?: number | null;
  /**
   * How many of the newest snapshots a keyframe covers.
   *
   * @default {1}
   */
  keyframeDepth?: number;
  /**
   * The timers of batching and keyframes.
   *
   * @default {systemScheduler}
   */
  scheduler?: Scheduler;
}

/** Counts of a {@linkcode TensorStreamServer}. */
export interface TensorStreamServerCounters {
  /** Subscriptions accepted so far. */
  readonly subscriptions: number;
  /** Subscriptions refused (no caller id, unknown stream). */
  readonly refused: number;
  /** Messages sent, over all subscribers. */
  readonly messages: number;
  /** Keyframes sent, over all subscribers. */
  readonly keyframes: number;
  /** Times a subscriber's full queue was dropped for keyframes (`"resync"`). */
  readonly resyncs: number;
}

interface Subscriber {
  readonly callerId: CallerId;
  chunks: TensorChunk[];
  bytes: number;
  keyframe: boolean;
  wake: (() => void) | undefined;
  roomWaiters: (() => void)[];
  closed: boolean;
}

/**
 * The source end of a tensor stream over gRPC: register its handler with a
 * `GrpcServicePublisher` under {@linkcode TensorStreamServer.service}, then
 * {@linkcode TensorStreamServer.update} it with snapshots.
 *
 * Each subscriber first sends its caller id; it then gets sequence 0 (the
 * initializer), a keyframe (whole snapshots of the newest
 * `keyframeDepth` timestamps, so a late joiner or a restarted receiver
 * starts from the source's state), and then every chunk, in order, with
 * consecutive sequence numbers. Keyframes repeat every `keyframeIntervalMs`
 * and whenever a subscriber asks (`resync`).
 *
 * @example
 * ```ts ignore
 * import { GrpcServicePublisher } from "@tsercom/tsercom/rpc";
 * import { TensorStreamServer } from "@tsercom/tsercom/tensor";
 *
 * const stream = new TensorStreamServer(new Float32Array(6), { dtype: "float32" });
 * await using publisher = new GrpcServicePublisher({ addresses: "127.0.0.1", port: 50051 });
 * publisher.addService(TensorStreamServer.service, { Subscribe: stream.handler() });
 * await publisher.start();
 * await stream.update(Float32Array.of(0, 1, 2, 3, 4, 5), Date.now() * 1000);
 * ```
 */
export class TensorStreamServer<D extends DType = DType> implements AsyncDisposable {
  /** The `tsercom.TensorStream` service, to register {@linkcode TensorStreamServer.handler} under. */
  static readonly service: TensorStreamService = TENSOR_STREAM_SERVICE;

  /** The stream's metadata, as subscribers receive it. */
  readonly initializer: TensorInitializer;
  /** The stream's name. */
  readonly name: string;
  readonly #dtype: D;
  readonly #muxer: SparseTensorMultiplexer<D> | CompleteTensorMultiplexer<D>;
  readonly #initializerBytes: Uint8Array;
  readonly #subscribers = new Set<Subscriber>();
  /** The last piece of each keyframe: the message carrying it gets the keyframe flag. */
  readonly #keyframeEnds = new WeakSet<TensorChunk>();
  readonly #capacity: number;
  readonly #overflow: TensorStreamOverflow;
  readonly #maxBatchBytes: number;
  readonly #batchDelayMs: number;
  readonly #lz4MinBytes: number | null;
  readonly #keyframeDepth: number;
  readonly #scheduler: Scheduler;
  #keyframeTimer: unknown;
  #closed = false;
  readonly #counters = { subscriptions: 0, refused: 0, messages: 0, keyframes: 0, resyncs: 0 };

  /**
   * Creates the stream, starting at `initial`.
   *
   * @param initial The starting vector (copied); its length is the stream's.
   * @param options The dtype, name, mode, window, queues, batching, keyframes.
   * @throws {TypeError} When `initial` is not the dtype's typed array.
   * @throws {RangeError} When `initial` is empty or an option is out of range.
   */
  constructor(initial: TypedArrayByDType[D], options: TensorStreamServerOptions<D>) {
    const { dtype } = options;
    const ctor = allocate(dtype, 0).constructor;
    if (!(initial instanceof ctor)) {
      throw new TypeError(
        `Cannot create a tensor stream server as 'initial' must be a ${ctor.name} for dtype ${dtype}: current value is ${
          show(initial)
        }`,
      );
    }
    if (initial.length === 0) {
      throw new RangeError(
        "Cannot create a tensor stream server as 'initial' must have at least one element: current length is 0",
      );
    }
    this.#dtype = dtype;
    this.name = checkName(options.name ?? "");
    const clock = options.clock ?? new SystemClock();
    this.#capacity = positive("subscriberCapacityBytes", options.subscriberCapacityBytes, 16 << 20);
    this.#overflow = options.overflow ?? "block";
    if (this.#overflow !== "block" && this.#overflow !== "resync") {
      throw new RangeError(
        `Cannot create a tensor stream server as 'overflow' must be "block" or "resync": current value is ${
          show(this.#overflow)
        }`,
      );
    }
    this.#maxBatchBytes = positive("maxBatchBytes", options.maxBatchBytes, 1 << 20);
    this.#batchDelayMs = nonNegative("maxBatchDelayMs", options.maxBatchDelayMs, 0);
    this.#lz4MinBytes = options.lz4MinBytes === undefined || options.lz4MinBytes === null
      ? null
      : nonNegative("lz4MinBytes", options.lz4MinBytes, 0);
    this.#keyframeDepth = positive("keyframeDepth", options.keyframeDepth, 1);
    this.#scheduler = options.scheduler ?? systemScheduler;
    const state = describeInitialState(initial, clock.now());
    this.initializer = Object.freeze({
      shape: Object.freeze([initial.length]),
      dtype,
      fillValue: state.fillValue,
      initialState: state.initialState,
    });
    this.#initializerBytes = encodeInitializer(this.initializer);
    const sink = { onChunk: (chunk: TensorChunk) => this.#fanOut(chunk) };
    const common = {
      dtype,
      length: initial.length,
      clock,
      dataTimeoutMicros: options.dataTimeoutMicros,
    };
    // The fan-out never calls update() from inside onChunk: direct delivery.
    this.#muxer = options.sparse === false
      ? new CompleteTensorMultiplexer<D>(sink, direct({ ...common }))
      : new SparseTensorMultiplexer<D>(
        sink,
        direct({
          ...common,
          gapMergeThreshold: options.gapMergeThreshold,
          baseline: buildInitialVector(dtype, initial.length, state.fillValue, state.initialState),
        }),
      );
    const interval = options.keyframeIntervalMs === undefined
      ? 1000
      : options.keyframeIntervalMs === null
      ? null
      : positive("keyframeIntervalMs", options.keyframeIntervalMs, 1000);
    if (interval !== null) this.#armKeyframes(interval);
  }

  /** The dtype. */
  get dtype(): D {
    return this.#dtype;
  }

  /** How many subscribers are connected. */
  get subscribers(): number {
    return this.#subscribers.size;
  }

  /** The counters. */
  get counters(): TensorStreamServerCounters {
    return { ...this.#counters };
  }

  /**
   * Records the snapshot at `timestamp` and queues the chunks it needs for
   * every subscriber. Under `"block"` it waits while a subscriber's queue is full.
   *
   * @param values The whole vector, of the stream's dtype and length. It is
   *   copied before `update` returns, so a source may reuse one array.
   * @param timestamp Local time in microseconds since the Unix epoch.
   * @returns A promise that resolves once the chunks are queued.
   * @throws {RangeError} (rejection) When the length or timestamp is wrong,
   * or the timestamp is older than the window (`StaleDataError`).
   * @throws {TypeError} (rejection) After {@linkcode TensorStreamServer.close}.
   */
  update(values: TypedArrayByDType[D], timestamp: number): Promise<void> {
    if (this.#closed) {
      return Promise.reject(
        new TypeError("Cannot update the tensor stream as it must be open: it is closed"),
      );
    }
    return this.#muxer.process(values, timestamp);
  }

  /**
   * The snapshot held at exactly `timestamp` (a copy), or `null`.
   *
   * @param timestamp Local time in microseconds since the Unix epoch.
   * @returns The snapshot.
   */
  getTensorAt(timestamp: number): TypedArrayByDType[D] | null {
    return this.#muxer.getTensorAt(timestamp);
  }

  /**
   * The handler of `tsercom.TensorStream/Subscribe` for this stream.
   *
   * @returns The handler, for `GrpcServicePublisher.addService`.
   */
  handler(): BidiStreamingHandler<TensorStreamRequest, TensorStreamResponse> {
    return (requests, context) => this.#serve(requests, context);
  }

  /**
   * Ends every subscription (after what is queued) and stops the keyframe
   * timer; later updates reject. Idempotent.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#keyframeTimer !== undefined) this.#scheduler.clearTimeout(this.#keyframeTimer);
    for (const subscriber of this.#subscribers) {
      subscriber.closed = true;
      this.#wake(subscriber);
      for (const waiter of subscriber.roomWaiters.splice(0)) waiter();
    }
  }

  /** The same as {@linkcode TensorStreamServer.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    this.close();
    return Promise.resolve();
  }

  async *#serve(
    requests: AsyncIterable<TensorStreamRequest>,
    context: GrpcCallContext,
  ): AsyncGenerator<TensorStreamMessageParts> {
    const iterator = requests[Symbol.asyncIterator]();
    const first = await iterator.next();
    if (first.done) return;
    const callerId = CallerId.tryParse(first.value.callerId ?? "");
    if (callerId === null) {
      this.#counters.refused++;
      throw new GrpcStatusError(
        GrpcStatus.INVALID_ARGUMENT,
        `Cannot subscribe as the first message must carry a caller id: current value is ${
          show(first.value.callerId)
        }`,
      );
    }
    if ((first.value.stream ?? "") !== this.name) {
      this.#counters.refused++;
      throw new GrpcStatusError(
        GrpcStatus.NOT_FOUND,
        `Cannot subscribe to stream ${JSON.stringify(first.value.stream)} as it must be ${
          JSON.stringify(this.name)
        }: no such stream here`,
      );
    }
    if (this.#closed) {
      throw new GrpcStatusError(GrpcStatus.UNAVAILABLE, "Cannot subscribe as the stream is closed");
    }
    const subscriber: Subscriber = {
      callerId,
      chunks: [],
      bytes: 0,
      keyframe: true,
      wake: undefined,
      roomWaiters: [],
      closed: false,
    };
    this.#subscribers.add(subscriber);
    this.#counters.subscriptions++;
    // Later requests: resync asks for keyframes; the end of them ends nothing.
    (async () => {
      for (;;) {
        const next = await iterator.next();
        if (next.done) return;
        if (next.value.resync) {
          subscriber.keyframe = true;
          this.#wake(subscriber);
        }
      }
    })().catch(() => {});
    const onAbort = () => {
      subscriber.closed = true;
      this.#wake(subscriber);
    };
    context.signal.addEventListener("abort", onAbort, { once: true });
    try {
      let sequence = 0;
      this.#counters.messages++;
      // Parts, not bytes: each message is encoded as grpc-js sends it, into a reused buffer.
      yield { sequence: sequence++, initializer: this.#initializerBytes };
      for (;;) {
        const batch = await this.#next(subscriber);
        if (batch === undefined) return;
        this.#counters.messages++;
        if (batch.keyframe) this.#counters.keyframes++;
        yield {
          sequence: sequence++,
          chunks: batch.chunks,
          lz4MinBytes: this.#lz4MinBytes,
          keyframe: batch.keyframe,
        };
      }
    } finally {
      context.signal.removeEventListener("abort", onAbort);
      subscriber.closed = true;
      this.#subscribers.delete(subscriber);
      for (const waiter of subscriber.roomWaiters.splice(0)) waiter();
    }
  }

  /** Waits for chunks (or a keyframe request) and takes one message's worth. */
  async #next(
    subscriber: Subscriber,
  ): Promise<{ chunks: TensorChunk[]; keyframe: boolean } | undefined> {
    while (subscriber.chunks.length === 0 && !subscriber.keyframe) {
      if (subscriber.closed) return undefined;
      await new Promise<void>((resolve) => subscriber.wake = resolve);
    }
    if (this.#batchDelayMs > 0 && subscriber.bytes < this.#maxBatchBytes && !subscriber.closed) {
      await new Promise<void>((resolve) => {
        const handle = this.#scheduler.setTimeout(() => {
          subscriber.wake = undefined;
          resolve();
        }, this.#batchDelayMs);
        subscriber.wake = () => {
          if (subscriber.bytes < this.#maxBatchBytes && !subscriber.closed) return;
          this.#scheduler.clearTimeout(handle);
          resolve();
        };
      });
    }
    if (subscriber.chunks.length === 0 && subscriber.keyframe) {
      // Taken now, after everything queued before was sent: the newest state.
      subscriber.keyframe = false;
      const pieces = this.#split(this.#keyframeChunks());
      if (pieces.length === 0) return { chunks: [], keyframe: true };
      this.#keyframeEnds.add(pieces[pieces.length - 1]);
      subscriber.chunks = pieces;
      for (const piece of pieces) subscriber.bytes += piece.values.byteLength;
    }
    const chunks: TensorChunk[] = [];
    let size = 0;
    let keyframe = false;
    let taken = 0;
    while (taken < subscriber.chunks.length) {
      const chunk = subscriber.chunks[taken];
      const cost = encodedCost(chunk);
      if (chunks.length > 0 && size + cost > this.#maxBatchBytes) break;
      chunks.push(chunk);
      size += cost;
      taken++;
      if (this.#keyframeEnds.has(chunk)) keyframe = true;
    }
    subscriber.chunks = subscriber.chunks.slice(taken);
    subscriber.bytes -= size - taken * CHUNK_OVERHEAD;
    for (const waiter of subscriber.roomWaiters.splice(0)) waiter();
    return { chunks, keyframe };
  }

  /** Splits chunks larger than a message may be into consecutive views. */
  #split(chunks: TensorChunk[]): TensorChunk[] {
    if (chunks.every((chunk) => encodedCost(chunk) <= this.#maxBatchBytes)) return chunks;
    const out: TensorChunk[] = [];
    for (const chunk of chunks) {
      const { values } = chunk;
      const perElement = values.byteLength / values.length;
      const step = Math.max(1, Math.floor((this.#maxBatchBytes - CHUNK_OVERHEAD) / perElement));
      if (values.length <= step) {
        out.push(chunk);
        continue;
      }
      for (let start = 0; start < values.length; start += step) {
        out.push({
          timestamp: chunk.timestamp,
          startingIndex: chunk.startingIndex + start,
          values: values.subarray(start, start + step) as typeof values,
        });
      }
    }
    return out;
  }

  #keyframeChunks(): TensorChunk[] {
    return this.#muxer.newestChunks(this.#keyframeDepth);
  }

  #fanOut(chunk: TensorChunk): Promise<void> | undefined {
    let waits: Promise<void>[] | undefined;
    const size = chunk.values.byteLength;
    for (const subscriber of this.#subscribers) {
      if (subscriber.closed) continue;
      if (subscriber.bytes + size > this.#capacity && subscriber.bytes > 0) {
        if (this.#overflow === "resync") {
          subscriber.chunks = [];
          subscriber.bytes = 0;
          subscriber.keyframe = true;
          this.#counters.resyncs++;
          this.#wake(subscriber);
          continue; // the keyframe, taken later, includes this chunk's snapshot
        }
        (waits ??= []).push(this.#pushWhenRoom(subscriber, chunk));
        continue;
      }
      this.#push(subscriber, chunk);
    }
    return waits === undefined ? undefined : Promise.all(waits).then(() => {});
  }

  async #pushWhenRoom(subscriber: Subscriber, chunk: TensorChunk): Promise<void> {
    const size = chunk.values.byteLength;
    while (!subscriber.closed && subscriber.bytes + size > this.#capacity && subscriber.bytes > 0) {
      await new Promise<void>((resolve) => subscriber.roomWaiters.push(resolve));
    }
    if (!subscriber.closed) this.#push(subscriber, chunk);
  }

  #push(subscriber: Subscriber, chunk: TensorChunk): void {
    if (encodedCost(chunk) <= this.#maxBatchBytes) subscriber.chunks.push(chunk);
    else subscriber.chunks.push(...this.#split([chunk]));
    subscriber.bytes += chunk.values.byteLength;
    this.#wake(subscriber);
  }

  #wake(subscriber: Subscriber): void {
    const wake = subscriber.wake;
    subscriber.wake = undefined;
    wake?.();
  }

  #armKeyframes(interval: number): void {
    const tick = () => {
      if (this.#closed) return;
      for (const subscriber of this.#subscribers) {
        subscriber.keyframe = true;
        this.#wake(subscriber);
      }
      this.#keyframeTimer = this.#scheduler.setTimeout(tick, interval);
    };
    this.#keyframeTimer = this.#scheduler.setTimeout(tick, interval);
  }
}

/** Marks a multiplexer's options for direct delivery (a private option). */
function direct<O extends object>(options: O): O {
  Object.defineProperty(options, DIRECT_DELIVERY, { value: true });
  return options;
}

/** A bound on the bytes a chunk adds to a message beyond its values (tags, timestamp, index, lengths). */
const CHUNK_OVERHEAD = 48;

function encodedCost(chunk: TensorChunk): number {
  return chunk.values.byteLength + CHUNK_OVERHEAD;
}

function checkName(name: string): string {
  if (typeof name !== "string") {
    throw new TypeError(
      `Cannot create a tensor stream server as 'name' must be a string: current value is ${
        show(name)
      }`,
    );
  }
  return name;
}

function positive(name: string, value: number | undefined, fallback: number): number {
  return integerAtLeast(1, name, value, fallback);
}

function nonNegative(name: string, value: number | undefined, fallback: number): number {
  return integerAtLeast(0, name, value, fallback);
}

function integerAtLeast(
  min: number,
  name: string,
  value: number | undefined,
  fallback: number,
): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < min) {
    throw new RangeError(
      `Cannot create a tensor stream server as '${name}' must be an integer >= ${min}: current value is ${
        show(value)
      }`,
    );
  }
  return value;
}
