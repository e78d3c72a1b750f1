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
  /** The source's window, microseconds (the server's default when absent). */
  dataTimeoutMicros?: number;
  /**
   * After the steps: a late snapshot to submit; the done report says how it
   * went (`"accepted"` or the error's name).
   */
  late?: [number, number[]];
}

/**
 * Serves a float32 TensorStream on `params.hostname`, reports `{ port }`,
 * waits for a subscriber, submits `params.steps` in order (then
 * `params.late`), then reports `{ done: n, held, late }`: `held` says for
 * each step's timestamp whether the source still holds a snapshot there.
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
    dataTimeoutMicros: params.dataTimeoutMicros,
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
        let late: string | undefined;
        if (params.late !== undefined) {
          late = await server.update(Float32Array.from(params.late[1]), params.late[0]).then(
            () => "accepted",
            (error) => (error as Error).name,
          );
        }
        const held = params.steps.map(([timestamp]) => server.getTensorAt(timestamp) !== null);
        await report({ done: params.steps.length, held, late });
      })().catch((error) => context.reportError(error));
    },
    async stop() {
      await playing;
      server.close();
      await publisher.stop({ graceMs: 0 });
    },
  };
};
