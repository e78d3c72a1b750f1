/**
 * Step (sample-and-hold) smoothing: the newest keyframe at or before an
 * instant, whole vectors at a time.
 *
 * @module
 */

import type { TensorArray } from "./dtype.ts";
import { fillTensor, type SmoothingSource, type SmoothingStrategy } from "./smoothing_strategy.ts";

/** Options for {@linkcode StepStrategy}. */
export interface StepStrategyOptions {
  /**
   * How long after the last keyframe its value is held, in microseconds.
   * Beyond it the output is the fill value. `null` holds it forever.
   *
   * @default {null}
   */
  maxExtrapolationMicros?: number | null;
}

/**
 * Holds the last value: the output at `at` is the newest keyframe at or
 * before `at`, for every dtype and every element alike (one bracket search
 * per output). Before the first keyframe, with no keyframe at all, and more
 * than `maxExtrapolationMicros` after the last keyframe, every element is the
 * fill value.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { StepStrategy } from "@tsercom/tsercom/tensor";
 *
 * const times = [10, 20];
 * const values = [new Int32Array([1, 2]), new Int32Array([3, 4])];
 * const reader = {
 *   tensorLength: 2,
 *   keyframeCount: 2,
 *   keyframeTime: (i: number) => times[i],
 *   keyframeValues: (i: number) => values[i],
 *   keyframeIndexAtOrBefore: (ts: number) => ts < 10 ? -1 : ts < 20 ? 0 : 1,
 * };
 * const strategy = new StepStrategy({ maxExtrapolationMicros: 5 });
 * const out = new Int32Array(2);
 * const source = { reader, dtype: "int32" as const, fillValue: -1 };
 *
 * strategy.interpolate(19, out, source);
 * assert.deepEqual(Array.from(out), [1, 2]);
 * strategy.interpolate(25, out, source);
 * assert.deepEqual(Array.from(out), [3, 4]);
 * strategy.interpolate(26, out, source);
 * assert.deepEqual(Array.from(out), [-1, -1]);
 * ```
 */
export class StepStrategy implements SmoothingStrategy {
  /** How long the last value is held, in microseconds; `null` is forever. */
  readonly maxExtrapolationMicros: number | null;

  /**
   * Creates the strategy.
   *
   * @param options The hold limit.
   * @throws {RangeError} When the limit is neither null nor an integer >= 0.
   */
  constructor(options: StepStrategyOptions = {}) {
    const value: unknown = options.maxExtrapolationMicros;
    if (value === undefined || value === null) {
      this.maxExtrapolationMicros = null;
    } else if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
      throw new RangeError(
        `Cannot create a StepStrategy as 'maxExtrapolationMicros' must be null or an integer >= 0 (microseconds): current value is ${
          String(value)
        }`,
      );
    } else {
      this.maxExtrapolationMicros = value;
    }
  }

  /**
   * Writes the newest keyframe at or before `at` into `out`, or the fill
   * value (see the class description).
   *
   * @param at The instant, in integer microseconds since the Unix epoch.
   * @param out `source.reader.tensorLength` elements of `source.dtype`.
   * @param source The keyframes, their dtype and the fill value.
   * @returns `false` when every element is the fill value, else `true`.
   */
  interpolate(at: number, out: TensorArray, source: SmoothingSource): boolean {
    const { reader } = source;
    const index = reader.keyframeCount === 0 ? -1 : reader.keyframeIndexAtOrBefore(at);
    const limit = this.maxExtrapolationMicros;
    if (
      index < 0 ||
      (limit !== null && index === reader.keyframeCount - 1 &&
        at - reader.keyframeTime(index) > limit)
    ) {
      fillTensor(out, source.dtype, source.fillValue);
      return false;
    }
    (out as Float64Array).set(reader.keyframeValues(index) as Float64Array);
    return true;
  }
}
