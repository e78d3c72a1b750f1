/**
 * The tensor chunk codec: {@linkcode TensorChunk}s, updates (ordered batches
 * of chunks) and {@linkcode TensorInitializer}s to and from the protobuf
 * messages `tsercom.TensorChunk`, `tsercom.TensorUpdate` and
 * `tsercom.TensorInitializer`, wire-identical to the Python library.
 *
 * A chunk's values travel as the raw little-endian bytes of its dtype (bool is
 * one byte, 0 or 1), optionally as one LZ4 frame (python-lz4's defaults). The
 * chunk carries no dtype: the receiver passes the stream's dtype, normally the
 * one its initializer names.
 *
 * Performance: encoding copies the values once, into the output (use
 * {@linkcode encodeChunkInto} with a reused buffer on hot paths); decoding an
 * uncompressed chunk views the values in the received bytes, without a copy,
 * whenever they are aligned for the dtype.
 *
 * This module assumes a little-endian host, as every platform Deno runs on
 * is; it throws when it is loaded on a big-endian one rather than send or read
 * wrong values.
 *
 * @module
 */

import { decodeMessage } from "../rpc/_proto_codec.ts";
import {
  type ChunkFields,
  dataBytesOf,
  fieldsOfMessage,
  readChunkMessage,
  readUpdateMessage,
} from "./_chunk_wire.ts";
import {
  type ChunkPlan,
  describe,
  LZ4,
  NONE,
  planChunk,
  TAG_INIT_DTYPE,
  TAG_INIT_FILL_VALUE,
  TAG_INIT_INITIAL_STATE,
  TAG_INIT_SHAPE,
  TAG_UPDATE_CHUNKS,
  varintSize,
  writeChunk,
  writeVarint,
} from "./_chunk_plan.ts";
import {
  type TensorChunk_CompressionType,
  TensorInitializerSchema,
} from "../rpc/proto/gen/tensor_pb.ts";
import { ProtoDecodeError } from "../rpc/proto_decode_error.ts";
import { InvalidTimestampError, microsFromTimestamp } from "../rpc/timestamp.ts";
import { decompressFrame, Lz4FormatError } from "./_lz4.ts";
import {
  bytesPerElement,
  type DType,
  DTYPES,
  isDType,
  type TensorArray,
  type TypedArrayByDType,
  UnsupportedDTypeError,
  viewAt,
  viewBytes,
} from "./dtype.ts";
import type { TensorChunk, TensorInitializer } from "./tensor_chunk.ts";
import { TensorFormatError } from "./tensor_format_error.ts";

if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
  throw new Error(
    "Cannot load the tensor chunk codec as the host must be little-endian: this host is big-endian",
  );
}

/** How a chunk's values are compressed on the wire: not at all, or as one LZ4 frame. */
export type ChunkCompression = "none" | "lz4";

/** Options for {@linkcode encodeChunk}, {@linkcode encodeUpdate} and {@linkcode encodeInitializer}. */
export interface EncodeChunkOptions {
  /**
   * How to compress each chunk's values. `"lz4"` writes one LZ4 frame per
   * chunk with python-lz4's defaults; it pays off for repetitive data only.
   *
   * @default {"none"}
   */
  compression?: ChunkCompression;
}

/** Options for {@linkcode decodeChunk} and {@linkcode decodeUpdate}. */
export interface DecodeChunkOptions {
  /**
   * The length of the stream's flat vector. When given, a chunk whose values
   * run past it (`startingIndex + values.length > tensorLength`) is rejected,
   * and an LZ4 frame may not decompress to more than the room that is left.
   *
   * @default {undefined} (only the safe-integer range is checked)
   */
  tensorLength?: number;
  /**
   * The most bytes one LZ4-compressed chunk may decompress to; a frame that
   * declares or produces more is rejected before the excess is allocated.
   *
   * @default {268435456} (256 MiB)
   */
  maxDecompressedBytes?: number;
}

/** Options for {@linkcode decodeInitializer}. */
export interface DecodeInitializerOptions {
  /**
   * The most bytes one LZ4-compressed chunk of the initial state may
   * decompress to.
   *
   * @default {268435456} (256 MiB)
   */
  maxDecompressedBytes?: number;
}

/** A chunk as decoded from the wire, with the compression it came with. */
export interface DecodedTensorChunk<A extends TensorArray = TensorArray> extends TensorChunk<A> {
  /** How the chunk's values were compressed on the wire. */
  readonly compression: ChunkCompression;
}

