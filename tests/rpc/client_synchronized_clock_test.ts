import { assert, assertEquals, assertThrows } from "../_assert.ts";
import { ClientSynchronizedClock } from "../../rpc/client_synchronized_clock.ts";

function setup(rate = 0.1) {
  const local = {
    t: 10_000_000,
    now() {
      return this.t;
    },
  };
  const clock = new ClientSynchronizedClock({ local, maxSlewRate: rate });
  return { local, clock };
}

Deno.test("ClientSynchronizedClock", async (t) => {
  await t.step("reads local time until the first offset", () => {
    const { clock } = setup();
    assertEquals([clock.synchronized, clock.now(), clock.offsetMicros], [false, 10_000_000, 0]);
  });
  await t.step("applies the first offset at once, even a negative one", () => {
    const { clock } = setup();
    clock.setOffset(-2_500_000);
    assertEquals([clock.synchronized, clock.now()], [true, 7_500_000]);
  });
  await t.step("steps forward at once for a larger offset", () => {
    const { clock } = setup();
    clock.setOffset(1_000);
    clock.setOffset(3_000);
    assertEquals(clock.now(), 10_003_000);
  });
  await t.step("slews a smaller offset in at the slew rate", () => {
    const { local, clock } = setup(0.1);
    clock.setOffset(10_000);
    clock.setOffset(0); // 10 ms back: takes 100 ms of local time at 10 %
    assertEquals(clock.targetOffsetMicros, 0);
    const readings: number[] = [];
    for (let k = 0; k <= 12; k++) {
      readings.push(clock.offsetMicros);
      local.t += 10_000;
    }
    assertEquals(readings, [
      10_000,
      9_000,
      8_000,
      7_000,
      6_000,
      5_000,
      4_000,
      3_000,
      2_000,
      1_000,
      0,
      0,
      0,
    ]);
  });
  await t.step("never reads backwards across any sequence of corrections", () => {
    const { local, clock } = setup(0.05);
    let seed = 7;
    const next = () => (seed = (seed * 48271) % 2147483647) / 2147483647;
    clock.setOffset(0); // the first offset may step either way; later ones must not go back
    let last = clock.now();
    for (let k = 1; k < 10_000; k++) {
      if (k % 10 === 0) clock.setOffset(Math.round((next() - 0.5) * 2_000_000));
      local.t += Math.floor(next() * 2_000);
      const now = clock.now();
      assert(now >= last, `step ${k}: ${now} < ${last}`);
      last = now;
    }
  });
  await t.step("desync inverts sync before, during and after a slew", () => {
    const { local, clock } = setup(0.25);
    clock.setOffset(400_000);
    local.t += 1_000_000;
    clock.setOffset(100_000); // slews from local 11 s to 12.2 s
    for (let l = 9_000_000; l <= 14_000_000; l += 12_345) {
      const s = clock.sync(l);
      assert(Math.abs(clock.desync(s) - l) <= 1, `${l} -> ${s} -> ${clock.desync(s)}`);
    }
  });
  await t.step("sync never decreases in local time, so it is invertible", () => {
    const { local, clock } = setup(0.5);
    clock.setOffset(1_000_000);
    local.t += 10;
    clock.setOffset(0);
    let last = -Infinity;
    for (let l = 9_000_000; l <= 13_000_000; l += 1_000) {
      const s = clock.sync(l);
      assert(s >= last);
      last = s;
    }
  });
  await t.step("rejects bad options and non-finite offsets", () => {
    for (const maxSlewRate of [0, 1, -0.1, NaN]) {
      assertThrows(() => new ClientSynchronizedClock({ maxSlewRate }), RangeError, "maxSlewRate");
    }
    assertThrows(
      () => new ClientSynchronizedClock({ local: {} as { now(): number } }),
      TypeError,
      "now()",
    );
    const { clock } = setup();
    clock.setOffset(5);
    assertThrows(() => clock.setOffset(Infinity), RangeError, "finite");
    assertEquals(clock.targetOffsetMicros, 5);
  });
});
