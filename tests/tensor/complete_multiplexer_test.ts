import { assert, assertEquals, assertRejects, assertThrows } from "../_assert.ts";
import { allocate, type DType, type TensorArray } from "../../tensor/dtype.ts";
import type { TensorChunk, TensorChunkSink } from "../../tensor/tensor_chunk.ts";
import { CompleteTensorMultiplexer } from "../../tensor/complete_multiplexer.ts";
import { StaleDataError } from "../../tensor/stale_data_error.ts";

const SECOND = 1_000_000;
const BASE = 1_700_000_000_000_000;
// spec §6.2: T0..T4 = base-20 s … +20 s
const [T0, T1, T2, T3] = [-20, -10, 0, 10].map((s) => BASE + s * SECOND);
const A = [1, 2, 3, 4, 5];
const B = [10, 20, 30, 40, 50];
const C = [100, 200, 300, 400, 500];

type Row = [number, number, unknown[]];

function list(values: ArrayLike<unknown> | TensorArray): unknown[] {
  return Array.from(values as ArrayLike<unknown>);
}

class Recorder implements TensorChunkSink {
  chunks: TensorChunk[] = [];
  onChunk(chunk: TensorChunk): void {
    this.chunks.push(chunk);
  }
  take(): Row[] {
    const rows = this.chunks.map((c): Row => [c.timestamp, c.startingIndex, list(c.values)]);
    this.chunks = [];
    return rows;
  }
}

function arr(dtype: DType, values: readonly number[]): TensorArray {
  const out = allocate(dtype, values.length);
  for (let i = 0; i < values.length; i++) {
    (out as unknown as unknown[])[i] = dtype === "int64" ? BigInt(values[i]) : values[i];
  }
  return out;
}

function els(dtype: DType, values: readonly number[]): unknown[] {
  return list(arr(dtype, values));
}

function setup(dtype: DType = "float32", dataTimeoutMicros?: number) {
  const sink = new Recorder();
  const muxer = new CompleteTensorMultiplexer(sink, { dtype, length: 5, dataTimeoutMicros });
  /** The stored timestamps among T0..T3, oldest first. */
  const history = () => [T0, T1, T2, T3].filter((t) => muxer.getTensorAt(t) !== null);
  return { muxer, sink, history };
}

Deno.test("CompleteTensorMultiplexer: the spec §6.2 catalogue", async (t) => {
  await t.step("1. rejects a zero length and a zero timeout", () => {
    const sink = new Recorder();
    assertThrows(
      () => new CompleteTensorMultiplexer(sink, { dtype: "float32", length: 0 }),
      RangeError,
      "'length' must be a positive integer",
    );
    assertThrows(
      () =>
        new CompleteTensorMultiplexer(sink, { dtype: "float32", length: 5, dataTimeoutMicros: 0 }),
      RangeError,
      "'dataTimeoutMicros' must be a positive integer",
    );
  });

  for (const dtype of ["float32", "int64", "float16", "bool"] as DType[]) {
    const a = dtype === "bool" ? [1, 0, 1, 1, 0] : A;
    const b = dtype === "bool" ? [0, 1, 1, 0, 1] : B;

    await t.step(`2. (${dtype}) A@T1 gives one chunk (0,A)@T1`, async () => {
      const { muxer, sink, history } = setup(dtype);
      await muxer.process(arr(dtype, a), T1);
      assertEquals(sink.take(), [[T1, 0, els(dtype, a)]]);
      assertEquals(history(), [T1]);
    });

    await t.step(`3. (${dtype}) A@T1 then B@T2 gives (0,B)@T2`, async () => {
      const { muxer, sink, history } = setup(dtype);
      await muxer.process(arr(dtype, a), T1);
      sink.take();
      await muxer.process(arr(dtype, b), T2);
      assertEquals(sink.take(), [[T2, 0, els(dtype, b)]]);
      assertEquals(history(), [T1, T2]);
    });

    await t.step(`7. (${dtype}) B@T2 then A@T1 emits only (0,A)@T1`, async () => {
      const { muxer, sink, history } = setup(dtype);
      await muxer.process(arr(dtype, b), T2);
      sink.take();
      await muxer.process(arr(dtype, a), T1);
      assertEquals(sink.take(), [[T1, 0, els(dtype, a)]]);
      assertEquals(history(), [T1, T2]);
      assertEquals(list(muxer.getTensorAt(T1)!), els(dtype, a));
    });
  }

  await t.step("4. an equal snapshot at a new timestamp is still sent", async () => {
    const { muxer, sink, history } = setup();
    await muxer.process(new Float32Array(A), T1);
    await muxer.process(new Float32Array(A), T2);
    assertEquals(sink.take(), [[T1, 0, A], [T2, 0, A]]);
    assertEquals(history(), [T1, T2]);
  });

  await t.step("5. the same snapshot at the same timestamp emits nothing", async () => {
    const { muxer, sink, history } = setup();
    await muxer.process(new Float32Array(A), T1);
    sink.take();
    await muxer.process(new Float32Array(A), T1);
    assertEquals(sink.take(), []);
    assertEquals(history(), [T1]);
  });

  await t.step("6. a different snapshot at the same timestamp replaces it", async () => {
    const { muxer, sink, history } = setup();
    await muxer.process(new Float32Array(A), T1);
    sink.take();
    await muxer.process(new Float32Array(B), T1);
    assertEquals(sink.take(), [[T1, 0, B]]);
    assertEquals(history(), [T1]);
    assertEquals(list(muxer.getTensorAt(T1)!), B);
  });

  await t.step("8. with a 0.1 s timeout, A@T0 then B@T3 leaves only B", async () => {
    const { muxer, sink, history } = setup("float32", 100_000);
    await muxer.process(new Float32Array(A), T0);
    sink.take();
    await muxer.process(new Float32Array(B), T3);
    assertEquals(sink.take(), [[T3, 0, B]]);
    assertEquals(history(), [T3]);
  });

  await t.step(
    "9. (changed by bug 3) a stale A@T0 after B@T2 is rejected, then C@T3 is sent",
    async () => {
      const { muxer, sink, history } = setup("float32", 100_000);
      await muxer.process(new Float32Array(B), T2);
      sink.take();
      await assertRejects(() => muxer.process(new Float32Array(A), T0), StaleDataError);
      assertEquals(sink.take(), []);
      await muxer.process(new Float32Array(C), T3);
      assertEquals(sink.take(), [[T3, 0, C]]);
      assertEquals(history(), [T3]);
    },
  );

  await t.step(
    "10. (changed by bug 3) after C@T3, late B@T1 and A@T0 are rejected; only T3 remains",
    async () => {
      const { muxer, sink, history } = setup("float32", 100_000);
      await muxer.process(new Float32Array(A), T0);
      await muxer.process(new Float32Array(C), T3);
      assertEquals(sink.take(), [[T0, 0, A], [T3, 0, C]]);
      await assertRejects(() => muxer.process(new Float32Array(B), T1), StaleDataError);
      await assertRejects(() => muxer.process(new Float32Array(A), T0), StaleDataError);
      assertEquals(sink.take(), []);
      assertEquals(history(), [T3]);
    },
  );

  await t.step("11. a wrong length is a RangeError", async () => {
    const { muxer } = setup();
    await assertRejects(
      () => muxer.process(new Float32Array(3), T1),
      RangeError,
      "Input tensor length 3 does not match expected length 5",
    );
  });
});

