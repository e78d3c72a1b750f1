import { assert, assertEquals, assertRejects, assertThrows } from "../_assert.ts";
import fc from "fast-check";
import {
  allocate,
  type DType,
  type TensorArray,
  UnsupportedDTypeError,
} from "../../tensor/dtype.ts";
import type { TensorChunk, TensorChunkSink } from "../../tensor/tensor_chunk.ts";
import {
  SparseTensorMultiplexer,
  type SparseTensorMultiplexerOptions,
} from "../../tensor/sparse_multiplexer.ts";
import { StaleDataError } from "../../tensor/stale_data_error.ts";
import { FakeClock } from "../../rpc/fake_clock.ts";

const SECOND = 1_000_000;
const BASE = 1_700_000_000_000_000;
// spec §6.1: T0..T4 = base-30 s, -20, -10, base, +10
const [T0, T1, T2, T3, T4] = [-30, -20, -10, 0, 10].map((s) => BASE + s * SECOND);

type Row = [number, number, unknown[]];

/** The elements of any typed array, as a plain array. */
function list(values: ArrayLike<unknown> | TensorArray): unknown[] {
  return Array.from(values as ArrayLike<unknown>);
}

class Recorder implements TensorChunkSink {
  chunks: TensorChunk[] = [];
  onChunk(chunk: TensorChunk): void {
    this.chunks.push(chunk);
  }
  /** The chunks received since the last call, as [timestamp, start, values]. */
  take(): Row[] {
    const rows = this.chunks.map((c): Row => [c.timestamp, c.startingIndex, list(c.values)]);
    this.chunks = [];
    return rows;
  }
}

/** A typed array of `dtype` holding `values` (bigints for int64). */
function arr(dtype: DType, values: readonly number[]): TensorArray {
  const out = allocate(dtype, values.length);
  for (let i = 0; i < values.length; i++) {
    (out as unknown as unknown[])[i] = dtype === "int64" ? BigInt(values[i]) : values[i];
  }
  return out;
}

/** The element values `values` take once stored in `dtype`. */
function els(dtype: DType, values: readonly number[]): unknown[] {
  return list(arr(dtype, values));
}

function setup(
  dtype: DType = "float32",
  options: Partial<SparseTensorMultiplexerOptions> = {},
): { muxer: SparseTensorMultiplexer; sink: Recorder } {
  const sink = new Recorder();
  const muxer = new SparseTensorMultiplexer(sink, { dtype, length: 5, ...options });
  return { muxer, sink };
}

const NUMERIC: DType[] = ["float32", "int64", "float16", "int32"];

