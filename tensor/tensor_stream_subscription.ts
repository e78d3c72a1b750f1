/**
 * {@linkcode TensorStreamSubscription}: the receiving end of the built-in
 * `tsercom.TensorStream` gRPC service. It subscribes with a caller id,
 * builds a {@linkcode TensorStreamReceiver} from the initializer, and
 * applies every update to it, asking for keyframes when it sees a gap.
 *
 * @module
 */

import { CallerId } from "../rpc/caller_id.ts";
import type { GrpcChannel } from "../rpc/grpc_channel.ts";
import { type Scheduler, systemScheduler } from "../rpc/scheduler.ts";
import { AsyncQueue } from "../rpc/_async.ts";
import { show } from "../rpc/_show.ts";
import { decodeInitializer, decodeUpdate } from "./chunk_codec.ts";
import { type DType, isDType } from "./dtype.ts";
import type { TensorInitializer } from "./tensor_chunk.ts";
import { TensorFormatError } from "./tensor_format_error.ts";
import {
  TensorStreamReceiver,
  type TensorStreamReceiverOptions,
} from "./tensor_stream_receiver.ts";
import {
  decodeStreamMessage,
  SUBSCRIBE_METHOD,
  type TensorStreamRequest,
  type TensorStreamResponse,
} from "./_tensor_stream_wire.ts";

export type { GrpcChannel, TensorStreamReceiverOptions };

/** Options for {@linkcode TensorStreamSubscription.open}. */
export interface TensorStreamSubscriptionOptions extends TensorStreamReceiverOptions {
  /** Who subscribes (sent in the first message). */
  callerId: CallerId;
  /**
   * The stream's name on the server.
   *
   * @default {""}
   */
  stream?: string;
  /**
   * Cancels the call: the subscription ends and `done` rejects with the reason.
   *
   * @default {undefined}
   */
  signal?: AbortSignal;
  /**
   * The most bytes one LZ4-compressed chunk may decompress to.
   *
   * @default {268435456}
   */
  maxDecompressedBytes?: number;
  /**
   * Ends the subscription with a {@linkcode TensorStreamIdleError} when no
   * message arrives for this many milliseconds, the initializer included
   * (`open` then rejects with it): a link that died silently is otherwise
   * noticed only when TCP gives up, minutes later. A
   * `TensorStreamServer` sends keyframes every `keyframeIntervalMs`, so a
   * few of those intervals is a good value; `null` waits for ever.
   *
   * @default {null}
   */
  idleTimeoutMs?: number | null;
  /**
   * The timer of `idleTimeoutMs`.
   *
   * @default {systemScheduler}
   */
  scheduler?: Scheduler;
}

/** Counts of a {@linkcode TensorStreamSubscription}. */
export interface TensorStreamSubscriptionCounters {
  /** Messages received, the initializer included. */
  readonly messages: number;
  /** Chunks applied. */
  readonly chunks: number;
  /** Keyframe messages received. */
  readonly keyframes: number;
  /** Sequence gaps seen (each one asked for keyframes). */
  readonly gaps: number;
}

/** No message came from the source for `idleTimeoutMs`: the link is taken for dead. */
export class TensorStreamIdleError extends Error {
  /** The silence that ended the subscription, in milliseconds. */
  readonly idleTimeoutMs: number;

  /**
   * Creates the error.
   *
   * @param idleTimeoutMs The silence, in milliseconds.
   */
  constructor(idleTimeoutMs: number) {
    super(
      `The tensor stream ended as no message came from the source for ${idleTimeoutMs} ms (idleTimeoutMs)`,
    );
    this.name = "TensorStreamIdleError";
    this.idleTimeoutMs = idleTimeoutMs;
  }
}

