/**
 * Tensor streams over a real gRPC stream on loopback: TensorStreamServer
 * behind a GrpcServicePublisher, TensorStreamSubscription over a channel.
 *
 * @module
 */

import assert from "node:assert/strict";
import { CallerId } from "../../rpc/caller_id.ts";
import { connectChannel } from "../../rpc/channel_factory.ts";
import type { GrpcChannel } from "../../rpc/grpc_channel.ts";
import { GrpcServicePublisher } from "../../rpc/grpc_service_publisher.ts";
import { GrpcStatus, GrpcStatusError } from "../../rpc/grpc_types.ts";
import { ManualScheduler } from "../../rpc/scheduler.ts";
import {
  TensorStreamServer,
  type TensorStreamServerOptions,
} from "../../tensor/tensor_stream_server.ts";
import {
  TensorStreamIdleError,
  TensorStreamSubscription,
} from "../../tensor/tensor_stream_subscription.ts";
import { SUBSCRIBE_METHOD } from "../../tensor/_tensor_stream_wire.ts";
import { STREAM_SCENARIOS } from "./_stream_scenarios.ts";

const HOST = "127.0.0.1";
const BASE = 1_700_000_000_000_000;

interface Rig {
  server: TensorStreamServer<"float32">;
  publisher: GrpcServicePublisher;
  channel: GrpcChannel;
  [Symbol.asyncDispose](): Promise<void>;
}

/** A stream server on a fresh port and a channel to it; disposing closes the channel first. */
async function rig(
  initial: Float32Array,
  options: Partial<TensorStreamServerOptions<"float32">> = {},
): Promise<Rig> {
  const server = new TensorStreamServer(initial, {
    dtype: "float32",
    keyframeIntervalMs: null,
    ...options,
  });
  const publisher = new GrpcServicePublisher({ addresses: HOST, port: 0 });
  publisher.addService(TensorStreamServer.service, { Subscribe: server.handler() });
  const { port } = await publisher.start();
  const channel = await connectChannel(HOST, port);
  return {
    server,
    publisher,
    channel,
    async [Symbol.asyncDispose]() {
      // Close the channel before the server stops (see README, known limitations).
      channel.close();
      server.close();
      await publisher.stop({ graceMs: 0 });
    },
  };
}

function subscribe(channel: GrpcChannel, extra: Record<string, unknown> = {}) {
  return TensorStreamSubscription.open<"float32">(channel, {
    callerId: CallerId.random(),
    overflow: "drop-oldest",
    capacity: 1,
    ...extra,
  });
}

/** Waits until `subscription` has applied everything up to `sequence`. */
async function until(check: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 2_000 && !check(); i++) {
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  assert.ok(check(), `timed out waiting for ${what}`);
}

function same(a: Float32Array | null, b: Float32Array | null): boolean {
  if (a === null || b === null) return a === b;
  return a.length === b.length && a.every((v, i) => Object.is(v, b[i]));
}

Deno.test("a subscriber gets the initializer and rebuilds every update exactly", async () => {
  await using r = await rig(Float32Array.of(0, 0, 7, 0));
  await using sub = await subscribe(r.channel);
  assert.deepEqual(sub.initializer.shape, [4]);
  assert.equal(sub.initializer.dtype, "float32");
  assert.equal(sub.initializer.fillValue, 0);
  await r.server.update(Float32Array.of(1, 0, 7, 0), BASE + 1);
  await r.server.update(Float32Array.of(1, 2, 7, 0), BASE + 2);
  await until(() => sub.receiver.getTensorAt(BASE + 2) !== null, "the second update");
  assert.deepEqual([...sub.receiver.getTensorAt(BASE + 1)!], [1, 0, 7, 0]);
  assert.deepEqual([...sub.receiver.getTensorAt(BASE + 2)!], [1, 2, 7, 0]);
  assert.equal(sub.counters.gaps, 0);
});

Deno.test("spec tensor.md §6.10 over gRPC: whole snapshots, late and replaced", async (t) => {
  for (const [name, steps] of STREAM_SCENARIOS) {
    await t.step(name, async () => {
      const length = steps[0][1].length;
      await using r = await rig(new Float32Array(length), { sparse: false });
      await using sub = await subscribe(r.channel);
      for (const [at, values] of steps) await r.server.update(Float32Array.from(values), BASE + at);
      const expected = new Map<number, number[]>();
      for (const [at, values] of steps) expected.set(BASE + at, values);
      await until(
        () =>
          [...expected].every(([at, values]) =>
            same(sub.receiver.getTensorAt(at), Float32Array.from(values))
          ),
        name,
      );
    });
  }
});

