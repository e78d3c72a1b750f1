/**
 * Joins several independent sources into one wide tensor stream.
 *
 * @module
 */

import type { SynchronizedClock } from "../rpc/synchronized_clock.ts";
import { allocate, type DType, type TensorArray, type TypedArrayByDType } from "./dtype.ts";
import type { TensorChunk, TensorChunkSink } from "./tensor_chunk.ts";
import { DataWindow, Timeline } from "./_timeline.ts";
import {
  checkClock,
  checkDType,
  checkLength,
  checkTimeout,
  checkTimestamp,
  ChunkDelivery,
  type ChunkPolicy,
  CompletePolicy,
  DEFAULT_TIMEOUT_MICROS,
  IDENTITY_CLOCK,
  SnapshotStore,
  SparsePolicy,
} from "./_multiplexer_core.ts";

/** What a publisher needs from each aggregate it belongs to (module-private). */
interface AggregateHooks {
  check(publisher: Publisher, values: unknown, timestamp: unknown): number;
  commit(
    publisher: Publisher,
    values: TensorArray,
    timestamp: number,
    synced: number,
  ): TensorChunk[];
  deliver(chunks: TensorChunk[]): Promise<void>;
}

const HOOKS = new WeakMap<AggregateTensorMultiplexer, AggregateHooks>();
const MEMBERSHIPS = new WeakMap<Publisher, Set<AggregateTensorMultiplexer>>();

/**
 * One source of an {@linkcode AggregateTensorMultiplexer}: it publishes
 * snapshots of its own slice, and every aggregate it was added to turns them
 * into chunks of the wide tensor.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { AggregateTensorMultiplexer, Publisher, type TensorChunk } from "@tsercom/tsercom/tensor";
 *
 * const chunks: TensorChunk<Float64Array>[] = [];
 * const aggregate = new AggregateTensorMultiplexer({ onChunk: (c) => void chunks.push(c as TensorChunk<Float64Array>) }, {
 *   dtype: "float64",
 * });
 * const left = new Publisher();
 * const right = new Publisher();
 * aggregate.add(left, { length: 2 });
 * aggregate.add(right, { length: 3 });
 * await right.publish(new Float64Array([7, 8, 9]), 1_000);
 * assert.deepEqual([chunks[0].startingIndex, Array.from(chunks[0].values)], [2, [7, 8, 9]]);
 * assert.deepEqual(Array.from(aggregate.getTensorAt(1_000)!), [0, 0, 7, 8, 9]);
 * ```
 */
export class Publisher {
  /** Creates a publisher that belongs to no aggregate yet. */
  constructor() {
    MEMBERSHIPS.set(this, new Set());
  }

  /**
   * Publishes a snapshot of this publisher's slice to every aggregate it was
   * added to. Every aggregate checks the input first; if any rejects it,
   * none changes. The promise settles once every aggregate has delivered
   * the resulting chunks.
   *
   * @param values The slice's full snapshot: an array of the aggregate's dtype with the
   *   length the publisher was added with. It is copied.
   * @param timestamp Local time in integer microseconds.
   * @throws {TypeError} (as a rejection) When `values` is not the dtype's typed array.
   * @throws {RangeError} (as a rejection) When `values` has the wrong length or `timestamp`
   *   is not a safe integer.
   * @throws {StaleDataError} (as a rejection) When `timestamp` is older than an
   *   aggregate's data window.
   */
  publish(values: TensorArray, timestamp: number): Promise<void> {
    const aggregates = [...MEMBERSHIPS.get(this)!];
    const synced: number[] = [];
    try {
      for (const aggregate of aggregates) {
        synced.push(HOOKS.get(aggregate)!.check(this, values, timestamp));
      }
    } catch (error) {
      return Promise.reject(error);
    }
    const deliveries: Promise<void>[] = [];
    for (let k = 0; k < aggregates.length; k++) {
      const hooks = HOOKS.get(aggregates[k])!;
      deliveries.push(hooks.deliver(hooks.commit(this, values, timestamp, synced[k])));
    }
    return settleAll(deliveries);
  }
}

