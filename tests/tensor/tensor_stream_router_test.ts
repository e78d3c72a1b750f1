/**
 * routeTensorStreams: several TensorStreamServers behind one
 * `tsercom.TensorStream/Subscribe` handler, over a real gRPC stream on
 * loopback (GrpcServicePublisher, connectChannel, TensorStreamSubscription),
 * plus a few calls of the handler itself where the network would hide what
 * is checked.
 *
 * @module
 */

import assert from "node:assert/strict";
import { CallerId } from "../../rpc/caller_id.ts";
import { connectChannel } from "../../rpc/channel_factory.ts";
import type { GrpcChannel } from "../../rpc/grpc_channel.ts";
import { GrpcServicePublisher } from "../../rpc/grpc_service_publisher.ts";
import {
  type BidiStreamingHandler,
  type GrpcCallContext,
  GrpcStatus,
  GrpcStatusError,
} from "../../rpc/grpc_types.ts";
import { AsyncQueue, deadline } from "../../rpc/_async.ts";
import type { DType, TypedArrayByDType } from "../../tensor/dtype.ts";
import {
  routeTensorStreams,
  type TensorStreamRouterOptions,
} from "../../tensor/tensor_stream_router.ts";
import { TensorStreamServer } from "../../tensor/tensor_stream_server.ts";
import { TensorStreamSubscription } from "../../tensor/tensor_stream_subscription.ts";
import {
  SUBSCRIBE_METHOD,
  type TensorStreamMessageParts,
  type TensorStreamRequest,
  type TensorStreamResponse,
} from "../../tensor/_tensor_stream_wire.ts";
import { flush, observe } from "../_promises.ts";

const HOST = "127.0.0.1";
const BASE = 1_700_000_000_000_000;
const DEPTH_LENGTH = 4096;
/**
 * Every wait here ends on an event, not on time; this bound only turns a
 * broken router (a call that never ends) into a failure instead of a hang.
 */
const HANG_MS = 10_000;

type SubscribeHandler = BidiStreamingHandler<TensorStreamRequest, TensorStreamResponse>;

function imuServer(name = "imu"): TensorStreamServer<"float32"> {
  return new TensorStreamServer(new Float32Array(6), {
    dtype: "float32",
    name,
    keyframeIntervalMs: null,
  });
}

function depthServer(): TensorStreamServer<"int16"> {
  return new TensorStreamServer(new Int16Array(DEPTH_LENGTH).fill(1000), {
    dtype: "int16",
    name: "depth",
    keyframeIntervalMs: null,
  });
}

/** One call the publisher handed to the router. */
interface Call {
  /** The call's signal, as the router got it. */
  readonly signal: AbortSignal;
  /** Resolves once the router's responses have ended (the chosen server's with them). */
  readonly ended: Promise<void>;
}

/** Records each call of `handler` and when its responses end. */
function tracked(handler: SubscribeHandler, calls: Call[]): SubscribeHandler {
  return (requests, context) => {
    const { promise, resolve } = Promise.withResolvers<void>();
    calls.push({ signal: context.signal, ended: promise });
    return (async function* () {
      try {
        yield* handler(requests, context);
      } finally {
        resolve();
      }
    })();
  };
}

