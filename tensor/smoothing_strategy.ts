/**
 * The contract between a smoothing demuxer and the algorithm that turns the
 * keyframes it holds into one vector for any instant.
 *
 * @module
 */

import type { DType, TensorArray } from "./dtype.ts";
import type { KeyframeReader } from "./keyframe_reader.ts";

/**
 * What a {@linkcode SmoothingStrategy} reads from: the keyframes, their dtype
 * and the value for elements it cannot produce. A demuxer builds one of these
 * once and passes the same object to every call.
 */
export interface SmoothingSource {
  /** The keyframes, in timestamp order (integer microseconds since the Unix epoch). */
  readonly reader: KeyframeReader;
  /**
   * The dtype of the keyframe vectors and of the output array. Needed because
   * the array type alone does not tell `bool` from `uint8` (both are
   * `Uint8Array`).
   */
  readonly dtype: DType;
  /**
   * The value written to elements the strategy cannot produce: no keyframe at
   * all, or an instant outside the strategy's limits. A number, or a bigint for
   * int64 (a number is truncated to an integer there).
   *
   * @default {defaultFillValue(dtype)}
   */
  readonly fillValue?: number | bigint;
}

/**
 * Turns keyframes into one whole vector for any instant. The strategies that
 * ship are {@linkcode LinearInterpolationStrategy} and {@linkcode StepStrategy};
 * write your own by implementing this interface.
 *
 * The contract of {@linkcode SmoothingStrategy.interpolate}:
 * - It is synchronous, and writes every element of `out` (and nothing else).
 * - It finds the keyframes it needs with one
 *   {@linkcode KeyframeReader.keyframeIndexAtOrBefore} call (a bracket search
 *   shared by all elements), not one per element.
 * - It never writes to the arrays the reader returns, and keeps no reference
 *   to them or to `out` after it returns: later chunks may change them.
 * - Elements it cannot produce get the source's fill value (see
 *   {@linkcode fillTensor}).
 * - `out` has the dtype of `source.dtype` and `reader.tensorLength` elements.
 *
 * @example A strategy that always outputs the newest keyframe
 * ```ts
 * import assert from "node:assert/strict";
 * import {
 *   fillTensor,
 *   type SmoothingSource,
 *   type SmoothingStrategy,
 *   type TensorArray,
 * } from "@tsercom/tsercom/tensor";
 *
 * class NewestStrategy implements SmoothingStrategy {
 *   interpolate(_at: number, out: TensorArray, source: SmoothingSource): boolean {
 *     const { reader } = source;
 *     if (reader.keyframeCount === 0) {
 *       fillTensor(out, source.dtype, source.fillValue);
 *       return false;
 *     }
 *     (out as Float64Array).set(reader.keyframeValues(reader.keyframeCount - 1) as Float64Array);
 *     return true;
 *   }
 * }
 *
 * const out = new Float64Array(2);
 * const reader = {
 *   tensorLength: 2,
 *   keyframeCount: 0,
 *   keyframeTime: () => 0,
 *   keyframeValues: () => out,
 *   keyframeIndexAtOrBefore: () => -1,
 * };
 * assert.equal(new NewestStrategy().interpolate(0, out, { reader, dtype: "float64" }), false);
 * assert.deepEqual(Array.from(out), [NaN, NaN]);
 * ```
 */
export interface SmoothingStrategy {
  /**
   * Writes the vector at instant `at` into `out`.
   *
   * @param at The instant, in integer microseconds since the Unix epoch.
   * @param out Where to write: `source.reader.tensorLength` elements of `source.dtype`.
   * @param source The keyframes, their dtype and the fill value.
   * @returns `true` when the output came from keyframes, `false` when every
   *   element is the fill value.
   */
  interpolate(at: number, out: TensorArray, source: SmoothingSource): boolean;
}

/**
 * The fill value a dtype gets when none is given: `NaN` for the float dtypes,
 * `0` for the integer dtypes and bool, and `0n` for int64 (integers cannot
 * hold NaN).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { defaultFillValue } from "@tsercom/tsercom/tensor";
 *
 * assert.equal(defaultFillValue("float32"), NaN);
 * assert.equal(defaultFillValue("int16"), 0);
 * assert.equal(defaultFillValue("int64"), 0n);
 * ```
 *
 * @param dtype The dtype.
 * @returns The default fill value of `dtype`.
 */
export function defaultFillValue(dtype: DType): number | bigint {
  if (dtype === "int64") return 0n;
  return dtype === "float16" || dtype === "float32" || dtype === "float64" ? NaN : 0;
}

/**
 * Sets every element of `out` to `fill` converted to `dtype`: a bigint for
 * int64 (a number is truncated), 0 or 1 for bool, the number otherwise (the
 * typed array's own conversion applies).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { fillTensor } from "@tsercom/tsercom/tensor";
 *
 * const out = new BigInt64Array(2);
 * fillTensor(out, "int64", -7);
 * assert.deepEqual(Array.from(out), [-7n, -7n]);
 * ```
 *
 * @param out The array to fill.
 * @param dtype The dtype of `out`.
 * @param fill The value, or {@linkcode defaultFillValue} of `dtype` when undefined.
 * @throws {RangeError} When `dtype` is int64 and `fill` is a number that is not finite.
 */
export function fillTensor(out: TensorArray, dtype: DType, fill?: number | bigint): void {
  const value = fill ?? defaultFillValue(dtype);
  if (dtype === "int64") {
    if (typeof value === "number" && !Number.isFinite(value)) {
      throw new RangeError(
        `Cannot fill an int64 tensor as the fill value must be finite: current value is ${value}`,
      );
    }
    (out as BigInt64Array).fill(typeof value === "bigint" ? value : BigInt(Math.trunc(value)));
    return;
  }
  const n = Number(value);
  (out as Float64Array).fill(dtype === "bool" ? (n !== 0 ? 1 : 0) : n);
}
