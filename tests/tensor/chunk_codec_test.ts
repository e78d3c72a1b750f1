/**
 * The tensor chunk codec (spec §6.9 adapted): round trips over every dtype,
 * wire identity with the golden vectors and with protobuf-es, zero-copy
 * decoding, LZ4, updates, initializers, and a typed error with the right
 * reason for every kind of malformed input.
 */

import fc from "fast-check";
import { create, fromBinary, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import {
  TensorChunk_CompressionType,
  TensorChunkSchema,
  TensorInitializerSchema,
  TensorUpdateSchema,
} from "../../rpc/proto/gen/tensor_pb.ts";
import { ServerTimestampSchema } from "../../rpc/proto/gen/time_pb.ts";
import { ProtoDecodeError } from "../../rpc/proto_decode_error.ts";
import { timestampFromMicros } from "../../rpc/timestamp.ts";
import { compressFrame, Lz4FormatError } from "../../tensor/_lz4.ts";
import {
  decodeChunk,
  type DecodedTensorChunk,
  decodeInitializer,
  decodeUpdate,
  encodeChunk,
  encodeChunkInto,
  encodedChunkSize,
  encodeInitializer,
  encodeUpdate,
} from "../../tensor/chunk_codec.ts";
import {
  bytesOf,
  bytesPerElement,
  type DType,
  DTYPES,
  type TensorArray,
  UnsupportedDTypeError,
  viewBytes,
} from "../../tensor/dtype.ts";
import type { TensorChunk } from "../../tensor/tensor_chunk.ts";
import {
  TensorFormatError,
  type TensorFormatErrorReason,
} from "../../tensor/tensor_format_error.ts";
import { assert, assertEquals, assertThrows } from "../_assert.ts";
import {
  chunkValues,
  fromHex,
  littleEndianBytes,
  loadWireVectors,
  rawFromLz4Vector,
  toHex,
  type VectorChunk,
} from "../_vectors.ts";

const SEED = 20261125;
/** 12345.6789 s after the epoch, in microseconds (spec §6.9.1). */
const T_12345 = 12_345_678_900;
const LENGTHS = [0, 1, 5, 12, 24];
const INT64_MAX = 2n ** 63n - 1n;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/** A small deterministic generator (xorshift32). */
function rng(seed: number): () => number {
  let s = seed | 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 4294967296;
  };
}

/** Values of `dtype` that include each dtype's extremes and special values. */
function sampleValues(dtype: DType, n: number, seed = SEED): TensorArray {
  const random = rng(seed + n);
  const specials: Record<DType, (number | bigint)[]> = {
    bool: [1, 0, 1, 1, 0],
    int8: [-128, 127, 0, -1, 1],
    uint8: [0, 255, 1, 128, 127],
    int16: [-32768, 32767, 0, -1, 1],
    int32: [-(2 ** 31), 2 ** 31 - 1, 0, -1, 1],
    int64: [-INT64_MAX, INT64_MAX, -(2n ** 63n), 0n, -1n],
    float16: [NaN, -0, Infinity, -Infinity, 65504],
    float32: [NaN, -0, Infinity, -Infinity, 3.4028234663852886e38],
    float64: [NaN, -0, Infinity, -Infinity, Number.MIN_VALUE],
  };
  const bytes = new Uint8Array(n * bytesPerElement(dtype));
  for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(random() * 256);
  const values = viewBytes(dtype, bytes);
  if (dtype === "bool") { for (let i = 0; i < n; i++) values[i] = bytes[i] & 1; }
  const list = specials[dtype];
  for (let i = 0; i < Math.min(n, list.length); i++) {
    (values as { [i: number]: number | bigint })[i] = list[i];
  }
  return values;
}

/** The raw bytes of `values` as a fresh, compact array (for content comparison). */
function rawBytes(values: TensorArray): Uint8Array {
  return bytesOf(values).slice();
}

/** Asserts that two arrays have the same type and the same bits, element for element. */
function assertSameValues(actual: TensorArray, expected: TensorArray): void {
  assertEquals(actual.constructor.name, expected.constructor.name);
  assertEquals(actual.length, expected.length);
  assertEquals(rawBytes(actual), rawBytes(expected));
}

/** Asserts that `fn` throws a TensorFormatError with `reason`; returns it. */
function assertFormatError(
  fn: () => unknown,
  reason: TensorFormatErrorReason,
  includes?: string,
): TensorFormatError {
  const error = assertThrows(fn, TensorFormatError, includes);
  assertEquals(error.reason, reason, `reason of: ${error.message}`);
  assertEquals(error.name, "TensorFormatError");
  return error;
}

type ChunkInit = MessageInitShape<typeof TensorChunkSchema>;

/** Serialises a `tsercom.TensorChunk` with protobuf-es. */
function chunkMessage(init: ChunkInit): Uint8Array {
  return toBinary(TensorChunkSchema, create(TensorChunkSchema, init));
}

/** A `tsercom.ServerTimestamp` for `micros`. */
function serverTimestamp(micros: number) {
  return create(ServerTimestampSchema, { timestamp: timestampFromMicros(micros) });
}

/** The protobuf-es message init equivalent to a chunk. */
function chunkInit(chunk: TensorChunk, compression: "none" | "lz4" = "none"): ChunkInit {
  const raw = bytesOf(chunk.values);
  return {
    timestamp: serverTimestamp(chunk.timestamp),
    startingIndex: BigInt(chunk.startingIndex),
    dataBytes: compression === "lz4" ? compressFrame(raw) : raw,
    compression: compression === "lz4"
      ? TensorChunk_CompressionType.LZ4
      : TensorChunk_CompressionType.NONE,
  };
}

/** Copies `bytes` to `offset` bytes into a fresh buffer, to control alignment. */
function atOffset(bytes: Uint8Array, offset: number): Uint8Array {
  const buffer = new Uint8Array(bytes.length + offset);
  buffer.set(bytes, offset);
  return buffer.subarray(offset);
}

