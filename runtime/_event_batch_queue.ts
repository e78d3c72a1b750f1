/**
 * The per-caller event queue inside a runtime (private): bounded, with an
 * explicit overflow policy, handing its consumer everything queued as one
 * batch, at most one batch per `minIntervalMs` (the original's
 * `AsyncPoller` plus rate limiter, spec/runtime.md §12).
 *
 * @module
 */

import { type OverflowPolicy, QueueClosedError, QueueOverflowError } from "../rpc/_async.ts";
import type { Scheduler } from "../rpc/scheduler.ts";

/** Options for {@linkcode EventBatchQueue}. */
export interface EventBatchQueueOptions {
  /** How many items may wait (an integer >= 1). */
  capacity: number;
  /** What a push into a full queue does. */
  overflow: OverflowPolicy;
  /** The least time between the end of one batch and the next, ms; `null` for none. */
  minIntervalMs: number | null;
  /** The timers of the rate limit. */
  scheduler: Scheduler;
  /** The time the rate limit measures, in milliseconds. */
  now: () => number;
}

interface Blocked<T> {
  item: T;
  resolve(accepted: boolean): void;
  reject(error: unknown): void;
}

/**
 * A single-consumer batch queue. `push` follows the overflow policy;
 * `next` resolves with all queued items (waiting for the rate limit, then
 * for an item); after `close`, the queue is drained, then `next` gives
 * `undefined`.
 */
export class EventBatchQueue<T> {
  readonly #options: EventBatchQueueOptions;
  #items: T[] = [];
  #head = 0;
  readonly #blocked: Blocked<T>[] = [];
  #consumer: (() => void) | undefined;
  #sleeping: { handle: unknown; resolve(): void } | undefined;
  #closed = false;
  #lastBatchAt: number | undefined;
  #dropped = 0;
  #delivered = 0;

  /**
   * Creates the queue.
   *
   * @param options Capacity, policy, rate limit, timers.
   */
  constructor(options: EventBatchQueueOptions) {
    this.#options = options;
  }

  /** Items waiting (not counting blocked producers). */
  get size(): number {
    return this.#items.length - this.#head;
  }

  /** Items dropped by the overflow policy (or by closing under blocked producers). */
  get dropped(): number {
    return this.#dropped;
  }

  /** Items handed to the consumer. */
  get delivered(): number {
    return this.#delivered;
  }

  /** Whether {@linkcode EventBatchQueue.close} was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Queues an item.
   *
   * @param item The item.
   * @returns `true` when it was queued, `false` when it was dropped
   * (`"drop-newest"`, or the queue is closed); a promise under `"block"`
   * when the queue is full.
   * @throws {QueueOverflowError} Under `"error"` when the queue is full.
   */
  push(item: T): boolean | Promise<boolean> {
    if (this.#closed) {
      this.#dropped++;
      return false;
    }
    if (this.size < this.#options.capacity) {
      this.#enqueue(item);
      return true;
    }
    switch (this.#options.overflow) {
      case "drop-oldest":
        this.#head++;
        this.#dropped++;
        // Let go of the evicted items: without a reader the array would grow forever.
        if (this.#head >= this.#options.capacity) {
          this.#items = this.#items.slice(this.#head);
          this.#head = 0;
        }
        this.#enqueue(item);
        return true;
      case "drop-newest":
        this.#dropped++;
        return false;
      case "error":
        throw new QueueOverflowError(this.#options.capacity);
      case "block":
        return new Promise((resolve, reject) => this.#blocked.push({ item, resolve, reject }));
    }
  }

  /**
   * Takes every queued item, after the rate limit and once there is one.
   *
   * @param signal Gives up waiting (rejects with its reason).
   * @returns The batch, oldest first, or `undefined` once closed and empty.
   */
  async next(signal?: AbortSignal): Promise<T[] | undefined> {
    signal?.throwIfAborted();
    const interval = this.#options.minIntervalMs;
    // Once closed, the rest is handed out at once (as `close` does for a waiting consumer).
    if (interval !== null && this.#lastBatchAt !== undefined && !this.#closed) {
      const wait = this.#lastBatchAt + interval - this.#options.now();
      if (wait > 0) await this.#sleep(wait, signal);
    }
    while (this.size === 0 && this.#blocked.length === 0) {
      if (this.#closed) return undefined;
      await this.#waitForItem(signal);
    }
    const batch = this.#items.slice(this.#head);
    this.#items = [];
    this.#head = 0;
    // Blocked producers move in, in order, up to the capacity (they waited for room).
    while (this.#blocked.length > 0 && this.size < this.#options.capacity) {
      const producer = this.#blocked.shift()!;
      this.#items.push(producer.item);
      producer.resolve(true);
    }
    if (batch.length === 0) {
      // Capacity 0 cannot happen (>= 1); an empty batch only when producers just moved in.
      return this.next(signal);
    }
    this.#delivered += batch.length;
    this.#lastBatchAt = this.#options.now();
    return batch;
  }

  /**
   * Ends the queue: queued items are still handed out, then `next` gives
   * `undefined`. Blocked producers are refused (their items dropped).
   * Idempotent.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const producer of this.#blocked.splice(0)) {
      this.#dropped++;
      producer.reject(new QueueClosedError());
    }
    // A consumer waiting for the rate limit gets the rest at once.
    if (this.#sleeping !== undefined) {
      this.#options.scheduler.clearTimeout(this.#sleeping.handle);
      this.#sleeping.resolve();
    }
    this.#wake();
  }

  #enqueue(item: T): void {
    this.#items.push(item);
    this.#wake();
  }

  #wake(): void {
    const consumer = this.#consumer;
    this.#consumer = undefined;
    consumer?.();
  }

  #waitForItem(signal: AbortSignal | undefined): Promise<void> {
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        this.#consumer = undefined;
        reject(signal!.reason);
      };
      this.#consumer = () => {
        signal?.removeEventListener("abort", onAbort);
        resolve();
      };
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  #sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
    const { scheduler } = this.#options;
    return new Promise((resolve, reject) => {
      const done = () => {
        this.#sleeping = undefined;
        signal?.removeEventListener("abort", onAbort);
      };
      const onAbort = () => {
        scheduler.clearTimeout(handle);
        done();
        reject(signal!.reason);
      };
      const handle = scheduler.setTimeout(() => {
        done();
        resolve();
      }, ms);
      this.#sleeping = {
        handle,
        resolve: () => {
          done();
          resolve();
        },
      };
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }
}
