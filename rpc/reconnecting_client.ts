/**
 * {@linkcode ReconnectingClient}: holds one connection (a channel, a client,
 * a stream) and reconnects with exponential backoff when the server goes
 * away. The counterpart of the Python library's `ClientDisconnectionRetrier`.
 *
 * @module
 */

import { delay } from "./_async.ts";
import { isServerUnavailableError } from "./grpc_errors.ts";
import { MAX_DELAY_MS, type Scheduler, systemScheduler } from "./scheduler.ts";
import { show } from "./_show.ts";

/** Anything that can be closed: what {@linkcode ReconnectingClient} connects. */
export interface ClosableConnection {
  /** Releases the connection; may be asynchronous. */
  close(): void | Promise<void>;
}

/**
 * Makes one connection attempt. It resolves to the connection, or to `null`
 * (or `undefined`) when it could not connect (channel factories do this),
 * or rejects with why it could not. The signal is aborted when the
 * {@linkcode ReconnectingClient} is stopped.
 *
 * @typeParam T The connection.
 */
export type ConnectAttempt<T extends ClosableConnection> = (
  signal: AbortSignal,
) => Promise<T | null | undefined> | T | null | undefined;

/** How long {@linkcode ReconnectingClient} waits before each reconnection attempt. */
export interface ReconnectBackoff {
  /**
   * The wait before the first attempt, in milliseconds; each later wait is
   * `multiplier` times the previous one, up to `maxMs`.
   *
   * @default {500}
   */
  initialMs?: number;
  /**
   * The longest wait, in milliseconds (>= `initialMs`).
   *
   * @default {30000}
   */
  maxMs?: number;
  /**
   * What each wait is multiplied by for the next one (>= 1).
   *
   * @default {2}
   */
  multiplier?: number;
  /**
   * `"full"`: wait a uniformly random time between 0 and the backoff, so
   * that many clients of one server do not all come back at once;
   * `"none"`: wait exactly the backoff.
   *
   * @default {"full"}
   */
  jitter?: "full" | "none";
}

/** Options for {@linkcode ReconnectingClient}. */
export interface ReconnectingClientOptions {
  /**
   * How many reconnection attempts to make after a disconnection before
   * giving up (an integer >= 0); `undefined` retries for ever.
   *
   * @default {undefined}
   */
  maxRetries?: number;
  /**
   * The waits before reconnection attempts: exponential with jitter.
   *
   * @default {{ initialMs: 500, maxMs: 30000, multiplier: 2, jitter: "full" }}
   */
  backoff?: ReconnectBackoff;
  /**
   * The source of randomness for the jitter; must return a number in
   * [0, 1]. Inject a fixed function for deterministic tests.
   *
   * @default {Math.random}
   */
  random?: () => number;
  /**
   * Decides whether an error means "the server is unavailable, try again
   * later": such errors from a disconnection start reconnecting, and such
   * errors from an attempt count as a failed attempt. Other errors end the
   * connection for good and go to `onError`.
   *
   * @default {isServerUnavailableError} (`UNAVAILABLE` and `DEADLINE_EXCEEDED`
   * status errors; pass `(e) => isServerUnavailableError(e, { deadlineExceeded: false })`
   * to treat a deadline as a real failure)
   */
  isServerUnavailable?: (error: unknown) => boolean;
  /**
   * Called once the reconnection attempts are used up, with the last
   * attempt's error (a {@linkcode NoConnectionError} when `connect` gave
   * nothing) and the number of attempts made. The Python library gave up
   * silently.
   *
   * @default {undefined}
   */
  onGiveUp?: (error: unknown, attempts: number) => void;
  /**
   * Called with errors that end the connection without a retry: a
   * disconnection error that is not "unavailable", an attempt that failed
   * for another reason, and a failure to close a connection.
   *
   * @default {undefined}
   */
  onError?: (error: unknown) => void;
  /**
   * The timers used for the waits.
   *
   * @default {systemScheduler}
   */
  scheduler?: Scheduler;
  /**
   * Stops the client for good when aborted, as {@linkcode ReconnectingClient.stop} does.
   *
   * @default {undefined}
   */
  signal?: AbortSignal;
}

/**
 * How a call to {@linkcode ReconnectingClient.onDisconnect} ended:
 * - `"connected"`: a new connection is in {@linkcode ReconnectingClient.current};
 * - `"gave-up"`: every attempt failed; `onGiveUp` was called;
 * - `"failed"`: an attempt failed with an error that is not "unavailable";
 *   `onError` was called;
 * - `"not-retried"`: the disconnection error was not "unavailable", so the
 *   connection was closed without reconnecting; `onError` was called;
 * - `"stopped"`: the client was stopped while reconnecting;
 * - `"ignored"`: there was no error, or no connection to replace (the client
 *   is stopped, was never started, or its start failed).
 */
