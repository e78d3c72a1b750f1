import { assert, assertEquals, assertThrows } from "../_assert.ts";
import { ManualScheduler } from "../../rpc/scheduler.ts";
import { FakeClock } from "../../rpc/fake_clock.ts";
import {
  allocate,
  type DType,
  type TensorArray,
  type TypedArrayByDType,
} from "../../tensor/dtype.ts";
import type { KeyframeReader } from "../../tensor/keyframe_reader.ts";
import { LinearInterpolationStrategy } from "../../tensor/linear_interpolation_strategy.ts";
import {
  type SmoothedTensorClient,
  SmoothedTensorDemuxer,
  type SmoothedTensorDemuxerOptions,
} from "../../tensor/smoothed_tensor_demuxer.ts";
import { StepStrategy } from "../../tensor/step_strategy.ts";

const MS = 1_000; // microseconds
const T = 1_700_000_000_000_000; // a round instant, in microseconds since the epoch

/** Keyframes in memory, sorted by (unique) time. */
class MemoryReader implements KeyframeReader {
  readonly tensorLength: number;
  readonly #dtype: DType;
  readonly #times: number[] = [];
  readonly #frames: TensorArray[] = [];

  constructor(dtype: DType, tensorLength: number) {
    this.#dtype = dtype;
    this.tensorLength = tensorLength;
  }

  add(ts: number, values: number[]): this {
    const frame = allocate(this.#dtype, this.tensorLength) as Float64Array;
    frame.set(values);
    let i = this.#times.length;
    while (i > 0 && this.#times[i - 1] > ts) i--;
    this.#times.splice(i, 0, ts);
    this.#frames.splice(i, 0, frame);
    return this;
  }

  get keyframeCount(): number {
    return this.#times.length;
  }

  keyframeTime(i: number): number {
    return this.#times[i];
  }

  keyframeValues(i: number): TensorArray {
    return this.#frames[i];
  }

  keyframeIndexAtOrBefore(timestamp: number): number {
    let lo = 0;
    let hi = this.#times.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.#times[mid] <= timestamp) lo = mid + 1;
      else hi = mid;
    }
    return lo - 1;
  }
}

/** Records each output as [timestamp, values copied]. */
class Recorder<A extends TensorArray> implements SmoothedTensorClient<A> {
  readonly outputs: [number, number[]][] = [];
  readonly buffers: A[] = [];

  onSmoothedTensor(timestamp: number, values: A): void {
    this.outputs.push([timestamp, Array.from(values as ArrayLike<number>)]);
    this.buffers.push(values);
  }

  get timestamps(): number[] {
    return this.outputs.map(([ts]) => ts);
  }
}

/** A manual scheduler (ms) and a fake clock (µs) that move together. */
class Harness {
  readonly scheduler = new ManualScheduler();
  readonly clock: FakeClock;

  constructor(startMicros: number) {
    this.clock = new FakeClock({ startMicros });
  }

  /** Moves both by `ms`, firing each timer with the clock at its due time. */
  async advance(ms: number): Promise<void> {
    let remaining = ms;
    for (let next = this.scheduler.nextIn; next !== undefined && next <= remaining;) {
      this.clock.advance(next * MS);
      this.scheduler.advance(next);
      remaining -= next;
      await flush();
      next = this.scheduler.nextIn;
    }
    this.clock.advance(remaining * MS);
    this.scheduler.advance(remaining);
    await flush();
  }

  /** A stall: the clock jumps by `ms` and only then do the due timers fire. */
  async stall(ms: number): Promise<void> {
    this.clock.advance(ms * MS);
    this.scheduler.advance(ms);
    await flush();
  }