function vectorTimestamp(t: { seconds: number; nanos: number }): number {
  return t.seconds * 1_000_000 + t.nanos / 1000;
}

function vectorChunk(c: VectorChunk): TensorChunk {
  const raw = littleEndianBytes(c.dtype, chunkValues(c));
  return {
    timestamp: vectorTimestamp(c.timestamp),
    startingIndex: c.starting_index,
    values: viewBytes(c.dtype as DType, raw),
  };
}

function assertChunkMatchesVector(chunk: DecodedTensorChunk, c: VectorChunk): void {
  const expected = vectorChunk(c);
  assertEquals(chunk.timestamp, expected.timestamp);
  assertEquals(chunk.startingIndex, expected.startingIndex);
  assertSameValues(chunk.values, expected.values);
  assertEquals(chunk.compression, c.compression === "LZ4" ? "lz4" : "none");
}

const vectors = loadWireVectors();
function protoVector(name: string) {
  const vector = vectors.proto.find((v) => v.name === name);
  if (vector === undefined) throw new Error(`no golden vector ${name}`);
  return vector;
}

// ---------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------

Deno.test("encodeChunk then decodeChunk rebuilds every dtype exactly", async (t) => {
  for (const dtype of DTYPES) {
    for (const n of LENGTHS) {
      await t.step(`${n} ${dtype} values at index 42 come back bit for bit`, () => {
        const values = sampleValues(dtype, n);
        const bytes = encodeChunk({ timestamp: T_12345, startingIndex: 42, values });
        const message = toBinary(
          TensorChunkSchema,
          create(TensorChunkSchema, chunkInit({ timestamp: T_12345, startingIndex: 42, values })),
        );
        assertEquals(toHex(bytes), toHex(message));
        const chunk = decodeChunk(bytes, dtype);
        assertEquals(chunk.timestamp, T_12345);
        assertEquals(chunk.startingIndex, 42);
        assertEquals(chunk.compression, "none");
        assertEquals(chunk.values.byteLength, n * bytesPerElement(dtype));
        assertSameValues(chunk.values, values);
      });
    }
  }

  await t.step("the timestamp 12345.6789 s is exact to the microsecond", () => {
    const bytes = encodeChunk({
      timestamp: T_12345,
      startingIndex: 0,
      values: new Float32Array(1),
    });
    assertEquals(decodeChunk(bytes, "float32").timestamp, 12_345_678_900);
  });

  await t.step("timestamps before the epoch round-trip", () => {
    for (const micros of [-1, -1_000_000, -1_500_001, -Number.MAX_SAFE_INTEGER]) {
      const bytes = encodeChunk({ timestamp: micros, startingIndex: 0, values: new Int8Array(0) });
      assertEquals(decodeChunk(bytes, "int8").timestamp, micros);
    }
  });

  await t.step("int64 values ±(2^63 − 1) are exact", () => {
    const values = new BigInt64Array([INT64_MAX, -INT64_MAX, -(2n ** 63n)]);
    const chunk = decodeChunk(encodeChunk({ timestamp: 0, startingIndex: 1, values }), "int64");
    assertEquals(Array.from(chunk.values), [INT64_MAX, -INT64_MAX, -(2n ** 63n)]);
  });

  await t.step("float NaN and −0 keep their bits", () => {
    const values = new Float64Array([NaN, -0, 0]);
    const chunk = decodeChunk(encodeChunk({ timestamp: 0, startingIndex: 0, values }), "float64");
    assert(Number.isNaN(chunk.values[0]));
    assert(Object.is(chunk.values[1], -0));
    assert(Object.is(chunk.values[2], 0));
  });

  await t.step("a chunk with a timestamp and no bytes decodes to an empty array at index 0", () => {
    const bytes = chunkMessage({ timestamp: serverTimestamp(T_12345) });
    for (const dtype of DTYPES) {
      const chunk = decodeChunk(bytes, dtype);
      assertEquals(chunk.values.length, 0);
      assertEquals(chunk.values.constructor.name, sampleValues(dtype, 0).constructor.name);
      assertEquals(chunk.startingIndex, 0);
      assertEquals(chunk.timestamp, T_12345);
    }
  });

  await t.step("an empty chunk encodes without a data_bytes field", () => {
    const bytes = encodeChunk({ timestamp: 0, startingIndex: 0, values: new Float32Array(0) });
    assertEquals(toHex(bytes), "0a020a00");
  });

  await t.step("a 10×20 tensor of full-range int32 round-trips with its exact size", () => {
    const values = new Int32Array(200);
    const random = rng(SEED);
    for (let i = 0; i < 200; i++) values[i] = Math.floor(random() * 2 ** 32) | 0;
    values[0] = -(2 ** 31);
    values[1] = 2 ** 31 - 1;
    const bytes = encodeChunk({ timestamp: 7, startingIndex: 0, values });
    assertEquals(fromBinary(TensorChunkSchema, bytes).dataBytes.length, 800);
    const chunk = decodeChunk(bytes, "int32");
    assertEquals(chunk.values.byteLength, 800);
    assertSameValues(chunk.values, values);
  });
});

// ---------------------------------------------------------------------------
// Golden vectors
// ---------------------------------------------------------------------------

