import { assert, assertEquals, assertRejects, assertThrows } from "../_assert.ts";
import { FakeClock } from "../../rpc/fake_clock.ts";
import { ManualScheduler } from "../../rpc/scheduler.ts";
import { QueueOverflowError } from "../../rpc/_async.ts";
import { UnsupportedDTypeError } from "../../tensor/dtype.ts";
import { LinearInterpolationStrategy } from "../../tensor/linear_interpolation_strategy.ts";
import type { TensorInitializer } from "../../tensor/tensor_chunk.ts";
import { TensorStreamReceiver } from "../../tensor/tensor_stream_receiver.ts";
import { TensorDemuxerChunkError } from "../../tensor/tensor_demuxer.ts";

const T1 = 1_700_000_000_000_000;

function init(overrides: Partial<TensorInitializer> = {}): TensorInitializer {
  return { shape: [4], dtype: "float32", fillValue: 0, initialState: null, ...overrides };
}

/** Takes `n` frames without waiting past what is queued. */
async function take(receiver: TensorStreamReceiver, n: number) {
  const out: { timestamp: number; values: number[]; shape: readonly number[] }[] = [];
  const it = receiver[Symbol.asyncIterator]();
  for (let i = 0; i < n; i++) {
    const r = await it.next();
    if (r.done) break;
    out.push({
      timestamp: r.value.timestamp,
      values: Array.from(r.value.values as Float32Array),
      shape: r.value.shape,
    });
  }
  return out;
}

