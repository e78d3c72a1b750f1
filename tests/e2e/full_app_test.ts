/**
 * The full-app scenarios of spec/runtime.md §14 (`full_app_e2etest.py`),
 * with real components: runtimes in Workers under one RuntimeManager, real
 * gRPC, and real mDNS inside a private network namespace (no fake listener).
 */

import assert from "node:assert/strict";
import { netnsTest } from "../netns/mod.ts";
import { connectChannel } from "../../rpc/mod.ts";
import { type RuntimeDataItem, type RuntimeHandle, RuntimeManager } from "../../runtime/mod.ts";
import { EchoService, type FullAppItem } from "./_full_app_runtimes.ts";

const RUNTIMES = import.meta.resolve("./_full_app_runtimes.ts");

/** Collects a stream-delivery handle's items; `until` resolves with the first that matches. */
function collect(handle: RuntimeHandle) {
  const items: FullAppItem[] = [];
  const waiters: { match: (item: FullAppItem) => boolean; resolve: (i: FullAppItem) => void }[] =
    [];
  const done = (async () => {
    for await (const item of handle.data() as AsyncIterable<RuntimeDataItem>) {
      const value = item.value as FullAppItem;
      items.push(value);
      for (const waiter of waiters.filter((w) => w.match(value))) {
        waiters.splice(waiters.indexOf(waiter), 1);
        waiter.resolve(value);
      }
    }
  })();
  return {
    items,
    done,
    until(match: (item: FullAppItem) => boolean, timeoutMs: number, what: string) {
      const found = items.find(match);
      if (found !== undefined) return Promise.resolve(found);
      return new Promise<FullAppItem>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`no ${what} within ${timeoutMs} ms`)),
          timeoutMs,
        );
        waiters.push({
          match,
          resolve: (item) => {
            clearTimeout(timer);
            resolve(item);
          },
        });
      });
    },
  };
}

netnsTest(
  "a discovering runtime connects to an advertising runtime over mDNS and gRPC",
  async (t) => {
    const manager = new RuntimeManager();
    const errors: unknown[] = [];
    manager.watcher.addListener((error) => errors.push(error));
    try {
      const advertiser = manager.register(
        { module: RUNTIMES, export: "Advertiser", params: "anomaly service" },
        { role: "server", delivery: "stream" },
      );
      const discoverer = manager.register(
        { module: RUNTIMES, export: "Discoverer" },
        { role: "client", delivery: "stream" },
      );
      const advertised = collect(advertiser);
      const discovered = collect(discoverer);

      await t.step("nothing connects before start (no auto-start)", () => {
        assert.equal(advertiser.state, "registered");
        assert.equal(discoverer.state, "registered");
        assert.deepEqual(discovered.items, []);
      });

      await t.step("after start, the channel is connected within 2 s of publishing", async () => {
        await manager.start();
        const serving = await advertised.until((i) => i.kind === "serving", 5_000, "serving");
        await advertised.until((i) => i.kind === "published", 5_000, "published");
        const started = performance.now();
        const connected = await discovered.until((i) => i.kind === "connected", 5_000, "connect");
        assert.ok(performance.now() - started < 2_000, "connected later than 2 s after publishing");
        assert.deepEqual(connected, {
          kind: "connected",
          name: "anomaly service",
          port: (serving as { port: number }).port,
        });
      });

      await t.step("no runtime reported an error, and both stop", async () => {
        await discoverer.stop();
        await advertiser.stop();
        assert.equal(discoverer.state, "stopped");
        assert.equal(advertiser.state, "stopped");
        assert.deepEqual(errors, []);
      });
    } finally {
      await manager.shutdown({ deadlineMs: 5_000 });
    }
  },
  { file: import.meta.url },
);

Deno.test("a runtime's gRPC service answers unary and client-streaming calls", async (t) => {
  const manager = new RuntimeManager();
  const errors: unknown[] = [];
  manager.watcher.addListener((error) => errors.push(error));
  try {
    const server = manager.register(
      { module: RUNTIMES, export: "EchoServer" },
      { role: "server", delivery: "stream" },
    );
    const seen = collect(server);
    await manager.start();
    const serving = await seen.until((i) => i.kind === "serving", 5_000, "serving");
    const channel = await connectChannel("127.0.0.1", (serving as { port: number }).port);
    try {
      await t.step("Echo answers and the servicer recorded the request", async () => {
        const answer = await channel.unary(EchoService.methods.Echo, "Hello GRPC E2E");
        assert.equal(answer, "Server echoes: Hello GRPC E2E");
        await seen.until((i) => i.kind === "recorded" && i.method === "Echo", 5_000, "record");
        assert.deepEqual(seen.items.filter((i) => i.kind === "recorded"), [
          { kind: "recorded", method: "Echo", value: "Hello GRPC E2E" },
        ]);
      });

      await t.step("a client stream of three requests is counted", async () => {
        const answer = await channel.clientStream(EchoService.methods.ClientStream, [
          "one",
          "two",
          "three",
        ]);
        assert.equal(answer, "ClientStreamData received 3 messages");
        await seen.until(
          (i) => i.kind === "recorded" && i.method === "ClientStream" && i.value === "three",
          5_000,
          "the third record",
        );
        const recorded = seen.items.filter((i) =>
          i.kind === "recorded" && i.method === "ClientStream"
        );
        assert.deepEqual(recorded.map((i) => (i as { value: string }).value), [
          "one",
          "two",
          "three",
        ]);
      });
    } finally {
      channel.close();
    }
    await t.step("the runtime stops without errors", async () => {
      await server.stop();
      assert.deepEqual(errors, []);
    });
  } finally {
    await manager.shutdown({ deadlineMs: 5_000 });
  }
});