const DEFAULT_MAX_DECOMPRESSED_BYTES = 256 * 1024 * 1024;
// The largest limit the LZ4 codec accepts.
const MAX_DECOMPRESSED_LIMIT = 2 ** 32;
// The LZ4 frame format's block size as python-lz4 writes it.
const LZ4_BLOCK_SIZE = 64 * 1024;
const TWO_POW_32 = 4_294_967_296;
const MAX_SAFE_BIGINT = BigInt(Number.MAX_SAFE_INTEGER);
const textEncoder = new TextEncoder();

// ---------------------------------------------------------------------------
// Encoding: the fields are written by hand (tests compare them with
// protobuf-es). Proto3 leaves out scalars that hold their zero value; message
// fields are written whenever they are set.
// ---------------------------------------------------------------------------

function checkCompression(options: EncodeChunkOptions | undefined): TensorChunk_CompressionType {
  const compression = options?.compression ?? "none";
  if (compression === "none") return NONE;
  if (compression === "lz4") return LZ4;
  throw new RangeError(
    `Cannot encode as 'compression' must be "none" or "lz4": current value is ${
      describe(compression)
    }`,
  );
}

/** The size of a list of planned chunks written as repeated message field 1. */
function chunksSize(plans: readonly ChunkPlan[]): number {
  let size = 0;
  for (const plan of plans) size += 1 + varintSize(plan.size) + plan.size;
  return size;
}

function writeChunks(out: Uint8Array, pos: number, plans: readonly ChunkPlan[]): number {
  for (const plan of plans) {
    out[pos++] = TAG_UPDATE_CHUNKS;
    pos = writeVarint(out, pos, plan.size);
    pos = writeChunk(out, pos, plan);
  }
  return pos;
}

function planChunks(
  chunks: readonly TensorChunk[],
  compression: TensorChunk_CompressionType,
  what: string,
): ChunkPlan[] {
  if (!Array.isArray(chunks)) {
    throw new TypeError(
      `Cannot encode ${what} as its chunks must be an array: current value is ${describe(chunks)}`,
    );
  }
  return chunks.map((chunk, i) => planChunk(chunk, compression, `chunk ${i} of ${what}`));
}

/**
 * Encodes a chunk as a `tsercom.TensorChunk` message, byte for byte what the
 * Python library sends for the same chunk. The values are written as the raw
 * little-endian bytes of their typed array (a bool array must hold only 0 and
 * 1, or the receiver rejects it), copied once into the fresh output; use
 * {@linkcode encodeChunkInto} to write into a reused buffer instead.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeChunk, encodeChunk } from "@tsercom/tsercom/tensor";
 *
 * const bytes = encodeChunk({
 *   timestamp: 1_732_406_400_500_000,
 *   startingIndex: 7,
 *   values: new Float32Array([1.5, -2.25]),
 * });
 * const chunk = decodeChunk(bytes, "float32");
 * assert.equal(chunk.startingIndex, 7);
 * assert.deepEqual(Array.from(chunk.values), [1.5, -2.25]);
 * ```
 *
 * @param chunk The chunk.
 * @param options How to compress the values.
 * @returns The serialised message.
 * @throws {RangeError} When the timestamp is not a safe integer, the starting
 * index is not a non-negative safe integer, or the compression is unknown.
 * @throws {TypeError} When the values are not a typed array.
 */
export function encodeChunk(chunk: TensorChunk, options?: EncodeChunkOptions): Uint8Array {
  const plan = planChunk(chunk, checkCompression(options), "the chunk");
  const out = new Uint8Array(plan.size);
  writeChunk(out, 0, plan);
  return out;
}

/**
 * The number of bytes {@linkcode encodeChunk} makes of `chunk`, for sizing
 * the buffer given to {@linkcode encodeChunkInto}. Exact without compression;
 * with `"lz4"` an upper bound (the size when no block of the values
 * compresses), found without compressing.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeChunk, encodedChunkSize } from "@tsercom/tsercom/tensor";
 *
 * const chunk = { timestamp: 1, startingIndex: 0, values: new Int32Array(10) };
 * assert.equal(encodedChunkSize(chunk), encodeChunk(chunk).length);
 * ```
 *
 * @param chunk The chunk.
 * @param options How the values would be compressed.
 * @returns The size in bytes.
 * @throws {RangeError} As {@linkcode encodeChunk}.
 * @throws {TypeError} As {@linkcode encodeChunk}.
 */
