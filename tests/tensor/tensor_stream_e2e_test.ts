/**
 * Tensor streams end to end between two Workers: a source runtime serving
 * TensorStream over gRPC, and the built-in TensorStreamFollower runtime
 * rebuilding it into its caller's aggregator (spec tensor.md §6.10).
 *
 * @module
 */

import assert from "node:assert/strict";
import { CallerId } from "../../rpc/caller_id.ts";
import type { RemoteDataItem } from "../../runtime/remote_data_aggregator.ts";
import { type RuntimeHandle, RuntimeManager } from "../../runtime/runtime_manager.ts";
import {
  tensorStreamFollower,
  type TensorStreamSample,
} from "../../runtime/tensor_stream_follower.ts";
import type { StreamSourceParams } from "./_stream_runtimes.ts";

const SOURCE = import.meta.resolve("./_stream_runtimes.ts");

/** Waits for the next new item of `id` that `match` accepts. */
async function report<T>(handle: RuntimeHandle, id: CallerId, key: string): Promise<T> {
  for (;;) {
    await handle.dataAggregator.waitForNewData({
      callerId: id,
      signal: AbortSignal.timeout(20_000),
    });
    for (const item of handle.dataAggregator.getNewData(id)) {
      const value = item.value as Record<string, unknown>;
      if (key in value) return value[key] as T;
    }
  }
}

/** The last value the follower delivered for each timestamp. */
function lastPerTimestamp(items: RemoteDataItem<unknown>[]): Map<number, number[]> {
  const out = new Map<number, number[]>();
  // getNewData is newest first: the first seen per timestamp is the last delivered.
  for (const item of items) {
    if (out.has(item.timestamp)) continue;
    const sample = item.value as TensorStreamSample;
    assert.ok(sample.values instanceof Float32Array, "a Float32Array arrives");
    out.set(item.timestamp, [...(sample.values as Float32Array)]);
  }
  return out;
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
  const seen: RemoteDataItem<unknown>[] = [];
  const matches = () => {
    const rebuilt = lastPerTimestamp([...seen].reverse());
    return [...expected].every(([t, v]) => JSON.stringify(rebuilt.get(t)) === JSON.stringify(v));
  };
  while (!matches()) {
    await handle.dataAggregator.waitForNewData({
      callerId: follower,
      signal: AbortSignal.timeout(20_000),
    });
    seen.push(...handle.dataAggregator.getNewData(follower).reverse());
  }
  // The follower first (its channel closes before the source's server stops).
  await handle.stop();
  await sources.shutdown();
  sources.watcher.checkForException();
  followers.watcher.checkForException();
  return { rebuilt: lastPerTimestamp([...seen].reverse()), expected };
}

Deno.test("§6.10 between two Workers over gRPC", async (t) => {
  const base = Date.now() * 1000;
  const scenarios: [string, [number, number[]][]][] = [
    ["1. one snapshot", [[1, [1, 2, 3, 4]]]],
    ["2. two snapshots, the first unchanged by the second", [[1, [1, 1, 1]], [2, [1, 2, 1]]]],
    ["3. a late middle snapshot", [[1, [1, 1, 1, 1]], [3, [3, 3, 3, 3]], [2, [2, 2, 2, 2]]]],
    ["4. a late first snapshot", [[2, [1, 2, 3, 4, 5]], [1, [1, 4, 4, 4, 4]]]],
    ["5. one late among four", [[1, [1, 1, 1]], [3, [3, 3, 3]], [4, [4, 4, 4]], [2, [2, 2, 2]]]],
    ["7. a replaced first snapshot", [
      [1, [1, 1, 1]],
      [2, [2, 2, 2]],
      [3, [3, 3, 3]],
      [4, [4, 4, 4]],
      [1, [1, 5, 1]],
    ]],
  ];
  for (const sparse of [false, true]) {
    for (const [name, script] of scenarios) {
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
