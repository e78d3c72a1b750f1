import { assertEquals, assertRejects, assertThrows } from "../_assert.ts";
import fc from "fast-check";
import type { TensorArray } from "../../tensor/dtype.ts";
import type { TensorChunk, TensorChunkSink } from "../../tensor/tensor_chunk.ts";
import { AggregateTensorMultiplexer, Publisher } from "../../tensor/aggregate_multiplexer.ts";
import { StaleDataError } from "../../tensor/stale_data_error.ts";
import { FakeClock } from "../../rpc/fake_clock.ts";

const SECOND = 1_000_000;
const BASE = 1_700_000_000_000_000;
const [T0, T1, T2, T3] = [-20, -10, 0, 10].map((s) => BASE + s * SECOND);
const f = Math.fround;
const A3 = [1, 2, 3];
const B3 = [1.1, 2.1, 3.1];
const A2 = [10, 20];
const A4 = [100, 200, 300, 400];

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

function setup(dataTimeoutMicros?: number) {
  const sink = new Recorder();
  const aggregate = new AggregateTensorMultiplexer(sink, { dtype: "float32", dataTimeoutMicros });
  return { sink, aggregate };
}

const f32 = (values: number[]) => new Float32Array(values);

Deno.test("AggregateTensorMultiplexer: the spec §6.3 catalogue", async (t) => {
  await t.step("2. a publisher reaches the aggregate until it is removed", async () => {
    const { sink, aggregate } = setup();
    const p = new Publisher();
    aggregate.add(p, { length: 3 });
    await p.publish(f32(A3), T1);
    assertEquals(sink.take(), [[T1, 0, A3]]);
    assertEquals(aggregate.remove(p), true);
    assertEquals(aggregate.remove(p), false);
    await p.publish(f32(B3), T2);
    assertEquals(sink.take(), []);
    assertEquals(aggregate.getTensorAt(T2), null);
  });

  await t.step("3. an appended sparse publisher sends its diffs", async () => {
    const { sink, aggregate } = setup();
    const p1 = new Publisher();
    aggregate.add(p1, { length: 3, sparse: true });
    assertEquals(aggregate.length, 3);
    await p1.publish(f32(A3), T1);
    await p1.publish(f32([1, 2.1, 3]), T2);
    assertEquals(sink.take(), [[T1, 0, A3], [T2, 1, [f(2.1)]]]);
  });

  await t.step("4. a second appended (complete) publisher's chunks are re-based", async () => {
    const { sink, aggregate } = setup();
    aggregate.add(new Publisher(), { length: 3, sparse: true });
    const p2 = new Publisher();
    aggregate.add(p2, { length: 2 });
    assertEquals(aggregate.length, 5);
    await p2.publish(f32(A2), T1);
    assertEquals(sink.take(), [[T1, 3, A2]]);
  });

  await t.step("5. a publisher placed at 5..8 makes the aggregate 8 wide", async () => {
    const { sink, aggregate } = setup();
    const p1 = new Publisher();
    aggregate.add(p1, { start: 5, length: 3 });
    assertEquals(aggregate.length, 8);
    await p1.publish(f32(A3), T1);
    assertEquals(sink.take(), [[T1, 5, A3]]);
    assertEquals(list(aggregate.getTensorAt(T1)!), [0, 0, 0, 0, 0, 1, 2, 3]);
  });

  await t.step("6. an overlapping range is rejected and changes nothing", () => {
    const { aggregate } = setup();
    aggregate.add(new Publisher(), { start: 0, length: 3 });
    const p2 = new Publisher();
    assertThrows(
      () => aggregate.add(p2, { start: 2, length: 3 }),
      RangeError,
      "range [2, 5) overlaps with existing publisher range [0, 3)",
    );
    assertEquals(aggregate.length, 3);
    aggregate.add(p2, { length: 2 });
    assertEquals(aggregate.length, 5);
  });

  await t.step(
    "7. (changed by bug 5) a wrong length is an error for the publisher's caller",
    async () => {
      const { sink, aggregate } = setup();
      const p1 = new Publisher();
      aggregate.add(p1, { length: 3, sparse: true });
      await assertRejects(
        () => p1.publish(f32([1, 2]), T1),
        RangeError,
        "Input tensor length 2 does not match expected length 3",
      );
      assertEquals(sink.take(), []);
      assertEquals(aggregate.getTensorAt(T1), null);
    },
  );

  await t.step("8. a mixed layout re-bases each publisher's chunks", async () => {
    const { sink, aggregate } = setup();
    const [p1, p2, p3] = [new Publisher(), new Publisher(), new Publisher()];
    aggregate.add(p1, { length: 3, sparse: true });
    aggregate.add(p2, { start: 5, length: 2 });
    aggregate.add(p3, { length: 4, sparse: true });
    assertEquals(aggregate.length, 11);
    await p1.publish(f32(A3), T1);
    await p2.publish(f32(A2), T1);
    await p3.publish(f32(A4), T2);
    await p1.publish(f32([5.5, 2, 3]), T2);
    assertEquals(sink.take(), [[T1, 0, A3], [T1, 5, A2], [T2, 7, A4], [T2, 0, [5.5]]]);
  });

  await t.step("9. (changed by bug 5) the aggregate carries every slice forward", async () => {
    const { aggregate } = setup();
    const [p1, p2] = [new Publisher(), new Publisher()];
    aggregate.add(p1, { length: 3, sparse: true });
    aggregate.add(p2, { length: 2 });
    await p1.publish(f32(A3), T1);
    await p2.publish(f32(A2), T1);
    assertEquals(list(aggregate.getTensorAt(T1)!), [1, 2, 3, 10, 20]);
    await p1.publish(f32(B3), T2);
    // Python gave [1.1, 2.1, 3.1, 0, 0] here.
    assertEquals(list(aggregate.getTensorAt(T2)!), [...B3.map(f), 10, 20]);
    await p2.publish(f32(A2), T2);
    assertEquals(list(aggregate.getTensorAt(T2)!), [...B3.map(f), 10, 20]);
  });

  await t.step("10. with a 0.1 s timeout, old aggregate vectors are pruned", async () => {
    const { aggregate } = setup(100_000);
    const p1 = new Publisher();
    aggregate.add(p1, { length: 3 });
    await p1.publish(f32(A3), T0);
    assertEquals(list(aggregate.getTensorAt(T0)!), A3);
    const far = T0 + 86_400 * SECOND;
    await p1.publish(f32(B3), far);
    assertEquals(aggregate.getTensorAt(T0), null);
    assertEquals(list(aggregate.getTensorAt(far)!), B3.map(f));
  });
});

