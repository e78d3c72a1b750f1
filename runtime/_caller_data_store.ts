/**
 * One caller's timestamp-ordered data, with the "new data" watermark
 * (private to {@linkcode RemoteDataAggregator}; the Python
 * `RemoteDataOrganizer` without its thread pool).
 *
 * @module
 */

import sortedBtree from "sorted-btree";

const BTree = sortedBtree.default;
type BTree<K, V> = InstanceType<typeof BTree<K, V>>;

/** A stored item with its arrival number, the tie-breaker for equal timestamps. */
export interface StoredEntry<I> {
  /** The item, as handed out by queries. */
  readonly item: I;
  /** When the item arrived, counted over the whole aggregator. */
  readonly seq: number;
}

/** What {@linkcode CallerDataStore.insert} did with an item. */
export interface InsertResult {
  /** Whether the item replaced one with the same timestamp (`dedupe` only). */
  readonly replaced: boolean;
  /**
   * Whether the item's timestamp is >= every timestamp stored before it came
   * (the Python organizer's "data available" rule, together with `replaced`).
   */
  readonly atOrAfterNewest: boolean;
}

/**
 * Items of one caller, sorted by timestamp and, within a timestamp, by arrival.
 * Keys are timestamps; each key holds the items of that timestamp in arrival
 * order (a single one when `dedupe` is set).
 */
export class CallerDataStore<I extends { readonly timestamp: number }> {
  readonly #tree: BTree<number, StoredEntry<I>[]> = new BTree<number, StoredEntry<I>[]>();
  readonly #dedupe: boolean;
  #size = 0;
  // The watermark: items whose (timestamp, seq) is above it are "new".
  #markTimestamp = -Infinity;
  #markSeq = -Infinity;

  constructor(dedupe: boolean) {
    this.#dedupe = dedupe;
  }

  /** How many items are stored. */
  get size(): number {
    return this.#size;
  }

  /** The smallest stored timestamp, or `undefined` when empty. */
  get oldestTimestamp(): number | undefined {
    return this.#tree.minKey();
  }

  /** Stores an item; see {@linkcode InsertResult}. */
  insert(item: I, seq: number): InsertResult {
    const newest = this.#tree.maxKey();
    const atOrAfterNewest = newest === undefined || item.timestamp >= newest;
    const bucket = this.#tree.get(item.timestamp);
    const entry = { item, seq };
    if (bucket === undefined) {
      this.#tree.set(item.timestamp, [entry]);
      this.#size++;
      return { replaced: false, atOrAfterNewest };
    }
    if (this.#dedupe) {
      bucket[0] = entry;
      return { replaced: true, atOrAfterNewest };
    }
    bucket.push(entry);
    this.#size++;
    return { replaced: false, atOrAfterNewest };
  }

  /** Whether the newest item is above the watermark. */
  hasNew(): boolean {
    const newest = this.#newestEntry();
    return newest !== undefined && this.#isNew(newest.item.timestamp, newest.seq);
  }

  /** Whether an item with this timestamp and arrival number would be new. */
  #isNew(timestamp: number, seq: number): boolean {
    return timestamp > this.#markTimestamp ||
      (timestamp === this.#markTimestamp && seq > this.#markSeq);
  }

  /**
   * The items above the watermark, newest first, then moves the watermark to
   * the newest of them.
   */
  takeNew(): I[] {
    const result: I[] = [];
    let first: StoredEntry<I> | undefined;
    for (const [timestamp, bucket] of this.#tree.entriesReversed()) {
      if (timestamp < this.#markTimestamp) break;
      for (let i = bucket.length - 1; i >= 0; i--) {
        const entry = bucket[i];
        if (!this.#isNew(timestamp, entry.seq)) continue;
        first ??= entry;
        result.push(entry.item);
      }
    }
    if (first !== undefined) {
      this.#markTimestamp = first.item.timestamp;
      this.#markSeq = first.seq;
    }
    return result;
  }

  /** The newest item (last to arrive at the largest timestamp), or `undefined`. */
  newest(): I | undefined {
    return this.#newestEntry()?.item;
  }

  /** The newest item with a timestamp <= `timestamp`, or `undefined`. */
  atOrBefore(timestamp: number): I | undefined {
    const pair = this.#tree.getPairOrNextLower(timestamp);
    return pair === undefined ? undefined : pair[1][pair[1].length - 1].item;
  }

  /** The newest item at the smallest timestamp >= `timestamp`, or `undefined`. */
  atOrAfter(timestamp: number): I | undefined {
    const pair = this.#tree.getPairOrNextHigher(timestamp);
    return pair === undefined ? undefined : pair[1][pair[1].length - 1].item;
  }

  /** Every item, oldest first (ties in arrival order). */
  *items(): IterableIterator<I> {
    for (const bucket of this.#tree.values()) {
      for (const entry of bucket) yield entry.item;
    }
  }

  /**
   * Drops every item with a timestamp < `cutoff`.
   *
   * @returns How many items were dropped.
   */
  dropBefore(cutoff: number): number {
    let dropped = 0;
    for (const bucket of this.#tree.values()) {
      // values() is ascending; stop at the first kept key.
      if (bucket[0].item.timestamp >= cutoff) break;
      dropped += bucket.length;
    }
    if (dropped > 0) {
      this.#tree.deleteRange(-Infinity, cutoff, false);
      this.#size -= dropped;
    }
    return dropped;
  }

  #newestEntry(): StoredEntry<I> | undefined {
    const key = this.#tree.maxKey();
    if (key === undefined) return undefined;
    const bucket = this.#tree.get(key)!;
    return bucket[bucket.length - 1];
  }
}
