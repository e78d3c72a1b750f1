import fc from "fast-check";
import { assert, assertEquals, assertRejects, assertThrows } from "../_assert.ts";
import {
  allocate,
  bytesOf,
  bytesPerElement,
  type DType,
  DTYPES,
  filled,
  type TensorArray,
  toElement,
  UnsupportedDTypeError,
  viewBytes,
} from "../../tensor/dtype.ts";
import type { TensorChunk } from "../../tensor/tensor_chunk.ts";
import {
  TensorDemuxer,
  TensorDemuxerChunkError,
  type TensorDemuxerOptions,
} from "../../tensor/tensor_demuxer.ts";

const SECOND = 1_000_000;
// 2024-01-01T12:00:00Z and the spec's T1..T4 ten seconds apart, integer µs.
const T0 = 1_704_110_400 * SECOND;
const T1 = T0 + 10 * SECOND;
const T2 = T0 + 20 * SECOND;
const T3 = T0 + 30 * SECOND;
const T4 = T0 + 40 * SECOND;
// 2024-01-01T00:00:01Z … 00:00:04Z.
const TS1 = 1_704_067_201 * SECOND;
const TS2 = TS1 + SECOND;
const TS3 = TS1 + 2 * SECOND;
const TS4 = TS1 + 3 * SECOND;

function arrayOf(dtype: DType, numbers: readonly number[]): TensorArray {
  const array = allocate(dtype, numbers.length) as unknown as unknown[];
  numbers.forEach((n, i) => array[i] = toElement(dtype, n));
  return array as unknown as TensorArray;
}

function elements(values: TensorArray): unknown[] {
  return Array.from(values as ArrayLike<unknown>);
}

type Log = [number, unknown[]][];

/** A demuxer of `dtype` (length 4 unless told) with a notification log and helpers. */
function setup(dtype: DType, options: Partial<TensorDemuxerOptions> = {}) {
  const log: Log = [];
  const demuxer = new TensorDemuxer({
    onTensorChanged(timestamp, values) {
      log.push([timestamp, elements(values)]);
    },
  }, { length: 4, ...options, dtype });
  return {
    demuxer,
    log,
    /** A value that is not an integer where the dtype allows it. */
    half: dtype.startsWith("float") ? 1.5 : 3,
    send(startingIndex: number, numbers: number[], timestamp: number): Promise<void> {
      return demuxer.receive({ timestamp, startingIndex, values: arrayOf(dtype, numbers) });
    },
    v(numbers: number[]): unknown[] {
      return elements(arrayOf(dtype, numbers));
    },
    expectLog(expected: [number, number[]][]): void {
      assertEquals(log, expected.map(([ts, n]) => [ts, elements(arrayOf(dtype, n))]));
    },
    at(timestamp: number): unknown[] | null {
      const values = demuxer.getTensorAt(timestamp);
      return values === null ? null : elements(values);
    },
    clear(): void {
      log.length = 0;
    },
  };
}

type Harness = ReturnType<typeof setup>;

interface Scenario {
  name: string;
  /** Whether the expectations hold when every non-zero value becomes 1 (bool). */
  boolSafe: boolean;
  /** Extra options for the demuxer. */
  options?: Partial<TensorDemuxerOptions>;
  run(h: Harness): Promise<void>;
}