export type ReconnectOutcome =
  | "connected"
  | "gave-up"
  | "failed"
  | "not-retried"
  | "stopped"
  | "ignored";

/** The error for a connection attempt whose `connect` resolved to `null` or `undefined`. */
export class NoConnectionError extends Error {
  /**
   * Creates the error.
   *
   * @param value What `connect` resolved to.
   */
  constructor(value: null | undefined) {
    super(`Cannot use the connection as 'connect' must resolve to one: it resolved to ${value}`);
    this.name = "NoConnectionError";
  }
}

/**
 * Keeps one connection to a server and replaces it when the server goes
 * away.
 *
 * - {@linkcode ReconnectingClient.start} makes one attempt: `true` when it
 *   connected, `false` when the server is unavailable (or `connect` gave
 *   nothing); other errors are thrown.
 * - {@linkcode ReconnectingClient.onDisconnect} is what the code using the
 *   connection calls when a call on it fails. An "unavailable" error closes
 *   the connection and reconnects: wait, attempt, and again with exponential
 *   backoff and jitter, up to `maxRetries` attempts. Concurrent calls share
 *   one reconnection.
 * - {@linkcode ReconnectingClient.stop} closes the connection and ends any
 *   wait or attempt at once.
 *
 * Fixes over the Python `ClientDisconnectionRetrier`: `connect` resolving to
 * `null` counts as a failed attempt (it looped for ever); giving up calls
 * `onGiveUp` (it was silent); the wait is exponential with jitter (it was a
 * fixed 4–8 s); a connection that arrives after `stop()` is closed rather
 * than kept; and the "unavailable" test is injectable (`DEADLINE_EXCEEDED`
 * included by default, as before).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import {
 *   GrpcStatus,
 *   GrpcStatusError,
 *   ManualScheduler,
 *   ReconnectingClient,
 * } from "@tsercom/tsercom/rpc";
 *
 * const scheduler = new ManualScheduler();
 * let made = 0;
 * const client = new ReconnectingClient(() => ({ n: ++made, close() {} }), {
 *   backoff: { initialMs: 100, jitter: "none" },
 *   scheduler,
 * });
 * assert.equal(await client.start(), true);
 * const outcome = client.onDisconnect(new GrpcStatusError(GrpcStatus.UNAVAILABLE, "gone"));
 * await scheduler.whenPending();
 * scheduler.advance(100);
 * assert.equal(await outcome, "connected");
 * assert.equal(client.current?.n, 2);
 * await client.stop();
 * ```
 *
 * @typeParam T The connection.
 */
export class ReconnectingClient<T extends ClosableConnection> implements AsyncDisposable {
  readonly #connect: ConnectAttempt<T>;
  readonly #maxRetries: number | undefined;
  readonly #initialMs: number;
  readonly #maxMs: number;
  readonly #multiplier: number;
  readonly #jitter: "full" | "none";
  readonly #random: () => number;
  readonly #isServerUnavailable: (error: unknown) => boolean;
  readonly #onGiveUp: ((error: unknown, attempts: number) => void) | undefined;
  readonly #onError: ((error: unknown) => void) | undefined;
  readonly #scheduler: Scheduler;
  readonly #signal: AbortSignal | undefined;
  #current: T | null = null;
  /** Aborted by stop(); a new one for each start(). */
  #controller: AbortController | undefined;
  /** The controller of the start() in progress, if any. */
  #starting: AbortController | undefined;
  #reconnecting: Promise<ReconnectOutcome> | undefined;