Deno.test("SparseTensorMultiplexer: the spec §6.1 catalogue", async (t) => {
  await t.step("1. rejects a zero length and a zero timeout", () => {
    const sink = new Recorder();
    assertThrows(
      () => new SparseTensorMultiplexer(sink, { dtype: "float32", length: 0 }),
      RangeError,
      "'length' must be a positive integer: current value is 0",
    );
    assertThrows(
      () =>
        new SparseTensorMultiplexer(sink, { dtype: "float32", length: 5, dataTimeoutMicros: 0 }),
      RangeError,
      "'dataTimeoutMicros' must be a positive integer: current value is 0",
    );
  });

  for (const dtype of NUMERIC) {
    await t.step(
      `2. (${dtype}) the first snapshot is diffed against the zero baseline`,
      async () => {
        const { muxer, sink } = setup(dtype);
        await muxer.process(arr(dtype, [1, 2, 3, 4, 5]), T1);
        assertEquals(sink.take(), [[T1, 0, els(dtype, [1, 2, 3, 4, 5])]]);
      },
    );

    await t.step(`3. (${dtype}) a later snapshot sends only the changed runs`, async () => {
      const { muxer, sink } = setup(dtype);
      await muxer.process(arr(dtype, [1, 2, 3, 4, 5]), T1);
      sink.take();
      await muxer.process(arr(dtype, [1, 2, 99, 4, 88]), T2);
      assertEquals(sink.take(), [[T2, 2, els(dtype, [99])], [T2, 4, els(dtype, [88])]]);
    });

    await t.step(
      `6. (${dtype}) a late snapshot cascades to the next one only where needed`,
      async () => {
        const { muxer, sink } = setup(dtype);
        await muxer.process(arr(dtype, [1, 2, 3, 4, 5]), T2);
        sink.take();
        await muxer.process(arr(dtype, [1, 4, 4, 4, 4]), T1);
        assertEquals(sink.take(), [
          [T1, 0, els(dtype, [1, 4, 4, 4, 4])],
          [T2, 1, els(dtype, [2, 3])],
          [T2, 4, els(dtype, [5])],
        ]);
      },
    );
  }

  await t.step("4. the same values at a new or the same timestamp give no chunks", async () => {
    const { muxer, sink } = setup();
    await muxer.process(new Float32Array([1, 2, 3, 4, 5]), T1);
    sink.take();
    await muxer.process(new Float32Array([1, 2, 3, 4, 5]), T2);
    await muxer.process(new Float32Array([1, 2, 3, 4, 5]), T2);
    assertEquals(sink.take(), []);
    assertEquals(list(muxer.getTensorAt(T2)!), [1, 2, 3, 4, 5]);
  });

  await t.step(
    "5. a replacement sends what differs from the predecessor and from the old version",
    async () => {
      const { muxer, sink } = setup();
      await muxer.process(new Float32Array([1, 0, 0, 0, 0]), T1);
      sink.take();
      await muxer.process(new Float32Array([1, 9, 0, 8, 0]), T1);
      assertEquals(sink.take(), [[T1, 0, [1, 9]], [T1, 3, [8]]]);
    },
  );

  await t.step(
    "7. with a 0.1 s timeout an old snapshot is pruned before the new one is diffed",
    async () => {
      const { muxer, sink } = setup("float32", { dataTimeoutMicros: 100_000 });
      await muxer.process(new Float32Array([1, 1, 1, 1, 1]), T0);
      sink.take();
      await muxer.process(new Float32Array([2, 2, 2, 2, 2]), T2);
      assertEquals(sink.take(), [[T2, 0, [2, 2, 2, 2, 2]]]);
      assertEquals(muxer.getTensorAt(T0), null);
      assertEquals(list(muxer.getTensorAt(T2)!), [2, 2, 2, 2, 2]);
    },
  );

  await t.step("8. a length-2 input is rejected with the expected message", async () => {
    const { muxer } = setup();
    await assertRejects(
      () => muxer.process(new Float32Array([1, 2]), T1),
      RangeError,
      "Input tensor length 2 does not match expected length 5",
    );
  });

  await t.step(
    "9. getTensorAt returns equal but distinct copies, or null, and emits nothing",
    async () => {
      const { muxer, sink } = setup();
      await muxer.process(new Float32Array([1, 2, 3, 4, 5]), T1);
      sink.take();
      const a = muxer.getTensorAt(T1)!;
      const b = muxer.getTensorAt(T1)!;
      assertEquals(list(a), [1, 2, 3, 4, 5]);
      assert(a !== b && a.buffer !== b.buffer);
      a[0] = 42;
      assertEquals(list(muxer.getTensorAt(T1)!), [1, 2, 3, 4, 5]);
      assertEquals(muxer.getTensorAt(T3), null);
      assertEquals(sink.take(), []);
    },
  );

  await t.step("10. [1,2,3,4,5] then [10,2,30,40,5] gives (0,[10]) and (2,[30,40])", async () => {
    const { muxer, sink } = setup();
    await muxer.process(new Float32Array([1, 2, 3, 4, 5]), T1);
    sink.take();
    await muxer.process(new Float32Array([10, 2, 30, 40, 5]), T2);
    assertEquals(sink.take(), [[T2, 0, [10]], [T2, 2, [30, 40]]]);
  });
});

