/**
 * The rpc types that the signatures of other entry points use when they take
 * or open a gRPC channel (private): `runtime` and `tensor` re-export them, so
 * that users of those entry points alone can name them.
 *
 * @module
 */

export type {
  CertificateSource,
  ChannelSecurity,
  ConnectChannelOptions,
  InsecureChannelSecurity,
  MutualChannelSecurity,
  PinnedChannelSecurity,
  ServerCaChannelSecurity,
} from "./channel_factory.ts";
export type {
  ChannelConnectivity,
  GrpcCallOptions,
  GrpcChannel,
  GrpcChannelOptions,
  WaitForReadyOptions,
} from "./grpc_channel.ts";
export type { GrpcMethod, GrpcMethodKind, MessageCodec } from "./grpc_types.ts";
