import fc from "fast-check";
import { assert, assertEquals, assertRejects, assertThrows } from "../_assert.ts";
import { CallerId } from "../../rpc/caller_id.ts";
import { ManualScheduler } from "../../rpc/scheduler.ts";
import {
  linearInterpolate,
  RemoteDataAggregator,
  type RemoteDataAggregatorOptions,
  RemoteDataAggregatorStoppedError,
  type RemoteDataItem,
  UnknownCallerError,
} from "../../runtime/remote_data_aggregator.ts";

const A = CallerId.parse("0b5a8f1e-3c2d-4e7f-9a10-6b2c3d4e5f60");
const B = CallerId.parse("11111111-2222-4333-8444-555555555555");
const C = CallerId.parse("66666666-7777-4888-9999-aaaaaaaaaaaa");

/** The fake clock's start: 2023-11-14T22:13:20Z in µs. */
const T0 = 1_700_000_000_000_000;
const SECOND = 1_000_000;

/** An aggregator on a ManualScheduler whose clock is T0 + the scheduler's time. */
function setup<T = number>(options: RemoteDataAggregatorOptions<T> = {}) {
  const scheduler = new ManualScheduler();
  const clock = { now: () => T0 + scheduler.now * 1_000 };
  const aggregator = new RemoteDataAggregator<T>({ clock, scheduler, ...options });
  const notified: string[] = [];
  aggregator.onNewData((item) => notified.push(`${short(item.callerId)}@${item.timestamp}`));
  return { aggregator, scheduler, clock, notified };
}

function short(id: CallerId): string {
  return id.equals(A) ? "A" : id.equals(B) ? "B" : "C";
}

function put<T>(aggregator: RemoteDataAggregator<T>, id: CallerId, timestamp: number, value: T) {
  aggregator.onDataReady({ callerId: id, timestamp, value });
}

function times(items: readonly RemoteDataItem<unknown>[]): number[] {
  return items.map((item) => item.timestamp);
}

function values<T>(items: readonly RemoteDataItem<T>[]): T[] {
  return items.map((item) => item.value);
}

Deno.test("RemoteDataAggregator ordering and new data", async (t) => {
  await t.step("returns out-of-order arrivals newest first from getNewData", () => {
    const { aggregator } = setup();
    for (const ts of [30, 10, 50, 20, 40]) put(aggregator, A, ts, ts * 2);
    const items = aggregator.getNewData(A);
    assertEquals(times(items), [50, 40, 30, 20, 10]);
    assertEquals(values(items), [100, 80, 60, 40, 20]);
  });

  await t.step("notifies only for items at or after the newest (the §7.3 worked example)", () => {
    const { aggregator, notified } = setup();
    for (const ts of [5, 6]) put(aggregator, A, ts, ts);
    assertEquals(notified, ["A@5", "A@6"]);
    for (const ts of [2, 3]) put(aggregator, A, ts, ts);
    assertEquals(notified.length, 2);
    for (const ts of [7, 8]) put(aggregator, A, ts, ts);
    assertEquals(notified, ["A@5", "A@6", "A@7", "A@8"]);
    for (const ts of [0, 1]) put(aggregator, A, ts, ts);
    assertEquals(notified.length, 4);
    assertEquals(times(aggregator.getNewData(A)), [8, 7, 6, 5, 3, 2, 1, 0]);
  });

  await t.step("moves the watermark: nothing is new after getNewData", () => {
    const { aggregator } = setup();
    put(aggregator, A, 10, 1);
    assertEquals(aggregator.hasNewData(A), true);
    assertEquals(times(aggregator.getNewData(A)), [10]);
    assertEquals([aggregator.hasNewData(A), aggregator.getNewData(A)], [false, []]);
  });

  await t.step("never reports a late item below the watermark as new, but stores it", () => {
    const { aggregator } = setup();
    put(aggregator, A, 10, 1);
    aggregator.getNewData(A);
    put(aggregator, A, 5, 2);
    assertEquals(aggregator.hasNewData(A), false);
    assertEquals(aggregator.getNewData(A), []);
    assertEquals(aggregator.getDataForTimestamp(7, A)?.value, 2);
  });

  await t.step("reports only the items above the watermark after a newer one arrives", () => {
    const { aggregator } = setup();
    put(aggregator, A, 10, 1);
    aggregator.getNewData(A);
    put(aggregator, A, 20, 2);
    put(aggregator, A, 15, 3);
    put(aggregator, A, 5, 4);
    assertEquals(times(aggregator.getNewData(A)), [20, 15]);
  });

  await t.step("returns the newest item from getMostRecentData regardless of the watermark", () => {
    const { aggregator } = setup();
    put(aggregator, A, 10, 1);
    put(aggregator, A, 20, 2);
    aggregator.getNewData(A);
    assertEquals(aggregator.getMostRecentData(A)?.value, 2);
    put(aggregator, A, 15, 3);
    assertEquals(aggregator.getMostRecentData(A)?.value, 2);
  });

  await t.step("keeps items with equal timestamps by default, the later arrival as newer", () => {
    const { aggregator, notified } = setup();
    put(aggregator, A, 10, 1);
    aggregator.getNewData(A);
    put(aggregator, A, 10, 2);
    assertEquals(notified, ["A@10", "A@10"]);
    assertEquals(aggregator.hasNewData(A), true);
    assertEquals(values(aggregator.getNewData(A)), [2]);
    assertEquals(aggregator.getMostRecentData(A)?.value, 2);
  });

  await t.step("replaces and notifies on an equal timestamp with dedupeByTimestamp", () => {
    const { aggregator, notified } = setup({ dedupeByTimestamp: true });
    put(aggregator, A, 30, 1);
    put(aggregator, A, 40, 2);
    put(aggregator, A, 30, 3);
    assertEquals(notified, ["A@30", "A@40", "A@30"]);
    assertEquals(values(aggregator.getNewData(A)), [2, 3]);
  });

  await t.step("makes a replacement of the newest item new again after a read", () => {
    const { aggregator } = setup({ dedupeByTimestamp: true });
    put(aggregator, A, 12, 1);
    aggregator.getNewData(A);
    put(aggregator, A, 12, 2);
    assertEquals(values(aggregator.getNewData(A)), [2]);
  });

  await t.step("copies and freezes stored items so callers cannot reorder the store", () => {
    const { aggregator } = setup();
    const original = { callerId: A, timestamp: 10, value: 1 };
    aggregator.onDataReady(original);
    original.timestamp = 99;
    const stored = aggregator.getMostRecentData(A)!;
    assertEquals([stored.timestamp, Object.isFrozen(stored)], [10, true]);
  });
});

