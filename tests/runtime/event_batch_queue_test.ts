import { assert, assertEquals, assertRejects, assertThrows } from "../_assert.ts";
import { type OverflowPolicy, QueueClosedError, QueueOverflowError } from "../../rpc/_async.ts";
import { ManualScheduler } from "../../rpc/scheduler.ts";
import { EventBatchQueue } from "../../runtime/_event_batch_queue.ts";
import { flush, observe } from "../_promises.ts";

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

interface Setup {
  capacity?: number;
  overflow?: OverflowPolicy;
  minIntervalMs?: number | null;
}

/** A queue whose rate limit runs on a ManualScheduler (time starts at 0 ms). */
function setup(options: Setup = {}) {
  const scheduler = new ManualScheduler();
  const queue = new EventBatchQueue<string>({
    capacity: options.capacity ?? 10,
    overflow: options.overflow ?? "drop-oldest",
    minIntervalMs: options.minIntervalMs ?? null,
    scheduler,
    now: () => scheduler.now,
  });
  return { queue, scheduler };
}

// ---------------------------------------------------------------------------
// Batches
// ---------------------------------------------------------------------------

Deno.test("EventBatchQueue batches", async (t) => {
  await t.step("next() returns everything queued as one batch, oldest first", async () => {
    const { queue } = setup();
    assertEquals([queue.push("a"), queue.push("b"), queue.push("c")], [true, true, true]);
    assertEquals(queue.size, 3);
    assertEquals(await queue.next(), ["a", "b", "c"]);
    assertEquals(queue.size, 0);
  });

  await t.step("next() waits for the first item, then returns it", async () => {
    const { queue } = setup();
    const batch = observe(queue.next());
    await flush();
    assertEquals(batch.status, "pending");
    queue.push("a");
    await flush();
    assertEquals(batch.status, "fulfilled");
    assertEquals(batch.value, ["a"]);
  });

  await t.step("items pushed after a batch was taken come in the next batch", async () => {
    const { queue } = setup();
    queue.push("a");
    assertEquals(await queue.next(), ["a"]);
    queue.push("b");
    queue.push("c");
    assertEquals(await queue.next(), ["b", "c"]);
  });

  await t.step("delivered counts every item handed to the consumer", async () => {
    const { queue } = setup();
    assertEquals(queue.delivered, 0);
    queue.push("a");
    queue.push("b");
    await queue.next();
    assertEquals(queue.delivered, 2);
    queue.push("c");
    await queue.next();
    assertEquals(queue.delivered, 3);
    assertEquals(queue.dropped, 0);
  });
});

// ---------------------------------------------------------------------------
// Overflow policies
// ---------------------------------------------------------------------------

Deno.test("EventBatchQueue overflow policies", async (t) => {
  await t.step('"drop-oldest" evicts the oldest item and counts it as dropped', async () => {
    const { queue } = setup({ capacity: 2, overflow: "drop-oldest" });
    assertEquals([queue.push("a"), queue.push("b"), queue.push("c")], [true, true, true]);
    assertEquals(queue.size, 2);
    assertEquals(queue.dropped, 1);
    assertEquals(queue.push("d"), true);
    assertEquals(queue.dropped, 2);
    assertEquals(await queue.next(), ["c", "d"]);
    assertEquals(queue.delivered, 2);
  });

  await t.step('"drop-oldest" keeps its capacity over many evictions', async () => {
    const { queue } = setup({ capacity: 3, overflow: "drop-oldest" });
    for (let i = 0; i < 100; i++) queue.push(`e${i}`);
    assertEquals(queue.size, 3);
    assertEquals(queue.dropped, 97);
    assertEquals(await queue.next(), ["e97", "e98", "e99"]);
  });

  await t.step('"drop-newest" refuses the new item with false and counts it', async () => {
    const { queue } = setup({ capacity: 2, overflow: "drop-newest" });
    assertEquals([queue.push("a"), queue.push("b"), queue.push("c")], [true, true, false]);
    assertEquals(queue.dropped, 1);
    assertEquals(queue.size, 2);
    assertEquals(await queue.next(), ["a", "b"]);
  });

  await t.step(
    '"error" throws QueueOverflowError with the capacity and keeps the queue',
    async () => {
      const { queue } = setup({ capacity: 2, overflow: "error" });
      queue.push("a");
      queue.push("b");
      const error = assertThrows(() => queue.push("c"), QueueOverflowError);
      assertEquals(error.capacity, 2);
      assertEquals(queue.dropped, 0);
      assertEquals(await queue.next(), ["a", "b"]);
    },
  );

  await t.step('"block" returns a promise that stays pending while the queue is full', async () => {
    const { queue } = setup({ capacity: 1, overflow: "block" });
    assertEquals(queue.push("a"), true);
    const pushed = queue.push("b");
    assert(pushed instanceof Promise);
    const observed = observe(pushed);
    await flush();
    assertEquals(observed.status, "pending");
    assertEquals(queue.size, 1);
  });

  await t.step('"block" resolves true once next() made room, keeping the order', async () => {
    const { queue } = setup({ capacity: 2, overflow: "block" });
    queue.push("a");
    queue.push("b");
    const c = observe(queue.push("c") as Promise<boolean>);
    const d = observe(queue.push("d") as Promise<boolean>);
    const e = observe(queue.push("e") as Promise<boolean>);
    assertEquals(await queue.next(), ["a", "b"]);
    await flush();
    assertEquals([c.status, d.status, e.status], ["fulfilled", "fulfilled", "pending"]);
    assertEquals([c.value, d.value], [true, true]);
    assertEquals(await queue.next(), ["c", "d"]);
    await flush();
    assertEquals([e.status, e.value], ["fulfilled", true]);
    assertEquals(await queue.next(), ["e"]);
    assertEquals(queue.dropped, 0);
    assertEquals(queue.delivered, 5);
  });
});