interface Rig {
  imu: TensorStreamServer<"float32">;
  depth: TensorStreamServer<"int16">;
  channel: GrpcChannel;
  /** The calls the router got, in the order they came. */
  calls: Call[];
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * "imu" (float32 × 6) and "depth" (int16 × 4096) routed on one publisher on
 * a fresh port, and one channel to it; disposing closes the channel first.
 */
async function rig(options?: TensorStreamRouterOptions): Promise<Rig> {
  const imu = imuServer();
  const depth = depthServer();
  const calls: Call[] = [];
  const publisher = new GrpcServicePublisher({ addresses: HOST, port: 0 });
  publisher.addService(TensorStreamServer.service, {
    Subscribe: tracked(routeTensorStreams([imu, depth], options), calls),
  });
  const { port } = await publisher.start();
  const channel = await connectChannel(HOST, port);
  return {
    imu,
    depth,
    channel,
    calls,
    async [Symbol.asyncDispose]() {
      // Close the channel before the server stops (see README, known limitations).
      channel.close();
      imu.close();
      depth.close();
      await publisher.stop({ graceMs: 0 });
    },
  };
}

function subscribe<D extends DType>(
  channel: GrpcChannel,
  stream: string | undefined,
): Promise<TensorStreamSubscription<D>> {
  return deadline(
    TensorStreamSubscription.open<D>(channel, { callerId: CallerId.random(), stream }),
    HANG_MS,
  );
}

function same(a: ArrayLike<number | bigint> | null, b: ArrayLike<number | bigint>): boolean {
  if (a === null || a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) return false;
  return true;
}

/**
 * Waits, frame by frame (no timers), until the subscription holds every
 * expected snapshot exactly; fails if its frames end first.
 */
function rebuilt<D extends DType>(
  subscription: TensorStreamSubscription<D>,
  expected: ReadonlyMap<number, TypedArrayByDType[D]>,
): Promise<void> {
  const complete = () =>
    [...expected].every(([at, values]) => same(subscription.receiver.getTensorAt(at), values));
  return deadline(
    (async () => {
      if (complete()) return;
      for await (const _ of subscription.receiver) if (complete()) return;
      assert.fail("the subscription's frames ended before every snapshot was rebuilt");
    })(),
    HANG_MS,
  );
}

/** Sends `snapshots` in order and returns them by timestamp. */
async function feed<D extends DType>(
  server: TensorStreamServer<D>,
  snapshots: TypedArrayByDType[D][],
): Promise<Map<number, TypedArrayByDType[D]>> {
  const sent = new Map<number, TypedArrayByDType[D]>();
  for (const [i, values] of snapshots.entries()) {
    await server.update(values, BASE + i + 1);
    sent.set(BASE + i + 1, values);
  }
  return sent;
}

function imuSnapshots(): Float32Array[] {
  return [1, 2, 3].map((k) => Float32Array.from({ length: 6 }, (_, i) => k * 10 + i + 0.25));
}

function depthSnapshots(): Int16Array[] {
  return [1, 2, 3].map((k) =>
    Int16Array.from({ length: DEPTH_LENGTH }, (_, i) => (i * 7 + k * 1009) % 32_768)
  );
}

/** A handler's view of a call that never touched the network. */
function contextOf(signal: AbortSignal): GrpcCallContext {
  return { peer: { address: HOST, port: 1 }, metadata: {}, signal, clientCommonName: undefined };
}

/** The abort listeners added to `signal` and not removed yet. */
function abortListeners(signal: AbortSignal): Set<unknown> {
  const live = new Set<unknown>();
  const add = signal.addEventListener.bind(signal);
  const remove = signal.removeEventListener.bind(signal);
  signal.addEventListener = ((type: string, listener: EventListener, options?: unknown) => {
    if (type === "abort") live.add(listener);
    add(type, listener, options as AddEventListenerOptions);
  }) as typeof signal.addEventListener;
  signal.removeEventListener = ((type: string, listener: EventListener, options?: unknown) => {
    if (type === "abort") live.delete(listener);
    remove(type, listener, options as EventListenerOptions);
  }) as typeof signal.removeEventListener;
  return live;
}

Deno.test("each subscriber gets the stream it names, rebuilt exactly, on one channel at once", async () => {
  await using r = await rig();
  const [imu, depth] = await Promise.all([
    subscribe<"float32">(r.channel, "imu"),
    subscribe<"int16">(r.channel, "depth"),
  ]);
  await using _imu = imu;
  await using _depth = depth;
  assert.equal(imu.initializer.dtype, "float32");
  assert.deepEqual(imu.initializer.shape, [6]);
  assert.equal(imu.initializer.fillValue, 0);
  assert.equal(depth.initializer.dtype, "int16");
  assert.deepEqual(depth.initializer.shape, [DEPTH_LENGTH]);
  assert.equal(depth.initializer.fillValue, 1000);
  const [imuSent, depthSent] = await Promise.all([
    feed(r.imu, imuSnapshots()),
    feed(r.depth, depthSnapshots()),
  ]);
  await Promise.all([rebuilt(imu, imuSent), rebuilt(depth, depthSent)]);
  for (const [at, values] of imuSent) assert.deepEqual(imu.receiver.getTensorAt(at), values);
  for (const [at, values] of depthSent) assert.deepEqual(depth.receiver.getTensorAt(at), values);
  assert.equal(imu.counters.gaps, 0);
  assert.equal(depth.counters.gaps, 0);
  assert.equal(r.imu.counters.subscriptions, 1);
  assert.equal(r.depth.counters.subscriptions, 1);
  assert.equal(r.calls.length, 2);
});

Deno.test('a subscriber that names no stream gets the server named ""', async () => {
  await using fallback = new TensorStreamServer(new Int32Array(3), {
    dtype: "int32",
    keyframeIntervalMs: null,
  });
  await using imu = imuServer();
  const publisher = new GrpcServicePublisher({ addresses: HOST, port: 0 });
  publisher.addService(TensorStreamServer.service, {
    Subscribe: routeTensorStreams([imu, fallback]),
  });
  const { port } = await publisher.start();
  const channel = await connectChannel(HOST, port);
  try {
    await using subscription = await subscribe<"int32">(channel, undefined);
    assert.equal(subscription.initializer.dtype, "int32");
    assert.deepEqual(subscription.initializer.shape, [3]);
    const sent = await feed(fallback, [Int32Array.of(-1, 0, 1)]);
    await rebuilt(subscription, sent);
    assert.equal(imu.counters.subscriptions, 0);
  } finally {
    channel.close();
    await publisher.stop({ graceMs: 0 });
  }
});

Deno.test("a call for a stream no server has is refused", async (t) => {
  await t.step("with NOT_FOUND, its details listing the names served", async () => {
    await using r = await rig();
    await assert.rejects(subscribe(r.channel, "gps"), (error) => {
      assert.ok(error instanceof GrpcStatusError, String(error));
      assert.equal(error.code, GrpcStatus.NOT_FOUND);
      assert.equal(
        error.details,
        'Cannot subscribe to stream "gps" as it must be one of "imu", "depth": no such stream here',
      );
      return true;
    });
    assert.equal(r.imu.counters.refused + r.depth.counters.refused, 0);
    assert.equal(r.imu.subscribers + r.depth.subscribers, 0);
  });

  await t.step("without the names when listStreams is false", async () => {
    await using r = await rig({ listStreams: false });
    await assert.rejects(subscribe(r.channel, "gps"), (error) => {
      assert.ok(error instanceof GrpcStatusError, String(error));
      assert.equal(error.code, GrpcStatus.NOT_FOUND);
      assert.equal(
        error.details,
        'Cannot subscribe to stream "gps" as it must be one served here: no such stream here',
      );
      return true;
    });
  });

  await t.step("before its caller id is looked at", async () => {
    await using r = await rig();
    const noId = r.channel.bidiStream(SUBSCRIBE_METHOD, [{ stream: "gps" }]);
    await assert.rejects(
      Array.fromAsync(noId),
      (error) => error instanceof GrpcStatusError && error.code === GrpcStatus.NOT_FOUND,
    );
  });
});

Deno.test("the chosen server still refuses a call without a caller id", async () => {
  await using r = await rig();
  const noId = r.channel.bidiStream(SUBSCRIBE_METHOD, [{ stream: "depth" }]);
  await assert.rejects(Array.fromAsync(noId), (error) => {
    assert.ok(error instanceof GrpcStatusError, String(error));
    assert.equal(error.code, GrpcStatus.INVALID_ARGUMENT);
    assert.match(error.details, /^Cannot subscribe as the first message must carry a caller id/);
    return true;
  });
  assert.equal(r.depth.counters.refused, 1);
  assert.equal(r.imu.counters.refused, 0);
});

Deno.test("a call whose requests end before the first one ends with no responses", async () => {
  await using r = await rig();
  assert.deepEqual(await Array.fromAsync(r.channel.bidiStream(SUBSCRIBE_METHOD, [])), []);
  await deadline(r.calls[0].ended, HANG_MS);
  assert.equal(r.imu.counters.refused + r.depth.counters.refused, 0);
  assert.equal(r.imu.counters.subscriptions + r.depth.counters.subscriptions, 0);
});

Deno.test("closing one subscription ends only its call; the other stream keeps flowing", async () => {
  await using r = await rig();
  // One after the other, so that calls[0] is the imu call.
  const imu = await subscribe<"float32">(r.channel, "imu");
  await using depth = await subscribe<"int16">(r.channel, "depth");
  assert.equal(r.calls.length, 2);
  assert.equal(r.imu.subscribers, 1);
  assert.equal(r.depth.subscribers, 1);

  await imu.close();
  await deadline(r.calls[0].ended, HANG_MS);
  assert.equal(r.calls[0].signal.aborted, true);
  assert.equal(r.imu.subscribers, 0);
  assert.equal(r.calls[1].signal.aborted, false);
  assert.equal(r.depth.subscribers, 1);

  const sent = await feed(r.depth, depthSnapshots());
  await rebuilt(depth, sent);
  assert.equal(depth.counters.gaps, 0);
  assert.equal(r.calls[1].signal.aborted, false);
});

Deno.test("the handler passes the call through to the chosen server", async (t) => {
  await t.step("the call's signal reaches it: aborting ends the server's side", async () => {
    await using imu = imuServer();
    await using depth = depthServer();
    const controller = new AbortController();
    const requests = new AsyncQueue<TensorStreamRequest>({ capacity: 4 });
    requests.tryPush({ callerId: CallerId.random().toString(), stream: "depth" });
    const responses = routeTensorStreams([imu, depth])(requests, contextOf(controller.signal))
      [Symbol.asyncIterator]();
    const first = await responses.next();
    assert.equal((first.value as TensorStreamMessageParts).sequence, 0);
    assert.equal(depth.subscribers, 1);
    assert.equal(imu.subscribers, 0);
    await responses.next(); // the keyframe every subscriber starts with
    const waiting = responses.next();
    controller.abort(new GrpcStatusError(GrpcStatus.CANCELLED, "The call was cancelled"));
    assert.deepEqual(await waiting, { done: true, value: undefined });
    assert.equal(depth.subscribers, 0);
    requests.close();
  });

  await t.step("later requests reach it: a resync gets keyframes", async () => {
    await using imu = imuServer();
    await using depth = depthServer();
    const requests = new AsyncQueue<TensorStreamRequest>({ capacity: 4 });
    requests.tryPush({ callerId: CallerId.random().toString(), stream: "imu" });
    const handler = routeTensorStreams([imu, depth]);
    const responses = handler(requests, contextOf(new AbortController().signal))
      [Symbol.asyncIterator]();
    await responses.next(); // the initializer
    const start = (await responses.next()).value as TensorStreamMessageParts;
    assert.deepEqual([start.sequence, start.keyframe], [1, true]);
    const next = responses.next();
    const seen = observe(next);
    await flush();
    assert.equal(seen.status, "pending", "nothing to send until asked");
    requests.tryPush({ resync: true });
    const keyframe = (await next).value as TensorStreamMessageParts;
    assert.deepEqual([keyframe.sequence, keyframe.keyframe], [2, true]);
    requests.close();
    await responses.return?.();
    assert.equal(imu.subscribers, 0);
  });

  await t.step("nothing is left listening to the call's signal once the call ends", async () => {
    const imu = imuServer();
    await using depth = depthServer();
    const controller = new AbortController();
    const listeners = abortListeners(controller.signal);
    const requests = new AsyncQueue<TensorStreamRequest>({ capacity: 4 });
    requests.tryPush({ callerId: CallerId.random().toString(), stream: "imu" });
    const responses = routeTensorStreams([imu, depth])(requests, contextOf(controller.signal));
    const sent = [];
    for await (const response of responses) {
      sent.push(response as TensorStreamMessageParts);
      if (sent.length === 2) imu.close(); // after the initializer and the first keyframe
    }
    assert.deepEqual(sent.map((message) => message.sequence), [0, 1]);
    assert.equal(listeners.size, 0);
    assert.equal(imu.subscribers, 0);
    requests.close();
  });
});

Deno.test("the server list is checked up front", async (t) => {
  await using imu = imuServer();
  await using depth = depthServer();

  await t.step("an empty list is a RangeError", () => {
    assert.throws(() => routeTensorStreams([]), {
      name: "RangeError",
      message:
        "Cannot route tensor streams as 'servers' must hold at least one TensorStreamServer: current length is 0",
    });
  });

  await t.step("two servers with one name are a RangeError naming both", async () => {
    await using other = imuServer("imu");
    assert.throws(() => routeTensorStreams([imu, depth, other]), {
      name: "RangeError",
      message:
        "Cannot route tensor streams as 'servers[2].name' must be distinct: current value is \"imu\", the name of servers[0] too",
    });
    assert.throws(() => routeTensorStreams([depth, depth]), {
      name: "RangeError",
      message:
        "Cannot route tensor streams as 'servers[1].name' must be distinct: current value is \"depth\", the name of servers[0] too",
    });
  });

  await t.step("an entry that is not a TensorStreamServer is a TypeError", () => {
    const fake = { name: "depth", handler: () => depth.handler() };
    assert.throws(
      () => routeTensorStreams([imu, fake] as unknown as TensorStreamServer[]),
      {
        name: "TypeError",
        message:
          "Cannot route tensor streams as 'servers[1]' must be a TensorStreamServer: current value is an instance of Object",
      },
    );
    assert.throws(
      () => routeTensorStreams([imu, undefined] as unknown as TensorStreamServer[]),
      {
        name: "TypeError",
        message:
          "Cannot route tensor streams as 'servers[1]' must be a TensorStreamServer: current value is undefined",
      },
    );
  });

  await t.step("a list that is not iterable is a TypeError", () => {
    for (
      const [value, shown] of [
        [imu, "an instance of TensorStreamServer"],
        [null, "null"],
        ["imu", '"imu"'],
      ] as const
    ) {
      assert.throws(() => routeTensorStreams(value as unknown as TensorStreamServer[]), {
        name: "TypeError",
        message:
          `Cannot route tensor streams as 'servers' must be an iterable of TensorStreamServer: current value is ${shown}`,
      });
    }
  });

  await t.step("listStreams must be a boolean", () => {
    assert.throws(
      () => routeTensorStreams([imu], { listStreams: "yes" as unknown as boolean }),
      {
        name: "TypeError",
        message:
          "Cannot route tensor streams as 'listStreams' must be a boolean: current value is \"yes\"",
      },
    );
  });

  await t.step("any iterable will do: a Set, a generator", () => {
    assert.equal(typeof routeTensorStreams(new Set([imu, depth])), "function");
    assert.equal(
      typeof routeTensorStreams((function* () {
        yield imu;
        yield depth;
      })()),
      "function",
    );
  });
});
