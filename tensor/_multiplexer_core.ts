/**
 * What the sparse, complete and aggregate multiplexers share (private):
 * argument checks, the snapshot history with its data window and buffer
 * pool, the two diff algorithms, and in-order chunk delivery that never
 * holds a lock across a sink callback.
 *
 * @module
 */

import { AsyncLocalStorage } from "node:async_hooks";
import type { SynchronizedClock } from "../rpc/synchronized_clock.ts";
import {
  allocate,
  bitsPerElement,
  bitsView,
  type DType,
  isDType,
  type TensorArray,
  UnsupportedDTypeError,
} from "./dtype.ts";
import { StaleDataError } from "./stale_data_error.ts";
import type { TensorChunk, TensorChunkSink } from "./tensor_chunk.ts";
import { type DataWindow, Timeline } from "./_timeline.ts";

/** The default data window: 60 s. */
export const DEFAULT_TIMEOUT_MICROS = 60_000_000;

/** The clock used when none is given: synchronised time is local time. */
export const IDENTITY_CLOCK: SynchronizedClock = Object.freeze({
  now(): number {
    return Date.now() * 1000;
  },
  sync(localMicros: number): number {
    return localMicros;
  },
  desync(syncedMicros: number): number {
    return syncedMicros;
  },
});

type Bits = Uint8Array | Int8Array | Uint16Array | Int16Array | Int32Array;

// ---------------------------------------------------------------------------
// Argument checks

/** Checks a dtype option. */
export function checkDType(what: string, dtype: unknown): DType {
  if (typeof dtype !== "string" || !isDType(dtype)) throw new UnsupportedDTypeError(String(dtype));
  void what;
  return dtype;
}

/** Checks a length option: a positive safe integer. */
export function checkLength(what: string, length: unknown): number {
  if (typeof length !== "number" || !Number.isSafeInteger(length) || length <= 0) {
    throw new RangeError(
      `Cannot ${what} as 'length' must be a positive integer: current value is ${String(length)}`,
    );
  }
  return length;
}

/** Checks a timeout option: a positive integer number of microseconds, or Infinity. */
export function checkTimeout(what: string, timeout: unknown): number {
  if (
    typeof timeout !== "number" || !(timeout > 0) ||
    !(Number.isSafeInteger(timeout) || timeout === Infinity)
  ) {
    throw new RangeError(
      `Cannot ${what} as 'dataTimeoutMicros' must be a positive integer: current value is ${
        String(timeout)
      }`,
    );
  }
  return timeout;
}

/** Checks a gap merge threshold: a non-negative integer. */
export function checkGap(what: string, gap: unknown): number {
  if (typeof gap !== "number" || !Number.isSafeInteger(gap) || gap < 0) {
    throw new RangeError(
      `Cannot ${what} as 'gapMergeThreshold' must be a non-negative integer: current value is ${
        String(gap)
      }`,
    );
  }
  return gap;
}

/** Checks a clock option: an object with a `sync` method. */
export function checkClock(what: string, clock: unknown): SynchronizedClock {
  if (
    typeof clock !== "object" || clock === null ||
    typeof (clock as SynchronizedClock).sync !== "function"
  ) {
    throw new TypeError(
      `Cannot ${what} as 'clock' must be a SynchronizedClock: current value is ${String(clock)}`,
    );
  }
  return clock as SynchronizedClock;
}

const CLASS_NAMES = new Map<DType, string>();

/** The name of the typed array class that holds `dtype` (checked on every update: cached). */
function className(dtype: DType): string {
  let name = CLASS_NAMES.get(dtype);
  if (name === undefined) {
    name = allocate(dtype, 0).constructor.name;
    CLASS_NAMES.set(dtype, name);
  }
  return name;
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (typeof value === "object") return `a ${(value as object).constructor?.name ?? "object"}`;
  return `${typeof value} ${String(value)}`;
}

