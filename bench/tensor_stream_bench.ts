/**
 * Tensor streams over gRPC (TensorStreamServer → TensorStreamSubscription,
 * rebuilt by the receiver) against raw grpc-js streaming the same bytes, in
 * this process over 127.0.0.1, measured in the same run:
 *
 * - dense: {@linkcode DENSE_COUNT} updates of 100,000 float32, every element
 *   changed, whole snapshots (`sparse: false`), 10 ms of stream time apart
 *   with a 100 ms window; raw grpc-js streams the same encoded messages
 *   (one per update) with identity serializers. Target: tsercom ≥ 70 % of
 *   raw MB/s.
 * - sparse: {@linkcode SPARSE_COUNT} updates of a 1,000-element vector with
 *   10 scattered elements changed, 20 µs apart with a 10 ms window,
 *   batched; raw grpc-js streams one update's encoded message per message.
 *   Target: ≥ 50,000 updates/s.
 *
 * Both ends run in this one process (as raw grpc-js's do), so tsercom's
 * figure is the sum of the sender's and the receiver's work on one thread.
 *
 * tsercom's time runs from the first `update` to the receiver holding the
 * last timestamp (diff, encode, send, decode, rebuild); raw's from the
 * call to the last message received. Each case runs a warmup pair, then
 * {@linkcode REPS} pairs, and prints medians and best-of ratios. The two of
 * a pair take turns going first, and each starts from a collected heap
 * (with `--v8-flags=--expose-gc`): otherwise whichever runs second pays for
 * the garbage of the first (hundreds of MB of message buffers), which
 * measured the order, not the code.
 *
 * Run: `deno bench -A --v8-flags=--expose-gc bench/tensor_stream_bench.ts`
 *
 * @module
 */

import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import { CallerId } from "../rpc/caller_id.ts";
import { connectChannel } from "../rpc/channel_factory.ts";
import { GrpcServicePublisher } from "../rpc/grpc_service_publisher.ts";
import { TensorStreamServer } from "../tensor/tensor_stream_server.ts";
import { TensorStreamSubscription } from "../tensor/tensor_stream_subscription.ts";
import { encodeStreamMessage } from "../tensor/_tensor_stream_wire.ts";

const DENSE_LENGTH = 100_000;
const DENSE_COUNT = 100;
const SPARSE_LENGTH = 1_000;
const SPARSE_COUNT = 50_000;
const REPS = 9;
/**
 * The sender yields to the event loop (setTimeout 0, which sleeps about
 * 2 ms on these machines) every this many updates, so that sending
 * overlaps producing; a MessageChannel tick would not let the sockets run.
 */
const YIELD_EVERY = 200;
const BASE = 1_700_000_000_000_000;
/** Dense: 100 updates/s of stream time, a 100 ms window (10 snapshots kept on each end). */
const DENSE_STEP_MICROS = 10_000;
const DENSE_WINDOW_MICROS = 100_000;
/** Sparse: 50,000 updates/s of stream time, a 10 ms window (500 snapshots kept on each end). */
const SPARSE_STEP_MICROS = 20;
const SPARSE_WINDOW_MICROS = 10_000;

