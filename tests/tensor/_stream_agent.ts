/**
 * A tensor-stream agent for the two-host end-to-end test, run on a
 * simulated host. Both roles derive the same snapshots from `--seed`:
 *
 * - `serve --seed S --base B`: a float32 TensorStreamServer on 0.0.0.0
 *   (keyframes every `--keyframe-ms`), prints `{"event":"serving","port"}`.
 *   `{"cmd":"play","phase":1}` submits the {@linkcode COUNT} phase-1
 *   snapshots in a seeded random order; `{"cmd":"play","phase":2}` submits
 *   {@linkcode TAIL} newer snapshots in order, one per millisecond, printing
 *   `progress` every 100. Each play ends with `{"event":"played"}`.
 * - `follow --seed S --base B --address A --port P`: subscribes, prints
 *   `subscribed` and a `keyframe` event for each keyframe message.
 *   `{"cmd":"check","phase":1}` compares every phase-1 timestamp with its
 *   snapshot; `{"cmd":"newest","upTo":n}` compares the state at the n-th
 *   phase-2 timestamp; both print `{"event":"checked","wrong","missing"}`
 *   (`check` also `unchanged`: snapshots equal to their predecessor, which
 *   send no chunk and so have no snapshot of their own at the receiver).
 *
 * Events on stdout, one JSON line each, with `t` in ms. Refuses to run
 * outside an isolated network namespace (exit 3).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { isIsolatedNetns } from "../netns/mod.ts";
import { CallerId } from "../../rpc/caller_id.ts";
import { connectChannel } from "../../rpc/channel_factory.ts";
import { GrpcServicePublisher } from "../../rpc/grpc_service_publisher.ts";
import { TensorStreamServer } from "../../tensor/tensor_stream_server.ts";
import { TensorStreamSubscription } from "../../tensor/tensor_stream_subscription.ts";
import { commands, emit } from "../_agent_io.ts";

if (!(await isIsolatedNetns())) {
  console.error("_stream_agent: refusing to run outside an isolated network namespace");
  Deno.exit(3);
}

/** Phase-1 snapshots, submitted in random order. */
export const COUNT = 10_000;
/** Phase-2 snapshots, submitted in order. */
export const TAIL = 2_000;
const LENGTH = 256;
const STEP = 1_000; // µs between timestamps

const { positionals, values } = parseArgs({
  args: Deno.args,
  allowPositionals: true,
  options: {
    seed: { type: "string" },
    base: { type: "string" },
    address: { type: "string" },
    port: { type: "string" },
    "keyframe-ms": { type: "string" },
  },
});
const seed = Number(values.seed);
const base = Number(values.base);

/** The snapshots both ends agree on: a seeded random walk over COUNT + TAIL steps. */
function snapshots(): { values: Float32Array[]; order: number[] } {
  let state = seed >>> 0;
  const random = () => {
    state = (Math.imul(state, 1_664_525) + 1_013_904_223) >>> 0;
    return state / 4_294_967_296;
  };
  const out: Float32Array[] = [];
  let current = new Float32Array(LENGTH);
  for (let i = 0; i < COUNT + TAIL; i++) {
    current = current.slice();
    const changes = 1 + Math.floor(random() * 8);
    for (let k = 0; k < changes; k++) {
      current[Math.floor(random() * LENGTH)] = Math.round(random() * 1000) / 8;
    }
    out.push(current);
  }
  const order = Array.from({ length: COUNT }, (_, i) => i);
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  return { values: out, order };
}

const timestampOf = (i: number) => base + i * STEP;
const { values: expected, order } = snapshots();

function same(a: Float32Array | null, b: Float32Array): boolean {
  return a !== null && a.length === b.length && a.every((v, i) => Object.is(v, b[i]));
}

if (positionals[0] === "serve") {
  const server = new TensorStreamServer(new Float32Array(LENGTH), {
    dtype: "float32",
    keyframeIntervalMs: Number(values["keyframe-ms"] ?? 1000),
    keyframeDepth: 4,
  });
  const publisher = new GrpcServicePublisher({ addresses: "0.0.0.0", port: 0 });
  publisher.addService(TensorStreamServer.service, { Subscribe: server.handler() });
  const { port } = await publisher.start();
  emit({ event: "serving", port });
  for await (const command of commands()) {
    if (command.cmd === "play" && command.phase === 1) {
      for (const i of order) await server.update(expected[i], timestampOf(i));
      emit({ event: "played", phase: 1 });
    } else if (command.cmd === "play" && command.phase === 2) {
      for (let k = 0; k < TAIL; k++) {
        const i = COUNT + k;
        await server.update(expected[i], timestampOf(i));
        await new Promise((resolve) => setTimeout(resolve, 1));
        if ((k + 1) % 100 === 0) emit({ event: "progress", played: k + 1 });
      }
      emit({ event: "played", phase: 2 });
    } else if (command.cmd === "exit") {
      break;
    }
  }
  server.close();
  await publisher.stop({ graceMs: 0 });
} else if (positionals[0] === "follow") {
  const channel = await connectChannel(values.address!, Number(values.port));
  const subscription = await TensorStreamSubscription.open<"float32">(channel, {
    callerId: CallerId.random(),
    frames: false,
  });
  emit({ event: "subscribed" });
  let keyframes = 0;
  const watching = setInterval(() => {
    while (subscription.counters.keyframes > keyframes) {
      keyframes++;
      emit({ event: "keyframe", count: keyframes });
    }
  }, 5);
  for await (const command of commands()) {
    if (command.cmd === "check") {
      let wrong = 0;
      let missing = 0;
      let unchanged = 0;
      for (let i = 0; i < COUNT; i++) {
        const got = subscription.receiver.getTensorAt(timestampOf(i));
        if (got === null) {
          // A snapshot equal to the one before it sends no chunk: nothing to rebuild.
          if (same(i === 0 ? new Float32Array(LENGTH) : expected[i - 1], expected[i])) unchanged++;
          else missing++;
        } else if (!same(got, expected[i])) wrong++;
      }
      emit({ event: "checked", wrong, missing, unchanged });
    } else if (command.cmd === "newest") {
      const i = COUNT + Number(command.upTo) - 1;
      const got = subscription.receiver.getTensorAt(timestampOf(i));
      emit({
        event: "checked",
        wrong: got !== null && !same(got, expected[i]) ? 1 : 0,
        missing: got === null ? 1 : 0,
      });
    } else if (command.cmd === "exit") {
      break;
    }
  }
  clearInterval(watching);
  await subscription.close();
  channel.close();
}