Deno.test("RemoteDataAggregator lookups", async (t) => {
  await t.step(
    "answers hasNewData false and other queries UnknownCallerError for unknown ids",
    () => {
      const { aggregator } = setup();
      assertEquals(aggregator.hasNewData(A), false);
      assertThrows(() => aggregator.getNewData(A), UnknownCallerError, A.toString());
      assertThrows(() => aggregator.getMostRecentData(A), UnknownCallerError);
      assertThrows(() => aggregator.getDataForTimestamp(1, A), UnknownCallerError);
      assertThrows(() => aggregator.getInterpolatedAt(1, A), UnknownCallerError);
      assertThrows(() => aggregator.stop(A), UnknownCallerError);
    },
  );

  await t.step("gives the exact item from getDataForTimestamp on a hit", () => {
    const { aggregator } = setup();
    for (const ts of [10, 20, 30]) put(aggregator, A, ts, ts);
    assertEquals(aggregator.getDataForTimestamp(20, A)?.value, 20);
  });

  await t.step("gives the latest earlier item from getDataForTimestamp between items", () => {
    const { aggregator } = setup();
    for (const ts of [10, 20, 30]) put(aggregator, A, ts, ts);
    assertEquals(aggregator.getDataForTimestamp(29, A)?.value, 20);
    assertEquals(aggregator.getDataForTimestamp(1_000, A)?.value, 30);
  });

  await t.step("gives undefined from getDataForTimestamp before the first item", () => {
    const { aggregator } = setup();
    put(aggregator, A, 10, 1);
    assertEquals(aggregator.getDataForTimestamp(9, A), undefined);
  });

  await t.step("answers for every caller when no id is given, empty lists included", () => {
    const { aggregator } = setup();
    put(aggregator, A, 10, 1);
    put(aggregator, B, 20, 2);
    aggregator.getNewData(B);
    assertEquals([...aggregator.hasNewData()].map(([id, v]) => [short(id), v]), [
      ["A", true],
      ["B", false],
    ]);
    assertEquals(aggregator.anyNewData(), true);
    const all = aggregator.getNewData();
    assertEquals([values(all.get(A)!), all.get(B)], [[1], []]);
    assertEquals(aggregator.anyNewData(), false);
    assertEquals(aggregator.getDataForTimestamp(15).get(B), undefined);
    assertEquals(aggregator.getMostRecentData().get(B)?.value, 2);
    assertEquals(aggregator.callerIds.map(short), ["A", "B"]);
  });
});