async function settleAll(promises: Promise<void>[]): Promise<void> {
  const results = await Promise.allSettled(promises);
  for (const result of results) if (result.status === "rejected") throw result.reason;
}

/** Options for {@linkcode AggregateTensorMultiplexer}. */
export interface AggregateTensorMultiplexerOptions<D extends DType = DType> {
  /** The dtype of the aggregate and of every publisher's snapshots. */
  dtype: D;
  /**
   * Maps the local timestamps publishers give to the synchronised timestamps
   * the chunks carry.
   *
   * @default {an identity clock: chunks carry the local timestamps}
   */
  clock?: SynchronizedClock;
  /**
   * The data window in microseconds, shared by all publishers: snapshots
   * older than the newest timestamp any publisher gave minus this are
   * pruned, and input older than that is rejected with a
   * {@linkcode StaleDataError}.
   *
   * @default {60_000_000}
   */
  dataTimeoutMicros?: number;
}

/** Options for {@linkcode AggregateTensorMultiplexer.add}. */
export interface AddPublisherOptions {
  /** The number of elements of the publisher's slice (a positive integer). */
  length: number;
  /**
   * The index of the slice's first element in the aggregate. The slice
   * `[start, start + length)` must not overlap another publisher's.
   *
   * @default {the aggregate's current length (append at the end)}
   */
  start?: number;
  /**
   * Whether the publisher's snapshots go out as sparse diffs (as
   * {@linkcode SparseTensorMultiplexer}) rather than whole slices (as
   * {@linkcode CompleteTensorMultiplexer}).
   *
   * @default {false}
   */
  sparse?: boolean;
}

interface Member {
  readonly start: number;
  readonly length: number;
  readonly policy: ChunkPolicy;
}

const WHAT_CREATE = "create the aggregate multiplexer";
const WHAT_ADD = "add the publisher";
const WHAT_PUBLISH = "publish the tensor";

/**
 * One wide tensor stream made of the slices of several
 * {@linkcode Publisher}s. Each publisher's snapshots are chunked on their
 * own (sparse or complete) and the chunks re-based to the publisher's
 * slice; the aggregate also keeps the full wide vector per timestamp.
 *
 * Compared with the Python library (its bug 5): the aggregate vector at a
 * new timestamp starts from the aggregate state at or before it, so every
 * slice carries its publisher's latest state forward instead of zeros, and
 * a late snapshot updates the later vectors that inherit from it;
 * {@linkcode AggregateTensorMultiplexer.add} validates before it changes
 * anything; publishers can be removed; {@linkcode length} is the real
 * width; a snapshot of the wrong length is an error for the publisher's
 * caller, not a logged warning; the history is kept in local time, the same
 * time domain publishers use, while chunks carry synchronised time.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { AggregateTensorMultiplexer, Publisher, type TensorChunk } from "@tsercom/tsercom/tensor";
 *
 * const chunks: TensorChunk<Float32Array>[] = [];
 * const aggregate = new AggregateTensorMultiplexer({ onChunk: (c) => void chunks.push(c as TensorChunk<Float32Array>) }, {
 *   dtype: "float32",
 * });
 * const a = new Publisher();
 * const b = new Publisher();
 * aggregate.add(a, { length: 3, sparse: true });
 * aggregate.add(b, { length: 2 });
 * await a.publish(new Float32Array([1, 2, 3]), 1_000);
 * await b.publish(new Float32Array([10, 20]), 1_000);
 * await a.publish(new Float32Array([1, 5, 3]), 2_000);
 * assert.deepEqual(Array.from(aggregate.getTensorAt(2_000)!), [1, 5, 3, 10, 20]);
 * assert.deepEqual([chunks[2].startingIndex, Array.from(chunks[2].values)], [1, [5]]);
 * ```
 *
 * @typeParam D The aggregate's dtype.
 */
