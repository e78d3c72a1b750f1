import assert from "node:assert/strict";
import {
  AsyncQueue,
  deadline,
  DeadlineError,
  delay,
  QueueClosedError,
  QueueOverflowError,
  retry,
  RetryError,
} from "../../rpc/_async.ts";
import {
  ManualScheduler,
  MAX_DELAY_MS,
  type Scheduler,
  systemScheduler,
} from "../../rpc/scheduler.ts";
import { flush, observe } from "../_promises.ts";

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

type Listener = EventListenerOrEventListenerObject;

/**
 * An abort controller whose signal counts its abort listeners that were added
 * and not removed (listeners that fire with `once` are not subtracted, so use
 * it only where the signal is not aborted).
 */
function countedController(): { controller: AbortController; listeners: () => number } {
  const controller = new AbortController();
  const signal = controller.signal;
  const live = new Set<Listener>();
  const add = signal.addEventListener.bind(signal);
  const remove = signal.removeEventListener.bind(signal);
  Object.assign(signal, {
    addEventListener(type: string, listener: Listener, options?: AddEventListenerOptions) {
      if (type === "abort") live.add(listener);
      add(type, listener, options);
    },
    removeEventListener(type: string, listener: Listener, options?: EventListenerOptions) {
      if (type === "abort") live.delete(listener);
      remove(type, listener, options);
    },
  });
  return { controller, listeners: () => live.size };
}

/** Takes every queued item without waiting for more. */
async function takeQueued<T>(queue: AsyncQueue<T>): Promise<T[]> {
  const items: T[] = [];
  for (let n = queue.size; n > 0; n--) {
    const result = await queue.shift();
    assert.equal(result.done, false);
    items.push(result.value as T);
  }
  return items;
}

/** A retry attempt that always fails with `failure <attempt>`. */
function alwaysFails(calls: number[]): (attempt: number) => never {
  return (attempt) => {
    calls.push(attempt);
    throw new Error(`failure ${attempt}`);
  };
}

/** Drives a retry that keeps failing: fires each wait as soon as it is set. */
async function fireWaits(scheduler: ManualScheduler, count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    await scheduler.whenPending();
    scheduler.advanceToNext();
  }
}

// ---------------------------------------------------------------------------
// Schedulers
// ---------------------------------------------------------------------------

Deno.test("systemScheduler", async (t) => {
  await t.step("fires a zero-delay timer through the global timers", async () => {
    let fired = false;
    await new Promise<void>((resolve) => {
      systemScheduler.setTimeout(() => {
        fired = true;
        resolve();
      }, 0);
    });
    assert.equal(fired, true);
  });

  await t.step("never fires a timer that was cleared", async () => {
    const fired: string[] = [];
    const cleared = systemScheduler.setTimeout(() => fired.push("cleared"), 0);
    systemScheduler.clearTimeout(cleared);
    await new Promise<void>((resolve) => systemScheduler.setTimeout(resolve, 0));
    assert.deepEqual(fired, []);
  });
});

