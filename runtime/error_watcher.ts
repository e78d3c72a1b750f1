/**
 * {@linkcode ErrorWatcher}: the place where background failures are reported
 * and from where they are raised again — the first one kept, all of them
 * listed, none lost or swallowed.
 *
 * @module
 */

import { show } from "../rpc/_show.ts";
import { MAX_DELAY_MS, type Scheduler, systemScheduler } from "../rpc/scheduler.ts";
import { SystemClock } from "../rpc/system_clock.ts";

/** Options for {@linkcode ErrorWatcher}. */
export interface ErrorWatcherOptions {
  /**
   * How many errors {@linkcode ErrorWatcher.errors} keeps at most (an integer
   * >= 1). The first `maxErrors` are kept; later ones are only counted in
   * {@linkcode ErrorWatcher.droppedCount}, so a flood of errors cannot
   * exhaust memory. The first error is always kept.
   *
   * @default {1000}
   */
  maxErrors?: number;
  /**
   * The clock that stamps each {@linkcode ErrorRecord.time} (only `now()` is
   * used: integer microseconds since the Unix epoch). If it throws, the
   * system time is used instead, so that the error is not lost.
   *
   * @default {new SystemClock()}
   */
  clock?: { now(): number };
}

/** Options for {@linkcode ErrorWatcher.untilException}. */
export interface UntilExceptionOptions {
  /**
   * Stops waiting: the promise rejects with `signal.reason`.
   *
   * @default {undefined}
   */
  signal?: AbortSignal;
  /**
   * Gives up after this many milliseconds (0..{@linkcode MAX_DELAY_MS}): the
   * promise rejects with an {@linkcode ErrorWatcherTimeoutError}. Waits
   * without limit when omitted.
   *
   * @default {undefined}
   */
  timeoutMs?: number;
  /**
   * The timers for `timeoutMs`.
   *
   * @default {systemScheduler}
   */
  scheduler?: Scheduler;
}

/** One error reported to an {@linkcode ErrorWatcher}. */
export interface ErrorRecord {
  /** What was reported: the original value, never wrapped or copied. */
  readonly error: unknown;
  /** Where it came from, as given to {@linkcode ErrorWatcher.report}, if given. */
  readonly source: string | undefined;
  /** When it was reported, in microseconds since the Unix epoch (the watcher's clock). */
  readonly time: number;
}

/**
 * Called with each error reported to an {@linkcode ErrorWatcher}; see
 * {@linkcode ErrorWatcher.addListener}.
 */
export type ErrorListener = (record: ErrorRecord) => void;

/**
 * The error {@linkcode ErrorWatcher.untilException} rejects with when no
 * error was reported within `timeoutMs`.
 */
export class ErrorWatcherTimeoutError extends Error {
  /** The time limit that passed, in milliseconds. */
  readonly timeoutMs: number;

  /**
   * Creates the error.
   *
   * @param timeoutMs The time limit that passed, in milliseconds.
   */
  constructor(timeoutMs: number) {
    super(
      `Cannot wait for an error any longer as one had to be reported within ${timeoutMs} ms: none was`,
    );
    this.name = "ErrorWatcherTimeoutError";
    this.timeoutMs = timeoutMs;
  }
}

/** The source of errors thrown by listeners. */
const LISTENER_SOURCE = "ErrorWatcher listener";

interface Waiter {
  reject(error: unknown): void;
}

