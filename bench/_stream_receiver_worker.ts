/**
 * A bare Worker for `tensor_stream_bench.ts`: subscribes to the stream on
 * `port` and posts `{ done: messages }` once the receiver holds the snapshot
 * at `last`, so that the sender and the receiver run on two threads.
 *
 * @module
 */

/// <reference no-default-lib="true" />
/// <reference lib="deno.worker" />

import { CallerId } from "../rpc/caller_id.ts";
import { connectChannel } from "../rpc/channel_factory.ts";
import { TensorStreamSubscription } from "../tensor/tensor_stream_subscription.ts";

self.onmessage = async (event: MessageEvent<{ port: number; last: number; window: number }>) => {
  const { port, last, window } = event.data;
  const channel = await connectChannel("127.0.0.1", port);
  const subscription = await TensorStreamSubscription.open<"float32">(channel, {
    callerId: CallerId.random(),
    frames: false,
    dataTimeoutMicros: window,
  });
  self.postMessage({ subscribed: true });
  while (subscription.receiver.getTensorAt(last) === null) {
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  self.postMessage({ done: subscription.counters.messages });
  await subscription.close();
  channel.close();
};