Deno.test("ManualScheduler", async (t) => {
  await t.step("starts at time zero with no pending timers", () => {
    const scheduler = new ManualScheduler();
    assert.deepEqual(
      [scheduler.now, scheduler.pending, scheduler.nextIn, scheduler.delays],
      [0, 0, undefined, []],
    );
  });

  await t.step("fires nothing before a timer's due time", () => {
    const scheduler = new ManualScheduler();
    const fired: number[] = [];
    scheduler.setTimeout(() => fired.push(1), 100);
    assert.equal(scheduler.advance(99), 0);
    assert.deepEqual([fired, scheduler.now, scheduler.pending, scheduler.nextIn], [[], 99, 1, 1]);
  });

  await t.step("fires due timers by due time, and by the order they were set on ties", () => {
    const scheduler = new ManualScheduler();
    const fired: string[] = [];
    scheduler.setTimeout(() => fired.push("c@30"), 30);
    scheduler.setTimeout(() => fired.push("a@10"), 10);
    scheduler.setTimeout(() => fired.push("b1@20"), 20);
    scheduler.setTimeout(() => fired.push("b2@20"), 20);
    scheduler.setTimeout(() => fired.push("d@40"), 40);
    assert.equal(scheduler.advance(30), 4);
    assert.deepEqual(fired, ["a@10", "b1@20", "b2@20", "c@30"]);
    assert.equal(scheduler.pending, 1);
  });

  await t.step("runs each callback at its due time and ends at the target time", () => {
    const scheduler = new ManualScheduler();
    const times: number[] = [];
    scheduler.setTimeout(() => times.push(scheduler.now), 5);
    scheduler.setTimeout(() => times.push(scheduler.now), 12);
    scheduler.advance(50);
    assert.deepEqual([times, scheduler.now], [[5, 12], 50]);
  });

  await t.step("fires timers that callbacks set while advancing when they fall due in time", () => {
    const scheduler = new ManualScheduler();
    const fired: number[] = [];
    scheduler.setTimeout(() => {
      fired.push(scheduler.now);
      scheduler.setTimeout(() => {
        fired.push(scheduler.now);
        scheduler.setTimeout(() => fired.push(scheduler.now), 10);
      }, 10);
    }, 10);
    assert.equal(scheduler.advance(25), 2);
    assert.deepEqual([fired, scheduler.pending, scheduler.nextIn], [[10, 20], 1, 5]);
  });

  await t.step("never fires a cleared timer and ignores unknown handles", () => {
    const scheduler = new ManualScheduler();
    const fired: string[] = [];
    const handle = scheduler.setTimeout(() => fired.push("cleared"), 10);
    scheduler.setTimeout(() => fired.push("kept"), 10);
    scheduler.clearTimeout(handle);
    scheduler.clearTimeout(handle);
    scheduler.clearTimeout(12345);
    scheduler.clearTimeout("not a handle");
    assert.equal(scheduler.pending, 1);
    scheduler.advance(10);
    assert.deepEqual(fired, ["kept"]);
  });

  await t.step("treats negative and NaN delays as zero and records every delay", () => {
    const scheduler = new ManualScheduler();
    scheduler.setTimeout(() => {}, -5);
    scheduler.setTimeout(() => {}, NaN);
    scheduler.setTimeout(() => {}, 7.5);
    assert.deepEqual(scheduler.delays, [0, 0, 7.5]);
    assert.equal(scheduler.advance(0), 2);
  });

  await t.step("advances to the earliest timer and fires only the timers due then", () => {
    const scheduler = new ManualScheduler();
    const fired: string[] = [];
    scheduler.advance(3);
    scheduler.setTimeout(() => fired.push("late"), 20);
    scheduler.setTimeout(() => fired.push("first"), 7);
    scheduler.setTimeout(() => fired.push("second"), 7);
    assert.equal(scheduler.advanceToNext(), 2);
    assert.deepEqual([fired, scheduler.now], [["first", "second"], 10]);
    assert.equal(scheduler.advanceToNext(), 1);
    assert.equal(scheduler.advanceToNext(), 0);
    assert.equal(scheduler.now, 23);
  });

  await t.step("resolves whenPending once enough timers are pending", async () => {
    const scheduler = new ManualScheduler();
    const two = observe(scheduler.whenPending(2));
    scheduler.setTimeout(() => {}, 1);
    await flush();
    assert.equal(two.status, "pending");
    scheduler.setTimeout(() => {}, 1);
    await flush();
    assert.equal(two.status, "fulfilled");
    const already = observe(scheduler.whenPending(1));
    await flush();
    assert.equal(already.status, "fulfilled");
  });

  await t.step("leaves time at a throwing callback's due time and keeps later timers", () => {
    const scheduler = new ManualScheduler();
    scheduler.setTimeout(() => {
      throw new Error("callback failed");
    }, 4);
    scheduler.setTimeout(() => {}, 8);
    assert.throws(() => scheduler.advance(10), { message: "callback failed" });
    assert.deepEqual([scheduler.now, scheduler.pending], [4, 1]);
  });

  await t.step("rejects a negative or non-finite advance, a bad count and a non-function", () => {
    const scheduler = new ManualScheduler();
    assert.throws(() => scheduler.advance(-1), {
      name: "RangeError",
      message:
        "Cannot advance the scheduler as 'ms' must be a finite number >= 0: current value is -1",
    });
    assert.throws(() => scheduler.advance(Infinity), RangeError);
    assert.throws(() => scheduler.whenPending(0), {
      name: "RangeError",
      message: "Cannot wait for timers as 'count' must be an integer >= 1: current value is 0",
    });
    assert.throws(
      () => scheduler.setTimeout(undefined as unknown as () => void, 1),
      {
        name: "TypeError",
        message: "Cannot set a timer as 'callback' must be a function: current value is undefined",
      },
    );
  });
});

// ---------------------------------------------------------------------------
// delay
// ---------------------------------------------------------------------------

Deno.test("delay", async (t) => {
  await t.step("resolves when the scheduler reaches the delay, not before", async () => {
    const scheduler = new ManualScheduler();
    const waiting = observe(delay(250, { scheduler }));
    assert.deepEqual(scheduler.delays, [250]);
    scheduler.advance(249);
    await flush();
    assert.equal(waiting.status, "pending");
    scheduler.advance(1);
    await flush();
    assert.equal(waiting.status, "fulfilled");
    assert.equal(scheduler.pending, 0);
  });

  await t.step("resolves through the system scheduler by default", async () => {
    assert.equal(await delay(0), undefined);
  });

  await t.step("rejects with the reason and sets no timer when already aborted", async () => {
    const scheduler = new ManualScheduler();
    const reason = new Error("already stopped");
    await assert.rejects(
      delay(100, { signal: AbortSignal.abort(reason), scheduler }),
      (error) => error === reason,
    );
    assert.deepEqual([scheduler.pending, scheduler.delays], [0, []]);
  });

  await t.step(
    "rejects with the reason and clears its timer when aborted while waiting",
    async () => {
      const scheduler = new ManualScheduler();
      const controller = new AbortController();
      const waiting = delay(100, { signal: controller.signal, scheduler });
      assert.equal(scheduler.pending, 1);
      const reason = new Error("stopped");
      controller.abort(reason);
      await assert.rejects(waiting, (error) => error === reason);
      assert.equal(scheduler.pending, 0);
    },
  );

  await t.step("removes its abort listener when it resolves", async () => {
    const scheduler = new ManualScheduler();
    const { controller, listeners } = countedController();
    const waiting = delay(10, { signal: controller.signal, scheduler });
    assert.equal(listeners(), 1);
    scheduler.advance(10);
    await waiting;
    assert.equal(listeners(), 0);
  });

  await t.step("rejects a delay outside 0..2^31-1 ms with a RangeError naming the value", () => {
    assert.throws(() => delay(-1), {
      name: "RangeError",
      message: "Cannot delay as 'ms' must be a number in 0..2147483647: current value is -1",
    });
    assert.throws(() => delay(MAX_DELAY_MS + 1), RangeError);
    assert.throws(() => delay(NaN), RangeError);
  });

  await t.step("rejects a signal or scheduler of the wrong kind with a TypeError", () => {
    assert.throws(() => delay(1, { signal: {} as AbortSignal }), {
      name: "TypeError",
      message: "Cannot delay as 'signal' must be an AbortSignal: current value is [object Object]",
    });
    assert.throws(() => delay(1, { scheduler: {} as Scheduler }), {
      name: "TypeError",
      message:
        "Cannot delay as 'scheduler' must have setTimeout and clearTimeout methods: current value is [object Object]",
    });
  });
});

