/**
 * {@linkcode RuntimeManager}: registers runtimes, starts them once, and shuts
 * them down within a deadline; each one is driven through a
 * {@linkcode RuntimeHandle}, in its own Worker or on this thread
 * (spec/runtime.md §5, §16.1, §16.7).
 *
 * @module
 */

import { ErrorWatcher } from "./error_watcher.ts";
import { InProcessRuntimeHost } from "./_in_process_runtime_host.ts";
import { ErrorRegistry } from "./_worker_protocol.ts";
import { checkInitializerRef } from "./_initializer_ref.ts";
import type { InitializerRef } from "./runtime.ts";
import {
  createRuntimeConfig,
  type RuntimeConfig,
  type RuntimeConfigOptions,
} from "./runtime_config.ts";
import { type WorkerDataStats, WorkerRuntimeHost } from "./worker_runtime_host.ts";
import {
  RemoteDataAggregator,
  type RemoteDataAggregatorOptions,
  type RemoteDataItem,
} from "./remote_data_aggregator.ts";
import type { RuntimeEventStats } from "./runtime_data_handler.ts";
import { CallerId } from "../rpc/caller_id.ts";
import { SystemClock } from "../rpc/system_clock.ts";
import { show } from "../rpc/_show.ts";

export type {
  InitializerRef,
  RemoteDataItem,
  RuntimeConfig,
  RuntimeConfigOptions,
  RuntimeEventStats,
  WorkerDataStats,
};

/** Options for {@linkcode RuntimeManager.register}: the parent-only parts of a runtime. */
export interface RuntimeHandleOptions {
  /**
   * The handle's aggregator options (its `timeoutMicros` comes from the
   * configuration's `dataTimeoutMicros`).
   *
   * @default {{}}
   */
  aggregator?: Omit<RemoteDataAggregatorOptions<unknown>, "timeoutMicros">;
  /**
   * Called with each item once it is in the aggregator; the next item is
   * taken only after it returns (or its promise settles), so a slow
   * `onData` throttles the runtime through flow control (`"block"`) or
   * makes it drop (lossy policies). Its errors go to the watcher. Only with
   * `delivery: "aggregator"`.
   *
   * @default {undefined}
   */
  onData?: (item: RemoteDataItem<unknown>) => void | Promise<void>;
}

/** Options for {@linkcode RuntimeHandle.onEvent}. */
export interface RuntimeEventOptions {
  /**
   * The caller the event is for; unset broadcasts it to every registered caller.
   *
   * @default {undefined}
   */
  callerId?: CallerId;
  /**
   * When it happened, local microseconds since the Unix epoch (a safe integer).
   *
   * @default {the current time}
   */
  timestamp?: number;
}

/** Options for {@linkcode RuntimeManager}. */
export interface RuntimeManagerOptions {
  /**
   * Where every runtime's background failures, start and stop failures are
   * reported.
   *
   * @default {new ErrorWatcher()}
   */
  watcher?: ErrorWatcher;
  /**
   * The classes errors from Worker runtimes are rebuilt as (built-ins
   * always); in-process runtimes throw their errors as they are.
   *
   * @default {new ErrorRegistry()}
   */
  errors?: ErrorRegistry;
}

/** Options for {@linkcode RuntimeManager.shutdown}. */
export interface RuntimeShutdownOptions {
  /**
   * How long every runtime has to stop, in milliseconds (an integer >= 0);
   * then Workers are terminated and in-process runtimes abandoned.
   *
   * @default {5000}
   */
  deadlineMs?: number;
}

/**
 * The lifecycle state of a {@linkcode RuntimeHandle}:
 * `registered → starting → running → stopping → stopped`, or `failed` from
 * any of them (create, start or stop error, crash, missed shutdown deadline).
 */
export type RuntimeHandleState =
  | "registered"
  | "starting"
  | "running"
  | "stopping"
  | "stopped"
  | "failed";

