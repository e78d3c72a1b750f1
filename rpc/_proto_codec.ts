/**
 * Encoding and decoding of the generated protobuf messages with typed errors
 * (private: the public API speaks in tsercom's own types).
 *
 * @module
 */

import { type DescMessage, fromBinary, type MessageShape, toBinary } from "@bufbuild/protobuf";
import { ProtoDecodeError } from "./proto_decode_error.ts";

/**
 * Decodes a message from its binary serialisation.
 *
 * @param schema The message's schema, e.g. `proto.TensorChunkSchema`.
 * @param bytes The serialisation.
 * @returns The decoded message.
 * @throws {ProtoDecodeError} When the bytes are truncated or otherwise not a
 * valid serialisation of the message.
 */
export function decodeMessage<Desc extends DescMessage>(
  schema: Desc,
  bytes: Uint8Array,
): MessageShape<Desc> {
  try {
    return fromBinary(schema, bytes);
  } catch (error) {
    throw new ProtoDecodeError(schema.typeName, bytes.byteLength, error);
  }
}

/**
 * Encodes a message to its binary serialisation.
 *
 * @param schema The message's schema, e.g. `proto.TensorChunkSchema`.
 * @param message The message.
 * @returns The serialisation.
 */
export function encodeMessage<Desc extends DescMessage>(
  schema: Desc,
  message: MessageShape<Desc>,
): Uint8Array {
  return toBinary(schema, message);
}