// The §6.5 catalogue (test 1 and 20 are below / not applicable).
const CATALOGUE: Scenario[] = [
  {
    name: "2. one chunk at a new timestamp notifies exactly once",
    boolSafe: true,
    async run(h) {
      await h.send(0, [5], T1);
      h.expectLog([[T1, [5, 0, 0, 0]]]);
    },
  },
  {
    name: "3. two chunks at one timestamp notify twice, accumulating",
    boolSafe: true,
    async run(h) {
      await h.send(1, [10], T1);
      await h.send(3, [40], T1);
      h.expectLog([[T1, [0, 10, 0, 0]], [T1, [0, 10, 0, 40]]]);
    },
  },
  {
    name: "4. a later timestamp does not change an earlier one",
    boolSafe: true,
    async run(h) {
      await h.send(0, [5], T1);
      await h.send(0, [15], T2);
      h.expectLog([[T1, [5, 0, 0, 0]], [T2, [15, 0, 0, 0]]]);
      assertEquals(h.at(T1), h.v([5, 0, 0, 0]));
    },
  },
  {
    name: "5. a new timestamp inherits its predecessor's state",
    boolSafe: true,
    async run(h) {
      await h.send(1, [50], T1);
      await h.send(3, [99], T1);
      await h.send(0, [11], T2);
      h.expectLog([[T1, [0, 50, 0, 0]], [T1, [0, 50, 0, 99]], [T2, [11, 50, 0, 99]]]);
    },
  },
  {
    name: "6. out of order: a late chunk cascades only where a later snapshot changes",
    boolSafe: true,
    async run(h) {
      await h.send(1, [10], T2);
      await h.send(3, [40], T2);
      await h.send(1, [99], T1);
      await h.send(2, [88], T1);
      h.expectLog([
        [T2, [0, 10, 0, 0]],
        [T2, [0, 10, 0, 40]],
        [T1, [0, 99, 0, 0]],
        [T1, [0, 99, 88, 0]],
        [T2, [0, 10, 88, 40]],
      ]);
    },
  },
  {
    name: "7. complex inheritance across four timestamps",
    boolSafe: false,
    async run(h) {
      for (let i = 0; i < 4; i++) await h.send(i, [i + 1], TS1);
      for (let i = 0; i < 4; i++) await h.send(i, [i + 2], TS4);
      assertEquals(h.log.length, 8);
      h.clear();
      await h.send(2, [7], TS3);
      h.expectLog([[TS3, [1, 2, 7, 4]]]);
      await h.send(3, [8], TS3);
      h.expectLog([[TS3, [1, 2, 7, 4]], [TS3, [1, 2, 7, 8]]]);
      h.clear();
      await h.send(0, [0], TS2);
      h.expectLog([[TS2, [0, 2, 3, 4]], [TS3, [0, 2, 7, 8]]]);
      h.clear();
      await h.send(1, [5], TS2);
      h.expectLog([[TS2, [0, 5, 3, 4]], [TS3, [0, 5, 7, 8]]]);
      assertEquals(
        [TS1, TS2, TS3, TS4].map((ts) => h.at(ts)),
        [[1, 2, 3, 4], [0, 5, 3, 4], [0, 5, 7, 8], [2, 3, 4, 5]].map(h.v),
      );
    },
  },
  {
    name:
      "8. expiry: an old keyframe is purged and a chunk older than the window is ignored (bug 4: the purged state becomes the baseline; same result here)",
    boolSafe: true,
    options: { dataTimeoutMicros: 100_000 },
    async run(h) {
      await h.send(0, [1], T0);
      await h.send(0, [2], T2);
      assertEquals(h.at(T0), null);
      h.expectLog([[T0, [1, 0, 0, 0]], [T2, [2, 0, 0, 0]]]);
      await h.send(0, [3], T1);
      assertEquals(h.log.length, 2);
      assertEquals(h.at(T1), null);
      assertEquals(h.demuxer.keyframeCount, 1);
    },
  },
  {
    name: "9. chunks entirely out of range make no keyframe and no notification",
    boolSafe: true,
    async run(h) {
      await h.send(4, [1], T1);
      await h.send(-1, [1], T1);
      assertEquals(h.log, []);
      assertEquals(h.at(T1), null);
      assertEquals(h.demuxer.counters.outOfRangeElements, 2);
    },
  },
  {
    name: "10. resending the same value is a no-op; a new value notifies",
    boolSafe: false,
    async run(h) {
      await h.send(0, [5], T1);
      await h.send(0, [5], T1);
      assertEquals(h.log.length, 1);
      await h.send(0, [6], T1);
      h.expectLog([[T1, [5, 0, 0, 0]], [T1, [6, 0, 0, 0]]]);
    },
  },
  {
    name: "11. cleanup happens before the stale check",
    boolSafe: true,
    options: { dataTimeoutMicros: 100_000 },
    async run(h) {
      await h.send(0, [1], T1);
      await h.send(0, [2], T0);
      assertEquals(h.at(T0), null);
      await h.send(0, [3], T2);
      assertEquals(h.at(T1), null);
      h.expectLog([[T1, [1, 0, 0, 0]], [T2, [3, 0, 0, 0]]]);
      assertEquals(h.demuxer.counters.staleChunks, 1);
    },
  },
  {
    name: "12. getTensorAt returns exact-time copies and notifies nobody",
    boolSafe: true,
    async run(h) {
      await h.send(0, [1, 2, 3, 4], T1);
      await h.send(0, [5], T2);
      await h.send(1, [6], T2);
      const count = h.log.length;
      assertEquals(h.at(T1), h.v([1, 2, 3, 4]));
      assertEquals(h.at(T2), h.v([5, 6, 3, 4]));
      assertEquals(h.at(T0), null);
      assertEquals(h.log.length, count);
      const copy = h.demuxer.getTensorAt(T1)!;
      bytesOf(copy).fill(0);
      assertEquals(h.at(T1), h.v([1, 2, 3, 4]));
    },
  },
  {
    name: "13. a new timestamp inherits through intermediate keyframes",
    boolSafe: true,
    async run(h) {
      await h.send(0, [1], T1);
      await h.send(1, [2], T1);
      await h.send(0, [3], T2);
      h.clear();
      await h.send(0, [4], T4);
      h.expectLog([[T4, [4, 2, 0, 0]]]);
    },
  },
  {
    name: "14. four single-element chunks notify four times and are all explicit",
    boolSafe: true,
    async run(h) {
      for (let i = 0; i < 4; i++) await h.send(i, [i * 10], T1);
      assertEquals(h.log.length, 4);
      assertEquals(h.at(T1), h.v([0, 10, 20, 30]));
      assertEquals(h.demuxer.explicitIndicesAt(T1), [0, 1, 2, 3]);
    },
  },
  {
    name: "15. a later timestamp's explicit set holds only what it received",
    boolSafe: true,
    async run(h) {
      await h.send(0, [1, 2], T1);
      h.clear();
      await h.send(1, [20], T2);
      await h.send(2, [30], T2);
      assertEquals(h.log.length, 2);
      assertEquals(h.at(T2), h.v([1, 20, 30, 0]));
      assertEquals(h.demuxer.explicitIndicesAt(T2), [1, 2]);
    },
  },
  {
    name: "16. a change at the oldest keyframe cascades through every later one",
    boolSafe: false,
    async run(h) {
      await h.send(0, [1], T1);
      await h.send(1, [10], T2);
      await h.send(2, [20], T3);
      h.clear();
      await h.send(0, [5], T1);
      h.expectLog([[T1, [5, 0, 0, 0]], [T2, [5, 10, 0, 0]], [T3, [5, 10, 20, 0]]]);
    },
  },
  {
    name: "17. a value received twice for one timestamp is overwritten",
    boolSafe: true,
    async run(h) {
      await h.send(0, [1], T1);
      await h.send(1, [2], T1);
      await h.send(0, [h.half], T1);
      assertEquals(h.demuxer.explicitIndicesAt(T1), [0, 1]);
      assertEquals(h.log.at(-1), [T1, h.v([h.half, 2, 0, 0])]);
    },
  },
  {
    name:
      "18. the client (our hook; there is no protected override) is called once per changed snapshot",
    boolSafe: false,
    async run(h) {
      await h.send(0, [1], T1);
      assertEquals(h.log.length, 1);
      await h.send(0, [2], T1);
      assertEquals(h.log.length, 2);
      await h.send(1, [2], T2);
      h.clear();
      await h.send(0, [5], T1);
      h.expectLog([[T1, [5, 0, 0, 0]], [T2, [5, 2, 0, 0]]]);
      h.clear();
      await h.send(1, [7], T1);
      h.expectLog([[T1, [5, 7, 0, 0]]]);
    },
  },
  {
    name: "19. multi-element chunks (every notification asserted, including the first chunk's)",
    boolSafe: false,
    async run(h) {
      await h.send(0, [10, 20, 30], T1);
      h.expectLog([[T1, [10, 20, 30, 0]]]);
      assertEquals(h.demuxer.explicitIndicesAt(T1), [0, 1, 2]);
      h.clear();
      await h.send(0, [1, 2], T2);
      await h.send(1, [22, 33], T2);
      h.expectLog([[T2, [1, 2, 30, 0]], [T2, [1, 22, 33, 0]]]);
      assertEquals(h.demuxer.explicitIndicesAt(T2), [0, 1, 2]);
      h.clear();
      await h.send(1, [10], T3);
      await h.send(2, [20], T4);
      h.clear();
      await h.send(0, [100, 200], T2);
      h.expectLog([[T2, [100, 200, 33, 0]], [T3, [100, 10, 33, 0]], [T4, [100, 10, 20, 0]]]);
    },
  },
  {
    name: "19b. the spec's fresh-demuxer form of the late multi-element chunk",
    boolSafe: true,
    async run(h) {
      await h.send(1, [10], T2);
      await h.send(2, [20], T3);
      h.clear();
      await h.send(0, [100, 200], T1);
      h.expectLog([[T1, [100, 200, 0, 0]], [T2, [100, 10, 0, 0]], [T3, [100, 10, 20, 0]]]);
    },
  },
];

