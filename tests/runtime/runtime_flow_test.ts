/**
 * Flow control end to end: a Worker runtime's data reaches the aggregator
 * losslessly and in order under a slow consumer with the blocking policy,
 * and the lossy policies drop an exactly counted number of items.
 *
 * @module
 */

import assert from "node:assert/strict";
import { CallerId } from "../../rpc/caller_id.ts";
import type { OverflowPolicy } from "../../rpc/_async.ts";
import type { RuntimeIsolation } from "../../runtime/runtime_config.ts";
import { RuntimeManager } from "../../runtime/runtime_manager.ts";

const MODULE = import.meta.resolve("./_catalogue_runtimes.ts");

function macrotask(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

Deno.test("1,000,000 items from a Worker reach a slow aggregator consumer, all and in order", async () => {
  await using runtimes = new RuntimeManager();
  const id = CallerId.random();
  const count = 1_000_000;
  const base = Date.now() * 1000;
  let expected = 0;
  let outOfOrder = 0;
  const handle = runtimes.register(
    { module: MODULE, export: "Flood", params: { testId: id.toString(), count, base } },
    { role: "server", isolation: "worker", dataCapacity: 1024, dataTimeoutMicros: null },
    {
      // The slow consumer: it yields to the event loop every 500 items.
      onData: async (item) => {
        if (item.value !== expected || item.timestamp !== base + expected) outOfOrder++;
        expected++;
        if (expected % 500 === 0) await macrotask();
      },
    },
  );
  await runtimes.start();
  await handle.stop();
  assert.equal(expected, count);
  assert.equal(outOfOrder, 0);
  const stats = handle.dataStats!;
  assert.equal(stats.sent, count);
  assert.equal(stats.dropped, 0);
  assert.ok(stats.blocked > 0, `flow control engaged: ${stats.blocked} emits waited for credit`);
  assert.ok(stats.maxUnacked <= 1024, `in flight at most the window: ${stats.maxUnacked}`);
  const stored = handle.dataAggregator.getNewData(id);
  assert.equal(stored.length, count);
  let ordered = true;
  for (let i = 0; i < count; i++) {
    // Newest first.
    if (stored[i].value !== count - 1 - i) ordered = false;
  }
  assert.ok(ordered, "the aggregator holds every item in timestamp order");
  runtimes.watcher.checkForException();
});

for (const isolation of ["worker", "in-process"] as RuntimeIsolation[]) {
  for (const policy of ["drop-newest", "drop-oldest"] as OverflowPolicy[]) {
    Deno.test(`${policy} (${isolation}): received + dropped is exactly what was emitted`, async () => {
      await using runtimes = new RuntimeManager();
      const id = CallerId.random();
      const count = 100_000;
      const base = Date.now() * 1000;
      const received: number[] = [];
      const handle = runtimes.register(
        {
          module: MODULE,
          export: "Flood",
          params: { testId: id.toString(), count, base, awaitEach: policy === "drop-newest" },
        },
        {
          role: "server",
          isolation,
          dataCapacity: 64,
          dataOverflow: policy,
          dataTimeoutMicros: null,
        },
        {
          onData: async (item) => {
            received.push(item.value as number);
            if (received.length % 50 === 0) await macrotask();
          },
        },
      );
      await runtimes.start();
      await handle.stop();
      assert.ok(handle.dropped > 0, "the slow consumer made the runtime drop");
      assert.equal(received.length + handle.dropped, count);
      for (let i = 1; i < received.length; i++) assert.ok(received[i] > received[i - 1]);
      assert.equal(handle.dataAggregator.getNewData(id).length, received.length);
      if (policy === "drop-oldest") {
        assert.equal(received.at(-1), count - 1, "drop-oldest keeps the newest item");
      }
      runtimes.watcher.checkForException();
    });
  }
}