/**
 * Collects the errors of background work (runtimes, workers, timers,
 * detached promises) so that the code in charge can raise them where it
 * chooses: {@linkcode ErrorWatcher.checkForException} throws the first one,
 * {@linkcode ErrorWatcher.untilException} waits for one, and listeners hear
 * of each one as it is reported.
 *
 * Guarantees:
 *
 * - The **first** error is kept for good and is what both
 *   {@linkcode ErrorWatcher.checkForException} and
 *   {@linkcode ErrorWatcher.untilException} raise, every time: the original
 *   object, so its class and message survive.
 * - **All** errors are listed in order, with their source and time, up to
 *   `maxErrors`; the rest are counted in
 *   {@linkcode ErrorWatcher.droppedCount}.
 * - **Nothing is swallowed**: {@linkcode ErrorWatcher.report} never throws,
 *   and an error thrown by a listener is itself recorded (with the source
 *   `"ErrorWatcher listener"`).
 * - The same error object reported twice (a common pattern: report, then
 *   re-throw to a caller that reports too) is recorded once.
 *
 * Unlike the Python `ThreadWatcher`, waiting can be cancelled or limited in
 * time, and errors can be pushed to listeners instead of polled.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ErrorWatcher } from "./error_watcher.ts";
 *
 * const watcher = new ErrorWatcher();
 * const heard: string[] = [];
 * watcher.addListener((record) => heard.push(`${record.source}: ${record.error}`));
 * watcher.checkForException(); // nothing yet: does not throw
 *
 * watcher.report(new RangeError("sensor 3 out of range"), "reader");
 * watcher.report(new Error("later failure"), "writer");
 *
 * assert.throws(() => watcher.checkForException(), RangeError);
 * await assert.rejects(watcher.untilException(), /sensor 3 out of range/);
 * assert.deepEqual(heard, [
 *   "reader: RangeError: sensor 3 out of range",
 *   "writer: Error: later failure",
 * ]);
 * assert.equal(watcher.errors.length, 2);
 * ```
 */
export class ErrorWatcher {
  readonly #maxErrors: number;
  readonly #clock: { now(): number };
  readonly #records: ErrorRecord[] = [];
  readonly #seen = new WeakSet<object>();
  readonly #listeners = new Set<{ fn: ErrorListener }>();
  readonly #waiters = new Set<Waiter>();
  #dropped = 0;

  /**
   * Creates a watcher with no errors.
   *
   * @param options The bound on the list and the clock.
   * @throws {RangeError} When `maxErrors` is not an integer >= 1.
   * @throws {TypeError} When `clock` has no `now` method.
   */
  constructor(options: ErrorWatcherOptions = {}) {
    const { maxErrors = 1_000, clock = new SystemClock() } = options ?? {};
    if (!Number.isInteger(maxErrors) || maxErrors < 1) {
      throw new RangeError(
        `Cannot create an ErrorWatcher as 'maxErrors' must be an integer >= 1: current value is ${
          show(maxErrors)
        }`,
      );
    }
    if (typeof (clock as { now?: unknown } | null)?.now !== "function") {
      throw new TypeError(
        `Cannot create an ErrorWatcher as 'clock' must have a now method: current value is ${
          show(clock)
        }`,
      );
    }
    this.#maxErrors = maxErrors;
    this.#clock = clock;
  }

  /** Whether any error has been reported. */
  get hasError(): boolean {
    return this.#records.length > 0;
  }

  /** The first error reported, or `undefined` when there is none yet. */
  get firstError(): ErrorRecord | undefined {
    return this.#records[0];
  }