Deno.test("SparseTensorMultiplexer: bug fixes", async (t) => {
  await t.step("bug 1: reverting a replaced value at the same timestamp is sent", async () => {
    const { muxer, sink } = setup("float32", { length: 2 });
    await muxer.process(new Float32Array([0, 5]), T1);
    sink.take();
    await muxer.process(new Float32Array([0, 0]), T1);
    assertEquals(sink.take(), [[T1, 1, [0]]]);
  });

  await t.step("bug 1: the longer revert sequence leaves a receiver exact", async () => {
    const { muxer, sink } = setup("float32", { length: 2 });
    await muxer.process(new Float32Array([1, 0]), T1);
    await muxer.process(new Float32Array([1, 5]), T2);
    await muxer.process(new Float32Array([1, 5]), T1);
    await muxer.process(new Float32Array([1, 0]), T1);
    assertEquals(sink.take(), [
      [T1, 0, [1]],
      [T2, 1, [5]],
      [T1, 0, [1, 5]],
      [T1, 0, [1, 0]],
      [T2, 1, [5]],
    ]);
  });

  await t.step("bug 2: the first snapshot is diffed against the given baseline", async () => {
    const { muxer, sink } = setup("int64", {
      length: 3,
      baseline: new BigInt64Array([7n, 7n, 7n]),
    });
    await muxer.process(new BigInt64Array([7n, 8n, 7n]), T1);
    assertEquals(sink.take(), [[T1, 1, [8n]]]);
  });

  await t.step("bug 2: a baseline of the wrong class or length is rejected", () => {
    const sink = new Recorder();
    assertThrows(
      () =>
        new SparseTensorMultiplexer(sink, {
          dtype: "float32",
          length: 3,
          baseline: new Float64Array(3) as unknown as Float32Array,
        }),
      TypeError,
      "must be a Float32Array for dtype float32: current value is a Float64Array",
    );
    assertThrows(
      () =>
        new SparseTensorMultiplexer(sink, {
          dtype: "float32",
          length: 3,
          baseline: new Float32Array(4),
        }),
      RangeError,
      "Input tensor length 4 does not match expected length 3",
    );
  });

  await t.step("bug 2: the baseline is copied, not kept", async () => {
    const baseline = new Float32Array([1, 1]);
    const { muxer, sink } = setup("float32", { length: 2, baseline });
    baseline[0] = 9;
    await muxer.process(new Float32Array([1, 2]), T1);
    assertEquals(sink.take(), [[T1, 1, [2]]]);
  });

  await t.step("bug 3: once pruned, the newest pruned snapshot is the diff baseline", async () => {
    const { muxer, sink } = setup("float32", { length: 3, dataTimeoutMicros: 100_000 });
    await muxer.process(new Float32Array([1, 0, 3]), T0);
    sink.take();
    // Python diffed against zeros here and never sent element 0's change to 0.
    await muxer.process(new Float32Array([0, 0, 3]), T1);
    assertEquals(sink.take(), [[T1, 0, [0]]]);
    assertEquals(muxer.getTensorAt(T0), null);
  });

  await t.step("bug 3: input older than the window is rejected and changes nothing", async () => {
    const { muxer, sink } = setup("float32", { length: 2, dataTimeoutMicros: SECOND });
    await muxer.process(new Float32Array([1, 2]), T3);
    sink.take();
    const error = await assertRejects(
      () => muxer.process(new Float32Array([5, 5]), T3 - SECOND - 1),
      StaleDataError,
      `cutoff ${T3 - SECOND}: current value is ${T3 - SECOND - 1}`,
    );
    assertEquals([error.timestamp, error.cutoff], [T3 - SECOND - 1, T3 - SECOND]);
    assertEquals(sink.take(), []);
    assertEquals(muxer.getTensorAt(T3 - SECOND - 1), null);
    // Exactly at the cutoff is still inside the window.
    await muxer.process(new Float32Array([1, 2]), T3 - SECOND);
    assertEquals(sink.take(), [[T3 - SECOND, 0, [1, 2]]]);
  });

  await t.step("bug 9: an unchanged NaN is not resent; -0 and +0 differ", async () => {
    const { muxer, sink } = setup("float32", { length: 3 });
    await muxer.process(new Float32Array([NaN, 1, 0]), T1);
    sink.take();
    await muxer.process(new Float32Array([NaN, 2, -0]), T2);
    assertEquals(sink.take(), [[T2, 1, [2, -0]]]);
    await muxer.process(new Float32Array([NaN, 2, -0]), T2);
    assertEquals(sink.take(), []);
  });

  await t.step("bug 9: NaN in float16 and float64 compares bit for bit too", async () => {
    for (const dtype of ["float16", "float64"] as const) {
      const { muxer, sink } = setup(dtype, { length: 2 });
      await muxer.process(arr(dtype, [NaN, 1]), T1);
      sink.take();
      await muxer.process(arr(dtype, [NaN, 3]), T2);
      assertEquals(sink.take(), [[T2, 1, [3]]]);
    }
  });

  await t.step("bug 10: chunks own copies of their values", async () => {
    const { muxer, sink } = setup("float32", { length: 3 });
    const input = new Float32Array([1, 2, 3]);
    await muxer.process(input, T1);
    const chunk = sink.chunks[0];
    input.fill(9);
    assert(chunk.values.buffer !== input.buffer);
    assertEquals(list(chunk.values), [1, 2, 3]);
    assertEquals(list(muxer.getTensorAt(T1)!), [1, 2, 3]);
  });
});

