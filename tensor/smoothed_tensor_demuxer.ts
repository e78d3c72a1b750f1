/**
 * Smoothed output at a steady rate: a timer, not data arrival, drives it.
 *
 * @module
 */

import { type Scheduler, systemScheduler } from "../rpc/scheduler.ts";
import type { SynchronizedClock } from "../rpc/synchronized_clock.ts";
import { SystemClock } from "../rpc/system_clock.ts";
import { allocate, type DType, isDType, type TypedArrayByDType } from "./dtype.ts";
import type { KeyframeReader } from "./keyframe_reader.ts";
import {
  defaultFillValue,
  type SmoothingSource,
  type SmoothingStrategy,
} from "./smoothing_strategy.ts";

/** The longest wait the timers accept, in milliseconds. */
const MAX_DELAY_MS = 2_147_483_647;

/**
 * What a {@linkcode SmoothedTensorDemuxer} does with output slots it missed
 * (because the process was busy, or a client callback was slow):
 * - `"latest"`: skip to the newest due slot and emit only that one;
 * - `"all"`: emit every missed slot, oldest first, back to back.
 */
export type CatchUpPolicy = "all" | "latest";

/** Receives the output of a {@linkcode SmoothedTensorDemuxer}. */
export interface SmoothedTensorClient<A = TypedArrayByDType[DType]> {
  /**
   * Called once per output slot.
   *
   * `values` is a buffer the demuxer reuses for every output: it is valid
   * until this call returns or, when it returns a promise, until that promise
   * settles. Copy it (`values.slice()`) to keep it longer. The next output
   * waits for that moment, so calls never overlap.
   *
   * @param timestamp The slot, in integer microseconds since the Unix epoch.
   * @param values The smoothed vector, flat, of the demuxer's dtype.
   */
  onSmoothedTensor(timestamp: number, values: A): void | Promise<void>;
}

/** Options for {@linkcode SmoothedTensorDemuxer}. */
export interface SmoothedTensorDemuxerOptions<D extends DType = DType> {
  /** The keyframes to smooth (usually a demuxer). */
  reader: KeyframeReader;
  /** How to turn keyframes into a vector, e.g. {@linkcode LinearInterpolationStrategy}. */
  strategy: SmoothingStrategy;
  /** The dtype of the keyframe vectors and of the output. */
  dtype: D;
  /** The time between output slots, in microseconds (an integer > 0). */
  outputIntervalMicros: number;
  /**
   * How far behind the clock the outputs are, in microseconds (an integer
   * >= 0): the slot for instant `s` is emitted when the clock reads
   * `s + renderDelayMicros`, so that keyframes after `s` have usually arrived
   * and the strategy interpolates rather than extrapolates.
   *
   * @default {2 * outputIntervalMicros}
   */
  renderDelayMicros?: number;
  /**
   * The value of elements the strategy cannot produce (no keyframe, or
   * outside its limits). Integer dtypes need an integer in their range; bool
   * needs 0 or 1. Elements a keyframe holds are never replaced by it: a
   * keyframe's elements that were never sent hold whatever baseline the
   * demuxer that rebuilt it uses.
   *
   * @default {NaN for float16, float32 and float64; 0 for the integer dtypes and bool}
   */
  fillValue?: number;
  /**
   * The tensor's shape: metadata only, its product must equal
   * `reader.tensorLength` (an empty shape is one element).
   *
   * @default {[reader.tensorLength]}
   */
  shape?: readonly number[];
  /**
   * Whether slots fall on exact multiples of the interval (`ceil(t / I) · I`
   * for the first, then every `I`). When false, the first slot is
   * `clock.now() − renderDelayMicros` at {@linkcode SmoothedTensorDemuxer.start}
   * and the next ones follow every `I`.
   *
   * @default {false}
   */
  align?: boolean;
  /**
   * What to do with missed slots.
   *
   * @default {"latest"}
   */
  catchUp?: CatchUpPolicy;
  /**
   * The timers that wake the demuxer.
   *
   * @default {the global setTimeout and clearTimeout}
   */
  scheduler?: Scheduler;
  /**
   * The clock that says which slots are due (synchronised time).
   *
   * @default {new SystemClock()}
   */
  clock?: SynchronizedClock;
  /**
   * Called with any error thrown by the client or the strategy; the demuxer
   * keeps running.
   *
   * @default {console.error}
   */
  onError?: (error: unknown) => void;
}