export function encodedChunkSize(chunk: TensorChunk, options?: EncodeChunkOptions): number {
  const compression = checkCompression(options);
  // Plan without compressing, then account for the LZ4 frame's worst case:
  // header (magic, descriptor, content size, checksum), a 4-byte size per
  // block, every block stored as is, and the end mark.
  const plan = planChunk(chunk, NONE, "the chunk");
  if (compression === NONE) return plan.size;
  const raw = plan.payloadBytes;
  const frame = 4 + 2 + 8 + 1 + 4 * Math.ceil(raw / LZ4_BLOCK_SIZE) + raw + 4;
  const rawField = raw !== 0 ? 1 + varintSize(raw) + raw : 0;
  return plan.size - rawField + 1 + varintSize(frame) + frame + 2;
}

/**
 * Encodes a chunk as {@linkcode encodeChunk} does, into `target` from its
 * first byte, and returns how many bytes it wrote. Reusing one buffer for
 * many chunks avoids a fresh allocation per message, whose first touch is
 * costly for large chunks.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeChunk, encodeChunkInto, encodedChunkSize } from "@tsercom/tsercom/tensor";
 *
 * const chunk = { timestamp: 5, startingIndex: 3, values: new Float64Array([0.5, 1]) };
 * const buffer = new Uint8Array(encodedChunkSize(chunk));
 * const written = encodeChunkInto(chunk, buffer);
 * assert.deepEqual(buffer.subarray(0, written), encodeChunk(chunk));
 * ```
 *
 * @param chunk The chunk.
 * @param target Where to write; at least {@linkcode encodedChunkSize} bytes
 * (fewer may do for LZ4: it is the actual size that counts).
 * @param options How to compress the values.
 * @returns The number of bytes written.
 * @throws {RangeError} When `target` is too small, or as {@linkcode encodeChunk}.
 * @throws {TypeError} When `target` is not a `Uint8Array`, or as {@linkcode encodeChunk}.
 */
export function encodeChunkInto(
  chunk: TensorChunk,
  target: Uint8Array,
  options?: EncodeChunkOptions,
): number {
  if (!(target instanceof Uint8Array)) {
    throw new TypeError(
      `Cannot encode the chunk as 'target' must be a Uint8Array: current value is ${
        describe(target)
      }`,
    );
  }
  const plan = planChunk(chunk, checkCompression(options), "the chunk");
  if (target.byteLength < plan.size) {
    throw new RangeError(
      `Cannot encode the chunk as 'target' must hold at least ${plan.size} bytes: current length is ${target.byteLength}`,
    );
  }
  return writeChunk(target, 0, plan);
}

/**
 * Encodes an ordered batch of chunks as a `tsercom.TensorUpdate` message.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeUpdate, encodeUpdate } from "@tsercom/tsercom/tensor";
 *
 * const bytes = encodeUpdate([
 *   { timestamp: 100_000_000, startingIndex: 0, values: new Float32Array([1, 2]) },
 *   { timestamp: 101_000_000, startingIndex: 10, values: new Float32Array([3.5]) },
 * ]);
 * const chunks = decodeUpdate(bytes, "float32");
 * assert.deepEqual(chunks.map((c) => c.startingIndex), [0, 10]);
 * ```
 *
 * @param chunks The chunks, in the order the receiver should apply them.
 * @param options How to compress each chunk's values.
 * @returns The serialised message.
 * @throws {RangeError} As {@linkcode encodeChunk}, naming the chunk.
 * @throws {TypeError} When `chunks` is not an array, or as {@linkcode encodeChunk}.
 */
export function encodeUpdate(
  chunks: readonly TensorChunk[],
  options?: EncodeChunkOptions,
): Uint8Array {
  const plans = planChunks(chunks, checkCompression(options), "the update");
  const out = new Uint8Array(chunksSize(plans));
  writeChunks(out, 0, plans);
  return out;
}

