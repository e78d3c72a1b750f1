/**
 * TensorFlow.js at the edge of a tensor stream: convert tfjs tensors to the
 * typed arrays tsercom streams carry, and back. Nothing else in tsercom
 * imports tfjs; import this module only if you use it.
 *
 * tfjs holds `float32`, `int32` and `bool` tensors. Going to tfjs, the other
 * dtypes convert: int8, uint8 and int16 exactly to int32; float16 exactly to
 * float32; float64 to float32 (rounded to the nearest float32); int64 to
 * int32 when every value fits, else a `RangeError`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { fromTfjs, toTfjs } from "@tsercom/tsercom/tensor/tfjs";
 *
 * const tensor = toTfjs(new Float64Array([1, 2, 3, 4]), { shape: [2, 2] });
 * assert.deepEqual(tensor.shape, [2, 2]);
 * const back = fromTfjs(tensor);
 * assert.equal(back.dtype, "float32");
 * assert.deepEqual(Array.from(back.values), [1, 2, 3, 4]);
 * tensor.dispose();
 * ```
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import type { DType, TensorArray, TypedArrayByDType } from "./dtype.ts";

export type { DType, TensorArray, TypedArrayByDType };

/** A tfjs tensor's data as a tsercom stream carries it. */
export interface TfjsTensorData {
  /** The dtype: `float32`, `int32` or `bool`. */
  readonly dtype: "float32" | "int32" | "bool";
  /** The elements, flattened in row-major order (a fresh copy). */
  readonly values: Float32Array | Int32Array | Uint8Array;
  /** The tensor's shape. */
  readonly shape: readonly number[];
}

/** Options for {@linkcode toTfjs}. */
export interface ToTfjsOptions {
  /**
   * The tensor's shape; its dims must multiply to the number of values.
   *
   * @default {[values.length]}
   */
  shape?: readonly number[];
  /**
   * The dtype of `values`. Needed to tell bool from uint8 (both are
   * `Uint8Array`s).
   *
   * @default {the dtype the array's class implies; uint8 for a Uint8Array}
   */
  dtype?: DType;
}

/**
 * Copies a tfjs tensor's data into a typed array a tensor stream can carry.
 * It reads the data synchronously (`dataSync`); on GPU backends prefer
 * {@linkcode fromTfjsAsync}.
 *
 * @param tensor A tfjs tensor of dtype float32, int32 or bool.
 * @returns The dtype, the flattened values and the shape.
 * @throws {TypeError} For tfjs dtypes a stream cannot carry (complex64, string).
 */
export function fromTfjs(tensor: tf.Tensor): TfjsTensorData {
  const dtype = streamDType(tensor);
  return { dtype, values: copyData(dtype, tensor.dataSync()), shape: [...tensor.shape] };
}

/**
 * Like {@linkcode fromTfjs}, but waits for the backend to download the data
 * instead of blocking.
 *
 * @param tensor A tfjs tensor of dtype float32, int32 or bool.
 * @returns The dtype, the flattened values and the shape.
 * @throws {TypeError} For tfjs dtypes a stream cannot carry (complex64, string).
 */
export async function fromTfjsAsync(tensor: tf.Tensor): Promise<TfjsTensorData> {
  const dtype = streamDType(tensor);
  return { dtype, values: copyData(dtype, await tensor.data()), shape: [...tensor.shape] };
}

/**
 * Makes a tfjs tensor from a stream's values (copied; later changes to
 * `values` do not show in the tensor).
 *
 * @param values The flat values, in any stream dtype.
 * @param options The shape, and the dtype where the array's class is ambiguous.
 * @returns A tfjs tensor of dtype float32, int32 or bool.
 * @throws {RangeError} When the shape does not match the number of values, or
 * an int64 value does not fit in an int32.
 */
export function toTfjs(values: TensorArray, options: ToTfjsOptions = {}): tf.Tensor {
  const shape = options.shape ?? [values.length];
  const size = shape.reduce((a, b) => a * b, 1);
  if (!shape.every((d) => Number.isInteger(d) && d >= 0) || size !== values.length) {
    throw new RangeError(
      `Cannot make a tfjs tensor as 'shape' must be non-negative integers whose product is ${values.length}: current value is [${
        shape.join(", ")
      }]`,
    );
  }
  const dims = [...shape];
  if (values instanceof Float32Array) return tf.tensor(values.slice(), dims, "float32");
  if (values instanceof Int32Array) return tf.tensor(values.slice(), dims, "int32");
  if (values instanceof Float64Array || values instanceof Float16Array) {
    return tf.tensor(Float32Array.from(values), dims, "float32");
  }
  if (values instanceof BigInt64Array) {
    const out = new Int32Array(values.length);
    for (let i = 0; i < values.length; i++) {
      const v = values[i];
      if (v < -2147483648n || v > 2147483647n) {
        throw new RangeError(
          `Cannot make a tfjs int32 tensor as every int64 value must fit in 32 bits: value ${v} at index ${i} does not`,
        );
      }
      out[i] = Number(v);
    }
    return tf.tensor(out, dims, "int32");
  }
  if (values instanceof Uint8Array && options.dtype === "bool") {
    return tf.tensor(values.map((v) => (v !== 0 ? 1 : 0)), dims, "bool");
  }
  return tf.tensor(Int32Array.from(values), dims, "int32");
}

function streamDType(tensor: tf.Tensor): "float32" | "int32" | "bool" {
  const dtype = tensor.dtype;
  if (dtype === "float32" || dtype === "int32" || dtype === "bool") return dtype;
  throw new TypeError(
    `Cannot stream a tfjs tensor as its dtype must be float32, int32 or bool: current value is ${dtype}`,
  );
}

function copyData(
  dtype: "float32" | "int32" | "bool",
  data: ArrayLike<number> | ArrayLike<string> | ArrayLike<Uint8Array>,
): Float32Array | Int32Array | Uint8Array {
  const numbers = data as ArrayLike<number>;
  switch (dtype) {
    case "float32":
      return Float32Array.from(numbers);
    case "int32":
      return Int32Array.from(numbers);
    case "bool":
      return Uint8Array.from(numbers, (v) => (v !== 0 ? 1 : 0));
  }
}
