import { assertEquals } from "../_assert.ts";
import { DataWindow, Timeline } from "../../tensor/_timeline.ts";

function timelineOf(times: number[]): Timeline<string> {
  const timeline = new Timeline<string>();
  for (const ts of times) timeline.insertAt(timeline.lowerBound(ts), ts, `v${ts}`);
  return timeline;
}

function timesOf(timeline: Timeline<string>): number[] {
  return Array.from({ length: timeline.length }, (_, i) => timeline.timeAt(i));
}

Deno.test("Timeline", async (t) => {
  await t.step("keeps entries in timestamp order whatever the insertion order", () => {
    assertEquals(timesOf(timelineOf([30, 10, 20, 40, 0])), [0, 10, 20, 30, 40]);
  });

  await t.step("finds exact timestamps and reports absent ones as -1", () => {
    const timeline = timelineOf([10, 20, 30]);
    assertEquals([timeline.indexOf(20), timeline.indexOf(25), timeline.indexOf(5)], [1, -1, -1]);
  });

  await t.step("finds the newest entry at or before a time", () => {
    const timeline = timelineOf([10, 20, 30]);
    assertEquals(
      [5, 10, 15, 30, 99].map((ts) => timeline.indexAtOrBefore(ts)),
      [-1, 0, 0, 2, 2],
    );
  });

  await t.step(
    "prunes entries strictly older than the cutoff and returns them oldest first",
    () => {
      const timeline = timelineOf([10, 20, 30]);
      assertEquals(timeline.pruneBefore(20), ["v10"]);
      assertEquals(timesOf(timeline), [20, 30]);
      assertEquals(timeline.pruneBefore(5), []);
    },
  );
});

Deno.test("DataWindow", async (t) => {
  await t.step("treats nothing as stale before any data", () => {
    assertEquals(new DataWindow(100).isStale(-1e15), false);
  });

  await t.step("moves its reference only forward", () => {
    const window = new DataWindow(100);
    assertEquals(window.observe(1_000), 900);
    assertEquals(window.observe(500), 900);
    assertEquals(window.reference, 1_000);
  });

  await t.step("keeps an entry exactly at the cutoff and rejects one just older", () => {
    const window = new DataWindow(100);
    window.observe(1_000);
    assertEquals([window.isStale(900), window.isStale(899)], [false, true]);
  });
});
