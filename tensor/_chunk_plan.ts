/**
 * The hand-written protobuf writer of `tsercom.TensorChunk` (private): a
 * chunk is validated and planned once (its wire fields and size), then
 * written. Shared by the chunk codec and the tensor stream encoder, which
 * writes chunks straight into its messages.
 *
 * @module
 */

import { TensorChunk_CompressionType } from "../rpc/proto/gen/tensor_pb.ts";
import { compressFrame } from "./_lz4.ts";
import { bytesOf, type TensorArray } from "./dtype.ts";
import type { TensorChunk } from "./tensor_chunk.ts";

const MICROS_PER_SECOND = 1_000_000;
const NANOS_PER_MICRO = 1_000;
const TWO_POW_32 = 4_294_967_296;
/** The LZ4 compression value. */
export const LZ4 = TensorChunk_CompressionType.LZ4;
/** The no-compression value. */
export const NONE = TensorChunk_CompressionType.NONE;

// Tags: (field number << 3) | wire type (0 varint, 1 fixed64, 2 length-delimited).
export const TAG_CHUNK_TIMESTAMP = 0x0a;
export const TAG_CHUNK_STARTING_INDEX = 0x10;
export const TAG_CHUNK_DATA_BYTES = 0x1a;
export const TAG_CHUNK_COMPRESSION = 0x20;
export const TAG_SERVER_TIMESTAMP = 0x0a;
export const TAG_SECONDS = 0x08;
export const TAG_NANOS = 0x10;
export const TAG_UPDATE_CHUNKS = 0x0a;
export const TAG_INIT_SHAPE = 0x0a;
export const TAG_INIT_DTYPE = 0x12;
export const TAG_INIT_FILL_VALUE = 0x19;
export const TAG_INIT_INITIAL_STATE = 0x22;

/** A chunk made ready to write: its fields in wire form and its encoded size. */
export interface ChunkPlan {
  seconds: number;
  nanos: number;
  timestampSize: number;
  startingIndex: number;
  /** The values as they are (uncompressed). */
  values: TensorArray;
  /** The LZ4 frame, when compressed. */
  frame: Uint8Array | undefined;
  /** How many bytes the data field holds (the frame's or the values'). */
  payloadBytes: number;
  compression: TensorChunk_CompressionType;
  size: number;
}

/** The size of a non-negative safe integer as a varint. */
export function varintSize(value: number): number {
  if (value < 0x80) return 1;
  if (value < 0x4000) return 2;
  if (value < 0x200000) return 3;
  if (value < 0x10000000) return 4;
  let size = 1;
  while (value >= 128) {
    value = Math.floor(value / 128);
    size++;
  }
  return size;
}

/** The size of a safe integer as an int64 varint (negatives take 10 bytes). */
export function int64Size(value: number): number {
  return value < 0 ? 10 : varintSize(value);
}

/** Writes a non-negative safe integer as a varint; returns the new position. */
export function writeVarint(out: Uint8Array, pos: number, value: number): number {
  if (value < TWO_POW_32) {
    // Below 2^32 the bit operators are exact, and much cheaper than division.
    while (value >= 128) {
      out[pos++] = (value & 0x7f) | 0x80;
      value >>>= 7;
    }
    out[pos++] = value;
    return pos;
  }
  while (value >= 128) {
    out[pos++] = (value % 128) | 0x80;
    value = Math.floor(value / 128);
  }
  out[pos++] = value;
  return pos;
}

/** Writes a safe integer as an int64 varint (two's complement when negative). */
export function writeInt64(out: Uint8Array, pos: number, value: number): number {
  if (value >= 0) return writeVarint(out, pos, value);
  // The low and high 32 bits of the 64-bit two's complement; both exact.
  let lo = value >>> 0;
  let hi = Math.floor(value / TWO_POW_32) >>> 0;
  for (let i = 0; i < 9; i++) {
    out[pos++] = (lo & 0x7f) | 0x80;
    lo = ((lo >>> 7) | (hi << 25)) >>> 0;
    hi >>>= 7;
  }
  out[pos++] = lo & 0x01;
  return pos;
}

/** Describes a value for an error message. */
export function describe(value: unknown): string {
  if (value === null) return "null";
  if (typeof value === "object" || typeof value === "function") {
    return value.constructor?.name ?? typeof value;
  }
  return typeof value === "string" ? JSON.stringify(value) : String(value);
}

export function isTensorArray(values: unknown): values is TensorArray {
  return ArrayBuffer.isView(values) && !(values instanceof DataView);
}