Deno.test("10,000 updates submitted in random order are rebuilt exactly at every timestamp", async () => {
  const length = 64;
  const count = 10_000;
  await using r = await rig(new Float32Array(length), {
    maxBatchBytes: 64 * 1024,
    lz4MinBytes: 128,
  });
  await using sub = await subscribe(r.channel);
  // Seeded random walk: each snapshot changes a few elements of the one before it.
  let seed = 42;
  const random = () => (seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648) / 2_147_483_648;
  const snapshots: Float32Array[] = [];
  let current = new Float32Array(length);
  for (let i = 0; i < count; i++) {
    current = current.slice();
    for (let k = 0; k < 3; k++) current[Math.floor(random() * length)] = Math.round(random() * 100);
    snapshots.push(current);
  }
  const order = snapshots.map((_, i) => i);
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  for (const i of order) await r.server.update(snapshots[i], BASE + i);
  await until(() => {
    return sub.counters.chunks > 0 && r.server.counters.messages === sub.counters.messages;
  }, "every message");
  let wrong = 0;
  for (let i = 0; i < count; i++) {
    if (!same(sub.receiver.getTensorAt(BASE + i), snapshots[i])) wrong++;
  }
  assert.equal(wrong, 0);
  assert.equal(sub.counters.gaps, 0);
});

Deno.test("a restarted subscriber converges from the keyframe it gets on connect", async () => {
  await using r = await rig(new Float32Array(8), { keyframeDepth: 2 });
  const first = await subscribe(r.channel);
  await r.server.update(Float32Array.of(1, 1, 1, 1, 1, 1, 1, 1), BASE + 1);
  await until(() => first.receiver.getTensorAt(BASE + 1) !== null, "the first update");
  await first.close();
  // Updates the subscriber misses while it is away.
  await r.server.update(Float32Array.of(1, 2, 1, 1, 1, 1, 1, 1), BASE + 2);
  await r.server.update(Float32Array.of(1, 2, 3, 1, 1, 1, 1, 1), BASE + 3);
  await using second = await subscribe(r.channel);
  await until(() => second.counters.keyframes >= 1, "the keyframe");
  assert.deepEqual([...second.receiver.getTensorAt(BASE + 3)!], [1, 2, 3, 1, 1, 1, 1, 1]);
  assert.deepEqual([...second.receiver.getTensorAt(BASE + 2)!], [1, 2, 1, 1, 1, 1, 1, 1]);
  await r.server.update(Float32Array.of(9, 2, 3, 1, 1, 1, 1, 1), BASE + 4);
  await until(() => second.receiver.getTensorAt(BASE + 4) !== null, "the next update");
  assert.deepEqual([...second.receiver.getTensorAt(BASE + 4)!], [9, 2, 3, 1, 1, 1, 1, 1]);
});

Deno.test("keyframes repeat every keyframeIntervalMs", async () => {
  const scheduler = new ManualScheduler();
  await using r = await rig(new Float32Array(2), { keyframeIntervalMs: 500, scheduler });
  await using sub = await subscribe(r.channel);
  await r.server.update(Float32Array.of(1, 2), BASE + 1);
  await until(() => sub.counters.keyframes === 1 && sub.counters.chunks >= 1, "the first");
  scheduler.advance(500);
  await until(() => sub.counters.keyframes === 2, "the periodic keyframe");
  assert.equal(r.server.counters.keyframes, 2);
});

Deno.test("a subscription without a caller id or for another stream is refused", async () => {
  await using r = await rig(new Float32Array(2), { name: "imu" });
  const noId = r.channel.bidiStream(SUBSCRIBE_METHOD, [{ stream: "imu" }]);
  await assert.rejects(
    Array.fromAsync(noId),
    (error: GrpcStatusError) => error.code === GrpcStatus.INVALID_ARGUMENT,
  );
  await assert.rejects(
    subscribe(r.channel, { stream: "depth" }),
    (error: GrpcStatusError) =>
      error instanceof GrpcStatusError && error.code === GrpcStatus.NOT_FOUND,
  );
  await using ok = await subscribe(r.channel, { stream: "imu" });
  assert.equal(ok.sequence, 0);
  assert.equal(r.server.counters.refused, 2);
});

