import { assertEquals, assertRejects, assertThrows } from "../_assert.ts";
import { FakeClock } from "../../rpc/fake_clock.ts";
import { QueueClosedError } from "../../rpc/_async.ts";
import { buildInitialVector } from "../../tensor/initial_state.ts";
import type { TensorChunk } from "../../tensor/tensor_chunk.ts";
import { TensorStreamSource } from "../../tensor/tensor_stream_source.ts";

const T0 = 1_700_000_000_000_000;
const INITIAL = [1, 2, 3, 4, 5];

function source(sparse = true) {
  return new TensorStreamSource(new Float32Array(INITIAL), {
    dtype: "float32",
    clock: new FakeClock({ startMicros: T0 }),
    sparse,
  });
}

function shapeOf(chunks: TensorChunk[]) {
  return chunks.map((c) => [c.timestamp, c.startingIndex, Array.from(c.values as Float32Array)]);
}

async function nextBatch(src: TensorStreamSource<"float32">): Promise<TensorChunk[]> {
  const r = await src[Symbol.asyncIterator]().next();
  if (r.done) throw new Error("iteration ended");
  return r.value;
}

Deno.test("TensorStreamSource", async (t) => {
  await t.step(
    "the initializer has shape [5], dtype float32 and fill 1 (ties go to the smallest)",
    () => {
      const { shape, dtype, fillValue } = source().initializer;
      assertEquals([shape, dtype, fillValue], [[5], "float32", 1]);
    },
  );

  await t.step("the initial chunks painted over the fill value rebuild the initial vector", () => {
    const init = source().initializer;
    assertEquals(shapeOf([...init.initialState!]), [[T0, 1, [2, 3, 4, 5]]]);
    assertEquals(
      Array.from(buildInitialVector("float32", 5, init.fillValue, init.initialState)),
      INITIAL,
    );
  });

  await t.step("the complete variant has the same initializer", () => {
    assertEquals(source(false).initializer, source(true).initializer);
  });

  await t.step(
    "sparse: an update equal to the initial vector sends nothing (bug 2: the diff is against the initial state, not zeros)",
    async () => {
      const src = source();
      await src.update(new Float32Array(INITIAL), T0);
      await src.update(new Float32Array([1, 2.5, 3, 4.5, 5]), T0 + 1_000_000);
      assertEquals(shapeOf(await nextBatch(src)), [
        [T0 + 1_000_000, 1, [2.5]],
        [T0 + 1_000_000, 3, [4.5]],
      ]);
    },
  );

  await t.step("sparse: the chunks of one update come out together as one batch", async () => {
    const src = source();
    await src.update(new Float32Array([0, 2, 0, 4, 0]), T0);
    const batch = await nextBatch(src);
    assertEquals(shapeOf(batch), [[T0, 0, [0]], [T0, 2, [0]], [T0, 4, [0]]]);
  });

  await t.step("complete: each update is one chunk holding the whole vector", async () => {
    const src = source(false);
    await src.update(new Float32Array([1, 2.5, 3, 4.5, 5]), T0 + 5);
    assertEquals(shapeOf(await nextBatch(src)), [[T0 + 5, 0, [1, 2.5, 3, 4.5, 5]]]);
  });

  await t.step("a wrong length is rejected", async () => {
    await assertRejects(() => source().update(new Float32Array(4), T0), RangeError, "length");
  });

  await t.step("a wrong dtype is rejected", async () => {
    await assertRejects(
      () => source().update(new Int32Array(5) as unknown as Float32Array, T0),
      TypeError,
    );
  });

  await t.step("a non-typed-array initial vector and an empty one are rejected", () => {
    assertThrows(
      () => new TensorStreamSource([1, 2] as unknown as Float32Array, { dtype: "float32" }),
      TypeError,
      "must be a Float32Array",
    );
    assertThrows(
      () => new TensorStreamSource(new Float32Array(0), { dtype: "float32" }),
      RangeError,
      "at least one element",
    );
  });

  await t.step(
    "close ends iteration after the queued chunks and rejects later updates",
    async () => {
      const src = source(false);
      await src.update(new Float32Array(INITIAL), T0);
      src.close();
      assertEquals((await Array.fromAsync(src)).length, 1);
      await assertRejects(() => src.update(new Float32Array(INITIAL), T0 + 1), QueueClosedError);
    },
  );

  await t.step("with the block policy, update waits until the consumer takes chunks", async () => {
    const src = new TensorStreamSource(new Float32Array(2), {
      dtype: "float32",
      clock: new FakeClock(),
      sparse: false,
      capacity: 1,
    });
    await src.update(new Float32Array([1, 1]), 1);
    let done = false;
    const second = src.update(new Float32Array([2, 2]), 2).then(() => done = true);
    for (let i = 0; i < 5; i++) await Promise.resolve();
    assertEquals(done, false);
    await nextBatch(src);
    await second;
    assertEquals(done, true);
  });
});