// ---------------------------------------------------------------------------
// Rate limit
// ---------------------------------------------------------------------------

Deno.test("EventBatchQueue rate limit", async (t) => {
  await t.step("the first batch is returned at once", async () => {
    const { queue, scheduler } = setup({ minIntervalMs: 100 });
    queue.push("a");
    assertEquals(await queue.next(), ["a"]);
    assertEquals(scheduler.pending, 0);
  });

  await t.step("the second batch comes no sooner than minIntervalMs after the first", async () => {
    const { queue, scheduler } = setup({ minIntervalMs: 100 });
    queue.push("a");
    assertEquals(await queue.next(), ["a"]);
    queue.push("b");
    const second = observe(queue.next());
    await scheduler.whenPending();
    assertEquals(scheduler.nextIn, 100);
    scheduler.advance(99);
    await flush();
    assertEquals(second.status, "pending");
    scheduler.advance(1);
    await flush();
    assertEquals(second.status, "fulfilled");
    assertEquals(second.value, ["b"]);
    assertEquals(scheduler.now, 100);
  });

  await t.step("the wait counts from the time the previous batch was returned", async () => {
    const { queue, scheduler } = setup({ minIntervalMs: 100 });
    queue.push("a");
    await queue.next();
    scheduler.advance(60);
    queue.push("b");
    const second = observe(queue.next());
    await scheduler.whenPending();
    assertEquals(scheduler.nextIn, 40);
    scheduler.advance(40);
    await flush();
    assertEquals(second.value, ["b"]);
  });

  await t.step("no wait is set once minIntervalMs has passed", async () => {
    const { queue, scheduler } = setup({ minIntervalMs: 100 });
    queue.push("a");
    await queue.next();
    scheduler.advance(150);
    queue.push("b");
    assertEquals(await queue.next(), ["b"]);
    assertEquals(scheduler.delays, []);
  });

  await t.step("items pushed during the wait join the batch that follows it", async () => {
    const { queue, scheduler } = setup({ minIntervalMs: 100 });
    queue.push("a");
    await queue.next();
    const second = observe(queue.next());
    await scheduler.whenPending();
    queue.push("b");
    queue.push("c");
    await flush();
    assertEquals(second.status, "pending");
    scheduler.advance(100);
    await flush();
    assertEquals(second.value, ["b", "c"]);
  });
});

// ---------------------------------------------------------------------------
// Closing and cancelling
// ---------------------------------------------------------------------------