Deno.test('a slow subscriber under "resync" is sent keyframes instead of its backlog', async () => {
  await using r = await rig(new Float32Array(1024), {
    overflow: "resync",
    subscriberCapacityBytes: 16 * 1024,
    sparse: false,
  });
  await using sub = await subscribe(r.channel);
  for (let i = 1; i <= 200; i++) {
    await r.server.update(new Float32Array(1024).fill(i), BASE + i);
  }
  await until(
    () => same(sub.receiver.getTensorAt(BASE + 200), new Float32Array(1024).fill(200)),
    "the newest state",
  );
  assert.ok(r.server.counters.resyncs > 0, "the backlog was dropped at least once");
});

Deno.test("a chunk larger than maxBatchBytes is sent in pieces and rebuilt whole", async () => {
  await using r = await rig(new Float32Array(100_000), { maxBatchBytes: 64 * 1024, sparse: false });
  await using sub = await subscribe(r.channel);
  const values = Float32Array.from({ length: 100_000 }, (_, i) => i * 0.5);
  await r.server.update(values, BASE + 1);
  await until(() => same(sub.receiver.getTensorAt(BASE + 1), values), "the whole snapshot");
  // 400,000 bytes in pieces under 64 KiB: at least 7 messages after the initializer.
  assert.ok(sub.counters.messages >= 8, `${sub.counters.messages} messages`);
});

Deno.test("with frames: false the receiver rebuilds without handing out frames", async () => {
  await using r = await rig(new Float32Array(3));
  await using sub = await subscribe(r.channel, { frames: false });
  await r.server.update(Float32Array.of(1, 2, 3), BASE + 1);
  await until(() => sub.receiver.getTensorAt(BASE + 1) !== null, "the update");
  assert.deepEqual(await Array.fromAsync(sub.receiver), []);
});

Deno.test("§6.10 6. a snapshot that falls out of the window is gone on both ends", async () => {
  await using r = await rig(new Float32Array(2), { sparse: false, dataTimeoutMicros: 100_000 });
  await using sub = await subscribe(r.channel, { dataTimeoutMicros: 100_000 });
  await r.server.update(Float32Array.of(1, 1), BASE);
  await until(() => sub.receiver.getTensorAt(BASE) !== null, "the first snapshot");
  await r.server.update(Float32Array.of(2, 2), BASE + 10_000_000);
  await until(() => sub.receiver.getTensorAt(BASE + 10_000_000) !== null, "the second");
  // Expiry follows the data's timestamps, not the wall clock: nothing waits for time to pass.
  assert.equal(r.server.getTensorAt(BASE), null);
  assert.equal(sub.receiver.getTensorAt(BASE), null);
  assert.deepEqual([...sub.receiver.getTensorAt(BASE + 10_000_000)!], [2, 2]);
  // A late snapshot for the expired time is refused by the source.
  await assert.rejects(r.server.update(Float32Array.of(3, 3), BASE + 1), RangeError);
});

