/**
 * Runtimes for the tensor-stream end-to-end tests: a source that serves a
 * scripted stream over gRPC from inside its Worker.
 *
 * @module
 */

import { CallerId } from "../../rpc/caller_id.ts";
import { GrpcServicePublisher } from "../../rpc/grpc_service_publisher.ts";
import type { RuntimeInitializer } from "../../runtime/runtime.ts";
import { TensorStreamServer } from "../../tensor/tensor_stream_server.ts";

/** The parameters of {@linkcode StreamSource}. */
export interface StreamSourceParams {
  /** The caller id its reports (port, then done) are stored under. */
  reporter: string;
  /** The vector length. */
  length: number;
  /** Whole snapshots (false) or sparse diffs (true). */
  sparse: boolean;
  /** The snapshots, in submission order: [timestamp, values]. */
  steps: [number, number[]][];
  /** The address to serve on. */
  hostname: string;
}

/**
 * Serves a float32 TensorStream on `params.hostname`, reports `{ port }`,
 * waits for a subscriber, submits `params.steps` in order, then reports
 * `{ done: n }`.
 */
export const StreamSource: RuntimeInitializer<unknown> = (context) => {
  const params = context.params as StreamSourceParams;
  const reporter = context.dataHandler.registerCaller(CallerId.parse(params.reporter), {
    endpoint: "127.0.0.1",
    port: 1,
  });
  const server = new TensorStreamServer(new Float32Array(params.length), {
    dtype: "float32",
    sparse: params.sparse,
    keyframeIntervalMs: null,
  });
  const publisher = new GrpcServicePublisher({ addresses: params.hostname, port: 0 });
  publisher.addService(TensorStreamServer.service, { Subscribe: server.handler() });
  let playing: Promise<void> = Promise.resolve();
  let stamp = Date.now() * 1000;
  const report = (value: unknown) => reporter.processData(value, ++stamp);
  return {
    async start() {
      const { port } = await publisher.start();
      await report({ port });
      playing = (async () => {
        while (server.subscribers === 0 && !context.signal.aborted) {
          await new Promise((resolve) => setTimeout(resolve, 5));
        }
        for (const [timestamp, values] of params.steps) {
          await server.update(Float32Array.from(values), timestamp);
        }
        await report({ done: params.steps.length });
      })().catch((error) => context.reportError(error));
    },
    async stop() {
      await playing;
      server.close();
      await publisher.stop({ graceMs: 0 });
    },
  };
};