// ---------------------------------------------------------------------------
// deadline
// ---------------------------------------------------------------------------

Deno.test("deadline", async (t) => {
  await t.step("resolves with the value and clears its timer when the promise wins", async () => {
    const scheduler = new ManualScheduler();
    const { controller, listeners } = countedController();
    const result = deadline(Promise.resolve(42), 100, { signal: controller.signal, scheduler });
    assert.deepEqual([scheduler.pending, listeners()], [1, 1]);
    assert.equal(await result, 42);
    assert.deepEqual([scheduler.pending, listeners()], [0, 0]);
  });

  await t.step(
    "rejects with the promise's error and clears its timer when it rejects first",
    async () => {
      const scheduler = new ManualScheduler();
      const failure = new Error("work failed");
      await assert.rejects(
        deadline(Promise.reject(failure), 100, { scheduler }),
        (error) => error === failure,
      );
      assert.equal(scheduler.pending, 0);
    },
  );

  await t.step("rejects with a DeadlineError carrying ms when time runs out", async () => {
    const scheduler = new ManualScheduler();
    const { controller, listeners } = countedController();
    const result = observe(
      deadline(new Promise<never>(() => {}), 100, { signal: controller.signal, scheduler }),
    );
    scheduler.advance(99);
    await flush();
    assert.equal(result.status, "pending");
    scheduler.advance(1);
    await flush();
    assert.equal(result.status, "rejected");
    assert.ok(result.reason instanceof DeadlineError);
    assert.equal(result.reason.ms, 100);
    assert.equal(result.reason.name, "DeadlineError");
    assert.equal(
      result.reason.message,
      "Cannot wait any longer as the promise had to settle within 100 ms: it did not",
    );
    assert.equal(listeners(), 0);
  });

  await t.step("ignores the promise settling after the deadline passed", async () => {
    const scheduler = new ManualScheduler();
    let rejectLate!: (error: Error) => void;
    const late = new Promise<number>((_, reject) => rejectLate = reject);
    const result = deadline(late, 5, { scheduler });
    scheduler.advance(5);
    await assert.rejects(result, DeadlineError);
    rejectLate(new Error("too late"));
    await flush();
  });

  await t.step("rejects with the reason and clears its timer when aborted first", async () => {
    const scheduler = new ManualScheduler();
    const controller = new AbortController();
    const result = deadline(new Promise<never>(() => {}), 100, {
      signal: controller.signal,
      scheduler,
    });
    const reason = new Error("cancelled");
    controller.abort(reason);
    await assert.rejects(result, (error) => error === reason);
    assert.equal(scheduler.pending, 0);
  });

  await t.step("rejects with the reason and sets no timer when already aborted", async () => {
    const scheduler = new ManualScheduler();
    const reason = new Error("cancelled before");
    await assert.rejects(
      deadline(Promise.resolve(1), 100, { signal: AbortSignal.abort(reason), scheduler }),
      (error) => error === reason,
    );
    assert.deepEqual([scheduler.pending, scheduler.delays], [0, []]);
  });

  await t.step("rejects a deadline out of range with a RangeError naming the value", () => {
    assert.throws(() => deadline(Promise.resolve(1), -5), {
      name: "RangeError",
      message:
        "Cannot wait for a deadline as 'ms' must be a number in 0..2147483647: current value is -5",
    });
  });
});

// ---------------------------------------------------------------------------
// retry
// ---------------------------------------------------------------------------

