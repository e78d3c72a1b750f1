/**
 * The standard gRPC health service, `grpc.health.v1.Health`, as a
 * {@linkcode GrpcService}: every {@linkcode GrpcServicePublisher} serves it,
 * and a client calls it with these codecs.
 *
 * @module
 */

import type { GrpcMethod } from "./grpc_types.ts";
import { ProtoDecodeError } from "./proto_decode_error.ts";

/** The serving states of the health protocol (`HealthCheckResponse.ServingStatus`). */
export const GrpcServingStatus = {
  UNKNOWN: 0,
  SERVING: 1,
  NOT_SERVING: 2,
  /** Only in `Watch` answers: the service is not known to the server. */
  SERVICE_UNKNOWN: 3,
} as const;

/**
 * One of the {@linkcode GrpcServingStatus} values. Decoded answers may carry
 * values a newer peer added, which fall outside the four named ones.
 */
export type GrpcServingStatusCode = typeof GrpcServingStatus[keyof typeof GrpcServingStatus];

/** `grpc.health.v1.HealthCheckRequest`. */
export interface HealthCheckRequest {
  /** The service asked about; `""` is the server as a whole. */
  service: string;
}

/** `grpc.health.v1.HealthCheckResponse`. */
export interface HealthCheckResponse {
  /** The service's serving status. */
  status: GrpcServingStatusCode;
}

/** The definition of `grpc.health.v1.Health`, with its typed methods. */
export interface GrpcHealthServiceDefinition {
  /** `"grpc.health.v1.Health"`. */
  readonly typeName: "grpc.health.v1.Health";
  /** `Check` (unary) and `Watch` (server-streaming). */
  readonly methods: {
    /** Answers the current status of a service, or NOT_FOUND for an unknown one. */
    readonly Check: GrpcMethod<HealthCheckRequest, HealthCheckResponse>;
    /** Streams a service's status: the current one, then every change. */
    readonly Watch: GrpcMethod<HealthCheckRequest, HealthCheckResponse>;
  };
}

const REQUEST = "grpc.health.v1.HealthCheckRequest";
const RESPONSE = "grpc.health.v1.HealthCheckResponse";
const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

const requestCodec = {
  serialize(value: HealthCheckRequest): Uint8Array {
    const service = encoder.encode(value.service ?? "");
    if (service.length === 0) return new Uint8Array(0);
    const length = varintBytes(service.length);
    const bytes = new Uint8Array(1 + length.length + service.length);
    bytes[0] = 0x0a; // field 1, length-delimited
    bytes.set(length, 1);
    bytes.set(service, 1 + length.length);
    return bytes;
  },
  deserialize(bytes: Uint8Array): HealthCheckRequest {
    let service = "";
    readFields(REQUEST, bytes, (field, wireType, reader) => {
      if (field === 1 && wireType === 2) {
        const value = reader.bytes();
        try {
          service = decoder.decode(value);
        } catch (error) {
          throw reader.fail(error);
        }
        return true;
      }
      return false;
    });
    return { service };
  },
};

const responseCodec = {
  serialize(value: HealthCheckResponse): Uint8Array {
    const status = value.status ?? 0;
    if (status === 0) return new Uint8Array(0);
    const varint = varintBytes(status >>> 0, status < 0);
    const bytes = new Uint8Array(1 + varint.length);
    bytes[0] = 0x08; // field 1, varint
    bytes.set(varint, 1);
    return bytes;
  },
  deserialize(bytes: Uint8Array): HealthCheckResponse {
    let status = 0;
    readFields(RESPONSE, bytes, (field, wireType, reader) => {
      if (field === 1 && wireType === 0) {
        status = reader.varint32();
        return true;
      }
      return false;
    });
    return { status: status as GrpcServingStatusCode };
  },
};

/**
 * The standard health service, `grpc.health.v1.Health`: its methods with
 * hand-written codecs for its two small messages (wire-identical to the
 * protobuf ones).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { GrpcHealthService, GrpcServingStatus } from "@tsercom/tsercom/rpc";
 *
 * const { Check } = GrpcHealthService.methods;
 * assert.equal(Check.path, "/grpc.health.v1.Health/Check");
 * const bytes = Check.response.serialize({ status: GrpcServingStatus.SERVING });
 * assert.deepEqual(Check.response.deserialize(bytes), { status: 1 });
 * ```
 */
