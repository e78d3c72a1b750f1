/**
 * LZ4 frame codec throughput on 1 MiB of float32 tensor data, against a plain
 * copy of the same bytes (`Uint8Array.prototype.set` into a reused buffer) as
 * the physical limit. Each group's summary gives the codec's time as a ratio
 * of the copy's.
 *
 * Three data sets, from very to not at all compressible:
 * - `ramp`: v[i] = (i % 17) * 0.25, the golden vector's pattern (about 220:1);
 * - `steps`: a slow sine quantised to 0.25, so values repeat in runs;
 * - `noisy`: a sine plus small noise, where the float32 mantissas leave LZ4
 *   nothing to find (every block is stored uncompressed).
 *
 * The decompress groups also time allocating a fresh 1 MiB array and copying
 * into it: `decompressFrame` must return a fresh array, and on these machines
 * the first touch of fresh pages is a large share of its time.
 *
 * Run with `deno bench -A bench/lz4_bench.ts`.
 */

import { compressFrame, decompressFrame } from "../tensor/_lz4.ts";

const VALUES = 256 * 1024; // 1 MiB of float32

function dataset(value: (i: number) => number): Uint8Array {
  const values = new Float32Array(VALUES);
  for (let i = 0; i < VALUES; i++) values[i] = value(i);
  return new Uint8Array(values.buffer);
}

let seed = 0x2545f491;
function noise(): number {
  seed = (Math.imul(seed, 1103515245) + 12345) | 0;
  return ((seed >>> 16) & 0xff) / 2560;
}

const datasets: [string, Uint8Array][] = [
  ["ramp", dataset((i) => (i % 17) * 0.25)],
  ["steps", dataset((i) => Math.round(Math.sin(i / 2000) * 40) / 4)],
  ["noisy", dataset((i) => Math.sin(i / 200) * 10 + noise())],
];

const copyTarget = new Uint8Array(VALUES * 4);

for (const [name, raw] of datasets) {
  const frame = compressFrame(raw);
  const ratio = `${(raw.length / frame.length).toFixed(2)}:1`;
  const compressGroup = `compress 1 MiB float32 ${name} (${ratio})`;
  const decompressGroup = `decompress 1 MiB float32 ${name} (${ratio})`;

  Deno.bench({
    name: `copy 1 MiB, ${name}`,
    group: compressGroup,
    baseline: true,
    fn() {
      copyTarget.set(raw);
    },
  });
  Deno.bench({
    name: `compressFrame, ${name}`,
    group: compressGroup,
    fn() {
      compressFrame(raw);
    },
  });

  Deno.bench({
    name: `copy 1 MiB, ${name} `,
    group: decompressGroup,
    baseline: true,
    fn() {
      copyTarget.set(raw);
    },
  });
  Deno.bench({
    name: `fresh 1 MiB array + copy, ${name}`,
    group: decompressGroup,
    fn() {
      new Uint8Array(raw.length).set(raw);
    },
  });
  Deno.bench({
    name: `decompressFrame, ${name}`,
    group: decompressGroup,
    fn() {
      decompressFrame(frame);
    },
  });
}