Deno.test("retry", async (t) => {
  await t.step("returns the first attempt's value without waiting", async () => {
    const scheduler = new ManualScheduler();
    assert.equal(await retry(() => "ok", { scheduler }), "ok");
    assert.deepEqual(scheduler.delays, []);
  });

  await t.step("passes each attempt its number and the signal", async () => {
    const scheduler = new ManualScheduler();
    const { signal } = new AbortController();
    const seen: [number, AbortSignal | undefined][] = [];
    const result = retry((attempt, given) => {
      seen.push([attempt, given]);
      if (attempt < 3) return Promise.reject(new Error("again"));
      return Promise.resolve("done");
    }, { signal, scheduler, random: () => 0 });
    await fireWaits(scheduler, 2);
    assert.equal(await result, "done");
    assert.deepEqual(seen, [[1, signal], [2, signal], [3, signal]]);
  });

  await t.step("waits r*500, r*1000 and r*2000 ms with full jitter and random() = r", async () => {
    const scheduler = new ManualScheduler();
    const r = 0.3;
    const calls: number[] = [];
    const result = retry(alwaysFails(calls), { maxAttempts: 4, random: () => r, scheduler });
    const outcome = observe(result);
    await fireWaits(scheduler, 3);
    await flush();
    assert.equal(outcome.status, "rejected");
    assert.deepEqual(scheduler.delays, [r * 500, r * 1000, r * 2000]);
    assert.deepEqual(calls, [1, 2, 3, 4]);
  });

  await t.step("draws a fresh random number for every wait", async () => {
    const scheduler = new ManualScheduler();
    const draws = [0.5, 0, 1];
    const result = observe(
      retry(alwaysFails([]), { maxAttempts: 4, random: () => draws.shift()!, scheduler }),
    );
    await fireWaits(scheduler, 3);
    await flush();
    assert.equal(result.status, "rejected");
    assert.deepEqual(scheduler.delays, [250, 0, 2000]);
  });

  await t.step("caps every wait at maxDelayMs", async () => {
    const scheduler = new ManualScheduler();
    const result = observe(
      retry(alwaysFails([]), {
        maxAttempts: 7,
        maxDelayMs: 3_000,
        random: () => 1,
        scheduler,
      }),
    );
    await fireWaits(scheduler, 6);
    await flush();
    assert.equal(result.status, "rejected");
    assert.deepEqual(scheduler.delays, [500, 1000, 2000, 3000, 3000, 3000]);
  });

  await t.step("waits exactly the exponential backoff when jitter is none", async () => {
    const scheduler = new ManualScheduler();
    const result = observe(
      retry(alwaysFails([]), {
        maxAttempts: 5,
        minDelayMs: 100,
        maxDelayMs: 2_000,
        multiplier: 3,
        jitter: "none",
        random: () => {
          throw new Error("random must not be called without jitter");
        },
        scheduler,
      }),
    );
    await fireWaits(scheduler, 4);
    await flush();
    assert.equal(result.status, "rejected");
    assert.ok(result.reason instanceof RetryError);
    assert.deepEqual(scheduler.delays, [100, 300, 900, 2000]);
  });

  await t.step("returns the value of a later attempt that succeeds", async () => {
    const scheduler = new ManualScheduler();
    const result = retry(async (attempt) => {
      await Promise.resolve();
      if (attempt < 2) throw new Error("not yet");
      return { attempt };
    }, { jitter: "none", scheduler });
    await fireWaits(scheduler, 1);
    assert.deepEqual(await result, { attempt: 2 });
    assert.equal(scheduler.pending, 0);
  });

  await t.step("rejects with a RetryError with the attempt count and the last error", async () => {
    const scheduler = new ManualScheduler();
    const result = observe(retry(alwaysFails([]), { maxAttempts: 3, scheduler }));
    await fireWaits(scheduler, 2);
    await flush();
    const error = result.reason;
    assert.ok(error instanceof RetryError);
    assert.equal(error.name, "RetryError");
    assert.equal(error.attempts, 3);
    assert.ok(error.cause instanceof Error);
    assert.equal(error.cause.message, "failure 3");
    assert.equal(
      error.message,
      "Cannot succeed after 3 attempts: the last one failed with: failure 3",
    );
    assert.equal(scheduler.pending, 0);
  });

  await t.step("wraps the only failure in a RetryError when maxAttempts is 1", async () => {
    const scheduler = new ManualScheduler();
    await assert.rejects(retry(alwaysFails([]), { maxAttempts: 1, scheduler }), {
      name: "RetryError",
      message: "Cannot succeed after 1 attempt: the last one failed with: failure 1",
      attempts: 1,
    });
    assert.deepEqual(scheduler.delays, []);
  });

  await t.step("rethrows the error itself at once when shouldRetry returns false", async () => {
    const scheduler = new ManualScheduler();
    const fatal = new TypeError("fatal");
    const asked: [unknown, number][] = [];
    const calls: number[] = [];
    const result = observe(retry((attempt) => {
      calls.push(attempt);
      throw attempt === 2 ? fatal : new Error("transient");
    }, {
      shouldRetry: (error, attempt) => {
        asked.push([error instanceof Error ? error.message : error, attempt]);
        return error !== fatal;
      },
      scheduler,
    }));
    await fireWaits(scheduler, 1);
    await flush();
    assert.equal(result.status, "rejected");
    assert.equal(result.reason, fatal);
    assert.deepEqual(calls, [1, 2]);
    assert.deepEqual(asked, [["transient", 1], ["fatal", 2]]);
    assert.equal(scheduler.pending, 0);
  });

  await t.step(
    "rejects with the reason and leaves no timer when aborted during a wait",
    async () => {
      const scheduler = new ManualScheduler();
      const controller = new AbortController();
      const calls: number[] = [];
      const result = retry(alwaysFails(calls), { signal: controller.signal, scheduler });
      await scheduler.whenPending();
      const reason = new Error("shutting down");
      controller.abort(reason);
      await assert.rejects(result, (error) => error === reason);
      assert.equal(scheduler.pending, 0);
      assert.deepEqual(calls, [1]);
    },
  );

  await t.step(
    "rejects with the reason, without waiting, when aborted during an attempt",
    async () => {
      const scheduler = new ManualScheduler();
      const controller = new AbortController();
      const reason = new Error("abandoned");
      const calls: number[] = [];
      await assert.rejects(
        retry((attempt) => {
          calls.push(attempt);
          controller.abort(reason);
          throw new Error("failed while aborting");
        }, { signal: controller.signal, scheduler }),
        (error) => error === reason,
      );
      assert.deepEqual([calls, scheduler.delays], [[1], []]);
    },
  );

  await t.step("returns the value of an attempt that succeeds after an abort", async () => {
    const controller = new AbortController();
    const value = await retry(() => {
      controller.abort(new Error("late"));
      return 7;
    }, { signal: controller.signal, scheduler: new ManualScheduler() });
    assert.equal(value, 7);
  });

  await t.step("rejects with the reason without any attempt when already aborted", async () => {
    const reason = new Error("never started");
    const calls: number[] = [];
    await assert.rejects(
      retry(alwaysFails(calls), {
        signal: AbortSignal.abort(reason),
        scheduler: new ManualScheduler(),
      }),
      (error) => error === reason,
    );
    assert.deepEqual(calls, []);
  });

  await t.step("rejects with a RangeError when random returns a value outside [0, 1]", async () => {
    const scheduler = new ManualScheduler();
    await assert.rejects(retry(alwaysFails([]), { random: () => 1.5, scheduler }), {
      name: "RangeError",
      message: "Cannot retry as 'random' must return a number in [0, 1]: current value is 1.5",
    });
    assert.equal(scheduler.pending, 0);
  });

  await t.step("rejects a maxAttempts that is not an integer >= 1 with a RangeError", () => {
    assert.throws(() => retry(() => 1, { maxAttempts: 0 }), {
      name: "RangeError",
      message: "Cannot retry as 'maxAttempts' must be an integer >= 1: current value is 0",
    });
    assert.throws(() => retry(() => 1, { maxAttempts: 2.5 }), RangeError);
  });

  await t.step("rejects out-of-range delays and multipliers with a RangeError", () => {
    assert.throws(() => retry(() => 1, { minDelayMs: -1 }), {
      name: "RangeError",
      message:
        "Cannot retry as 'minDelayMs' must be a number in 0..2147483647: current value is -1",
    });
    assert.throws(() => retry(() => 1, { maxDelayMs: 100 }), {
      name: "RangeError",
      message: "Cannot retry as 'maxDelayMs' must be >= 'minDelayMs' (500): current value is 100",
    });
    assert.throws(() => retry(() => 1, { multiplier: 0.5 }), {
      name: "RangeError",
      message: "Cannot retry as 'multiplier' must be a finite number >= 1: current value is 0.5",
    });
    assert.throws(() => retry(() => 1, { multiplier: Infinity }), RangeError);
  });

  await t.step("rejects a jitter other than full or none with a RangeError", () => {
    assert.throws(() => retry(() => 1, { jitter: "half" as "full" }), {
      name: "RangeError",
      message: `Cannot retry as 'jitter' must be "full" or "none": current value is "half"`,
    });
  });

  await t.step("rejects a non-function fn, random or shouldRetry with a TypeError", () => {
    assert.throws(() => retry(null as unknown as () => number), {
      name: "TypeError",
      message: "Cannot retry as 'fn' must be a function: current value is null",
    });
    assert.throws(() => retry(() => 1, { random: 0.5 as unknown as () => number }), {
      name: "TypeError",
      message: "Cannot retry as 'random' must be a function: current value is 0.5",
    });
    assert.throws(
      () => retry(() => 1, { shouldRetry: true as unknown as () => boolean }),
      TypeError,
    );
  });
});