/**
 * Emits smoothed vectors at a fixed rate. A timer (the injectable
 * `scheduler`) wakes it; the `clock` says which output slots are due; for each
 * slot the `strategy` computes the whole vector from the `reader`'s keyframes
 * at instant `slot`, and the client receives it. Output continues at every
 * interval whether or not new data arrived.
 *
 * This fixes the Python original, whose outputs came only when a keyframe
 * changed (at most one per change, falling ever further behind the clock),
 * whose aligned mode stepped by one or two intervals at random, whose clock
 * could not be injected and whose fill value almost never showed.
 *
 * Output is never computed re-entrantly: a slow client (a returned promise
 * that takes long to settle) delays the next slot, never overlaps it; missed
 * slots then follow the `catchUp` policy. Every due slot is emitted, including
 * slots with no keyframe (all fill values).
 *
 * `start()` on a running demuxer does nothing; `stop()` may be called any
 * number of times; a stopped demuxer can be started again (its first slot is
 * computed afresh). Disposing it stops it for good.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { FakeClock } from "@tsercom/tsercom/rpc";
 * import { LinearInterpolationStrategy, SmoothedTensorDemuxer } from "@tsercom/tsercom/tensor";
 *
 * const times = [1_000_000, 1_200_000];
 * const values = [new Float32Array([10, 100]), new Float32Array([30, 200])];
 * const reader = {
 *   tensorLength: 2,
 *   keyframeCount: 2,
 *   keyframeTime: (i: number) => times[i],
 *   keyframeValues: (i: number) => values[i],
 *   keyframeIndexAtOrBefore: (ts: number) => ts < times[0] ? -1 : ts < times[1] ? 0 : 1,
 * };
 * // A timer we fire by hand, and a clock at 1.3 s.
 * let tick: (() => void) | undefined;
 * const scheduler = { setTimeout: (fn: () => void) => (tick = fn), clearTimeout: () => {} };
 * const clock = new FakeClock({ startMicros: 1_300_000 });
 *
 * const outputs: [number, number[]][] = [];
 * const client = {
 *   onSmoothedTensor(timestamp: number, values: Float32Array) {
 *     outputs.push([timestamp, Array.from(values)]);
 *   },
 * };
 * await using demuxer = new SmoothedTensorDemuxer(client, {
 *   reader,
 *   strategy: new LinearInterpolationStrategy(),
 *   dtype: "float32",
 *   outputIntervalMicros: 100_000,
 *   renderDelayMicros: 200_000,
 *   scheduler,
 *   clock,
 * });
 * demuxer.start();
 * tick!();
 * assert.deepEqual(outputs, [[1_100_000, [20, 150]]]);
 * ```
 *
 * @typeParam D The dtype of the stream.
 */
export class SmoothedTensorDemuxer<D extends DType = DType> implements AsyncDisposable {
  readonly #client: SmoothedTensorClient<TypedArrayByDType[D]>;
  readonly #strategy: SmoothingStrategy;
  readonly #source: SmoothingSource;
  readonly #dtype: D;
  readonly #interval: number;
  readonly #delay: number;
  readonly #fillValue: number;
  readonly #shape: readonly number[];
  readonly #align: boolean;
  readonly #catchUp: CatchUpPolicy;
  readonly #scheduler: Scheduler;
  readonly #clock: SynchronizedClock;
  readonly #onError: (error: unknown) => void;
  readonly #out: TypedArrayByDType[D];

  #running = false;
  #disposed = false;
  #generation = 0;
  #timer: unknown = undefined;
  #timerSet = false;
  #busy = false;
  #inFlight: Promise<void> = Promise.resolve();
  #next = 0;
  #last: number | undefined = undefined;
  #emitted = 0;
  #skipped = 0;

