/**
 * A built-in runtime that follows a tensor stream over gRPC and hands each
 * rebuilt snapshot to its caller's aggregator: in a Worker, the vectors move
 * to the caller as transferables (zero-copy), one per changed snapshot.
 *
 * @module
 */

import { CallerId } from "../rpc/caller_id.ts";
import { TensorStreamSubscription } from "../tensor/tensor_stream_subscription.ts";
import type { InitializerRef, Runtime, RuntimeContext } from "./runtime.ts";

/** The parameters of {@linkcode TensorStreamFollower} (structured-clonable). */
export interface TensorStreamFollowerParams {
  /** The source's address (an IP address or host name). */
  address: string;
  /** The source's gRPC port. */
  port: number;
  /**
   * The caller id the source knows this subscriber by; the data lands under
   * it in the aggregator.
   */
  callerId: string;
  /**
   * The stream's name on the source.
   *
   * @default {""}
   */
  stream?: string;
  /**
   * The receiver's window, microseconds.
   *
   * @default {60000000}
   */
  dataTimeoutMicros?: number;
}

/** One rebuilt snapshot, as the aggregator stores it. */
export interface TensorStreamSample {
  /** The flat values (moved out of the Worker, not copied). */
  readonly values: ArrayBufferView;
  /** The stream's shape. */
  readonly shape: readonly number[];
}

/**
 * Follows the tensor stream `params` names: connects (channel security as
 * the runtime's configuration says), subscribes with `params.callerId`, and
 * sends every changed snapshot to the aggregator as a
 * {@linkcode TensorStreamSample} stamped with the snapshot's time (converted
 * to local time through the caller's clock). Each snapshot is its own
 * array, so it is transferred, not copied. A failed stream is reported to
 * the watcher.
 *
 * @param context The runtime's context; `params` are {@linkcode TensorStreamFollowerParams}.
 * @returns The runtime.
 *
 * @example
 * ```ts ignore
 * import { RuntimeManager, tensorStreamFollower } from "@tsercom/tsercom/runtime";
 *
 * const manager = new RuntimeManager();
 * const handle = manager.register(
 *   tensorStreamFollower({ address: "10.0.0.7", port: 50051, callerId: id.toString() }),
 *   { role: "client" },
 * );
 * await manager.start();
 * for await (const item of handle.dataAggregator) console.log(item.timestamp, item.value);
 * ```
 */
export function TensorStreamFollower(context: RuntimeContext<TensorStreamSample>): Runtime {
  const params = context.params as TensorStreamFollowerParams;
  const callerId = CallerId.parse(params.callerId);
  const processor = context.dataHandler.registerCaller(callerId, {
    endpoint: params.address,
    port: params.port,
  });
  let following: Promise<void> = Promise.resolve();
  let subscription: TensorStreamSubscription | undefined;
  const runtime: Runtime = {
    async start() {
      const channel = await context.connectChannel(params.address, params.port, {
        signal: context.signal,
      });
      try {
        subscription = await TensorStreamSubscription.open(channel, {
          callerId,
          stream: params.stream ?? "",
          signal: context.signal,
          dataTimeoutMicros: params.dataTimeoutMicros,
          capacity: 64,
          overflow: "block",
        });
      } catch (error) {
        channel.close(); // the start fails: nothing else will close it
        throw error;
      }
      const open = subscription;
      following = (async () => {
        try {
          for await (const frame of open.receiver) {
            await processor.processData(
              { values: frame.values, shape: frame.shape },
              frame.timestamp,
              { domain: "synchronized" },
            );
          }
          await open.done;
        } catch (error) {
          if (!context.signal.aborted) context.reportError(error);
        } finally {
          channel.close();
        }
      })();
    },
    async stop() {
      await subscription?.close();
      await following;
    },
  };
  return runtime;
}

/**
 * The initializer reference of {@linkcode TensorStreamFollower}, for
 * `RuntimeManager.register`.
 *
 * @param params Where the stream is and who follows it.
 * @returns The reference.
 */
export function tensorStreamFollower(params: TensorStreamFollowerParams): InitializerRef {
  return {
    module: new URL("./tensor_stream_follower.ts", import.meta.url).href,
    export: "TensorStreamFollower",
    params,
  };
}