/**
 * Encodes stream metadata as a `tsercom.TensorInitializer` message. The
 * `initial_state` field is written only when `initialState` is not `null`
 * (an empty array writes an empty update, which the receiver can tell apart
 * from none).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeInitializer, encodeInitializer } from "@tsercom/tsercom/tensor";
 *
 * const bytes = encodeInitializer({
 *   shape: [2, 3],
 *   dtype: "float32",
 *   fillValue: -1,
 *   initialState: [{ timestamp: 5_250_000, startingIndex: 4, values: new Float32Array([9, 8]) }],
 * });
 * const init = decodeInitializer(bytes);
 * assert.deepEqual(init.shape, [2, 3]);
 * assert.equal(init.initialState?.length, 1);
 * ```
 *
 * @param init The stream metadata.
 * @param options How to compress the initial chunks' values.
 * @returns The serialised message.
 * @throws {RangeError} When a dimension of the shape is not a non-negative
 * safe integer, or as {@linkcode encodeChunk} for an initial chunk.
 * @throws {TypeError} When a field has the wrong type, or as
 * {@linkcode encodeChunk} for an initial chunk.
 */
export function encodeInitializer(
  init: TensorInitializer,
  options?: EncodeChunkOptions,
): Uint8Array {
  if (typeof init !== "object" || init === null) {
    throw new TypeError(
      `Cannot encode the initializer as it must be a TensorInitializer: current value is ${
        describe(init)
      }`,
    );
  }
  const { shape, dtype, fillValue, initialState } = init;
  if (!Array.isArray(shape)) {
    throw new TypeError(
      `Cannot encode the initializer as 'shape' must be an array: current value is ${
        describe(shape)
      }`,
    );
  }
  let shapeSize = 0;
  for (let i = 0; i < shape.length; i++) {
    const dim = shape[i];
    if (!Number.isSafeInteger(dim) || dim < 0) {
      throw new RangeError(
        `Cannot encode the initializer as 'shape[${i}]' must be a non-negative safe integer: current value is ${
          describe(dim)
        }`,
      );
    }
    shapeSize += varintSize(dim);
  }
  if (typeof dtype !== "string") {
    throw new TypeError(
      `Cannot encode the initializer as 'dtype' must be a string: current value is ${
        describe(dtype)
      }`,
    );
  }
  if (typeof fillValue !== "number") {
    throw new TypeError(
      `Cannot encode the initializer as 'fillValue' must be a number: current value is ${
        describe(fillValue)
      }`,
    );
  }
  const compression = checkCompression(options);
  const plans = initialState === null
    ? null
    : planChunks(initialState, compression, "the initializer's initial state");
  const dtypeBytes = textEncoder.encode(dtype);
  const stateSize = plans === null ? 0 : chunksSize(plans);
  const size = (shape.length !== 0 ? 1 + varintSize(shapeSize) + shapeSize : 0) +
    (dtypeBytes.length !== 0 ? 1 + varintSize(dtypeBytes.length) + dtypeBytes.length : 0) +
    (!Object.is(fillValue, 0) ? 9 : 0) +
    (plans !== null ? 1 + varintSize(stateSize) + stateSize : 0);
  const out = new Uint8Array(size);
  let pos = 0;
  if (shape.length !== 0) {
    out[pos++] = TAG_INIT_SHAPE;
    pos = writeVarint(out, pos, shapeSize);
    for (const dim of shape) pos = writeVarint(out, pos, dim);
  }
  if (dtypeBytes.length !== 0) {
    out[pos++] = TAG_INIT_DTYPE;
    pos = writeVarint(out, pos, dtypeBytes.length);
    out.set(dtypeBytes, pos);
    pos += dtypeBytes.length;
  }
  if (!Object.is(fillValue, 0)) {
    out[pos++] = TAG_INIT_FILL_VALUE;
    new DataView(out.buffer).setFloat64(pos, fillValue, true);
    pos += 8;
  }
  if (plans !== null) {
    out[pos++] = TAG_INIT_INITIAL_STATE;
    pos = writeVarint(out, pos, stateSize);
    writeChunks(out, pos, plans);
  }
  return out;
}

// ---------------------------------------------------------------------------
// Decoding: protobuf-es parses the message (its bytes fields are views of the
// input), then each chunk is checked and its values viewed in place.
// ---------------------------------------------------------------------------

function checkBytes(bytes: Uint8Array, what: string): void {
  if (!(bytes instanceof Uint8Array)) {
    throw new TypeError(
      `Cannot decode ${what} as 'bytes' must be a Uint8Array: current value is ${describe(bytes)}`,
    );
  }
}

function checkDType(dtype: DType): void {
  if (typeof dtype !== "string" || !isDType(dtype)) throw new UnsupportedDTypeError(String(dtype));
}

