import { assert, assertEquals, assertRejects, assertThrows } from "../_assert.ts";
import { FakeClock } from "../../rpc/fake_clock.ts";
import { ManualScheduler } from "../../rpc/scheduler.ts";
import {
  type ErrorRecord,
  ErrorWatcher,
  ErrorWatcherTimeoutError,
} from "../../runtime/error_watcher.ts";

class SensorError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "SensorError";
  }
}

/** Records in a comparable form: the error itself, its source and time. */
function summary(records: ErrorRecord[]): [unknown, string | undefined, number][] {
  return records.map((record) => [record.error, record.source, record.time]);
}

/** Whether `promise` has settled after pending reactions ran. */
async function isSettled(promise: Promise<unknown>): Promise<boolean> {
  let settled = false;
  promise.then(() => settled = true, () => settled = true);
  for (let i = 0; i < 5; i++) await Promise.resolve();
  return settled;
}

Deno.test("ErrorWatcher: recording", async (t) => {
  await t.step("starts with no error", () => {
    const watcher = new ErrorWatcher();
    assertEquals(
      [watcher.hasError, watcher.firstError, watcher.errors, watcher.droppedCount],
      [false, undefined, [], 0],
    );
    assertEquals(watcher.reportedCount, 0);
  });

  await t.step("lists every error in order with its source and the clock's time", () => {
    const clock = new FakeClock({ startMicros: 1_000 });
    const watcher = new ErrorWatcher({ clock });
    const a = new Error("a");
    const b = new TypeError("b");
    watcher.report(a, "reader");
    clock.advance(250);
    watcher.report(b);
    assertEquals(summary(watcher.errors), [[a, "reader", 1_000], [b, undefined, 1_250]]);
    assertEquals([watcher.hasError, watcher.firstError?.error === a], [true, true]);
  });

  await t.step("keeps the first error first whatever comes after", () => {
    const watcher = new ErrorWatcher();
    const first = new SensorError("first");
    watcher.report(first, "one");
    for (let i = 0; i < 10; i++) watcher.report(new Error(`later ${i}`), "other");
    assertEquals([watcher.firstError?.error === first, watcher.firstError?.source], [true, "one"]);
    assertEquals(watcher.errors.length, 11);
  });

  await t.step("records the same error object once and says so", () => {
    const watcher = new ErrorWatcher();
    const error = new Error("twice");
    assertEquals([watcher.report(error, "inner"), watcher.report(error, "outer")], [true, false]);
    assertEquals(summary(watcher.errors).map(([e, s]) => [e === error, s]), [[true, "inner"]]);
  });

  await t.step("records equal primitive values each time", () => {
    const watcher = new ErrorWatcher();
    assertEquals([watcher.report("boom"), watcher.report("boom")], [true, true]);
    assertEquals(watcher.errors.map((record) => record.error), ["boom", "boom"]);
  });

  await t.step("records undefined and null as errors", () => {
    const watcher = new ErrorWatcher();
    watcher.report(undefined, "a");
    watcher.report(null, "b");
    assertEquals(watcher.hasError, true);
    assertEquals(watcher.errors.map((r) => [r.error, r.source]), [[undefined, "a"], [null, "b"]]);
  });

  await t.step("keeps the first maxErrors and counts the rest", () => {
    const watcher = new ErrorWatcher({ maxErrors: 3 });
    const errors = Array.from({ length: 10 }, (_, i) => new Error(`e${i}`));
    for (const error of errors) watcher.report(error);
    assertEquals(watcher.errors.map((r) => r.error), errors.slice(0, 3));
    assertEquals([watcher.droppedCount, watcher.reportedCount], [7, 10]);
  });

  await t.step("keeps 1,000 errors by default", () => {
    const watcher = new ErrorWatcher();
    for (let i = 0; i < 1_005; i++) watcher.report(new Error(`e${i}`));
    assertEquals([watcher.errors.length, watcher.droppedCount], [1_000, 5]);
  });

  await t.step("does not count a dropped error reported again", () => {
    const watcher = new ErrorWatcher({ maxErrors: 1 });
    const dropped = new Error("dropped");
    watcher.report(new Error("kept"));
    assertEquals([watcher.report(dropped), watcher.report(dropped)], [true, false]);
    assertEquals(watcher.droppedCount, 1);
  });

  await t.step("hands out copies of the list and frozen records", () => {
    const watcher = new ErrorWatcher();
    watcher.report(new Error("x"), "s");
    const errors = watcher.errors;
    errors.pop();
    assertEquals([watcher.errors.length, Object.isFrozen(watcher.errors[0])], [1, true]);
  });

  await t.step("describes a source that is not a string instead of throwing", () => {
    const watcher = new ErrorWatcher();
    const error = new Error("kept anyway");
    assertEquals(watcher.report(error, 42 as never), true);
    assertEquals([watcher.firstError?.error === error, watcher.firstError?.source], [true, "42"]);
  });

  await t.step("still records an error when the clock throws", () => {
    const clock = {
      now(): number {
        throw new Error("clock broken");
      },
    };
    const watcher = new ErrorWatcher({ clock });
    const error = new Error("real failure");
    watcher.report(error);
    const time = watcher.firstError?.time ?? 0;
    assertEquals([watcher.firstError?.error === error, Number.isInteger(time), time > 0], [
      true,
      true,
      true,
    ]);
  });

  await t.step("rejects a bad maxErrors and a clock without now", () => {
    assertThrows(() => new ErrorWatcher({ maxErrors: 0 }), RangeError, "'maxErrors'");
    assertThrows(() => new ErrorWatcher({ maxErrors: 1.5 }), RangeError, "current value is 1.5");
    assertThrows(() => new ErrorWatcher({ clock: {} as never }), TypeError, "'clock'");
  });
});

