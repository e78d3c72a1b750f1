/**
 * Private async helpers shared by every module of the package: a pluggable
 * timer {@linkcode Scheduler} (the global timers by default, a
 * {@linkcode ManualScheduler} in tests), {@linkcode delay},
 * {@linkcode deadline}, {@linkcode retry} with exponential backoff and jitter,
 * and {@linkcode AsyncQueue}, a bounded queue with an explicit overflow policy.
 *
 * JSR (and so `@std/async`) is not reachable from our build machines, so these
 * are written here (DESIGN.md, Decision 1). The leading `_` makes the file
 * private: the package's modules import it, its users do not.
 *
 * Every time-based helper takes a `scheduler` option, so tests drive time with
 * a {@linkcode ManualScheduler} instead of sleeping.
 *
 * Arguments are validated before anything starts: a bad argument throws a
 * `RangeError` or `TypeError` synchronously, even from the functions that
 * return promises, because it is a programming error, not an outcome.
 *
 * @module
 */

import { show } from "./_show.ts";
import { MAX_DELAY_MS, type Scheduler, systemScheduler } from "./scheduler.ts";

// ---------------------------------------------------------------------------
// delay
// ---------------------------------------------------------------------------

/** Options for {@linkcode delay}. */
export interface DelayOptions {
  /**
   * Cancels the delay: the promise rejects with `signal.reason` and the timer
   * is cleared.
   *
   * @default {undefined}
   */
  signal?: AbortSignal;
  /**
   * The timers to use.
   *
   * @default {systemScheduler}
   */
  scheduler?: Scheduler;
}

/**
 * Resolves after `ms` milliseconds. Aborting `options.signal` before or
 * during the wait rejects with `signal.reason` and clears the timer; the
 * abort listener is removed whichever way the delay ends.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { delay } from "./_async.ts";
 * import { ManualScheduler } from "./scheduler.ts";
 *
 * const scheduler = new ManualScheduler();
 * const controller = new AbortController();
 * const waiting = delay(5_000, { signal: controller.signal, scheduler });
 * controller.abort(new Error("stop"));
 * await assert.rejects(waiting, { message: "stop" });
 * assert.equal(scheduler.pending, 0);
 * ```
 *
 * @param ms How long to wait, in milliseconds (0..{@linkcode MAX_DELAY_MS}).
 * @param options The abort signal and the scheduler.
 * @returns A promise that resolves after the delay.
 * @throws {RangeError} When `ms` is out of range.
 * @throws {TypeError} When `signal` or `scheduler` is not what it should be.
 */
