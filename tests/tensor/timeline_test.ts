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

  await t.step(
    "after a prune, indices count from the oldest entry left, and inserts keep order",
    () => {
      const timeline = timelineOf([10, 20, 30, 40, 50, 60, 70, 80]);
      assertEquals(timeline.pruneBefore(30), ["v10", "v20"]);
      assertEquals([timeline.length, timeline.timeAt(0), timeline.valueAt(0)], [6, 30, "v30"]);
      assertEquals([timeline.indexOf(50), timeline.indexAtOrBefore(35)], [2, 0]);
      timeline.insertAt(timeline.lowerBound(45), 45, "v45");
      timeline.insertAt(timeline.lowerBound(90), 90, "v90");
      timeline.setValueAt(0, "w30");
      assertEquals(timesOf(timeline), [30, 40, 45, 50, 60, 70, 80, 90]);
      assertEquals(timeline.values.slice(timeline.start, timeline.start + 2), ["w30", "v40"]);
    },
  );

  await t.step("compacts once more entries were pruned than are left, keeping every entry", () => {
    const timeline = timelineOf([10, 20, 30, 40, 50]);
    timeline.pruneBefore(20);
    assertEquals(timeline.start, 1);
    timeline.pruneBefore(40);
    assertEquals([timeline.start, timeline.values.length], [0, 2]);
    assertEquals(timesOf(timeline), [40, 50]);
    assertEquals(timeline.pruneBefore(100), ["v40", "v50"]);
    assertEquals(timeline.length, 0);
  });
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