for (const dtype of ["float32", "int64", "float16", "uint8", "bool"] as const) {
  Deno.test(`TensorDemuxer reproduces the spec §6.5 catalogue for ${dtype}`, async (t) => {
    for (const scenario of CATALOGUE) {
      if (dtype === "bool" && !scenario.boolSafe) continue;
      await t.step(scenario.name, () => scenario.run(setup(dtype, scenario.options)));
    }
  });
}

Deno.test("TensorDemuxer validates its options (spec §6.5 test 1)", async (t) => {
  const client = { onTensorChanged() {} };
  await t.step("rejects a length that is not a positive integer", () => {
    for (const length of [0, -1, 1.5, NaN]) {
      assertThrows(
        () => new TensorDemuxer(client, { dtype: "float32", length }),
        RangeError,
        "'length' must be a positive integer",
      );
    }
  });
  await t.step("rejects a timeout that is not a positive integer", () => {
    for (const dataTimeoutMicros of [0, -5, 0.5]) {
      assertThrows(
        () => new TensorDemuxer(client, { dtype: "float32", length: 4, dataTimeoutMicros }),
        RangeError,
        "'dataTimeoutMicros' must be a positive integer",
      );
    }
  });
  await t.step("rejects an unknown dtype", () => {
    assertThrows(
      () => new TensorDemuxer(client, { dtype: "float" as DType, length: 4 }),
      UnsupportedDTypeError,
    );
  });
  await t.step("rejects a baseline of the wrong class or length", () => {
    assertThrows(
      () =>
        new TensorDemuxer(client, {
          dtype: "float32",
          length: 2,
          baseline: new Float64Array(2) as unknown as Float32Array,
        }),
      TypeError,
      "must be a Float32Array",
    );
    assertThrows(
      () =>
        new TensorDemuxer(client, { dtype: "float32", length: 2, baseline: new Float32Array(3) }),
      RangeError,
      "must have 2 elements",
    );
  });
  await t.step("defaults the window to 60 s", () => {
    assertEquals(new TensorDemuxer(client, { dtype: "int8", length: 1 }).dataTimeoutMicros, 60e6);
  });
});