Deno.test("RemoteDataAggregator interpolation", async (t) => {
  await t.step("interpolates linearly between the neighbouring numbers", () => {
    const { aggregator } = setup();
    put(aggregator, A, 100, 10);
    put(aggregator, A, 200, 20);
    put(aggregator, A, 300, 0);
    const item = aggregator.getInterpolatedAt(125, A)!;
    assertEquals([item.timestamp, item.value, short(item.callerId)], [125, 12.5, "A"]);
    assertEquals(aggregator.getInterpolatedAt(250, A)?.value, 10);
  });

  await t.step("clamps to the oldest and newest items and returns exact hits", () => {
    const { aggregator } = setup();
    put(aggregator, A, 100, 10);
    put(aggregator, A, 200, 20);
    assertEquals(aggregator.getInterpolatedAt(50, A), { callerId: A, timestamp: 100, value: 10 });
    assertEquals(aggregator.getInterpolatedAt(500, A), { callerId: A, timestamp: 200, value: 20 });
    assertEquals(aggregator.getInterpolatedAt(200, A)?.value, 20);
  });

  await t.step("gives undefined for payloads the interpolator cannot blend", () => {
    const { aggregator } = setup<string>();
    put(aggregator, A, 100, "a");
    put(aggregator, A, 200, "b");
    assertEquals(aggregator.getInterpolatedAt(150, A), undefined);
    assertEquals(aggregator.getInterpolatedAt(100, A)?.value, "a");
  });

  await t.step("uses a custom interpolator with the fraction between neighbours", () => {
    const calls: unknown[] = [];
    const { aggregator } = setup<string>({
      interpolate: (a, b, f) => {
        calls.push([a, b, f]);
        return `${a}${b}`;
      },
    });
    put(aggregator, A, 0, "x");
    put(aggregator, A, 400, "y");
    assertEquals(aggregator.getInterpolatedAt(100, A)?.value, "xy");
    assertEquals(calls, [["x", "y", 0.25]]);
  });

  await t.step("interpolates typed arrays element by element, rounding integer kinds", () => {
    assertEquals(
      linearInterpolate(new Float32Array([0, 1]), new Float32Array([1, 3]), 0.5),
      new Float32Array([0.5, 2]),
    );
    assertEquals(
      linearInterpolate(new Int16Array([0, 10]), new Int16Array([3, 20]), 0.5),
      new Int16Array([2, 15]),
    );
    assertEquals(
      linearInterpolate<ArrayBufferView>(new Int16Array(2), new Int32Array(2), 0.5),
      undefined,
    );
    assertEquals(linearInterpolate(new Float64Array(2), new Float64Array(3), 0.5), undefined);
  });

  await t.step("omits callers without a result from the all-caller interpolation", () => {
    const { aggregator } = setup<number | string>();
    put(aggregator, A, 0, 0);
    put(aggregator, A, 10, 10);
    put(aggregator, B, 0, "a");
    put(aggregator, B, 10, "b");
    const all = aggregator.getInterpolatedAt(5);
    assertEquals([all.size, all.get(A)?.value, all.has(B)], [1, 5, false]);
  });
});

