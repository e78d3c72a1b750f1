/**
 * {@linkcode CallerIdWaiter}: a caller id that is set once and can be awaited
 * until then.
 *
 * @module
 */

import { CallerId } from "./caller_id.ts";
import { show } from "./_show.ts";

/** Options for {@linkcode CallerIdWaiter.wait}. */
export interface CallerIdWaiterWaitOptions {
  /**
   * Stops waiting: the promise rejects with `signal.reason`. Use
   * `AbortSignal.timeout(ms)` for a time limit.
   *
   * @default {undefined}
   */
  signal?: AbortSignal;
}

/**
 * Holds a caller id that arrives later (for example from a
 * {@linkcode ClientIdFetcher} or the first message of a stream): it is set
 * once, and anyone may wait for it.
 *
 * Unlike the Python `CallerIdentifierWaiter`, whose wait could block forever,
 * {@linkcode CallerIdWaiter.wait} takes an abort signal.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { CallerId, CallerIdWaiter } from "@tsercom/tsercom/rpc";
 *
 * const waiter = new CallerIdWaiter();
 * const waiting = waiter.wait();
 * const id = CallerId.random();
 * waiter.set(id);
 * assert.equal(await waiting, id);
 * assert.throws(() => waiter.set(id), /already set/);
 * ```
 */
export class CallerIdWaiter {
  #id: CallerId | null = null;
  readonly #resolved: Promise<CallerId>;
  #resolve!: (id: CallerId) => void;

  /** Creates a waiter with no id yet. */
  constructor() {
    this.#resolved = new Promise<CallerId>((resolve) => this.#resolve = resolve);
  }

  /** The id, or `null` until {@linkcode CallerIdWaiter.set} is called. */
  get id(): CallerId | null {
    return this.#id;
  }

  /** Whether the id has been set. */
  get hasId(): boolean {
    return this.#id !== null;
  }

  /**
   * Sets the id and wakes everyone waiting for it.
   *
   * @param id The caller id.
   * @throws {TypeError} When `id` is not a CallerId.
   * @throws {Error} When the id was set already, even to the same id.
   */
  set(id: CallerId): void {
    if (!(id instanceof CallerId)) {
      throw new TypeError(
        `Cannot set the caller id as 'id' must be a CallerId: current value is ${show(id)}`,
      );
    }
    if (this.#id !== null) {
      throw new Error(
        `Cannot set the caller id to ${id} as it must be set only once: it is already set to ${this.#id}`,
      );
    }
    this.#id = id;
    this.#resolve(id);
  }

  /**
   * Resolves to the id once it is set (at once if it is).
   *
   * @param options A signal to stop waiting.
   * @returns The id.
   * @throws {TypeError} When `signal` is not an AbortSignal.
   */
  wait(options: CallerIdWaiterWaitOptions = {}): Promise<CallerId> {
    const { signal } = options ?? {};
    if (signal !== undefined && !(signal instanceof AbortSignal)) {
      throw new TypeError(
        `Cannot wait for the caller id as 'signal' must be an AbortSignal: current value is ${
          show(signal)
        }`,
      );
    }
    if (this.#id !== null) return Promise.resolve(this.#id);
    if (signal === undefined) return this.#resolved;
    if (signal.aborted) return Promise.reject(signal.reason);
    return new Promise<CallerId>((resolve, reject) => {
      const onAbort = () => reject(signal.reason);
      signal.addEventListener("abort", onAbort, { once: true });
      this.#resolved.then((id) => {
        signal.removeEventListener("abort", onAbort);
        resolve(id);
      });
    });
  }
}