Deno.test("SparseTensorMultiplexer: bool streams", async (t) => {
  await t.step("sends the runs of flipped bits", async () => {
    const { muxer, sink } = setup("bool", { length: 6 });
    await muxer.process(new Uint8Array([1, 1, 0, 0, 1, 0]), T1);
    await muxer.process(new Uint8Array([1, 0, 0, 1, 1, 1]), T2);
    assertEquals(sink.take(), [
      [T1, 0, [1, 1]],
      [T1, 4, [1]],
      [T2, 1, [0]],
      [T2, 3, [1]],
      [T2, 5, [1]],
    ]);
  });

  await t.step("cascades a late snapshot like the numeric dtypes", async () => {
    const { muxer, sink } = setup("bool", { length: 3 });
    await muxer.process(new Uint8Array([1, 0, 1]), T2);
    sink.take();
    await muxer.process(new Uint8Array([1, 1, 1]), T1);
    assertEquals(sink.take(), [[T1, 0, [1, 1, 1]], [T2, 1, [0]]]);
  });
});

Deno.test("SparseTensorMultiplexer: gap merging", async (t) => {
  const before = new Float32Array(10);
  const after = new Float32Array([0, 1, 0, 3, 0, 0, 0, 7, 0, 9]);

  await t.step("with threshold 0, every run is its own chunk", async () => {
    const { muxer, sink } = setup("float32", { length: 10 });
    await muxer.process(before, T1);
    await muxer.process(after, T2);
    assertEquals(sink.take(), [[T2, 1, [1]], [T2, 3, [3]], [T2, 7, [7]], [T2, 9, [9]]]);
  });

  await t.step("with threshold 1, runs one unchanged element apart merge", async () => {
    const { muxer, sink } = setup("float32", { length: 10, gapMergeThreshold: 1 });
    await muxer.process(before, T1);
    await muxer.process(after, T2);
    assertEquals(sink.take(), [[T2, 1, [1, 0, 3]], [T2, 7, [7, 0, 9]]]);
  });

  await t.step("with threshold 3, the three-element gap merges too", async () => {
    const { muxer, sink } = setup("float32", { length: 10, gapMergeThreshold: 3 });
    await muxer.process(before, T1);
    await muxer.process(after, T2);
    assertEquals(sink.take(), [[T2, 1, [1, 0, 3, 0, 0, 0, 7, 0, 9]]]);
  });

  await t.step("a negative or fractional threshold is rejected", () => {
    for (const gapMergeThreshold of [-1, 0.5]) {
      assertThrows(
        () => setup("float32", { gapMergeThreshold }),
        RangeError,
        `'gapMergeThreshold' must be a non-negative integer: current value is ${gapMergeThreshold}`,
      );
    }
  });
});