  /**
   * Creates a stopped demuxer; call {@linkcode SmoothedTensorDemuxer.start}.
   *
   * @param client Receives each output.
   * @param options The keyframes, strategy, dtype, rate and the rest.
   * @throws {TypeError} When the client, reader, strategy, scheduler, clock or
   *   dtype is not what it should be.
   * @throws {RangeError} When a number is out of range, or the shape does not
   *   match the reader's length.
   */
  constructor(
    client: SmoothedTensorClient<TypedArrayByDType[D]>,
    options: SmoothedTensorDemuxerOptions<D>,
  ) {
    if (typeof client?.onSmoothedTensor !== "function") {
      fail(TypeError, "client", "an object with an onSmoothedTensor method", client);
    }
    if (options === null || typeof options !== "object") {
      fail(TypeError, "options", "an object", options);
    }
    const { reader, strategy, dtype } = options;
    if (
      reader === null || typeof reader !== "object" ||
      typeof reader.keyframeIndexAtOrBefore !== "function" ||
      typeof reader.keyframeValues !== "function" || typeof reader.keyframeTime !== "function"
    ) {
      fail(TypeError, "reader", "a KeyframeReader", reader);
    }
    const length = reader.tensorLength;
    if (!Number.isSafeInteger(length) || length < 0) {
      fail(RangeError, "reader.tensorLength", "an integer >= 0", length);
    }
    if (typeof strategy?.interpolate !== "function") {
      fail(TypeError, "strategy", "an object with an interpolate method", strategy);
    }
    if (typeof dtype !== "string" || !isDType(dtype)) {
      fail(TypeError, "dtype", "one of the nine dtype names", dtype);
    }
    const interval = options.outputIntervalMicros;
    if (!Number.isSafeInteger(interval) || interval <= 0) {
      fail(RangeError, "outputIntervalMicros", "an integer > 0", interval);
    }
    const delay = options.renderDelayMicros ?? 2 * interval;
    if (!Number.isSafeInteger(delay) || delay < 0) {
      fail(RangeError, "renderDelayMicros", "an integer >= 0", delay);
    }
    if (options.shape !== undefined && !Array.isArray(options.shape)) {
      fail(TypeError, "shape", "an array of integers >= 0", options.shape);
    }
    const shape = options.shape === undefined ? [length] : Array.from(options.shape);
    if (!shape.every((dim) => Number.isSafeInteger(dim) && dim >= 0)) {
      fail(RangeError, "shape", "an array of integers >= 0", options.shape);
    }
    const product = shape.reduce((a, b) => a * b, 1);
    if (product !== length) {
      fail(
        RangeError,
        "shape",
        `dimensions whose product is the reader's tensorLength ${length}`,
        `[${shape.join(", ")}]`,
      );
    }
    const fillValue = options.fillValue ?? Number(defaultFillValue(dtype));
    checkFill(dtype, fillValue);
    const align = options.align ?? false;
    if (typeof align !== "boolean") fail(TypeError, "align", "a boolean", align);
    const catchUp = options.catchUp ?? "latest";
    if (catchUp !== "all" && catchUp !== "latest") {
      fail(RangeError, "catchUp", '"all" or "latest"', JSON.stringify(catchUp));
    }
    const scheduler = options.scheduler ?? systemScheduler;
    if (
      typeof scheduler?.setTimeout !== "function" || typeof scheduler?.clearTimeout !== "function"
    ) {
      fail(TypeError, "scheduler", "an object with setTimeout and clearTimeout", scheduler);
    }
    const clock = options.clock ?? new SystemClock();
    if (typeof clock?.now !== "function") fail(TypeError, "clock", "a SynchronizedClock", clock);
    const onError = options.onError ?? reportToConsole;
    if (typeof onError !== "function") fail(TypeError, "onError", "a function", onError);

    this.#client = client;
    this.#strategy = strategy;
    this.#dtype = dtype;
    this.#interval = interval;
    this.#delay = delay;
    this.#fillValue = fillValue;
    this.#shape = Object.freeze(shape);
    this.#align = align;
    this.#catchUp = catchUp;
    this.#scheduler = scheduler;
    this.#clock = clock;
    this.#onError = onError;
    this.#out = allocate(dtype, length);
    this.#source = Object.freeze({ reader, dtype, fillValue });
  }

  /** The tensor's shape (metadata; the output is flat). */
  get shape(): readonly number[] {
    return this.#shape;
  }

  /** The number of elements of each output. */
  get tensorLength(): number {
    return this.#out.length;
  }

  /** The dtype of the output. */
  get dtype(): D {
    return this.#dtype;
  }

  /** The time between output slots, in microseconds. */
  get outputIntervalMicros(): number {
    return this.#interval;
  }

  /** How far behind the clock the outputs are, in microseconds. */
  get renderDelayMicros(): number {
    return this.#delay;
  }

  /** The value of elements the strategy cannot produce. */
  get fillValue(): number {
    return this.#fillValue;
  }

  /** Whether slots fall on exact multiples of the interval. */
  get align(): boolean {
    return this.#align;
  }

  /** What happens to missed slots. */
  get catchUp(): CatchUpPolicy {
    return this.#catchUp;
  }

  /** Whether the demuxer is started. */
  get running(): boolean {
    return this.#running;
  }

  /** The timestamp of the last output, or `undefined` before the first. */
  get lastOutputTimestamp(): number | undefined {
    return this.#last;
  }

  /** How many outputs were emitted. */
  get emittedCount(): number {
    return this.#emitted;
  }

