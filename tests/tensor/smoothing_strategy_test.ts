import { assert, assertEquals, assertThrows } from "../_assert.ts";
import {
  allocate,
  type DType,
  type TensorArray,
  type TypedArrayByDType,
} from "../../tensor/dtype.ts";
import type { KeyframeReader } from "../../tensor/keyframe_reader.ts";
import { LinearInterpolationStrategy } from "../../tensor/linear_interpolation_strategy.ts";
import {
  defaultFillValue,
  fillTensor,
  type SmoothingSource,
  type SmoothingStrategy,
} from "../../tensor/smoothing_strategy.ts";
import { StepStrategy } from "../../tensor/step_strategy.ts";

const S = 1_000_000; // one second in microseconds

/** Keyframes in memory, sorted by time, that counts its bracket searches. */
class MemoryReader<A extends TensorArray = TensorArray> implements KeyframeReader<A> {
  readonly tensorLength: number;
  readonly times: number[] = [];
  readonly frames: A[] = [];
  searches = 0;

  constructor(tensorLength: number) {
    this.tensorLength = tensorLength;
  }

  static of<D extends DType>(
    dtype: D,
    keyframes: [number, (number | bigint)[]][],
  ): MemoryReader<TypedArrayByDType[D]> {
    const length = keyframes.length === 0 ? 1 : keyframes[0][1].length;
    const reader = new MemoryReader<TypedArrayByDType[D]>(length);
    for (const [ts, values] of keyframes) {
      const frame = allocate(dtype, length);
      values.forEach((v, i) => (frame as unknown as (number | bigint)[])[i] = v);
      reader.add(ts, frame);
    }
    return reader;
  }

  add(ts: number, frame: A): void {
    let i = this.times.length;
    while (i > 0 && this.times[i - 1] > ts) i--;
    if (this.times[i - 1] === ts) throw new Error("timestamps are unique keys");
    this.times.splice(i, 0, ts);
    this.frames.splice(i, 0, frame);
  }

  get keyframeCount(): number {
    return this.times.length;
  }

  keyframeTime(i: number): number {
    return this.times[i];
  }

  keyframeValues(i: number): A {
    return this.frames[i];
  }

  keyframeIndexAtOrBefore(timestamp: number): number {
    this.searches++;
    let lo = 0;
    let hi = this.times.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.times[mid] <= timestamp) lo = mid + 1;
      else hi = mid;
    }
    return lo - 1;
  }
}

/** Scalar keyframes (seconds → value) as a float64 reader, the spec's §6.6 setting. */
function scalar(keyframes: [number, number][]): MemoryReader<Float64Array> {
  return MemoryReader.of(
    "float64",
    keyframes.map(([s, v]) => [Math.round(s * S), [v]]),
  );
}

/** The outputs of `strategy` at each instant (in seconds) for a scalar float64 reader. */
function series(
  strategy: SmoothingStrategy,
  reader: KeyframeReader,
  seconds: number[],
  fillValue?: number,
): number[] {
  const out = new Float64Array(1);
  const source: SmoothingSource = { reader, dtype: "float64", fillValue };
  return seconds.map((s) => {
    strategy.interpolate(Math.round(s * S), out, source);
    return out[0];
  });
}

function assertClose(actual: number[], expected: number[], tolerance = 1e-9): void {
  assertEquals(actual.length, expected.length);
  actual.forEach((value, i) => {
    assert(
      Math.abs(value - expected[i]) <= tolerance,
      `element ${i}: expected ${expected[i]}, got ${value} (${actual.join(", ")})`,
    );
  });
}

/** A deterministic generator (mulberry32). */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const linear = new LinearInterpolationStrategy();