export function delay(ms: number, options: DelayOptions = {}): Promise<void> {
  const { signal, scheduler = systemScheduler } = options;
  checkDelay("delay", "ms", ms);
  checkSignal("delay", signal);
  checkScheduler("delay", scheduler);
  if (signal?.aborted) return Promise.reject(signal.reason);
  return new Promise<void>((resolve, reject) => {
    if (signal === undefined) {
      scheduler.setTimeout(() => resolve(), ms);
      return;
    }
    let done = false;
    const onAbort = () => {
      done = true;
      scheduler.clearTimeout(handle);
      reject(signal.reason);
    };
    const handle = scheduler.setTimeout(() => {
      done = true;
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    if (!done) signal.addEventListener("abort", onAbort, { once: true });
  });
}

// ---------------------------------------------------------------------------
// deadline
// ---------------------------------------------------------------------------

/** Options for {@linkcode deadline}. */
export interface DeadlineOptions {
  /**
   * Stops waiting: the promise rejects with `signal.reason`.
   *
   * @default {undefined}
   */
  signal?: AbortSignal;
  /**
   * The timers to use.
   *
   * @default {systemScheduler}
   */
  scheduler?: Scheduler;
}

/** The error {@linkcode deadline} rejects with when time runs out. */
export class DeadlineError extends Error {
  /** The deadline that passed, in milliseconds. */
  readonly ms: number;

  /**
   * Creates the error.
   *
   * @param ms The deadline that passed, in milliseconds.
   */
  constructor(ms: number) {
    super(`Cannot wait any longer as the promise had to settle within ${ms} ms: it did not`);
    this.name = "DeadlineError";
    this.ms = ms;
  }
}

/**
 * Settles like `promise` if it settles within `ms` milliseconds; otherwise
 * rejects with a {@linkcode DeadlineError}. Aborting `options.signal` first
 * rejects with `signal.reason`. Whichever comes first wins, and the timer and
 * the abort listener are removed at once.
 *
 * `promise` itself is not cancelled (promises cannot be): pass the same
 * signal to the work if it should stop too. Once the deadline or the signal
 * has decided the outcome, a later rejection of `promise` is ignored rather
 * than reported as unhandled.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { deadline, DeadlineError } from "./_async.ts";
 * import { ManualScheduler } from "./scheduler.ts";
 *
 * const scheduler = new ManualScheduler();
 * const never = new Promise<number>(() => {});
 * const waiting = deadline(never, 100, { scheduler });
 * scheduler.advance(100);
 * await assert.rejects(waiting, DeadlineError);
 * ```
 *
 * @typeParam T What the promise resolves to.
 * @param promise The work to wait for.
 * @param ms How long to wait, in milliseconds (0..{@linkcode MAX_DELAY_MS}).
 * @param options The abort signal and the scheduler.
 * @returns A promise that settles like `promise`, or rejects on time out or abort.
 * @throws {RangeError} When `ms` is out of range.
 * @throws {TypeError} When `signal` or `scheduler` is not what it should be.
 */
export function deadline<T>(
  promise: PromiseLike<T>,
  ms: number,
  options: DeadlineOptions = {},
): Promise<T> {
  const { signal, scheduler = systemScheduler } = options;
  checkDelay("wait for a deadline", "ms", ms);
  checkSignal("wait for a deadline", signal);
  checkScheduler("wait for a deadline", scheduler);
  return new Promise<T>((resolve, reject) => {
    let settled = false;
    let timerSet = false;
    const onAbort = () => settle(() => reject(signal?.reason));
    const settle = (action: () => void) => {
      if (settled) return;
      settled = true;
      if (timerSet) scheduler.clearTimeout(handle);
      signal?.removeEventListener("abort", onAbort);
      action();
    };
    Promise.resolve(promise).then(
      (value) => settle(() => resolve(value)),
      (error) => settle(() => reject(error)),
    );
    if (signal?.aborted) {
      settle(() => reject(signal.reason));
      return;
    }
    const handle = scheduler.setTimeout(() => settle(() => reject(new DeadlineError(ms))), ms);
    timerSet = !settled;
    if (!settled) signal?.addEventListener("abort", onAbort, { once: true });
  });
}

// ---------------------------------------------------------------------------
// retry
// ---------------------------------------------------------------------------

/**
 * How {@linkcode retry} randomises its waits: `"full"` waits a uniformly
 * random time between 0 and the capped exponential backoff, `"none"` waits
 * exactly the backoff.
 */
export type RetryJitter = "full" | "none";

/** Options for {@linkcode retry}. */
export interface RetryOptions {
  /**
   * How many times to call the function at most, the first call included
   * (an integer >= 1).
   *
   * @default {5}
   */
  maxAttempts?: number;
  /**
   * The backoff before the second attempt, in milliseconds; it is multiplied
   * by `multiplier` before each further attempt.
   *
   * @default {500}
   */
  minDelayMs?: number;
  /**
   * The largest backoff, in milliseconds (>= `minDelayMs`).
   *
   * @default {30000}
   */
  maxDelayMs?: number;
  /**
   * What the backoff is multiplied by after each failed attempt (>= 1).
   *
   * @default {2}
   */
  multiplier?: number;
  /**
   * `"full"`: wait `random() * backoff`; `"none"`: wait exactly `backoff`.
   *
   * @default {"full"}
   */
  jitter?: RetryJitter;
  /**
   * The source of randomness for the jitter; must return a number in [0, 1].
   * Inject a fixed function for deterministic tests.
   *
   * @default {Math.random}
   */
  random?: () => number;
  /**
   * Decides whether a failure is worth another attempt. When it returns
   * `false`, retry rejects with that very error at once, without wrapping it
   * (this is checked before the attempt count, so it applies to the last
   * attempt too).
   *
   * @default {undefined} (every error is retried)
   */
  shouldRetry?: (error: unknown, attempt: number) => boolean;
  /**
   * Stops retrying: passed to each attempt; when it is aborted between
   * attempts, during a wait, or when an attempt fails, retry rejects with
   * `signal.reason`. An attempt that succeeds still returns its value.
   *
   * @default {undefined}
   */
  signal?: AbortSignal;
  /**
   * The timers to use for the waits.
   *
   * @default {systemScheduler}
   */
  scheduler?: Scheduler;
}

/** The error {@linkcode retry} rejects with when every attempt has failed. */
export class RetryError extends Error {
  /** How many attempts were made. */
  readonly attempts: number;

  /**
   * Creates the error; its `cause` is the last attempt's error.
   *
   * @param attempts How many attempts were made.
   * @param cause The error of the last attempt.
   */
  constructor(attempts: number, cause: unknown) {
    super(
      `Cannot succeed after ${attempts} attempt${
        attempts === 1 ? "" : "s"
      }: the last one failed with: ${messageOf(cause)}`,
      { cause },
    );
    this.name = "RetryError";
    this.attempts = attempts;
  }
}

/**
 * Calls `fn` until it succeeds, waiting longer after each failure: exponential
 * backoff with full jitter. Before attempt `k + 1` (k >= 1) it waits
 * `random() * min(maxDelayMs, minDelayMs * multiplier ** (k - 1))`, or that
 * cap exactly with `jitter: "none"`. After `maxAttempts` failures it rejects
 * with a {@linkcode RetryError} whose `cause` is the last error.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { retry } from "./_async.ts";
 * import { ManualScheduler } from "./scheduler.ts";
 *
 * const scheduler = new ManualScheduler();
 * const result = retry((attempt) => {
 *   if (attempt < 3) throw new Error("not yet");
 *   return attempt;
 * }, { jitter: "none", scheduler });
 * await scheduler.whenPending();
 * scheduler.advance(500);
 * await scheduler.whenPending();
 * scheduler.advance(1_000);
 * assert.equal(await result, 3);
 * assert.deepEqual(scheduler.delays, [500, 1_000]);
 * ```
 *
 * @typeParam T What `fn` resolves to.
 * @param fn The work; called with the attempt number (from 1) and the signal.
 * @param options Attempts, backoff, jitter, filter, signal and scheduler.
 * @returns The first successful result.
 * @throws {RangeError} When a numeric option or `jitter` is out of range.
 * @throws {TypeError} When `fn`, `random`, `shouldRetry`, `signal` or
 * `scheduler` is not what it should be.
 */
export function retry<T>(
  fn: (attempt: number, signal: AbortSignal | undefined) => Promise<T> | T,
  options: RetryOptions = {},
): Promise<T> {
  const {
    maxAttempts = 5,
    minDelayMs = 500,
    maxDelayMs = 30_000,
    multiplier = 2,
    jitter = "full",
    random = Math.random,
    shouldRetry,
    signal,
    scheduler = systemScheduler,
  } = options;
  checkFunction("retry", "fn", fn);
  if (!Number.isInteger(maxAttempts) || maxAttempts < 1) {
    throw new RangeError(
      `Cannot retry as 'maxAttempts' must be an integer >= 1: current value is ${
        show(maxAttempts)
      }`,
    );
  }
  checkDelay("retry", "minDelayMs", minDelayMs);
  checkDelay("retry", "maxDelayMs", maxDelayMs);
  if (maxDelayMs < minDelayMs) {
    throw new RangeError(
      `Cannot retry as 'maxDelayMs' must be >= 'minDelayMs' (${minDelayMs}): current value is ${maxDelayMs}`,
    );
  }
  if (typeof multiplier !== "number" || !Number.isFinite(multiplier) || multiplier < 1) {
    throw new RangeError(
      `Cannot retry as 'multiplier' must be a finite number >= 1: current value is ${
        show(multiplier)
      }`,
    );
  }
  if (jitter !== "full" && jitter !== "none") {
    throw new RangeError(
      `Cannot retry as 'jitter' must be "full" or "none": current value is ${show(jitter)}`,
    );
  }
  checkFunction("retry", "random", random);
  if (shouldRetry !== undefined) checkFunction("retry", "shouldRetry", shouldRetry);
  checkSignal("retry", signal);
  checkScheduler("retry", scheduler);
  return runRetry(fn, {
    maxAttempts,
    minDelayMs,
    maxDelayMs,
    multiplier,
    jitter,
    random,
    shouldRetry,
    signal,
    scheduler,
  });
}

async function runRetry<T>(
  fn: (attempt: number, signal: AbortSignal | undefined) => Promise<T> | T,
  options: Required<Omit<RetryOptions, "shouldRetry" | "signal">> & {
    shouldRetry: RetryOptions["shouldRetry"];
    signal: AbortSignal | undefined;
  },
): Promise<T> {
  const { maxAttempts, maxDelayMs, multiplier, jitter, random, shouldRetry, signal, scheduler } =
    options;
  // The capped backoff before the next attempt; capping as we go equals
  // min(maxDelayMs, minDelayMs * multiplier ** (k - 1)) and never overflows.
  let backoff = options.minDelayMs;
  for (let attempt = 1;; attempt++) {
    signal?.throwIfAborted();
    try {
      return await fn(attempt, signal);
    } catch (error) {
      signal?.throwIfAborted();
      if (shouldRetry !== undefined && !shouldRetry(error, attempt)) throw error;
      if (attempt >= maxAttempts) throw new RetryError(attempt, error);
      let wait = backoff;
      if (jitter === "full") {
        const r = random();
        if (typeof r !== "number" || !(r >= 0 && r <= 1)) {
          throw new RangeError(
            `Cannot retry as 'random' must return a number in [0, 1]: current value is ${show(r)}`,
          );
        }
        wait = r * backoff;
      }
      backoff = Math.min(maxDelayMs, backoff * multiplier);
      await delay(wait, { signal, scheduler });
    }
  }
}

// ---------------------------------------------------------------------------
// AsyncQueue
// ---------------------------------------------------------------------------

/**
 * What {@linkcode AsyncQueue.push} does when the queue is full:
 *
 * - `"block"`: wait, in line with other waiting producers, until there is room;
 * - `"drop-oldest"`: evict the oldest queued item to make room;
 * - `"drop-newest"`: discard the item being pushed;
 * - `"error"`: fail with a {@linkcode QueueOverflowError}.
 */
export type OverflowPolicy = "block" | "drop-oldest" | "drop-newest" | "error";

/** Options for {@linkcode AsyncQueue}. */
export interface AsyncQueueOptions {
  /**
   * How many items the queue holds at most (an integer >= 1). Required. The
   * storage grows on demand, so a large capacity costs nothing until used.
   */
  capacity: number;
  /**
   * What a push does when the queue is full.
   *
   * @default {"block"}
   */
  overflow?: OverflowPolicy;
}

/** Options for {@linkcode AsyncQueue.push} and {@linkcode AsyncQueue.shift}. */
export interface AsyncQueueWaitOptions {
  /**
   * Gives up waiting: the call rejects with `signal.reason` and leaves the
   * queue as if it had never been made.
   *
   * @default {undefined}
   */
  signal?: AbortSignal;
}

/** The error a push gets when the queue is closed or has failed. */
export class QueueClosedError extends Error {
  /**
   * Creates the error.
   *
   * @param options `cause`: the error the queue failed with, if it did.
   */
  constructor(options?: ErrorOptions) {
    super(
      options !== undefined && "cause" in options
        ? `Cannot push to the queue as it must be open: it has failed with: ${
          messageOf(options.cause)
        }`
        : "Cannot push to the queue as it must be open: it is closed",
      options,
    );
    this.name = "QueueClosedError";
  }
}

/** The error a push gets from a full queue whose overflow policy is `"error"`. */
export class QueueOverflowError extends Error {
  /** The capacity of the full queue. */
  readonly capacity: number;

  /**
   * Creates the error.
   *
   * @param capacity The capacity of the full queue.
   */
  constructor(capacity: number) {
    super(
      `Cannot push to the queue as it must have room: it is full at its capacity of ${capacity} (overflow policy "error")`,
    );
    this.name = "QueueOverflowError";
    this.capacity = capacity;
  }
}

interface Waiter<R> {
  resolve(value: R): void;
  reject(error: unknown): void;
}

interface Producer<T> extends Waiter<void> {
  readonly item: T;
}

const DONE: IteratorReturnResult<undefined> = Object.freeze({ done: true, value: undefined });
const RESOLVED: Promise<void> = Promise.resolve();
const POLICIES: readonly OverflowPolicy[] = ["block", "drop-oldest", "drop-newest", "error"];

/**
 * A bounded first-in first-out async queue with an explicit
 * {@linkcode OverflowPolicy}, for handing items from producers to consumers.
 *
 * - Consumers take items with {@linkcode AsyncQueue.shift} or `for await`;
 *   several consumers may wait at once and each item goes to exactly one of
 *   them, in the order they started waiting.
 * - {@linkcode AsyncQueue.close} ends the queue gracefully: consumers get what
 *   is queued, then the end. {@linkcode AsyncQueue.fail} ends it with an error
 *   that consumers get at once; queued items are discarded.
 * - Breaking out of a `for await` loop does not close the queue: other
 *   consumers, or a later loop, carry on.
 * - `await using` closes it ({@linkcode AsyncQueue.close}).
 *
 * Storage is a ring buffer, so pushes and shifts cost O(1).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { AsyncQueue } from "./_async.ts";
 *
 * const queue = new AsyncQueue<number>({ capacity: 2, overflow: "drop-oldest" });
 * await queue.push(1);
 * await queue.push(2);
 * await queue.push(3); // evicts 1
 * queue.close();
 * const seen: number[] = [];
 * for await (const item of queue) seen.push(item);
 * assert.deepEqual(seen, [2, 3]);
 * assert.equal(queue.dropped, 1);
 * ```
 *
 * @typeParam T The items.
 */
export class AsyncQueue<T> implements AsyncIterable<T>, AsyncDisposable {
  readonly #capacity: number;
  readonly #overflow: OverflowPolicy;
  #buffer: (T | undefined)[];
  #head = 0;
  #size = 0;
  #dropped = 0;
  #closed = false;
  #failure: { error: unknown } | undefined;
  readonly #consumers = new WaitList<Waiter<IteratorResult<T>>>();
  readonly #producers = new WaitList<Producer<T>>();

  /**
   * Creates an empty, open queue.
   *
   * @param options The capacity and the overflow policy.
   * @throws {RangeError} When `capacity` is not an integer >= 1 or `overflow`
   * is not a policy.
   */
  constructor(options: AsyncQueueOptions) {
    const { capacity, overflow = "block" } = options ?? {};
    if (!Number.isInteger(capacity) || capacity < 1) {
      throw new RangeError(
        `Cannot create the queue as 'capacity' must be an integer >= 1: current value is ${
          show(capacity)
        }`,
      );
    }
    if (!POLICIES.includes(overflow)) {
      throw new RangeError(
        `Cannot create the queue as 'overflow' must be one of ${
          POLICIES.map((policy) => `"${policy}"`).join(", ")
        }: current value is ${show(overflow)}`,
      );
    }
    this.#capacity = capacity;
    this.#overflow = overflow;
    this.#buffer = new Array(Math.min(capacity, 16));
  }

  /** How many items the queue holds at most. */
  get capacity(): number {
    return this.#capacity;
  }

  /** What a push does when the queue is full. */
  get overflow(): OverflowPolicy {
    return this.#overflow;
  }

  /** How many items are queued now (not counting blocked producers' items). */
  get size(): number {
    return this.#size;
  }

  /**
   * How many items the `"drop-oldest"` and `"drop-newest"` policies have
   * discarded (through {@linkcode AsyncQueue.push} or
   * {@linkcode AsyncQueue.tryPush}).
   */
  get dropped(): number {
    return this.#dropped;
  }

  /** Whether {@linkcode AsyncQueue.close} or {@linkcode AsyncQueue.fail} was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Adds an item. If a consumer is waiting it gets the item at once. When the
   * queue is full, the overflow policy decides: `"block"` waits for room
   * (first come, first served among blocked producers); `"drop-oldest"`
   * evicts the oldest item and queues this one; `"drop-newest"` discards this
   * one; `"error"` rejects with a {@linkcode QueueOverflowError}. Except with
   * `"block"`, the promise settles at once.
   *
   * Rejects with {@linkcode QueueClosedError} if the queue is closed, or is
   * closed while the push waits; with `signal.reason` if the signal is
   * aborted before the item is queued (a blocked item is then withdrawn).
   *
   * @param item The item to add.
   * @param options A signal to give up waiting.
   * @returns A promise that resolves once the policy has been applied.
   * @throws {TypeError} When `signal` is not an AbortSignal.
   */
  push(item: T, options: AsyncQueueWaitOptions = {}): Promise<void> {
    const { signal } = options;
    checkSignal("push to the queue", signal);
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.#closed) return Promise.reject(this.#closedError());
    if (this.#accept(item)) return RESOLVED;
    switch (this.#overflow) {
      case "drop-oldest":
        this.#replaceOldest(item);
        return RESOLVED;
      case "drop-newest":
        this.#dropped++;
        return RESOLVED;
      case "error":
        return Promise.reject(new QueueOverflowError(this.#capacity));
    }
    return waitIn<void, Producer<T>>(
      this.#producers,
      signal,
      (resolve, reject) => ({ item, resolve, reject }),
    );
  }

  /**
   * Adds an item without waiting.
   *
   * @param item The item to add.
   * @returns `true` when the item was queued or handed to a consumer (always,
   * when there is room, and under `"drop-oldest"`); `false` when the queue is
   * closed, or full under `"block"` or `"drop-newest"` (the latter counts the
   * item in {@linkcode AsyncQueue.dropped}).
   * @throws {QueueOverflowError} When the queue is full under `"error"`.
   */
  tryPush(item: T): boolean {
    if (this.#closed) return false;
    if (this.#accept(item)) return true;
    switch (this.#overflow) {
      case "drop-oldest":
        this.#replaceOldest(item);
        return true;
      case "drop-newest":
        this.#dropped++;
        return false;
      case "error":
        throw new QueueOverflowError(this.#capacity);
    }
    return false;
  }

  /**
   * Takes the next item, waiting for one if the queue is empty. Resolves
   * `{ done: true }` once the queue is closed and drained; rejects with the
   * error given to {@linkcode AsyncQueue.fail} once it has failed, or with
   * `signal.reason` when the signal is aborted before an item arrives.
   *
   * @param options A signal to give up waiting.
   * @returns The next item as an iterator result.
   * @throws {TypeError} When `signal` is not an AbortSignal.
   */
  shift(options: AsyncQueueWaitOptions = {}): Promise<IteratorResult<T>> {
    const { signal } = options;
    checkSignal("shift from the queue", signal);
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.#size > 0) return Promise.resolve({ done: false, value: this.#take() });
    if (this.#failure !== undefined) return Promise.reject(this.#failure.error);
    if (this.#closed) return Promise.resolve(DONE);
    return waitIn<IteratorResult<T>, Waiter<IteratorResult<T>>>(
      this.#consumers,
      signal,
      (resolve, reject) => ({ resolve, reject }),
    );
  }

  /**
   * Closes the queue: pushes are refused from now on and blocked producers
   * reject with {@linkcode QueueClosedError}; consumers still get every queued
   * item, then `{ done: true }`. Does nothing if the queue is already closed
   * or failed.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const producer of this.#producers.drain()) producer.reject(this.#closedError());
    for (const consumer of this.#consumers.drain()) consumer.resolve(DONE);
  }

  /**
   * Closes the queue with an error, at once: queued items are discarded (not
   * counted in {@linkcode AsyncQueue.dropped}), waiting and later consumers
   * reject with `error`, and blocked and later producers reject with a
   * {@linkcode QueueClosedError} whose `cause` is `error`. Does nothing if
   * the queue is already closed or failed.
   *
   * @param error What consumers should see.
   */
  fail(error: unknown): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#failure = { error };
    this.#buffer = [];
    this.#head = 0;
    this.#size = 0;
    for (const producer of this.#producers.drain()) producer.reject(this.#closedError());
    for (const consumer of this.#consumers.drain()) consumer.reject(error);
  }

  /**
   * Iterates over the items until the queue is closed and drained (or
   * throws the error it failed with). Each call returns a new iterator; all of
   * them share the queue, so each item goes to one of them. Leaving the loop
   * early (`break`, `return`, an exception) ends that iterator only: it does
   * not close the queue.
   *
   * @returns An iterator over the items.
   */
  [Symbol.asyncIterator](): AsyncIterableIterator<T> {
    let finished = false;
    const iterator: AsyncIterableIterator<T> = {
      next: () => finished ? Promise.resolve(DONE) : this.shift(),
      return: () => {
        finished = true;
        return Promise.resolve(DONE);
      },
      [Symbol.asyncIterator]: () => iterator,
    };
    return iterator;
  }

  /** Closes the queue ({@linkcode AsyncQueue.close}), for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    this.close();
    return RESOLVED;
  }

  #closedError(): QueueClosedError {
    return this.#failure === undefined
      ? new QueueClosedError()
      : new QueueClosedError({ cause: this.#failure.error });
  }

  /** Hands the item to a waiting consumer, or queues it if there is room. */
  #accept(item: T): boolean {
    const consumer = this.#consumers.shift();
    if (consumer !== undefined) {
      consumer.resolve({ done: false, value: item });
      return true;
    }
    if (this.#size < this.#capacity) {
      this.#enqueue(item);
      return true;
    }
    return false;
  }

  #replaceOldest(item: T): void {
    this.#dequeue();
    this.#dropped++;
    this.#enqueue(item);
  }

  /** Takes the oldest item and lets the first blocked producer in. */
  #take(): T {
    const item = this.#dequeue();
    const producer = this.#producers.shift();
    if (producer !== undefined) {
      this.#enqueue(producer.item);
      producer.resolve();
    }
    return item;
  }

  #enqueue(item: T): void {
    let length = this.#buffer.length;
    if (this.#size === length) {
      // Only reached below capacity: grow by doubling, up to the capacity.
      const grown: (T | undefined)[] = new Array(
        Math.min(this.#capacity, Math.max(16, length * 2)),
      );
      for (let i = 0; i < this.#size; i++) {
        grown[i] = this.#buffer[(this.#head + i) % length];
      }
      this.#buffer = grown;
      this.#head = 0;
      length = grown.length;
    }
    let tail = this.#head + this.#size;
    if (tail >= length) tail -= length;
    this.#buffer[tail] = item;
    this.#size++;
  }

  #dequeue(): T {
    const item = this.#buffer[this.#head] as T;
    this.#buffer[this.#head] = undefined;
    this.#head = this.#head + 1 === this.#buffer.length ? 0 : this.#head + 1;
    this.#size--;
    return item;
  }
}

// ---------------------------------------------------------------------------
// Internals
// ---------------------------------------------------------------------------

interface WaitNode<W> {
  readonly value: W;
  prev: WaitNode<W> | undefined;
  next: WaitNode<W> | undefined;
  linked: boolean;
}

/** A doubly linked FIFO list: O(1) push, shift and removal of any node. */
class WaitList<W> {
  #head: WaitNode<W> | undefined;
  #tail: WaitNode<W> | undefined;

  push(value: W): WaitNode<W> {
    const node: WaitNode<W> = { value, prev: this.#tail, next: undefined, linked: true };
    if (this.#tail === undefined) this.#head = node;
    else this.#tail.next = node;
    this.#tail = node;
    return node;
  }

  shift(): W | undefined {
    const node = this.#head;
    if (node === undefined) return undefined;
    this.remove(node);
    return node.value;
  }

  remove(node: WaitNode<W>): void {
    if (!node.linked) return;
    node.linked = false;
    if (node.prev === undefined) this.#head = node.next;
    else node.prev.next = node.next;
    if (node.next === undefined) this.#tail = node.prev;
    else node.next.prev = node.prev;
    node.prev = undefined;
    node.next = undefined;
  }

  /** Empties the list and returns what it held, in order. */
  drain(): W[] {
    const values: W[] = [];
    for (let value = this.shift(); value !== undefined; value = this.shift()) values.push(value);
    return values;
  }
}

/**
 * Waits in `list` until an entry made by `make` is settled by its owner, or
 * until `signal` aborts, which withdraws the entry and rejects with the reason.
 * The abort listener is removed whichever way the wait ends.
 */
function waitIn<R, W extends Waiter<R>>(
  list: WaitList<W>,
  signal: AbortSignal | undefined,
  make: (resolve: (value: R) => void, reject: (error: unknown) => void) => W,
): Promise<R> {
  return new Promise<R>((resolve, reject) => {
    if (signal === undefined) {
      list.push(make(resolve, reject));
      return;
    }
    const onAbort = () => {
      list.remove(node);
      reject(signal.reason);
    };
    const node = list.push(make(
      (value) => {
        signal.removeEventListener("abort", onAbort);
        resolve(value);
      },
      (error) => {
        signal.removeEventListener("abort", onAbort);
        reject(error);
      },
    ));
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

function checkDelay(operation: string, name: string, value: number): void {
  if (typeof value !== "number" || !(value >= 0 && value <= MAX_DELAY_MS)) {
    throw new RangeError(
      `Cannot ${operation} as '${name}' must be a number in 0..${MAX_DELAY_MS}: current value is ${
        show(value)
      }`,
    );
  }
}

function checkSignal(operation: string, signal: unknown): void {
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    throw new TypeError(
      `Cannot ${operation} as 'signal' must be an AbortSignal: current value is ${show(signal)}`,
    );
  }
}

function checkScheduler(operation: string, scheduler: unknown): void {
  const candidate = scheduler as Partial<Scheduler> | null | undefined;
  if (
    typeof candidate?.setTimeout !== "function" || typeof candidate?.clearTimeout !== "function"
  ) {
    throw new TypeError(
      `Cannot ${operation} as 'scheduler' must have setTimeout and clearTimeout methods: current value is ${
        show(scheduler)
      }`,
    );
  }
}

function checkFunction(operation: string, name: string, value: unknown): void {
  if (typeof value !== "function") {
    throw new TypeError(
      `Cannot ${operation} as '${name}' must be a function: current value is ${show(value)}`,
    );
  }
}

function messageOf(error: unknown): string {
  if (error instanceof Error) return error.message;
  return typeof error === "string" ? error : show(error);
}
