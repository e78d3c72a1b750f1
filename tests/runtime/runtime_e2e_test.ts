/**
 * The runtime end-to-end catalogue of spec/runtime.md §14, in both
 * isolation modes, plus the additions of its port test plan. Where a test
 * expects something else than the original because a listed bug is fixed,
 * its name or a comment says which.
 *
 * @module
 */

import assert from "node:assert/strict";
import { CallerId } from "../../rpc/caller_id.ts";
import { ErrorWatcher } from "../../runtime/error_watcher.ts";
import { ErrorRegistry } from "../../runtime/_worker_protocol.ts";
import type { RemoteDataItem } from "../../runtime/remote_data_aggregator.ts";
import type { RuntimeConfigOptions, RuntimeIsolation } from "../../runtime/runtime_config.ts";
import { type RuntimeHandle, RuntimeManager } from "../../runtime/runtime_manager.ts";
import { DirectBlockError } from "./_catalogue_runtimes.ts";

const MODULE = import.meta.resolve("./_catalogue_runtimes.ts");

function manager(): RuntimeManager {
  return new RuntimeManager({
    watcher: new ErrorWatcher(),
    errors: new ErrorRegistry().register(DirectBlockError),
  });
}

/** Waits until `id` has new data, then takes it, oldest first. */
async function next<T = unknown>(handle: RuntimeHandle, id: CallerId): Promise<T[]> {
  await handle.dataAggregator.waitForNewData({ callerId: id, signal: AbortSignal.timeout(20_000) });
  return handle.dataAggregator.getNewData(id).reverse().map((item) => item.value as T);
}

/** Takes new data for `id` until `count` items came, oldest first. */
async function take<T = unknown>(handle: RuntimeHandle, id: CallerId, count: number): Promise<T[]> {
  const items: T[] = [];
  while (items.length < count) items.push(...await next<T>(handle, id));
  return items;
}