Deno.test("TensorDemuxer keeps state in the stream's dtype", async (t) => {
  await t.step("int64 values beyond 2^53 stay exact", async () => {
    const h = setup("int64");
    const big = 2n ** 62n + 1n;
    await h.demuxer.receive({ timestamp: T1, startingIndex: 1, values: new BigInt64Array([big]) });
    await h.send(0, [7], T2);
    assertEquals(h.log, [[T1, [0n, big, 0n, 0n]], [T2, [7n, big, 0n, 0n]]]);
  });
  await t.step("float64 values are not rounded to float32", async () => {
    const h = setup("float64");
    await h.send(0, [0.1], T1);
    assertEquals(h.at(T1), [0.1, 0, 0, 0]);
  });
  await t.step("bool values other than 0 are stored as 1", async () => {
    const h = setup("bool");
    await h.demuxer.receive({ timestamp: T1, startingIndex: 0, values: new Uint8Array([2, 0]) });
    assertEquals(h.at(T1), [1, 0, 0, 0]);
  });
  await t.step("the same NaN again is no change; -0 after +0 is a change", async () => {
    const h = setup("float32");
    await h.send(0, [NaN], T1);
    await h.send(0, [NaN], T1);
    assertEquals(h.log.length, 1);
    await h.send(1, [-0], T1);
    assertEquals(h.log.length, 2);
    assert(Object.is(h.at(T1)![1], -0));
  });
});

Deno.test("TensorDemuxer starts from its baseline", async (t) => {
  await t.step("a first chunk inherits a non-zero fill value", async () => {
    const h = setup("float32", { baseline: filled("float32", 4, 7) });
    await h.send(1, [1], T1);
    h.expectLog([[T1, [7, 1, 7, 7]]]);
  });
  await t.step("a late chunk before every keyframe inherits the baseline too", async () => {
    const h = setup("int16", { baseline: new Int16Array([1, 2, 3, 4]) });
    await h.send(0, [9], T2);
    await h.send(3, [8], T1);
    h.expectLog([[T2, [9, 2, 3, 4]], [T1, [1, 2, 3, 8]], [T2, [9, 2, 3, 8]]]);
  });
  await t.step("the caller's baseline array is copied, not kept", async () => {
    const baseline = filled("float32", 4, 7);
    const h = setup("float32", { baseline });
    baseline.fill(0);
    await h.send(0, [1], T1);
    h.expectLog([[T1, [1, 7, 7, 7]]]);
  });
});

Deno.test("TensorDemuxer applies its data window", async (t) => {
  await t.step(
    "bug 4: a late chunk older than every surviving keyframe inherits the newest expired state",
    async () => {
      const h = setup("float32", { dataTimeoutMicros: 15 * SECOND });
      await h.send(0, [1, 2], T0);
      await h.send(0, [5], T2); // T2 − 15 s > T0: T0 expires; its state becomes the baseline.
      assertEquals(h.at(T0), null);
      h.clear();
      await h.send(3, [9], T1); // inside the window, before T2
      // The Python original would give [0,0,0,9] then [5,0,0,9].
      h.expectLog([[T1, [1, 2, 0, 9]], [T2, [5, 2, 0, 9]]]);
    },
  );
  await t.step("chunks older than the window are dropped and counted", async () => {
    const h = setup("float32", { dataTimeoutMicros: SECOND });
    await h.send(0, [1], T2);
    await h.send(0, [2], T1);
    await h.send(1, [3], T2 - SECOND); // exactly at the cutoff: kept
    assertEquals(h.demuxer.counters, { staleChunks: 1, outOfRangeElements: 0, rejectedChunks: 0 });
    assertEquals(h.at(T1), null);
    assertEquals(h.at(T2 - SECOND), [0, 3, 0, 0]);
  });
  await t.step("an in-order stream through a short window rebuilds every snapshot", async () => {
    // Exercises vector recycling and the baseline carried at each expiry.
    const length = 64;
    const h = setup("float32", { length, dataTimeoutMicros: 3 * SECOND });
    const expected: number[][] = [];
    const state = new Array(length).fill(0);
    let seed = 12345;
    const next = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
    for (let step = 0; step < 60; step++) {
      const ts = T0 + step * SECOND;
      const start = Math.floor(next() * length);
      const values = Array.from({ length: 1 + Math.floor(next() * 5) }, () => next());
      await h.send(start, values, ts);
      values.forEach((v, k) => {
        if (start + k < length) state[start + k] = Math.fround(v);
      });
      expected.push([...state]);
      for (let back = 0; back <= Math.min(step, 3); back++) {
        assertEquals(h.at(ts - back * SECOND), expected[step - back]);
      }
    }
    assertEquals(h.demuxer.keyframeCount, 4);
  });
});