  /** How many due slots were skipped by the `"latest"` catch-up policy. */
  get skippedCount(): number {
    return this.#skipped;
  }

  /**
   * Starts emitting. The first slot is computed from the clock now; it is
   * emitted from a timer, never from inside this call. Does nothing when
   * already running.
   *
   * @throws {Error} When the demuxer was disposed.
   */
  start(): void {
    if (this.#disposed) {
      throw new Error("Cannot start the SmoothedTensorDemuxer as it was disposed");
    }
    if (this.#running) return;
    this.#running = true;
    this.#generation++;
    const target = this.#clock.now() - this.#delay;
    const interval = this.#interval;
    this.#next = this.#align ? Math.ceil(target / interval) * interval : target;
    this.#schedule(this.#next - target);
  }

  /**
   * Stops emitting: clears the timer at once, and no further output starts.
   * Safe to call any number of times.
   *
   * @returns A promise that settles once an output in progress (a client
   *   callback still running) has finished.
   */
  stop(): Promise<void> {
    if (this.#running) {
      this.#running = false;
      this.#generation++;
    }
    if (this.#timerSet) {
      this.#timerSet = false;
      this.#scheduler.clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    return this.#inFlight;
  }

  /** Stops for good ({@linkcode SmoothedTensorDemuxer.stop}), for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    this.#disposed = true;
    return this.stop();
  }

  #schedule(waitMicros: number): void {
    const ms = Math.min(MAX_DELAY_MS, Math.max(0, Math.ceil(waitMicros / 1000)));
    this.#timerSet = true;
    this.#timer = this.#scheduler.setTimeout(this.#onTimer, ms);
  }

  readonly #onTimer = (): void => {
    this.#timerSet = false;
    this.#timer = undefined;
    const generation = this.#generation;
    // Only after a stop and start during a slow callback can a run still be busy.
    this.#inFlight = this.#busy
      ? this.#inFlight.then(() => this.#run(generation))
      : this.#run(generation);
  };

  async #run(generation: number): Promise<void> {
    this.#busy = true;
    try {
      const interval = this.#interval;
      while (generation === this.#generation) {
        const target = this.#clock.now() - this.#delay;
        let slot = this.#next;
        if (slot > target) break;
        if (this.#catchUp === "latest") {
          const missed = Math.floor((target - slot) / interval);
          this.#skipped += missed;
          slot += missed * interval;
        }
        this.#next = slot + interval;
        const pending = this.#emit(slot);
        if (pending !== undefined) await pending;
      }
      if (generation === this.#generation) {
        this.#schedule(this.#next + this.#delay - this.#clock.now());
      }
    } finally {
      this.#busy = false;
    }
  }

  /** Computes and delivers one slot; returns the client's promise, if any. */
  #emit(slot: number): Promise<void> | undefined {
    try {
      this.#strategy.interpolate(slot, this.#out, this.#source);
      this.#last = slot;
      this.#emitted++;
      const result = this.#client.onSmoothedTensor(slot, this.#out);
      if (result !== undefined && typeof (result as Promise<void>).then === "function") {
        return (result as Promise<void>).then(undefined, this.#onError);
      }
    } catch (error) {
      this.#onError(error);
    }
    return undefined;
  }
}

function checkFill(dtype: DType, value: number): void {
  if (typeof value !== "number") fail(TypeError, "fillValue", "a number", value);
  const range = INTEGER_RANGES[dtype];
  if (range === undefined) return;
  if (!Number.isInteger(value) || value < range[0] || value > range[1]) {
    fail(RangeError, "fillValue", `an integer in ${range[0]}..${range[1]} for ${dtype}`, value);
  }
}

const INTEGER_RANGES: Partial<Record<DType, readonly [number, number]>> = {
  bool: [0, 1],
  int8: [-128, 127],
  uint8: [0, 255],
  int16: [-32768, 32767],
  int32: [-2147483648, 2147483647],
  int64: [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
};

function fail(
  ErrorClass: typeof TypeError | typeof RangeError,
  name: string,
  wanted: string,
  value: unknown,
): never {
  throw new ErrorClass(
    `Cannot create a SmoothedTensorDemuxer as '${name}' must be ${wanted}: current value is ${
      show(value)
    }`,
  );
}

function show(value: unknown): string {
  if (typeof value === "function") return `function ${value.name || "(anonymous)"}`;
  try {
    return String(value);
  } catch {
    return Object.prototype.toString.call(value);
  }
}

function reportToConsole(error: unknown): void {
  console.error("SmoothedTensorDemuxer: an output failed:", error);
}