Deno.test("ErrorWatcher: checkForException", async (t) => {
  await t.step("returns when there is no error", () => {
    const watcher = new ErrorWatcher();
    assertEquals(watcher.checkForException(), undefined);
  });

  await t.step("throws the original first error with its class and message", () => {
    const watcher = new ErrorWatcher();
    const first = new SensorError("sensor 3 silent");
    watcher.report(first, "reader");
    watcher.report(new Error("second"), "writer");
    const thrown = assertThrows(() => watcher.checkForException(), SensorError, "sensor 3 silent");
    assertEquals([thrown === first, thrown.name], [true, "SensorError"]);
  });

  await t.step("throws the same first error on every call", () => {
    const watcher = new ErrorWatcher();
    const first = new Error("again");
    watcher.report(first);
    const a = assertThrows(() => watcher.checkForException(), Error);
    const b = assertThrows(() => watcher.checkForException(), Error);
    assertEquals([a === first, b === first, watcher.errors.length], [true, true, 1]);
  });

  await t.step("throws a first error that is not an Error as it is", () => {
    const watcher = new ErrorWatcher();
    watcher.report("just a string");
    let thrown: unknown;
    try {
      watcher.checkForException();
    } catch (error) {
      thrown = error;
    }
    assertEquals(thrown, "just a string");
  });
});

Deno.test("ErrorWatcher: untilException", async (t) => {
  await t.step("rejects with the first error when one is reported later", async () => {
    const watcher = new ErrorWatcher();
    const waiting = watcher.untilException();
    assertEquals(await isSettled(waiting), false);
    const first = new SensorError("late");
    watcher.report(first);
    watcher.report(new Error("later still"));
    const thrown = await assertRejects(() => waiting, SensorError, "late");
    assertEquals(thrown === first, true);
  });

  await t.step("rejects at once with the first error when there is one", async () => {
    const watcher = new ErrorWatcher();
    const first = new Error("already");
    watcher.report(first);
    watcher.report(new Error("second"));
    const thrown = await assertRejects(() => watcher.untilException(), Error, "already");
    assertEquals(thrown === first, true);
  });

  await t.step("wakes every waiter with the same first error", async () => {
    const watcher = new ErrorWatcher();
    const waiting = [watcher.untilException(), watcher.untilException({ timeoutMs: 10_000 })];
    const first = new Error("for all");
    watcher.report(first);
    const results = await Promise.allSettled(waiting);
    assertEquals(
      results.map((r) => r.status === "rejected" && r.reason === first),
      [true, true],
    );
  });

  await t.step("rejects with the signal's reason on abort and stops waiting", async () => {
    const watcher = new ErrorWatcher();
    const controller = new AbortController();
    const waiting = watcher.untilException({ signal: controller.signal });
    controller.abort(new Error("shutting down"));
    await assertRejects(() => waiting, Error, "shutting down");
    watcher.report(new Error("after the abort"));
    assertEquals(watcher.errors.length, 1);
  });

  await t.step("rejects at once with an already aborted signal and no error", async () => {
    const watcher = new ErrorWatcher();
    const signal = AbortSignal.abort(new Error("too late"));
    await assertRejects(() => watcher.untilException({ signal }), Error, "too late");
  });

  await t.step("prefers a reported error to an already aborted signal", async () => {
    const watcher = new ErrorWatcher();
    watcher.report(new SensorError("the real one"));
    const signal = AbortSignal.abort(new Error("aborted"));
    await assertRejects(() => watcher.untilException({ signal }), SensorError, "the real one");
  });

  await t.step("rejects with ErrorWatcherTimeoutError when timeoutMs passes", async () => {
    const watcher = new ErrorWatcher();
    const scheduler = new ManualScheduler();
    const waiting = watcher.untilException({ timeoutMs: 500, scheduler });
    scheduler.advance(499);
    assertEquals(await isSettled(waiting), false);
    scheduler.advance(1);
    const thrown = await assertRejects(() => waiting, ErrorWatcherTimeoutError, "within 500 ms");
    assertEquals([thrown.timeoutMs, thrown.name, scheduler.pending], [
      500,
      "ErrorWatcherTimeoutError",
      0,
    ]);
  });

  await t.step("clears its timer when an error comes first", async () => {
    const watcher = new ErrorWatcher();
    const scheduler = new ManualScheduler();
    const waiting = watcher.untilException({ timeoutMs: 500, scheduler });
    assertEquals(scheduler.pending, 1);
    watcher.report(new Error("in time"));
    await assertRejects(() => waiting, Error, "in time");
    assertEquals(scheduler.pending, 0);
  });

  await t.step("clears its timer when the signal aborts first", async () => {
    const watcher = new ErrorWatcher();
    const scheduler = new ManualScheduler();
    const controller = new AbortController();
    const waiting = watcher.untilException({
      timeoutMs: 500,
      scheduler,
      signal: controller.signal,
    });
    controller.abort(new Error("stop"));
    await assertRejects(() => waiting, Error, "stop");
    assertEquals(scheduler.pending, 0);
  });

  await t.step("sets no timer when there is already an error", async () => {
    const watcher = new ErrorWatcher();
    const scheduler = new ManualScheduler();
    watcher.report(new Error("there"));
    await assertRejects(() => watcher.untilException({ timeoutMs: 5, scheduler }), Error, "there");
    assertEquals(scheduler.delays, []);
  });

  await t.step("rejects bad options synchronously", () => {
    const watcher = new ErrorWatcher();
    assertThrows(() => watcher.untilException({ timeoutMs: -1 }), RangeError, "'timeoutMs'");
    assertThrows(() => watcher.untilException({ timeoutMs: NaN }), RangeError, "'timeoutMs'");
    assertThrows(() => watcher.untilException({ signal: {} as never }), TypeError, "'signal'");
    assertThrows(
      () => watcher.untilException({ scheduler: {} as never }),
      TypeError,
      "'scheduler'",
    );
  });
});