export const GrpcHealthService: GrpcHealthServiceDefinition = Object.freeze({
  typeName: "grpc.health.v1.Health",
  methods: Object.freeze({
    Check: Object.freeze({
      name: "Check",
      path: "/grpc.health.v1.Health/Check",
      kind: "unary",
      request: requestCodec,
      response: responseCodec,
    }),
    Watch: Object.freeze({
      name: "Watch",
      path: "/grpc.health.v1.Health/Watch",
      kind: "server_streaming",
      request: requestCodec,
      response: responseCodec,
    }),
  }),
});

// ---------------------------------------------------------------------------
// A minimal protobuf wire reader for the two messages above.
// ---------------------------------------------------------------------------

function varintBytes(value: number, negative = false): Uint8Array {
  // Negative int32 enums take ten bytes on the wire (sign-extended to 64 bits).
  const out: number[] = [];
  let low = value >>> 0;
  let high = negative ? 0xffff_ffff : Math.floor(value / 2 ** 32);
  for (;;) {
    const byte = low & 0x7f;
    low = ((low >>> 7) | ((high & 0x7f) << 25)) >>> 0;
    high = high >>> 7;
    if (low === 0 && high === 0) {
      out.push(byte);
      return Uint8Array.from(out);
    }
    out.push(byte | 0x80);
  }
}

class WireReader {
  pos = 0;
  constructor(readonly typeName: string, readonly data: Uint8Array) {}

  fail(cause: unknown): ProtoDecodeError {
    return new ProtoDecodeError(
      this.typeName,
      this.data.length,
      cause instanceof Error ? cause : new Error(String(cause)),
    );
  }

  /** Reads a varint as a JavaScript number (exact up to 2^53). */
  varint(): number {
    let result = 0;
    let scale = 1;
    for (let k = 0; k < 10; k++) {
      if (this.pos >= this.data.length) throw this.fail(new Error("truncated varint"));
      const byte = this.data[this.pos++];
      result += (byte & 0x7f) * scale;
      if ((byte & 0x80) === 0) return result;
      scale *= 128;
    }
    throw this.fail(new Error("varint longer than 10 bytes"));
  }

  /** Reads a varint and keeps its low 32 bits as a signed integer (int32 and enum fields). */
  varint32(): number {
    const start = this.pos;
    this.varint();
    let low = 0;
    for (let k = 0; k < 5 && start + k < this.pos; k++) {
      low |= (this.data[start + k] & 0x7f) << (7 * k);
    }
    return low | 0;
  }

  bytes(): Uint8Array {
    const length = this.varint();
    if (length > this.data.length - this.pos) {
      throw this.fail(new Error(`length ${length} runs past the end`));
    }
    const value = this.data.subarray(this.pos, this.pos + length);
    this.pos += length;
    return value;
  }

  skip(wireType: number): void {
    switch (wireType) {
      case 0:
        this.varint();
        return;
      case 1:
        this.fixed(8);
        return;
      case 2:
        this.bytes();
        return;
      case 5:
        this.fixed(4);
        return;
      default:
        throw this.fail(new Error(`unsupported wire type ${wireType}`));
    }
  }

  fixed(length: number): void {
    if (length > this.data.length - this.pos) throw this.fail(new Error("truncated fixed field"));
    this.pos += length;
  }
}

/** Reads every field; `read` consumes the ones it knows (returning true), the rest are skipped. */
function readFields(
  typeName: string,
  bytes: Uint8Array,
  read: (field: number, wireType: number, reader: WireReader) => boolean,
): void {
  const reader = new WireReader(typeName, bytes);
  while (reader.pos < bytes.length) {
    const tag = reader.varint();
    const field = Math.floor(tag / 8);
    const wireType = tag % 8;
    if (field === 0 || field > 0x1fff_ffff) {
      throw reader.fail(new Error(`invalid field number ${field}`));
    }
    if (!read(field, wireType, reader)) reader.skip(wireType);
  }
}
