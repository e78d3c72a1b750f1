import assert from "node:assert/strict";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { TensorInitializerSchema } from "../../rpc/proto/gen/tensor_pb.ts";
import { TensorStreamMessageSchema } from "../../rpc/proto/gen/tensor_stream_pb.ts";
import { decodeInitializer, decodeUpdate, encodeInitializer } from "../../tensor/chunk_codec.ts";
import { TensorFormatError } from "../../tensor/tensor_format_error.ts";
import {
  decodeStreamMessage,
  encodeStreamMessage,
  SUBSCRIBE_METHOD,
} from "../../tensor/_tensor_stream_wire.ts";

const chunks = [
  { timestamp: 1_700_000_000_000_001, startingIndex: 0, values: Float32Array.of(1, 2, 3) },
  { timestamp: 1_700_000_000_000_002, startingIndex: 5, values: new Float32Array(300).fill(7) },
];

Deno.test("TensorStreamMessage codec", async (t) => {
  await t.step("what it encodes, the generated code reads field by field", () => {
    const bytes = encodeStreamMessage({ sequence: 300, chunks, keyframe: true });
    const message = fromBinary(TensorStreamMessageSchema, bytes);
    assert.equal(message.sequence, 300n);
    assert.equal(message.keyframe, true);
    assert.equal(message.initializer, undefined);
    assert.equal(message.update?.chunks.length, 2);
    assert.equal(message.update?.chunks[1].startingIndex, 5n);
  });

  await t.step("chunks at or above lz4MinBytes are compressed, smaller ones are not", () => {
    const bytes = encodeStreamMessage({ sequence: 1, chunks, lz4MinBytes: 1000 });
    const decoded = decodeUpdate(decodeStreamMessage(bytes).update!, "float32");
    assert.deepEqual(decoded.map((c) => c.compression), ["none", "lz4"]);
    assert.deepEqual([...decoded[1].values], [...chunks[1].values]);
    assert.ok(bytes.byteLength < 300, `compressed: ${bytes.byteLength} bytes`);
  });

  await t.step("what the generated code encodes, it reads with views of the fields", () => {
    const initializer = encodeInitializer({
      shape: [3],
      dtype: "float32",
      fillValue: 0,
      initialState: null,
    });
    const bytes = toBinary(
      TensorStreamMessageSchema,
      create(TensorStreamMessageSchema, {
        sequence: 0n,
        initializer: fromBinary(TensorInitializerSchema, initializer),
      }),
    );
    const frame = decodeStreamMessage(bytes);
    assert.equal(frame.sequence, 0);
    assert.deepEqual(decodeInitializer(frame.initializer!).shape, [3]);
    assert.equal(frame.update, undefined);
    assert.equal(frame.initializer!.buffer, bytes.buffer, "a view, not a copy");
  });

  await t.step("an empty update is present and empty; unknown fields are skipped", () => {
    const bytes = encodeStreamMessage({ sequence: 2, chunks: [] });
    const withUnknown = new Uint8Array([...bytes, 0x28, 0x05, 0x35, 1, 2, 3, 4]);
    const frame = decodeStreamMessage(withUnknown);
    assert.equal(frame.sequence, 2);
    assert.equal(frame.update?.byteLength, 0);
  });

  await t.step("malformed bytes give a TensorFormatError, never another error", () => {
    const cases = [
      new Uint8Array([0x08]), // a varint cut short
      new Uint8Array([0x1a, 0x05, 1, 2]), // a field longer than the message
      new Uint8Array([0x00]), // field 0
      new Uint8Array([0x0b]), // wire type 3
      new Uint8Array([0x08, ...new Array(11).fill(0xff)]), // an endless varint
      new Uint8Array([0x09, 1, 2]), // a fixed64 cut short
    ];
    for (const bytes of cases) {
      assert.throws(() => decodeStreamMessage(bytes), TensorFormatError, `${[...bytes]}`);
    }
  });

  await t.step("a buffer of leftover bytes encodes the same message as a fresh one", () => {
    const parts = {
      sequence: 9,
      chunks: [
        { timestamp: 1_700_000_000_000_001, startingIndex: 1, values: new Float64Array(40) },
      ],
      keyframe: true,
    };
    const fresh = encodeStreamMessage(parts);
    const dirty = encodeStreamMessage(parts, (size) => new Uint8Array(size).fill(0xee));
    assert.ok(fresh.includes(0x7a), "the message has a pad field");
    assert.deepEqual(dirty, fresh);
  });

  await t.step(
    "the response codec encodes parts into one reused buffer; bytes pass as they are",
    () => {
      const codec = SUBSCRIBE_METHOD.response;
      assert.equal(codec.reusesBuffer, true);
      const first = { sequence: 1, chunks: [chunks[1]] };
      const second = { sequence: 2, chunks: [chunks[0]] };
      const a = codec.serialize(first);
      const aCopy = a.slice();
      assert.deepEqual(aCopy, encodeStreamMessage(first));
      const b = codec.serialize(second);
      assert.deepEqual(b, encodeStreamMessage(second));
      assert.equal(a.buffer, b.buffer, "the second message reuses the first one's buffer");
      const bytes = Uint8Array.of(8, 1);
      assert.equal(codec.serialize(bytes), bytes);
      assert.equal(codec.deserialize(bytes), bytes);
    },
  );

  await t.step("a received message that is not bytes is a TensorFormatError", () => {
    assert.throws(() => decodeStreamMessage({ sequence: 1 }), TensorFormatError);
  });

  await t.step("the request codec round-trips", () => {
    const codec = SUBSCRIBE_METHOD.request;
    const request = { callerId: crypto.randomUUID(), stream: "imu", resync: true };
    assert.deepEqual(codec.deserialize(codec.serialize(request)), request);
    assert.deepEqual(codec.deserialize(codec.serialize({ resync: true })), {
      callerId: undefined,
      stream: "",
      resync: true,
    });
  });
});

Deno.test("large values land 8-aligned where grpc-js puts a message, so they decode as views", () => {
  for (const startingIndex of [0, 1, 300, 70_000]) {
    for (const sequence of [1, 200, 70_000]) {
      const chunks = [
        {
          timestamp: 1_700_000_000_000_001,
          startingIndex,
          values: new Float64Array(500).fill(1.5),
        },
        { timestamp: 1_700_000_000_000_002, startingIndex: 3, values: Float64Array.of(7) },
        { timestamp: 1_700_000_000_000_003, startingIndex, values: new Float64Array(999).fill(2) },
      ];
      const message = encodeStreamMessage({ sequence, chunks });
      // As grpc-js hands it out: after the 5-byte frame header in an aligned allocation.
      const frame = new Uint8Array(5 + message.byteLength);
      frame.set(message, 5);
      const decoded = decodeStreamMessage(frame.subarray(5));
      const big64 = decodeUpdate(decoded.update!, "float64");
      assert.equal(big64[0].values.buffer, frame.buffer, "a view of the message");
      assert.equal(big64[2].values.buffer, frame.buffer, "a view of the message");
      assert.deepEqual([big64[0].values[499], big64[1].values[0], big64[2].values[998]], [
        1.5,
        7,
        2,
      ]);
      // The generated code reads the padded message the same (the pad is an unknown field).
      const generated = fromBinary(TensorStreamMessageSchema, message);
      assert.equal(generated.update?.chunks.length, 3);
      assert.equal(generated.update?.chunks[2].startingIndex, BigInt(startingIndex));
    }
  }
});