Deno.test("the codec matches the Python golden vectors byte for byte", async (t) => {
  for (const name of ["chunk_float32", "chunk_int64", "chunk_float32_lz4"]) {
    await t.step(`${name} encodes to the vector's bytes and decodes to its fields`, () => {
      const vector = protoVector(name);
      const fields = vector.fields as VectorChunk;
      const compression = fields.compression === "LZ4" ? "lz4" : "none";
      const bytes = encodeChunk(vectorChunk(fields), { compression });
      assertEquals(toHex(bytes), vector.hex);
      assertChunkMatchesVector(decodeChunk(fromHex(vector.hex), fields.dtype as DType), fields);
    });
  }

  await t.step("update_two_chunks encodes to the vector's bytes and decodes in order", () => {
    const vector = protoVector("update_two_chunks");
    const chunks = vector.fields.chunks as VectorChunk[];
    assertEquals(toHex(encodeUpdate(chunks.map(vectorChunk))), vector.hex);
    const decoded = decodeUpdate(fromHex(vector.hex), "float32");
    assertEquals(decoded.length, 2);
    decoded.forEach((chunk, i) => assertChunkMatchesVector(chunk, chunks[i]));
  });

  await t.step("initializer encodes to the vector's bytes and decodes to its fields", () => {
    const vector = protoVector("initializer");
    const fields = vector.fields;
    const chunks = fields.initial_state.chunks as VectorChunk[];
    const bytes = encodeInitializer({
      shape: fields.shape,
      dtype: fields.dtype,
      fillValue: fields.fill_value,
      initialState: chunks.map(vectorChunk),
    });
    assertEquals(toHex(bytes), vector.hex);
    const init = decodeInitializer(fromHex(vector.hex));
    assertEquals(init.shape, [2, 3]);
    assertEquals(init.dtype, "float32");
    assertEquals(init.fillValue, -1);
    assertEquals(init.initialState?.length, 1);
    assertChunkMatchesVector(init.initialState![0] as DecodedTensorChunk, chunks[0]);
  });

  for (const lz4 of vectors.lz4_frame) {
    await t.step(`the python-lz4 frame ${lz4.name} decodes inside a chunk`, () => {
      const raw = rawFromLz4Vector(lz4);
      const bytes = chunkMessage({
        timestamp: serverTimestamp(1),
        dataBytes: fromHex(lz4.frame_hex),
        compression: TensorChunk_CompressionType.LZ4,
      });
      const chunk = decodeChunk(bytes, "uint8");
      assertEquals(chunk.compression, "lz4");
      assertEquals(rawBytes(chunk.values), raw);
    });
  }
});

// ---------------------------------------------------------------------------
// Zero copy
// ---------------------------------------------------------------------------

Deno.test("decoding views uncompressed values in place", async (t) => {
  for (const dtype of DTYPES) {
    await t.step(`aligned ${dtype} values share the input's buffer`, () => {
      const values = sampleValues(dtype, 12);
      const encoded = encodeChunk({ timestamp: 5, startingIndex: 3, values });
      // The values start after a 9-byte header; shift the message so they are aligned.
      const header = encoded.length - values.byteLength;
      const size = bytesPerElement(dtype);
      const input = atOffset(encoded, (size - (header % size)) % size);
      const chunk = decodeChunk(input, dtype);
      assert(chunk.values.buffer === input.buffer);
      assertEquals(chunk.values.byteOffset, input.byteOffset + header);
      assertSameValues(chunk.values, values);
    });
  }

  await t.step("a change to the input shows through the decoded values", () => {
    const input = atOffset(
      encodeChunk({ timestamp: 5, startingIndex: 0, values: new Uint8Array([1, 2, 3]) }),
      0,
    );
    const chunk = decodeChunk(input, "uint8");
    input[input.length - 1] = 9;
    assertEquals(Array.from(chunk.values), [1, 2, 9]);
  });

  await t.step("unaligned float64 values are copied and still exact", () => {
    const values = sampleValues("float64", 5);
    const encoded = encodeChunk({ timestamp: 5, startingIndex: 3, values });
    const header = encoded.length - values.byteLength;
    const input = atOffset(encoded, ((8 - (header % 8)) % 8) + 1);
    const chunk = decodeChunk(input, "float64");
    assert(chunk.values.buffer !== input.buffer);
    assertSameValues(chunk.values, values);
  });

  await t.step("updates view each chunk's values in the input too", () => {
    const input = encodeUpdate([
      { timestamp: 1, startingIndex: 0, values: new Int8Array([1, 2]) },
      { timestamp: 2, startingIndex: 5, values: new Int8Array([3]) },
    ]);
    const chunks = decodeUpdate(input, "int8");
    assert(chunks.every((c) => c.values.buffer === input.buffer));
  });
});

// ---------------------------------------------------------------------------
// LZ4
// ---------------------------------------------------------------------------

Deno.test("LZ4 chunks keep their flag and content", async (t) => {
  const sine = new Float32Array(100 * 50);
  for (let r = 0; r < 100; r++) {
    for (let c = 0; c < 50; c++) sine[r * 50 + c] = Math.sin((r + c) / 10);
  }
  const checkerboard = new Uint8Array(100 * 50);
  for (let i = 0; i < checkerboard.length; i++) {
    checkerboard[i] = (Math.floor(i / 50) + (i % 50)) & 1;
  }
  const smallInts = new Int32Array(100 * 50);
  for (let i = 0; i < smallInts.length; i++) smallInts[i] = i % 7;
  const cases: [string, DType, TensorArray][] = [
    ["100×50 sine rows", "float32", sine],
    ["a checkerboard of bools", "bool", checkerboard],
    ["small ints", "int32", smallInts],
  ];
  for (const [name, dtype, values] of cases) {
    await t.step(`${name} round-trip compressed to less than raw + 50 bytes`, () => {
      const bytes = encodeChunk({ timestamp: T_12345, startingIndex: 9, values }, {
        compression: "lz4",
      });
      assert(bytes.length < values.byteLength + 50, `${bytes.length} bytes`);
      const chunk = decodeChunk(bytes, dtype);
      assertEquals(chunk.compression, "lz4");
      assertEquals(chunk.startingIndex, 9);
      assertEquals(chunk.timestamp, T_12345);
      assertSameValues(chunk.values, values);
    });
  }

  await t.step("an LZ4 chunk equals protobuf-es's message with python-lz4's frame", () => {
    const chunk = { timestamp: 3, startingIndex: 1, values: smallInts };
    assertEquals(
      toHex(encodeChunk(chunk, { compression: "lz4" })),
      toHex(chunkMessage(chunkInit(chunk, "lz4"))),
    );
  });

  await t.step("an empty LZ4 chunk still carries a frame and the flag", () => {
    const bytes = encodeChunk({ timestamp: 0, startingIndex: 0, values: new Float32Array(0) }, {
      compression: "lz4",
    });
    const chunk = decodeChunk(bytes, "float32");
    assertEquals(chunk.compression, "lz4");
    assertEquals(chunk.values.length, 0);
  });
});