Deno.test('under "block" a subscriber that stops reading holds the source back, and loses nothing', async () => {
  await using r = await rig(new Float32Array(1024), {
    sparse: false,
    subscriberCapacityBytes: 16 * 1024,
    maxBatchBytes: 8 * 1024,
  });
  // Frames block the subscription (capacity 1, nobody reads them): it stops reading its call.
  await using sub = await subscribe(r.channel, { overflow: "block", capacity: 1 });
  const total = 300;
  let done = 0;
  const producing = (async () => {
    for (let i = 1; i <= total; i++) {
      await r.server.update(new Float32Array(1024).fill(i), BASE + i);
      done = i;
    }
  })();
  // Wait until the source stops making progress (bounded), then check it stopped early.
  let last = -1;
  for (let i = 0; i < 100 && done !== last; i++) {
    last = done;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  assert.ok(done < total, `the source was held back at ${done} of ${total}`);
  // Reading the frames lets everything through, in order, none lost.
  let frames = 0;
  for await (const frame of sub.receiver) {
    frames++;
    if (frame.timestamp === BASE + total) break;
  }
  await producing;
  assert.equal(frames, total);
  for (const i of [1, 150, total]) {
    assert.ok(same(sub.receiver.getTensorAt(BASE + i), new Float32Array(1024).fill(i)));
  }
});

Deno.test("closing the server ends every subscription; closing a subscription frees its place", async (t) => {
  await t.step("server.close() ends the stream: done resolves and the frames end", async () => {
    await using r = await rig(new Float32Array(2));
    const sub = await subscribe(r.channel, { capacity: 8 });
    await r.server.update(Float32Array.of(1, 2), BASE + 1);
    await until(() => sub.receiver.getTensorAt(BASE + 1) !== null, "the update");
    r.server.close();
    await sub.done;
    const frames = await Array.fromAsync(sub.receiver);
    assert.deepEqual(frames.map((f) => f.timestamp), [BASE + 1]);
    await assert.rejects(r.server.update(Float32Array.of(3, 4), BASE + 2), TypeError);
  });

  await t.step("subscription.close() cancels the call and the server forgets it", async () => {
    await using r = await rig(new Float32Array(2));
    const sub = await subscribe(r.channel);
    await until(() => r.server.subscribers === 1, "the subscriber");
    await sub.close();
    await until(() => r.server.subscribers === 0, "the server to forget it");
    await assert.rejects(sub.done);
  });
});

Deno.test("idleTimeoutMs ends a silent subscription and is reset by every message", async (t) => {
  await t.step(
    "a source that sends nothing for idleTimeoutMs ends it with TensorStreamIdleError",
    async () => {
      await using r = await rig(new Float32Array(2));
      const scheduler = new ManualScheduler();
      const sub = await subscribe(r.channel, { idleTimeoutMs: 1_000, scheduler, capacity: 8 });
      assert.equal(scheduler.pending, 1);
      scheduler.advance(999);
      assert.equal(scheduler.pending, 1, "still waiting just before the timeout");
      scheduler.advance(1);
      await assert.rejects(sub.done, (error: unknown) => {
        assert.ok(error instanceof TensorStreamIdleError, String(error));
        assert.equal(error.idleTimeoutMs, 1_000);
        return true;
      });
      assert.equal(scheduler.pending, 0);
    },
  );

  await t.step("each message starts the wait again", async () => {
    await using r = await rig(new Float32Array(2));
    const scheduler = new ManualScheduler();
    await using sub = await subscribe(r.channel, { idleTimeoutMs: 1_000, scheduler, capacity: 8 });
    let ended = false;
    sub.done.then(() => ended = true, () => ended = true);
    scheduler.advance(900);
    await r.server.update(Float32Array.of(1, 2), BASE + 1);
    await until(() => sub.receiver.getTensorAt(BASE + 1) !== null, "the update");
    scheduler.advance(900); // 1,800 ms since the subscription, 900 since the last message
    await r.server.update(Float32Array.of(3, 4), BASE + 2);
    await until(() => sub.receiver.getTensorAt(BASE + 2) !== null, "the second update");
    assert.equal(ended, false);
    assert.deepEqual([...sub.receiver.getTensorAt(BASE + 2)!], [3, 4]);
  });

  await t.step("a source that never sends its initializer makes open reject", async () => {
    const publisher = new GrpcServicePublisher({ addresses: HOST, port: 0 });
    const stalled = Promise.withResolvers<void>();
    publisher.addService(TensorStreamServer.service, {
      async *Subscribe() {
        await stalled.promise; // accepts the call, then says nothing
        yield* []; // and ends without a message once released
      },
    });
    const { port } = await publisher.start();
    const channel = await connectChannel(HOST, port);
    try {
      const scheduler = new ManualScheduler();
      const opening = subscribe(channel, { idleTimeoutMs: 500, scheduler });
      await until(() => scheduler.pending === 1, "the silence timer");
      scheduler.advance(500);
      await assert.rejects(opening, TensorStreamIdleError);
      assert.equal(scheduler.pending, 0);
    } finally {
      stalled.resolve();
      channel.close();
      await publisher.stop({ graceMs: 0 });
    }
  });

  await t.step("without idleTimeoutMs no timer is set; a bad value is refused", async () => {
    await using r = await rig(new Float32Array(2));
    const scheduler = new ManualScheduler();
    await using _sub = await subscribe(r.channel, { scheduler, capacity: 8 });
    assert.equal(scheduler.pending, 0);
    for (const bad of [0, -1, 1.5, Number.NaN]) {
      await assert.rejects(
        subscribe(r.channel, { idleTimeoutMs: bad }),
        RangeError,
        `idleTimeoutMs ${bad}`,
      );
    }
  });
});
