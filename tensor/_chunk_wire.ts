/**
 * A hand-written reader of `tsercom.TensorChunk` and `tsercom.TensorUpdate`
 * (private). The generic protobuf runtime spends about 2 µs per chunk on
 * reflection and objects; this reader walks the bytes once and gives the
 * fields the chunk codec checks, with `data_bytes` as a view. It follows
 * protobuf's rules: unknown fields are skipped, a repeated scalar keeps its
 * last value, a repeated message field is merged, int64 and int32 varints
 * are two's complement.
 *
 * @module
 */

import { ProtoDecodeError } from "../rpc/proto_decode_error.ts";
import { TensorFormatError } from "./tensor_format_error.ts";

/** The fields of one `TensorChunk`, flattened, as the chunk codec checks them. */
export interface ChunkFields {
  /**
   * How much of the timestamp is present: 0 no `ServerTimestamp timestamp = 1`;
   * 1 one without its `google.protobuf.Timestamp timestamp = 1`; 2 both.
   */
  timestampLevel: 0 | 1 | 2;
  /** The Timestamp's `int64 seconds = 1` (a number when it is a non-negative safe integer). */
  seconds: bigint | number;
  /** The Timestamp's `int32 nanos = 2`. */
  nanos: number;
  /** `int64 starting_index = 2` (a number when it is a non-negative safe integer). */
  startingIndex: bigint | number;
  /**
   * `bytes data_bytes = 3`: where it lies, without a view of its own (a view
   * per chunk costs more than the rest of reading a small one).
   */
  dataSource: Uint8Array;
  /** Where the data starts in `dataSource`. */
  dataOffset: number;
  /** How many bytes of data. */
  dataLength: number;
  /** `CompressionType compression = 4`. */
  compression: number;
}

const EMPTY = new Uint8Array(0);

/** One pass over one top-level message; `end` narrows to each nested message in turn. */
class Reader {
  offset = 0;
  end: number;
  /** The wire type of the last tag read. */
  wire = 0;
  constructor(readonly bytes: Uint8Array, readonly typeName: string) {
    this.end = bytes.byteLength;
  }

  fail(message: string): never {
    const cause = new ProtoDecodeError(this.typeName, this.bytes.byteLength, new Error(message));
    throw new TensorFormatError("proto", cause.message, { cause });
  }

  /**
   * An int64 varint: a number when it is a non-negative safe integer (the
   * common case, without a bigint), else a two's complement bigint.
   */
  varint64(): bigint | number {
    const { bytes, end } = this;
    let lo = 0;
    let hi = 0;
    let shift = 0;
    for (let i = 0; i < 10; i++) {
      if (this.offset >= end) this.fail("a varint must end before its message does");
      const byte = bytes[this.offset++];
      if (shift < 28) lo |= (byte & 0x7f) << shift;
      else if (shift === 28) {
        lo |= (byte & 0x0f) << 28;
        hi |= (byte & 0x7f) >>> 4;
      } else hi |= (byte & 0x7f) << (shift - 32);
      if (byte < 0x80) {
        if (hi >>> 0 < 0x200000) return (hi >>> 0) * 4_294_967_296 + (lo >>> 0);
        return BigInt.asIntN(64, (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0));
      }
      shift += 7;
    }
    this.fail("a varint must be at most 10 bytes long");
  }

  /** A varint as a 32-bit two's complement int (int32, enum). */
  varint32(): number {
    const { bytes, end } = this;
    let value = 0;
    for (let i = 0, shift = 0; i < 10; i++, shift += 7) {
      if (this.offset >= end) this.fail("a varint must end before its message does");
      const byte = bytes[this.offset++];
      if (shift < 32) value |= (byte & 0x7f) << shift;
      if (byte < 0x80) return value | 0;
    }
    this.fail("a varint must be at most 10 bytes long");
  }

  /** A non-negative length or tag varint, as a number. */
  length(): number {
    const { bytes, end } = this;
    let value = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (this.offset >= end) this.fail("a varint must end before its message does");
      const byte = bytes[this.offset++];
      value += (byte & 0x7f) * scale;
      if (byte < 0x80) {
        if (value > Number.MAX_SAFE_INTEGER) this.fail("a length must be a safe integer");
        return value;
      }
      scale *= 128;
    }
    this.fail("a varint must be at most 10 bytes long");
  }

  /** The bounds of a length-delimited field's contents. */
  delimited(): number {
    const length = this.length();
    const stop = this.offset + length;
    if (stop > this.end) this.fail("a field's length must not run past its message");
    return stop;
  }

  skip(wire: number): void {
    switch (wire) {
      case 0:
        this.varint32();
        return;
      case 1:
        this.offset += 8;
        break;
      case 2:
        this.offset = this.delimited();
        return;
      case 5:
        this.offset += 4;
        break;
      default:
        this.fail(`wire type ${wire} must be one of 0, 1, 2 or 5`);
    }
    if (this.offset > this.end) this.fail("a field must end before its message does");
  }
}

