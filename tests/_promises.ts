/**
 * Promise helpers for deterministic tests (no timers).
 *
 * @module
 */

/**
 * Lets pending promise reactions run, without timers.
 *
 * @param turns How many microtask turns to let pass.
 */
export async function flush(turns = 20): Promise<void> {
  for (let i = 0; i < turns; i++) await Promise.resolve();
}

/** How a promise has settled so far. */
export interface Observed<T> {
  /** Whether it has settled, and how. */
  status: "pending" | "fulfilled" | "rejected";
  /** Its value, once fulfilled. */
  value?: T;
  /** Its reason, once rejected. */
  reason?: unknown;
}

/**
 * Records how a promise settles, so that a test can check it has not settled yet.
 *
 * @param promise The promise.
 * @returns The record, updated as the promise settles.
 */
export function observe<T>(promise: Promise<T>): Observed<T> {
  const observed: Observed<T> = { status: "pending" };
  promise.then(
    (value) => {
      observed.status = "fulfilled";
      observed.value = value;
    },
    (reason) => {
      observed.status = "rejected";
      observed.reason = reason;
    },
  );
  return observed;
}