Deno.test("RemoteDataAggregator timeout", async (t) => {
  await t.step("keeps an item exactly at the timeout and drops it right after", () => {
    const { aggregator, scheduler } = setup({ timeoutMicros: 5 * SECOND });
    put(aggregator, A, T0, 1);
    scheduler.advance(5_000);
    assertEquals(aggregator.getMostRecentData(A)?.value, 1);
    scheduler.advance(1);
    assertEquals(aggregator.getMostRecentData(A), undefined);
  });

  await t.step("prunes each item when it expires and re-arms for the next one", () => {
    const { aggregator, scheduler } = setup({ timeoutMicros: 5 * SECOND });
    put(aggregator, A, T0, 1);
    put(aggregator, B, T0 + 2 * SECOND, 2);
    scheduler.advance(5_001);
    assertEquals([aggregator.getMostRecentData(A), aggregator.getMostRecentData(B)?.value], [
      undefined,
      2,
    ]);
    assertEquals(scheduler.pending, 1);
    scheduler.advance(2_000);
    assertEquals([aggregator.getMostRecentData(B), scheduler.pending], [undefined, 0]);
  });

  await t.step("does not store an item that has expired already when it arrives", () => {
    const { aggregator, notified } = setup({ timeoutMicros: SECOND });
    put(aggregator, A, T0 - 2 * SECOND, 1);
    assertEquals(
      [aggregator.expiredOnArrival, aggregator.getMostRecentData(A), notified],
      [1, undefined, []],
    );
  });

  await t.step("never prunes or sets a timer without a timeout", () => {
    const { aggregator, scheduler } = setup();
    put(aggregator, A, 0, 1);
    assertEquals([scheduler.pending, aggregator.prune()], [0, 0]);
    assertEquals(aggregator.getMostRecentData(A)?.value, 1);
  });

  await t.step("clears its pruning timer on stop", () => {
    const { aggregator, scheduler } = setup({ timeoutMicros: SECOND });
    put(aggregator, A, T0, 1);
    assertEquals(scheduler.pending, 1);
    aggregator.stop();
    assertEquals(scheduler.pending, 0);
  });
});

Deno.test("RemoteDataAggregator callers and listeners", async (t) => {
  await t.step("keeps callers isolated: reading one leaves the other's data new", () => {
    const { aggregator } = setup();
    put(aggregator, A, 10, 1);
    put(aggregator, B, 5, 2);
    assertEquals(values(aggregator.getNewData(A)), [1]);
    assertEquals([aggregator.hasNewData(A), aggregator.hasNewData(B)], [false, true]);
    assertEquals(aggregator.getDataForTimestamp(7, A), undefined);
    assertEquals(aggregator.getDataForTimestamp(7, B)?.value, 2);
  });

  await t.step("ignores a stopped caller's later data but keeps serving the others", () => {
    const { aggregator } = setup();
    put(aggregator, A, 10, 1);
    put(aggregator, B, 10, 2);
    aggregator.stop(A);
    put(aggregator, A, 20, 3);
    put(aggregator, B, 20, 4);
    assertEquals([values(aggregator.getNewData(A)), values(aggregator.getNewData(B))], [
      [1],
      [4, 2],
    ]);
  });

  await t.step("fires onNewEndpoint once per caller, after the first item is stored", () => {
    const { aggregator } = setup();
    const seen: unknown[] = [];
    aggregator.onNewEndpoint((id) =>
      seen.push([short(id), aggregator.getMostRecentData(id)?.value])
    );
    put(aggregator, A, 10, 1);
    put(aggregator, A, 20, 2);
    put(aggregator, B, 5, 3);
    assertEquals(seen, [["A", 1], ["B", 3]]);
  });

  await t.step("reports listener errors and still runs the other listeners", () => {
    const errors: unknown[] = [];
    const { aggregator, notified } = setup({
      onListenerError: (error, kind) => errors.push([(error as Error).message, kind]),
    });
    aggregator.onNewEndpoint(() => {
      throw new Error("endpoint boom");
    });
    aggregator.onNewData(() => {
      throw new Error("data boom");
    });
    put(aggregator, A, 10, 1);
    assertEquals(errors, [["endpoint boom", "new-endpoint"], ["data boom", "new-data"]]);
    assertEquals(notified, ["A@10"]);
    assertEquals(values(aggregator.getNewData(A)), [1]);
  });

  await t.step("stops calling a listener once it is removed", () => {
    const { aggregator } = setup();
    const seen: number[] = [];
    const off = aggregator.onNewData((item) => seen.push(item.value));
    put(aggregator, A, 1, 1);
    off();
    put(aggregator, A, 2, 2);
    assertEquals(seen, [1]);
  });

  await t.step("rejects malformed items and options with typed errors", () => {
    const { aggregator } = setup();
    assertThrows(
      () =>
        aggregator.onDataReady({ callerId: "x" as unknown as CallerId, timestamp: 1, value: 1 }),
      TypeError,
      "CallerId",
    );
    assertThrows(() => put(aggregator, A, 1.5, 1), RangeError, "1.5");
    assertThrows(() => new RemoteDataAggregator({ timeoutMicros: 0 }), RangeError, "0");
    assertThrows(() => new RemoteDataAggregator({ interpolate: 3 as never }), TypeError);
    assertEquals(aggregator.callerIds, []);
  });
});

