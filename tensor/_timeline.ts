/**
 * A timestamp-ordered store with binary search and a sliding data window,
 * shared by the multiplexers and demuxers (private).
 *
 * @module
 */

/**
 * Entries ordered by integer-microsecond timestamp, at most one per
 * timestamp. Most inserts are appends; pruning removes a prefix.
 */
export class Timeline<T> {
  #times: number[] = [];
  #values: T[] = [];

  /** The number of entries. */
  get length(): number {
    return this.#times.length;
  }

  /** The timestamps, ascending: the live array, for hot loops; never write it. */
  get times(): readonly number[] {
    return this.#times;
  }

  /** The values in timestamp order: the live array, for hot loops; never write it. */
  get values(): readonly T[] {
    return this.#values;
  }

  /** The timestamp of entry `i`. */
  timeAt(i: number): number {
    return this.#times[i];
  }

  /** The value of entry `i`. */
  valueAt(i: number): T {
    return this.#values[i];
  }

  /** Replaces the value of entry `i`. */
  setValueAt(i: number, value: T): void {
    this.#values[i] = value;
  }

  /** The leftmost index whose timestamp is `>= ts` (the insertion point). */
  lowerBound(ts: number): number {
    const times = this.#times;
    let lo = 0;
    let hi = times.length;
    // Fast paths: appends, and more data for the newest entry.
    if (hi === 0 || times[hi - 1] < ts) return hi;
    if (times[hi - 1] === ts) return hi - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (times[mid] < ts) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** The index of the entry at exactly `ts`, or -1. */
  indexOf(ts: number): number {
    const i = this.lowerBound(ts);
    return i < this.#times.length && this.#times[i] === ts ? i : -1;
  }

  /** The index of the last entry with timestamp `<= ts`, or -1. */
  indexAtOrBefore(ts: number): number {
    const i = this.lowerBound(ts);
    return i < this.#times.length && this.#times[i] === ts ? i : i - 1;
  }

  /** Inserts an entry at index `i` (which must keep the order). */
  insertAt(i: number, ts: number, value: T): void {
    if (i === this.#times.length) {
      this.#times.push(ts);
      this.#values.push(value);
    } else {
      this.#times.splice(i, 0, ts);
      this.#values.splice(i, 0, value);
    }
  }

  /**
   * Removes every entry whose timestamp is `< cutoff` and returns their
   * values, oldest first.
   */
  pruneBefore(cutoff: number): T[] {
    const n = this.lowerBound(cutoff);
    if (n === 0) return [];
    this.#times.splice(0, n);
    return this.#values.splice(0, n);
  }
}

/**
 * The data window both ends of a stream apply, symmetrically: the reference
 * is the newest timestamp seen so far (never the wall clock, never going
 * back); data older than `reference - timeoutMicros` is outside the window.
 */
export class DataWindow {
  readonly timeoutMicros: number;
  #reference = -Infinity;

  constructor(timeoutMicros: number) {
    this.timeoutMicros = timeoutMicros;
  }

  /** The newest timestamp seen, or -Infinity before any. */
  get reference(): number {
    return this.#reference;
  }

  /** The oldest timestamp still inside the window (-Infinity before any data). */
  get cutoff(): number {
    return this.#reference - this.timeoutMicros;
  }

  /** Whether `ts` is older than the window allows, given what has been seen so far. */
  isStale(ts: number): boolean {
    return ts < this.#reference - this.timeoutMicros;
  }

  /** Records `ts` as seen; returns the new cutoff. */
  observe(ts: number): number {
    if (ts > this.#reference) this.#reference = ts;
    return this.#reference - this.timeoutMicros;
  }
}
