/**
 * The causal demuxer: rebuilds one full snapshot per timestamp from chunks
 * that arrive in any order, and notifies a client whenever a snapshot changes.
 *
 * @module
 */

import {
  allocate,
  bitsPerElement,
  bitsView,
  type DType,
  isDType,
  type TensorArray,
  type TypedArrayByDType,
  UnsupportedDTypeError,
} from "./dtype.ts";
import type { KeyframeReader } from "./keyframe_reader.ts";
import type { TensorChunk, TensorChunkSink } from "./tensor_chunk.ts";
import { DataWindow, Timeline } from "./_timeline.ts";

/**
 * Receives the snapshots a {@linkcode TensorDemuxer} rebuilds.
 *
 * @example
 * ```ts
 * import type { TensorDemuxerClient } from "@tsercom/tsercom/tensor";
 *
 * const seen: number[][] = [];
 * const client: TensorDemuxerClient<Float32Array> = {
 *   onTensorChanged(_timestamp, values) {
 *     seen.push(Array.from(values)); // copy: the array is the demuxer's own
 *   },
 * };
 * ```
 */
export interface TensorDemuxerClient<A extends TensorArray = TensorArray> {
  /**
   * Called once for each snapshot that a chunk created or changed: first the
   * chunk's own timestamp, then every later timestamp the change propagated
   * to, in ascending order.
   *
   * It is called synchronously from inside {@linkcode TensorDemuxer.receive},
   * after the demuxer's state is fully updated and with no lock held, so it
   * may call {@linkcode TensorDemuxer.getTensorAt} or
   * {@linkcode TensorDemuxer.receive} itself. When it returns a promise, the
   * next notification does not wait for it, but the promise that `receive`
   * returned settles only once it has settled.
   *
   * @param timestamp The snapshot's time, integer microseconds.
   * @param values The demuxer's stored vector for that time: read it, never
   *   write it, and copy what you keep before awaiting anything, since later
   *   chunks change it in place and pruned vectors are reused.
   */
  onTensorChanged(timestamp: number, values: A): void | Promise<void>;
}

/** The options of a {@linkcode TensorDemuxer}. */
export interface TensorDemuxerOptions<D extends DType = DType> {
  /** The stream's dtype; chunks must carry values of its typed array class. */
  dtype: D;
  /** The flat vector length, a positive integer. */
  length: number;
  /**
   * The data window in microseconds: keyframes older than the newest
   * timestamp seen minus this are pruned, and chunks older than that are
   * dropped and counted. A positive integer.
   *
   * @default {60_000_000}
   */
  dataTimeoutMicros?: number;
  /**
   * The state before the first keyframe: the stream's fill value with its
   * initial chunks applied. Copied; it must be an array of the stream's dtype
   * and `length` elements. Use the same baseline as the sending multiplexer.
   *
   * @default {all zeros}
   */
  baseline?: TypedArrayByDType[D];
}

/** The counts of input a {@linkcode TensorDemuxer} dropped or rejected. */
export interface TensorDemuxerCounters {
  /** Chunks dropped because their timestamp was older than the data window. */
  staleChunks: number;
  /** Chunk elements dropped because their index was outside `[0, length)`. */
  outOfRangeElements: number;
  /** Chunks rejected with a {@linkcode TensorDemuxerChunkError}. */
  rejectedChunks: number;
}

/**
 * Thrown (as a rejection of {@linkcode TensorDemuxer.receive}) for a chunk
 * that is malformed: values not of the stream dtype's typed array class, or a
 * timestamp or starting index that is not a safe integer. The demuxer's state
 * is left unchanged.
 */
export class TensorDemuxerChunkError extends TypeError {
  /**
   * Creates the error.
   *
   * @param message What was wrong and what was expected.
   */
  constructor(message: string) {
    super(message);
    this.name = "TensorDemuxerChunkError";
  }
}

type Bits = Uint8Array | Int8Array | Uint16Array | Int16Array | Int32Array;

/**
 * A stored snapshot. Bit `i & 31` of `explicit[i >>> 5]` is set where this
 * timestamp set index i itself (a bitset: an eighth of a byte map's cache
 * footprint, which the scattered writes and the cascade both feel).
 */
interface Keyframe {
  values: TensorArray;
  bits: Bits;
  readonly explicit: Int32Array;
  /** The call that last queued a notification for this keyframe (deduplication). */
  mark: number;
}