// ---------------------------------------------------------------------------
// encodeChunkInto and encodedChunkSize
// ---------------------------------------------------------------------------

Deno.test("encodeChunkInto writes into a caller's buffer", async (t) => {
  const chunk = { timestamp: T_12345, startingIndex: 1000, values: sampleValues("float32", 24) };

  await t.step("it writes encodeChunk's bytes and returns their count", () => {
    const target = new Uint8Array(1000).fill(0xee);
    const written = encodeChunkInto(chunk, target);
    assertEquals(written, encodedChunkSize(chunk));
    assertEquals(target.subarray(0, written), encodeChunk(chunk));
    assertEquals(target[written], 0xee);
  });

  await t.step("it can reuse one buffer for many chunks", () => {
    const target = new Uint8Array(256);
    for (const n of LENGTHS) {
      const c = { timestamp: n, startingIndex: n, values: sampleValues("int16", n) };
      const written = encodeChunkInto(c, target);
      assertEquals(target.slice(0, written), encodeChunk(c));
    }
  });

  await t.step("a buffer one byte short is a RangeError", () => {
    const size = encodedChunkSize(chunk);
    assertThrows(
      () => encodeChunkInto(chunk, new Uint8Array(size - 1)),
      RangeError,
      `at least ${size} bytes`,
    );
  });

  await t.step("the LZ4 size bound holds for incompressible and compressible values", () => {
    for (
      const values of [sampleValues("uint8", 200_000), new Float32Array(70_000), new Int8Array(0)]
    ) {
      const c = { timestamp: -5, startingIndex: 3, values };
      const bound = encodedChunkSize(c, { compression: "lz4" });
      const bytes = encodeChunk(c, { compression: "lz4" });
      assert(bytes.length <= bound, `${bytes.length} > ${bound}`);
      const target = new Uint8Array(bound);
      assertEquals(target.subarray(0, encodeChunkInto(c, target, { compression: "lz4" })), bytes);
    }
  });
});

// ---------------------------------------------------------------------------
// Updates
// ---------------------------------------------------------------------------

Deno.test("updates", async (t) => {
  const a = { timestamp: 10, startingIndex: 0, values: new Float32Array([1, 2]) };
  const b = { timestamp: 10, startingIndex: 2, values: new Float32Array([3]) };
  const c = { timestamp: 11, startingIndex: 4, values: new Float32Array([4, 5]) };

  await t.step("an empty update round-trips to no chunks", () => {
    assertEquals(encodeUpdate([]).length, 0);
    assertEquals(decodeUpdate(encodeUpdate([]), "float32"), []);
  });

  await t.step("one chunk round-trips", () => {
    const [chunk, ...rest] = decodeUpdate(encodeUpdate([b]), "float32");
    assertEquals(rest.length, 0);
    assertEquals(chunk.startingIndex, 2);
    assertEquals(Array.from(chunk.values), [3]);
  });

  await t.step("two chunks keep their order, indices and values", () => {
    const chunks = decodeUpdate(encodeUpdate([c, a]), "float32");
    assertEquals(chunks.map((x) => x.startingIndex), [4, 0]);
    assertEquals(chunks.map((x) => Array.from(x.values)), [[4, 5], [1, 2]]);
    assertEquals(chunks.map((x) => x.timestamp), [11, 10]);
  });

  await t.step("an update equals protobuf-es's serialisation, with or without LZ4", () => {
    for (const compression of ["none", "lz4"] as const) {
      const expected = toBinary(
        TensorUpdateSchema,
        create(TensorUpdateSchema, { chunks: [a, b, c].map((x) => chunkInit(x, compression)) }),
      );
      assertEquals(toHex(encodeUpdate([a, b, c], { compression })), toHex(expected));
    }
  });

  await t.step("one bad chunk rejects the whole update, naming it", () => {
    const bytes = toBinary(
      TensorUpdateSchema,
      create(TensorUpdateSchema, {
        chunks: [chunkInit(a), { ...chunkInit(b), dataBytes: new Uint8Array(7) }, chunkInit(c)],
      }),
    );
    const error = assertFormatError(
      () => decodeUpdate(bytes, "float32"),
      "byte-length",
      "chunk 1 of 3",
    );
    assert(error.cause instanceof TensorFormatError);
    assertEquals(error.cause.reason, "byte-length");
  });

  await t.step("the first bad chunk's reason is the update's", () => {
    const bytes = toBinary(
      TensorUpdateSchema,
      create(TensorUpdateSchema, {
        chunks: [
          chunkInit(a),
          { ...chunkInit(b), startingIndex: -1n },
          { ...chunkInit(c), compression: 5 as TensorChunk_CompressionType },
        ],
      }),
    );
    assertFormatError(() => decodeUpdate(bytes, "float32"), "index", "chunk 1 of 3");
  });

  await t.step("the tensor length applies to every chunk", () => {
    const bytes = encodeUpdate([a, c]);
    assertEquals(decodeUpdate(bytes, "float32", { tensorLength: 6 }).length, 2);
    assertFormatError(
      () => decodeUpdate(bytes, "float32", { tensorLength: 5 }),
      "index",
      "chunk 1 of 2",
    );
  });

  await t.step("garbage is a proto error", () => {
    assertFormatError(() => decodeUpdate(new Uint8Array([0x0a, 0x10, 1]), "float32"), "proto");
  });
});

// ---------------------------------------------------------------------------
// Initializers
// ---------------------------------------------------------------------------

