/**
 * Keeps this machine in step with a time server over SNTP.
 *
 * @module
 */

import { delay } from "./_async.ts";
import { serverAddress } from "./_ntp.ts";
import { show } from "./_show.ts";
import { ClientSynchronizedClock } from "./client_synchronized_clock.ts";
import { type NtpSample, queryNtp } from "./query_ntp.ts";
import { type Scheduler, systemScheduler } from "./scheduler.ts";
import type { SynchronizedClock } from "./synchronized_clock.ts";
import { SystemClock } from "./system_clock.ts";
import { NTP_PORT } from "./time_sync_server.ts";

/** Options of {@linkcode TimeSyncClient}. */
export interface TimeSyncClientOptions {
  /**
   * The server's UDP port.
   *
   * @default {123}
   */
  port?: number;
  /**
   * This machine's clock (only `now()` is used).
   *
   * @default {new SystemClock()}
   */
  local?: Pick<SynchronizedClock, "now">;
  /**
   * How many quick queries to make at start, {@linkcode burstIntervalMs} apart.
   *
   * @default {4}
   */
  burst?: number;
  /**
   * Milliseconds between the queries of the start burst.
   *
   * @default {50}
   */
  burstIntervalMs?: number;
  /**
   * Milliseconds between queries after the burst.
   *
   * @default {3000}
   */
  periodMs?: number;
  /**
   * How long one query waits for its reply, in milliseconds.
   *
   * @default {2000}
   */
  timeoutMs?: number;
  /**
   * How many recent samples the estimate is made from.
   *
   * @default {8}
   */
  maxSamples?: number;
  /**
   * Samples older than this many milliseconds are dropped; when none is
   * left, the client is no longer {@linkcode TimeSyncClient.synchronized}.
   *
   * @default {60000}
   */
  maxSampleAgeMs?: number;
  /**
   * The slew rate of the {@linkcode TimeSyncClient.clock} for backward
   * corrections (see {@linkcode ClientSynchronizedClock}).
   *
   * @default {0.05}
   */
  maxSlewRate?: number;
  /**
   * The timers for the waits between queries and the query timeouts.
   *
   * @default {systemScheduler}
   */
  scheduler?: Scheduler;
  /**
   * Stops the client, as {@linkcode TimeSyncClient.close} does.
   *
   * @default {undefined}
   */
  signal?: AbortSignal;
}

/** Counts of a {@linkcode TimeSyncClient}'s queries. */
export interface TimeSyncClientCounters {
  /** Queries sent. */
  queries: number;
  /** Queries that produced a sample. */
  samples: number;
  /** Queries that failed (timeout, kiss-o'-death, unsynchronised server, socket error). */
  failures: number;
}

/** Options of {@linkcode TimeSyncClient.getOffset}. */
export interface TimeSyncWaitOptions {
  /**
   * Give up after this many milliseconds: the promise rejects with a
   * `TimeSyncTimeoutError`. Waits as long as the client runs when omitted.
   *
   * @default {undefined}
   */
  timeoutMs?: number;
  /**
   * Stops waiting: the promise rejects with `signal.reason`.
   *
   * @default {undefined}
   */
  signal?: AbortSignal;
}

/** A wait for synchronisation ran out of time, or the client was closed first. */
export class TimeSyncTimeoutError extends Error {
  /**
   * Creates the error.
   *
   * @param message What was waited for.
   */
  constructor(message: string) {
    super(message);
    this.name = "TimeSyncTimeoutError";
  }
}

/**
 * Keeps an estimate of a time server's clock offset and a
 * {@linkcode ClientSynchronizedClock} that follows it.
 *
 * It starts at once: a burst of quick queries, then one every `periodMs`.
 * Each good reply becomes a sample; the estimate is the median offset of the
 * (up to) three lowest-delay samples among the last `maxSamples`, since the
 * delay bounds each sample's error (a plain mean of raw samples, as in the
 * Python original, lets one slow reply pull the estimate; spec bug B49).
 * Failed queries are counted and the loop goes on.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SystemClock, TimeSyncClient, TimeSyncServer } from "@tsercom/tsercom/rpc";
 *
 * const local = new SystemClock();
 * await using server = new TimeSyncServer({
 *   hostname: "127.0.0.1",
 *   port: 0,
 *   clock: { now: () => local.now() + 2_500_000 },
 * });
 * await using client = new TimeSyncClient("127.0.0.1", { port: server.port, local });
 * await client.ready;
 * assert(Math.abs(client.offsetMicros! - 2_500_000) < 50_000);
 * assert(Math.abs(client.clock.now() - (local.now() + 2_500_000)) < 50_000);
 * ```
 */
export class TimeSyncClient implements AsyncDisposable {
  /** The server's address. */
  readonly hostname: string;
  /** The server's port. */
  readonly port: number;
  /**
   * The server's time as seen from here. Until the first estimate it reads
   * local time; see {@linkcode ClientSynchronizedClock} for how estimates
   * are applied.
   */
  readonly clock: ClientSynchronizedClock;
  /**
   * Resolves once the start burst is over and at least one sample was taken
   * (or, if the burst got none, at the first sample). Rejects with a
   * {@linkcode TimeSyncTimeoutError} when the client is closed before that.
   */
  readonly ready: Promise<void>;

