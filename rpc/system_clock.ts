/**
 * The real clock: monotonic, anchored to the Unix epoch once.
 *
 * @module
 */

import type { SynchronizedClock } from "./synchronized_clock.ts";

/**
 * This machine's clock as a {@linkcode SynchronizedClock} that maps local time
 * one to one: the clock of a time server, or of a process that is its own
 * time authority.
 *
 * It reads `performance.timeOrigin + performance.now()`, so it never jumps
 * when the operating system's clock is stepped (unlike `Date.now()`), and it
 * never goes backwards.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SystemClock } from "@tsercom/tsercom/rpc";
 *
 * const clock = new SystemClock();
 * const a = clock.now();
 * const b = clock.now();
 * assert(Number.isSafeInteger(a) && b >= a);
 * ```
 */
export class SystemClock implements SynchronizedClock {
  #originMicros = Math.round(performance.timeOrigin * 1000);
  #last = -Infinity;

  /** The current time in integer microseconds since the Unix epoch. */
  now(): number {
    const value = this.#originMicros + Math.floor(performance.now() * 1000);
    // performance.now() is monotonic; the guard keeps that true after rounding.
    if (value > this.#last) this.#last = value;
    return this.#last;
  }

  /** Returns `localMicros` unchanged: local and synchronised time are the same. */
  sync(localMicros: number): number {
    return localMicros;
  }

  /** Returns `syncedMicros` unchanged: local and synchronised time are the same. */
  desync(syncedMicros: number): number {
    return syncedMicros;
  }
}