Deno.test("initializers", async (t) => {
  /** Three 2-element chunks at indices 0, 2, 4 of a 6-element tensor. */
  function threeChunks(dtype: DType): TensorChunk[] {
    return [0, 2, 4].map((i) => ({
      timestamp: T_12345 + i,
      startingIndex: i,
      values: sampleValues(dtype, 2, SEED + i),
    }));
  }

  await t.step("encoding keeps shape, dtype, fill value and the initial state's count", () => {
    const bytes = encodeInitializer({
      shape: [2, 3],
      dtype: "int16",
      fillValue: 0.5,
      initialState: threeChunks("int16"),
    });
    const message = fromBinary(TensorInitializerSchema, bytes);
    assertEquals(message.shape, [2n, 3n]);
    assertEquals(message.dtype, "int16");
    assertEquals(message.fillValue, 0.5);
    assertEquals(message.initialState?.chunks.length, 3);
  });

  for (const dtype of DTYPES) {
    await t.step(`${dtype} round-trips with and without an initial state`, () => {
      const chunks = threeChunks(dtype);
      const withState = decodeInitializer(
        encodeInitializer({ shape: [6], dtype, fillValue: 1, initialState: chunks }),
      );
      assertEquals(withState.dtype, dtype);
      assertEquals(withState.shape, [6]);
      assertEquals(withState.fillValue, 1);
      assertEquals(withState.initialState?.map((c) => c.startingIndex), [0, 2, 4]);
      withState.initialState!.forEach((c, i) => {
        assertEquals(c.timestamp, chunks[i].timestamp);
        assertSameValues(c.values, chunks[i].values);
      });
      const without = decodeInitializer(
        encodeInitializer({ shape: [6], dtype, fillValue: 1, initialState: null }),
      );
      assertEquals(without, { shape: [6], dtype, fillValue: 1, initialState: null });
    });
  }

  await t.step("an absent initial state is null, a present but empty one is []", () => {
    const absent = encodeInitializer({
      shape: [3],
      dtype: "int8",
      fillValue: 0,
      initialState: null,
    });
    const empty = encodeInitializer({ shape: [3], dtype: "int8", fillValue: 0, initialState: [] });
    assertEquals(toHex(empty), toHex(absent) + "2200");
    assertEquals(decodeInitializer(absent).initialState, null);
    assertEquals(decodeInitializer(empty).initialState, []);
  });

  await t.step("an unknown dtype without chunks is kept as it came", () => {
    for (const initialState of [null, []]) {
      const init = decodeInitializer(
        encodeInitializer({ shape: [2], dtype: "Complex64", fillValue: 0, initialState }),
      );
      assertEquals(init.dtype, "Complex64");
      assertEquals(init.initialState, initialState);
    }
  });

  await t.step("an unknown dtype with chunks is a dtype error", () => {
    const bytes = encodeInitializer({
      shape: [6],
      dtype: "complex64",
      fillValue: 0,
      initialState: threeChunks("float32"),
    });
    assertFormatError(() => decodeInitializer(bytes), "dtype", '"complex64"');
  });

  await t.step("a known dtype name is resolved case-insensitively to lower case", () => {
    const init = decodeInitializer(
      encodeInitializer({
        shape: [6],
        dtype: "Float32",
        fillValue: 0,
        initialState: threeChunks("float32"),
      }),
    );
    assertEquals(init.dtype, "float32");
    assertEquals(init.initialState?.length, 3);
  });

  await t.step("a 1-byte payload is rejected for wider dtypes and accepted for int8/uint8", () => {
    for (const dtype of DTYPES) {
      const bytes = initializerWithPayload(dtype, new Uint8Array([1]));
      if (bytesPerElement(dtype) === 1) {
        const init = decodeInitializer(bytes);
        assertEquals(init.initialState?.[0].values.length, 1);
        assertEquals(Number(init.initialState?.[0].values[0]), 1);
      } else {
        assertFormatError(
          () => decodeInitializer(bytes),
          "byte-length",
          "buffer size must be a multiple of element size",
        );
      }
    }
  });

  await t.step("bool with empty bytes is accepted", () => {
    const init = decodeInitializer(initializerWithPayload("bool", new Uint8Array(0)));
    assertEquals(init.initialState?.[0].values.length, 0);
    assertEquals(init.initialState?.[0].values.constructor, Uint8Array);
  });

  await t.step("an initial chunk beyond the shape is an index error", () => {
    const bytes = encodeInitializer({
      shape: [2, 2],
      dtype: "float32",
      fillValue: 0,
      initialState: threeChunks("float32"),
    });
    assertFormatError(() => decodeInitializer(bytes), "index", "chunk 2 of 3");
  });

  await t.step("a scalar (empty shape) holds one element", () => {
    const init = decodeInitializer(encodeInitializer({
      shape: [],
      dtype: "float64",
      fillValue: 0,
      initialState: [{ timestamp: 0, startingIndex: 0, values: new Float64Array([2]) }],
    }));
    assertEquals(init.shape, []);
    assertSameValues(init.initialState![0].values, new Float64Array([2]));
  });

  await t.step("a negative dimension or an unsafe product is a shape error", () => {
    const negative = toBinary(
      TensorInitializerSchema,
      create(TensorInitializerSchema, { shape: [3n, -1n], dtype: "int8" }),
    );
    assertFormatError(() => decodeInitializer(negative), "shape", "shape[1]");
    const huge = toBinary(
      TensorInitializerSchema,
      create(TensorInitializerSchema, { shape: [2n ** 30n, 2n ** 30n], dtype: "int8" }),
    );
    assertFormatError(() => decodeInitializer(huge), "shape", "product");
    const unsafe = toBinary(
      TensorInitializerSchema,
      create(TensorInitializerSchema, { shape: [2n ** 53n] }),
    );
    assertFormatError(() => decodeInitializer(unsafe), "shape", "shape[0]");
  });

  await t.step(
    "the initializer equals protobuf-es's serialisation, -0 and NaN fills included",
    () => {
      for (const fillValue of [0, -0, NaN, -1, 1e300]) {
        const chunks = threeChunks("uint8");
        const expected = toBinary(
          TensorInitializerSchema,
          create(TensorInitializerSchema, {
            shape: [6n, 1n],
            dtype: "uint8",
            fillValue,
            initialState: { chunks: chunks.map((c) => chunkInit(c)) },
          }),
        );
        const bytes = encodeInitializer({
          shape: [6, 1],
          dtype: "uint8",
          fillValue,
          initialState: chunks,
        });
        assertEquals(toHex(bytes), toHex(expected));
        assert(Object.is(decodeInitializer(bytes).fillValue, fillValue));
      }
    },
  );

  await t.step("garbage is a proto error", () => {
    assertFormatError(() => decodeInitializer(new Uint8Array([0x12, 0x05, 0x61])), "proto");
  });

  await t.step("a shape dimension that is not a safe integer is a RangeError when encoding", () => {
    assertThrows(
      () => encodeInitializer({ shape: [2, -1], dtype: "int8", fillValue: 0, initialState: null }),
      RangeError,
      "shape[1]",
    );
  });
});