Deno.test("ErrorWatcher: listeners", async (t) => {
  await t.step("calls listeners synchronously, in the order they were added", () => {
    const clock = new FakeClock({ startMicros: 7 });
    const watcher = new ErrorWatcher({ clock });
    const calls: string[] = [];
    const error = new Error("x");
    watcher.addListener((record) => calls.push(`a:${record.source}:${record.time}`));
    watcher.addListener((record) => calls.push(`b:${record.error === error}`));
    watcher.report(error, "src");
    assertEquals(calls, ["a:src:7", "b:true"]);
  });

  await t.step("gives listeners the same record that is listed", () => {
    const watcher = new ErrorWatcher();
    const heard: ErrorRecord[] = [];
    watcher.addListener((record) => heard.push(record));
    watcher.report(new Error("same"));
    assertEquals(heard[0] === watcher.errors[0], true);
  });

  await t.step("calls listeners for dropped errors too", () => {
    const watcher = new ErrorWatcher({ maxErrors: 1 });
    const heard: unknown[] = [];
    watcher.addListener((record) => heard.push(record.error));
    watcher.report("kept");
    watcher.report("dropped");
    assertEquals([heard, watcher.droppedCount], [["kept", "dropped"], 1]);
  });

  await t.step("does not call listeners for a duplicate report", () => {
    const watcher = new ErrorWatcher();
    let calls = 0;
    watcher.addListener(() => calls++);
    const error = new Error("once");
    watcher.report(error);
    watcher.report(error);
    assertEquals(calls, 1);
  });

  await t.step(
    "stops calling a listener once unsubscribed; unsubscribing twice is harmless",
    () => {
      const watcher = new ErrorWatcher();
      const heard: unknown[] = [];
      const unsubscribe = watcher.addListener((record) => heard.push(record.error));
      watcher.report("one");
      unsubscribe();
      unsubscribe();
      watcher.report("two");
      assertEquals(heard, ["one"]);
    },
  );

  await t.step("calls a function added twice twice, and removes each subscription alone", () => {
    const watcher = new ErrorWatcher();
    let calls = 0;
    const listener = () => calls++;
    const first = watcher.addListener(listener);
    watcher.addListener(listener);
    watcher.report("a");
    first();
    watcher.report("b");
    assertEquals(calls, 3);
  });

  await t.step("skips a listener removed by an earlier one during delivery", () => {
    const watcher = new ErrorWatcher();
    const calls: string[] = [];
    let removeSecond = () => {};
    watcher.addListener(() => {
      calls.push("first");
      removeSecond();
    });
    removeSecond = watcher.addListener(() => calls.push("second"));
    watcher.report("x");
    assertEquals(calls, ["first"]);
  });

  await t.step("calls a listener added during delivery from the next error on", () => {
    const watcher = new ErrorWatcher();
    const calls: unknown[] = [];
    let added = false;
    watcher.addListener(() => {
      if (added) return;
      added = true;
      watcher.addListener((record) => calls.push(record.error));
    });
    watcher.report("first");
    watcher.report("second");
    assertEquals(calls, ["second"]);
  });

  await t.step("records a listener's error and still calls the later listeners", () => {
    const watcher = new ErrorWatcher();
    const original = new Error("original");
    const listenerError = new RangeError("listener broke");
    const calls: string[] = [];
    watcher.addListener(() => {
      throw listenerError;
    });
    watcher.addListener(() => calls.push("after"));
    assertEquals(watcher.report(original, "worker"), true);
    assertEquals(calls, ["after"]);
    assertEquals(summary(watcher.errors).map(([e, s]) => [e, s]), [
      [original, "worker"],
      [listenerError, "ErrorWatcher listener"],
    ]);
  });

  await t.step("does not loop when a listener throws on every call", () => {
    const watcher = new ErrorWatcher();
    let calls = 0;
    watcher.addListener(() => {
      calls++;
      throw new Error(`listener failure ${calls}`);
    });
    watcher.report(new Error("trigger"));
    assertEquals([calls, watcher.errors.length], [1, 2]);
    assertEquals(String(watcher.errors[1].error), "Error: listener failure 1");
  });

  await t.step("records a listener that re-throws the error it was given only once", () => {
    const watcher = new ErrorWatcher();
    watcher.addListener((record) => {
      throw record.error;
    });
    const error = new Error("re-thrown");
    watcher.report(error);
    assertEquals(watcher.errors.length, 1);
  });

  await t.step("keeps the reported error first even when a listener throws", () => {
    const watcher = new ErrorWatcher();
    const original = new SensorError("first for sure");
    watcher.addListener(() => {
      throw new Error("listener");
    });
    watcher.report(original);
    assertThrows(() => watcher.checkForException(), SensorError, "first for sure");
  });

  await t.step("delivers an error reported from inside a listener", () => {
    const watcher = new ErrorWatcher();
    const heard: unknown[] = [];
    watcher.addListener((record) => {
      heard.push(record.error);
      if (record.error === "outer") watcher.report("inner", "listener");
    });
    watcher.report("outer");
    assertEquals([heard, watcher.errors.map((r) => r.error)], [["outer", "inner"], [
      "outer",
      "inner",
    ]]);
  });

  await t.step("rejects a listener that is not a function", () => {
    const watcher = new ErrorWatcher();
    assertThrows(() => watcher.addListener("no" as never), TypeError, "'listener'");
  });
});

