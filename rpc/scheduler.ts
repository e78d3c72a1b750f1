/**
 * Timers behind an interface, so that everything time-based can be driven by
 * a test without sleeping: {@linkcode systemScheduler} uses the global timers,
 * {@linkcode ManualScheduler} moves only when told to.
 *
 * @module
 */

import { show } from "./_show.ts";

/** The longest delay the timers accept, in milliseconds (2^31 - 1, about 24.8 days). */
export const MAX_DELAY_MS = 2_147_483_647;

// ---------------------------------------------------------------------------
// Schedulers
// ---------------------------------------------------------------------------

/**
 * Runs callbacks after a delay. {@linkcode systemScheduler} uses the global
 * timers; {@linkcode ManualScheduler} moves only when a test tells it to.
 */
export interface Scheduler {
  /**
   * Runs `callback` once, `ms` milliseconds from now.
   *
   * @param callback What to run.
   * @param ms How long to wait, in milliseconds.
   * @returns A handle to pass to {@linkcode Scheduler.clearTimeout}.
   */
  setTimeout(callback: () => void, ms: number): unknown;
  /**
   * Cancels a timer. Clearing a timer that has fired or was cleared already
   * does nothing.
   *
   * @param handle What {@linkcode Scheduler.setTimeout} returned.
   */
  clearTimeout(handle: unknown): void;
}

/**
 * The {@linkcode Scheduler} that uses the global `setTimeout` and
 * `clearTimeout`: the default of every helper in this file.
 */
export const systemScheduler: Scheduler = Object.freeze({
  setTimeout(callback: () => void, ms: number): unknown {
    return globalThis.setTimeout(callback, ms);
  },
  clearTimeout(handle: unknown): void {
    globalThis.clearTimeout(handle as number);
  },
});

interface ManualTimer {
  readonly id: number;
  readonly due: number;
  readonly callback: () => void;
}

/**
 * A {@linkcode Scheduler} whose time moves only through
 * {@linkcode ManualScheduler.advance}, for deterministic tests that never
 * sleep. Time starts at 0 ms. Timers fire in order of due time, and in the
 * order they were set when due at the same time.
 *
 * A delay that is negative or NaN counts as 0, as with the global timers.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ManualScheduler } from "@tsercom/tsercom/rpc";
 *
 * const scheduler = new ManualScheduler();
 * const fired: number[] = [];
 * scheduler.setTimeout(() => fired.push(scheduler.now), 1_000);
 * assert.equal(scheduler.pending, 1);
 * scheduler.advance(999);
 * assert.deepEqual(fired, []);
 * scheduler.advance(1);
 * assert.deepEqual(fired, [1_000]);
 * assert.equal(scheduler.now, 1_000);
 * ```
 */
export class ManualScheduler implements Scheduler {
  #now = 0;
  #nextId = 1;
  readonly #timers = new Map<number, ManualTimer>();
  readonly #delays: number[] = [];
  #waiters: { count: number; resolve: () => void }[] = [];

  /** The current time of this scheduler, in milliseconds since it was created. */
  get now(): number {
    return this.#now;
  }

  /** How many timers are set and have neither fired nor been cleared. */
  get pending(): number {
    return this.#timers.size;
  }

  /**
   * Every delay ever passed to {@linkcode ManualScheduler.setTimeout}, in
   * order, after turning negative and NaN delays into 0 (a copy).
   */
  get delays(): number[] {
    return [...this.#delays];
  }

  /**
   * Milliseconds from now until the earliest pending timer is due, or
   * `undefined` when no timer is pending.
   */
  get nextIn(): number | undefined {
    const timer = this.#earliest();
    return timer === undefined ? undefined : timer.due - this.#now;
  }

  /**
   * Sets a timer that fires when time has moved `ms` milliseconds forward.
   *
   * @param callback What to run.
   * @param ms How long to wait, in milliseconds; negative or NaN means 0.
   * @returns A numeric handle for {@linkcode ManualScheduler.clearTimeout}.
   * @throws {TypeError} When `callback` is not a function.
   */
  setTimeout(callback: () => void, ms: number): number {
    if (typeof callback !== "function") {
      throw new TypeError(
        `Cannot set a timer as 'callback' must be a function: current value is ${show(callback)}`,
      );
    }
    const wait = ms > 0 ? ms : 0;
    const id = this.#nextId++;
    this.#timers.set(id, { id, due: this.#now + wait, callback });
    this.#delays.push(wait);
    this.#wake();
    return id;
  }

  /**
   * Cancels a timer; unknown, fired or cleared handles are ignored.
   *
   * @param handle What {@linkcode ManualScheduler.setTimeout} returned.
   */
  clearTimeout(handle: unknown): void {
    if (typeof handle === "number") this.#timers.delete(handle);
  }

  /**
   * Moves time forward by `ms` milliseconds, firing every timer that falls
   * due on the way in order, including timers set by those callbacks while
   * advancing. Each callback runs with {@linkcode ManualScheduler.now} at its
   * due time. Promise reactions do not run in between: `await` something
   * (for example {@linkcode ManualScheduler.whenPending}) to let them.
   *
   * If a callback throws, the error propagates and time stays at that
   * callback's due time; the remaining timers stay pending.
   *
   * @param ms How far to move, in milliseconds (finite, >= 0).
   * @returns How many timers fired.
   * @throws {RangeError} When `ms` is not a finite number >= 0.
   */
  advance(ms: number): number {
    if (typeof ms !== "number" || !Number.isFinite(ms) || ms < 0) {
      throw new RangeError(
        `Cannot advance the scheduler as 'ms' must be a finite number >= 0: current value is ${
          show(ms)
        }`,
      );
    }
    const target = this.#now + ms;
    let fired = 0;
    for (
      let timer = this.#earliest();
      timer !== undefined && timer.due <= target;
      timer = this.#earliest()
    ) {
      this.#timers.delete(timer.id);
      this.#now = timer.due;
      fired++;
      timer.callback();
    }
    this.#now = target;
    return fired;
  }

  /**
   * Moves time to the earliest pending timer and fires it, with every other
   * timer due at that same time.
   *
   * @returns How many timers fired: 0 when none was pending.
   */
  advanceToNext(): number {
    const timer = this.#earliest();
    return timer === undefined ? 0 : this.advance(timer.due - this.#now);
  }

  /**
   * Resolves once at least `count` timers are pending (at once if they are
   * already): the way for a test to wait, without sleeping, until the code
   * under test has reached its next wait.
   *
   * @param count How many pending timers to wait for (an integer >= 1).
   * @throws {RangeError} When `count` is not an integer >= 1.
   */
  whenPending(count = 1): Promise<void> {
    if (!Number.isInteger(count) || count < 1) {
      throw new RangeError(
        `Cannot wait for timers as 'count' must be an integer >= 1: current value is ${
          show(count)
        }`,
      );
    }
    if (this.#timers.size >= count) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push({ count, resolve }));
  }

  #earliest(): ManualTimer | undefined {
    // Map iteration follows insertion (= id) order, so ties keep set order.
    let earliest: ManualTimer | undefined;
    for (const timer of this.#timers.values()) {
      if (earliest === undefined || timer.due < earliest.due) earliest = timer;
    }
    return earliest;
  }

  #wake(): void {
    if (this.#waiters.length === 0) return;
    const pending = this.#timers.size;
    this.#waiters = this.#waiters.filter((waiter) => {
      if (pending < waiter.count) return true;
      waiter.resolve();
      return false;
    });
  }
}