/**
 * Checks that `values` is an array of `dtype`'s class with `length` elements.
 *
 * @throws {TypeError} For the wrong class.
 * @throws {RangeError} For the wrong length.
 */
export function checkValues(what: string, dtype: DType, length: number, values: unknown): void {
  const expected = className(dtype);
  if (
    typeof values !== "object" || values === null || values.constructor?.name !== expected ||
    !ArrayBuffer.isView(values)
  ) {
    throw new TypeError(
      `Cannot ${what} as the tensor must be a ${expected} for dtype ${dtype}: current value is ${
        describe(values)
      }`,
    );
  }
  const got = (values as TensorArray).length;
  if (got !== length) {
    throw new RangeError(
      `Cannot ${what}: Input tensor length ${got} does not match expected length ${length}`,
    );
  }
}

/** Checks a timestamp: a safe integer number of microseconds. */
export function checkTimestamp(what: string, name: string, timestamp: unknown): number {
  if (typeof timestamp !== "number" || !Number.isSafeInteger(timestamp)) {
    throw new RangeError(
      `Cannot ${what} as '${name}' must be a safe integer number of microseconds: current value is ${
        String(timestamp)
      }`,
    );
  }
  return timestamp;
}

// ---------------------------------------------------------------------------
// Diffs on bit views

/** Whether `a` and `b` hold the same bits. */
export function bitsEqual(a: TensorArray, b: TensorArray): boolean {
  const x = bitsView(a);
  const y = bitsView(b);
  const n = x.length;
  for (let k = 0; k < n; k++) if (x[k] !== y[k]) return false;
  return true;
}

/** Appends to `out`, ascending, the element indices where `a` and `b` differ. */
export function diffIndices(a: TensorArray, b: TensorArray, out: number[]): void {
  diffBits(bitsView(a), bitsView(b), bitsPerElement(a) - 1, out);
}

/**
 * The hot loop: compares eight entries at a time by OR-ing their XORs (as
 * fast as a plain element-by-element comparison loop), and looks closer only
 * at blocks that differ. Entry `j` belongs to element `j >>> shift`.
 */
function diffBits(x: Bits, y: Bits, shift: number, out: number[]): void {
  const n = x.length;
  const blocks = n - (n & 7);
  let k = 0;
  for (; k < blocks; k += 8) {
    if (
      ((x[k] ^ y[k]) | (x[k + 1] ^ y[k + 1]) | (x[k + 2] ^ y[k + 2]) | (x[k + 3] ^ y[k + 3]) |
        (x[k + 4] ^ y[k + 4]) | (x[k + 5] ^ y[k + 5]) | (x[k + 6] ^ y[k + 6]) |
        (x[k + 7] ^ y[k + 7])) !== 0
    ) {
      for (let j = k; j < k + 8; j++) if (x[j] !== y[j]) pushElement(out, j >>> shift);
    }
  }
  for (; k < n; k++) if (x[k] !== y[k]) pushElement(out, k >>> shift);
}

function pushElement(out: number[], element: number): void {
  const last = out.length - 1;
  if (last < 0 || out[last] !== element) out.push(element);
}

/** Appends to `out`, ascending, the element indices where `a` differs from `b` or from `c`. */
export function diffIndicesEither(
  a: TensorArray,
  b: TensorArray,
  c: TensorArray,
  out: number[],
): void {
  const x = bitsView(a);
  const y = bitsView(b);
  const z = bitsView(c);
  const n = x.length;
  if (bitsPerElement(a) === 1) {
    for (let k = 0; k < n; k++) {
      const v = x[k];
      if (v !== y[k] || v !== z[k]) out.push(k);
    }
  } else {
    for (let k = 0; k < n; k += 2) {
      const v = x[k];
      const w = x[k + 1];
      if (v !== y[k] || w !== y[k + 1] || v !== z[k] || w !== z[k + 1]) out.push(k >>> 1);
    }
  }
}