Deno.test("ErrorWatcher: watch", async (t) => {
  await t.step("reports a rejection with its source", async () => {
    const watcher = new ErrorWatcher();
    const error = new SensorError("upload failed");
    await watcher.watch(Promise.reject(error), "uploader");
    assertEquals([watcher.firstError?.error === error, watcher.firstError?.source], [
      true,
      "uploader",
    ]);
  });

  await t.step("reports nothing for a promise that resolves", async () => {
    const watcher = new ErrorWatcher();
    const done = watcher.watch(Promise.resolve(42), "fine");
    assertEquals(await done, undefined);
    assertEquals(watcher.hasError, false);
  });

  await t.step("never rejects itself, and wakes untilException", async () => {
    const watcher = new ErrorWatcher();
    const waiting = watcher.untilException();
    let reject!: (error: unknown) => void;
    const work = new Promise((_, r) => reject = r);
    const watched = watcher.watch(work, "background");
    const error = new Error("background failed");
    reject(error);
    assertEquals(await watched, undefined);
    const thrown = await assertRejects(() => waiting, Error, "background failed");
    assert(thrown === error);
  });

  await t.step("accepts any thenable", async () => {
    const watcher = new ErrorWatcher();
    const thenable: PromiseLike<never> = {
      then(_onFulfilled, onRejected) {
        onRejected?.("thenable failed");
        return this as never;
      },
    };
    await watcher.watch(thenable, "custom");
    assertEquals(watcher.errors.map((r) => [r.error, r.source]), [["thenable failed", "custom"]]);
  });

  await t.step("rejects a value that is not a promise", () => {
    const watcher = new ErrorWatcher();
    assertThrows(() => watcher.watch(42 as never), TypeError, "'promise' must have a then method");
  });
});