const RESOLVED: Promise<void> = Promise.resolve();
const POOL_LIMIT = 4096;

interface Batch {
  /** The note index of this call's last notification. */
  last: number;
  promises: Promise<unknown>[];
  failed: boolean;
  error: unknown;
  resolve: () => void;
  reject: (error: unknown) => void;
}

function noop(): void {}

function isThenable(value: unknown): value is Promise<unknown> {
  return value !== null && typeof value === "object" &&
    typeof (value as { then?: unknown }).then === "function";
}

function copyInto(dst: Bits, src: Bits): void {
  (dst as Int32Array).set(src as Int32Array);
}

/**
 * Rebuilds a stream's snapshots from chunks that arrive in any order
 * ("causal timeline reconstruction"). Each timestamp's snapshot is its
 * predecessor's (or the baseline's) with the values received for that
 * timestamp written over it: every element holds its last value.
 *
 * A late chunk updates its own timestamp, then carries the elements that
 * changed forward through the later keyframes until each is overridden by a
 * keyframe that set it explicitly: the work is proportional to the changed
 * elements times the keyframes they reach, not to the vector length.
 *
 * Differences from the Python original (spec bugs 4, 8, 9, 11): state is held
 * in the stream's dtype; a stream can start from a non-zero baseline, and
 * after keyframes expire the newest expired state becomes the baseline; NaN
 * equals the same NaN when deciding whether anything changed (and -0 differs
 * from +0); no lock is held while the client runs; stale chunks and
 * out-of-range elements are counted.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { TensorDemuxer } from "@tsercom/tsercom/tensor";
 *
 * const log: [number, number[]][] = [];
 * const demuxer = new TensorDemuxer({
 *   onTensorChanged(timestamp, values) {
 *     log.push([timestamp, Array.from(values)]);
 *   },
 * }, { dtype: "float32", length: 4 });
 *
 * await demuxer.receive({ timestamp: 2_000, startingIndex: 1, values: new Float32Array([10]) });
 * // A late chunk for an earlier time, propagated to the later snapshot:
 * await demuxer.receive({ timestamp: 1_000, startingIndex: 0, values: new Float32Array([5]) });
 * assert.deepEqual(log, [
 *   [2_000, [0, 10, 0, 0]],
 *   [1_000, [5, 0, 0, 0]],
 *   [2_000, [5, 10, 0, 0]],
 * ]);
 * assert.deepEqual(Array.from(demuxer.getTensorAt(2_000)!), [5, 10, 0, 0]);
 * ```
 *
 * @typeParam D The stream's dtype.
 */