Deno.test("LinearInterpolationStrategy", async (t) => {
  await t.step("keeps both limits, null by default", () => {
    assertEquals(
      [linear.maxExtrapolationMicros, linear.maxInterpolationGapMicros],
      [null, null],
    );
    const limited = new LinearInterpolationStrategy({
      maxExtrapolationMicros: 2_500_000,
      maxInterpolationGapMicros: 5_500_000,
    });
    assertEquals(
      [limited.maxExtrapolationMicros, limited.maxInterpolationGapMicros],
      [2_500_000, 5_500_000],
    );
    const zero = new LinearInterpolationStrategy({
      maxExtrapolationMicros: 0,
      maxInterpolationGapMicros: 0,
    });
    assertEquals([zero.maxExtrapolationMicros, zero.maxInterpolationGapMicros], [0, 0]);
  });

  await t.step("rejects limits that are not null or integers >= 0", () => {
    assertThrows(
      () => new LinearInterpolationStrategy({ maxExtrapolationMicros: -1 }),
      RangeError,
      "'maxExtrapolationMicros' must be null or an integer >= 0 (microseconds): current value is -1",
    );
    assertThrows(
      () => new LinearInterpolationStrategy({ maxInterpolationGapMicros: 1.5 }),
      RangeError,
      "current value is 1.5",
    );
  });

  await t.step("outputs the fill value (NaN by default) with no keyframes", () => {
    const reader = scalar([]);
    assert(Number.isNaN(series(linear, reader, [10])[0]));
    assertEquals(series(linear, reader, [10], -5), [-5]);
    const out = new Float64Array(1);
    assertEquals(linear.interpolate(0, out, { reader, dtype: "float64" }), false);
  });

  await t.step("outputs the one keyframe's value everywhere", () => {
    assertEquals(series(linear, scalar([[10, 10]]), [5, 10, 15]), [10, 10, 10]);
  });

  await t.step("holds the boundary values before the first and after the last keyframe", () => {
    const reader = scalar([[10, 10], [20, 20]]);
    assertEquals(series(linear, reader, [5, 25]), [10, 20]);
  });

  await t.step("is exact on each keyframe", () => {
    assertEquals(series(linear, scalar([[10, 10], [20, 20]]), [10, 20]), [10, 20]);
  });

  await t.step("interpolates between two keyframes", () => {
    assertEquals(series(linear, scalar([[10, 10], [20, 20]]), [15, 12.5]), [15, 12.5]);
  });

  await t.step("follows three keyframes up and down", () => {
    const reader = scalar([[10, 10], [20, 20], [30, 15]]);
    assertClose(
      series(linear, reader, [5, 10, 15, 20, 25, 30, 35]),
      [10, 10, 15, 20, 17.5, 15, 15],
      1e-5,
    );
  });

  await t.step("keeps microsecond precision", () => {
    const reader = scalar([[10.1, 10], [10.6, 20]]);
    assertClose(series(linear, reader, [10.35]), [15]);
  });

  await t.step("has no duplicate-timestamp cases: keyframes 1 µs apart interpolate", () => {
    // Keyframe timestamps are unique keys in a demuxer, so the Python
    // original's duplicate-timestamp and zero-length-segment cases (spec §5.3)
    // cannot happen. The shortest segment is 1 µs.
    const reader = MemoryReader.of("float64", [[10, [10]], [11, [20]], [12, [30]]]);
    const out = new Float64Array(1);
    const values = [10, 11, 12].map((ts) => {
      linear.interpolate(ts, out, { reader, dtype: "float64" });
      return out[0];
    });
    assertEquals(values, [10, 20, 30]);
  });

  await t.step("holds plateaus flat", () => {
    const reader = scalar([[10, 10], [20, 20], [30, 20], [40, 20], [50, 30]]);
    assertEquals(
      series(linear, reader, [15, 25, 30, 35, 40, 45]),
      [15, 20, 20, 20, 20, 25],
    );
  });

  await t.step("changes by one microsecond's share around keyframes", () => {
    const reader = scalar([[10, 10], [20, 20]]);
    const out = new Float64Array(1);
    const at = (ts: number) => {
      linear.interpolate(ts, out, { reader, dtype: "float64" });
      return out[0];
    };
    assertEquals(at(10 * S - 1), 10);
    assertClose([at(10 * S + 1)], [10 + 10 * (1 / (10 * S))], 1e-12);
    assertClose([at(20 * S - 1)], [20 - 10 * (1 / (10 * S))], 1e-12);
    assertEquals(at(20 * S + 1), 20);
  });

  await t.step("matches a reference on 100 random keyframes and 200 sorted queries", () => {
    const random = seeded(42);
    const times: number[] = [];
    let ts = 1_700_000_000 * S;
    for (let i = 0; i < 100; i++) {
      ts += 1 + Math.floor(random() * 2 * S);
      times.push(ts);
    }
    const values = times.map(() => random() * 200 - 100);
    const reader = MemoryReader.of("float64", times.map((ts, i) => [ts, [values[i]]]));
    const first = times[0];
    const last = times[99];
    const queries = Array.from(
      { length: 200 },
      () => first - S + Math.floor(random() * (last - first + 2 * S)),
    ).sort((a, b) => a - b);
    const out = new Float64Array(1);
    const results = queries.map((q) => {
      linear.interpolate(q, out, { reader, dtype: "float64" });
      return out[0];
    });
    assertEquals(results.length, 200);
    queries.forEach((q, i) => {
      let expected: number;
      if (q <= first) expected = values[0];
      else if (q >= last) expected = values[99];
      else {
        const k = times.findLastIndex((t) => t <= q);
        const p = (q - times[k]) / (times[k + 1] - times[k]);
        expected = values[k] + p * (values[k + 1] - values[k]);
      }
      assert(Math.abs(results[i] - expected) < 1e-9, `query ${i} at ${q}`);
    });
    assert(queries.some((q) => q < first) && queries.some((q) => q > last));
    const k = times.findIndex((t, i) => i < 99 && (t + times[i + 1]) % 2 === 0);
    assert(k >= 0);
    linear.interpolate((times[k] + times[k + 1]) / 2, out, { reader, dtype: "float64" });
    assertClose([out[0]], [(values[k] + values[k + 1]) / 2]);
  });

  await t.step("interpolates the whole vector with one bracket search", () => {
    const reader = MemoryReader.of("float32", [[0, [0, 10, -4, 1]], [100, [100, 30, 4, 1]]]);
    const out = new Float32Array(4);
    reader.searches = 0;
    assertEquals(linear.interpolate(25, out, { reader, dtype: "float32" }), true);
    assertEquals(reader.searches, 1);
    assertEquals(Array.from(out), [25, 15, -2, 1]);
  });

  await t.step("outputs the fill value beyond maxExtrapolationMicros on either side", () => {
    const strategy = new LinearInterpolationStrategy({ maxExtrapolationMicros: 2 * S });
    const reader = scalar([[10, 10], [20, 20]]);
    assertEquals(
      series(strategy, reader, [7.999999, 8, 15, 22, 22.000001], -1),
      [-1, 10, 15, 20, -1],
    );
  });

  await t.step("holds the boundary only at the keyframe with maxExtrapolationMicros 0", () => {
    const strategy = new LinearInterpolationStrategy({ maxExtrapolationMicros: 0 });
    const reader = scalar([[10, 10], [20, 20]]);
    assertEquals(series(strategy, reader, [9.999999, 10, 20, 20.000001], -1), [-1, 10, 20, -1]);
  });

  await t.step("outputs the fill value inside a gap longer than maxInterpolationGapMicros", () => {
    const strategy = new LinearInterpolationStrategy({ maxInterpolationGapMicros: 10 * S });
    const reader = scalar([[10, 10], [20, 20], [40, 40], [45, 50]]);
    assertEquals(
      series(strategy, reader, [15, 25, 30, 39.999999, 40, 42.5], -1),
      [15, -1, -1, -1, 40, 45],
    );
  });

  await t.step("rounds integer dtypes to the nearest integer", () => {
    const reader = MemoryReader.of("int16", [[0, [0, 0, -10, 7]], [4, [1, 3, 10, 7]]]);
    const out = new Int16Array(4);
    linear.interpolate(1, out, { reader, dtype: "int16" }); // p = 0.25
    assertEquals(Array.from(out), [0, 1, -5, 7]);
    linear.interpolate(2, out, { reader, dtype: "int16" }); // p = 0.5: ties toward +∞
    assertEquals(Array.from(out), [1, 2, 0, 7]);
  });

  await t.step("interpolates uint8 without leaving its range", () => {
    const reader = MemoryReader.of("uint8", [[0, [0, 255]], [3, [255, 0]]]);
    const out = new Uint8Array(2);
    linear.interpolate(1, out, { reader, dtype: "uint8" });
    assertEquals(Array.from(out), [85, 170]);
  });

  await t.step("interpolates int64 exactly, beyond 2^53", () => {
    const big = 2n ** 62n;
    const reader = MemoryReader.of("int64", [[0, [0n, -big, 5n]], [3, [big, big, -5n]]]);
    const out = new BigInt64Array(3);
    linear.interpolate(1, out, { reader, dtype: "int64" });
    // big/3 = 1537228672809129301.33…; (-big + 2big/3) = -big/3 rounded half up.
    assertEquals(Array.from(out), [
      1537228672809129301n,
      -1537228672809129301n,
      2n,
    ]);
    linear.interpolate(2, out, { reader, dtype: "int64" });
    assertEquals(Array.from(out), [3074457345618258603n, 1537228672809129301n, -2n]);
  });

  await t.step("rounds int64 ties toward +∞ like the other integers", () => {
    const reader = MemoryReader.of("int64", [[0, [0n, 0n]], [2, [1n, -1n]]]);
    const out = new BigInt64Array(2);
    linear.interpolate(1, out, { reader, dtype: "int64" });
    assertEquals(Array.from(out), [1n, 0n]);
    assertEquals([Math.round(0.5), Math.round(-0.5) + 0], [1, 0]);
  });

  await t.step("holds the left value for bool", () => {
    const reader = MemoryReader.of("bool", [[0, [0, 1]], [10, [1, 0]]]);
    const out = new Uint8Array(2);
    linear.interpolate(9, out, { reader, dtype: "bool" });
    assertEquals(Array.from(out), [0, 1]);
    linear.interpolate(10, out, { reader, dtype: "bool" });
    assertEquals(Array.from(out), [1, 0]);
  });

  await t.step("interpolates float16", () => {
    const reader = MemoryReader.of("float16", [[0, [0, 1]], [4, [2, 3]]]);
    const out = new Float16Array(2);
    linear.interpolate(1, out, { reader, dtype: "float16" });
    assertEquals(Array.from(out), [0.5, 1.5]);
  });

  await t.step("fills int64 with 0n by default and with a given value", () => {
    const reader = MemoryReader.of("int64", [[10, [1n]]]);
    const strategy = new LinearInterpolationStrategy({ maxExtrapolationMicros: 1 });
    const out = new BigInt64Array(1);
    assertEquals(strategy.interpolate(0, out, { reader, dtype: "int64" }), false);
    assertEquals(out[0], 0n);
    strategy.interpolate(0, out, { reader, dtype: "int64", fillValue: -3 });
    assertEquals(out[0], -3n);
  });
});

