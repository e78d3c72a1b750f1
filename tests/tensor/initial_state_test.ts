import { assertEquals, assertThrows } from "../_assert.ts";
import fc from "fast-check";
import { buildInitialVector, describeInitialState } from "../../tensor/initial_state.ts";

function chunksOf(values: number[]) {
  const state = describeInitialState(new Float32Array(values), 7);
  return {
    fill: state.fillValue,
    chunks: state.initialState?.map((
      c,
    ) => [c.timestamp, c.startingIndex, Array.from(c.values as Float32Array)]) ??
      null,
  };
}

Deno.test("initial state", async (t) => {
  await t.step(
    "[1,2,3,4,5] has fill 1 (ties go to the smallest) and one chunk (1,[2,3,4,5])",
    () => {
      assertEquals(chunksOf([1, 2, 3, 4, 5]), { fill: 1, chunks: [[7, 1, [2, 3, 4, 5]]] });
    },
  );

  // spec §6.4.5: the fill-value table
  const table: [number[], number, boolean][] = [
    [[0, 0, 0], 0, false],
    [[7, 7, 7], 7, false],
    [[0, 1, 0, 2, 0], 0, true],
    [[1, 0, 1, 2, 1], 1, true],
    [[42], 42, false],
    [[0, 1, 0, 1], 0, true],
    [[1, 0, 1, 0], 0, true],
    [[1, 2, 3], 1, true],
    [[-1, 0, -1], -1, true],
  ];
  for (const [values, fill, hasState] of table) {
    await t.step(`[${values}] has fill ${fill} and ${hasState ? "an" : "no"} initial state`, () => {
      const state = chunksOf(values);
      assertEquals([state.fill, state.chunks !== null], [fill, hasState]);
    });
  }

  await t.step("an empty vector has fill 0 and no initial state", () => {
    assertEquals(chunksOf([]), { fill: 0, chunks: null });
  });

  await t.step("-0 differs from a fill of 0 and travels as a chunk", () => {
    const state = describeInitialState(new Float64Array([0, -0, 0]), 0);
    assertEquals(state.initialState?.map((c) => c.startingIndex), [1]);
    const rebuilt = buildInitialVector("float64", 3, state.fillValue, state.initialState);
    assertEquals(Object.is(rebuilt[1], -0), true);
  });

  await t.step("an int64 mode beyond 2^53 is still rebuilt exactly", () => {
    const big = 2n ** 60n + 1n;
    const values = new BigInt64Array([big, big, 3n]);
    const state = describeInitialState(values, 0);
    assertEquals(
      Array.from(buildInitialVector("int64", 3, state.fillValue, state.initialState)),
      [big, big, 3n],
    );
  });

  await t.step("chunks that do not fit the vector are rejected", () => {
    const chunk = { timestamp: 0, startingIndex: 2, values: new Float32Array(2) };
    assertThrows(
      () => buildInitialVector("float32", 3, 0, [chunk]),
      RangeError,
      "must fit in 0..3",
    );
  });

  await t.step("chunks of another dtype are rejected", () => {
    const chunk = { timestamp: 0, startingIndex: 0, values: new Int32Array(1) };
    assertThrows(() => buildInitialVector("float32", 3, 0, [chunk]), RangeError, "Float32Array");
  });

  await t.step("describe then build rebuilds any vector exactly (300 cases)", () => {
    fc.assert(
      fc.property(
        fc.array(fc.oneof(fc.constant(0), fc.constant(5), fc.float({ noDefaultInfinity: true })), {
          maxLength: 60,
        }),
        (numbers) => {
          const values = new Float32Array(numbers);
          const state = describeInitialState(values, 1);
          const rebuilt = buildInitialVector(
            "float32",
            values.length,
            state.fillValue,
            state.initialState,
          );
          assertEquals(new Uint8Array(rebuilt.buffer), new Uint8Array(values.buffer));
        },
      ),
      { numRuns: 300, seed: 20261124 },
    );
  });
});