Deno.test("CompleteTensorMultiplexer: bug fixes and bad input", async (t) => {
  await t.step("bug 10: the chunk owns a copy, not the caller's array", async () => {
    const { muxer, sink } = setup();
    const input = new Float32Array(A);
    await muxer.process(input, T1);
    const chunk = sink.chunks[0];
    input.fill(0);
    assert(chunk.values.buffer !== input.buffer);
    assertEquals(list(chunk.values), A);
    assertEquals(list(muxer.getTensorAt(T1)!), A);
  });

  await t.step("bug 9: a NaN snapshot repeated at its timestamp emits nothing", async () => {
    const { muxer, sink } = setup();
    await muxer.process(new Float32Array([NaN, 1, 2, 3, 4]), T1);
    await muxer.process(new Float32Array([NaN, 1, 2, 3, 4]), T1);
    assertEquals(sink.take().length, 1);
  });

  await t.step("bug 11: a sink may await process from inside onChunk", async () => {
    const rows: number[] = [];
    const muxer: CompleteTensorMultiplexer = new CompleteTensorMultiplexer({
      async onChunk(chunk) {
        rows.push(chunk.timestamp);
        if (chunk.timestamp === T1) await muxer.process(new Float32Array(B), T2);
        rows.push(-list(muxer.getTensorAt(chunk.timestamp)!).length);
      },
    }, { dtype: "float32", length: 5 });
    await muxer.process(new Float32Array(A), T1);
    assertEquals(rows, [T1, -5, T2, -5]);
  });

  for (
    const [name, call, ErrorClass, includes] of [
      [
        "the wrong array class",
        (m: CompleteTensorMultiplexer) =>
          m.process(new Int32Array(5) as unknown as Float32Array, T3),
        TypeError,
        "must be a Float32Array for dtype float32: current value is a Int32Array",
      ],
      [
        "a wrong length",
        (m: CompleteTensorMultiplexer) => m.process(new Float32Array(4), T3),
        RangeError,
        "Input tensor length 4 does not match expected length 5",
      ],
      [
        "a non-finite timestamp",
        (m: CompleteTensorMultiplexer) => m.process(new Float32Array(5), NaN),
        RangeError,
        "current value is NaN",
      ],
      [
        "a fractional timestamp",
        (m: CompleteTensorMultiplexer) => m.process(new Float32Array(5), T3 + 0.25),
        RangeError,
        "must be a safe integer number of microseconds",
      ],
      [
        "a stale timestamp",
        (m: CompleteTensorMultiplexer) => m.process(new Float32Array(5), T0),
        StaleDataError,
        "data window's cutoff",
      ],
    ] as const
  ) {
    await t.step(`${name} is rejected and changes nothing`, async () => {
      const { muxer, sink, history } = setup("float32", SECOND);
      await muxer.process(new Float32Array(A), T2);
      sink.take();
      await assertRejects(() => call(muxer), ErrorClass, includes);
      assertEquals(sink.take(), []);
      assertEquals(history(), [T2]);
      assertEquals(list(muxer.getTensorAt(T2)!), A);
    });
  }

  await t.step("describes itself", () => {
    const { muxer } = setup("int64");
    assertEquals([muxer.dtype, muxer.length], ["int64", 5]);
  });
});