function checkMaxDecompressed(value: number | undefined): number {
  if (value === undefined) return DEFAULT_MAX_DECOMPRESSED_BYTES;
  if (!Number.isSafeInteger(value) || value < 0 || value > MAX_DECOMPRESSED_LIMIT) {
    throw new RangeError(
      `Cannot decode as 'maxDecompressedBytes' must be an integer in 0..${MAX_DECOMPRESSED_LIMIT}: current value is ${
        describe(value)
      }`,
    );
  }
  return value;
}

function checkTensorLength(value: number | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(
      `Cannot decode as 'tensorLength' must be a non-negative safe integer: current value is ${
        describe(value)
      }`,
    );
  }
  return value;
}

function decodeProto<T>(decode: () => T): T {
  try {
    return decode();
  } catch (error) {
    if (error instanceof ProtoDecodeError) {
      throw new TensorFormatError("proto", error.message, { cause: error });
    }
    throw error;
  }
}

/** Whether every byte of `bytes` is 0 or 1; returns the offset of the first other byte, or -1. */
function firstNonBool(bytes: Uint8Array): number {
  const n = bytes.byteLength;
  let i = 0;
  if (bytes.byteOffset % 4 === 0 && n >= 64) {
    const words = new Uint32Array(bytes.buffer, bytes.byteOffset, n >>> 2);
    let bad = 0;
    for (let w = 0; w < words.length; w++) bad |= words[w];
    if ((bad & 0xfefefefe) === 0) i = words.length * 4;
  }
  let bad = 0;
  for (let j = i; j < n; j++) bad |= bytes[j];
  if ((bad & 0xfe) === 0) return -1;
  for (let j = i; j < n; j++) if (bytes[j] > 1) return j;
  return -1;
}

/**
 * The content size an LZ4 frame's header declares (python-lz4 writes it by
 * default), or `undefined` when the header does not declare one or is not an
 * LZ4 frame header (the decompressor reports that).
 */
function declaredContentSize(frame: Uint8Array): number | undefined {
  if (
    frame.byteLength < 14 || frame[0] !== 0x04 || frame[1] !== 0x22 || frame[2] !== 0x4d ||
    frame[3] !== 0x18 || (frame[4] & 0x08) === 0
  ) {
    return undefined;
  }
  const lo = (frame[6] | (frame[7] << 8) | (frame[8] << 16) | (frame[9] << 24)) >>> 0;
  const hi = (frame[10] | (frame[11] << 8) | (frame[12] << 16) | (frame[13] << 24)) >>> 0;
  return hi * TWO_POW_32 + lo;
}

/** Seconds whose microseconds are surely a safe integer (inside the Timestamp range too). */
const FAST_SECONDS = Math.floor(Number.MAX_SAFE_INTEGER / 1_000_000) - 1;

