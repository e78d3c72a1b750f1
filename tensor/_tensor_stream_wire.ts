/**
 * The wire format of the `tsercom.TensorStream` service (private): the
 * request codec (generated), and a hand-written codec of
 * `TensorStreamMessage` that writes chunks straight into the message and
 * reads the initializer and update fields as views, so that the chunk codec
 * decodes them in place.
 *
 * @module
 */

import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { CallerIdSchema } from "../rpc/proto/gen/caller_id_pb.ts";
import { TensorStreamRequestSchema } from "../rpc/proto/gen/tensor_stream_pb.ts";
import type { GrpcMethod, GrpcService, MessageCodec } from "../rpc/grpc_types.ts";
import {
  type ChunkPlan,
  LZ4,
  NONE,
  planChunk,
  varintSize,
  writeChunk,
  writeVarint,
} from "./_chunk_plan.ts";
import type { TensorChunk } from "./tensor_chunk.ts";
import { TensorFormatError } from "./tensor_format_error.ts";

/** A subscriber's message (`tsercom.TensorStreamRequest`). */
export interface TensorStreamRequest {
  /** The subscriber's caller id, as text (first message). */
  readonly callerId?: string;
  /** The stream's name ("" for the default). */
  readonly stream?: string;
  /** Asks for fresh keyframes. */
  readonly resync?: boolean;
}

/** A source's message as read from the wire: fields as byte views. */
export interface TensorStreamFrame {
  /** The sequence number. */
  readonly sequence: number;
  /** The serialised `TensorInitializer`, when present. */
  readonly initializer: Uint8Array | undefined;
  /** The serialised `TensorUpdate`, when present. */
  readonly update: Uint8Array | undefined;
  /** Whether the update ends with whole snapshots. */
  readonly keyframe: boolean;
}

const REQUEST_CODEC: MessageCodec<TensorStreamRequest> = {
  serialize(request) {
    return toBinary(
      TensorStreamRequestSchema,
      create(TensorStreamRequestSchema, {
        callerId: request.callerId === undefined
          ? undefined
          : create(CallerIdSchema, { id: request.callerId }),
        stream: request.stream ?? "",
        resync: request.resync ?? false,
      }),
    );
  },
  deserialize(bytes) {
    const message = fromBinary(TensorStreamRequestSchema, bytes);
    return {
      callerId: message.callerId?.id,
      stream: message.stream,
      resync: message.resync,
    };
  },
};

/**
 * A response of `tsercom.TensorStream/Subscribe`: a message's bytes as a
 * subscriber receives them, or, as a server sends it, the parts of a
 * message still to be encoded.
 */
export type TensorStreamResponse = Uint8Array | TensorStreamMessageParts;

/**
 * Messages up to this size are encoded into one buffer reused from message
 * to message (grpc-js copies each one as it frames it): fresh memory costs
 * a page fault per 4 KiB on first touch, which is most of the price of a
 * large message. Larger ones get their own buffer.
 */
const SCRATCH_LIMIT = 16 << 20;
let scratch = new Uint8Array(0);

function scratchOf(size: number): Uint8Array {
  if (size > SCRATCH_LIMIT) return new Uint8Array(size);
  if (scratch.byteLength < size) {
    scratch = new Uint8Array(Math.min(SCRATCH_LIMIT, Math.max(size, scratch.byteLength * 2)));
  }
  return scratch.subarray(0, size);
}

/**
 * Bytes pass as they are; parts are encoded when grpc-js frames the message,
 * into the shared scratch buffer (`reusesBuffer`), never into a fresh one.
 */
const RESPONSE_CODEC: MessageCodec<TensorStreamResponse> = Object.freeze({
  serialize: (message: TensorStreamResponse) =>
    message instanceof Uint8Array ? message : encodeStreamMessage(message, scratchOf),
  deserialize: (bytes: Uint8Array) => bytes,
  reusesBuffer: true,
});