Deno.test("AggregateTensorMultiplexer: bug 5 and registration", async (t) => {
  await t.step("a late snapshot updates the later vectors that inherit from it", async () => {
    const { sink, aggregate } = setup();
    const [p1, p2] = [new Publisher(), new Publisher()];
    aggregate.add(p1, { length: 2, sparse: true });
    aggregate.add(p2, { length: 1 });
    await p1.publish(f32([1, 1]), T0);
    await p2.publish(f32([7]), T2);
    await p1.publish(f32([3, 3]), T3);
    await p1.publish(f32([2, 1]), T1);
    assertEquals(list(aggregate.getTensorAt(T1)!), [2, 1, 0]);
    assertEquals(list(aggregate.getTensorAt(T2)!), [2, 1, 7]);
    assertEquals(list(aggregate.getTensorAt(T3)!), [3, 3, 7]);
    // The cascade resends element 0 at T3 (the muxer does not track what T3 sent explicitly).
    assertEquals(sink.take().slice(3), [[T1, 0, [2]], [T3, 0, [3]]]);
  });

  await t.step(
    "a replaced snapshot updates later vectors up to the publisher's next one",
    async () => {
      const { aggregate } = setup();
      const [p1, p2] = [new Publisher(), new Publisher()];
      aggregate.add(p1, { length: 1, sparse: true });
      aggregate.add(p2, { length: 1, sparse: true });
      await p1.publish(f32([1]), T0);
      await p2.publish(f32([5]), T1);
      await p1.publish(f32([4]), T2);
      await p1.publish(f32([9]), T0);
      assertEquals(
        [T0, T1, T2].map((ts) => list(aggregate.getTensorAt(ts)!)),
        [[9, 0], [9, 5], [4, 5]],
      );
    },
  );

  await t.step("validation happens before anything changes", () => {
    const { aggregate } = setup();
    const p = new Publisher();
    assertThrows(() => aggregate.add(p, { length: 0 }), RangeError, "current value is 0");
    assertThrows(() => aggregate.add(p, { length: 2, start: -1 }), RangeError, "'start'");
    assertThrows(() => aggregate.add(p, { length: 2, start: 1.5 }), RangeError, "'start'");
    assertThrows(
      () => aggregate.add({} as Publisher, { length: 2 }),
      TypeError,
      "must be a Publisher",
    );
    assertEquals(aggregate.length, 0);
    aggregate.add(p, { length: 2 });
    assertThrows(() => aggregate.add(p, { length: 2 }), RangeError, "must not be added twice");
    assertEquals(aggregate.length, 2);
  });

  await t.step("a removed publisher's slice keeps its last state and can be reused", async () => {
    const { sink, aggregate } = setup();
    const [p1, p2] = [new Publisher(), new Publisher()];
    aggregate.add(p1, { length: 2, sparse: true });
    await p1.publish(f32([4, 5]), T0);
    aggregate.remove(p1);
    aggregate.add(p2, { start: 0, length: 2, sparse: true });
    assertEquals(aggregate.length, 2);
    sink.take();
    // p2 starts from the slice's current state, so only element 1 is new.
    await p2.publish(f32([4, 6]), T1);
    assertEquals(sink.take(), [[T1, 1, [6]]]);
    assertEquals(list(aggregate.getTensorAt(T1)!), [4, 6]);
  });

  await t.step("one publisher feeds several aggregates", async () => {
    const first = setup();
    const second = setup();
    const p = new Publisher();
    first.aggregate.add(p, { length: 2 });
    second.aggregate.add(new Publisher(), { length: 1 });
    second.aggregate.add(p, { length: 2, sparse: true });
    await p.publish(f32([1, 2]), T1);
    assertEquals(first.sink.take(), [[T1, 0, [1, 2]]]);
    assertEquals(second.sink.take(), [[T1, 1, [1, 2]]]);
  });

  await t.step("input one aggregate rejects changes no aggregate", async () => {
    const first = setup();
    const second = setup(SECOND);
    const p = new Publisher();
    const other = new Publisher();
    first.aggregate.add(p, { length: 1 });
    second.aggregate.add(p, { length: 1 });
    second.aggregate.add(other, { length: 1 });
    await other.publish(f32([1]), T3);
    second.sink.take();
    await assertRejects(() => p.publish(f32([5]), T0), StaleDataError);
    assertEquals([first.sink.take(), second.sink.take()], [[], []]);
    assertEquals(first.aggregate.getTensorAt(T0), null);
  });

  for (
    const [name, values, ts, ErrorClass, includes] of [
      ["the wrong array class", new Float64Array(2), T1, TypeError, "must be a Float32Array"],
      ["a non-finite timestamp", f32([1, 2]), Infinity, RangeError, "current value is Infinity"],
      ["a fractional timestamp", f32([1, 2]), T1 + 0.5, RangeError, "safe integer"],
    ] as const
  ) {
    await t.step(`${name} is rejected and changes nothing`, async () => {
      const { sink, aggregate } = setup();
      const p = new Publisher();
      aggregate.add(p, { length: 2 });
      await assertRejects(
        () => p.publish(values as unknown as Float32Array, ts),
        ErrorClass,
        includes,
      );
      assertEquals(sink.take(), []);
      assertEquals(aggregate.getTensorAt(T1), null);
    });
  }

  await t.step("chunks carry synchronised time; the history is in local time", async () => {
    const sink = new Recorder();
    const clock = new FakeClock({ offsetMicros: 40 });
    const aggregate = new AggregateTensorMultiplexer(sink, { dtype: "int64", clock });
    const p = new Publisher();
    aggregate.add(p, { length: 2, sparse: true });
    await p.publish(new BigInt64Array([1n, 2n]), T1);
    assertEquals(sink.take(), [[T1 + 40, 0, [1n, 2n]]]);
    assertEquals(list(aggregate.getTensorAt(T1)!), [1n, 2n]);
    assertEquals(aggregate.dtype, "int64");
  });

  await t.step("bug 11: the sink may publish from inside onChunk without deadlock", async () => {
    const rows: Row[] = [];
    const p1 = new Publisher();
    const p2 = new Publisher();
    const aggregate = new AggregateTensorMultiplexer({
      async onChunk(chunk) {
        rows.push([chunk.timestamp, chunk.startingIndex, list(chunk.values)]);
        if (chunk.startingIndex === 0) await p2.publish(f32([8]), chunk.timestamp);
      },
    }, { dtype: "float32" });
    aggregate.add(p1, { length: 1 });
    aggregate.add(p2, { length: 1 });
    await p1.publish(f32([3]), T1);
    assertEquals(rows, [[T1, 0, [3]], [T1, 1, [8]]]);
    assertEquals(list(aggregate.getTensorAt(T1)!), [3, 8]);
  });
});