/** Checks a parsed chunk message and turns it into a chunk of `dtype`. */
function chunkFromMessage<D extends DType>(
  message: ChunkFields,
  dtype: D,
  tensorLength: number | undefined,
  maxDecompressed: number,
): DecodedTensorChunk<TypedArrayByDType[D]> {
  // Timestamp.
  if (message.timestampLevel !== 2) {
    throw new TensorFormatError(
      "timestamp",
      `Cannot decode the chunk as its ${
        message.timestampLevel === 0 ? "'timestamp'" : "ServerTimestamp's 'timestamp'"
      } field must be set: current value is absent`,
    );
  }
  let timestamp: number;
  const { seconds, nanos } = message;
  if (
    typeof seconds === "number" && seconds <= FAST_SECONDS && seconds >= -FAST_SECONDS &&
    Number.isInteger(nanos) && nanos >= 0 && nanos <= 999_999_999
  ) {
    // What microsFromTimestamp computes, without a bigint, for every time it accepts here.
    timestamp = seconds * 1_000_000 + Math.floor(nanos / 1_000);
  } else {
    try {
      timestamp = microsFromTimestamp({ seconds: BigInt(seconds), nanos });
    } catch (error) {
      if (error instanceof InvalidTimestampError) {
        throw new TensorFormatError(
          "timestamp",
          `Cannot decode the chunk's timestamp: ${error.message}`,
          { cause: error },
        );
      }
      throw error;
    }
  }

  // Starting index.
  const index = message.startingIndex;
  if (
    typeof index === "bigint" ? index < 0n || index > MAX_SAFE_BIGINT : index < 0 ||
      !Number.isSafeInteger(index)
  ) {
    throw new TensorFormatError(
      "index",
      `Cannot decode the chunk as 'starting_index' must be in 0..${Number.MAX_SAFE_INTEGER}: current value is ${index}`,
    );
  }
  const startingIndex = Number(index);
  if (tensorLength !== undefined && startingIndex > tensorLength) {
    throw new TensorFormatError(
      "index",
      `Cannot decode the chunk as 'starting_index' must be at most the tensor length ${tensorLength}: current value is ${startingIndex}`,
    );
  }

  // Values: uncompressed ones stay where they are (a view is made at the end).
  const size = bytesPerElement(dtype);
  let raw: Uint8Array | undefined;
  let rawLength: number;
  let compression: ChunkCompression;
  if (message.compression === NONE) {
    rawLength = message.dataLength;
    compression = "none";
  } else if (message.compression === LZ4) {
    const frame = dataBytesOf(message);
    const room = tensorLength === undefined ? Infinity : (tensorLength - startingIndex) * size;
    const declared = declaredContentSize(frame);
    if (declared !== undefined && declared > room) {
      throw new TensorFormatError(
        "index",
        `Cannot decode the chunk as its values starting at index ${startingIndex} must end within the tensor length ${tensorLength}, leaving room for ${room} bytes: its LZ4 frame declares ${declared} bytes`,
      );
    }
    const limit = Math.min(maxDecompressed, room);
    try {
      raw = decompressFrame(frame, { maxOutputBytes: limit });
    } catch (error) {
      if (error instanceof Lz4FormatError) {
        throw new TensorFormatError(
          "lz4",
          `Cannot decode the chunk's LZ4-compressed values (at most ${limit} bytes${
            limit === room ? `, the room left after index ${startingIndex} of ${tensorLength}` : ""
          }): ${error.message}`,
          { cause: error },
        );
      }
      throw error;
    }
    rawLength = raw.byteLength;
    compression = "lz4";
  } else {
    throw new TensorFormatError(
      "compression",
      `Cannot decode the chunk as 'compression' must be NONE (0) or LZ4 (1): current value is ${message.compression}`,
    );
  }
  if (rawLength % size !== 0) {
    throw new TensorFormatError(
      "byte-length",
      `Cannot decode the chunk's ${dtype} values as the buffer size must be a multiple of element size ${size}: current size is ${rawLength} bytes`,
    );
  }
  const length = rawLength / size;
  const end = startingIndex + length;
  if (tensorLength !== undefined ? end > tensorLength : end > Number.MAX_SAFE_INTEGER) {
    throw new TensorFormatError(
      "index",
      `Cannot decode the chunk as its ${length} values starting at index ${startingIndex} must end within ${
        tensorLength !== undefined
          ? `the tensor length ${tensorLength}`
          : `${Number.MAX_SAFE_INTEGER}`
      }: they end at ${end}`,
    );
  }
  raw ??= dtype === "bool" ? dataBytesOf(message) : undefined;
  if (dtype === "bool") {
    const bad = firstNonBool(raw!);
    if (bad !== -1) {
      throw new TensorFormatError(
        "value",
        `Cannot decode the chunk's bool values as each byte must be 0 or 1: byte ${bad} is ${
          raw![bad]
        }`,
      );
    }
  }
  const values = raw !== undefined
    ? viewBytes(dtype, raw)
    : viewAt(dtype, message.dataSource, message.dataOffset, length);
  return { timestamp, startingIndex, values, compression };
}

