/**
 * spec §6.10, end to end through the wire format: a multiplexer's chunks are
 * encoded to protobuf bytes, decoded with the stream's dtype and fed to a
 * demuxer, which must rebuild every snapshot exactly.
 */

import { assertEquals } from "../_assert.ts";
import { decodeChunk, encodeChunk } from "../../tensor/chunk_codec.ts";
import { CompleteTensorMultiplexer } from "../../tensor/complete_multiplexer.ts";
import { SparseTensorMultiplexer } from "../../tensor/sparse_multiplexer.ts";
import type { TensorChunk } from "../../tensor/tensor_chunk.ts";
import { TensorDemuxer } from "../../tensor/tensor_demuxer.ts";

const T1 = 1_700_000_000_000_000;
const S = 1_000_000;

function pipeline(
  length: number,
  options: { sparse?: boolean; timeout?: number; lz4?: boolean } = {},
) {
  const demuxer = new TensorDemuxer({ onTensorChanged() {} }, {
    dtype: "float32",
    length,
    dataTimeoutMicros: options.timeout,
  });
  const sink = {
    onChunk: async (chunk: TensorChunk) => {
      const bytes = encodeChunk(chunk, { compression: options.lz4 ? "lz4" : "none" });
      await demuxer.receive(decodeChunk(bytes, "float32", { tensorLength: length }));
    },
  };
  const muxer = options.sparse
    ? new SparseTensorMultiplexer(sink, {
      dtype: "float32",
      length,
      dataTimeoutMicros: options.timeout,
    })
    : new CompleteTensorMultiplexer(sink, {
      dtype: "float32",
      length,
      dataTimeoutMicros: options.timeout,
    });
  return {
    muxer,
    demuxer,
    send: (values: number[], ts: number) => muxer.process(new Float32Array(values), ts),
    at: (ts: number) => {
      const v = demuxer.getTensorAt(ts);
      return v === null ? null : Array.from(v as Float32Array);
    },
  };
}

for (const mode of [{ sparse: false }, { sparse: true }, { sparse: true, lz4: true }]) {
  const label = `${mode.sparse ? "sparse" : "complete"}${"lz4" in mode ? " + LZ4" : ""}`;
  Deno.test(`tensor streams end to end through protobuf bytes (${label})`, async (t) => {
    await t.step("one snapshot is rebuilt exactly", async () => {
      const p = pipeline(4, mode);
      await p.send([1, 2, 3, 4], T1);
      assertEquals(p.at(T1), [1, 2, 3, 4]);
    });

    await t.step("a second snapshot leaves the first unchanged", async () => {
      const p = pipeline(3, mode);
      await p.send([1, 1, 1], T1);
      await p.send([1, 2, 1], T1 + S);
      assertEquals([p.at(T1), p.at(T1 + S)], [[1, 1, 1], [1, 2, 1]]);
    });

    await t.step(
      "a late snapshot between two others is rebuilt and leaves them exact",
      async () => {
        const p = pipeline(4, mode);
        await p.send([1, 1, 1, 1], T1);
        await p.send([3, 3, 3, 3], T1 + 2 * S);
        await p.send([2, 2, 2, 2], T1 + S);
        assertEquals([p.at(T1), p.at(T1 + S), p.at(T1 + 2 * S)], [[1, 1, 1, 1], [2, 2, 2, 2], [
          3,
          3,
          3,
          3,
        ]]);
      },
    );

    await t.step(
      "a late snapshot before the first is rebuilt and the later one stays exact",
      async () => {
        const p = pipeline(5, mode);
        await p.send([1, 2, 3, 4, 5], T1 + S);
        await p.send([1, 4, 4, 4, 4], T1);
        assertEquals([p.at(T1), p.at(T1 + S)], [[1, 4, 4, 4, 4], [1, 2, 3, 4, 5]]);
      },
    );

    await t.step("several in order then one late are all exact", async () => {
      const p = pipeline(3, mode);
      for (const [k, v] of [[0, 1], [2, 3], [3, 4], [1, 2]]) await p.send([v, v, v], T1 + k * S);
      for (const [k, v] of [[0, 1], [1, 2], [2, 3], [3, 4]]) {
        assertEquals(p.at(T1 + k * S), [v, v, v]);
      }
    });

    await t.step(
      "with a short window, expired snapshots are gone on both ends and stay gone",
      async () => {
        const p = pipeline(2, { ...mode, timeout: 100_000 });
        await p.send([1, 1], T1);
        await p.send([2, 2], T1 + 10 * S);
        assertEquals([p.at(T1), p.at(T1 + 10 * S), p.muxer.getTensorAt(T1)], [null, [2, 2], null]);
        await p.demuxer.receive({ timestamp: T1, startingIndex: 0, values: new Float32Array([9]) });
        assertEquals(p.at(T1), null);
      },
    );

    await t.step("replacing the first of four snapshots changes only it", async () => {
      const p = pipeline(3, mode);
      for (let k = 0; k < 4; k++) await p.send([k + 1, k + 1, k + 1], T1 + k * S);
      await p.send([1, 5, 1], T1);
      assertEquals(
        [0, 1, 2, 3].map((k) => p.at(T1 + k * S)),
        [[1, 5, 1], [2, 2, 2], [3, 3, 3], [4, 4, 4]],
      );
    });
  });
}