Deno.test("StepStrategy", async (t) => {
  const step = new StepStrategy();

  await t.step("keeps its limit, null by default", () => {
    assertEquals(step.maxExtrapolationMicros, null);
    assertEquals(new StepStrategy({ maxExtrapolationMicros: 5 }).maxExtrapolationMicros, 5);
  });

  await t.step("rejects a limit that is not null or an integer >= 0", () => {
    assertThrows(
      () => new StepStrategy({ maxExtrapolationMicros: Number.NaN }),
      RangeError,
      "'maxExtrapolationMicros' must be null or an integer >= 0",
    );
  });

  await t.step("holds the newest keyframe at or before the instant", () => {
    const reader = scalar([[10, 10], [20, 20], [30, 15]]);
    assertEquals(
      series(step, reader, [10, 15, 19.999999, 20, 29, 30, 100]),
      [10, 10, 10, 20, 20, 15, 15],
    );
  });

  await t.step("outputs the fill value before the first keyframe and with none", () => {
    assertEquals(series(step, scalar([[10, 10]]), [9.999999], -1), [-1]);
    assert(Number.isNaN(series(step, scalar([]), [10])[0]));
  });

  await t.step("outputs the fill value beyond maxExtrapolationMicros after the last", () => {
    const limited = new StepStrategy({ maxExtrapolationMicros: S });
    const reader = scalar([[10, 10], [20, 20]]);
    assertEquals(series(limited, reader, [15, 21, 21.000001], -1), [10, 20, -1]);
  });

  await t.step("copies whole vectors of any dtype with one bracket search", () => {
    const reader = MemoryReader.of("int64", [[0, [1n, 2n]], [10, [3n, 4n]]]);
    const out = new BigInt64Array(2);
    reader.searches = 0;
    assertEquals(step.interpolate(5, out, { reader, dtype: "int64" }), true);
    assertEquals(reader.searches, 1);
    assertEquals(Array.from(out), [1n, 2n]);
  });
});

Deno.test("defaultFillValue and fillTensor", async (t) => {
  await t.step("default to NaN for floats, 0 for integers and bool, 0n for int64", () => {
    assertEquals(
      ([
        "float16",
        "float32",
        "float64",
        "bool",
        "int8",
        "uint8",
        "int16",
        "int32",
        "int64",
      ] as const)
        .map((d) => defaultFillValue(d)),
      [NaN, NaN, NaN, 0, 0, 0, 0, 0, 0n],
    );
  });

  await t.step("converts the fill value to the dtype", () => {
    const bool = new Uint8Array(2);
    fillTensor(bool, "bool", 5);
    assertEquals(Array.from(bool), [1, 1]);
    const int64 = new BigInt64Array(1);
    fillTensor(int64, "int64", 2.9);
    assertEquals(int64[0], 2n);
    const f32 = new Float32Array(1);
    fillTensor(f32, "float32");
    assert(Number.isNaN(f32[0]));
  });

  await t.step("rejects a non-finite fill value for int64", () => {
    assertThrows(() => fillTensor(new BigInt64Array(1), "int64", NaN), RangeError, "finite");
  });
});