/** An initializer with shape [4], `dtype` and one chunk whose data_bytes is `payload`. */
function initializerWithPayload(dtype: DType, payload: Uint8Array): Uint8Array {
  return toBinary(
    TensorInitializerSchema,
    create(TensorInitializerSchema, {
      shape: [4n],
      dtype,
      initialState: { chunks: [{ timestamp: serverTimestamp(1), dataBytes: payload }] },
    }),
  );
}

// ---------------------------------------------------------------------------
// Malformed input
// ---------------------------------------------------------------------------

Deno.test("malformed chunks give a TensorFormatError with the right reason", async (t) => {
  const data = new Uint8Array(new Float32Array([1, 2]).buffer);

  await t.step("an absent timestamp is a timestamp error", () => {
    assertFormatError(() => decodeChunk(chunkMessage({ dataBytes: data }), "float32"), "timestamp");
  });

  await t.step("a ServerTimestamp without its Timestamp is a timestamp error", () => {
    const bytes = chunkMessage({ timestamp: create(ServerTimestampSchema, {}), dataBytes: data });
    assertFormatError(() => decodeChunk(bytes, "float32"), "timestamp", "ServerTimestamp");
  });

  await t.step("nanos out of range is a timestamp error with the cause", () => {
    const bytes = chunkMessage({
      timestamp: create(ServerTimestampSchema, {
        timestamp: { seconds: 1n, nanos: 1_000_000_000 },
      }),
    });
    const error = assertFormatError(() => decodeChunk(bytes, "float32"), "timestamp", "nanos");
    assert(error.cause instanceof Error && error.cause.name === "InvalidTimestampError");
  });

  await t.step("seconds beyond safe microseconds is a timestamp error", () => {
    for (const seconds of [10_000_000_000n, 300_000_000_000n, -(2n ** 63n)]) {
      const bytes = chunkMessage({
        timestamp: create(ServerTimestampSchema, { timestamp: { seconds, nanos: 0 } }),
      });
      assertFormatError(() => decodeChunk(bytes, "float32"), "timestamp");
    }
  });

  await t.step("an unknown compression is a compression error", () => {
    for (const compression of [2, 7, -1]) {
      const bytes = chunkMessage({ timestamp: serverTimestamp(1), dataBytes: data, compression });
      assertFormatError(() => decodeChunk(bytes, "float32"), "compression", `${compression}`);
    }
  });

  await t.step("a corrupt LZ4 frame is an lz4 error caused by the LZ4 codec", () => {
    const frame = compressFrame(data);
    const badChecksum = frame.slice();
    badChecksum[14] ^= 0xff; // the header checksum
    const cases = [badChecksum, frame.subarray(0, frame.length - 2), data, new Uint8Array(0)];
    for (const dataBytes of cases) {
      const bytes = chunkMessage({
        timestamp: serverTimestamp(1),
        dataBytes,
        compression: TensorChunk_CompressionType.LZ4,
      });
      const error = assertFormatError(() => decodeChunk(bytes, "float32"), "lz4");
      assert(error.cause instanceof Lz4FormatError);
    }
  });

  await t.step("an LZ4 frame beyond maxDecompressedBytes is an lz4 error", () => {
    const bytes = encodeChunk({ timestamp: 0, startingIndex: 0, values: new Float32Array(1000) }, {
      compression: "lz4",
    });
    assertEquals(decodeChunk(bytes, "float32", { maxDecompressedBytes: 4000 }).values.length, 1000);
    assertFormatError(() => decodeChunk(bytes, "float32", { maxDecompressedBytes: 3999 }), "lz4");
  });

  await t.step("an LZ4 frame that would run past the tensor is an index error", () => {
    const bytes = encodeChunk({ timestamp: 0, startingIndex: 2, values: new Float32Array(1000) }, {
      compression: "lz4",
    });
    assertEquals(decodeChunk(bytes, "float32", { tensorLength: 1002 }).values.length, 1000);
    assertFormatError(() => decodeChunk(bytes, "float32", { tensorLength: 1001 }), "index");
  });

  await t.step("seven bytes as float32 is a byte-length error", () => {
    const bytes = chunkMessage({ timestamp: serverTimestamp(1), dataBytes: new Uint8Array(7) });
    assertFormatError(
      () => decodeChunk(bytes, "float32"),
      "byte-length",
      "buffer size must be a multiple of element size",
    );
  });

  await t.step("a decompressed length that is not whole elements is a byte-length error", () => {
    const bytes = chunkMessage({
      timestamp: serverTimestamp(1),
      dataBytes: compressFrame(new Uint8Array(7)),
      compression: TensorChunk_CompressionType.LZ4,
    });
    assertFormatError(() => decodeChunk(bytes, "int16"), "byte-length");
  });

  await t.step("a negative starting index is an index error", () => {
    const bytes = chunkMessage({ timestamp: serverTimestamp(1), startingIndex: -1n });
    assertFormatError(() => decodeChunk(bytes, "float32"), "index", "-1");
  });

  await t.step("a starting index beyond MAX_SAFE_INTEGER is an index error", () => {
    const bytes = chunkMessage({ timestamp: serverTimestamp(1), startingIndex: 2n ** 53n });
    assertFormatError(() => decodeChunk(bytes, "float32"), "index");
  });

  await t.step("values that end beyond MAX_SAFE_INTEGER are an index error", () => {
    const bytes = chunkMessage({
      timestamp: serverTimestamp(1),
      startingIndex: BigInt(Number.MAX_SAFE_INTEGER - 1),
      dataBytes: data,
    });
    assertFormatError(() => decodeChunk(bytes, "float32"), "index");
    const one = chunkMessage({
      timestamp: serverTimestamp(1),
      startingIndex: BigInt(Number.MAX_SAFE_INTEGER - 1),
      dataBytes: data.subarray(0, 4),
    });
    assertEquals(decodeChunk(one, "float32").startingIndex, Number.MAX_SAFE_INTEGER - 1);
  });

  await t.step("values past the tensor length are an index error", () => {
    const bytes = chunkMessage({
      timestamp: serverTimestamp(1),
      startingIndex: 3n,
      dataBytes: data,
    });
    assertEquals(decodeChunk(bytes, "float32", { tensorLength: 5 }).startingIndex, 3);
    assertFormatError(() => decodeChunk(bytes, "float32", { tensorLength: 4 }), "index", "4");
    const empty = chunkMessage({ timestamp: serverTimestamp(1), startingIndex: 5n });
    assertEquals(decodeChunk(empty, "float32", { tensorLength: 5 }).values.length, 0);
    assertFormatError(() => decodeChunk(empty, "float32", { tensorLength: 4 }), "index");
  });

  await t.step("a bool byte other than 0 or 1 is a value error", () => {
    for (const n of [3, 100]) {
      const payload = new Uint8Array(n);
      payload[n - 2] = 2;
      const bytes = chunkMessage({ timestamp: serverTimestamp(1), dataBytes: payload });
      assertFormatError(() => decodeChunk(bytes, "bool"), "value", `byte ${n - 2} is 2`);
      assertEquals(decodeChunk(bytes, "uint8").values[n - 2], 2);
    }
  });

  await t.step("garbage is a proto error caused by the ProtoDecodeError", () => {
    for (const garbage of [[0xff], [0x0a, 0x05], [0x1a, 0xff, 0xff, 0xff, 0xff, 0x0f], [0x0f]]) {
      const error = assertFormatError(
        () => decodeChunk(new Uint8Array(garbage), "float32"),
        "proto",
        "tsercom.TensorChunk",
      );
      assert(error.cause instanceof ProtoDecodeError);
    }
  });

  await t.step("every truncation of a chunk throws nothing but a TensorFormatError", () => {
    for (const compression of ["none", "lz4"] as const) {
      const full = encodeChunk(
        { timestamp: -T_12345, startingIndex: 300, values: sampleValues("float64", 40) },
        { compression },
      );
      let rejected = 0;
      for (let n = 0; n < full.length; n++) {
        try {
          decodeChunk(full.slice(0, n), "float64");
        } catch (error) {
          assert(error instanceof TensorFormatError, `prefix ${n}: ${error}`);
          rejected++;
        }
      }
      assert(rejected > full.length / 2);
    }
  });

  await t.step("a dtype that is not one of the nine is an UnsupportedDTypeError", () => {
    const bytes = encodeChunk({ timestamp: 0, startingIndex: 0, values: new Float32Array(1) });
    assertThrows(() => decodeChunk(bytes, "complex64" as DType), UnsupportedDTypeError);
    assertThrows(() => decodeUpdate(bytes, "Float32" as DType), UnsupportedDTypeError);
  });

  await t.step("out-of-range options are RangeErrors", () => {
    const bytes = encodeChunk({ timestamp: 0, startingIndex: 0, values: new Float32Array(1) });
    assertThrows(() => decodeChunk(bytes, "float32", { tensorLength: -1 }), RangeError);
    assertThrows(() => decodeChunk(bytes, "float32", { tensorLength: 1.5 }), RangeError);
    assertThrows(() => decodeChunk(bytes, "float32", { maxDecompressedBytes: -1 }), RangeError);
    assertThrows(() => decodeChunk("x" as unknown as Uint8Array, "float32"), TypeError);
  });
});