Deno.test("EventBatchQueue close and abort", async (t) => {
  await t.step(
    "close() still hands out the queued items, then next() gives undefined",
    async () => {
      const { queue } = setup();
      queue.push("a");
      queue.push("b");
      queue.close();
      assertEquals(queue.closed, true);
      assertEquals(await queue.next(), ["a", "b"]);
      assertEquals(await queue.next(), undefined);
      assertEquals(await queue.next(), undefined);
    },
  );

  await t.step("close() ends a consumer waiting for an item with undefined", async () => {
    const { queue } = setup();
    const waiting = observe(queue.next());
    await flush();
    assertEquals(waiting.status, "pending");
    queue.close();
    await flush();
    assertEquals(waiting.status, "fulfilled");
    assertEquals(waiting.value, undefined);
  });

  await t.step("a push after close() returns false and is counted as dropped", () => {
    const { queue } = setup();
    queue.close();
    assertEquals(queue.push("a"), false);
    assertEquals(queue.dropped, 1);
    assertEquals(queue.size, 0);
  });

  await t.step(
    "close() rejects blocked producers with QueueClosedError and counts them",
    async () => {
      const { queue } = setup({ capacity: 1, overflow: "block" });
      queue.push("a");
      const b = queue.push("b") as Promise<boolean>;
      const c = queue.push("c") as Promise<boolean>;
      queue.close();
      await assertRejects(() => b, QueueClosedError);
      await assertRejects(() => c, QueueClosedError);
      assertEquals(queue.dropped, 2);
      assertEquals(await queue.next(), ["a"]);
      assertEquals(await queue.next(), undefined);
    },
  );

  await t.step("close() is idempotent", async () => {
    const { queue } = setup({ capacity: 1, overflow: "block" });
    queue.push("a");
    const b = queue.push("b") as Promise<boolean>;
    queue.close();
    queue.close();
    await assertRejects(() => b, QueueClosedError);
    assertEquals(queue.dropped, 1);
  });

  await t.step("close() during a rate-limit wait releases the consumer at once", async () => {
    const { queue, scheduler } = setup({ minIntervalMs: 1_000 });
    queue.push("a");
    await queue.next();
    queue.push("b");
    const second = observe(queue.next());
    await scheduler.whenPending();
    queue.close();
    await flush();
    assertEquals(second.status, "fulfilled");
    assertEquals(second.value, ["b"]);
    assertEquals(scheduler.pending, 0);
    assertEquals(scheduler.now, 0);
    assertEquals(await queue.next(), undefined);
  });

  await t.step("after close(), next() hands out the rest without a rate-limit wait", async () => {
    const { queue, scheduler } = setup({ minIntervalMs: 1_000 });
    queue.push("a");
    await queue.next();
    queue.push("b");
    queue.close();
    assertEquals(await queue.next(), ["b"]);
    assertEquals(await queue.next(), undefined);
    assertEquals(scheduler.delays, []);
  });

  await t.step(
    "an aborted signal rejects next() with its reason while waiting for an item",
    async () => {
      const { queue } = setup();
      const controller = new AbortController();
      const reason = new Error("stop reading");
      const waiting = observe(queue.next(controller.signal));
      await flush();
      assertEquals(waiting.status, "pending");
      controller.abort(reason);
      await flush();
      assertEquals(waiting.status, "rejected");
      assertEquals(waiting.reason, reason);
    },
  );

  await t.step(
    "an aborted signal rejects next() with its reason during a rate-limit wait",
    async () => {
      const { queue, scheduler } = setup({ minIntervalMs: 100 });
      queue.push("a");
      await queue.next();
      queue.push("b");
      const controller = new AbortController();
      const reason = new Error("stop reading");
      const waiting = observe(queue.next(controller.signal));
      await scheduler.whenPending();
      controller.abort(reason);
      await flush();
      assertEquals(waiting.status, "rejected");
      assertEquals(waiting.reason, reason);
      assertEquals(scheduler.pending, 0);
      assertEquals(queue.size, 1);
    },
  );

  await t.step("a signal aborted beforehand rejects next() without taking items", async () => {
    const { queue } = setup();
    queue.push("a");
    const reason = new Error("already stopped");
    const waiting = observe(queue.next(AbortSignal.abort(reason)));
    await flush();
    assertEquals(waiting.status, "rejected");
    assertEquals(waiting.reason, reason);
    assertEquals(queue.size, 1);
    assertEquals(queue.delivered, 0);
  });

  await t.step("after an aborted next(), a new next() still gets the items", async () => {
    const { queue } = setup();
    const controller = new AbortController();
    const first = observe(queue.next(controller.signal));
    controller.abort();
    await flush();
    assertEquals(first.status, "rejected");
    queue.push("a");
    assertEquals(await queue.next(), ["a"]);
  });
});