Deno.test("SparseTensorMultiplexer: bad input", async (t) => {
  /** A muxer holding [1,2,3,4,5]@T2; checks afterwards that nothing changed. */
  async function rejectsAndKeepsState(
    call: (muxer: SparseTensorMultiplexer) => Promise<void>,
    ErrorClass: Parameters<typeof assertRejects>[1],
    includes: string,
  ): Promise<void> {
    const { muxer, sink } = setup("float32", { dataTimeoutMicros: SECOND });
    await muxer.process(new Float32Array([1, 2, 3, 4, 5]), T2);
    sink.take();
    await assertRejects(() => call(muxer), ErrorClass, includes);
    assertEquals(sink.take(), []);
    assertEquals(list(muxer.getTensorAt(T2)!), [1, 2, 3, 4, 5]);
    await muxer.process(new Float32Array([1, 2, 3, 4, 6]), T2 + 1);
    assertEquals(sink.take(), [[T2 + 1, 4, [6]]]);
  }

  await t.step("a wrong length is a RangeError and changes nothing", async () => {
    await rejectsAndKeepsState(
      (m) => m.process(new Float32Array(6), T3),
      RangeError,
      "Input tensor length 6 does not match expected length 5",
    );
  });

  await t.step("the wrong typed array class is a TypeError and changes nothing", async () => {
    await rejectsAndKeepsState(
      (m) => m.process(new Float64Array(5) as unknown as Float32Array, T3),
      TypeError,
      "must be a Float32Array for dtype float32: current value is a Float64Array",
    );
    await rejectsAndKeepsState(
      (m) => m.process([1, 2, 3, 4, 5] as unknown as Float32Array, T3),
      TypeError,
      "current value is a Array",
    );
  });

  for (const bad of [NaN, Infinity, -Infinity, T3 + 0.5, 2 ** 53]) {
    await t.step(`timestamp ${bad} is a RangeError and changes nothing`, async () => {
      await rejectsAndKeepsState(
        (m) => m.process(new Float32Array(5), bad),
        RangeError,
        `'timestamp' must be a safe integer number of microseconds: current value is ${bad}`,
      );
    });
  }

  await t.step("a stale timestamp is a StaleDataError and changes nothing", async () => {
    await rejectsAndKeepsState(
      (m) => m.process(new Float32Array(5), T2 - 2 * SECOND),
      StaleDataError,
      "data window's cutoff",
    );
  });

  await t.step("an unknown dtype is an UnsupportedDTypeError", () => {
    assertThrows(
      () => setup("float8" as DType),
      UnsupportedDTypeError,
      'current value is "float8"',
    );
  });

  await t.step("a fractional length is a RangeError", () => {
    assertThrows(() => setup("float32", { length: 2.5 }), RangeError, "current value is 2.5");
  });

  await t.step("getTensorAt rejects a non-integer timestamp", () => {
    const { muxer } = setup();
    assertThrows(() => muxer.getTensorAt(NaN), RangeError, "current value is NaN");
  });
});

Deno.test("SparseTensorMultiplexer: clock and window", async (t) => {
  await t.step("chunks carry clock.sync(timestamp); lookups use local time", async () => {
    const clock = new FakeClock({ offsetMicros: 250 });
    const { muxer, sink } = setup("float32", { length: 2, clock });
    await muxer.process(new Float32Array([1, 2]), T1);
    assertEquals(sink.take(), [[T1 + 250, 0, [1, 2]]]);
    assertEquals(list(muxer.getTensorAt(T1)!), [1, 2]);
  });

  await t.step("an entry keeps the synchronised time it was first sent with", async () => {
    const clock = new FakeClock({ offsetMicros: 250 });
    const { muxer, sink } = setup("float32", { length: 2, clock });
    await muxer.process(new Float32Array([1, 2]), T1);
    clock.offsetMicros = 900;
    await muxer.process(new Float32Array([1, 3]), T1);
    assertEquals(sink.take(), [[T1 + 250, 0, [1, 2]], [T1 + 250, 0, [1, 3]]]);
  });

  await t.step("in steady state, buffers of pruned snapshots are reused", async () => {
    const { muxer, sink } = setup("float32", { length: 4, dataTimeoutMicros: 2 });
    for (let k = 0; k < 20; k++) await muxer.process(new Float32Array([k, k, k, k]), T1 + k);
    assertEquals(muxer.getTensorAt(T1 + 16), null);
    assertEquals(list(muxer.getTensorAt(T1 + 17)!), [17, 17, 17, 17]);
    assertEquals(list(muxer.getTensorAt(T1 + 19)!), [19, 19, 19, 19]);
    assertEquals(sink.take().at(-1), [T1 + 19, 0, [19, 19, 19, 19]]);
  });
});

