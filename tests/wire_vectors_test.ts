/**
 * Every golden vector made by the reference implementations (protobuf's
 * Python runtime, python-lz4) must round-trip byte for byte in both
 * directions: our encoding of the fields gives exactly the vector's bytes, and
 * our decoding of the bytes gives exactly its fields.
 */

import { assertEquals } from "./_assert.ts";
import { create, type DescMessage, fromBinary, toBinary } from "@bufbuild/protobuf";
import { CallerIdSchema, GetIdResponseSchema } from "../rpc/proto/gen/caller_id_pb.ts";
import {
  type TensorChunk,
  TensorChunk_CompressionType,
  TensorChunkSchema,
  TensorInitializerSchema,
  TensorUpdateSchema,
} from "../rpc/proto/gen/tensor_pb.ts";
import { ServerTimestampSchema } from "../rpc/proto/gen/time_pb.ts";
import { compressFrame, decompressFrame } from "../tensor/_lz4.ts";
import {
  chunkValues,
  fromHex,
  littleEndianBytes,
  loadWireVectors,
  rawFromLz4Vector,
  toHex,
  valuesFromLittleEndian,
  type VectorChunk,
  type VectorTimestamp,
} from "./_vectors.ts";

const vectors = loadWireVectors();

function timestampInit(ts: VectorTimestamp) {
  return { timestamp: { seconds: BigInt(ts.seconds), nanos: ts.nanos } };
}

function timestampFields(message: { timestamp?: { seconds: bigint; nanos: number } }) {
  if (message.timestamp === undefined) throw new Error("timestamp field is absent");
  return { seconds: Number(message.timestamp.seconds), nanos: message.timestamp.nanos };
}

function chunkInit(chunk: VectorChunk) {
  const raw = littleEndianBytes(chunk.dtype, chunkValues(chunk));
  const lz4 = chunk.compression === "LZ4";
  return {
    timestamp: timestampInit(chunk.timestamp),
    startingIndex: BigInt(chunk.starting_index),
    dataBytes: lz4 ? compressFrame(raw) : raw,
    compression: lz4 ? TensorChunk_CompressionType.LZ4 : TensorChunk_CompressionType.NONE,
  };
}

function chunkFields(message: TensorChunk, like: VectorChunk) {
  const lz4 = message.compression === TensorChunk_CompressionType.LZ4;
  const raw = lz4 ? decompressFrame(message.dataBytes) : message.dataBytes;
  const fields: Record<string, unknown> = {
    timestamp: timestampFields(message.timestamp ?? {}),
    starting_index: Number(message.startingIndex),
    dtype: like.dtype, // not on the wire: the stream's dtype travels out of band
    values: valuesFromLittleEndian(like.dtype, raw),
  };
  if (like.compression !== undefined) fields.compression = lz4 ? "LZ4" : "NONE";
  return fields;
}

function expectedChunkFields(chunk: VectorChunk) {
  const { values_rule: _rule, ...rest } = chunk;
  return { ...rest, values: chunkValues(chunk) };
}

/** A vector's fields, or a decoded message: JSON-shaped and checked by deep equality. */
// deno-lint-ignore no-explicit-any
type Loose = any;

/** How to build each message from a vector's fields, and read the fields back. */
const codecs: Record<
  string,
  {
    schema: DescMessage;
    init(f: Loose): unknown;
    read(m: Loose, f: Loose): unknown;
    expected(f: Loose): unknown;
  }
> = {
  "tsercom.ServerTimestamp": {
    schema: ServerTimestampSchema,
    init: (f) => timestampInit(f.timestamp),
    read: (m) => ({ timestamp: timestampFields(m) }),
    expected: (f) => f,
  },
  "tsercom.CallerId": {
    schema: CallerIdSchema,
    init: (f) => ({ id: f.id }),
    read: (m) => ({ id: m.id }),
    expected: (f) => f,
  },
  "tsercom.GetIdResponse": {
    schema: GetIdResponseSchema,
    init: (f) => ({ id: { id: f.id.id } }),
    read: (m) => ({ id: { id: m.id.id } }),
    expected: (f) => f,
  },
  "tsercom.TensorChunk": {
    schema: TensorChunkSchema,
    init: chunkInit,
    read: chunkFields,
    expected: expectedChunkFields,
  },
  "tsercom.TensorUpdate": {
    schema: TensorUpdateSchema,
    init: (f) => ({ chunks: f.chunks.map(chunkInit) }),
    read: (m, f) => ({
      chunks: m.chunks.map((c: TensorChunk, i: number) => chunkFields(c, f.chunks[i])),
    }),
    expected: (f) => ({ chunks: f.chunks.map(expectedChunkFields) }),
  },
  "tsercom.TensorInitializer": {
    schema: TensorInitializerSchema,
    init: (f) => ({
      shape: f.shape.map(BigInt),
      dtype: f.dtype,
      fillValue: f.fill_value,
      initialState: { chunks: f.initial_state.chunks.map(chunkInit) },
    }),
    read: (m, f) => ({
      shape: m.shape.map(Number),
      dtype: m.dtype,
      fill_value: m.fillValue,
      initial_state: {
        chunks: m.initialState.chunks.map((c: TensorChunk, i: number) =>
          chunkFields(c, f.initial_state.chunks[i])
        ),
      },
    }),
    expected: (f) => ({
      ...f,
      initial_state: { chunks: f.initial_state.chunks.map(expectedChunkFields) },
    }),
  },
};

Deno.test("golden protobuf vectors", async (t) => {
  await t.step("the vector file holds the ten protobuf vectors this test expects", () => {
    assertEquals(vectors.proto.length, 10);
  });
  for (const vector of vectors.proto) {
    const codec = codecs[vector.message];
    await t.step(`${vector.name}: encoding its fields gives exactly its bytes`, () => {
      if (codec === undefined) throw new Error(`no codec for ${vector.message}`);
      // deno-lint-ignore no-explicit-any
      const message = create(codec.schema as any, codec.init(vector.fields) as any);
      assertEquals(toHex(toBinary(codec.schema, message)), vector.hex);
    });
    await t.step(`${vector.name}: decoding its bytes gives exactly its fields`, () => {
      if (codec === undefined) throw new Error(`no codec for ${vector.message}`);
      const message = fromBinary(codec.schema, fromHex(vector.hex));
      assertEquals(codec.read(message, vector.fields), codec.expected(vector.fields));
    });
  }
});

Deno.test("golden LZ4 frame vectors", async (t) => {
  await t.step("the vector file holds the four LZ4 frame vectors this test expects", () => {
    assertEquals(vectors.lz4_frame.map((v) => v.name), [
      "empty",
      "short_text",
      "float32_ramp_4096",
      "hashed_300k",
    ]);
  });
  for (const vector of vectors.lz4_frame) {
    const raw = rawFromLz4Vector(vector);
    await t.step(`${vector.name}: compressing its raw bytes gives exactly its frame`, () => {
      assertEquals(toHex(compressFrame(raw)), vector.frame_hex);
    });
    await t.step(`${vector.name}: decompressing its frame gives exactly its raw bytes`, () => {
      assertEquals(toHex(decompressFrame(fromHex(vector.frame_hex))), toHex(raw));
    });
  }
});