Deno.test("TensorDemuxer drops or rejects bad input", async (t) => {
  await t.step("elements outside the vector are dropped and counted", async () => {
    const h = setup("float32");
    await h.send(2, [1, 2, 3, 4], T1);
    await h.send(-3, [5, 6, 7, 8], T1);
    await h.send(2 ** 50, [1], T1);
    h.expectLog([[T1, [0, 0, 1, 2]], [T1, [8, 0, 1, 2]]]);
    assertEquals(h.demuxer.counters.outOfRangeElements, 6);
  });

  async function rejectsWithoutChange(chunk: TensorChunk, message: string): Promise<void> {
    const h = setup("float32");
    await h.send(0, [1], T1);
    const error = await assertRejects(
      () => h.demuxer.receive(chunk),
      TensorDemuxerChunkError,
      message,
    );
    assert(error instanceof TypeError);
    assertEquals(h.demuxer.counters.rejectedChunks, 1);
    assertEquals(h.log.length, 1);
    assertEquals(h.demuxer.keyframeCount, 1);
    assertEquals(h.at(T1), [1, 0, 0, 0]);
    // The window did not move: a chunk at T1 is still accepted.
    await h.send(1, [2], T1);
    assertEquals(h.at(T1), [1, 2, 0, 0]);
  }

  await t.step("a chunk of the wrong dtype is rejected with no state change", async () => {
    await rejectsWithoutChange(
      { timestamp: T1 + 3600 * SECOND, startingIndex: 0, values: new Float64Array([9]) },
      "must be a Float32Array for dtype float32: current value is a Float64Array",
    );
  });
  await t.step("a timestamp that is not an integer is rejected with no state change", async () => {
    for (const timestamp of [T2 + 0.5, NaN, Infinity]) {
      await rejectsWithoutChange(
        { timestamp, startingIndex: 0, values: new Float32Array([9]) },
        "'timestamp' must be an integer",
      );
    }
  });
  await t.step("a starting index that is not an integer is rejected", async () => {
    await rejectsWithoutChange(
      { timestamp: T1, startingIndex: 0.5, values: new Float32Array([9]) },
      "'startingIndex' must be an integer",
    );
  });
  await t.step("a non-object chunk is rejected", async () => {
    await rejectsWithoutChange(null as unknown as TensorChunk, "must be an object");
  });
});

Deno.test("TensorDemuxer calls its client without holding anything", async (t) => {
  await t.step("a client may read the demuxer from inside its callback", async () => {
    const seen: unknown[] = [];
    const demuxer: TensorDemuxer<"float32"> = new TensorDemuxer({
      onTensorChanged(timestamp) {
        seen.push(Array.from(demuxer.getTensorAt(timestamp)!));
      },
    }, { dtype: "float32", length: 2 });
    await demuxer.receive({ timestamp: T1, startingIndex: 0, values: new Float32Array([1]) });
    assertEquals(seen, [[1, 0]]);
  });

  await t.step(
    "a chunk fed back from a callback is applied and notified after the current ones",
    async () => {
      const log: Log = [];
      let fed: Promise<void> | undefined;
      const demuxer: TensorDemuxer<"float32"> = new TensorDemuxer({
        onTensorChanged(timestamp, values) {
          log.push([timestamp, Array.from(values)]);
          if (timestamp === T1 && fed === undefined) {
            fed = demuxer.receive({
              timestamp: T3,
              startingIndex: 1,
              values: new Float32Array([7]),
            });
          }
        },
      }, { dtype: "float32", length: 2 });
      await demuxer.receive({ timestamp: T2, startingIndex: 1, values: new Float32Array([3]) });
      await demuxer.receive({ timestamp: T1, startingIndex: 0, values: new Float32Array([1]) });
      await fed;
      assertEquals(log, [
        [T2, [0, 3]],
        [T1, [1, 0]],
        [T2, [1, 3]],
        [T3, [1, 7]],
      ]);
    },
  );

  await t.step("an async callback that awaits a nested receive does not deadlock", async () => {
    const log: number[] = [];
    const demuxer: TensorDemuxer<"float32"> = new TensorDemuxer({
      async onTensorChanged(timestamp) {
        log.push(timestamp);
        if (timestamp === T1) {
          await demuxer.receive({ timestamp: T2, startingIndex: 0, values: new Float32Array([2]) });
          log.push(-1);
        }
      },
    }, { dtype: "float32", length: 1 });
    await demuxer.receive({ timestamp: T1, startingIndex: 0, values: new Float32Array([1]) });
    assertEquals(log, [T1, T2, -1]);
  });

  await t.step("concurrent receive calls are applied and notified in call order", async () => {
    const log: Log = [];
    const demuxer = new TensorDemuxer({
      async onTensorChanged(timestamp, values) {
        log.push([timestamp, Array.from(values)]);
        await Promise.resolve();
      },
    }, { dtype: "float32", length: 2 });
    const send = (ts: number, i: number, v: number) =>
      demuxer.receive({ timestamp: ts, startingIndex: i, values: new Float32Array([v]) });
    await Promise.all([send(T2, 0, 1), send(T1, 1, 2), send(T2, 1, 3)]);
    assertEquals(log, [[T2, [1, 0]], [T1, [0, 2]], [T2, [1, 2]], [T2, [1, 3]]]);
  });

  await t.step("a failing client rejects receive but the state is updated", async () => {
    const demuxer = new TensorDemuxer({
      onTensorChanged() {
        throw new Error("client failed");
      },
    }, { dtype: "float32", length: 2 });
    await assertRejects(
      () => demuxer.receive({ timestamp: T1, startingIndex: 0, values: new Float32Array([1]) }),
      Error,
      "client failed",
    );
    assertEquals(Array.from(demuxer.getTensorAt(T1)!), [1, 0]);
  });

  await t.step("a rejected async callback rejects the receive that caused it", async () => {
    const demuxer = new TensorDemuxer({
      onTensorChanged() {
        return Promise.reject(new RangeError("async failure"));
      },
    }, { dtype: "float32", length: 2 });
    await assertRejects(
      () => demuxer.onChunk({ timestamp: T1, startingIndex: 0, values: new Float32Array([1]) }),
      RangeError,
      "async failure",
    );
  });
});