/**
 * Decodes a `tsercom.TensorChunk` message holding values of `dtype`.
 *
 * Uncompressed values are a view of `bytes` itself, not a copy, whenever
 * their offset in `bytes`'s buffer is a multiple of the element size (they
 * are copied otherwise): the chunk shares memory with `bytes`, so copy it
 * before reusing that buffer. LZ4-compressed values are decompressed into a
 * fresh buffer.
 *
 * Bool chunks must hold only the bytes 0 and 1, as numpy and torch write
 * them; any other byte is rejected (reason `"value"`) rather than read as
 * true, so that a decoded bool array always compares bit for bit with what
 * the receiver stores.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeChunk, encodeChunk } from "@tsercom/tsercom/tensor";
 *
 * const bytes = encodeChunk({ timestamp: -1, startingIndex: 2, values: new BigInt64Array([-5n]) });
 * const chunk = decodeChunk(bytes, "int64", { tensorLength: 3 });
 * assert.equal(chunk.timestamp, -1);
 * assert.equal(chunk.values[0], -5n);
 * assert.equal(chunk.compression, "none");
 * ```
 *
 * @param bytes The serialised message.
 * @param dtype The stream's dtype (the chunk does not carry it).
 * @param options The tensor length to check the index against, and the
 * decompression limit.
 * @returns The chunk, with the compression it came with.
 * @throws {TensorFormatError} When the bytes are not a well-formed chunk of
 * `dtype`; its `reason` says why.
 * @throws {UnsupportedDTypeError} When `dtype` is not one of the nine dtypes.
 * @throws {RangeError} When an option is out of range.
 * @throws {TypeError} When `bytes` is not a `Uint8Array`.
 */
export function decodeChunk<D extends DType>(
  bytes: Uint8Array,
  dtype: D,
  options?: DecodeChunkOptions,
): DecodedTensorChunk<TypedArrayByDType[D]> {
  checkBytes(bytes, "a chunk");
  checkDType(dtype);
  const tensorLength = checkTensorLength(options?.tensorLength);
  const maxDecompressed = checkMaxDecompressed(options?.maxDecompressedBytes);
  return chunkFromMessage(readChunkMessage(bytes), dtype, tensorLength, maxDecompressed);
}

/**
 * Moves the uncompressed values that are not aligned to their element size
 * into one shared, aligned buffer, so that each becomes a view instead of a
 * copy of its own: one allocation per update instead of one per chunk,
 * which costs about a microsecond each.
 */
function alignValues(messages: ChunkFields[], size: number): void {
  if (size === 1) return;
  let total = 0;
  let misaligned = 0;
  for (const message of messages) {
    if (
      message.compression === NONE &&
      (message.dataSource.byteOffset + message.dataOffset) % size !== 0
    ) {
      total += Math.ceil(message.dataLength / 8) * 8;
      misaligned++;
    }
  }
  if (misaligned < 2) return;
  const shared = new Uint8Array(total);
  let offset = 0;
  for (const message of messages) {
    const { dataSource: source, dataOffset: from, dataLength: n } = message;
    if (message.compression !== NONE || (source.byteOffset + from) % size === 0) continue;
    if (n <= 64) { for (let k = 0; k < n; k++) shared[offset + k] = source[from + k]; }
    else shared.set(source.subarray(from, from + n), offset);
    message.dataSource = shared;
    message.dataOffset = offset;
    offset += Math.ceil(n / 8) * 8;
  }
}

function chunksFromMessages<D extends DType>(
  messages: ChunkFields[],
  dtype: D,
  tensorLength: number | undefined,
  maxDecompressed: number,
  what: string,
): DecodedTensorChunk<TypedArrayByDType[D]>[] {
  alignValues(messages, bytesPerElement(dtype));
  const chunks = new Array<DecodedTensorChunk<TypedArrayByDType[D]>>(messages.length);
  for (let i = 0; i < messages.length; i++) {
    try {
      chunks[i] = chunkFromMessage(messages[i], dtype, tensorLength, maxDecompressed);
    } catch (error) {
      if (error instanceof TensorFormatError) {
        throw new TensorFormatError(
          error.reason,
          `Cannot decode ${what} as chunk ${i} of ${messages.length} is malformed: ${error.message}`,
          { cause: error },
        );
      }
      throw error;
    }
  }
  return chunks;
}

/**
 * Decodes a `tsercom.TensorUpdate` message holding chunks of `dtype`, all or
 * nothing: when any chunk is malformed the whole update is rejected with the
 * error of the first bad chunk (its position is in the message, the chunk's
 * own error is the `cause`). Values are viewed in place as in
 * {@linkcode decodeChunk}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeUpdate, encodeUpdate } from "@tsercom/tsercom/tensor";
 *
 * assert.deepEqual(decodeUpdate(encodeUpdate([]), "bool"), []);
 * ```
 *
 * @param bytes The serialised message.
 * @param dtype The stream's dtype.
 * @param options The tensor length to check every chunk's index against, and
 * the decompression limit per chunk.
 * @returns The chunks, in the order they came.
 * @throws {TensorFormatError} When the bytes are not a well-formed update of
 * `dtype`; its `reason` says why.
 * @throws {UnsupportedDTypeError} When `dtype` is not one of the nine dtypes.
 * @throws {RangeError} When an option is out of range.
 * @throws {TypeError} When `bytes` is not a `Uint8Array`.
 */