/** Appends to `out` the indices of `indices` (ascending) at which `a` and `b` differ. */
export function filterDiffering(
  indices: readonly number[],
  a: TensorArray,
  b: TensorArray,
  out: number[],
): void {
  const x = bitsView(a);
  const y = bitsView(b);
  if (bitsPerElement(a) === 1) {
    for (const k of indices) if (x[k] !== y[k]) out.push(k);
  } else {
    for (const k of indices) {
      const j = k * 2;
      if (x[j] !== y[j] || x[j + 1] !== y[j + 1]) out.push(k);
    }
  }
}

/**
 * Appends one chunk per run of `indices` (ascending), merging runs separated
 * by at most `gap` indices not in the list. The chunks' values are copies of
 * `source` over their runs: disjoint views of one fresh buffer per call
 * (one allocation instead of one per chunk, which costs ten times more).
 */
export function chunksOfRuns(
  indices: readonly number[],
  gap: number,
  source: TensorArray,
  timestamp: number,
  out: TensorChunk[],
): void {
  const n = indices.length;
  if (n === 0) return;
  const runs: number[] = [];
  let total = 0;
  let i = 0;
  while (i < n) {
    const start = indices[i];
    let end = start;
    i++;
    while (i < n && indices[i] - end - 1 <= gap) end = indices[i++];
    runs.push(start, end + 1);
    total += end + 1 - start;
  }
  const ctor = source.constructor as {
    new (length: number): TensorArray;
    new (buffer: ArrayBufferLike, byteOffset: number, length: number): TensorArray;
  };
  const buffer = new ctor(total);
  // Copy the bits, not the numbers: reading a float element converts it to a
  // double, which does not keep every NaN payload (float16 NaNs come back
  // canonical), and the receiver must rebuild the sender's bits exactly.
  const to = bitsView(buffer);
  const from = bitsView(source);
  const w = bitsPerElement(source);
  const bytes = buffer.BYTES_PER_ELEMENT;
  let offset = 0;
  for (let r = 0; r < runs.length; r += 2) {
    const start = runs[r];
    const length = runs[r + 1] - start;
    const a = start * w;
    const b = offset * w;
    for (let k = 0; k < length * w; k++) to[b + k] = from[a + k];
    out.push({
      timestamp,
      startingIndex: start,
      values: new ctor(buffer.buffer, offset * bytes, length),
    });
    offset += length;
  }
}

// ---------------------------------------------------------------------------
// Snapshot history

/** One stored snapshot. */
export interface Snapshot {
  /** The synchronised timestamp its chunks carry, fixed when the entry was first stored. */
  readonly synced: number;
  /** The full vector (owned, recycled through the pool once pruned). */
  readonly values: TensorArray;
}

/**
 * The snapshots of one stream (keyed by local timestamp), the data window,
 * the baseline (the state before the oldest stored snapshot) and a pool of
 * buffers recycled from pruned snapshots.
 */
export class SnapshotStore {
  readonly dtype: DType;
  readonly length: number;
  readonly timeline: Timeline<Snapshot> = new Timeline<Snapshot>();
  readonly window: DataWindow;
  readonly clock: SynchronizedClock;
  /** The state before the oldest stored snapshot (owned). */
  baseline: TensorArray;
  #pool: TensorArray[] = [];

  constructor(
    dtype: DType,
    length: number,
    window: DataWindow,
    clock: SynchronizedClock,
    baseline: TensorArray,
  ) {
    this.dtype = dtype;
    this.length = length;
    this.window = window;
    this.clock = clock;
    this.baseline = baseline;
  }