  readonly #local: Pick<SynchronizedClock, "now">;
  readonly #scheduler: Scheduler;
  readonly #burst: number;
  readonly #burstIntervalMs: number;
  readonly #periodMs: number;
  readonly #timeoutMs: number;
  readonly #maxSamples: number;
  readonly #maxSampleAgeMicros: number;
  readonly #stop = new AbortController();
  readonly #loop: Promise<void>;
  readonly #counters: TimeSyncClientCounters = { queries: 0, samples: 0, failures: 0 };
  #samples: NtpSample[] = [];
  #estimate: number | undefined;
  #lastError: unknown;
  #readyResolve!: () => void;
  #readyReject!: (error: unknown) => void;
  #isReady = false;
  #waiters = new Set<() => void>();

  /**
   * Starts synchronising with the server at `hostname`.
   *
   * @param hostname The server's IP address, or `"localhost"`.
   * @param options Port, timing, sample count, clocks, scheduler, signal.
   * @throws {RangeError} When an option is out of range.
   * @throws {TypeError} When `hostname` is not an IP address or an option
   *   has the wrong type.
   */
  constructor(hostname: string, options: TimeSyncClientOptions = {}) {
    const {
      port = NTP_PORT,
      local = new SystemClock(),
      burst = 4,
      burstIntervalMs = 50,
      periodMs = 3_000,
      timeoutMs = 2_000,
      maxSamples = 8,
      maxSampleAgeMs = 60_000,
      maxSlewRate = 0.05,
      scheduler = systemScheduler,
      signal,
    } = options;
    serverAddress(hostname, "start the time sync client");
    if (!Number.isInteger(port) || port < 1 || port > 65_535) {
      throw new RangeError(
        `Cannot start the time sync client as 'port' must be an integer in 1..65535: current value is ${
          show(port)
        }`,
      );
    }
    checkCount("burst", burst, 0);
    checkCount("maxSamples", maxSamples, 1);
    checkMs("burstIntervalMs", burstIntervalMs, true);
    checkMs("periodMs", periodMs, false);
    checkMs("timeoutMs", timeoutMs, false);
    checkMs("maxSampleAgeMs", maxSampleAgeMs, false);
    if (signal !== undefined && !(signal instanceof AbortSignal)) {
      throw new TypeError(
        `Cannot start the time sync client as 'signal' must be an AbortSignal: current value is ${
          show(signal)
        }`,
      );
    }
    this.hostname = hostname;
    this.port = port;
    this.clock = new ClientSynchronizedClock({ local, maxSlewRate });
    this.#local = local;
    this.#scheduler = scheduler;
    this.#burst = burst;
    this.#burstIntervalMs = burstIntervalMs;
    this.#periodMs = periodMs;
    this.#timeoutMs = timeoutMs;
    this.#maxSamples = maxSamples;
    this.#maxSampleAgeMicros = maxSampleAgeMs * 1_000;
    this.ready = new Promise<void>((resolve, reject) => {
      this.#readyResolve = resolve;
      this.#readyReject = reject;
    });
    // Callers that never await `ready` must not see an unhandled rejection.
    this.ready.catch(() => {});
    if (signal !== undefined) {
      if (signal.aborted) this.#stop.abort();
      else signal.addEventListener("abort", () => this.close(), { once: true });
    }
    this.#loop = this.#run();
  }

  /** Whether an offset estimate exists (from samples not older than `maxSampleAgeMs`). */
  get synchronized(): boolean {
    return this.#estimate !== undefined;
  }

  /** The current offset estimate in microseconds (server minus local), or `undefined`. */
  get offsetMicros(): number | undefined {
    return this.#estimate;
  }

  /** The samples the estimate is made from, oldest first (copies). */
  get samples(): NtpSample[] {
    return this.#samples.map((s) => ({ ...s }));
  }