Deno.test("TensorDemuxer is a KeyframeReader", async (t) => {
  const h = setup("float32");
  await h.send(0, [1], T3);
  await h.send(1, [2], T1);
  await h.send(2, [3], T2);
  await t.step("lists keyframes oldest first with their full vectors", () => {
    assertEquals(h.demuxer.tensorLength, 4);
    assertEquals(h.demuxer.keyframeCount, 3);
    assertEquals([0, 1, 2].map((i) => h.demuxer.keyframeTime(i)), [T1, T2, T3]);
    assertEquals([0, 1, 2].map((i) => elements(h.demuxer.keyframeValues(i))), [
      [0, 2, 0, 0],
      [0, 2, 3, 0],
      [1, 2, 3, 0],
    ]);
  });
  await t.step("finds the keyframe at or before a time", () => {
    assertEquals(
      [T0, T1, T1 + 1, T2, T4].map((ts) => h.demuxer.keyframeIndexAtOrBefore(ts)),
      [-1, 0, 0, 1, 2],
    );
  });
  await t.step("rejects an index that is not a keyframe", () => {
    assertThrows(() => h.demuxer.keyframeTime(3), RangeError, "0..2");
    assertThrows(() => h.demuxer.keyframeValues(-1), RangeError);
  });
});

Deno.test("TensorDemuxer cascades minimally", async (t) => {
  await t.step(
    "the cascade stops at the first keyframe that overrides every changed index",
    async () => {
      const h = setup("float32");
      await h.send(0, [1], T0);
      await h.send(1, [1], T1);
      await h.send(0, [2], T2); // overrides index 0
      await h.send(2, [1], T3);
      await h.send(3, [1], T4);
      h.clear();
      await h.send(0, [9], T0);
      h.expectLog([[T0, [9, 0, 0, 0]], [T1, [9, 1, 0, 0]]]);
      assertEquals(h.at(T4), [2, 1, 1, 1]);
    },
  );
  await t.step("indices a later keyframe overrides stop there while the others go on", async () => {
    const h = setup("int32");
    await h.send(3, [1], T0);
    await h.send(0, [5], T1); // overrides index 0 only
    await h.send(3, [2], T2); // overrides index 3 only
    await h.send(2, [3], T3);
    h.clear();
    await h.send(0, [7, 8], T0);
    h.expectLog([[T0, [7, 8, 0, 1]], [T1, [5, 8, 0, 1]], [T2, [5, 8, 0, 2]], [T3, [5, 8, 3, 2]]]);
  });
  await t.step("a late new timestamp equal to its predecessor notifies itself only", async () => {
    const h = setup("float32");
    await h.send(0, [1], T1);
    await h.send(1, [2], T3);
    h.clear();
    await h.send(0, [1], T2);
    h.expectLog([[T2, [1, 0, 0, 0]]]);
  });
});

// ---------------------------------------------------------------------------
// Property: random snapshots sent as chunks in a random order rebuild exactly.

interface Snapshot {
  ts: number;
  bytes: Uint8Array;
  /** null: one full-snapshot chunk; else inclusive [a, b] slices (a, b in any order). */
  slices: [number, number][] | null;
}

const caseArb = fc.record({
  dtype: fc.constantFrom(...DTYPES),
  length: fc.integer({ min: 1, max: 200 }),
  frames: fc.integer({ min: 1, max: 6 }),
  withBaseline: fc.boolean(),
}).chain(({ dtype, length, frames, withBaseline }) => {
  const size = length * bytesPerElement(dtype);
  const snapshot = fc.record({
    ts: fc.integer({ min: 0, max: 10_000_000 }),
    bytes: fc.uint8Array({ minLength: size, maxLength: size }),
    slices: fc.option(
      fc.array(fc.tuple(fc.nat(length - 1), fc.nat(length - 1)), { minLength: 1, maxLength: 4 }),
    ),
  });
  return fc.record({
    dtype: fc.constant(dtype),
    length: fc.constant(length),
    baseline: withBaseline
      ? fc.uint8Array({ minLength: size, maxLength: size })
      : fc.constant(null),
    snapshots: fc.uniqueArray(snapshot, {
      minLength: 1,
      maxLength: frames,
      selector: (s) => s.ts,
    }) as fc.Arbitrary<Snapshot[]>,
  });
}).chain((c) => {
  const chunks: TensorChunk[] = [];
  for (const s of c.snapshots) {
    const values = viewBytes(c.dtype, s.bytes.slice());
    if (s.slices === null) chunks.push({ timestamp: s.ts, startingIndex: 0, values });
    else {
      for (const [a, b] of s.slices) {
        const lo = Math.min(a, b);
        chunks.push({
          timestamp: s.ts,
          startingIndex: lo,
          values: values.subarray(lo, Math.max(a, b) + 1),
        });
      }
    }
  }
  return fc.record({
    c: fc.constant(c),
    order: fc.shuffledSubarray(chunks, { minLength: chunks.length, maxLength: chunks.length }),
  });
});

/** Bool bytes hold 0 or 1. */
function normalized(dtype: DType, bytes: Uint8Array): Uint8Array {
  return dtype === "bool" ? bytes.map((b) => (b !== 0 ? 1 : 0)) : bytes;
}