export class AggregateTensorMultiplexer<D extends DType = DType> {
  readonly #dtype: D;
  readonly #clock: SynchronizedClock;
  readonly #window: DataWindow;
  readonly #delivery: ChunkDelivery;
  readonly #members = new Map<Publisher, Member>();
  readonly #history = new Timeline<TensorArray>();
  #baseline: TensorArray;
  #length = 0;

  /**
   * Creates an aggregate with no publishers (length 0).
   *
   * @param sink Receives the re-based chunks, in order.
   * @param options The dtype, and the window and clock.
   * @throws {UnsupportedDTypeError} For an unknown dtype.
   * @throws {RangeError} For a timeout that is not a positive integer.
   * @throws {TypeError} For a sink without `onChunk` or a clock without `sync`.
   */
  constructor(sink: TensorChunkSink, options: AggregateTensorMultiplexerOptions<D>) {
    if (typeof sink?.onChunk !== "function") {
      throw new TypeError(
        `Cannot ${WHAT_CREATE} as 'sink' must have an onChunk method: current value is ${
          String(sink)
        }`,
      );
    }
    this.#dtype = checkDType(WHAT_CREATE, options?.dtype) as D;
    const timeout = checkTimeout(
      WHAT_CREATE,
      options.dataTimeoutMicros ?? DEFAULT_TIMEOUT_MICROS,
    );
    this.#clock = checkClock(WHAT_CREATE, options.clock ?? IDENTITY_CLOCK);
    this.#window = new DataWindow(timeout);
    this.#delivery = new ChunkDelivery(sink);
    this.#baseline = allocate(this.#dtype, 0);
    HOOKS.set(this as AggregateTensorMultiplexer, {
      check: (publisher, values, timestamp) => this.#check(publisher, values, timestamp),
      commit: (publisher, values, timestamp, synced) =>
        this.#commit(publisher, values, timestamp, synced),
      deliver: (chunks) => this.#delivery.deliver(chunks),
    });
  }

  /** The aggregate's dtype. */
  get dtype(): D {
    return this.#dtype;
  }

  /** The aggregate's width: the end of the furthest publisher slice ever added. */
  get length(): number {
    return this.#length;
  }