Deno.test("RemoteDataAggregator waiting and iteration", async (t) => {
  await t.step("resolves waitForNewData at once when there is new data", async () => {
    const { aggregator } = setup();
    put(aggregator, A, 1, 1);
    await aggregator.waitForNewData({ callerId: A });
    assertEquals(aggregator.hasNewData(A), true);
  });

  await t.step("resolves waitForNewData for a caller only when that caller sends", async () => {
    const { aggregator } = setup();
    let resolved = false;
    const wait = aggregator.waitForNewData({ callerId: A }).then(() => resolved = true);
    put(aggregator, B, 1, 1);
    await Promise.resolve();
    assertEquals(resolved, false);
    put(aggregator, A, 1, 2);
    await wait;
    assertEquals(resolved, true);
  });

  await t.step("rejects waitForNewData with the abort reason", async () => {
    const { aggregator } = setup();
    const controller = new AbortController();
    const wait = aggregator.waitForNewData({ signal: controller.signal });
    controller.abort(new Error("gave up"));
    await assertRejects(() => wait, Error, "gave up");
    await assertRejects(
      () => aggregator.waitForNewData({ signal: controller.signal }),
      Error,
      "gave up",
    );
  });

  await t.step("rejects pending waits with RemoteDataAggregatorStoppedError on stop", async () => {
    const { aggregator } = setup();
    put(aggregator, A, 1, 1);
    aggregator.getNewData(A);
    const forA = aggregator.waitForNewData({ callerId: A });
    const forAny = aggregator.waitForNewData();
    aggregator.stop(A);
    await assertRejects(() => forA, RemoteDataAggregatorStoppedError, "caller");
    aggregator.stop();
    await assertRejects(() => forAny, RemoteDataAggregatorStoppedError, "aggregator");
  });

  await t.step("yields new items oldest first per batch and ends on stop", async () => {
    const { aggregator } = setup();
    const iterator = aggregator[Symbol.asyncIterator]();
    put(aggregator, A, 20, 2);
    put(aggregator, A, 10, 1);
    assertEquals((await iterator.next()).value?.value, 1);
    assertEquals((await iterator.next()).value?.value, 2);
    const third = iterator.next();
    put(aggregator, A, 30, 3);
    assertEquals((await third).value?.value, 3);
    const end = iterator.next();
    aggregator.stop();
    assertEquals((await end).done, true);
  });

  await t.step("follows one caller with newData and throws the abort reason", async () => {
    const { aggregator } = setup();
    const controller = new AbortController();
    const iterator = aggregator.newData({ callerId: B, signal: controller.signal });
    put(aggregator, A, 1, 1);
    put(aggregator, B, 1, 2);
    const first = await iterator.next();
    assertEquals([short(first.value!.callerId), first.value!.value], ["B", 2]);
    const second = iterator.next();
    controller.abort(new Error("enough"));
    await assertRejects(() => second, Error, "enough");
    assertEquals(aggregator.hasNewData(A), true);
  });
});

Deno.test("RemoteDataAggregator properties", async (t) => {
  await t.step(
    "returns items in timestamp order (ties in arrival order) for any arrival order",
    () => {
      fc.assert(
        fc.property(
          fc.array(
            fc.record({ ts: fc.integer({ min: 0, max: 40 }), caller: fc.constantFrom(A, B, C) }),
            {
              maxLength: 60,
            },
          ),
          (arrivals) => {
            const aggregator = new RemoteDataAggregator<number>({ clock: { now: () => 0 } });
            arrivals.forEach(({ ts, caller }, i) => put(aggregator, caller, ts, i));
            for (const caller of [A, B, C]) {
              const expected = arrivals
                .map(({ ts, caller: c }, i) => ({ ts, c, i }))
                .filter(({ c }) => c === caller)
                .sort((x, y) => x.ts - y.ts || x.i - y.i);
              if (expected.length === 0) {
                assertEquals(aggregator.hasNewData(caller), false);
                continue;
              }
              for (const q of [-1, 0, 13, 20, 40]) {
                const hit = expected.filter(({ ts }) => ts <= q).at(-1);
                assertEquals(aggregator.getDataForTimestamp(q, caller)?.value, hit?.i);
              }
              const got = aggregator.getNewData(caller).reverse();
              assertEquals(
                got.map((item) => [item.timestamp, item.value]),
                expected.map((e) => [e.ts, e.i]),
              );
              assert(!aggregator.hasNewData(caller));
            }
          },
        ),
        { seed: 20240607, numRuns: 300 },
      );
    },
  );
});