/** Reads a tag: returns its field number (0 is refused) and leaves its wire type in `reader.wire`. */
function fieldOf(reader: Reader): number {
  const tag = reader.length();
  if (tag < 8) reader.fail("field number 0 is not allowed");
  reader.wire = tag % 8;
  return Math.floor(tag / 8);
}

function expectWire(reader: Reader, field: number, wire: number, wanted: number): void {
  if (wire !== wanted) {
    reader.fail(`field ${field} must have wire type ${wanted}: it has ${wire}`);
  }
}

/** Narrows the reader to the nested message that starts here; returns the outer end. */
function enter(reader: Reader): number {
  const stop = reader.delimited();
  const outer = reader.end;
  reader.end = stop;
  return outer;
}

function readTimestamp(reader: Reader, into: ChunkFields): void {
  while (reader.offset < reader.end) {
    const field = fieldOf(reader);
    const wire = reader.wire;
    if (field === 1) {
      expectWire(reader, field, wire, 0);
      into.seconds = reader.varint64();
    } else if (field === 2) {
      expectWire(reader, field, wire, 0);
      into.nanos = reader.varint32();
    } else reader.skip(wire);
  }
}

function readServerTimestamp(reader: Reader, into: ChunkFields): void {
  while (reader.offset < reader.end) {
    const field = fieldOf(reader);
    const wire = reader.wire;
    if (field === 1) {
      expectWire(reader, field, wire, 2);
      const outer = enter(reader);
      into.timestampLevel = 2;
      readTimestamp(reader, into);
      reader.end = outer;
    } else reader.skip(wire);
  }
}

function readChunk(reader: Reader): ChunkFields {
  const chunk: ChunkFields = {
    timestampLevel: 0,
    seconds: 0,
    nanos: 0,
    startingIndex: 0,
    dataSource: EMPTY,
    dataOffset: 0,
    dataLength: 0,
    compression: 0,
  };
  while (reader.offset < reader.end) {
    const field = fieldOf(reader);
    const wire = reader.wire;
    switch (field) {
      case 1: {
        expectWire(reader, field, wire, 2);
        const outer = enter(reader);
        if (chunk.timestampLevel === 0) chunk.timestampLevel = 1;
        readServerTimestamp(reader, chunk);
        reader.end = outer;
        break;
      }
      case 2:
        expectWire(reader, field, wire, 0);
        chunk.startingIndex = reader.varint64();
        break;
      case 3: {
        expectWire(reader, field, wire, 2);
        const end = reader.delimited();
        chunk.dataSource = reader.bytes;
        chunk.dataOffset = reader.offset;
        chunk.dataLength = end - reader.offset;
        reader.offset = end;
        break;
      }
      case 4:
        expectWire(reader, field, wire, 0);
        chunk.compression = reader.varint32();
        break;
      default:
        reader.skip(wire);
    }
  }
  return chunk;
}

/**
 * The fields of a `TensorChunk` that the generic protobuf runtime parsed.
 *
 * @param message The parsed message.
 * @returns Its fields, flattened.
 */
export function fieldsOfMessage(message: {
  timestamp?: { timestamp?: { seconds: bigint; nanos: number } };
  startingIndex: bigint;
  dataBytes: Uint8Array;
  compression: number;
}): ChunkFields {
  const server = message.timestamp;
  const inner = server?.timestamp;
  return {
    timestampLevel: server === undefined ? 0 : inner === undefined ? 1 : 2,
    seconds: inner?.seconds ?? 0,
    nanos: inner?.nanos ?? 0,
    startingIndex: message.startingIndex,
    dataSource: message.dataBytes,
    dataOffset: 0,
    dataLength: message.dataBytes.byteLength,
    compression: message.compression,
  };
}

/** The data field's bytes, as a view (for the paths that need one). */
export function dataBytesOf(fields: ChunkFields): Uint8Array {
  return fields.dataSource.subarray(fields.dataOffset, fields.dataOffset + fields.dataLength);
}

/**
 * Reads one `TensorChunk`.
 *
 * @param bytes The message.
 * @returns Its fields.
 * @throws {TensorFormatError} (reason `"proto"`) When the bytes are not a well-formed message.
 */
export function readChunkMessage(bytes: Uint8Array): ChunkFields {
  return readChunk(new Reader(bytes, "tsercom.TensorChunk"));
}

/**
 * Reads the chunks of one `TensorUpdate`, in order.
 *
 * @param bytes The message.
 * @returns The chunks' fields.
 * @throws {TensorFormatError} (reason `"proto"`) When the bytes are not a well-formed message.
 */
export function readUpdateMessage(bytes: Uint8Array): ChunkFields[] {
  const reader = new Reader(bytes, "tsercom.TensorUpdate");
  const chunks: ChunkFields[] = [];
  while (reader.offset < reader.end) {
    const field = fieldOf(reader);
    const wire = reader.wire;
    if (field === 1) {
      expectWire(reader, field, wire, 2);
      const outer = enter(reader);
      chunks.push(readChunk(reader));
      reader.end = outer;
    } else reader.skip(wire);
  }
  return chunks;
}