  /**
   * Adds `publisher`'s slice to the aggregate. Everything is checked before
   * anything changes. The publisher's first snapshot is diffed against the
   * aggregate's current state of its slice.
   *
   * @param publisher The publisher; it may belong to other aggregates too.
   * @param options The slice's length and start, and the chunking policy.
   * @throws {TypeError} When `publisher` is not a {@linkcode Publisher}.
   * @throws {RangeError} When the length or start is not a valid integer, the slice
   *   "overlaps with existing publisher range", or the publisher was already added.
   */
  add(publisher: Publisher, options: AddPublisherOptions): void {
    if (!(publisher instanceof Publisher)) {
      throw new TypeError(
        `Cannot ${WHAT_ADD} as it must be a Publisher: current value is ${String(publisher)}`,
      );
    }
    if (this.#members.has(publisher)) {
      throw new RangeError(`Cannot ${WHAT_ADD} as it must not be added twice: it already is`);
    }
    const length = checkLength(WHAT_ADD, options?.length);
    const start = options.start ?? this.#length;
    if (!Number.isSafeInteger(start) || start < 0) {
      throw new RangeError(
        `Cannot ${WHAT_ADD} as 'start' must be a non-negative integer: current value is ${start}`,
      );
    }
    const end = start + length;
    for (const other of this.#members.values()) {
      if (start < other.start + other.length && other.start < end) {
        throw new RangeError(
          `Cannot ${WHAT_ADD} as its range [${start}, ${end}) overlaps with existing publisher range [${other.start}, ${
            other.start + other.length
          })`,
        );
      }
    }
    if (end > this.#length) this.#widen(end);
    const latest = this.#history.length > 0
      ? this.#history.valueAt(this.#history.length - 1)
      : this.#baseline;
    const store = new SnapshotStore(
      this.#dtype,
      length,
      this.#window,
      this.#clock,
      latest.slice(start, end),
    );
    const policy = options.sparse === true ? new SparsePolicy(store, 0) : new CompletePolicy(store);
    this.#members.set(publisher, { start, length, policy });
    MEMBERSHIPS.get(publisher)!.add(this as AggregateTensorMultiplexer);
  }

  /**
   * Removes `publisher`. Its slice keeps its last state in later aggregate
   * vectors and may be given to another publisher; the length is unchanged.
   *
   * @param publisher The publisher.
   * @returns Whether it was part of the aggregate.
   */
  remove(publisher: Publisher): boolean {
    if (!this.#members.delete(publisher)) return false;
    MEMBERSHIPS.get(publisher)?.delete(this as AggregateTensorMultiplexer);
    return true;
  }

  /**
   * A copy of the aggregate vector at exactly `timestamp` (local time): every
   * slice holds its publisher's latest state at or before that time. `null`
   * when no publisher published at that timestamp (or it was pruned).
   *
   * @param timestamp Local time in integer microseconds.
   * @throws {RangeError} When `timestamp` is not a safe integer.
   */
  getTensorAt(timestamp: number): TypedArrayByDType[D] | null {
    checkTimestamp("get the tensor", "timestamp", timestamp);
    const i = this.#history.indexOf(timestamp);
    return i < 0 ? null : this.#history.valueAt(i).slice() as TypedArrayByDType[D];
  }

  #widen(length: number): void {
    const grow = (old: TensorArray): TensorArray => {
      const wider = allocate(this.#dtype, length);
      (wider as { set(a: TensorArray): void }).set(old);
      return wider;
    };
    this.#baseline = grow(this.#baseline);
    for (let i = 0; i < this.#history.length; i++) {
      this.#history.setValueAt(i, grow(this.#history.valueAt(i)));
    }
    this.#length = length;
  }

  #check(publisher: Publisher, values: unknown, timestamp: unknown): number {
    const member = this.#members.get(publisher)!;
    return member.policy.check(WHAT_PUBLISH, values, timestamp);
  }

  #commit(
    publisher: Publisher,
    values: TensorArray,
    timestamp: number,
    synced: number,
  ): TensorChunk[] {
    const member = this.#members.get(publisher)!;
    const chunks = member.policy.commit(values, timestamp, synced);
    const out: TensorChunk[] = [];
    for (const chunk of chunks) {
      out.push({
        timestamp: chunk.timestamp,
        startingIndex: member.start + chunk.startingIndex,
        values: chunk.values,
      });
    }
    this.#record(member, timestamp);
    return out;
  }

  /** Updates the aggregate vectors after `member` stored a snapshot at `timestamp`. */
  #record(member: Member, timestamp: number): void {
    const history = this.#history;
    const cutoff = this.#window.cutoff;
    if (history.length > 0 && history.timeAt(0) < cutoff) {
      const pruned = history.pruneBefore(cutoff);
      this.#baseline = pruned[pruned.length - 1];
    }
    let i = history.lowerBound(timestamp);
    if (i === history.length || history.timeAt(i) !== timestamp) {
      const previous = i > 0 ? history.valueAt(i - 1) : this.#baseline;
      history.insertAt(i, timestamp, previous.slice());
    }
    const store = member.policy.store;
    const own = store.timeline;
    const mine = own.indexOf(timestamp);
    const slice = own.valueAt(mine).values;
    const nextOwn = mine + 1 < own.length ? own.timeAt(mine + 1) : Infinity;
    for (; i < history.length && history.timeAt(i) < nextOwn; i++) {
      (history.valueAt(i) as { set(a: TensorArray, o: number): void }).set(slice, member.start);
    }
  }
}
