/**
 * gRPC through tsercom against raw grpc-js, with the same payloads, server and client in this
 * process, over 127.0.0.1:
 *
 * - unary calls, one at a time, 100-byte request and response (like 25 floats);
 * - server-streaming messages, 1,000 per call, 100 bytes each;
 * - server-streaming messages, 100 per call, 400,000 bytes each (100,000 float32).
 *
 * The raw baseline is a grpc-js server and client with identity serializers: the floor of any
 * wrapper. tsercom adds its handler adaptation, codecs and error mapping (the target is an
 * overhead of at most 5 %). Each group prints tsercom's time as a ratio to the raw time.
 *
 * Run: `deno bench -A bench/grpc_bench.ts`
 *
 * @module
 */

import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import { GrpcChannel } from "../rpc/grpc_channel.ts";
import { GrpcServicePublisher } from "../rpc/grpc_service_publisher.ts";
import type { GrpcMethod, GrpcService, MessageCodec } from "../rpc/grpc_types.ts";

const SMALL = new Uint8Array(100).map((_, k) => k);
const LARGE = new Uint8Array(400_000).map((_, k) => k & 0xff);
const STREAM_SMALL = 1_000;
const STREAM_LARGE = 100;

const bytes: MessageCodec<Uint8Array> = {
  serialize: (value) => value,
  deserialize: (data) => data,
};

function method(name: string, kind: GrpcMethod["kind"]): GrpcMethod<Uint8Array, Uint8Array> {
  return { name, path: `/bench.Bench/${name}`, kind, request: bytes, response: bytes };
}

const echo = method("Echo", "unary");
const stream = method("Stream", "server_streaming");
const service: GrpcService = { typeName: "bench.Bench", methods: { Echo: echo, Stream: stream } };

/** The request of Stream: [count (u32 LE)][size (u32 LE)]. */
function streamRequest(count: number, size: number): Uint8Array {
  const out = new Uint8Array(8);
  const view = new DataView(out.buffer);
  view.setUint32(0, count, true);
  view.setUint32(4, size, true);
  return out;
}

function parseStreamRequest(request: Uint8Array): { count: number; payload: Uint8Array } {
  const view = new DataView(request.buffer, request.byteOffset, request.byteLength);
  const size = view.getUint32(4, true);
  return { count: view.getUint32(0, true), payload: size === LARGE.length ? LARGE : SMALL };
}

// tsercom ---------------------------------------------------------------------------------------

const publisher = new GrpcServicePublisher({ addresses: "127.0.0.1", port: 0 });
publisher.addService(service, {
  Echo: (request: Uint8Array) => request,
  Stream: async function* (request: Uint8Array) {
    const { count, payload } = parseStreamRequest(request);
    for (let k = 0; k < count; k++) yield payload;
  },
});
const { port: tsercomPort } = await publisher.start();
const channel = new GrpcChannel("127.0.0.1", tsercomPort);

// raw grpc-js -----------------------------------------------------------------------------------

const identity = (value: Buffer) => value;
const rawDefinition: grpc.ServiceDefinition = {
  Echo: {
    path: echo.path,
    requestStream: false,
    responseStream: false,
    requestSerialize: identity,
    requestDeserialize: identity,
    responseSerialize: identity,
    responseDeserialize: identity,
  },
  Stream: {
    path: stream.path,
    requestStream: false,
    responseStream: true,
    requestSerialize: identity,
    requestDeserialize: identity,
    responseSerialize: identity,
    responseDeserialize: identity,
  },
};
const rawServer = new grpc.Server();
rawServer.addService(rawDefinition, {
  Echo: (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) =>
    callback(null, call.request),
  Stream: (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
    const { count, payload } = parseStreamRequest(call.request);
    const buffer = Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
    let k = 0;
    const pump = () => {
      while (k < count) {
        k++;
        if (!call.write(buffer)) {
          call.once("drain", pump);
          return;
        }
      }
      call.end();
    };
    pump();
  },
});
const rawPort = await new Promise<number>((resolve, reject) =>
  rawServer.bindAsync(
    "127.0.0.1:0",
    grpc.ServerCredentials.createInsecure(),
    (error, port) => error ? reject(error) : resolve(port),
  )
);
const RawClient = grpc.makeGenericClientConstructor(rawDefinition, "Bench");
const raw = new RawClient(`127.0.0.1:${rawPort}`, grpc.credentials.createInsecure());
const smallBuffer = Buffer.from(SMALL);

function rawEcho(): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    raw.makeUnaryRequest(
      echo.path,
      identity,
      identity,
      smallBuffer,
      (error: grpc.ServiceError | null, value?: Buffer) => error ? reject(error) : resolve(value!),
    )
  );
}

function rawStream(count: number, size: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const call = raw.makeServerStreamRequest(
      stream.path,
      identity,
      identity,
      Buffer.from(streamRequest(count, size)),
    );
    let received = 0;
    call.on("data", () => received++);
    call.on("end", () => resolve(received));
    call.on("error", reject);
  });
}

async function tsercomStream(count: number, size: number): Promise<number> {
  let received = 0;
  for await (const _ of channel.serverStream(stream, streamRequest(count, size))) received++;
  return received;
}

function check(received: number, expected: number): void {
  if (received !== expected) throw new Error(`received ${received} of ${expected} messages`);
}

// Warm both paths up (connections, JIT).
for (let k = 0; k < 200; k++) {
  await rawEcho();
  await channel.unary(echo, SMALL);
}

Deno.bench("raw grpc-js: unary, 100 bytes", { group: "unary", baseline: true }, async () => {
  await rawEcho();
});
Deno.bench("tsercom: unary, 100 bytes", { group: "unary" }, async () => {
  await channel.unary(echo, SMALL);
});

Deno.bench(
  `raw grpc-js: ${STREAM_SMALL} streamed messages of 100 bytes`,
  { group: "stream of small messages", baseline: true },
  async () => check(await rawStream(STREAM_SMALL, SMALL.length), STREAM_SMALL),
);
Deno.bench(
  `tsercom: ${STREAM_SMALL} streamed messages of 100 bytes`,
  { group: "stream of small messages" },
  async () => check(await tsercomStream(STREAM_SMALL, SMALL.length), STREAM_SMALL),
);

Deno.bench(
  `raw grpc-js: ${STREAM_LARGE} streamed messages of 400,000 bytes`,
  { group: "stream of large messages", baseline: true },
  async () => check(await rawStream(STREAM_LARGE, LARGE.length), STREAM_LARGE),
);
Deno.bench(
  `tsercom: ${STREAM_LARGE} streamed messages of 400,000 bytes`,
  { group: "stream of large messages" },
  async () => check(await tsercomStream(STREAM_LARGE, LARGE.length), STREAM_LARGE),
);

// Closed when the process exits: deno bench gives no teardown hook; unref'd handles would be
// reported as leaks only by deno test.
globalThis.addEventListener("unload", () => {
  channel.close();
  raw.close();
  rawServer.forceShutdown();
  void publisher.stop({ graceMs: 0 });
});
