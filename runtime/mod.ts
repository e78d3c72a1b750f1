/**
 * Runtimes: user code that produces time-series data, run in its own Deno
 * Worker or in this thread, managed by a {@linkcode RuntimeManager} that
 * carries its data out under flow control and reports every failure to an
 * {@linkcode ErrorWatcher}; and the {@linkcode RemoteDataAggregator} that
 * keeps the data per caller.
 *
 * A runtime registers its callers through `context.dataHandler`; each
 * caller's processor sends data to that caller's slot in the handle's
 * {@linkcode RemoteDataAggregator} and yields the events sent with
 * {@linkcode RuntimeHandle.onEvent}, with timestamps converted through the
 * caller's clock (synchronised over SNTP when `timeSyncPort` is set).
 *
 * @example
 * ```ts ignore
 * import { RuntimeManager } from "@tsercom/tsercom/runtime";
 *
 * await using manager = new RuntimeManager();
 * const handle = manager.register(
 *   { module: new URL("./my_runtime.ts", import.meta.url).href, export: "createRuntime" },
 *   { role: "client" },
 * );
 * await manager.start();
 * for await (const item of handle.dataAggregator) {
 *   console.log(item.callerId.toString(), item.timestamp, item.value);
 * }
 * ```
 *
 * @module
 */

export * from "./error_watcher.ts";
export * from "./remote_data_aggregator.ts";
export * from "./runtime.ts";
export * from "./runtime_config.ts";
export * from "./runtime_data_handler.ts";
export * from "./tensor_stream_follower.ts";
export * from "./runtime_manager.ts";
export * from "./worker_runtime_host.ts";
export { type ErrorClass, ErrorRegistry, RemoteRuntimeError } from "./_worker_protocol.ts";
// The rpc types in this module's signatures, for users of this entry point alone.
export { CallerId, type CallerIdFields, type CallerIdInput } from "../rpc/caller_id.ts";
export { CallerIdMap } from "../rpc/caller_id_map.ts";
export type { OverflowPolicy } from "../rpc/_async.ts";
export type { Scheduler } from "../rpc/scheduler.ts";
export type * from "../rpc/_channel_types.ts";
export type { SynchronizedClock } from "../rpc/synchronized_clock.ts";
