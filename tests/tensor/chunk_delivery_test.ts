/**
 * ChunkDelivery's direct mode (the tensor stream server's multiplexer): a
 * sink that never calls back into the multiplexer gets its chunks on the
 * spot while it answers synchronously, and in order, behind any promise it
 * returned, once it does not.
 */

import assert from "node:assert/strict";
import { ChunkDelivery } from "../../tensor/_multiplexer_core.ts";
import type { TensorChunk } from "../../tensor/tensor_chunk.ts";
import { flush } from "../_promises.ts";

function chunk(n: number): TensorChunk {
  return { timestamp: n, startingIndex: 0, values: Float32Array.of(n) };
}

Deno.test("ChunkDelivery in direct mode", async (t) => {
  await t.step("a synchronous sink has every chunk before deliver returns", async () => {
    const seen: number[] = [];
    const delivery = new ChunkDelivery({ onChunk: (c) => void seen.push(c.timestamp) }, true);
    const done = delivery.deliver([chunk(1), chunk(2), chunk(3)]);
    assert.deepEqual(seen, [1, 2, 3]);
    await done;
  });

  await t.step(
    "a throwing sink still gets the rest; the call rejects with the first error",
    async () => {
      const seen: number[] = [];
      const delivery = new ChunkDelivery({
        onChunk(c) {
          seen.push(c.timestamp);
          if (c.timestamp % 2 === 0) throw new Error(`bad ${c.timestamp}`);
        },
      }, true);
      await assert.rejects(delivery.deliver([chunk(1), chunk(2), chunk(3), chunk(4)]), /bad 2/);
      assert.deepEqual(seen, [1, 2, 3, 4]);
    },
  );

  await t.step("a sink that waits holds back the rest and later calls, in order", async () => {
    const seen: number[] = [];
    let release!: () => void;
    const delivery = new ChunkDelivery({
      onChunk(c) {
        seen.push(c.timestamp);
        if (c.timestamp === 2) return new Promise<void>((resolve) => release = resolve);
      },
    }, true);
    let firstDone = false;
    let secondDone = false;
    const first = delivery.deliver([chunk(1), chunk(2), chunk(3)]).then(() => firstDone = true);
    const second = delivery.deliver([chunk(4)]).then(() => secondDone = true);
    await flush();
    assert.deepEqual(seen, [1, 2], "chunk 3 and the second call wait for chunk 2");
    assert.equal(firstDone, false);
    release();
    await Promise.all([first, second]);
    assert.deepEqual(seen, [1, 2, 3, 4]);
    assert.ok(firstDone && secondDone);
    // Drained: direct again.
    const third = delivery.deliver([chunk(5)]);
    assert.deepEqual(seen, [1, 2, 3, 4, 5]);
    await third;
  });

  await t.step("a rejected wait fails its own call, not the next one", async () => {
    let fail!: (error: Error) => void;
    const delivery = new ChunkDelivery({
      onChunk(c) {
        if (c.timestamp === 1) return new Promise<void>((_, reject) => fail = reject);
      },
    }, true);
    const first = delivery.deliver([chunk(1), chunk(2)]);
    const second = delivery.deliver([chunk(3)]);
    await flush();
    fail(new Error("sink failed"));
    await assert.rejects(first, /sink failed/);
    await second;
  });

  await t.step("an empty call settles at once", async () => {
    const delivery = new ChunkDelivery({ onChunk: () => assert.fail("no chunk") }, true);
    await delivery.deliver([]);
  });
});
