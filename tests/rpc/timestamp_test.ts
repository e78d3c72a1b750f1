import { assert, assertEquals, assertThrows } from "../_assert.ts";
import fc from "fast-check";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { ServerTimestampSchema } from "../../rpc/proto/gen/time_pb.ts";
import {
  InvalidTimestampError,
  MAX_TIMESTAMP_SECONDS,
  microsFromServerTimestamp,
  microsFromTimestamp,
  MIN_TIMESTAMP_SECONDS,
  serverTimestampFromMicros,
  timestampFromMicros,
  tryMicrosFromServerTimestamp,
} from "../../rpc/timestamp.ts";

const RUNS = 10_000;
const SEED = 20261124;
const MAX_SAFE_SECONDS = Math.floor(Number.MAX_SAFE_INTEGER / 1_000_000);

/** The exact reference: BigInt arithmetic, floor division. */
function referenceSplit(micros: number): { seconds: bigint; nanos: number } {
  const big = BigInt(micros);
  let seconds = big / 1_000_000n;
  let rest = big % 1_000_000n;
  if (rest < 0n) {
    rest += 1_000_000n;
    seconds -= 1n;
  }
  return { seconds, nanos: Number(rest) * 1000 };
}

Deno.test("timestamp conversion", async (t) => {
  await t.step("converts a known instant to seconds and nanos", () => {
    const ts = timestampFromMicros(1_732_406_400_123_456);
    assertEquals([ts.seconds, ts.nanos], [1_732_406_400n, 123_456_000]);
  });

  await t.step("puts instants before the epoch in negative seconds and positive nanos", () => {
    const ts = timestampFromMicros(-1);
    assertEquals([ts.seconds, ts.nanos], [-1n, 999_999_000]);
    const ts2 = timestampFromMicros(-1_000_000);
    assertEquals([ts2.seconds, ts2.nanos], [-1n, 0]);
    const ts3 = timestampFromMicros(-1_000_001);
    assertEquals([ts3.seconds, ts3.nanos], [-2n, 999_999_000]);
  });

  await t.step("truncates sub-microsecond nanos towards the past", () => {
    assertEquals(microsFromTimestamp({ seconds: 5n, nanos: 999 }), 5_000_000);
    assertEquals(microsFromTimestamp({ seconds: 5n, nanos: 1_999 }), 5_000_001);
    assertEquals(microsFromTimestamp({ seconds: -1n, nanos: 999_999_999 }), -1);
  });

  await t.step("round-trips every safe integer of microseconds (10,000 cases)", () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.maxSafeInteger(),
          fc.integer({ min: -1e6 * 4e9, max: 1e6 * 4e9 }),
          fc.integer({ min: -3_000_000, max: 3_000_000 }),
        ),
        (micros) => {
          const ts = timestampFromMicros(micros);
          const expected = referenceSplit(micros);
          assertEquals(ts.seconds, expected.seconds);
          assertEquals(ts.nanos, expected.nanos);
          assertEquals(microsFromTimestamp(ts), micros);
        },
      ),
      { numRuns: RUNS, seed: SEED },
    );
  });

  await t.step(
    "round-trips every representable Timestamp with whole microseconds (10,000 cases)",
    () => {
      fc.assert(
        fc.property(
          fc.integer({ min: -MAX_SAFE_SECONDS, max: MAX_SAFE_SECONDS - 1 }),
          fc.integer({ min: 0, max: 999_999 }),
          (seconds, micros) => {
            const ts = { seconds: BigInt(seconds), nanos: micros * 1000 };
            const back = timestampFromMicros(microsFromTimestamp(ts));
            assertEquals([back.seconds, back.nanos], [ts.seconds, ts.nanos]);
          },
        ),
        { numRuns: RUNS, seed: SEED },
      );
    },
  );

  await t.step("maps any nanos to the microsecond that contains it (10,000 cases)", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: -1e9, max: 1e9 }),
        fc.integer({ min: 0, max: 999_999_999 }),
        (seconds, nanos) => {
          const micros = microsFromTimestamp({ seconds: BigInt(seconds), nanos });
          assertEquals(
            BigInt(micros),
            BigInt(seconds) * 1_000_000n + BigInt(Math.floor(nanos / 1000)),
          );
        },
      ),
      { numRuns: RUNS, seed: SEED },
    );
  });

  await t.step("round-trips through ServerTimestamp bytes (10,000 cases)", () => {
    fc.assert(
      fc.property(fc.maxSafeInteger(), (micros) => {
        const bytes = toBinary(
          ServerTimestampSchema,
          create(ServerTimestampSchema, serverTimestampFromMicros(micros)),
        );
        assertEquals(microsFromServerTimestamp(fromBinary(ServerTimestampSchema, bytes)), micros);
      }),
      { numRuns: RUNS, seed: SEED },
    );
  });

  await t.step("rejects nanos out of range with a typed error", () => {
    for (const nanos of [-1, 1_000_000_000, 0.5, Number.NaN]) {
      const error = assertThrows(
        () => microsFromTimestamp({ seconds: 0n, nanos }),
        InvalidTimestampError,
      );
      assert(error.message.includes("'nanos' must be an integer in 0..999999999"), error.message);
      assert(error.message.includes(`current value is ${nanos}`), error.message);
    }
  });

  await t.step("rejects seconds outside the protobuf Timestamp range", () => {
    for (
      const seconds of [BigInt(MIN_TIMESTAMP_SECONDS) - 1n, BigInt(MAX_TIMESTAMP_SECONDS) + 1n]
    ) {
      assertThrows(
        () => microsFromTimestamp({ seconds, nanos: 0 }),
        InvalidTimestampError,
        "'seconds' must be in -62135596800..253402300799",
      );
    }
  });

  await t.step("rejects valid Timestamps that do not fit in safe-integer microseconds", () => {
    assertThrows(
      () => microsFromTimestamp({ seconds: BigInt(MAX_SAFE_SECONDS) + 1n, nanos: 0 }),
      InvalidTimestampError,
      "safe integer number of microseconds",
    );
    assertThrows(
      () => microsFromTimestamp({ seconds: BigInt(MAX_SAFE_SECONDS), nanos: 999_999_999 }),
      InvalidTimestampError,
      "safe integer number of microseconds",
    );
    assertEquals(
      microsFromTimestamp({ seconds: BigInt(MAX_SAFE_SECONDS), nanos: 740_991_000 }),
      Number.MAX_SAFE_INTEGER,
    );
  });

  await t.step("rejects microseconds that are not safe integers", () => {
    for (const micros of [1.5, Number.NaN, Infinity, 2 ** 53]) {
      assertThrows(() => timestampFromMicros(micros), InvalidTimestampError, "safe integer");
    }
  });

  await t.step("rejects a ServerTimestamp without its timestamp field", () => {
    assertThrows(
      () => microsFromServerTimestamp({}),
      InvalidTimestampError,
      "'timestamp' field must be set",
    );
  });

  await t.step("tryMicrosFromServerTimestamp returns null for absent or invalid input", () => {
    assertEquals(tryMicrosFromServerTimestamp(null), null);
    assertEquals(tryMicrosFromServerTimestamp(undefined), null);
    assertEquals(tryMicrosFromServerTimestamp({}), null);
    assertEquals(tryMicrosFromServerTimestamp({ timestamp: { seconds: 0n, nanos: -5 } }), null);
    assertEquals(
      tryMicrosFromServerTimestamp({ timestamp: { seconds: 2n, nanos: 3000 } }),
      2_000_003,
    );
  });
});