/** The server sent something this subscription cannot use. */
export class TensorStreamProtocolError extends Error {
  /**
   * Creates the error.
   *
   * @param message What was wrong.
   * @param options The cause.
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "TensorStreamProtocolError";
  }
}

/**
 * One subscription to a tensor stream over a gRPC channel. Read the rebuilt
 * frames from {@linkcode TensorStreamSubscription.receiver} (an
 * `AsyncIterable`, or `getTensorAt`); `done` settles when the call ends.
 *
 * @example
 * ```ts ignore
 * import { CallerId, connectChannel } from "@tsercom/tsercom/rpc";
 * import { TensorStreamSubscription } from "@tsercom/tsercom/tensor";
 *
 * const channel = await connectChannel("127.0.0.1", 50051);
 * await using subscription = await TensorStreamSubscription.open(channel, {
 *   callerId: CallerId.random(),
 * });
 * for await (const frame of subscription.receiver) console.log(frame.timestamp, frame.values);
 * ```
 */
export class TensorStreamSubscription<D extends DType = DType> implements AsyncDisposable {
  /** The stream's metadata, as the server sent it. */
  readonly initializer: TensorInitializer;
  /** The rebuilt stream. */
  readonly receiver: TensorStreamReceiver<D>;
  /**
   * Resolves when the server ends the stream; rejects with the call's
   * error (a `GrpcStatusError`), a {@linkcode TensorStreamProtocolError}, a
   * {@linkcode TensorStreamIdleError}, or the abort reason. It never rejects
   * unhandled.
   */
  readonly done: Promise<void>;
  readonly #requests: AsyncQueue<TensorStreamRequest>;
  readonly #abort: AbortController;
  #sequence = 0;
  readonly #counters = { messages: 1, chunks: 0, keyframes: 0, gaps: 0 };

  private constructor(
    initializer: TensorInitializer,
    receiver: TensorStreamReceiver<D>,
    requests: AsyncQueue<TensorStreamRequest>,
    abort: AbortController,
    responses: AsyncIterator<TensorStreamResponse>,
    options: TensorStreamSubscriptionOptions,
  ) {
    this.initializer = initializer;
    this.receiver = receiver;
    this.#requests = requests;
    this.#abort = abort;
    this.done = this.#run(responses, options);
    this.done.catch(() => {});
  }

  /**
   * Subscribes: sends the caller id, waits for the initializer and builds
   * the receiver; updates are applied from then on.
   *
   * @param channel The channel to the source.
   * @param options The caller id, the stream, the receiver's options.
   * @returns The subscription.
   * @throws {GrpcStatusError} (rejection) When the server refuses or the call fails.
   * @throws {TensorStreamProtocolError} (rejection) When the first message
   * is not a valid initializer.
   * @throws {TensorStreamIdleError} (rejection) When the initializer does
   * not come within `idleTimeoutMs`.
   * @throws {TypeError} When `callerId` is not a CallerId.
   * @throws {RangeError} When `idleTimeoutMs` is not a positive integer or null.
   */
  static async open<D extends DType = DType>(
    channel: GrpcChannel,
    options: TensorStreamSubscriptionOptions,
  ): Promise<TensorStreamSubscription<D>> {
    const { callerId, stream = "", signal, idleTimeoutMs = null } = options;
    if (!(callerId instanceof CallerId)) {
      throw new TypeError(
        `Cannot subscribe as 'callerId' must be a CallerId: current value is ${show(callerId)}`,
      );
    }
    if (idleTimeoutMs !== null && (!Number.isSafeInteger(idleTimeoutMs) || idleTimeoutMs < 1)) {
      throw new RangeError(
        `Cannot subscribe as 'idleTimeoutMs' must be an integer >= 1 or null: current value is ${
          show(idleTimeoutMs)
        }`,
      );
    }
    const abort = new AbortController();
    const onAbort = () => abort.abort(signal!.reason);
    if (signal?.aborted) abort.abort(signal.reason);
    signal?.addEventListener("abort", onAbort, { once: true });
    const requests = new AsyncQueue<TensorStreamRequest>({ capacity: 16, overflow: "drop-oldest" });
    requests.tryPush({ callerId: callerId.toString(), stream });
    const responses = channel.bidiStream(SUBSCRIBE_METHOD, requests, { signal: abort.signal })
      [Symbol.asyncIterator]();
    // The silence limit holds from the start: a source that never sends its
    // initializer is as dead as one that stops.
    const scheduler = options.scheduler ?? systemScheduler;
    const silence = idleTimeoutMs === null ? undefined : scheduler.setTimeout(
      () => abort.abort(new TensorStreamIdleError(idleTimeoutMs)),
      idleTimeoutMs,
    );
    try {
      let first: IteratorResult<TensorStreamResponse>;
      try {
        first = await responses.next();
      } finally {
        if (silence !== undefined) scheduler.clearTimeout(silence);
      }
      if (first.done) {
        throw new TensorStreamProtocolError(
          "Cannot subscribe as the server must send an initializer first: the stream ended",
        );
      }
      const frame = decodeStreamMessage(first.value);
      if (frame.sequence !== 0 || frame.initializer === undefined) {
        throw new TensorStreamProtocolError(
          `Cannot subscribe as the first message must be sequence 0 with an initializer: got sequence ${frame.sequence}${
            frame.initializer === undefined ? " without one" : ""
          }`,
        );
      }
      const initializer = decodeInitializer(frame.initializer, options);
      if (!isDType(initializer.dtype)) {
        throw new TensorStreamProtocolError(
          `Cannot subscribe as the stream's dtype must be one this library knows: it is ${
            JSON.stringify(initializer.dtype)
          }`,
        );
      }
      const receiver = new TensorStreamReceiver<D>(initializer, options);
      const subscription = new TensorStreamSubscription<D>(
        initializer,
        receiver,
        requests,
        abort,
        responses,
        options,
      );
      // The caller's signal outlives the call: let go of it once the call ends.
      subscription.done.finally(() => signal?.removeEventListener("abort", onAbort)).catch(
        () => {},
      );
      return subscription;
    } catch (error) {
      signal?.removeEventListener("abort", onAbort);
      requests.close();
      const idle = abort.signal.reason instanceof TensorStreamIdleError
        ? abort.signal.reason
        : undefined;
      abort.abort(error);
      await responses.return?.();
      if (idle !== undefined) throw idle;
      if (error instanceof TensorFormatError) {
        throw new TensorStreamProtocolError(
          `Cannot subscribe as the initializer must decode: ${error.message}`,
          { cause: error },
        );
      }
      throw error;
    }
  }