  /**
   * Creates a client; nothing connects until {@linkcode ReconnectingClient.start}.
   *
   * @param connect Makes one connection attempt.
   * @param options Retries, backoff, error classification, callbacks, timers
   * and a signal.
   * @throws {RangeError} When a number is out of range or `jitter` is unknown.
   * @throws {TypeError} When `connect`, a callback, `scheduler` or `signal`
   * is not what it should be.
   */
  constructor(connect: ConnectAttempt<T>, options: ReconnectingClientOptions = {}) {
    const operation = "create a ReconnectingClient";
    checkFunction(operation, "connect", connect);
    const {
      maxRetries,
      backoff = {},
      random = Math.random,
      isServerUnavailable = defaultIsServerUnavailable,
      onGiveUp,
      onError,
      scheduler = systemScheduler,
      signal,
    } = options ?? {};
    if (maxRetries !== undefined && !(Number.isInteger(maxRetries) && maxRetries >= 0)) {
      throw new RangeError(
        `Cannot ${operation} as 'maxRetries' must be an integer >= 0 or undefined: current value is ${
          show(maxRetries)
        }`,
      );
    }
    const { initialMs = 500, maxMs = 30_000, multiplier = 2, jitter = "full" } = backoff ?? {};
    checkDelay(operation, "backoff.initialMs", initialMs);
    checkDelay(operation, "backoff.maxMs", maxMs);
    if (maxMs < initialMs) {
      throw new RangeError(
        `Cannot ${operation} as 'backoff.maxMs' must be >= 'backoff.initialMs' (${initialMs}): current value is ${maxMs}`,
      );
    }
    if (typeof multiplier !== "number" || !Number.isFinite(multiplier) || multiplier < 1) {
      throw new RangeError(
        `Cannot ${operation} as 'backoff.multiplier' must be a finite number >= 1: current value is ${
          show(multiplier)
        }`,
      );
    }
    if (jitter !== "full" && jitter !== "none") {
      throw new RangeError(
        `Cannot ${operation} as 'backoff.jitter' must be "full" or "none": current value is ${
          show(jitter)
        }`,
      );
    }
    checkFunction(operation, "random", random);
    checkFunction(operation, "isServerUnavailable", isServerUnavailable);
    if (onGiveUp !== undefined) checkFunction(operation, "onGiveUp", onGiveUp);
    if (onError !== undefined) checkFunction(operation, "onError", onError);
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
    if (signal !== undefined && !(signal instanceof AbortSignal)) {
      throw new TypeError(
        `Cannot ${operation} as 'signal' must be an AbortSignal: current value is ${show(signal)}`,
      );
    }
    this.#connect = connect;
    this.#maxRetries = maxRetries;
    this.#initialMs = initialMs;
    this.#maxMs = maxMs;
    this.#multiplier = multiplier;
    this.#jitter = jitter;
    this.#random = random;
    this.#isServerUnavailable = isServerUnavailable;
    this.#onGiveUp = onGiveUp;
    this.#onError = onError;
    this.#scheduler = scheduler;
    this.#signal = signal;
    signal?.addEventListener("abort", () => void this.stop(), { once: true });
  }

  /** The live connection, or `null` when there is none (not started, reconnecting, stopped). */
  get current(): T | null {
    return this.#current;
  }

  /** Whether a reconnection (waits and attempts) is under way. */
  get reconnecting(): boolean {
    return this.#reconnecting !== undefined;
  }

