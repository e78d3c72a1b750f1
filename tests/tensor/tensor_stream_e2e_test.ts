/**
 * Tensor streams end to end between two Workers: a source runtime serving
 * TensorStream over gRPC, and the built-in TensorStreamFollower runtime
 * rebuilding it into its caller's aggregator (spec tensor.md §6.10).
 *
 * @module
 */

import assert from "node:assert/strict";
import { CallerId } from "../../rpc/caller_id.ts";
import { type RuntimeHandle, RuntimeManager } from "../../runtime/runtime_manager.ts";
import {
  tensorStreamFollower,
  type TensorStreamSample,
} from "../../runtime/tensor_stream_follower.ts";
import type { StreamSourceParams } from "./_stream_runtimes.ts";
import { STREAM_SCENARIOS } from "./_stream_scenarios.ts";

const SOURCE = import.meta.resolve("./_stream_runtimes.ts");

/** Waits for the next new item of `id` that has `key`; returns that item's value. */
async function reportOf(
  handle: RuntimeHandle,
  id: CallerId,
  key: string,
): Promise<Record<string, unknown>> {
  for (;;) {
    await handle.dataAggregator.waitForNewData({
      callerId: id,
      signal: AbortSignal.timeout(20_000),
    });
    for (const item of handle.dataAggregator.getNewData(id)) {
      const value = item.value as Record<string, unknown>;
      if (key in value) return value;
    }
  }
}

/** Waits for the next new item of `id` that has `key`; returns `value[key]`. */
async function report<T>(handle: RuntimeHandle, id: CallerId, key: string): Promise<T> {
  return (await reportOf(handle, id, key))[key] as T;
}

/** Streams `steps` from a source Worker to a follower Worker; returns what the follower rebuilt. */
async function streamBetweenWorkers(
  steps: [number, number[]][],
  sparse: boolean,
): Promise<{ rebuilt: Map<number, number[]>; expected: Map<number, number[]> }> {
  await using sources = new RuntimeManager();
  await using followers = new RuntimeManager();
  const reporter = CallerId.random();
  const params: StreamSourceParams = {
    reporter: reporter.toString(),
    length: steps[0][1].length,
    sparse,
    steps,
    hostname: "127.0.0.1",
  };
  const source = sources.register({ module: SOURCE, export: "StreamSource", params }, {
    role: "server",
  });
  await sources.start();
  const port = await report<number>(source, reporter, "port");
  const follower = CallerId.random();
  const handle = followers.register(
    tensorStreamFollower({ address: "127.0.0.1", port, callerId: follower.toString() }),
    { role: "client" },
  );
  await followers.start();
  assert.equal(await report<number>(source, reporter, "done"), steps.length);
  const expected = new Map<number, number[]>();
  for (const [timestamp, values] of steps) expected.set(timestamp, values);
  // Read by timestamp: a late or replaced snapshot lands below the "new data" watermark (and
  // raises no notification), so poll, bounded, until every timestamp holds its values.
  const aggregator = handle.dataAggregator;
  const rebuiltAt = (timestamp: number) => {
    const item = aggregator.getDataForTimestamp(timestamp, follower);
    if (item === undefined || item.timestamp !== timestamp) return undefined;
    const sample = item.value as TensorStreamSample;
    assert.ok(sample.values instanceof Float32Array, "a Float32Array arrives");
    return [...(sample.values as Float32Array)];
  };
  const matches = () =>
    aggregator.callerIds.length > 0 &&
    [...expected].every(([t, v]) => JSON.stringify(rebuiltAt(t)) === JSON.stringify(v));
  for (let i = 0; i < 1_000 && !matches(); i++) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const rebuilt = new Map([...expected.keys()].map((t) => [t, rebuiltAt(t)!]));
  // The follower first (its channel closes before the source's server stops).
  await handle.stop();
  await sources.shutdown();
  sources.watcher.checkForException();
  followers.watcher.checkForException();
  return { rebuilt, expected };
}

Deno.test("§6.10 between two Workers over gRPC", async (t) => {
  const base = Date.now() * 1000;
  for (const sparse of [false, true]) {
    for (const [name, script] of STREAM_SCENARIOS) {
      await t.step(`${name} (${sparse ? "sparse diffs" : "whole snapshots"})`, async () => {
        const steps = script.map(([at, values]): [number, number[]] => [base + at * 1000, values]);
        const { rebuilt, expected } = await streamBetweenWorkers(steps, sparse);
        for (const [timestamp, values] of expected) {
          assert.deepEqual(rebuilt.get(timestamp), values, `at +${timestamp - base} µs`);
        }
      });
    }
  }
});

Deno.test("§6.10 6. between two Workers: a snapshot out of the window is gone, a late one refused", async () => {
  // A 0.1 s window on both ends. Expiry follows the data's timestamps, not the wall clock.
  const base = Date.now() * 1000;
  const t0 = base;
  const t1 = base + 10_000_000;
  await using sources = new RuntimeManager();
  await using followers = new RuntimeManager();
  const reporter = CallerId.random();
  const params: StreamSourceParams = {
    reporter: reporter.toString(),
    length: 2,
    sparse: false,
    steps: [[t0, [1, 1]], [t1, [2, 2]]],
    hostname: "127.0.0.1",
    dataTimeoutMicros: 100_000,
    late: [t0 + 1, [3, 3]],
  };
  const source = sources.register({ module: SOURCE, export: "StreamSource", params }, {
    role: "server",
  });
  await sources.start();
  const port = await report<number>(source, reporter, "port");
  const follower = CallerId.random();
  const handle = followers.register(
    tensorStreamFollower({
      address: "127.0.0.1",
      port,
      callerId: follower.toString(),
      dataTimeoutMicros: 100_000,
    }),
    { role: "client", dataTimeoutMicros: 100_000 },
  );
  await followers.start();
  const done = await reportOf(source, reporter, "done");
  // The source no longer holds T0, still holds T1, and refuses a snapshot older than its window.
  assert.deepEqual(done.held, [false, true]);
  assert.equal(done.late, "StaleDataError");
  // The follower's aggregator ends with T1 exact and T0 pruned from the same window.
  const aggregator = handle.dataAggregator;
  const at = (t: number) => {
    if (aggregator.callerIds.length === 0) return null;
    const item = aggregator.getDataForTimestamp(t, follower);
    return item?.timestamp === t
      ? [...((item.value as TensorStreamSample).values as Float32Array)]
      : null;
  };
  for (let i = 0; i < 500 && JSON.stringify(at(t1)) !== "[2,2]"; i++) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  assert.deepEqual(at(t1), [2, 2]);
  assert.equal(at(t0), null);
  await handle.stop();
  await sources.shutdown();
  sources.watcher.checkForException();
  followers.watcher.checkForException();
});