/** `tsercom.TensorStream/Subscribe`. */
export const SUBSCRIBE_METHOD: GrpcMethod<TensorStreamRequest, TensorStreamResponse> = Object
  .freeze({
    name: "Subscribe",
    path: "/tsercom.TensorStream/Subscribe",
    kind: "bidi_streaming",
    request: REQUEST_CODEC,
    response: RESPONSE_CODEC,
  });

/** The `tsercom.TensorStream` service: one bidirectional method. */
export interface TensorStreamService extends GrpcService {
  /** `Subscribe`. */
  readonly methods: {
    readonly Subscribe: GrpcMethod<TensorStreamRequest, TensorStreamResponse>;
  };
}

/** The `tsercom.TensorStream` service. */
export const TENSOR_STREAM_SERVICE: TensorStreamService = Object.freeze({
  typeName: "tsercom.TensorStream",
  methods: Object.freeze({ Subscribe: SUBSCRIBE_METHOD }),
});

/**
 * Where a message starts in the receiver's buffer, modulo 8: grpc-js hands
 * out each message as a view that follows the 5-byte gRPC frame header in an
 * 8-aligned allocation. When that is not so, values are copied as before.
 */
const RECEIVE_OFFSET = 5;
/** Values at least this large are aligned with a pad; smaller ones share one aligned copy. */
const ALIGN_MIN_BYTES = 256;
/** Field 15, wire type 2: a field no tsercom message uses. */
const PAD_TAG = 0x7a;

/** The fields of a `tsercom.TensorStreamMessage`, before it is encoded. */
export interface TensorStreamMessageParts {
  /** The sequence number. */
  sequence: number;
  /** A serialised initializer. */
  initializer?: Uint8Array;
  /** Chunks for the update field (an empty array writes an empty update). */
  chunks?: readonly TensorChunk[];
  /** Chunks whose values are at least this many bytes are LZ4-compressed; `null`: never. */
  lz4MinBytes?: number | null;
  /** Sets the keyframe flag. */
  keyframe?: boolean;
}

/**
 * Encodes a `TensorStreamMessage`, writing each chunk once, straight into
 * the message (LZ4 chunks are compressed first, then copied).
 *
 * @param parts The fields.
 * @param bufferOf Returns the buffer to write, of exactly the size asked
 * (its contents need not be zero).
 * @returns The message bytes.
 */
export function encodeStreamMessage(
  parts: TensorStreamMessageParts,
  bufferOf: (size: number) => Uint8Array = (size) => new Uint8Array(size),
): Uint8Array {
  const { sequence, initializer, chunks = [], lz4MinBytes = null, keyframe = false } = parts;
  const hasUpdate = parts.chunks !== undefined;
  // Each chunk validated and planned once: its wire fields and exact size.
  const plans: ChunkPlan[] = new Array(chunks.length);
  for (let i = 0; i < chunks.length; i++) {
    const lz4 = lz4MinBytes !== null && chunks[i].values.byteLength >= lz4MinBytes;
    plans[i] = planChunk(chunks[i], lz4 ? LZ4 : NONE, `chunk ${i}`);
  }
  const head = (sequence > 0 ? 1 + varintSize(sequence) : 0) +
    (initializer === undefined
      ? 0
      : 1 + varintSize(initializer.byteLength) + initializer.byteLength);
  // Pad the update so that large uncompressed values start 8-aligned in the
  // receiver's buffer (the length of the update field and the pads depend on
  // each other: settle them in a couple of rounds).
  let pads: number[] = [];
  let updateSize = 0;
  let lengthSize = 1;
  for (let round = 0; round < 4; round++) {
    pads = [];
    let pos = head + (hasUpdate ? 1 + lengthSize : 0);
    const start = pos;
    for (let i = 0; i < chunks.length; i++) {
      const plan = plans[i];
      const size = plan.size;
      let pad = 0;
      const values = chunks[i].values.byteLength;
      if (plan.compression === NONE && values >= ALIGN_MIN_BYTES) {
        const dataAt = RECEIVE_OFFSET + pos + 1 + varintSize(size) + size - values;
        pad = (8 - (dataAt % 8)) % 8;
        if (pad === 1) pad = 9; // a pad field takes at least 2 bytes
      }
      pads.push(pad);
      pos += pad + 1 + varintSize(size) + size;
    }
    updateSize = pos - start;
    if (varintSize(updateSize) === lengthSize) break;
    lengthSize = varintSize(updateSize);
  }
  const total = head + (hasUpdate ? 1 + varintSize(updateSize) + updateSize : 0) +
    (keyframe ? 2 : 0);
  const out = bufferOf(total);
  let offset = 0;
  if (sequence > 0) {
    out[offset++] = 0x08;
    offset = writeVarint(out, offset, sequence);
  }
  if (initializer !== undefined) {
    out[offset++] = 0x12;
    offset = writeVarint(out, offset, initializer.byteLength);
    out.set(initializer, offset);
    offset += initializer.byteLength;
  }
  if (hasUpdate) {
    out[offset++] = 0x1a;
    offset = writeVarint(out, offset, updateSize);
    for (let i = 0; i < chunks.length; i++) {
      if (pads[i] > 0) {
        // An unknown field (15, length-delimited) of zeros: every reader skips it.
        out[offset++] = PAD_TAG;
        out[offset++] = pads[i] - 2;
        out.fill(0, offset, offset + pads[i] - 2);
        offset += pads[i] - 2;
      }
      out[offset++] = 0x0a;
      offset = writeVarint(out, offset, plans[i].size);
      offset = writeChunk(out, offset, plans[i]);
    }
  }
  if (keyframe) {
    out[offset++] = 0x20;
    out[offset++] = 0x01;
  }
  return out;
}

