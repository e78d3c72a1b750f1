/**
 * Tensor streams: fixed-length numeric vectors that change over time, sent
 * as chunked sparse diffs and rebuilt exactly on the receiver.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { filled, parseDType } from "@tsercom/tsercom/tensor";
 *
 * assert.equal(parseDType("Float32"), "float32");
 * assert.deepEqual(Array.from(filled("float32", 3, 1.5)), [1.5, 1.5, 1.5]);
 * ```
 *
 * @module
 */

export * from "./aggregate_multiplexer.ts";
export * from "./chunk_codec.ts";
export * from "./complete_multiplexer.ts";
export * from "./dtype.ts";
export * from "./initial_state.ts";
export * from "./keyframe_reader.ts";
export * from "./linear_interpolation_strategy.ts";
export * from "./smoothed_tensor_demuxer.ts";
export * from "./smoothing_strategy.ts";
export * from "./sparse_multiplexer.ts";
export * from "./stale_data_error.ts";
export * from "./step_strategy.ts";
export * from "./tensor_chunk.ts";
export * from "./tensor_demuxer.ts";
export * from "./tensor_format_error.ts";
export * from "./tensor_stream_receiver.ts";
export * from "./tensor_stream_router.ts";
export * from "./tensor_stream_server.ts";
export * from "./tensor_stream_source.ts";
export * from "./tensor_stream_subscription.ts";
export type {
  TensorStreamMessageParts,
  TensorStreamRequest,
  TensorStreamResponse,
  TensorStreamService,
} from "./_tensor_stream_wire.ts";
// The rpc types in this module's signatures, for users of this entry point alone.
export type { OverflowPolicy } from "../rpc/_async.ts";
export { CallerId, type CallerIdFields, type CallerIdInput } from "../rpc/caller_id.ts";
export type * from "../rpc/_channel_types.ts";
export type {
  BidiStreamingHandler,
  GrpcCallContext,
  GrpcPeer,
  GrpcService,
} from "../rpc/grpc_types.ts";
export type { Scheduler } from "../rpc/scheduler.ts";
export type { SynchronizedClock } from "../rpc/synchronized_clock.ts";