Deno.test("TensorDemuxer rebuilds random snapshots delivered in random order exactly", async () => {
  await fc.assert(
    fc.asyncProperty(caseArb, async ({ c, order }) => {
      const width = bytesPerElement(c.dtype);
      const last = new Map<number, Uint8Array>();
      const demuxer = new TensorDemuxer({
        onTensorChanged(timestamp, values) {
          last.set(timestamp, bytesOf(values).slice());
        },
      }, {
        dtype: c.dtype,
        length: c.length,
        ...(c.baseline ? { baseline: viewBytes(c.dtype, c.baseline.slice()) } : {}),
      });
      for (const chunk of order) await demuxer.receive(chunk);

      // Naive "hold last value" reconstruction, in timestamp order.
      let state = normalized(c.dtype, c.baseline ?? new Uint8Array(c.length * width));
      const sorted = [...c.snapshots].sort((x, y) => x.ts - y.ts);
      assertEquals(demuxer.keyframeCount, sorted.length);
      for (const s of sorted) {
        const bytes = normalized(c.dtype, s.bytes);
        state = state.slice();
        const ranges = s.slices?.map(([a, b]) => [Math.min(a, b), Math.max(a, b)]) ??
          [[0, c.length - 1]];
        for (const [lo, hi] of ranges) {
          state.set(bytes.subarray(lo * width, (hi + 1) * width), lo * width);
        }
        const got = demuxer.getTensorAt(s.ts);
        assert(got !== null, `missing snapshot at ${s.ts}`);
        assertEquals(bytesOf(got), state, `snapshot at ${s.ts} (${c.dtype})`);
        assertEquals(last.get(s.ts), state, `last notification at ${s.ts} (${c.dtype})`);
      }
    }),
    { numRuns: 300, seed: 20240101 },
  );
});

Deno.test("TensorDemuxer.receiveAll applies a batch and notifies once per timestamp", async (t) => {
  function chunk(dtype: DType, timestamp: number, start: number, numbers: number[]): TensorChunk {
    return { timestamp, startingIndex: start, values: arrayOf(dtype, numbers) };
  }

  await t.step("each changed timestamp once, ascending, with its final values", async () => {
    const h = setup("int32");
    await h.send(3, [4], T3);
    h.clear();
    await h.demuxer.receiveAll([
      chunk("int32", T2, 0, [1]),
      chunk("int32", T1, 1, [2]), // cascades to T2 and T3
      chunk("int32", T2, 2, [3]), // cascades to T3 again
    ]);
    h.expectLog([[T1, [0, 2, 0, 0]], [T2, [1, 2, 3, 0]], [T3, [1, 2, 3, 4]]]);
  });
  await t.step("gives the same snapshots as applying the chunks one by one", async () => {
    const chunks = [
      chunk("float64", T2, 0, [1.5, 2.5]),
      chunk("float64", T4, 3, [7]),
      chunk("float64", T1, 1, [9, 8, 7]),
      chunk("float64", T3, 0, [6]),
      chunk("float64", T1, 2, [5]),
    ];
    const one = setup("float64");
    for (const c of chunks) await one.demuxer.receive(c);
    const all = setup("float64");
    await all.demuxer.receiveAll(chunks);
    for (const ts of [T1, T2, T3, T4]) assertEquals(all.at(ts), one.at(ts));
    assertEquals(all.log.map(([ts]) => ts), [T1, T2, T3, T4]);
  });
  await t.step("an unchanged timestamp is not notified", async () => {
    const h = setup("uint8");
    await h.send(0, [1, 2], T1);
    h.clear();
    await h.demuxer.receiveAll([chunk("uint8", T1, 0, [1]), chunk("uint8", T1, 1, [2])]);
    assertEquals(h.log, []);
  });
  await t.step("accepts any iterable, including an empty one", async () => {
    const h = setup("int16");
    await h.demuxer.receiveAll([]);
    await h.demuxer.receiveAll(new Set([chunk("int16", T1, 0, [-3])]));
    h.expectLog([[T1, [-3, 0, 0, 0]]]);
  });
  await t.step("one malformed chunk rejects the whole batch with no state change", async () => {
    const h = setup("float32");
    await h.send(0, [1], T1);
    h.clear();
    await assertRejects(
      () =>
        h.demuxer.receiveAll([
          chunk("float32", T1, 1, [2]),
          chunk("float32", T2 + 3600 * SECOND, 0, [3]),
          { timestamp: T2, startingIndex: 0, values: new Int32Array([3]) },
        ]),
      TensorDemuxerChunkError,
      "must be a Float32Array",
    );
    assertEquals(h.log, []);
    assertEquals(h.demuxer.counters.rejectedChunks, 1);
    assertEquals(h.demuxer.keyframeCount, 1);
    assertEquals(h.at(T1), [1, 0, 0, 0]);
    // The window did not move: T1 still takes data.
    await h.send(2, [5], T1);
    assertEquals(h.at(T1), [1, 0, 5, 0]);
  });
  await t.step("a non-iterable is rejected", async () => {
    const h = setup("float32");
    for (const bad of [null, 7, { length: 1 }]) {
      await assertRejects(
        () => h.demuxer.receiveAll(bad as unknown as TensorChunk[]),
        TensorDemuxerChunkError,
        "must be an iterable of chunks",
      );
    }
  });
  await t.step("a keyframe pruned by a later chunk of the batch is still reported", async () => {
    const h = setup("float32", { dataTimeoutMicros: 15 * SECOND });
    await h.demuxer.receiveAll([
      chunk("float32", T0, 0, [1]),
      chunk("float32", T1, 1, [2]),
      chunk("float32", T3, 2, [3]), // T3 − 15 s > T1: T0 and T1 expire
    ]);
    h.expectLog([[T0, [1, 0, 0, 0]], [T1, [1, 2, 0, 0]], [T3, [1, 2, 3, 0]]]);
    assertEquals(h.demuxer.keyframeCount, 1);
    // The recycled vectors do not leak the pruned state into new keyframes.
    await h.send(3, [4], T4);
    assertEquals(h.at(T4), [1, 2, 3, 4]);
  });
  await t.step("a batch received from inside a callback is delivered after it", async () => {
    const order: number[] = [];
    let inner: Promise<void> | undefined;
    const demuxer: TensorDemuxer<"float32"> = new TensorDemuxer({
      onTensorChanged(timestamp) {
        order.push(timestamp);
        if (timestamp === T1) {
          inner = demuxer.receiveAll([
            { timestamp: T3, startingIndex: 0, values: new Float32Array([3]) },
            { timestamp: T2, startingIndex: 0, values: new Float32Array([2]) },
          ]);
        }
      },
    }, { dtype: "float32", length: 2 });
    await demuxer.receive({ timestamp: T1, startingIndex: 0, values: new Float32Array([1]) });
    await inner;
    assertEquals(order, [T1, T2, T3]);
  });
  await t.step("a callback error rejects the batch's promise after the state is set", async () => {
    const demuxer = new TensorDemuxer({
      onTensorChanged() {
        throw new Error("client failed");
      },
    }, { dtype: "float32", length: 2 });
    await assertRejects(
      () =>
        demuxer.receiveAll([
          { timestamp: T1, startingIndex: 0, values: new Float32Array([1]) },
          { timestamp: T2, startingIndex: 1, values: new Float32Array([2]) },
        ]),
      Error,
      "client failed",
    );
    assertEquals(Array.from(demuxer.getTensorAt(T2)!), [1, 2]);
  });
});

