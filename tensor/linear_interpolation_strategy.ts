/**
 * Linear interpolation between the keyframes around an instant, whole
 * vectors at a time.
 *
 * @module
 */

import type { TensorArray } from "./dtype.ts";
import { fillTensor, type SmoothingSource, type SmoothingStrategy } from "./smoothing_strategy.ts";

/** Options for {@linkcode LinearInterpolationStrategy}. */
export interface LinearInterpolationStrategyOptions {
  /**
   * How far before the first keyframe, or after the last, the boundary
   * keyframe's value is held, in microseconds. Beyond it the output is the
   * fill value. `null` holds the boundary value forever, as the Python
   * original always did (it stored this limit and ignored it).
   *
   * @default {null}
   */
  maxExtrapolationMicros?: number | null;
  /**
   * The longest gap between two consecutive keyframes that is bridged, in
   * microseconds. Between two keyframes further apart the output is the fill
   * value (except exactly at a keyframe, which gives that keyframe): a long
   * gap means the values in between are unknown. `null` bridges any gap, as
   * the Python original always did.
   *
   * @default {null}
   */
  maxInterpolationGapMicros?: number | null;
}

/**
 * Linear interpolation: for an instant `at` between keyframes `L` and `R`
 * (`t[L] <= at < t[R]`) every element is `v[L] + p·(v[R] − v[L])` with
 * `p = (at − t[L]) / (t[R] − t[L])`. One bracket search serves the whole
 * vector.
 *
 * - No keyframe: every element is the fill value.
 * - Before the first or after the last keyframe: that keyframe's value, but
 *   only within `maxExtrapolationMicros` of it; beyond, the fill value. (The
 *   Python original ignored both limits; here they are honoured.)
 * - Between two keyframes more than `maxInterpolationGapMicros` apart: the
 *   fill value.
 * - Exactly at a keyframe: that keyframe's values, unchanged.
 *
 * Per dtype: float16/32/64 interpolate in float64 and store in the dtype;
 * int8, uint8, int16 and int32 round the result to the nearest integer (ties
 * toward +∞, as `Math.round`); int64 is computed exactly with bigints
 * (`v[L] + round((v[R] − v[L])·(at − t[L]) / (t[R] − t[L]))`, same rounding);
 * bool is not interpolated: it holds the left keyframe's value.
 *
 * Keyframe timestamps are unique in a demuxer, so the Python original's
 * duplicate-timestamp cases cannot arise.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { LinearInterpolationStrategy } from "@tsercom/tsercom/tensor";
 *
 * const times = [10_000_000, 20_000_000]; // 10 s and 20 s, in microseconds
 * const values = [new Float64Array([10, 0]), new Float64Array([20, 100])];
 * const reader = {
 *   tensorLength: 2,
 *   keyframeCount: 2,
 *   keyframeTime: (i: number) => times[i],
 *   keyframeValues: (i: number) => values[i],
 *   keyframeIndexAtOrBefore: (ts: number) => ts < times[0] ? -1 : ts < times[1] ? 0 : 1,
 * };
 * const strategy = new LinearInterpolationStrategy({ maxExtrapolationMicros: 1_000_000 });
 * const out = new Float64Array(2);
 *
 * strategy.interpolate(15_000_000, out, { reader, dtype: "float64" });
 * assert.deepEqual(Array.from(out), [15, 50]);
 * strategy.interpolate(20_500_000, out, { reader, dtype: "float64" }); // held
 * assert.deepEqual(Array.from(out), [20, 100]);
 * strategy.interpolate(22_000_000, out, { reader, dtype: "float64", fillValue: -1 }); // too far
 * assert.deepEqual(Array.from(out), [-1, -1]);
 * ```
 */
export class LinearInterpolationStrategy implements SmoothingStrategy {
  /** How far the boundary values are held, in microseconds; `null` is unlimited. */
  readonly maxExtrapolationMicros: number | null;
  /** The longest gap bridged, in microseconds; `null` is unlimited. */
  readonly maxInterpolationGapMicros: number | null;

  /**
   * Creates the strategy.
   *
   * @param options The extrapolation and gap limits.
   * @throws {RangeError} When a limit is neither null nor an integer >= 0.
   */
  constructor(options: LinearInterpolationStrategyOptions = {}) {
    this.maxExtrapolationMicros = checkLimit(
      "maxExtrapolationMicros",
      options.maxExtrapolationMicros,
    );
    this.maxInterpolationGapMicros = checkLimit(
      "maxInterpolationGapMicros",
      options.maxInterpolationGapMicros,
    );
  }

