/**
 * TensorDemuxer benchmarks, each against the physical limit measured in the
 * same run:
 *
 * (a) in-order stream, 100,000 float32, 1 % changed per timestamp in
 *     scattered short chunks, one `receiveAll` per timestamp (as the
 *     receiver applies one update), window of 10 timestamps: per timestamp
 *     vs one copy of the vector per timestamp (target ≤ 2×). The baseline
 *     copies into the next array of a ring as large as the window, since the
 *     demuxer keeps every snapshot in the window and so must write a fresh,
 *     cache-cold vector per timestamp; the cache-hot copy into one reused
 *     array is printed beside it;
 * (b) a 10-element late chunk behind 100 later keyframes that all inherit
 *     its indices: vs the same chunk applied at the newest keyframe
 *     (target ≤ 20×).
 *
 * Run: `deno bench -A bench/tensor_demuxer_bench.ts`
 *
 * @module
 */

import { TensorDemuxer } from "../tensor/tensor_demuxer.ts";

const N = 100_000;
const STEP = 1_000; // µs between timestamps
const T0 = 1_704_110_400_000_000;

let seed = 0x2545f491;
function random(): number {
  seed ^= seed << 13;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  return (seed >>> 0) / 4294967296;
}

function noopClient() {
  return { onTensorChanged(_ts: number, _values: Float32Array) {} };
}

interface MutableChunk {
  timestamp: number;
  startingIndex: number;
  values: Float32Array;
}

/**
 * 1 % of N elements, as chunks of 1..maxRun contiguous elements at random
 * places (exactly maxRun when `fixed`).
 */
function scatteredChunks(maxRun: number, fixed = false): MutableChunk[] {
  const chunks: MutableChunk[] = [];
  let total = 0;
  while (total < N / 100) {
    const length = fixed ? maxRun : 1 + Math.floor(random() * maxRun);
    const run = Math.min(length, N / 100 - total);
    const start = Math.floor(random() * (N - run));
    const values = new Float32Array(run);
    for (let k = 0; k < run; k++) values[k] = random();
    chunks.push({ timestamp: 0, startingIndex: start, values });
    total += run;
  }
  return chunks;
}

const PATTERNS = 4;
const WINDOW = 10; // timestamps held

function inOrderStream(maxRun: number, fixed = false, batch = true): () => void {
  const demuxer = new TensorDemuxer(noopClient(), {
    dtype: "float32",
    length: N,
    dataTimeoutMicros: (WINDOW - 1) * STEP,
  });
  const patterns = Array.from({ length: PATTERNS }, () => scatteredChunks(maxRun, fixed));
  let ts = T0;
  let p = 0;
  return () => {
    ts += STEP;
    const chunks = patterns[p];
    p = (p + 1) % PATTERNS;
    for (let c = 0; c < chunks.length; c++) chunks[c].timestamp = ts;
    if (batch) demuxer.receiveAll(chunks);
    else for (let c = 0; c < chunks.length; c++) demuxer.receive(chunks[c]);
  };
}

// (a) ------------------------------------------------------------------------

const GROUP_A = "a: in-order, 1 % changed per timestamp, one update per timestamp";
const src = new Float32Array(N).map(() => random());
const dst = new Float32Array(N);
// The memory a window of WINDOW snapshots occupies, plus one being filled.
const ring = Array.from({ length: WINDOW + 1 }, () => new Float32Array(N));
let slot = 0;

Deno.bench("copy the vector into the next array of a ring of 11 (window memory)", {
  group: GROUP_A,
  baseline: true,
}, () => {
  const from = ring[slot];
  slot = (slot + 1) % ring.length;
  ring[slot].set(from);
});

Deno.bench("copy the vector into one reused array (dst.set(src), cache-hot)", {
  group: GROUP_A,
}, () => {
  dst.set(src);
});

{
  const run = inOrderStream(10, true);
  Deno.bench("demuxer.receiveAll: 1,000 elements in 100 runs of 10", {
    group: GROUP_A,
  }, run);
}
{
  const run = inOrderStream(4);
  Deno.bench("demuxer.receiveAll: 1,000 elements in chunks of 1–4", {
    group: GROUP_A,
  }, run);
}
{
  const run = inOrderStream(1);
  Deno.bench("demuxer.receiveAll: 1,000 single-element chunks", {
    group: GROUP_A,
  }, run);
}
{
  const run = inOrderStream(10, true, false);
  Deno.bench("demuxer.receive per chunk: 100 runs of 10", {
    group: GROUP_A,
  }, run);
}
{
  const run = inOrderStream(1, false, false);
  Deno.bench("demuxer.receive per chunk: 1,000 single-element chunks", {
    group: GROUP_A,
  }, run);
}

// (b) ------------------------------------------------------------------------

const LATER = 100;
const LATE_START = 50_000;
const valuesA = new Float32Array(10).map((_, k) => k + 1);
const valuesB = new Float32Array(10).map((_, k) => -(k + 1));

/** A demuxer with LATER + 1 keyframes, none of which sets the late chunk's indices. */
function timelineDemuxer(): TensorDemuxer<"float32"> {
  const demuxer = new TensorDemuxer(noopClient(), { dtype: "float32", length: N });
  for (let j = 0; j <= LATER; j++) {
    demuxer.receive({
      timestamp: T0 + j * STEP,
      startingIndex: j,
      values: new Float32Array([j + 1]),
    });
  }
  return demuxer;
}

{
  const demuxer = timelineDemuxer();
  const chunk: MutableChunk = {
    timestamp: T0 + LATER * STEP,
    startingIndex: LATE_START,
    values: valuesA,
  };
  Deno.bench("10-element chunk at the newest keyframe (in order)", {
    group: "b: late chunk behind 100 keyframes",
    baseline: true,
  }, () => {
    chunk.values = chunk.values === valuesA ? valuesB : valuesA;
    demuxer.receive(chunk);
  });
}
{
  const demuxer = timelineDemuxer();
  const chunk: MutableChunk = { timestamp: T0, startingIndex: LATE_START, values: valuesA };
  Deno.bench("10-element chunk 100 keyframes back, cascading through all", {
    group: "b: late chunk behind 100 keyframes",
  }, () => {
    chunk.values = chunk.values === valuesA ? valuesB : valuesA;
    demuxer.receive(chunk);
  });
}

// Reference figures from DESIGN.md (no target ratio here).

{
  const demuxer = new TensorDemuxer(noopClient(), {
    dtype: "float32",
    length: N,
    dataTimeoutMicros: (WINDOW - 1) * STEP,
  });
  const chunk: MutableChunk = { timestamp: T0, startingIndex: 0, values: src };
  Deno.bench("one 100,000-element chunk at a new timestamp", {
    group: "reference",
  }, () => {
    chunk.timestamp += STEP;
    demuxer.receive(chunk);
  });
}

// Last, so the garbage it makes does not slow the benchmarks above.
Deno.bench("copy 100,000 float32 into a fresh array (src.slice())", {
  group: "reference",
}, () => {
  src.slice();
});
