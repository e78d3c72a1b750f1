/**
 * The cost of one smoothed output of a 100,000-element float32 vector held in
 * 20 keyframes: one bracket search plus a whole-vector lerp into a reused
 * buffer. The physical limit it is compared with is one
 * `Float32Array.prototype.set` copy of the same vector into a reused buffer
 * (the group's baseline); the summary prints each case as a ratio of it.
 *
 * The target is under 1 ms per output (so 100 outputs/s take under 10 % of a
 * core). Also timed: the step strategy (a plain copy of the bracketing
 * keyframe), the same lerp into a fresh buffer per output (why the demuxer
 * reuses its output buffer), and a whole demuxer slot driven by a manual
 * scheduler and a fake clock (timer, clock, strategy, client call).
 *
 * Run with `deno bench -A bench/smoothing_bench.ts`.
 */

import { ManualScheduler } from "../rpc/scheduler.ts";
import { FakeClock } from "../rpc/fake_clock.ts";
import type { KeyframeReader } from "../tensor/keyframe_reader.ts";
import { LinearInterpolationStrategy } from "../tensor/linear_interpolation_strategy.ts";
import { SmoothedTensorDemuxer } from "../tensor/smoothed_tensor_demuxer.ts";
import type { SmoothingSource } from "../tensor/smoothing_strategy.ts";
import { StepStrategy } from "../tensor/step_strategy.ts";

const LENGTH = 100_000;
const KEYFRAMES = 20;
const START = 1_700_000_000_000_000; // µs since the epoch
const SPACING = 50_000; // 50 ms between keyframes
const INTERVAL = 10_000; // 100 outputs/s

const times = Array.from({ length: KEYFRAMES }, (_, k) => START + k * SPACING);
const frames = times.map((_, k) => {
  const frame = new Float32Array(LENGTH);
  for (let i = 0; i < LENGTH; i++) frame[i] = Math.sin(i / 500 + k) * 100;
  return frame;
});

const reader: KeyframeReader<Float32Array> = {
  tensorLength: LENGTH,
  keyframeCount: KEYFRAMES,
  keyframeTime: (i) => times[i],
  keyframeValues: (i) => frames[i],
  keyframeIndexAtOrBefore(ts) {
    let lo = 0;
    let hi = KEYFRAMES;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (times[mid] <= ts) lo = mid + 1;
      else hi = mid;
    }
    return lo - 1;
  },
};
const source: SmoothingSource = { reader, dtype: "float32" };
const linear = new LinearInterpolationStrategy();
const step = new StepStrategy();
const out = new Float32Array(LENGTH);
const SPAN = (KEYFRAMES - 1) * SPACING;

// Instants that are never on a keyframe, so every output is a real lerp.
let tick = 0;
function nextInstant(): number {
  tick = (tick + 1) % 1_000;
  return START + 1 + ((tick * 7_919) % (SPAN - 2));
}

const group = "one output, 100,000 float32, 20 keyframes";

Deno.bench({
  name: "Float32Array.set copy into a reused buffer",
  group,
  baseline: true,
  fn() {
    out.set(frames[tick = (tick + 1) % KEYFRAMES]);
  },
});

Deno.bench({
  name: "LinearInterpolationStrategy into a reused buffer",
  group,
  fn() {
    linear.interpolate(nextInstant(), out, source);
  },
});

Deno.bench({
  name: "StepStrategy into a reused buffer",
  group,
  fn() {
    step.interpolate(nextInstant(), out, source);
  },
});

Deno.bench({
  name: "LinearInterpolationStrategy into a fresh buffer",
  group,
  fn() {
    linear.interpolate(nextInstant(), new Float32Array(LENGTH), source);
  },
});

// A whole demuxer slot: the timer fires, the clock says one slot is due, the
// strategy fills the reused buffer and the client is called.
const scheduler = new ManualScheduler();
const clock = new FakeClock({ startMicros: START + 2 * INTERVAL });
let checksum = 0;
const demuxer = new SmoothedTensorDemuxer({
  onSmoothedTensor(_timestamp: number, values: Float32Array) {
    checksum += values[12_345];
  },
}, {
  reader,
  strategy: linear,
  dtype: "float32",
  outputIntervalMicros: INTERVAL,
  renderDelayMicros: 2 * INTERVAL,
  catchUp: "all",
  scheduler,
  clock,
});
demuxer.start();
scheduler.advance(0);

Deno.bench({
  name: "SmoothedTensorDemuxer slot (timer + clock + lerp + client)",
  group,
  fn() {
    // Loop over the keyframes' span so every slot interpolates.
    if (clock.now() - 2 * INTERVAL >= START + SPAN - INTERVAL) {
      demuxer.stop();
      clock.set(START + 2 * INTERVAL);
      demuxer.start();
      scheduler.advance(0);
    }
    clock.advance(INTERVAL);
    scheduler.advance(INTERVAL / 1_000);
  },
});

globalThis.addEventListener("unload", () => {
  demuxer.stop();
  if (Number.isNaN(checksum)) console.log("checksum", checksum);
});