Deno.test("encoding validates its arguments", async (t) => {
  await t.step("a timestamp that is not a safe integer is a RangeError", () => {
    for (const timestamp of [1.5, NaN, 2 ** 53, Infinity]) {
      assertThrows(
        () => encodeChunk({ timestamp, startingIndex: 0, values: new Int8Array(1) }),
        RangeError,
        "'timestamp'",
      );
    }
  });

  await t.step("a negative or fractional starting index is a RangeError", () => {
    for (const startingIndex of [-1, 0.5, 2 ** 53]) {
      assertThrows(
        () => encodeChunk({ timestamp: 0, startingIndex, values: new Int8Array(1) }),
        RangeError,
        "'startingIndex'",
      );
    }
  });

  await t.step("values that are not a typed array are a TypeError", () => {
    assertThrows(
      () =>
        encodeChunk({
          timestamp: 0,
          startingIndex: 0,
          values: [1, 2] as unknown as Float32Array,
        }),
      TypeError,
      "'values'",
    );
  });

  await t.step("an unknown compression is a RangeError", () => {
    assertThrows(
      () =>
        encodeChunk({ timestamp: 0, startingIndex: 0, values: new Int8Array(1) }, {
          compression: "zstd" as "lz4",
        }),
      RangeError,
      "'compression'",
    );
  });

  await t.step("a bad chunk in an update is named", () => {
    assertThrows(
      () =>
        encodeUpdate([
          { timestamp: 0, startingIndex: 0, values: new Int8Array(1) },
          { timestamp: 0, startingIndex: -2, values: new Int8Array(1) },
        ]),
      RangeError,
      "chunk 1 of the update",
    );
  });
});

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

