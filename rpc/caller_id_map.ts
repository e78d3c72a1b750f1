/**
 * {@linkcode CallerIdMap}: one value per caller, created on first use, with
 * removal and an optional size bound.
 *
 * @module
 */

import { CallerId } from "./caller_id.ts";
import { show } from "./_show.ts";

/** Options for {@linkcode CallerIdMap}. */
export interface CallerIdMapOptions<V> {
  /**
   * The most entries the map holds (an integer >= 1). Adding one more evicts
   * the entry created longest ago and passes it to `onEvict`.
   *
   * @default {Infinity} (remove entries with {@linkcode CallerIdMap.delete})
   */
  maxSize?: number;
  /**
   * Called with each entry evicted to respect `maxSize` (not with entries
   * removed by {@linkcode CallerIdMap.delete} or {@linkcode CallerIdMap.clear}),
   * for example to close what the value holds. If it throws, the error
   * propagates from the call that added the new entry, which stays added.
   *
   * @default {undefined}
   */
  onEvict?: (id: CallerId, value: V) => void;
}

/**
 * A map from caller ids to values, for per-caller state on a server.
 * {@linkcode CallerIdMap.getOrCreate} creates each caller's value exactly once.
 *
 * Unlike the Python `CallerIdMap`, which only ever grew, entries can be
 * removed ({@linkcode CallerIdMap.delete}, {@linkcode CallerIdMap.clear}) and
 * the map can be bounded (`maxSize`, evicting the oldest entry).
 *
 * Iteration goes over a snapshot taken when it starts, in creation order, so
 * the map may be changed inside the loop.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { CallerId, CallerIdMap } from "@tsercom/tsercom/rpc";
 *
 * const counters = new CallerIdMap<{ calls: number }>();
 * const id = CallerId.random();
 * counters.getOrCreate(id, () => ({ calls: 0 })).calls++;
 * counters.getOrCreate(id, () => ({ calls: 0 })).calls++;
 * assert.equal(counters.get(id)?.calls, 2);
 * assert(counters.delete(id));
 * assert.equal(counters.size, 0);
 * ```
 *
 * @typeParam V The values.
 */
export class CallerIdMap<V> implements Iterable<[CallerId, V]> {
  readonly #entries = new Map<string, [CallerId, V]>();
  readonly #creating = new Set<string>();
  readonly #maxSize: number;
  readonly #onEvict: ((id: CallerId, value: V) => void) | undefined;

  /**
   * Creates an empty map.
   *
   * @param options The size bound and what to do with evicted entries.
   * @throws {RangeError} When `maxSize` is not an integer >= 1 (or Infinity).
   * @throws {TypeError} When `onEvict` is not a function.
   */
  constructor(options: CallerIdMapOptions<V> = {}) {
    const { maxSize = Infinity, onEvict } = options ?? {};
    if (!(maxSize === Infinity || (Number.isInteger(maxSize) && maxSize >= 1))) {
      throw new RangeError(
        `Cannot create a CallerIdMap as 'maxSize' must be an integer >= 1 or Infinity: current value is ${
          show(maxSize)
        }`,
      );
    }
    if (onEvict !== undefined && typeof onEvict !== "function") {
      throw new TypeError(
        `Cannot create a CallerIdMap as 'onEvict' must be a function: current value is ${
          show(onEvict)
        }`,
      );
    }
    this.#maxSize = maxSize;
    this.#onEvict = onEvict;
  }

  /** How many callers have a value. */
  get size(): number {
    return this.#entries.size;
  }

  /**
   * Returns the caller's value, creating and storing it first if there is
   * none. `create` runs at most once per caller (until the entry is removed);
   * if it throws, nothing is stored and the error propagates.
   *
   * @param id The caller.
   * @param create Makes the caller's value.
   * @returns The caller's value.
   * @throws {TypeError} When `id` is not a CallerId or `create` is not a function.
   * @throws {Error} When `create` asks for the same caller's value while creating it.
   */
  getOrCreate(id: CallerId, create: (id: CallerId) => V): V {
    const key = keyOf("get or create a value", id);
    const entry = this.#entries.get(key);
    if (entry !== undefined) return entry[1];
    if (typeof create !== "function") {
      throw new TypeError(
        `Cannot create a value as 'create' must be a function: current value is ${show(create)}`,
      );
    }
    if (this.#creating.has(key)) {
      throw new Error(
        `Cannot create the value of caller ${key} as its creation must not ask for it: it is being created`,
      );
    }
    this.#creating.add(key);
    let value: V;
    try {
      value = create(id);
    } finally {
      this.#creating.delete(key);
    }
    this.#entries.set(key, [id, value]);
    if (this.#entries.size > this.#maxSize) this.#evictOldest();
    return value;
  }

  /**
   * The caller's value, or `undefined` when it has none.
   *
   * @param id The caller.
   * @throws {TypeError} When `id` is not a CallerId.
   */
  get(id: CallerId): V | undefined {
    return this.#entries.get(keyOf("get a value", id))?.[1];
  }

  /**
   * Whether the caller has a value.
   *
   * @param id The caller.
   * @throws {TypeError} When `id` is not a CallerId.
   */
  has(id: CallerId): boolean {
    return this.#entries.has(keyOf("look up a caller", id));
  }

  /**
   * Removes the caller's value (`onEvict` is not called).
   *
   * @param id The caller.
   * @returns Whether there was a value to remove.
   * @throws {TypeError} When `id` is not a CallerId.
   */
  delete(id: CallerId): boolean {
    return this.#entries.delete(keyOf("delete a value", id));
  }

  /** Removes every value (`onEvict` is not called). */
  clear(): void {
    this.#entries.clear();
  }

  /** The callers that have a value, in creation order (a snapshot). */
  keys(): IterableIterator<CallerId> {
    return Array.from(this.#entries.values(), ([id]) => id).values();
  }

  /** The values, in creation order (a snapshot). */
  values(): IterableIterator<V> {
    return Array.from(this.#entries.values(), ([, value]) => value).values();
  }

  /** The `[caller, value]` pairs, in creation order (a snapshot). */
  entries(): IterableIterator<[CallerId, V]> {
    return Array.from(this.#entries.values(), ([id, value]): [CallerId, V] => [id, value])
      .values();
  }

  /** The same as {@linkcode CallerIdMap.entries}. */
  [Symbol.iterator](): IterableIterator<[CallerId, V]> {
    return this.entries();
  }

  #evictOldest(): void {
    const [key, [id, value]] = this.#entries.entries().next().value!;
    this.#entries.delete(key);
    this.#onEvict?.(id, value);
  }
}

function keyOf(operation: string, id: CallerId): string {
  if (!(id instanceof CallerId)) {
    throw new TypeError(
      `Cannot ${operation} as 'id' must be a CallerId: current value is ${show(id)}`,
    );
  }
  return id.toString();
}
