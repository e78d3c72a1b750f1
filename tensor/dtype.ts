/**
 * The element types a tensor stream can carry, and the typed arrays that hold
 * them. State is always held in the stream's own dtype: an int64 stream stays
 * exact and a bool stream stays 0/1 bytes; nothing is coerced to float32.
 *
 * @module
 */

/** The nine dtypes of the wire format, named as the Python library names them. */
export type DType =
  | "bool"
  | "int8"
  | "uint8"
  | "int16"
  | "int32"
  | "int64"
  | "float16"
  | "float32"
  | "float64";

/** Every {@linkcode DType}, in the order the wire format lists them. */
export const DTYPES: readonly DType[] = Object.freeze([
  "bool",
  "float16",
  "float32",
  "float64",
  "int8",
  "uint8",
  "int16",
  "int32",
  "int64",
]);

/** The typed array that holds each dtype (bool is one byte per element, 0 or 1). */
export interface TypedArrayByDType {
  /** One byte per element, 0 or 1. */
  bool: Uint8Array;
  /** Signed bytes. */
  int8: Int8Array;
  /** Unsigned bytes. */
  uint8: Uint8Array;
  /** Signed 16-bit integers. */
  int16: Int16Array;
  /** Signed 32-bit integers. */
  int32: Int32Array;
  /** Signed 64-bit integers, exact. */
  int64: BigInt64Array;
  /** IEEE half-precision floats. */
  float16: Float16Array;
  /** IEEE single-precision floats. */
  float32: Float32Array;
  /** IEEE double-precision floats. */
  float64: Float64Array;
}

/** Any typed array that can hold a tensor of some dtype. */
export type TensorArray = TypedArrayByDType[DType];

/** The JavaScript type of one element of `D`: `bigint` for int64, `number` otherwise. */
export type ElementOf<D extends DType> = D extends "int64" ? bigint : number;

/** Thrown for a dtype name that is not one of the nine {@linkcode DTYPES}. */
export class UnsupportedDTypeError extends Error {
  /** The name that was given. */
  readonly dtype: string;

  /**
   * Creates the error.
   *
   * @param dtype The name that was given.
   */
  constructor(dtype: string) {
    super(
      `Unsupported dtype: expected one of ${DTYPES.join(", ")}: current value is ${
        JSON.stringify(dtype)
      }`,
    );
    this.name = "UnsupportedDTypeError";
    this.dtype = dtype;
  }
}

interface DTypeInfo {
  readonly bytes: number;
  readonly create: (length: number) => TensorArray;
  readonly view: (buffer: ArrayBufferLike, byteOffset: number, length: number) => TensorArray;
}

const INFO: Readonly<Record<DType, DTypeInfo>> = {
  bool: info(Uint8Array),
  int8: info(Int8Array),
  uint8: info(Uint8Array),
  int16: info(Int16Array),
  int32: info(Int32Array),
  int64: info(BigInt64Array),
  float16: info(Float16Array),
  float32: info(Float32Array),
  float64: info(Float64Array),
};

function info(
  ctor: {
    readonly BYTES_PER_ELEMENT: number;
    new (length: number): TensorArray;
    new (buffer: ArrayBufferLike, byteOffset: number, length: number): TensorArray;
  },
): DTypeInfo {
  return {
    bytes: ctor.BYTES_PER_ELEMENT,
    create: (length) => new ctor(length),
    view: (buffer, byteOffset, length) => new ctor(buffer, byteOffset, length),
  };
}

/**
 * Whether `name` is one of the nine dtype names, exactly (lower case).
 *
 * @param name Any string.
 */
export function isDType(name: string): name is DType {
  return Object.hasOwn(INFO, name);
}

/**
 * Resolves a dtype name case-insensitively, as the Python receiver does
 * (`"Float32"` is `"float32"`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseDType } from "@tsercom/tsercom/tensor";
 *
 * assert.equal(parseDType("Float32"), "float32");
 * ```
 *
 * @param name The dtype name from an initializer.
 * @returns The dtype.
 * @throws {UnsupportedDTypeError} When the name is not one of the nine dtypes.
 */
export function parseDType(name: string): DType {
  const lower = typeof name === "string" ? name.toLowerCase() : name;
  if (typeof lower !== "string" || !isDType(lower)) throw new UnsupportedDTypeError(String(name));
  return lower;
}

/**
 * The size of one element of `dtype` in bytes (bool is 1).
 *
 * @param dtype The dtype.
 */
export function bytesPerElement(dtype: DType): number {
  return INFO[dtype].bytes;
}

/**
 * Allocates a zero-filled array of `length` elements of `dtype`.
 *
 * @param dtype The dtype.
 * @param length The number of elements.
 */
export function allocate<D extends DType>(dtype: D, length: number): TypedArrayByDType[D] {
  return INFO[dtype].create(length) as TypedArrayByDType[D];
}

