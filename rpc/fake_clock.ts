/**
 * A clock that only moves when told to, for tests.
 *
 * @module
 */

import type { SynchronizedClock } from "./synchronized_clock.ts";

/** Options for {@linkcode FakeClock}. */
export interface FakeClockOptions {
  /**
   * The local time the clock starts at, in microseconds since the Unix epoch.
   *
   * @default {0}
   */
  startMicros?: number;
  /**
   * The offset from local to synchronised time, in microseconds
   * (`synced = local + offset`).
   *
   * @default {0}
   */
  offsetMicros?: number;
}

/**
 * A {@linkcode SynchronizedClock} whose local time changes only through
 * {@linkcode FakeClock.set} and {@linkcode FakeClock.advance}, and whose offset
 * to synchronised time is settable. Inject it wherever a clock is taken so that
 * tests never sleep.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { FakeClock } from "@tsercom/tsercom/rpc";
 *
 * const clock = new FakeClock({ startMicros: 1_000, offsetMicros: 10 });
 * clock.advance(500);
 * assert(clock.localNow() === 1_500);
 * assert(clock.now() === 1_510);
 * assert(clock.desync(clock.now()) === 1_500);
 * ```
 */
export class FakeClock implements SynchronizedClock {
  #local: number;
  #offset: number;

  /**
   * Creates a clock stopped at `options.startMicros`.
   *
   * @param options When the clock starts and its offset.
   * @throws {RangeError} When a value is not a safe integer.
   */
  constructor(options: FakeClockOptions = {}) {
    this.#local = checkMicros("startMicros", options.startMicros ?? 0);
    this.#offset = checkMicros("offsetMicros", options.offsetMicros ?? 0);
  }

  /** The offset from local to synchronised time, in microseconds. */
  get offsetMicros(): number {
    return this.#offset;
  }

  /** Sets the offset from local to synchronised time, in microseconds. */
  set offsetMicros(value: number) {
    this.#offset = checkMicros("offsetMicros", value);
  }

  /** The current local time, in microseconds since the Unix epoch. */
  localNow(): number {
    return this.#local;
  }

  /** The current synchronised time: local time plus the offset. */
  now(): number {
    return this.#local + this.#offset;
  }

  /** Converts local to synchronised time by adding the offset. */
  sync(localMicros: number): number {
    return localMicros + this.#offset;
  }

  /** Converts synchronised to local time by subtracting the offset. */
  desync(syncedMicros: number): number {
    return syncedMicros - this.#offset;
  }

  /**
   * Sets the local time. It may go backwards, to test how code copes.
   *
   * @param localMicros The new local time in microseconds since the Unix epoch.
   * @throws {RangeError} When `localMicros` is not a safe integer.
   */
  set(localMicros: number): void {
    this.#local = checkMicros("localMicros", localMicros);
  }

  /**
   * Moves local time forward (or back, with a negative value).
   *
   * @param deltaMicros Microseconds to add to local time.
   * @throws {RangeError} When `deltaMicros` or the result is not a safe integer.
   */
  advance(deltaMicros: number): void {
    checkMicros("deltaMicros", deltaMicros);
    this.#local = checkMicros("localMicros", this.#local + deltaMicros);
  }
}

function checkMicros(name: string, value: number): number {
  if (!Number.isSafeInteger(value)) {
    throw new RangeError(
      `Cannot set the fake clock as '${name}' must be a safe integer: current value is ${value}`,
    );
  }
  return value;
}
