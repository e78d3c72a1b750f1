import { assert, assertEquals, assertThrows } from "../_assert.ts";
import { FakeClock } from "../../rpc/fake_clock.ts";
import { SystemClock } from "../../rpc/system_clock.ts";

Deno.test("SystemClock", async (t) => {
  await t.step("reads integer microseconds close to the wall clock", () => {
    const before = Date.now() * 1000;
    const now = new SystemClock().now();
    const after = Date.now() * 1000;
    assert(Number.isSafeInteger(now));
    // performance.timeOrigin and Date.now() agree to well within a second.
    assert(now >= before - 1_000_000 && now <= after + 1_000_000, `${before} ${now} ${after}`);
  });

  await t.step("never goes backwards over many reads", () => {
    const clock = new SystemClock();
    let last = clock.now();
    for (let i = 0; i < 100_000; i++) {
      const value = clock.now();
      assert(value >= last, `${value} < ${last}`);
      last = value;
    }
  });

  await t.step("maps local and synchronised time one to one", () => {
    const clock = new SystemClock();
    assertEquals(clock.sync(123), 123);
    assertEquals(clock.desync(-456), -456);
  });
});

Deno.test("FakeClock", async (t) => {
  await t.step("starts at zero with no offset by default", () => {
    const clock = new FakeClock();
    assertEquals([clock.localNow(), clock.now(), clock.offsetMicros], [0, 0, 0]);
  });

  await t.step("moves only when advanced or set", () => {
    const clock = new FakeClock({ startMicros: 1_000 });
    assertEquals(clock.now(), 1_000);
    clock.advance(250);
    assertEquals(clock.now(), 1_250);
    clock.set(10);
    assertEquals(clock.now(), 10);
  });

  await t.step("adds its offset when syncing and subtracts it when desyncing", () => {
    const clock = new FakeClock({ startMicros: 5_000, offsetMicros: 10_000_000 });
    assertEquals(clock.now(), 10_005_000);
    assertEquals(clock.sync(1), 10_000_001);
    assertEquals(clock.desync(10_000_001), 1);
    clock.offsetMicros = -3;
    assertEquals(clock.now(), 4_997);
  });

  await t.step("rejects times that are not safe integers", () => {
    assertThrows(
      () => new FakeClock({ startMicros: 0.5 }),
      RangeError,
      "'startMicros' must be a safe integer",
    );
    const clock = new FakeClock({ startMicros: Number.MAX_SAFE_INTEGER });
    assertThrows(() => clock.advance(1), RangeError, "'localMicros' must be a safe integer");
    assertEquals(clock.localNow(), Number.MAX_SAFE_INTEGER);
    assertThrows(() => (clock.offsetMicros = Number.NaN), RangeError, "'offsetMicros'");
  });
});