Deno.test("SparseTensorMultiplexer: delivery and re-entrancy (bug 11)", async (t) => {
  await t.step("a sink may read the updated state from inside onChunk", async () => {
    const seen: unknown[] = [];
    const muxer: SparseTensorMultiplexer = new SparseTensorMultiplexer({
      onChunk(chunk) {
        seen.push(list(muxer.getTensorAt(chunk.timestamp)!));
      },
    }, { dtype: "float32", length: 2 });
    await muxer.process(new Float32Array([1, 2]), T1);
    assertEquals(seen, [[1, 2]]);
  });

  await t.step("a sink may await process from inside onChunk without deadlock", async () => {
    const rows: Row[] = [];
    let fed = false;
    const muxer: SparseTensorMultiplexer = new SparseTensorMultiplexer({
      async onChunk(chunk) {
        rows.push([chunk.timestamp, chunk.startingIndex, list(chunk.values)]);
        if (!fed) {
          fed = true;
          await muxer.process(new Float32Array([9, 2, 3, 4]), T2);
        }
      },
    }, { dtype: "float32", length: 4 });
    await muxer.process(new Float32Array([1, 0, 3, 4]), T1);
    // The nested call's chunk follows every chunk of the outer call.
    assertEquals(rows, [[T1, 0, [1]], [T1, 2, [3, 4]], [T2, 0, [9, 2]]]);
    assertEquals(list(muxer.getTensorAt(T2)!), [9, 2, 3, 4]);
  });

  await t.step("concurrent calls are delivered in call order, each awaited", async () => {
    const rows: [string, number][] = [];
    const gates: (() => void)[] = [];
    const muxer = new SparseTensorMultiplexer({
      async onChunk(chunk) {
        rows.push(["start", chunk.timestamp]);
        await new Promise<void>((resolve) => gates.push(resolve));
        rows.push(["end", chunk.timestamp]);
      },
    }, { dtype: "float32", length: 2 });
    let firstDone = false;
    let secondDone = false;
    const first = muxer.process(new Float32Array([1, 1]), T1).then(() => firstDone = true);
    const second = muxer.process(new Float32Array([2, 2]), T2).then(() => secondDone = true);
    // Both states are already applied, before any chunk is delivered.
    assertEquals(list(muxer.getTensorAt(T2)!), [2, 2]);
    await Promise.resolve();
    assertEquals(rows, [["start", T1]]);
    gates.shift()!();
    await first;
    assertEquals([firstDone, secondDone], [true, false]);
    await new Promise((resolve) => setTimeout(resolve, 0));
    gates.shift()!();
    await second;
    assertEquals(rows, [["start", T1], ["end", T1], ["start", T2], ["end", T2]]);
  });

  await t.step(
    "a sink error rejects its call; the state stays updated and later calls work",
    async () => {
      let fail = true;
      const sink = new Recorder();
      const muxer = new SparseTensorMultiplexer({
        onChunk(chunk) {
          if (fail) throw new Error("sink is full");
          sink.onChunk(chunk);
        },
      }, { dtype: "float32", length: 2 });
      await assertRejects(() => muxer.process(new Float32Array([1, 2]), T1), Error, "sink is full");
      assertEquals(list(muxer.getTensorAt(T1)!), [1, 2]);
      fail = false;
      await muxer.process(new Float32Array([1, 3]), T2);
      assertEquals(sink.take(), [[T2, 1, [3]]]);
    },
  );

  await t.step("an error from a nested call's chunks reaches the outer call", async () => {
    let depth = 0;
    const muxer: SparseTensorMultiplexer = new SparseTensorMultiplexer({
      async onChunk(chunk) {
        if (chunk.timestamp === T2) throw new Error("nested chunk refused");
        if (depth++ === 0) await muxer.process(new Float32Array([5]), T2);
      },
    }, { dtype: "float32", length: 1 });
    await assertRejects(
      () => muxer.process(new Float32Array([1]), T1),
      Error,
      "nested chunk refused",
    );
  });
});

/** A receiver that keeps explicit values per timestamp, as the demuxer does. */
class ModelReceiver implements TensorChunkSink {
  #explicit = new Map<number, Map<number, unknown>>();
  #baseline: unknown[];
  #reference = -Infinity;
  readonly #timeout: number;

  constructor(baseline: unknown[], timeout: number) {
    this.#baseline = baseline;
    this.#timeout = timeout;
  }