  demuxer<D extends DType>(
    client: SmoothedTensorClient<TypedArrayByDType[D]>,
    options: Omit<SmoothedTensorDemuxerOptions<D>, "scheduler" | "clock">,
  ): SmoothedTensorDemuxer<D> {
    return new SmoothedTensorDemuxer(client, {
      ...options,
      scheduler: this.scheduler,
      clock: this.clock,
    });
  }
}

async function flush(): Promise<void> {
  for (let i = 0; i < 10; i++) await Promise.resolve();
}

const linear = new LinearInterpolationStrategy();

function baseOptions(reader: KeyframeReader): SmoothedTensorDemuxerOptions<"float32"> {
  return { reader, strategy: linear, dtype: "float32", outputIntervalMicros: 100 * MS };
}

Deno.test("SmoothedTensorDemuxer options", async (t) => {
  await t.step("keeps the shape, interval and defaults", () => {
    const reader = new MemoryReader("float32", 12);
    const demuxer = new SmoothedTensorDemuxer(new Recorder(), {
      ...baseOptions(reader),
      shape: [3, 4],
      outputIntervalMicros: 500 * MS,
    });
    assertEquals(
      [demuxer.tensorLength, demuxer.shape, demuxer.outputIntervalMicros, demuxer.dtype],
      [12, [3, 4], 500 * MS, "float32"],
    );
    assertEquals(
      [demuxer.renderDelayMicros, demuxer.align, demuxer.catchUp, demuxer.running],
      [1_000 * MS, false, "latest", false],
    );
    assert(Number.isNaN(demuxer.fillValue));
  });

  await t.step("defaults the shape to the flat length and the fill to 0 for integers", () => {
    const demuxer = new SmoothedTensorDemuxer(new Recorder(), {
      ...baseOptions(new MemoryReader("int32", 5)),
      dtype: "int32",
    });
    assertEquals([demuxer.shape, demuxer.fillValue], [[5], 0]);
  });

  await t.step("takes an empty shape as one element", () => {
    const demuxer = new SmoothedTensorDemuxer(new Recorder(), {
      ...baseOptions(new MemoryReader("float32", 1)),
      shape: [],
    });
    assertEquals(demuxer.shape, []);
  });

  await t.step("rejects bad options with messages that say what was wanted", () => {
    const reader = new MemoryReader("float32", 4);
    const make = (options: Partial<SmoothedTensorDemuxerOptions<DType>>) => () =>
      new SmoothedTensorDemuxer(new Recorder(), {
        ...baseOptions(reader),
        ...options,
      } as SmoothedTensorDemuxerOptions<DType>);
    assertThrows(
      make({ outputIntervalMicros: 0 }),
      RangeError,
      "'outputIntervalMicros' must be an integer > 0: current value is 0",
    );
    assertThrows(make({ outputIntervalMicros: 1.5 }), RangeError, "outputIntervalMicros");
    assertThrows(
      make({ renderDelayMicros: -1 }),
      RangeError,
      "'renderDelayMicros' must be an integer >= 0: current value is -1",
    );
    assertThrows(
      make({ shape: [3, 2] }),
      RangeError,
      "'shape' must be dimensions whose product is the reader's tensorLength 4: current value is [3, 2]",
    );
    assertThrows(make({ shape: [2, -2] }), RangeError, "'shape' must be an array of integers");
    assertThrows(
      make({ dtype: "int32", fillValue: NaN }),
      RangeError,
      "'fillValue' must be an integer in -2147483648..2147483647 for int32: current value is NaN",
    );
    assertThrows(make({ dtype: "uint8", fillValue: 300 }), RangeError, "0..255 for uint8");
    assertThrows(make({ dtype: "bool", fillValue: 2 }), RangeError, "0..1 for bool");
    assertThrows(make({ dtype: "float" as DType }), TypeError, "'dtype' must be one of");
    assertThrows(
      make({ catchUp: "some" as "all" }),
      RangeError,
      `'catchUp' must be "all" or "latest": current value is "some"`,
    );
    assertThrows(make({ strategy: {} as LinearInterpolationStrategy }), TypeError, "'strategy'");
    assertThrows(make({ reader: {} as KeyframeReader }), TypeError, "'reader' must be");
    assertThrows(
      make({ scheduler: { setTimeout() {} } as never }),
      TypeError,
      "'scheduler' must be",
    );
    assertThrows(
      () => new SmoothedTensorDemuxer({} as Recorder<Float32Array>, baseOptions(reader)),
      TypeError,
      "'client' must be an object with an onSmoothedTensor method",
    );
  });
});

Deno.test("SmoothedTensorDemuxer scheduling", async (t) => {
  await t.step("emits at every interval even when no data arrives", async () => {
    const h = new Harness(T);
    const client = new Recorder<Float32Array>();
    const demuxer = h.demuxer(client, baseOptions(new MemoryReader("float32", 2)));
    demuxer.start();
    assertEquals(client.outputs.length, 0); // never from inside start()
    await h.advance(0);
    await h.advance(500);
    assertEquals(client.outputs.length, 6);
    assert(client.outputs.every(([, v]) => v.every(Number.isNaN)));
    assertEquals(h.scheduler.delays, [0, 100, 100, 100, 100, 100, 100]);
    await demuxer.stop();
  });

  await t.step("stamps outputs now − renderDelay, one interval apart", async () => {
    const h = new Harness(T + 37);
    const client = new Recorder<Float32Array>();
    const demuxer = h.demuxer(client, {
      ...baseOptions(new MemoryReader("float32", 1)),
      renderDelayMicros: 250 * MS,
    });
    demuxer.start();
    await h.advance(300);
    const first = T + 37 - 250 * MS;
    assertEquals(client.timestamps, [0, 1, 2, 3].map((k) => first + k * 100 * MS));
    assertEquals(demuxer.lastOutputTimestamp, first + 300 * MS);
    await demuxer.stop();
  });

  await t.step("aligns slots to exact multiples of the interval, never skipping one", async () => {
    const h = new Harness(T + 12_345);
    const client = new Recorder<Float32Array>();
    const demuxer = h.demuxer(client, {
      ...baseOptions(new MemoryReader("float32", 1)),
      align: true,
    });
    demuxer.start();
    await h.advance(2_000);
    const interval = 100 * MS;
    const ts = client.timestamps;
    assertEquals(ts[0], Math.ceil((T + 12_345 - 200 * MS) / interval) * interval);
    assert(ts.every((t) => t % interval === 0));
    assertEquals(ts.slice(1).map((t, i) => t - ts[i]), new Array(ts.length - 1).fill(interval));
    assertEquals(ts.length, 20);
    await demuxer.stop();
  });

  await t.step("emits an aligned first slot at once when the clock is on a boundary", async () => {
    const h = new Harness(T);
    const client = new Recorder<Float32Array>();
    const demuxer = h.demuxer(client, {
      ...baseOptions(new MemoryReader("float32", 1)),
      align: true,
    });
    demuxer.start();
    await h.advance(0);
    assertEquals(client.timestamps, [T - 200 * MS]);
    await demuxer.stop();
  });

  await t.step("skips to the latest slot after a stall with catchUp 'latest'", async () => {
    const h = new Harness(T);
    const client = new Recorder<Float32Array>();
    const demuxer = h.demuxer(client, {
      ...baseOptions(new MemoryReader("float32", 1)),
      align: true,
    });
    demuxer.start();
    await h.advance(0);
    await h.stall(500);
    assertEquals(client.timestamps, [T - 200 * MS, T + 300 * MS]);
    assertEquals(demuxer.skippedCount, 4);
    await h.advance(100);
    assertEquals(client.timestamps.at(-1), T + 400 * MS);
    await demuxer.stop();
  });

  await t.step("emits every missed slot in order after a stall with catchUp 'all'", async () => {
    const h = new Harness(T);
    const client = new Recorder<Float32Array>();
    const demuxer = h.demuxer(client, {
      ...baseOptions(new MemoryReader("float32", 1)),
      align: true,
      catchUp: "all",
    });
    demuxer.start();
    await h.advance(0);
    await h.stall(500);
    assertEquals(client.timestamps, [-2, -1, 0, 1, 2, 3].map((k) => T + k * 100 * MS));
    assertEquals([demuxer.skippedCount, demuxer.emittedCount], [0, 6]);
    await demuxer.stop();
  });

  await t.step("waits for a slow client: calls never overlap", async () => {
    const h = new Harness(T);
    let active = 0;
    let maxActive = 0;
    const timestamps: number[] = [];
    const releases: (() => void)[] = [];
    const client = {
      onSmoothedTensor(timestamp: number): Promise<void> {
        timestamps.push(timestamp);
        maxActive = Math.max(maxActive, ++active);
        return new Promise<void>((resolve) =>
          releases.push(() => {
            active--;
            resolve();
          })
        );
      },
    };
    const demuxer = h.demuxer(client, {
      ...baseOptions(new MemoryReader("float32", 1)),
      align: true,
    });
    demuxer.start();
    await h.advance(350);
    assertEquals(timestamps, [T - 200 * MS]);
    assertEquals(h.scheduler.pending, 0); // no timer while the client works
    releases.shift()!();
    await flush();
    // Released at T + 350 ms: the latest due slot is T + 100 ms.
    assertEquals(timestamps, [T - 200 * MS, T + 100 * MS]);
    assertEquals(maxActive, 1);
    releases.shift()!();
    await demuxer.stop();
  });

  await t.step("reports client errors, sync or async, and keeps going", async () => {
    const h = new Harness(T);
    const errors: unknown[] = [];
    let calls = 0;
    const client = {
      onSmoothedTensor(): Promise<void> | void {
        calls++;
        if (calls === 1) throw new Error("sync");
        if (calls === 2) return Promise.reject(new Error("async"));
      },
    };
    const demuxer = h.demuxer(client, {
      ...baseOptions(new MemoryReader("float32", 1)),
      onError: (error) => errors.push(error),
    });
    demuxer.start();
    await h.advance(200);
    assertEquals(calls, 3);
    assertEquals(errors.map((e) => (e as Error).message), ["sync", "async"]);
    await demuxer.stop();
  });

  await t.step("reuses one output buffer of the stream's dtype", async () => {
    const h = new Harness(T);
    const client = new Recorder<Int32Array>();
    const reader = new MemoryReader("int32", 2).add(T - 300 * MS, [1, 2]);
    const demuxer = h.demuxer(client, {
      ...baseOptions(reader),
      dtype: "int32",
    });
    demuxer.start();
    await h.advance(200);
    assertEquals(client.buffers.length, 3);
    assert(client.buffers[0] instanceof Int32Array);
    assert(client.buffers.every((b) => b === client.buffers[0]));
    await demuxer.stop();
  });
});

Deno.test("SmoothedTensorDemuxer lifecycle", async (t) => {
  await t.step("stop() clears the timer, stops output and can be called again", async () => {
    const h = new Harness(T);
    const client = new Recorder<Float32Array>();
    const demuxer = h.demuxer(client, baseOptions(new MemoryReader("float32", 1)));
    demuxer.start();
    await h.advance(100);
    assertEquals(h.scheduler.pending, 1);
    await demuxer.stop();
    assertEquals([h.scheduler.pending, demuxer.running], [0, false]);
    await demuxer.stop();
    await h.advance(1_000);
    assertEquals(client.outputs.length, 2);
  });

  await t.step("start() while running does nothing", async () => {
    const h = new Harness(T);
    const client = new Recorder<Float32Array>();
    const demuxer = h.demuxer(client, baseOptions(new MemoryReader("float32", 1)));
    demuxer.start();
    demuxer.start();
    assertEquals(h.scheduler.pending, 1);
    await h.advance(100);
    assertEquals(client.outputs.length, 2);
    await demuxer.stop();
  });

  await t.step("starts again after stop() with a fresh first slot", async () => {
    const h = new Harness(T);
    const client = new Recorder<Float32Array>();
    const demuxer = h.demuxer(client, baseOptions(new MemoryReader("float32", 1)));
    demuxer.start();
    await h.advance(0);
    await demuxer.stop();
    await h.advance(1_000);
    demuxer.start();
    await h.advance(0);
    assertEquals(client.timestamps, [T - 200 * MS, T + 800 * MS]);
    await demuxer.stop();
  });

  await t.step("a stop and start during a slow callback does not overlap calls", async () => {
    const h = new Harness(T);
    let active = 0;
    let maxActive = 0;
    let release: (() => void) | undefined;
    const client = {
      onSmoothedTensor(): Promise<void> {
        maxActive = Math.max(maxActive, ++active);
        return new Promise<void>((resolve) =>
          release = () => {
            active--;
            resolve();
          }
        );
      },
    };
    const demuxer = h.demuxer(client, baseOptions(new MemoryReader("float32", 1)));
    demuxer.start();
    await h.advance(0);
    const stopped = demuxer.stop();
    demuxer.start();
    await h.advance(0);
    assertEquals(active, 1);
    release!();
    await stopped;
    await flush();
    assertEquals([active, maxActive], [1, 1]);
    release!();
    await demuxer.stop();
  });

  await t.step("await using stops it for good", async () => {
    const h = new Harness(T);
    let demuxer: SmoothedTensorDemuxer<"float32"> | undefined;
    {
      await using d = h.demuxer(new Recorder<Float32Array>(), {
        ...baseOptions(new MemoryReader("float32", 1)),
      });
      d.start();
      demuxer = d;
    }
    assertEquals(h.scheduler.pending, 0);
    assertThrows(() => demuxer.start(), Error, "disposed");
  });
});

Deno.test("SmoothedTensorDemuxer values", async (t) => {
  await t.step("interpolates a (2,2) tensor between two keyframes (spec 6.7 case 2)", async () => {
    const h = new Harness(T + 200 * MS);
    const reader = new MemoryReader("float32", 4)
      .add(T, [10, 0, 0, 100])
      .add(T + 200 * MS, [30, 0, 0, 200]);
    const client = new Recorder<Float32Array>();
    const demuxer = h.demuxer(client, { ...baseOptions(reader), shape: [2, 2] });
    demuxer.start();
    await h.advance(200);
    assertEquals(client.outputs, [
      [T, [10, 0, 0, 100]],
      [T + 100 * MS, [20, 0, 0, 150]],
      [T + 200 * MS, [30, 0, 0, 200]],
    ]);
    await demuxer.stop();
  });

  await t.step("keeps a keyframe's zeros and fills only uncovered times (case 3)", async () => {
    const h = new Harness(T - 50 * MS + 100 * MS);
    const reader = new MemoryReader("float32", 3)
      .add(T, [10, 500, 0])
      .add(T + 200 * MS, [30, 0, 0]);
    const client = new Recorder<Float32Array>();
    const demuxer = h.demuxer(client, {
      ...baseOptions(reader),
      strategy: new LinearInterpolationStrategy({ maxExtrapolationMicros: 0 }),
      shape: [1, 3],
      fillValue: -77,
      outputIntervalMicros: 50 * MS,
    });
    demuxer.start();
    await h.advance(50);
    assertEquals(client.outputs, [
      [T - 50 * MS, [-77, -77, -77]],
      [T, [10, 500, 0]],
    ]);
    await demuxer.stop();
  });

  await t.step("gives the mean of the neighbours at a midpoint (case 4)", async () => {
    const reader = new MemoryReader("float32", 1);
    for (let k = 0; k < 12; k++) reader.add(T + k * 100 * MS, [10 * (k + 1)]);
    const mid = T + 1_050 * MS;
    const h = new Harness(mid + 20 * MS);
    const client = new Recorder<Float32Array>();
    const demuxer = h.demuxer(client, {
      ...baseOptions(reader),
      shape: [1, 1],
      outputIntervalMicros: 10 * MS,
    });
    demuxer.start();
    await h.advance(0);
    assertEquals(client.outputs, [[mid, [115]]]);
    await demuxer.stop();
  });

  await t.step(
    "outputs the fill value until keyframes cover the slot, then their values",
    async () => {
      const h = new Harness(T);
      const reader = new MemoryReader("float32", 2);
      const client = new Recorder<Float32Array>();
      const demuxer = h.demuxer(client, {
        ...baseOptions(reader),
        strategy: new StepStrategy(),
        fillValue: -1,
      });
      demuxer.start();
      await h.advance(0);
      reader.add(T - 100 * MS, [5, 6]); // arrives late, for an instant not yet rendered
      await h.advance(200);
      assertEquals(client.outputs, [
        [T - 200 * MS, [-1, -1]],
        [T - 100 * MS, [5, 6]],
        [T, [5, 6]],
      ]);
      await demuxer.stop();
    },
  );
});