Deno.test("TensorDemuxer keeps NaN payloads and signed zeros in short chunks", async (t) => {
  for (const dtype of ["float32", "float64"] as const) {
    await t.step(`${dtype}: each NaN keeps its bits; another NaN is a change`, async () => {
      const h = setup(dtype);
      const quiet = new Uint8Array(bytesOf(arrayOf(dtype, [NaN])));
      const payload = quiet.slice();
      payload[0] ^= 1; // the same NaN with a different payload bit
      const values = (bytes: Uint8Array) => viewBytes(dtype, bytes.slice());
      await h.demuxer.receive({ timestamp: T1, startingIndex: 1, values: values(payload) });
      await h.demuxer.receive({ timestamp: T1, startingIndex: 1, values: values(payload) });
      assertEquals(h.log.length, 1);
      const stored = () =>
        new Uint8Array(bytesOf(h.demuxer.getTensorAt(T1)!)).slice(
          bytesPerElement(dtype),
          2 * bytesPerElement(dtype),
        );
      assertEquals(Array.from(stored()), Array.from(payload));
      await h.demuxer.receive({ timestamp: T1, startingIndex: 1, values: values(quiet) });
      assertEquals(h.log.length, 2);
      assertEquals(Array.from(stored()), Array.from(quiet));
      // A number after a NaN is a change, and -0 after it differs from +0.
      await h.send(1, [0], T1);
      await h.send(1, [-0], T1);
      assertEquals(h.log.length, 4);
      assert(Object.is(h.at(T1)![1], -0));
    });
  }
});

Deno.test("TensorDemuxer tracks explicit indices across bitset words", async (t) => {
  const length = 200;
  const range = (a: number, b: number) => Array.from({ length: b - a }, (_, k) => a + k);
  await t.step("a long run at the newest keyframe marks exactly its indices", async () => {
    const h = setup("float32", { length });
    await h.send(5, range(0, 130).map((k) => k + 1), T2); // 5..134, a bulk write
    await h.send(31, [7], T2); // inside the run
    await h.send(160, [9], T2); // a later word
    assertEquals(h.demuxer.explicitIndicesAt(T2), [...range(5, 135), 160]);
  });
  await t.step("a late chunk stops exactly at indices a later bulk write set", async () => {
    const h = setup("int32", { length });
    await h.send(33, range(0, 64).map(() => 5), T2); // 33..96 explicit at T2
    await h.send(30, range(0, 70).map(() => 1), T1); // 30..99 at T1, cascades
    const at2 = h.at(T2)!;
    assertEquals(at2.slice(29, 101), [0, 1, 1, 1, ...range(33, 97).map(() => 5), 1, 1, 1, 0]);
  });
  await t.step("recycled keyframes start with no explicit index", async () => {
    const h = setup("uint8", { length, dataTimeoutMicros: SECOND });
    for (let step = 0; step < 6; step++) {
      const ts = T0 + step * SECOND;
      await h.send(step * 30, range(0, 100).map(() => step + 1), ts);
      assertEquals(
        h.demuxer.explicitIndicesAt(ts),
        range(step * 30, Math.min(length, step * 30 + 100)),
      );
    }
  });
});