  /**
   * Makes one connection attempt. Calling it again after a `false`, or after
   * {@linkcode ReconnectingClient.stop}, is allowed.
   *
   * @returns `true` when connected; `false` when the server is unavailable,
   * `connect` gave nothing, or the client was stopped meanwhile.
   * @throws {Error} When the client is connected, connecting or reconnecting
   * already (the promise rejects).
   * @throws {unknown} The error of `connect` when it is not "unavailable",
   * or the `signal` option's reason when it is aborted (the promise rejects).
   */
  async start(): Promise<boolean> {
    this.#signal?.throwIfAborted();
    if (
      this.#current !== null || this.#reconnecting !== undefined ||
      (this.#starting !== undefined && !this.#starting.signal.aborted)
    ) {
      throw new Error(
        "Cannot start the ReconnectingClient as it must not be running: it is already started; stop it first",
      );
    }
    const controller = new AbortController();
    this.#controller = controller;
    this.#starting = controller;
    try {
      const connection = await this.#attempt(controller.signal);
      if (controller.signal.aborted) {
        await this.#close(connection);
        return false;
      }
      this.#current = connection;
      return true;
    } catch (error) {
      if (controller.signal.aborted) return false;
      if (error instanceof NoConnectionError || this.#isServerUnavailable(error)) return false;
      throw error;
    } finally {
      if (this.#starting === controller) this.#starting = undefined;
    }
  }

  /**
   * Handles the failure of a call on the current connection. With an
   * "unavailable" error, closes the connection and reconnects (see the class
   * documentation); with another error, closes it, reports the error to
   * `onError` and does not reconnect. Calls made while a reconnection is
   * under way share it and its outcome.
   *
   * The promise never rejects: errors go to `onError` and `onGiveUp`, and
   * the outcome says what happened.
   *
   * Pass the connection the failed call used: a late failure from a
   * connection that has been replaced already is then ignored instead of
   * tearing down its healthy successor.
   *
   * @param error Why the call failed; `undefined` or `null` is ignored.
   * @param connection The connection the call used; when it is given and is
   * not {@linkcode ReconnectingClient.current}, the failure is ignored.
   * @returns How the reconnection ended.
   */
  onDisconnect(error: unknown, connection?: T): Promise<ReconnectOutcome> {
    if (error === undefined || error === null) return Promise.resolve("ignored");
    if (this.#reconnecting !== undefined) return this.#reconnecting;
    const old = this.#current;
    const controller = this.#controller;
    if (
      old === null || controller === undefined || controller.signal.aborted ||
      (connection !== undefined && connection !== old)
    ) {
      return Promise.resolve("ignored");
    }
    this.#current = null;
    const reconnecting = this.#handleDisconnect(old, error, controller.signal).finally(() => {
      if (this.#reconnecting === reconnecting) this.#reconnecting = undefined;
    });
    this.#reconnecting = reconnecting;
    return reconnecting;
  }

  /**
   * Stops the client: ends any wait or attempt at once (an attempt that
   * still succeeds later has its connection closed), and closes and forgets
   * the current connection. {@linkcode ReconnectingClient.start} may be
   * called again afterwards.
   *
   * @returns A promise that resolves once the current connection is closed.
   */
  async stop(): Promise<void> {
    this.#controller?.abort(
      new Error("Cannot go on connecting as the ReconnectingClient was stopped"),
    );
    // A reconnection or start still in flight sees its signal aborted and
    // closes whatever it gets; it no longer blocks a new start().
    this.#reconnecting = undefined;
    this.#starting = undefined;
    const old = this.#current;
    this.#current = null;
    await this.#close(old);
  }

  /** Stops the client ({@linkcode ReconnectingClient.stop}), for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }

  async #handleDisconnect(old: T, error: unknown, signal: AbortSignal): Promise<ReconnectOutcome> {
    await this.#close(old);
    let unavailable: boolean;
    try {
      unavailable = this.#isServerUnavailable(error);
    } catch (failure) {
      this.#report(failure);
      unavailable = false;
    }
    if (!unavailable) {
      this.#report(error);
      return "not-retried";
    }
    let backoff = this.#initialMs;
    let attempts = 0;
    let last: unknown = error;
    while (this.#maxRetries === undefined || attempts < this.#maxRetries) {
      if (signal.aborted) return "stopped";
      try {
        await delay(this.#jittered(backoff), { signal, scheduler: this.#scheduler });
      } catch (failure) {
        if (signal.aborted) return "stopped";
        this.#report(failure);
        return "failed";
      }
      backoff = Math.min(this.#maxMs, backoff * this.#multiplier);
      attempts++;
      try {
        const connection = await this.#attempt(signal);
        if (signal.aborted) {
          await this.#close(connection);
          return "stopped";
        }
        this.#current = connection;
        return "connected";
      } catch (failure) {
        if (signal.aborted) return "stopped";
        let retriable: boolean;
        try {
          retriable = failure instanceof NoConnectionError || this.#isServerUnavailable(failure);
        } catch (classifying) {
          this.#report(classifying);
          retriable = false;
        }
        if (!retriable) {
          this.#report(failure);
          return "failed";
        }
        last = failure;
      }
    }
    try {
      this.#onGiveUp?.(last, attempts);
    } catch (failure) {
      this.#report(failure);
    }
    return "gave-up";
  }

  /** One call of `connect`, with its result checked. */
  async #attempt(signal: AbortSignal): Promise<T> {
    const connection = await this.#connect(signal);
    if (connection === null || connection === undefined) {
      throw new NoConnectionError(connection);
    }
    if (typeof (connection as Partial<ClosableConnection>).close !== "function") {
      // A connection we could not close would leak: close-less results are a programming error.
      throw new TypeError(
        `Cannot use the connection as 'connect' must resolve to an object with a close() method: current value is ${
          show(connection)
        }`,
      );
    }
    return connection;
  }

  #jittered(backoff: number): number {
    if (this.#jitter === "none") return backoff;
    const r = this.#random();
    if (typeof r !== "number" || !(r >= 0 && r <= 1)) {
      throw new RangeError(
        `Cannot reconnect as 'random' must return a number in [0, 1]: current value is ${show(r)}`,
      );
    }
    return r * backoff;
  }

  async #close(connection: T | null): Promise<void> {
    if (connection === null) return;
    try {
      await connection.close();
    } catch (error) {
      this.#report(error);
    }
  }

  #report(error: unknown): void {
    try {
      this.#onError?.(error);
    } catch {
      // A failing error reporter must not break the reconnection loop.
    }
  }
}

/** {@linkcode isServerUnavailableError} with its default options. */
function defaultIsServerUnavailable(error: unknown): boolean {
  return isServerUnavailableError(error);
}

function checkFunction(operation: string, name: string, value: unknown): void {
  if (typeof value !== "function") {
    throw new TypeError(
      `Cannot ${operation} as '${name}' must be a function: current value is ${show(value)}`,
    );
  }
}

function checkDelay(operation: string, name: string, value: unknown): void {
  if (typeof value !== "number" || !(value >= 0 && value <= MAX_DELAY_MS)) {
    throw new RangeError(
      `Cannot ${operation} as '${name}' must be a number in 0..${MAX_DELAY_MS}: current value is ${
        show(value)
      }`,
    );
  }
}