  /**
   * Writes the interpolated vector at `at` into `out` (see the class
   * description for the rules).
   *
   * @param at The instant, in integer microseconds since the Unix epoch.
   * @param out `source.reader.tensorLength` elements of `source.dtype`.
   * @param source The keyframes, their dtype and the fill value.
   * @returns `false` when every element is the fill value, else `true`.
   */
  interpolate(at: number, out: TensorArray, source: SmoothingSource): boolean {
    const { reader } = source;
    const count = reader.keyframeCount;
    if (count === 0) return fill(out, source);
    const left = reader.keyframeIndexAtOrBefore(at);
    const limit = this.maxExtrapolationMicros;
    if (left < 0) {
      if (limit !== null && reader.keyframeTime(0) - at > limit) return fill(out, source);
      return copy(out, reader.keyframeValues(0));
    }
    const leftTime = reader.keyframeTime(left);
    if (leftTime === at) return copy(out, reader.keyframeValues(left));
    if (left === count - 1) {
      if (limit !== null && at - leftTime > limit) return fill(out, source);
      return copy(out, reader.keyframeValues(left));
    }
    const right = left + 1;
    const span = reader.keyframeTime(right) - leftTime;
    const gap = this.maxInterpolationGapMicros;
    if (gap !== null && span > gap) return fill(out, source);
    const a = reader.keyframeValues(left);
    if (source.dtype === "bool") return copy(out, a);
    const b = reader.keyframeValues(right);
    const offset = at - leftTime;
    const p = offset / span;
    // The hot loops are written here, not in helpers: V8's mid tier (Maglev)
    // inlines a small helper and then runs its loop without tiering it up,
    // which measured twice as slow (bench/smoothing_bench.ts).
    if (source.dtype === "float32") {
      const o = out as Float32Array, x = a as Float32Array, y = b as Float32Array;
      const n = o.length;
      for (let i = 0; i < n; i++) {
        const v = x[i];
        o[i] = v + p * (y[i] - v);
      }
    } else if (source.dtype === "float64") {
      const o = out as Float64Array, x = a as Float64Array, y = b as Float64Array;
      const n = o.length;
      for (let i = 0; i < n; i++) {
        const v = x[i];
        o[i] = v + p * (y[i] - v);
      }
    } else if (source.dtype === "float16") {
      const o = out as Float16Array, x = a as Float16Array, y = b as Float16Array;
      const n = o.length;
      for (let i = 0; i < n; i++) {
        const v = x[i];
        o[i] = v + p * (y[i] - v);
      }
    } else if (source.dtype === "int64") {
      lerpInt64(
        out as BigInt64Array,
        a as BigInt64Array,
        b as BigInt64Array,
        BigInt(offset),
        BigInt(span),
      );
    } else {
      // int8, uint8, int16, int32: the result lies between a and b, so it fits.
      const o = out as Int32Array, x = a as Int32Array, y = b as Int32Array;
      const n = o.length;
      for (let i = 0; i < n; i++) {
        const v = x[i];
        o[i] = Math.round(v + p * (y[i] - v));
      }
    }
    return true;
  }
}

function fill(out: TensorArray, source: SmoothingSource): false {
  fillTensor(out, source.dtype, source.fillValue);
  return false;
}

function copy(out: TensorArray, values: TensorArray): true {
  (out as Float64Array).set(values as Float64Array);
  return true;
}

/** Exact: a + floor((2·d·num + den) / (2·den)), i.e. a + d·num/den rounded half up. */
function lerpInt64(
  out: BigInt64Array,
  a: BigInt64Array,
  b: BigInt64Array,
  num: bigint,
  den: bigint,
): void {
  const n = out.length;
  const twiceDen = 2n * den;
  for (let i = 0; i < n; i++) {
    const x = a[i];
    const d = b[i] - x;
    if (d === 0n) {
      out[i] = x;
      continue;
    }
    const scaled = 2n * d * num + den;
    let q = scaled / twiceDen; // truncates toward zero
    if (scaled < 0n && q * twiceDen !== scaled) q -= 1n; // floor
    out[i] = x + q;
  }
}

function checkLimit(name: string, value: unknown): number | null {
  if (value === undefined || value === null) return null;
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(
      `Cannot create a LinearInterpolationStrategy as '${name}' must be null or an integer >= 0 (microseconds): current value is ${
        String(value)
      }`,
    );
  }
  return value;
}