  onChunk(chunk: TensorChunk): void {
    if (chunk.timestamp < this.#reference - this.#timeout) return;
    this.#reference = Math.max(this.#reference, chunk.timestamp);
    const cutoff = this.#reference - this.#timeout;
    const old = [...this.#explicit.keys()].filter((ts) => ts < cutoff);
    if (old.length > 0) {
      this.#baseline = this.stateAt(Math.max(...old));
      for (const ts of old) this.#explicit.delete(ts);
    }
    let values = this.#explicit.get(chunk.timestamp);
    if (values === undefined) this.#explicit.set(chunk.timestamp, values = new Map());
    list(chunk.values).forEach((v, k) => values.set(chunk.startingIndex + k, v));
  }

  stateAt(ts: number): unknown[] {
    const state = this.#baseline.slice();
    const times = [...this.#explicit.keys()].filter((t) => t <= ts).sort((a, b) => a - b);
    for (const t of times) for (const [k, v] of this.#explicit.get(t)!) state[k] = v;
    return state;
  }
}

Deno.test("SparseTensorMultiplexer: property", async (t) => {
  await t.step(
    "any sequence of snapshots, in any timestamp order, rebuilds exactly on the receiver",
    () => {
      const special = [0, -0, 1, 2, NaN, Infinity];
      const integers = [0, -1, 1, 2, 3, -5];
      fc.assert(
        fc.property(
          fc.constantFrom<DType>("float32", "float64", "int64", "float16", "bool"),
          fc.integer({ min: 0, max: 3 }),
          fc.constantFrom(3, 10, 1_000),
          fc.array(
            fc.tuple(
              fc.integer({ min: 0, max: 7 }),
              fc.array(fc.integer({ min: 0, max: 5 }), { minLength: 6, maxLength: 6 }),
            ),
            { minLength: 1, maxLength: 25 },
          ),
          (dtype, gapMergeThreshold, timeout, steps) => {
            const toValues = (picks: number[]) =>
              arr(
                dtype,
                picks.map((p) =>
                  dtype === "bool" ? p % 2 : dtype === "int64" ? integers[p] : special[p]
                ),
              );
            const baseline = toValues([1, 0, 3, 2, 0, 1]);
            const receiver = new ModelReceiver(list(baseline), timeout);
            const muxer = new SparseTensorMultiplexer(receiver, {
              dtype,
              length: 6,
              baseline,
              gapMergeThreshold,
              dataTimeoutMicros: timeout,
            });
            const seen = new Set<number>();
            for (const [slot, picks] of steps) {
              const ts = BASE + slot * 2;
              muxer.process(toValues(picks), ts).catch((error) => {
                if (!(error instanceof StaleDataError)) throw error;
              });
              seen.add(ts);
              for (const when of seen) {
                const sent = muxer.getTensorAt(when);
                if (sent !== null) assertEquals(receiver.stateAt(when), list(sent));
              }
            }
          },
        ),
        { seed: 20240611, numRuns: 400 },
      );
    },
  );
});

Deno.test("SparseTensorMultiplexer: describes itself", () => {
  const { muxer } = setup("int32");
  assertEquals([muxer.dtype, muxer.length], ["int32", 5]);
  assertEquals(T4 - T3, 10 * SECOND);
});

Deno.test("newestChunks gives the newest snapshots whole, oldest first, as copies", async () => {
  const mux = new SparseTensorMultiplexer({ onChunk() {} }, {
    dtype: "float32",
    length: 3,
    clock: { now: () => 0, sync: (t: number) => t + 5, desync: (t: number) => t - 5 },
  });
  for (const [t, v] of [[30, 3], [10, 1], [20, 2]] as const) {
    await mux.process(new Float32Array(3).fill(v), t);
  }
  const chunks = mux.newestChunks(2);
  assertEquals(
    chunks.map((c) => [c.timestamp, c.startingIndex, [...c.values]]),
    [[25, 0, [2, 2, 2]], [35, 0, [3, 3, 3]]],
  );
  chunks[1].values[0] = 99;
  assertEquals(mux.getTensorAt(30)?.[0], 3);
  assertEquals(mux.newestChunks(0), []);
  assertEquals(mux.newestChunks(10).length, 3);
  assertThrows(() => mux.newestChunks(-1), RangeError);
});
