/**
 * A client's view of a time server's clock: local time plus a measured
 * offset, corrected without ever running backwards.
 *
 * @module
 */

import { show } from "./_show.ts";
import type { SynchronizedClock } from "./synchronized_clock.ts";
import { SystemClock } from "./system_clock.ts";

/** Options of {@linkcode ClientSynchronizedClock}. */
export interface ClientSynchronizedClockOptions {
  /**
   * This machine's clock (only `now()` is used).
   *
   * @default {new SystemClock()}
   */
  local?: Pick<SynchronizedClock, "now">;
  /**
   * How fast a backward correction is slewed in, as a fraction of elapsed
   * time, in (0, 1): 0.05 lets synchronised time run at 95 % speed until it
   * has caught up, so a 10 ms correction takes 200 ms.
   *
   * @default {0.05}
   */
  maxSlewRate?: number;
}

/**
 * Maps local time to a time server's time: `synced = local + offset`
 * (`offset` positive when this machine is behind, as NTP defines it).
 *
 * How a new offset is applied, so that {@linkcode ClientSynchronizedClock.now}
 * never goes backwards:
 *
 * - the first offset (from an unsynchronised clock, which reads local time)
 *   is applied at once, whatever its sign;
 * - a larger offset is applied at once: synchronised time jumps forward;
 * - a smaller offset is slewed in: the applied offset falls linearly at
 *   `maxSlewRate` per unit of local time until it reaches the new value, so
 *   synchronised time runs slower for a while but never decreases.
 *
 * {@linkcode ClientSynchronizedClock.sync} and
 * {@linkcode ClientSynchronizedClock.desync} use the offset as it is applied
 * at the given local time (times before the latest correction use the offset
 * it started from), so they are each other's inverse, to within a
 * microsecond of rounding.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ClientSynchronizedClock } from "@tsercom/tsercom/rpc";
 *
 * let local = 1_000_000;
 * const clock = new ClientSynchronizedClock({ local: { now: () => local }, maxSlewRate: 0.1 });
 * clock.setOffset(5_000); // the first estimate applies at once
 * assert.equal(clock.now(), 1_005_000);
 * clock.setOffset(4_000); // 1 ms back: slewed over 10 ms of local time
 * local += 5_000;
 * assert.equal(clock.now(), 1_009_500);
 * local += 5_000;
 * assert.equal(clock.now(), 1_014_000);
 * ```
 */
export class ClientSynchronizedClock implements SynchronizedClock {
  readonly #local: Pick<SynchronizedClock, "now">;
  readonly #rate: number;
  #synchronized = false;
  /** Local time at which the current correction started. */
  #start = 0;
  /** The applied offset at (and before) #start. */
  #from = 0;
  /** The offset the correction moves to. */
  #to = 0;

  /**
   * Creates an unsynchronised clock: until the first
   * {@linkcode ClientSynchronizedClock.setOffset}, it reads local time.
   *
   * @param options The local clock and the slew rate.
   * @throws {RangeError} When `maxSlewRate` is not in (0, 1).
   * @throws {TypeError} When `local` has no `now()`.
   */
  constructor(options: ClientSynchronizedClockOptions = {}) {
    const { local = new SystemClock(), maxSlewRate = 0.05 } = options;
    if (local === null || typeof local !== "object" || typeof local.now !== "function") {
      throw new TypeError(
        `Cannot create the clock as 'local' must have a now() method: current value is ${
          show(local)
        }`,
      );
    }
    if (!(typeof maxSlewRate === "number" && maxSlewRate > 0 && maxSlewRate < 1)) {
      throw new RangeError(
        `Cannot create the clock as 'maxSlewRate' must be a number in (0, 1): current value is ${
          show(maxSlewRate)
        }`,
      );
    }
    this.#local = local;
    this.#rate = maxSlewRate;
  }

  /** Whether an offset has been set. */
  get synchronized(): boolean {
    return this.#synchronized;
  }

  /** The offset applied now, in microseconds (0 before the first estimate). */
  get offsetMicros(): number {
    return Math.floor(this.#offsetAt(this.#local.now()));
  }

  /** The offset being converged on, in microseconds (0 before the first estimate). */
  get targetOffsetMicros(): number {
    return this.#to;
  }

  /**
   * Sets the estimated offset (server minus local time, microseconds), to be
   * applied as the class documentation describes.
   *
   * @param offsetMicros The new estimate, a finite number.
   * @throws {RangeError} When it is not finite.
   */
  setOffset(offsetMicros: number): void {
    if (!Number.isFinite(offsetMicros)) {
      throw new RangeError(
        `Cannot set the clock's offset as it must be a finite number of microseconds: current value is ${
          show(offsetMicros)
        }`,
      );
    }
    const now = this.#local.now();
    const applied = this.#offsetAt(now);
    this.#start = now;
    this.#to = offsetMicros;
    this.#from = !this.#synchronized || offsetMicros >= applied ? offsetMicros : applied;
    this.#synchronized = true;
  }

  /** The server's time now, in microseconds since the Unix epoch. */
  now(): number {
    return this.sync(this.#local.now());
  }

  /**
   * Converts a local time to the server's time.
   *
   * @param localMicros Local microseconds since the Unix epoch.
   * @returns The server's time, microseconds since the Unix epoch.
   */
  sync(localMicros: number): number {
    return localMicros + Math.floor(this.#offsetAt(localMicros));
  }

  /**
   * Converts a server time back to local time; the inverse of
   * {@linkcode ClientSynchronizedClock.sync}.
   *
   * @param syncedMicros The server's microseconds since the Unix epoch.
   * @returns Local microseconds since the Unix epoch.
   */
  desync(syncedMicros: number): number {
    const from = this.#from;
    const to = this.#to;
    const start = this.#start;
    if (syncedMicros <= start + from || from <= to) return syncedMicros - from;
    const end = start + (from - to) / this.#rate; // local time the slew ends
    if (syncedMicros >= end + to) return syncedMicros - to;
    // On the slope: s = l + from - rate (l - start).
    return Math.round((syncedMicros - from - this.#rate * start) / (1 - this.#rate));
  }

  #offsetAt(local: number): number {
    const from = this.#from;
    const to = this.#to;
    if (local <= this.#start || from <= to) return from;
    return Math.max(to, from - this.#rate * (local - this.#start));
  }
}
