/**
 * Tensor chunk codec throughput on a 1 MiB float32 chunk, against the
 * physical limit: one `Uint8Array.prototype.set` copy of the same 1 MiB into
 * a reused buffer (the baseline of each group; the summary prints every
 * other entry's time as a ratio of it).
 *
 * - `encodeChunk` returns a fresh output each time. On these machines the
 *   first touch of a fresh 4 KiB page costs about 10 µs, so the fresh 1 MiB
 *   output alone costs far more than the copy; the `fresh 1 MiB + copy` entry
 *   shows that share.
 * - `encodeChunkInto` writes into one reused buffer: the copy plus a header.
 * - `decodeChunk` views the values in the received bytes (aligned), so it
 *   costs the protobuf parse only, whatever the chunk's size.
 *
 * Issue targets: encode ≤ 2× the copy, decode far under it.
 *
 * Run with `deno bench -A bench/chunk_codec_bench.ts`.
 */

import {
  decodeChunk,
  encodeChunk,
  encodeChunkInto,
  encodedChunkSize,
} from "../tensor/chunk_codec.ts";

const VALUES = 256 * 1024; // 1 MiB of float32

const values = new Float32Array(VALUES);
for (let i = 0; i < VALUES; i++) values[i] = Math.sin(i / 100) * 10;
const chunk = { timestamp: 1_732_406_400_123_456, startingIndex: 4096, values };
const raw = new Uint8Array(values.buffer);
const copyTarget = new Uint8Array(raw.length);
const encodeTarget = new Uint8Array(encodedChunkSize(chunk));

// The encoded chunk, placed so that its values are 4-byte aligned in their buffer
// (as they are whenever the received message's offset allows it).
const encoded = encodeChunk(chunk);
const header = encoded.length - raw.length;
const shift = (4 - (header % 4)) % 4;
const input = new Uint8Array(new ArrayBuffer(encoded.length + shift), shift);
input.set(encoded);
if (decodeChunk(input, "float32").values.buffer !== input.buffer) {
  throw new Error("the benchmark input is not aligned: decodeChunk would copy");
}

let sink = 0;

Deno.bench({
  name: "copy 1 MiB into a reused buffer",
  group: "encode",
  baseline: true,
  fn() {
    copyTarget.set(raw);
  },
});

Deno.bench({
  name: "fresh 1 MiB + copy",
  group: "encode",
  fn() {
    const out = new Uint8Array(raw.length);
    out.set(raw);
    sink ^= out[0];
  },
});

Deno.bench({
  name: "encodeChunk (fresh output)",
  group: "encode",
  fn() {
    sink ^= encodeChunk(chunk).length;
  },
});

Deno.bench({
  name: "encodeChunkInto (reused buffer)",
  group: "encode",
  fn() {
    sink ^= encodeChunkInto(chunk, encodeTarget);
  },
});

Deno.bench({
  name: "copy 1 MiB into a reused buffer",
  group: "decode",
  baseline: true,
  fn() {
    copyTarget.set(raw);
  },
});

Deno.bench({
  name: "decodeChunk (in-place view)",
  group: "decode",
  fn() {
    sink ^= decodeChunk(input, "float32").values.length;
  },
});

globalThis.addEventListener("unload", () => {
  if (sink === 0.5) console.log(sink);
});
