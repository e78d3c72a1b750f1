/**
 * The stream's starting state, shared by both ends: a fill value plus the
 * chunks that differ from it. The sender's multiplexer and the receiver's
 * demuxer both start from exactly this vector (the Python library started
 * both from zeros and ignored the initializer — its bug 2).
 *
 * @module
 */

import {
  bitsPerElement,
  bitsView,
  type DType,
  filled,
  type TensorArray,
  type TypedArrayByDType,
} from "./dtype.ts";
import type { TensorChunk } from "./tensor_chunk.ts";

/** The fill value and initial chunks that describe a starting vector. */
export interface InitialState {
  /** The most frequent value (ties go to the smallest), as the Python library chooses it. */
  readonly fillValue: number;
  /** One chunk per run of elements that differ from the fill value, or `null` when none do. */
  readonly initialState: TensorChunk[] | null;
}

/**
 * Describes `values` as a fill value plus chunks at `timestamp`. Elements are
 * compared with the fill value bit for bit, so the description rebuilds
 * `values` exactly (the Python library used a 1e-9 tolerance).
 *
 * For int64 the fill value is a double; an int64 mode that a double cannot
 * hold exactly is still rebuilt exactly, because the elements that differ
 * from the (rounded) fill value travel as chunks.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { describeInitialState } from "@tsercom/tsercom/tensor";
 *
 * const state = describeInitialState(new Float32Array([1, 2, 3, 4, 5]), 0);
 * assert.equal(state.fillValue, 1);
 * assert.equal(state.initialState?.[0].startingIndex, 1);
 * ```
 *
 * @param values The starting vector.
 * @param timestamp The timestamp of the initial chunks, in microseconds.
 * @returns The fill value and the chunks (each owns a copy of its values).
 */
export function describeInitialState(values: TensorArray, timestamp: number): InitialState {
  const fillValue = modeOf(values);
  const base = filledLike(values, fillValue);
  const chunks = runsDiffering(base, values, timestamp);
  return { fillValue, initialState: chunks.length === 0 ? null : chunks };
}

/**
 * Builds the starting vector: `length` elements of `fillValue`, with the
 * initial chunks written over it.
 *
 * @param dtype The stream's dtype.
 * @param length The flat vector length.
 * @param fillValue The fill value.
 * @param initialState The initial chunks, or `null`.
 * @returns A fresh array.
 * @throws {RangeError} When a chunk's values are not of the dtype or do not fit in the vector.
 */
export function buildInitialVector<D extends DType>(
  dtype: D,
  length: number,
  fillValue: number,
  initialState: readonly TensorChunk[] | null,
): TypedArrayByDType[D] {
  const out = filled(
    dtype,
    length,
    dtype === "int64" && !Number.isFinite(fillValue) ? 0 : fillValue,
  );
  for (const chunk of initialState ?? []) {
    const { startingIndex, values } = chunk;
    if (values.constructor !== out.constructor) {
      throw new RangeError(
        `Cannot apply an initial chunk as its values must be a ${out.constructor.name} for dtype ${dtype}: current value is a ${values.constructor.name}`,
      );
    }
    if (
      !Number.isSafeInteger(startingIndex) || startingIndex < 0 ||
      startingIndex + values.length > length
    ) {
      throw new RangeError(
        `Cannot apply an initial chunk as it must fit in 0..${length}: current range is ${startingIndex}..${
          startingIndex + values.length
        }`,
      );
    }
    (out as { set(a: ArrayLike<unknown>, o: number): void }).set(values, startingIndex);
  }
  return out;
}

/** The most frequent value; ties go to the smallest (NaN counts as largest); empty gives 0. */
function modeOf(values: TensorArray): number {
  const counts = new Map<number | bigint, number>();
  const elements = values as ArrayLike<number | bigint>;
  for (let i = 0; i < elements.length; i++) {
    const v = elements[i];
    counts.set(v, (counts.get(v) ?? 0) + 1);
  }
  let best: number | bigint | undefined;
  let bestCount = 0;
  for (const [v, count] of counts) {
    if (count > bestCount || (count === bestCount && isSmaller(v, best))) {
      best = v;
      bestCount = count;
    }
  }
  return best === undefined ? 0 : Number(best);
}

function isSmaller(a: number | bigint, b: number | bigint | undefined): boolean {
  if (b === undefined) return true;
  if (Number.isNaN(Number(a))) return false;
  return Number.isNaN(Number(b)) || a < b;
}

function filledLike(values: TensorArray, fillValue: number): TensorArray {
  const out = new (values.constructor as new (n: number) => TensorArray)(values.length);
  if (out instanceof BigInt64Array) {
    if (Number.isFinite(fillValue)) out.fill(BigInt(Math.trunc(fillValue)));
  } else {
    out.fill(fillValue);
  }
  return out;
}

/** Chunks (copies) for the maximal runs where `next` differs from `base`, bit for bit. */
function runsDiffering(base: TensorArray, next: TensorArray, timestamp: number): TensorChunk[] {
  const a = bitsView(base);
  const b = bitsView(next);
  const w = bitsPerElement(next);
  const chunks: TensorChunk[] = [];
  let start = -1;
  for (let i = 0; i <= next.length; i++) {
    let differs = false;
    if (i < next.length) {
      for (let j = 0; j < w; j++) if (a[i * w + j] !== b[i * w + j]) differs = true;
    }
    if (differs && start < 0) start = i;
    if (!differs && start >= 0) {
      chunks.push({ timestamp, startingIndex: start, values: next.slice(start, i) });
      start = -1;
    }
  }
  return chunks;
}