/** Validates a chunk and works out its wire fields and size. */
export function planChunk(
  chunk: TensorChunk,
  compression: TensorChunk_CompressionType,
  what: string,
): ChunkPlan {
  if (typeof chunk !== "object" || chunk === null) {
    throw new TypeError(
      `Cannot encode ${what} as it must be a TensorChunk: current value is ${describe(chunk)}`,
    );
  }
  const { timestamp, startingIndex, values } = chunk;
  if (!Number.isSafeInteger(timestamp)) {
    throw new RangeError(
      `Cannot encode ${what} as 'timestamp' must be a safe integer number of microseconds: current value is ${
        describe(timestamp)
      }`,
    );
  }
  if (!Number.isSafeInteger(startingIndex) || startingIndex < 0) {
    throw new RangeError(
      `Cannot encode ${what} as 'startingIndex' must be a non-negative safe integer: current value is ${
        describe(startingIndex)
      }`,
    );
  }
  if (!isTensorArray(values)) {
    throw new TypeError(
      `Cannot encode ${what} as 'values' must be a typed array: current value is ${
        describe(values)
      }`,
    );
  }
  // Whole seconds (floored) and a non-negative nanosecond part, exactly.
  const micros = ((timestamp % MICROS_PER_SECOND) + MICROS_PER_SECOND) % MICROS_PER_SECOND;
  const seconds = (timestamp - micros) / MICROS_PER_SECOND;
  const nanos = micros * NANOS_PER_MICRO;
  const timestampSize = (seconds !== 0 ? 1 + int64Size(seconds) : 0) +
    (nanos !== 0 ? 1 + varintSize(nanos) : 0);
  const serverTimestampSize = 1 + varintSize(timestampSize) + timestampSize;
  // No byte view for uncompressed values: writeChunk copies from the buffer.
  const frame = compression === LZ4 ? compressFrame(bytesOf(values)) : undefined;
  const n = frame === undefined ? values.byteLength : frame.byteLength;
  const size = 1 + varintSize(serverTimestampSize) + serverTimestampSize +
    (startingIndex !== 0 ? 1 + varintSize(startingIndex) : 0) +
    (n !== 0 ? 1 + varintSize(n) + n : 0) +
    (compression !== NONE ? 2 : 0);
  return {
    seconds,
    nanos,
    timestampSize,
    startingIndex,
    values,
    frame,
    payloadBytes: n,
    compression,
    size,
  };
}

/** Values up to this many bytes are copied byte by byte. */
const SMALL_COPY_BYTES = 64;
let lastBuffer: ArrayBufferLike | undefined;
let lastView: Uint8Array = new Uint8Array(0);

/** A byte view of a whole buffer; consecutive chunks mostly share one. */
function byteViewOf(buffer: ArrayBufferLike): Uint8Array {
  if (buffer !== lastBuffer) {
    lastBuffer = buffer;
    lastView = new Uint8Array(buffer);
  }
  return lastView;
}

/** Writes a planned chunk's fields (without an enclosing tag); returns the new position. */
export function writeChunk(out: Uint8Array, pos: number, plan: ChunkPlan): number {
  const { seconds, nanos, timestampSize, startingIndex, values, frame, compression } = plan;
  out[pos++] = TAG_CHUNK_TIMESTAMP;
  pos = writeVarint(out, pos, 1 + varintSize(timestampSize) + timestampSize);
  out[pos++] = TAG_SERVER_TIMESTAMP;
  pos = writeVarint(out, pos, timestampSize);
  if (seconds !== 0) {
    out[pos++] = TAG_SECONDS;
    pos = writeInt64(out, pos, seconds);
  }
  if (nanos !== 0) {
    out[pos++] = TAG_NANOS;
    pos = writeVarint(out, pos, nanos);
  }
  if (startingIndex !== 0) {
    out[pos++] = TAG_CHUNK_STARTING_INDEX;
    pos = writeVarint(out, pos, startingIndex);
  }
  const n = plan.payloadBytes;
  if (n !== 0) {
    out[pos++] = TAG_CHUNK_DATA_BYTES;
    pos = writeVarint(out, pos, n);
    if (frame !== undefined) out.set(frame, pos);
    else if (n <= SMALL_COPY_BYTES) {
      // A few bytes: a loop over a view of the whole buffer (made once per
      // buffer) is cheaper than a fresh view of these bytes and set().
      const from = byteViewOf(values.buffer);
      const at = values.byteOffset;
      for (let k = 0; k < n; k++) out[pos + k] = from[at + k];
    } else out.set(bytesOf(values), pos);
    pos += n;
  }
  if (compression !== NONE) {
    out[pos++] = TAG_CHUNK_COMPRESSION;
    out[pos++] = compression;
  }
  return pos;
}