  /**
   * Checks an input and returns the synchronised timestamp its chunks will
   * carry; changes nothing.
   *
   * @throws {TypeError | RangeError | StaleDataError}
   */
  check(what: string, values: unknown, timestamp: unknown): number {
    checkValues(what, this.dtype, this.length, values);
    const ts = checkTimestamp(what, "timestamp", timestamp);
    if (this.window.isStale(ts)) throw new StaleDataError(ts, this.window.cutoff);
    const i = this.timeline.indexOf(ts);
    if (i >= 0) return this.timeline.valueAt(i).synced;
    const synced = this.clock.sync(ts);
    if (!Number.isSafeInteger(synced)) {
      throw new RangeError(
        `Cannot ${what} as the clock must map timestamp ${ts} to a safe integer: current value is ${synced}`,
      );
    }
    return synced;
  }

  /**
   * Records `timestamp` in the window and prunes what falls out of it; the
   * newest pruned snapshot becomes the baseline.
   */
  advance(timestamp: number): void {
    const cutoff = this.window.observe(timestamp);
    this.prune(cutoff);
  }

  /** Prunes snapshots older than `cutoff`, keeping the newest pruned one as the baseline. */
  prune(cutoff: number): void {
    if (this.timeline.length === 0 || this.timeline.timeAt(0) >= cutoff) return;
    const pruned = this.timeline.pruneBefore(cutoff);
    this.#pool.push(this.baseline);
    this.baseline = pruned[pruned.length - 1].values;
    for (let k = 0; k < pruned.length - 1; k++) this.#pool.push(pruned[k].values);
  }

  /** A buffer holding a copy of `values`, recycled from the pool when one is free. */
  copyOf(values: TensorArray): TensorArray {
    const buffer = this.#pool.pop() ?? allocate(this.dtype, this.length);
    (buffer as { set(a: TensorArray): void }).set(values);
    return buffer;
  }

  /** The snapshot stored at exactly `timestamp`, or `undefined`. */
  at(timestamp: number): Snapshot | undefined {
    const i = this.timeline.indexOf(timestamp);
    return i < 0 ? undefined : this.timeline.valueAt(i);
  }

  /**
   * The newest `count` snapshots, oldest first, each as one whole-vector
   * chunk (a copy) stamped with its synchronised time.
   */
  newestChunks(count: number): TensorChunk[] {
    const timeline = this.timeline;
    const chunks: TensorChunk[] = [];
    for (let i = Math.max(0, timeline.length - count); i < timeline.length; i++) {
      const snapshot = timeline.valueAt(i);
      chunks.push({
        timestamp: snapshot.synced,
        startingIndex: 0,
        values: snapshot.values.slice(),
      });
    }
    return chunks;
  }

  /** The state at or before `timestamp` (the baseline when there is none); not a copy. */
  stateAtOrBefore(timestamp: number): TensorArray {
    const i = this.timeline.indexAtOrBefore(timestamp);
    return i < 0 ? this.baseline : this.timeline.valueAt(i).values;
  }
}

// ---------------------------------------------------------------------------
// The two chunking policies

/** Turns snapshots into chunks; `check` then `commit`. */
export interface ChunkPolicy {
  readonly store: SnapshotStore;
  /** Checks an input, changing nothing; returns the synchronised timestamp. */
  check(what: string, values: unknown, timestamp: unknown): number;
  /** Stores a checked input and returns the chunks that describe the change. */
  commit(values: TensorArray, timestamp: number, synced: number): TensorChunk[];
}

/**
 * Sparse diffs with a minimal cascade: the emitted chunks keep a receiver
 * that stores explicit values per timestamp (the demuxer) exactly in step.
 */
export class SparsePolicy implements ChunkPolicy {
  readonly store: SnapshotStore;
  readonly gap: number;
  #changed: number[] = [];
  #emitted: number[] = [];
  #cascade: number[] = [];

  constructor(store: SnapshotStore, gap: number) {
    this.store = store;
    this.gap = gap;
  }

  check(what: string, values: unknown, timestamp: unknown): number {
    return this.store.check(what, values, timestamp);
  }