  /**
   * The errors reported, in order, up to `maxErrors` of them (a copy; the
   * records themselves are frozen).
   */
  get errors(): ErrorRecord[] {
    return [...this.#records];
  }

  /** How many errors were reported after the list was full, and so are not in it. */
  get droppedCount(): number {
    return this.#dropped;
  }

  /** How many errors were reported in all: those listed plus those dropped. */
  get reportedCount(): number {
    return this.#records.length + this.#dropped;
  }

  /**
   * Records an error: lists it (or counts it once the list is full), wakes
   * every {@linkcode ErrorWatcher.untilException} if it is the first, and
   * then calls every listener with it, synchronously, in the order they were
   * added.
   *
   * Never throws, as it is called from `catch` blocks and error handlers
   * where a throw would lose the error. An error a listener throws is
   * recorded too, with the source `"ErrorWatcher listener"`, once all
   * listeners have run; listeners are not called for such errors, so a
   * listener that always throws cannot loop forever.
   *
   * Reporting an object that was reported already does nothing, so the same
   * failure reported at several levels is recorded once. Primitive values
   * (a thrown string, say) cannot be told apart and are recorded each time.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { ErrorWatcher } from "./error_watcher.ts";
   *
   * const watcher = new ErrorWatcher();
   * const error = new Error("disk full");
   * assert.equal(watcher.report(error, "writer"), true);
   * assert.equal(watcher.report(error, "main"), false); // the same object
   * assert.equal(watcher.firstError?.source, "writer");
   * ```
   *
   * @param error What went wrong; any value, kept as it is.
   * @param source Where it happened (for example a runtime's name). A value
   *   that is not a string is described with `String()` rather than rejected,
   *   so that the error is not lost.
   * @returns `false` when this very object had been reported already, `true`
   *   otherwise.
   */
  report(error: unknown, source?: string): boolean {
    const record = this.#record(error, source);
    if (record === undefined) return false;
    const thrown: unknown[] = [];
    for (const entry of [...this.#listeners]) {
      if (!this.#listeners.has(entry)) continue; // removed by an earlier listener
      try {
        entry.fn(record);
      } catch (listenerError) {
        thrown.push(listenerError);
      }
    }
    for (const listenerError of thrown) this.#record(listenerError, LISTENER_SOURCE);
    return true;
  }

  /**
   * Throws the first error reported — the original value, so its class and
   * message survive — or returns when there is none. Repeatable: every call
   * throws the same first error; errors are never consumed.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { ErrorWatcher } from "./error_watcher.ts";
   *
   * class SensorError extends Error {}
   * const watcher = new ErrorWatcher();
   * watcher.checkForException();
   * watcher.report(new SensorError("no signal"));
   * assert.throws(() => watcher.checkForException(), SensorError);
   * assert.throws(() => watcher.checkForException(), SensorError);
   * ```
   *
   * @throws {unknown} The first error reported, if any.
   */
  checkForException(): void {
    if (this.#records.length > 0) throw this.#records[0].error;
  }

  /**
   * Waits for an error and rejects with the first one reported — at once
   * when there is one already — so that `await watcher.untilException()`
   * throws it where the caller is. It never resolves.
   *
   * Aborting `options.signal` rejects with `signal.reason`; when
   * `options.timeoutMs` passes first, it rejects with an
   * {@linkcode ErrorWatcherTimeoutError}. A reported error wins when one is
   * already there. The timer and the abort listener are removed whichever
   * way the wait ends.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { ManualScheduler } from "@tsercom/tsercom/rpc";
   * import { ErrorWatcher, ErrorWatcherTimeoutError } from "./error_watcher.ts";
   *
   * const watcher = new ErrorWatcher();
   * const waiting = watcher.untilException();
   * watcher.report(new TypeError("bad frame"), "decoder");
   * await assert.rejects(waiting, TypeError);
   *
   * const quiet = new ErrorWatcher();
   * const scheduler = new ManualScheduler();
   * const limited = quiet.untilException({ timeoutMs: 1_000, scheduler });
   * scheduler.advance(1_000);
   * await assert.rejects(limited, ErrorWatcherTimeoutError);
   * ```
   *
   * @param options A signal to stop waiting, a time limit and its scheduler.
   * @returns A promise that rejects with the first error, the signal's
   *   reason, or an {@linkcode ErrorWatcherTimeoutError}.
   * @throws {RangeError} When `timeoutMs` is out of range.
   * @throws {TypeError} When `signal` or `scheduler` is not what it should be.
   */
  untilException(options: UntilExceptionOptions = {}): Promise<never> {
    const { signal, timeoutMs, scheduler = systemScheduler } = options ?? {};
    const operation = "wait for an error";
    if (signal !== undefined && !(signal instanceof AbortSignal)) {
      throw new TypeError(
        `Cannot ${operation} as 'signal' must be an AbortSignal: current value is ${show(signal)}`,
      );
    }
    if (
      timeoutMs !== undefined &&
      (typeof timeoutMs !== "number" || !(timeoutMs >= 0 && timeoutMs <= MAX_DELAY_MS))
    ) {
      throw new RangeError(
        `Cannot ${operation} as 'timeoutMs' must be a number in 0..${MAX_DELAY_MS}: current value is ${
          show(timeoutMs)
        }`,
      );
    }
    const candidate = scheduler as Partial<Scheduler> | null;
    if (
      typeof candidate?.setTimeout !== "function" || typeof candidate?.clearTimeout !== "function"
    ) {
      throw new TypeError(
        `Cannot ${operation} as 'scheduler' must have setTimeout and clearTimeout methods: current value is ${
          show(scheduler)
        }`,
      );
    }
    if (this.#records.length > 0) return Promise.reject(this.#records[0].error);
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise<never>((_resolve, reject) => {
      let handle: unknown;
      const finish = (reason: unknown) => {
        this.#waiters.delete(waiter);
        if (timeoutMs !== undefined) scheduler.clearTimeout(handle);
        signal?.removeEventListener("abort", onAbort);
        reject(reason);
      };
      const onAbort = () => finish(signal?.reason);
      const waiter: Waiter = { reject: finish };
      this.#waiters.add(waiter);
      if (timeoutMs !== undefined) {
        handle = scheduler.setTimeout(
          () => finish(new ErrorWatcherTimeoutError(timeoutMs)),
          timeoutMs,
        );
      }
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  /**
   * Adds a listener, called synchronously with each error reported from now
   * on, after the listeners added before it. The same function added twice
   * is called twice. A listener removed while an error is being delivered is
   * not called for it; one added meanwhile is called from the next error on.
   * What a listener throws is recorded (see {@linkcode ErrorWatcher.report}).
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { ErrorWatcher } from "./error_watcher.ts";
   *
   * const watcher = new ErrorWatcher();
   * const messages: string[] = [];
   * const unsubscribe = watcher.addListener(({ error }) => messages.push(String(error)));
   * watcher.report(new Error("one"));
   * unsubscribe();
   * watcher.report(new Error("two"));
   * assert.deepEqual(messages, ["Error: one"]);
   * ```
   *
   * @param listener Called with each {@linkcode ErrorRecord}.
   * @returns A function that removes this listener; calling it again does nothing.
   * @throws {TypeError} When `listener` is not a function.
   */
  addListener(listener: ErrorListener): () => void {
    if (typeof listener !== "function") {
      throw new TypeError(
        `Cannot add an error listener as 'listener' must be a function: current value is ${
          show(listener)
        }`,
      );
    }
    const entry = { fn: listener };
    this.#listeners.add(entry);
    return () => {
      this.#listeners.delete(entry);
    };
  }

  /**
   * Reports the rejection of `promise`, if it rejects, with `source`: the
   * way to start background work without losing its failure. The returned
   * promise resolves once `promise` has settled (and any rejection was
   * reported); it never rejects.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { ErrorWatcher } from "./error_watcher.ts";
   *
   * const watcher = new ErrorWatcher();
   * await watcher.watch(Promise.reject(new Error("upload failed")), "uploader");
   * assert.equal(watcher.firstError?.source, "uploader");
   * assert.throws(() => watcher.checkForException(), /upload failed/);
   * ```
   *
   * @param promise The background work.
   * @param source Where a failure is reported from.
   * @returns A promise that resolves once `promise` has settled.
   * @throws {TypeError} When `promise` is not a promise (has no `then` method).
   */
  watch(promise: PromiseLike<unknown>, source?: string): Promise<void> {
    if (typeof (promise as { then?: unknown } | null)?.then !== "function") {
      throw new TypeError(
        `Cannot watch a promise as 'promise' must have a then method: current value is ${
          show(promise)
        }`,
      );
    }
    return Promise.resolve(promise).then(
      () => {},
      (error) => {
        this.report(error, source);
      },
    );
  }

  /**
   * Lists or counts `error` and, if it is the first, rejects every waiter.
   * Returns its record, or `undefined` for an object reported already.
   */
  #record(error: unknown, source: unknown): ErrorRecord | undefined {
    if ((typeof error === "object" && error !== null) || typeof error === "function") {
      if (this.#seen.has(error)) return undefined;
      this.#seen.add(error);
    }
    const record: ErrorRecord = Object.freeze({
      error,
      source: source === undefined || typeof source === "string" ? source : show(source),
      time: this.#now(),
    });
    if (this.#records.length >= this.#maxErrors) {
      this.#dropped++;
      return record;
    }
    this.#records.push(record);
    if (this.#records.length === 1) {
      for (const waiter of [...this.#waiters]) waiter.reject(error);
    }
    return record;
  }

  /**
   * The clock's time. A clock that throws must not lose the error being
   * recorded: the system time is used instead.
   */
  #now(): number {
    try {
      return this.#clock.now();
    } catch {
      return Date.now() * 1_000;
    }
  }
}