  /** The sequence number of the last message applied. */
  get sequence(): number {
    return this.#sequence;
  }

  /** The counters. */
  get counters(): TensorStreamSubscriptionCounters {
    return { ...this.#counters };
  }

  /** Asks the source for keyframes of its newest snapshots. */
  resync(): void {
    this.#requests.tryPush({ resync: true });
  }

  /**
   * Cancels the call and closes the receiver (its frames end after those
   * queued). Idempotent.
   *
   * @returns A promise that resolves once the call has ended.
   */
  async close(): Promise<void> {
    this.#requests.close();
    this.#abort.abort(new DOMException("The subscription was closed", "AbortError"));
    await this.done.catch(() => {});
  }

  /** The same as {@linkcode TensorStreamSubscription.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async #run(
    responses: AsyncIterator<TensorStreamResponse>,
    options: TensorStreamSubscriptionOptions,
  ): Promise<void> {
    const dtype = this.initializer.dtype as D;
    const tensorLength = this.initializer.shape.reduce((a, b) => a * b, 1);
    const decodeOptions = { tensorLength, maxDecompressedBytes: options.maxDecompressedBytes };
    const idleMs = options.idleTimeoutMs ?? null;
    const scheduler = options.scheduler ?? systemScheduler;
    let idle: unknown;
    const arm = () => {
      if (idleMs === null) return;
      if (idle !== undefined) scheduler.clearTimeout(idle);
      idle = scheduler.setTimeout(() => {
        idle = undefined;
        this.#abort.abort(new TensorStreamIdleError(idleMs));
      }, idleMs);
    };
    try {
      for (;;) {
        arm();
        const next = await responses.next();
        if (next.done) return;
        this.#counters.messages++;
        let frame;
        let chunks;
        try {
          frame = decodeStreamMessage(next.value);
          chunks = frame.update === undefined
            ? []
            : decodeUpdate(frame.update, dtype, decodeOptions);
        } catch (error) {
          throw new TensorStreamProtocolError(
            `Cannot apply message ${this.#sequence + 1} as it must decode: ${
              error instanceof Error ? error.message : String(error)
            }`,
            { cause: error },
          );
        }
        if (frame.sequence !== this.#sequence + 1) {
          this.#counters.gaps++;
          this.resync();
        }
        this.#sequence = frame.sequence;
        if (frame.keyframe) this.#counters.keyframes++;
        if (chunks.length === 0) continue;
        await this.receiver.receiveUpdate(chunks);
        this.#counters.chunks += chunks.length;
      }
    } catch (error) {
      // The call was cancelled for silence: say so, not "cancelled".
      const reason = this.#abort.signal.reason;
      throw reason instanceof TensorStreamIdleError ? reason : error;
    } finally {
      if (idle !== undefined) scheduler.clearTimeout(idle);
      this.#requests.close();
      await this.receiver.close();
    }
  }
}
