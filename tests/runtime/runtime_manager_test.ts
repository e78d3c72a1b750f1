import assert from "node:assert/strict";
import { ErrorWatcher } from "../../runtime/error_watcher.ts";
import { ErrorRegistry } from "../../runtime/_worker_protocol.ts";
import type { RuntimeIsolation } from "../../runtime/runtime_config.ts";
import {
  type RuntimeDataItem,
  type RuntimeHandle,
  RuntimeManager,
  RuntimeStopTimeoutError,
} from "../../runtime/runtime_manager.ts";
import { SensorFault } from "./_sensor_fault.ts";

const MODULE = import.meta.resolve("./_test_runtimes.ts");

function manager(watcher = new ErrorWatcher()): RuntimeManager {
  return new RuntimeManager({ watcher, errors: new ErrorRegistry().register(SensorFault) });
}

async function collect(handle: RuntimeHandle): Promise<RuntimeDataItem[]> {
  const items: RuntimeDataItem[] = [];
  for await (const item of handle.data()) items.push(item);
  return items;
}

for (const isolation of ["worker", "in-process"] as RuntimeIsolation[]) {
  Deno.test(`RuntimeManager (${isolation})`, async (t) => {
    const config = { role: "server", isolation, delivery: "stream" } as const;

    await t.step("start, data in order, stop: the handle goes through its states", async () => {
      await using runtimes = manager();
      const handle = runtimes.register(
        { module: MODULE, export: "Echo", params: { values: ["a", { b: [1, 2] }, 3] } },
        config,
      );
      assert.equal(handle.state, "registered");
      assert.equal(handle.config.isolation, isolation);
      const reading = collect(handle);
      const starting = runtimes.start();
      assert.equal(handle.state, "starting");
      await starting;
      assert.equal(handle.state, "running");
      const stopping = handle.stop("done");
      assert.equal(handle.state, "stopping");
      await stopping;
      assert.equal(handle.state, "stopped");
      assert.deepEqual(await reading, [
        { timestamp: 1, value: "a" },
        { timestamp: 2, value: { b: [1, 2] } },
        { timestamp: 3, value: 3 },
        { timestamp: 1_000_000, value: "bye:done" },
      ]);
      assert.equal(runtimes.watcher.hasError, false);
    });

    await t.step("start twice starts each runtime once", async () => {
      await using runtimes = manager();
      const handle = runtimes.register(
        { module: MODULE, export: "Echo", params: { values: [1, 2] } },
        config,
      );
      const first = runtimes.start();
      assert.equal(runtimes.start(), first);
      assert.equal(handle.start(), handle.start());
      await first;
      await handle.start();
      await runtimes.start();
      await handle.stop("x");
      assert.deepEqual((await collect(handle)).map((item) => item.value), [1, 2, "bye:x"]);
    });

    await t.step("stop resolves once the last item is in the data stream", async () => {
      await using runtimes = manager();
      const values = Array.from({ length: 500 }, (_, i) => i);
      const handle = runtimes.register(
        { module: MODULE, export: "Echo", params: { values } },
        config,
      );
      await runtimes.start();
      await handle.stop("last");
      // Nobody read while it ran: everything emitted up to the end of stop is here.
      const items = await collect(handle);
      assert.deepEqual(items.map((item) => item.value), [...values, "bye:last"]);
      assert.equal(handle.dropped, 0);
    });

    await t.step("a slow reader throttles a blocking runtime without loss", async () => {
      await using runtimes = manager();
      const handle = runtimes.register(
        { module: MODULE, export: "Counter", params: { count: 2_000, await: true } },
        { ...config, dataCapacity: 8, dataOverflow: "block" },
      );
      await runtimes.start();
      let next = 0;
      for await (const item of handle.data()) {
        assert.equal(item.value, next);
        assert.equal(item.timestamp, next);
        next++;
        if (next % 500 === 0) await new Promise((resolve) => setTimeout(resolve, 1));
        if (next === 2_000) break;
      }
      await handle.stop();
      assert.equal(handle.state, "stopped");
      assert.equal(handle.dropped, 0);
    });

    await t.step("a lossy policy drops and counts what the reader has no room for", async () => {
      await using runtimes = manager();
      const values = Array.from({ length: 500 }, (_, i) => i);
      const handle = runtimes.register(
        { module: MODULE, export: "Echo", params: { values } },
        { ...config, dataCapacity: 8, dataOverflow: "drop-newest" },
      );
      await runtimes.start();
      await handle.stop("late");
      const items = await collect(handle);
      assert.deepEqual(items.map((item) => item.value), values.slice(0, 8));
      assert.equal(handle.dropped, 493); // 492 values and the goodbye
      assert.equal(runtimes.watcher.hasError, false);
    });

    await t.step(
      "a runtime throwing in start fails its handle and reaches the watcher",
      async () => {
        await using runtimes = manager();
        const failing = runtimes.register({ module: MODULE, export: "FailsToStart" }, config);
        const healthy = runtimes.register(
          { module: MODULE, export: "Echo", params: { values: [1] } },
          config,
        );
        await assert.rejects(runtimes.start(), (error) => {
          assert.ok(error instanceof SensorFault, String(error));
          assert.equal(error.message, "lidar offline");
          assert.equal(error.code, 7);
          return true;
        });
        assert.equal(failing.state, "failed");
        assert.equal(healthy.state, "running");
        const record = runtimes.watcher.firstError!;
        assert.ok(record.error instanceof SensorFault);
        assert.equal(record.error.message, "lidar offline");
        assert.match(record.source ?? "", /FailsToStart/);
        assert.equal(runtimes.watcher.reportedCount, 1);
        await assert.rejects(collect(failing), SensorFault);
        await failing.stop(); // nothing to stop
        assert.equal(failing.state, "failed");
      },
    );

    await t.step(
      "an initializer that is not a function fails the start with a TypeError",
      async () => {
        await using runtimes = manager();
        const handle = runtimes.register({ module: MODULE, export: "NotAnInitializer" }, config);
        await assert.rejects(handle.start(), TypeError);
        assert.equal(handle.state, "failed");
        assert.ok(runtimes.watcher.firstError?.error instanceof TypeError);
        await assert.rejects(collect(handle), TypeError);
      },
    );

    await t.step("stop before start marks the handle stopped and ends its data", async () => {
      await using runtimes = manager();
      const handle = runtimes.register(
        { module: MODULE, export: "Echo", params: { values: [1] } },
        config,
      );
      await handle.stop();
      assert.equal(handle.state, "stopped");
      assert.deepEqual(await collect(handle), []);
      await assert.rejects(handle.start(), TypeError);
    });

    await t.step("shutdown keeps its deadline when a runtime hangs in stop", async () => {
      const runtimes = manager();
      const hanging = runtimes.register({ module: MODULE, export: "HangsInStop" }, config);
      const healthy = runtimes.register(
        { module: MODULE, export: "Echo", params: { values: [1] } },
        config,
      );
      await runtimes.start();
      const reading = collect(healthy);
      const shutdown = runtimes.shutdown({ deadlineMs: 100 });
      assert.equal(runtimes.shutdown(), shutdown);
      await shutdown;
      assert.equal(hanging.state, "failed");
      assert.equal(healthy.state, "stopped");
      assert.deepEqual((await reading).map((item) => item.value), [1, "bye:undefined"]);
      const errors = runtimes.watcher.errors.map((record) => record.error);
      assert.equal(errors.length, 1, errors.map(String).join("\n"));
      assert.ok(errors[0] instanceof RuntimeStopTimeoutError);
      assert.equal(errors[0].deadlineMs, 100);
      assert.match(errors[0].message, isolation === "worker" ? /terminated/ : /abandoned/);
      assert.ok(hanging.dropped >= 0);
      await assert.rejects(collect(hanging), RuntimeStopTimeoutError);
      assert.throws(() => runtimes.register({ module: MODULE, export: "Echo" }, config), TypeError);
      // The sanitizers check that no timer or Worker is left behind.
    });

    await t.step(
      "two managers run side by side, each with its own runtimes and watcher",
      async () => {
        await using a = manager();
        await using b = manager();
        const fromA = a.register(
          { module: MODULE, export: "Echo", params: { values: ["a"] } },
          config,
        );
        const fromB = b.register(
          { module: MODULE, export: "Echo", params: { values: ["b"] } },
          config,
        );
        const failing = b.register({ module: MODULE, export: "FailsToStart" }, config);
        await Promise.all([a.start(), b.start().catch(() => {})]);
        await Promise.all([fromA.stop("A"), fromB.stop("B")]);
        assert.deepEqual((await collect(fromA)).map((item) => item.value), ["a", "bye:A"]);
        assert.deepEqual((await collect(fromB)).map((item) => item.value), ["b", "bye:B"]);
        assert.equal(failing.state, "failed");
        assert.equal(a.watcher.hasError, false);
        assert.ok(b.watcher.firstError?.error instanceof SensorFault);
      },
    );
  });
}

Deno.test("RuntimeManager rejects bad arguments up front", async () => {
  const runtimes = new RuntimeManager();
  assert.throws(
    () => runtimes.register({ module: "./relative.ts", export: "Echo" }, { role: "server" }),
    /'module' must be an absolute URL/,
  );
  assert.throws(
    () => runtimes.register({ module: MODULE, export: "" }, { role: "server" }),
    /'export' must be a non-empty string/,
  );
  assert.throws(
    () =>
      runtimes.register({ module: MODULE, export: "Echo" }, { role: "server", dataCapacity: 0 }),
    RangeError,
  );
  assert.throws(() => runtimes.shutdown({ deadlineMs: -1 }), RangeError);
  await runtimes.shutdown({ deadlineMs: 0 });
  await assert.rejects(runtimes.start(), /must not have been shut down/);
  assert.throws(
    () => new RuntimeManager({ watcher: {} as ErrorWatcher }),
    /'watcher' must be an ErrorWatcher/,
  );
});
