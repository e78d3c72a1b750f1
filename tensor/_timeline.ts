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
  // Live entries are #times[#head..] and #values[#head..]: pruning a prefix
  // moves #head (O(1)) and the arrays are compacted once the dead prefix is
  // as long as the live part, so each entry is moved O(1) times overall.
  #times: number[] = [];
  #values: T[] = [];
  #head = 0;

  /** The number of entries. */
  get length(): number {
    return this.#times.length - this.#head;
  }

  /**
   * Where entry 0 sits in {@linkcode Timeline.times} and
   * {@linkcode Timeline.values}: entry `i` is at `start + i`.
   */
  get start(): number {
    return this.#head;
  }

  /** The backing timestamps, ascending from `start`: the live array, for hot loops; never write it. */
  get times(): readonly number[] {
    return this.#times;
  }

  /** The backing values, in timestamp order from `start`: the live array, for hot loops; never write it. */
  get values(): readonly T[] {
    return this.#values;
  }

  /** The timestamp of entry `i`. */
  timeAt(i: number): number {
    return this.#times[this.#head + i];
  }

  /** The value of entry `i`. */
  valueAt(i: number): T {
    return this.#values[this.#head + i];
  }

  /** Replaces the value of entry `i`. */
  setValueAt(i: number, value: T): void {
    this.#values[this.#head + i] = value;
  }

  /** The leftmost index whose timestamp is `>= ts` (the insertion point). */
  lowerBound(ts: number): number {
    const times = this.#times;
    const head = this.#head;
    let lo = head;
    let hi = times.length;
    // Fast paths: appends, and more data for the newest entry.
    if (hi === head || times[hi - 1] < ts) return hi - head;
    if (times[hi - 1] === ts) return hi - 1 - head;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (times[mid] < ts) lo = mid + 1;
      else hi = mid;
    }
    return lo - head;
  }

  /** The index of the entry at exactly `ts`, or -1. */
  indexOf(ts: number): number {
    const i = this.lowerBound(ts);
    return i < this.length && this.timeAt(i) === ts ? i : -1;
  }

  /** The index of the last entry with timestamp `<= ts`, or -1. */
  indexAtOrBefore(ts: number): number {
    const i = this.lowerBound(ts);
    return i < this.length && this.timeAt(i) === ts ? i : i - 1;
  }

  /** Inserts an entry at index `i` (which must keep the order). */
  insertAt(i: number, ts: number, value: T): void {
    const at = this.#head + i;
    if (at === this.#times.length) {
      this.#times.push(ts);
      this.#values.push(value);
    } else {
      this.#times.splice(at, 0, ts);
      this.#values.splice(at, 0, value);
    }
  }

  /**
   * Removes every entry whose timestamp is `< cutoff` and returns their
   * values, oldest first.
   */
  pruneBefore(cutoff: number): T[] {
    const n = this.lowerBound(cutoff);
    if (n === 0) return [];
    const head = this.#head;
    const removed = this.#values.slice(head, head + n);
    // Drop the references at once, so that pruned values can be collected.
    this.#values.fill(undefined as T, head, head + n);
    this.#head = head + n;
    if (this.#head >= this.length) {
      this.#times.splice(0, this.#head);
      this.#values.splice(0, this.#head);
      this.#head = 0;
    }
    return removed;
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