/** Collects the heap when `--expose-gc` is given, so that a run does not pay for the last one. */
function settle(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

/** Runs a raw/tsercom pair from collected heaps, the raw one first on odd reps. */
async function pair<R, T>(
  rep: number,
  rawRun: () => Promise<R>,
  tsercomRun: () => Promise<T>,
): Promise<[R, T]> {
  if (rep % 2 === 1) {
    settle();
    const r = await rawRun();
    settle();
    return [r, await tsercomRun()];
  }
  settle();
  const t = await tsercomRun();
  settle();
  return [await rawRun(), t];
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

// raw grpc-js ---------------------------------------------------------------------------------

const identity = (value: Buffer) => value;

/** Streams `count` copies of `message` to a raw grpc-js client; returns ms and bytes. */
async function raw(message: Uint8Array, count: number): Promise<{ ms: number; bytes: number }> {
  const server = new grpc.Server();
  const payload = Buffer.from(message.buffer, message.byteOffset, message.byteLength);
  server.addService({
    Stream: {
      path: "/bench.Raw/Stream",
      requestStream: false,
      responseStream: true,
      requestSerialize: identity,
      requestDeserialize: identity,
      responseSerialize: identity,
      responseDeserialize: identity,
    },
  }, {
    Stream: async (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
      for (let i = 0; i < count; i++) {
        if (!call.write(payload)) await new Promise((resolve) => call.once("drain", resolve));
      }
      call.end();
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(
      "127.0.0.1:0",
      grpc.ServerCredentials.createInsecure(),
      (error, bound) => error ? reject(error) : resolve(bound),
    )
  );
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  try {
    await new Promise<void>((resolve, reject) =>
      client.waitForReady(Date.now() + 5_000, (error) => error ? reject(error) : resolve())
    );
    const t0 = performance.now();
    let bytes = 0;
    let received = 0;
    await new Promise<void>((resolve, reject) => {
      const call = client.makeServerStreamRequest(
        "/bench.Raw/Stream",
        identity,
        identity,
        Buffer.alloc(0),
      );
      call.on("data", (data: Buffer) => {
        bytes += data.byteLength;
        received++;
      });
      call.on("end", resolve);
      call.on("error", reject);
    });
    const ms = performance.now() - t0;
    if (received !== count) throw new Error(`raw: ${received} of ${count} messages`);
    return { ms, bytes };
  } finally {
    client.close();
    server.forceShutdown();
  }
}

// tsercom -------------------------------------------------------------------------------------

interface StreamConfig {
  sparse: boolean;
  step: number;
  window: number;
}

/** A TensorStreamServer behind a publisher on a free loopback port. */
async function serve(length: number, config: StreamConfig) {
  const server = new TensorStreamServer(new Float32Array(length), {
    dtype: "float32",
    keyframeIntervalMs: null,
    sparse: config.sparse,
    dataTimeoutMicros: config.window,
  });
  const publisher = new GrpcServicePublisher({ addresses: "127.0.0.1", port: 0 });
  publisher.addService(TensorStreamServer.service, { Subscribe: server.handler() });
  const { port } = await publisher.start();
  return { server, publisher, port };
}

/** Submits snapshots 1..count, `step` µs apart. */
async function play(
  server: TensorStreamServer<"float32">,
  snapshots: (i: number) => Float32Array,
  count: number,
  step: number,
): Promise<void> {
  for (let i = 1; i <= count; i++) {
    await server.update(snapshots(i), BASE + i * step);
    // A real source yields between samples; without it no byte is sent until the loop ends.
    if (i % YIELD_EVERY === 0) await new Promise((resolve) => setTimeout(resolve, 0));
  }
}

/** Streams `snapshots` through a TensorStreamServer to a subscription; returns ms and messages. */
async function tsercom(
  length: number,
  snapshots: (i: number) => Float32Array,
  count: number,
  config: StreamConfig,
): Promise<{ ms: number; messages: number }> {
  const { server, publisher, port } = await serve(length, config);
  const channel = await connectChannel("127.0.0.1", port);
  try {
    const subscription = await TensorStreamSubscription.open<"float32">(channel, {
      callerId: CallerId.random(),
      frames: false,
      dataTimeoutMicros: config.window,
    });
    const last = BASE + count * config.step;
    const t0 = performance.now();
    await play(server, snapshots, count, config.step);
    // The receiver is read by timestamp: poll it (1 ms granularity on a ~second-long run).
    while (subscription.receiver.getTensorAt(last) === null) {
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    const ms = performance.now() - t0;
    if (subscription.receiver.getTensorAt(last) === null) {
      throw new Error("the last update is missing");
    }
    const messages = subscription.counters.messages;
    await subscription.close();
    return { ms, messages };
  } finally {
    channel.close();
    server.close();
    await publisher.stop({ graceMs: 0 });
  }
}

const DENSE = { sparse: false, step: DENSE_STEP_MICROS, window: DENSE_WINDOW_MICROS };
const SPARSE = { sparse: true, step: SPARSE_STEP_MICROS, window: SPARSE_WINDOW_MICROS };

const RECEIVER_WORKER = new URL("./_stream_receiver_worker.ts", import.meta.url).href;

/** As {@linkcode tsercom}, with the subscription in a Worker: sender and receiver on two threads. */
async function tsercomTwoThreads(
  length: number,
  snapshots: (i: number) => Float32Array,
  count: number,
  config: StreamConfig,
): Promise<{ ms: number; messages: number }> {
  const { server, publisher, port } = await serve(length, config);
  const worker = new Worker(RECEIVER_WORKER, { type: "module" });
  try {
    const last = BASE + count * config.step;
    const replies: { subscribed?: boolean; done?: number }[] = [];
    let wake = () => {};
    worker.onmessage = (event) => {
      replies.push(event.data);
      wake();
    };
    const reply = async (key: "subscribed" | "done") => {
      for (;;) {
        const found = replies.find((r) => key in r);
        if (found !== undefined) return found;
        await new Promise<void>((resolve) => wake = resolve);
      }
    };
    worker.postMessage({ port, last, window: config.window });
    await reply("subscribed");
    const t0 = performance.now();
    await play(server, snapshots, count, config.step);
    const { done } = await reply("done");
    const ms = performance.now() - t0;
    // Let the worker close its channel before the server stops.
    await new Promise((resolve) => setTimeout(resolve, 50));
    return { ms, messages: done ?? 0 };
  } finally {
    worker.terminate();
    server.close();
    await publisher.stop({ graceMs: 0 });
  }
}

function once(measure: () => Promise<void>): () => Promise<void> {
  let ran = false;
  return async () => {
    if (ran) return;
    ran = true;
    await measure();
  };
}

Deno.bench({
  name: "dense 100,000 float32 updates: TensorStream vs raw grpc-js",
  n: 1,
  warmup: 0,
  fn: once(async () => {
    const dense = Array.from(
      { length: DENSE_COUNT + 1 },
      (_, i) => new Float32Array(DENSE_LENGTH).fill(i),
    );
    const message = encodeStreamMessage({
      sequence: 7,
      chunks: [{ timestamp: BASE, startingIndex: 0, values: dense[1] }],
    });
    await raw(message, 10);
    await tsercom(DENSE_LENGTH, (i) => dense[i], 10, DENSE);
    const rawRates: number[] = [];
    const tsRates: number[] = [];
    const megabytes = (DENSE_COUNT * message.byteLength) / 1e6;
    console.log(
      `\n[dense] ${DENSE_COUNT} updates of ${DENSE_LENGTH} float32 (${message.byteLength} bytes each), ${REPS} reps`,
    );
    for (let rep = 1; rep <= REPS; rep++) {
      const [r, t] = await pair(
        rep,
        () => raw(message, DENSE_COUNT),
        () => tsercom(DENSE_LENGTH, (i) => dense[i], DENSE_COUNT, DENSE),
      );
      rawRates.push(megabytes / (r.ms / 1000));
      tsRates.push(megabytes / (t.ms / 1000));
      console.log(
        `[dense] rep ${rep}: raw ${r.ms.toFixed(1)} ms = ${rawRates.at(-1)!.toFixed(0)} MB/s; ` +
          `tsercom ${t.ms.toFixed(1)} ms = ${
            tsRates.at(-1)!.toFixed(0)
          } MB/s (${t.messages} messages)`,
      );
    }
    const ratio = median(tsRates) / median(rawRates);
    const best = Math.max(...tsRates) / Math.max(...rawRates);
    console.log(
      `[dense] median: raw ${median(rawRates).toFixed(0)} MB/s, tsercom ${
        median(tsRates).toFixed(0)
      } MB/s; ` +
        `ratio ${ratio.toFixed(3)}, best-of ratio ${best.toFixed(3)}; target >= 0.70: ${
          ratio >= 0.7 ? "MET" : "NOT MET"
        }`,
    );
  }),
});

/**
 * Snapshot `i` has the value `i` at `positions` (zero elsewhere), written
 * into one array that the source reuses: `update` copies what it is given
 * before it returns, so a sensor loop keeps one buffer.
 */
function sparseSnapshots(positions: number[]): (i: number) => Float32Array {
  const current = new Float32Array(SPARSE_LENGTH);
  return (i) => {
    if (i === 1) current.fill(0);
    for (const p of positions) current[p] = i;
    return current;
  };
}

/** How tsercom is run: in this thread, or with the receiver in a Worker. */
type TsercomRun = typeof tsercom;

/** Measures 10 changed elements per update at `positions` (one chunk per run of them). */
async function sparseCase(
  label: string,
  positions: number[],
  run: TsercomRun = tsercom,
): Promise<void> {
  const snapshot = sparseSnapshots(positions);
  // Raw grpc-js sends one update's worth per message: the changed values with their indices.
  const runs: number[][] = [];
  for (const p of positions) {
    const run = runs.at(-1);
    if (run !== undefined && run.at(-1)! + 1 === p) run.push(p);
    else runs.push([p]);
  }
  const message = encodeStreamMessage({
    sequence: 7,
    chunks: runs.map((run) => ({
      timestamp: BASE,
      startingIndex: run[0],
      values: new Float32Array(run.length).fill(1),
    })),
  });
  await raw(message, 1_000);
  await run(SPARSE_LENGTH, snapshot, 1_000, SPARSE);
  const rawRates: number[] = [];
  const tsRates: number[] = [];
  console.log(
    `\n[${label}] ${SPARSE_COUNT} updates (raw: ${message.byteLength} bytes per message), ${REPS} reps`,
  );
  for (let rep = 1; rep <= REPS; rep++) {
    const [r, t] = await pair(
      rep,
      () => raw(message, SPARSE_COUNT),
      () => run(SPARSE_LENGTH, snapshot, SPARSE_COUNT, SPARSE),
    );
    rawRates.push(SPARSE_COUNT / (r.ms / 1000));
    tsRates.push(SPARSE_COUNT / (t.ms / 1000));
    console.log(
      `[${label}] rep ${rep}: raw ${r.ms.toFixed(1)} ms = ${rawRates.at(-1)!.toFixed(0)} msgs/s; ` +
        `tsercom ${t.ms.toFixed(1)} ms = ${
          tsRates.at(-1)!.toFixed(0)
        } updates/s in ${t.messages} messages`,
    );
  }
  const rate = median(tsRates);
  console.log(
    `[${label}] median: raw ${median(rawRates).toFixed(0)} msgs/s, tsercom ${
      rate.toFixed(0)
    } updates/s; ` +
      `ratio ${(rate / median(rawRates)).toFixed(3)}; target >= 50,000 updates/s: ${
        rate >= 50_000 ? "MET" : "NOT MET"
      }`,
  );
}

Deno.bench({
  name: "sparse updates (10 of 1,000 changed, scattered): TensorStream vs raw grpc-js",
  n: 1,
  warmup: 0,
  fn: once(() => sparseCase("sparse, scattered", Array.from({ length: 10 }, (_, k) => k * 97 + 3))),
});

Deno.bench({
  name: "sparse updates (10 of 1,000 changed, one run): TensorStream vs raw grpc-js",
  n: 1,
  warmup: 0,
  fn: once(() => sparseCase("sparse, one run", Array.from({ length: 10 }, (_, k) => 500 + k))),
});

Deno.bench({
  name: "sparse updates, receiver in a Worker: TensorStream vs raw grpc-js",
  n: 1,
  warmup: 0,
  fn: once(() =>
    sparseCase(
      "sparse, 2 threads",
      Array.from({ length: 10 }, (_, k) => k * 97 + 3),
      tsercomTwoThreads,
    )
  ),
});