  commit(values: TensorArray, timestamp: number, synced: number): TensorChunk[] {
    const store = this.store;
    store.advance(timestamp);
    const timeline = store.timeline;
    const chunks: TensorChunk[] = [];
    const i = timeline.lowerBound(timestamp);
    const exists = i < timeline.length && timeline.timeAt(i) === timestamp;
    const predecessor = i > 0 ? timeline.valueAt(i - 1).values : store.baseline;
    const changed = this.#changed;
    changed.length = 0;
    if (exists) {
      const current = timeline.valueAt(i).values;
      diffIndices(values, current, changed);
      if (changed.length === 0) return chunks;
      // Bug 1: also resend what differs from the previous version, so the
      // receiver's explicit values for this timestamp end up exact.
      const emitted = this.#emitted;
      emitted.length = 0;
      diffIndicesEither(values, predecessor, current, emitted);
      chunksOfRuns(emitted, this.gap, values, synced, chunks);
      (current as { set(a: TensorArray): void }).set(values);
    } else {
      diffIndices(values, predecessor, changed);
      timeline.insertAt(i, timestamp, { synced, values: store.copyOf(values) });
      chunksOfRuns(changed, this.gap, values, synced, chunks);
    }
    if (i + 1 < timeline.length && changed.length > 0) {
      // The next entry inherits the changed indices unless it differs there:
      // resend its own values at those indices; its state on the receiver is
      // then unchanged, so nothing later needs anything.
      const next = timeline.valueAt(i + 1);
      const cascade = this.#cascade;
      cascade.length = 0;
      filterDiffering(changed, next.values, values, cascade);
      chunksOfRuns(cascade, this.gap, next.values, next.synced, chunks);
    }
    return chunks;
  }
}

/** One full chunk per accepted snapshot; nothing to cascade. */
export class CompletePolicy implements ChunkPolicy {
  readonly store: SnapshotStore;

  constructor(store: SnapshotStore) {
    this.store = store;
  }

  check(what: string, values: unknown, timestamp: unknown): number {
    return this.store.check(what, values, timestamp);
  }

  commit(values: TensorArray, timestamp: number, synced: number): TensorChunk[] {
    const store = this.store;
    store.advance(timestamp);
    const timeline = store.timeline;
    const i = timeline.lowerBound(timestamp);
    if (i < timeline.length && timeline.timeAt(i) === timestamp) {
      const current = timeline.valueAt(i).values;
      if (bitsEqual(values, current)) return [];
      (current as { set(a: TensorArray): void }).set(values);
    } else {
      timeline.insertAt(i, timestamp, { synced, values: store.copyOf(values) });
    }
    return [{ timestamp: synced, startingIndex: 0, values: values.slice() }];
  }
}

// ---------------------------------------------------------------------------
// Delivery

/**
 * A private option of the multiplexers (set under this key by the tensor
 * stream server, whose sink never calls back into its multiplexer): chunks
 * are delivered directly, see {@linkcode ChunkDelivery}.
 */
export const DIRECT_DELIVERY: unique symbol = Symbol("tsercom.directDelivery");

/** Whether `options` asks for direct delivery. */
export function isDirect(options: object): boolean {
  return (options as { [DIRECT_DELIVERY]?: boolean })[DIRECT_DELIVERY] === true;
}

interface Batch {
  readonly chunks: readonly TensorChunk[];
  /** The outer call's batch, for a call made from inside a sink callback. */
  readonly root: Batch | null;
  pending: number;
  failed: boolean;
  error: unknown;
  resolve: (() => void) | null;
  reject: ((error: unknown) => void) | null;
}

/**
 * Delivers chunks to a sink in the order they were computed, one callback at
 * a time, awaiting each promise the sink returns. No lock is held while the
 * sink runs: the multiplexer's state is already updated.
 *
 * A call's promise settles once its chunks have been delivered (rejecting
 * with the first error the sink threw for them). A call made from inside a
 * sink callback (directly or after awaiting) queues its chunks behind the
 * ones already queued and settles at once, so a sink that awaits it cannot
 * wait on itself; errors from its chunks go to the outer call.
 */