function malformed(message: string): never {
  throw new TensorFormatError("proto", `Cannot decode the tensor stream message as ${message}`);
}

function readVarint(bytes: Uint8Array, at: { offset: number }): number {
  let value = 0;
  let scale = 1;
  for (let i = 0; i < 10; i++) {
    if (at.offset >= bytes.byteLength) malformed("a varint must end before the message does");
    const byte = bytes[at.offset++];
    value += (byte & 0x7f) * scale;
    if (byte < 0x80) {
      if (!Number.isSafeInteger(value)) malformed("a varint must be a safe integer");
      return value;
    }
    scale *= 128;
  }
  malformed("a varint must be at most 10 bytes");
}

/**
 * Reads a `TensorStreamMessage`; the initializer and update fields are views
 * of `bytes`. Unknown fields are skipped, as protobuf requires.
 *
 * @param bytes The message.
 * @returns Its fields.
 * @throws {TensorFormatError} When the bytes are not a well-formed message.
 */
export function decodeStreamMessage(bytes: TensorStreamResponse): TensorStreamFrame {
  if (!(bytes instanceof Uint8Array)) malformed("a received message must be bytes");
  let sequence = 0;
  let initializer: Uint8Array | undefined;
  let update: Uint8Array | undefined;
  let keyframe = false;
  const at = { offset: 0 };
  while (at.offset < bytes.byteLength) {
    const tag = readVarint(bytes, at);
    const field = Math.floor(tag / 8);
    const wire = tag % 8;
    if (field === 0) malformed("field number 0 is not allowed");
    if (wire === 0) {
      const value = readVarint(bytes, at);
      if (field === 1) sequence = value;
      else if (field === 4) keyframe = value !== 0;
    } else if (wire === 2) {
      const length = readVarint(bytes, at);
      if (at.offset + length > bytes.byteLength) {
        malformed(`field ${field} must fit in the message: it runs past its end`);
      }
      const view = bytes.subarray(at.offset, at.offset + length);
      at.offset += length;
      if (field === 2) initializer = view;
      else if (field === 3) update = view;
    } else if (wire === 1) {
      at.offset += 8;
    } else if (wire === 5) {
      at.offset += 4;
    } else {
      malformed(`wire type ${wire} is not supported`);
    }
    if (at.offset > bytes.byteLength) malformed("a field must end before the message does");
  }
  return { sequence, initializer, update, keyframe };
}