Deno.test("TensorStreamReceiver", async (t) => {
  await t.step("takes dtype, shape and fill value from the initializer", () => {
    const receiver = new TensorStreamReceiver(
      init({ shape: [2, 3], dtype: "Float32", fillValue: 0.5 }),
    );
    assertEquals(
      [receiver.dtype, receiver.shape, receiver.length, receiver.fillValue],
      ["float32", [2, 3], 6, 0.5],
    );
  });

  await t.step("a scalar shape has one element", () => {
    const receiver = new TensorStreamReceiver(init({ shape: [], dtype: "int64", fillValue: 10 }));
    assertEquals([receiver.length, receiver.dtype], [1, "int64"]);
  });

  await t.step("an unknown dtype is rejected with UnsupportedDTypeError", () => {
    assertThrows(
      () => new TensorStreamReceiver(init({ dtype: "complex64" })),
      UnsupportedDTypeError,
    );
  });

  await t.step("a negative or fractional dimension is rejected", () => {
    assertThrows(() => new TensorStreamReceiver(init({ shape: [2, -1] })), RangeError, "shape");
    assertThrows(() => new TensorStreamReceiver(init({ shape: [1.5] })), RangeError, "shape");
  });

  await t.step(
    "hands out every changed snapshot with its shape, in order (bug 2: fill + initial state is the baseline)",
    async () => {
      const receiver = new TensorStreamReceiver(init({
        shape: [2, 2],
        fillValue: 7,
        initialState: [{ timestamp: 0, startingIndex: 3, values: new Float32Array([9]) }],
      }));
      await receiver.receive({ timestamp: T1, startingIndex: 0, values: new Float32Array([1]) });
      await receiver.receive({
        timestamp: T1 + 10,
        startingIndex: 1,
        values: new Float32Array([2]),
      });
      assertEquals(await take(receiver, 2), [
        { timestamp: T1, values: [1, 7, 7, 9], shape: [2, 2] },
        { timestamp: T1 + 10, values: [1, 2, 7, 9], shape: [2, 2] },
      ]);
    },
  );

  await t.step("a late chunk produces its own frame and the later frames it changes", async () => {
    const receiver = new TensorStreamReceiver(init());
    await receiver.receive({
      timestamp: T1 + 10,
      startingIndex: 1,
      values: new Float32Array([10]),
    });
    await receiver.receive({ timestamp: T1, startingIndex: 2, values: new Float32Array([88]) });
    assertEquals((await take(receiver, 3)).map((f) => [f.timestamp, f.values]), [
      [T1 + 10, [0, 10, 0, 0]],
      [T1, [0, 0, 88, 0]],
      [T1 + 10, [0, 10, 88, 0]],
    ]);
  });

  await t.step(
    "frames own their values: later chunks do not change a frame already handed out",
    async () => {
      const receiver = new TensorStreamReceiver(init());
      await receiver.receive({ timestamp: T1, startingIndex: 0, values: new Float32Array([1]) });
      const [first] = await take(receiver, 1);
      await receiver.receive({ timestamp: T1, startingIndex: 0, values: new Float32Array([2]) });
      assertEquals(first.values, [1, 0, 0, 0]);
      assertEquals(Array.from(receiver.getTensorAt(T1) as Float32Array), [2, 0, 0, 0]);
    },
  );

  await t.step("receiveUpdate applies the chunks of one update in order", async () => {
    const receiver = new TensorStreamReceiver(init());
    await receiver.receiveUpdate([
      { timestamp: T1, startingIndex: 0, values: new Float32Array([1, 2]) },
      { timestamp: T1, startingIndex: 3, values: new Float32Array([4]) },
    ]);
    assertEquals(Array.from(receiver.getTensorAt(T1) as Float32Array), [1, 2, 0, 4]);
  });

  await t.step("receiveUpdate yields one frame per timestamp of the update", async () => {
    const receiver = new TensorStreamReceiver(init());
    await receiver.receiveUpdate([
      { timestamp: T1 + 1, startingIndex: 1, values: new Float32Array([5]) },
      { timestamp: T1, startingIndex: 0, values: new Float32Array([1]) },
      { timestamp: T1 + 1, startingIndex: 2, values: new Float32Array([6]) },
    ]);
    await receiver.close();
    const frames = await Array.fromAsync(receiver);
    assertEquals(frames.map((f) => [f.timestamp, Array.from(f.values as Float32Array)]), [
      [T1, [1, 0, 0, 0]],
      [T1 + 1, [1, 5, 6, 0]],
    ]);
  });

  await t.step("receiveUpdate rejects an update with a malformed chunk whole", async () => {
    const receiver = new TensorStreamReceiver(init());
    await assertRejects(
      () =>
        receiver.receiveUpdate([
          { timestamp: T1, startingIndex: 0, values: new Float32Array([1]) },
          { timestamp: T1, startingIndex: 0.5, values: new Float32Array([2]) },
        ]),
      TensorDemuxerChunkError,
    );
    assertEquals(receiver.getTensorAt(T1), null);
    assertEquals(receiver.counters.rejectedChunks, 1);
  });

  await t.step("close ends iteration after the queued frames, and a blocked consumer", async () => {
    const receiver = new TensorStreamReceiver(init());
    const consumer = Array.fromAsync(receiver);
    await receiver.receive({ timestamp: T1, startingIndex: 0, values: new Float32Array([3]) });
    await receiver.close();
    const frames = await consumer;
    assertEquals(frames.length, 1);
    await receiver.close();
  });

  await t.step("with the block policy, receive waits until the consumer makes room", async () => {
    const receiver = new TensorStreamReceiver(init(), { capacity: 1 });
    await receiver.receive({ timestamp: T1, startingIndex: 0, values: new Float32Array([1]) });
    let done = false;
    const second = receiver
      .receive({ timestamp: T1 + 1, startingIndex: 0, values: new Float32Array([2]) })
      .then(() => done = true);
    await Promise.resolve();
    await Promise.resolve();
    assertEquals(done, false);
    await take(receiver, 1);
    await second;
    assertEquals(done, true);
  });

  await t.step("with drop-oldest, the oldest frames are dropped and counted", async () => {
    const receiver = new TensorStreamReceiver(init(), { capacity: 1, overflow: "drop-oldest" });
    for (let i = 0; i < 3; i++) {
      await receiver.receive({
        timestamp: T1 + i,
        startingIndex: 0,
        values: new Float32Array([i]),
      });
    }
    await receiver.close();
    const frames = await Array.fromAsync(receiver);
    assertEquals(frames.map((f) => f.timestamp), [T1 + 2]);
    assertEquals(receiver.droppedFrames, 2);
  });

  await t.step("with the error policy, a full queue makes receive reject", async () => {
    const receiver = new TensorStreamReceiver(init(), { capacity: 1, overflow: "error" });
    await receiver.receive({ timestamp: T1, startingIndex: 0, values: new Float32Array([1]) });
    await assertRejects(
      () =>
        receiver.receive({ timestamp: T1 + 1, startingIndex: 0, values: new Float32Array([2]) }),
      QueueOverflowError,
    );
  });

  await t.step("stale chunks and out-of-range elements are counted, not thrown", async () => {
    const receiver = new TensorStreamReceiver(init(), { dataTimeoutMicros: 100 });
    await receiver.receive({
      timestamp: T1 + 1_000,
      startingIndex: 3,
      values: new Float32Array([1, 2]),
    });
    await receiver.receive({ timestamp: T1, startingIndex: 0, values: new Float32Array([1]) });
    assertEquals(receiver.counters.staleChunks, 1);
    assertEquals(receiver.counters.outOfRangeElements, 1);
  });

  await t.step(
    "with smoothing, frames come from the scheduler at the output interval",
    async () => {
      const scheduler = new ManualScheduler();
      const clock = new FakeClock({ startMicros: T1 });
      const receiver = new TensorStreamReceiver(init({ shape: [1] }), {
        smoothing: {
          strategy: new LinearInterpolationStrategy(),
          outputIntervalMicros: 100_000,
          renderDelayMicros: 0,
          scheduler,
          clock,
        },
      });
      await receiver.receive({ timestamp: T1, startingIndex: 0, values: new Float32Array([10]) });
      await receiver.receive({
        timestamp: T1 + 200_000,
        startingIndex: 0,
        values: new Float32Array([30]),
      });
      clock.advance(100_000);
      scheduler.advance(100);
      await receiver.close();
      const frames = await Array.fromAsync(receiver);
      assert(frames.length >= 1, `${frames.length} frames`);
      const last = frames[frames.length - 1];
      assertEquals([last.timestamp, Array.from(last.values as Float32Array)], [T1 + 100_000, [20]]);
      assertEquals(scheduler.pending, 0);
    },
  );
});