/** One data item a runtime emitted. */
export interface RuntimeDataItem {
  /** When it happened, in microseconds since the Unix epoch. */
  readonly timestamp: number;
  /** The data. */
  readonly value: unknown;
  /** The caller it came from (as a string), when it was sent through a processor. */
  readonly callerId?: string;
}

/** A runtime did not stop within the deadline of {@linkcode RuntimeManager.shutdown}. */
export class RuntimeStopTimeoutError extends Error {
  /** The runtime, as `"<mode> runtime <export> (<module>)"`. */
  readonly source: string;
  /** The deadline, in milliseconds. */
  readonly deadlineMs: number;

  /**
   * Creates the error.
   *
   * @param source The runtime.
   * @param deadlineMs The deadline it missed.
   */
  constructor(source: string, deadlineMs: number) {
    super(
      `Cannot stop the ${source} gracefully as it must stop within ${deadlineMs} ms: it did not, so it was ${
        source.startsWith("worker") ? "terminated" : "abandoned"
      }`,
    );
    this.name = "RuntimeStopTimeoutError";
    this.source = source;
    this.deadlineMs = deadlineMs;
  }
}

type Host = WorkerRuntimeHost | InProcessRuntimeHost;

/** The manager's way into a handle: its bounded shutdown. */
const shutdowns = new WeakMap<RuntimeHandle, (deadlineMs: number) => Promise<void>>();

/**
 * One registered runtime, the same in both isolation modes. Get it from
 * {@linkcode RuntimeManager.register}. The runtime is created (its Worker
 * spawned, or its module imported) by the first {@linkcode RuntimeHandle.start}.
 */
export class RuntimeHandle {
  readonly #ref: InitializerRef;
  readonly #config: RuntimeConfig;
  readonly #watcher: ErrorWatcher;
  readonly #errors: ErrorRegistry;
  readonly #source: string;
  readonly #aggregator: RemoteDataAggregator<unknown> | undefined;
  readonly #onData: RuntimeHandleOptions["onData"];
  readonly #clock = new SystemClock();
  #pump: Promise<void> = Promise.resolve();
  #eventOrder: Promise<unknown>;
  readonly #hostReady = Promise.withResolvers<Host | undefined>();
  #host: Host | undefined;
  #state: RuntimeHandleState = "registered";
  #failure: { error: unknown } | undefined;
  #starting: Promise<void> | undefined;
  #stopping: Promise<void> | undefined;
  #abandoned = false;