export class ChunkDelivery {
  readonly #sink: TensorChunkSink;
  readonly #context = new AsyncLocalStorage<true>();
  readonly #direct: boolean;
  #queue: (Batch | undefined)[] = [];
  #head = 0;
  #running = false;
  #current: Batch | null = null;

  /**
   * @param sink Where chunks go.
   * @param direct The sink never calls back into the multiplexer from
   * `onChunk` (see {@linkcode DIRECT_DELIVERY}): calls are then delivered
   * on the spot while the sink answers synchronously, with no context to
   * track (which costs more than the rest of a small update).
   */
  constructor(sink: TensorChunkSink, direct = false) {
    this.#sink = sink;
    this.#direct = direct;
  }

  /** Queues `chunks` for delivery; see the class comment for when the promise settles. */
  deliver(chunks: readonly TensorChunk[]): Promise<void> {
    if (this.#direct) {
      if (this.#running) return this.#enqueue(chunks);
      return this.#deliverNow(chunks);
    }
    if (this.#running && this.#current !== null && this.#context.getStore() === true) {
      const current = this.#current;
      const root = current.root ?? current;
      if (chunks.length > 0) {
        root.pending++;
        this.#queue.push({
          chunks,
          root,
          pending: 0,
          failed: false,
          error: undefined,
          resolve: null,
          reject: null,
        });
      }
      return Promise.resolve();
    }
    if (chunks.length === 0 && !this.#running) return Promise.resolve();
    const promise = this.#enqueue(chunks);
    if (!this.#running) {
      this.#running = true;
      this.#context.run(true, () => this.#pump());
    }
    return promise;
  }

  /** Queues an outer call's chunks behind those queued; settles once they are delivered. */
  #enqueue(chunks: readonly TensorChunk[], failed = false, error?: unknown): Promise<void> {
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    this.#queue.push({ chunks, root: null, pending: 1, failed, error, resolve, reject });
    return promise;
  }

  /**
   * Direct delivery of an outer call while nothing is queued: each chunk
   * goes to the sink at once; when the sink returns a promise, the rest of
   * the call (and any call made meanwhile) waits in the queue behind it.
   */
  #deliverNow(chunks: readonly TensorChunk[]): Promise<void> {
    const sink = this.#sink;
    let failed = false;
    let error: unknown;
    for (let k = 0; k < chunks.length; k++) {
      let result: void | Promise<void>;
      try {
        result = sink.onChunk(chunks[k]);
      } catch (thrown) {
        if (!failed) {
          failed = true;
          error = thrown;
        }
        continue;
      }
      if (result === undefined) continue;
      this.#running = true;
      const rest = this.#enqueue(chunks.slice(k + 1), failed, error);
      const batch = this.#queue[this.#queue.length - 1]!;
      (async () => {
        try {
          await result;
        } catch (thrown) {
          if (!batch.failed) {
            batch.failed = true;
            batch.error = thrown;
          }
        }
        await this.#pump();
      })();
      return rest;
    }
    return failed ? Promise.reject(error) : Promise.resolve();
  }

  async #pump(): Promise<void> {
    const queue = this.#queue;
    const sink = this.#sink;
    try {
      while (this.#head < queue.length) {
        const batch = queue[this.#head]!;
        queue[this.#head++] = undefined;
        this.#current = batch;
        const owner = batch.root ?? batch;
        for (const chunk of batch.chunks) {
          try {
            const result = sink.onChunk(chunk);
            if (result !== undefined) await result;
          } catch (error) {
            if (!owner.failed) {
              owner.failed = true;
              owner.error = error;
            }
          }
        }
        if (--owner.pending === 0) {
          if (owner.failed) owner.reject!(owner.error);
          else owner.resolve!();
        }
      }
    } finally {
      this.#running = false;
      this.#current = null;
      queue.length = 0;
      this.#head = 0;
    }
  }
}