/**
 * Allocates an array of `length` elements of `dtype`, every one set to
 * `value` (converted to the dtype: a number for int64 is truncated to an
 * integer, a bool is 1 for any non-zero value).
 *
 * @param dtype The dtype.
 * @param length The number of elements.
 * @param value The fill value.
 * @throws {RangeError} When `value` cannot be held by an int64 (not finite).
 */
export function filled<D extends DType>(
  dtype: D,
  length: number,
  value: number | bigint,
): TypedArrayByDType[D] {
  const array = allocate(dtype, length);
  const element = toElement(dtype, value);
  if (element !== 0 && element !== 0n) (array as { fill(v: unknown): unknown }).fill(element);
  return array;
}

/**
 * Converts a number (or bigint) to the element type of `dtype`.
 *
 * @param dtype The dtype.
 * @param value The value.
 * @returns A bigint for int64, 0 or 1 for bool, else the number.
 * @throws {RangeError} When an int64 is wanted and `value` is not finite.
 */
export function toElement<D extends DType>(dtype: D, value: number | bigint): ElementOf<D> {
  if (dtype === "int64") {
    if (typeof value === "bigint") return value as ElementOf<D>;
    if (!Number.isFinite(value)) {
      throw new RangeError(
        `Cannot convert to int64 as the value must be finite: current value is ${value}`,
      );
    }
    return BigInt(Math.trunc(value)) as ElementOf<D>;
  }
  const n = Number(value);
  return (dtype === "bool" ? (n !== 0 ? 1 : 0) : n) as ElementOf<D>;
}

/**
 * `length` elements of `dtype` at `byteOffset` in `bytes` (which need not
 * start the buffer): a view when aligned to the element size, else a copy.
 *
 * @param dtype The dtype.
 * @param bytes The bytes the elements lie in.
 * @param byteOffset Where they start in `bytes`.
 * @param length How many elements.
 * @returns The elements.
 */
export function viewAt<D extends DType>(
  dtype: D,
  bytes: Uint8Array,
  byteOffset: number,
  length: number,
): TypedArrayByDType[D] {
  const { bytes: size, view } = INFO[dtype];
  const at = bytes.byteOffset + byteOffset;
  if (at % size === 0) return view(bytes.buffer, at, length) as TypedArrayByDType[D];
  const copy = bytes.slice(byteOffset, byteOffset + length * size);
  return view(copy.buffer, 0, length) as TypedArrayByDType[D];
}

/**
 * Views `bytes` (raw little-endian elements) as an array of `dtype` without
 * copying when the bytes are suitably aligned; otherwise copies them into a
 * fresh array.
 *
 * @param dtype The dtype.
 * @param bytes The raw bytes.
 * @returns The elements.
 * @throws {RangeError} When the byte length is not a multiple of the element size.
 */
export function viewBytes<D extends DType>(dtype: D, bytes: Uint8Array): TypedArrayByDType[D] {
  const { bytes: size, view } = INFO[dtype];
  if (bytes.byteLength % size !== 0) {
    throw new RangeError(
      `Cannot read ${dtype} values as the buffer size must be a multiple of element size ${size}: current size is ${bytes.byteLength}`,
    );
  }
  const length = bytes.byteLength / size;
  if (bytes.byteOffset % size === 0) {
    return view(bytes.buffer, bytes.byteOffset, length) as TypedArrayByDType[D];
  }
  const copy = bytes.slice();
  return view(copy.buffer, 0, length) as TypedArrayByDType[D];
}

/**
 * The raw bytes of `values` (a view, no copy).
 *
 * @param values Any tensor array.
 */
export function bytesOf(values: TensorArray): Uint8Array {
  return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
}

/**
 * An integer view of the same memory as `values`, for exact bitwise change
 * detection: two elements are "the same" when their bits are equal, so a NaN
 * equals the same NaN (bug 9 of the spec) and -0 differs from +0 (the
 * receiver must rebuild exactly what was sent). Element `i` of `values`
 * spans `bitsPerElement(values)` consecutive entries of the view.
 *
 * @param values Any tensor array.
 */
export function bitsView(
  values: TensorArray,
): Uint8Array | Int8Array | Uint16Array | Int16Array | Int32Array {
  if (values instanceof Float32Array || values instanceof Int32Array) {
    return new Int32Array(values.buffer, values.byteOffset, values.length);
  }
  if (values instanceof Float64Array || values instanceof BigInt64Array) {
    return new Int32Array(values.buffer, values.byteOffset, values.length * 2);
  }
  if (values instanceof Float16Array) {
    return new Uint16Array(values.buffer, values.byteOffset, values.length);
  }
  return values;
}

/**
 * How many entries of {@linkcode bitsView} make one element of `values`
 * (2 for float64 and int64, else 1).
 *
 * @param values Any tensor array.
 */
export function bitsPerElement(values: TensorArray): 1 | 2 {
  return values instanceof Float64Array || values instanceof BigInt64Array ? 2 : 1;
}
