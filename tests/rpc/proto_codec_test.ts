import { assert, assertEquals, assertThrows } from "../_assert.ts";
import { create, type DescMessage } from "@bufbuild/protobuf";
import { decodeMessage, encodeMessage } from "../../rpc/_proto_codec.ts";
import { ProtoDecodeError } from "../../rpc/proto_decode_error.ts";
import { GetIdResponseSchema } from "../../rpc/proto/gen/caller_id_pb.ts";
import {
  TensorChunkSchema,
  TensorInitializerSchema,
  TensorUpdateSchema,
} from "../../rpc/proto/gen/tensor_pb.ts";
import { ServerTimestampSchema } from "../../rpc/proto/gen/time_pb.ts";
import { fromHex, loadWireVectors } from "../_vectors.ts";

const schemas: Record<string, DescMessage> = {
  "tsercom.ServerTimestamp": ServerTimestampSchema,
  "tsercom.GetIdResponse": GetIdResponseSchema,
  "tsercom.TensorChunk": TensorChunkSchema,
  "tsercom.TensorUpdate": TensorUpdateSchema,
  "tsercom.TensorInitializer": TensorInitializerSchema,
};

Deno.test("protobuf decoding", async (t) => {
  await t.step("decodes what it encodes", () => {
    const message = create(TensorChunkSchema, {
      startingIndex: 7n,
      dataBytes: new Uint8Array([1, 2, 3]),
    });
    const back = decodeMessage(TensorChunkSchema, encodeMessage(TensorChunkSchema, message));
    assertEquals([back.startingIndex, Array.from(back.dataBytes)], [7n, [1, 2, 3]]);
  });

  // Every strict prefix of a vector that ends inside a field must be rejected.
  for (const vector of loadWireVectors().proto) {
    const schema = schemas[vector.message];
    if (schema === undefined) continue;
    await t.step(`rejects every truncation of ${vector.name} that cuts a field`, () => {
      const bytes = fromHex(vector.hex);
      let rejected = 0;
      for (let length = 1; length < bytes.length; length++) {
        try {
          decodeMessage(schema, bytes.subarray(0, length));
        } catch (error) {
          assert(error instanceof ProtoDecodeError, String(error));
          assertEquals(error.typeName, vector.message);
          assert(error.message.startsWith(`Cannot decode ${length} bytes as ${vector.message}: `));
          rejected++;
        }
      }
      // A prefix that ends exactly between top-level fields is a valid (shorter) message;
      // all others must throw.
      assertEquals(rejected, bytes.length - 1 - countFieldBoundaries(bytes));
    });
  }

  await t.step("rejects a length prefix that runs past the end", () => {
    // field 3 (data_bytes), wire type 2, length 10, but only 2 bytes follow
    assertThrows(
      () => decodeMessage(TensorChunkSchema, new Uint8Array([0x1a, 10, 1, 2])),
      ProtoDecodeError,
      "Cannot decode 4 bytes as tsercom.TensorChunk",
    );
  });

  await t.step("rejects a field with the wrong wire type", () => {
    // field 2 (starting_index, a varint) sent as a length-delimited field
    assertThrows(
      () => decodeMessage(TensorChunkSchema, new Uint8Array([0x12, 1, 0])),
      ProtoDecodeError,
    );
  });

  await t.step("rejects a varint longer than ten bytes", () => {
    assertThrows(
      () =>
        decodeMessage(TensorChunkSchema, new Uint8Array([0x10, ...new Array(11).fill(0xff), 1])),
      ProtoDecodeError,
    );
  });

  await t.step("keeps the runtime's error as the cause", () => {
    const error = assertThrows(
      () => decodeMessage(ServerTimestampSchema, new Uint8Array([0x0a, 5])),
      ProtoDecodeError,
    );
    assert(error.cause instanceof Error);
  });
});

/** Counts the offsets at which a top-level field ends (valid truncation points). */
function countFieldBoundaries(bytes: Uint8Array): number {
  let offset = 0;
  let count = 0;
  while (offset < bytes.length) {
    const [tag, afterTag] = readVarint(bytes, offset);
    let end: number;
    switch (Number(tag & 7n)) {
      case 0:
        end = readVarint(bytes, afterTag)[1];
        break;
      case 1:
        end = afterTag + 8;
        break;
      case 2: {
        const [length, afterLength] = readVarint(bytes, afterTag);
        end = afterLength + Number(length);
        break;
      }
      case 5:
        end = afterTag + 4;
        break;
      default:
        throw new Error("unexpected wire type in a vector");
    }
    offset = end;
    if (offset < bytes.length) count++;
  }
  return count;
}

function readVarint(bytes: Uint8Array, offset: number): [bigint, number] {
  let value = 0n;
  let shift = 0n;
  for (;;) {
    const byte = bytes[offset++];
    value |= BigInt(byte & 0x7f) << shift;
    if ((byte & 0x80) === 0) return [value, offset];
    shift += 7n;
  }
}
