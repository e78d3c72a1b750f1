/**
 * Small assertion helpers for the test suite (JSR's @std/assert is not
 * reachable from our build machines). Thin wrappers over `node:assert/strict`
 * with the signatures the tests use.
 *
 * @module
 */

import nodeAssert from "node:assert/strict";

/** Asserts that `condition` is truthy. */
export function assert(condition: unknown, message?: string): asserts condition {
  if (message === undefined) nodeAssert.ok(condition);
  else nodeAssert.ok(condition, message);
}

/** Asserts deep strict equality. */
export function assertEquals<T>(
  actual: unknown,
  expected: T,
  message?: string,
): asserts actual is T {
  if (message === undefined) nodeAssert.deepStrictEqual(actual, expected);
  else nodeAssert.deepStrictEqual(actual, expected, message);
}

/** Asserts deep strict inequality. */
export function assertNotEquals(actual: unknown, expected: unknown, message?: string): void {
  if (message === undefined) nodeAssert.notDeepStrictEqual(actual, expected);
  else nodeAssert.notDeepStrictEqual(actual, expected, message);
}

/** Asserts that `fn` throws an instance of `ErrorClass` whose message includes `includes`. */
export function assertThrows<E extends Error>(
  fn: () => unknown,
  // deno-lint-ignore no-explicit-any
  ErrorClass: new (...args: any[]) => E,
  includes?: string,
): E {
  let thrown: unknown = undefined;
  let didThrow = false;
  try {
    fn();
  } catch (error) {
    thrown = error;
    didThrow = true;
  }
  if (!didThrow) throw new nodeAssert.AssertionError({ message: "Expected the function to throw" });
  if (!(thrown instanceof ErrorClass)) {
    throw new nodeAssert.AssertionError({
      message: `Expected ${ErrorClass.name} but got ${String(thrown)}`,
    });
  }
  if (includes !== undefined && !thrown.message.includes(includes)) {
    throw new nodeAssert.AssertionError({
      message: `Expected the message to include ${JSON.stringify(includes)} but got ${
        JSON.stringify(thrown.message)
      }`,
    });
  }
  return thrown;
}

/** Asserts that the promise rejects with an instance of `ErrorClass` whose message includes `includes`. */
export async function assertRejects<E extends Error>(
  fn: () => Promise<unknown>,
  // deno-lint-ignore no-explicit-any
  ErrorClass: new (...args: any[]) => E,
  includes?: string,
): Promise<E> {
  let thrown: unknown = undefined;
  let didThrow = false;
  try {
    await fn();
  } catch (error) {
    thrown = error;
    didThrow = true;
  }
  if (!didThrow) throw new nodeAssert.AssertionError({ message: "Expected the promise to reject" });
  if (!(thrown instanceof ErrorClass)) {
    throw new nodeAssert.AssertionError({
      message: `Expected ${ErrorClass.name} but got ${String(thrown)}`,
    });
  }
  if (includes !== undefined && !thrown.message.includes(includes)) {
    throw new nodeAssert.AssertionError({
      message: `Expected the message to include ${JSON.stringify(includes)} but got ${
        JSON.stringify(thrown.message)
      }`,
    });
  }
  return thrown;
}