// ---------------------------------------------------------------------------
// AsyncQueue
// ---------------------------------------------------------------------------

Deno.test("AsyncQueue", async (t) => {
  await t.step("reports its capacity, policy, size and counters", async () => {
    const queue = new AsyncQueue<string>({ capacity: 3 });
    await queue.push("a");
    assert.deepEqual(
      [queue.capacity, queue.overflow, queue.size, queue.dropped, queue.closed],
      [3, "block", 1, 0, false],
    );
  });

  await t.step("hands items out in the order they were pushed", async () => {
    const queue = new AsyncQueue<number>({ capacity: 4 });
    for (const item of [1, 2, 3, 4]) await queue.push(item);
    assert.deepEqual(await takeQueued(queue), [1, 2, 3, 4]);
    assert.equal(queue.size, 0);
  });

  await t.step("keeps FIFO order across many wrap-arounds of its ring buffer", async () => {
    const queue = new AsyncQueue<number>({ capacity: 5 });
    const taken: number[] = [];
    let next = 0;
    for (let round = 0; round < 200; round++) {
      while (queue.size < 3 + (round % 3)) await queue.push(next++);
      for (let i = 0; i < 2 + (round % 2); i++) taken.push((await queue.shift()).value as number);
    }
    taken.push(...await takeQueued(queue));
    assert.deepEqual(taken, Array.from({ length: next }, (_, i) => i));
  });

  await t.step("keeps FIFO order while its storage grows to a large capacity", async () => {
    const queue = new AsyncQueue<number>({ capacity: 1_000 });
    for (let i = 0; i < 7; i++) await queue.push(-i);
    for (let i = 0; i < 7; i++) await queue.shift();
    for (let i = 0; i < 1_000; i++) assert.equal(queue.tryPush(i), true);
    assert.equal(queue.tryPush(1_000), false);
    assert.deepEqual(await takeQueued(queue), Array.from({ length: 1_000 }, (_, i) => i));
  });

  await t.step("delivers a push straight to a waiting consumer", async () => {
    const queue = new AsyncQueue<string>({ capacity: 1 });
    const next = queue.shift();
    await queue.push("direct");
    assert.deepEqual(await next, { done: false, value: "direct" });
    assert.equal(queue.size, 0);
  });

  await t.step(
    "gives each item to exactly one waiting consumer, in the order they waited",
    async () => {
      const queue = new AsyncQueue<string>({ capacity: 2 });
      const first = queue.shift();
      const second = queue.shift();
      const third = queue.shift();
      assert.equal(queue.tryPush("a"), true);
      assert.equal(queue.tryPush("b"), true);
      assert.equal(queue.tryPush("c"), true);
      assert.deepEqual(
        (await Promise.all([first, second, third])).map((result) => result.value),
        ["a", "b", "c"],
      );
    },
  );

  await t.step("blocks a push on a full queue until a shift makes room", async () => {
    const queue = new AsyncQueue<number>({ capacity: 2 });
    await queue.push(1);
    await queue.push(2);
    const blocked = observe(queue.push(3));
    await flush();
    assert.deepEqual([blocked.status, queue.size], ["pending", 2]);
    assert.deepEqual(await queue.shift(), { done: false, value: 1 });
    await flush();
    assert.deepEqual([blocked.status, queue.size], ["fulfilled", 2]);
    assert.deepEqual(await takeQueued(queue), [2, 3]);
  });

  await t.step("lets blocked producers in first come, first served", async () => {
    const queue = new AsyncQueue<string>({ capacity: 1 });
    await queue.push("a");
    const resolved: string[] = [];
    const pushes = ["b", "c", "d"].map((item) => queue.push(item).then(() => resolved.push(item)));
    const taken: string[] = [];
    for (let i = 0; i < 4; i++) taken.push((await queue.shift()).value as string);
    await Promise.all(pushes);
    assert.deepEqual(taken, ["a", "b", "c", "d"]);
    assert.deepEqual(resolved, ["b", "c", "d"]);
  });

  await t.step(
    "withdraws a blocked push whose signal aborts, rejecting with the reason",
    async () => {
      const queue = new AsyncQueue<string>({ capacity: 1 });
      await queue.push("a");
      const controller = new AbortController();
      const withdrawn = queue.push("withdrawn", { signal: controller.signal });
      const kept = queue.push("kept");
      const reason = new Error("no longer wanted");
      controller.abort(reason);
      await assert.rejects(withdrawn, (error) => error === reason);
      assert.deepEqual((await queue.shift()).value, "a");
      await kept;
      assert.deepEqual(await takeQueued(queue), ["kept"]);
    },
  );

  await t.step("removes a blocked push's abort listener once the item is queued", async () => {
    const queue = new AsyncQueue<string>({ capacity: 1 });
    await queue.push("a");
    const { controller, listeners } = countedController();
    const blocked = queue.push("b", { signal: controller.signal });
    assert.equal(listeners(), 1);
    await queue.shift();
    await blocked;
    assert.equal(listeners(), 0);
  });

  await t.step("evicts the oldest items under drop-oldest and counts them", async () => {
    const queue = new AsyncQueue<number>({ capacity: 3, overflow: "drop-oldest" });
    for (const item of [1, 2, 3, 4, 5]) await queue.push(item);
    assert.deepEqual([queue.size, queue.dropped], [3, 2]);
    assert.deepEqual(await takeQueued(queue), [3, 4, 5]);
  });

  await t.step("discards the pushed items under drop-newest and counts them", async () => {
    const queue = new AsyncQueue<number>({ capacity: 3, overflow: "drop-newest" });
    for (const item of [1, 2, 3, 4, 5]) await queue.push(item);
    assert.deepEqual([queue.size, queue.dropped], [3, 2]);
    assert.deepEqual(await takeQueued(queue), [1, 2, 3]);
  });

  await t.step("rejects a push to a full queue under error with a QueueOverflowError", async () => {
    const queue = new AsyncQueue<number>({ capacity: 2, overflow: "error" });
    await queue.push(1);
    await queue.push(2);
    await assert.rejects(queue.push(3), {
      name: "QueueOverflowError",
      message:
        `Cannot push to the queue as it must have room: it is full at its capacity of 2 (overflow policy "error")`,
      capacity: 2,
    });
    assert.deepEqual([queue.size, queue.dropped], [2, 0]);
    assert.deepEqual(await takeQueued(queue), [1, 2]);
  });

  await t.step("refuses tryPush on a full queue under block without queuing", async () => {
    const queue = new AsyncQueue<number>({ capacity: 1 });
    assert.equal(queue.tryPush(1), true);
    assert.equal(queue.tryPush(2), false);
    assert.deepEqual([queue.size, queue.dropped], [1, 0]);
    assert.deepEqual(await takeQueued(queue), [1]);
  });

  await t.step(
    "refuses tryPush on a full queue under drop-newest and counts it dropped",
    async () => {
      const queue = new AsyncQueue<number>({ capacity: 1, overflow: "drop-newest" });
      assert.equal(queue.tryPush(1), true);
      assert.equal(queue.tryPush(2), false);
      assert.deepEqual([queue.size, queue.dropped], [1, 1]);
      assert.deepEqual(await takeQueued(queue), [1]);
    },
  );

  await t.step("always queues with tryPush under drop-oldest, evicting the oldest", async () => {
    const queue = new AsyncQueue<number>({ capacity: 2, overflow: "drop-oldest" });
    assert.deepEqual([1, 2, 3].map((item) => queue.tryPush(item)), [true, true, true]);
    assert.equal(queue.dropped, 1);
    assert.deepEqual(await takeQueued(queue), [2, 3]);
  });

  await t.step("throws a QueueOverflowError from tryPush on a full queue under error", () => {
    const queue = new AsyncQueue<number>({ capacity: 1, overflow: "error" });
    assert.equal(queue.tryPush(1), true);
    assert.throws(() => queue.tryPush(2), (error) => {
      return error instanceof QueueOverflowError && error.capacity === 1;
    });
    assert.equal(queue.size, 1);
  });

  await t.step("hands a tryPush straight to a waiting consumer", async () => {
    const queue = new AsyncQueue<string>({ capacity: 1, overflow: "error" });
    const next = queue.shift();
    assert.equal(queue.tryPush("x"), true);
    assert.deepEqual(await next, { done: false, value: "x" });
  });

  await t.step(
    "rejects a waiting shift with the reason when aborted, and skips it later",
    async () => {
      const queue = new AsyncQueue<string>({ capacity: 1 });
      const controller = new AbortController();
      const aborted = queue.shift({ signal: controller.signal });
      const reason = new Error("gave up");
      controller.abort(reason);
      await assert.rejects(aborted, (error) => error === reason);
      await queue.push("x");
      assert.equal(queue.size, 1);
      assert.deepEqual(await queue.shift(), { done: false, value: "x" });
    },
  );

  await t.step("takes no item for a shift whose signal is already aborted", async () => {
    const queue = new AsyncQueue<string>({ capacity: 1 });
    await queue.push("kept");
    const reason = new Error("already");
    await assert.rejects(
      queue.shift({ signal: AbortSignal.abort(reason) }),
      (error) => error === reason,
    );
    assert.equal(queue.size, 1);
  });

  await t.step("removes a waiting shift's abort listener once it gets an item", async () => {
    const queue = new AsyncQueue<string>({ capacity: 1 });
    const { controller, listeners } = countedController();
    const next = queue.shift({ signal: controller.signal });
    assert.equal(listeners(), 1);
    await queue.push("x");
    await next;
    assert.equal(listeners(), 0);
  });

  await t.step("lets consumers drain the queued items after close, then ends", async () => {
    const queue = new AsyncQueue<number>({ capacity: 3 });
    await queue.push(1);
    await queue.push(2);
    queue.close();
    assert.equal(queue.closed, true);
    assert.deepEqual(await queue.shift(), { done: false, value: 1 });
    assert.deepEqual(await queue.shift(), { done: false, value: 2 });
    assert.deepEqual(await queue.shift(), { done: true, value: undefined });
    assert.deepEqual(await queue.shift(), { done: true, value: undefined });
  });

  await t.step("ends the waiting consumers when closed", async () => {
    const queue = new AsyncQueue<number>({ capacity: 1 });
    const waiting = [queue.shift(), queue.shift()];
    queue.close();
    assert.deepEqual(await Promise.all(waiting), [
      { done: true, value: undefined },
      { done: true, value: undefined },
    ]);
  });

  await t.step("rejects blocked producers with a QueueClosedError on close", async () => {
    const queue = new AsyncQueue<number>({ capacity: 1 });
    await queue.push(1);
    const blocked = queue.push(2);
    queue.close();
    await assert.rejects(blocked, {
      name: "QueueClosedError",
      message: "Cannot push to the queue as it must be open: it is closed",
    });
    assert.deepEqual(await takeQueued(queue), [1]);
    assert.deepEqual(await queue.shift(), { done: true, value: undefined });
  });

  await t.step("refuses pushes after close: push rejects and tryPush returns false", async () => {
    const queue = new AsyncQueue<number>({ capacity: 2, overflow: "drop-oldest" });
    queue.close();
    await assert.rejects(queue.push(1), QueueClosedError);
    assert.equal(queue.tryPush(2), false);
    assert.deepEqual([queue.size, queue.dropped], [0, 0]);
  });

  await t.step("ignores close after close", async () => {
    const queue = new AsyncQueue<number>({ capacity: 2 });
    await queue.push(1);
    queue.close();
    queue.close();
    assert.deepEqual(await takeQueued(queue), [1]);
  });

  await t.step("rejects waiting consumers with the error on fail", async () => {
    const queue = new AsyncQueue<number>({ capacity: 1 });
    const waiting = queue.shift();
    const failure = new Error("source crashed");
    queue.fail(failure);
    await assert.rejects(waiting, (error) => error === failure);
    assert.equal(queue.closed, true);
  });

  await t.step("discards queued items on fail, so every later shift rejects at once", async () => {
    const queue = new AsyncQueue<number>({ capacity: 3 });
    await queue.push(1);
    await queue.push(2);
    const failure = new Error("source crashed");
    queue.fail(failure);
    assert.deepEqual([queue.size, queue.dropped], [0, 0]);
    await assert.rejects(queue.shift(), (error) => error === failure);
    await assert.rejects(queue.shift(), (error) => error === failure);
  });

  await t.step(
    "rejects blocked and later pushes with a QueueClosedError caused by the failure",
    async () => {
      const queue = new AsyncQueue<number>({ capacity: 1 });
      await queue.push(1);
      const blocked = queue.push(2);
      const failure = new Error("source crashed");
      queue.fail(failure);
      for (const push of [blocked, queue.push(3)]) {
        await assert.rejects(push, (error) => {
          assert.ok(error instanceof QueueClosedError);
          assert.equal(error.cause, failure);
          assert.equal(
            error.message,
            "Cannot push to the queue as it must be open: it has failed with: source crashed",
          );
          return true;
        });
      }
    },
  );

  await t.step("ignores fail after close, so queued items still drain", async () => {
    const queue = new AsyncQueue<number>({ capacity: 2 });
    await queue.push(1);
    queue.close();
    queue.fail(new Error("too late"));
    assert.deepEqual(await queue.shift(), { done: false, value: 1 });
    assert.deepEqual(await queue.shift(), { done: true, value: undefined });
  });

  await t.step("iterates with for await until closed and drained", async () => {
    const queue = new AsyncQueue<number>({ capacity: 2 });
    const producing = (async () => {
      for (const item of [1, 2, 3, 4, 5]) await queue.push(item);
      queue.close();
    })();
    const seen: number[] = [];
    for await (const item of queue) seen.push(item);
    await producing;
    assert.deepEqual(seen, [1, 2, 3, 4, 5]);
  });

  await t.step("throws the failure from for await", async () => {
    const queue = new AsyncQueue<number>({ capacity: 2 });
    await queue.push(1);
    const seen: number[] = [];
    const failure = new Error("broken");
    await assert.rejects(
      (async () => {
        for await (const item of queue) {
          seen.push(item);
          queue.fail(failure);
        }
      })(),
      (error) => error === failure,
    );
    assert.deepEqual(seen, [1]);
  });

  await t.step("stays open when a for await loop breaks, for the next loop", async () => {
    const queue = new AsyncQueue<number>({ capacity: 4 });
    for (const item of [1, 2, 3]) await queue.push(item);
    for await (const item of queue) {
      assert.equal(item, 1);
      break;
    }
    assert.equal(queue.closed, false);
    queue.close();
    const rest: number[] = [];
    for await (const item of queue) rest.push(item);
    assert.deepEqual(rest, [2, 3]);
  });

  await t.step("ends an iterator that was returned early, without touching the queue", async () => {
    const queue = new AsyncQueue<number>({ capacity: 2 });
    await queue.push(1);
    const iterator = queue[Symbol.asyncIterator]();
    assert.deepEqual(await iterator.return!(), { done: true, value: undefined });
    assert.deepEqual(await iterator.next(), { done: true, value: undefined });
    assert.equal(queue.size, 1);
  });

  await t.step(
    "splits the items between concurrent iterators, each item exactly once",
    async () => {
      const queue = new AsyncQueue<number>({ capacity: 3 });
      const consume = async (into: number[]) => {
        for await (const item of queue) {
          into.push(item);
          await Promise.resolve();
        }
      };
      const a: number[] = [];
      const b: number[] = [];
      const consuming = Promise.all([consume(a), consume(b)]);
      for (let i = 0; i < 100; i++) await queue.push(i);
      queue.close();
      await consuming;
      assert.ok(a.length > 0 && b.length > 0, `a got ${a.length}, b got ${b.length}`);
      assert.deepEqual(
        [...a, ...b].sort((x, y) => x - y),
        Array.from({ length: 100 }, (_, i) => i),
      );
      assert.deepEqual(a, [...a].sort((x, y) => x - y));
      assert.deepEqual(b, [...b].sort((x, y) => x - y));
    },
  );

  await t.step("closes when disposed with await using", async () => {
    let escaped: AsyncQueue<number> | undefined;
    {
      await using queue = new AsyncQueue<number>({ capacity: 1 });
      await queue.push(1);
      escaped = queue;
    }
    assert.equal(escaped.closed, true);
    assert.deepEqual(await takeQueued(escaped), [1]);
  });

  await t.step("rejects a capacity that is not an integer >= 1 with a RangeError", () => {
    assert.throws(() => new AsyncQueue({ capacity: 0 }), {
      name: "RangeError",
      message: "Cannot create the queue as 'capacity' must be an integer >= 1: current value is 0",
    });
    assert.throws(() => new AsyncQueue({ capacity: 1.5 }), RangeError);
    assert.throws(() => new AsyncQueue({ capacity: Infinity }), RangeError);
  });

  await t.step("rejects an unknown overflow policy with a RangeError", () => {
    assert.throws(() => new AsyncQueue({ capacity: 1, overflow: "drop-all" as "error" }), {
      name: "RangeError",
      message:
        `Cannot create the queue as 'overflow' must be one of "block", "drop-oldest", "drop-newest", "error": current value is "drop-all"`,
    });
  });

  await t.step("rejects a signal that is not an AbortSignal with a TypeError", () => {
    const queue = new AsyncQueue<number>({ capacity: 1 });
    assert.throws(() => queue.push(1, { signal: "stop" as unknown as AbortSignal }), TypeError);
    assert.throws(() => queue.shift({ signal: 1 as unknown as AbortSignal }), {
      name: "TypeError",
      message: "Cannot shift from the queue as 'signal' must be an AbortSignal: current value is 1",
    });
  });
});