export function decodeUpdate<D extends DType>(
  bytes: Uint8Array,
  dtype: D,
  options?: DecodeChunkOptions,
): DecodedTensorChunk<TypedArrayByDType[D]>[] {
  checkBytes(bytes, "an update");
  checkDType(dtype);
  const tensorLength = checkTensorLength(options?.tensorLength);
  const maxDecompressed = checkMaxDecompressed(options?.maxDecompressedBytes);
  const messages = readUpdateMessage(bytes);
  return chunksFromMessages(messages, dtype, tensorLength, maxDecompressed, "the update");
}

/**
 * Decodes a `tsercom.TensorInitializer` message.
 *
 * - A dtype name this library knows is returned in lower case, resolved
 *   case-insensitively as the Python library does (`"Float32"` is
 *   `"float32"`); any other name is kept as it came, and is an error only
 *   when the initial state has chunks that would need it (reason `"dtype"`).
 * - An absent `initial_state` gives `initialState: null`; a present but empty
 *   one gives `[]`.
 * - Every dimension of the shape must be a non-negative safe integer, and so
 *   must their product, the tensor length (reason `"shape"`); the initial
 *   chunks must lie within it (reason `"index"`).
 * - Initial chunks are decoded as in {@linkcode decodeUpdate}: all or nothing,
 *   values viewed in place.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeInitializer, encodeInitializer } from "@tsercom/tsercom/tensor";
 *
 * const bytes = encodeInitializer({
 *   shape: [4],
 *   dtype: "complex64",
 *   fillValue: 0,
 *   initialState: [],
 * });
 * const init = decodeInitializer(bytes);
 * assert.equal(init.dtype, "complex64");
 * assert.deepEqual(init.initialState, []);
 * ```
 *
 * @param bytes The serialised message.
 * @param options The decompression limit per initial chunk.
 * @returns The stream metadata.
 * @throws {TensorFormatError} When the bytes are not a well-formed
 * initializer; its `reason` says why.
 * @throws {RangeError} When an option is out of range.
 * @throws {TypeError} When `bytes` is not a `Uint8Array`.
 */
export function decodeInitializer(
  bytes: Uint8Array,
  options?: DecodeInitializerOptions,
): TensorInitializer {
  checkBytes(bytes, "an initializer");
  const maxDecompressed = checkMaxDecompressed(options?.maxDecompressedBytes);
  const message = decodeProto(() => decodeMessage(TensorInitializerSchema, bytes));
  const shape = new Array<number>(message.shape.length);
  let tensorLength = 1;
  for (let i = 0; i < message.shape.length; i++) {
    const dim = message.shape[i];
    if (dim < 0n || dim > MAX_SAFE_BIGINT) {
      throw new TensorFormatError(
        "shape",
        `Cannot decode the initializer as 'shape[${i}]' must be in 0..${Number.MAX_SAFE_INTEGER}: current value is ${dim}`,
      );
    }
    shape[i] = Number(dim);
    tensorLength *= shape[i];
  }
  if (!Number.isSafeInteger(tensorLength)) {
    throw new TensorFormatError(
      "shape",
      `Cannot decode the initializer as the product of its shape must be at most ${Number.MAX_SAFE_INTEGER}: current shape is [${
        shape.join(", ")
      }]`,
    );
  }
  const lower = message.dtype.toLowerCase();
  const dtype: DType | string = isDType(lower) ? lower : message.dtype;
  const fillValue = message.fillValue;
  const state = message.initialState;
  if (state === undefined) return { shape, dtype, fillValue, initialState: null };
  if (state.chunks.length === 0) return { shape, dtype, fillValue, initialState: [] };
  if (!isDType(dtype)) {
    throw new TensorFormatError(
      "dtype",
      `Cannot decode the initializer's ${state.chunks.length} initial chunks as 'dtype' must be one of ${
        DTYPES.join(", ")
      }: current value is ${JSON.stringify(message.dtype)}`,
    );
  }
  const initialState = chunksFromMessages(
    state.chunks.map(fieldsOfMessage),
    dtype,
    tensorLength,
    maxDecompressed,
    "the initializer's initial state",
  );
  return { shape, dtype, fillValue, initialState };
}
