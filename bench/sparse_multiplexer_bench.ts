/**
 * The sparse multiplexer on 1,000,000 float32 elements with 1 % of them
 * changed per step, in scattered runs of 1–20 elements, timestamps in order
 * (the Python original: 41 ms per update). The baseline is the physical
 * floor of any diff: a plain loop comparing the same two Float32Arrays
 * element by element and counting differences. The group summary gives the
 * multiplexer's time as a ratio of the loop's (target ≤ 2×).
 *
 * The window holds about five snapshots, so in steady state every stored
 * snapshot reuses the buffer of a pruned one (a fresh 4 MB buffer per call
 * would cost ~10 ms of first-touch page faults on these machines).
 *
 * Run with `deno bench -A bench/sparse_multiplexer_bench.ts`.
 */

import { SparseTensorMultiplexer } from "../tensor/sparse_multiplexer.ts";
import type { TensorChunk } from "../tensor/tensor_chunk.ts";

const N = 1_000_000;
const CHANGED = N / 100;

let seed = 0x9e3779b9;
function random(): number {
  seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
  return seed / 2 ** 32;
}

// Two snapshots that differ in 1 % of their elements, in scattered runs.
const a = new Float32Array(N);
for (let i = 0; i < N; i++) a[i] = Math.sin(i / 100);
const b = a.slice();
let changed = 0;
let runs = 0;
while (changed < CHANGED) {
  const length = 1 + Math.floor(random() * 20);
  const start = Math.floor(random() * (N - length));
  let fresh = 0;
  for (let i = start; i < start + length; i++) {
    if (a[i] === b[i]) fresh++;
    b[i] = a[i] + 1;
  }
  if (fresh > 0) runs++;
  changed += fresh;
}

let chunkCount = 0;
const muxer = new SparseTensorMultiplexer({
  onChunk(_chunk: TensorChunk) {
    chunkCount++;
  },
}, { dtype: "float32", length: N, dataTimeoutMicros: 4 });
let timestamp = 1_700_000_000_000_000;
let flip = false;

const group = `1,000,000 float32, ${changed} changed in ~${runs} runs`;

Deno.bench({
  name: "plain loop: compare two Float32Arrays, count differences",
  group,
  baseline: true,
  fn() {
    let count = 0;
    for (let i = 0; i < N; i++) if (a[i] !== b[i]) count++;
    if (count !== changed) throw new Error(`counted ${count}, expected ${changed}`);
  },
});

Deno.bench({
  name: "SparseTensorMultiplexer.process (in order, window of 5)",
  group,
  async fn() {
    flip = !flip;
    const before = chunkCount;
    await muxer.process(flip ? b : a, timestamp++);
    if (timestamp > 1_700_000_000_000_002 && chunkCount === before) throw new Error("no chunks");
  },
});