/** A receiver that keeps explicit values per timestamp, as the demuxer does. */
function modelState(chunks: TensorChunk[], width: number, ts: number): unknown[] {
  const state: unknown[] = new Array(width).fill(0);
  const sorted = chunks.map((c, order) => ({ c, order })).filter(({ c }) => c.timestamp <= ts)
    .sort((a, b) => a.c.timestamp - b.c.timestamp || a.order - b.order);
  for (const { c } of sorted) list(c.values).forEach((v, k) => state[c.startingIndex + k] = v);
  return state;
}

Deno.test("AggregateTensorMultiplexer: property", async (t) => {
  await t.step(
    "publishes in any timestamp order rebuild every aggregate vector on the receiver",
    async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.boolean(),
          fc.boolean(),
          fc.array(
            fc.tuple(
              fc.integer({ min: 0, max: 1 }),
              fc.integer({ min: 0, max: 5 }),
              fc.array(fc.integer({ min: 0, max: 2 }), { minLength: 3, maxLength: 3 }),
            ),
            { minLength: 1, maxLength: 20 },
          ),
          async (sparse1, sparse2, steps) => {
            const sink = new Recorder();
            const aggregate = new AggregateTensorMultiplexer(sink, { dtype: "int32" });
            const publishers = [new Publisher(), new Publisher()];
            aggregate.add(publishers[0], { length: 3, sparse: sparse1 });
            aggregate.add(publishers[1], { start: 4, length: 3, sparse: sparse2 });
            const seen = new Set<number>();
            for (const [who, slot, values] of steps) {
              const ts = BASE + slot;
              await publishers[who].publish(new Int32Array(values), ts);
              seen.add(ts);
            }
            for (const ts of seen) {
              assertEquals(
                modelState(sink.chunks, aggregate.length, ts),
                list(aggregate.getTensorAt(ts)!),
              );
            }
          },
        ),
        { seed: 77, numRuns: 300 },
      );
    },
  );
});