  /** The counts of queries, samples and failures (a fresh object). */
  get counters(): TimeSyncClientCounters {
    return { ...this.#counters };
  }

  /** The error of the latest failed query, or `undefined`. */
  get lastError(): unknown {
    return this.#lastError;
  }

  /** Whether the client was closed. */
  get closed(): boolean {
    return this.#stop.signal.aborted;
  }

  /**
   * The offset estimate, once there is one.
   *
   * @param options A timeout and an abort signal.
   * @returns The offset in microseconds (server minus local).
   * @throws {TimeSyncTimeoutError} (as a rejection) When the timeout passes
   *   or the client is closed before an estimate exists.
   */
  getOffset(options: TimeSyncWaitOptions = {}): Promise<number> {
    const { timeoutMs, signal } = options;
    if (timeoutMs !== undefined) checkMs("timeoutMs", timeoutMs, true);
    if (this.#estimate !== undefined) return Promise.resolve(this.#estimate);
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.closed) return Promise.reject(this.#closedError());
    return new Promise<number>((resolve, reject) => {
      let timer: unknown;
      const finish = () => {
        this.#waiters.delete(check);
        signal?.removeEventListener("abort", onAbort);
        if (timer !== undefined) this.#scheduler.clearTimeout(timer);
      };
      const check = () => {
        if (this.#estimate !== undefined) {
          finish();
          resolve(this.#estimate);
        } else if (this.closed) {
          finish();
          reject(this.#closedError());
        }
      };
      const onAbort = () => {
        finish();
        reject(signal!.reason);
      };
      this.#waiters.add(check);
      signal?.addEventListener("abort", onAbort, { once: true });
      if (timeoutMs !== undefined) {
        timer = this.#scheduler.setTimeout(() => {
          finish();
          reject(
            new TimeSyncTimeoutError(
              `Cannot get the offset to ${this.hostname}:${this.port} as no sample arrived within ${timeoutMs} ms`,
            ),
          );
        }, timeoutMs);
      }
    });
  }

  /** Stops querying; resolves once the loop has ended. Calling it again does nothing. */
  async close(): Promise<void> {
    if (!this.#stop.signal.aborted) {
      this.#stop.abort();
      if (!this.#isReady) this.#readyReject(this.#closedError());
      for (const waiter of [...this.#waiters]) waiter();
    }
    await this.#loop;
  }

  /** The same as {@linkcode TimeSyncClient.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async #run(): Promise<void> {
    const signal = this.#stop.signal;
    try {
      for (let k = 0; k < this.#burst && !signal.aborted; k++) {
        if (k > 0) await delay(this.#burstIntervalMs, { signal, scheduler: this.#scheduler });
        await this.#query();
      }
      if (this.#estimate !== undefined) this.#markReady();
      while (!signal.aborted) {
        if (this.#burst > 0 || this.#counters.queries > 0) {
          await delay(this.#periodMs, { signal, scheduler: this.#scheduler });
        }
        await this.#query();
        if (this.#estimate !== undefined) this.#markReady();
      }
    } catch (error) {
      if (!signal.aborted) throw error;
    }
  }

  async #query(): Promise<void> {
    const signal = this.#stop.signal;
    if (signal.aborted) return;
    this.#counters.queries++;
    let sample: NtpSample;
    try {
      sample = await queryNtp(this.hostname, {
        port: this.port,
        timeoutMs: this.#timeoutMs,
        clock: this.#local,
        scheduler: this.#scheduler,
        signal,
      });
    } catch (error) {
      if (signal.aborted) return;
      this.#counters.failures++;
      this.#lastError = error;
      this.#expire();
      return;
    }
    this.#counters.samples++;
    this.#samples.push(sample);
    if (this.#samples.length > this.#maxSamples) this.#samples.shift();
    this.#expire();
  }

  /** Drops samples past their age, then recomputes the estimate. */
  #expire(): void {
    const oldest = this.#local.now() - this.#maxSampleAgeMicros;
    this.#samples = this.#samples.filter((s) => s.localMicros >= oldest);
    const estimate = estimateOffset(this.#samples);
    this.#estimate = estimate;
    if (estimate !== undefined) {
      if (estimate !== this.clock.targetOffsetMicros || !this.clock.synchronized) {
        this.clock.setOffset(estimate);
      }
      for (const waiter of [...this.#waiters]) waiter();
    }
  }

  #markReady(): void {
    if (this.#isReady) return;
    this.#isReady = true;
    this.#readyResolve();
  }

  #closedError(): TimeSyncTimeoutError {
    return new TimeSyncTimeoutError(
      `Cannot synchronise with ${this.hostname}:${this.port} as the client was closed first`,
    );
  }
}

/**
 * The offset estimate of a set of samples: the median offset of the (up to)
 * three with the lowest delay, or `undefined` when there is none.
 *
 * @param samples Measurements against one server.
 * @returns The estimated offset in microseconds.
 */
export function estimateOffset(
  samples: readonly Pick<NtpSample, "offsetMicros" | "delayMicros">[],
): number | undefined {
  if (samples.length === 0) return undefined;
  const best = [...samples].sort((a, b) => a.delayMicros - b.delayMicros).slice(0, 3)
    .map((s) => s.offsetMicros).sort((a, b) => a - b);
  return best.length === 2 ? Math.round((best[0] + best[1]) / 2) : best[best.length >> 1];
}

function checkCount(name: string, value: number, min: number): void {
  if (!Number.isInteger(value) || value < min || value > 1_000) {
    throw new RangeError(
      `Cannot start the time sync client as '${name}' must be an integer in ${min}..1000: current value is ${
        show(value)
      }`,
    );
  }
}

function checkMs(name: string, value: number, zeroOk: boolean): void {
  if (
    typeof value !== "number" || !Number.isFinite(value) || value < 0 ||
    (!zeroOk && value === 0) || value > 2_147_483_647
  ) {
    throw new RangeError(
      `Cannot use '${name}' as it must be a ${
        zeroOk ? "non-negative" : "positive"
      } number of milliseconds: current value is ${show(value)}`,
    );
  }
}