for (const isolation of ["in-process", "worker"] as RuntimeIsolation[]) {
  const server: RuntimeConfigOptions = { role: "server", isolation };
  const client: RuntimeConfigOptions = { role: "client", isolation };

  Deno.test(`runtime e2e catalogue (${isolation})`, async (t) => {
    for (const [number, config] of [[1, server], [11, client]] as const) {
      await t.step(
        `#${number} a ${config.role} FakeRuntime gives one FRESH item after start and one STOPPED after stop`,
        async () => {
          await using runtimes = manager();
          const id = CallerId.random();
          const handle = runtimes.register(
            { module: MODULE, export: "FakeRuntime", params: { testId: id.toString(), port: 443 } },
            config,
          );
          assert.equal(handle.dataAggregator.hasNewData(id), false);
          await runtimes.start();
          assert.equal(handle.state, "running");
          const fresh = await handle.dataAggregator.waitForNewData({
            callerId: id,
            signal: AbortSignal.timeout(20_000),
          })
            .then(() => handle.dataAggregator.getNewData(id));
          assert.equal(fresh.length, 1);
          const [item] = fresh as RemoteDataItem<{ value: string }>[];
          assert.deepEqual(item.value, { value: "FRESH_SIMPLE_DATA_V2" });
          assert.ok(item.callerId.equals(id));
          assert.ok(Number.isSafeInteger(item.timestamp));
          assert.equal(handle.dataAggregator.hasNewData(id), false);
          await handle.stop();
          // Fixes bug 3: stop resolves after the last item is in the aggregator.
          const stopped = handle.dataAggregator.getNewData(id) as RemoteDataItem<{
            value: string;
          }>[];
          assert.deepEqual(stopped.map((i) => i.value), [{ value: "STOPPED" }]);
          assert.ok(stopped[0].callerId.equals(id));
          assert.equal(handle.dataAggregator.hasNewData(id), false);
          runtimes.watcher.checkForException();
        },
      );
    }

    await t.step("#2 tensors arrive equal to the sent ones, with their caller", async () => {
      await using runtimes = manager();
      const id = CallerId.random();
      const handle = runtimes.register(
        { module: MODULE, export: "TensorSource", params: { testId: id.toString(), port: 444 } },
        server,
      );
      await runtimes.start();
      const [first] = await next<{ shape: number[]; data: Float32Array }>(handle, id);
      assert.deepEqual(first.shape, [2, 2]);
      assert.ok(first.data instanceof Float32Array);
      assert.deepEqual([...first.data], [1, 2, 3, 4]);
      await handle.stop();
      const [last] = handle.dataAggregator.getNewData(id).map((item) =>
        item.value as { shape: number[]; data: Float32Array }
      );
      assert.deepEqual([last.shape, [...last.data]], [[1, 2], [-1, -1]]);
      runtimes.watcher.checkForException();
    });

    await t.step("#3 a tensor event is answered with its sum", async () => {
      await using runtimes = manager();
      const id = CallerId.random();
      const handle = runtimes.register(
        {
          module: MODULE,
          export: "TensorEventProcessor",
          params: { testId: id.toString(), port: 446 },
        },
        server,
      );
      await runtimes.start();
      // Fixes bug 6: no sleep before the first event; it waits for its caller.
      await handle.onEvent(Float32Array.of(10, 20, 30), { callerId: id });
      assert.deepEqual(await next(handle, id), ["processed_tensor_event_60.0"]);
      await handle.stop();
      runtimes.watcher.checkForException();
    });

    await t.step("#4 tensor data and tensor events round-trip", async () => {
      await using runtimes = manager();
      const id = CallerId.random();
      const handle = runtimes.register(
        { module: MODULE, export: "TensorResponder", params: { testId: id.toString(), port: 447 } },
        server,
      );
      await runtimes.start();
      const [initial] = await next<Float32Array>(handle, id);
      assert.deepEqual([...initial], [250, 350]);
      await handle.onEvent(Float32Array.of(25, 75), { callerId: id });
      const [response] = await next<Float32Array>(handle, id);
      assert.deepEqual([...response], [800, 900]);
      await handle.stop();
      const [last] = handle.dataAggregator.getNewData(id).map((item) => item.value as Float32Array);
      assert.deepEqual([...last], [-999]);
      runtimes.watcher.checkForException();
    });

    await t.step("#5 fifty events give fifty distinct responses, none lost", async () => {
      await using runtimes = manager();
      const id = CallerId.random();
      const handle = runtimes.register(
        { module: MODULE, export: "TensorResponder", params: { testId: id.toString(), port: 447 } },
        server,
      );
      await runtimes.start();
      await next(handle, id); // the initial [250, 350]
      const base = Date.now() * 1000;
      for (let i = 0; i < 50; i++) {
        // Distinct timestamps, as the original's 10 ms spacing gave.
        await handle.onEvent(Float32Array.of(i + 5, 1.5 * (i + 5)), {
          callerId: id,
          timestamp: base + i,
        });
      }
      const responses = await take<Float32Array>(handle, id, 50);
      const expected = Array.from({ length: 50 }, (_, i) => {
        const total = (i + 5) * 2.5;
        return [700 + total, 800 + total];
      });
      assert.deepEqual(responses.map((r) => [...r]), expected);
      await handle.stop();
      const [last] = handle.dataAggregator.getNewData(id).map((item) => item.value as Float32Array);
      assert.deepEqual([...last], [-999]);
      runtimes.watcher.checkForException();
    });

    for (
      const [number, kind, message, role, wait] of [
        [6, "range", "RemoteFailureOops", "server", "check"],
        [7, "type", "RemoteRunUntilFailure", "client", "until"],
        [13, "direct", "DirectBlockError", "server", "until"],
      ] as const
    ) {
      await t.step(
        `#${number} a ${kind} error in start reaches the watcher with its class and message`,
        async () => {
          await using runtimes = manager();
          const handle = runtimes.register(
            { module: MODULE, export: "ErrorThrowingRuntime", params: { kind, message } },
            { role, isolation },
          );
          // Fixes bug 1: the failure of the one start rejects it, too.
          await assert.rejects(runtimes.start(), (error: Error) => error.message === message);
          assert.equal(handle.state, "failed");
          const expected = kind === "range"
            ? RangeError
            : kind === "type"
            ? TypeError
            : DirectBlockError;
          if (wait === "check") {
            assert.throws(() => runtimes.watcher.checkForException(), expected);
          } else {
            const started = performance.now();
            await assert.rejects(
              runtimes.watcher.untilException({ timeoutMs: 5_000 }),
              (error: Error) =>
                error instanceof expected && error.constructor === expected &&
                error.message === message,
            );
            assert.ok(performance.now() - started < 5_000);
          }
        },
      );
    }

    await t.step(
      "#6b an error reported in the background after start reaches the watcher",
      async () => {
        await using runtimes = manager();
        const handle = runtimes.register(
          {
            module: MODULE,
            export: "ErrorThrowingRuntime",
            params: { kind: "range", message: "LaterOops", background: true },
          },
          server,
        );
        await runtimes.start();
        assert.equal(handle.state, "running");
        await assert.rejects(
          runtimes.watcher.untilException({ timeoutMs: 10_000 }),
          (error: Error) => error instanceof RangeError && error.message === "LaterOops",
        );
      },
    );

    await t.step(
      "#8 without start() nothing runs (fixes bug 1: no auto-start); start() then fails visibly",
      async () => {
        await using runtimes = manager();
        const handle = runtimes.register(
          {
            module: MODULE,
            export: "ErrorThrowingRuntime",
            params: { kind: "range", message: "InProcessFailureOops" },
          },
          server,
        );
        runtimes.watcher.checkForException();
        assert.equal(handle.state, "registered");
        await assert.rejects(handle.start(), RangeError);
        assert.throws(() => runtimes.watcher.checkForException(), /InProcessFailureOops/);
      },
    );

    for (const [number, kind] of [[9, "type"], [12, "range"]] as const) {
      await t.step(
        `#${number} an initializer that throws fails start and reaches the watcher`,
        async () => {
          await using runtimes = manager();
          runtimes.register(
            { module: MODULE, export: "CreateFails", params: { kind, message: "CreateOops" } },
            server,
          );
          const expected = kind === "type" ? TypeError : RangeError;
          await assert.rejects(runtimes.start(), expected);
          assert.throws(() => runtimes.watcher.checkForException(), expected, "CreateOops");
        },
      );
    }

    await t.step("#10 two runtimes each see only their own data and stop apart", async () => {
      await using runtimes = manager();
      const ids = [CallerId.random(), CallerId.random()];
      const handles = ids.map((id) =>
        runtimes.register(
          { module: MODULE, export: "FakeRuntime", params: { testId: id.toString(), port: 443 } },
          server,
        )
      );
      await runtimes.start();
      for (const [i, handle] of handles.entries()) {
        assert.deepEqual(await next(handle, ids[i]), [{ value: "FRESH_SIMPLE_DATA_V2" }]);
        assert.deepEqual(handle.dataAggregator.callerIds.map(String), [ids[i].toString()]);
      }
      await handles[0].stop();
      assert.deepEqual(handles[0].dataAggregator.getNewData(ids[0]).map((i) => i.value), [
        { value: "STOPPED" },
      ]);
      assert.equal(handles[1].state, "running");
      assert.equal(handles[1].dataAggregator.hasNewData(ids[1]), false);
      await handles[1].stop();
      assert.deepEqual(handles[1].dataAggregator.getNewData(ids[1]).map((i) => i.value), [
        { value: "STOPPED" },
      ]);
      runtimes.watcher.checkForException();
    });

    await t.step(
      "#14 a broadcast event reaches both callers, each answering for itself",
      async () => {
        await using runtimes = manager();
        const ids = [CallerId.random(), CallerId.random()];
        const handle = runtimes.register(
          {
            module: MODULE,
            export: "BroadcastListener",
            params: { ids: ids.map(String) },
          },
          server,
        );
        await runtimes.start();
        await handle.onEvent({ kind: "FakeEvent" });
        for (const id of ids) {
          assert.deepEqual(await next(handle, id), [
            `event_for_${id.toString().slice(0, 8)}:broadcast`,
          ]);
        }
        await handle.stop();
        runtimes.watcher.checkForException();
      },
    );

    await t.step("events sent before start wait for their caller to register", async () => {
      await using runtimes = manager();
      const id = CallerId.random();
      const handle = runtimes.register(
        { module: MODULE, export: "LateEcho", params: { testId: id.toString() } },
        server,
      );
      const base = Date.now() * 1000;
      const sent = [handle.onEvent("a", { callerId: id, timestamp: base + 10 })];
      const starting = runtimes.start();
      sent.push(handle.onEvent("b", { callerId: id, timestamp: base + 20 }));
      await starting;
      assert.deepEqual(await Promise.all(sent), [true, true]);
      const items = await take(handle, id, 2);
      assert.deepEqual(items, ["a", "b"]);
      assert.deepEqual(
        handle.dataAggregator.getDataForTimestamp(base + 20, id)?.value,
        "b",
        "event timestamps come back as local time",
      );
      await handle.stop();
      assert.equal(handle.eventStats?.received, 2);
      assert.equal(handle.eventStats?.delivered, 2);
      runtimes.watcher.checkForException();
    });

    await t.step(
      "two items with one timestamp are both kept (fixes bug 7; dedupeByTimestamp restores it)",
      async () => {
        await using runtimes = manager();
        const id = CallerId.random();
        const kept = runtimes.register(
          { module: MODULE, export: "SameTimestamp", params: { testId: id.toString() } },
          server,
        );
        const deduped = runtimes.register(
          { module: MODULE, export: "SameTimestamp", params: { testId: id.toString() } },
          server,
          { aggregator: { dedupeByTimestamp: true } },
        );
        await runtimes.start();
        await kept.stop();
        await deduped.stop();
        assert.deepEqual(kept.dataAggregator.getNewData(id).map((i) => i.value), [
          "second",
          "first",
        ]);
        assert.deepEqual(deduped.dataAggregator.getNewData(id).map((i) => i.value), ["second"]);
      },
    );

    await t.step("shutdown stops every runtime gracefully, its last data kept", async () => {
      const runtimes = manager();
      const id = CallerId.random();
      const handle = runtimes.register(
        { module: MODULE, export: "FakeRuntime", params: { testId: id.toString(), port: 443 } },
        server,
      );
      await runtimes.start();
      await next(handle, id);
      await runtimes.shutdown({ deadlineMs: 5_000 });
      assert.equal(handle.state, "stopped");
      assert.deepEqual(handle.dataAggregator.getNewData(id).map((i) => i.value), [
        { value: "STOPPED" },
      ]);
      assert.equal(handle.dataAggregator.stopped, true);
      runtimes.watcher.checkForException();
    });

    await t.step("events and data() are refused where they do not apply", async () => {
      await using runtimes = manager();
      const handle = runtimes.register(
        { module: MODULE, export: "FakeRuntime", params: { testId: CallerId.random().toString() } },
        server,
      );
      await assert.rejects(handle.onEvent(1, { callerId: "x" as unknown as CallerId }), TypeError);
      await assert.rejects(handle.onEvent(1, { timestamp: 1.5 }), TypeError);
      await assert.rejects(handle.data().next(), TypeError);
      await handle.stop();
      await assert.rejects(handle.onEvent(1), TypeError);
    });
  });
}