const chunkArbitrary = fc.record({
  dtype: fc.constantFrom(...DTYPES),
  length: fc.nat({ max: 40 }),
  seed: fc.integer(),
  timestamp: fc.oneof(
    fc.maxSafeInteger(),
    fc.integer({ min: -2_000_000, max: 2_000_000 }),
    fc.constantFrom(0, -1, Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER),
  ),
  startingIndex: fc.oneof(
    fc.nat({ max: 1000 }),
    fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER - 40 }),
  ),
  compression: fc.constantFrom("none" as const, "lz4" as const),
});

Deno.test("properties of the chunk codec", async (t) => {
  await t.step("decodeChunk(encodeChunk(chunk)) equals the chunk (300 runs)", () => {
    fc.assert(
      fc.property(chunkArbitrary, (c) => {
        const values = sampleValues(c.dtype, c.length, c.seed);
        const chunk = { timestamp: c.timestamp, startingIndex: c.startingIndex, values };
        const decoded = decodeChunk(encodeChunk(chunk, { compression: c.compression }), c.dtype);
        assertEquals(decoded.timestamp, c.timestamp);
        assertEquals(decoded.startingIndex, c.startingIndex);
        assertEquals(decoded.compression, c.compression);
        assertSameValues(decoded.values, values);
      }),
      { numRuns: 300, seed: SEED },
    );
  });

  await t.step("encodeChunk's bytes equal protobuf-es's toBinary (300 runs)", () => {
    fc.assert(
      fc.property(chunkArbitrary, (c) => {
        const values = sampleValues(c.dtype, c.length, c.seed);
        const chunk = { timestamp: c.timestamp, startingIndex: c.startingIndex, values };
        const expected = chunkMessage(chunkInit(chunk, c.compression));
        assertEquals(toHex(encodeChunk(chunk, { compression: c.compression })), toHex(expected));
        const target = new Uint8Array(encodedChunkSize(chunk, { compression: c.compression }));
        const written = encodeChunkInto(chunk, target, { compression: c.compression });
        assertEquals(toHex(target.subarray(0, written)), toHex(expected));
      }),
      { numRuns: 300, seed: SEED + 1 },
    );
  });

  await t.step("updates and initializers equal protobuf-es's toBinary (100 runs)", () => {
    fc.assert(
      fc.property(
        fc.array(chunkArbitrary, { maxLength: 5 }),
        fc.array(fc.nat({ max: 2 ** 40 }), { maxLength: 4 }),
        fc.string(),
        fc.double(),
        (cs, shape, dtype, fillValue) => {
          const chunks = cs.map((c) => ({
            timestamp: c.timestamp,
            startingIndex: c.startingIndex,
            values: sampleValues(c.dtype, c.length, c.seed),
          }));
          const inits = chunks.map((c) => chunkInit(c));
          assertEquals(
            toHex(encodeUpdate(chunks)),
            toHex(toBinary(TensorUpdateSchema, create(TensorUpdateSchema, { chunks: inits }))),
          );
          const expected = toBinary(
            TensorInitializerSchema,
            create(TensorInitializerSchema, {
              shape: shape.map(BigInt),
              dtype,
              fillValue,
              initialState: { chunks: inits },
            }),
          );
          assertEquals(
            toHex(encodeInitializer({ shape, dtype, fillValue, initialState: chunks })),
            toHex(expected),
          );
        },
      ),
      { numRuns: 100, seed: SEED + 2 },
    );
  });
});

Deno.test("the hand-written reader agrees with protobuf-es on any chunk message (500 runs)", () => {
  const int64 = fc.oneof(
    fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
    fc.bigInt({ min: 0n, max: 2n ** 54n }),
    fc.constantFrom(0n, 2n ** 53n - 1n, 2n ** 53n, 9_007_199_254n, 9_007_199_255n, -1n),
  );
  fc.assert(
    fc.property(
      int64,
      fc.oneof(fc.integer({ min: -5, max: 1_000_000_005 }), fc.constant(999_999_999)),
      int64,
      fc.integer({ min: 0, max: 8 }),
      (seconds, nanos, startingIndex, floats) => {
        const bytes = toBinary(
          TensorChunkSchema,
          create(TensorChunkSchema, {
            timestamp: { timestamp: { seconds, nanos } },
            startingIndex,
            dataBytes: new Uint8Array(floats * 4).fill(7),
          }),
        );
        // The reference: protobuf-es's reading, then the same rules.
        const message = fromBinary(TensorChunkSchema, bytes);
        let expected: [number, number] | "error";
        try {
          const ts = message.timestamp!.timestamp!;
          const micros = Number(ts.seconds) * 1_000_000 + Math.floor(ts.nanos / 1_000);
          const valid = ts.nanos >= 0 && ts.nanos <= 999_999_999 &&
            Number.isSafeInteger(micros) && ts.seconds >= -62_135_596_800n &&
            ts.seconds <= 253_402_300_799n && ts.seconds <= 9_007_199_254n &&
            ts.seconds >= -9_007_199_255n && message.startingIndex >= 0n &&
            message.startingIndex <= BigInt(Number.MAX_SAFE_INTEGER) &&
            Number(message.startingIndex) + floats <= Number.MAX_SAFE_INTEGER;
          expected = valid ? [micros, Number(message.startingIndex)] : "error";
        } catch {
          expected = "error";
        }
        let actual: [number, number] | "error";
        try {
          const chunk = decodeChunk(bytes, "float32");
          actual = [chunk.timestamp, chunk.startingIndex];
        } catch (error) {
          if (!(error instanceof TensorFormatError)) throw error;
          actual = "error";
        }
        assertEquals(actual, expected);
      },
    ),
    { numRuns: 500, seed: SEED + 7 },
  );
});
