/**
 * The rpc layer: tsercom's wire protos, time as integer microseconds and its
 * exact conversions, injectable clocks, caller ids and their handshake, SNTP
 * time sync, and gRPC (a service publisher, channels with TLS, reconnection).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { CallerId, FakeClock, serverTimestampFromMicros } from "@tsercom/tsercom/rpc";
 *
 * const clock = new FakeClock({ startMicros: 1_732_406_400_000_000 });
 * const stamp = serverTimestampFromMicros(clock.now());
 * const id = CallerId.random();
 * assert(stamp.timestamp !== undefined && id.toString().length === 36);
 * ```
 *
 * @module
 */

export {
  AsyncQueue,
  type AsyncQueueOptions,
  type AsyncQueueWaitOptions,
  type OverflowPolicy,
  QueueClosedError,
  QueueOverflowError,
} from "./_async.ts";
export * from "./caller_id.ts";
export * from "./caller_id_handshake.ts";
export * from "./caller_id_map.ts";
export * from "./caller_id_waiter.ts";
export * from "./channel_factory.ts";
export * from "./client_id_fetcher.ts";
export * from "./client_synchronized_clock.ts";
export * from "./fake_clock.ts";
export * from "./grpc_channel.ts";
export * from "./grpc_errors.ts";
export * from "./grpc_health_service.ts";
export * from "./grpc_service_definition.ts";
export * from "./grpc_service_publisher.ts";
export * from "./grpc_types.ts";
export * from "./proto_decode_error.ts";
export * from "./query_ntp.ts";
export * from "./reconnecting_client.ts";
export * from "./scheduler.ts";
export * from "./synchronized_clock.ts";
export * from "./system_clock.ts";
export * from "./time_sync_client.ts";
export * from "./time_sync_server.ts";
export * from "./timestamp.ts";