  /**
   * Use {@linkcode RuntimeManager.register} instead.
   *
   * @param ref The initializer.
   * @param config The validated configuration.
   * @param options The manager's watcher and error classes, and the handle's options.
   */
  constructor(
    ref: InitializerRef,
    config: RuntimeConfig,
    options: { watcher: ErrorWatcher; errors: ErrorRegistry } & RuntimeHandleOptions,
  ) {
    this.#ref = ref;
    this.#config = config;
    this.#watcher = options.watcher;
    this.#errors = options.errors;
    this.#source = `${config.isolation} runtime ${ref.export} (${String(ref.module)})`;
    this.#onData = options.onData;
    if (config.delivery === "aggregator") {
      this.#aggregator = new RemoteDataAggregator<unknown>({
        ...options.aggregator,
        ...(config.dataTimeoutMicros === null ? {} : { timeoutMicros: config.dataTimeoutMicros }),
      });
    }
    this.#eventOrder = this.#hostReady.promise;
    shutdowns.set(this, (deadlineMs) => this.#shutdown(deadlineMs));
  }

  /**
   * The runtime's data, per caller (with `delivery: "aggregator"`, the
   * default). It is stopped (waits end; data stays queryable) once the
   * runtime stopped or failed.
   *
   * @throws {TypeError} With `delivery: "stream"` (read {@linkcode RuntimeHandle.data}).
   */
  get dataAggregator(): RemoteDataAggregator<unknown> {
    if (this.#aggregator === undefined) {
      throw new TypeError(
        `Cannot get the data aggregator of the ${this.#source} as its delivery must be "aggregator": it is "stream" (read data())`,
      );
    }
    return this.#aggregator;
  }

  /**
   * The event routing counters of the runtime side: live in-process, as
   * reported at stop for a Worker (`undefined` before).
   */
  get eventStats(): RuntimeEventStats | undefined {
    return this.#host?.eventStats;
  }

  /**
   * A Worker runtime's data-channel counters (items sent, dropped, emits
   * that waited for credit, the most items in flight), as reported when it
   * stopped; `undefined` in-process or before.
   */
  get dataStats(): WorkerDataStats | undefined {
    const host = this.#host;
    return host instanceof WorkerRuntimeHost ? host.workerStats : undefined;
  }

  /** Events dropped on the caller side for want of event credit (Worker, lossy `eventOverflow`). */
  get eventsDropped(): number {
    const host = this.#host;
    return host instanceof WorkerRuntimeHost ? host.eventsDropped : 0;
  }

  /**
   * Sends an event to the runtime, for one caller or, without `callerId`,
   * for every registered caller. Events keep their order; events sent
   * before the runtime exists wait for it. The runtime reads them from its
   * callers' processors, timestamps converted to synchronised time.
   * Typed-array buffers in `value` are moved into a Worker, not copied.
   *
   * @param value The event (structured-clonable for a Worker).
   * @param options The caller and the timestamp.
   * @returns Whether it was sent (`false`: dropped for want of credit
   * under a lossy `eventOverflow`); under `"block"` it resolves once there
   * was room.
   * @throws {TypeError} (rejection) When the runtime failed or stopped, or
   * an option is malformed.
   * @throws {CreditOverflowError} (rejection) Under `"error"` without room.
   */
  onEvent(value: unknown, options: RuntimeEventOptions = {}): Promise<boolean> {
    const { callerId, timestamp = this.#clock.now() } = options ?? {};
    if (callerId !== undefined && !(callerId instanceof CallerId)) {
      return Promise.reject(
        new TypeError(
          `Cannot send the event as 'callerId' must be a CallerId or undefined: current value is ${
            show(callerId)
          }`,
        ),
      );
    }
    if (!Number.isSafeInteger(timestamp)) {
      return Promise.reject(
        new TypeError(
          `Cannot send the event as 'timestamp' must be a safe integer (microseconds): current value is ${
            show(timestamp)
          }`,
        ),
      );
    }
    const item = { value, callerId: callerId?.toString(), timestamp };
    const sent = this.#eventOrder.then(() => {
      const host = this.#host;
      if (host === undefined || this.state === "failed" || this.#state === "stopped") {
        throw new TypeError(
          `Cannot send the event as the ${this.#source} must be running: it is ${this.state}`,
        );
      }
      return host.sendEvent(item);
    });
    this.#eventOrder = sent.catch(() => {});
    return sent;
  }

  /** The lifecycle state (a crashed Worker shows as `"failed"`). */
  get state(): RuntimeHandleState {
    if (this.#host?.state === "failed") return "failed";
    return this.#state;
  }

  /** The configuration the runtime was registered with. */
  get config(): RuntimeConfig {
    return this.#config;
  }

  /** Items dropped for want of credit (lossy `dataOverflow` policies; exact after stop). */
  get dropped(): number {
    return this.#host?.dropped ?? 0;
  }

  /**
   * Creates and starts the runtime; resolves when its `start` finished.
   * Idempotent: later calls return the same promise. A failure makes the
   * handle `"failed"`, is reported to the watcher and rejects.
   *
   * @returns A promise that resolves once the runtime runs.
   * @throws {TypeError} When the handle was stopped before it started.
   * @throws {unknown} The initializer's or runtime's error (a Worker's
   * rebuilt as its class when registered in `errors`).
   */
  start(): Promise<void> {
    if (this.#starting !== undefined) return this.#starting;
    if (this.#state !== "registered") {
      return Promise.reject(
        new TypeError(
          `Cannot start the ${this.#source} as it must be registered and not started: it is ${this.#state}`,
        ),
      );
    }
    this.#state = "starting";
    this.#starting = this.#run();
    return this.#starting;
  }

  async #run(): Promise<void> {
    let host: Host | undefined;
    try {
      host = await this.#spawn();
      if (this.#abandoned) {
        await this.#release(host, this.#failure?.error);
        throw this.#failure?.error;
      }
      this.#host = host;
      if (this.#aggregator !== undefined) this.#pump = this.#feed(host, this.#aggregator);
      this.#hostReady.resolve(host);
      await host.start();
      if (this.#state === "starting") this.#state = "running";
    } catch (error) {
      if (this.#abandoned) throw error;
      this.#state = "failed";
      this.#failure ??= { error };
      this.#hostReady.resolve(this.#host);
      this.#watcher.report(error, this.#source);
      if (host !== undefined) await this.#release(host, error);
      throw error;
    }
  }

  #spawn(): Promise<Host> {
    const config = this.#config;
    if (config.isolation === "worker") {
      return WorkerRuntimeHost.spawn(this.#ref, {
        watcher: this.#watcher,
        errors: this.#errors,
        config,
      });
    }
    return InProcessRuntimeHost.spawn(this.#ref, { watcher: this.#watcher, config });
  }

  /** Moves the host's data into the aggregator, item by item, until it ends. */
  async #feed(host: Host, aggregator: RemoteDataAggregator<unknown>): Promise<void> {
    const ids = new Map<string, CallerId>();
    const onData = this.#onData;
    try {
      for await (const batch of host.batches()) {
        for (const item of batch) {
          const key = item.callerId;
          if (key === undefined) continue; // emit() refuses this under "aggregator"
          let callerId = ids.get(key);
          if (callerId === undefined) {
            callerId = CallerId.parse(key);
            ids.set(key, callerId);
          }
          const record = { callerId, timestamp: item.timestamp, value: item.value };
          aggregator.onDataReady(record);
          if (onData === undefined) continue;
          try {
            const pending = onData(record);
            if (pending !== undefined) await pending;
          } catch (error) {
            this.#watcher.report(error, `${this.#source}: onData`);
          }
        }
      }
    } catch {
      // The host failed: the failure is in the watcher already.
    } finally {
      aggregator.stop();
    }
  }

  /**
   * Stops the runtime: resolves after its `stop` finished and its last data
   * item is in {@linkcode RuntimeHandle.data}. Idempotent. Before start it
   * only marks the handle stopped; while starting it waits for the start.
   * A failed handle has nothing to stop (resolves).
   *
   * @param reason Why, passed to the runtime's `stop` (structured-cloned
   * for a Worker).
   * @returns A promise that resolves once the runtime stopped.
   * @throws {unknown} The runtime's stop error (also reported to the watcher).
   */
  stop(reason?: unknown): Promise<void> {
    if (this.#stopping !== undefined) return this.#stopping;
    if (this.#state === "registered") {
      this.#state = "stopped";
      this.#aggregator?.stop();
      this.#hostReady.resolve(undefined);
      return this.#stopping = Promise.resolve();
    }
    if (this.state === "failed" || this.#state === "stopped") return Promise.resolve();
    this.#state = "stopping";
    this.#stopping = (async () => {
      try {
        await this.#starting;
      } catch {
        return; // failed: reported already
      }
      const host = this.#host!;
      try {
        await host.stop(reason);
        await this.#pump;
        if (this.#state === "stopping") this.#state = "stopped";
      } catch (error) {
        if (this.#abandoned) throw error;
        this.#state = "failed";
        this.#watcher.report(error, this.#source);
        throw error;
      } finally {
        if (host instanceof WorkerRuntimeHost && !this.#abandoned) await host.terminate();
      }
    })();
    return this.#stopping;
  }

  /**
   * The data, item by item, in emit order, ending once the runtime stopped
   * (or with the failure, when it failed). Reading grants credit back, so a
   * slow reader throttles the runtime (`"block"`) or makes it drop. May be
   * called before start; one reader at a time.
   *
   * @returns The items.
   * @throws {unknown} What made the runtime fail.
   */
  async *data(): AsyncGenerator<RuntimeDataItem, void, undefined> {
    if (this.#aggregator !== undefined) {
      throw new TypeError(
        `Cannot read data() of the ${this.#source} as its delivery must be "stream": it is "aggregator" (use dataAggregator)`,
      );
    }
    const host = await this.#hostReady.promise;
    if (host === undefined) {
      if (this.#failure !== undefined) throw this.#failure.error;
      return;
    }
    try {
      yield* host.data();
    } catch (error) {
      // A Worker that was terminated for the failure ends with a crash: give the cause.
      throw this.#failure?.error ?? error;
    }
  }

  async #shutdown(deadlineMs: number): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const expired = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(true), deadlineMs);
    });
    const stopped = this.stop().then(() => false, () => false);
    const timedOut = await Promise.race([stopped, expired]);
    clearTimeout(timer);
    if (timedOut) {
      const error = new RuntimeStopTimeoutError(this.#source, deadlineMs);
      this.#watcher.report(error, this.#source);
      await this.#abandon(error);
    } else if (this.#host !== undefined) {
      await this.#release(this.#host, undefined);
    }
  }

  async #abandon(error: unknown): Promise<void> {
    this.#abandoned = true;
    this.#failure ??= { error };
    if (this.#state !== "stopped") this.#state = "failed";
    this.#hostReady.resolve(this.#host);
    if (this.#host !== undefined) await this.#release(this.#host, error);
  }

  async #release(host: Host, error: unknown): Promise<void> {
    if (host instanceof WorkerRuntimeHost) await host.terminate();
    else if (error !== undefined) host.abandon(error);
  }
}

/**
 * Runs runtimes: register each with its configuration, {@linkcode start}
 * them all once, read each handle's data, and {@linkcode shutdown} within a
 * deadline. With `isolation: "worker"` (the default) each runtime runs in its
 * own Worker; with `"in-process"` on this thread — the handle behaves the
 * same. No global state: several managers may coexist.
 *
 * Fixes of the original: runtimes are not started twice (`start` is the
 * single, idempotent trigger and its failures reject and reach the watcher),
 * and `shutdown` stops the runtimes before it terminates anything.
 *
 * @example
 * ```ts ignore
 * import { RuntimeManager } from "./runtime_manager.ts";
 *
 * await using manager = new RuntimeManager();
 * const handle = manager.register(
 *   { module: import.meta.resolve("./my_runtime.ts"), export: "MyInitializer" },
 *   { role: "server" },
 * );
 * await manager.start();
 * for await (const { timestamp, value } of handle.data()) console.log(timestamp, value);
 * ```
 */
export class RuntimeManager implements AsyncDisposable {
  readonly #watcher: ErrorWatcher;
  readonly #errors: ErrorRegistry;
  readonly #handles: RuntimeHandle[] = [];
  #starting: Promise<void> | undefined;
  #shuttingDown: Promise<void> | undefined;

  /**
   * Creates the manager.
   *
   * @param options The watcher and the error classes of Worker runtimes.
   * @throws {TypeError} When `watcher` is not an ErrorWatcher or `errors` not an ErrorRegistry.
   */
  constructor(options: RuntimeManagerOptions = {}) {
    const { watcher = new ErrorWatcher(), errors = new ErrorRegistry() } = options;
    if (!(watcher instanceof ErrorWatcher)) {
      throw new TypeError(
        `Cannot create the runtime manager as 'watcher' must be an ErrorWatcher: current value is ${typeof watcher}`,
      );
    }
    if (!(errors instanceof ErrorRegistry)) {
      throw new TypeError(
        `Cannot create the runtime manager as 'errors' must be an ErrorRegistry: current value is ${typeof errors}`,
      );
    }
    this.#watcher = watcher;
    this.#errors = errors;
  }

  /** Where every runtime's failures are reported. */
  get watcher(): ErrorWatcher {
    return this.#watcher;
  }

  /** The registered handles, in registration order. */
  get handles(): readonly RuntimeHandle[] {
    return [...this.#handles];
  }

  /**
   * Registers a runtime; it is created and started by {@linkcode start}.
   *
   * @param ref The initializer: absolute module URL, export name, params.
   * @param config A configuration or its options (validated here).
   * @param options The aggregator's options and the `onData` consumer.
   * @returns The runtime's handle.
   * @throws {TypeError} When the manager was started or shut down, or `ref` is invalid.
   * @throws {RangeError} When a configuration value is out of range.
   */
  register(
    ref: InitializerRef,
    config: RuntimeConfig | RuntimeConfigOptions,
    options: RuntimeHandleOptions = {},
  ): RuntimeHandle {
    if (this.#starting !== undefined || this.#shuttingDown !== undefined) {
      throw new TypeError(
        `Cannot register the runtime as the manager must not have been started or shut down: it was ${
          this.#shuttingDown !== undefined ? "shut down" : "started"
        }`,
      );
    }
    checkInitializerRef(ref, "register the runtime", false);
    const checked = createRuntimeConfig({ ...config } as RuntimeConfigOptions);
    const { aggregator, onData } = options ?? {};
    if (onData !== undefined && typeof onData !== "function") {
      throw new TypeError(
        `Cannot register the runtime as 'onData' must be a function: current value is ${
          show(onData)
        }`,
      );
    }
    if (onData !== undefined && checked.delivery !== "aggregator") {
      throw new TypeError(
        'Cannot register the runtime as \'onData\' needs delivery "aggregator": it is "stream"',
      );
    }
    const handle = new RuntimeHandle({ ...ref }, checked, {
      watcher: this.#watcher,
      errors: this.#errors,
      aggregator,
      onData,
    });
    this.#handles.push(handle);
    return handle;
  }

  /**
   * Starts every registered runtime, concurrently. Idempotent: a second call
   * returns the same promise (no runtime is started twice).
   *
   * @returns A promise that settles once every runtime started or failed.
   * @throws {TypeError} When the manager was shut down.
   * @throws {unknown} The first start failure, in registration order (every
   * failure is also in the watcher).
   */
  start(): Promise<void> {
    if (this.#starting !== undefined) return this.#starting;
    if (this.#shuttingDown !== undefined) {
      return Promise.reject(
        new TypeError(
          "Cannot start the runtime manager as it must not have been shut down: it was",
        ),
      );
    }
    this.#starting = (async () => {
      const results = await Promise.allSettled(this.#handles.map((handle) => handle.start()));
      const failed = results.find((result) => result.status === "rejected");
      if (failed !== undefined) throw (failed as PromiseRejectedResult).reason;
    })();
    return this.#starting;
  }

  /**
   * Stops every runtime, concurrently; those that have not stopped within
   * `deadlineMs` are given up — their Worker terminated, or, in-process,
   * their handle marked failed and their data ended — with a
   * {@linkcode RuntimeStopTimeoutError} in the watcher. Every Worker is
   * terminated and every timer cleared when it resolves. Idempotent; never
   * rejects (stop failures go to the watcher).
   *
   * @param options The deadline.
   * @returns A promise that resolves within about `deadlineMs`.
   * @throws {RangeError} When `deadlineMs` is not an integer >= 0.
   */
  shutdown(options: RuntimeShutdownOptions = {}): Promise<void> {
    if (this.#shuttingDown !== undefined) return this.#shuttingDown;
    const { deadlineMs = 5_000 } = options;
    if (!Number.isSafeInteger(deadlineMs) || deadlineMs < 0) {
      throw new RangeError(
        `Cannot shut down the runtime manager as 'deadlineMs' must be an integer >= 0: current value is ${
          String(deadlineMs)
        }`,
      );
    }
    this.#shuttingDown = (async () => {
      await Promise.all(this.#handles.map((handle) => shutdowns.get(handle)!(deadlineMs)));
    })();
    return this.#shuttingDown;
  }

  /** Shuts down with the default deadline. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.shutdown();
  }
}