export class TensorDemuxer<D extends DType = DType>
  implements KeyframeReader<TypedArrayByDType[D]>, TensorChunkSink {
  /** The stream's dtype. */
  readonly dtype: D;
  /** The flat vector length. */
  readonly tensorLength: number;
  /** The data window in microseconds. */
  readonly dataTimeoutMicros: number;

  readonly #client: TensorDemuxerClient<TypedArrayByDType[D]>;
  readonly #ctor: new (length: number) => TensorArray;
  readonly #wide: boolean;
  readonly #bool: boolean;
  /** Whether short chunks may be copied element by element (not int64, float16 or bool). */
  readonly #elementCopy: boolean;
  readonly #window: DataWindow;
  readonly #timeline = new Timeline<Keyframe>();
  readonly #pool: Keyframe[] = [];
  readonly #retired: Keyframe[] = [];
  #baseline: TensorArray;
  #baselineBits: Bits;
  /** Scratch copy of the chunk's values, so they can be read as bits without a new view. */
  readonly #scratch: TensorArray;
  readonly #scratchBits: Bits;
  /** Scratch set of changed indices carried through a cascade. */
  #changed: Int32Array | null = null;

  #staleChunks = 0;
  #outOfRange = 0;
  #rejected = 0;

  // Pending notifications, delivered in order by #dispatch.
  readonly #noteTimes: number[] = [];
  readonly #noteValues: TensorArray[] = [];
  readonly #noteBatches: (Batch | undefined)[] = [];
  #noteCount = 0;
  #dispatching = false;
  /** Numbers the receive calls, so each notifies a keyframe at most once. */
  #mark = 0;
  /** True while a batch is being applied: pruned keyframes are recycled after it. */
  #applying = false;

  /**
   * Creates a demuxer.
   *
   * @param client Receives each changed snapshot.
   * @param options The stream's dtype and length, the window, the baseline.
   * @throws {UnsupportedDTypeError} When `options.dtype` is not a dtype.
   * @throws {RangeError} When the length or the timeout is not a positive
   *   safe integer, or the baseline has the wrong length.
   * @throws {TypeError} When the baseline is not of the dtype's array class.
   */
  constructor(
    client: TensorDemuxerClient<TypedArrayByDType[D]>,
    options: TensorDemuxerOptions<D>,
  ) {
    const { dtype, length, dataTimeoutMicros = 60_000_000, baseline } = options;
    if (typeof dtype !== "string" || !isDType(dtype)) {
      throw new UnsupportedDTypeError(String(dtype));
    }
    if (!Number.isSafeInteger(length) || length <= 0) {
      throw new RangeError(
        `Cannot create a TensorDemuxer as 'length' must be a positive integer: current value is ${length}`,
      );
    }
    if (!Number.isSafeInteger(dataTimeoutMicros) || dataTimeoutMicros <= 0) {
      throw new RangeError(
        `Cannot create a TensorDemuxer as 'dataTimeoutMicros' must be a positive integer: current value is ${dataTimeoutMicros}`,
      );
    }
    if (client === null || typeof client !== "object" && typeof client !== "function") {
      throw new TypeError(
        `Cannot create a TensorDemuxer as 'client' must be an object with onTensorChanged: current value is ${client}`,
      );
    }
    this.dtype = dtype;
    this.tensorLength = length;
    this.dataTimeoutMicros = dataTimeoutMicros;
    this.#client = client;
    this.#window = new DataWindow(dataTimeoutMicros);
    this.#baseline = allocate(dtype, length);
    this.#ctor = this.#baseline.constructor as new (length: number) => TensorArray;
    this.#wide = bitsPerElement(this.#baseline) === 2;
    this.#bool = dtype === "bool";
    this.#elementCopy = dtype !== "int64" && dtype !== "float16" && dtype !== "bool";
    this.#baselineBits = bitsView(this.#baseline);
    if (baseline !== undefined) {
      if (!(baseline instanceof this.#ctor)) {
        throw new TypeError(
          `Cannot create a TensorDemuxer as 'baseline' must be a ${this.#ctor.name} for dtype ${dtype}: current value is ${
            describe(baseline)
          }`,
        );
      }
      if (baseline.length !== length) {
        throw new RangeError(
          `Cannot create a TensorDemuxer as 'baseline' must have ${length} elements: current length is ${baseline.length}`,
        );
      }
      copyInto(this.#baselineBits, bitsView(baseline));
      if (this.#bool) normalizeBool(this.#baselineBits as Uint8Array, 0, length);
    }
    this.#scratch = allocate(dtype, Math.min(length, 4096));
    this.#scratchBits = bitsView(this.#scratch);
  }

  /**
   * The counts of input dropped or rejected so far (a fresh object).
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { TensorDemuxer } from "@tsercom/tsercom/tensor";
   *
   * const demuxer = new TensorDemuxer({ onTensorChanged() {} }, { dtype: "uint8", length: 2 });
   * await demuxer.receive({ timestamp: 0, startingIndex: 1, values: new Uint8Array([7, 8]) });
   * assert.deepEqual(demuxer.counters, {
   *   staleChunks: 0,
   *   outOfRangeElements: 1,
   *   rejectedChunks: 0,
   * });
   * ```
   */
  get counters(): TensorDemuxerCounters {
    return {
      staleChunks: this.#staleChunks,
      outOfRangeElements: this.#outOfRange,
      rejectedChunks: this.#rejected,
    };
  }

  /** The number of keyframes held. */
  get keyframeCount(): number {
    return this.#timeline.length;
  }

  /**
   * The timestamp of keyframe `i` (0 is the oldest).
   *
   * @param i A keyframe index in `[0, keyframeCount)`.
   * @throws {RangeError} When `i` is not a keyframe index.
   */
  keyframeTime(i: number): number {
    this.#checkIndex(i);
    return this.#timeline.timeAt(i);
  }

  /**
   * The full vector of keyframe `i`: the demuxer's own storage, read-only by
   * contract; copy what you keep.
   *
   * @param i A keyframe index in `[0, keyframeCount)`.
   * @throws {RangeError} When `i` is not a keyframe index.
   */
  keyframeValues(i: number): TypedArrayByDType[D] {
    this.#checkIndex(i);
    return this.#timeline.valueAt(i).values as TypedArrayByDType[D];
  }

  /**
   * The index of the newest keyframe at or before `timestamp`, or -1.
   *
   * @param timestamp Integer microseconds.
   */
  keyframeIndexAtOrBefore(timestamp: number): number {
    return this.#timeline.indexAtOrBefore(timestamp);
  }

  /**
   * A copy of the snapshot at exactly `timestamp`, or `null` when there is
   * none (there is no interpolation or "latest before" lookup here).
   *
   * @param timestamp Integer microseconds.
   */
  getTensorAt(timestamp: number): TypedArrayByDType[D] | null {
    const i = this.#timeline.indexOf(timestamp);
    if (i < 0) return null;
    return this.#timeline.valueAt(i).values.slice() as TypedArrayByDType[D];
  }

  /**
   * The indices received explicitly for `timestamp` (ascending), or `null`
   * when there is no snapshot at that time. Their values are the snapshot's
   * values at those indices. Costs a scan of the vector: for inspection and
   * tests, not hot paths.
   *
   * @param timestamp Integer microseconds.
   */
  explicitIndicesAt(timestamp: number): number[] | null {
    const i = this.#timeline.indexOf(timestamp);
    if (i < 0) return null;
    const explicit = this.#timeline.valueAt(i).explicit;
    const out: number[] = [];
    for (let k = 0; k < this.tensorLength; k++) {
      if ((explicit[k >>> 5] & (1 << (k & 31))) !== 0) out.push(k);
    }
    return out;
  }

  /**
   * Applies one chunk, then notifies the client of every snapshot it created
   * or changed: the chunk's timestamp first (a new timestamp always, when at
   * least one element was in range; an existing one only if its vector
   * changed), then each changed later timestamp in ascending order.
   *
   * The state is updated synchronously, so calls are applied in call order.
   * A chunk older than the data window is dropped and counted; elements
   * outside `[0, length)` are dropped and counted.
   *
   * @param chunk The chunk, with values of the stream's dtype.
   * @returns A promise that settles when the client's callbacks for this
   *   chunk have settled; it rejects with the first error one of them threw
   *   (the state is updated regardless).
   * @throws {TensorDemuxerChunkError} (as a rejection) When the chunk is
   *   malformed; nothing changes.
   */
  receive(chunk: TensorChunk): Promise<void> {
    const before = this.#noteCount;
    try {
      this.#validate(chunk);
    } catch (error) {
      return Promise.reject(error);
    }
    this.#mark++;
    this.#apply(chunk);
    return this.#finish(before);
  }

  /**
   * Applies several chunks as one batch (typically the chunks of one
   * `TensorUpdate`), then notifies the client once for each snapshot they
   * created or changed, in ascending timestamp order, with the final values.
   * This is the cheap path for many small chunks: one notification pass and
   * one promise for the whole batch.
   *
   * Every chunk is validated before any is applied, so a malformed chunk
   * anywhere in the batch rejects it whole and leaves the state unchanged.
   * Stale chunks and out-of-range elements are dropped and counted as in
   * {@linkcode TensorDemuxer.receive}.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { TensorDemuxer } from "@tsercom/tsercom/tensor";
   *
   * const log: [number, number[]][] = [];
   * const demuxer = new TensorDemuxer({
   *   onTensorChanged(timestamp, values) {
   *     log.push([timestamp, Array.from(values)]);
   *   },
   * }, { dtype: "int32", length: 3 });
   *
   * await demuxer.receiveAll([
   *   { timestamp: 20, startingIndex: 2, values: new Int32Array([9]) },
   *   { timestamp: 10, startingIndex: 0, values: new Int32Array([1]) },
   *   { timestamp: 20, startingIndex: 1, values: new Int32Array([8]) },
   * ]);
   * assert.deepEqual(log, [[10, [1, 0, 0]], [20, [1, 8, 9]]]);
   * ```
   *
   * @param chunks The chunks, applied in order.
   * @returns A promise that settles when the client's callbacks for this
   *   batch have settled; it rejects with the first error one of them threw.
   * @throws {TensorDemuxerChunkError} (as a rejection) When any chunk is
   *   malformed, or `chunks` is not iterable; nothing changes.
   */
  receiveAll(chunks: Iterable<TensorChunk>): Promise<void> {
    const before = this.#noteCount;
    let list: readonly TensorChunk[];
    try {
      if (Array.isArray(chunks)) list = chunks;
      else if (
        chunks !== null && typeof chunks === "object" &&
        typeof (chunks as Iterable<TensorChunk>)[Symbol.iterator] === "function"
      ) list = Array.from(chunks);
      else {
        this.#reject(
          `Cannot apply the chunks as they must be an iterable of chunks: current value is ${
            describe(chunks)
          }`,
        );
      }
      for (let c = 0; c < list.length; c++) this.#validate(list[c]);
    } catch (error) {
      return Promise.reject(error);
    }
    this.#mark++;
    this.#applying = true;
    try {
      for (let c = 0; c < list.length; c++) this.#apply(list[c]);
    } finally {
      this.#applying = false;
      if (!this.#dispatching) this.#recycleRetired();
    }
    this.#sortNotes(before);
    return this.#finish(before);
  }

  /**
   * The same as {@linkcode TensorDemuxer.receive}, so that a demuxer can be
   * a multiplexer's {@linkcode TensorChunkSink} directly.
   *
   * @param chunk The chunk, with values of the stream's dtype.
   */
  onChunk(chunk: TensorChunk): Promise<void> {
    return this.receive(chunk);
  }

  /** Dispatches the notifications queued since note index `before`. */
  #finish(before: number): Promise<void> {
    if (!this.#dispatching) return this.#dispatch();
    // Called from inside a client callback: the running dispatch loop
    // delivers this call's notifications after the ones already queued.
    const count = this.#noteCount - before;
    if (count === 0) return RESOLVED;
    return new Promise<void>((resolve, reject) => {
      const batch: Batch = {
        last: before + count - 1,
        promises: [],
        failed: false,
        error: undefined,
        resolve,
        reject,
      };
      for (let k = before; k < before + count; k++) this.#noteBatches[k] = batch;
    });
  }

  /** Puts the notifications queued since note index `before` in timestamp order. */
  #sortNotes(before: number): void {
    const times = this.#noteTimes;
    const end = this.#noteCount;
    let sorted = true;
    for (let k = before + 1; k < end; k++) {
      if (times[k - 1] > times[k]) {
        sorted = false;
        break;
      }
    }
    if (sorted) return;
    const values = this.#noteValues;
    const order = Array.from({ length: end - before }, (_, k) => before + k)
      .sort((a, b) => times[a] - times[b]);
    const t = order.map((k) => times[k]);
    const v = order.map((k) => values[k]);
    for (let k = before; k < end; k++) {
      times[k] = t[k - before];
      values[k] = v[k - before];
    }
  }

  #checkIndex(i: number): void {
    if (!(Number.isInteger(i) && i >= 0 && i < this.#timeline.length)) {
      throw new RangeError(
        `Cannot read keyframe as the index must be an integer in 0..${
          this.#timeline.length - 1
        }: current value is ${i}`,
      );
    }
  }

  #reject(message: string): never {
    this.#rejected++;
    throw new TensorDemuxerChunkError(message);
  }

  /** Throws a {@linkcode TensorDemuxerChunkError} for a malformed chunk. */
  #validate(chunk: TensorChunk): void {
    if (chunk === null || typeof chunk !== "object") {
      this.#reject(`Cannot apply the chunk as it must be an object: current value is ${chunk}`);
    }
    const ts = chunk.timestamp;
    if (!Number.isSafeInteger(ts)) {
      this.#reject(
        `Cannot apply the chunk as 'timestamp' must be an integer number of microseconds: current value is ${ts}`,
      );
    }
    const start = chunk.startingIndex;
    if (!Number.isSafeInteger(start)) {
      this.#reject(
        `Cannot apply the chunk as 'startingIndex' must be an integer: current value is ${start}`,
      );
    }
    const values = chunk.values;
    if (!(values instanceof this.#ctor)) {
      this.#reject(
        `Cannot apply the chunk as its values must be a ${this.#ctor.name} for dtype ${this.dtype}: current value is ${
          describe(values)
        }`,
      );
    }
  }

  /** Applies a validated chunk, queueing its notifications. */
  #apply(chunk: TensorChunk): void {
    const ts = chunk.timestamp;
    const start = chunk.startingIndex;
    const values = chunk.values;
    const timeline = this.#timeline;
    const cutoff = this.#window.observe(ts);
    if (timeline.length > 0 && timeline.timeAt(0) < cutoff) this.#prune(cutoff);
    if (ts < cutoff) {
      this.#staleChunks++;
      return;
    }

    const n = values.length;
    const length = this.tensorLength;
    // In-range part of the chunk, as offsets into `values`.
    const lo = start >= 0 ? 0 : Math.min(n, -start);
    const hi = Math.max(lo, Math.min(n, length - start));
    if (hi - lo !== n) this.#outOfRange += n - (hi - lo);
    if (hi === lo) return;

    const i = timeline.lowerBound(ts);
    let keyframe: Keyframe;
    const isNew = i === timeline.length || timeline.timeAt(i) !== ts;
    if (isNew) {
      keyframe = this.#take();
      copyInto(keyframe.bits, i === 0 ? this.#baselineBits : timeline.valueAt(i - 1).bits);
      timeline.insertAt(i, ts, keyframe);
    } else {
      keyframe = timeline.valueAt(i);
    }
    const cascade = i < timeline.length - 1;
    if (cascade && this.#changed === null) this.#changed = new Int32Array(length);

    if (hi - lo < 64 && this.#elementCopy) {
      // Short runs: compare and copy element by element, no bits view needed.
      const changedCount = this.#writeValues(keyframe, values, start, lo, hi, cascade);
      if (isNew || changedCount !== 0) this.#note(ts, keyframe);
      if (cascade && changedCount > 0) this.#cascade(i, changedCount);
      return;
    }

    // Read the chunk's values as bits; a scratch copy avoids a new view per chunk.
    let src: Bits;
    let offset: number;
    if (hi - lo <= this.#scratch.length) {
      (this.#scratch as Float32Array).set(
        (lo === 0 && hi === n ? values : values.subarray(lo, hi)) as Float32Array,
      );
      src = this.#scratchBits;
      offset = lo;
    } else {
      src = bitsView(values);
      if (this.#bool) {
        src = (src as Uint8Array).slice();
      }
      offset = 0;
    }
    if (this.#bool) normalizeBool(src as Uint8Array, lo - offset, hi - offset);

    const changedCount = !cascade && hi - lo >= 64
      ? this.#writeBulk(keyframe, src, start, lo, hi, offset, isNew)
      : this.#wide
      ? this.#write2(keyframe, src, start, lo, hi, offset, cascade)
      : this.#write1(keyframe, src, start, lo, hi, offset, cascade);

    if (isNew || changedCount !== 0) this.#note(ts, keyframe);
    if (cascade && changedCount > 0) this.#cascade(i, changedCount);
  }

  /**
   * Writes elements [lo, hi) of a short chunk by value, for the dtypes whose
   * elements read and write back exactly as numbers (not int64, float16 or
   * bool). Equal values are skipped, but -0 differs from +0; a NaN is copied
   * as bits, so its payload survives, and equals only the same NaN. Returns
   * how many elements changed, collecting their indices when `collect`.
   */
  #writeValues(
    keyframe: Keyframe,
    values: TensorArray,
    start: number,
    lo: number,
    hi: number,
    collect: boolean,
  ): number {
    const out = keyframe.values as Float64Array;
    const from = values as Float64Array;
    const explicit = keyframe.explicit;
    const changed = this.#changed;
    let count = 0;
    let fromBits: Bits | null = null;
    for (let k = lo; k < hi; k++) {
      const idx = start + k;
      const word = idx >>> 5;
      const bit = 1 << (idx & 31);
      if ((explicit[word] & bit) === 0) {
        explicit[word] |= bit;
      }
      const x = from[k];
      const y = out[idx];
      if (x === y) {
        if (x !== 0 || 1 / x === 1 / y) continue;
        out[idx] = x;
      } else if (x === x) {
        out[idx] = x;
      } else if (!this.#copyBits(keyframe.bits, idx, fromBits ??= bitsView(values), k)) {
        continue;
      }
      if (collect) changed![count] = idx;
      count++;
    }
    return count;
  }

  /** Copies element `k` of `from` to element `idx` of `to` as bits; returns whether it changed. */
  #copyBits(to: Bits, idx: number, from: Bits, k: number): boolean {
    if (this.#wide) {
      const d = 2 * idx;
      const s = 2 * k;
      if (to[d] === from[s] && to[d + 1] === from[s + 1]) return false;
      to[d] = from[s];
      to[d + 1] = from[s + 1];
      return true;
    }
    if (to[idx] === from[k]) return false;
    to[idx] = from[k];
    return true;
  }

  /**
   * Writes a long run into the newest keyframe (no cascade to collect):
   * marks the run explicit and copies it in bulk. Returns 0 when nothing
   * changed, else a positive number.
   */
  #writeBulk(
    keyframe: Keyframe,
    src: Bits,
    start: number,
    lo: number,
    hi: number,
    offset: number,
    isNew: boolean,
  ): number {
    const a = start + lo;
    const b = start + hi;
    setBits(keyframe.explicit, a, b);
    const w = this.#wide ? 2 : 1;
    const bits = keyframe.bits;
    const s1 = (hi - offset) * w;
    let s = (lo - offset) * w;
    const shift = a * w - s; // bits index = src index + shift
    if (!isNew) {
      while (s < s1 && bits[s + shift] === src[s]) s++;
      if (s === s1) return 0;
    }
    (bits as Int32Array).set((src as Int32Array).subarray(s, s1), s + shift);
    return 1;
  }

  /** Writes elements [lo, hi) of a 1-word-per-element chunk; returns how many changed. */
  #write1(
    keyframe: Keyframe,
    src: Bits,
    start: number,
    lo: number,
    hi: number,
    offset: number,
    collect: boolean,
  ): number {
    const bits = keyframe.bits;
    const explicit = keyframe.explicit;
    const changed = this.#changed;
    let count = 0;
    for (let k = lo; k < hi; k++) {
      const idx = start + k;
      const word = idx >>> 5;
      const bit = 1 << (idx & 31);
      if ((explicit[word] & bit) === 0) {
        explicit[word] |= bit;
      }
      const v = src[k - offset];
      if (bits[idx] !== v) {
        bits[idx] = v;
        if (collect) changed![count] = idx;
        count++;
      }
    }
    return count;
  }

  /** Writes elements [lo, hi) of a 2-words-per-element chunk; returns how many changed. */
  #write2(
    keyframe: Keyframe,
    src: Bits,
    start: number,
    lo: number,
    hi: number,
    offset: number,
    collect: boolean,
  ): number {
    const bits = keyframe.bits;
    const explicit = keyframe.explicit;
    const changed = this.#changed;
    let count = 0;
    for (let k = lo; k < hi; k++) {
      const idx = start + k;
      const word = idx >>> 5;
      const bit = 1 << (idx & 31);
      if ((explicit[word] & bit) === 0) {
        explicit[word] |= bit;
      }
      const s = 2 * (k - offset);
      const d = 2 * idx;
      const a = src[s];
      const b = src[s + 1];
      if (bits[d] !== a || bits[d + 1] !== b) {
        bits[d] = a;
        bits[d + 1] = b;
        if (collect) changed![count] = idx;
        count++;
      }
    }
    return count;
  }

  /**
   * Carries the `count` changed indices of keyframe `i` forward: each later
   * keyframe that sets an index explicitly stops it; the others take the new
   * value. Stops when no index is left.
   */
  #cascade(i: number, count: number): void {
    const timeline = this.#timeline;
    const keyframes = timeline.values;
    const times = timeline.times;
    const end = keyframes.length;
    const changed = this.#changed!;
    const from = keyframes[timeline.start + i].bits;
    const wide = this.#wide;
    for (let j = timeline.start + i + 1; j < end && count > 0; j++) {
      const keyframe = keyframes[j];
      const explicit = keyframe.explicit;
      const bits = keyframe.bits;
      let keep = 0;
      if (wide) {
        for (let m = 0; m < count; m++) {
          const idx = changed[m];
          if ((explicit[idx >>> 5] & (1 << (idx & 31))) !== 0) continue;
          const d = 2 * idx;
          const a = from[d];
          const b = from[d + 1];
          if (bits[d] === a && bits[d + 1] === b) continue;
          bits[d] = a;
          bits[d + 1] = b;
          changed[keep++] = idx;
        }
      } else {
        for (let m = 0; m < count; m++) {
          const idx = changed[m];
          if ((explicit[idx >>> 5] & (1 << (idx & 31))) !== 0) continue;
          const v = from[idx];
          if (bits[idx] === v) continue;
          bits[idx] = v;
          if (keep !== m) changed[keep] = idx;
          keep++;
        }
      }
      count = keep;
      if (keep > 0) this.#note(times[j], keyframe);
    }
  }

  #note(ts: number, keyframe: Keyframe): void {
    if (keyframe.mark === this.#mark) return; // already queued by this call
    keyframe.mark = this.#mark;
    // The arrays are reused and never shrink, so steady-state notes do not allocate.
    const k = this.#noteCount++;
    this.#noteTimes[k] = ts;
    this.#noteValues[k] = keyframe.values;
    this.#noteBatches[k] = undefined;
  }

  /** Delivers every queued notification, in order, synchronously. */
  #dispatch(): Promise<void> {
    if (this.#noteCount === 0) return RESOLVED;
    const times = this.#noteTimes;
    const values = this.#noteValues;
    const batches = this.#noteBatches;
    const client = this.#client;
    let own: Promise<unknown>[] | undefined;
    let failed = false;
    let error: unknown;
    this.#dispatching = true;
    try {
      for (let k = 0; k < this.#noteCount; k++) {
        const batch = batches[k];
        let result: unknown;
        try {
          result = client.onTensorChanged(times[k], values[k] as TypedArrayByDType[D]);
        } catch (e) {
          if (batch === undefined) {
            if (!failed) {
              failed = true;
              error = e;
            }
          } else if (!batch.failed) {
            batch.failed = true;
            batch.error = e;
          }
        }
        if (result !== undefined && isThenable(result)) {
          if (batch === undefined) (own ??= []).push(result);
          else batch.promises.push(result);
        }
        if (batch !== undefined && batch.last === k) settle(batch);
      }
    } finally {
      // Drop the references (so pooled-out vectors can be collected), keep the arrays.
      values.fill(undefined as unknown as TensorArray, 0, this.#noteCount);
      batches.fill(undefined, 0, this.#noteCount);
      this.#noteCount = 0;
      this.#dispatching = false;
      this.#recycleRetired();
    }
    if (failed) {
      if (own !== undefined) return Promise.allSettled(own).then(() => Promise.reject(error));
      return Promise.reject(error);
    }
    if (own !== undefined) return Promise.all(own).then(noop);
    return RESOLVED;
  }

  /** Removes the keyframes older than `cutoff`; the newest of them becomes the baseline. */
  #prune(cutoff: number): void {
    const removed = this.#timeline.pruneBefore(cutoff);
    const newest = removed[removed.length - 1];
    const values = newest.values;
    const bits = newest.bits;
    newest.values = this.#baseline;
    newest.bits = this.#baselineBits;
    this.#baseline = values;
    this.#baselineBits = bits;
    for (const keyframe of removed) {
      if (this.#dispatching || this.#applying) this.#retired.push(keyframe);
      else this.#recycle(keyframe);
    }
  }

  #recycleRetired(): void {
    if (this.#retired.length === 0) return;
    for (const keyframe of this.#retired) this.#recycle(keyframe);
    this.#retired.length = 0;
  }

  #recycle(keyframe: Keyframe): void {
    if (this.#pool.length >= POOL_LIMIT) return;
    keyframe.explicit.fill(0);
    this.#pool.push(keyframe);
  }

  #take(): Keyframe {
    const pooled = this.#pool.pop();
    if (pooled !== undefined) return pooled;
    const values = allocate(this.dtype, this.tensorLength);
    return {
      values,
      bits: bitsView(values),
      explicit: new Int32Array((this.tensorLength + 31) >>> 5),
      mark: 0,
    };
  }
}

function settle(batch: Batch): void {
  if (batch.failed) {
    if (batch.promises.length === 0) batch.reject(batch.error);
    else {
      const error = batch.error;
      Promise.allSettled(batch.promises).then(() => batch.reject(error));
    }
  } else if (batch.promises.length === 0) batch.resolve();
  else Promise.all(batch.promises).then(() => batch.resolve(), batch.reject);
}

/** Sets bits [a, b) of a bitset. */
function setBits(bitset: Int32Array, a: number, b: number): void {
  if (a >= b) return;
  const first = a >>> 5;
  const last = (b - 1) >>> 5;
  const head = -1 << (a & 31);
  const tail = -1 >>> (31 - ((b - 1) & 31));
  if (first === last) {
    bitset[first] |= head & tail;
    return;
  }
  bitset[first] |= head;
  bitset.fill(-1, first + 1, last);
  bitset[last] |= tail;
}

function normalizeBool(bits: Uint8Array, from: number, to: number): void {
  for (let k = from; k < to; k++) if (bits[k] > 1) bits[k] = 1;
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (typeof value === "object" || typeof value === "function") {
    const name = (value as { constructor?: { name?: string } }).constructor?.name;
    return name ? `a ${name}` : "an object";
  }
  return `${typeof value} ${String(value)}`;
}
