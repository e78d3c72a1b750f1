/**
 * Loads the golden wire vectors (`tests/testdata/wire.json`, made with the
 * reference protobuf runtime and python-lz4) and expands the data rules they
 * use instead of listing large inputs byte by byte.
 *
 * @module
 */

/** A `google.protobuf.Timestamp` as the vectors spell it. */
export interface VectorTimestamp {
  seconds: number;
  nanos: number;
}

/** A `tsercom.TensorChunk` as the vectors spell it. */
export interface VectorChunk {
  timestamp: VectorTimestamp;
  starting_index: number;
  dtype: string;
  values?: (number | string)[];
  values_rule?: string;
  compression?: "NONE" | "LZ4";
}

/** One protobuf vector: a message's fields and its exact serialisation. */
export interface ProtoVector {
  name: string;
  message: string;
  // deno-lint-ignore no-explicit-any
  fields: any;
  hex: string;
}

/** One LZ4 frame vector: raw bytes (or a rule that makes them) and the exact frame. */
export interface Lz4FrameVector {
  name: string;
  raw_rule: string;
  raw_hex: string | null;
  raw_len: string;
  frame_hex: string;
}

/** The whole vector file. */
export interface WireVectors {
  about: string;
  proto: ProtoVector[];
  lz4_frame: Lz4FrameVector[];
}

/** Reads the vector file. */
export function loadWireVectors(): WireVectors {
  return JSON.parse(
    Deno.readTextFileSync(new URL("./testdata/wire.json", import.meta.url)),
  ) as WireVectors;
}

/** Decodes lower-case hex. */
export function fromHex(hex: string): Uint8Array {
  if (hex.length % 2 !== 0) throw new Error(`odd-length hex: ${hex.length}`);
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) {
    const byte = Number.parseInt(hex.slice(2 * i, 2 * i + 2), 16);
    if (Number.isNaN(byte)) throw new Error(`bad hex at ${2 * i}`);
    out[i] = byte;
  }
  return out;
}

/** Encodes bytes as lower-case hex. */
export function toHex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Returns the values a `values_rule` describes; throws for a rule it does not know. */
export function valuesFromRule(rule: string): number[] {
  if (rule === "v[i] = (i % 17) * 0.25 for i in 0..4095") {
    return Array.from({ length: 4096 }, (_, i) => (i % 17) * 0.25);
  }
  throw new Error(`unknown values_rule: ${rule}`);
}

/** Returns the raw bytes an LZ4 vector's `raw_rule` (or `raw_hex`) describes. */
export function rawFromLz4Vector(vector: Lz4FrameVector): Uint8Array {
  let raw: Uint8Array;
  switch (vector.raw_rule) {
    case "no bytes":
      raw = new Uint8Array(0);
      break;
    case "ASCII 'tsercom ' three times":
      raw = new TextEncoder().encode("tsercom ".repeat(3));
      break;
    case "4096 little-endian float32 values v[i] = (i % 17) * 0.25":
      raw = littleEndianBytes("float32", valuesFromRule("v[i] = (i % 17) * 0.25 for i in 0..4095"));
      break;
    case "300000 bytes b[i] = ((i * 2654435761) >> 13) & 0xFF, i from 0, exact integer arithmetic":
      raw = new Uint8Array(300_000);
      for (let i = 0; i < raw.length; i++) {
        raw[i] = Number(((BigInt(i) * 2654435761n) >> 13n) & 0xffn);
      }
      break;
    default:
      throw new Error(`unknown raw_rule: ${vector.raw_rule}`);
  }
  if (raw.length !== Number(vector.raw_len)) {
    throw new Error(`${vector.name}: rule gave ${raw.length} bytes, raw_len is ${vector.raw_len}`);
  }
  if (vector.raw_hex !== null && toHex(raw) !== vector.raw_hex) {
    throw new Error(`${vector.name}: rule disagrees with raw_hex`);
  }
  return raw;
}

/** Packs values as little-endian elements of `dtype` (the dtypes the vectors use). */
export function littleEndianBytes(dtype: string, values: (number | string)[]): Uint8Array {
  switch (dtype) {
    case "float32": {
      const out = new Uint8Array(values.length * 4);
      const view = new DataView(out.buffer);
      values.forEach((v, i) => view.setFloat32(i * 4, Number(v), true));
      return out;
    }
    case "int64": {
      const out = new Uint8Array(values.length * 8);
      const view = new DataView(out.buffer);
      values.forEach((v, i) => view.setBigInt64(i * 8, BigInt(v), true));
      return out;
    }
    default:
      throw new Error(`the vector test does not know dtype ${dtype}`);
  }
}

/** Unpacks little-endian elements of `dtype` into the vectors' value spelling. */
export function valuesFromLittleEndian(dtype: string, bytes: Uint8Array): (number | string)[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  switch (dtype) {
    case "float32":
      if (bytes.length % 4 !== 0) throw new Error(`${bytes.length} bytes is not whole float32s`);
      return Array.from({ length: bytes.length / 4 }, (_, i) => view.getFloat32(i * 4, true));
    case "int64":
      if (bytes.length % 8 !== 0) throw new Error(`${bytes.length} bytes is not whole int64s`);
      return Array.from(
        { length: bytes.length / 8 },
        (_, i) => view.getBigInt64(i * 8, true).toString(),
      );
    default:
      throw new Error(`the vector test does not know dtype ${dtype}`);
  }
}

/** The values a vector chunk holds, rounded to its dtype as they travel on the wire. */
export function chunkValues(chunk: VectorChunk): (number | string)[] {
  const values = chunk.values ?? valuesFromRule(chunk.values_rule ?? "");
  return chunk.dtype === "float32" ? values.map((v) => Math.fround(Number(v))) : values;
}
