import assert from "node:assert/strict";
import { ErrorWatcher } from "../../runtime/error_watcher.ts";
import { ErrorRegistry } from "../../runtime/_worker_protocol.ts";
import {
  WorkerCrashedError,
  type WorkerDataItem,
  WorkerHungError,
  WorkerRuntimeHost,
  type WorkerRuntimeHostOptions,
  WorkerTimeoutError,
} from "../../runtime/worker_runtime_host.ts";
import { SensorFault } from "./_sensor_fault.ts";

const MODULE = import.meta.resolve("./_test_runtimes.ts");

function spawn(
  name: string,
  params?: unknown,
  options: WorkerRuntimeHostOptions = {},
): Promise<WorkerRuntimeHost> {
  return WorkerRuntimeHost.spawn({ module: MODULE, export: name, params }, {
    errors: new ErrorRegistry().register(SensorFault),
    ...options,
  });
}

async function collect(host: WorkerRuntimeHost): Promise<WorkerDataItem[]> {
  const items: WorkerDataItem[] = [];
  for await (const item of host.data()) items.push(item);
  return items;
}

Deno.test("WorkerRuntimeHost", async (t) => {
  await t.step("start, emit and stop round-trip the exact data in order", async () => {
    await using host = await spawn("Echo", { values: ["a", { b: [1, 2] }, 3] });
    assert.equal(host.state, "created");
    const reading = collect(host);
    await host.start();
    assert.equal(host.state, "running");
    await host.start(); // idempotent
    await host.stop("done");
    assert.equal(host.state, "stopped");
    assert.deepEqual(await reading, [
      { timestamp: 1, value: "a" },
      { timestamp: 2, value: { b: [1, 2] } },
      { timestamp: 3, value: 3 },
      { timestamp: 1_000_000, value: "bye:done" },
    ]);
  });

  await t.step(
    "100,000 items arrive in order to a slow consumer, the worker throttled",
    async () => {
      const credits = 256;
      let next = 0;
      const { promise: allReceived, resolve } = Promise.withResolvers<void>();
      await using host = await spawn("Counter", { count: 100_000, await: true }, {
        credits,
        onData: async (items) => {
          for (const item of items) {
            assert.equal(item.value, next);
            assert.equal(item.timestamp, next);
            next++;
          }
          if (next === 100_000) resolve();
          // A slow consumer: it pauses now and then.
          if (next % 10_000 < items.length) await new Promise((r) => setTimeout(r, 5));
        },
      });
      await host.start();
      await allReceived;
      await host.stop();
      assert.equal(next, 100_000);
      const stats = host.workerStats!;
      assert.equal(stats.sent, 100_000);
      assert.equal(stats.dropped, 0);
      assert.ok(stats.blocked > 0, `the worker never waited for credit: ${JSON.stringify(stats)}`);
      assert.ok(stats.maxUnacked <= credits, JSON.stringify(stats));
      assert.ok(stats.maxBuffered <= credits, JSON.stringify(stats));
    },
  );

  await t.step("drop-newest drops an exact number of items and reports it", async () => {
    const credits = 10;
    await using host = await spawn("Counter", { count: 1_000, await: false }, {
      credits,
      overflow: "drop-newest",
    });
    const reading = collect(host);
    await host.start();
    await host.stop();
    const items = await reading;
    assert.deepEqual(items.map((item) => item.value), Array.from({ length: credits }, (_, i) => i));
    assert.equal(host.dropped, 1_000 - credits);
    assert.equal(host.workerStats?.dropped, 1_000 - credits);
    assert.equal(host.workerStats?.sent, credits);
  });

  await t.step("Float32Arrays arrive intact, their worker-side buffers detached", async () => {
    await using host = await spawn("Floats", { count: 3, length: 1024 });
    const reading = collect(host);
    await host.start();
    await host.stop();
    const items = await reading;
    assert.equal(items.length, 4);
    for (let i = 0; i < 3; i++) {
      const value = items[i].value;
      assert.ok(value instanceof Float32Array);
      assert.equal(value.length, 1024);
      assert.ok(value.every((x) => x === i));
    }
    assert.deepEqual(items[3].value, { byteLengths: [0, 0, 0] });
  });

  await t.step(
    "a runtime that throws in start rejects start with its class and message",
    async () => {
      await using host = await spawn("FailsToStart");
      await assert.rejects(host.start(), (error: unknown) => {
        assert.ok(error instanceof SensorFault);
        assert.equal(error.message, "lidar offline");
        assert.equal(error.code, 7);
        return true;
      });
      assert.equal(host.state, "failed");
    },
  );

  await t.step("an initializer that is not a function fails spawn with a TypeError", async () => {
    await assert.rejects(spawn("NotAnInitializer"), (error: unknown) => {
      assert.ok(error instanceof TypeError);
      assert.match(error.message, /export 'NotAnInitializer' .* must be a function/);
      return true;
    });
  });

  await t.step("a relative module or unclonable params are refused before spawning", async () => {
    await assert.rejects(WorkerRuntimeHost.spawn({ module: "./x.ts", export: "X" }), TypeError);
    await assert.rejects(
      WorkerRuntimeHost.spawn({ module: MODULE, export: "Echo", params: () => {} }),
      TypeError,
    );
  });

  await t.step("an error thrown later in the worker reaches the watcher as its class", async () => {
    const watcher = new ErrorWatcher();
    await using host = await spawn("FailsLater", undefined, { watcher });
    await host.start();
    await assert.rejects(watcher.untilException({ timeoutMs: 5_000 }), (error: unknown) => {
      assert.ok(error instanceof SensorFault);
      assert.equal(error.message, "lidar overheated");
      return true;
    });
    assert.equal(host.state, "running");
  });

  await t.step(
    "an unhandled rejection in the worker reaches the watcher as its class",
    async () => {
      const watcher = new ErrorWatcher();
      await using host = await spawn("RejectsLater", undefined, { watcher });
      await host.start();
      await assert.rejects(watcher.untilException({ timeoutMs: 5_000 }), (error: unknown) => {
        assert.ok(error instanceof RangeError);
        assert.equal(error.message, "angle out of range");
        return true;
      });
    },
  );

  await t.step("a worker calling Deno.exit is reported as a WorkerCrashedError", async () => {
    const watcher = new ErrorWatcher();
    await using host = await spawn("Exits", { how: "exit", code: 3 }, { watcher });
    await host.start();
    await assert.rejects(watcher.untilException({ timeoutMs: 5_000 }), (error: unknown) => {
      assert.ok(error instanceof WorkerCrashedError);
      assert.equal(error.exitCode, 3);
      assert.match(error.message, /Deno\.exit/);
      return true;
    });
    assert.equal(host.state, "failed");
    await assert.rejects(host.stop(), TypeError);
  });

  await t.step("a worker calling self.close is reported as a WorkerCrashedError", async () => {
    const watcher = new ErrorWatcher();
    await using host = await spawn("Exits", { how: "close" }, { watcher });
    await host.start();
    await assert.rejects(watcher.untilException({ timeoutMs: 5_000 }), (error: unknown) => {
      assert.ok(error instanceof WorkerCrashedError);
      assert.match(error.message, /self\.close/);
      return true;
    });
    assert.equal(host.state, "failed");
  });

  await t.step("the watcher hears of a crash only once the host is failed", async () => {
    const watcher = new ErrorWatcher();
    await using host = await spawn("Exits", { how: "close" }, { watcher });
    const states: string[] = [];
    // A listener that reacts at once (as an agent that restarts its runtime does).
    watcher.addListener(() => {
      states.push(host.state);
      host.stop().catch((error) => states.push(`stop: ${(error as Error).name}`));
    });
    await host.start();
    await assert.rejects(watcher.untilException({ timeoutMs: 5_000 }), WorkerCrashedError);
    await Promise.resolve();
    assert.deepEqual(states, ["failed", "stop: TypeError"]);
    // The stop refused by a failed host is not a second error.
    assert.equal(watcher.errors.length, 1);
  });

  await t.step("a hung worker is reported as a WorkerHungError", async () => {
    const watcher = new ErrorWatcher();
    await using host = await spawn("BusyLoops", { ms: 3_000 }, {
      watcher,
      heartbeatMs: 50,
      heartbeatTimeoutMs: 300,
    });
    await host.start();
    await assert.rejects(watcher.untilException({ timeoutMs: 5_000 }), WorkerHungError);
    assert.equal(host.state, "failed");
  });

  await t.step("a stop that hangs times out and terminate still completes at once", async () => {
    const host = await spawn("HangsInStop", undefined, { stopTimeoutMs: 200 });
    await host.start();
    await assert.rejects(host.stop(), (error: unknown) => {
      assert.ok(error instanceof WorkerTimeoutError);
      assert.equal(error.command, "stop");
      return true;
    });
    const before = performance.now();
    await host.terminate();
    assert.ok(performance.now() - before < 100);
    assert.equal(host.state, "terminated");
    await host.terminate(); // idempotent
  });
});
